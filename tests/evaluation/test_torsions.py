"""Torsions and KL divergences (openmm_backmap.evaluation.torsions)."""

import numpy as np
import pytest

import openmm_backmap.evaluation as M

SEED = 1234


def test_dihedral_known_geometry_iupac_sign():
    t = np.radians(60)
    p0, p1, p2 = np.array([1.0, 0, 0]), np.zeros(3), np.array([0, 0, 1.0])
    assert M.dihedral_deg(p0, p1, p2, [np.cos(t), np.sin(t), 1]) == pytest.approx(60.0)
    assert M.dihedral_deg(p0, p1, p2, [np.cos(t), -np.sin(t), 1]) == pytest.approx(-60.0)
    assert M.dihedral_deg(p0, p1, p2, [-1, 0, 1]) == pytest.approx(180.0)  # trans
    assert M.dihedral_deg(p0, p1, p2, [1, 0, 1]) == pytest.approx(0.0)  # cis
    angles = np.radians([-170, -90, -10, 30, 120])
    p3 = np.stack([np.cos(angles), np.sin(angles), np.ones(5)], 1)
    out = M.dihedral_deg(np.broadcast_to(p0, (5, 3)), np.broadcast_to(p1, (5, 3)), np.broadcast_to(p2, (5, 3)), p3)
    assert out.shape == (5,)
    assert np.allclose(out, [-170, -90, -10, 30, 120])


def test_backbone_and_chi_match_mdtraj(trpcage, tests_data):
    import mdtraj as md

    traj = md.load(str(tests_data / "trpcage.pdb"))
    phi, psi = M.backbone_dihedrals_deg(trpcage)
    assert phi.shape == psi.shape == (1, 20)
    assert np.isnan(phi[0, 0]) and np.isnan(psi[0, -1])
    assert np.allclose(phi[0, 1:], np.degrees(md.compute_phi(traj)[1][0]), atol=1e-4)
    assert np.allclose(psi[0, :-1], np.degrees(md.compute_psi(traj)[1][0]), atol=1e-4)
    chi = M.chi_dihedrals_deg(trpcage)
    assert chi.shape == (1, 20, 4)
    for k, fn in enumerate([md.compute_chi1, md.compute_chi2, md.compute_chi3, md.compute_chi4]):
        ours = chi[0, :, k][np.isfinite(chi[0, :, k])]
        ref = np.degrees(fn(traj)[1][0])
        assert len(ours) == len(ref), f"chi{k + 1}"
        assert np.allclose((ours - ref + 180) % 360 - 180, 0, atol=1e-4), f"chi{k + 1}"
    assert np.isnan(chi[0, 9]).all()  # GLY10 has no chi


def test_no_phi_psi_across_chain_breaks(trpcage):
    seg = trpcage.segment_start.copy()
    seg[10] = True
    phi, psi = M.backbone_dihedrals_deg(trpcage, segment_start=seg)
    assert np.isnan(phi[0, 10]) and np.isnan(psi[0, 9])
    assert np.isnan(phi[0, 0]) and np.isnan(psi[0, 19])
    assert np.isfinite(np.delete(phi[0], [0, 10])).all()
    assert np.isfinite(np.delete(psi[0], [9, 19])).all()


def test_kl_divergence():
    rng = np.random.default_rng(SEED)
    a = rng.normal(-60, 15, 5000)
    assert M.kl_divergence(a, a.copy()) == pytest.approx(0.0, abs=1e-9)
    assert M.kl_divergence(a, rng.normal(-60, 15, 5000)) < 0.05  # same distribution, new sample
    assert M.kl_divergence(a, rng.normal(60, 15, 5000)) > 5.0  # disjoint
    # the pseudo-count bounds the divergence of disjoint histograms
    big = M.kl_divergence([0.5], [100.5], pseudo_count=1e-6)
    assert big == pytest.approx(np.log((1 + 1e-6) / 1e-6) * 1 / (1 + 36e-6), rel=1e-3)
    assert M.kl_divergence([0.5], [100.5], pseudo_count=1e-3) < big
    # 2D: 36 x 36 bins; a shift by one 10 degree bin is detected
    pts = np.stack([rng.uniform(-80, -60, 500), rng.uniform(-50, -30, 500)], 1)
    assert M.kl_divergence(pts, pts) == pytest.approx(0.0, abs=1e-9)
    assert M.kl_divergence(pts, pts + [20, 0]) > 1.0
    # direction: KL(reference || generated); a one-bin reference inside a uniform generated histogram
    uniform = np.arange(-175.0, 180.0, 10.0)
    assert M.kl_divergence([5.0], uniform) == pytest.approx(np.log(36), rel=1e-3)
    assert M.kl_divergence(uniform, [5.0]) > 9.0  # ~ (35/36) ln((1/36) / 1e-6)
    assert np.isnan(M.kl_divergence([np.nan], [1.0]))
    with pytest.raises(ValueError, match="divide 360"):
        M.kl_divergence(a, a, bin_width_deg=7)


def test_dihedral_range_and_missing_points():
    """Planar torsions come out as exactly 0 or 180 (never -180 or beyond, though mdtraj works in float32)."""
    p0, p1, p2 = np.array([1.0, 0, 0]), np.zeros(3), np.array([0, 0, 1.0])
    for p3 in ([-1.0, 0, 1], [-1.0, -0.0, 1], [-3.0, 1e-12, 1], [-3.0, -1e-12, 1]):
        assert M.dihedral_deg(p0, p1, p2, p3) == 180.0
    rng = np.random.default_rng(SEED)
    p = rng.normal(size=(4, 1000, 3))
    out = M.dihedral_deg(*p)
    assert out.shape == (1000,) and np.all((out > -180.0) & (out <= 180.0))
    p[3, 7] = np.nan
    out = M.dihedral_deg(*p)
    assert np.isnan(out[7]) and np.isfinite(np.delete(out, 7)).all()


def test_missing_atoms_give_nan_torsions(trpcage):
    from openmm_backmap.structure import ProteinEnsemble

    lay = trpcage.layout
    mask = trpcage.mask.copy()
    mask[0, lay.index(4, "CA")] = False  # phi 4, psi 4 and chi1 4 need it
    mask[0, lay.index(2, "CD1")] = False  # TYR3 chi2
    ens = ProteinEnsemble(trpcage.sequence, trpcage.xyz, mask, trpcage.segment_start, trpcage.chain_ids,
                          trpcage.residue_numbers, None, "masked")
    phi, psi = M.backbone_dihedrals_deg(ens)
    full_phi, full_psi = M.backbone_dihedrals_deg(trpcage)
    assert np.isnan(phi[0, 4]) and np.isnan(psi[0, 4])
    np.testing.assert_array_equal(np.delete(phi[0], 4), np.delete(full_phi[0], 4))
    np.testing.assert_array_equal(np.delete(psi[0], 4), np.delete(full_psi[0], 4))
    chi, full_chi = M.chi_dihedrals_deg(ens), M.chi_dihedrals_deg(trpcage)
    assert np.isnan(chi[0, 4, 0]) and np.isnan(chi[0, 2, 1]) and np.isfinite(full_chi[0, [4, 2], [0, 1]]).all()
    assert np.isfinite(chi[0, 2, 0])
