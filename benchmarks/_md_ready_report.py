"""The protocol constants and the report of benchmarks/md_ready.py (issue 25): summary, the issue's bars, Markdown.

Kept apart from the measurement so that each file does one job; ``md_ready.py`` imports what it needs from here.
"""

from __future__ import annotations

import datetime
import os
import re

import numpy as np

FORCEFIELD = "amber14-all.xml"
IMPLICIT = "implicit/obc2.xml"
MAX_DISPLACEMENT_NM = 1.0
BOND_OK_MIN = 99.9
CHECKPOINTS = 10
#: The structural rule reported beside the stability rule ("intact"): finite energy, no core backbone atom (these
#: names) farther than MAX_DISPLACEMENT_NM from its start after superposing the core backbone, and no heavy-atom
#: bond longer than BROKEN_BOND_RATIO times the force field's length at any check point. Thermal motion at 300 K
#: stretches a C-C bond by about 2 % (one standard deviation); a bond 25 % long is broken.
BACKBONE_ATOMS = ("N", "CA", "C", "O")
BROKEN_BOND_RATIO = 1.25
#: Residues at each end of every chain (segment) left out of the displacement check: free termini fray.
TERMINAL_RESIDUES = 3
#: Seed of the one sampled (non-deterministic) frame per target.
SAMPLE_SEED = 1
#: Our structures: output file and the ``convert`` options that make it from the C-alpha beads.
STRUCTURES = {
    "raw": ("raw.pdb", ["--deterministic"]),
    "sampled": ("sampled.pdb", ["--seed", str(SAMPLE_SEED)]),
    "minimized": ("min.pdb", ["--deterministic", "--minimize"]),
    "openmm": ("openmm.pdb", ["--deterministic", "--minimize", "--relax", "openmm"]),
}
#: The crystal row each structure's energy is compared with (same treatment).
REFERENCE = {"raw": "crystal", "sampled": "crystal", "minimized": "crystal+minimized", "openmm": "crystal+openmm"}
#: Crystal rows: the relaxation applied to the crystal's heavy atoms (None: as deposited).
CRYSTAL_RELAX = {"crystal": None, "crystal+minimized": "fast", "crystal+openmm": "openmm"}
#: Table order: each crystal row right before the structures compared with it.
ROW_ORDER = ("crystal", "raw", "sampled", "crystal+minimized", "minimized", "crystal+openmm", "openmm")
#: The issue's bars.
BAR_ENERGY_KJ_PER_RES = 10.0
BAR_RAW_STABLE = 0.95
#: The issue's protocol (the bars are stated for it).
ISSUE_PS = 20.0
ISSUE_TARGETS = 24
#: Quoted from issue 25 (measured elsewhere, NOT by this script).
CG2AT2_QUOTED = {
    "source": "issue 25 (quoted, not measured here)",
    "setting": "martinize2 Martini 3 beads of 8 CASP targets; fragments + GROMACS minimisation",
    "rmsd_A": 1.02, "clash_percent": 0.0, "bond_ok_percent": 99.98, "cpu_s_per_structure": 40,
    "rmsd_after_own_5ps_nvt_A": 1.88,
}


def _fmt(v, nd=1):
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def _yes(flag):
    return "–" if flag is None else ("yes" if flag else "NO")


def _stereo(row):
    """'D / cis' of a row (– for rows measured before the check existed)."""
    if "d_residues_start" not in row:
        return "–"
    return f"{row['d_residues_start']} / {row['cis_peptides_start']}"


def _reference(key):
    """The crystal row a row's energy is compared with (None for the crystal itself)."""
    return REFERENCE.get(key) or (None if key == "crystal" else "crystal")


def _delta(t, key):
    ref = _reference(key)
    if ref is None or ref not in t or "error" in t[ref] or "error" in t[key]:
        return None
    return t[key]["energy_kj_per_res"] - t[ref]["energy_kj_per_res"]


def _rows(targets):
    present = {k for t in targets if "error" not in t for k in t.get("rows", ())}
    return [k for k in ROW_ORDER if k in present]


def summarize(targets):
    """Per row kind: stable count, mean energy, mean ΔE against its like-for-like crystal row, mean drift, ..."""
    out = {}
    for key in _rows(targets):
        ts = [t for t in targets if "error" not in t and key in t and "error" not in t[key]]
        rows = [t[key] for t in ts]
        de = [d for d in (_delta(t, key) for t in ts) if d is not None and np.isfinite(d)]
        energies = [r["energy_kj_per_res"] for r in rows if np.isfinite(r["energy_kj_per_res"])]
        md = bool(rows) and all(r.get("md_ps", 0) > 0 for r in rows)  # False: energies only (--ps 0)
        out[key] = {
            "n": len(rows), "stable": sum(r["stable"] for r in rows) if md else None,
            "intact": sum(r["intact"] for r in rows) if md and all("intact" in r for r in rows) else None,
            "d_residues_start": sum(r.get("d_residues_start", 0) for r in rows),
            "cis_peptides_start": sum(r.get("cis_peptides_start", 0) for r in rows),
            "compared_with": _reference(key),
            "mean_energy_kj_per_res": float(np.mean(energies)) if energies else None,
            "mean_delta_vs_reference": float(np.mean(de)) if de else None,
            "median_delta_vs_reference": float(np.median(de)) if de else None,
            "n_energy": len(de), "hydrogen_collapse": sum(bool(r.get("hydrogen_collapse")) for r in rows),
            "mean_drift_A": float(np.nanmean([r["drift_rmsd_end_A"] for r in rows])) if md else None,
            "max_displacement_nm": float(max(r["max_displacement_nm"] for r in rows)) if md else None,
            "max_displacement_all_atoms_nm":
                float(max(r["max_displacement_all_atoms_nm"] for r in rows)) if md else None,
            "md_cpu_s_per_ps_per_res": float(np.mean([r["cpu_s_md"] / (r["md_ps"] * r["n_residues"])
                                                      for r in rows])) if md else None,
        }
    return out


def is_casp(name):
    """Whether a target (its file name without extension) is one of the CASP targets, on which the issue states the
    energy bar; other files given to ``--targets`` (the eval ensembles) count for the stability bars only."""
    return re.match(r"^(FM|TBM|TBM-hard)_T\d{4}", name) is not None


def bars(summary, ps, n_targets, energy_summary=None):
    """The issue's bars, each with the figure it is judged on and 'met' / 'missed' / 'not measured'; the energy bar
    on ``energy_summary`` (the CASP targets' summary, when other targets are in the run) if given."""
    out = []

    def add(bar, key, ok, figure, summary=summary):
        s = summary.get(key)
        measured = s and s["n"] and (s["stable"] is not None or "energy" in bar)
        verdict = "met" if measured and ok(s) else ("missed" if measured else "not measured")
        out.append({"bar": bar, "structure": key, "figure": figure(s) if measured else "",
                    "verdict": verdict})

    for key, how in (("minimized", "--minimize"), ("openmm", "--minimize --relax openmm")):
        add(f"100 % stable after `{how}`", key, lambda s: s["stable"] == s["n"],
            lambda s: f"{s['stable']}/{s['n']} stable")
        if summary.get(key, {}).get("intact") is not None:
            add(f"100 % intact after `{how}` (the structural rule, beside the issue's)", key,
                lambda s: s["intact"] == s["n"], lambda s: f"{s['intact']}/{s['n']} intact")
        add(f"energy after `{how}` within {BAR_ENERGY_KJ_PER_RES:g} kJ/mol/res of the crystal's, same "
            f"treatment, mean over {'the CASP targets' if energy_summary is not None else 'targets'}", key,
            lambda s: s["mean_delta_vs_reference"] is not None
            and abs(s["mean_delta_vs_reference"]) <= BAR_ENERGY_KJ_PER_RES,
            lambda s: f"mean ΔE vs {s['compared_with']} {_fmt(s['mean_delta_vs_reference'])} kJ/mol/res over "
                      f"{s.get('n_energy', s['n'])} target(s)",
            summary=summary if energy_summary is None else energy_summary)
    for key in ("raw", "sampled"):
        add(f"raw output (`{key}`, no relaxation) stable on ≥ {BAR_RAW_STABLE:.0%} of frames (goal)", key,
            lambda s: s["stable"] >= BAR_RAW_STABLE * s["n"],
            lambda s: f"{s['stable']}/{s['n']} stable ({100 * s['stable'] / s['n']:.0f} %)")
    partial = ps < ISSUE_PS or n_targets < ISSUE_TARGETS
    for b in out:
        b["protocol"] = f"{n_targets} target{'s' if n_targets != 1 else ''} " + (
            f"at {ps:g} ps" if ps > 0 else "(single-point energies only, no MD)") + (
            f" (the issue's bars are for all {ISSUE_TARGETS} CASP targets at {ISSUE_PS:g} ps)" if partial else "")
    return out


def cpu_totals(targets):
    """CPU seconds of (evaluation, ``convert`` calls, crystal relaxations) over the targets without an error."""
    ok = [t for t in targets if "error" not in t]
    ev = sum(t[k]["cpu_s_total"] for t in ok for k in t["rows"] if "error" not in t[k])
    cv = sum(sum(t["convert_cpu_s"].values()) for t in ok)
    rv = sum(sum(t.get("relax_cpu_s", {}).values()) for t in ok)
    return ev, cv, rv


def markdown(report):
    ps, structures = report["ps"], report.get("structures", list(STRUCTURES))
    made = {"raw": "`convert T_ca.pdb -o raw.pdb --deterministic`",
            "sampled": f"`convert T_ca.pdb -o sampled.pdb --seed {SAMPLE_SEED}` (one sampled frame, no relaxation)",
            "minimized": "`... --deterministic --minimize` (fast relaxer, the default)",
            "openmm": "`... --deterministic --minimize --relax openmm` (OpenMM minimisation, OBC2, the default "
                      "`--relax-solvent`)"}
    lines = [
        "# MD-readiness of backmapped frames (issue 25)",
        "",
        f"Measured {report['date']} on {report['machine']}.",
        "",
        f"<!-- docs-test: slow: about {max(1, round(sum(cpu_totals(report['targets'])) / 60))} CPU minutes on "
        "one thread, on ../shared/data -->",
        "```bash",
        report["command"],
        "```",
        "",
        "Per target, the command line as a user runs it: `openmm-backmap coarsen T --levels ca -o T`, then "
        + "; ".join(f"**{k}** = {made[k]}" for k in structures) + ". "
        "The crystal is treated the same way: **crystal** as deposited (heavy atoms), **crystal+minimized** = its "
        "canonical heavy atoms through the fast relaxer (`FastRelaxer.relax_batch`, what `--minimize` runs), "
        "**crystal+openmm** = through `Relaxer.relax` (what `--relax openmm` runs), both built as the pipeline "
        "builds them, with their defaults. ΔE compares like with like: raw and sampled with crystal, minimized "
        "with crystal+minimized, openmm with crystal+openmm (the crystal+… rows with the crystal); the "
        "*vs* column names it.",
        "",
        "**Method.** Heavy atoms read in canonical order; OXT placed and hydrogens added by OpenMM "
        "`Modeller.addHydrogens` (pH 7, via `build_force_field_system`); AMBER ff14SB (`amber14-all.xml`) + "
        "OBC2 (`implicit/obc2.xml`), no cutoff. Hydrogens relaxed with the heavy atoms **frozen by setting "
        "their masses to 0** (OpenMM's minimiser holds massless particles fixed), then the single-point "
        "energy per residue. MD: `LangevinMiddleIntegrator`, 300 K, 1/ps, 2 fs, HBonds constraints, "
        f"**{ps:g} ps** per structure started straight from that structure (no further minimisation). "
        f"Stable = finite energy at every one of {CHECKPOINTS} check points, no **core heavy atom** > "
        f"{MAX_DISPLACEMENT_NM:g} nm from its start, and bond_ok (`frame_quality` against the force field's bond "
        f"lengths) ≥ {BOND_OK_MIN} % throughout. Core heavy atoms: all heavy atoms but those of the first and "
        f"last {TERMINAL_RESIDUES} residues of each chain (segment), superposed on their own start before "
        "measuring. The issue's literal rule counts every atom: hydrogens and free termini dominate it (crystals "
        "reach 0.7-0.8 nm in 2 ps), so it is reported beside it (*all atoms*, after superposing all heavy atoms) "
        "but not used. **Intact** (the structural rule, reported beside it) = finite energy, no core **backbone** "
        f"atom ({', '.join(BACKBONE_ATOMS)}) > {MAX_DISPLACEMENT_NM:g} nm from its start after superposing the core "
        f"backbone, and no heavy-atom bond longer than {BROKEN_BOND_RATIO:g} x the force field's length at any "
        "check point: it asks whether the structure breaks, where the stability rule also counts side chains that "
        "swing and a bond 10 % long for one check point. Longest bond = the most stretched bond over the run. "
        "D / cis = D residues and cis peptide bonds before a residue other than proline in the starting structure "
        "(`stereo_defects`). Drift = heavy-atom RMSD after superposition, last frame vs first (max over the run in "
        "brackets). CPU s = process CPU time of the evaluation (system build, H relaxation, MD) on one thread; "
        "convert / relax CPU s = the `convert` call's own (dominated by start-up) or the crystal relaxation's.",
        "",
    ]
    md = ps > 0
    if not md:
        lines += ["**Single-point energies only (`--ps 0`): no MD was run**, so the stability columns and bars are "
                  "empty; the MD figures are in md_ready_20ps.md.", ""]
    elif ps < ISSUE_PS:
        lines += [f"**The runs are {ps:g} ps, not the issue's {ISSUE_PS:g} ps**; rerun with `--ps {ISSUE_PS:g}` "
                  f"(`--targets {ISSUE_TARGETS}` for all of CASP) for the issue's protocol.", ""]
    md_head = ("stable | max disp core (nm) | max disp all atoms (nm) | min bond_ok % | intact | "
               "max disp backbone (nm) | longest bond | drift Å (max) | ") if md else ""
    lines += [
        "| target | res | structure | E (kJ/mol/res) | ΔE | vs | bond_ok start % | clash start % | D / cis | "
        + md_head + "eval CPU s | convert / relax CPU s |",
        "|---|---|---|---|---|---|---|---|---|" + "---|" * (md_head.count("|") + 2),
    ]
    for t in report["targets"]:
        if "error" in t:
            lines.append(f"| {t['target']} | | | error: {t['error'][-200:]} |||||||||||")
            continue
        for key in t["rows"]:
            r = t[key]
            if "error" in r:
                lines.append(f"| {t['target']} | | {key} | error: {r['error']} ||||||||||||")
                continue
            prep = t["convert_cpu_s"].get(key, t.get("relax_cpu_s", {}).get(key))
            de = _delta(t, key)
            lines.append(
                f"| {t['target']} | {r['n_residues']} | {key} | "
                f"{_fmt(r['energy_kj_per_res']) if not r.get('hydrogen_collapse') else 'left out: ' + r['hydrogen_collapse']} | "
                f"{'' if de is None else _fmt(de)} | {_reference(key) or ''} | "
                f"{_fmt(r['bond_ok_percent_start'], 2)} | {_fmt(r['clash_percent_start'])} | "
                f"{_stereo(r)} | " + (
                    f"{'yes' if r['stable'] else 'NO'} | {_fmt(r['max_displacement_nm'], 2)} | "
                    f"{_fmt(r['max_displacement_all_atoms_nm'], 2)} | "
                    f"{_fmt(r['bond_ok_min_percent'], 2)} | {_yes(r.get('intact'))} | "
                    f"{_fmt(r.get('max_displacement_backbone_nm'), 2)} | {r.get('longest_bond', '')} | "
                    f"{_fmt(r['drift_rmsd_end_A'], 2)} ({_fmt(r['drift_rmsd_max_A'], 2)}) | " if md else "")
                + f"{_fmt(r['cpu_s_total'])} | {'' if prep is None else _fmt(prep)} |")
    ev, cv, rv = cpu_totals(report["targets"])
    lines += ["", f"Total CPU: {ev:.0f} s of evaluation (energies + MD), {cv:.0f} s of `convert` calls and "
              f"{rv:.0f} s of crystal relaxations, one thread per process"
              + (f", {report['jobs']} targets at a time" if report.get("jobs", 1) > 1 else "") + "."]
    lines += ["", "## Summary", ""] + _summary_table(report["summary"])
    if report.get("summary_casp"):
        lines += ["", "### The CASP targets only (the energy bar is judged on these)", ""]
        lines += _summary_table(report["summary_casp"])
    lines += ["", "## The issue's bars", ""]
    if report["bars"]:
        lines += [f"Judged on these numbers: {report['bars'][0]['protocol']}.", ""]
    for b in report["bars"]:
        lines.append(f"- {b['bar']}: **{b['verdict']}**" + (f" ({b['figure']})" if b["figure"] else ""))
    q = report["cg2at2_quoted"]
    lines += [
        "",
        "## Reference: CG2AT2 (quoted from issue 25, not measured here)",
        "",
        "| method | setting | RMSD Å | clash % | bond_ok % | CPU s/structure | RMSD after its own 5 ps NVT |",
        "|---|---|---|---|---|---|---|",
        f"| CG2AT2 (quoted) | {q['setting']} | {q['rmsd_A']} | {q['clash_percent']} | {q['bond_ok_percent']} | "
        f"~{q['cpu_s_per_structure']} | {q['rmsd_after_own_5ps_nvt_A']} Å |",
        "",
        "No single-point energy or MD-stability figures exist for CG2AT2 on this protocol; the row is "
        "context only. FlowBack-Adjoint's claims (stable MD without relaxation, lower energies) are likewise "
        "quoted in the issue and not reproduced here.",
        "",
        "## Not done yet (issue 25)",
        "",
        "Of the eval ensembles, only the first frame of the files given to `--targets` (the 20 ps run has trpcage, "
        "ntl9, 2EQQ and PED00151; not lysozyme or adenylate kinase); more than one sampled frame per target. "
        "100 ps in explicit TIP3P water, through the script of continue_all_atom.md, is measured on a subset in "
        "[md_ready_explicit.md](md_ready_explicit.md) (`benchmarks/md_ready_explicit.py`). Frames "
        "from real CG engine runs (CALVADOS 3, martini_openmm, OpenABC) are in [md_ready_cg.md](md_ready_cg.md) "
        "(`benchmarks/md_ready_cg.py`). `--export gromacs` through `gmx grompp`, minimisation and "
        "100 steps of `gmx mdrun` is tested where GROMACS is installed (`tests/run/test_gromacs_export.py`; "
        "commands in [continue_all_atom.md](../continue_all_atom.md#gromacs)).",
        "",
    ]
    return "\n".join(lines)


def _summary_table(summary):
    lines = ["| structure | stable | mean E (kJ/mol/res) | mean ΔE | vs | mean drift Å | max disp core (nm) | "
             "max disp all atoms (nm) | MD CPU s / ps / residue | intact | D / cis at start | median ΔE | "
             "energies left out (H collapse) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, v in summary.items():
        stable = "–" if v["stable"] is None else f"{v['stable']}/{v['n']}"
        lines.append(f"| {key} | {stable} | {_fmt(v['mean_energy_kj_per_res'])} | "
                     f"{_fmt(v['mean_delta_vs_reference'])} | {v['compared_with'] or ''} | "
                     f"{_fmt(v['mean_drift_A'], 2)} | {_fmt(v['max_displacement_nm'], 2)} | "
                     f"{_fmt(v['max_displacement_all_atoms_nm'], 2)} | {_fmt(v['md_cpu_s_per_ps_per_res'], 3)} | "
                     f"{'–' if v.get('intact') is None else str(v['intact']) + '/' + str(v['n'])} | "
                     f"{v.get('d_residues_start', 0)} / {v.get('cis_peptides_start', 0)} | "
                     f"{_fmt(v.get('median_delta_vs_reference'))} | {v.get('hydrogen_collapse', 0)} |")
    return lines


def merge_reports(reports):
    """One report from several runs of the same protocol (``ps``, ``platform``): the union of their rows.

    A long benchmark is often split over processes (smallest targets first in one, largest first in another) and
    stopped once they cover every target; this joins them. A target's rows are joined across the reports; where two
    reports hold the same row, the first one's is kept and the duplicate is named in the command block. The
    commands of all runs are kept, so the report still says how each number was made.
    """
    if not reports:
        raise ValueError("nothing to merge")
    for key in ("ps", "platform"):
        values = {r[key] for r in reports}
        if len(values) > 1:
            raise ValueError(f"the reports were made with different {key} ({sorted(values)}); they do not merge")
    by_name, commands, kept_first = {}, [], []
    for r in reports:
        commands += [c for c in r["command"].split("\n") if c not in commands]
        for t in r["targets"]:
            if "error" in t:
                by_name.setdefault(t["target"], t)
                continue
            into = by_name.get(t["target"])
            if into is None or "error" in into:
                by_name[t["target"]] = into = {**t, "rows": [], "structures": []}
                for field in ("convert_cpu_s", "relax_cpu_s", "crystal_relax"):
                    into[field] = {}
            for field in ("convert_cpu_s", "relax_cpu_s", "crystal_relax"):
                for k, v in t.get(field, {}).items():
                    into[field].setdefault(k, v)
            for key in t["rows"]:
                if key in into["rows"]:
                    kept_first.append(f"{t['target']} {key}")
                    continue
                into[key] = t[key]
            rows = set(into["rows"]) | set(t["rows"])
            into["rows"] = [k for k in ROW_ORDER if k in rows]
            structures = set(into["structures"]) | set(t["structures"])
            into["structures"] = [k for k in STRUCTURES if k in structures]
    if kept_first:
        commands.append("# rows held by more than one run, the first run's kept: " + ", ".join(kept_first))
    structures = {k for t in by_name.values() for k in t.get("structures", ())}
    first = reports[0]
    return build_report(list(by_name.values()), first["ps"], first["platform"], "\n".join(commands),
                        max(r.get("jobs", 1) for r in reports), [k for k in STRUCTURES if k in structures])


def build_report(targets, ps, platform, command, jobs=1, structures=tuple(STRUCTURES)):
    summary = summarize(targets)
    n_targets = sum("error" not in t for t in targets)
    casp = [t for t in targets if is_casp(t["target"])]
    summary_casp = summarize(casp) if casp and len(casp) < len(targets) else None
    return {
        "command": command,
        "date": datetime.date.today().isoformat(),
        "machine": f"shared {os.cpu_count()}-core CPU machine (other jobs running), OpenMM {platform} "
                   f"platform{' with 1 thread' if platform == 'CPU' else ''}, OMP_NUM_THREADS=1"
                   + (f", {jobs} worker processes" if jobs > 1 else ""),
        "platform": platform, "ps": ps, "jobs": jobs, "structures": [k for k in STRUCTURES if k in structures],
        "forcefield": FORCEFIELD, "implicit": IMPLICIT,
        "hydrogens": "OpenMM Modeller.addHydrogens (pH 7), relaxed with heavy-atom masses set to 0",
        "stability_criteria": {"finite_energy": True, "max_displacement_nm": MAX_DISPLACEMENT_NM,
                               "displacement_atoms": f"heavy atoms, first and last {TERMINAL_RESIDUES} residues of "
                                                     "each chain (segment) excluded, superposed on themselves",
                               "terminal_residues_excluded": TERMINAL_RESIDUES,
                               "bond_ok_min_percent": BOND_OK_MIN},
        "compared_with": {k: _reference(k) for k in ROW_ORDER},
        "cg2at2_quoted": CG2AT2_QUOTED,
        "targets": targets,
        "summary": summary,
        "summary_casp": summary_casp,
        "bars": bars(summary, ps, n_targets, summary_casp),
    }
