"""Per-frame accuracy metrics of generated all-atom structures against a reference.

Everything here compares coordinate arrays; nothing depends on a model.
Inputs are heavy-atom coordinates in **nm** in the canonical atom order of
:func:`openmm_backmap.structure.atom_layout` (NaN where an atom is missing);
every reported length is in **Ångström** and every fraction in **percent**.

The definitions follow the backmapping literature (DiAMoNDBack, FlowBack,
GenZProt):

``rmsd``
    Heavy-atom RMSD without superposition; atoms are matched by residue
    order and atom name (same canonical index) and atoms missing in either
    structure are left out.
``rmsd_sym``
    As ``rmsd``, after swapping the symmetry-equivalent atoms of a residue
    (:data:`~openmm_backmap.structure.templates.SYMMETRIC_ATOM_PAIRS`) wherever
    that lowers the residue's squared deviation.
``ged``
    Normalised graph edit distance between the bond graphs inferred from
    distances (:func:`~.bonds.bond_graph`), with fixed node correspondence:
    ``|E_gen xor E_ref| / |E_ref|``.
``clash``
    Percent of residues with a heavy atom closer than 1.2 Å to a heavy atom
    of another residue, pairs bonded in the reference graph excluded
    (``clash_topology``: the same with the bonded pairs taken from a bond
    list, e.g. the topology's, for structures without a reference).
``bond_ok``
    Percent of reference-graph bonds whose generated length is within 10 %
    of the reference length.

Frames are paired in order. A reference frame may serve several generated
samples: with ``n_gen = k * n_ref`` generated frame ``j`` is compared with
reference frame ``j // k`` (all samples of reference frame 0 first), and a
single reference frame serves any number of generated frames.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

from ..structure import InputError, atom_layout
from ..structure.constants import ANGSTROM_PER_NM, BOND_OK_TOLERANCE, CLASH_DISTANCE_ANGSTROM
from ..structure import SYMMETRIC_ATOM_PAIRS
from .bonds import GraphFrames, pair_keys

__all__ = ["pair_frames", "rmsd", "rmsd_sym", "symmetry_corrected", "ged", "clash", "clash_topology",
           "clashing_residues", "bond_ok"]


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


def check_sequences(reference, generated):
    """Raise :class:`InputError` unless two ensembles have the same sequence (says where they differ)."""
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


def masked_xyz(ensemble) -> np.ndarray:
    """An ensemble's coordinates (F, A, 3) as float64 nm, NaN where an atom is missing."""
    return np.where(np.asarray(ensemble.mask)[..., None], ensemble.xyz, np.nan).astype(np.float64)


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
        return np.sqrt(sq.sum(1) / n) * ANGSTROM_PER_NM


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

    Per residue, the pairs of :data:`~openmm_backmap.structure.templates.SYMMETRIC_ATOM_PAIRS`
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
    >>> from openmm_backmap.structure import atom_layout
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
    >>> from openmm_backmap.structure import atom_layout
    >>> ref = np.random.default_rng(0).normal(size=(atom_layout(['ASP']).n_atoms, 3))
    >>> gen = ref[[0, 1, 2, 3, 4, 5, 7, 6]]  # OD1 and OD2 swapped
    >>> rmsd_sym(ref, gen, ['ASP']) < 1e-12 < rmsd(ref, gen)
    True
    """
    ref, gen, pair, valid, squeeze = _prepare(ref_xyz, gen_xyz, mask)
    swapped = _swap_symmetric(ref, gen, pair, valid, sequence)
    return _out(_rmsd_from(ref, swapped, pair, valid), squeeze)


# --------------------------------------------------------------------------
# bond-graph metrics
# --------------------------------------------------------------------------
def _graph_frames(ref_xyz, gen_xyz, elements, mask):
    """Bond graphs of paired frames, and whether to return a float (both inputs single frames)."""
    ref, gen, pair, valid, squeeze = _prepare(ref_xyz, gen_xyz, mask)
    return GraphFrames(ref, gen, pair, valid, elements), squeeze


def ged(ref_xyz, gen_xyz, elements, mask=None):
    """Normalised graph edit distance of the inferred bond graphs: ``|E_gen xor E_ref| / |E_ref|``.

    Nodes correspond by index (fixed correspondence); only atoms present in
    both structures (and in ``mask``) are nodes. See :func:`~.bonds.bond_graph` for
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
    graphs, squeeze = _graph_frames(ref_xyz, gen_xyz, elements, mask)
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

    Pairs bonded in the reference bond graph (:func:`~.bonds.bond_graph`) are not
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
    graphs, squeeze = _graph_frames(ref_xyz, gen_xyz, elements, mask)
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
    cut = distance_angstrom / ANGSTROM_PER_NM
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
    graphs, _ = _graph_frames(np.asarray(ref_xyz)[None], np.asarray(gen_xyz)[None], elements, mask)
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
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if len(bonds) and (bonds.min() < 0 or bonds.max() >= n):
        raise InputError(f"bonds refer to atoms outside 0..{n - 1}")
    keys = pair_keys(bonds, n)
    valid = np.isfinite(x).all(-1)
    out = [_clash_frame(x[f], valid[f], atom_residue, keys, distance_angstrom) for f in range(len(x))]
    return _out(out, np.ndim(xyz) == 2)


def bond_ok(ref_xyz, gen_xyz, elements, mask=None, tolerance=BOND_OK_TOLERANCE):
    """Percent of reference bonds whose generated length is within 10 % of the reference length.

    The bonds are those of the reference bond graph (:func:`~.bonds.bond_graph`)
    between atoms present in both structures; a bond is OK when
    ``|d_gen - d_ref| <= 0.1 * d_ref``.

    Parameters
    ----------
    ref_xyz, gen_xyz : arrays, (A, 3) or (F, A, 3), nm
        Reference and generated frames (paired as in :func:`pair_frames`).
    elements : sequence of str, length A
    mask : array of bool, optional
        Atoms that may take part (default: all present on both sides).
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
    graphs, squeeze = _graph_frames(ref_xyz, gen_xyz, elements, mask)
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


def per_frame_metrics(ref_xyz, gen_xyz, layout) -> dict:
    """The five per-frame metrics of generated frames, computed from one set of bond graphs.

    ``ref_xyz`` (F_ref, A, 3) and ``gen_xyz`` (F_gen, A, 3) in nm, NaN where
    an atom is missing, paired with :func:`pair_frames`; ``layout`` the
    :class:`~openmm_backmap.structure.AtomLayout` of both. Returns arrays of
    shape (F_gen,) under the keys of :func:`~.reports.evaluate`'s result:
    ``rmsd_angstrom``, ``rmsd_sym_angstrom``, ``ged``, ``clash_percent``,
    ``bond_ok_percent``.
    """
    ref, gen, pair, valid, _ = _prepare(ref_xyz, gen_xyz, None)
    graphs = GraphFrames(ref, gen, pair, valid, layout.elements)
    swapped = _swap_symmetric(ref, gen, pair, valid, layout.sequence)
    return {
        "rmsd_angstrom": _rmsd_from(ref, gen, pair, valid),
        "rmsd_sym_angstrom": _rmsd_from(ref, swapped, pair, valid),
        "ged": _ged(graphs),
        "clash_percent": _clash(graphs, np.asarray(layout.atom_residue, dtype=np.int64)),
        "bond_ok_percent": _bond_ok(graphs),
    }
