"""Cost of on-the-fly backmapping: CG steps/s with and without a BackmapReporter.

Runs the CG simulation (default: the C-alpha Go model of villin from
OpenMM's test.pdb) without a reporter, then with a BackmapReporter at report
intervals of 100, 1000 and 10000 steps, synchronous and asynchronous, all in
the same process, and reports steps/s and the ratio to the no-reporter
baseline measured in the same run. It also times the relaxation of
backmapped frames (seconds per frame) with the Relaxer defaults (AMBER14 +
GBn2) and with the demo's vacuum settings.

A per-system model (``--model`` with an ultra-coarse-grained k-step model,
e.g. adenylate kinase) is simulated with an elastic network of its
reference bead positions (:func:`openmm_backmap.cgmodels.elastic_network_model`).

Writes ``reporter_overhead.json`` and ``reporter_overhead.md`` into
``--output-dir`` (default ``docs/benchmarks``)::

    python benchmarks/reporter_overhead.py --model models/ca2aa.pt
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


def _cg_system(bm, seed):
    """(topology, system, positions nm, description) of the CG system for model ``bm``."""
    from openmm_backmap.cgmodels import calpha_go_model, elastic_network_model
    from openmm_backmap.demo import villin_pdb_path
    from openmm_backmap.io import load_ensemble
    from openmm_backmap.topology import atom_layout

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


def _simulation(top, system, pos, platform_name, seed):
    import openmm
    import openmm.app as app

    integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.010)
    integrator.setRandomNumberSeed(seed)
    sim = app.Simulation(top, system, integrator, openmm.Platform.getPlatformByName(platform_name))
    sim.context.setPositions(pos)
    sim.context.setVelocitiesToTemperature(300.0, seed)
    sim.step(100)  # warm up
    return sim


def _run(sim, steps, reporter=None):
    if reporter is not None:
        sim.reporters.append(reporter)
    t0 = time.perf_counter()
    sim.step(steps)
    if reporter is not None:
        reporter.close()  # includes the frames still queued in the asynchronous mode
        sim.reporters.remove(reporter)
    return time.perf_counter() - t0


def _relax_timing(bm, top, pos, n_frames, options):
    from openmm_backmap.pipeline import cg_particle_info
    from openmm_backmap.relax import Relaxer

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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model file (default: the shipped C-alpha model)")
    p.add_argument("--device", default=None, help="torch device of the model (default: CUDA if available)")
    p.add_argument("--platform", default="CPU", help="OpenMM platform of the CG simulation (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20000, help="CG steps per run (default: %(default)s)")
    p.add_argument("--intervals", default="100,1000,10000", help="report intervals (default: %(default)s)")
    p.add_argument("--relax-frames", type=int, default=3, help="frames for the relaxation timing")
    p.add_argument("--output-dir", default=os.path.join("docs", "benchmarks"))
    p.add_argument("--quick", action="store_true",
                   help="tiny configuration to check the script: 1000 steps, intervals 100 and 500, 1 relaxed frame")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.intervals, args.relax_frames = 1000, "100,500", 1
    intervals = [int(i) for i in args.intervals.split(",")]

    import torch

    from openmm_backmap import __version__
    from openmm_backmap.backmapper import load_model
    from openmm_backmap.reporter import BackmapReporter

    bm = load_model(args.model, device=args.device)
    top, system, pos, description = _cg_system(bm, args.seed)
    n = system.getNumParticles()
    warm = np.asarray(pos, np.float32)[None]
    seq = None
    if bm.transferable:
        from openmm_backmap.pipeline import cg_particle_info

        seq = cg_particle_info(top, None, pos)["sequence"]
    for _ in range(3):  # TorchScript optimises on the first calls; time the steady state
        bm.backmap(warm, seq, seed=0)
    t0 = time.perf_counter()
    for _ in range(5):
        bm.backmap(warm, seq, seed=0)
    backmap_s = (time.perf_counter() - t0) / 5

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        sim = _simulation(top, system, pos, args.platform, args.seed)
        base_runs = [_run(sim, args.steps)]
        base_rate = args.steps / base_runs[0]
        print(f"no reporter: {base_rate:9.0f} steps/s", flush=True)
        for interval in intervals:
            for asynchronous in (False, True):
                sim = _simulation(top, system, pos, args.platform, args.seed)
                rep = BackmapReporter(os.path.join(tmp, f"b{interval}_{asynchronous}.dcd"), interval, model=bm,
                                      seed=args.seed, asynchronous=asynchronous, force=True)
                sec = _run(sim, args.steps, rep)
                rate = args.steps / sec
                frames = rep.summary().get("frames_written", 0)
                runs.append({"reporter": "BackmapReporter", "interval": interval, "asynchronous": asynchronous,
                             "frames": frames, "seconds": sec, "steps_per_second": rate})
                print(f"interval {interval:6d} {'async' if asynchronous else 'sync ':5s}: {rate:9.0f} steps/s "
                      f"({frames} frames)", flush=True)
        sim = _simulation(top, system, pos, args.platform, args.seed)
        base_runs.append(_run(sim, args.steps))  # baseline again at the end: the mean is the reference
        base_rate = args.steps / float(np.mean(base_runs))
        print(f"no reporter (again): {args.steps / base_runs[-1]:9.0f} steps/s; baseline {base_rate:.0f} steps/s",
              flush=True)
    runs.insert(0, {"reporter": None, "interval": None, "asynchronous": None, "seconds": float(np.mean(base_runs)),
                    "seconds_each": base_runs, "steps_per_second": base_rate, "ratio": 1.0})
    for run in runs[1:]:
        run["ratio"] = run["steps_per_second"] / base_rate

    relax = []
    relax_settings = [{"implicit": None, "max_iterations": 200}]
    if not args.quick:
        relax_settings.append({})  # the Relaxer defaults: AMBER14 + GBn2, up to 1000 iterations
    for opts in relax_settings:
        opts = dict(opts, platform=args.platform if args.platform in ("CPU", "CUDA", "OpenCL") else "CPU")
        relax.append(_relax_timing(bm, top, pos, args.relax_frames, opts))
        r = relax[-1]
        print(f"relaxation {r['options']}: {r['seconds_per_frame']:.2f} s/frame (build {r['build_seconds']:.1f} s)",
              flush=True)

    result = {
        "benchmark": "reporter_overhead",
        "system": description,
        "particles": n,
        "model": bm.metadata.get("name") or bm.kind,
        "model_file": bm.path,
        "device": str(bm.device),
        "openmm_platform": args.platform,
        "steps_per_run": args.steps,
        "backmap_seconds_per_frame": backmap_s,
        "runs": runs,
        "relaxation": relax,
        "quick": args.quick,
        "environment": {"openmm_backmap": __version__, "torch": torch.__version__, "torch_threads":
                        torch.get_num_threads(), "python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "OPENMM_CPU_THREADS": os.environ.get("OPENMM_CPU_THREADS")},
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
    lines = [
        "# Reporter overhead",
        "",
        f"{r['system']}; model {r['model']} on {r['device']}; OpenMM platform {r['openmm_platform']}; "
        f"{r['steps_per_run']} steps of 10 fs per run; {r['date']}; `{r['command']}`"
        + (" (**quick check, not a measurement**)" if r["quick"] else ""),
        "",
        f"Backmapping one frame: {r['backmap_seconds_per_frame'] * 1000:.1f} ms (steady state). Ratios are against "
        "the no-reporter baseline of the same process (mean of a run before and a run after the reporter runs); "
        "reporter runs include closing the reporter (the asynchronous queue is drained).",
        "",
        "| reporter | interval (steps) | mode | frames | steps/s | ratio to baseline |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for run in r["runs"]:
        if run["reporter"] is None:
            lines.append(f"| none | - | - | - | {run['steps_per_second']:.0f} | 1.000 |")
        else:
            mode = "asynchronous" if run["asynchronous"] else "synchronous"
            lines.append(f"| BackmapReporter | {run['interval']} | {mode} | {run['frames']} | "
                         f"{run['steps_per_second']:.0f} | {run['ratio']:.3f} |")
    lines += ["", "| relaxation settings | frames | build (s) | s/frame | clash before -> after (% residues) |",
              "|---|---:|---:|---:|---|"]
    for x in r["relaxation"]:
        c = x["clash_before_after_percent"]
        opts = ", ".join(f"{k}={v}" for k, v in x["options"].items())
        lines.append(f"| {opts} | {x['frames']} | {x['build_seconds']:.1f} | {x['seconds_per_frame']:.2f} | "
                     f"{c[0]:.1f} -> {c[1]:.1f} |")
    env = r["environment"]
    lines += ["", f"Environment: openmm-backmap {env['openmm_backmap']}, torch {env['torch']} "
              f"({env['torch_threads']} threads), Python {env['python']}, {env['cpus']} CPUs, "
              f"OPENMM_CPU_THREADS={env['OPENMM_CPU_THREADS']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
