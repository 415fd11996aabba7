"""Bead schemes as mappings (openmm_backmap.mapping.schemes), checked against martinize2 where vermouth is installed."""

import shutil
import subprocess

import mdtraj as md
import numpy as np
import pytest

from openmm_backmap.io import load_ensemble
from openmm_backmap.mapping import (SCHEMES, Hierarchy, LevelSpec, bead_residues, build_hierarchies, build_hierarchy,
                                    coarsen, com_mapping, martini_mapping, parse_levels, scheme_mapping)
from openmm_backmap.mapping.martini_tables import MARTINI_BEADS
from openmm_backmap.structure import AMINO_ACIDS, TEMPLATES, ProteinEnsemble, canonical_residue_name

#: Bead positions must match martinize2's within this (nm); PDB rounding alone is 0.00005 nm per coordinate.
MARTINIZE_TOLERANCE_NM = 0.01


@pytest.fixture(scope="module")
def fragment(tests_data):
    """36 residues of CASP target T0872 holding all 20 amino acids (heavy atoms)."""
    return load_ensemble(tests_data / "t0872_fragment.pdb")


def test_com_beads_are_mass_weighted_residue_centres(trpcage):
    m = com_mapping(trpcage.sequence)
    beads = m.apply(trpcage.xyz)[0]
    mass = np.array([md.element.get_by_symbol(e).mass for e in trpcage.layout.elements])
    for r in (0, 5, 19):
        atoms = np.flatnonzero(trpcage.layout.atom_residue == r)
        np.testing.assert_allclose(beads[r], (trpcage.xyz[0, atoms] * mass[atoms, None]).sum(0) / mass[atoms].sum(),
                                   atol=1e-6)
    assert m.name == "com" and m.bead_names == list(trpcage.sequence) and m.n_beads == 20
    # a tryptophan's centre of mass is far from its C-alpha, a glycine's close to it
    gap = np.linalg.norm(beads - trpcage.ca_xyz[0], axis=1)
    assert gap[trpcage.sequence.index("TRP")] > 0.2 and gap[trpcage.sequence.index("GLY")] < 0.1


@pytest.mark.parametrize("scheme", ["martini3", "martini2"])
def test_martini_table_covers_every_heavy_atom_once(scheme):
    for res in AMINO_ACIDS:
        beads = MARTINI_BEADS[scheme][res]
        assert beads[0][0] == "BB" and [b for b, _ in beads[1:]] == [f"SC{i}" for i in range(1, len(beads))]
        share = {}
        for _, atoms in beads:
            for atom, s in atoms:
                share[atom] = share.get(atom, 0.0) + s
        assert set(share) == set(TEMPLATES[res].atoms), res
        np.testing.assert_allclose(list(share.values()), 1.0, err_msg=res)
    # Martini 3 gives alanine a side-chain bead and tryptophan five, Martini 2 none and four
    assert len(MARTINI_BEADS["martini3"]["ALA"]) == 2 and len(MARTINI_BEADS["martini2"]["ALA"]) == 1
    assert len(MARTINI_BEADS["martini3"]["TRP"]) == 6 and len(MARTINI_BEADS["martini2"]["TRP"]) == 5


def test_martini_mapping_layout(fragment):
    m = martini_mapping(fragment.sequence)
    res = bead_residues(m)
    assert m.bead_names.count("BB") == fragment.n_residues and np.all(np.diff(res) >= 0)
    assert m.bead_names[np.flatnonzero(res == fragment.sequence.index("TRP"))[-1]] == "SC5"
    # PHE's ring atoms are shared between beads: the mapping is not a partition, shares sum to one per atom
    w = m.matrix()
    np.testing.assert_allclose((w > 0).sum(0).max(), 2)
    assert scheme_mapping("martini2", fragment.sequence).n_beads < m.n_beads
    assert SCHEMES == ("ca", "com", "martini3", "martini2")
    with pytest.raises(ValueError, match="unknown bead scheme 'blob'"):
        scheme_mapping("blob", fragment.sequence)


def test_missing_atoms_move_a_bead_and_an_empty_bead_is_an_error(trpcage):
    lys = trpcage.sequence.index("LYS")
    xyz = np.repeat(trpcage.xyz, 2, axis=0)
    xyz[1, trpcage.layout.index(lys, "NZ")] = np.nan
    ens = ProteinEnsemble.from_arrays(trpcage.sequence, xyz, source="gappy")
    out = coarsen(ens, "com,martini3")
    com, mar = out["com"][0], out["martini3"][0]
    assert np.isfinite(com).all() and np.isfinite(mar).all()
    sc2 = np.flatnonzero((bead_residues(out["martini3"][2]) == lys)
                         & (np.array(out["martini3"][2].bead_names) == "SC2"))[0]
    np.testing.assert_allclose(mar[1, sc2], xyz[1, trpcage.layout.index(lys, "CE")], atol=1e-6)  # CE alone is left
    assert np.linalg.norm(com[1, lys] - com[0, lys]) > 0.01
    xyz[1, trpcage.layout.index(lys, "CE")] = np.nan  # SC2 has no atom left
    with pytest.raises(ValueError, match=r"level 'martini3' needs atom\(s\) CE, NZ .*1 of 2 frame\(s\).*LYS8"):
        coarsen(ProteinEnsemble.from_arrays(trpcage.sequence, xyz, source="gappy"), "martini3")


def test_levels_with_schemes(trpcage, tmp_path):
    assert parse_levels("ca,com,martini3,ucg:4")[1:3] == [LevelSpec("com", "scheme"), LevelSpec("martini3", "scheme")]
    with pytest.raises(ValueError, match="map the atoms directly"):
        build_hierarchy(trpcage, "ca,com")
    hs = build_hierarchies(trpcage, "ca,com,martini3,ucg:4")
    assert list(hs) == ["ca", "com", "martini3", "ucg4"] and hs["ca"] is hs["ucg4"]
    assert hs["com"].levels == ["aa", "com"] and hs["martini3"].rho[1] == pytest.approx(20 / 46)
    out = coarsen(trpcage, "ca,com,martini3,ucg:4")
    assert {k: v[0].shape[1] for k, v in out.items()} == {"ca": 20, "com": 20, "martini3": 46, "ucg4": 4}
    top = out["com"][1]
    assert [a.name for a in top.atoms] == ["CA"] * 20 and top.n_bonds == 19
    top = out["martini3"][1]
    assert top.n_residues == 20 and [a.name for a in top.residue(5).atoms] == ["BB"] + [f"SC{i}" for i in range(1, 6)]
    assert top.n_bonds == 19 + (46 - 20)  # BB-BB along the chain, a bead chain within each residue
    # a level file of a scheme reads back as its one-step hierarchy
    hs["martini3"].to_level_json(tmp_path / "m.json", "martini3", source="x", n_frames=1)
    assert Hierarchy.from_json(tmp_path / "m.json") == hs["martini3"]


def _martinize(pdb, out_dir, ff="martini3001", extra=()):
    cg = out_dir / f"{pdb.stem}_{ff}_cg.pdb"
    subprocess.run(["martinize2", "-f", str(pdb), "-x", str(cg), "-o", str(out_dir / "topol.top"), "-ff", ff,
                    "-ss", "C", "-maxwarn", "10", *extra], check=True, capture_output=True, cwd=out_dir, timeout=600)
    return md.load(str(cg), standard_names=False)


def _compare_with_martinize2(ensemble, pdb, tmp_path, scheme="martini3", extra=()):
    cg = _martinize(pdb, tmp_path, {"martini3": "martini3001", "martini2": "martini22"}[scheme], extra)
    m = martini_mapping(ensemble.sequence, scheme)
    assert [a.name for a in cg.topology.atoms] == m.bead_names
    assert ([canonical_residue_name(a.residue.name) for a in cg.topology.atoms]
            == [ensemble.sequence[r] for r in bead_residues(m)])
    gap = np.linalg.norm(cg.xyz[0] - m.apply_present(ensemble.xyz, ensemble.mask)[0], axis=1)
    assert gap.max() < MARTINIZE_TOLERANCE_NM, f"{pdb.name}: bead {int(gap.argmax())} off by {gap.max():.4f} nm"
    return gap


@pytest.fixture(scope="module")
def martinize2():
    pytest.importorskip("vermouth")
    if shutil.which("martinize2") is None:
        pytest.skip("martinize2 is not on the PATH")


def test_martini3_matches_martinize2(martinize2, fragment, tests_data, tmp_path):
    gap = _compare_with_martinize2(fragment, tests_data / "t0872_fragment.pdb", tmp_path)
    assert gap.max() < 1e-3  # the same centres up to PDB rounding


def _renamed(src, dst, renames):
    text = src.read_text()
    for old, new in renames:
        text = text.replace(f"{old} A", f"{new} A")
    dst.write_text(text)
    return dst


@pytest.mark.slow
def test_martini_variants_and_structures_match_martinize2(martinize2, fragment, trpcage, tests_data, tmp_path):
    frag = tests_data / "t0872_fragment.pdb"
    # protonation states and HIS forms: AMBER names (martinize2 -from amber) and CHARMM HIS names
    amber = _renamed(frag, tmp_path / "amber.pdb", [("HIS", "HIE"), ("ASP", "ASH"), ("GLU", "GLH"), ("LYS", "LYN")])
    _compare_with_martini_names(amber, tmp_path, ("-from", "amber"))
    _compare_with_martini_names(_renamed(frag, tmp_path / "charmm.pdb", [("HIS", "HSP")]), tmp_path)
    _compare_with_martinize2(fragment, frag, tmp_path, "martini2")
    # Trp-cage as heavy atoms (martinize2 with hydrogens or OXT moves beads: heavy-atom input is the reference)
    heavy = tmp_path / "trpcage_heavy.pdb"
    trpcage.to_mdtraj().save_pdb(str(heavy))
    _compare_with_martinize2(trpcage, heavy, tmp_path)


def _compare_with_martini_names(pdb, tmp_path, extra=()):
    ens = load_ensemble(pdb)
    assert ens.n_residues == 36
    _compare_with_martinize2(ens, pdb, tmp_path, extra=extra)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["TBM_T0872", "TBM_T0902", "FM_T0869"])
def test_martini3_matches_martinize2_on_casp_targets(martinize2, shared_data, target, tmp_path):
    pdb = shared_data / "eval" / "chains" / "casp" / f"{target}.pdb.gz"
    ens = load_ensemble(pdb)
    heavy = tmp_path / f"{target}.pdb"
    ens.to_mdtraj().save_pdb(str(heavy))
    _compare_with_martinize2(ens, heavy, tmp_path)


def test_martini2_matches_the_bm5_martini_models(shared_data):
    """The HADDOCK Martini 2 models of BM5 (beads plus SCD dummies) on their all-atom structures."""
    for name in ("1ACB_l_u", "1ACB_r_u"):
        cg = md.load(str(shared_data / "train" / "corpus" / "bm5-martini2" / f"{name}_cg.pdb.gz"), standard_names=False)
        keep = [a.index for a in cg.topology.atoms if not a.name.startswith("SCD")]
        ens = load_ensemble(shared_data / "train" / "corpus" / "bm5" / f"{name}.pdb.gz")
        m = martini_mapping(ens.sequence, "martini2")
        assert [cg.topology.atom(i).name for i in keep] == m.bead_names
        gap = np.linalg.norm(cg.xyz[0, keep] - m.apply_present(ens.xyz, ens.mask)[0], axis=1)
        assert gap.max() < MARTINIZE_TOLERANCE_NM
