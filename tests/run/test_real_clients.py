"""The reporter on the topologies real CG engines build, and ``convert`` on the files they write, agree.

The fixtures in ``tests/data/clients`` were captured from real runs (``benchmarks/clients/*_run.py``): the engine's
exact ``Topology`` and ``System`` and its frame-0 file. They stand in for the engines, which CI cannot install:

- martini_openmm (Martini 3, martinize2 ``-elastic`` of CASP T0862, two molecules): backbone ``BB``-``BB`` pairs
  declared as constraints have no bond in the ``Topology``;
- CALVADOS 3 (ubiquitin as a folded domain): centre-of-mass beads named ``CA``, no bond in the ``Topology``, chain
  bonds in a ``HarmonicBondForce``.

The shipped models run here (model=None picks them), on the Reference platform.
"""

import sys
import warnings
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest

openmm = pytest.importorskip("openmm")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clients_fixtures import CLIENTS_DATA, build_simulation, load_client_fixture  # noqa: E402

from openmm_backmap.run import BackmapReporter, convert_trajectory  # noqa: E402
from openmm_backmap.run.cg_chains import ChainBreakWarning, system_bonds  # noqa: E402

#: case -> (the engine's own CG file of frame 0, chains in the structure, scheme)
CASES = {
    "martini_openmm_T0862": ("martini_openmm_T0862.cg_frame0.pdb", 2, "martini3"),
    "calvados_ubq": ("calvados_ubq.frame0.pdb", 1, "com"),
}


def _chain_pairs(top, names):
    """Consecutive chain beads (atom indices) of each chain."""
    pairs = []
    for chain in top.chains():
        beads = [a.index for a in chain.atoms() if a.name in names]
        pairs += list(zip(beads[:-1], beads[1:]))
    return pairs


def test_the_fixtures_keep_the_engines_layout():
    top, system, _, _ = load_client_fixture("martini_openmm_T0862")
    bonded = {tuple(sorted((b.atom1.index, b.atom2.index))) for b in top.bonds()}
    constrained = {tuple(sorted(p)) for p in system_bonds(system).tolist()}
    bb = [tuple(sorted(p)) for p in _chain_pairs(top, {"BB"})]
    assert any(p not in bonded for p in bb)  # what made the reporter cut 73 chains
    assert all(p in bonded or p in constrained for p in bb)
    top, system, _, _ = load_client_fixture("calvados_ubq")
    assert top.getNumBonds() == 0 and len(system_bonds(system)) >= top.getNumAtoms() - 1


@pytest.mark.parametrize("case", sorted(CASES))
def test_reporter_on_the_engines_topology_agrees_with_convert_on_its_file(tmp_path, case):
    cg_file, n_chains, scheme = CASES[case]
    sim = build_simulation(case)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainBreakWarning)  # bonds decide: nothing from distances
        with BackmapReporter(str(tmp_path / "rep.pdb"), 1, model=None, deterministic=True, seed=0, device="cpu",
                             minimize=True, verbose=False) as rep:
            rep.report(sim, sim.context.getState(getPositions=True, enforcePeriodicBox=False))
    s = rep.summary()
    assert s["segments"] == n_chains and s["break_evidence"] == "bonds"
    # raw output: every bond right (a wrong chain break shows here first); the simulated Martini frame has one
    # side-chain contact (Asp4 OD1 - Asn25 CB, 0.96 Å: 2.2 % of residues) that the fast relaxer removes
    assert s["bond_ok_percent"]["before"] >= 99.9 and s["clash_percent"]["before"] <= 2.5
    assert s["bond_ok_percent"]["after"] >= 99.9 and s["clash_percent"]["after"] <= 0.5
    assert md.load(str(tmp_path / "rep.pdb")).topology.n_chains == n_chains
    conv = convert_trajectory(CLIENTS_DATA / cg_file, tmp_path / "conv.pdb", deterministic=True, seed=0,
                              device="cpu", minimize=True, progress=False)
    assert conv["segments"] == n_chains
    a, b = md.load(str(tmp_path / "rep.pdb")), md.load(str(tmp_path / "conv.pdb"))
    assert a.topology.n_atoms == b.topology.n_atoms
    rmsd_nm = np.sqrt(np.mean(np.sum((a.xyz[0] - b.xyz[0]) ** 2, axis=1)))
    assert rmsd_nm < 0.005  # the file rounds the beads to 0.001 nm
