"""Shared parts of the real-engine runs in ``benchmarks/clients/`` (not part of the package).

Each ``*_run.py`` builds a ``Simulation`` with a real CG engine, attaches
``BackmapReporter(model=None, deterministic=True)`` and writes
``<out>/<case>/result.json`` with the reporter's ``summary()``, the chains of
the written all-atom topology, the engine's topology/System layout and, for
comparison, ``openmm-backmap convert`` on the engine-written CG file of the
first reported frame. ``--fixtures DIR`` also writes the CI fixture of the
case (see ``tests/clients_fixtures.py``).
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests"))

import clients_fixtures  # noqa: E402  (tests/clients_fixtures.py)


def require(module, what, hint):
    """Import ``module`` or stop with one line that says how to get it."""
    try:
        return importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - any import failure means the engine is not usable
        sys.exit(f"error: {what} is not importable ({type(err).__name__}: {err}); {hint}")


SETUP_HINT = ("set up the client venv with benchmarks/clients/setup_clients.sh and run this script with "
              "/work/clients/venv/bin/python (see benchmarks/clients/README.md)")


def parser(description, interval, reports):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", required=True, help="output folder (one sub-folder per case)")
    p.add_argument("--interval", type=int, default=interval, help=f"steps between reports (default {interval})")
    p.add_argument("--reports", type=int, default=reports, help=f"reports per run (default {reports})")
    p.add_argument("--threads", type=int, default=1, help="CPU platform threads (default 1)")
    p.add_argument("--fixtures", default=None,
                   help="also write the CI fixtures of the fixture cases into this folder (e.g. tests/data/clients)")
    p.add_argument("--no-convert", action="store_true", help="skip openmm-backmap convert of the CG frame file")
    p.add_argument("--minimize", action="store_true",
                   help="relax the backmapped structures (the fast relaxer), in the reporter and in convert")
    return p


def fresh_dir(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def package_state():
    """Which openmm_backmap was imported: the repository's working tree (its commit and local changes under
    openmm_backmap/) or a snapshot such as ``git archive HEAD openmm_backmap models`` with a ``COMMIT`` file."""
    import openmm_backmap

    pkg = os.path.dirname(os.path.abspath(openmm_backmap.__file__))
    info = {"openmm_backmap_file": openmm_backmap.__file__}
    snapshot_commit = os.path.join(os.path.dirname(pkg), "COMMIT")
    if os.path.dirname(pkg) != REPO:
        info["snapshot_commit"] = open(snapshot_commit).read().strip() if os.path.isfile(snapshot_commit) else None
        return info
    try:
        info["repo_commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                                             text=True, check=True).stdout.strip()
        info["repo_changes_under_openmm_backmap"] = subprocess.run(
            ["git", "-C", REPO, "status", "--porcelain", "--", "openmm_backmap"], capture_output=True, text=True,
            check=True).stdout.splitlines()
    except Exception:  # noqa: BLE001
        pass
    return info


class FirstFrame:
    """An OpenMM reporter that keeps the state of its first report (the reporter's frame 0); ``on_first(simulation,
    state)`` is called then."""

    def __init__(self, interval, on_first=None):
        self.interval = int(interval)
        self.on_first = on_first
        self.state = None
        self.step = None

    def describeNextReport(self, simulation):
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": False, "include": ["positions"]}

    def report(self, simulation, state):
        if self.state is None:
            self.state, self.step = state, simulation.currentStep
            if self.on_first is not None:
                self.on_first(simulation, state)


def state_positions_nm(state):
    import openmm.unit as unit

    pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
    return [[float(x) for x in p] for p in pos], [[float(x) for x in v] for v in box]


def chains_of(path):
    """Chains, residues and atoms of a written PDB, as OpenMM's PDBFile and mdtraj read it."""
    import mdtraj
    import openmm.app as app

    out = {}
    try:
        pdb = app.PDBFile(str(path))
        out["openmm_chains"] = pdb.topology.getNumChains()
        out["residues"] = pdb.topology.getNumResidues()
        out["atoms"] = pdb.topology.getNumAtoms()
    except Exception as err:  # noqa: BLE001
        out["openmm_error"] = f"{type(err).__name__}: {err}"
    try:
        t = mdtraj.load_topology(str(path))
        out["mdtraj_chains"] = t.n_chains
    except Exception as err:  # noqa: BLE001
        out["mdtraj_error"] = f"{type(err).__name__}: {err}"
    return out


def pdb_records(path):
    """What a PDB file contains: counts of record types and the chain ids of its ATOM/HETATM lines."""
    counts, chain_ids = {}, []
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        for line in fh:
            rec = line[:6].strip()
            counts[rec] = counts.get(rec, 0) + 1
            if rec in ("ATOM", "HETATM"):
                cid = line[21:22]
                if not chain_ids or chain_ids[-1] != cid:
                    chain_ids.append(cid)
    return {"records": counts, "chain_id_runs": "".join(c if c != " " else "_" for c in chain_ids)}


def quality(summary):
    """bond_ok / clash means of a pipeline summary (before relaxation)."""
    def before(key):
        v = summary.get(key)
        return v.get("before") if isinstance(v, dict) else v
    return {"bond_ok_percent": before("bond_ok_percent"), "clash_percent": before("clash_percent"),
            "model": summary.get("model"), "frames_written": summary.get("frames_written")}


def attach(simulation, out_pdb, interval, on_first=None, minimize=False):
    """Append a frame-0 catcher and ``BackmapReporter(out_pdb, interval, model=None, deterministic=True)`` to
    ``simulation.reporters``; returns (reporter, catcher)."""
    from openmm_backmap import BackmapReporter

    first = FirstFrame(interval, on_first)
    rep = BackmapReporter(out_pdb, reportInterval=interval, model=None, deterministic=True, force=True,
                          minimize=minimize)
    simulation.reporters.append(first)
    simulation.reporters.append(rep)
    return rep, first


def run_with_reporter(simulation, out_pdb, interval, reports, on_first=None, minimize=False):
    """:func:`attach`, then step ``interval * reports`` steps; returns (summary, FirstFrame, seconds)."""
    rep, first = attach(simulation, out_pdb, interval, on_first, minimize)
    t0 = time.perf_counter()
    try:
        simulation.step(interval * reports)
    finally:
        rep.close()
    return rep.summary(), first, time.perf_counter() - t0


def convert_file(cg_file, out_pdb, topology=None, minimize=False):
    """``openmm-backmap convert CG [-t TOP] -o OUT --deterministic --force`` through its Python entry point."""
    from openmm_backmap import convert_trajectory

    cmd = ["openmm-backmap", "convert", str(cg_file)] + (["-t", str(topology)] if topology else []) + [
        "-o", str(out_pdb), "--deterministic", "--force"] + (["--minimize"] if minimize else [])
    try:
        summary = convert_trajectory(str(cg_file), str(out_pdb), topology=None if topology is None else str(topology),
                                     deterministic=True, force=True, minimize=minimize)
        result = {"command": " ".join(cmd), **quality(summary), "written": chains_of(out_pdb)}
    except Exception as err:  # noqa: BLE001 - a comparison, not the point of the run
        result = {"command": " ".join(cmd), "error": f"{type(err).__name__}: {err}"}
    return result


def write_fixture(folder, name, simulation, first, engine_files, meta):
    """Write ``NAME.json`` (topology, frame 0, counts), ``NAME.system.xml.gz`` and copies of the engine files,
    then check that the rebuilt fixture has the real topology's and System's counts and energy."""
    import openmm
    import openmm.unit as unit

    os.makedirs(folder, exist_ok=True)
    top, system = simulation.topology, simulation.system
    pos, box = state_positions_nm(first.state)
    energy = reference_energy(system, top, pos, box)
    data = {
        **meta,
        "counts": clients_fixtures.describe(top, system),
        "frame0": {"step": int(first.step), "time_ps": float(first.state.getTime().value_in_unit(unit.picosecond)),
                   "positions_nm": pos, "box_nm": box if system.usesPeriodicBoundaryConditions() else None,
                   "reference_potential_kj_mol": energy},
        "topology": clients_fixtures.topology_to_dict(top),
    }
    with open(os.path.join(folder, f"{name}.json"), "w") as fh:
        json.dump(data, fh, separators=(",", ":"))
        fh.write("\n")
    with gzip.GzipFile(os.path.join(folder, f"{name}.system.xml.gz"), "wb", mtime=0) as fh:
        fh.write(openmm.XmlSerializer.serialize(system).encode())
    copies = {}
    for src, dst in engine_files.items():
        shutil.copyfile(src, os.path.join(folder, f"{name}.{dst}"))
        copies[dst] = f"{name}.{dst}"
    # round trip: the rebuilt fixture must match the real objects
    t2, s2, p2, b2 = clients_fixtures.load_client_fixture(name, folder)
    same_topology = clients_fixtures.topology_to_dict(t2) == clients_fixtures.topology_to_dict(top)
    same_counts = clients_fixtures.describe(t2, s2) == data["counts"]
    sim = clients_fixtures.build_simulation(name, folder)
    e2 = sim.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    check = {"same_topology": same_topology, "same_counts": same_counts, "reference_energy_real": energy,
             "reference_energy_fixture": e2, "files": copies,
             "sizes_bytes": {f: os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
                             if f.startswith(name + ".")}}
    if not (same_topology and same_counts and abs(e2 - energy) <= 1e-6 * max(1.0, abs(energy))):
        raise RuntimeError(f"fixture {name} does not reproduce the engine's objects: {check}")
    return check


def reference_energy(system, topology, pos_nm, box_nm):
    """Potential energy (kJ/mol) of the real System at frame 0 on the Reference platform."""
    import copy

    import openmm
    import openmm.unit as unit

    integ = openmm.VerletIntegrator(0.001)
    ctx = openmm.Context(copy.deepcopy(system), integ, openmm.Platform.getPlatformByName("Reference"))
    if system.usesPeriodicBoundaryConditions():
        ctx.setPeriodicBoxVectors(*[openmm.Vec3(*v) for v in box_nm])
    ctx.setPositions([openmm.Vec3(*p) for p in pos_nm] * unit.nanometer)
    e = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    del ctx, integ
    return float(e)


def cpu_platform(threads):
    import openmm

    return openmm.Platform.getPlatformByName("CPU"), {"Threads": str(threads)}


def dump(path, obj):
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2, default=str)
        fh.write("\n")
    print(json.dumps(obj, indent=2, default=str))
