"""Cost of on-the-fly backmapping: CG steps/s with and without a BackmapReporter.

For every model (default: both shipped models) the CG simulation runs
without a reporter and with a BackmapReporter at report intervals of 100,
1000 and 10000 steps, synchronous and asynchronous. Runs are interleaved
(each reporter run directly after a no-reporter run, ``--repeats`` times) and
each setting is reported as the median ratio of the two speeds, so machine
drift cancels. It also times the relaxation of backmapped frames (seconds per
frame) with the Relaxer defaults (AMBER14 + GBn2) and with the demo's vacuum
settings.

CG systems: the transferable C-alpha model drives the C-alpha Go model of
villin from OpenMM's test.pdb; a per-system ultra-coarse-grained k-step
model (e.g. adenylate kinase) drives an elastic network of its reference bead
positions (:func:`openmm_backmap.cgsystems.elastic_network_model`).

The CPU platform runs with ``--cpu-threads`` (default 1), so that on a small
machine one core integrates and the others backmap.

Writes ``reporter_overhead.json`` and ``reporter_overhead.md`` into
``--output-dir`` (default ``docs/benchmarks``)::

    python benchmarks/reporter_overhead.py
    python benchmarks/reporter_overhead.py --quick --model tiny.pt --output-dir /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cg_system(bm):
    """(topology, system, positions nm, description) of the CG system for model ``bm``.

    Examples
    --------
    >>> top, system, pos, description = cg_system(load_model("models/ca2aa.pt"))  # doctest: +SKIP
    """
    from openmm_backmap.cgsystems import calpha_go_model, elastic_network_model
    from openmm_backmap.run.demo import villin_pdb_path
    from openmm_backmap.io import load_ensemble
    from openmm_backmap.structure.templates import atom_layout

    if bm.transferable:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # waters and ions of test.pdb
            villin = load_ensemble(villin_pdb_path())
        top, system, pos = calpha_go_model(villin)
        return top, system, pos, f"villin headpiece, C-alpha Go model ({villin.n_residues} beads)"
    xyz = bm.reference_cg_xyz
    if xyz is None:
        raise ValueError("this per-system model stores no reference CG coordinates to build an elastic network from")
    groups = None
    h = bm.hierarchy
    if h is not None:
        m = h.composed(h.levels[-1])
        res = atom_layout(bm.sequence).atom_residue
        groups = [sorted(set(res[np.asarray(mem)].tolist())) for mem in m.members]
    top, system, pos = elastic_network_model(xyz, sequence=bm.sequence if groups else None, residue_groups=groups)
    return top, system, pos, f"{bm.metadata.get('name', 'per-system model')}: elastic network of {len(xyz)} beads"


def simulation(top, system, pos, platform_name, seed, cpu_threads):
    """A Langevin simulation (10 fs) of the CG system on an OpenMM platform, warmed up by 100 steps.

    Examples
    --------
    >>> sim = simulation(top, system, pos, "CUDA", seed=0, cpu_threads=None)  # doctest: +SKIP
    """
    import openmm
    import openmm.app as app

    integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.010)
    integrator.setRandomNumberSeed(seed)
    props = {"Threads": str(cpu_threads)} if platform_name == "CPU" and cpu_threads else {}
    sim = app.Simulation(top, system, integrator, openmm.Platform.getPlatformByName(platform_name), props)
    sim.context.setPositions(pos)
    sim.context.setVelocitiesToTemperature(300.0, seed)
    sim.step(100)  # warm up
    return sim


def timed_steps(sim, steps, reporter=None):
    """Seconds for ``steps`` steps; with a reporter, closing it (the asynchronous queue drained) is included.

    Examples
    --------
    >>> timed_steps(sim, 1000) > 0  # doctest: +SKIP
    True
    """
    if reporter is not None:
        sim.reporters.append(reporter)
    t0 = time.perf_counter()
    sim.step(steps)
    if reporter is not None:
        reporter.close()
        sim.reporters.remove(reporter)
    return time.perf_counter() - t0


def measure_reporter(bm, top, system, pos, intervals, tmp, *, steps, repeats, platform, seed=0, cpu_threads=None,
                     modes=(False, True)):
    """Interleaved runs: for every repeat and setting, a no-reporter run directly before the reporter run.

    Settings are every report interval in ``intervals`` times every mode in ``modes`` (False: synchronous,
    True: asynchronous); each run is ``steps`` steps on OpenMM platform ``platform``, the trajectories go to
    folder ``tmp``. The ratio of a setting is the median over repeats of (reporter steps/s) / (steps/s of the
    no-reporter run next to it), so slow drifts of the machine cancel. Returns one dict per setting, after one
    for the no-reporter runs (``reporter`` None).

    Examples
    --------
    >>> runs = measure_reporter(bm, top, system, pos, [1000], tmp, steps=5000, repeats=2,
    ...                         platform="CUDA", modes=(True,))  # doctest: +SKIP
    >>> runs[1]["ratio"]  # doctest: +SKIP
    0.98
    """
    from openmm_backmap.run.reporter import BackmapReporter

    settings = [(i, a) for i in intervals for a in modes]
    rows = {s: {"seconds": [], "baseline_seconds": [], "frames": 0} for s in settings}
    for rep_i in range(repeats):
        for interval, asynchronous in settings:
            base = timed_steps(simulation(top, system, pos, platform, seed, cpu_threads), steps)
            sim = simulation(top, system, pos, platform, seed, cpu_threads)
            rep = BackmapReporter(os.path.join(tmp, f"b{interval}_{asynchronous}.dcd"), interval, model=bm,
                                  seed=seed, asynchronous=asynchronous, force=True)
            sec = timed_steps(sim, steps, rep)
            row = rows[(interval, asynchronous)]
            row["seconds"].append(sec)
            row["baseline_seconds"].append(base)
            row["frames"] = rep.summary().get("frames_written", 0)
            print(f"  repeat {rep_i}: interval {interval:6d} {'async' if asynchronous else 'sync ':5s}: "
                  f"{steps / sec:9.0f} steps/s vs {steps / base:9.0f} without ({row['frames']} frames)",
                  flush=True)
    runs = []
    all_base = [b for row in rows.values() for b in row["baseline_seconds"]]
    runs.append({"reporter": None, "interval": None, "asynchronous": None, "frames": None,
                 "steps_per_second": steps / float(np.median(all_base)), "ratio": 1.0,
                 "seconds_each": all_base})
    for (interval, asynchronous), row in rows.items():
        ratios = [b / s for s, b in zip(row["seconds"], row["baseline_seconds"])]
        runs.append({"reporter": "BackmapReporter", "interval": interval, "asynchronous": asynchronous,
                     "frames": row["frames"], "seconds_each": row["seconds"],
                     "baseline_seconds_each": row["baseline_seconds"],
                     "steps_per_second": steps / float(np.median(row["seconds"])),
                     "ratio": float(np.median(ratios)), "ratio_min": float(np.min(ratios)),
                     "ratio_max": float(np.max(ratios))})
    return runs


def _relax_timing(bm, top, pos, n_frames, options):
    from openmm_backmap.run import cg_particle_info
    from openmm_backmap.run.relax.relaxer import Relaxer

    info = cg_particle_info(top, None, pos)
    seq = info["sequence"] if bm.transferable else None
    out = bm.backmap(np.asarray(pos, np.float32)[None], seq, info["segment_start"] if bm.transferable else None,
                     samples=n_frames, seed=0)
    t0 = time.perf_counter()
    relaxer = Relaxer(out.topology, template_xyz=out.xyz[0], **options)
    build = time.perf_counter() - t0
    times, clash = [], []
    for frame in out.xyz:
        t = time.perf_counter()
        r = relaxer.relax(frame)
        times.append(time.perf_counter() - t)
        clash.append((r.clash_before, r.clash_after))
    return {"options": {k: v for k, v in options.items()}, "frames": n_frames, "build_seconds": build,
            "seconds_per_frame": float(np.mean(times)), "clash_before_after_percent": np.mean(clash, 0).tolist()}


def _benchmark_model(path, args, intervals):
    """All measurements for one model: backmapping time, reporter runs, relaxation timing."""
    from openmm_backmap.model.backmapping import load_model

    bm = load_model(path, device=args.device)
    top, system, pos, description = cg_system(bm)
    print(f"{description}; model {bm.metadata.get('name') or bm.kind}", flush=True)
    warm = np.asarray(pos, np.float32)[None]
    seq = None
    if bm.transferable:
        from openmm_backmap.run import cg_particle_info

        seq = cg_particle_info(top, None, pos)["sequence"]
    for _ in range(3):  # TorchScript optimises on the first calls; time the steady state
        bm.backmap(warm, seq, seed=0)
    t0 = time.perf_counter()
    for _ in range(5):
        bm.backmap(warm, seq, seed=0)
    backmap_s = (time.perf_counter() - t0) / 5
    with tempfile.TemporaryDirectory() as tmp:
        runs = measure_reporter(bm, top, system, pos, intervals, tmp, steps=args.steps, repeats=args.repeats,
                                platform=args.platform, seed=args.seed, cpu_threads=args.cpu_threads)
    relax = []
    relax_settings = [{"implicit": None, "max_iterations": 200}] if args.relax_frames > 0 else []
    if not args.quick and args.relax_frames > 0 and not args.vacuum_only:
        relax_settings.append({})  # the Relaxer defaults: AMBER14 + GBn2, up to 1000 iterations
    for opts in relax_settings:
        opts = dict(opts, platform=args.platform if args.platform in ("CPU", "CUDA", "OpenCL") else "CPU")
        relax.append(_relax_timing(bm, top, pos, args.relax_frames, opts))
        r = relax[-1]
        print(f"  relaxation {r['options']}: {r['seconds_per_frame']:.2f} s/frame (build {r['build_seconds']:.1f} s)",
              flush=True)
    return {"system": description, "particles": system.getNumParticles(),
            "model": bm.metadata.get("name") or bm.kind, "model_file": bm.path, "device": str(bm.device),
            "backmap_seconds_per_frame": backmap_s, "runs": runs, "relaxation": relax}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs="+", default=None,
                   help="model file(s) (default: the shipped models/ca2aa.pt and models/adk-ucg12.pt)")
    p.add_argument("--device", default=None, help="torch device of the model (default: CUDA if available)")
    p.add_argument("--platform", default="CPU", help="OpenMM platform of the CG simulation (default: %(default)s)")
    p.add_argument("--cpu-threads", type=int, default=1,
                   help="threads of the CPU platform (default: %(default)s, leaving a core for the backmapping)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch intra-op threads of the backmapping (default: torch's own choice)")
    p.add_argument("--steps", type=int, default=20000, help="CG steps per run (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every setting")
    p.add_argument("--intervals", default="100,1000,10000", help="report intervals (default: %(default)s)")
    p.add_argument("--relax-frames", type=int, default=3, help="frames for the relaxation timing (0: none)")
    p.add_argument("--vacuum-only", action="store_true",
                   help="time only the vacuum relaxation (GBn2 takes minutes per frame for 200+ residues on CPU)")
    p.add_argument("--output-dir", default=os.path.join("docs", "benchmarks"))
    p.add_argument("--quick", action="store_true",
                   help="tiny configuration to check the script: 1000 steps, intervals 100 and 500, 1 repeat, "
                        "1 relaxed frame")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.intervals, args.relax_frames, args.repeats = 1000, "100,500", 1, 1
    intervals = [int(i) for i in args.intervals.split(",")]
    models = args.model or [os.path.join(REPO, "models", "ca2aa.pt"), os.path.join(REPO, "models", "adk-ucg12.pt")]

    import torch

    from openmm_backmap import __version__

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    result = {
        "benchmark": "reporter_overhead",
        "openmm_platform": args.platform,
        "cpu_threads": args.cpu_threads if args.platform == "CPU" else None,
        "steps_per_run": args.steps,
        "repeats": args.repeats,
        "systems": [_benchmark_model(m, args, intervals) for m in models],
        "quick": args.quick,
        "environment": {"openmm_backmap": __version__, "torch": torch.__version__, "torch_threads":
                        torch.get_num_threads(), "python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join([os.path.basename(sys.argv[0])] + (argv if argv is not None else sys.argv[1:])),
    }
    os.makedirs(args.output_dir, exist_ok=True)
    json_path = os.path.join(args.output_dir, "reporter_overhead.json")
    md_path = os.path.join(args.output_dir, "reporter_overhead.md")
    with open(json_path, "w") as fh:
        json.dump(result, fh, indent=1)
    with open(md_path, "w") as fh:
        fh.write(_markdown(result))
    print(f"wrote {json_path} and {md_path}")
    return result


def _markdown(r):
    threads = f" ({r['cpu_threads']} thread)" if r.get("cpu_threads") else ""
    lines = [
        "# Reporter overhead",
        "",
        f"OpenMM platform {r['openmm_platform']}{threads}; {r['steps_per_run']} steps of 10 fs per run; "
        f"{r['repeats']} interleaved repeats; {r['date']}; `{r['command']}`"
        + (" (**quick check, not a measurement**)" if r["quick"] else ""),
        "",
        "Every reporter run comes directly after a run without reporter; the ratio is the median over repeats of "
        "the two speeds (min-max in brackets). Reporter runs include closing the reporter (the asynchronous "
        "queue is drained, no frame is lost).",
    ]
    for sysr in r["systems"]:
        lines += ["", f"## {sysr['system']}", "",
                  f"Model {sysr['model']} on {sysr['device']}; backmapping one frame: "
                  f"{sysr['backmap_seconds_per_frame'] * 1000:.1f} ms (steady state).", "",
                  "| reporter | interval (steps) | mode | frames | steps/s | ratio to no reporter |",
                  "|---|---:|---|---:|---:|---:|"]
        for run in sysr["runs"]:
            if run["reporter"] is None:
                lines.append(f"| none | - | - | - | {run['steps_per_second']:.0f} | 1.000 |")
            else:
                mode = "asynchronous" if run["asynchronous"] else "synchronous"
                lines.append(f"| BackmapReporter | {run['interval']} | {mode} | {run['frames']} | "
                             f"{run['steps_per_second']:.0f} | {run['ratio']:.3f} "
                             f"({run['ratio_min']:.2f}-{run['ratio_max']:.2f}) |")
        lines += ["", "| relaxation settings | frames | build (s) | s/frame | clash before -> after (% residues) |",
                  "|---|---:|---:|---:|---|"]
        for x in sysr["relaxation"]:
            c = x["clash_before_after_percent"]
            opts = ", ".join(f"{k}={v}" for k, v in x["options"].items())
            lines.append(f"| {opts} | {x['frames']} | {x['build_seconds']:.1f} | {x['seconds_per_frame']:.2f} | "
                         f"{c[0]:.1f} -> {c[1]:.1f} |")
    env = r["environment"]
    lines += ["", f"Environment: openmm-backmap {env['openmm_backmap']}, torch {env['torch']} "
              f"({env['torch_threads']} threads), Python {env['python']}, {env['cpus']} CPUs.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
