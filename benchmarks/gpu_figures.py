"""GPU figures: backmapping frames/s, fast relaxation s/frame and the asynchronous reporter's kept speed.

One prepared script for a machine with CUDA (issue 13). It measures, in one run that fits a 10-minute call:

1. **Backmapping speed** of every model (default ``models/*.pt``): frames/s at batch sizes 1, 4, 16, 64 and
   256. A transferable C-alpha model gets synthetic C-alpha traces of 100, 1,000 and 10,000 residues
   (persistent random walks with 3.8 Å steps and C-alpha angles near 115 degrees, in segments of 300 residues,
   sequences drawn from natural amino-acid frequencies); a bead model (``com2aa``, ``martini3`` ...) the beads
   of its scheme, coarsened with the package's mapping from the heavy atoms the C-alpha model builds on the same
   traces; a per-system model its own reference CG frame. A
   combination whose estimated working memory (:func:`openmm_backmap.run.memory_budget.forward_bytes`) exceeds
   ``--max-memory-mb`` (default: 90 % of the free device memory), that runs out of memory anyway, or that does
   not fit the time left is listed as skipped, with the reason.
2. **Fast relaxation** (:class:`~openmm_backmap.run.relax.FastRelaxer`, batched as the pipeline calls it:
   ``relax_batch`` on the backmapped frames of a chunk) at 100 and 1,000 residues, on the chosen device and on
   the CPU in the same run.
3. **The asynchronous reporter's kept speed**: steps/s of the C-alpha Go model of villin (the CG system of
   ``benchmarks/reporter_overhead.py``, whose functions run it) on the OpenMM CUDA platform with an
   asynchronous BackmapReporter at report intervals 1,000 and 10,000 against the same simulation without one,
   as the median ratio of interleaved runs.

Each part gets a share of ``--budget-s`` (45 %, 25 %, 30 %; time a part leaves over goes to the next) and
measures fewer repeats, or skips a combination, when short. Every timing has warm-up calls before it and
``torch.cuda.synchronize()`` around it. Writes ``gpu.json`` and ``gpu.md`` into ``--out`` (default
``docs/benchmarks`` on CUDA; on the CPU only where ``--out`` is given) and exits with 1 where a section or a
model gave no figures (:func:`problems`; the others are still written)::

    python benchmarks/gpu_figures.py --device cuda --budget-s 500
    python benchmarks/gpu_figures.py --device cpu --quick --out /tmp/gpu   # tiny sizes: checks the script
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np
import torch

from reporter_overhead import cg_system, measure_reporter, simulation, timed_steps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Shares of --budget-s of the three parts, in the order they run.
SHARES = {"backmapping": 0.45, "relaxation": 0.25, "reporter": 0.30}
#: ns/day of one step per second with the 10 fs time step of reporter_overhead.simulation.
NS_PER_DAY_PER_STEP_PER_S = 0.010e-3 * 86400
#: Residues per segment of a synthetic trace (a few hundred, as in real proteins).
SEGMENT_RESIDUES = 300
#: Natural amino-acid frequencies (percent; UniProtKB/Swiss-Prot release statistics), for synthetic sequences.
AA_PERCENT = {"ALA": 8.25, "ARG": 5.53, "ASN": 4.06, "ASP": 5.45, "CYS": 1.37, "GLN": 3.93, "GLU": 6.75,
              "GLY": 7.07, "HIS": 2.27, "ILE": 5.96, "LEU": 9.66, "LYS": 5.84, "MET": 2.42, "PHE": 3.86,
              "PRO": 4.70, "SER": 6.56, "THR": 5.34, "TRP": 1.08, "TYR": 2.92, "VAL": 6.87}

FULL = {"residues": [100, 1000, 10000], "batches": [1, 4, 16, 64, 256], "relax_residues": [100, 1000],
        "relax_frames": 8, "intervals": [1000, 10000], "warmup": 2, "max_repeats": 10, "reporter_repeats": 3}
QUICK = {"residues": [12, 24], "batches": [1, 4], "relax_residues": [12], "relax_frames": 2,
         "intervals": [100, 500], "warmup": 1, "max_repeats": 2, "reporter_repeats": 1}


def synthetic_trace(n_residues, rng):
    """A C-alpha trace (N, 3) nm, its sequence and segment starts, shaped like protein chains.

    Each segment of :data:`SEGMENT_RESIDUES` residues is a persistent random walk with 3.8 Å steps and
    C-alpha pseudo-angles drawn around 115 degrees (85-150), segments sit on a grid 8 nm apart, and the
    sequence is drawn from :data:`AA_PERCENT`.

    Examples
    --------
    >>> xyz, seq, seg = synthetic_trace(100, np.random.default_rng(0))  # doctest: +SKIP
    >>> xyz.shape, len(seq), int(seg.sum())  # doctest: +SKIP
    ((100, 3), 100, 1)
    """
    from openmm_backmap.structure.constants import CA_CA_TRANS_NM

    names = list(AA_PERCENT)
    p = np.array([AA_PERCENT[n] for n in names])
    sequence = [names[i] for i in rng.choice(len(names), size=n_residues, p=p / p.sum())]
    xyz = np.zeros((n_residues, 3))
    segment_start = np.zeros(n_residues, dtype=bool)
    starts = list(range(0, n_residues, SEGMENT_RESIDUES))
    side = math.ceil(len(starts) ** (1 / 3))
    for k, s in enumerate(starts):
        segment_start[s] = True
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        pos = 8.0 * np.array([k % side, (k // side) % side, k // side ** 2], dtype=float)
        for i in range(s, min(s + SEGMENT_RESIDUES, n_residues)):
            xyz[i] = pos
            turn = math.pi - math.radians(np.clip(rng.normal(115.0, 15.0), 85.0, 150.0))
            u = rng.normal(size=3)
            u -= u.dot(direction) * direction
            u /= np.linalg.norm(u)
            direction = math.cos(turn) * direction + math.sin(turn) * u
            pos = pos + CA_CA_TRANS_NM * direction
    return xyz.astype(np.float32), sequence, segment_start


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_calls(fn, device, warmup, max_repeats, slot_s):
    """Seconds of each timed call of ``fn`` after ``warmup`` untimed ones: at least one, at most ``max_repeats``,
    no new one once ``slot_s`` seconds of timed calls have passed."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times, end = [], time.perf_counter() + slot_s
    while not times or (len(times) < max_repeats and time.perf_counter() < end):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _out_of_memory(err):
    return isinstance(err, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(err).lower()


def _free_memory(device):
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class _Inputs:
    """The CG frames of every model, one synthetic structure per residue count shared by all transferable models.

    A C-alpha model gets the trace itself (:func:`synthetic_trace`). A bead model (``com``, ``martini3`` ...)
    gets the trace's heavy atoms (the C-alpha model's deterministic structure, made once per residue count)
    coarsened to its scheme with the package's mapping
    (``scheme_mapping(scheme, sequence).apply_present(xyz, mask)``), as a CG engine of that scheme would give
    them. A per-system model gets its own reference CG frame.
    """

    def __init__(self, sizes, rng, ca_model, memory_mb):
        self.traces = {n: synthetic_trace(n, rng) for n in sizes}
        self.ca_model, self.memory_mb = ca_model, memory_mb
        self._heavy = {}

    def heavy_atoms(self, n):
        """Heavy atoms (A, 3) nm of the trace of ``n`` residues, backmapped once by the C-alpha model."""
        from openmm_backmap.run.memory_budget import forward_bytes
        from openmm_backmap.structure.constants import BYTES_PER_MB

        if n not in self._heavy:
            xyz, seq, seg = self.traces[n]
            need_mb = forward_bytes(n, 1) / BYTES_PER_MB
            if self.ca_model is None:
                raise LookupError("no C-alpha model to build the heavy atoms that are coarsened to its beads")
            if need_mb > self.memory_mb:
                raise LookupError(f"memory: the heavy atoms to coarsen need about {need_mb:,.0f} MB, budget "
                                  f"{self.memory_mb:,.0f} MB")
            self._heavy[n] = self.ca_model.backmap(xyz, seq, seg, seed=0, deterministic=True).xyz[0]
        return self._heavy[n]

    def cases(self, bm):
        """(residues, CG frame or None, sequence, segment_start, why not) to backmap with model ``bm``."""
        from openmm_backmap.mapping import scheme_mapping

        if not bm.transferable:
            if bm.reference_cg_xyz is not None:
                yield len(bm.sequence), np.asarray(bm.reference_cg_xyz, np.float32), None, None, None
            return
        for n, (xyz, seq, seg) in self.traces.items():
            if bm.scheme == "ca":
                yield n, xyz, seq, seg, None
                continue
            try:
                heavy = self.heavy_atoms(n)
            except LookupError as err:
                yield n, None, seq, seg, str(err)
                continue
            beads = scheme_mapping(bm.scheme, seq).apply_present(heavy, np.isfinite(heavy).all(-1))
            yield n, beads.astype(np.float32), seq, seg, None


def _input_label(bm):
    if not bm.transferable:
        return "per-system, its own CG frame"
    if bm.scheme == "ca":
        return "transferable, synthetic C-alpha traces"
    return f"transferable, {bm.scheme} beads of the synthetic traces' heavy atoms"


def _ca_models(models):
    """The transferable C-alpha models (scheme ``ca``) among loaded ``models``."""
    return [bm for bm in models if bm.transferable and bm.scheme == "ca"]


def backmapping_speed(model_paths, device, cfg, memory_mb, deadline, rng):
    """frames/s of every model, residue count and batch size; skipped rows say why, a model that fails says so."""
    from openmm_backmap.model import load_model, shipped_model_path
    from openmm_backmap.run.memory_budget import forward_bytes
    from openmm_backmap.structure.constants import BYTES_PER_MB

    models = [load_model(path, device=str(device)) for path in model_paths]
    ca_model = next(iter(_ca_models(models)), None)
    if ca_model is None and any(bm.transferable and bm.scheme != "ca" for bm in models):
        ca_model = load_model(shipped_model_path("ca"), device=str(device))  # only to make the bead models' input
    inputs = _Inputs(cfg["residues"], rng, ca_model, memory_mb)
    cases = [list(inputs.cases(bm)) for bm in models]
    combos_left = sum(len(c) for c in cases) * len(cfg["batches"])  # shares the time left among them
    results = []
    for path, bm, model_cases in zip(model_paths, models, cases):
        name = bm.metadata.get("name") or bm.kind
        entry = {"model": name, "file": os.path.relpath(path, REPO) if path.startswith(REPO) else path,
                 "transferable": bm.transferable, "scheme": bm.scheme, "input": _input_label(bm), "rows": []}
        if not model_cases:
            entry["note"] = "per-system model without reference CG coordinates: not timed"
        try:
            combos_left = _time_model(bm, name, model_cases, entry, device, cfg, memory_mb, deadline, rng,
                                      combos_left, forward_bytes, BYTES_PER_MB)
        except Exception as err:  # noqa: BLE001  one model that breaks must not cost the rows of the others
            traceback.print_exc()
            entry["error"] = f"{type(err).__name__}: {err}"
            print(f"  {name}: failed ({entry['error']})", flush=True)
        results.append(entry)
    del models, inputs
    _free_memory(device)
    return results


def _time_model(bm, name, model_cases, entry, device, cfg, memory_mb, deadline, rng, combos_left, forward_bytes,
                bytes_per_mb):
    """Time ``bm`` on each of its cases and batch sizes into ``entry['rows']``; return the combinations left."""
    for n, xyz, seq, seg, why_not in model_cases:
        per_frame_s, oom = None, False
        for batch in cfg["batches"]:
            row = {"residues": n, "batch": batch, "frames_per_second": None, "seconds_per_call": None}
            if xyz is not None:
                row["particles"] = int(xyz.shape[0])
            need_mb = forward_bytes(n, batch) / bytes_per_mb
            left = deadline - time.perf_counter()
            if why_not is not None:
                row["skipped"] = why_not
            elif need_mb > memory_mb:
                row["skipped"] = f"memory: needs about {need_mb:,.0f} MB, budget {memory_mb:,.0f} MB"
            elif oom:
                row["skipped"] = "out of memory at a smaller batch"
            elif left <= 0 or (per_frame_s is not None and per_frame_s * batch * (cfg["warmup"] + 1) > left):
                row["skipped"] = "time budget"
            else:
                frames = np.repeat(xyz[None], batch, axis=0)
                frames += rng.normal(scale=0.02, size=frames.shape).astype(np.float32)  # frames differ

                def call():
                    bm.backmap(frames, seq, seg, seed=0)

                try:
                    times = _time_calls(call, device, cfg["warmup"], cfg["max_repeats"],
                                        max(left / combos_left, 0.0))
                except (RuntimeError, MemoryError) as err:
                    if not _out_of_memory(err):
                        raise
                    _free_memory(device)
                    row["skipped"], oom = "out of memory", True
                else:
                    sec = float(np.median(times))
                    per_frame_s = sec / batch
                    row.update(frames_per_second=batch / sec, seconds_per_call=sec, calls_timed=len(times))
                del frames
            entry["rows"].append(row)
            combos_left -= 1
            shown = (f"{row['frames_per_second']:.1f} frames/s" if row["frames_per_second"]
                     else f"skipped ({row['skipped']})")
            print(f"  {name}: {n} residues, batch {batch}: {shown}", flush=True)
    return combos_left


def relaxation_speed(model_path, device, cfg, deadline, rng):
    """Seconds per frame of the fast relaxer on ``device`` and on the CPU, at each residue count."""
    from openmm_backmap.model import load_model
    from openmm_backmap.run.relax import FastRelaxer

    bm = load_model(model_path, device=str(device))
    devices = [device] if device.type == "cpu" else [device, torch.device("cpu")]
    rows, per_residue_frame = [], {}
    for n in cfg["relax_residues"]:
        xyz, seq, seg = synthetic_trace(n, rng)
        frames = bm.backmap(np.repeat(xyz[None], cfg["relax_frames"], axis=0)
                            + rng.normal(scale=0.02, size=(cfg["relax_frames"], n, 3)).astype(np.float32),
                            seq, seg, seed=0)
        for dev in devices:
            row = {"residues": n, "atoms": int(frames.xyz.shape[1]), "device": str(dev), "frames": None}
            left = deadline - time.perf_counter()
            guess = per_residue_frame.get(dev.type)
            n_frames = cfg["relax_frames"]
            if guess is not None and guess * n * (n_frames + 1) > left:
                n_frames = 1
            if left <= 0 or (guess is not None and guess * n * 2 > left):
                row["skipped"] = "time budget"
            else:
                t0 = time.perf_counter()
                relaxer = FastRelaxer(frames.topology, template_xyz=frames.xyz[0], device=dev, segment_start=seg)
                row["build_seconds"] = time.perf_counter() - t0
                batch = frames.xyz[:n_frames]
                res = None

                def call():
                    nonlocal res
                    res = relaxer.relax_batch(batch)

                # one warm-up frame (CUDA context, kernels), then the batch as the pipeline passes it
                relaxer.relax_batch(frames.xyz[:1])
                times = _time_calls(call, dev, 0, 1, 0.0)
                sec = times[0] / n_frames
                per_residue_frame[dev.type] = sec / n
                row.update(frames=n_frames, seconds_per_frame=sec,
                           clash_before_percent=float(np.mean(res.clash_before)),
                           clash_after_percent=float(np.mean(res.clash_after)),
                           converged_fraction=float(np.mean(res.converged)))
            rows.append(row)
            shown = (f"{row['seconds_per_frame']:.3f} s/frame" if row.get("seconds_per_frame") is not None
                     else f"skipped ({row['skipped']})")
            print(f"  fast relaxation, {n} residues on {dev}: {shown}", flush=True)
    return {"model": bm.metadata.get("name") or bm.kind, "rows": rows}


def _reporter_steps(steps_per_s, setup_s, left_s, intervals, repeats, max_run_s=60.0):
    """Steps per run (a multiple of the longest interval) so that all runs fit ``left_s`` seconds: per repeat and
    interval one run without and one with the reporter, each with a new Context (``setup_s``), the reporter run
    taken as up to 1.5 times as long."""
    run_s = min((left_s / (repeats * len(intervals)) - 2 * setup_s) / 2.5, max_run_s)
    return max(int(steps_per_s * run_s), 0) // max(intervals) * max(intervals)


def reporter_speed(model_path, device, cfg, deadline, quick):
    """Kept speed (steps/s with / without) of an asynchronous BackmapReporter on the Go model of villin."""
    from openmm_backmap.model import load_model

    bm = load_model(model_path, device=str(device))
    platform_name = "CUDA" if device.type == "cuda" else "CPU"
    threads = None if platform_name == "CUDA" else 1
    top, system, pos, description = cg_system(bm)
    t0 = time.perf_counter()
    sim = simulation(top, system, pos, platform_name, 0, threads)
    setup_s = time.perf_counter() - t0
    probe = 200 if quick else 5000
    steps_per_s = probe / timed_steps(sim, probe)
    intervals = list(cfg["intervals"])
    repeats = cfg["reporter_repeats"]
    left = deadline - time.perf_counter()  # the sizing below takes no time
    if quick:
        steps = 2 * max(intervals)
    else:
        steps = _reporter_steps(steps_per_s, setup_s, left, intervals, repeats)
        while steps < 3 * max(intervals) and repeats > 1:  # too short: fewer repeats, longer runs
            repeats -= 1
            steps = _reporter_steps(steps_per_s, setup_s, left, intervals, repeats)
        while steps < 3 * max(intervals) and len(intervals) > 1:
            intervals.pop()  # the longest interval does not fit 3 reports per run
            steps = _reporter_steps(steps_per_s, setup_s, left, intervals, repeats)
        steps = max(steps, 3 * max(intervals))
    skipped = [i for i in cfg["intervals"] if i not in intervals]
    with tempfile.TemporaryDirectory() as tmp:
        runs = measure_reporter(bm, top, system, pos, intervals, tmp, steps=steps, repeats=repeats,
                                platform=platform_name, seed=0, cpu_threads=threads, modes=(True,))
    return {"system": description, "particles": system.getNumParticles(),
            "model": bm.metadata.get("name") or bm.kind, "platform": sim.context.getPlatform().getName(),
            "steps_per_run": steps, "repeats": repeats, "runs": runs,
            "skipped_intervals": skipped}


def output_dir(out, device):
    """Where gpu.json and gpu.md go: ``out``, else docs/benchmarks for a CUDA run and nowhere (None) for a CPU
    run, so a CPU check never overwrites the GPU figures.

    Examples
    --------
    >>> output_dir(None, torch.device("cpu")) is None
    True
    """
    if out:
        return out
    return os.path.join(REPO, "docs", "benchmarks") if device.type == "cuda" else None


def _device_label(device):
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="torch device (default: %(default)s)")
    p.add_argument("--models", nargs="+", default=None, help="model files (default: models/*.pt)")
    p.add_argument("--budget-s", type=float, default=500.0,
                   help="total seconds for the measurements (default: %(default)s; setup comes on top)")
    p.add_argument("--max-memory-mb", type=float, default=None,
                   help="memory budget of one model call (default: 90%% of the free device memory on CUDA, "
                        "the package default on the CPU)")
    p.add_argument("--out", default=None,
                   help="folder for gpu.json and gpu.md (default: docs/benchmarks on CUDA; on the CPU nothing "
                        "is written unless given)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: checks the script")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device here (use --device cpu --quick to check the script)")
    cfg = QUICK if args.quick else FULL
    models = args.models or sorted(glob.glob(os.path.join(REPO, "models", "*.pt")))
    if not models:
        p.error("no model files given and none in models/")
    out_dir = output_dir(args.out, device)
    from openmm_backmap import __version__
    from openmm_backmap.model import load_model
    from openmm_backmap.structure.constants import BYTES_PER_MB, DEFAULT_MAX_MEMORY_MB

    if args.max_memory_mb is not None:
        memory_mb = args.max_memory_mb
    elif device.type == "cuda":
        memory_mb = 0.9 * torch.cuda.mem_get_info(device)[0] / BYTES_PER_MB
    else:
        memory_mb = DEFAULT_MAX_MEMORY_MB
    start = time.perf_counter()
    deadlines, acc = {}, 0.0
    for part, share in SHARES.items():
        acc += share
        deadlines[part] = start + acc * args.budget_s
    rng = np.random.default_rng(args.seed)
    # relaxation and the reporter backmap C-alpha traces: they need a transferable C-alpha model (scheme "ca")
    ca_paths = [m for m in models if _ca_models([load_model(m, device="cpu")])]
    print(f"device: {_device_label(device)}; memory budget {memory_mb:,.0f} MB; budget {args.budget_s:.0f} s",
          flush=True)
    result = {"benchmark": "gpu_figures", "device": str(device), "device_label": _device_label(device),
              "quick": args.quick, "budget_s": args.budget_s, "max_memory_mb": memory_mb}
    import openmm

    parts = {"backmapping": lambda: backmapping_speed(models, device, cfg, memory_mb, deadlines["backmapping"], rng)}
    if ca_paths:
        parts["relaxation"] = lambda: relaxation_speed(ca_paths[0], device, cfg, deadlines["relaxation"], rng)
        parts["reporter"] = lambda: reporter_speed(ca_paths[0], device, cfg, deadlines["reporter"], args.quick)
    if device.type == "cuda" and "CUDA" not in [openmm.Platform.getPlatform(i).getName()
                                                for i in range(openmm.Platform.getNumPlatforms())]:
        print("OpenMM has no CUDA platform here (pip install 'openmm[cuda12]'): the reporter is not measured",
              file=sys.stderr, flush=True)
        parts.pop("reporter", None)
        result["reporter_missing"] = "OpenMM has no CUDA platform here"
    for part in SHARES:
        result[part] = None
        if part not in parts:
            continue
        print(f"{part} ...", flush=True)
        # one part that breaks must not cost the figures of the others in a one-off GPU session
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # villin's waters and ions, clash warnings of synthetic frames
                result[part] = parts[part]()
        except Exception as err:  # noqa: BLE001  (reported in the Markdown and with its traceback)
            traceback.print_exc()
            result[f"{part}_error"] = f"{type(err).__name__}: {err}"

    result.update(seconds=time.perf_counter() - start, date=time.strftime("%Y-%m-%d %H:%M"),
                  command=" ".join(["benchmarks/gpu_figures.py"] + (argv if argv is not None else sys.argv[1:])),
                  environment={"openmm_backmap": __version__, "torch": torch.__version__,
                               "openmm": openmm.__version__, "python": platform.python_version(),
                               "cpus": os.cpu_count()})
    md = markdown(result)
    if out_dir is None:
        print(md)
        print("(CPU run: nothing written; pass --out DIR to write gpu.json and gpu.md)")
    else:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "gpu.json"), "w") as fh:
            json.dump(result, fh, indent=1)
        with open(os.path.join(out_dir, "gpu.md"), "w") as fh:
            fh.write(md)
        print(f"wrote {out_dir}/gpu.json and gpu.md ({result['seconds']:.0f} s)")
    for problem in problems(result):
        print(f"no figures: {problem}", file=sys.stderr, flush=True)
    return result


def problems(r):
    """What of a result of :func:`main` gave no figures: a section that failed or is empty, a model that failed
    or has no timed row. Empty when every section produced figures (rows skipped for memory or time are fine
    where others were timed).

    Examples
    --------
    >>> problems({"backmapping": None, "backmapping_error": "InputError: ...", "relaxation": None,
    ...           "reporter": None, "reporter_missing": "OpenMM has no CUDA platform here"})[:2]
    ['backmapping: InputError: ...', 'relaxation: not measured']
    """
    out = []
    for part in SHARES:
        if r.get(part) is None:
            out.append(f"{part}: {r.get(part + '_error') or r.get(part + '_missing') or 'not measured'}")
    for m in r.get("backmapping") or []:
        if m.get("error"):
            out.append(f"backmapping of {m['model']}: {m['error']}")
        elif not m.get("note") and not any(row["frames_per_second"] for row in m["rows"]):
            out.append(f"backmapping of {m['model']}: no combination timed")
    if r.get("relaxation") is not None and not any(x.get("seconds_per_frame") for x in r["relaxation"]["rows"]):
        out.append("relaxation: no row timed")
    if r.get("reporter") is not None and not any(run["reporter"] is not None for run in r["reporter"]["runs"]):
        out.append("reporter: no run with the reporter")
    return out


def markdown(r):
    """The Markdown report of a result of :func:`main`."""
    quick = " (**quick check with tiny sizes, not a measurement**)" if r["quick"] else ""
    lines = ["# GPU figures", "",
             f"Device: **{r['device_label']}** (torch device `{r['device']}`); {r['date']}; "
             f"`{r['command']}`{quick}. Memory budget of one model call {r['max_memory_mb']:,.0f} MB; "
             f"measurement budget {r['budget_s']:.0f} s, used {r['seconds']:.0f} s.",
             "", "## Backmapping speed", "",
             "frames/s (median of timed calls after warm-up calls; on CUDA with `torch.cuda.synchronize()` around "
             "each); a frame is one CG frame in, one heavy-atom structure out. A combination is skipped when its "
             "estimated working memory exceeds the budget, when it ran out of memory, or when it did not fit the "
             "time left."]
    if r.get("backmapping_error"):
        lines += ["", f"Failed: {r['backmapping_error']}"]
    for m in r["backmapping"] or []:
        kind = m.get("input") or ("transferable, synthetic C-alpha traces" if m["transferable"]
                                  else "per-system, its own CG frame")
        lines += ["", f"### {m['model']} (`{m['file']}`, {kind})", ""]
        if m.get("error"):
            lines.append(f"Failed: {m['error']}")
            if not m["rows"]:
                continue
            lines.append("")
        if m.get("note"):
            lines.append(m["note"])
            continue
        batches = sorted({row["batch"] for row in m["rows"]})
        lines += ["| residues | " + " | ".join(f"batch {b}" for b in batches) + " |",
                  "|---:|" + "---:|" * len(batches)]
        for n in sorted({row["residues"] for row in m["rows"]}):
            cells = []
            for b in batches:
                row = next(x for x in m["rows"] if x["residues"] == n and x["batch"] == b)
                cells.append(f"{row['frames_per_second']:,.1f}" if row["frames_per_second"] is not None
                             else f"skipped: {row['skipped']}")
            lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    lines += ["", "## Fast relaxation", ""]
    rel = r["relaxation"]
    if rel is None:
        lines.append(f"Failed: {r['relaxation_error']}" if r.get("relaxation_error")
                     else "No transferable C-alpha model given: not measured.")
    else:
        lines += [f"`FastRelaxer.relax_batch` on frames backmapped by {rel['model']} from synthetic traces, as the "
                  "pipeline calls it (the frames of a chunk at once), after a one-frame warm-up call.", "",
                  "| residues | heavy atoms | device | frames | build (s) | s/frame | clash before -> after "
                  "(% residues) | converged |", "|---:|---:|---|---:|---:|---:|---|---:|"]
        for x in rel["rows"]:
            if x.get("seconds_per_frame") is None:
                lines.append(f"| {x['residues']:,} | {x['atoms']:,} | {x['device']} | - | - | "
                             f"skipped: {x['skipped']} | - | - |")
            else:
                lines.append(f"| {x['residues']:,} | {x['atoms']:,} | {x['device']} | {x['frames']} | "
                             f"{x['build_seconds']:.2f} | {x['seconds_per_frame']:.3f} | "
                             f"{x['clash_before_percent']:.1f} -> {x['clash_after_percent']:.1f} | "
                             f"{x['converged_fraction']:.0%} |")
    lines += ["", "## Asynchronous reporter on a CG simulation", ""]
    rep = r["reporter"]
    if rep is None:
        lines.append(f"Failed: {r['reporter_error']}" if r.get("reporter_error") else
                     f"Not measured: {r['reporter_missing']}." if r.get("reporter_missing")
                     else "No transferable C-alpha model given: not measured.")
    else:
        lines += [f"{rep['system']} on the OpenMM {rep['platform']} platform (10 fs steps), backmapped by {rep['model']} with an "
                  f"asynchronous BackmapReporter; {rep['steps_per_run']:,} steps per run, interleaved repeats: "
                  f"{rep['repeats']}. The kept speed is the median over repeats of steps/s with the reporter "
                  "over steps/s of the run without it directly before (closing the reporter, so draining its "
                  "queue, is included).", "",
                  "| report interval (steps) | frames | steps/s | ns/day | kept speed (min-max) |",
                  "|---:|---:|---:|---:|---|"]
        for run in rep["runs"]:
            speed = f"{run['steps_per_second']:,.0f} | {run['steps_per_second'] * NS_PER_DAY_PER_STEP_PER_S:,.0f}"
            if run["reporter"] is None:
                lines.append(f"| no reporter | - | {speed} | 1.000 |")
            else:
                lines.append(f"| {run['interval']:,} | {run['frames']} | {speed} | "
                             f"{run['ratio']:.3f} ({run['ratio_min']:.3f}-{run['ratio_max']:.3f}) |")
        for i in rep["skipped_intervals"]:
            lines.append(f"| {i:,} | - | - | - | skipped: time budget |")
    env = r["environment"]
    lines += ["", f"Environment: openmm-backmap {env['openmm_backmap']}, torch {env['torch']}, OpenMM "
              f"{env['openmm']}, Python {env['python']}, {env['cpus']} CPUs.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(1 if problems(main()) else 0)  # a CI run fails where a section gave no figures
