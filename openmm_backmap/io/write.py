"""Writing trajectories frame by frame: DCD and PDB through OpenMM, XTC through OpenMM's XTC writer, HDF5 through mdtraj.

Every write is flushed, so a crash leaves a readable file up to the last
frame. With ``atomic=True`` (``convert``) a new file is written under its
partial name (:func:`~openmm_backmap.io.paths.partial_path`) and renamed when
it is closed; a failure removes it. Appending checks that the file holds
the same atoms (residue and atom names, in order) as the new frames, and
first cuts off a last frame that a crashed run left incomplete.
"""

from __future__ import annotations

import errno
import os
import struct
import warnings

import numpy as np

from ..structure.closing import Closeable
from ..structure.errors import InputError, LoadWarning, UserError, option_name
from .paths import (AtomicOutput, as_mdtraj_topology, check_output_path, output_write_error, pdb_topology,
                    plan_topology_file, topology_pdb_text, write_pdb_model, write_topology_pdb, writer_format)
from .validate import complete_frames

__all__ = ["TrajectoryWriter"]

_AKMA_PS = 0.04888821  # CHARMM/DCD time unit (AKMA) in ps


def _atom_names(topology):
    """(residue name, atom name) of every atom, cut to the PDB columns so that a PDB round trip compares equal."""
    return [(a.residue.name[:3], a.name[:4]) for a in topology.atoms]


def _pdb_atom_names(path):
    """(residue name, atom name) of every atom of the first model of a PDB file."""
    from openmm.app.internal.pdbstructure import PdbStructure

    with open(path, errors="replace") as fh:
        model = PdbStructure(fh).models[0]
    return [(res.name[:3], atom.name[:4]) for chain in model.chains for res in chain.residues for atom in res.atoms]


def _dcd_header(path):
    """(frames, first step, steps between frames, time step in ps, atoms, has unit cells) of a DCD file, or None
    if it is none."""
    # openmm.app.DCDFile(append=True) checks the magic number and atom count, but keeps the first step, interval and
    # time step it is given (not those of the file) and ignores the unit-cell flag; mdtraj cannot open a DCD without
    # frames. So the few header fields needed are read here.
    with open(path, "rb") as fh:
        head = fh.read(100)
        if len(head) < 100 or head[4:8] != b"CORD" or struct.unpack("<i", head[:4])[0] != 84:
            return None
        nset, istart, nsavc = struct.unpack("<3i", head[8:20])
        (delta_akma,) = struct.unpack("<f", head[44:48])
        (cell_flag,) = struct.unpack("<i", head[48:52])
        (title_len,) = struct.unpack("<i", head[92:96])
        fh.seek(92 + 4 + title_len + 4)
        marker, natoms = struct.unpack("<2i", fh.read(8))
    return (nset, istart, nsavc, delta_akma * _AKMA_PS, natoms, bool(cell_flag)) if marker == 4 else None


def _dcd_sampling(step, time):
    """First step, steps between frames and time step (ps) for a DCD header, from the first frames."""
    if step is None or len(step) < 2 or step[1] <= step[0]:
        return (0 if step is None else int(step[0])), 1, _AKMA_PS
    interval = int(step[1] - step[0])
    return int(step[0]), interval, (_AKMA_PS if time is None else float(time[1] - time[0]) / interval)


class TrajectoryWriter(Closeable):
    """Write heavy-atom (or all-atom) frames incrementally to DCD, XTC, multi-model PDB or HDF5.

    The format is chosen by the extension. Every :meth:`write` is flushed to
    disk, so a crash leaves a readable file up to the last frame written. No
    file is created before the first frame: a writer closed without frames
    leaves nothing. Trajectory formats without a topology (DCD, XTC) get a
    PDB topology file beside them (``<stem>.pdb``, or ``<stem>_topology.pdb``
    when ``<stem>.pdb`` exists and is not an openmm-backmap topology, e.g. the
    input), written with the first frame's coordinates, together with the
    trajectory (``atomic``: under its partial name, renamed with it); HDF5
    files carry their topology and get one as well, for convenience. The
    topology of another trajectory of the same stem is kept when it fits and
    is not replaced without ``force`` when it does not
    (:func:`~openmm_backmap.io.paths.plan_topology_file`).

    Time and step are stored where the format allows: XTC (time in ps and
    step per frame), HDF5 (time per frame), PDB (a GROMACS-style
    ``TITLE ... t= ... step= ...`` record before each MODEL) and DCD (first
    step, steps between frames and time step in the header, from the first
    two frames).

    Parameters
    ----------
    path : str or path
        Output file: ``.dcd``, ``.xtc``, ``.pdb`` or ``.h5`` (``.h5`` needs PyTables).
    topology : mdtraj.Topology or openmm.app.Topology
        Topology of the frames (atom order of the coordinates).
    append : bool
        Append to an existing file; it must hold the same atoms (residue and
        atom names, in order) in the same format, and a DCD or XTC file needs
        the topology file it was written with. A last frame left incomplete by
        a crash is cut off first, with a :class:`LoadWarning`. Without an
        existing file this starts a new one.
    force : bool
        Overwrite an existing file.
    atomic : bool
        Write a new file under its partial name ``<stem>.partial.<ext>`` and
        rename it to ``path`` in :meth:`close`; :meth:`abort`, or an
        exception in a ``with`` block, removes it. A killed process leaves the
        partial file, readable up to its last complete frame; the next atomic
        writer replaces it with a warning. The topology file is written as
        ``<stem>.partial.pdb`` and renamed with the trajectory; a failure never
        removes or replaces an existing one. Appending always writes in place.

    Attributes
    ----------
    path, format : str
    file_path : str
        The file being written: ``path``, or its partial name while ``atomic``.
    topology : mdtraj.Topology
    topology_path : str or None
        The PDB topology written beside the trajectory.
    topology_file_path : str or None
        The file holding it while the trajectory is written: ``topology_path``,
        or its partial name while ``atomic``.
    n_atoms : int
    n_frames : int
        Frames in the file (including those already there when appending).

    Raises
    ------
    InputError
        Unknown extension, an output that cannot be written, or ``append`` to
        a file of another format or other atoms.
    OutputExistsError
        The file exists and neither ``append`` nor ``force`` is set.
    OutputWriteError
        Writing failed (disk full, permissions): the message says how many
        frames were written and what was kept.

    Examples
    --------
    >>> import numpy as np
    >>> from openmm_backmap.structure import build_topology
    >>> top = build_topology(['GLY', 'ALA'])
    >>> with TrajectoryWriter('/tmp/ga.dcd', top, force=True) as w:  # doctest: +SKIP
    ...     w.write(np.zeros((2, 9, 3)), time_ps=[0.0, 10.0], step=[0, 1000])
    """

    def __init__(self, path, topology, append=False, force=False, atomic=False):
        self.path = os.fspath(path)
        self.format = writer_format(self.path)
        self.topology = as_mdtraj_topology(topology)
        self.n_atoms = self.topology.n_atoms
        self.append = bool(append)
        self.n_frames = 0
        self._closed = True
        self._opened = False
        self._atomic = self._atomic_topology = None
        check_output_path(self.path, append, force)
        self._omm_topology = pdb_topology(self.topology)
        self._appending = self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0
        if self._appending:
            getattr(self, f"_check_{self.format}")()
        # the topology file goes with the first frame (a run that writes none leaves none), and never replaces the
        # topology of another trajectory of this stem that holds other atoms (see plan_topology_file)
        self.topology_path, self._topology_due = plan_topology_file(self.path, self.topology, self.append, force)
        if self._appending:
            if self.topology_path is not None and not self._topology_due:
                self._check_atoms(_pdb_atom_names(self.topology_path), f"its topology file {self.topology_path}")
            if self.format in ("dcd", "xtc"):
                self._cut_torn_frame()
        if atomic and not self._appending:
            self._atomic = AtomicOutput(self.path)
            if self._topology_due:
                self._atomic_topology = AtomicOutput(self.topology_path)
        self.file_path = self.path if self._atomic is None else self._atomic.path
        self.topology_file_path = self.topology_path if self._atomic_topology is None else self._atomic_topology.path
        self._closed = False
        if self._appending:  # the file exists: open it now, so that n_frames counts its frames
            try:
                self._open()
            except OSError as err:
                self._closed = True
                if isinstance(err, UserError):
                    raise
                raise self._write_error(err) from None

    def _open(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.file_path)), exist_ok=True)
        getattr(self, f"_open_{self.format}")(self._appending)
        self._opened = True

    def _write_topology(self, xyz0):
        """Write the topology file with the first frame's coordinates (a viewable structure on its own)."""
        title = os.path.basename(self.path)
        if self._atomic_topology is None:
            write_topology_pdb(self.topology_path, self.topology, xyz0, title=title)  # renamed into place whole
        else:
            text = topology_pdb_text(self.topology, xyz0, title=title)
            with open(self._atomic_topology.path, "w") as fh:
                fh.write(text)
        self._topology_due = False

    # ------------------------------------------------------------------ append checks
    def _mismatch(self, what):
        return InputError(f"cannot append to {self.path}: {what}; write to a new file or use "
                          f"{option_name('--force', 'force=True')} to overwrite it")

    def _check_count(self, n, where="it"):
        if n != self.n_atoms:
            raise self._mismatch(f"{where} has {n} atoms per frame but the new frames have {self.n_atoms}")

    def _check_atoms(self, names, where="it"):
        """Raise unless ``names`` (residue, atom) are those of the new frames, in order."""
        self._check_count(len(names), where)
        new = _atom_names(self.topology)
        for i, (old, now) in enumerate(zip(names, new)):
            if old != now:
                raise self._mismatch(f"{where} holds other atoms than the new frames (atom {i + 1} is "
                                     f"{' '.join(old)} there, {' '.join(now)} in the new frames)")

    def _check_dcd(self):
        header = _dcd_header(self.path)
        if header is None:
            raise self._mismatch("it is not a DCD file in the CHARMM format")
        if header[5]:
            raise self._mismatch("it stores unit cells (not written by openmm-backmap)")
        self._check_count(header[4])

    def _check_xtc(self):
        from openmm.app.internal.xtc_utils import get_xtc_natoms

        try:
            n = get_xtc_natoms(self.path.encode())
        except RuntimeError:
            raise self._mismatch("it is not an XTC file") from None
        self._check_count(n)

    def _check_pdb(self):
        with open(self.path, errors="replace") as fh:
            if not any(line.startswith("MODEL ") for line in fh):
                raise self._mismatch("it is not a multi-model PDB file (no MODEL records)")
        self._check_atoms(_pdb_atom_names(self.path))

    def _cut_torn_frame(self):
        """Cut off a last frame that a run which crashed while writing it left incomplete, so that appended frames
        follow the complete ones (DCD and XTC readers cannot skip a partial frame)."""
        try:
            n, end, n_header = complete_frames(self.path)
        except InputError as err:
            raise self._mismatch(str(err).removeprefix(f"{self.path}: ")) from None
        size = os.path.getsize(self.path)
        if n_header is not None and n_header not in (n, n + 1):  # DCDFile counts a frame just before writing it
            more = f" and {size - end} bytes more" if size > end else ""
            raise self._mismatch(f"its header says {n_header} frames but it holds {n} complete frames{more}, which "
                                 "no crash while writing explains")
        if end == size and n_header in (None, n):
            return
        with open(self.path, "r+b") as fh:
            if n_header is not None and n_header != n:  # the header first: a crash now leaves a file cut the same way
                first_step, interval = struct.unpack("<2i", fh.read(20)[12:20])
                fh.seek(8)
                fh.write(struct.pack("<i", n))
                fh.seek(20)
                fh.write(struct.pack("<i", first_step + max(n - 1, 0) * interval))
                fh.flush()
            fh.truncate(end)
        what = f"{size - end} bytes of a frame" if size > end else "a frame counted in the header but never written"
        warnings.warn(f"{self.path}: its last frame is incomplete ({what}: a run crashed while writing it); cut off "
                      f"before appending, the file holds its {n} complete frames", LoadWarning, stacklevel=4)

    def _check_h5(self):
        self._tables()
        from mdtraj.formats import HDF5TrajectoryFile

        try:
            with HDF5TrajectoryFile(self.path, "r") as h:
                top = h.topology
        except Exception as err:  # noqa: BLE001 - PyTables raises many kinds for a file that is not HDF5
            raise self._mismatch(f"it is not an HDF5 trajectory ({str(err).splitlines()[0]})") from None
        if top is None:
            raise self._mismatch("it has no topology")
        self._check_atoms(_atom_names(top))

    # ------------------------------------------------------------------ DCD (openmm.app.DCDFile, Å)
    def _open_dcd(self, appending):
        from openmm.app import DCDFile

        self._dcd_first = None
        if appending:
            self.n_frames, first_step, interval, dt_ps = _dcd_header(self.path)[:4]
            self._fh = open(self.file_path, "r+b")
            self._dcd = DCDFile(self._fh, self._omm_topology, dt_ps, first_step, interval, append=True)
        else:
            self._fh = open(self.file_path, "wb")
            self._dcd = None  # DCDFile writes its header at once; the first frames tell the sampling

    def _write_dcd(self, xyz, time, step):
        from openmm.app import DCDFile

        if self._dcd_first is not None:
            x0, t0, s0 = self._dcd_first
            self._dcd_first = None
            if step is not None:
                # the header came from a single frame; now that the steps between frames are known, write it again
                xyz, step = np.concatenate([x0[None], xyz]), np.concatenate([[s0], step])
                time = None if time is None or t0 is None else np.concatenate([[t0], time])
                self._fh.seek(0)
                self._fh.truncate()
                self._dcd = None
        if self._dcd is None:
            first_step, interval, dt_ps = _dcd_sampling(step, time)
            self._dcd = DCDFile(self._fh, self._omm_topology, dt_ps, first_step, interval)
            if step is not None and len(step) == 1:
                self._dcd_first = (xyz[0], None if time is None else time[0], step[0])
        for frame in xyz:
            self._dcd.writeModel(frame)  # nm in, Å in the file; DCDFile flushes every frame

    # ------------------------------------------------------------------ XTC (OpenMM's XTC frame writer, nm)
    def _open_xtc(self, appending):
        if appending:
            from openmm.app.internal.xtc_utils import get_xtc_nframes

            # a file whose only frame was cut off (_cut_torn_frame) is empty now: the reader cannot count nothing
            self.n_frames = get_xtc_nframes(self.file_path.encode()) if os.path.getsize(self.file_path) else 0
        else:
            open(self.file_path, "wb").close()

    def _write_xtc(self, xyz, time, step):
        # openmm.app.XTCFile derives every frame's step and time from (first step, interval, dt) and recounts the
        # file's frames whenever it is opened; these frames carry their own time and step (repeated when one CG
        # frame gets several samples, with gaps where bad frames are skipped), so its frame writer is used directly.
        from openmm.app.internal.xtc_utils import xtc_write_frame

        n = len(xyz)
        t = np.arange(self.n_frames, self.n_frames + n) if time is None else time
        s = np.arange(self.n_frames, self.n_frames + n) if step is None else step
        box = np.zeros((3, 3), dtype=np.float32)
        size = os.path.getsize(self.file_path)
        for frame, ti, si in zip(xyz.astype(np.float32), t, s):
            xtc_write_frame(self.file_path.encode(), frame, box, np.float32(ti), np.int32(si))  # opens, appends, closes
        if os.path.getsize(self.file_path) <= size:
            # xtc_write_frame ignores the results of fwrite and fclose: a full disk would lose frames silently
            raise OSError(errno.EIO, "the XTC writer wrote nothing (disk full?)")

    # ------------------------------------------------------------------ PDB (openmm.app.PDBFile, Å)
    def _open_pdb(self, appending):
        from openmm.app import PDBFile

        if appending:
            # continue after the last complete model: drop END and CONECT records, count the models
            with open(self.file_path, "rb") as fh:
                data = fh.read()
            end = data.rfind(b"ENDMDL")
            if end < 0:
                raise self._mismatch("it has no complete MODEL")
            end = data.index(b"\n", end) + 1 if b"\n" in data[end:] else len(data)
            self.n_frames = data[:end].count(b"\nMODEL ") + data[:end].startswith(b"MODEL ")
            self._fh = open(self.file_path, "r+", newline="\n")
            self._fh.seek(end)
            self._fh.truncate()
        else:
            self._fh = open(self.file_path, "w", newline="\n")
            PDBFile.writeHeader(self._omm_topology, self._fh)
            self._fh.flush()

    def _write_pdb(self, xyz, time, step):
        for i, frame in enumerate(xyz):
            if time is not None or step is not None:
                t = f" t= {float(time[i]):.5f}" if time is not None else ""
                s = f" step= {int(step[i])}" if step is not None else ""
                self._fh.write(f"TITLE     openmm-backmap{t}{s}\n")
            write_pdb_model(self._fh, self._omm_topology, frame, model=(self.n_frames + i) % 9999 + 1)
        self._fh.flush()

    # ------------------------------------------------------------------ HDF5 (mdtraj + PyTables, nm)
    def _tables(self):
        try:
            import tables
        except ImportError:
            raise InputError('writing .h5 files needs PyTables: pip install "openmm-backmap[h5]" (or pip install '
                             'tables); or write .dcd, .xtc or .pdb instead') from None
        return tables

    def _open_h5(self, appending):
        self._tables()
        from mdtraj.formats import HDF5TrajectoryFile

        if appending:
            self._h5 = HDF5TrajectoryFile(self.file_path, "a")
            self.n_frames = len(self._h5)
        else:
            self._h5 = HDF5TrajectoryFile(self.file_path, "w", force_overwrite=True)
            self._h5.topology = self.topology

    def _write_h5(self, xyz, time, step):
        self._h5.write(xyz.astype(np.float32), time=None if time is None else np.asarray(time, dtype=np.float32))
        self._h5.flush()

    # ------------------------------------------------------------------ public
    def write(self, xyz_nm, time_ps=None, step=None):
        """Append frames and flush them to disk.

        Parameters
        ----------
        xyz_nm : array, (F, A, 3) or (A, 3), nm
            Coordinates in the atom order of ``topology``.
        time_ps : array of float, (F,), ps, optional
            Simulation time of every frame.
        step : array of int, (F,), optional
            Integration step of every frame.

        Raises
        ------
        InputError
            Wrong shape or non-finite coordinates, or the writer is closed.
        OutputWriteError
            The write failed (disk full, permissions); the writer is then
            aborted (see :meth:`abort`).

        Examples
        --------
        >>> w.write(xyz_nm, time_ps=[2.0, 4.0], step=[200, 400])  # doctest: +SKIP
        """
        if self._closed:
            raise InputError(f"{self.path}: the writer is closed")
        xyz = np.asarray(xyz_nm, dtype=np.float64)
        if xyz.ndim == 2:
            xyz = xyz[None]
        if xyz.ndim != 3 or xyz.shape[1:] != (self.n_atoms, 3):
            raise InputError(f"frames have shape {xyz.shape}; {self.path} needs (frames, {self.n_atoms}, 3) in nm")
        if not np.isfinite(xyz).all():
            raise InputError("frames contain NaN or infinite coordinates")
        n = len(xyz)
        time = None if time_ps is None else np.atleast_1d(np.asarray(time_ps, dtype=np.float64))
        step = None if step is None else np.atleast_1d(np.asarray(step, dtype=np.int64))
        for name, arr in (("time_ps", time), ("step", step)):
            if arr is not None and len(arr) != n:
                raise InputError(f"{name} has {len(arr)} entries for {n} frames")
        if n == 0:
            return
        try:
            if not self._opened:
                self._open()
            getattr(self, f"_write_{self.format}")(xyz, time, step)
            if self._topology_due:
                self._write_topology(xyz[0])
        except OSError as err:
            self.abort()
            if isinstance(err, UserError):
                raise
            raise self._write_error(err) from None
        self.n_frames += n

    def flush(self):
        """Flush buffered output (every :meth:`write` already does).

        Examples
        --------
        >>> w.flush()  # doctest: +SKIP
        """
        fh = getattr(self, "_fh", None)
        if fh is not None and not fh.closed:
            fh.flush()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self):
        """Finish and close the file (idempotent).

        Examples
        --------
        >>> w.close(); w.closed  # doctest: +SKIP
        True
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._close_file(footer=True)
        except OSError as err:
            self._discard()
            if isinstance(err, UserError):
                raise
            raise self._write_error(err) from None
        if self._atomic is not None and self._opened:  # no frame, no file
            self._atomic.commit()
            if self._atomic_topology is not None and not self._topology_due:
                self._atomic_topology.commit()

    def abort(self):
        """Close without finishing: an ``atomic`` writer removes its partial file and partial topology file (an
        existing topology file is left as it was); otherwise the frames written so far stay (idempotent).

        Examples
        --------
        >>> w.abort(); w.closed  # doctest: +SKIP
        True
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._close_file(footer=self._atomic is None)
        except OSError:
            pass  # the frames written so far are flushed; nothing more can be saved
        self._discard()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def _close_file(self, footer):
        fh = getattr(self, "_fh", None)
        if self.format == "pdb" and fh is not None:
            if footer:
                from openmm.app import PDBFile

                PDBFile.writeFooter(self._omm_topology, fh)
            fh.close()
        elif self.format == "dcd" and fh is not None:
            fh.close()
        elif self.format == "h5" and getattr(self, "_h5", None) is not None:
            self._h5.close()

    def _discard(self):
        """Remove what an ``atomic`` writer wrote; other writers keep their frames."""
        for atomic in (self._atomic, self._atomic_topology):
            if atomic is not None:
                atomic.discard()

    def _write_error(self, err):
        if self._atomic is not None:
            kept = (f"after {self.n_frames} frame(s); nothing was kept (the partial file {self.file_path} was "
                    "removed)")
        else:
            kept = f"after {self.n_frames} frame(s); the {self.n_frames} complete frame(s) are in {self.path}"
        return output_write_error(self.path, err, kept)

    def __repr__(self):
        return (f"TrajectoryWriter({self.path!r}, format={self.format!r}, atoms={self.n_atoms}, "
                f"frames={self.n_frames}, closed={self._closed})")
