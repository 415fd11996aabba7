"""Reading structures and trajectories into canonical protein ensembles.

All coordinates returned here are in nm. PDB files (plain or gzipped, one or
many models) are parsed model by model, so models with different atom sets
(NMR and IDP ensembles) load; mmCIF goes through OpenMM's PDBx reader and
trajectories (DCD, XTC, HDF5, ...) through mdtraj with a topology file.

Anything that is changed on the way in is reported with a
:class:`LoadWarning`: residues that are not standard amino acids (waters,
ions, ligands) are dropped, alternate locations keep the first one, atoms a
template does not know are ignored, missing atoms are masked, never invented.
"""

from __future__ import annotations

import gzip
import io as _io
import os
import warnings
from collections import Counter, OrderedDict
from dataclasses import dataclass

import numpy as np

from ..structure.ensemble import ProteinEnsemble
from ..structure.segments import detect_segment_starts
from ..structure.templates import TEMPLATES, atom_layout, canonical_atom_name, canonical_residue_name
from ..structure.errors import InputError, LoadWarning, MissingFileError, OutputExistsError

__all__ = ["LoadWarning", "load_ensemble", "TRAJECTORY_EXTENSIONS", "STRUCTURE_EXTENSIONS",
           "TrajectoryWriter", "WRITER_EXTENSIONS", "write_topology_pdb", "topology_path_for",
           "check_output_path"]

STRUCTURE_EXTENSIONS = (".pdb", ".pdb.gz", ".ent", ".ent.gz", ".cif", ".cif.gz", ".pdbx", ".mmcif")
TRAJECTORY_EXTENSIONS = (".dcd", ".xtc", ".trr", ".h5", ".nc", ".netcdf", ".lh5", ".binpos")


@dataclass
class _Residue:
    chain: str
    number: int
    icode: str
    name: str  # as in the file


def _is_hydrogen(name: str, element: str) -> bool:
    # No heavy atom of a standard residue has a name starting with H, and
    # element columns are often missing or guessed wrongly (HG3 -> mercury).
    return element.upper() in ("H", "D") or name.lstrip("0123456789")[:1] == "H"


class _Canonicalizer:
    """Collects what is dropped/renamed while mapping residues onto templates."""

    def __init__(self, source):
        self.source = source
        self.dropped_residues = Counter()
        self.unknown_atoms = Counter()
        self.renamed = Counter()
        self.altlocs = 0
        self.oxt = 0

    def residue_map(self, residues, atom_names_per_residue):
        """Return (sequence, kept residue indices, per kept residue {template atom: source index})."""
        sequence, kept, atom_maps = [], [], []
        for i, (res, atoms) in enumerate(zip(residues, atom_names_per_residue)):
            canon = canonical_residue_name(res.name)
            if canon is None:
                self.dropped_residues[res.name] += 1
                continue
            if canon != res.name:
                self.renamed[f"{res.name}->{canon}"] += 1
            template = TEMPLATES[canon].atoms
            amap = {}
            for name, idx in atoms:
                cname = canonical_atom_name(canon, name)
                if cname == "OXT":
                    self.oxt += 1
                    continue
                if cname in template:
                    amap.setdefault(cname, idx)
                else:
                    self.unknown_atoms[f"{canon}:{name}"] += 1
            if "CA" not in amap:
                self.dropped_residues[f"{res.name} without CA"] += 1
                continue
            sequence.append(canon)
            kept.append(i)
            atom_maps.append(amap)
        return sequence, kept, atom_maps

    def report(self, n_missing, n_frames_missing):
        src = os.path.basename(self.source)
        if self.dropped_residues:
            n = sum(self.dropped_residues.values())
            top = ", ".join(f"{k} x{v}" for k, v in self.dropped_residues.most_common(6))
            warnings.warn(f"{src}: dropped {n} residue(s) that are not standard amino acids ({top})",
                          LoadWarning, stacklevel=3)
        if self.renamed:
            top = ", ".join(f"{k} x{v}" for k, v in self.renamed.most_common(6))
            warnings.warn(f"{src}: renamed residues to their standard names ({top})", LoadWarning, stacklevel=3)
        if self.unknown_atoms:
            n = sum(self.unknown_atoms.values())
            top = ", ".join(f"{k} x{v}" for k, v in self.unknown_atoms.most_common(6))
            warnings.warn(f"{src}: ignored {n} heavy atom(s) that no template has ({top})", LoadWarning, stacklevel=3)
        if self.altlocs:
            warnings.warn(f"{src}: {self.altlocs} atom(s) had alternate locations; kept the first of each",
                          LoadWarning, stacklevel=3)
        if n_missing:
            warnings.warn(f"{src}: {n_missing} heavy atom(s) missing in {n_frames_missing} frame(s); "
                          "they are masked (NaN), not invented", LoadWarning, stacklevel=3)


def _open_text(path):
    if str(path).endswith(".gz"):
        return _io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _group_atoms(atoms):
    """Group (residue key, atom name, xyz) records into residues."""
    residues = OrderedDict()
    coords = []
    for key, name, xyz in atoms:
        residues.setdefault(key, []).append((name, len(coords)))
        coords.append(xyz)
    res = [_Residue(k[0], k[1], k[2], k[3]) for k in residues]
    return res, list(residues.values()), np.array(coords, dtype=np.float64).reshape(-1, 3)


def _parse_pdb_models(path, canon):
    """Yield (residues, atom names per residue, coords Å) for each model of a PDB file."""
    atoms, seen = [], set()
    with _open_text(path) as fh:
        for line in fh:
            rec = line[:6]
            if rec in ("ATOM  ", "HETATM"):
                name = line[12:16].strip()
                element = line[76:78].strip() if len(line) >= 78 else ""
                if _is_hydrogen(name, element):
                    continue
                alt = line[16]
                resname = line[17:21].strip()
                key = (line[21], int(line[22:26]), line[26], resname)
                if (key, name) in seen:
                    if alt != " ":
                        canon.altlocs += 1
                    continue
                seen.add((key, name))
                atoms.append((key, name, (float(line[30:38]), float(line[38:46]), float(line[46:54]))))
            elif rec == "ENDMDL":
                if atoms:
                    yield _group_atoms(atoms)
                atoms, seen = [], set()
    if atoms:
        yield _group_atoms(atoms)


def _cif_tokens(line):
    out, i, n = [], 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
        elif line[i] in "'\"":
            q = line[i]
            j = i + 1
            while j < n and not (line[j] == q and (j + 1 == n or line[j + 1].isspace())):
                j += 1
            out.append(line[i + 1:j])
            i = j + 1
        else:
            j = i
            while j < n and not line[j].isspace():
                j += 1
            out.append(line[i:j])
            i = j
    return out


def _parse_cif(path, canon):
    """Yield models from the ``_atom_site`` loop of an mmCIF file (model by model, like PDB)."""
    cols, rows, in_loop, reading = [], [], False, False
    with _open_text(path) as fh:
        for line in fh:
            if line.startswith("loop_"):
                if reading:
                    break
                in_loop, cols = True, []
                continue
            if in_loop and line.startswith("_atom_site."):
                cols.append(line.split()[0][len("_atom_site."):])
                continue
            if in_loop and cols and cols[0] and line.strip() and not line.startswith("_"):
                if line.startswith("#"):
                    break
                reading = True
                rows.append(_cif_tokens(line))
            elif in_loop and not line.startswith("_atom_site."):
                in_loop = in_loop and not cols
    if not rows:
        raise InputError(f"{path}: no _atom_site records found")
    c = {k: i for i, k in enumerate(cols)}

    def get(row, *keys):
        for k in keys:
            if k in c and row[c[k]] not in ("?", "."):
                return row[c[k]]
        return ""

    models = OrderedDict()
    for row in rows:
        name = get(row, "auth_atom_id", "label_atom_id")
        if _is_hydrogen(name, get(row, "type_symbol")):
            continue
        resname = get(row, "auth_comp_id", "label_comp_id")
        seq = get(row, "auth_seq_id", "label_seq_id")
        key = (get(row, "auth_asym_id", "label_asym_id"), int(seq) if seq.lstrip("-").isdigit() else 0,
               get(row, "pdbx_PDB_ins_code") or " ", resname)
        model = models.setdefault(get(row, "pdbx_PDB_model_num") or "1", ([], set()))
        if (key, name) in model[1]:
            if get(row, "label_alt_id"):
                canon.altlocs += 1
            continue
        model[1].add((key, name))
        model[0].append((key, name, (float(get(row, "Cartn_x")), float(get(row, "Cartn_y")), float(get(row, "Cartn_z")))))
    for atoms, _ in models.values():
        yield _group_atoms(atoms)


def _assemble(models, source, canon):
    """Turn parsed models into a ProteinEnsemble (coordinates given in Å)."""
    sequence = None
    frames, masks = [], []
    residue_info = None
    for residues, names, xyz in models:
        seq, kept, amaps = canon.residue_map(residues, names)
        if sequence is None:
            sequence, residue_info = seq, [residues[k] for k in kept]
            lay = atom_layout(sequence)
        elif seq != sequence:
            raise InputError(f"{source}: model {len(frames) + 1} has a different residue sequence than model 1; "
                             "load the models as separate ensembles")
        out = np.full((lay.n_atoms, 3), np.nan, dtype=np.float32)
        for r, amap in enumerate(amaps):
            base = lay.residue_start[r]
            atoms = TEMPLATES[sequence[r]].atoms
            for name, idx in amap.items():
                out[base + atoms.index(name)] = xyz[idx] / 10.0
        frames.append(out)
        masks.append(np.isfinite(out).all(-1))
    if not sequence:
        raise InputError(f"{source}: no standard amino-acid residues found")
    xyz = np.stack(frames)
    mask = np.stack(masks)
    missing = ~mask
    canon.report(int(missing.sum()), int(missing.any(1).sum()))
    chain_ids = [r.chain for r in residue_info]
    return ProteinEnsemble(sequence, xyz, mask, detect_segment_starts(xyz, mask, sequence, chain_ids), chain_ids,
                           [r.number for r in residue_info], None, str(source))


def _has_ext(path, exts):
    p = str(path).lower()
    return any(p.endswith(e) for e in exts)


def load_ensemble(path, topology=None, stride=1, frames=None, chunk=None) -> ProteinEnsemble:
    """Load a structure or trajectory as a canonical heavy-atom ensemble.

    Parameters
    ----------
    path : str or path
        PDB (single or multi-model, optionally ``.gz``), mmCIF, or any
        trajectory mdtraj reads (DCD, XTC, HDF5, ...).
    topology : str or path, optional
        Topology file (PDB) for trajectories without one.
    stride : int
        Keep every ``stride``-th frame.
    frames : slice or array of int, optional
        Frames to keep after striding.

    Returns
    -------
    ProteinEnsemble
        Coordinates in nm, canonical atom order, missing atoms NaN and masked.

    Raises
    ------
    FileNotFoundError, ValueError
        With what was wrong and how to fix it.

    Examples
    --------
    >>> ens = load_ensemble('tests/data/trpcage.pdb')  # doctest: +SKIP
    >>> ens.sequence[:3]  # doctest: +SKIP
    ['ASN', 'LEU', 'TYR']
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"input file {path!r} does not exist")
    canon = _Canonicalizer(path)
    if _has_ext(path, TRAJECTORY_EXTENSIONS):
        ens = _load_trajectory(path, topology, stride, canon)
    elif _has_ext(path, (".cif", ".cif.gz", ".pdbx", ".mmcif")):
        ens = _assemble(_stride(_parse_cif(path, canon), stride), path, canon)
    elif _has_ext(path, (".pdb", ".pdb.gz", ".ent", ".ent.gz")):
        ens = _assemble(_stride(_parse_pdb_models(path, canon), stride), path, canon)
    else:
        raise InputError(f"cannot read {path!r}: unknown extension; use one of "
                         f"{', '.join(STRUCTURE_EXTENSIONS + TRAJECTORY_EXTENSIONS)}")
    if frames is not None:
        ens = ens.select_frames(frames)
    return ens


def _stride(models, stride):
    for i, m in enumerate(models):
        if i % stride == 0:
            yield m


def _load_trajectory(path, topology, stride, canon):
    import mdtraj as md

    if topology is None:
        if not path.lower().endswith(".h5"):
            raise InputError(f"{path!r} is a trajectory without a topology; pass one with -t/--topology "
                             "(a PDB of the same atoms)")
        traj = md.load(path, stride=stride)
    else:
        topology = os.fspath(topology)
        if not os.path.exists(topology):
            raise MissingFileError(f"topology file {topology!r} does not exist")
        top = md.load_topology(topology)
        try:
            traj = md.load(path, top=top, stride=stride)
        except ValueError as err:
            raise InputError(f"{path!r} does not match topology {topology!r} ({err}); "
                             "pass the topology the trajectory was written with") from None
    residues, names = [], []
    heavy = []
    for res in traj.topology.residues:
        atoms = []
        for atom in res.atoms:
            el = atom.element.symbol if atom.element is not None else ""
            if _is_hydrogen(atom.name, el):
                continue
            atoms.append((atom.name, len(heavy)))
            heavy.append(atom.index)
        chain = res.chain.chain_id if getattr(res.chain, "chain_id", None) else chr(65 + res.chain.index % 26)
        residues.append(_Residue(chain, res.resSeq, " ", res.name))
        names.append(atoms)
    seq, kept, amaps = canon.residue_map(residues, names)
    if not seq:
        raise InputError(f"{path}: no standard amino-acid residues found")
    lay = atom_layout(seq)
    src = np.full(lay.n_atoms, -1, dtype=np.int64)
    for r, amap in enumerate(amaps):
        atoms = TEMPLATES[seq[r]].atoms
        for name, idx in amap.items():
            src[lay.residue_start[r] + atoms.index(name)] = heavy[idx]
    xyz = np.full((traj.n_frames, lay.n_atoms, 3), np.nan, dtype=np.float32)
    present = src >= 0
    xyz[:, present] = traj.xyz[:, src[present]]
    mask = np.repeat(present[None], traj.n_frames, axis=0)
    canon.report(int((~present).sum()) * traj.n_frames, traj.n_frames if (~present).any() else 0)
    chain_ids = [residues[k].chain for k in kept]
    ens = ProteinEnsemble(seq, xyz, mask, detect_segment_starts(xyz[:50], mask[:50], seq, chain_ids), chain_ids,
                          [residues[k].number for k in kept], np.asarray(traj.time, dtype=np.float64), path)
    return ens


# --------------------------------------------------------------------------
# Writing trajectories
# --------------------------------------------------------------------------
#: Output formats :class:`TrajectoryWriter` writes, by file extension.
WRITER_EXTENSIONS = (".dcd", ".xtc", ".pdb", ".h5")

#: First line of the topology PDB files written beside trajectories.
TOPOLOGY_REMARK = "REMARK   1 openmm-backmap topology"

_AKMA_PS = 0.04888821  # CHARMM/DCD time unit (AKMA) in ps


def _writer_format(path) -> str:
    p = os.fspath(path).lower()
    for ext in WRITER_EXTENSIONS:
        if p.endswith(ext):
            return ext[1:]
    raise InputError(f"cannot write {os.fspath(path)!r}: unknown output extension; use one of "
                     f"{', '.join(WRITER_EXTENSIONS)}")


def _as_mdtraj_topology(topology):
    import mdtraj as md

    if isinstance(topology, md.Topology):
        return topology
    if hasattr(topology, "atoms") and hasattr(topology, "getNumAtoms"):  # openmm.app.Topology
        return md.Topology.from_openmm(topology)
    raise TypeError(f"topology must be an mdtraj or OpenMM Topology, got {type(topology).__name__}")


class _PDBFormatter:
    """Fixed-width PDB ATOM/TER records of a topology (coordinates written in Å)."""

    def __init__(self, topology):
        self.n_atoms = topology.n_atoms
        chain_letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        self.prefix, self.suffix, self.ter_after = [], [], {}
        serial = 1
        for ci, chain in enumerate(topology.chains):
            cid = (getattr(chain, "chain_id", None) or chain_letters[ci % 26])[:1]
            last = None
            for res in chain.residues:
                for atom in res.atoms:
                    sym = atom.element.symbol if atom.element is not None else ""
                    name = atom.name[:4]
                    if len(name) < 4 and name[:1].isalpha() and len(sym) < 2:
                        name = " " + name
                    self.prefix.append(f"ATOM  {serial % 100000:5d} {name:<4s} {res.name[:3]:>3s} {cid}"
                                       f"{res.resSeq % 10000:4d}    ")
                    self.suffix.append(f"  1.00  0.00          {sym[-2:]:>2s}  ")
                    serial += 1
                    last = (atom.index, res, cid)
            if last is not None:
                idx, res, cid = last
                self.ter_after[idx] = f"TER   {serial % 100000:5d}      {res.name[:3]:>3s} {cid}{res.resSeq % 10000:4d}"
                serial += 1

    def lines(self, xyz_angstrom):
        out = []
        for i, (x, y, z) in enumerate(np.asarray(xyz_angstrom, dtype=np.float64)):
            out.append(f"{self.prefix[i]}{_f83(x)}{_f83(y)}{_f83(z)}{self.suffix[i]}")
            if i in self.ter_after:
                out.append(self.ter_after[i])
        return out


def _f83(v):
    s = f"{v:8.3f}"
    if len(s) > 8:
        raise InputError(f"coordinate {v:.1f} Å does not fit the PDB format (|x| < 10000 Å)")
    return s


def write_topology_pdb(path, topology, xyz_nm=None, title=None):
    """Write a single-structure PDB of ``topology`` (the topology file beside a trajectory).

    Parameters
    ----------
    path : str or path
    topology : mdtraj.Topology or openmm.app.Topology
    xyz_nm : array, (A, 3), nm, optional
        Coordinates to write (zeros if not given).
    title : str, optional
        Added to the first REMARK line.

    Returns
    -------
    str
        The path written.

    Examples
    --------
    >>> from openmm_backmap.topology import build_topology
    >>> write_topology_pdb('/tmp/ga.pdb', build_topology(['GLY', 'ALA']))  # doctest: +SKIP
    '/tmp/ga.pdb'
    """
    top = _as_mdtraj_topology(topology)
    xyz = np.zeros((top.n_atoms, 3)) if xyz_nm is None else np.asarray(xyz_nm, dtype=np.float64).reshape(-1, 3)
    if len(xyz) != top.n_atoms:
        raise InputError(f"{len(xyz)} coordinates for a topology of {top.n_atoms} atoms")
    lines = [TOPOLOGY_REMARK + (f" for {title}" if title else "")]
    lines += _PDBFormatter(top).lines(xyz * 10.0)
    lines.append("END")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return os.fspath(path)


def _is_own_topology(path) -> bool:
    try:
        with open(path) as fh:
            return fh.readline().startswith(TOPOLOGY_REMARK)
    except (OSError, UnicodeDecodeError):
        return False


def _pdb_atom_count(path) -> int:
    """Atoms of the first model of a PDB file (ATOM/HETATM records)."""
    n = 0
    with open(path, errors="replace") as fh:
        for line in fh:
            if line.startswith(("ATOM  ", "HETATM")):
                n += 1
            elif line.startswith(("ENDMDL", "END")) and n:
                break
    return n


def topology_path_for(path, append=False, force=False, n_atoms=None):
    """Where :class:`TrajectoryWriter` puts the topology PDB of trajectory ``path``.

    ``<stem>.pdb`` unless that file exists and was not written by
    openmm-backmap (e.g. the input structure), then ``<stem>_topology.pdb``.

    Returns
    -------
    str or None
        None for PDB trajectories (they carry their topology).
    """
    path = os.fspath(path)
    if _writer_format(path) == "pdb":
        return None
    stem = path[: -len(os.path.splitext(path)[1])]
    candidates = [stem + ".pdb", stem + "_topology.pdb"]
    for c in candidates:
        if not os.path.exists(c) or _is_own_topology(c):
            return c
    if force:
        return candidates[1]
    raise OutputExistsError(f"{candidates[0]} and {candidates[1]} exist and were not written by openmm-backmap; "
                          "use --force to overwrite the second, or choose another output name")


def check_output_path(path, append=False, force=False) -> str:
    """Check that :class:`TrajectoryWriter` could write ``path``, before any work is done.

    Raises
    ------
    ValueError
        Unknown extension, or ``path`` is a directory.
    FileExistsError
        ``path`` exists and neither ``append`` nor ``force`` is set.

    Examples
    --------
    >>> check_output_path('out.mol2')  # doctest: +SKIP
    Traceback (most recent call last):
    ValueError: cannot write 'out.mol2': unknown output extension; use one of .dcd, .xtc, .pdb, .h5
    """
    path = os.fspath(path)
    _writer_format(path)
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory; give an output file name")
    if os.path.exists(path) and not (append or force):
        raise OutputExistsError(f"{path} already exists; use --force (force=True) to overwrite it or "
                              "--append (append=True) to add frames to it")
    return path


class TrajectoryWriter:
    """Write heavy-atom (or all-atom) frames incrementally to DCD, XTC, multi-model PDB or HDF5.

    The format is chosen by the extension. Every :meth:`write` is flushed to
    disk, so a crash leaves a readable file up to the last frame written.
    Trajectory formats without a topology (DCD, XTC) get a PDB topology file
    beside them (``<stem>.pdb``, or ``<stem>_topology.pdb`` when ``<stem>.pdb``
    exists and is not an openmm-backmap topology, e.g. the input), written
    when the writer opens and again with the first frame's coordinates; HDF5
    files carry their topology and get one as well, for convenience.

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
        Append to an existing file; its format and atom count must match.
        Without an existing file this starts a new one.
    force : bool
        Overwrite an existing file.

    Attributes
    ----------
    path, format : str
    topology : mdtraj.Topology
    topology_path : str or None
        The PDB topology written beside the trajectory.
    n_atoms : int
    n_frames : int
        Frames in the file (including those already there when appending).

    Raises
    ------
    ValueError
        Unknown extension, or ``append`` with a file of another format or atom count.
    FileExistsError
        The file exists and neither ``append`` nor ``force`` is set.

    Examples
    --------
    >>> import numpy as np
    >>> from openmm_backmap.topology import build_topology
    >>> top = build_topology(['GLY', 'ALA'])
    >>> with TrajectoryWriter('/tmp/ga.dcd', top, force=True) as w:  # doctest: +SKIP
    ...     w.write(np.zeros((2, 9, 3)), time_ps=[0.0, 10.0], step=[0, 1000])
    """

    def __init__(self, path, topology, append=False, force=False):
        self.path = os.fspath(path)
        self.format = _writer_format(self.path)
        self.topology = _as_mdtraj_topology(topology)
        self.n_atoms = self.topology.n_atoms
        self.append = bool(append)
        self.n_frames = 0
        self._closed = True
        check_output_path(self.path, append, force)
        exists = os.path.exists(self.path)
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self.topology_path = topology_path_for(self.path, append, force)
        appending = self.append and exists and os.path.getsize(self.path) > 0
        if appending:
            self._check_existing()
        if self.topology_path is not None:
            if appending and os.path.exists(self.topology_path) and \
                    _pdb_atom_count(self.topology_path) != self.n_atoms:
                raise InputError(f"{self.topology_path} has {_pdb_atom_count(self.topology_path)} atoms but the "
                                 f"frames have {self.n_atoms}; cannot append")
            keep = appending and os.path.exists(self.topology_path)
            if not keep:
                write_topology_pdb(self.topology_path, self.topology, title=os.path.basename(self.path))
            self._topology_has_coordinates = keep
        else:
            self._topology_has_coordinates = True
        self._steps, self._times = [], []
        getattr(self, f"_open_{self.format}")(appending)
        self._closed = False

    # ------------------------------------------------------------------ checks
    def _mismatch(self, what):
        return ValueError(f"cannot append to {self.path}: {what}; write to a new file or use --force to "
                          "overwrite it")

    def _check_existing(self):
        n = None
        fmt = self.format
        if fmt == "dcd":
            with open(self.path, "rb") as fh:
                head = fh.read(100)
            if len(head) < 92 or head[4:8] != b"CORD" or int.from_bytes(head[:4], "little") != 84:
                raise self._mismatch("it is not a DCD file")
            n = self._dcd_natoms()
        elif fmt == "xtc":
            with open(self.path, "rb") as fh:
                head = fh.read(8)
            if len(head) < 8 or int.from_bytes(head[:4], "big") != 1995:
                raise self._mismatch("it is not an XTC file")
            n = int.from_bytes(head[4:8], "big")
        elif fmt == "pdb":
            has_model = False
            with open(self.path, errors="replace") as fh:
                for line in fh:
                    if line.startswith("MODEL "):
                        has_model = True
                        break
            if not has_model:
                raise self._mismatch("it is not a multi-model PDB file (no MODEL records)")
            n = _pdb_atom_count(self.path)
        elif fmt == "h5":
            tables = self._tables()
            try:
                with tables.open_file(self.path, "r") as h:
                    n = int(h.root.coordinates.shape[1])
            except Exception as err:
                raise self._mismatch(f"it is not an HDF5 trajectory ({str(err).splitlines()[0]})") from None
        if n != self.n_atoms:
            raise self._mismatch(f"it has {n} atoms per frame but the new frames have {self.n_atoms}")

    # ------------------------------------------------------------------ DCD (native writer, Å)
    def _dcd_natoms(self):
        import struct

        with open(self.path, "rb") as fh:
            fh.seek(92)
            (title_len,) = struct.unpack("<i", fh.read(4))
            fh.seek(92 + 4 + title_len + 4)
            marker, natoms, _ = struct.unpack("<iii", fh.read(12))
            fh.seek(4 + 4 + 4 * 10)
            (cell_flag,) = struct.unpack("<i", fh.read(4))
        if marker != 4:
            raise self._mismatch("its DCD header is not in the CHARMM format")
        if cell_flag:
            raise self._mismatch("it stores unit cells (not written by openmm-backmap)")
        return natoms

    def _open_dcd(self, appending):
        import struct

        if appending:
            self._fh = open(self.path, "r+b")
            self._fh.seek(8)
            self.n_frames = struct.unpack("<i", self._fh.read(4))[0]
            self._fh.seek(12)
            istart, nsavc = struct.unpack("<ii", self._fh.read(8))
            self._dcd_header = [istart, nsavc]
            self._fh.seek(0, os.SEEK_END)
            return
        self._fh = open(self.path, "wb")
        icntrl = [0] * 20
        icntrl[2] = 1  # NSAVC
        icntrl[19] = 24  # CHARMM version
        head = struct.pack("<i4s9if10i", 84, b"CORD", *icntrl[:9], 1.0, *icntrl[10:]) + struct.pack("<i", 84)
        titles = ["REMARKS written by openmm-backmap".ljust(80)[:80].encode(),
                  f"REMARKS {os.path.basename(self.path)}".ljust(80)[:80].encode()]
        body = struct.pack("<i", len(titles)) + b"".join(titles)
        head += struct.pack("<i", len(body)) + body + struct.pack("<i", len(body))
        head += struct.pack("<iii", 4, self.n_atoms, 4)
        self._fh.write(head)
        self._fh.flush()
        self._dcd_header = None

    def _write_dcd(self, xyz, time, step):
        import struct

        block = 4 * self.n_atoms
        marker = struct.pack("<i", block)
        for frame in (xyz * 10.0).astype("<f4"):
            for k in range(3):
                self._fh.write(marker + np.ascontiguousarray(frame[:, k]).tobytes() + marker)
        # header: NSET (frames), ISTART, NSAVC, NSTEP, DELTA (AKMA)
        nset = self.n_frames + len(xyz)
        self._fh.seek(8)
        self._fh.write(struct.pack("<i", nset))
        if self._dcd_header is None and step is not None:
            steps = self._steps + list(step)
            times = self._times + list(time) if time is not None else None
            if len(steps) >= 2 and steps[1] > steps[0]:
                nsavc = int(steps[1] - steps[0])
                dt = ((times[1] - times[0]) / nsavc / _AKMA_PS) if times is not None else 1.0
                self._dcd_header = [int(steps[0]), nsavc]
                self._fh.seek(12)
                self._fh.write(struct.pack("<ii", int(steps[0]), nsavc))
                self._fh.seek(44)
                self._fh.write(struct.pack("<f", dt))
            else:
                self._steps, self._times = steps[:2], (times or [])[:2]
        if self._dcd_header is not None:
            istart, nsavc = self._dcd_header
            self._fh.seek(20)
            self._fh.write(struct.pack("<i", istart + (nset - 1) * nsavc))
        self._fh.seek(0, os.SEEK_END)

    # ------------------------------------------------------------------ XTC (mdtraj, nm)
    def _open_xtc(self, appending):
        from mdtraj.formats import XTCTrajectoryFile

        if appending:
            self._xtc = None  # each write goes through a temporary file appended byte-wise (XTC frames concatenate)
            with XTCTrajectoryFile(self.path, "r") as f:
                self.n_frames = len(f)
        else:
            self._xtc = XTCTrajectoryFile(self.path, "w", force_overwrite=True)

    def _write_xtc(self, xyz, time, step):
        from mdtraj.formats import XTCTrajectoryFile

        n = len(xyz)
        t = np.asarray(time if time is not None else np.arange(self.n_frames, self.n_frames + n), dtype=np.float32)
        s = np.asarray(step if step is not None else np.arange(self.n_frames, self.n_frames + n), dtype=np.int32)
        if self._xtc is not None:
            self._xtc.write(xyz.astype(np.float32), time=t, step=s)
            self._xtc.flush()
            return
        tmp = self.path + ".part.xtc"
        try:
            with XTCTrajectoryFile(tmp, "w", force_overwrite=True) as f:
                f.write(xyz.astype(np.float32), time=t, step=s)
            with open(tmp, "rb") as src, open(self.path, "ab") as dst:
                dst.write(src.read())
                dst.flush()
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # ------------------------------------------------------------------ PDB (native writer, Å)
    def _open_pdb(self, appending):
        self._pdb = _PDBFormatter(self.topology)
        if appending:
            # drop the END record (and anything after the last ENDMDL), count models
            with open(self.path, "rb") as fh:
                data = fh.read()
            end = data.rfind(b"ENDMDL")
            if end < 0:
                raise self._mismatch("it has no complete MODEL")
            end = data.index(b"\n", end) + 1 if b"\n" in data[end:] else len(data)
            self.n_frames = data[:end].count(b"\nMODEL ") + data[:end].startswith(b"MODEL ")
            self._fh = open(self.path, "r+", newline="\n")
            self._fh.seek(end)
            self._fh.truncate()
        else:
            self._fh = open(self.path, "w", newline="\n")
            self._fh.write("REMARK   1 written by openmm-backmap\n")
            self._fh.flush()

    def _write_pdb(self, xyz, time, step):
        for i, frame in enumerate(xyz):
            model = self.n_frames + i + 1
            lines = []
            if time is not None or step is not None:
                t = f" t= {float(time[i]):.5f}" if time is not None else ""
                s = f" step= {int(step[i])}" if step is not None else ""
                lines.append(f"TITLE     openmm-backmap{t}{s}")
            lines.append(f"MODEL     {model % 10000:4d}")
            lines += self._pdb.lines(frame * 10.0)
            lines.append("ENDMDL")
            self._fh.write("\n".join(lines) + "\n")
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
            self._h5 = HDF5TrajectoryFile(self.path, "a")
            self.n_frames = len(self._h5)
        else:
            self._h5 = HDF5TrajectoryFile(self.path, "w", force_overwrite=True)
            self._h5.topology = self.topology

    def _write_h5(self, xyz, time, step):
        t = None if time is None else np.asarray(time, dtype=np.float32)
        self._h5.write(xyz.astype(np.float32), time=t)
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
        ValueError
            Wrong shape or non-finite coordinates.
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
        getattr(self, f"_write_{self.format}")(xyz, time, step)
        if self.topology_path is not None and not self._topology_has_coordinates:
            # the topology file gets the first frame, so that it is a viewable structure on its own
            write_topology_pdb(self.topology_path, self.topology, xyz[0], title=os.path.basename(self.path))
            self._topology_has_coordinates = True
        self.n_frames += n

    def flush(self):
        """Flush buffered output (every :meth:`write` already does)."""
        fh = getattr(self, "_fh", None)
        if fh is not None and not fh.closed:
            fh.flush()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self):
        """Finish and close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.format == "pdb":
            self._fh.write("END\n")
            self._fh.close()
        elif self.format == "dcd":
            self._fh.close()
        elif self.format == "xtc" and self._xtc is not None:
            self._xtc.close()
        elif self.format == "h5":
            self._h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __repr__(self):
        return (f"TrajectoryWriter({self.path!r}, format={self.format!r}, atoms={self.n_atoms}, "
                f"frames={self.n_frames}, closed={self._closed})")
