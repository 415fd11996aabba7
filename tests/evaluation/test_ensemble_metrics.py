"""Ensemble metrics: distributions compared without frame pairing (openmm_backmap.evaluation.ensemble)."""

import json
import warnings

import mdtraj as md
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

import openmm_backmap.evaluation as M
from openmm_backmap.evaluation.ensemble import dssp_fractions, radius_of_gyration_nm, torsion_samples
from openmm_backmap.evaluation.torsions import jensen_shannon

LN2 = np.log(2.0)
TORSIONS = ("ramachandran", "phi", "psi", "chi1", "chi2", "chi1_chi2")


@pytest.fixture(scope="module")
def train10(tests_data):
    """Trp-cage, 10 MD frames (tests/data/trpcage_train10.pdb.gz)."""
    from openmm_backmap.io import load_ensemble

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_ensemble(tests_data / "trpcage_train10.pdb.gz")


def test_ensemble_against_itself_is_exactly_zero(train10):
    m = M.ensemble_metrics(train10, train10)
    assert set(m["torsions"]) == set(TORSIONS)
    for key in TORSIONS:
        assert m["torsions"][key]["kl"] == 0.0 and m["torsions"][key]["js"] == 0.0, key
        assert m["torsions"][key]["n_reference"] == m["torsions"][key]["n_generated"] > 0
    assert m["dssp"]["mean_abs_difference"] == 0.0
    assert all(v == 0.0 for v in m["dssp"]["mean_abs_difference_by_class"].values())
    assert m["rg"]["js"] == 0.0 and m["rg"]["overlap"] == pytest.approx(1.0, abs=1e-12)
    assert m["rg"]["reference_mean_angstrom"] == m["rg"]["generated_mean_angstrom"]
    assert m["torsion_bin_width_deg"] == 10.0 and m["pseudo_count"] == 1e-6


def test_shifted_phi_gives_the_analytic_divergences():
    """Nine bins of 10 degrees, one sample each, shifted by 30 degrees: 6 bins shared, 3 + 3 not."""
    ref = np.arange(-175.0, -90.0, 10.0)  # bin centres of [-180, -90)
    gen = ref + 30.0
    # M = 1/9 on the 6 shared bins and 1/18 on the 6 others: KL(P || M) = KL(Q || M) = (3/9) ln 2
    assert M.js_divergence(ref, gen) == pytest.approx(LN2 / 3, rel=1e-12)
    eps, z = 1e-6, 1 + 36e-6  # the pseudo-count, then renormalised over 36 bins
    full, empty = (1 / 9 + eps) / z, eps / z  # a bin's probability with one sample, and with none
    # 3 bins only the reference fills, 3 only the generated fills; the 6 shared and 24 empty bins add 0
    expected_kl = 3 * full * np.log(full / empty) + 3 * empty * np.log(empty / full)
    assert M.kl_divergence(ref, gen) == pytest.approx(expected_kl, rel=1e-9)
    # the same shift of phi inside 2D (phi, psi) pairs gives the same values
    pairs = np.stack([ref, np.full(9, 45.0)], 1)
    assert M.js_divergence(pairs, pairs + [30.0, 0.0]) == pytest.approx(LN2 / 3, rel=1e-12)
    # a shift by less than the distance to the next bin edge is invisible; by 90 degrees nothing is shared
    assert M.js_divergence(ref, ref + 4.0) == 0.0
    assert M.js_divergence(ref, ref + 90.0) == pytest.approx(LN2, rel=1e-12)


def test_shifted_phi_sample_matches_a_direct_histogram_computation():
    """A von Mises phi sample against itself shifted by 25 degrees: JS as scipy computes it from np.histogram."""
    rng = np.random.default_rng(7)
    phi = np.degrees(rng.vonmises(np.radians(-70), 4.0, 4000))
    shifted = (phi + 25.0 + 180.0) % 360.0 - 180.0
    edges = np.linspace(-180, 180, 37)
    p, q = np.histogram(phi, edges)[0], np.histogram(shifted, edges)[0]
    js = M.js_divergence(phi, shifted)
    assert js == pytest.approx(jensenshannon(p, q) ** 2, rel=1e-9)
    assert 0.05 < js < 0.15  # ~ delta^2 / (8 sigma^2) = 0.09 for a 25 degree shift of a ~29 degree wide peak
    assert M.kl_divergence(phi, shifted) > js  # KL is the stricter, one-sided judge


def test_js_is_symmetric_and_bounded_by_ln2(train10):
    rng = np.random.default_rng(3)
    for _ in range(20):
        p, q = rng.integers(0, 5, 36), rng.integers(0, 5, 36)
        js = jensen_shannon(p, q)
        assert js == jensen_shannon(q, p) and 0.0 <= js <= LN2
        assert js == pytest.approx(jensenshannon(p, q) ** 2, rel=1e-9, abs=1e-15)
    assert jensen_shannon([3, 0, 0], [0, 2, 5]) == pytest.approx(LN2, rel=1e-12)
    assert np.isnan(jensen_shannon([0, 0], [1, 0]))
    a, b = train10.select_frames(slice(0, 4)), train10.select_frames(slice(4, 10))
    ab, ba = M.ensemble_metrics(a, b), M.ensemble_metrics(b, a)
    for key in TORSIONS:
        assert ab["torsions"][key]["js"] == pytest.approx(ba["torsions"][key]["js"], rel=1e-12, abs=1e-15)
        assert 0.0 < ab["torsions"][key]["js"] <= LN2
    assert ab["rg"]["js"] == pytest.approx(ba["rg"]["js"], abs=1e-15)
    assert ab["dssp"]["mean_abs_difference"] == pytest.approx(ba["dssp"]["mean_abs_difference"], abs=1e-15)


def test_different_frame_counts_match_direct_mdtraj_computation(train10, tests_data):
    """10 reference frames against 3 generated ones; each number recomputed from mdtraj directly."""
    gen = train10.select_frames([1, 5, 8])
    m = M.ensemble_metrics(train10, gen)
    assert m["n_reference_frames"] == 10 and m["n_generated_frames"] == 3
    traj = md.load(str(tests_data / "trpcage_train10.pdb.gz"))
    # Ramachandran: pooled (phi, psi) of residues 2..R-1, 36 x 36 bins
    phi, psi = np.degrees(md.compute_phi(traj)[1][:, :-1]), np.degrees(md.compute_psi(traj)[1][:, 1:])
    edges = np.linspace(-180, 180, 37)

    def hist(frames):
        return np.histogram2d(phi[frames].ravel(), psi[frames].ravel(), [edges, edges])[0].ravel()

    p, q = hist(np.arange(10)), hist([1, 5, 8])
    assert m["torsions"]["ramachandran"]["js"] == pytest.approx(jensenshannon(p, q) ** 2, rel=1e-6)
    assert m["torsions"]["ramachandran"]["n_reference"] == 10 * 18
    assert m["torsions"]["ramachandran"]["n_generated"] == 3 * 18
    pp, qq = p / p.sum() + 1e-6, q / q.sum() + 1e-6
    pp, qq = pp / pp.sum(), qq / qq.sum()
    assert m["torsions"]["ramachandran"]["kl"] == pytest.approx(np.sum(pp * np.log(pp / qq)), rel=1e-6)
    # DSSP: per-residue class fractions
    codes = md.compute_dssp(traj, simplified=True)
    for k, c in enumerate("HEC"):
        assert m["dssp"]["reference"][c] == pytest.approx((codes == c).mean(0).tolist())
        assert m["dssp"]["generated"][c] == pytest.approx((codes[[1, 5, 8]] == c).mean(0).tolist())
    diff = np.abs(np.stack([(codes == c).mean(0) - (codes[[1, 5, 8]] == c).mean(0) for c in "HEC"]))
    assert m["dssp"]["mean_abs_difference"] == pytest.approx(diff.mean(), rel=1e-12)
    assert m["dssp"]["mean_abs_difference"] > 0
    # Rg of the heavy atoms (nm inside, Å reported)
    heavy = traj.topology.select("not element H and not name OXT")
    rg = md.compute_rg(traj.atom_slice(heavy)).astype(np.float64)
    assert radius_of_gyration_nm(train10) == pytest.approx(rg, rel=1e-5)
    assert m["rg"]["reference_mean_angstrom"] == pytest.approx(10 * rg.mean(), rel=1e-5)
    assert m["rg"]["generated_std_angstrom"] == pytest.approx(10 * rg[[1, 5, 8]].std(), rel=1e-4)
    assert m["rg"]["n_atoms"] == len(heavy) and m["rg"]["bin_width_angstrom"] == 1.0


def test_rg_histogram_divergence_of_a_known_shift(train10):
    """Every generated Rg one 1 Å bin away from the reference's: no overlap, JS = ln 2."""
    xyz = train10.xyz.astype(np.float64)
    centre = xyz.mean(1, keepdims=True)
    rg = radius_of_gyration_nm(train10)
    target = (np.floor(rg.max() / 0.1) + 1.5) * 0.1  # the middle of the next bin up
    scaled = centre + (xyz - centre) * (target / rg)[:, None, None]
    gen = type(train10)(train10.sequence, scaled, train10.mask, train10.segment_start, train10.chain_ids,
                        train10.residue_numbers, None, "scaled")
    m = M.ensemble_metrics(train10, gen)
    assert m["rg"]["generated_mean_angstrom"] == pytest.approx(10 * target, rel=1e-5)
    assert m["rg"]["overlap"] == 0.0 and m["rg"]["js"] == pytest.approx(LN2, rel=1e-12)
    assert m["torsions"]["phi"]["js"] == pytest.approx(0.0, abs=1e-9)  # scaling keeps every torsion


def test_torsion_samples_and_dssp_shapes(train10):
    s = torsion_samples(train10)
    assert s["ramachandran"].shape == (200, 2) and s["chi1_chi2"].shape == (200, 2)
    f, n = dssp_fractions(train10)
    assert f.shape == (20, 3) and n == 10 and np.allclose(f.sum(1), 1.0)
    missing = train10.mask.copy()
    missing[0, train10.layout.index(3, "O")] = False  # a frame without a backbone O is left out of DSSP
    gen = type(train10)(train10.sequence, train10.xyz, missing, train10.segment_start, train10.chain_ids,
                        train10.residue_numbers, None, "missing O")
    assert dssp_fractions(gen)[1] == 9


def test_evaluate_ensemble_with_unpaired_frames(train10):
    gen = train10.select_frames(slice(0, 7))
    with pytest.raises(ValueError, match="multiple.*ensemble=True"):
        M.evaluate(train10, gen)
    r = M.evaluate(train10, gen, ensemble=True)
    assert r["paired"] is False and r["samples_per_frame"] is None and r["rmsd_angstrom"] is None
    assert r["ensemble"]["n_generated_frames"] == 7 and r["ensemble"]["torsions"]["phi"]["js"] > 0
    assert r["kl"]["phi"] == r["ensemble"]["torsions"]["phi"]["kl"]  # the same histograms
    table = M.format_table(r)
    assert "frames not paired" in table and "ensemble metrics" in table and "radius of gyration" in table
    r = M.evaluate(train10, train10, ensemble=True)  # paired: per-frame metrics and ensemble metrics
    assert r["paired"] and r["rmsd_angstrom"]["mean"] == 0.0 and r["ensemble"]["rg"]["js"] == 0.0


def test_cli_evaluate_ensemble(train10, tmp_path, capsys):
    from openmm_backmap.cli import main

    ref, gen, out = tmp_path / "ref.pdb", tmp_path / "gen.pdb", tmp_path / "out.json"
    train10.to_mdtraj().save_pdb(str(ref))
    train10.select_frames(slice(2, 9)).to_mdtraj().save_pdb(str(gen))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["evaluate", str(ref), str(gen)]) == 2
        err = capsys.readouterr().err
        assert "--ensemble" in err and "ensemble=True" not in err
        assert main(["evaluate", str(ref), str(gen), "--ensemble", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ensemble metrics: 7 generated vs 10 reference" in printed and "JS" in printed
    data = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    e = data["ensemble"]
    assert set(e["torsions"]) == set(TORSIONS) and e["rg"]["reference_mean_angstrom"] > 5
    assert len(e["dssp"]["reference"]["H"]) == 20 and data["rmsd_angstrom"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unpaired with a stride: every 2nd frame of each side
        r = M.evaluate_files(ref, gen, stride=2, ensemble=True)
    assert r["n_reference_frames"] == 5 and r["n_generated_frames"] == 4
