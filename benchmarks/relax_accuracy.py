"""Minimise-after-backmap: speed against protein size, and clash, bond_ok and RMSD before and after relaxation.

Usage::

    python benchmarks/relax_accuracy.py --model models/ca2aa.pt --data ../shared/data --out docs/benchmarks \
        [--sizes 76,214,436,599] [--baseline-sizes 76] [--max-frames 5] [--casp-targets 6] [--sets casp,...]

Speed: one CASP target near each size of ``--sizes`` is backmapped deterministically and relaxed with the
default :class:`~openmm_backmap.run.relax.FastRelaxer` (``--speed-frames`` copies in one batch) and, at
``--baseline-sizes`` only, with the old default (OpenMM :class:`~openmm_backmap.run.relax.relaxer.Relaxer`,
GBn2, no cutoff, 200 iterations: minutes per frame at 400 residues), in the same run. Accuracy: each eval frame
is backmapped deterministically, relaxed with the default fast relaxer (one per structure, built once) and
compared with the reference using :mod:`openmm_backmap.evaluation.metrics`; ΔRMSD is the heavy-atom RMSD
between the relaxed and the unrelaxed structure. Writes ``relax_accuracy.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ca2aa_accuracy import SETS, generated, load_set  # noqa: E402

from openmm_backmap.model.backmapping import load_model  # noqa: E402
from openmm_backmap.evaluation import evaluate  # noqa: E402
from openmm_backmap.run.relax import FastRelaxer  # noqa: E402
from openmm_backmap.run.relax.relaxer import Relaxer  # noqa: E402

METRICS = ("rmsd_angstrom", "clash_percent", "bond_ok_percent", "ged")


def old_default(topology, segment_start, template):
    """The relaxer ``--minimize`` used before the fast one: OpenMM, GBn2, no cutoff, 200 iterations."""
    return Relaxer(topology, implicit="gbn2", nonbonded_cutoff=None, max_iterations=200,
                   segment_start=segment_start, template_xyz=template)


def speed(bm, root, sizes, baseline_sizes, frames):
    """s/frame of the fast relaxer (and of the old default at ``baseline_sizes``) on CASP targets near ``sizes``."""
    casp = load_set(root, "casp", 1)
    rows = []
    for size in sizes:
        name, ref = min(casp, key=lambda t: abs(t[1].n_residues - size))
        det = bm.backmap(ref.ca_xyz, sequence=ref.sequence, segment_start=ref.segment_start, deterministic=True)
        batch = np.repeat(det.xyz[:1], frames, axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            fast = FastRelaxer(det.topology, segment_start=ref.segment_start, template_xyz=det.xyz[0])
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = fast.relax_batch(batch)
            row = {"size": size, "target": name, "residues": ref.n_residues, "fast_build_s": build,
                   "fast_s_per_frame": (time.perf_counter() - t0) / frames,
                   "fast_clash_after": float(np.max(res.clash_after))}
            if size in baseline_sizes:
                t0 = time.perf_counter()
                old = old_default(det.topology, ref.segment_start, det.xyz[0])
                row["old_build_s"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                old.relax(det.xyz[0])
                row["old_s_per_frame"] = time.perf_counter() - t0
                row["speedup"] = row["old_s_per_frame"] / row["fast_s_per_frame"]
        rows.append(row)
        print(f"speed {name} ({ref.n_residues} residues): fast {row['fast_s_per_frame']:.3f} s/frame (build "
              f"{build:.1f} s)" + (f", old default {row['old_s_per_frame']:.1f} s/frame, {row['speedup']:.0f}x"
                                   if "speedup" in row else ""), flush=True)
    return rows


def accuracy(bm, root, name, args):
    structures = load_set(root, name, args.max_frames)
    if name == "casp":
        structures = structures[: args.casp_targets]
    rows = []
    for sname, ref in structures:
        det = bm.backmap(ref.ca_xyz, sequence=ref.sequence, segment_start=ref.segment_start, deterministic=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            relaxer = FastRelaxer(det.topology, segment_start=ref.segment_start, template_xyz=det.xyz[0])
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = relaxer.relax_batch(det.xyz)
        per_frame = (time.perf_counter() - t0) / len(det.xyz)
        before = evaluate(ref, generated(ref, det.xyz, "backmapped"))
        after = evaluate(ref, generated(ref, res.xyz, "relaxed"))
        row = {"name": sname, "frames": ref.n_frames, "residues": ref.n_residues,
               "relax_s_per_frame": per_frame, "build_s": build,
               "converged": int(np.sum(np.asarray(res.converged))),
               "delta_rmsd_angstrom": float(np.mean(res.rmsd_nm) * 10.0),
               "before": {m: before[m]["mean"] for m in METRICS},
               "after": {m: after[m]["mean"] for m in METRICS}}
        rows.append(row)
        print(f"{name}/{sname}: rmsd {row['before']['rmsd_angstrom']:.2f} -> {row['after']['rmsd_angstrom']:.2f} Å, "
              f"clash {row['before']['clash_percent']:.2f} -> {row['after']['clash_percent']:.2f} %, "
              f"bond_ok {row['before']['bond_ok_percent']:.2f} -> {row['after']['bond_ok_percent']:.2f} %, "
              f"ΔRMSD {row['delta_rmsd_angstrom']:.3f} Å, {per_frame:.3f} s/frame", flush=True)
    mean = {when: {m: float(np.mean([r[when][m] for r in rows])) for m in METRICS} for when in ("before", "after")}
    return {"structures": rows, "mean": mean}


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog([r["residues"] for r in rows], [r["fast_s_per_frame"] for r in rows], "o-", label="fast (default)")
    old = [r for r in rows if "old_s_per_frame" in r]
    if old:
        ax.loglog([r["residues"] for r in old], [r["old_s_per_frame"] for r in old], "s--",
                  label="old default (OpenMM, GBn2)")
    ax.set_xlabel("residues")
    ax.set_ylabel("relaxation, s/frame")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(report):
    lines = ["# Minimise after backmap", "",
             f"Model `{Path(report['model']).name}`, deterministic backmapping. {report['machine']}", "",
             "## Speed against size", "",
             f"CASP targets near each size; the default fast relaxer on a batch of {report['speed_frames']} "
             "frames, the old default (OpenMM `Relaxer`, amber14 + GBn2, no cutoff, heavy-atom restraints, 200 "
             "iterations) on one frame, only at the sizes listed (minutes per frame above).", "",
             "| target | residues | fast s/frame | fast build s | old default s/frame | speed-up |",
             "|---|---|---|---|---|---|"]
    for r in report["speed"]:
        old = f"{r['old_s_per_frame']:.1f} | {r['speedup']:.0f}x" if "speedup" in r else "not run | -"
        lines.append(f"| {r['target']} | {r['residues']} | {r['fast_s_per_frame']:.3f} | {r['fast_build_s']:.1f} "
                     f"| {old} |")
    lines += ["", "*build*: once per topology (the force field's bond lengths, which the pipeline's quality "
              "checks need anyway).", "", "![s/frame against size](relax_accuracy.png)", "",
              "## Accuracy (fast relaxer, default settings)", "",
              "Metrics against the reference; RMSD in Å, clash and bond_ok in %; ΔRMSD: relaxed vs unrelaxed.", "",
              "| set | frames | not relaxed | rmsd before | rmsd after | ΔRMSD | clash before | clash after "
              "| bond_ok before | bond_ok after | s/frame |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in report["sets"].items():
        b, a = entry["mean"]["before"], entry["mean"]["after"]
        rows = entry["structures"]
        frames = sum(r["frames"] for r in rows)
        failed = frames - sum(r["converged"] for r in rows)
        sec = np.mean([r["relax_s_per_frame"] for r in rows])
        drift = np.mean([r["delta_rmsd_angstrom"] for r in rows])
        lines.append(f"| {name} | {frames} | {failed} | {b['rmsd_angstrom']:.2f} | {a['rmsd_angstrom']:.2f} | "
                     f"{drift:.3f} | {b['clash_percent']:.2f} | {a['clash_percent']:.2f} | "
                     f"{b['bond_ok_percent']:.2f} | {a['bond_ok_percent']:.2f} | {sec:.3f} |")
    lines += ["", "*not relaxed*: frames the relaxer refused (a covalent bond over 1 nm in the input: a corrupt "
              "reference frame) or that still clash; they are counted with their coordinates as returned."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="models/ca2aa.pt")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--out", default="docs/benchmarks")
    p.add_argument("--max-frames", type=int, default=5)
    p.add_argument("--casp-targets", type=int, default=6, help="first N CASP targets")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--sizes", default="76,214,436,599", help="protein sizes (residues) of the speed table")
    p.add_argument("--baseline-sizes", default="76",
                   help="sizes at which the old default relaxer is timed too (28 min/frame at 436 residues)")
    p.add_argument("--speed-frames", type=int, default=4, help="frames per fast batch in the speed table")
    p.add_argument("--machine", default="", help="a note on the machine (cores, shared load) for the report")
    args = p.parse_args(argv)
    bm = load_model(args.model, device="cpu")
    root = Path(args.data) / "eval"
    sizes = [int(v) for v in args.sizes.split(",") if v]
    baseline = {int(v) for v in args.baseline_sizes.split(",") if v}
    report = {"model": args.model, "machine": args.machine, "speed_frames": args.speed_frames,
              "restraint": "heavy", "speed": speed(bm, root, sizes, baseline, args.speed_frames), "sets": {}}
    for name in args.sets.split(","):
        report["sets"][name] = accuracy(bm, root, name, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "relax_accuracy.json").write_text(json.dumps(report, indent=1))
    plot(report["speed"], out / "relax_accuracy.png")
    text = markdown(report)
    (out / "relax_accuracy.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
