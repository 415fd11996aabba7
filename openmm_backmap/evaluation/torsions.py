"""Backbone and side-chain torsions, and KL divergences of their histograms.

Torsions are computed by :func:`mdtraj.compute_dihedrals` on atom
quadruples of the canonical layout, rather than by ``mdtraj.compute_phi``
and friends, because those pair residues by the mdtraj topology: they know
neither this package's chain breaks (``segment_start``) nor its missing
atoms. Angles are reported in degrees in (-180, 180] (IUPAC sign: trans =
180, cis = 0).

KL divergences are ``KL(reference || generated)`` (natural log, nats) of
histograms of the backbone (phi, psi) pairs and of chi1..chi4, with
:data:`~openmm_backmap.structure.constants.KL_BIN_WIDTH_DEG` bins and
:data:`~openmm_backmap.structure.constants.KL_PSEUDO_COUNT` added to every
bin's probability before renormalising. Jensen-Shannon divergences
(:func:`js_divergence`, nats, symmetric, at most ln 2) use the same bins and
no pseudo-count (they are finite without one).
"""

from __future__ import annotations

from functools import lru_cache

import mdtraj
import numpy as np

from ..structure import TEMPLATES, InputError, atom_layout
from ..structure.constants import KL_BIN_WIDTH_DEG, KL_PSEUDO_COUNT
from .metrics import masked_xyz

__all__ = ["dihedral_deg", "dihedrals_deg", "backbone_dihedrals_deg", "chi_dihedrals_deg", "kl_divergence",
           "js_divergence", "jensen_shannon"]


def dihedrals_deg(xyz, quads) -> np.ndarray:
    """Torsions (F, n) in degrees, in (-180, 180], of atom quadruples ``quads`` (n, 4) in frames ``xyz`` (F, A, 3);
    NaN in, NaN out.

    Examples
    --------
    >>> x = np.array([[[1.0, 0, 0], [0, 0, 0], [0, 1, 0], [1, 1, 0]]])
    >>> dihedrals_deg(x, [[0, 1, 2, 3]]).round(3).tolist()  # cis
    [[0.0]]
    """
    quads = np.asarray(quads, dtype=np.int64).reshape(-1, 4)
    rad = mdtraj.compute_dihedrals(mdtraj.Trajectory(xyz, None), quads, periodic=False)
    # mdtraj works in float32: +-pi comes back as +-180.000005 degrees; keep the range (-180, 180]
    deg = np.clip(np.degrees(rad.astype(np.float64)), -180.0, 180.0)
    return np.where(deg == -180.0, 180.0, deg)


def dihedral_deg(p0, p1, p2, p3) -> np.ndarray:
    """Torsion angle p0-p1-p2-p3 in degrees, IUPAC sign convention, in (-180, 180].

    Looking along p1 -> p2, the angle is positive when the bond p1-p0 must be
    turned clockwise to eclipse p2-p3 (trans = 180, cis = 0). Vectorised over
    any leading dimensions; NaN in, NaN out. Computed in single precision
    (by mdtraj): about 1e-5 degrees.

    Parameters
    ----------
    p0, p1, p2, p3 : arrays, (..., 3)
        Points (any length unit).

    Returns
    -------
    ndarray, shape (...)
        Degrees.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.radians(60)
    >>> round(float(dihedral_deg([1, 0, 0], [0, 0, 0], [0, 0, 1], [np.cos(t), np.sin(t), 1])), 4)
    60.0
    """
    points = np.stack(np.broadcast_arrays(*(np.asarray(p, dtype=np.float64) for p in (p0, p1, p2, p3))), -2)
    if points.shape[-1] != 3:
        raise InputError(f"points must have shape (..., 3), got {points.shape[:-2] + points.shape[-1:]}")
    out = dihedrals_deg(points.reshape(-1, 4, 3), [[0, 1, 2, 3]])
    return out.reshape(points.shape[:-2])


def backbone_dihedrals_deg(ensemble, segment_start=None):
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
    >>> phi, psi = backbone_dihedrals_deg(load_ensemble('tests/data/trpcage.pdb'))  # doctest: +SKIP
    >>> phi.shape  # doctest: +SKIP
    (1, 20)
    """
    seg = np.asarray(ensemble.segment_start if segment_start is None else segment_start, dtype=bool)
    xyz = masked_xyz(ensemble)
    start = ensemble.layout.residue_start[:-1]
    n_, ca, c = start, start + 1, start + 2
    n_res = len(start)
    phi = np.full((xyz.shape[0], n_res), np.nan)
    psi = np.full((xyz.shape[0], n_res), np.nan)
    if n_res > 1:
        quads = np.concatenate([np.stack([c[:-1], n_[1:], ca[1:], c[1:]], 1),
                                np.stack([n_[:-1], ca[:-1], c[:-1], n_[1:]], 1)])
        angles = dihedrals_deg(xyz, quads)
        phi[:, 1:], psi[:, :-1] = angles[:, :n_res - 1], angles[:, n_res - 1:]
        phi[:, seg] = np.nan
        psi[:, np.flatnonzero(seg[1:])] = np.nan
    return phi, psi


@lru_cache(maxsize=32)
def _chi_atoms(sequence: tuple):
    """Chi k (1..4) of every residue that has it: (residue, k - 1) index arrays and (n, 4) atom quadruples.

    Taken from the template Z-matrices, so that they follow the templates' atom names.
    """
    lay = atom_layout(sequence)
    res, chi, quads = [], [], []
    for k in range(1, 5):
        for r, name in enumerate(lay.sequence):
            entry = next((z for z in TEMPLATES[name].zmatrix if z[4] == k), None)
            if entry is None:
                continue
            atom, a, b, c, _ = entry
            res.append(r)
            chi.append(k - 1)
            quads.append([lay.index(r, x) for x in (a, b, c, atom)])
    return np.array(res, dtype=np.int64), np.array(chi, dtype=np.int64), np.array(quads, dtype=np.int64).reshape(-1, 4)


def chi_dihedrals_deg(ensemble):
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
    >>> from openmm_backmap.structure import ProteinEnsemble
    >>> ens = ProteinEnsemble.from_arrays(['SER'], np.random.default_rng(0).normal(size=(6, 3)))
    >>> chi = chi_dihedrals_deg(ens)
    >>> chi.shape, bool(np.isfinite(chi[0, 0, 0])), bool(np.isnan(chi[0, 0, 1]))
    ((1, 1, 4), True, True)
    """
    xyz = masked_xyz(ensemble)
    out = np.full((xyz.shape[0], len(ensemble.sequence), 4), np.nan)
    res, chi, quads = _chi_atoms(tuple(ensemble.layout.sequence))
    if len(quads):
        out[:, res, chi] = dihedrals_deg(xyz, quads)
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


def jensen_shannon(p, q) -> float:
    """Jensen-Shannon divergence of two histograms on the same bins, in nats.

    ``JS = KL(P || M) / 2 + KL(Q || M) / 2`` with ``M = (P + Q) / 2``, after
    normalising the counts ``p`` and ``q``; empty bins contribute nothing, so
    no pseudo-count is needed. Symmetric, 0 for identical histograms (exactly)
    and at most ln 2 (histograms with no bin in common).

    Parameters
    ----------
    p, q : array_like, shape (n_bins,)
        Counts or probabilities (non-negative).

    Returns
    -------
    float
        Nats in [0, ln 2]; NaN when either histogram is empty.

    Examples
    --------
    >>> jensen_shannon([1, 1, 0], [1, 1, 0])
    0.0
    >>> round(jensen_shannon([1, 0], [0, 1]), 6)  # ln 2
    0.693147
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    q = np.asarray(q, dtype=np.float64).ravel()
    if p.shape != q.shape:
        raise InputError(f"histograms must have the same bins, got {p.shape} and {q.shape}")
    if not p.sum() > 0 or not q.sum() > 0:
        return float("nan")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl_to_m(x):
        ok = x > 0
        return np.sum(x[ok] * np.log(x[ok] / m[ok]))

    return float(min(max((kl_to_m(p) + kl_to_m(q)) / 2, 0.0), np.log(2.0)))


def js_divergence(ref_angles, gen_angles, bin_width_deg=KL_BIN_WIDTH_DEG) -> float:
    """Jensen-Shannon divergence of two angle histograms, in nats.

    The histograms are those of :func:`kl_divergence` (``bin_width_deg``
    bins from -180 to 180, 1D for shape (n,), 2D for (n, 2); NaN angles
    ignored); the divergence is :func:`jensen_shannon` of them: symmetric, in
    [0, ln 2], no pseudo-count.

    Parameters
    ----------
    ref_angles, gen_angles : array, (n,) or (n, 2), degrees
    bin_width_deg : float
        Bin width; must divide 360.

    Returns
    -------
    float
        Nats; NaN when either input has no finite angle.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.random.default_rng(0).uniform(-180, 180, 1000)
    >>> js_divergence(a, a)
    0.0
    >>> round(js_divergence([5.0], [95.0]), 6)  # no bin in common: ln 2
    0.693147
    """
    p, n_p = _histogram(ref_angles, bin_width_deg)
    q, n_q = _histogram(gen_angles, bin_width_deg)
    if n_p == 0 or n_q == 0:
        return float("nan")
    return jensen_shannon(p, q)
