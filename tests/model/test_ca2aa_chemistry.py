"""Chemistry across residues in the C-alpha step: peptide units, disulfide closure and proline phi."""

import math

import numpy as np
import pytest
import torch

from openmm_backmap.model.geometry import bond_angle, dihedral, place_atom
from openmm_backmap.model.steps import CA2AA, CA2AAConfig
from openmm_backmap.model.steps.ca2aa_chemistry import HINGE_ANGSTROM, peptide_atoms
from openmm_backmap.model.steps.ca2aa_templates import peptide_unit
from openmm_backmap.structure import AMINO_ACIDS, atom_layout
from openmm_backmap.structure.constants import PROLINE_PHI_RANGE_DEG

# N, CA, C, CB, SG (Å) of the disulfide Cys46-Cys54 of chain L of 1AHW (an antibody of the training corpus)
DISULFIDE = np.array([
    [[-21.40, -45.48, 34.05], [-22.86, -45.50, 34.08], [-23.44, -46.64, 33.28], [-23.41, -44.14, 33.63],
     [-23.06, -42.86, 34.87]],
    [[-25.04, -38.71, 33.48], [-24.12, -39.55, 34.20], [-23.30, -38.66, 35.13], [-23.25, -40.28, 33.19],
     [-22.02, -41.40, 33.92]],
])
CYS = AMINO_ACIDS.index("CYS")


@pytest.fixture(scope="module")
def step():
    torch.manual_seed(0)
    return CA2AA(CA2AAConfig(hidden=16, layers=1, neighbors=4)).eval()


def _cysteines(step, shifts, turn_rad=-2.0):
    """Residue slots (1, n, 14, 3) of the two disulfide cysteines, then copies of the first moved by ``shifts``
    (Å), with every SG turned ``turn_rad`` away from its reference chi1."""
    res = [DISULFIDE[0], DISULFIDE[1]] + [DISULFIDE[0] + np.asarray(s) for s in shifts]
    x = torch.full((1, len(res), 14, 3), float("nan"))
    for r, atoms in enumerate(res):
        a = torch.tensor(atoms, dtype=torch.float32)
        x[0, r, :5] = a[[0, 1, 2, 3, 3]]
        chi = dihedral(a[0], a[1], a[3], a[4])
        x[0, r, 4] = a[3]
        x[0, r, 5] = place_atom(a[0], a[1], a[3], step.zm_bond[CYS, 5], step.zm_angle[CYS, 5], chi + turn_rad)
    return x, torch.full((1, len(res)), CYS)


def test_disulfide_is_closed_with_its_bond_and_angles(step):
    x, types = _cysteines(step, [])
    before = float(torch.linalg.vector_norm(x[0, 0, 5] - x[0, 1, 5]))
    assert before > 2.6  # far from a bond: the SG rule cannot fire, the CB rule must
    out = step.close_disulfides(x, types)
    sg0, sg1, cb0, cb1 = out[0, 0, 5], out[0, 1, 5], out[0, 0, 4], out[0, 1, 4]
    assert float(torch.linalg.vector_norm(sg0 - sg1)) == pytest.approx(2.04, abs=0.03)
    for cb, sg, other in ((cb0, sg0, sg1), (cb1, sg1, sg0)):
        assert math.degrees(float(bond_angle(cb, sg, other))) == pytest.approx(104.0, abs=10.0)
        assert float(torch.linalg.vector_norm(sg - cb)) == pytest.approx(float(step.zm_bond[CYS, 5]), abs=1e-4)
    # near the experimental SG positions, and nothing else moved
    ref = torch.tensor(DISULFIDE[:, 4], dtype=torch.float32)
    assert float(torch.linalg.vector_norm(out[0, :2, 5] - ref, dim=-1).max()) < 0.7
    keep = torch.ones(14, dtype=torch.bool)
    keep[5] = False
    assert torch.equal(out[0, :, keep].nan_to_num(), x[0, :, keep].nan_to_num())


def test_metal_site_and_distant_cysteines_are_left_alone(step):
    x, types = _cysteines(step, [[3.0, 0.0, 0.0]])  # a third cysteine's CB within 5 Å of both: a metal site
    assert torch.equal(step.close_disulfides(x, types).nan_to_num(), x.nan_to_num())
    far, t2 = _cysteines(step, [])
    far[0, 1] += torch.tensor([8.0, 0.0, 0.0])
    assert torch.equal(step.close_disulfides(far, t2).nan_to_num(), far.nan_to_num())


def _proline_phis(step, trpcage, seeds):
    ca = torch.tensor(trpcage.ca_xyz)
    types = torch.tensor(trpcage.residue_types)
    seg = torch.tensor(trpcage.segment_start)
    lay = atom_layout(trpcage.sequence)
    pro = [r for r, s in enumerate(trpcage.sequence) if s == "PRO" and 0 < r < len(trpcage.sequence) - 1]
    phis = []
    for seed in seeds:
        with torch.no_grad():
            xyz = step(ca, types, seg, seed, 1.0)[0]
        for r in pro:
            p = [xyz[lay.index(r - 1, "C")], xyz[lay.index(r, "N")], xyz[lay.index(r, "CA")], xyz[lay.index(r, "C")]]
            phis.append(math.degrees(float(dihedral(*p))))
    return np.array(phis)


def test_proline_phi_is_kept_where_the_ring_closes(trpcage):
    """An untrained step draws peptide planes at random: without the fix many prolines get an impossible phi."""
    lo, hi = PROLINE_PHI_RANGE_DEG
    torch.manual_seed(1)
    free = CA2AA(CA2AAConfig(hidden=16, layers=1, neighbors=4, proline_phi=False, repack_sweeps=0)).eval()
    fixed = CA2AA(CA2AAConfig(hidden=16, layers=1, neighbors=4, repack_sweeps=0)).eval()
    fixed.load_state_dict(free.state_dict())
    before, after = _proline_phis(free, trpcage, range(6)), _proline_phis(fixed, trpcage, range(6))
    assert ((before < lo) | (before > hi)).sum() >= 3
    assert ((after >= lo) & (after <= hi)).all(), after
    # prolines that were fine keep their plane
    ok = (before >= lo) & (before <= hi)
    np.testing.assert_allclose(after[ok], before[ok], atol=1e-3)


def test_scripted_step_keeps_the_fixes(step, trpcage):
    scripted = torch.jit.script(step)
    x, types = _cysteines(step, [])
    np.testing.assert_allclose(scripted.close_disulfides(x, types).nan_to_num().numpy(),
                               step.close_disulfides(x, types).nan_to_num().numpy(), atol=1e-5)
    ca, t, seg = (torch.tensor(trpcage.ca_xyz), torch.tensor(trpcage.residue_types),
                  torch.tensor(trpcage.segment_start))
    with torch.no_grad():
        np.testing.assert_allclose(scripted(ca, t, seg, 4, 1.0).numpy(), step(ca, t, seg, 4, 1.0).numpy(), atol=1e-4)


@pytest.mark.parametrize("offset", [-0.4, -0.15, 0.0, 0.15, 0.4])
def test_peptide_unit_bends_its_angles_then_its_bonds(offset):
    """C-alpha pairs up to HINGE_ANGSTROM off the ideal 3.80 Å keep exact CA-C, C-N and N-CA bonds and the angles
    take the difference; beyond it, the unit is stretched along its axis (the bonds share the rest)."""
    trans = torch.tensor(peptide_unit(False), dtype=torch.float32)
    cis = torch.tensor(peptide_unit(True), dtype=torch.float32)
    ca, nxt = torch.zeros(1, 3), torch.tensor([[float(trans[3, 0]) + offset, 0.0, 0.0]])
    c, o, n = peptide_atoms(trans, cis, 3.3, HINGE_ANGSTROM, ca, nxt, torch.eye(3).unsqueeze(0), torch.tensor([0.4]))
    ideal = [float(torch.linalg.vector_norm(trans[0] - a)) for a in (torch.zeros(3), trans[2])]
    ideal.append(float(torch.linalg.vector_norm(trans[3] - trans[2])))
    got = [float(torch.linalg.vector_norm(c - ca)), float(torch.linalg.vector_norm(n - c)),
           float(torch.linalg.vector_norm(nxt - n))]
    if abs(offset) <= HINGE_ANGSTROM:
        np.testing.assert_allclose(got, ideal, atol=2e-3)
    else:
        np.testing.assert_allclose(got, ideal, rtol=0.06)
        assert (np.array(got) - ideal).sum() * offset > 0  # stretched or squeezed, never both
    ca_c_n = math.degrees(float(bond_angle(ca, c, n)))
    ideal_angle = math.degrees(float(bond_angle(torch.zeros(3), trans[0], trans[2])))
    if offset == 0.0:
        assert ca_c_n == pytest.approx(ideal_angle, abs=1e-3)
    else:  # longer pairs open the angles, shorter ones close them
        assert (ca_c_n - ideal_angle) * offset > 0
        assert abs(ca_c_n - ideal_angle) < 18.0


def test_carbonyl_pressed_into_a_residue_gets_another_plane(trpcage):
    """An untrained step's planes are random: some O atoms land inside other residues; the fix moves them out."""
    torch.manual_seed(2)
    free = CA2AA(CA2AAConfig(hidden=16, layers=1, neighbors=4, carbonyls=False, repack_sweeps=0)).eval()
    fixed = CA2AA(CA2AAConfig(hidden=16, layers=1, neighbors=4, repack_sweeps=0)).eval()
    fixed.load_state_dict(free.state_dict())
    ca, t, seg = (torch.tensor(trpcage.ca_xyz), torch.tensor(trpcage.residue_types),
                  torch.tensor(trpcage.segment_start))
    lay = trpcage.layout
    o = np.array([lay.index(r, "O") for r in range(trpcage.n_residues)])

    def pressed(step):
        n = 0
        for seed in range(6):
            with torch.no_grad():
                xyz = step(ca, t, seg, seed, 1.0)[0].numpy() * 10.0
            d = np.linalg.norm(xyz[o][:, None] - xyz[None], axis=-1)
            far = np.abs(np.arange(trpcage.n_residues)[:, None] - np.asarray(lay.atom_residue)[None]) > 1
            n += int(((d < 1.5) & far).any(1).sum())
        return n

    before, after = pressed(free), pressed(fixed)
    assert before >= 2 and after < before
