"""Minimise-after-backmap on the eval sets: clash, bond_ok and RMSD before and after relaxation.

Usage::

    python benchmarks/relax_accuracy.py --model models/ca2aa.pt --data ../shared/data --out docs/benchmarks \
        [--max-frames 5] [--casp-targets 6] [--implicit none]

Backmaps each eval frame deterministically, relaxes it with one
:class:`~openmm_backmap.run.relax.relaxer.Relaxer` per structure (built once, reused for
every frame) and compares both with the reference using
:mod:`openmm_backmap.evaluation.metrics`. Writes ``relax_accuracy.json`` and ``.md``.
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
from openmm_backmap.run.relax.relaxer import Relaxer  # noqa: E402

METRICS = ("rmsd_angstrom", "clash_percent", "bond_ok_percent", "ged")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="models/ca2aa.pt")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--out", default="docs/benchmarks")
    p.add_argument("--max-frames", type=int, default=5)
    p.add_argument("--casp-targets", type=int, default=6, help="first N CASP targets (relaxation is slow)")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--implicit", default="none", help="implicit solvent file, or 'none' for vacuum")
    p.add_argument("--max-iterations", type=int, default=200)
    args = p.parse_args(argv)
    implicit = None if args.implicit.lower() == "none" else args.implicit
    bm = load_model(args.model, device="cpu")
    root = Path(args.data) / "eval"
    report = {"model": args.model, "implicit": implicit, "max_iterations": args.max_iterations,
              "restraint": "heavy", "sets": {}}
    for name in args.sets.split(","):
        structures = load_set(root, name, args.max_frames)
        if name == "casp":
            structures = structures[: args.casp_targets]
        rows = []
        for sname, ref in structures:
            det = bm.backmap(ref.ca_xyz, sequence=ref.sequence, segment_start=ref.segment_start, deterministic=True)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                relaxer = Relaxer(det.topology, implicit=implicit, max_iterations=args.max_iterations,
                                  segment_start=ref.segment_start, template_xyz=det.xyz[0])
                build = time.perf_counter() - t0
                res = relaxer.relax_batch(det.xyz)
            per_frame = (time.perf_counter() - t0 - build) / len(det.xyz)
            before = evaluate(ref, generated(ref, det.xyz, "backmapped"))
            after = evaluate(ref, generated(ref, res.xyz, "relaxed"))
            row = {"name": sname, "frames": ref.n_frames, "residues": ref.n_residues,
                   "relax_s_per_frame": per_frame, "build_s": build,
                   "converged": int(np.sum(np.asarray(res.converged))),
                   "before": {m: before[m]["mean"] for m in METRICS},
                   "after": {m: after[m]["mean"] for m in METRICS}}
            rows.append(row)
            print(f"{name}/{sname}: rmsd {row['before']['rmsd_angstrom']:.2f} -> {row['after']['rmsd_angstrom']:.2f} Å, "
                  f"clash {row['before']['clash_percent']:.2f} -> {row['after']['clash_percent']:.2f} %, "
                  f"bond_ok {row['before']['bond_ok_percent']:.2f} -> {row['after']['bond_ok_percent']:.2f} %, "
                  f"{per_frame:.2f} s/frame", flush=True)
        report["sets"][name] = {"structures": rows, "mean": {
            when: {m: float(np.mean([r[when][m] for r in rows])) for m in METRICS} for when in ("before", "after")}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "relax_accuracy.json").write_text(json.dumps(report, indent=1))
    lines = ["# Minimise after backmap", "",
             f"Model `{Path(args.model).name}`, deterministic backmapping, then `Relaxer` (amber14, "
             f"{'vacuum' if implicit is None else implicit}, heavy-atom restraints k=1000 kJ/mol/nm^2, "
             f"{args.max_iterations} iterations). Metrics against the reference; RMSD in Å, clash and bond_ok in %.",
             "", "| set | frames | not relaxed | rmsd before | rmsd after | clash before | clash after "
             "| bond_ok before | bond_ok after | s/frame |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in report["sets"].items():
        b, a = entry["mean"]["before"], entry["mean"]["after"]
        rows = entry["structures"]
        frames = sum(r["frames"] for r in rows)
        failed = frames - sum(r["converged"] for r in rows)
        sec = np.mean([r["relax_s_per_frame"] for r in rows])
        lines.append(f"| {name} | {frames} | {failed} | {b['rmsd_angstrom']:.2f} | {a['rmsd_angstrom']:.2f} | "
                     f"{b['clash_percent']:.2f} | {a['clash_percent']:.2f} | {b['bond_ok_percent']:.2f} | "
                     f"{a['bond_ok_percent']:.2f} | {sec:.2f} |")
    lines += ["", "*not relaxed*: frames the Relaxer refused (a covalent bond over 1 nm in the input: a corrupt "
              "reference frame) or whose minimisation failed; they are counted with their unrelaxed coordinates."]
    (out / "relax_accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
