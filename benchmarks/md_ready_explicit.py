"""Do backmapped structures run in explicit TIP3P water? (issue 25: 100 ps on a subset)

The user's path, as docs/continue_all_atom.md writes it, for each target::

    openmm-backmap coarsen TARGET --levels ca -o T
    openmm-backmap convert T_ca.pdb -o minimized.pdb --deterministic --minimize --relax fast --export openmm
    openmm-backmap convert T_ca.pdb -o openmm.pdb --deterministic --minimize --export openmm
    python continue_md.py minimized explicit 100

``continue_md.py`` is the page's script, taken from the page as written (the block after
``<!-- docs-test: file: continue_md.py -->``): TIP3P + 0.15 M NaCl in a box padded by 1 nm
(``Modeller.addSolvent``), AMBER ff14SB, PME, HBonds constraints, 2 fs, 1 bar; protein heavy atoms
restrained through a 500-iteration minimisation and a restrained equilibration (a tenth of the run, at most
10 ps), then released for the production run, which writes a DCD frame every picosecond.

Rows (``--structures``):

* **minimized**: ``--minimize --relax fast`` (the fast relaxer that ``--minimize`` runs without ``--export``);
* **openmm**: ``--minimize --export openmm``, the OpenMM relaxer that ``--export`` runs;
* **raw**: ``convert --deterministic`` with no relaxation, handed to the script through the public
  :func:`openmm_backmap.run.relax.export_system` (the CLI exports relaxed structures only);
* **crystal**: the deposited structure's canonical heavy atoms through the same ``export_system``.

Every production frame is checked as ``md_ready.py`` checks its implicit-solvent run (:class:`md_ready.RunChecks`,
the same rules: stable, intact, the most stretched bond, drift), on the protein heavy atoms against the structure
handed to the script. A run that dies (NaN) keeps the frames written before.

Run (2-core machine: two runs at a time, one thread each)::

    python benchmarks/md_ready_explicit.py --targets T0922 --ps 100 --jobs 2

Cost: T0922 (74 residues) makes 13,099-15,644 atoms; one thread ran 1.5-1.7 ns/day on a shared 2-core machine, about
3,300-4,000 CPU s per 100 ps row (solvation, minimisation and equilibration included); trp-cage (4,189-4,762 atoms)
about 1,100-1,300 CPU s. Writes docs/benchmarks/md_ready_explicit.json and .md (``--out`` to change the stem);
``--merge`` writes one report from several runs' JSON.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform as platform_module
import re
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import md_ready  # noqa: E402  (the same checks, CLI runner and target picker as the implicit-solvent table)
from _md_ready_report import BOND_OK_MIN, BROKEN_BOND_RATIO, MAX_DISPLACEMENT_NM, TERMINAL_RESIDUES  # noqa: E402

DOCS_PAGE = os.path.join(HERE, "..", "docs", "continue_all_atom.md")
DEFAULT_OUT = os.path.join(HERE, "..", "docs", "benchmarks", "md_ready_explicit")
#: The ``convert`` options that make each of our rows (``raw`` is then handed over through ``export_system``).
CONVERT = {
    "minimized": ["--deterministic", "--minimize", "--relax", "fast", "--export", "openmm"],
    "openmm": ["--deterministic", "--minimize", "--export", "openmm"],
    "raw": ["--deterministic"],
}
ROWS = ("crystal", "minimized", "openmm", "raw")
#: Picoseconds between the DCD frames the page's script writes (``DCDReporter`` every 500 steps of 2 fs).
FRAME_PS = 1.0


def docs_script(page=DOCS_PAGE):
    """The ``continue_md.py`` of docs/continue_all_atom.md, as the page writes it."""
    with open(page, encoding="utf-8") as fh:
        text = fh.read()
    m = re.search(r"<!--\s*docs-test:\s*file:\s*continue_md\.py\s*-->\s*```python\n(.*?)```", text, re.S)
    if not m:
        raise SystemExit(f"md_ready_explicit.py: no continue_md.py block in {page}")
    return m.group(1)


def prepare(target, workdir, rows, script):
    """Coarsen and convert as a user does; the crystal's and the raw output's heavy atoms through ``export_system``;
    the page's ``script`` written beside them as ``continue_md.py``.

    Returns ``{row: PREFIX}`` (``PREFIX_openmm.pdb`` is what the script reads) and the CPU seconds of each row's
    ``convert`` call and export.
    """
    import mdtraj as md

    from openmm_backmap.io.paths import write_topology_pdb
    from openmm_backmap.io.read import load_ensemble
    from openmm_backmap.run.relax import export_system

    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "continue_md.py"), "w") as fh:
        fh.write(script)
    name = os.path.basename(target).split(".")[0]
    md_ready._cli(["coarsen", os.path.abspath(target), "--levels", "ca", "-o", name, "--force"], workdir)
    prefixes, cpu = {}, {}
    for row in rows:
        prefix = os.path.join(workdir, row)
        t0 = time.process_time()
        if row in CONVERT:
            cpu[row] = md_ready._cli(["convert", f"{name}_ca.pdb", "-o", f"{row}.pdb", *CONVERT[row], "--force"],
                                     workdir)
        if row in ("crystal", "raw"):
            if row == "crystal":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the deposited file's hydrogens and altlocs: dropped
                    ens = load_ensemble(target)
                if not ens.mask[0].all():
                    raise ValueError(f"{int((~ens.mask[0]).sum())} heavy atoms missing in {target}")
                write_topology_pdb(prefix + ".pdb", ens.topology(), ens.xyz[0], title="crystal, heavy atoms")
            export_system(md.load(prefix + ".pdb"), "openmm", prefix, implicit="obc2", force=True)
            cpu[row] = cpu.get(row, 0.0) + time.process_time() - t0
        prefixes[row] = prefix
    return prefixes, cpu


def run_script(prefix, ps):
    """``python continue_md.py PREFIX explicit PS`` in the prefix's folder (where :func:`prepare` wrote the script),
    one thread; (exit code, the child's own CPU seconds, the end of its log)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", **md_ready.ONE_THREAD_ENV)
    with open(prefix + "_md.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "continue_md.py", os.path.basename(prefix), "explicit", f"{ps:g}"],
                                cwd=os.path.dirname(prefix), env=env, stdout=log, stderr=subprocess.STDOUT)
        # this child's rusage alone: RUSAGE_CHILDREN would add the other runs going on in this process
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    with open(prefix + "_md.log") as fh:
        tail = fh.read()[-1500:]
    return proc.returncode, usage.ru_utime + usage.ru_stime, tail


def analyse(prefix, returncode, log_tail, ps):
    """The checks of :class:`md_ready.RunChecks` on every DCD frame's protein heavy atoms."""
    import mdtraj as md
    import openmm.app as app

    from openmm_backmap.io.read import load_ensemble
    from openmm_backmap.run.relax.systems import reference_bond_lengths

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = load_ensemble(prefix + "_openmm.pdb")
    top = app.PDBFile(prefix + "_openmm.pdb").topology
    where = {(a.residue.index, a.name): a.index for a in top.atoms()}
    heavy = np.array([where[(int(r), n)] for r, n in zip(ens.layout.atom_residue, ens.layout.atom_names)])
    start = ens.xyz[0].astype(np.float64)
    checks = md_ready.RunChecks(start, ens, reference_bond_lengths(ens.sequence, ens.segment_start, start))
    frames = np.zeros((0, len(heavy), 3))
    if os.path.exists(prefix + "_md.dcd"):
        with md.formats.DCDTrajectoryFile(prefix + "_md.dcd") as dcd:
            frames = dcd.read(atom_indices=heavy)[0] / 10.0  # Å -> nm
    finite = bool(np.isfinite(frames).all())
    frames = frames[np.isfinite(frames).all(axis=(1, 2))]
    for k, x in enumerate(frames):
        checks.update(x, (k + 1) * FRAME_PS)
    failure = ""
    if returncode:
        finite = False
        failure = log_tail.strip().splitlines()[-1][:300] if log_tail.strip() else f"exit {returncode}"
    elif not len(frames):  # nothing to judge, and the script said nothing: not a pass
        finite, failure = False, "no production frames written"
    # StateDataReporter's last column; its first line says 0 (no interval measured yet)
    speed = [float(v) for v in re.findall(r",(\d+(?:\.\d+)?)\s*$", log_tail, re.M) if float(v) > 0]
    return {"n_residues": len(ens.sequence), "md_ps": len(frames) * FRAME_PS, "md_ps_requested": ps,
            "ns_per_day": speed[-1] if speed else None, **checks.result(finite, failure)}


def run_row(name, row, prefix, ps):
    """One row's MD and checks; an exception becomes the row's ``error`` (the other runs' hours are kept)."""
    try:
        code, cpu, tail = run_script(prefix, ps)
        return {"target": name, "row": row, "cpu_s_md": cpu} | analyse(prefix, code, tail, ps)
    except Exception as err:
        return {"target": name, "row": row, "error": f"{type(err).__name__}: {err}"[:2000]}


def summarize(results):
    """Per row: runs, stable, intact, mean drift, worst displacement and bond."""
    out = {}
    for row in ROWS:
        rs = [r for r in results if r["row"] == row and "error" not in r]
        if rs:
            out[row] = {"n": len(rs), "stable": sum(r["stable"] for r in rs), "intact": sum(r["intact"] for r in rs),
                        "mean_drift_A": float(np.mean([r["drift_rmsd_end_A"] for r in rs])),
                        "max_displacement_nm": max(r["max_displacement_nm"] for r in rs),
                        "max_bond_stretch": max(r["max_bond_stretch"] for r in rs)}
    return out


def markdown(report):
    lines = [
        "# MD-readiness in explicit TIP3P water (issue 25)", "",
        f"Measured {report['date']} on {report['machine']}.", "",
        f"<!-- docs-test: slow: about {max(1, round(report['cpu_s'] / 3600))} CPU hours on one thread per run, "
        "on ../shared/data -->",
        "```bash", *report["commands"], "```", "",
        *([report["note"], ""] if report.get("note") else []),
        "Per target, the user's path: `openmm-backmap coarsen T --levels ca -o T`, then **minimized** = `convert "
        "T_ca.pdb --deterministic --minimize --relax fast --export openmm`, **openmm** = `... --deterministic "
        "--minimize --export openmm`, **raw** = `convert --deterministic` handed over through `export_system` (the "
        "CLI exports relaxed structures only), **crystal** = the deposited structure's heavy atoms through "
        "`export_system`. Each `PREFIX_openmm.pdb` then runs through `continue_md.py PREFIX explicit PS`, the "
        "script of [continue_all_atom.md](../continue_all_atom.md) as the page writes it: TIP3P + 0.15 M NaCl, "
        "1 nm padding, ff14SB, PME, HBonds, 2 fs, 300 K, 1 bar; protein heavy atoms restrained through the "
        "minimisation and the equilibration, then released.", "",
        f"Each production frame (one per ps) is checked on the protein heavy atoms against the structure handed to "
        f"the script, with the rules of [md_ready_20ps.md](md_ready_20ps.md): **stable** = finite, no core heavy "
        f"atom (all but {TERMINAL_RESIDUES} residues at each chain end) > {MAX_DISPLACEMENT_NM:g} nm from its start "
        f"after superposing the core, bond_ok ≥ {BOND_OK_MIN} %; **intact** = finite, no core backbone atom > "
        f"{MAX_DISPLACEMENT_NM:g} nm, no bond > {BROKEN_BOND_RATIO:g} × its force-field length. Drift = heavy-atom "
        "RMSD of the last frame to the start after superposition.", "",
        "| target | row | ps | stable | intact | core moved, nm | backbone moved, nm | bond_ok min, % "
        "| most stretched bond | drift, Å (max) | ns/day | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        if "error" in r:
            lines.append(f"| {r['target']} | {r['row']} | error: {r['error'][:120]} |" + " |" * 10)
            continue
        lines.append(
            f"| {r['target']} | {r['row']} | {r['md_ps']:g} | {'yes' if r['stable'] else 'NO'} | "
            f"{'yes' if r['intact'] else 'NO'} | {r['max_displacement_nm']:.2f} | "
            f"{r['max_displacement_backbone_nm']:.2f} | {r['bond_ok_min_percent']:.2f} | {r['longest_bond']} | "
            f"{r['drift_rmsd_end_A']:.2f} ({r['drift_rmsd_max_A']:.2f}) | "
            f"{r['ns_per_day'] if r['ns_per_day'] is not None else '–'} | {r['cpu_s_md']:.0f} |"
            + (f" {r['failure']}" if r["failure"] else ""))
    lines += ["", "| row | runs | stable | intact | mean drift, Å | largest core displacement, nm | "
              "most stretched bond |", "|---|---|---|---|---|---|---|"]
    for row, s in report["summary"].items():
        lines.append(f"| {row} | {s['n']} | {s['stable']}/{s['n']} | {s['intact']}/{s['n']} | "
                     f"{s['mean_drift_A']:.2f} | {s['max_displacement_nm']:.2f} | ×{s['max_bond_stretch']:.3f} |")
    lines += ["", "The implicit-solvent runs (20 ps, more targets, single-point energies) are in "
              "[md_ready_20ps.md](md_ready_20ps.md).", ""]
    return "\n".join(lines)


def build_report(runs, commands, ps):
    return {"date": datetime.date.today().isoformat(),
            "machine": f"{platform_module.machine()}, {os.cpu_count()} CPU cores, OpenMM CPU platform, one thread "
                       "per run", "commands": list(commands), "ps": ps, "runs": runs, "summary": summarize(runs),
            "cpu_s": float(sum(r.get("cpu_s_md", 0.0) for r in runs))}


def merge(paths, out, note=None):
    """One report from the JSON reports of several runs (each run's command kept, and ``note``: what the commands
    alone do not say, such as a run stopped early), written to ``out``."""
    reports = []
    for path in paths:
        with open(path) as fh:
            reports.append(json.load(fh))
    if len({r["ps"] for r in reports}) > 1:
        raise SystemExit("md_ready_explicit.py --merge: the reports ran different --ps")
    report = build_report([run for r in reports for run in r["runs"]],
                          [c for r in reports for c in r["commands"]], reports[0]["ps"])
    report["date"] = max(r["date"] for r in reports)
    report["machine"] = reports[0]["machine"]
    if note:
        report["note"] = note
    _write(report, out)
    return report


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--targets", default="T0922", help="comma-separated CASP names or PDB paths, or N smallest")
    p.add_argument("--ps", type=float, default=100.0, help="production MD per row (default 100 ps)")
    p.add_argument("--structures", default="minimized,crystal,openmm,raw",
                   help=f"comma-separated rows, run in this order, of {','.join(ROWS)}")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each")
    p.add_argument("--workdir", default="/tmp/md_ready_explicit")
    p.add_argument("--out", default=DEFAULT_OUT, help="output stem (.json and .md are written)")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="only write one report from these reports to --out")
    p.add_argument("--note", help="with --merge: a line for the report, under the commands")
    a = p.parse_args(argv)
    if a.merge:
        return merge(a.merge, a.out, a.note)["runs"]
    rows = [s for s in a.structures.split(",") if s]
    if not rows or set(rows) - set(ROWS):
        p.error(f"--structures: choose from {','.join(ROWS)}, got {a.structures!r}")
    if a.jobs < 1:
        p.error("--jobs must be >= 1")
    for k, v in md_ready.ONE_THREAD_ENV.items():
        os.environ.setdefault(k, v)
    script = docs_script()
    command = "OMP_NUM_THREADS=1 python benchmarks/md_ready_explicit.py " + " ".join(argv)
    jobs, runs = [], []
    for target in md_ready.pick_targets(a.targets):
        name = os.path.basename(target).split(".")[0]
        try:
            prefixes, cpu = prepare(target, os.path.join(a.workdir, name), rows, script)
        except Exception as err:  # a target that cannot be converted or exported: its rows say why
            runs += [{"target": name, "row": row, "error": f"{type(err).__name__}: {err}"[:2000]} for row in rows]
            continue
        jobs += [(name, row, prefixes[row], cpu[row]) for row in rows]
    order = {(r["target"], r["row"]): i for i, r in enumerate(runs)}
    order.update({(t, row): len(order) + i for i, (t, row, _, _) in enumerate(jobs)})
    t_start = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
        futures = [pool.submit(run_row, t, row, prefix, a.ps) for t, row, prefix, _ in jobs]
        prepare_cpu = {(t, row): c for t, row, _, c in jobs}
        for fut in concurrent.futures.as_completed(futures):
            run = fut.result()
            runs.append(run | {"prepare_cpu_s": prepare_cpu[(run["target"], run["row"])]})
            print(f"{run['target']} {run['row']}: done at {time.time() - t_start:.0f} s wall",
                  file=sys.stderr, flush=True)
            runs.sort(key=lambda r: order[(r["target"], r["row"])])
            report = build_report(runs, [command], a.ps)
            _write(report, a.out)
    return runs



def _write(report, out):
    md_ready._write(report, out, render=markdown)


if __name__ == "__main__":
    main()
