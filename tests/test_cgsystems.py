"""CG OpenMM systems for examples and tests (openmm_backmap.cgsystems)."""

import os
import warnings

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
app = pytest.importorskip("openmm.app")

from openmm_backmap.cgsystems import RESIDUE_MASSES, bead_masses, calpha_go_model, elastic_network_model  # noqa: E402
from openmm_backmap.structure.ensemble import ProteinEnsemble  # noqa: E402

VILLIN = os.path.join(os.path.dirname(app.__file__), "data", "test.pdb")


def _kabsch_rmsd(a, b):
    a = a - a.mean(0)
    b = b - b.mean(0)
    u, s, vt = np.linalg.svd(a.T @ b)
    s[-1] *= np.sign(np.linalg.det(u @ vt))
    return float(np.sqrt(max((a ** 2).sum() + (b ** 2).sum() - 2 * s.sum(), 0.0) / len(a)))


def _run(system, positions, steps, seed, temperature=300.0, dt_ps=0.01, every=None):
    integrator = openmm.LangevinMiddleIntegrator(temperature, 1.0, dt_ps)
    integrator.setRandomNumberSeed(seed)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(positions)
    context.setVelocitiesToTemperature(temperature, seed)
    frames = []
    every = every or steps
    for _ in range(steps // every):
        integrator.step(every)
        frames.append(context.getState(getPositions=True, enforcePeriodicBox=False).getPositions(asNumpy=True)._value)
    return np.array(frames)


@pytest.fixture(scope="module")
def villin():
    from openmm_backmap.io import load_ensemble

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # waters and ions are dropped
        return load_ensemble(VILLIN)


def test_go_model_villin_stays_folded(villin, seed):
    top, system, pos = calpha_go_model(villin)
    assert system.getNumParticles() == top.getNumAtoms() == villin.n_residues == 35
    assert [r.name for r in top.residues()] == villin.sequence
    assert {a.name for a in top.atoms()} == {"CA"}
    assert top.getNumBonds() == villin.n_residues - 1
    np.testing.assert_allclose(pos, villin.ca_xyz[0], atol=1e-6)
    assert not system.usesPeriodicBoundaryConditions()
    # the native structure is a minimum of the bonded terms and the contacts
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pos)
    forces = ctx.getState(getForces=True).getForces(asNumpy=True)._value
    assert np.abs(forces).max() < 1.0  # kJ/mol/nm; only the weak non-native repulsion remains
    frames = _run(system, pos, 2000, seed, every=500)
    rmsd = np.array([_kabsch_rmsd(f, pos) for f in frames]) * 10
    assert np.isfinite(frames).all()
    assert np.median(rmsd) < 2.5 and rmsd.max() < 3.5  # Å


def test_go_model_unfolds_when_hot(villin, seed):
    """The stability check above can fail: a weak model at high temperature leaves the native state."""
    _, system, pos = calpha_go_model(villin, epsilon=2.0)
    frames = _run(system, pos, 2000, seed, temperature=600.0, every=500)
    assert max(_kabsch_rmsd(f, pos) for f in frames) * 10 > 4.0


def test_go_model_periodic_and_chain_breaks(trpcage, seed):
    lay = trpcage.layout
    keep_res = [r for r in range(trpcage.n_residues) if r not in (9, 10, 11)]
    keep = np.concatenate([np.arange(lay.residue_start[r], lay.residue_start[r + 1]) for r in keep_res])
    seg = np.zeros(len(keep_res), bool)
    seg[[0, 9]] = True
    ens = ProteinEnsemble([trpcage.sequence[r] for r in keep_res], trpcage.xyz[:, keep],
                          np.ones((1, len(keep)), bool), seg, ["A"] * len(keep_res), keep_res)
    top, system, pos = calpha_go_model(ens, box=4.0, mass="residue")
    assert system.usesPeriodicBoundaryConditions()
    assert top.getPeriodicBoxVectors() is not None
    bonds = system.getForce(0)
    assert bonds.getNumBonds() == ens.n_residues - 2  # no bond across the break
    bonded = [set(bonds.getBondParameters(b)[:2]) for b in range(bonds.getNumBonds())]
    assert {8, 9} not in bonded and {7, 8} in bonded
    # angles and torsions stay within the two segments (9 and 8 residues)
    assert system.getForce(1).getNumAngles() == (9 - 2) + (8 - 2)
    assert system.getForce(2).getNumTorsions() == 2 * ((9 - 3) + (8 - 3))  # periodicities 1 and 3
    assert all(len({p // 9 for p in system.getForce(2).getTorsionParameters(t)[:4]}) == 1
               for t in range(system.getForce(2).getNumTorsions()))
    assert system.getParticleMass(0).value_in_unit(openmm.unit.dalton) == pytest.approx(RESIDUE_MASSES["ASN"])
    frames = _run(system, pos, 500, seed)
    assert np.isfinite(frames).all()
    with pytest.raises(ValueError, match="twice the cutoff"):
        calpha_go_model(ens, box=2.0)


def _villin_beads(villin, size=5):
    groups = [list(range(i, min(i + size, villin.n_residues))) for i in range(0, villin.n_residues, size)]
    return groups, np.stack([villin.ca_xyz[:, g].mean(1) for g in groups], axis=1)  # (F, B, 3)


def test_enm_homogeneous_stable(villin, seed):
    groups, beads = _villin_beads(villin)
    top, system, pos = elastic_network_model(beads[0], cutoff=1.5, sequence=villin.sequence, residue_groups=groups)
    n = len(groups)
    assert system.getNumParticles() == top.getNumAtoms() == n == 7
    assert [a.name for a in top.atoms()] == [f"B{i + 1}" for i in range(n)]
    assert {r.name for r in top.residues()} == {"BEA"}
    masses = [system.getParticleMass(i).value_in_unit(openmm.unit.dalton) for i in range(n)]
    np.testing.assert_allclose(masses, bead_masses(villin.sequence, groups))
    assert masses[0] == pytest.approx(sum(RESIDUE_MASSES[s] for s in villin.sequence[:5]))
    springs = system.getForce(0)
    assert springs.getNumBonds() >= 3 * n / 2
    assert {springs.getBondParameters(b)[3].value_in_unit(springs.getBondParameters(b)[3].unit)
            for b in range(springs.getNumBonds())} == {500.0}
    frames = _run(system, pos, 2000, seed, every=500)
    assert max(_kabsch_rmsd(f, pos) for f in frames) < 0.2  # nm


def test_enm_heterogeneous_from_ensemble(villin, seed):
    """Spring constants from an ensemble: stiff where distances fluctuate little, soft where they fluctuate a lot."""
    _, go, go_pos = calpha_go_model(villin)
    ca_frames = _run(go, go_pos, 2000, seed, every=50)  # 40 frames of CA positions
    groups, _ = _villin_beads(villin)
    beads = np.stack([ca_frames[:, g].mean(1) for g in groups], axis=1)
    top, system, pos = elastic_network_model(beads, cutoff=1.5, k_min=10.0, k_max=1e4)
    springs = system.getForce(0)
    k = np.array([springs.getBondParameters(b)[3]._value for b in range(springs.getNumBonds())])
    assert k.min() >= 10.0 and k.max() <= 1e4 and k.std() > 0.1 * k.mean()
    # k_ij = kT / var(d_ij), clipped; r0 = mean distance
    d = np.linalg.norm(beads[:, :, None] - beads[:, None], axis=-1)
    pairs = np.array([springs.getBondParameters(b)[:2] for b in range(springs.getNumBonds())])
    kt = 0.0083144626 * 300.0
    np.testing.assert_allclose(k, np.clip(kt / d.var(0)[pairs[:, 0], pairs[:, 1]], 10.0, 1e4), rtol=1e-6)
    r0 = np.array([springs.getBondParameters(b)[2]._value for b in range(len(pairs))])
    np.testing.assert_allclose(r0, d.mean(0)[pairs[:, 0], pairs[:, 1]], rtol=1e-6)
    assert (k < 1e4).sum() > 3  # not everything clipped
    np.testing.assert_allclose(pos, beads[0])
    frames = _run(system, pos, 2000, seed, every=500)
    assert np.isfinite(frames).all() and max(_kabsch_rmsd(f, pos) for f in frames) < 0.3


def test_enm_periodic_box(villin, seed):
    _, beads = _villin_beads(villin)
    top, system, pos = elastic_network_model(beads[0], box=[6.0, 6.0, 6.0])
    assert system.usesPeriodicBoundaryConditions()
    box = system.getDefaultPeriodicBoxVectors()
    assert box[0][0].value_in_unit(openmm.unit.nanometer) == pytest.approx(6.0)
    # shifting one bead by a box vector changes nothing (minimum-image springs)
    moved = pos.copy()
    moved[0, 0] += 6.0
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(moved)
    assert ctx.getState(getEnergy=True).getPotentialEnergy()._value == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(_run(system, pos, 500, seed)).all()
    with pytest.raises(ValueError, match="shape"):
        elastic_network_model(np.zeros((3, 2)))
