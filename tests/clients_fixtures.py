"""Load the real-engine fixtures in ``tests/data/clients/`` (captured by ``benchmarks/clients/*_run.py``).

Each case ``NAME`` has

* ``NAME.json``: the engine's exact ``openmm.app.Topology`` (chains, residues
  with names and ids, atoms with names, elements or None, ids, and the
  topology's bond list), frame-0 positions (nm) and box, and ``counts`` (what
  :func:`describe` said about the real topology and System);
* ``NAME.system.xml.gz``: the engine's ``System`` (``XmlSerializer``);
* the CG file the engine (or its tool chain) wrote, for ``openmm-backmap convert``.

:func:`load_client_fixture` rebuilds ``(topology, system, positions, box)`` so
a test can make an ``openmm.app.Simulation`` that has the engine's topology:
martini_openmm's, whose backbone BB-BB pairs are System constraints with no
topology bond, or CALVADOS's, with no topology bonds at all (chain bonds only
in ``HarmonicBondForce``s).

    >>> top, system, pos, box = load_client_fixture("martini_openmm_T0862")  # doctest: +SKIP
    >>> sim = build_simulation("martini_openmm_T0862")  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

CLIENTS_DATA = Path(__file__).parent / "data" / "clients"

__all__ = ["CLIENTS_DATA", "fixture_names", "topology_to_dict", "topology_from_dict", "describe",
           "load_client_fixture", "build_simulation"]


def fixture_names():
    """Names of the cases in ``tests/data/clients`` (files ``NAME.json``)."""
    return sorted(p.name[:-5] for p in CLIENTS_DATA.glob("*.json"))


def _vec_nm(v):
    import openmm.unit as unit

    return [float(x) for x in v.value_in_unit(unit.nanometer)]


def topology_to_dict(topology):
    """Everything an ``openmm.app.Topology`` holds, as JSON-ready data (atom indices are global)."""
    box = topology.getPeriodicBoxVectors()
    chains = []
    for chain in topology.chains():
        residues = []
        for res in chain.residues():
            residues.append({
                "name": res.name, "id": res.id, "insertion_code": res.insertionCode,
                "atoms": [[a.name, None if a.element is None else a.element.symbol, a.id] for a in res.atoms()],
            })
        chains.append({"id": chain.id, "residues": residues})
    bonds = [[b.atom1.index, b.atom2.index, None if b.type is None else str(b.type), b.order]
             for b in topology.bonds()]
    return {"box_vectors_nm": None if box is None else [_vec_nm(v) for v in box], "chains": chains, "bonds": bonds}


def topology_from_dict(data):
    """Rebuild the ``openmm.app.Topology`` of :func:`topology_to_dict` exactly."""
    import openmm
    import openmm.app as app
    import openmm.unit as unit
    from openmm.app.element import Element

    top = app.Topology()
    atoms = []
    for c in data["chains"]:
        chain = top.addChain(c["id"])
        for r in c["residues"]:
            res = top.addResidue(r["name"], chain, r["id"], r["insertion_code"])
            for name, symbol, atom_id in r["atoms"]:
                element = None if symbol is None else Element.getBySymbol(symbol)
                atoms.append(top.addAtom(name, element, res, atom_id))
    for i, j, btype, order in data["bonds"]:
        top.addBond(atoms[i], atoms[j], None if btype is None else getattr(app, btype), order)
    if data.get("box_vectors_nm") is not None:
        top.setPeriodicBoxVectors([openmm.Vec3(*v) for v in data["box_vectors_nm"]] * unit.nanometer)
    return top


def describe(topology, system):
    """Counts that must agree between an engine's real objects and the fixture rebuilt from them."""
    forces = []
    for f in system.getForces():
        entry = {"class": type(f).__name__}
        for getter in ("getNumBonds", "getNumParticles", "getNumExclusions", "getNumExceptions", "getNumAngles",
                       "getNumTorsions"):
            if hasattr(f, getter):
                entry[getter[6:].lower()] = int(getattr(f, getter)())
        forces.append(entry)
    return {
        "chains": topology.getNumChains(), "residues": topology.getNumResidues(), "atoms": topology.getNumAtoms(),
        "topology_bonds": topology.getNumBonds(), "particles": system.getNumParticles(),
        "constraints": system.getNumConstraints(), "virtual_sites": sum(system.isVirtualSite(i)
                                                                       for i in range(system.getNumParticles())),
        "periodic": bool(system.usesPeriodicBoundaryConditions()), "forces": forces,
    }


def load_client_fixture(name, folder=None):
    """The engine's topology, System, frame-0 positions and box of case ``name``.

    Returns
    -------
    topology : openmm.app.Topology
    system : openmm.System
    positions : openmm.unit.Quantity
        list of Vec3, nm
    box : tuple of three Vec3 Quantity (nm), or None for a non-periodic System
    """
    import openmm
    import openmm.unit as unit

    folder = Path(folder) if folder is not None else CLIENTS_DATA
    data = json.loads((folder / f"{name}.json").read_text())
    topology = topology_from_dict(data["topology"])
    with gzip.open(folder / f"{name}.system.xml.gz", "rt") as fh:
        system = openmm.XmlSerializer.deserialize(fh.read())
    positions = [openmm.Vec3(*p) for p in data["frame0"]["positions_nm"]] * unit.nanometer
    box = data["frame0"]["box_nm"]
    box = None if box is None else tuple(openmm.Vec3(*v) * unit.nanometer for v in box)
    return topology, system, positions, box


def build_simulation(name, folder=None, platform="Reference", step_fs=10.0):
    """An ``openmm.app.Simulation`` of the fixture on ``platform``, at frame 0 (Langevin, 300 K)."""
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    topology, system, positions, box = load_client_fixture(name, folder)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, step_fs * unit.femtosecond)
    sim = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName(platform))
    if box is not None:
        sim.context.setPeriodicBoxVectors(*box)
    sim.context.setPositions(positions)
    return sim
