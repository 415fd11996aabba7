"""Whole-ensemble evaluation: every metric of a generated ensemble against a reference, as a table or JSON.

:func:`evaluate` compares two :class:`~openmm_backmap.structure.ProteinEnsemble`
objects with the per-frame metrics of :mod:`.metrics` and the torsion KL
divergences of :mod:`.torsions`, and with ``ensemble=True`` the
distribution metrics of :mod:`.ensemble` (which need no frame pairing);
:func:`evaluate_files` loads files first and can write the result as JSON;
:func:`format_table` prints it.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings

import numpy as np

from ..io import AtomicOutput, check_writable
from ..structure import InputError, LoadWarning
from ..structure.errors import option_name
from ..structure.constants import (BOND_OK_TOLERANCE, CLASH_DISTANCE_ANGSTROM, KL_BIN_WIDTH_DEG, KL_PSEUDO_COUNT,
                                   MIN_MATCHED_ATOM_FRACTION, MISSING_ATOMS_NAMED)
from .ensemble import ensemble_metrics, format_ensemble, torsion_samples
from .metrics import check_sequences, masked_xyz, pair_frames, per_frame_metrics
from .plots import ramachandran_plot, require_matplotlib
from .quality import stereo_defects
from .torsions import kl_divergence

__all__ = ["evaluate", "evaluate_files", "format_table"]

_METRICS = (  # key in the result, label, unit
    ("rmsd_angstrom", "RMSD, heavy atoms, no superposition", "Å"),
    ("rmsd_sym_angstrom", "RMSD, symmetry-corrected", "Å"),
    ("ged", "graph edit distance (|E_gen xor E_ref|/|E_ref|)", "-"),
    ("clash_percent", f"residues with a clash < {CLASH_DISTANCE_ANGSTROM:g} Å", "%"),
    ("bond_ok_percent", f"bonds within {100 * BOND_OK_TOLERANCE:g} % of reference", "%"),
)


def _summary(values):
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    return {
        "mean": float(v[ok].mean()) if ok.any() else float("nan"),
        "std": float(v[ok].std()) if ok.any() else float("nan"),
        "n_valid": int(ok.sum()),
        "per_frame": [float(x) for x in v],
    }


def _stereochemistry(reference, generated, segment_start):
    """Per-structure counts of :func:`~.quality.stereo_defects` on both sides: bond lengths and clashes are the same
    in a mirror image, so the metrics above cannot see a D residue or a flipped peptide bond."""
    out = {"d_residues": {}, "cis_nonproline_peptides": {}}
    for side, ens in (("generated", generated), ("reference", reference)):
        d, cis = stereo_defects(masked_xyz(ens), ens.sequence, segment_start)
        out["d_residues"][side] = _summary(d.sum(1))
        out["cis_nonproline_peptides"][side] = _summary(cis.sum(1))
    return out


def _pairable(n_reference, n_generated):
    """Whether :func:`~.metrics.pair_frames` can pair the frames."""
    try:
        pair_frames(n_reference, n_generated)
    except InputError:
        return False
    return True


def _atom_coverage(reference, generated, paired=True):
    """Which heavy atoms both sides have, over the paired frames (the metrics skip all others).

    Unpaired (ensemble comparison): the atoms each side has in any frame.
    """
    if paired:
        gen = np.asarray(generated.mask)
        ref = np.asarray(reference.mask)[pair_frames(reference.n_frames, generated.n_frames)]
    else:
        gen = np.asarray(generated.mask).any(0, keepdims=True)
        ref = np.asarray(reference.mask).any(0, keepdims=True)
    used = gen.any(1) & ref.any(1)  # an empty frame is a failed frame, which the metrics' n_valid already counts
    gen, ref = gen[used], ref[used]
    both = int((gen & ref).sum())
    layout = reference.layout

    def names(missing):
        atoms = np.flatnonzero(missing.any(0))
        return int(len(atoms)), [f"{reference.sequence[layout.atom_residue[i]]} "
                                 f"{reference.residue_numbers[layout.atom_residue[i]]} {layout.atom_names[i]}"
                                 for i in atoms[:MISSING_ATOMS_NAMED]]

    n_gen_missing, gen_missing = names(ref & ~gen)
    n_ref_missing, ref_missing = names(gen & ~ref)
    return {
        "matched_atom_fraction": both / ref.sum() if ref.any() else float("nan"),
        "matched_atom_fraction_generated": both / gen.sum() if gen.any() else float("nan"),
        "missing_in_generated": n_gen_missing, "missing_in_generated_atoms": gen_missing,
        "missing_in_reference": n_ref_missing, "missing_in_reference_atoms": ref_missing,
    }


def _check_coverage(coverage):
    """Refuse a comparison that would score a C-alpha trace or a backbone as perfect; warn about any other gap."""
    sides = (("generated", "generated structures lack", "the reference's", "matched_atom_fraction",
              "backmap the C-alpha/backbone file first (openmm-backmap convert) and pass its all-atom output"),
             ("reference", "reference lacks", "the generated structures'", "matched_atom_fraction_generated",
              "pass an all-atom reference"))
    for side, lacks, other, key, fix in sides:
        n, atoms, fraction = coverage[f"missing_in_{side}"], coverage[f"missing_in_{side}_atoms"], coverage[key]
        if not n:
            continue
        gap = (f"the {lacks} {n} of {other} heavy atoms (e.g. {', '.join(atoms)}; "
               f"{100 * fraction:.0f} % matched)")
        if fraction < MIN_MATCHED_ATOM_FRACTION:
            raise InputError(f"{gap}: evaluate needs all-atom structures on both sides; {fix}")
        warnings.warn(f"{gap}: the metrics use the matched atoms only", LoadWarning, stacklevel=3)


def evaluate(reference, generated, plots_dir=None, name=None, bin_width_deg=KL_BIN_WIDTH_DEG,
             pseudo_count=KL_PSEUDO_COUNT, ensemble=False):
    """Compare generated all-atom structures with a reference ensemble.

    Parameters
    ----------
    reference : ProteinEnsemble
        Reference (true) structures, one or more frames.
    generated : ProteinEnsemble
        Generated structures of the same sequence. Frames are paired with
        :func:`~.metrics.pair_frames` (equal counts, ``k`` samples per reference frame
        frame-major, or any number against a single reference frame); with
        ``ensemble=True`` any counts are accepted.
    plots_dir : str or path, optional
        Write ``<name>_ramachandran.png`` here.
    name : str, optional
        Name of the comparison (plot file name, table header).
    bin_width_deg : float
        Histogram bin width for the KL divergences (degrees).
    pseudo_count : float
        Pseudo-count added to every bin's probability.
    ensemble : bool
        Also compare the two ensembles as distributions
        (:func:`~.ensemble.ensemble_metrics`: torsion KL and JS, DSSP
        propensities, radius of gyration), in ``result["ensemble"]``. Frames
        that cannot be paired are then no error: the per-frame metrics are
        left out (``None``) and ``paired`` is False.

    Returns
    -------
    dict
        ``rmsd_angstrom``, ``rmsd_sym_angstrom``, ``ged``, ``clash_percent``,
        ``bond_ok_percent``: each ``{"mean", "std", "n_valid", "per_frame"}``
        over the generated frames (mean/std ignore NaN frames), computed on
        the heavy atoms both sides have; ``matched_atom_fraction``: of the
        reference's atoms, the share the generated structures have too
        (``matched_atom_fraction_generated``: the same the other way round;
        both summed over paired frames, frames without any atom left out);
        ``missing_in_generated`` / ``missing_in_reference``: how many distinct
        atoms one side has and the other lacks in some frame, with the first
        ones named in ``missing_in_generated_atoms`` /
        ``missing_in_reference_atoms`` (e.g. ``"LEU 2 CD1"``); ``kl``:
        KL(reference || generated) in nats for ``ramachandran`` (2D phi/psi),
        ``phi``, ``psi`` and ``chi1``..``chi4`` (pooled over residues);
        ``kl_bin_width_deg``, ``kl_pseudo_count``, ``units``, frame counts,
        ``samples_per_frame`` (None unpaired), ``paired``, ``seconds``,
        ``plots``; ``stereochemistry``: per structure the number of D
        residues and of cis peptide bonds before a residue other than proline
        (:func:`~.quality.stereo_defects`), ``{"generated": ..., "reference":
        ...}`` summaries of each; and, with ``ensemble=True``, ``ensemble``.

    Raises
    ------
    InputError
        When the sequences differ, the frame counts cannot be paired (without
        ``ensemble=True``), or one
        side has fewer than ``MIN_MATCHED_ATOM_FRACTION`` of the other's
        atoms (a C-alpha trace or backbone-only file).

    Warns
    -----
    LoadWarning
        When any atom is missing on either side (and the comparison is not refused).

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> ens = load_ensemble('tests/data/trpcage.pdb')  # doctest: +SKIP
    >>> evaluate(ens, ens)['rmsd_angstrom']['mean']  # doctest: +SKIP
    0.0
    """
    t0 = time.perf_counter()
    check_sequences(reference, generated)
    if plots_dir is not None:
        require_matplotlib()  # before the work, not after it
        check_writable(os.path.join(os.fspath(plots_dir), "plot.png"), force=True)
    n_ref, n_gen = reference.n_frames, generated.n_frames
    paired = _pairable(n_ref, n_gen)
    if not paired and not ensemble:
        try:
            pair_frames(n_ref, n_gen)
        except InputError as e:
            raise InputError(f"{e}; to compare ensembles whose frames do not correspond, use "
                             f"{option_name('--ensemble', 'ensemble=True')}") from None
    coverage = _atom_coverage(reference, generated, paired)
    _check_coverage(coverage)
    per_frame = per_frame_metrics(masked_xyz(reference), masked_xyz(generated), reference.layout) if paired \
        else {key: None for key, _, _ in _METRICS}
    result = {
        "name": name or os.path.basename(str(generated.source)) or "generated",
        "reference": str(reference.source),
        "generated": str(generated.source),
        "n_reference_frames": int(n_ref),
        "n_generated_frames": int(n_gen),
        "samples_per_frame": int(n_gen // n_ref) if paired else None,
        "paired": paired,
        "n_residues": int(reference.n_residues),
        "n_atoms": int(reference.n_atoms),
        "units": {"rmsd_angstrom": "Å", "rmsd_sym_angstrom": "Å", "ged": "dimensionless",
                  "clash_percent": "%", "bond_ok_percent": "%", "kl": "nats (natural log)",
                  "input_coordinates": "nm"},
        **coverage,
        **{key: None if values is None else _summary(values) for key, values in per_frame.items()},
    }

    seg = reference.segment_start
    result["stereochemistry"] = _stereochemistry(reference, generated, seg)
    angles_r, angles_g = torsion_samples(reference, seg), torsion_samples(generated, seg)
    rama_r, rama_g = angles_r["ramachandran"], angles_g["ramachandran"]
    kl = {key: kl_divergence(angles_r[key], angles_g[key], bin_width_deg, pseudo_count)
          for key in ("ramachandran", "phi", "psi", "chi1", "chi2", "chi3", "chi4")}
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
    if ensemble:
        result["ensemble"] = ensemble_metrics(reference, generated, bin_width_deg, pseudo_count)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


def evaluate_files(reference_path, generated_path, reference_topology=None, generated_topology=None, plots_dir=None,
                   json_path=None, stride=1, name=None, ensemble=False):
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
        paired with it (with one reference frame, or frames that cannot be
        paired: every ``stride``-th frame of each side).
    name : str, optional
        Name of the comparison (default: the generated file's name without extension).
    ensemble : bool
        Add the ensemble (distribution) metrics and accept frame counts that
        cannot be paired; see :func:`evaluate`.

    Returns
    -------
    dict
        See :func:`evaluate`.

    Examples
    --------
    >>> r = evaluate_files('ref.pdb', 'backmapped.pdb', json_path='eval.json')  # doctest: +SKIP
    >>> print(format_table(r))  # doctest: +SKIP
    """
    from ..io import load_ensemble

    stride = int(stride)
    if stride < 1:
        raise InputError(f"stride must be a positive integer, got {stride}")
    if json_path is not None:
        check_writable(json_path, force=True)  # before the work, not after it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropped waters/H etc. are expected in references
        reference = load_ensemble(reference_path, topology=reference_topology)
        generated = load_ensemble(generated_path, topology=generated_topology)
    check_sequences(reference, generated)
    if stride > 1:
        if ensemble and not _pairable(reference.n_frames, generated.n_frames):
            reference = reference.select_frames(np.arange(0, reference.n_frames, stride))
            generated = generated.select_frames(np.arange(0, generated.n_frames, stride))
        elif reference.n_frames == 1:
            generated = generated.select_frames(np.arange(0, generated.n_frames, stride))
        else:
            pair = pair_frames(reference.n_frames, generated.n_frames)
            generated = generated.select_frames(np.flatnonzero(pair % stride == 0))
            reference = reference.select_frames(np.arange(0, reference.n_frames, stride))
    if name is None:
        name = os.path.basename(os.fspath(generated_path))
        name = os.path.splitext(name[:-3] if name.endswith(".gz") else name)[0]
    result = evaluate(reference, generated, plots_dir=plots_dir, name=name, ensemble=ensemble)
    result["reference"], result["generated"] = os.fspath(reference_path), os.fspath(generated_path)
    result["stride"] = stride
    if json_path is not None:
        json_path = os.fspath(json_path)
        parent = os.path.dirname(os.path.abspath(json_path))
        os.makedirs(parent, exist_ok=True)
        with AtomicOutput(json_path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
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


def _missing(result, side):
    n, atoms = result[f"missing_in_{side}"], result[f"missing_in_{side}_atoms"]
    return f"{n} ({', '.join(atoms)}{', ...' if n > len(atoms) else ''})" if n else "0"


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
    paired = result.get("paired", True)
    per = f"{result['samples_per_frame']} per reference frame" if paired else "frames not paired"
    lines = [
        f"{result.get('name', 'evaluation')}: {result['n_generated_frames']} generated frame(s) vs "
        f"{result['n_reference_frames']} reference frame(s) ({per}), "
        f"{result['n_residues']} residues, {result['n_atoms']} heavy atoms",
        f"heavy atoms matched: {_fmt(100 * result['matched_atom_fraction'], 1)} % of the reference's; "
        f"missing in generated: {_missing(result, 'generated')}; in reference: {_missing(result, 'reference')}",
        "",
        f"{'metric':<50} {'mean':>10} {'std':>10}  unit",
        "-" * 80,
    ]
    for key, label, unit in _METRICS:
        m = result[key]
        if m is None:
            lines.append(f"{label:<50} {'-':>10} {'-':>10}  {unit}  (frames not paired)")
            continue
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
    stereo = result.get("stereochemistry")
    if stereo:
        lines += ["", f"{'stereochemistry, per structure (mean)':<50} {'generated':>10} {'reference':>10}", "-" * 80]
        for key, label in (("d_residues", "D residues"),
                           ("cis_nonproline_peptides", "cis peptide bonds, not before a proline")):
            lines.append(f"{label:<50} {_fmt(stereo[key]['generated']['mean'], 3):>10} "
                         f"{_fmt(stereo[key]['reference']['mean'], 3):>10}")
    if result.get("ensemble"):
        lines += ["", format_ensemble(result["ensemble"])]
    for p in result.get("plots", []):
        lines.append(f"plot: {p}")
    if result.get("json"):
        lines.append(f"json: {result['json']}")
    return "\n".join(lines)
