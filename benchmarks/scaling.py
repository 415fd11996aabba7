"""Scaling past one process, measured in the same run.

``measure_training``: training steps/s of a tiny C-alpha config (Trp-cage
frames of ``tests/data``, one thread per process) with 1 and 2 data-parallel
processes (``openmm_backmap.train.launch_training``), runs interleaved, and
the ratios of 2 to 1 process: steps/s (each step of N processes takes N
batches, so the same steps/s would be N times the throughput) and residues/s.
Times are the training loop's own (``train_time_s``: no process start, data
loading or final validation)::

    python benchmarks/scaling.py --steps 150 --repeats 2 --json /tmp/training_scaling.json

``measure_conversion``: ``convert`` throughput (CG frames/s) of the serial
run and of 1 and 2 local Dask workers (``convert_trajectory(workers=N)``,
single-threaded worker processes) on the same input, runs interleaved, and
the ratios to the serial run. The input is the first ``--frames`` frames of
the adenylate kinase C-alpha trace (214 residues) from
``../shared/data/train/md/adk`` with the shipped ``models/ca2aa.pt``; the
outputs are checked to be byte-identical. ``--what conversion`` runs only
this part and writes ``docs/benchmarks/scaling.json`` / ``.md`` (the
training part, when given, is kept in them)::

    python benchmarks/scaling.py --what conversion --frames 24 --chunk 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: A tiny ca2aa run: Trp-cage (20 residues) frames from tests/data; validation only at the end.
TINY_TRAINING = {
    "kind": "ca2aa", "name": "scaling", "seed": 1,
    "model": {"hidden": 32, "layers": 2, "neighbors": 8, "mixture": 2, "rbf": 8, "edge_dim": 16},
    "task": {"val_frames": 2},
    "data": {"root": os.path.join(REPO, "tests", "data"), "files": ["trpcage_train10.pdb.gz"],
             "validation_fraction": 0.2},
    "optim": {"threads": 1},
}


def measure_training(nprocs=(1, 2), steps: int = 40, batch_residues: int = 200, repeats: int = 1,
                     workdir: str | None = None) -> dict:
    """Training steps/s and residues/s with each process count in ``nprocs``, and their ratios to the first.

    Parameters
    ----------
    nprocs : sequence of int
        Process counts, the first is the reference (1).
    steps : int
        Optimiser steps per run.
    batch_residues : int
        Residues per step and process (the effective batch is N times this).
    repeats : int
        Runs per process count, interleaved; the median is reported.
    workdir : str, optional
        Where configs and run directories go (default: a temporary directory).

    Returns
    -------
    dict
        ``{"processes": {N: {"steps_per_s", "residues_per_s", "runs_s"}}, "ratios": {N: {...}}, ...}``

    Examples
    --------
    >>> result = measure_training(steps=20)  # doctest: +SKIP
    >>> result["ratios"][2]["residues_per_s"]  # doctest: +SKIP
    1.7
    """
    from openmm_backmap.train import launch_training

    with tempfile.TemporaryDirectory(prefix="scaling-train-") as tmp:
        base = workdir or tmp
        config = os.path.join(base, "tiny.yaml")
        cfg = dict(TINY_TRAINING, optim=dict(TINY_TRAINING["optim"], max_steps=steps, validate_every=steps,
                                             batch_residues=batch_residues, patience=10**6))
        with open(config, "w") as fh:
            yaml.safe_dump(cfg, fh)
        times = {n: [] for n in nprocs}
        for r in range(repeats):
            for n in nprocs:
                run = os.path.join(base, f"run-{n}-{r}")
                summary = launch_training(config, n, overrides=[f"run_dir={run}", f"output={run}/model.pt"])
                times[n].append(float(summary["train_time_s"]))
    out = {"steps": steps, "batch_residues_per_process": batch_residues, "cpu_count": os.cpu_count(),
           "processes": {}, "ratios": {}}
    for n in nprocs:
        t = statistics.median(times[n])
        out["processes"][n] = {"steps_per_s": steps / t, "residues_per_s": steps * n * batch_residues / t,
                               "runs_s": times[n]}
    ref = out["processes"][nprocs[0]]
    for n in nprocs[1:]:
        out["ratios"][n] = {k: out["processes"][n][k] / ref[k] for k in ("steps_per_s", "residues_per_s")}
    return out


ADK_DIR = os.path.join(REPO, "..", "shared", "data", "train", "md", "adk")
REPORT = os.path.join(REPO, "docs", "benchmarks", "scaling")


def measure_conversion(workers=(1, 2), frames: int = 24, chunk: int = 4, repeats: int = 1,
                       data_dir: str = ADK_DIR, model: str = os.path.join(REPO, "models", "ca2aa.pt")) -> dict:
    """``convert`` CG frames/s serially and on ``workers`` local Dask workers, and their ratios to serial.

    Parameters
    ----------
    workers : sequence of int
        Local Dask cluster sizes (single-threaded worker processes).
    frames : int
        C-alpha frames of the adenylate kinase trajectory to convert.
    chunk : int
        Frames per chunk (a Dask task).
    repeats : int
        Runs per setting, interleaved; the median is reported.

    Returns
    -------
    dict
        ``{"runs": {"serial" | N: {"wall_s", "frames_per_s", "pipeline_frames_per_s"}}, "ratios": {N: ...},
        "identical": bool, ...}``: ``wall_s`` includes starting the cluster and loading the models,
        ``pipeline_frames_per_s`` (the summary's) does not include the cluster start.

    Examples
    --------
    >>> result = measure_conversion(frames=8)  # doctest: +SKIP
    >>> result["ratios"][2]["frames_per_s"]  # doctest: +SKIP
    1.6
    """
    import time

    import mdtraj as md

    from openmm_backmap.run import convert_trajectory

    settings = [None, *workers]
    runs = {("serial" if w is None else w): [] for w in settings}
    outputs = {}
    with tempfile.TemporaryDirectory(prefix="scaling-convert-") as tmp:
        top = md.load_topology(os.path.join(data_dir, "adk.pdb"))
        ca = top.select("name CA")
        traj = md.load(os.path.join(data_dir, "adk_dims.xtc"), top=top, atom_indices=ca)[:frames]
        cg_pdb, cg_xtc = os.path.join(tmp, "adk_ca.pdb"), os.path.join(tmp, "adk_ca.xtc")
        traj[0].save_pdb(cg_pdb)
        traj.save_xtc(cg_xtc)
        for r in range(repeats):
            for w in settings:
                name = "serial" if w is None else w
                out = os.path.join(tmp, f"aa-{name}.xtc")
                t0 = time.perf_counter()
                s = convert_trajectory(cg_xtc, out, topology=cg_pdb, model=model, seed=1, chunk=chunk,
                                       device="cpu", progress=False, force=True, workers=w)
                wall = time.perf_counter() - t0
                runs[name].append({"wall_s": wall, "pipeline_frames_per_s": s["frames_per_second"]})
                with open(out, "rb") as fh:
                    outputs[name] = fh.read()
    result = {"frames": len(traj), "residues": traj.n_atoms, "chunk": chunk, "repeats": repeats,
              "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0], "runs": {}, "ratios": {},
              "identical": len(set(outputs.values())) == 1}
    for name, rs in runs.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        result["runs"][name] = {"wall_s": wall, "frames_per_s": len(traj) / wall,
                                "pipeline_frames_per_s": statistics.median(r["pipeline_frames_per_s"] for r in rs)}
    ref = result["runs"]["serial"]
    for w in workers:
        result["ratios"][w] = {k: result["runs"][w][k] / ref[k] for k in ("frames_per_s", "pipeline_frames_per_s")}
    return result


def write_conversion_report(result: dict, path: str = REPORT):
    """Put ``result`` under ``"conversion"`` in ``path.json`` (other parts kept) and its table in ``path.md``."""
    data = {}
    if os.path.exists(path + ".json"):
        with open(path + ".json") as fh:
            data = json.load(fh)
    data["conversion"] = result
    with open(path + ".json", "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    lines = ["# Conversion throughput: serial vs local Dask workers", "",
             f"`python benchmarks/scaling.py --what conversion --frames {result['frames']} --chunk {result['chunk']}`: "
             f"adenylate kinase C-alpha trace ({result['residues']} residues), models/ca2aa.pt, no relaxation, "
             f"median of {result['repeats']} interleaved run(s). {result['cpu_count']} cores; load average "
             f"{result['load_average']:.1f} at the end (the run itself included). The serial run uses torch's "
             "threads (all cores); every Dask worker is single-threaded.", "",
             "| run | wall s (incl. cluster start) | frames/s | frames/s after start | ratio | ratio after start |",
             "|---|---|---|---|---|---|"]
    for name, r in result["runs"].items():
        q = result["ratios"].get(name) or result["ratios"].get(str(name)) or {"frames_per_s": 1.0,
                                                                             "pipeline_frames_per_s": 1.0}
        label = "serial" if name == "serial" else f"{name} worker(s)"
        lines.append(f"| {label} | {r['wall_s']:.1f} | {r['frames_per_s']:.2f} | {r['pipeline_frames_per_s']:.2f} "
                     f"| {q['frames_per_s']:.2f} | {q['pipeline_frames_per_s']:.2f} |")
    lines += ["", f"Outputs byte-identical: {'yes' if result['identical'] else 'NO'}."]
    with open(path + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-residues", type=int, default=200)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", help="also write the result here (the runs' own logs go to stdout too)")
    p.add_argument("--what", choices=["training", "conversion"], default="training")
    p.add_argument("--frames", type=int, default=24, help="conversion: CG frames")
    p.add_argument("--chunk", type=int, default=4, help="conversion: frames per chunk")
    args = p.parse_args(argv)
    if args.what == "conversion":
        result = measure_conversion(frames=args.frames, chunk=args.chunk, repeats=args.repeats)
        write_conversion_report(result)
        print(json.dumps(result, indent=2))
        return
    result = measure_training(steps=args.steps, batch_residues=args.batch_residues, repeats=args.repeats)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
