"""Output paths: which formats can be written, writability and overwrite checks, safe (atomic) writes, and the
topology PDB beside a trajectory.

Every whole output is written under :func:`partial_path` and renamed to its
final name only when complete (:class:`AtomicOutput`), so a failed run
never leaves an empty or half-written file under the final name. PDB text is
written by OpenMM's :class:`openmm.app.PDBFile` (coordinates in Å inside the
file, nm everywhere else).
"""

from __future__ import annotations

import errno
import os
import warnings

import numpy as np

from ..structure.constants import ANGSTROM_PER_NM
from ..structure.errors import InputError, OutputExistsError, OutputWriteError, UserError, option_name

__all__ = ["WRITER_EXTENSIONS", "TOPOLOGY_REMARK", "PARTIAL_INFIX", "writer_format", "as_mdtraj_topology",
           "pdb_topology", "topology_pdb_text", "write_pdb_model", "write_topology_pdb", "topology_path_for",
           "plan_topology_file",
           "check_writable", "check_output_path", "partial_path", "AtomicOutput", "StalePartialWarning",
           "output_write_error"]

#: Output formats :class:`~openmm_backmap.io.TrajectoryWriter` writes, by file extension.
WRITER_EXTENSIONS = (".dcd", ".xtc", ".pdb", ".h5")

#: First line of the topology PDB files written beside trajectories.
TOPOLOGY_REMARK = "REMARK   1 openmm-backmap topology"

#: Inserted before the extension of an output while it is being written: ``run.dcd`` -> ``run.partial.dcd``.
PARTIAL_INFIX = ".partial"


class StalePartialWarning(UserWarning):
    """A partial output left by a run that did not finish (killed, or crashed hard) was replaced."""


def partial_path(path) -> str:
    """The name ``path`` is written under until it is complete: ``OUT.partial.EXT``.

    The extension is kept, so that a partial file left by a killed run opens
    in mdtraj or a viewer (up to its last complete frame).

    Examples
    --------
    >>> partial_path('out/run.dcd')
    'out/run.partial.dcd'
    >>> partial_path('model.pt')
    'model.partial.pt'
    """
    head, name = os.path.split(os.fspath(path))
    stem, ext = os.path.splitext(name)
    return os.path.join(head, stem + PARTIAL_INFIX + ext)


def output_write_error(path, err, kept="") -> OutputWriteError:
    """The one-line :class:`OutputWriteError` for an ``OSError`` raised while writing ``path``.

    Parameters
    ----------
    path : str
        The output (final name).
    err : OSError
    kept : str, optional
        What was written and where, e.g. ``"after 120 frames; nothing was kept"``.

    Examples
    --------
    >>> import errno
    >>> print(output_write_error('out.dcd', OSError(errno.ENOSPC, 'No space left on device'), 'after 3 frames'))
    cannot write out.dcd: No space left on device after 3 frames; free disk space (or raise the quota) and run again
    """
    reason = err.strerror or str(err) or type(err).__name__
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free disk space (or raise the quota) and run again"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose a writable output location"
    else:
        fix = "check the output location (free space, permissions) and run again"
    return OutputWriteError(f"cannot write {path}: {reason}{' ' + kept if kept else ''}; {fix}")


class AtomicOutput:
    """Write a file under :func:`partial_path` and rename it to its final name only when it is complete.

    As a context manager it gives the partial name to write to; the file is
    renamed (``os.replace``) when the block ends normally and removed when it
    raises, so a failed run leaves nothing under either name. An ``OSError``
    from the block (disk full, permission denied) becomes a one-line
    :class:`OutputWriteError`. A partial file left by a run that was killed is
    replaced, with a :class:`StalePartialWarning`. Objects that keep a file
    open (:class:`~openmm_backmap.io.TrajectoryWriter`) call :meth:`commit` or
    :meth:`discard` themselves.

    Parameters
    ----------
    path : str or path
        Final name.

    Attributes
    ----------
    final : str
        Final name.
    path : str
        Partial name, written to until :meth:`commit`.

    Examples
    --------
    >>> import os, tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), 'summary.json')
    >>> with AtomicOutput(out) as tmp:
    ...     with open(tmp, 'w') as fh:
    ...         _ = fh.write('{}')
    ...     os.path.exists(out)
    False
    >>> os.path.exists(out), os.path.exists(partial_path(out))
    (True, False)
    """

    def __init__(self, path):
        self.final = os.fspath(path)
        self.path = partial_path(self.final)
        if os.path.lexists(self.path):
            warnings.warn(f"replacing {self.path}, left by an earlier run that did not finish", StalePartialWarning,
                          stacklevel=3)
            self.discard()

    def commit(self):
        """Rename the partial file to the final name (replacing an existing file)."""
        try:
            os.replace(self.path, self.final)
        except OSError as err:
            self.discard()
            raise output_write_error(self.final, err, "(renaming the finished file); nothing was kept") from None

    def discard(self):
        """Remove the partial file, if any."""
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self.path

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
            return False
        self.discard()
        if isinstance(exc, OSError) and not isinstance(exc, UserError):
            raise output_write_error(self.final, exc, "; nothing was kept") from None
        return False


def writer_format(path) -> str:
    """The output format of ``path`` by its extension (``'dcd'``, ``'xtc'``, ``'pdb'`` or ``'h5'``).

    Examples
    --------
    >>> writer_format('out/run1.DCD')
    'dcd'
    """
    p = os.fspath(path).lower()
    for ext in WRITER_EXTENSIONS:
        if p.endswith(ext):
            return ext[1:]
    raise InputError(f"cannot write {os.fspath(path)!r}: unknown output extension; use one of "
                     f"{', '.join(WRITER_EXTENSIONS)}")


def as_mdtraj_topology(topology):
    """An mdtraj Topology of an mdtraj or OpenMM topology.

    Examples
    --------
    >>> from openmm_backmap.structure import build_topology
    >>> as_mdtraj_topology(build_topology(['GLY']).to_openmm()).n_atoms
    4
    """
    import mdtraj as md

    if isinstance(topology, md.Topology):
        return topology
    if hasattr(topology, "atoms") and hasattr(topology, "getNumAtoms"):  # openmm.app.Topology
        return md.Topology.from_openmm(topology)
    raise TypeError(f"topology must be an mdtraj or OpenMM Topology, got {type(topology).__name__}")


def pdb_topology(topology):
    """The OpenMM Topology :func:`write_pdb_model` writes, with a chain letter for chains that have no identifier.

    A chain break (a residue whose N is not bonded to the C before it, in a
    topology that has bonds) starts a new chain with the same identifier,
    so that the PDB gets a TER record there: PDB readers (OpenMM, mdtraj)
    otherwise bond consecutive residues of one chain into a peptide bond
    across the gap.

    Examples
    --------
    >>> import mdtraj as md
    >>> top = md.Topology()
    >>> atom = top.add_atom('CA', md.element.carbon, top.add_residue('GLY', top.add_chain()))
    >>> [c.id for c in pdb_topology(top).chains()]
    ['A']
    >>> from openmm_backmap.structure import build_topology
    >>> [c.id for c in pdb_topology(build_topology(['GLY', 'ALA', 'SER'], [True, False, True])).chains()]
    ['A', 'A']
    """
    top = as_mdtraj_topology(topology)
    omm = top.to_openmm()
    for chain, omm_chain in zip(top.chains, omm.chains()):
        if not chain.chain_id:
            omm_chain.id = chr(ord("A") + chain.index % 26)
    return _split_at_breaks(omm)


def _split_at_breaks(omm):
    """``omm``, or a copy of it with a new chain (same identifier) at every chain break."""
    bonded = {frozenset((a.index, b.index)) for a, b in omm.bonds()}
    if not bonded:
        return omm  # without bonds nothing tells a break from a peptide bond

    def atom(residue, name):
        return next((a.index for a in residue.atoms() if a.name == name), None)

    breaks = set()
    for chain in omm.chains():
        residues = list(chain.residues())
        for prev, res in zip(residues, residues[1:]):
            c, n = atom(prev, "C"), atom(res, "N")
            if c is not None and n is not None and frozenset((c, n)) not in bonded:
                breaks.add(res.index)
    if not breaks:
        return omm
    # OpenMM's Topology cannot split a chain in place (nor can mdtraj's): copy it
    from openmm.app import Topology

    out = Topology()
    out.setPeriodicBoxVectors(omm.getPeriodicBoxVectors())
    new_atom = {}
    for chain in omm.chains():
        new_chain = None
        for res in chain.residues():
            if new_chain is None or res.index in breaks:
                new_chain = out.addChain(chain.id)
            new_res = out.addResidue(res.name, new_chain, res.id, res.insertionCode)
            for a in res.atoms():
                new_atom[a.index] = out.addAtom(a.name, a.element, new_res, a.id)
    for bond in omm.bonds():
        out.addBond(new_atom[bond[0].index], new_atom[bond[1].index], bond.type, bond.order)
    return out


def write_pdb_model(fh, omm_topology, xyz_nm, model=None):
    """Write one structure's ATOM/TER records (inside MODEL/ENDMDL when ``model`` is given) to ``fh``.

    Residue numbers and chain identifiers of the topology are kept where
    they fit the PDB columns.

    Parameters
    ----------
    fh : text file
    omm_topology : openmm.app.Topology
    xyz_nm : array, (A, 3), nm
    model : int, optional
        MODEL number.

    Raises
    ------
    InputError
        A coordinate does not fit the PDB format (\\|x\\| >= 10000 Å).

    Examples
    --------
    >>> import io, numpy as np
    >>> from openmm_backmap.structure import build_topology
    >>> fh = io.StringIO()
    >>> write_pdb_model(fh, build_topology(['GLY']).to_openmm(), np.zeros((4, 3)))
    >>> fh.getvalue().splitlines()[1][:26]
    'ATOM      2  CA  GLY A   1'
    """
    from openmm.app import PDBFile

    try:
        PDBFile.writeModel(omm_topology, np.asarray(xyz_nm, dtype=np.float64) * ANGSTROM_PER_NM, fh,
                           modelIndex=model, keepIds=True)
    except ValueError as err:  # PDBFile's fixed-width overflow
        raise InputError(f"coordinates do not fit the PDB format (|x| < 10000 Å): {err}") from None


def topology_pdb_text(topology, xyz_nm=None, title=None) -> str:
    """PDB text of one structure of ``topology``: the topology file beside a trajectory, or a model file's topology.

    Parameters
    ----------
    topology : mdtraj.Topology or openmm.app.Topology
    xyz_nm : array, (A, 3), nm, optional
        Coordinates to write (zeros if not given).
    title : str, optional
        Added to the first REMARK line.

    Returns
    -------
    str

    Examples
    --------
    >>> from openmm_backmap.structure import build_topology
    >>> topology_pdb_text(build_topology(['GLY'])).splitlines()[0]
    'REMARK   1 openmm-backmap topology'
    """
    import io

    from openmm.app import PDBFile

    top = pdb_topology(topology)
    n_atoms = top.getNumAtoms()
    xyz = np.zeros((n_atoms, 3)) if xyz_nm is None else np.asarray(xyz_nm, dtype=np.float64).reshape(-1, 3)
    if len(xyz) != n_atoms:
        raise InputError(f"{len(xyz)} coordinates for a topology of {n_atoms} atoms")
    out = io.StringIO()
    out.write(TOPOLOGY_REMARK + (f" for {title}" if title else "") + "\n")
    write_pdb_model(out, top, xyz)
    PDBFile.writeFooter(top, out)
    return out.getvalue()


def write_topology_pdb(path, topology, xyz_nm=None, title=None):
    """Write :func:`topology_pdb_text` to ``path`` (the topology file beside a trajectory).

    Returns
    -------
    str
        The path written.

    Examples
    --------
    >>> from openmm_backmap.structure import build_topology
    >>> write_topology_pdb('/tmp/ga.pdb', build_topology(['GLY', 'ALA']))  # doctest: +SKIP
    '/tmp/ga.pdb'
    """
    text = topology_pdb_text(topology, xyz_nm, title)
    with AtomicOutput(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)
    return os.fspath(path)


def _is_own_topology(path) -> bool:
    try:
        with open(path) as fh:
            return fh.readline().startswith(TOPOLOGY_REMARK)
    except (OSError, UnicodeDecodeError):
        return False


def topology_path_for(path, append=False, force=False):
    """Where :class:`~openmm_backmap.io.TrajectoryWriter` puts the topology PDB of trajectory ``path``.

    ``<stem>.pdb`` unless that file exists and was not written by
    openmm-backmap (e.g. the input structure), then ``<stem>_topology.pdb``.

    Parameters
    ----------
    path : str or path
        The trajectory.
    append, force : bool
        As given to the writer; ``force`` lets the second name be overwritten.

    Returns
    -------
    str or None
        None for PDB trajectories (they carry their topology).

    Raises
    ------
    OutputExistsError
        Both names hold files openmm-backmap did not write, and ``force`` is not set.

    Examples
    --------
    >>> topology_path_for('/nonexistent/run.xtc')
    '/nonexistent/run.pdb'
    >>> topology_path_for('/nonexistent/run.pdb') is None
    True
    """
    path = os.fspath(path)
    if writer_format(path) == "pdb":
        return None
    stem = path[: -len(os.path.splitext(path)[1])]
    candidates = [stem + ".pdb", stem + "_topology.pdb"]
    for c in candidates:
        if not os.path.exists(c) or _is_own_topology(c):
            return c
    if force:
        return candidates[1]
    raise OutputExistsError(f"{candidates[0]} and {candidates[1]} exist and were not written by openmm-backmap; "
                            f"use {option_name('--force', 'force=True')} to overwrite the second, or choose another "
                            "output name")


#: Trajectory formats that have no topology but the PDB beside them (HDF5 files carry their own).
_NEEDS_TOPOLOGY = (".dcd", ".xtc")


def _topology_records(lines):
    """The records of PDB text that make a topology (atom, residue, chain and TER records without coordinates, and
    CONECT records): two files with equal records describe the same atoms in the same order."""
    out = []
    for line in lines:
        record = line[:6]
        if record in ("ATOM  ", "HETATM"):
            out.append(line[:30] + line[54:].rstrip())
        elif record.rstrip() in ("TER", "CONECT"):
            out.append(line.rstrip())
    return out


def _same_topology(path, text) -> bool:
    try:
        with open(path, errors="replace") as fh:
            old = _topology_records(fh)
    except OSError:
        return False
    return old == _topology_records(text.splitlines())


def _other_users(top_path, path):
    """Existing DCD and XTC files other than ``path`` whose topology file is ``top_path`` (same stem)."""
    stem = os.path.splitext(os.fspath(path))[0]
    return [stem + ext for ext in _NEEDS_TOPOLOGY if os.path.abspath(stem + ext) != os.path.abspath(path)
            and os.path.exists(stem + ext) and os.path.dirname(top_path) == os.path.dirname(stem + ext)]


def _append_topology(path):
    """The topology file an existing trajectory was written with: the first of ``<stem>.pdb`` (openmm-backmap's),
    ``<stem>_topology.pdb``, ``<stem>.pdb`` (any) that exists, or None."""
    stem = path[: -len(os.path.splitext(path)[1])]
    own, second = stem + ".pdb", stem + "_topology.pdb"
    if os.path.exists(own) and _is_own_topology(own):
        return own
    return next((c for c in (second, own) if os.path.exists(c)), None)


def plan_topology_file(path, topology, append=False, force=False):
    """Where the topology PDB of trajectory ``path`` goes, and whether a writer writes it.

    The rules (see docs/reliability.md):

    * appending to an existing file uses the topology it was written with
      (``<stem>.pdb`` or ``<stem>_topology.pdb``); a DCD or XTC file without
      it cannot be appended to, since nothing else tells which atoms it holds;
    * a new trajectory writes ``<stem>.pdb`` (:func:`topology_path_for`),
      except when that file is the topology of another existing trajectory of
      the same stem (``run.dcd`` beside a new ``run.xtc``): then it is kept
      when it describes the same atoms, and is not replaced without ``force``
      when it does not.

    Parameters
    ----------
    path : str or path
        The trajectory.
    topology : mdtraj.Topology or openmm.app.Topology
        The atoms of the frames to write.
    append, force : bool
        As given to the writer.

    Returns
    -------
    (str or None, bool)
        The topology file (None for PDB trajectories, which carry their own)
        and whether to write it (False: an existing file that fits is kept).

    Raises
    ------
    InputError
        Appending to a DCD or XTC file whose topology file is missing.
    OutputExistsError
        The topology file belongs to another trajectory, describes other
        atoms, and ``force`` is not set.

    Examples
    --------
    >>> from openmm_backmap.structure import build_topology
    >>> plan_topology_file('/nonexistent/run.xtc', build_topology(['GLY']))
    ('/nonexistent/run.pdb', True)
    """
    path = os.fspath(path)
    if writer_format(path) == "pdb":
        return None, False
    if append and os.path.exists(path) and os.path.getsize(path) > 0:
        found = _append_topology(path)
        if found is not None:
            return found, False
        if path.lower().endswith(_NEEDS_TOPOLOGY):
            stem = path[: -len(os.path.splitext(path)[1])]
            raise InputError(f"cannot append to {path}: its topology file {stem}.pdb is missing, so nothing tells "
                             "which atoms the file holds; put the topology PDB it was written with back at "
                             f"{stem}.pdb (or {stem}_topology.pdb), or write a new file")
    top_path = topology_path_for(path, force=force)
    users = _other_users(top_path, path) if os.path.exists(top_path) else []
    if not users:
        return top_path, True
    if _same_topology(top_path, topology_pdb_text(topology)):
        return top_path, False  # it serves both: leave it as it is
    if not force:
        raise OutputExistsError(f"{top_path} is the topology of {' and '.join(users)}, and the frames for {path} "
                                f"have other atoms; choose another output name (or use "
                                f"{option_name('--force', 'force=True')} to replace it: {' and '.join(users)} then "
                                "lose their topology)")
    warnings.warn(f"replacing {top_path}, the topology of {', '.join(users)}, with that of {path} (force): "
                  f"{' and '.join(users)} no longer read with it", UserWarning, stacklevel=3)
    return top_path, True


def check_writable(path, force=False, append=None) -> str:
    """Check, before any work is done, that a file can be written at ``path``.

    Missing directories are fine when they can be created (writers create
    them). Permissions are judged by ``os.access``.

    Parameters
    ----------
    path : str or path
    force : bool
        An existing file may be replaced.
    append : bool, optional
        An existing file may be added to (None: the output cannot be appended to).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    InputError
        ``path`` is a directory, its directory is a file or is not writable,
        or the file to append to is read-only.
    OutputExistsError
        ``path`` exists and neither ``force`` nor ``append`` is set.

    Examples
    --------
    >>> check_writable('/')
    Traceback (most recent call last):
    ...
    openmm_backmap.structure.errors.InputError: / is a directory; give an output file name
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory; give an output file name")
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(directory):  # the writers create missing directories below the first that exists
        directory = os.path.dirname(directory)
    if not os.path.isdir(directory):
        raise InputError(f"cannot write {path}: {directory} is a file, not a directory; choose another output path")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {path}: the directory {directory} is not writable; choose another output "
                         "directory or make it writable")
    if os.path.exists(path):
        if append and not os.access(path, os.W_OK):
            raise InputError(f"cannot append to {path}: the file is read-only; make it writable or write a new file")
        if not (append or force):
            how = f" or {option_name('--append', 'append=True')} to add frames to it" if append is not None else ""
            raise OutputExistsError(f"{path} already exists; use {option_name('--force', 'force=True')} to overwrite "
                                    f"it{how}")
    return path


def check_output_path(path, append=False, force=False) -> str:
    """Check that :class:`~openmm_backmap.io.TrajectoryWriter` could write ``path``, before any work is done.

    The extension must be a :data:`WRITER_EXTENSIONS` one; the rest is
    :func:`check_writable`.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    InputError
        Unknown extension, ``path`` is a directory or cannot be written.
    OutputExistsError
        ``path`` exists and neither ``append`` nor ``force`` is set.

    Examples
    --------
    >>> check_output_path('out.mol2')
    Traceback (most recent call last):
    ...
    openmm_backmap.structure.errors.InputError: cannot write 'out.mol2': unknown output extension; use one of .dcd, .xtc, .pdb, .h5
    """
    path = os.fspath(path)
    writer_format(path)
    return check_writable(path, force=force, append=bool(append))
