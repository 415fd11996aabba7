"""The report side of ``benchmarks/scheme_accuracy.py``: the bars of issue 11 and the Markdown page.

Everything here is a function of the report dict, so a report can be re-rendered (``--report-only``) and
tested without a model. Metric names, thresholds shared with the C-alpha bars and the formatting helpers come
from ``_ca2aa_report``.
"""

from __future__ import annotations

import numpy as np
from _ca2aa_report import (BOND_OK_BAR_PERCENT, CASP_TARGET_CLASH_BAR_PERCENT, METRICS, _fmt, _line, _mean, _names,
                           bond_fault_note, failed_bonds_section)

# the bars of issue 11 (deterministic output, before minimisation)
COM_MEAN_RMSD_BAR_ANGSTROM = 1.6
MARTINI3_MEAN_RMSD_BAR_ANGSTROM = 1.0
OFFENDERS_SHOWN = 6  # in a bar's value; the per-target tables list every target

#: (report section, metrics key of a target row, bar label, mean RMSD bar)
ACCURACY_BARS = (("com", "com_model", "centre-of-mass beads -> com model", COM_MEAN_RMSD_BAR_ANGSTROM),
                 ("martini3", "martini3_model", "martinize2 Martini 3 beads -> martini3 model",
                  MARTINI3_MEAN_RMSD_BAR_ANGSTROM))


def _accuracy_bars(report, section, key, label, rmsd_bar) -> list:
    """Mean RMSD, bond_ok and clash bars of one input scheme; n/a where the model was not run or the targets are
    a subset; a target that failed (martinize2 refused it) is a MISS of every bar."""
    texts = (f"{label}: mean RMSD <= {rmsd_bar:.1f} Å",
             f"{label}: bond_ok >= {BOND_OK_BAR_PERCENT} % on every CASP target",
             f"{label}: clash <= {CASP_TARGET_CLASH_BAR_PERCENT} % on every CASP target")
    rows = report.get(section, {}).get("targets", [])
    done = {r["name"]: r[key] for r in rows if key in r}
    failed = [r["name"] for r in rows if "error" in r]
    if not done and not failed:
        return [_line(t, None, "not run (no model given)") for t in texts]
    total, run = report.get("casp_targets_total", len(rows)), report.get("casp_targets_run", len(rows))
    subset = f"; only {run} of {total} targets run" if run < total else ""
    fail = f"; failed (see below): {_names(failed)}" if failed else ""

    def status(ok):
        return False if failed else (None if subset else ok)

    out = []
    mean = float(np.mean([m["rmsd_angstrom"] for m in done.values()])) if done else None
    value = f"{mean:.3f} Å over {len(done)} targets" if done else "no target"
    out.append(_line(texts[0], status(done and mean <= rmsd_bar), f"{value}{subset}{fail}"))
    checks = (("bond_ok_percent", lambda v: v >= BOND_OK_BAR_PERCENT, min, "min"),
              ("clash_percent", lambda v: v <= CASP_TARGET_CLASH_BAR_PERCENT, max, "max"))
    for text, (metric, ok, worst, word) in zip(texts[1:], checks):
        bad = [n for n, m in done.items() if not ok(m[metric])]
        note = bond_fault_note({n: m.get("bond_ok_failures") for n, m in done.items()}, bad) \
            if metric == "bond_ok_percent" else ""
        value = (f"{word} {worst(m[metric] for m in done.values()):.2f} %" if done else "no target") \
            + f"; offenders: {_few([f'{n} ({done[n][metric]:.2f} %)' for n in bad])}{note}{subset}{fail}"
        out.append(_line(text, status(not bad), value))
    return out


def _few(items, shown=OFFENDERS_SHOWN):
    return _names(items) if len(items) <= shown else f"{', '.join(items[:shown])} and {len(items) - shown} more"


def scheme_bars(report) -> list:
    """The bars of issue 11, each ``{"bar", "status": PASS/MISS/n/a, "value"}``, from the report's numbers."""
    out = []
    for section, key, label, rmsd_bar in ACCURACY_BARS:
        out += _accuracy_bars(report, section, key, label, rmsd_bar)
    rows = report.get("detection", {}).get("rows", [])
    text = ("detection: no error on C-alpha and centre-of-mass beads (CASP targets, eval/ ensembles) and on "
            "martinize2 beads")
    if not rows:
        out.append(_line(text, None, "not run"))
    else:
        errors = sum(r["errors"] for r in rows)
        where = [f"{r['set']}/{r['kind']} ({r['errors']})" for r in rows if r["errors"]]
        no_martini = not any(r["kind"] == "martini3" for r in rows)
        value = (f"{errors} errors in {sum(r['checks'] for r in rows)} verdicts "
                 f"({sum(r['unsure'] for r in rows)} right but unsure); errors in: {_names(where)}")
        if no_martini:
            value += "; martinize2 beads not checked"
        out.append(_line(text, False if errors else (None if no_martini else True), value))
    sp = report.get("speed")
    text = "speed: frames/s at 100 residues, batch 64, for each model next to the C-alpha model (same run)"
    if not sp:
        out.append(_line(text, None, "not measured"))
    else:
        fps = sp["frames_per_s"]
        missing = [s for s in ("ca", "com", "martini3") if s not in fps]
        value = "; ".join(f"{s} {v:.1f}" + (f" ({v / fps['ca']:.2f}x ca)" if "ca" in fps and s != "ca" else "")
                          for s, v in fps.items())
        if missing:
            value += f"; not measured: {_names(missing)}"
        out.append(_line(text, None if missing else True, value))
    return out


def _metric_cols(prefix, key):
    return [(f"{prefix} rmsd", key, "rmsd_angstrom"), (f"{prefix} clash %", key, "clash_percent"),
            (f"{prefix} bond_ok %", key, "bond_ok_percent")]


def _table(rows, cols, extra=()):
    """Per-target table: name, residues, ``extra`` (header, row -> text, row -> number for the mean), metric cols."""
    head = ["target", "residues"] + [h for h, _, _ in extra] + [h for h, _, _ in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], str(r["residues"])] + [text(r) for _, text, _ in extra]
        cells += [_fmt(r.get(key, {}).get(m), m) for _, key, m in cols]
        lines.append("| " + " | ".join(cells) + " |")
    means = [_whole(_mean([num(r) for r in rows])) if num else "" for _, _, num in extra]
    lines.append(f"| mean ({len(rows)}) | {_whole(_mean([r['residues'] for r in rows]))} | "
                 + " | ".join(means + [_fmt(_mean([r.get(key, {}).get(m) for r in rows]), m) for _, key, m in cols])
                 + " |")
    return lines


def _whole(v):
    return "-" if v is None else f"{v:.0f}"


def _summary(report):
    lines = ["| input | model | targets | rmsd | rmsd_sym | ged | clash % | bond_ok % |",
             "|---|---|---|---|---|---|---|---|"]
    entries = (("com", "com_model", "centre-of-mass beads", "com"),
               ("com", "ca_model_on_com", "centre-of-mass beads", "ca (reference: what users got before)"),
               ("com", "ca_model_on_ca", "true C-alphas", "ca (reference)"),
               ("martini3", "martini3_model", "martinize2 Martini 3 beads", "martini3"))
    for section, key, what, model in entries:
        got = [r[key] for r in report.get(section, {}).get("targets", []) if key in r]
        if got:
            lines.append(f"| {what} | {model} | {len(got)} | "
                         + " | ".join(_fmt(_mean([g[m] for g in got]), m) for m in METRICS) + " |")
    return lines


def _martini_section(report):
    m3 = report["martini3"]
    rows = m3["targets"]
    raw = [r["name"] for r in rows if r.get("martinize2_input") == "raw"]
    written = [r["name"] for r in rows if r.get("martinize2_input") == "package-written"]
    refused = [r["name"] for r in rows if not r.get("martinize2_input")]
    devs = [r["max_deviation_from_package_nm"] for r in rows if "max_deviation_from_package_nm" in r]
    lines = ["", "## Martini 3 input made by martinize2", "",
             f"vermouth {m3['martinize2_version']}; per target `{m3['martinize2_template']}` (`TARGET.pdb`: the "
             "target's file from the data folder, unzipped)."
             + (" `-dssp` gives martinize2 the secondary structure from mdtraj's DSSP; without secondary structure "
                "martinize2 refuses to write anything. The bead positions do not depend on it."
                if "-dssp" in m3["martinize2_template"].split() else "")
             + " martinize2's beads are read in its order (bead and residue names checked against the package's "
             "Martini 3 mapping) and fed to the model as they are.", "",
             f"- **What was done to the input:** {len(raw)} of {len(rows)} targets went to martinize2 as they are "
             "in the data folder (unzipped). "
             + (f"martinize2 refused the raw file of {_names(written)}, so they were written through the package's "
                "loader and mdtraj's PDB writer first. " if written else "")
             + (f"It refused {_names(refused)} both ways." if refused else "")]
    if devs:
        lines.append(f"- **martinize2's beads vs the package's mapping:** max deviation {max(devs):.4f} nm over all "
                     f"beads of {len(devs)} targets (per-target maxima below; the mapping's tolerance is 0.01 nm).")
    failed = [f"{r['name']}: {r['error']}" for r in rows if "error" in r]
    if failed:
        lines.append(f"- **Failed:** {'; '.join(failed)}")
    cols = _metric_cols("model", "martini3_model")
    extra = (("beads", lambda r: str(r.get("beads", "-")), lambda r: r.get("beads")),
             ("martinize2 input", lambda r: r.get("martinize2_input") or "refused", None),
             ("max dev. (nm)", lambda r: f"{r['max_deviation_from_package_nm']:.4f}"
              if "max_deviation_from_package_nm" in r else "-", None))
    return lines + [""] + _table(rows, cols, extra)


def _detection_section(report):
    det = report["detection"]
    lines = ["", "## Scheme detection", "",
             f"`mapping.detect_scheme` on every CASP target and on {det['detect_frames']} evenly spaced frames of each "
             "`eval/` ensemble, as C-alphas and as residue centres of mass (beads named `CA`: geometry decides), and "
             "on martinize2's output (bead names decide). Median deviation: the detection statistic, range over the "
             "verdicts (C-alpha beads <= 0.30 Å, centres of mass > 0.45 Å).", "",
             "| set | true scheme | structures | verdicts | errors | right but unsure | median deviation (Å) |",
             "|---|---|---|---|---|---|---|"]
    for r in det["rows"]:
        med = r.get("median_deviation_angstrom")
        med = f"{med[0]:.3f} to {med[1]:.3f}" if med else "-"
        lines.append(f"| {r['set']} | {r['kind']} | {r['structures']} | {r['checks']} | {r['errors']} | "
                     f"{r['unsure']} | {med} |")
    examples = [e for r in det["rows"] for e in r.get("error_examples", [])]
    if examples:
        lines += ["", "Errors (first ones): " + "; ".join(examples)]
    return lines


def _speed_section(report):
    sp = report["speed"]
    fps = sp["frames_per_s"]
    lines = ["", f"## Speed ({sp['date']}, {sp['threads']} threads)", "",
             f"{sp['system']} ({sp['residues']} residues), batch {sp['batch']}, deterministic; median of "
             f"{sp['repeats']} timed calls, the models' calls interleaved in one run. Each model gets the beads of "
             "its scheme (the package's mapping of the same frame). Absolute figures depend on the machine's load at the "
             "time; the ratios, from interleaved calls, are the comparable figure.", "",
             "| model | scheme | frames/s | ratio to the C-alpha model |", "|---|---|---|---|"]
    for s, v in fps.items():
        ratio = f"{v / fps['ca']:.2f}" if "ca" in fps else "-"
        lines.append(f"| `{report['models'].get(s, {}).get('path', s)}` | {s} | {v:.1f} | {ratio} |")
    return lines


def markdown(report) -> str:
    models = ", ".join(f"{s}: `{m['path']}`" for s, m in report["models"].items())
    lines = ["# Centre-of-mass and Martini 3 input: accuracy, detection and speed (issue 11)", "",
             f"Models {models}; {report['device']}, {report['threads']} threads, {report['date']}. "
             f"{report['casp_targets_run']} of {report['casp_targets_total']} CASP targets. Deterministic output, "
             "before minimisation. RMSD in Å (heavy atoms, no superposition), ged dimensionless, clash and bond_ok "
             "in %: the metrics of `openmm_backmap.evaluation`, as in [ca2aa_accuracy.md](ca2aa_accuracy.md).", "",
             "These figures hand the beads to the model in memory with the reference's chain segments. What a user "
             "gets, bead files written by `coarsen` and martinize2 through the `convert` CLI, is in "
             "[user_path_accuracy.md](user_path_accuracy.md) (benchmarks/user_path_accuracy.py), beside the same "
             "in-memory figure.", "",
             "Command (from the repository root):", "",
             "<!-- docs-test: slow: martinize2 and three models on the 24 CASP targets of ../shared/data "
             "(tens of minutes) -->",
             "```bash", report["command"], "```", "",
             "## Bars (issue 11)", "", "| status | bar | value |", "|---|---|---|"]
    lines += [f"| **{b['status']}** | {b['bar']} | {b['value']} |" for b in scheme_bars(report)]
    summary = _summary(report)
    if len(summary) > 2:
        lines += ["", "## Summary (mean over CASP targets)", ""] + summary
    cols = (_metric_cols("com model", "com_model") + _metric_cols("ca model on com", "ca_model_on_com")
            + _metric_cols("ca model on CA", "ca_model_on_ca"))
    cols = [c for c in cols if any(c[1] in r for r in report.get("com", {}).get("targets", []))]
    if cols:
        lines += ["", "## Centre-of-mass input (CASP targets)", "",
                  "Residue centres of mass of all heavy atoms (`mapping.scheme_mapping('com', seq)`, beads named "
                  "`CA`). The C-alpha model's columns are references: on the same centre-of-mass beads (what users "
                  "got before this scheme had a model), and on the true C-alphas.", ""]
        lines += _table(report["com"]["targets"], cols)
    if report.get("martini3"):
        lines += _martini_section(report)
    if report.get("detection"):
        lines += _detection_section(report)
    if report.get("speed"):
        lines += _speed_section(report)
    for section, key, label in (("com", "com_model", " of the centre-of-mass model"),
                                ("martini3", "martini3_model", " of the Martini 3 model")):
        lines += failed_bonds_section({r["name"]: r[key].get("bond_ok_failures")
                                       for r in report.get(section, {}).get("targets", []) if key in r}, label)
    return "\n".join(lines + [""])
