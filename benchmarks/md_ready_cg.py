"""Are frames backmapped from real CG engine runs ready for all-atom MD? (issue 25, the real CG runs)

:mod:`md_ready` coarsens CASP crystals; this script takes what the CG engines themselves wrote: the run folders of
``benchmarks/clients/*_run.py`` (CALVADOS 3 centre-of-mass beads of ubiquitin, martini_openmm Martini 3 beads of
ubiquitin and CASP T0862, OpenABC C-alpha beads of three histatin-5 chains). Per run and per ``--structures`` it
converts the engine's own CG file with the command line, as a user would::

    openmm-backmap convert CG [-t TOPOLOGY] -o WORK/RUN_raw.pdb --deterministic
    openmm-backmap convert CG [-t TOPOLOGY] -o WORK/RUN_minimized.pdb --deterministic --minimize
    openmm-backmap convert CG [-t TOPOLOGY] -o WORK/RUN_openmm.pdb --deterministic --minimize --relax openmm

and evaluates ``--frames`` frames of each output (evenly spaced, the last one included, the first one only when
there is no other) exactly as :func:`md_ready.evaluate_structure` does for CASP: ff14SB + OBC2 energy per residue
after relaxing the hydrogens, and ``--ps`` of Langevin MD with the same stability rule. There is no crystal for a CG
frame, so no ΔE: the CASP table's crystal rows (-125 to -141 kJ/mol/res) are the scale.

    python benchmarks/md_ready_cg.py --runs /work/clients/runs/final_raw --ps 5 --frames 2 --jobs 2

Writes docs/benchmarks/md_ready_cg.json and .md (``--out`` to change the stem).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _md_ready_report  # noqa: E402
import md_ready  # noqa: E402  (the same evaluation as the CASP table)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "docs", "benchmarks", "md_ready_cg")
#: run folder -> (engine and beads, the engine's CG file, its topology or None: what ``convert`` reads)
RUNS = {
    "calvados_ubq": ("CALVADOS 3, centre-of-mass beads, ubiquitin", "ubq.dcd", "top.pdb"),
    "martini_openmm_1UBQ": ("martini_openmm, Martini 3 (martinize2), ubiquitin", "cg_frame0.pdb", None),
    "martini_openmm_T0862": ("martini_openmm, Martini 3 (martinize2), CASP T0862", "cg_frame0.pdb", None),
    "openabc_histatin5": ("OpenABC (CALVADOS 2), C-alpha beads, 3 histatin-5 chains", "openabc.dcd", "frame0.pdb"),
}
STRUCTURES = {"raw": ["--deterministic"], "minimized": ["--deterministic", "--minimize"],
              "openmm": ["--deterministic", "--minimize", "--relax", "openmm"]}


def pick_frames(n_frames, k):
    """``k`` evenly spaced frame indices of ``n_frames``, the last included and frame 0 only if nothing else is left.

    Examples
    --------
    >>> pick_frames(10, 2)
    [4, 9]
    >>> pick_frames(1, 2)
    [0]
    """
    if n_frames <= 1:
        return [0]
    k = min(k, n_frames - 1)
    return sorted({int(round(v)) for v in np.linspace(n_frames - 1, 0, k + 1)[:-1]})


def convert_run(name, folder, workdir, structures):
    """The CLI's output files of one run, per structure, and the CPU seconds of each ``convert``."""
    _, cg, top = RUNS[name]
    folder, workdir = os.path.abspath(folder), os.path.abspath(workdir)  # the CLI runs in workdir
    os.makedirs(workdir, exist_ok=True)
    paths, cpu = {}, {}
    for key in structures:
        out = os.path.join(workdir, f"{name}_{key}.pdb")
        args = ["convert", os.path.join(folder, cg), "-o", out, *STRUCTURES[key], "--force"]
        if top:
            args += ["-t", os.path.join(folder, top)]
        cpu[key] = md_ready._cli(args, workdir)
        paths[key] = out
    return paths, cpu


def _evaluate(path, frame, ps, platform):
    return md_ready.evaluate_structure(path, ps=ps, platform=platform, frame=frame)


def _in_worker(path, frame, ps, platform):
    """One evaluation in a fresh one-thread process (OpenMM's CPU platform and torch keep their threads)."""
    fd, res = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    code = ("import json, sys; sys.path.insert(0, %r); import md_ready_cg as m; "
            "json.dump(m._evaluate(%r, %d, %r, %r), open(%r, 'w'))" % (HERE, path, frame, ps, platform, res))
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **md_ready.ONE_THREAD_ENV),
                              capture_output=True, text=True)
        if proc.returncode:
            return {"error": f"worker failed (exit {proc.returncode}): {proc.stderr[-1500:]}"}
        with open(res) as fh:
            return json.load(fh)
    finally:
        os.unlink(res)


def summarize(rows):
    out = {}
    for key in STRUCTURES:
        rs = [r for r in rows if r["structure"] == key and "error" not in r["result"]]
        if rs:
            out[key] = {"n": len(rs), "stable": sum(r["result"]["stable"] for r in rs),
                        "intact": sum(r["result"]["intact"] for r in rs),
                        "d_residues_start": sum(r["result"]["d_residues_start"] for r in rs),
                        "cis_peptides_start": sum(r["result"]["cis_peptides_start"] for r in rs),
                        "mean_energy_kj_per_res": float(np.mean([r["result"]["energy_kj_per_res"] for r in rs])),
                        "mean_drift_A": float(np.nanmean([r["result"]["drift_rmsd_end_A"] for r in rs])),
                        "max_displacement_nm": float(max(r["result"]["max_displacement_nm"] for r in rs))}
    return out


def markdown(report):
    f = _md_ready_report._fmt
    lines = ["# MD-readiness of frames backmapped from real CG engine runs (issue 25)", "",
             f"Measured {report['date']} on {report['machine']}.", "",
             f"<!-- docs-test: slow: about {max(1, round(report['cpu_s'] / 60))} CPU minutes, on the engines' run "
             "folders (benchmarks/clients) -->", "```bash", report["command"], "```", "",
             "Each run's CG file, as the engine wrote it, converted by `openmm-backmap convert` (**raw** "
             "`--deterministic`; **minimized** `--deterministic --minimize`, the fast relaxer; **openmm** "
             "`--deterministic --minimize --relax openmm`). Each listed frame then gets the CASP table's treatment "
             "([md_ready.md](md_ready.md)): ff14SB + OBC2 energy per residue with the hydrogens relaxed and the heavy "
             f"atoms fixed, then **{report['ps']:g} ps** of Langevin MD at 300 K; stable = finite energy, no core heavy "
             f"atom > {md_ready.MAX_DISPLACEMENT_NM:g} nm, bond_ok ≥ {md_ready.BOND_OK_MIN} %; intact = finite "
             f"energy, no core backbone atom > {md_ready.MAX_DISPLACEMENT_NM:g} nm, no bond longer than "
             f"{md_ready.BROKEN_BOND_RATIO:g} x its length (the structural rule; see md_ready.md). D / cis = D "
             "residues and non-proline cis peptide bonds in the starting structure. A CG frame has no crystal, so "
             "there is no ΔE; the CASP crystals sit at -109 to -147 kJ/mol/res.", "",
             "| run | beads | frame | structure | res | E (kJ/mol/res) | clash start % | D / cis | stable | "
             "max disp core (nm) | min bond_ok % | intact | max disp backbone (nm) | longest bond | drift Å (max) | "
             "eval CPU s |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        x = r["result"]
        if "error" in x:
            lines.append(f"| {r['run']} | | {r['frame']} | {r['structure']} | error: {x['error'][-200:]} |||||||")
            continue
        lines.append(f"| {r['run']} | {RUNS[r['run']][0]} | {r['frame']} | {r['structure']} | {x['n_residues']} | "
                     f"{f(x['energy_kj_per_res'])} | {f(x['clash_percent_start'])} | "
                     f"{x['d_residues_start']} / {x['cis_peptides_start']} | "
                     f"{'yes' if x['stable'] else 'NO'} | {f(x['max_displacement_nm'], 2)} | "
                     f"{f(x['bond_ok_min_percent'], 2)} | {'yes' if x['intact'] else 'NO'} | "
                     f"{f(x['max_displacement_backbone_nm'], 2)} | {x['longest_bond']} | "
                     f"{f(x['drift_rmsd_end_A'], 2)} ({f(x['drift_rmsd_max_A'], 2)})"
                     f" | {f(x['cpu_s_total'])} |")
    lines += ["", "## Summary", "", "| structure | stable | intact | D / cis at start | mean E (kJ/mol/res) | "
              "mean drift Å | max disp core (nm) |", "|---|---|---|---|---|---|---|"]
    for key, v in report["summary"].items():
        lines.append(f"| {key} | {v['stable']}/{v['n']} | {v['intact']}/{v['n']} | {v['d_residues_start']} / "
                     f"{v['cis_peptides_start']} | {f(v['mean_energy_kj_per_res'])} | "
                     f"{f(v['mean_drift_A'], 2)} | {f(v['max_displacement_nm'], 2)} |")
    lines += ["", f"Total CPU: {report['cpu_s']:.0f} s (evaluation and `convert`), one thread per process.", ""]
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", required=True, help="folder holding the engines' run folders (benchmarks/clients)")
    p.add_argument("--names", default=",".join(RUNS), help=f"comma-separated, of {','.join(RUNS)}")
    p.add_argument("--structures", default=",".join(STRUCTURES), help=f"comma-separated, of {','.join(STRUCTURES)}")
    p.add_argument("--frames", type=int, default=2, help="frames evaluated per output (default 2)")
    p.add_argument("--ps", type=float, default=md_ready.ISSUE_PS, help="MD length per frame (default 20 ps)")
    p.add_argument("--jobs", type=int, default=1, help="evaluations at once, one thread each")
    p.add_argument("--platform", default="CPU", choices=["CPU", "Reference", "CUDA"])
    p.add_argument("--workdir", default="/tmp/md_ready_cg")
    p.add_argument("--out", default=DEFAULT_OUT, help="output stem (.json and .md are written)")
    a = p.parse_args(argv)
    names = [n for n in a.names.split(",") if n]
    structures = [s for s in a.structures.split(",") if s]
    if set(names) - set(RUNS) or set(structures) - set(STRUCTURES) or a.frames < 1 or a.jobs < 1:
        p.error(f"--names from {','.join(RUNS)}, --structures from {','.join(STRUCTURES)}, --frames and --jobs >= 1")
    missing = [n for n in names if not os.path.isfile(os.path.join(a.runs, n, RUNS[n][1]))]
    if missing:
        p.error(f"no engine output for {', '.join(missing)} under {a.runs}: run benchmarks/clients/*_run.py first")
    for k, v in md_ready.ONE_THREAD_ENV.items():
        os.environ.setdefault(k, v)
    from openmm_backmap.io.read import load_ensemble

    t0 = time.time()
    jobs, convert_cpu = [], 0.0
    for name in names:
        paths, cpu = convert_run(name, os.path.join(a.runs, name), os.path.join(a.workdir, name), structures)
        convert_cpu += sum(cpu.values())
        for key in structures:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                n_frames = load_ensemble(paths[key]).xyz.shape[0]
            jobs += [(name, key, fr, paths[key]) for fr in pick_frames(n_frames, a.frames)]
    print(f"{len(jobs)} evaluations; convert took {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
        results = list(pool.map(lambda j: _in_worker(j[3], j[2], a.ps, a.platform), jobs))
    rows = [{"run": n, "structure": k, "frame": fr, "result": r} for (n, k, fr, _), r in zip(jobs, results)]
    report = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/md_ready_cg.py " + " ".join(argv),
        "date": datetime.date.today().isoformat(),
        "machine": f"shared {os.cpu_count()}-core CPU machine, OpenMM {a.platform} platform, one thread per process, "
                   f"{a.jobs} at a time",
        "ps": a.ps, "runs": {n: RUNS[n] for n in names}, "rows": rows, "summary": summarize(rows),
        "cpu_s": convert_cpu + sum(r["result"].get("cpu_s_total", 0.0) for r in rows),
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".json", "w") as fh:
        json.dump(report, fh, indent=1)
    with open(a.out + ".md", "w") as fh:
        fh.write(markdown(report))
    return report


if __name__ == "__main__":
    main()
