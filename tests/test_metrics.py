"""Tests of openmm_backmap.evaluation.metrics: hand-made cases with known answers, then real files."""

import json
import warnings

import numpy as np
import pytest

from openmm_backmap.evaluation import metrics as M
from openmm_backmap.structure.ensemble import ProteinEnsemble

SEED = 1234  # local generators; the ``seed`` fixture would import torch for nothing


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _xyz(ens):
    return ens.xyz[0].astype(np.float64)


def _copy(ens, xyz):
    xyz = np.asarray(xyz, dtype=np.float32)
    if xyz.ndim == 2:
        xyz = xyz[None]
    return ProteinEnsemble(ens.sequence, xyz, np.isfinite(xyz).all(-1), ens.segment_start, ens.chain_ids,
                           ens.residue_numbers, None, "copy")


def _n_bonds(ens):
    return len(M.bond_graph(_xyz(ens), ens.layout.elements))


# --------------------------------------------------------------------------
# per-frame metrics on hand-made cases
# --------------------------------------------------------------------------
def test_perfect_copy_scores_perfectly(trpcage):
    x, lay = _xyz(trpcage), trpcage.layout
    assert M.rmsd(x, x.copy()) == 0.0
    assert M.rmsd_sym(x, x.copy(), trpcage.sequence) == 0.0
    assert M.ged(x, x.copy(), lay.elements) == 0.0
    assert M.clash(x.copy(), x, lay.atom_residue, lay.elements) == 0.0
    assert M.bond_ok(x, x.copy(), lay.elements) == 100.0


def test_bond_graph_matches_template_bonds(trpcage):
    graph = M.bond_graph(_xyz(trpcage), trpcage.layout.elements)
    template = np.sort(trpcage.layout.bonds(trpcage.segment_start), axis=1)
    assert set(map(tuple, graph.tolist())) == set(map(tuple, template.tolist()))
    assert np.all(graph[:, 0] < graph[:, 1])


def test_single_shifted_atom_rmsd(trpcage):
    x = _xyz(trpcage)
    n = len(x)
    gen = x.copy()
    gen[5] += [0.03, 0.04, 0.0]  # 0.5 Å
    assert M.rmsd(x, gen) == pytest.approx(np.sqrt(0.5 ** 2 / n), rel=1e-9)
    # a missing atom (NaN in the reference, or masked) is left out of the average
    ref = x.copy()
    ref[0] = np.nan
    assert M.rmsd(ref, gen) == pytest.approx(np.sqrt(0.5 ** 2 / (n - 1)), rel=1e-9)
    mask = np.ones(n, dtype=bool)
    mask[7] = False
    assert M.rmsd(x, gen, mask=mask) == pytest.approx(np.sqrt(0.5 ** 2 / (n - 1)), rel=1e-9)
    mask[5] = False  # the shifted atom itself
    assert M.rmsd(x, gen, mask=mask) == 0.0


def _stretch(ens, residue, atom, partner, length_angstrom=None, factor=None):
    """Move ``atom`` along its bond to ``partner`` to a new length (Å) or by a factor."""
    x = _xyz(ens)
    i, j = ens.layout.index(residue, atom), ens.layout.index(residue, partner)
    d = x[i] - x[j]
    gen = x.copy()
    gen[i] = x[j] + (d * factor if factor is not None else d / np.linalg.norm(d) * length_angstrom / 10.0)
    return x, gen


def test_broken_bond_raises_ged_and_lowers_bond_ok(trpcage):
    lay = trpcage.layout
    n_bonds = _n_bonds(trpcage)
    assert trpcage.sequence[7] == "LYS"
    x, gen = _stretch(trpcage, 7, "NZ", "CE", 2.2)  # beyond 1.3 * (0.76 + 0.71) = 1.911 Å: broken
    assert M.ged(x, gen, lay.elements) == pytest.approx(1.0 / n_bonds)
    assert M.bond_ok(x, gen, lay.elements) == pytest.approx(100.0 * (n_bonds - 1) / n_bonds)
    assert M.clash(gen, x, lay.atom_residue, lay.elements) == 0.0


def test_stretched_but_bonded_keeps_graph(trpcage):
    lay = trpcage.layout
    n_bonds = _n_bonds(trpcage)
    x, gen = _stretch(trpcage, 7, "NZ", "CE", factor=1.15)  # 15 % too long, still a bond in the graph
    assert np.linalg.norm(gen[lay.index(7, "NZ")] - gen[lay.index(7, "CE")]) < 0.1911
    assert M.ged(x, gen, lay.elements) == 0.0
    assert M.bond_ok(x, gen, lay.elements) == pytest.approx(100.0 * (n_bonds - 1) / n_bonds)
    x, gen = _stretch(trpcage, 7, "NZ", "CE", factor=1.08)  # 8 % too long: within tolerance
    assert M.bond_ok(x, gen, lay.elements) == 100.0
    x, gen = _stretch(trpcage, 7, "NZ", "CE", factor=0.88)  # 12 % too short: not
    assert M.bond_ok(x, gen, lay.elements) == pytest.approx(100.0 * (n_bonds - 1) / n_bonds)


def test_clash_counts_both_residues_and_ignores_reference_bonds(trpcage):
    lay = trpcage.layout
    x = _xyz(trpcage)
    target = lay.index(7, "NZ")  # LYS8 NZ
    moved = lay.index(12, "OG")  # SER13 OG, a side-chain tip
    others = lay.atom_residue != 7
    assert np.min(np.linalg.norm(x[others] - x[target], axis=1)) > 0.2  # nothing else near the target
    gen = x.copy()
    gen[moved] = x[target] + [0.05, 0.0, 0.0]  # 0.5 Å from NZ
    assert M.clash(gen, x, lay.atom_residue, lay.elements) == pytest.approx(100.0 * 2 / 20)
    # the peptide bond C(i)-N(i+1) at 1.1 Å is bonded in the reference graph: not a clash
    gen = x.copy()
    c, n = lay.index(3, "C"), lay.index(4, "N")
    gen[lay.residue_start[4]:] += (x[c] + (x[n] - x[c]) * 1.1 / (10 * np.linalg.norm(x[n] - x[c]))) - x[n]
    assert np.linalg.norm(gen[n] - gen[c]) < 0.12
    assert M.clash(gen, x, lay.atom_residue, lay.elements) == 0.0


def test_clash_synthetic_one_atom_residues():
    ref = np.array([[0, 0, 0], [0.5, 0, 0], [1.0, 0, 0], [1.5, 0, 0]])
    gen = ref.copy()
    gen[1] = [0.05, 0, 0]  # residues 0 and 1 at 0.5 Å
    assert M.clash(gen, ref, [0, 1, 2, 3], ["C"] * 4) == 50.0
    gen[3] = [1.0 + 0.125, 0, 0]  # 1.25 Å: not a clash
    assert M.clash(gen, ref, [0, 1, 2, 3], ["C"] * 4) == 50.0
    gen[3] = [1.0 + 0.115, 0, 0]  # 1.15 Å: a clash
    assert M.clash(gen, ref, [0, 1, 2, 3], ["C"] * 4) == 100.0


def test_clash_topology_known_answer():
    """Four two-atom residues on a line; bonds from a list, not from a reference structure."""
    res = [0, 0, 1, 1, 2, 2, 3, 3]
    xyz = np.array([[0.0, 0, 0], [0.15, 0, 0], [0.25, 0, 0], [0.40, 0, 0],  # residue 0 C-end to residue 1: 1.0 Å
                    [1.0, 0, 0], [1.15, 0, 0], [1.265, 0, 0], [1.40, 0, 0]])  # residues 2 and 3: 1.15 Å
    intra = [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert M.clash_topology(xyz, intra, res) == 100.0
    # the 1.0 Å pair 1-2 is bonded (a peptide bond, say): only residues 2 and 3 clash
    assert M.clash_topology(xyz, intra + [[2, 1]], res) == 50.0
    # pairs strictly closer than the distance clash
    assert M.clash_topology(xyz, intra + [[1, 2]], res, distance_angstrom=1.15) == 0.0
    assert M.clash_topology(xyz, intra + [[1, 2]], res, distance_angstrom=1.16) == 50.0
    # several frames at once; a frame without atoms is NaN; missing (NaN) atoms are left out, and the percentage
    # is over the residues that still have atoms
    frames = np.stack([xyz, xyz * 2, np.full_like(xyz, np.nan), xyz])
    frames[3, 6:] = np.nan  # residue 3 missing: residue 2 has nobody to clash with
    out = M.clash_topology(frames, intra + [[1, 2]], res)
    assert out.shape == (4,)
    np.testing.assert_array_equal(out[[0, 1, 3]], [50.0, 0.0, 0.0])
    assert np.isnan(out[2])
    frames[3, 1] = frames[3, 2] + [0.05, 0, 0]  # now residue 0 clashes with residue 1 (atoms 1 and 3, not bonded)
    assert M.clash_topology(frames[3], intra + [[1, 2]], res) == pytest.approx(100.0 * 2 / 3)
    with pytest.raises(ValueError, match="atom_residue"):
        M.clash_topology(xyz, intra, res[:-1])
    with pytest.raises(ValueError, match="outside"):
        M.clash_topology(xyz, [[0, 8]], res)


def test_clash_topology_agrees_with_clash(trpcage):
    """With the template bonds, clash_topology gives what clash gives with the bonds of the native structure."""
    lay = trpcage.layout
    x = _xyz(trpcage)
    bonds = lay.bonds(trpcage.segment_start)
    gen = x.copy()
    gen[lay.index(12, "OG")] = x[lay.index(7, "NZ")] + [0.05, 0.0, 0.0]  # SER13 OG 0.5 Å from LYS8 NZ
    c, n = lay.index(3, "C"), lay.index(4, "N")
    gen[lay.residue_start[4]:] += (x[c] + (x[n] - x[c]) * 1.1 / (10 * np.linalg.norm(x[n] - x[c]))) - x[n]
    frames = np.stack([x, gen])
    expected = M.clash(frames, x, lay.atom_residue, lay.elements)
    np.testing.assert_allclose(M.clash_topology(frames, bonds, lay.atom_residue), expected)
    assert expected.tolist() == [0.0, 10.0]
    # without the bonds, the short peptide bond C4-N5 reads as a clash
    assert M.clash_topology(gen, bonds[:0], lay.atom_residue) == pytest.approx(20.0)


def test_rmsd_sym_undoes_symmetric_swaps(trpcage):
    x, seq, lay = _xyz(trpcage), trpcage.sequence, trpcage.layout
    assert seq[8] == "ASP" and seq[2] == "TYR" and seq[15] == "ARG"
    gen = x.copy()
    for res, pairs in [(8, [("OD1", "OD2")]), (2, [("CD1", "CD2"), ("CE1", "CE2")]), (15, [("NH1", "NH2")])]:
        for a, b in pairs:
            i, j = lay.index(res, a), lay.index(res, b)
            gen[[i, j]] = gen[[j, i]]
    assert M.rmsd(x, gen) > 0.1
    assert M.rmsd_sym(x, gen, seq) == pytest.approx(0.0, abs=1e-9)
    assert np.allclose(M.symmetry_corrected(x, gen, seq)[0], x)
    # ASN OD1/ND2 are not symmetric: that swap is not undone
    gen = x.copy()
    i, j = lay.index(0, "OD1"), lay.index(0, "ND2")
    gen[[i, j]] = gen[[j, i]]
    assert M.rmsd(x, gen) > 0.01
    assert M.rmsd_sym(x, gen, seq) == pytest.approx(M.rmsd(x, gen))


def test_rmsd_sym_swaps_only_when_it_helps(trpcage):
    x, seq, lay = _xyz(trpcage), trpcage.sequence, trpcage.layout
    gen = x.copy()
    gen[lay.index(8, "OD1")] += [0.02, 0, 0]  # no swap helps a small shift
    assert M.rmsd_sym(x, gen, seq) == pytest.approx(M.rmsd(x, gen))
    # a missing partner atom disables the swap for that residue
    gen = x.copy()
    i, j = lay.index(8, "OD1"), lay.index(8, "OD2")
    gen[[i, j]] = gen[[j, i]]
    ref = x.copy()
    ref[j] = np.nan
    assert M.rmsd(ref, gen) > 0.01
    assert M.rmsd_sym(ref, gen, seq) == pytest.approx(M.rmsd(ref, gen))


# --------------------------------------------------------------------------
# frame pairing
# --------------------------------------------------------------------------
def test_frame_pairing_is_frame_major_and_mismatch_raises(trpcage):
    x = _xyz(trpcage)
    rng = np.random.default_rng(SEED)
    ref = np.stack([x, x + rng.normal(scale=0.05, size=x.shape)])  # 2 reference frames
    gen = np.repeat(ref, 3, axis=0)  # 3 samples per frame, frame-major
    assert M.pair_frames(2, 6).tolist() == [0, 0, 0, 1, 1, 1]
    assert np.all(M.rmsd(ref, gen) == 0.0)
    assert M.rmsd(ref, gen).shape == (6,)
    assert np.all(M.ged(ref, gen, trpcage.layout.elements) == 0.0)
    # interleaved order is wrong: those frames differ from their reference
    interleaved = M.rmsd(ref, np.tile(ref, (3, 1, 1)))  # r0 r1 r0 r1 r0 r1
    assert np.array_equal(interleaved == 0, [True, False, True, True, False, True])
    # one reference frame serves any number of generated frames
    assert M.rmsd(x, np.stack([x] * 5)).tolist() == [0.0] * 5
    with pytest.raises(ValueError, match="multiple"):
        M.pair_frames(2, 5)
    with pytest.raises(ValueError, match="multiple"):
        M.rmsd(ref, gen[:5])
    with pytest.raises(ValueError, match="multiple"):
        M.evaluate(_copy(trpcage, ref), _copy(trpcage, gen[:3]))


# --------------------------------------------------------------------------
# dihedrals and KL
# --------------------------------------------------------------------------
def test_dihedral_known_geometry_iupac_sign():
    t = np.radians(60)
    p0, p1, p2 = np.array([1.0, 0, 0]), np.zeros(3), np.array([0, 0, 1.0])
    assert M.dihedral(p0, p1, p2, [np.cos(t), np.sin(t), 1]) == pytest.approx(60.0)
    assert M.dihedral(p0, p1, p2, [np.cos(t), -np.sin(t), 1]) == pytest.approx(-60.0)
    assert M.dihedral(p0, p1, p2, [-1, 0, 1]) == pytest.approx(180.0)  # trans
    assert M.dihedral(p0, p1, p2, [1, 0, 1]) == pytest.approx(0.0)  # cis
    angles = np.radians([-170, -90, -10, 30, 120])
    p3 = np.stack([np.cos(angles), np.sin(angles), np.ones(5)], 1)
    out = M.dihedral(np.broadcast_to(p0, (5, 3)), np.broadcast_to(p1, (5, 3)), np.broadcast_to(p2, (5, 3)), p3)
    assert out.shape == (5,)
    assert np.allclose(out, [-170, -90, -10, 30, 120])


def test_backbone_and_chi_match_mdtraj(trpcage, tests_data):
    import mdtraj as md

    traj = md.load(str(tests_data / "trpcage.pdb"))
    phi, psi = M.backbone_dihedrals(trpcage)
    assert phi.shape == psi.shape == (1, 20)
    assert np.isnan(phi[0, 0]) and np.isnan(psi[0, -1])
    assert np.allclose(phi[0, 1:], np.degrees(md.compute_phi(traj)[1][0]), atol=1e-3)
    assert np.allclose(psi[0, :-1], np.degrees(md.compute_psi(traj)[1][0]), atol=1e-3)
    chi = M.chi_dihedrals(trpcage)
    assert chi.shape == (1, 20, 4)
    for k, fn in enumerate([md.compute_chi1, md.compute_chi2, md.compute_chi3, md.compute_chi4]):
        ours = chi[0, :, k][np.isfinite(chi[0, :, k])]
        ref = np.degrees(fn(traj)[1][0])
        assert len(ours) == len(ref), f"chi{k + 1}"
        assert np.allclose((ours - ref + 180) % 360 - 180, 0, atol=1e-3), f"chi{k + 1}"
    assert np.isnan(chi[0, 9]).all()  # GLY10 has no chi


def test_no_phi_psi_across_chain_breaks(trpcage):
    seg = trpcage.segment_start.copy()
    seg[10] = True
    phi, psi = M.backbone_dihedrals(trpcage, segment_start=seg)
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


# --------------------------------------------------------------------------
# evaluate, files, CLI
# --------------------------------------------------------------------------
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
    path.write_text(json.dumps(M._jsonable(r), allow_nan=False))
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

    from openmm_backmap.io.formats import load_ensemble

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


def test_structure_plot_writes_a_png(trpcage, tmp_path):
    lay = trpcage.layout
    x = trpcage.xyz[0]
    shifted = x + np.array([0.3, 0.0, 0.0])
    out = M.structure_plot(x, shifted, lay.bonds(trpcage.segment_start), lay.elements, tmp_path / "f" / "frame.png",
                           title="Trp-cage", highlight=lay.atom_residue == 5)
    from matplotlib.image import imread

    img = imread(out)
    assert img.shape[0] > 300 and img.shape[1] > 900
    # not a blank canvas: coloured bond pixels (nitrogen blue) are drawn
    blue = (img[..., 2] > 0.6) & (img[..., 0] < 0.3)
    assert blue.sum() > 50


def test_clashing_residues_agree_with_clash(trpcage):
    lay = trpcage.layout
    x = trpcage.xyz[0].copy()
    side = np.flatnonzero(lay.atom_residue == 5)[5:]
    target = np.flatnonzero(lay.atom_residue == 9)[0]
    x[side] += x[target] - x[side[0]] + 0.05  # residue 5's side chain into residue 9
    bad = M.clashing_residues(x, trpcage.xyz[0], lay.atom_residue, lay.elements)
    assert 5 in bad and len(bad) >= 2
    assert 100.0 * len(bad) / trpcage.n_residues == pytest.approx(M.clash(x, trpcage.xyz[0], lay.atom_residue,
                                                                          lay.elements))
    assert len(M.clashing_residues(trpcage.xyz[0], trpcage.xyz[0], lay.atom_residue, lay.elements)) == 0
