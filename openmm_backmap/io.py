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

from .ensemble import ProteinEnsemble
from .topology import TEMPLATES, atom_layout, canonical_atom_name, canonical_residue_name

__all__ = ["LoadWarning", "load_ensemble", "detect_segment_starts", "TRAJECTORY_EXTENSIONS", "STRUCTURE_EXTENSIONS"]

#: Peptide C-N distance above which residues are not bonded (nm).
PEPTIDE_BREAK_NM = 0.2
#: C-alpha distance above which consecutive residues are not bonded, used when C or N is missing (nm).
CA_BREAK_NM = 0.43

STRUCTURE_EXTENSIONS = (".pdb", ".pdb.gz", ".ent", ".ent.gz", ".cif", ".cif.gz", ".pdbx", ".mmcif")
TRAJECTORY_EXTENSIONS = (".dcd", ".xtc", ".trr", ".h5", ".nc", ".netcdf", ".lh5", ".binpos")


class LoadWarning(UserWarning):
    """Something in an input file was dropped, renamed or masked while loading."""


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
        raise ValueError(f"{path}: no _atom_site records found")
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


def detect_segment_starts(xyz, mask, sequence, chain_ids):
    """Find chain starts and breaks from geometry.

    A residue starts a new segment when its chain differs from the previous
    residue's, or when the peptide C-N distance exceeds ``PEPTIDE_BREAK_NM``
    (the C-alpha distance exceeds ``CA_BREAK_NM`` where C or N is missing) in
    the median over frames.

    Parameters
    ----------
    xyz : ndarray, (F, A, 3), nm
    mask : ndarray, (F, A), bool
    sequence, chain_ids : sequences of str, one per residue

    Returns
    -------
    ndarray of bool, shape (R,)
    """
    lay = atom_layout(sequence)
    n = len(sequence)
    starts = np.zeros(n, dtype=bool)
    if n == 0:
        return starts
    starts[0] = True
    c = lay.residue_start[:-1] + 2  # C is third in every template
    nn = lay.residue_start[:-1]  # N is first
    ca = lay.ca_index
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        d_pep = np.nanmedian(np.linalg.norm(xyz[:, c[:-1]] - xyz[:, nn[1:]], axis=-1), axis=0)
        d_ca = np.nanmedian(np.linalg.norm(xyz[:, ca[:-1]] - xyz[:, ca[1:]], axis=-1), axis=0)
    for i in range(1, n):
        if chain_ids[i] != chain_ids[i - 1]:
            starts[i] = True
        elif np.isfinite(d_pep[i - 1]):
            starts[i] = d_pep[i - 1] > PEPTIDE_BREAK_NM
        elif np.isfinite(d_ca[i - 1]):
            starts[i] = d_ca[i - 1] > CA_BREAK_NM
        else:
            starts[i] = True
    return starts


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
            raise ValueError(f"{source}: model {len(frames) + 1} has a different residue sequence than model 1; "
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
        raise ValueError(f"{source}: no standard amino-acid residues found")
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
        raise FileNotFoundError(f"input file {path!r} does not exist")
    canon = _Canonicalizer(path)
    if _has_ext(path, TRAJECTORY_EXTENSIONS):
        ens = _load_trajectory(path, topology, stride, canon)
    elif _has_ext(path, (".cif", ".cif.gz", ".pdbx", ".mmcif")):
        ens = _assemble(_stride(_parse_cif(path, canon), stride), path, canon)
    elif _has_ext(path, (".pdb", ".pdb.gz", ".ent", ".ent.gz")):
        ens = _assemble(_stride(_parse_pdb_models(path, canon), stride), path, canon)
    else:
        raise ValueError(f"cannot read {path!r}: unknown extension; use one of "
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
            raise ValueError(f"{path!r} is a trajectory without a topology; pass one with -t/--topology "
                             "(a PDB of the same atoms)")
        traj = md.load(path, stride=stride)
    else:
        topology = os.fspath(topology)
        if not os.path.exists(topology):
            raise FileNotFoundError(f"topology file {topology!r} does not exist")
        top = md.load_topology(topology)
        try:
            traj = md.load(path, top=top, stride=stride)
        except ValueError as err:
            raise ValueError(f"{path!r} does not match topology {topology!r} ({err}); "
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
        raise ValueError(f"{path}: no standard amino-acid residues found")
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
