"""Accuracy metrics for backmapped (generated) all-atom structures.

Everything here compares coordinate arrays or files; nothing depends on a
model. Inputs are heavy-atom coordinates in **nm** in the canonical atom order
of :mod:`openmm_backmap.topology` (NaN where an atom is missing); every
reported length is in **Ångström** and every fraction in **percent**.

The definitions follow the backmapping literature (DiAMoNDBack, FlowBack,
GenZProt):

``rmsd``
    Heavy-atom RMSD without superposition; atoms are matched by residue
    order and atom name (same canonical index) and atoms missing in either
    structure are left out.
``rmsd_sym``
    As ``rmsd``, after swapping the symmetry-equivalent atoms of a residue
    (:data:`~openmm_backmap.topology.SYMMETRIC_ATOM_PAIRS`) wherever that
    lowers the residue's squared deviation.
``ged``
    Normalised graph edit distance between the bond graphs inferred from
    distances (a bond where ``d < 1.3 * (r_i + r_j)`` with the covalent radii
    of :data:`COVALENT_RADII_ANGSTROM`), with fixed node correspondence:
    ``|E_gen xor E_ref| / |E_ref|``.
``clash``
    Percent of residues with a heavy atom closer than 1.2 Å to a heavy atom
    of another residue, pairs bonded in the reference graph excluded
    (``clash_topology``: the same with the bonded pairs taken from a bond
    list, e.g. the topology's, for structures without a reference).
``bond_ok``
    Percent of reference-graph bonds whose generated length is within 10 %
    of the reference length.
KL divergences
    ``KL(reference || generated)`` (natural log, nats) of histograms of the
    backbone (phi, psi) pairs and of chi1..chi4, with 10 degree bins and a
    pseudo-count added to every bin's probability before renormalising.

Frames are paired in order. A reference frame may serve several generated
samples: with ``n_gen = k * n_ref`` generated frame ``j`` is compared with
reference frame ``j // k`` (all samples of reference frame 0 first), and a
single reference frame serves any number of generated frames.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

from ..structure.templates import SYMMETRIC_ATOM_PAIRS, TEMPLATES, atom_layout
from ..structure.errors import InputError

__all__ = [
    "COVALENT_RADII_ANGSTROM",
    "BOND_TOLERANCE",
    "CLASH_DISTANCE_ANGSTROM",
    "BOND_OK_TOLERANCE",
    "KL_BIN_WIDTH_DEG",
    "KL_PSEUDO_COUNT",
    "pair_frames",
    "rmsd",
    "rmsd_sym",
    "symmetry_corrected",
    "bond_graph",
    "ged",
    "clash",
    "clash_topology",
    "clashing_residues",
    "bond_ok",
    "dihedral",
    "backbone_dihedrals",
    "chi_dihedrals",
    "kl_divergence",
    "ramachandran_plot",
    "structure_plot",
    "evaluate",
    "evaluate_files",
    "format_table",
]

#: Covalent radii (Å) used to infer bonds from distances.
COVALENT_RADII_ANGSTROM = {"C": 0.76, "N": 0.71, "O": 0.66, "S": 1.05}
#: A bond exists where ``d < BOND_TOLERANCE * (r_i + r_j)``.
BOND_TOLERANCE = 1.3
#: Heavy atoms of different residues closer than this clash (Å).
CLASH_DISTANCE_ANGSTROM = 1.2
#: ``bond_ok`` accepts generated bond lengths within this relative deviation.
BOND_OK_TOLERANCE = 0.10
#: Default histogram bin width for the KL divergences (degrees).
KL_BIN_WIDTH_DEG = 10.0
#: Default pseudo-count added to every bin's probability (then renormalised).
KL_PSEUDO_COUNT = 1e-6

_NM_TO_A = 10.0
_METRICS = (  # key in the result, label, unit
    ("rmsd_angstrom", "RMSD, heavy atoms, no superposition", "Å"),
    ("rmsd_sym_angstrom", "RMSD, symmetry-corrected", "Å"),
    ("ged", "graph edit distance (|E_gen xor E_ref|/|E_ref|)", "-"),
    ("clash_percent", "residues with a clash < 1.2 Å", "%"),
    ("bond_ok_percent", "bonds within 10 % of reference", "%"),
)


# --------------------------------------------------------------------------
# frame handling
# --------------------------------------------------------------------------
def pair_frames(n_reference: int, n_generated: int) -> np.ndarray:
    """Index of the reference frame each generated frame is compared with.

    Parameters
    ----------
    n_reference, n_generated : int
        Numbers of reference and generated frames.

    Returns
    -------
    ndarray of int, shape (n_generated,)
        ``j // k`` for generated frame ``j`` when ``n_generated = k * n_reference``
        (samples of a frame are consecutive), ``0`` when there is one reference frame.

    Raises
    ------
    ValueError
        When ``n_generated`` is not a multiple of ``n_reference``.

    Examples
    --------
    >>> pair_frames(2, 6).tolist()
    [0, 0, 0, 1, 1, 1]
    >>> pair_frames(1, 3).tolist()
    [0, 0, 0]
    """
    n_reference, n_generated = int(n_reference), int(n_generated)
    if n_reference < 1 or n_generated < 1:
        raise InputError(f"need at least one reference and one generated frame (got {n_reference} and {n_generated})")
    if n_generated % n_reference:
        raise InputError(
            f"cannot pair {n_generated} generated frame(s) with {n_reference} reference frame(s): the generated count "
            "must equal the reference count or be a multiple of it (k samples per reference frame, frame-major), "
            "or the reference must have a single frame")
    return np.arange(n_generated) // (n_generated // n_reference)


def _as_frames(xyz, name):
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim == 2:
        xyz = xyz[None]
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise InputError(f"{name} must have shape (atoms, 3) or (frames, atoms, 3), got {xyz.shape}")
    return xyz


def _prepare(ref_xyz, gen_xyz, mask):
    """Return ref (Fr,A,3), gen (Fg,A,3), pairing (Fg,), valid (Fg,A), squeeze flag."""
    squeeze = np.ndim(gen_xyz) == 2 and np.ndim(ref_xyz) == 2
    ref = _as_frames(ref_xyz, "ref_xyz")
    gen = _as_frames(gen_xyz, "gen_xyz")
    if ref.shape[1] != gen.shape[1]:
        raise InputError(f"reference has {ref.shape[1]} atoms but generated has {gen.shape[1]}; "
                         "both must be in the same canonical order")
    pair = pair_frames(len(ref), len(gen))
    valid = np.isfinite(gen).all(-1) & np.isfinite(ref).all(-1)[pair]
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        valid &= np.broadcast_to(mask, valid.shape) if mask.ndim == 1 or len(mask) == len(gen) \
            else mask[pair]
    return ref, gen, pair, valid, squeeze


def _out(values, squeeze):
    values = np.asarray(values, dtype=np.float64)
    return float(values[0]) if squeeze else values


# --------------------------------------------------------------------------
# RMSD
# --------------------------------------------------------------------------
def _rmsd_from(ref, gen, pair, valid):
    sq = np.zeros(valid.shape)
    for f0 in range(0, len(gen), 64):  # chunks keep the temporaries small
        f1 = min(f0 + 64, len(gen))
        d = gen[f0:f1] - ref[pair[f0:f1]]
        s = np.einsum("fai,fai->fa", d, d)
        sq[f0:f1] = np.where(valid[f0:f1], s, 0.0)
    n = valid.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(sq.sum(1) / n) * _NM_TO_A


def rmsd(ref_xyz, gen_xyz, mask=None):
    """Heavy-atom RMSD in Å, without superposition.

    Atoms are matched by index (canonical order: residue order, atom name).
    Atoms that are NaN in either structure, or False in ``mask``, are left out.

    Parameters
    ----------
    ref_xyz : array, (A, 3) or (F_ref, A, 3), nm
        Reference coordinates.
    gen_xyz : array, (A, 3) or (F_gen, A, 3), nm
        Generated coordinates; frames are paired with :func:`pair_frames`.
    mask : array of bool, (A,) or (F_gen, A) or (F_ref, A), optional
        Atoms to include.

    Returns
    -------
    float or ndarray, shape (F_gen,)
        RMSD in Å (NaN for a frame without common atoms). A float when both
        inputs are single frames of shape (A, 3).

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.zeros((4, 3)); gen = ref.copy(); gen[0, 0] = 0.2  # 2 Å shift of 1 of 4 atoms
    >>> round(rmsd(ref, gen), 6)
    1.0
    """
    ref, gen, pair, valid, squeeze = _prepare(ref_xyz, gen_xyz, mask)
    return _out(_rmsd_from(ref, gen, pair, valid), squeeze)


@lru_cache(maxsize=32)
def _symmetry_groups(sequence: tuple):
    """Flattened symmetric pairs of a sequence: (a_idx, b_idx, group_of_pair, n_groups)."""
    lay = atom_layout(sequence)
    a_idx, b_idx, group = [], [], []
    g = 0
    for r, name in enumerate(lay.sequence):
        pairs = SYMMETRIC_ATOM_PAIRS.get(name, ())
        for a, b in pairs:
            a_idx.append(lay.index(r, a))
            b_idx.append(lay.index(r, b))
            group.append(g)
        g += bool(pairs)
    return np.array(a_idx, dtype=np.int64), np.array(b_idx, dtype=np.int64), np.array(group, dtype=np.int64), g


def symmetry_corrected(ref_xyz, gen_xyz, sequence, mask=None):
    """Generated coordinates with symmetric side-chain atoms swapped where that fits the reference better.

    Per residue, the pairs of :data:`~openmm_backmap.topology.SYMMETRIC_ATOM_PAIRS`
    (for PHE and TYR CD1/CD2 together with CE1/CE2) are swapped when that
    lowers the residue's squared deviation from the paired reference frame
    and all atoms involved are present in both structures.

    Parameters
    ----------
    ref_xyz, gen_xyz : arrays, (A, 3) or (F, A, 3), nm
    sequence : sequence of str
        Three-letter residue names.
    mask : array of bool, optional
        Atoms to include (see :func:`rmsd`).

    Returns
    -------
    ndarray, (F_gen, A, 3), nm
        Copy of the generated coordinates with the swaps applied.

    Examples
    --------
    >>> import numpy as np
    >>> from openmm_backmap.topology import atom_layout
    >>> lay = atom_layout(['ASP'])
    >>> ref = np.random.default_rng(0).normal(size=(lay.n_atoms, 3))
    >>> gen = ref[[0, 1, 2, 3, 4, 5, 7, 6]]  # OD1 and OD2 swapped
    >>> np.allclose(symmetry_corrected(ref, gen, ['ASP'])[0], ref)
    True
    """
    ref, gen, pair, valid, _ = _prepare(ref_xyz, gen_xyz, mask)
    return _swap_symmetric(ref, gen, pair, valid, sequence)


def _swap_symmetric(ref, gen, pair, valid, sequence):
    lay = atom_layout(sequence)
    if lay.n_atoms != gen.shape[1]:
        raise InputError(f"sequence has {lay.n_atoms} heavy atoms but the coordinates have {gen.shape[1]}")
    a, b, group, n_groups = _symmetry_groups(lay.sequence)
    out = gen.copy()
    if n_groups == 0:
        return out
    r = ref[pair]
    ga, gb, ra, rb = gen[:, a], gen[:, b], r[:, a], r[:, b]

    def sq(x, y):
        d = x - y
        return np.einsum("fpi,fpi->fp", d, d)

    with np.errstate(invalid="ignore"):
        keep = sq(ga, ra) + sq(gb, rb)  # (F, pairs)
        swap = sq(gb, ra) + sq(ga, rb)
    ok = valid[:, a] & valid[:, b]
    onehot = np.zeros((len(a), n_groups))
    onehot[np.arange(len(a)), group] = 1.0
    keep_g = np.where(ok, keep, 0.0) @ onehot
    swap_g = np.where(ok, swap, 0.0) @ onehot
    all_ok = (ok.astype(np.float64) @ onehot) == onehot.sum(0)
    do = (all_ok & (swap_g < keep_g))[:, group]  # (F, pairs)
    out[:, a] = np.where(do[..., None], gb, ga)
    out[:, b] = np.where(do[..., None], ga, gb)
    return out


def rmsd_sym(ref_xyz, gen_xyz, sequence, mask=None):
    """Symmetry-corrected heavy-atom RMSD in Å (no superposition).

    Like :func:`rmsd`, after swapping, per residue, the symmetry-equivalent
    atoms (ASP OD1/OD2, GLU OE1/OE2, PHE and TYR CD1/CD2 together with
    CE1/CE2, ARG NH1/NH2) wherever that lowers that residue's squared
    deviation (see :func:`symmetry_corrected`).

    Parameters
    ----------
    ref_xyz, gen_xyz : arrays, (A, 3) or (F, A, 3), nm
    sequence : sequence of str
        Three-letter residue names (defines which atoms are symmetric).
    mask : array of bool, optional
        Atoms to include.

    Returns
    -------
    float or ndarray, shape (F_gen,)
        RMSD in Å.

    Examples
    --------
    >>> import numpy as np
    >>> from openmm_backmap.topology import atom_layout
    >>> ref = np.random.default_rng(0).normal(size=(atom_layout(['ASP']).n_atoms, 3))
    >>> gen = ref[[0, 1, 2, 3, 4, 5, 7, 6]]  # OD1 and OD2 swapped
    >>> rmsd_sym(ref, gen, ['ASP']) < 1e-12 < rmsd(ref, gen)
    True
    """
    ref, gen, pair, valid, squeeze = _prepare(ref_xyz, gen_xyz, mask)
    swapped = _swap_symmetric(ref, gen, pair, valid, sequence)
    return _out(_rmsd_from(ref, swapped, pair, valid), squeeze)


# --------------------------------------------------------------------------
# bond graphs
# --------------------------------------------------------------------------
def _radii_nm(elements):
    radii = []
    for e in elements:
        key = str(e).strip().upper()
        key = key if key in COVALENT_RADII_ANGSTROM else key[:1]  # atom names ('CA', 'OD1') by first letter
        if key not in COVALENT_RADII_ANGSTROM:
            raise InputError(f"no covalent radius for element {e!r}; known: {sorted(COVALENT_RADII_ANGSTROM)}")
        radii.append(COVALENT_RADII_ANGSTROM[key])
    return np.array(radii, dtype=np.float64) / _NM_TO_A


def bond_graph(xyz, elements, mask=None):
    """Bonds inferred from distances: ``d < 1.3 * (r_i + r_j)`` (covalent radii C 0.76, N 0.71, O 0.66, S 1.05 Å).

    Uses a k-d tree, so it scales to thousands of atoms.

    Parameters
    ----------
    xyz : array, (A, 3), nm
        One frame. NaN atoms are left out.
    elements : sequence of str, length A
        Element of every atom (``'C'``, ``'N'``, ``'O'``, ``'S'``); atom
        names such as ``'CA'`` are read by their first letter.
    mask : array of bool, (A,), optional
        Atoms to include.

    Returns
    -------
    ndarray of int, shape (n_bonds, 2)
        Atom index pairs ``i < j``, sorted.

    Examples
    --------
    >>> import numpy as np
    >>> xyz = np.array([[0, 0, 0], [0.153, 0, 0], [0.4, 0, 0]])  # C-C 1.53 Å, then 2.47 Å
    >>> bond_graph(xyz, ['C', 'C', 'C']).tolist()
    [[0, 1]]
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise InputError(f"bond_graph takes one frame of shape (atoms, 3), got {xyz.shape}")
    radii = _radii_nm(elements)
    if len(radii) != len(xyz):
        raise InputError(f"got {len(radii)} elements for {len(xyz)} atoms")
    return _bond_graph(xyz, radii, mask)


def _bond_graph(xyz, radii, mask=None):
    ok = np.isfinite(xyz).all(1)
    if mask is not None:
        ok &= np.asarray(mask, dtype=bool)
    idx = np.flatnonzero(ok)
    if len(idx) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    cut = BOND_TOLERANCE * 2.0 * radii[idx].max()
    pairs = cKDTree(xyz[idx]).query_pairs(cut, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    i, j = idx[pairs[:, 0]], idx[pairs[:, 1]]
    d = np.linalg.norm(xyz[i] - xyz[j], axis=1)
    keep = d < BOND_TOLERANCE * (radii[i] + radii[j])
    out = np.sort(np.stack([i[keep], j[keep]], 1), axis=1)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def _keys(pairs, n_atoms):
    return np.unique(pairs[:, 0].astype(np.int64) * n_atoms + pairs[:, 1])


class _GraphFrames:
    """Per-frame bond graphs of reference and generated frames (reference graphs cached)."""

    def __init__(self, ref, gen, pair, valid, elements):
        self.ref, self.gen, self.pair, self.valid = ref, gen, pair, valid
        self.radii = _radii_nm(elements)
        if len(self.radii) != ref.shape[1]:
            raise InputError(f"got {len(self.radii)} elements for {ref.shape[1]} atoms")
        self.n = ref.shape[1]
        self._ref = {}

    def ref_keys(self, j):
        """Reference bonds (keys ``i*A+j``) of generated frame j's reference, restricted to atoms valid in j."""
        r = int(self.pair[j])
        if r not in self._ref:
            self._ref[r] = _keys(_bond_graph(self.ref[r], self.radii), self.n)
        keys = self._ref[r]
        v = self.valid[j]
        return keys[v[keys // self.n] & v[keys % self.n]]

    def gen_keys(self, j):
        return _keys(_bond_graph(self.gen[j], self.radii, self.valid[j]), self.n)


def ged(ref_xyz, gen_xyz, elements, mask=None):
    """Normalised graph edit distance of the inferred bond graphs: ``|E_gen xor E_ref| / |E_ref|``.

    Nodes correspond by index (fixed correspondence); only atoms present in
    both structures (and in ``mask``) are nodes. See :func:`bond_graph` for
    the bond criterion.

    Parameters
    ----------
    ref_xyz, gen_xyz : arrays, (A, 3) or (F, A, 3), nm
        Frames paired with :func:`pair_frames`.
    elements : sequence of str, length A
    mask : array of bool, optional
        Atoms to include.

    Returns
    -------
    float or ndarray, shape (F_gen,)
        Dimensionless; 0 for identical graphs (NaN when the reference has no bond).

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([[0, 0, 0], [0.15, 0, 0], [0.30, 0, 0]])
    >>> gen = ref.copy(); gen[2, 0] = 0.5  # break the second bond
    >>> ged(ref, gen, ['C', 'C', 'C'])
    0.5
    """
    ref, gen, pair, valid, squeeze = _prepare(ref_xyz, gen_xyz, mask)
    graphs = _GraphFrames(ref, gen, pair, valid, elements)
    return _out(_ged(graphs), squeeze)


def _ged(graphs):
    out = np.full(len(graphs.gen), np.nan)
    for j in range(len(graphs.gen)):
        er, eg = graphs.ref_keys(j), graphs.gen_keys(j)
        if len(er):
            out[j] = len(np.setxor1d(er, eg, assume_unique=True)) / len(er)
    return out


def clash(gen_xyz, ref_xyz, atom_residue, elements, mask=None, distance_angstrom=CLASH_DISTANCE_ANGSTROM):
    """Percent of residues with a heavy atom closer than 1.2 Å to a heavy atom of another residue.

    Pairs bonded in the reference bond graph (:func:`bond_graph`) are not
    clashes, so peptide C-N bonds and disulfides do not count. Only atoms
    present in both structures are considered; the percentage is over the
    residues that have at least one such atom.

    Parameters
    ----------
    gen_xyz : array, (A, 3) or (F_gen, A, 3), nm
        Generated coordinates.
    ref_xyz : array, (A, 3) or (F_ref, A, 3), nm
        Reference coordinates (for the bond graph), paired with :func:`pair_frames`.
    atom_residue : array of int, (A,)
        Residue index of every atom (``AtomLayout.atom_residue``).
    elements : sequence of str, length A
    mask : array of bool, optional
        Atoms to include.
    distance_angstrom : float
        Clash distance (Å), 1.2 by default.

    Returns
    -------
    float or ndarray, shape (F_gen,)
        Percent of residues (0-100).

    See Also
    --------
    clash_topology : the same with the bonded pairs taken from a bond list
        (no reference structure needed).

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([[0, 0, 0], [0.5, 0, 0], [1.0, 0, 0]])  # three 1-atom residues
    >>> gen = ref.copy(); gen[1] = [0.05, 0, 0]  # residue 1 sits 0.5 Å from residue 0
    >>> round(clash(gen, ref, [0, 1, 2], ['C', 'C', 'C']), 4)
    66.6667
    """
    ref, gen, pair, valid, squeeze = _prepare(ref_xyz, gen_xyz, mask)
    graphs = _GraphFrames(ref, gen, pair, valid, elements)
    return _out(_clash(graphs, np.asarray(atom_residue, dtype=np.int64), distance_angstrom), squeeze)


def _clash(graphs, atom_residue, distance_angstrom=CLASH_DISTANCE_ANGSTROM):
    n = graphs.n
    if len(atom_residue) != n:
        raise InputError(f"atom_residue has {len(atom_residue)} entries for {n} atoms")
    return np.array([_clash_frame(graphs.gen[j], graphs.valid[j], atom_residue, graphs.ref_keys(j),
                                  distance_angstrom) for j in range(len(graphs.gen))], dtype=np.float64)


def _clash_frame(xyz, valid, atom_residue, bonded_keys, distance_angstrom):
    """Clash percentage of one frame: the core of :func:`clash` and :func:`clash_topology`.

    ``xyz`` (A, 3) nm; ``valid`` (A,) bool, the atoms considered; ``bonded_keys``
    the excluded pairs as sorted keys ``i * A + j`` (``i < j``). NaN when no
    atom is valid.
    """
    flagged, n_present = _clashing(xyz, valid, atom_residue, bonded_keys, distance_angstrom)
    return 100.0 * len(flagged) / n_present if n_present else np.nan


def _clashing(xyz, valid, atom_residue, bonded_keys, distance_angstrom):
    """(indices of clashing residues, number of residues with a valid atom) of one frame."""
    n = len(xyz)
    idx = np.flatnonzero(valid)
    n_present = len(np.unique(atom_residue[idx]))
    cut = distance_angstrom / _NM_TO_A
    x = xyz[idx]
    pairs = cKDTree(x).query_pairs(cut, output_type="ndarray") if len(idx) else np.zeros((0, 2), int)
    if len(pairs) == 0:
        return np.zeros(0, dtype=np.int64), n_present
    d = np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]], axis=1)
    a, b = idx[pairs[:, 0]], idx[pairs[:, 1]]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    sel = (d < cut) & (atom_residue[lo] != atom_residue[hi])
    if sel.any() and len(bonded_keys):
        sel[sel] = ~np.isin(lo[sel] * n + hi[sel], bonded_keys)
    return np.union1d(atom_residue[lo[sel]], atom_residue[hi[sel]]), n_present


def clashing_residues(gen_xyz, ref_xyz, atom_residue, elements, mask=None,
                      distance_angstrom=CLASH_DISTANCE_ANGSTROM):
    """Indices of the residues that :func:`clash` counts, for one frame.

    Parameters
    ----------
    gen_xyz, ref_xyz : array, (A, 3), nm
    atom_residue : array of int, (A,)
    elements : sequence of str, length A
    mask : array of bool, optional
    distance_angstrom : float

    Returns
    -------
    ndarray of int
        Sorted residue indices.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([[0, 0, 0], [0.5, 0, 0], [1.0, 0, 0]])
    >>> gen = ref.copy(); gen[1] = [0.05, 0, 0]
    >>> clashing_residues(gen, ref, [0, 1, 2], ['C', 'C', 'C']).tolist()
    [0, 1]
    """
    ref, gen, pair, valid, _ = _prepare(np.asarray(ref_xyz)[None], np.asarray(gen_xyz)[None], mask)
    graphs = _GraphFrames(ref, gen, pair, valid, elements)
    atom_residue = np.asarray(atom_residue, dtype=np.int64)
    return _clashing(graphs.gen[0], graphs.valid[0], atom_residue, graphs.ref_keys(0), distance_angstrom)[0]


def clash_topology(xyz, bonds, atom_residue, distance_angstrom=CLASH_DISTANCE_ANGSTROM):
    """Reference-free clash: percent of residues with a heavy atom closer than 1.2 Å to one of another residue.

    The definition of :func:`clash`, with the bonded pairs that are not
    clashes (peptide C-N bonds, disulfides) taken from a given bond list, such
    as the topology's (``AtomLayout.bonds``), instead of a bond graph inferred
    from a reference structure. Use it when there is no reference: with a
    clashing structure as its own reference, every pair closer than ~2 Å
    would be read as bonded and every clash missed. The relaxer's
    ``clash_before``/``clash_after`` and the pipeline's ``clash_percent`` are
    this function.

    Atoms with NaN coordinates are left out; the percentage is over the
    residues that have at least one atom left.

    Parameters
    ----------
    xyz : array, (A, 3) or (F, A, 3), nm
        Heavy-atom coordinates (canonical order, or any order matching
        ``bonds`` and ``atom_residue``).
    bonds : array of int, (n, 2)
        Atom index pairs that are bonded (either order); they never clash.
    atom_residue : array of int, (A,)
        Residue index of every atom (``AtomLayout.atom_residue``).
    distance_angstrom : float
        Clash distance (Å), 1.2 by default; pairs strictly closer clash.

    Returns
    -------
    float or ndarray, shape (F,)
        Percent of residues (0-100); a float for one frame of shape (A, 3),
        NaN for a frame without any finite atom.

    Raises
    ------
    ValueError
        When the shapes of ``xyz``, ``bonds`` and ``atom_residue`` disagree.

    See Also
    --------
    clash : the same with the bonds inferred from a reference structure.

    Examples
    --------
    Three one-atom residues in a row, bonded 0-1; residue 2 is moved 1 Å
    from residue 1, and residue 0 is 1 Å from residue 1 but bonded to it:

    >>> import numpy as np
    >>> xyz = np.array([[0.0, 0, 0], [0.1, 0, 0], [0.2, 0, 0]])
    >>> round(clash_topology(xyz, [[0, 1]], [0, 1, 2]), 4)
    66.6667
    >>> clash_topology(np.stack([xyz, xyz * 3]), [[0, 1]], [0, 1, 2]).tolist()  # frames: 1 Å apart, 3 Å apart
    [66.66666666666667, 0.0]
    """
    x = _as_frames(xyz, "xyz")
    n = x.shape[1]
    atom_residue = np.asarray(atom_residue, dtype=np.int64).reshape(-1)
    if len(atom_residue) != n:
        raise InputError(f"atom_residue has {len(atom_residue)} entries for {n} atoms")
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2) if np.size(bonds) else np.zeros((0, 2), np.int64)
    if len(bonds) and (bonds.min() < 0 or bonds.max() >= n):
        raise InputError(f"bonds refer to atoms outside 0..{n - 1}")
    keys = np.unique(np.minimum(bonds[:, 0], bonds[:, 1]) * n + np.maximum(bonds[:, 0], bonds[:, 1]))
    valid = np.isfinite(x).all(-1)
    out = [_clash_frame(x[f], valid[f], atom_residue, keys, distance_angstrom) for f in range(len(x))]
    return _out(out, np.ndim(xyz) == 2)


def bond_ok(ref_xyz, gen_xyz, elements, mask=None, tolerance=BOND_OK_TOLERANCE):
    """Percent of reference bonds whose generated length is within 10 % of the reference length.

    The bonds are those of the reference bond graph (:func:`bond_graph`)
    between atoms present in both structures; a bond is OK when
    ``|d_gen - d_ref| <= 0.1 * d_ref``.

    Parameters
    ----------
    ref_xyz, gen_xyz : arrays, (A, 3) or (F, A, 3), nm
        Frames paired with :func:`pair_frames`.
    elements : sequence of str, length A
    mask : array of bool, optional
        Atoms to include.
    tolerance : float
        Relative tolerance, 0.1 by default.

    Returns
    -------
    float or ndarray, shape (F_gen,)
        Percent (0-100); NaN when the reference has no bond.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([[0, 0, 0], [0.15, 0, 0], [0.30, 0, 0]])
    >>> gen = ref.copy(); gen[2, 0] = 0.32  # second bond 13 % too long
    >>> bond_ok(ref, gen, ['C', 'C', 'C'])
    50.0
    """
    ref, gen, pair, valid, squeeze = _prepare(ref_xyz, gen_xyz, mask)
    graphs = _GraphFrames(ref, gen, pair, valid, elements)
    return _out(_bond_ok(graphs, tolerance), squeeze)


def _bond_ok(graphs, tolerance=BOND_OK_TOLERANCE):
    n = graphs.n
    out = np.full(len(graphs.gen), np.nan)
    for j in range(len(graphs.gen)):
        keys = graphs.ref_keys(j)
        if not len(keys):
            continue
        i, k = keys // n, keys % n
        r, g = graphs.ref[graphs.pair[j]], graphs.gen[j]
        d_ref = np.linalg.norm(r[i] - r[k], axis=1)
        d_gen = np.linalg.norm(g[i] - g[k], axis=1)
        out[j] = 100.0 * np.mean(np.abs(d_gen - d_ref) <= tolerance * d_ref)
    return out


# --------------------------------------------------------------------------
# dihedrals
# --------------------------------------------------------------------------
def dihedral(p0, p1, p2, p3):
    """Torsion angle p0-p1-p2-p3 in degrees, IUPAC sign convention, in (-180, 180].

    Looking along p1 -> p2, the angle is positive when the bond p1-p0 must be
    turned clockwise to eclipse p2-p3 (trans = 180, cis = 0). Vectorised over
    any leading dimensions; NaN in, NaN out.

    Parameters
    ----------
    p0, p1, p2, p3 : arrays, (..., 3)

    Returns
    -------
    ndarray, shape (...)
        Degrees.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.radians(60)
    >>> round(float(dihedral([1, 0, 0], [0, 0, 0], [0, 0, 1], [np.cos(t), np.sin(t), 1])), 6)
    60.0
    """
    p0, p1, p2, p3 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2, p3))
    b0 = p0 - p1
    b1 = p2 - p1
    b2 = p3 - p2
    with np.errstate(invalid="ignore", divide="ignore"):
        b1 = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
        v = b0 - np.sum(b0 * b1, axis=-1, keepdims=True) * b1
        w = b2 - np.sum(b2 * b1, axis=-1, keepdims=True) * b1
        x = np.sum(v * w, axis=-1)
        y = np.sum(np.cross(b1, v) * w, axis=-1)
    ang = np.degrees(np.arctan2(y, x))
    return np.where(ang == -180.0, 180.0, ang)


def backbone_dihedrals(ensemble, segment_start=None):
    """Backbone phi and psi of every residue and frame, in degrees.

    ``phi_i = C(i-1)-N(i)-CA(i)-C(i)`` and ``psi_i = N(i)-CA(i)-C(i)-N(i+1)``;
    they are NaN where they cross a chain start or break (``segment_start``),
    at chain ends, and where an atom is missing.

    Parameters
    ----------
    ensemble : ProteinEnsemble
    segment_start : array of bool, (R,), optional
        Chain starts/breaks to use instead of ``ensemble.segment_start``.

    Returns
    -------
    phi, psi : ndarrays, shape (F, R)
        Degrees in (-180, 180].

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> phi, psi = backbone_dihedrals(load_ensemble('tests/data/trpcage.pdb'))  # doctest: +SKIP
    >>> phi.shape  # doctest: +SKIP
    (1, 20)
    """
    lay = ensemble.layout
    seg = np.asarray(ensemble.segment_start if segment_start is None else segment_start, dtype=bool)
    xyz = np.asarray(ensemble.xyz, dtype=np.float64)
    if getattr(ensemble, "mask", None) is not None:
        xyz = np.where(np.asarray(ensemble.mask)[..., None], xyz, np.nan)
    start = lay.residue_start[:-1]
    n_, ca, c = xyz[:, start], xyz[:, start + 1], xyz[:, start + 2]
    n_res = len(start)
    f = xyz.shape[0]
    phi = np.full((f, n_res), np.nan)
    psi = np.full((f, n_res), np.nan)
    if n_res > 1:
        phi[:, 1:] = dihedral(c[:, :-1], n_[:, 1:], ca[:, 1:], c[:, 1:])
        psi[:, :-1] = dihedral(n_[:, :-1], ca[:, :-1], c[:, :-1], n_[:, 1:])
        phi[:, seg] = np.nan
        psi[:, np.flatnonzero(seg[1:])] = np.nan
    return phi, psi


@lru_cache(maxsize=32)
def _chi_atoms(sequence: tuple):
    """For chi k (1..4): residue indices and (n, 4) atom indices, from the template Z-matrices."""
    lay = atom_layout(sequence)
    out = {}
    for k in range(1, 5):
        res, quads = [], []
        for r, name in enumerate(lay.sequence):
            entry = next((z for z in TEMPLATES[name].zmatrix if z[4] == k), None)
            if entry is None:
                continue
            atom, a, b, c, _ = entry
            res.append(r)
            quads.append([lay.index(r, x) for x in (a, b, c, atom)])
        out[k] = (np.array(res, dtype=np.int64), np.array(quads, dtype=np.int64).reshape(-1, 4))
    return out


def chi_dihedrals(ensemble):
    """Side-chain chi1..chi4 of every residue and frame, in degrees.

    Chi k of a residue is the torsion ``(a, b, c, atom)`` of the first
    Z-matrix entry of its template with chi index k (chi1 = N-CA-CB-XG ...).

    Parameters
    ----------
    ensemble : ProteinEnsemble

    Returns
    -------
    ndarray, shape (F, R, 4)
        ``[..., k-1]`` is chi k in degrees; NaN where the residue has no chi k
        or an atom is missing.

    Examples
    --------
    >>> import numpy as np
    >>> from openmm_backmap.ensemble import ProteinEnsemble
    >>> ens = ProteinEnsemble.from_arrays(['SER'], np.random.default_rng(0).normal(size=(6, 3)))
    >>> chi = chi_dihedrals(ens)
    >>> chi.shape, bool(np.isfinite(chi[0, 0, 0])), bool(np.isnan(chi[0, 0, 1]))
    ((1, 1, 4), True, True)
    """
    xyz = np.asarray(ensemble.xyz, dtype=np.float64)
    if getattr(ensemble, "mask", None) is not None:
        xyz = np.where(np.asarray(ensemble.mask)[..., None], xyz, np.nan)
    out = np.full((xyz.shape[0], len(ensemble.sequence), 4), np.nan)
    for k, (res, q) in _chi_atoms(tuple(ensemble.layout.sequence)).items():
        if len(res):
            out[:, res, k - 1] = dihedral(xyz[:, q[:, 0]], xyz[:, q[:, 1]], xyz[:, q[:, 2]], xyz[:, q[:, 3]])
    return out


def _histogram(angles, bin_width_deg):
    n_bins = 360.0 / bin_width_deg
    if abs(n_bins - round(n_bins)) > 1e-9 or n_bins < 1:
        raise InputError(f"bin_width_deg={bin_width_deg} must divide 360")
    edges = np.linspace(-180.0, 180.0, int(round(n_bins)) + 1)
    a = np.asarray(angles, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 2:
        a = a[np.isfinite(a).all(1)]
        h, _, _ = np.histogram2d(a[:, 0], a[:, 1], bins=[edges, edges])
    elif a.ndim == 1:
        a = a[np.isfinite(a)]
        h, _ = np.histogram(a, bins=edges)
    else:
        raise InputError(f"angles must have shape (n,) or (n, 2), got {a.shape}")
    return h.ravel(), len(a)


def kl_divergence(ref_angles, gen_angles, bin_width_deg=KL_BIN_WIDTH_DEG, pseudo_count=KL_PSEUDO_COUNT):
    """KL(reference || generated) of angle histograms, in nats.

    Angles (degrees, in [-180, 180]) are binned with ``bin_width_deg`` (a 1D
    histogram for shape (n,), a 2D one such as phi/psi for shape (n, 2)); each
    histogram is normalised, ``pseudo_count`` is added to every bin's
    probability and it is normalised again; then
    ``KL = sum_b P_ref(b) * ln(P_ref(b) / P_gen(b))``. NaN angles are ignored.

    Parameters
    ----------
    ref_angles, gen_angles : array, (n,) or (n, 2), degrees
    bin_width_deg : float
        Bin width; must divide 360 (10 gives 36 bins, 36 x 36 in 2D).
    pseudo_count : float
        Added to every bin's probability.

    Returns
    -------
    float
        Nats; NaN when either input has no finite angle.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.random.default_rng(0).uniform(-180, 180, 1000)
    >>> kl_divergence(a, a)
    0.0
    >>> kl_divergence(a, a / 4) > 0.5
    True
    """
    p, n_p = _histogram(ref_angles, bin_width_deg)
    q, n_q = _histogram(gen_angles, bin_width_deg)
    if n_p == 0 or n_q == 0:
        return float("nan")
    p = p / p.sum() + pseudo_count
    q = q / q.sum() + pseudo_count
    p /= p.sum()
    q /= q.sum()
    return float(max(np.sum(p * np.log(p / q)), 0.0))


# --------------------------------------------------------------------------
# plotting
# --------------------------------------------------------------------------
def ramachandran_plot(ref_phi_psi, gen_phi_psi, path, title=None, kl=None, bin_width_deg=KL_BIN_WIDTH_DEG):
    """Write a PNG with reference and generated Ramachandran histograms side by side.

    Uses matplotlib's object API with the Agg canvas (no pyplot, no global
    state changed).

    Parameters
    ----------
    ref_phi_psi, gen_phi_psi : arrays, (n, 2), degrees
        (phi, psi) pairs; NaN rows are ignored.
    path : str or path
        Output PNG file (its directory is created).
    title : str, optional
    kl : float, optional
        KL(reference || generated) to print in the title.
    bin_width_deg : float
        Histogram bin width.

    Returns
    -------
    str
        The path written.

    Examples
    --------
    >>> import numpy as np
    >>> pts = np.random.default_rng(0).uniform(-180, 180, (100, 2))
    >>> ramachandran_plot(pts, pts, 'rama.png')  # doctest: +SKIP
    'rama.png'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    edges = np.arange(-180.0, 180.0 + bin_width_deg / 2, bin_width_deg)
    panels = []
    for data in (ref_phi_psi, gen_phi_psi):
        a = np.asarray(data, dtype=np.float64).reshape(-1, 2)
        a = a[np.isfinite(a).all(1)]
        h = np.histogram2d(a[:, 0], a[:, 1], bins=[edges, edges])[0] / max(len(a), 1)
        panels.append((len(a), np.where(h > 0, h, np.nan)))
    filled = np.concatenate([h[np.isfinite(h)] for _, h in panels])
    norm = LogNorm(vmin=filled.min(), vmax=filled.max()) if len(filled) else None
    axes = fig.subplots(1, 2, sharey=True)
    im = None
    for ax, (n, h), label in zip(axes, panels, ("reference", "generated")):
        if n:
            im = ax.pcolormesh(edges, edges, h.T, norm=norm, cmap="viridis")
        ax.set_xlim(-180, 180)
        ax.set_ylim(-180, 180)
        ax.set_xticks(range(-180, 181, 60))
        ax.set_yticks(range(-180, 181, 60))
        ax.set_aspect("equal")
        ax.set_xlabel("phi (degrees)")
        ax.set_title(f"{label} ({n} phi/psi pairs)")
    axes[0].set_ylabel("psi (degrees)")
    if im is not None:
        fig.colorbar(im, ax=list(axes), label=f"fraction per {bin_width_deg:g} x {bin_width_deg:g} degree bin")
    head = title or "Ramachandran"
    if kl is not None:
        head += f"   KL(ref || gen) = {kl:.3f} nats ({bin_width_deg:g} degree bins)"
    fig.suptitle(head)
    fig.savefig(path, dpi=100)
    return path


_ELEMENT_COLOURS = {"C": "#555555", "N": "#2060d0", "O": "#d03020", "S": "#d0a000"}


def structure_plot(ref_xyz, gen_xyz, bonds, elements, path, title=None, labels=("reference", "backmapped"),
                   highlight=None):
    """Write a PNG with two structures of the same atoms drawn side by side and overlaid.

    Both are projected onto the two principal axes of ``ref_xyz`` (no
    alignment: backmapped frames share the CG frame of the reference). Bonds
    are drawn half-and-half in the colours of their atoms (C grey, N blue, O
    red, S yellow); far atoms are drawn first and paler.

    Parameters
    ----------
    ref_xyz, gen_xyz : array (n_atoms, 3), nm
    bonds : array (n_bonds, 2)
        Atom index pairs (e.g. ``ensemble.layout.bonds(ensemble.segment_start)``).
    elements : sequence of str
    path : str or path
        Output PNG file (its directory is created).
    title : str, optional
    labels : (str, str)
    highlight : array of bool (n_atoms,), optional
        Atoms drawn thicker (e.g. clashing residues); default: none.

    Returns
    -------
    str
        The path written.

    Examples
    --------
    >>> ens = load_ensemble('tests/data/trpcage.pdb')  # doctest: +SKIP
    >>> structure_plot(ens.xyz[0], ens.xyz[0], ens.layout.bonds(), ens.layout.elements, 'frame.png')  # doctest: +SKIP
    'frame.png'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    ref = np.asarray(ref_xyz, dtype=np.float64) * 10.0
    gen = np.asarray(gen_xyz, dtype=np.float64) * 10.0
    bonds = np.asarray(bonds, dtype=int).reshape(-1, 2)
    centre = ref.mean(0)
    axes3 = np.linalg.svd(ref - centre, full_matrices=False)[2]  # rows: principal axes
    colours = np.array([_ELEMENT_COLOURS.get(str(e).upper(), "#888888") for e in elements])
    width = np.full(len(bonds), 1.6)
    if highlight is not None:
        width[np.asarray(highlight, bool)[bonds].any(1)] = 3.2

    def segments(xyz):
        p = (xyz - centre) @ axes3.T  # (n, 3): x, y on the principal plane, z = depth
        a, b = p[bonds[:, 0]], p[bonds[:, 1]]
        mid = (a + b) / 2.0
        half1 = np.stack([a[:, :2], mid[:, :2]], 1)
        half2 = np.stack([mid[:, :2], b[:, :2]], 1)
        depth = np.concatenate([(a[:, 2] + mid[:, 2]) / 2, (b[:, 2] + mid[:, 2]) / 2])
        return np.concatenate([half1, half2]), np.concatenate([colours[bonds[:, 0]], colours[bonds[:, 1]]]), depth

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig = Figure(figsize=(13, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    panels = fig.subplots(1, 3, sharex=True, sharey=True)
    lw = np.concatenate([width, width])
    for ax, xyz, label in ((panels[0], ref, labels[0]), (panels[1], gen, labels[1])):
        seg, col, depth = segments(xyz)
        order = np.argsort(depth)  # far first
        alpha = 0.45 + 0.55 * (depth[order] - depth.min()) / max(np.ptp(depth), 1e-9)
        rgba = [(*_hex_rgb(c), a) for c, a in zip(col[order], alpha)]
        ax.add_collection(LineCollection(seg[order], colors=rgba, linewidths=lw[order], capstyle="round"))
        ax.set_title(label)
    for xyz, colour, label in ((ref, "#999999", labels[0]), (gen, "#d02090", labels[1])):
        seg, _, _ = segments(xyz)
        panels[2].add_collection(LineCollection(seg, colors=colour, linewidths=1.2, alpha=0.8, label=label))
    panels[2].set_title("overlay")
    panels[2].legend(loc="lower right", fontsize=8)
    allp = (np.concatenate([ref, gen]) - centre) @ axes3.T
    pad = 2.0
    for ax in panels:
        ax.set_xlim(allp[:, 0].min() - pad, allp[:, 0].max() + pad)
        ax.set_ylim(allp[:, 1].min() - pad, allp[:, 1].max() + pad)
        ax.set_aspect("equal")
        ax.set_xlabel("principal axis 1 (Å)")
    panels[0].set_ylabel("principal axis 2 (Å)")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path


def _hex_rgb(colour: str):
    return tuple(int(colour[i:i + 2], 16) / 255.0 for i in (1, 3, 5))


# --------------------------------------------------------------------------
# evaluation of ensembles and files
# --------------------------------------------------------------------------
def _summary(values):
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    return {
        "mean": float(v[ok].mean()) if ok.any() else float("nan"),
        "std": float(v[ok].std()) if ok.any() else float("nan"),
        "n_valid": int(ok.sum()),
        "per_frame": [float(x) for x in v],
    }


def _check_sequences(reference, generated):
    rs, gs = list(reference.sequence), list(generated.sequence)
    if rs == gs:
        return
    if len(rs) != len(gs):
        msg = f"the reference has {len(rs)} residues but the generated structures have {len(gs)}"
    else:
        i = next(k for k in range(len(rs)) if rs[k] != gs[k])
        msg = f"residue {i + 1} is {rs[i]} in the reference but {gs[i]} in the generated structures"
    raise InputError(f"sequences differ: {msg}; compare structures of the same protein "
                     f"(reference {reference.source or 'unnamed'!r}, generated {generated.source or 'unnamed'!r})")


def evaluate(reference, generated, plots_dir=None, name=None, bin_width_deg=KL_BIN_WIDTH_DEG,
             pseudo_count=KL_PSEUDO_COUNT):
    """Compare generated all-atom structures with a reference ensemble.

    Parameters
    ----------
    reference : ProteinEnsemble
        Reference (true) structures, one or more frames.
    generated : ProteinEnsemble
        Generated structures of the same sequence. Frames are paired with
        :func:`pair_frames` (equal counts, ``k`` samples per reference frame
        frame-major, or any number against a single reference frame).
    plots_dir : str or path, optional
        Write ``<name>_ramachandran.png`` here.
    name : str, optional
        Name of the comparison (plot file name, table header).
    bin_width_deg : float
        Histogram bin width for the KL divergences (degrees).
    pseudo_count : float
        Pseudo-count added to every bin's probability.

    Returns
    -------
    dict
        ``rmsd_angstrom``, ``rmsd_sym_angstrom``, ``ged``, ``clash_percent``,
        ``bond_ok_percent``: each ``{"mean", "std", "n_valid", "per_frame"}``
        over the generated frames (mean/std ignore NaN frames); ``kl``:
        KL(reference || generated) in nats for ``ramachandran`` (2D phi/psi),
        ``phi``, ``psi`` and ``chi1``..``chi4`` (pooled over residues);
        ``kl_bin_width_deg``, ``kl_pseudo_count``, ``units``, frame counts,
        ``samples_per_frame``, ``seconds`` and ``plots``.

    Raises
    ------
    ValueError
        When the sequences differ or the frame counts cannot be paired.

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> ens = load_ensemble('tests/data/trpcage.pdb')  # doctest: +SKIP
    >>> evaluate(ens, ens)['rmsd_angstrom']['mean']  # doctest: +SKIP
    0.0
    """
    t0 = time.perf_counter()
    _check_sequences(reference, generated)
    n_ref, n_gen = reference.n_frames, generated.n_frames
    pair = pair_frames(n_ref, n_gen)
    lay = reference.layout
    ref = np.where(reference.mask[..., None], reference.xyz, np.nan).astype(np.float64)
    gen = np.where(generated.mask[..., None], generated.xyz, np.nan).astype(np.float64)
    valid = np.isfinite(gen).all(-1) & np.isfinite(ref).all(-1)[pair]

    graphs = _GraphFrames(ref, gen, pair, valid, lay.elements)
    swapped = _swap_symmetric(ref, gen, pair, valid, lay.sequence)
    result = {
        "name": name or os.path.basename(str(generated.source)) or "generated",
        "reference": str(reference.source),
        "generated": str(generated.source),
        "n_reference_frames": int(n_ref),
        "n_generated_frames": int(n_gen),
        "samples_per_frame": int(n_gen // n_ref),
        "n_residues": int(reference.n_residues),
        "n_atoms": int(reference.n_atoms),
        "units": {"rmsd_angstrom": "Å", "rmsd_sym_angstrom": "Å", "ged": "dimensionless",
                  "clash_percent": "%", "bond_ok_percent": "%", "kl": "nats (natural log)",
                  "input_coordinates": "nm"},
        "rmsd_angstrom": _summary(_rmsd_from(ref, gen, pair, valid)),
        "rmsd_sym_angstrom": _summary(_rmsd_from(ref, swapped, pair, valid)),
        "ged": _summary(_ged(graphs)),
        "clash_percent": _summary(_clash(graphs, lay.atom_residue)),
        "bond_ok_percent": _summary(_bond_ok(graphs)),
    }

    seg = reference.segment_start
    phi_r, psi_r = backbone_dihedrals(reference, seg)
    phi_g, psi_g = backbone_dihedrals(generated, seg)
    rama_r = np.stack([phi_r.ravel(), psi_r.ravel()], 1)
    rama_g = np.stack([phi_g.ravel(), psi_g.ravel()], 1)
    chi_r, chi_g = chi_dihedrals(reference), chi_dihedrals(generated)
    kl = {"ramachandran": kl_divergence(rama_r, rama_g, bin_width_deg, pseudo_count),
          "phi": kl_divergence(phi_r.ravel(), phi_g.ravel(), bin_width_deg, pseudo_count),
          "psi": kl_divergence(psi_r.ravel(), psi_g.ravel(), bin_width_deg, pseudo_count)}
    for k in range(4):
        kl[f"chi{k + 1}"] = kl_divergence(chi_r[..., k].ravel(), chi_g[..., k].ravel(), bin_width_deg, pseudo_count)
    result["kl"] = kl
    result["kl_direction"] = "KL(reference || generated)"
    result["kl_bin_width_deg"] = float(bin_width_deg)
    result["kl_pseudo_count"] = float(pseudo_count)
    result["kl_histograms"] = (f"phi/psi: 2D {int(360 / bin_width_deg)}x{int(360 / bin_width_deg)} bins; "
                               f"phi, psi, chi1..chi4: 1D {int(360 / bin_width_deg)} bins, pooled over residues "
                               "and frames")
    result["plots"] = []
    if plots_dir is not None:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in result["name"])
        path = os.path.join(os.fspath(plots_dir), f"{safe}_ramachandran.png")
        ramachandran_plot(rama_r, rama_g, path, title=result["name"], kl=kl["ramachandran"],
                          bin_width_deg=bin_width_deg)
        result["plots"].append(path)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


def evaluate_files(reference_path, generated_path, reference_topology=None, generated_topology=None, plots_dir=None,
                   json_path=None, stride=1, name=None):
    """Load a reference and generated structures and :func:`evaluate` them.

    Parameters
    ----------
    reference_path, generated_path : str or path
        Anything :func:`openmm_backmap.io.load_ensemble` reads (PDB/mmCIF,
        multi-model PDB, trajectories with a topology).
    reference_topology, generated_topology : str or path, optional
        Topologies for trajectory files.
    plots_dir : str or path, optional
        Directory for the Ramachandran plot.
    json_path : str or path, optional
        Write the result as JSON (NaN written as null).
    stride : int
        Keep every ``stride``-th reference frame and the generated samples
        paired with it (with one reference frame: every ``stride``-th
        generated frame).
    name : str, optional
        Name of the comparison (default: the generated file's name without extension).

    Returns
    -------
    dict
        See :func:`evaluate`.

    Examples
    --------
    >>> r = evaluate_files('ref.pdb', 'backmapped.pdb', json_path='eval.json')  # doctest: +SKIP
    >>> print(format_table(r))  # doctest: +SKIP
    """
    from ..io.formats import load_ensemble

    stride = int(stride)
    if stride < 1:
        raise InputError(f"stride must be a positive integer, got {stride}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropped waters/H etc. are expected in references
        reference = load_ensemble(reference_path, topology=reference_topology)
        generated = load_ensemble(generated_path, topology=generated_topology)
    _check_sequences(reference, generated)
    if stride > 1:
        pair = pair_frames(reference.n_frames, generated.n_frames)
        if reference.n_frames == 1:
            generated = generated.select_frames(np.arange(0, generated.n_frames, stride))
        else:
            generated = generated.select_frames(np.flatnonzero(pair % stride == 0))
            reference = reference.select_frames(np.arange(0, reference.n_frames, stride))
    if name is None:
        name = os.path.basename(os.fspath(generated_path))
        name = os.path.splitext(name[:-3] if name.endswith(".gz") else name)[0]
    result = evaluate(reference, generated, plots_dir=plots_dir, name=name)
    result["reference"], result["generated"] = os.fspath(reference_path), os.fspath(generated_path)
    result["stride"] = stride
    if json_path is not None:
        json_path = os.fspath(json_path)
        parent = os.path.dirname(os.path.abspath(json_path))
        os.makedirs(parent, exist_ok=True)
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(_jsonable(result), fh, indent=2, allow_nan=False, ensure_ascii=False)
            fh.write("\n")
        result["json"] = json_path
    return result


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def _fmt(x, digits=3):
    return "nan" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def format_table(result) -> str:
    """Format an :func:`evaluate` result as a plain-text table with units.

    Parameters
    ----------
    result : dict
        As returned by :func:`evaluate` or :func:`evaluate_files`.

    Returns
    -------
    str

    Examples
    --------
    >>> print(format_table(evaluate(ens, ens)))  # doctest: +SKIP
    """
    lines = [
        f"{result.get('name', 'evaluation')}: {result['n_generated_frames']} generated frame(s) vs "
        f"{result['n_reference_frames']} reference frame(s) ({result['samples_per_frame']} per reference frame), "
        f"{result['n_residues']} residues, {result['n_atoms']} heavy atoms",
        "",
        f"{'metric':<50} {'mean':>10} {'std':>10}  unit",
        "-" * 80,
    ]
    for key, label, unit in _METRICS:
        m = result[key]
        extra = "" if m["n_valid"] == len(m["per_frame"]) else f"  ({m['n_valid']}/{len(m['per_frame'])} frames)"
        digits = 4 if key == "ged" else 3
        lines.append(f"{label:<50} {_fmt(m['mean'], digits):>10} {_fmt(m['std'], digits):>10}  {unit}{extra}")
    lines += [
        "",
        f"{result.get('kl_direction', 'KL(reference || generated)')}, nats; "
        f"bin width {result['kl_bin_width_deg']:g} degrees, pseudo-count {result['kl_pseudo_count']:g}",
        "-" * 80,
    ]
    labels = {"ramachandran": "Ramachandran (phi, psi), 2D"}
    for key, value in result["kl"].items():
        lines.append(f"{labels.get(key, key):<50} {_fmt(value, 4):>10}")
    for p in result.get("plots", []):
        lines.append(f"plot: {p}")
    if result.get("json"):
        lines.append(f"json: {result['json']}")
    return "\n".join(lines)
