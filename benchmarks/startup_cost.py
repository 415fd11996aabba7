"""CPU cost of one ``openmm-backmap convert`` of a single 100-residue C-alpha frame, split by stage (issue 23, item 10).

Each measurement runs in a fresh Python subprocess (``OMP_NUM_THREADS=1``), so imports and first-call costs are
paid as a new user pays them. Method: ``time.process_time()`` around each stage, with the stages timed by wrapping
the package functions the CLI calls (no cProfile, whose overhead would distort the small stages):

* ``import torch``, ``import openmm``, ``import mdtraj``, then ``import openmm_backmap.cli`` (the package);
* ``openmm_backmap.cli.main(['convert', ...])`` with timers on ``load_model`` (model load),
  ``Backmapper.backmap`` (first model call), ``reference_bond_lengths`` (the bond check's force-field
  System) and ``TrajectoryWriter.write``/``close`` (writing); ``other`` is the rest of ``main`` (reading,
  checks, argument parsing, summary).

Variants (each its own subprocess, interleaved ``--repeats`` times; medians reported):

* ``after``: the package as it is;
* ``before``: the same code with the two start-up levers undone: TorchScript's profiling executor and
  optimisation on for the first call (torch's default), and the bond lengths built from an OpenMM System
  with hydrogens (the per-template table ignored).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/startup_cost.py --repeats 3

writes docs/benchmarks/startup_cost.{json,md}.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STAGES = ["import torch", "import openmm", "import mdtraj", "import package", "model load", "first model call",
          "bond-check System", "writing", "other"]
THIRD_PARTY = {"import torch", "import openmm", "import mdtraj"}

CHILD = r'''
import json, sys, time
clock = time.process_time
t = {}
c0 = clock(); import torch; t["import torch"] = clock() - c0
c0 = clock(); import openmm, openmm.app; t["import openmm"] = clock() - c0
c0 = clock(); import mdtraj; t["import mdtraj"] = clock() - c0
c0 = clock(); import openmm_backmap.cli as cli; import openmm_backmap.run.conversion as conv
import openmm_backmap.run.pipeline as pipe; import openmm_backmap.model.backmapping as bmod
import openmm_backmap.io as io; t["import package"] = clock() - c0
variant, inp, out = sys.argv[1:4]
if variant == "before":
    import openmm_backmap.run.relax.systems as systems
    systems._template_bond_lengths = lambda *a, **k: None  # the table unused: an OpenMM System per topology
    bmod._first_call_unoptimised = lambda: __import__("contextlib").nullcontext()
for k in ("model load", "first model call", "bond-check System", "writing"):
    t[k] = 0.0
def timed(key, f, first_only=False):
    state = {"n": 0}
    def g(*a, **k):
        state["n"] += 1
        if first_only and state["n"] > 1:
            return f(*a, **k)
        c0 = clock()
        try:
            return f(*a, **k)
        finally:
            t[key] += clock() - c0
    return g
conv.load_model = timed("model load", conv.load_model)
pipe.load_model = timed("model load", pipe.load_model)
import openmm_backmap.run.cg_input as cgi
cgi.load_model = timed("model load", cgi.load_model)
bmod.Backmapper.backmap = timed("first model call", bmod.Backmapper.backmap, first_only=True)
pipe.reference_bond_lengths = timed("bond-check System", pipe.reference_bond_lengths)
io.TrajectoryWriter.write = timed("writing", io.TrajectoryWriter.write)
io.TrajectoryWriter.close = timed("writing", io.TrajectoryWriter.close)
c0 = clock()
code = cli.main(["convert", inp, "-o", out, "--device", "cpu", "--seed", "1", "--force"])
main_s = clock() - c0
t["other"] = main_s - sum(t[k] for k in ("model load", "first model call", "bond-check System", "writing"))
print(json.dumps({"code": code, "seconds": t}))
'''


def make_input(path, n_res=100):
    """A 100-residue C-alpha helix (all 20 standard amino acids, cycled: 5 histidines, whose variant the bond
    table picks from the coordinates) as a one-frame PDB."""
    import mdtraj as md
    import numpy as np

    names = ["ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS", "MET", "PHE",
             "PRO", "SER", "THR", "TRP", "TYR", "VAL"]
    top = md.Topology()
    chain = top.add_chain()
    for i in range(n_res):
        top.add_atom("CA", md.element.carbon, top.add_residue(names[(i * 7) % len(names)], chain, resSeq=i + 1))
    k = np.arange(n_res)
    xyz = np.stack([0.23 * np.cos(np.radians(100 * k)), 0.23 * np.sin(np.radians(100 * k)), 0.15 * k], 1)
    md.Trajectory(xyz[None].astype(np.float32), top).save_pdb(path)


def run_once(variant, inp, tmp):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = os.path.join(tmp, f"out_{variant}.pdb")
    p = subprocess.run([sys.executable, "-c", CHILD, variant, inp, out], capture_output=True, text=True, env=env,
                       cwd=tmp, check=False)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode or not lines:
        raise RuntimeError(f"{variant} run failed:\n{p.stdout}\n{p.stderr}")
    res = json.loads(lines[-1])
    if res["code"] != 0:
        raise RuntimeError(f"convert exited {res['code']}:\n{p.stderr}")
    return res["seconds"]


def package_share(sec):
    return sum(v for k, v in sec.items() if k not in THIRD_PARTY)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks", "startup_cost"))
    args = ap.parse_args(argv)
    runs = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "ca100.pdb")
        make_input(inp)
        for _ in range(args.repeats):
            for variant in ("before", "after"):
                runs[variant].append(run_once(variant, inp, tmp))
    med = {v: {k: statistics.median(r[k] for r in rs) for k in STAGES} for v, rs in runs.items()}
    share = {v: statistics.median(package_share(r) for r in rs) for v, rs in runs.items()}
    total = {v: statistics.median(sum(r.values()) for r in rs) for v, rs in runs.items()}
    result = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/startup_cost.py --repeats %d" % args.repeats,
        "input": ("one frame, 100-residue C-alpha helix (PDB; all 20 amino acids, 5 of them histidine), shipped ca2aa "
                  "model, --device cpu, no relaxation"),
        "method": "time.process_time() around wrapped package functions in a fresh subprocess per run; "
                  "variants interleaved; medians",
        "repeats": args.repeats, "median_cpu_seconds": med, "package_share_cpu_seconds": share,
        "total_cpu_seconds": total, "package_share_ratio_after_over_before": share["after"] / share["before"],
        "runs": runs,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as fh:
        json.dump(result, fh, indent=1)
    rows = ["| stage | before (CPU s) | after (CPU s) | after / before |", "|---|---:|---:|---:|"]
    for k in STAGES:
        b, a = med["before"][k], med["after"][k]
        rows.append(f"| {k}{'' if k in THIRD_PARTY else ' *'} | {b:.3f} | {a:.3f} | "
                    f"{a / b if b > 1e-3 else float('nan'):.2f} |")
    rows.append(f"| **package share** (*) | **{share['before']:.3f}** | **{share['after']:.3f}** | "
                f"**{share['after'] / share['before']:.2f}** |")
    rows.append(f"| total | {total['before']:.3f} | {total['after']:.3f} | {total['after'] / total['before']:.2f} |")
    md_text = "\n".join([
        "# Start-up cost of one `convert` (issue 23, item 10)", "",
        f"`{result['command']}`; {result['input']}.", "",
        f"Method: {result['method']} ({args.repeats} runs each). `before` undoes the two levers in the same code "
        "(TorchScript's profiling executor on for the first call; bond lengths from an OpenMM System with "
        "hydrogens instead of the per-template table). Stages marked * are the package's share (all but the "
        "imports of torch, OpenMM and mdtraj). The machine is shared and noisy: compare the ratios.", "",
        *rows, ""])
    with open(args.out + ".md", "w") as fh:
        fh.write(md_text)
    print(md_text)


if __name__ == "__main__":
    main()
