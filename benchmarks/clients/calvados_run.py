"""CALVADOS 3 (github KULL-Centre/CALVADOS) runs with a BackmapReporter(model=None).

The System, Topology and run loop are CALVADOS's own: ``calvados.sim.Sim``
builds the system from a Config and Components (as the examples'
``prepare.py`` + ``run.py`` do) and ``Sim.simulate()`` runs it (energy
minimisation, its DCDReporter and StateDataReporter, 10 batches of steps).
The only change: while ``simulate()`` runs, ``openmm.app.Simulation`` is
replaced by a subclass that appends our reporters to the Simulation that
CALVADOS builds (``Simulation(PDBFile(top.pdb).topology, system, ...)``).

Cases:

* ``ubq``: ubiquitin (1UBQ, from the test data of the PyPI package vermouth)
  as a folded domain, CALVADOS 3 residue parameters (``residues_CALVADOS3.csv``
  of the example ``single_MDP``), residue centre-of-mass beads
  (``use_com=True``), harmonic restraints (``k_harmonic=700``) within the
  domain residues 1-72 (the tail 73-76 is flexible), in a 25 nm box,
  ``--reports`` reports every ``--interval`` steps (10 fs). The CI fixture case.
* ``slab``: direct coexistence (the example ``slab_IDR``): ``--slab-chains``
  copies (default 50) of the hnRNPA1 low-complexity domain (137 residues,
  CALVADOS 2 parameters) on CALVADOS's slab grid in a 15 x 15 x 150 nm box,
  without the slab equilibration, ``--slab-steps`` steps and one report.

The engine-written CG files: ``top.pdb`` (written by CALVADOS with mdtraj
before the run; the Simulation's Topology is read back from it), the DCD of
its DCDReporter (one frame per report), and ``frame0.pdb``, the first
reported frame written with OpenMM's PDBReporter the way ``Sim.simulate()``
writes its final PDB. ``openmm-backmap convert`` runs on the DCD with
``top.pdb`` (the same frames the reporter saw).

    /work/clients/venv/bin/python benchmarks/clients/calvados_run.py --out /tmp/clients
    /work/clients/venv/bin/python benchmarks/clients/calvados_run.py --out /tmp/clients --cases slab
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

FIXTURE_CASES = {"ubq": "calvados_ubq"}


def examples_dir(calvados):
    """The examples/ folder of the CALVADOS source tree that holds the imported package."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(calvados.__file__))), "examples")
    if not os.path.isdir(path):
        sys.exit(f"error: CALVADOS examples not found at {path}: put the CALVADOS source tree (not an installed "
                 "copy) on PYTHONPATH; " + C.SETUP_HINT)
    return path


def ubiquitin_pdb(dst):
    """1UBQ's protein ATOM records (no waters) from vermouth's test data."""
    import vermouth

    src = os.path.join(os.path.dirname(vermouth.__file__), "tests", "data", "1UBQ.pdb")
    with open(src) as fh, open(dst, "w") as out:
        for line in fh:
            if line.startswith("ATOM"):
                out.write(line)
        out.write("END\n")
    return src


@contextlib.contextmanager
def attach_to_engine_simulation(hook):
    """While active, every ``openmm.app.Simulation`` made (CALVADOS makes one) is passed to ``hook`` first."""
    import openmm.app as app
    import openmm.app.simulation as simmod

    original = simmod.Simulation

    class Attached(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            hook(self)

    simmod.Simulation = app.Simulation = Attached
    try:
        yield
    finally:
        simmod.Simulation = app.Simulation = original


def config_and_components(case, work, ex, args):
    from calvados.cfg import Components, Config

    steps = args.interval * args.reports if case == "ubq" else args.slab_steps
    common = dict(temp=293, ionic=0.15, pH=7.0, wfreq=steps // (args.reports if case == "ubq" else 1), steps=steps,
                  runtime=0, platform="CPU", threads=args.threads, restart=None, verbose=True,
                  random_number_seed=1, logfreq=steps // 10 or 1)
    if case == "ubq":
        pdbs = os.path.join(work, "input")
        os.makedirs(pdbs)
        ubiquitin_pdb(os.path.join(pdbs, "ubq.pdb"))
        with open(os.path.join(pdbs, "domains.yaml"), "w") as fh:
            fh.write("ubq:\n - [1,72]\n")
        config = Config(sysname="ubq", box=[25, 25, 25], topol="center", **common)
        components = Components(molecule_type="protein", nmol=1, restraint=True, charge_termini="both",
                                fresidues=os.path.join(ex, "single_MDP", "input", "residues_CALVADOS3.csv"),
                                fdomains=os.path.join(pdbs, "domains.yaml"), pdb_folder=pdbs,
                                restraint_type="harmonic", use_com=True, colabfold=1, k_harmonic=700.0)
        components.add(name="ubq")
    else:
        inp = os.path.join(ex, "slab_IDR", "input")
        config = Config(sysname="slab", box=[15, 15, 150.0], topol="slab", slab_width=20, friction=0.01,
                        slab_eq=False, **common)
        components = Components(molecule_type="protein", nmol=1, restraint=False, charge_termini="both",
                                ffasta=os.path.join(inp, "fastalib.fasta"),
                                fresidues=os.path.join(inp, "residues_CALVADOS2.csv"))
        components.add(name="hnRNPA1LCD", nmol=args.slab_chains)
    config.write(work, name="config.yaml")
    components.write(work, name="components.yaml")
    return config.config, components.components, steps


def run_case(case, args, calvados):
    import openmm.app as app
    import openmm.unit as unit
    from calvados import sim as calvados_sim

    work = C.fresh_dir(os.path.join(args.out, f"calvados_{case}"))
    ex = examples_dir(calvados)
    config, components, steps = config_and_components(case, work, ex, args)
    interval = steps // args.reports if case == "ubq" else steps
    out_pdb = os.path.join(work, "backmapped.pdb")
    frame_pdb = os.path.join(work, "frame0.pdb")
    attached = {}

    def write_frame0(simulation, _state):  # as Sim.simulate() writes its final PDB
        state = simulation.context.getState(getPositions=True, enforcePeriodicBox=True)
        app.pdbreporter.PDBReporter(frame_pdb, 0).report(simulation, state)

    def hook(simulation):
        attached["sim"] = simulation
        attached["rep"], attached["first"] = C.attach(simulation, out_pdb, interval, on_first=write_frame0,
                                                                minimize=args.minimize)

    t0 = time.perf_counter()
    mysim = calvados_sim.Sim(work, config, components)
    mysim.build_system()
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    with attach_to_engine_simulation(hook):
        try:
            mysim.simulate()
        finally:
            if "rep" in attached:
                attached["rep"].close()
    seconds = time.perf_counter() - t0
    simulation, rep, first = attached["sim"], attached["rep"], attached["first"]
    summary = rep.summary()
    import numpy as np

    pos0 = np.asarray(first.state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    cons = []  # consecutive bead distances within each chain
    for chain in simulation.topology.chains():
        idx = [a.index for a in chain.atoms()]
        cons += list(np.linalg.norm(np.diff(pos0[idx], axis=0), axis=1))
    cons = np.asarray(cons)
    result = {
        "engine": "CALVADOS", "case": case, "steps": steps, "interval": interval, "step_fs": 10,
        "build_seconds": round(t_build, 1), "run_seconds": round(seconds, 1),
        "engine_topology": C.clients_fixtures.describe(simulation.topology, simulation.system),
        "bead_names": sorted({a.name for a in simulation.topology.atoms()}),
        "first_residue_ids": [r.id for r in list(simulation.topology.residues())[:3]],
        "consecutive_bead_distance_nm": {"median": float(np.median(cons)), "max": float(cons.max()),
                                         "over_0.43": int((cons > 0.43).sum()), "pairs": int(len(cons))},
        "top_pdb": C.pdb_records(os.path.join(work, "top.pdb")),
        "frame0_pdb": C.pdb_records(frame_pdb),
        "reporter": {**C.quality(summary), "written": C.chains_of(out_pdb)},
        "reporter_summary": summary, **C.package_state(),
    }
    if not args.no_convert:
        result["convert_engine_dcd"] = C.convert_file(os.path.join(work, f"{config['sysname']}.dcd"),
                                                      os.path.join(work, "converted.pdb"),
                                                      topology=os.path.join(work, "top.pdb"), minimize=args.minimize)
    if args.fixtures and case in FIXTURE_CASES:
        meta = {"engine": "CALVADOS", "case": case, "made_by": "benchmarks/clients/calvados_run.py",
                "engine_source": os.path.dirname(os.path.dirname(os.path.abspath(calvados.__file__))),
                "notes": "Topology = openmm.app.PDBFile(top.pdb).topology as Sim.simulate() builds it: one chain, "
                         "beads named CA (residue centres of mass for use_com=True), no bonds. Chain bonds are in "
                         "the System's HarmonicBondForce; the domain's restraints in a second HarmonicBondForce. "
                         f"Frame 0 = first report (step {first.step}) after minimisation. CG files: top.pdb "
                         "(CALVADOS/mdtraj, start coordinates) and frame0.pdb (OpenMM PDBReporter, as CALVADOS "
                         "writes its final frame)."}
        files = {os.path.join(work, "top.pdb"): "top.pdb", frame_pdb: "frame0.pdb"}
        result["fixture"] = C.write_fixture(args.fixtures, FIXTURE_CASES[case], simulation, first, files, meta)
    C.dump(os.path.join(work, "result.json"), result)
    return result


def main():
    p = C.parser(__doc__.splitlines()[0], interval=1000, reports=10)
    p.add_argument("--cases", default="ubq,slab", help="comma-separated: ubq, slab")
    p.add_argument("--slab-chains", type=int, default=50, help="IDP copies in the slab (default 50)")
    p.add_argument("--slab-steps", type=int, default=200, help="steps of the slab run (one report at the end)")
    args = p.parse_args()
    calvados = C.require("calvados", "CALVADOS",
                         "put the CALVADOS source tree (the folder holding calvados/) on PYTHONPATH; " + C.SETUP_HINT)
    C.require("vermouth", "vermouth (for its 1UBQ test structure)", C.SETUP_HINT)
    C.require("openmm_backmap", "openmm_backmap", C.SETUP_HINT)
    import numpy as np

    if not hasattr(np, "product"):  # CALVADOS (pinned to numpy 1.24) calls np.product, removed in numpy 2.0
        np.product = np.prod
    os.makedirs(args.out, exist_ok=True)
    results = [run_case(c.strip(), args, calvados) for c in args.cases.split(",") if c.strip()]
    brief = [{"case": r["case"], **{k: r["reporter"].get(k) for k in ("bond_ok_percent", "clash_percent")},
              "chains_written": r["reporter"]["written"].get("openmm_chains"),
              "chains_engine": r["engine_topology"]["chains"]} for r in results]
    print("SUMMARY", brief)


if __name__ == "__main__":
    main()
