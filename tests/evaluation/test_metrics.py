"""Per-frame metrics (openmm_backmap.evaluation.metrics): hand-made cases with known answers."""

import numpy as np
import pytest

import openmm_backmap.evaluation as M

SEED = 1234  # local generators; the ``seed`` fixture would import torch for nothing


def _xyz(ens):
    return ens.xyz[0].astype(np.float64)


def _n_bonds(ens):
    return len(M.bond_graph(_xyz(ens), ens.layout.elements))


# --------------------------------------------------------------------------
# RMSD, graph edit distance, clashes, bond lengths
# --------------------------------------------------------------------------
def test_perfect_copy_scores_perfectly(trpcage):
    x, lay = _xyz(trpcage), trpcage.layout
    assert M.rmsd(x, x.copy()) == 0.0
    assert M.rmsd_sym(x, x.copy(), trpcage.sequence) == 0.0
    assert M.ged(x, x.copy(), lay.elements) == 0.0
    assert M.clash(x.copy(), x, lay.atom_residue, lay.elements) == 0.0
    assert M.bond_ok(x, x.copy(), lay.elements) == 100.0


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
