"""Backmap a coarse-grained OpenMM simulation while it runs.

A C-alpha Go-like model of the villin headpiece (from OpenMM's bundled
test.pdb) is simulated with Langevin dynamics; a BackmapReporter turns every
500th step into an all-atom structure, relaxes it, and writes it to a DCD
file (with a PDB topology beside it).

    python examples/reporter_on_cg_simulation.py --model models/ca2aa.pt --steps 5000
"""

import argparse
import warnings

import openmm
import openmm.app as app

from openmm_backmap.cgsystems import calpha_go_model
from openmm_backmap.run.demo import villin_pdb_path
from openmm_backmap.io import load_ensemble
from openmm_backmap.run import format_summary
from openmm_backmap.run.reporter import BackmapReporter

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", default="models/ca2aa.pt", help="backmapping model (default: %(default)s)")
parser.add_argument("--steps", type=int, default=5000, help="CG steps of 10 fs (default: %(default)s)")
parser.add_argument("--interval", type=int, default=500, help="steps between backmapped frames")
parser.add_argument("--output", default="villin_backmapped.dcd", help="output trajectory (default: %(default)s)")
args = parser.parse_args()

# 1. The CG system: one particle per residue, named after the residue, so the
#    reporter can read the sequence from the topology.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # test.pdb has waters and ions; they are dropped
    villin = load_ensemble(villin_pdb_path())
topology, system, positions = calpha_go_model(villin)

integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.010)  # K, 1/ps, ps
simulation = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName("CPU"))
simulation.context.setPositions(positions)  # nm
simulation.context.setVelocitiesToTemperature(300.0)

# 2. The reporter: backmapping runs in a background thread (asynchronous=True)
#    while the CG simulation keeps stepping; minimize=True relaxes each frame
#    with a short restrained minimisation in vacuum.
reporter = BackmapReporter(args.output, args.interval, model=args.model, seed=0, minimize=True,
                           relaxOptions={"implicit": None, "max_iterations": 200}, asynchronous=True, force=True)
simulation.reporters.append(reporter)
simulation.reporters.append(app.StateDataReporter(
    "villin_cg_log.csv", args.interval, step=True, potentialEnergy=True, temperature=True, speed=True))

# 3. Run, then close the reporter: it writes the last frames and closes the file.
simulation.step(args.steps)
reporter.close()
print(format_summary(reporter.summary()))
