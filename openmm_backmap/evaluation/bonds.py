"""Bond graphs inferred from interatomic distances.

A bond exists where ``d < BOND_TOLERANCE * (r_i + r_j)`` with the covalent
radii of :data:`~openmm_backmap.structure.constants.COVALENT_RADII_ANGSTROM`.
The reference graph of a frame decides which atoms are bonded for
``ged``, ``clash`` and ``bond_ok`` (:mod:`.metrics`).

Hand-written on purpose: mdtraj and OpenMM take bonds from residue
templates, not from distances, while ``ged`` compares the graph of the
coordinates themselves; scipy's k-d tree finds the candidate pairs.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..structure import InputError, atom_layout, disulfide_bonds
from ..structure.constants import ANGSTROM_PER_NM, BOND_OK_TOLERANCE, BOND_TOLERANCE, COVALENT_RADII_ANGSTROM

__all__ = ["bond_graph", "bond_ok_failures"]


def radii_nm(elements) -> np.ndarray:
    """Covalent radii (nm) of elements or atom names (read by their first letter)."""
    radii = []
    for e in elements:
        key = str(e).strip().upper()
        key = key if key in COVALENT_RADII_ANGSTROM else key[:1]  # atom names ('CA', 'OD1') by first letter
        if key not in COVALENT_RADII_ANGSTROM:
            raise InputError(f"no covalent radius for element {e!r}; known: {sorted(COVALENT_RADII_ANGSTROM)}")
        radii.append(COVALENT_RADII_ANGSTROM[key])
    return np.array(radii, dtype=np.float64) / ANGSTROM_PER_NM


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
    radii = radii_nm(elements)
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


def pair_keys(pairs, n_atoms) -> np.ndarray:
    """Sorted unique keys ``min(i, j) * n_atoms + max(i, j)`` of atom pairs (either order)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return np.unique(pairs.min(1) * n_atoms + pairs.max(1))


class GraphFrames:
    """Per-frame bond graphs of paired reference and generated frames (reference graphs cached).

    ``ref`` (F_ref, A, 3) and ``gen`` (F_gen, A, 3) in nm, ``pair`` (F_gen,)
    the reference frame of every generated frame, ``valid`` (F_gen, A) the
    atoms present in both.
    """

    def __init__(self, ref, gen, pair, valid, elements):
        self.ref, self.gen, self.pair, self.valid = ref, gen, pair, valid
        self.radii = radii_nm(elements)
        if len(self.radii) != ref.shape[1]:
            raise InputError(f"got {len(self.radii)} elements for {ref.shape[1]} atoms")
        self.n = ref.shape[1]
        self._ref = {}

    def ref_keys(self, j):
        """Reference bonds (:func:`pair_keys`) of generated frame j's reference, restricted to atoms valid in j."""
        r = int(self.pair[j])
        if r not in self._ref:
            self._ref[r] = pair_keys(_bond_graph(self.ref[r], self.radii), self.n)
        keys = self._ref[r]
        v = self.valid[j]
        return keys[v[keys // self.n] & v[keys % self.n]]

    def gen_keys(self, j):
        """Bonds (:func:`pair_keys`) of generated frame j between its valid atoms."""
        return pair_keys(_bond_graph(self.gen[j], self.radii, self.valid[j]), self.n)


def bond_ok_failures(sequence, ref_xyz, gen_xyz, segment_start=None, tolerance=BOND_OK_TOLERANCE) -> list[dict]:
    """The reference bonds that :func:`~.metrics.bond_ok` counts as failed in one frame, and which are the reference's.

    ``bond_ok`` takes its bonds from the reference's distances, so a reference with a squashed peptide or two
    atoms pressed together fails a generator whose chemistry is exact. Each failed bond is classed:

    * ``"not a covalent bond"``: the pair is neither a bond of the residue templates, a peptide bond nor a
      disulfide (:func:`~openmm_backmap.structure.disulfide_bonds`), e.g. two carbonyl O atoms 1.67 Å apart;
    * ``"distorted in the reference"``: a covalent bond whose reference length is the outlier: more than half
      of ``tolerance`` from the median of the same bond (same atom names, peptide or not) in this reference,
      and further from it than the generated length (a Thr CB-CG2 of 1.38 Å against a median 1.52 Å fails a
      generated 1.52 Å);
    * ``None``: a sound reference bond that the generated frame got wrong.

    Parameters
    ----------
    sequence : sequence of str
        Canonical residue names.
    ref_xyz, gen_xyz : array, (A, 3), nm
        One reference and one generated frame in canonical atom order.
    segment_start : array of bool, optional
        Chain starts and breaks (no peptide bond before them).
    tolerance : float

    Returns
    -------
    list of dict
        One per failed bond: ``atoms`` (two ``"RES12:NAME"`` labels, residues counted from 0),
        ``ref_angstrom``, ``gen_angstrom`` and ``reference_fault`` (one of the classes above, or None).

    Examples
    --------
    >>> import numpy as np
    >>> from openmm_backmap.structure import atom_layout
    >>> lay = atom_layout(["GLY", "GLY"])
    >>> ref = np.zeros((lay.n_atoms, 3)) + np.arange(lay.n_atoms)[:, None] * 0.5  # atoms far apart ...
    >>> ref[lay.index(0, "O")] = ref[lay.index(1, "O")] + [0.16, 0, 0]  # ... but two O 1.6 Å apart
    >>> gen = ref.copy(); gen[lay.index(0, "O")] += [1.0, 0, 0]
    >>> [f["reference_fault"] for f in bond_ok_failures(["GLY", "GLY"], ref, gen)]
    ['not a covalent bond']
    """
    lay = atom_layout(sequence)
    ref_xyz = np.asarray(ref_xyz, dtype=np.float64)
    gen_xyz = np.asarray(gen_xyz, dtype=np.float64)
    both = np.isfinite(ref_xyz).all(1) & np.isfinite(gen_xyz).all(1)
    pairs = bond_graph(ref_xyz, lay.elements, mask=both)
    d_ref = np.linalg.norm(ref_xyz[pairs[:, 0]] - ref_xyz[pairs[:, 1]], axis=1)
    d_gen = np.linalg.norm(gen_xyz[pairs[:, 0]] - gen_xyz[pairs[:, 1]], axis=1)
    failed = np.abs(d_gen - d_ref) > tolerance * d_ref
    if not failed.any():
        return []
    covalent = np.concatenate([lay.bonds(segment_start), disulfide_bonds(sequence, ref_xyz)])
    res, names = np.asarray(lay.atom_residue), lay.atom_names

    def kind(i, j):
        return tuple(sorted((names[i], names[j]))) + (bool(res[i] == res[j]),)

    lengths = {}
    for i, j in covalent:
        if both[i] and both[j]:
            lengths.setdefault(kind(i, j), []).append(np.linalg.norm(ref_xyz[i] - ref_xyz[j]))
    median = {k: float(np.median(v)) for k, v in lengths.items()}
    known = set(pair_keys(covalent, lay.n_atoms).tolist())
    out = []
    for (i, j), r, g in zip(pairs[failed], d_ref[failed], d_gen[failed]):
        if int(min(i, j) * lay.n_atoms + max(i, j)) not in known:
            fault = "not a covalent bond"
        elif abs(r - median[kind(i, j)]) > max(0.5 * tolerance * median[kind(i, j)], abs(g - median[kind(i, j)])):
            fault = "distorted in the reference"
        else:
            fault = None
        out.append({"atoms": [f"{sequence[res[a]]}{res[a]}:{names[a]}" for a in (i, j)],
                    "ref_angstrom": round(float(r) * ANGSTROM_PER_NM, 3),
                    "gen_angstrom": round(float(g) * ANGSTROM_PER_NM, 3), "reference_fault": fault})
    return out
