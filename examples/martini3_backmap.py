"""Martini 3 end to end: martinize2 -> an OpenMM simulation of the beads -> all-atom frames while it runs.

    pip install "openmm-backmap[martini]"       # vermouth's martinize2
    python examples/martini3_backmap.py protein.pdb -o out/

1. ``martinize2 -ff martini3001`` coarse-grains the protein (its ``cg.pdb`` and ``topol.top`` go to ``out/``).
2. The beads run on an elastic network in OpenMM (a stand-in for a full Martini force field, which OpenMM reads
   from the GROMACS ``.top`` with ``openmm.app.GromacsTopFile`` when the Martini ``.itp`` files are at hand).
3. ``BackmapReporter(model=None)`` finds that the beads are Martini 3 (by their names), loads the shipped
   ``martini3.pt`` and writes heavy-atom frames to ``out/aa.dcd`` (with its topology PDB beside it), in the
   background.
4. ``openmm-backmap convert`` does the same after the fact from the bead trajectory ``out/cg.dcd``.
"""

import argparse
import subprocess
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app

from openmm_backmap.cgsystems import elastic_network_model
from openmm_backmap import BackmapReporter


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pdb", help="all-atom protein structure")
    ap.add_argument("-o", "--out", default="martini3_out", help="output folder")
    ap.add_argument("--steps", type=int, default=20_000, help="simulation steps (20 fs)")
    ap.add_argument("--interval", type=int, default=2_000, help="steps between backmapped frames")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # -ss C: martinize2 needs secondary structure to write its topology (-dssp computes it); the beads do not
    subprocess.run(["martinize2", "-f", str(Path(args.pdb).resolve()), "-x", "cg.pdb", "-o", "topol.top",
                    "-ff", "martini3001", "-ss", "C"], cwd=out, check=True, capture_output=True)
    pdb = app.PDBFile(str(out / "cg.pdb"))
    xyz = np.array(pdb.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer))
    _, system, _ = elastic_network_model(xyz, cutoff=1.0, k=1000.0)
    sim = app.Simulation(pdb.topology, system, openmm.LangevinMiddleIntegrator(300, 1, 0.02))
    sim.context.setPositions(xyz)
    sim.reporters.append(app.DCDReporter(str(out / "cg.dcd"), args.interval))
    with BackmapReporter(str(out / "aa.dcd"), args.interval, model=None, asynchronous=True) as reporter:
        sim.reporters.append(reporter)
        sim.step(args.steps)
    print(f"wrote {out / 'aa.dcd'} and its topology PDB")
    print(f"after the fact: openmm-backmap convert {out / 'cg.dcd'} -t {out / 'cg.pdb'} -o {out / 'aa_posthoc.dcd'}")


if __name__ == "__main__":
    main()
