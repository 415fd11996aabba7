"""The fast relaxer's contact distances, chosen on training data (corpus validation clusters), not on eval/.

The fast relaxer (``--minimize``) pushes non-bonded heavy atoms apart to a fraction of their ff14SB
Lennard-Jones diameter: ``CONTACT_SIGMA_FRACTION`` for most pairs, ``POLAR_CONTACT_SIGMA_FRACTION`` for two
N/O atoms, which hydrogen-bond (docs/relaxation.md). This script measures, for a grid of the two fractions, the
ff14SB + OBC2 energy per residue of our relaxed output against the crystal relaxed the same way, the figure of
issue 25's energy bar, on chains the models never trained on and that are not in eval/:

* one complete chain (no heavy atom missing) per **validation cluster** of the training corpus, the clusters the
  shipped models held out (``split_clusters(..., 0.05, seed=0)``, their config), ``--min-res`` to ``--max-res``
  residues;
* each chain written as a PDB, ``openmm-backmap coarsen --levels ca`` and ``convert --deterministic`` through
  the CLI (the user's path), then the output and the crystal relaxed by :class:`FastRelaxer` as
  ``convert --minimize`` builds it (``md_ready.relax_crystal``) with the fractions of each grid point;
* energies as ``md_ready.py --ps 0`` measures them (hydrogens added and relaxed, heavy atoms frozen).

Run::

    OMP_NUM_THREADS=1 python benchmarks/relax_contact_tuning.py --data ../shared/data/train

Writes docs/benchmarks/relax_contact_tuning.json and .md (``--out`` to change the stem).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import md_ready  # noqa: E402
from md_ready import _cli, _write, evaluate_structure, relax_crystal  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "docs", "benchmarks", "relax_contact_tuning")
#: The shipped models' corpus split (their config: corpus_validation_fraction, seed).
VALIDATION_FRACTION, SPLIT_SEED = 0.05, 0
#: (CONTACT_SIGMA_FRACTION, POLAR_CONTACT_SIGMA_FRACTION) pairs; the first is the shipped setting.
DEFAULT_GRID = "0.96:0.88,0.92:0.88,1.00:0.88,0.96:0.84,0.96:0.92"


def validation_chains(data, min_res, max_res, workdir):
    """Write one complete chain per validation cluster (``min_res`` to ``max_res`` residues) as a PDB; their paths."""
    from openmm_backmap.io.paths import write_topology_pdb
    from openmm_backmap.io.read import load_ensemble
    from openmm_backmap.train.corpus import _chain, read_manifest, split_clusters

    root = os.path.join(data, "corpus")
    rows = read_manifest(os.path.join(root, "manifest.csv"))
    _, validation = split_clusters([r.cluster for r in rows], VALIDATION_FRACTION, seed=SPLIT_SEED)
    validation = set(validation)
    os.makedirs(workdir, exist_ok=True)
    chosen, paths = set(), []
    for r in sorted(rows, key=lambda r: (r.cluster, r.file, r.chain)):
        if r.cluster not in validation or r.cluster in chosen:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the corpus's ligands, waters and altlocs
            ens = load_ensemble(os.path.join(root, r.file))
        sub = _chain(ens, r.chain, r.file)
        if sub is None or not min_res <= sub.n_residues <= max_res:
            continue
        if not sub.mask[0].all() or sub.segment_start[1:].any():
            continue  # missing atoms or a chain break: the energy would measure the gap
        name = f"{os.path.basename(r.file).split('.')[0]}_{r.chain}"
        path = os.path.abspath(os.path.join(workdir, name + ".pdb"))
        write_topology_pdb(path, sub.topology(), sub.xyz[0], title=f"{r.file} chain {r.chain}, cluster {r.cluster}")
        chosen.add(r.cluster)
        paths.append((name, r.cluster, path))
    return paths


def set_fractions(contact, polar):
    from openmm_backmap.run.relax import fast

    fast.CONTACT_SIGMA_FRACTION, fast.POLAR_CONTACT_SIGMA_FRACTION = contact, polar


def energy(path):
    row = evaluate_structure(path, ps=0)
    if "error" in row:
        raise RuntimeError(f"{path}: {row['error']}")
    return row["energy_kj_per_res"]


def run(chains, grid, workdir):
    out = {"chains": [], "grid": [{"contact": c, "polar": p} for c, p in grid]}
    for name, cluster, path in chains:
        wd = os.path.join(workdir, name)
        os.makedirs(wd, exist_ok=True)
        _cli(["coarsen", path, "--levels", "ca", "-o", name, "--force"], wd)
        _cli(["convert", f"{name}_ca.pdb", "-o", "raw.pdb", "--deterministic", "--force"], wd)
        row = {"chain": name, "cluster": cluster, "crystal": energy(path), "points": []}
        for c, p in grid:
            set_fractions(c, p)
            xmin, omin = os.path.join(wd, f"crystal_{c}_{p}.pdb"), os.path.join(wd, f"min_{c}_{p}.pdb")
            rx = relax_crystal(path, xmin, "fast")
            ro = relax_crystal(os.path.join(wd, "raw.pdb"), omin, "fast")
            row["points"].append({"crystal_relaxed": energy(xmin), "ours_relaxed": energy(omin),
                                  "crystal_rmsd_A": rx["rmsd_A"], "ours_moved_A": ro["rmsd_A"]})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from openmm_backmap.io.read import load_ensemble
            row["n_residues"] = load_ensemble(path).n_residues
        out["chains"].append(row)
        print(f"{name}: " + "  ".join(f"{c}/{p}: {q['ours_relaxed'] - q['crystal_relaxed']:+.1f}"
                                      for (c, p), q in zip(grid, row["points"])), file=sys.stderr, flush=True)
    summary = []
    for k, (c, p) in enumerate(grid):
        de = [r["points"][k]["ours_relaxed"] - r["points"][k]["crystal_relaxed"] for r in out["chains"]]
        dx = [r["points"][k]["crystal_relaxed"] - r["crystal"] for r in out["chains"]]
        summary.append({"contact": c, "polar": p, "mean_delta_kj_per_res": float(np.mean(de)),
                        "median_delta_kj_per_res": float(np.median(de)),
                        "mean_ours_kj_per_res": float(np.mean([r["points"][k]["ours_relaxed"] for r in out["chains"]])),
                        "mean_crystal_relaxed_minus_crystal": float(np.mean(dx)),
                        "mean_crystal_rmsd_A": float(np.mean([r["points"][k]["crystal_rmsd_A"] for r in out["chains"]]))})
    out["summary"] = summary
    return out


def markdown(report):
    lines = ["# Fast-relaxer contact distances, chosen on training data", "",
             f"Measured {report['date']}, {report['machine']}; {report['cpu_s']:.0f} CPU s.", "",
             "<!-- docs-test: slow: reads ../shared/data/train -->", "```bash", report["command"], "```", "",
             f"Chains: one complete chain ({report['min_res']}-{report['max_res']} residues, no chain break) per "
             f"validation cluster of the training corpus (`split_clusters(..., {VALIDATION_FRACTION}, "
             f"seed={SPLIT_SEED})`, the split the shipped models held out): {len(report['chains'])} chains. "
             "Nothing from eval/. ΔE = ff14SB + OBC2 energy per residue (hydrogens added and relaxed, heavy atoms "
             "frozen, as `md_ready.py`) of our output relaxed by the fast relaxer minus the crystal relaxed by it; "
             "crystal shift = the relaxed crystal minus the crystal as deposited (negative: the relaxer lowers the "
             "crystal's energy; positive: it pushes apart contacts the force field wants, such as hydrogen bonds). "
             "ΔE alone rewards a setting that raises the relaxed crystal's energy as much as ours, so the choice is "
             "read from our output's own energy (mean E ours, lower is better) with the crystal shift and the "
             "distance the crystal moves kept small.",
             "", "| contact fraction | N/O pairs | mean ΔE (kJ/mol/res) | median ΔE | mean E ours | crystal shift | "
             "crystal moved Å |", "|---|---|---|---|---|---|---|"]
    for s in report["summary"]:
        lines.append(f"| {s['contact']:.2f} | {s['polar']:.2f} | {s['mean_delta_kj_per_res']:+.1f} | "
                     f"{s['median_delta_kj_per_res']:+.1f} | {s['mean_ours_kj_per_res']:.1f} | "
                     f"{s['mean_crystal_relaxed_minus_crystal']:+.1f} | {s['mean_crystal_rmsd_A']:.2f} |")
    lines += ["", "Per chain, ΔE (kJ/mol/res):", "",
              "| chain | cluster | residues | crystal E | " + " | ".join(f"{g['contact']:.2f}/{g['polar']:.2f}"
                                                                  for g in report["grid"]) + " |",
              "|---|---|---|---|" + "---|" * len(report["grid"])]
    for r in report["chains"]:
        lines.append(f"| {r['chain']} | {r['cluster']} | {r['n_residues']} | {r['crystal']:.1f} | " + " | ".join(
            f"{q['ours_relaxed'] - q['crystal_relaxed']:+.1f}" for q in r["points"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="/work/shared/data/train", help="the shared data's train/ folder")
    p.add_argument("--min-res", type=int, default=40)
    p.add_argument("--max-res", type=int, default=220)
    p.add_argument("--grid", default=DEFAULT_GRID, help="CONTACT:POLAR pairs, comma-separated")
    p.add_argument("--workdir", default="/tmp/relax_contact_tuning")
    p.add_argument("--out", default=DEFAULT_OUT)
    a = p.parse_args(argv)
    for k, v in md_ready.ONE_THREAD_ENV.items():
        os.environ.setdefault(k, v)
    grid = [tuple(float(x) for x in item.split(":")) for item in a.grid.split(",")]
    t0 = time.process_time()
    chains = validation_chains(a.data, a.min_res, a.max_res, os.path.join(a.workdir, "chains"))
    report = run(chains, grid, a.workdir)
    report.update(command="OMP_NUM_THREADS=1 python benchmarks/relax_contact_tuning.py " + " ".join(argv),
                  date=datetime.date.today().isoformat(), machine=f"{os.cpu_count()}-core CPU, one thread",
                  min_res=a.min_res, max_res=a.max_res, cpu_s=time.process_time() - t0)
    _write(report, a.out, render=markdown)
    return report


if __name__ == "__main__":
    main()
