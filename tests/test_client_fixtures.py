"""The real-engine fixtures in tests/data/clients rebuild the engines' objects exactly (benchmarks/clients/).

They hold what martini_openmm, CALVADOS 3 and OpenABC hand a reporter: these tests pin the layouts that chain-break
detection has to cope with (constraint-only backbone pairs, topologies without bonds, several molecules in one
topology chain).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from clients_fixtures import CLIENTS_DATA, build_simulation, describe, fixture_names, load_client_fixture

openmm = pytest.importorskip("openmm")
unit = openmm.unit

NAMES = ["martini_openmm_T0862", "calvados_ubq", "openabc_histatin5x3"]


def _meta(name):
    return json.loads((CLIENTS_DATA / f"{name}.json").read_text())


def _pairs(system, kind):
    out = set()
    if kind == "constraints":
        for k in range(system.getNumConstraints()):
            out.add(frozenset(system.getConstraintParameters(k)[:2]))
    for f in system.getForces():
        if kind == "harmonic" and isinstance(f, openmm.HarmonicBondForce):
            out |= {frozenset(f.getBondParameters(k)[:2]) for k in range(f.getNumBonds())}
    return out


def test_all_fixtures_present():
    assert set(NAMES) <= set(fixture_names())


@pytest.mark.parametrize("name", NAMES)
def test_fixture_rebuilds_engine_objects(name):
    meta = _meta(name)
    top, system, pos, box = load_client_fixture(name)
    assert describe(top, system) == meta["counts"]
    assert len(pos) == top.getNumAtoms() == system.getNumParticles()
    sim = build_simulation(name)
    e = sim.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    ref = meta["frame0"]["reference_potential_kj_mol"]
    assert e == pytest.approx(ref, rel=1e-6, abs=1e-6)
    sim.step(10)
    xyz = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    assert np.isfinite(xyz).all()


def test_martini_openmm_backbone_pairs_are_constraints_without_topology_bonds():
    top, system, _, _ = load_client_fixture("martini_openmm_T0862")
    assert top.getNumChains() == 2 and top.getNumResidues() == 93  # one topology chain per martinize2 molecule
    bonds = {frozenset((b.atom1.index, b.atom2.index)) for b in top.bonds()}
    cons, harmonic = _pairs(system, "constraints"), _pairs(system, "harmonic")
    bb = []
    for chain in top.chains():
        idx = [a.index for a in chain.atoms() if a.name == "BB"]
        bb += [frozenset(p) for p in zip(idx[:-1], idx[1:])]
    assert len(bb) == 91
    assert all((p in cons) != (p in bonds) for p in bb)  # each BB-BB pair: a constraint or a topology bond
    assert sum(p in cons for p in bb) == 71 and sum(p in bonds for p in bb) == 20
    assert bonds == harmonic  # topology bonds = the .itp's [ bonds ] (backbone + elastic network)


def test_calvados_topology_has_no_bonds():
    top, system, _, _ = load_client_fixture("calvados_ubq")
    assert top.getNumBonds() == 0 and system.getNumConstraints() == 0
    assert {a.name for a in top.atoms()} == {"CA"}
    hb = [f for f in system.getForces() if isinstance(f, openmm.HarmonicBondForce)]
    assert [f.getNumBonds() for f in hb] == [75, 324]  # chain bonds, then the folded domain's restraints
    assert {frozenset(hb[0].getBondParameters(k)[:2]) for k in range(75)} == {frozenset((i, i + 1)) for i in range(75)}


def test_openabc_copies_share_one_topology_chain():
    top, system, _, _ = load_client_fixture("openabc_histatin5x3")
    assert top.getNumChains() == 1 and top.getNumBonds() == 0
    assert [r.id for r in top.residues()][:25] == [str(i) for i in range(1, 25)] + ["1"]
    harmonic = _pairs(system, "harmonic")
    assert len(harmonic) == 69
    assert frozenset((23, 24)) not in harmonic  # no bond between copies: 3 molecules in 1 topology chain
