"""Chain breaks: the one detector of where a chain is not covalently continuous.

Every layer finds segments the same way (loading structures, CG input,
relaxation): a residue starts a new segment when its chain differs from the
previous residue's, or when the peptide C-N distance exceeds
:data:`~.constants.PEPTIDE_BREAK_NM`, or, where C or N is missing (C-alpha
traces, CG beads), when the C-alpha distance exceeds
:data:`~.constants.CA_BREAK_NM`.
"""

from __future__ import annotations

import warnings

import numpy as np

from .constants import BROKEN_BOND_NM, CA_BREAK_NM, PEPTIDE_BREAK_NM
from .errors import LoadWarning
from .templates import atom_layout

__all__ = ["segment_starts_from_distances", "detect_segment_starts", "torn_frames"]


def segment_starts_from_distances(d_ca_nm, chain_ids=None, d_peptide_nm=None) -> np.ndarray:
    """Segment starts from consecutive-residue distances.

    Parameters
    ----------
    d_ca_nm : array, (R - 1,), nm
        C-alpha (or bead) distance between residue i and i + 1; NaN where unknown.
    chain_ids : sequence, (R,), optional
        A change of chain always starts a segment.
    d_peptide_nm : array, (R - 1,), nm, optional
        Peptide C(i)-N(i+1) distances; used first where finite.

    Returns
    -------
    ndarray of bool, (R,)
        True where a residue starts a segment (always the first).

    Examples
    --------
    >>> segment_starts_from_distances(np.array([0.38, 0.9, 0.38])).tolist()
    [True, False, True, False]
    """
    d_ca = np.asarray(d_ca_nm, dtype=np.float64).reshape(-1)
    n = len(d_ca) + 1
    d_pep = np.full(n - 1, np.nan) if d_peptide_nm is None else np.asarray(d_peptide_nm, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        starts = np.where(np.isfinite(d_pep), d_pep > PEPTIDE_BREAK_NM,
                          np.where(np.isfinite(d_ca), d_ca > CA_BREAK_NM, True))
    starts = np.concatenate([[True], starts])
    if chain_ids is not None:
        chain_ids = list(chain_ids)
        starts[1:] |= np.array([a != b for a, b in zip(chain_ids[1:], chain_ids[:-1])], dtype=bool)
    return starts


def _peptide_lengths(xyz, sequence):
    """C(i)-N(i+1) distances (F, R - 1), nm (NaN where an atom is missing)."""
    lay = atom_layout(sequence)
    c = lay.residue_start[:-1] + 2  # C is third in every template
    nn = lay.residue_start[:-1]  # N is first
    return np.linalg.norm(xyz[:, c[:-1]] - xyz[:, nn[1:]], axis=-1)


def _broken_bonds(xyz, sequence, starts):
    """(F, n_bonds) bool: covalent bonds (peptide bonds within segments included) longer than
    ``BROKEN_BOND_NM`` in a frame, and the bonds (n_bonds, 2)."""
    bonds = atom_layout(sequence).bonds(starts)
    d = np.linalg.norm(xyz[:, bonds[:, 0]] - xyz[:, bonds[:, 1]], axis=-1)
    with np.errstate(invalid="ignore"):
        return d > BROKEN_BOND_NM, bonds, d


def torn_frames(ensemble) -> np.ndarray:
    """Frames with a covalent bond over ``BROKEN_BOND_NM`` where the ensemble has none (corrupt models,
    unwrapped periodic images).

    :func:`load_ensemble` warns about them; evaluations usually drop them.

    Parameters
    ----------
    ensemble : ProteinEnsemble

    Returns
    -------
    ndarray of int
        Frame indices.

    Examples
    --------
    >>> ens = load_ensemble('PED00153e011.pdb.gz')  # doctest: +SKIP
    >>> ens = ens.select_frames(np.setdiff1d(np.arange(ens.n_frames), torn_frames(ens)))  # doctest: +SKIP
    """
    broken = _broken_bonds(ensemble.xyz, ensemble.sequence, ensemble.segment_start)[0]
    return np.flatnonzero(broken.any(1))


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
    if len(sequence) == 0:
        return np.zeros(0, dtype=bool)
    ca = lay.ca_index
    pep_frames = _peptide_lengths(xyz, sequence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        d_pep = np.nanmedian(pep_frames, axis=0)
        d_ca = np.nanmedian(np.linalg.norm(xyz[:, ca[:-1]] - xyz[:, ca[1:]], axis=-1), axis=0)
    starts = segment_starts_from_distances(d_ca, chain_ids, d_pep)
    # broken bonds within segments: corrupt models, unwrapped periodic images
    broken, bonds, d = _broken_bonds(xyz, sequence, starts)
    if broken.any():
        frames = np.flatnonzero(broken.any(1))
        f = frames[0]
        k = int(np.flatnonzero(broken[f])[0])
        res = lay.atom_residue[bonds[k]]
        names = [f"{lay.atom_names[a]} of {sequence[r]} {r + 1}" for a, r in zip(bonds[k], res)]
        warnings.warn(f"{len(frames)} of {len(xyz)} frame(s) have a covalent bond longer than {BROKEN_BOND_NM} nm "
                      f"(first: frame {f}, {names[0]} - {names[1]}, "
                      f"{d[f, k]:.2f} nm): corrupt models or unwrapped periodic images? They are kept as they are; "
                      f"drop them with ensemble.select_frames() and structure.segments.torn_frames() (frames {frames[:10].tolist()}"
                      f"{' ...' if len(frames) > 10 else ''})", LoadWarning, stacklevel=3)
    return starts
