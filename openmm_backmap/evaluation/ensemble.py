"""Ensemble metrics: a generated ensemble against a reference ensemble whose frames do not correspond.

For a disordered protein many atomistic ensembles fit the same beads, so
per-frame RMSD is the wrong judge; what must be right is the distribution of
local structure. :func:`ensemble_metrics` compares distributions, pooled over
frames (any frame counts on either side):

* torsions: KL(reference || generated) and Jensen-Shannon divergences (nats)
  of the backbone (phi, psi) histogram (2D, 36 x 36 bins of 10 degrees), of
  phi, psi, chi1 and chi2 (1D, 36 bins) and of (chi1, chi2) (2D), each pooled
  over all residues and frames (:func:`torsion_samples`). Pooled, because a
  36 x 36 histogram per residue needs thousands of frames to be more than
  sampling noise; the sequence is the same on both sides, so the residue
  composition of the pooled histograms is too. KL adds
  :data:`~openmm_backmap.structure.constants.KL_PSEUDO_COUNT` to every bin's
  probability (else one empty generated bin makes it infinite); JS needs none;
* secondary structure: per-residue fractions of DSSP's simplified classes
  H (helix), E (strand) and C (coil) (:func:`mdtraj.compute_dssp`) on both
  sides, and their mean absolute difference;
* radius of gyration of the heavy atoms both sides have: means and standard
  deviations (Å) and the JS divergence and overlap of the two histograms
  (:data:`~openmm_backmap.structure.constants.RG_BIN_WIDTH_NM` bins).

Coordinates are nm inside; lengths are reported in Å.
"""

from __future__ import annotations

import math

import mdtraj
import numpy as np

from ..structure import InputError
from ..structure.constants import ANGSTROM_PER_NM, KL_BIN_WIDTH_DEG, KL_PSEUDO_COUNT, RG_BIN_WIDTH_NM
from .metrics import check_sequences, masked_xyz
from .torsions import backbone_dihedrals_deg, chi_dihedrals_deg, jensen_shannon, js_divergence, kl_divergence

__all__ = ["ensemble_metrics", "torsion_samples", "dssp_fractions", "radius_of_gyration_nm", "format_ensemble"]

#: DSSP's simplified classes (mdtraj ``compute_dssp(simplified=True)``): helix, strand, coil.
DSSP_CLASSES = ("H", "E", "C")
#: The torsion distributions :func:`ensemble_metrics` compares, and their labels in the table.
ENSEMBLE_TORSIONS = {"ramachandran": "Ramachandran (phi, psi), 2D", "phi": "phi", "psi": "psi", "chi1": "chi1",
                     "chi2": "chi2", "chi1_chi2": "(chi1, chi2), 2D"}
_BACKBONE = ("N", "CA", "C", "O")


def torsion_samples(ensemble, segment_start=None) -> dict:
    """Torsion samples of an ensemble pooled over residues and frames, in degrees.

    Parameters
    ----------
    ensemble : ProteinEnsemble
    segment_start : array of bool, (R,), optional
        Chain starts/breaks for phi/psi (default: the ensemble's own).

    Returns
    -------
    dict
        ``ramachandran``: (F*R, 2) phi/psi pairs; ``phi``, ``psi``,
        ``chi1``..``chi4``: (F*R,); ``chi1_chi2``: (F*R, 2). NaN where a
        torsion is undefined or an atom is missing (histograms skip them).

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> s = torsion_samples(load_ensemble('tests/data/trpcage_train10.pdb.gz'))
    >>> s['ramachandran'].shape, s['chi1'].shape
    ((200, 2), (200,))
    """
    phi, psi = backbone_dihedrals_deg(ensemble, segment_start)
    chi = chi_dihedrals_deg(ensemble)
    return {"ramachandran": np.stack([phi.ravel(), psi.ravel()], 1), "phi": phi.ravel(), "psi": psi.ravel(),
            **{f"chi{k + 1}": chi[..., k].ravel() for k in range(4)},
            "chi1_chi2": np.stack([chi[..., 0].ravel(), chi[..., 1].ravel()], 1)}


def dssp_fractions(ensemble):
    """Per-residue fractions of DSSP's simplified classes H, E and C over an ensemble's frames.

    Only frames in which every residue has its backbone N, CA, C and O are
    used (DSSP needs them; hydrogens are placed by mdtraj).

    Parameters
    ----------
    ensemble : ProteinEnsemble

    Returns
    -------
    fractions : ndarray, shape (R, 3)
        Column ``k`` is the fraction of frames in class ``DSSP_CLASSES[k]``
        (H, E, C); NaN when no frame is usable.
    n_frames : int
        Frames used.

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> f, n = dssp_fractions(load_ensemble('tests/data/trpcage_train10.pdb.gz'))
    >>> f.shape, n, float(f[4, 0])  # residue 5 of trp-cage: helix in every frame
    ((20, 3), 10, 1.0)
    """
    lay = ensemble.layout
    backbone = np.array([lay.index(r, a) for r in range(ensemble.n_residues) for a in _BACKBONE], dtype=np.int64)
    usable = np.asarray(ensemble.mask)[:, backbone].all(1)
    out = np.full((ensemble.n_residues, len(DSSP_CLASSES)), np.nan)
    if not usable.any():
        return out, 0
    traj = ensemble.select_frames(np.flatnonzero(usable)).to_mdtraj().atom_slice(np.sort(backbone))
    codes = mdtraj.compute_dssp(traj, simplified=True)
    for k, c in enumerate(DSSP_CLASSES):
        out[:, k] = (codes == c).mean(0)
    return out, int(usable.sum())


def radius_of_gyration_nm(ensemble, atoms=None) -> np.ndarray:
    """Radius of gyration of every frame (nm), unweighted, over the heavy atoms ``atoms``.

    ``Rg = sqrt(mean_i |x_i - mean_j x_j|^2)`` (equal weights, as
    :func:`mdtraj.compute_rg` without masses).

    Parameters
    ----------
    ensemble : ProteinEnsemble
    atoms : array of int or bool, optional
        Canonical atom indices (default: all heavy atoms).

    Returns
    -------
    ndarray, shape (F,)
        nm; NaN for a frame that lacks any of ``atoms``.

    Examples
    --------
    >>> import numpy as np
    >>> from openmm_backmap.structure import ProteinEnsemble
    >>> xyz = np.zeros((1, 9, 3)); xyz[0, :, 0] = [-1, 1, -1, 1, -1, 1, -1, 1, 0]
    >>> radius_of_gyration_nm(ProteinEnsemble.from_arrays(['GLY', 'ALA'], xyz), atoms=np.arange(8)).tolist()
    [1.0]
    """
    xyz = masked_xyz(ensemble)
    if atoms is not None:
        xyz = xyz[:, np.asarray(atoms)]
    if xyz.shape[1] == 0:
        return np.full(xyz.shape[0], np.nan)
    centred = xyz - xyz.mean(1, keepdims=True)
    return np.sqrt((centred ** 2).sum(-1).mean(1))


def _rg_histograms(ref_nm, gen_nm, bin_width_nm):
    """Counts of both Rg samples on common bins at multiples of ``bin_width_nm`` spanning both."""
    both = np.concatenate([ref_nm, gen_nm])
    lo = math.floor(both.min() / bin_width_nm)
    hi = max(math.ceil(both.max() / bin_width_nm), lo + 1)
    edges = bin_width_nm * np.arange(lo, hi + 1)
    return np.histogram(ref_nm, edges)[0], np.histogram(gen_nm, edges)[0]


def _rg_metrics(reference, generated, bin_width_nm):
    atoms = np.flatnonzero(np.asarray(reference.mask).any(0) & np.asarray(generated.mask).any(0))
    ref = radius_of_gyration_nm(reference, atoms)
    gen = radius_of_gyration_nm(generated, atoms)
    ref, gen = ref[np.isfinite(ref)], gen[np.isfinite(gen)]
    out = {"n_atoms": int(len(atoms)), "n_reference_frames": int(len(ref)), "n_generated_frames": int(len(gen)),
           "bin_width_angstrom": float(bin_width_nm * ANGSTROM_PER_NM)}
    for side, v in (("reference", ref), ("generated", gen)):
        out[f"{side}_mean_angstrom"] = float(v.mean() * ANGSTROM_PER_NM) if len(v) else float("nan")
        out[f"{side}_std_angstrom"] = float(v.std() * ANGSTROM_PER_NM) if len(v) else float("nan")
    if len(ref) and len(gen):
        p, q = _rg_histograms(ref, gen, bin_width_nm)
        out["js"] = jensen_shannon(p, q)
        out["overlap"] = float(np.minimum(p / p.sum(), q / q.sum()).sum())
    else:
        out["js"] = out["overlap"] = float("nan")
    return out


def _dssp_metrics(reference, generated):
    ref, n_ref = dssp_fractions(reference)
    gen, n_gen = dssp_fractions(generated)
    diff = np.abs(ref - gen)
    nan = float("nan")
    return {
        "classes": {"H": "helix (DSSP H, G, I)", "E": "strand (E, B)", "C": "coil (everything else)"},
        "residues": [f"{name} {num}" for name, num in zip(reference.sequence, reference.residue_numbers)],
        "reference": {c: ref[:, k].tolist() for k, c in enumerate(DSSP_CLASSES)},
        "generated": {c: gen[:, k].tolist() for k, c in enumerate(DSSP_CLASSES)},
        "reference_content": {c: float(ref[:, k].mean()) if n_ref else nan for k, c in enumerate(DSSP_CLASSES)},
        "generated_content": {c: float(gen[:, k].mean()) if n_gen else nan for k, c in enumerate(DSSP_CLASSES)},
        "mean_abs_difference": float(diff.mean()) if n_ref and n_gen else nan,
        "mean_abs_difference_by_class": {c: float(diff[:, k].mean()) if n_ref and n_gen else nan
                                         for k, c in enumerate(DSSP_CLASSES)},
        "n_reference_frames": n_ref, "n_generated_frames": n_gen,
    }


def _n_finite(angles):
    a = np.asarray(angles)
    return int(np.isfinite(a.reshape(len(a), -1)).all(1).sum())


def ensemble_metrics(reference, generated, bin_width_deg=KL_BIN_WIDTH_DEG, pseudo_count=KL_PSEUDO_COUNT,
                     rg_bin_width_nm=RG_BIN_WIDTH_NM) -> dict:
    """Compare the distributions of a generated and a reference ensemble; frames need not correspond.

    Parameters
    ----------
    reference : ProteinEnsemble
        Reference (true) all-atom ensemble, any number of frames.
    generated : ProteinEnsemble
        Generated all-atom ensemble of the same sequence, any number of frames.
    bin_width_deg : float
        Torsion histogram bin width (degrees; must divide 360): 10 gives 36
        bins, 36 x 36 in 2D.
    pseudo_count : float
        Added to every bin's probability (then renormalised) for KL only.
    rg_bin_width_nm : float
        Radius-of-gyration histogram bin width (nm).

    Returns
    -------
    dict
        ``torsions``: for ``ramachandran``, ``phi``, ``psi``, ``chi1``,
        ``chi2`` and ``chi1_chi2`` a dict of ``kl`` (KL(reference ||
        generated), nats), ``js`` (Jensen-Shannon, nats, in [0, ln 2]) and
        the sample counts ``n_reference``/``n_generated`` (residues x frames
        where the torsion is defined); ``dssp``: per-residue fractions
        ``reference``/``generated`` of each class H/E/C (lists over
        ``residues``), their averages ``reference_content`` /
        ``generated_content``, ``mean_abs_difference`` (over residues and the
        three classes, in [0, 1]) and ``mean_abs_difference_by_class``;
        ``rg``: ``reference_mean_angstrom``, ``reference_std_angstrom``,
        ``generated_mean_angstrom``, ``generated_std_angstrom``, ``js``
        (nats) and ``overlap`` (sum of the bin-wise minimum of the two
        normalised histograms, 1 = identical) over the heavy atoms both sides
        have (``n_atoms``); plus the frame counts, bin widths,
        ``pseudo_count`` and ``units``.

    Raises
    ------
    InputError
        When the sequences differ or a bin width is invalid.

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> ens = load_ensemble('tests/data/trpcage_train10.pdb.gz')
    >>> m = ensemble_metrics(ens, ens.select_frames(slice(0, 7)))
    >>> m['n_reference_frames'], m['n_generated_frames'], m['torsions']['ramachandran']['js'] > 0
    (10, 7, True)
    >>> m = ensemble_metrics(ens, ens)
    >>> m['torsions']['ramachandran']['kl'], m['dssp']['mean_abs_difference'], m['rg']['js']
    (0.0, 0.0, 0.0)
    """
    check_sequences(reference, generated)
    if not rg_bin_width_nm > 0:
        raise InputError(f"rg_bin_width_nm must be positive, got {rg_bin_width_nm}")
    seg = reference.segment_start
    ref, gen = torsion_samples(reference, seg), torsion_samples(generated, seg)
    torsions = {key: {"kl": kl_divergence(ref[key], gen[key], bin_width_deg, pseudo_count),
                      "js": js_divergence(ref[key], gen[key], bin_width_deg),
                      "n_reference": _n_finite(ref[key]), "n_generated": _n_finite(gen[key])}
                for key in ENSEMBLE_TORSIONS}
    n_bins = int(round(360 / bin_width_deg))
    return {
        "n_reference_frames": int(reference.n_frames),
        "n_generated_frames": int(generated.n_frames),
        "torsions": torsions,
        "torsion_bin_width_deg": float(bin_width_deg),
        "pseudo_count": float(pseudo_count),
        "torsion_histograms": (f"phi/psi and chi1/chi2: 2D {n_bins}x{n_bins} bins; phi, psi, chi1, chi2: 1D {n_bins} "
                               "bins; pooled over residues and frames; pseudo-count in KL only"),
        "dssp": _dssp_metrics(reference, generated),
        "rg": _rg_metrics(reference, generated, rg_bin_width_nm),
        "units": {"kl": "nats (natural log)", "js": "nats (natural log), at most ln 2 = 0.693",
                  "dssp": "fraction of frames", "rg": "Å (computed in nm)", "rg_overlap": "fraction"},
    }


def _fmt(x, digits=3):
    return "nan" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def format_ensemble(metrics) -> str:
    """Format an :func:`ensemble_metrics` result as plain-text lines with units.

    Parameters
    ----------
    metrics : dict
        As returned by :func:`ensemble_metrics` (``evaluate(..., ensemble=True)['ensemble']``).

    Returns
    -------
    str

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> ens = load_ensemble('tests/data/trpcage_train10.pdb.gz')
    >>> print(format_ensemble(ensemble_metrics(ens, ens)))  # doctest: +ELLIPSIS
    ensemble metrics: 10 generated vs 10 reference frame(s), frames need not correspond
    ...
    """
    m = metrics
    lines = [
        f"ensemble metrics: {m['n_generated_frames']} generated vs {m['n_reference_frames']} reference frame(s), "
        "frames need not correspond",
        f"torsion histograms pooled over residues and frames, bin width {m['torsion_bin_width_deg']:g} degrees; "
        f"KL pseudo-count {m['pseudo_count']:g}",
        f"{'distribution':<50} {'KL(ref||gen)':>12} {'JS':>10}  unit",
        "-" * 80,
    ]
    for key, label in ENSEMBLE_TORSIONS.items():
        t = m["torsions"][key]
        lines.append(f"{label:<50} {_fmt(t['kl'], 4):>12} {_fmt(t['js'], 4):>10}  nats")
    d, rg = m["dssp"], m["rg"]

    def content(side):
        return " ".join(f"{c} {_fmt(d[f'{side}_content'][c], 2)}" for c in DSSP_CLASSES)

    lines += [
        "",
        f"secondary structure (DSSP, fraction of residues x frames): reference {content('reference')}; "
        f"generated {content('generated')}",
        f"{'per-residue propensity, mean |difference| (H, E, C)':<50} {_fmt(d['mean_abs_difference'], 4):>12}"
        f"  ({', '.join(_fmt(d['mean_abs_difference_by_class'][c], 4) for c in DSSP_CLASSES)})",
        f"{'radius of gyration, heavy atoms, reference':<50} {_fmt(rg['reference_mean_angstrom'], 2):>12} "
        f"+- {_fmt(rg['reference_std_angstrom'], 2)}  Å",
        f"{'radius of gyration, heavy atoms, generated':<50} {_fmt(rg['generated_mean_angstrom'], 2):>12} "
        f"+- {_fmt(rg['generated_std_angstrom'], 2)}  Å",
        f"{'Rg histograms (' + format(rg['bin_width_angstrom'], 'g') + ' Å bins): JS, overlap':<50} "
        f"{_fmt(rg['js'], 4):>12} {_fmt(rg['overlap'], 3):>10}  nats, fraction",
    ]
    return "\n".join(lines)
