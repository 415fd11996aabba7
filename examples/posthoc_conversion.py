"""Coarsen an all-atom trajectory to C-alphas and backmap it again, post hoc.

This is the round trip used to validate a model: the C-alpha trace of a real
trajectory is backmapped with ``openmm_backmap.run.conversion.convert`` (the Python
side of ``openmm-backmap convert``) and the result is compared with the
original atoms.

    python examples/posthoc_conversion.py ../shared/data/eval/md/trpcage/trpcage_eval.dcd \
        -t ../shared/data/eval/md/trpcage/trpcage.pdb --model models/ca2aa.pt --stride 50
"""

import argparse
import os
from pathlib import Path

from openmm_backmap.run.conversion import convert_trajectory
from openmm_backmap.run.coarsening import coarsen_files
from openmm_backmap.io import load_ensemble
from openmm_backmap.evaluation import evaluate, format_table

data = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval" / "md" / "trpcage"
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("trajectory", nargs="?", default=str(data / "trpcage_eval.dcd"), help="all-atom trajectory")
parser.add_argument("-t", "--topology", default=str(data / "trpcage.pdb"), help="its topology (PDB)")
parser.add_argument("--model", default="models/ca2aa.pt")
parser.add_argument("--stride", type=int, default=50, help="use every n-th frame (default: %(default)s)")
parser.add_argument("--output-dir", default="posthoc", help="where the files go (default: %(default)s)")
args = parser.parse_args()
os.makedirs(args.output_dir, exist_ok=True)
prefix = os.path.join(args.output_dir, "trpcage")

# 1. All atoms -> C-alphas: writes <prefix>_ca.pdb (CG topology, real residue
#    names) and <prefix>_ca.dcd (the C-alpha trajectory, nm in, Å in the file).
levels = coarsen_files(args.trajectory, topology=args.topology, levels="ca", out_prefix=prefix,
                       stride=args.stride, force=True)
ca = levels["ca"]

# 2. C-alphas -> heavy atoms, 100 frames at a time, two samples per frame.
summary = convert_trajectory(ca["dcd"], prefix + "_backmapped.xtc", topology=ca["pdb"], model=args.model, samples=2, seed=1,
                  chunk=100, force=True)

# 3. Compare with the original atoms, the same frames (two samples per reference frame, frame-major).
reference = load_ensemble(args.trajectory, topology=args.topology, stride=args.stride)
generated = load_ensemble(summary["output"], topology=summary["topology_file"])
print(format_table(evaluate(reference, generated, plots_dir=args.output_dir, name="trpcage_roundtrip")))
