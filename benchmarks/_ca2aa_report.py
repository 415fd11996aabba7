"""The report side of ``benchmarks/ca2aa_accuracy.py``: FlowBack's figures, the bars of issue 10,
training curves and the Markdown page.

Everything here is a function of the report dict (and of the files it names), so a report can be
re-rendered (``--report-only``) and tested without a model.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from openmm_backmap.structure import InputError, MissingFileError

METRICS = ("rmsd_angstrom", "rmsd_sym_angstrom", "ged", "clash_percent", "bond_ok_percent")
#: flowback_casp.json field -> our metric name
FLOWBACK_FIELDS = {"rmsd": "rmsd_angstrom", "rmsd_sym": "rmsd_sym_angstrom", "ged": "ged",
                   "clash": "clash_percent", "bond_ok": "bond_ok_percent"}

# the bars of issue 10 (deterministic output, before minimisation)
CASP_MEAN_RMSD_BAR_ANGSTROM = 1.40
CASP_WINS_VS_PULCHRA_BAR = 22
CASP_MEAN_CLASH_BAR_PERCENT = 0.1
CASP_TARGET_CLASH_BAR_PERCENT = 0.5
BOND_OK_BAR_PERCENT = 99.9
GED_BAR = 0.005
SPEED_BAR_FRAMES_PER_S = 50.0
SPEED_CASE = "100_residues"

VALIDATION_CURVE_PLOT = "plots/ca2aa_validation_curve.png"
CURVE_TABLE_ROWS = 25  # about every 5th validation row of a typical run; longer runs are thinned further


def load_flowback(path) -> dict:
    """FlowBack's per-target figures (as given, not run by us) in our metric names."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no FlowBack figures at {str(path)!r} (expected eval/chains/casp/flowback_casp.json)")
    raw = json.loads(path.read_text())
    targets = {}
    for name, fig in raw.items():
        if name.startswith("_"):
            continue
        missing = sorted(set(FLOWBACK_FIELDS) - set(fig))
        if missing:
            raise InputError(f"{path}: target {name} lacks field(s) {', '.join(missing)}")
        targets[name] = {ours: float(fig[theirs]) for theirs, ours in FLOWBACK_FIELDS.items()}
        targets[name].update({k: fig[k] for k in ("residues", "s_per_frame") if k in fig})
    return {"source": str(path), "about": raw.get("_about", ""), "targets": targets}


def read_training_runs(specs) -> dict:
    """``NAME=RUN_DIR`` specs -> per run: its validation rows (from ``log.csv``), bests and ``summary.json``."""
    runs = {}
    for spec in specs:
        name, sep, run_dir = spec.partition("=")
        if not sep or not name or not run_dir:
            raise InputError(f"--training-runs takes NAME=RUN_DIR, got {spec!r}")
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise MissingFileError(f"training run {name!r}: no run directory {str(run_dir)!r}")
        log = run_dir / "log.csv"
        if not log.is_file():
            raise MissingFileError(f"training run {name!r}: no {str(log)!r} (has the run validated yet?)")
        with open(log, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"step", "val_loss", "val_rmsd_A"} - set(reader.fieldnames or ())
            if missing:
                raise InputError(f"{log}: no column(s) {', '.join(sorted(missing))}")
            curve = [{"step": int(float(r["step"])), "time_s": _float(r.get("time_s")),
                      "val_loss": _float(r["val_loss"]), "val_rmsd_A": _float(r["val_rmsd_A"])} for r in reader]
        if not curve:
            raise InputError(f"{log}: no validation rows yet")
        entry = {"run_dir": str(run_dir), "curve": curve}
        for key in ("val_rmsd_A", "val_loss"):
            vals = np.array([row[key] for row in curve], dtype=float)
            if np.isfinite(vals).any():
                best = int(np.nanargmin(vals))
                entry[f"best_{key}"], entry[f"best_{key}_step"] = float(vals[best]), curve[best]["step"]
        summary = run_dir / "summary.json"
        if summary.is_file():  # written when a run finishes; a run still training has none
            s = json.loads(summary.read_text())
            data = s.get("data") or {}
            corpus = data.get("corpus") or {}
            entry["summary"] = {"steps": s.get("steps"), "stop_reason": s.get("stop_reason"),
                                "train_time_s": s.get("train_time_s"), "train_frames": data.get("train_frames"),
                                "corpus_chains": corpus.get("chains_train", 0 if data else None),
                                "corpus_residues": corpus.get("residues_train", 0 if data else None)}
        runs[name] = entry
    return runs


def _float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def validation_curve_plot(runs: dict, path):
    """One line per run, val_rmsd_A vs step; returns the path, or None when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, run in runs.items():
        ax.plot([r["step"] for r in run["curve"]], [r["val_rmsd_A"] for r in run["curve"]], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("validation RMSD (Å)")
    ax.legend()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return str(path)


def _line(bar, passed, value):
    return {"bar": bar, "status": "n/a" if passed is None else ("PASS" if passed else "MISS"), "value": value}


def _names(items):
    return ", ".join(items) if items else "none"


def bond_fault_note(failures_by_target, offenders) -> str:
    """``"; N failed bonds on the offenders, M of them the reference's ..."`` from per-target lists of
    :func:`openmm_backmap.evaluation.bond_ok_failures`; empty where none were recorded."""
    failed = [f for name in offenders for f in failures_by_target.get(name) or []]
    if not failed:
        return ""
    kinds = {}
    for f in failed:
        if f["reference_fault"]:
            kinds[f["reference_fault"]] = kinds.get(f["reference_fault"], 0) + 1
    theirs = sum(kinds.values())
    detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    return (f"; {len(failed)} failed bonds on these targets, {theirs} of them the reference's"
            + (f" ({detail})" if detail else "") + ": see 'Failed bonds'")


def failed_bonds_section(failures_by_target, label="") -> list:
    """A Markdown table of every failed bond (:func:`openmm_backmap.evaluation.bond_ok_failures`)."""
    rows = [(n, f) for n, fs in failures_by_target.items() for f in fs or []]
    if not rows:
        return []
    lines = ["", f"## Failed bonds{label}", "",
             "Every reference bond that `bond_ok` counts as failed in the deterministic output. `bond_ok` takes its "
             "bonds from the reference's distances (`d < 1.3 (r_i + r_j)`), so pairs the reference presses "
             "together count as bonds. *not a covalent bond*: no template, peptide or disulfide bond joins the pair; "
             "*distorted in the reference*: a covalent bond whose reference length is the outlier, more than 5 % from "
             "the median of the same bond in that structure and further from it than the generated length "
             "(`openmm_backmap.evaluation.bond_ok_failures`).", "",
             "| target | atoms | reference Å | generated Å | reference fault |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {' - '.join(f['atoms'])} | {f['ref_angstrom']:.2f} | {f['gen_angstrom']:.2f} | "
              f"{f['reference_fault'] or 'none: the model is wrong'} |" for n, f in rows]
    return lines


def bars(report) -> list:
    """The bars of issue 10, each ``{"bar", "status": PASS/MISS/n/a, "value"}``, from the report's numbers."""
    out = []
    casp = report["sets"].get("casp")
    if casp is None:
        out.append(_line("CASP bars (rmsd, wins vs PULCHRA, clash, bond_ok, ged)", None, "CASP set not run"))
    else:
        targets = casp["structures"]
        det = {t["name"]: t["deterministic"] for t in targets}
        mean = casp["summary"]["deterministic"]
        out.append(_line(f"CASP mean RMSD <= {CASP_MEAN_RMSD_BAR_ANGSTROM:.2f} Å",
                         mean["rmsd_angstrom"] <= CASP_MEAN_RMSD_BAR_ANGSTROM, f"{mean['rmsd_angstrom']:.3f} Å"))
        fb = report.get("flowback", {}).get("targets", {})
        common = [n for n in det if n in fb]
        if common:
            ours = float(np.mean([det[n]["rmsd_angstrom"] for n in common]))
            theirs = float(np.mean([fb[n]["rmsd_angstrom"] for n in common]))
            out.append(_line("CASP mean RMSD below FlowBack's", ours < theirs,
                             f"{ours:.3f} vs {theirs:.3f} Å on {len(common)} targets"))
        else:
            out.append(_line("CASP mean RMSD below FlowBack's", None, "no FlowBack figures for these targets"))
        if all("pulchra" in t for t in targets):
            losses = [f"{t['name']} ({t['deterministic']['rmsd_angstrom']:.2f} vs {t['pulchra']['rmsd_angstrom']:.2f})"
                      for t in targets if not t["deterministic"]["rmsd_angstrom"] < t["pulchra"]["rmsd_angstrom"]]
            wins = len(targets) - len(losses)
            out.append(_line(f"better than PULCHRA (RMSD) on >= {CASP_WINS_VS_PULCHRA_BAR} of {len(targets)} "
                             "CASP targets", wins >= CASP_WINS_VS_PULCHRA_BAR,
                             f"{wins} of {len(targets)}; losses: {_names(losses)}"))
        else:
            out.append(_line(f"better than PULCHRA (RMSD) on >= {CASP_WINS_VS_PULCHRA_BAR} CASP targets", None,
                             "PULCHRA not run"))
        out.append(_line(f"CASP mean clash <= {CASP_MEAN_CLASH_BAR_PERCENT} %",
                         mean["clash_percent"] <= CASP_MEAN_CLASH_BAR_PERCENT, f"{mean['clash_percent']:.3f} %"))
        per_target = [("clash_percent", f"no CASP target above {CASP_TARGET_CLASH_BAR_PERCENT} % clash",
                       lambda v: v <= CASP_TARGET_CLASH_BAR_PERCENT, max, "max", "{:.2f} %"),
                      ("bond_ok_percent", f"bond_ok >= {BOND_OK_BAR_PERCENT} % on every CASP target",
                       lambda v: v >= BOND_OK_BAR_PERCENT, min, "min", "{:.2f} %"),
                      ("ged", f"ged <= {GED_BAR} on every CASP target", lambda v: v <= GED_BAR, max, "max", "{:.4f}")]
        failures = {t["name"]: t.get("bond_ok_failures") for t in targets}
        for metric, text, ok, worst, word, fmt in per_target:
            bad = [n for n, m in det.items() if not ok(m[metric])]
            note = bond_fault_note(failures, bad) if metric == "bond_ok_percent" else ""
            if metric == "bond_ok_percent" and any(n in fb for n in bad):  # the same bonds fail FlowBack
                note += "; FlowBack (as given) on these targets: " + ", ".join(
                    f"{n} {fb[n]['bond_ok_percent']:.2f} %" for n in bad if n in fb)
            out.append(_line(text, not bad, f"{word} {fmt.format(worst(m[metric] for m in det.values()))}; "
                                            f"offenders: {_names([f'{n} ({fmt.format(det[n][metric])})' for n in bad])}"
                                            f"{note}"))
    compared = {n: e["summary"] for n, e in report["sets"].items() if "pulchra" in e["summary"]}
    misses = [f"{n} ({s['deterministic']['rmsd_angstrom']:.2f} vs {s['pulchra']['rmsd_angstrom']:.2f})"
              for n, s in compared.items() if not s["deterministic"]["rmsd_angstrom"] < s["pulchra"]["rmsd_angstrom"]]
    not_run = [n for n in report.get("eval_sets", ()) if n not in compared]
    value = f"{len(compared) - len(misses)} of {len(compared)} sets; misses: {_names(misses)}"
    if not_run:
        value += f"; not compared: {_names(not_run)}"
    out.append(_line("better than PULCHRA (RMSD) on every eval set",
                     False if misses else (None if not_run or not compared else True), value))
    sp = report.get("speed", {}).get(SPEED_CASE)
    if sp is None:
        out.append(_line(f">= {SPEED_BAR_FRAMES_PER_S:.0f} frames/s at 100 residues, batch 64", None, "not measured"))
    else:
        fps = sp["batch_64_frames_per_s"]
        out.append(_line(f">= {SPEED_BAR_FRAMES_PER_S:.0f} frames/s at 100 residues, batch 64",
                         fps >= SPEED_BAR_FRAMES_PER_S, f"{fps:.1f} frames/s"))
        base = sp.get("baseline_batch_64_frames_per_s")
        out.append(_line("speed at or above the baseline model's (100 residues, batch 64, same run)",
                         None if base is None else fps >= base,
                         "no baseline model" if base is None else
                         f"{fps:.1f} vs {base:.1f} frames/s ({fps / base:.2f}x)"))
    return out


def _fmt(v, metric=""):
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v:.4f}" if metric == "ged" else f"{v:.2f}"


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.nanmean(values)) if values else None


def _casp_table(report):
    targets = report["sets"]["casp"]["structures"]
    fb = report.get("flowback", {}).get("targets", {})
    base = any("baseline" in t for t in targets)
    cols = [("model rmsd", lambda t: t["deterministic"]["rmsd_angstrom"], ""),
            ("model clash %", lambda t: t["deterministic"]["clash_percent"], ""),
            ("model bond_ok %", lambda t: t["deterministic"]["bond_ok_percent"], ""),
            ("model ged", lambda t: t["deterministic"]["ged"], "ged"),
            ("PULCHRA rmsd", lambda t: t.get("pulchra", {}).get("rmsd_angstrom"), ""),
            ("FlowBack rmsd", lambda t: fb.get(t["name"], {}).get("rmsd_angstrom"), ""),
            ("FlowBack clash %", lambda t: fb.get(t["name"], {}).get("clash_percent"), ""),
            ("FlowBack bond_ok %", lambda t: fb.get(t["name"], {}).get("bond_ok_percent"), "")]
    if base:
        cols += [("baseline rmsd", lambda t: t.get("baseline", {}).get("rmsd_angstrom"), ""),
                 ("baseline clash %", lambda t: t.get("baseline", {}).get("clash_percent"), "")]
    lines = ["", "## CASP targets (deterministic; PULCHRA on the same inputs; FlowBack as given)", "",
             "Model columns are ours; a target in **bold** is one where PULCHRA has the lower RMSD. "
             "FlowBack figures are copied from the file named above (not run by us)."
             + (" Baseline columns: the baseline model on the same inputs, same run." if base else ""), "",
             "| target | residues | " + " | ".join(c for c, _, _ in cols) + " |", "|---|---" + "|---" * len(cols) + "|"]
    for t in targets:
        lost = "pulchra" in t and not t["deterministic"]["rmsd_angstrom"] < t["pulchra"]["rmsd_angstrom"]
        name = f"**{t['name']}**" if lost else t["name"]
        lines.append(f"| {name} | {t['residues']} | " + " | ".join(_fmt(get(t), m) for _, get, m in cols) + " |")
    lines.append(f"| mean ({len(targets)}) | {_mean([t['residues'] for t in targets]):.0f} | "
                 + " | ".join(_fmt(_mean([get(t) for t in targets]), m) for _, get, m in cols) + " |")
    return lines


def _training(report):
    runs = report["training"]
    lines = ["", "## Training", "",
             "Validation metrics from each run's `log.csv` (val_rmsd_A: deterministic heavy-atom RMSD on the "
             "validation chains, Å); run facts from `summary.json` where the run has finished."]
    if report.get("training_plot"):
        lines += ["", f"Validation curve: `{report['training_plot']}`."]
    if len(runs) > 1:
        lines += ["", "### Data-size ablation (same recipe)", "",
                  "| run | training frames | corpus chains | corpus residues | steps | best val_rmsd_A (step) | "
                  "best val_loss (step) |", "|---|---|---|---|---|---|---|"]
        for name, run in runs.items():
            s = run.get("summary") or {}
            lines.append(f"| {name} | {_opt(s.get('train_frames'))} | {_opt(s.get('corpus_chains'))} | "
                         f"{_opt(s.get('corpus_residues'))} | {_opt(s.get('steps', run['curve'][-1]['step']))} | "
                         f"{_best(run, 'val_rmsd_A', '.3f')} | {_best(run, 'val_loss', '.4f')} |")
    for name, run in runs.items():
        curve = run["curve"]
        stride = max(5, math.ceil(len(curve) / CURVE_TABLE_ROWS)) if len(curve) > CURVE_TABLE_ROWS else 1
        keep = sorted(set(range(0, len(curve), stride)) | {len(curve) - 1})
        s = run.get("summary")
        facts = (f"{s['steps']} steps, stopped by {s['stop_reason']}, {_opt(s['train_time_s'])} s"
                 if s else "still running or unfinished (no summary.json)")
        lines += ["", f"### {name}", "", f"`{run['run_dir']}`: {len(curve)} validations, {facts}; "
                  f"best val_rmsd_A {_best(run, 'val_rmsd_A', '.3f')}, best val_loss {_best(run, 'val_loss', '.4f')}."
                  + (f" Every {stride}th validation shown." if stride > 1 else ""), "",
                  "| step | val_loss | val_rmsd_A |", "|---|---|---|"]
        lines += [f"| {curve[i]['step']} | {curve[i]['val_loss']:.4f} | {curve[i]['val_rmsd_A']:.3f} |" for i in keep]
    return lines


def _opt(v):
    return "-" if v is None else str(v)


def _best(run, key, fmt):
    if f"best_{key}" not in run:
        return "-"
    return f"{run[f'best_{key}']:{fmt}} ({run[f'best_{key}_step']})"


def markdown(report) -> str:
    s = report["samples"]
    fb = report.get("flowback")
    lines = ["# C-alpha -> all-atom accuracy (before minimisation)", "",
             f"Model `{report['model']}` on {report['device']} ({report['threads']} threads); at most "
             f"{report['max_frames']} evenly spaced frames per ensemble; stochastic rows use {s} samples per frame. "
             "RMSD in Å (heavy atoms, no superposition), ged dimensionless, clash and bond_ok in %. "
             "PULCHRA: PyPI `pulchra` with default settings, same C-alpha inputs, same metrics. "
             "KL: KL(reference || generated) in nats, 10 degree bins, pseudo-count 1e-6."]
    if report.get("baseline_model"):
        lines[-1] += (f" Baseline rows: `{report['baseline_model']}` (deterministic) on the same inputs, "
                      "same run.")
    if fb:
        lines[-1] += (f" FlowBack: figures as given in `{Path(fb['source']).name}` (not run by us, same C-alpha "
                      f"inputs, same metric definitions): {fb['about']}")
    lines += ["", "## Bars (issue 10; deterministic output)", ""]
    lines += [f"- **{b['status']}** {b['bar']}: {b['value']}" for b in bars(report)]
    lines += ["", "## Summary (mean over structures)", "",
              "| set | method | rmsd | rmsd_sym | ged | clash % | bond_ok % |", "|---|---|---|---|---|---|---|"]
    for name, entry in report["sets"].items():
        for method, summ in entry["summary"].items():
            lines.append(f"| {name} | {method} | " + " | ".join(_fmt(summ[m], m) for m in METRICS) + " |")
        if name == "casp" and fb:
            lines.append("| casp | FlowBack (as given) | " + " | ".join(
                _fmt(_mean([t[m] for t in fb["targets"].values()]), m) for m in METRICS) + " |")
    lines += ["", "| set | KL rama (deterministic) | KL chi1 (deterministic) | KL rama (samples) | "
              "KL chi1 (samples) | KL rama (PULCHRA) | KL chi1 (PULCHRA) |", "|---|---|---|---|---|---|---|"]
    for name, entry in report["sets"].items():
        kp = entry.get("kl_pulchra", {})
        kd = entry["kl_deterministic"]
        ks = entry.get("kl_samples", {})
        lines.append(f"| {name} | {kd['ramachandran']:.3f} | {kd['chi1']:.3f} | "
                     f"{ks.get('ramachandran', float('nan')):.3f} | {ks.get('chi1', float('nan')):.3f} | "
                     f"{kp.get('ramachandran', float('nan')):.3f} | {kp.get('chi1', float('nan')):.3f} |")
    if "casp" in report["sets"]:
        lines += _casp_table(report)
        lines += failed_bonds_section({t["name"]: t.get("bond_ok_failures")
                                       for t in report["sets"]["casp"]["structures"]}, " (CASP targets)")
    lines += _speed(report)
    if report.get("training"):
        lines += _training(report)
    lines += ["", "Ramachandran plots: `plots/ca2aa_<set>_ramachandran.png`.", ""]
    return "\n".join(lines)


def _speed(report):
    sp_all = {k: v for k, v in report.get("speed", {}).items() if isinstance(v, dict)}
    if not sp_all:
        return []
    base = report["speed"].get("baseline_model")
    when = f" ({report['speed_date']}, {report.get('speed_threads')} threads)" if report.get("speed_date") else ""
    lines = ["", f"## Speed (frames/s){when}", ""]
    head = "| system | batch 1 | batch 64 | PULCHRA | batch 64 / PULCHRA |"
    rule = "|---|---|---|---|---|"
    if base:
        lines += [f"Baseline in the same run: `{base}`.", ""]
        head += " baseline batch 1 | baseline batch 64 | speed-up batch 64 |"
        rule += "---|---|---|"
    lines += [head, rule]
    for label, sp in sp_all.items():
        row = (f"| {label} | {sp['batch_1_frames_per_s']:.1f} | {sp['batch_64_frames_per_s']:.1f} | "
               f"{sp.get('pulchra_frames_per_s', float('nan')):.3f} | "
               f"{sp.get('ratio_batch_64_vs_pulchra', float('nan')):.0f} |")
        if base:
            row += (f" {sp['baseline_batch_1_frames_per_s']:.1f} | {sp['baseline_batch_64_frames_per_s']:.1f} | "
                    f"{sp['batch_64_frames_per_s'] / sp['baseline_batch_64_frames_per_s']:.2f} |")
        lines.append(row)
    return lines
