"""martini_openmm (Martini 3, martinize2 -ff martini3001 -elastic) in vacuum with a BackmapReporter(model=None).

For each case: martinize2 on the all-atom chain (in a scratch folder), a copy
of martini_v3.0.0.itp (from the PyPI wheel martini-taster) trimmed to the
bead types in use, ``MartiniTopFile(...).create_system()`` in a periodic box
with >= 2.5 nm of vacuum around the protein, a 20 fs LangevinMiddle step
(300 K, 1/ps, seed 1), energy minimisation, then ``--reports`` reports every
``--interval`` steps. The CG file of the first reported frame is written the
way martinize2 writes its ``cg.pdb`` (its lines, TER and CONECT records kept,
coordinates replaced) and goes through ``openmm-backmap convert``.

Cases: ``T0862`` (CASP FM target, 93 residues in two segments: residues
139-179 and 188-239; the CI fixture case), ``1UBQ`` (ubiquitin, 76 residues,
from the test data of the PyPI package vermouth), ``T0872`` (CASP, 88 residues).

    /work/clients/venv/bin/python benchmarks/clients/martini_openmm_run.py --out /tmp/clients
    /work/clients/venv/bin/python benchmarks/clients/martini_openmm_run.py --out /tmp/clients --fixtures tests/data/clients
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

CASP = os.environ.get("OPENMM_BACKMAP_SHARED_DATA", os.path.join(os.path.dirname(C.REPO), "shared", "data"))
FIXTURE_CASES = {"T0862": "martini_openmm_T0862"}


def case_pdb(case):
    if case == "1UBQ":
        import vermouth

        return os.path.join(os.path.dirname(vermouth.__file__), "tests", "data", "1UBQ.pdb")
    for prefix in ("FM", "TBM", "TBM-hard"):
        path = os.path.join(CASP, "eval", "chains", "casp", f"{prefix}_{case}.pdb.gz")
        if os.path.isfile(path):
            return path
    sys.exit(f"error: no structure for case {case} (CASP targets are looked up in {CASP}/eval/chains/casp)")


def write_protein_pdb(src, dst):
    """The first model's ATOM records (no waters or ligands) of ``src``."""
    opener = gzip.open if src.endswith(".gz") else open
    with opener(src, "rt") as fh, open(dst, "w") as out:
        for line in fh:
            if line.startswith("ENDMDL"):
                break
            if line.startswith(("ATOM", "TER")):
                out.write(line)
        out.write("END\n")


def trim_martini_itp(src, dst, types):
    """Copy ``src`` keeping only the [atomtypes] and [nonbond_params] lines of the bead types in ``types``."""
    section = None
    kept = 0
    with open(src) as fh, open(dst, "w") as out:
        out.write(f"; {os.path.basename(src)} trimmed to the bead types {' '.join(sorted(types))}\n")
        for line in fh:
            m = re.match(r"\s*\[\s*(\w+)\s*\]", line)
            if m:
                section = m.group(1)
                out.write(line)
                continue
            fields = line.split(";")[0].split()
            if section == "atomtypes" and fields and fields[0] not in types:
                continue
            if section == "nonbond_params" and fields and not (fields[0] in types and fields[1] in types):
                continue
            kept += 1
            out.write(line)
    return kept


def bead_types(itps):
    types = set()
    for itp in itps:
        section = None
        for line in open(itp):
            m = re.match(r"\s*\[\s*(\w+)\s*\]", line)
            if m:
                section = m.group(1)
                continue
            fields = line.split(";")[0].split()
            if section == "atoms" and len(fields) >= 5:
                types.add(fields[1])
    return types


def write_martinize_frame(template, dst, xyz_nm):
    """martinize2's cg.pdb with its coordinates replaced by ``xyz_nm`` (same atom order), every other line kept."""
    i = 0
    with open(template) as fh, open(dst, "w") as out:
        for line in fh:
            if line.startswith(("ATOM", "HETATM")):
                x, y, z = (10.0 * v for v in xyz_nm[i])
                line = f"{line[:30]}{x:8.3f}{y:8.3f}{z:8.3f}{line[54:]}"
                i += 1
            out.write(line)
    if i != len(xyz_nm):
        raise RuntimeError(f"{template} has {i} atoms, the simulation {len(xyz_nm)}")


def backbone_pairs(topology, system):
    """Consecutive BB-BB pairs within a chain, and where the engine put them (topology bond, constraint, bond force)."""
    import openmm

    bonds = {frozenset((b.atom1.index, b.atom2.index)) for b in topology.bonds()}
    cons = {frozenset(system.getConstraintParameters(k)[:2]) for k in range(system.getNumConstraints())}
    hb = set()
    for f in system.getForces():
        if isinstance(f, openmm.HarmonicBondForce):
            hb |= {frozenset(f.getBondParameters(k)[:2]) for k in range(f.getNumBonds())}
    out = {"pairs": 0, "topology_bond": 0, "constraint": 0, "harmonic_bond": 0, "neither": 0}
    for chain in topology.chains():
        bb = [a.index for a in chain.atoms() if a.name == "BB"]
        for i, j in zip(bb[:-1], bb[1:]):
            p = frozenset((i, j))
            out["pairs"] += 1
            out["topology_bond"] += p in bonds
            out["constraint"] += p in cons
            out["harmonic_bond"] += p in hb
            out["neither"] += p not in cons and p not in hb
    return out


def run_case(case, args, martini, taster_itp):
    import numpy as np
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    work = C.fresh_dir(os.path.join(args.out, f"martini_openmm_{case}"))
    mz = os.path.join(work, "martinize")
    os.makedirs(mz)
    write_protein_pdb(case_pdb(case), os.path.join(mz, "aa.pdb"))
    martinize2 = os.path.join(os.path.dirname(sys.executable), "martinize2")
    cmd = [martinize2, "-f", "aa.pdb", "-x", "cg.pdb", "-o", "topol.top", "-ff", "martini3001", "-elastic",
           "-ef", "700", "-el", "0.5", "-eu", "0.9", "-dssp"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=mz, capture_output=True, text=True)
    open(os.path.join(mz, "martinize2.log"), "w").write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"error: martinize2 failed on {case} (see {mz}/martinize2.log)")
    t_martinize = time.perf_counter() - t0
    itps = sorted(os.path.join(mz, f) for f in os.listdir(mz) if re.fullmatch(r"molecule_\d+\.itp", f))
    types = bead_types(itps)
    trim_martini_itp(taster_itp, os.path.join(mz, "martini.itp"), types)  # topol.top includes "martini.itp"

    cg_pdb = app.PDBFile(os.path.join(mz, "cg.pdb"))
    xyz = np.asarray(cg_pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    side = float((xyz.max(0) - xyz.min(0)).max()) + 5.0  # >= 2.5 nm vacuum each side (cut-off 1.1 nm)
    xyz = xyz - xyz.mean(0) + side / 2
    box = [openmm.Vec3(side, 0, 0), openmm.Vec3(0, side, 0), openmm.Vec3(0, 0, side)] * unit.nanometer
    t0 = time.perf_counter()
    top = martini.MartiniTopFile(os.path.join(mz, "topol.top"), periodicBoxVectors=box, defines={}, epsilon_r=15,
                                 includeDir=mz)
    system = top.create_system(nonbonded_cutoff=1.1 * unit.nanometer)
    t_build = time.perf_counter() - t0
    if system.getNumParticles() != len(xyz):
        sys.exit(f"error: {case}: martinize2 wrote {len(xyz)} beads, the topology has {system.getNumParticles()}")
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 20 * unit.femtosecond)
    integrator.setRandomNumberSeed(1)
    platform, props = C.cpu_platform(args.threads)
    sim = app.Simulation(top.topology, system, integrator, platform, props)
    sim.context.setPositions(xyz * unit.nanometer)
    sim.minimizeEnergy(maxIterations=500)
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)  # after minimising: before it, NaN at step 1

    out_pdb = os.path.join(work, "backmapped.pdb")
    summary, first, seconds = C.run_with_reporter(sim, out_pdb, args.interval, args.reports,
                                                 minimize=args.minimize)
    pos0, box0 = C.state_positions_nm(first.state)
    frame_pdb = os.path.join(work, "cg_frame0.pdb")
    write_martinize_frame(os.path.join(mz, "cg.pdb"), frame_pdb, pos0)

    result = {
        "engine": "martini_openmm", "case": case, "input": case_pdb(case),
        "martinize2_command": " ".join(["martinize2"] + cmd[1:]), "martinize2_seconds": round(t_martinize, 1),
        "bead_types": len(types), "build_seconds": round(t_build, 2),
        "steps": args.interval * args.reports, "interval": args.interval, "step_fs": 20,
        "run_seconds": round(seconds, 1), "box_nm": side,
        "engine_topology": C.clients_fixtures.describe(top.topology, system),
        "backbone_bb_pairs": backbone_pairs(top.topology, system),
        "martinize2_cg_pdb": C.pdb_records(os.path.join(mz, "cg.pdb")),
        "reporter": {**C.quality(summary), "written": C.chains_of(out_pdb)},
        "reporter_summary": summary, **C.package_state(),
    }
    if not args.no_convert:
        result["convert_cg_frame0"] = C.convert_file(frame_pdb, os.path.join(work, "converted.pdb"),
                                                        minimize=args.minimize)
    if args.fixtures and case in FIXTURE_CASES:
        meta = {"engine": "martini_openmm", "case": case, "made_by": "benchmarks/clients/martini_openmm_run.py",
                "engine_source": os.path.dirname(os.path.dirname(martini.__file__)),
                "martinize2_command": result["martinize2_command"], "vermouth": _version("vermouth"),
                "notes": "Topology from MartiniTopFile: one chain per molecule; bonds = [ bonds ] of the .itp "
                         "(backbone bonds outside helices and the elastic network); BB-BB pairs under "
                         "[ constraints ] are System constraints only. Frame 0 = first report (step "
                         f"{first.step}) after minimisation. CG file: martinize2's cg.pdb with frame-0 "
                         "coordinates (martini_openmm writes none itself)."}
        files = {frame_pdb: "cg_frame0.pdb", os.path.join(mz, "topol.top"): "topol.top"}
        files.update({p: os.path.basename(p) for p in itps})
        result["fixture"] = C.write_fixture(args.fixtures, FIXTURE_CASES[case], sim, first, files, meta)
    C.dump(os.path.join(work, "result.json"), result)
    return result


def _version(dist):
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:  # noqa: BLE001
        return None


def main():
    p = C.parser(__doc__.splitlines()[0], interval=500, reports=10)
    p.add_argument("--cases", default="T0862,1UBQ", help="comma-separated: T0862, 1UBQ, T0872 or any CASP target")
    args = p.parse_args()
    martini = C.require("martini_openmm.martini", "martini_openmm",
                        "put the martini_openmm source tree (the folder holding martini_openmm/) on PYTHONPATH; "
                        + C.SETUP_HINT)
    C.require("vermouth", "martinize2 (PyPI vermouth)", C.SETUP_HINT)
    C.require("openmm_backmap", "openmm_backmap", C.SETUP_HINT)
    from importlib import resources

    try:
        taster_itp = str(resources.files("taster") / "data" / "itps" / "martini_v3.0.0.itp")
    except ModuleNotFoundError:
        taster_itp = ""
    if not os.path.isfile(taster_itp):
        sys.exit("error: martini_v3.0.0.itp not found (it ships in the PyPI wheel martini-taster); " + C.SETUP_HINT)
    os.makedirs(args.out, exist_ok=True)
    results = [run_case(c.strip(), args, martini, taster_itp) for c in args.cases.split(",") if c.strip()]
    brief = [{"case": r["case"], **{k: r["reporter"].get(k) for k in ("bond_ok_percent", "clash_percent")},
              "chains_written": r["reporter"]["written"].get("openmm_chains")} for r in results]
    print("SUMMARY", brief)


if __name__ == "__main__":
    main()
