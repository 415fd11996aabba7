"""OpenABC (PyPI openabc) C-alpha model with a BackmapReporter(model=None): a regression case.

OpenABC's CALVADOS 2 model (``openabc.forcefields.CALVADOSModel``) of
``--copies`` copies (default 3) of histatin 5 (24 residues), built the way
OpenABC's tutorials do: ``build_straight_CA_chain`` + ``write_pdb`` for one
chain, ``insert_molecules`` into a cubic box, ``HPSParser`` per copy,
``create_system(PDBFile(start.pdb).topology)``, protein bonds, CALVADOS 2
contacts and Debye-Hueckel electrostatics, LangevinMiddle 10 fs (300 K,
0.01/ps, seed 1), energy minimisation, then ``--reports`` reports every
``--interval`` steps. OpenABC's own DCDReporter (``add_reporters``) runs
beside ours; the first reported frame is also written with OpenABC's
``CGModel.atoms_to_pdb`` (``frame0.pdb``: one chain id "A" for every copy
and no TER, like its ``start.pdb``) and goes through ``openmm-backmap convert``.

    /work/clients/venv/bin/python benchmarks/clients/openabc_run.py --out /tmp/clients
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

HISTATIN5 = "DSHAKRHHGYKRKFHEKHHSHRGY"


def main():
    p = C.parser(__doc__.splitlines()[0], interval=1000, reports=10)
    p.add_argument("--copies", type=int, default=3, help="chains (default 3)")
    p.add_argument("--box", type=float, default=20.0, help="cubic box side, nm (default 20)")
    args = p.parse_args()
    C.require("openabc.forcefields", "OpenABC (PyPI openabc)", C.SETUP_HINT)
    C.require("openmm_backmap", "openmm_backmap", C.SETUP_HINT)
    import numpy as np
    import openmm
    import openmm.app as app
    import openmm.unit as unit
    from openabc.forcefields import CALVADOSModel
    from openabc.forcefields.parsers import HPSParser
    from openabc.utils.helper_functions import build_straight_CA_chain, write_pdb
    from openabc.utils.insert import insert_molecules

    work = C.fresh_dir(os.path.join(args.out, "openabc_histatin5"))
    one = os.path.join(work, "histatin5.pdb")
    start = os.path.join(work, "start.pdb")
    write_pdb(build_straight_CA_chain(HISTATIN5, r0=0.38), one)
    np.random.seed(1)  # insert_molecules places copies at random
    insert_molecules(one, start, n_mol=args.copies, box=[args.box] * 3)
    protein = HPSParser(one)
    model = CALVADOSModel()
    for _ in range(args.copies):
        model.append_mol(protein)
    pdb = app.PDBFile(start)
    model.create_system(pdb.getTopology(), box_a=args.box, box_b=args.box, box_c=args.box)
    model.add_protein_bonds(force_group=1)
    model.add_contacts("CALVADOS2", force_group=2)
    model.add_dh_elec(force_group=3)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 0.01 / unit.picosecond, 10 * unit.femtosecond)
    integrator.setRandomNumberSeed(1)
    model.set_simulation(integrator, platform_name="CPU", properties={"Threads": str(args.threads)},
                         init_coord=pdb.getPositions())
    model.simulation.minimizeEnergy()
    model.add_reporters(args.interval, output_dcd=os.path.join(work, "openabc.dcd"), report_state_data=False)
    sim = model.simulation

    out_pdb = os.path.join(work, "backmapped.pdb")
    frame_pdb = os.path.join(work, "frame0.pdb")

    def write_frame0(_simulation, state):  # OpenABC's own writer: CGModel.atoms_to_pdb with frame-0 coordinates
        xyz = 10.0 * state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        saved = model.atoms[["x", "y", "z"]].copy()
        model.atoms["x"], model.atoms["y"], model.atoms["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        try:
            model.atoms_to_pdb(frame_pdb)
        finally:
            model.atoms[["x", "y", "z"]] = saved

    summary, first, seconds = C.run_with_reporter(sim, out_pdb, args.interval, args.reports, on_first=write_frame0,
                                                 minimize=args.minimize)
    result = {
        "engine": "OpenABC", "case": f"histatin5 x{args.copies}", "model": "CALVADOSModel (CALVADOS2)",
        "openabc": _version("openabc"), "steps": args.interval * args.reports, "interval": args.interval,
        "step_fs": 10, "run_seconds": round(seconds, 1),
        "engine_topology": C.clients_fixtures.describe(sim.topology, sim.system),
        "start_pdb": C.pdb_records(start), "frame0_pdb": C.pdb_records(frame_pdb),
        "reporter": {**C.quality(summary), "written": C.chains_of(out_pdb)},
        "reporter_summary": summary, **C.package_state(),
    }
    if not args.no_convert:
        result["convert_frame0_pdb"] = C.convert_file(frame_pdb, os.path.join(work, "converted.pdb"),
                                                        minimize=args.minimize)
    if args.fixtures:
        meta = {"engine": "OpenABC", "case": result["case"], "made_by": "benchmarks/clients/openabc_run.py",
                "openabc": result["openabc"],
                "notes": "Topology = openmm.app.PDBFile(start.pdb).topology as OpenABC's tutorials build it: "
                         f"{args.copies} copies under one chain id A without TER, so ONE chain, beads named CA, "
                         "residue ids repeating 1-24 per copy, no bonds. Chain bonds are in the System's "
                         "HarmonicBondForce (23 per copy). Frame 0 = first report (step "
                         f"{first.step}) after minimisation. CG file: frame0.pdb (OpenABC's atoms_to_pdb)."}
        result["fixture"] = C.write_fixture(args.fixtures, f"openabc_histatin5x{args.copies}", sim, first,
                                            {frame_pdb: "frame0.pdb"}, meta)
    C.dump(os.path.join(work, "result.json"), result)
    print("SUMMARY", [{"case": result["case"], "bond_ok_percent": result["reporter"]["bond_ok_percent"],
                       "clash_percent": result["reporter"]["clash_percent"],
                       "chains_written": result["reporter"]["written"].get("openmm_chains"),
                       "chains_engine": result["engine_topology"]["chains"]}])


def _version(dist):
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    main()
