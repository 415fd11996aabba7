"""Reference-free quality checks of backmapped heavy-atom frames.

There is no true all-atom structure to compare a backmapped frame with, so
these checks use the definitions of :mod:`openmm_backmap.evaluation.metrics`
with the reference replaced by the chemistry of the topology:

``clash_percent``
    :func:`~openmm_backmap.evaluation.metrics.clash_topology`: residues with
    a heavy atom closer than 1.2 Å to a heavy atom of another residue, the
    bonded pairs excluded taken from the *topology* (template and peptide
    bonds). The frame itself cannot serve as the reference: its
    distance-inferred bond graph counts every pair closer than ~2 Å as bonded
    and so hides every clash.
``bond_ok_percent``
    as ``bond_ok`` (bonds within 10 % of the reference length), over the
    topology's heavy-atom bonds, with reference lengths given by the caller
    (the run layer takes the force field's equilibrium lengths).

:func:`stereo_defects` finds what neither check sees, because bond lengths
and distances are the same in a mirror image: D residues (a C-alpha
stereocentre with a negative signed volume,
:func:`~openmm_backmap.structure.chirality_volumes`) and cis peptide bonds
(omega within 90 degrees of 0) before a residue other than proline, which
occur in about 0.03 % of such bonds in crystal structures (Jabs, Weiss and
Hilgenfeld 1999, J Mol Biol 286:291).
"""

from __future__ import annotations

import numpy as np

from ..structure.constants import BOND_OK_TOLERANCE
from ..structure.errors import InputError
from ..structure import atom_layout, chiral_centres, chirality_volumes
from .metrics import clash_topology
from .torsions import dihedrals_deg

__all__ = ["frame_quality", "stereo_defects"]

#: |omega| below this (degrees) is a cis peptide bond.
CIS_OMEGA_DEG = 90.0


def frame_quality(xyz, sequence, segment_start=None, bond_lengths_nm=None):
    """Reference-free clash and bond checks of heavy-atom frames (see the module docstring).

    Parameters
    ----------
    xyz : array, (A, 3) or (F, A, 3), nm
        Heavy atoms in canonical order.
    sequence : sequence of str
        Canonical residue names.
    segment_start : array of bool, optional
        Chain starts and breaks (no peptide bond before them).
    bond_lengths_nm : array, (n,), nm, optional
        Reference length of every bond of
        ``atom_layout(sequence).bonds(segment_start)``, in that order (NaN
        where unknown). Without it ``bond_ok_percent`` is NaN.

    Returns
    -------
    clash_percent, bond_ok_percent : ndarray, (F,)
        Percent of residues with a clash and percent of the bonds with a
        known length that are within 10 % of it; NaN for frames with
        non-finite coordinates.

    Examples
    --------
    >>> import numpy as np
    >>> from openmm_backmap.structure import atom_layout
    >>> lay = atom_layout(['GLY'])
    >>> x = np.array([[0.0, 0, 0], [0.145, 0, 0], [0.2, 0.14, 0], [0.32, 0.16, 0]])
    >>> frame_quality(x, ['GLY'], None, np.linalg.norm(x[lay.bonds()[:, 0]] - x[lay.bonds()[:, 1]], axis=1))
    (array([0.]), array([100.]))
    """
    x = np.asarray(xyz, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    layout = atom_layout(sequence)
    bonds = layout.bonds(segment_start)
    finite = np.isfinite(x).all(axis=(1, 2))
    clash = np.full(len(x), np.nan)
    if finite.any():
        clash[finite] = clash_topology(x[finite], bonds, layout.atom_residue)
    ok = np.full(len(x), np.nan)
    if bond_lengths_nm is None:
        return clash, ok
    r0 = np.asarray(bond_lengths_nm, dtype=np.float64)
    if r0.shape != (len(bonds),):
        raise InputError(f"{len(r0)} bond lengths for the {len(bonds)} bonds of the topology")
    known = np.isfinite(r0)
    if known.any() and finite.any():
        b = bonds[known]
        d = np.linalg.norm(x[finite][:, b[:, 0]] - x[finite][:, b[:, 1]], axis=-1)
        ok[finite] = 100.0 * np.mean(np.abs(d - r0[known]) <= BOND_OK_TOLERANCE * r0[known], axis=1)
    return clash, ok


def stereo_defects(xyz, sequence, segment_start=None):
    """D residues and cis peptide bonds before a residue other than proline, per frame (see the module docstring).

    Parameters
    ----------
    xyz : array, (A, 3) or (F, A, 3), nm
        Heavy atoms in canonical order.
    sequence : sequence of str
        Canonical residue names.
    segment_start : array of bool, optional
        Chain starts and breaks (no peptide bond before them).

    Returns
    -------
    d_residue, cis_peptide : ndarray of bool, (F, R)
        Residue ``r`` is D (it has a CB and its C-alpha's signed volume is not positive); the peptide bond from
        residue ``r - 1`` to ``r`` is cis (``|omega| < CIS_OMEGA_DEG``) and ``r`` is not a proline. False where
        the check does not apply (glycine, chain starts) or a coordinate is not finite.

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> ens = load_ensemble('tests/data/trpcage.pdb')  # doctest: +SKIP
    >>> d, cis = stereo_defects(ens.xyz, ens.sequence, ens.segment_start)  # doctest: +SKIP
    >>> int(d.sum()), int(cis.sum())  # doctest: +SKIP
    (0, 0)
    """
    x = np.asarray(xyz, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    layout = atom_layout(sequence)
    n_res = len(layout.residue_start) - 1
    d = np.zeros((len(x), n_res), dtype=bool)
    centres = chiral_centres(layout)
    if len(centres):
        with np.errstate(invalid="ignore"):
            d[:, layout.atom_residue[centres[:, 1]]] = chirality_volumes(x, centres) <= 0
    cis = np.zeros((len(x), n_res), dtype=bool)
    seg = np.zeros(n_res, dtype=bool) if segment_start is None else np.asarray(segment_start, dtype=bool)
    after = np.array([r for r in range(1, n_res) if not seg[r] and sequence[r] != "PRO"], dtype=np.int64)
    if len(after):
        quads = np.stack([[layout.index(r - 1, "CA"), layout.index(r - 1, "C"), layout.index(r, "N"),
                           layout.index(r, "CA")] for r in after])
        with np.errstate(invalid="ignore"):
            cis[:, after] = np.abs(dihedrals_deg(x, quads)) < CIS_OMEGA_DEG
    return d, cis
