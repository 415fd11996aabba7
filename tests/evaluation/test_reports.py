"""Whole-ensemble evaluation, files, JSON and the CLI verb (openmm_backmap.evaluation.reports)."""

import json
import warnings

import numpy as np
import pytest

import openmm_backmap.evaluation as M
from openmm_backmap.evaluation.reports import _jsonable
from openmm_backmap.structure import LoadWarning
from openmm_backmap.structure.ensemble import ProteinEnsemble

SEED = 1234


def _xyz(ens):
    return ens.xyz[0].astype(np.float64)


def _copy(ens, xyz):
    xyz = np.asarray(xyz, dtype=np.float32)
    if xyz.ndim == 2:
        xyz = xyz[None]
    return ProteinEnsemble(ens.sequence, xyz, np.isfinite(xyz).all(-1), ens.segment_start, ens.chain_ids,
                           ens.residue_numbers, None, "copy")


def test_evaluate_trpcage_vs_itself_and_noisy(trpcage, tmp_path):
    r = M.evaluate(trpcage, trpcage)
    assert r["rmsd_angstrom"]["mean"] == 0.0 and r["rmsd_sym_angstrom"]["mean"] == 0.0
    assert r["ged"]["mean"] == 0.0 and r["clash_percent"]["mean"] == 0.0
    assert r["bond_ok_percent"]["mean"] == 100.0
    assert all(abs(v) < 1e-9 for v in r["kl"].values())
    assert set(r["kl"]) == {"ramachandran", "phi", "psi", "chi1", "chi2", "chi3", "chi4"}
    assert r["kl_bin_width_deg"] == 10.0 and r["kl_pseudo_count"] == 1e-6
    assert r["units"]["rmsd_angstrom"] == "Å" and r["units"]["clash_percent"] == "%"

    rng = np.random.default_rng(SEED)
    x = _xyz(trpcage)
    noisy = _copy(trpcage, x + rng.normal(scale=0.01, size=(4,) + x.shape))  # 0.1 Å per coordinate
    r = M.evaluate(trpcage, noisy, plots_dir=tmp_path, name="noisy")
    assert r["n_generated_frames"] == 4 and r["samples_per_frame"] == 4
    assert len(r["rmsd_angstrom"]["per_frame"]) == 4
    assert r["rmsd_angstrom"]["mean"] == pytest.approx(np.sqrt(3) * 0.1, rel=0.15)
    assert r["rmsd_sym_angstrom"]["mean"] <= r["rmsd_angstrom"]["mean"] + 1e-12
    assert r["rmsd_angstrom"]["std"] > 0
    assert 0 < r["bond_ok_percent"]["mean"] < 100
    assert r["kl"]["phi"] > 0
    assert (tmp_path / "noisy_ramachandran.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = M.format_table(r)
    assert "Å" in table and "%" in table and "bin width 10 degrees" in table and "1e-06" in table


def test_evaluate_handles_missing_atoms_and_empty_frames(trpcage, tmp_path):
    x = _xyz(trpcage)
    gen = np.stack([x, x, x])
    gen[1, trpcage.layout.index(7, "NZ")] += [0.03, 0.04, 0]  # 0.5 Å shift
    gen[1, :5] = np.nan  # and five atoms missing
    gen[2] = np.nan  # a failed frame
    with pytest.warns(LoadWarning, match="lack 5 of the reference's heavy atoms"):
        r = M.evaluate(trpcage, _copy(trpcage, gen))
    rmsd = r["rmsd_angstrom"]
    assert rmsd["per_frame"][0] == 0.0
    assert rmsd["per_frame"][1] == pytest.approx(np.sqrt(0.25 / (trpcage.n_atoms - 5)))
    assert np.isnan(rmsd["per_frame"][2]) and rmsd["n_valid"] == 2
    assert rmsd["mean"] == pytest.approx(np.sqrt(0.25 / (trpcage.n_atoms - 5)) / 2)
    assert all(np.isnan(r[k]["per_frame"][2]) for k in ("ged", "clash_percent", "bond_ok_percent"))
    assert r["bond_ok_percent"]["per_frame"][1] < 100.0
    assert "(2/3 frames)" in M.format_table(r)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_jsonable(r), allow_nan=False))
    assert json.loads(path.read_text())["rmsd_angstrom"]["per_frame"][2] is None


def test_evaluate_rejects_different_sequences(trpcage):
    other = ProteinEnsemble.from_arrays(["GLY", "ALA"], np.zeros((1, 9, 3)))
    with pytest.raises(ValueError, match="sequences differ: the reference has 20 residues"):
        M.evaluate(trpcage, other)
    seq = list(trpcage.sequence)
    seq[9] = "ALA"  # GLY -> ALA
    mutant = ProteinEnsemble.from_arrays(seq, np.zeros((1, trpcage.n_atoms + 1, 3)))
    with pytest.raises(ValueError, match="residue 10 is GLY in the reference but ALA"):
        M.evaluate(trpcage, mutant)



def test_evaluate_rejects_unpairable_frame_counts(trpcage):
    x = _xyz(trpcage)
    ref = np.stack([x, x + 0.01])
    with pytest.raises(ValueError, match="multiple"):
        M.evaluate(_copy(trpcage, ref), _copy(trpcage, np.stack([x] * 3)))


def _write_samples(trpcage, tmp_path):
    """A 3-frame reference and 2 noisy samples per frame (frame-major) as DCD + topology PDB."""
    rng = np.random.default_rng(SEED)
    x = _xyz(trpcage)
    frames = x + np.concatenate([np.zeros((1,) + x.shape), rng.normal(scale=0.03, size=(2,) + x.shape)])
    ref = _copy(trpcage, frames).to_mdtraj()
    top = tmp_path / "top.pdb"
    ref[0].save_pdb(str(top))
    ref.save_dcd(str(tmp_path / "ref.dcd"))
    ref[np.repeat(np.arange(3), 2)].save_dcd(str(tmp_path / "gen.dcd"))
    return top, tmp_path / "ref.dcd", tmp_path / "gen.dcd"


def test_evaluate_files_samples_and_stride(trpcage, tmp_path):
    top, ref, gen = _write_samples(trpcage, tmp_path)
    r = M.evaluate_files(ref, gen, reference_topology=top, generated_topology=top, json_path=tmp_path / "r.json")
    assert r["n_reference_frames"] == 3 and r["n_generated_frames"] == 6 and r["samples_per_frame"] == 2
    assert np.allclose(r["rmsd_angstrom"]["per_frame"], 0, atol=1e-3)  # DCD float32 round-off only
    # stride keeps every 2nd reference frame and all samples paired with it
    r = M.evaluate_files(ref, gen, reference_topology=top, generated_topology=top, stride=2)
    assert r["n_reference_frames"] == 2 and r["n_generated_frames"] == 4
    assert np.allclose(r["rmsd_angstrom"]["per_frame"], 0, atol=1e-3)
    data = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data["units"]["rmsd_angstrom"] == "Å" and len(data["ged"]["per_frame"]) == 6


def test_cli_evaluate(trpcage, tmp_path, capsys):
    from openmm_backmap.cli import main

    top, ref, gen = _write_samples(trpcage, tmp_path)
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(ref), str(gen), "-t", str(top), "-t", str(top), "--json", str(out),
                 "--plots", str(tmp_path / "plots")]) == 0
    printed = capsys.readouterr().out
    assert "RMSD" in printed and "Å" in printed and "KL(reference || generated)" in printed
    assert json.loads(out.read_text())["n_generated_frames"] == 6
    assert [p.name for p in (tmp_path / "plots").glob("*.png")] == ["gen_ramachandran.png"]
    # mismatched frame counts: a one-line error and status 2
    ref_pdb = tmp_path / "ref.pdb"
    _copy(trpcage, np.stack([_xyz(trpcage)] * 4)).to_mdtraj().save_pdb(str(ref_pdb))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["evaluate", str(ref_pdb), str(gen), "-t", str(top)]) == 2
    assert "multiple" in capsys.readouterr().err


def test_evaluate_files_nmr_models(shared_data, tmp_path):
    """2EQQ: the 20 NMR models against model 1, checked against a direct mdtraj computation."""
    import mdtraj as md

    from openmm_backmap.io import load_ensemble

    path = shared_data / "eval" / "nmr" / "2EQQ.pdb.gz"
    r = M.evaluate_files(path, path, plots_dir=tmp_path, json_path=tmp_path / "2eqq.json")
    assert r["n_generated_frames"] == 20 and r["rmsd_angstrom"]["mean"] == 0.0
    assert r["bond_ok_percent"]["mean"] == 100.0 and r["ged"]["mean"] == 0.0
    assert len(r["plots"]) == 1 and (tmp_path / "2EQQ_ramachandran.png").stat().st_size > 1000
    assert json.loads((tmp_path / "2eqq.json").read_text())["n_residues"] == 28

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = load_ensemble(path)
    r = M.evaluate(ens.select_frames([0]), ens, plots_dir=tmp_path, name="2eqq_models")
    traj = md.load(str(path))
    heavy = traj.topology.select("not element H and not name OXT")
    d = traj.xyz[:, heavy] - traj.xyz[0, heavy]
    expected = np.sqrt((d ** 2).sum(-1).mean(-1)) * 10
    assert np.allclose(r["rmsd_angstrom"]["per_frame"], expected, atol=1e-4)
    sym = np.array(r["rmsd_sym_angstrom"]["per_frame"])
    assert np.all(sym <= expected + 1e-6) and np.any(sym < expected - 1e-3)  # some ring/carboxylate flips
    assert r["ged"]["per_frame"][0] == 0.0 and max(r["ged"]["per_frame"]) < 0.05
    assert r["kl"]["ramachandran"] > 0


def test_evaluate_counts_d_residues_and_cis_peptides_on_each_side(trpcage, side_chain_through_plane):
    """A mirror-image side chain has every bond and no clash: only the stereochemistry block sees it."""
    x = trpcage.xyz[0].astype(np.float64)
    bad = side_chain_through_plane(trpcage, 3)
    res = M.evaluate(trpcage, _copy(trpcage, np.stack([x, bad])))
    stereo = res["stereochemistry"]
    assert stereo["d_residues"]["generated"]["per_frame"] == [0.0, 1.0]
    assert stereo["d_residues"]["reference"]["per_frame"] == [0.0]
    assert stereo["cis_nonproline_peptides"]["generated"]["mean"] == 0.0
    assert res["clash_percent"]["per_frame"] == [0.0, 0.0] and res["bond_ok_percent"]["per_frame"][1] == 100.0
    assert "D residues" in M.format_table(res)
