import numpy as np
import pytest

from openmm_backmap.structure.templates import (AMINO_ACIDS, TEMPLATES, atom_layout, build_topology, canonical_atom_name,
                                     canonical_residue_name, residue_type_indices)


@pytest.mark.parametrize("name", AMINO_ACIDS)
def test_every_template_round_trips_through_a_topology(name, tmp_path):
    import mdtraj as md

    seq = ["GLY", name, "ALA"]
    lay = atom_layout(seq)
    top = build_topology(seq)
    assert top.n_atoms == lay.n_atoms == 4 + len(TEMPLATES[name].atoms) + 5
    # write and read back a PDB: names and residue order survive
    xyz = np.random.default_rng(0).normal(size=(1, top.n_atoms, 3)).astype(np.float32)
    path = tmp_path / "x.pdb"
    md.Trajectory(xyz, top).save_pdb(str(path))
    back = md.load_pdb(str(path), standard_names=False).topology
    assert [a.name for a in back.atoms] == list(lay.atom_names)
    assert [r.name for r in back.residues] == seq


@pytest.mark.parametrize("name", AMINO_ACIDS)
def test_template_bonds_form_one_connected_tree_plus_rings(name):
    tpl = TEMPLATES[name]
    atoms = set(tpl.atoms)
    seen = {"N"}
    bonds = list(tpl.bonds)
    for _ in atoms:
        for a, b in bonds:
            if a in seen or b in seen:
                seen |= {a, b}
    assert seen == atoms
    assert all(a in atoms and b in atoms for a, b in bonds)
    n_rings = {"PHE": 1, "TYR": 1, "HIS": 1, "PRO": 1, "TRP": 2}.get(name, 0)
    assert len(bonds) == len(atoms) - 1 + n_rings


def test_chi_counts_match_the_standard_definitions():
    expected = {"ALA": 0, "GLY": 0, "SER": 1, "CYS": 1, "VAL": 1, "THR": 1, "PRO": 2, "ASP": 2, "ASN": 2,
                "LEU": 2, "ILE": 2, "HIS": 2, "PHE": 2, "TYR": 2, "TRP": 2, "MET": 3, "GLU": 3, "GLN": 3,
                "LYS": 4, "ARG": 4}
    assert {n: TEMPLATES[n].n_chi for n in AMINO_ACIDS} == expected


@pytest.mark.parametrize("alias,name", [("HSD", "HIS"), ("HIE", "HIS"), ("HIP", "HIS"), ("CYX", "CYS"),
                                        ("CYM", "CYS"), ("ASH", "ASP"), ("GLH", "GLU"), ("LYN", "LYS"),
                                        ("MSE", "MET"), ("NALA", "ALA"), ("CGLY", "GLY")])
def test_residue_aliases(alias, name):
    assert canonical_residue_name(alias) == name


def test_non_standard_residues_are_not_mapped():
    assert canonical_residue_name("HOH") is None
    assert canonical_residue_name("NAG") is None


def test_atom_aliases():
    assert canonical_atom_name("ILE", "CD") == "CD1"
    assert canonical_atom_name("MET", "SE") == "SD"
    assert canonical_atom_name("GLY", "OT1") == "O"
    assert canonical_atom_name("GLY", "OT2") == "OXT"
    assert canonical_atom_name("LEU", "CD1") == "CD1"


def test_layout_offsets_and_bonds_respect_breaks():
    lay = atom_layout(["ALA", "GLY", "SER"])
    assert lay.residue_start.tolist() == [0, 5, 9, 15]
    assert lay.ca_index.tolist() == [1, 6, 10]
    n_bonds_connected = len(lay.bonds())
    broken = lay.bonds(segment_start=np.array([True, False, True]))
    assert len(broken) == n_bonds_connected - 1
    assert (lay.index(1, "C"), lay.index(2, "N")) not in set(map(tuple, broken.tolist()))


def test_residue_type_indices_rejects_unknown():
    assert residue_type_indices(["HSD"]).tolist() == [AMINO_ACIDS.index("HIS")]
    with pytest.raises(ValueError, match="unknown residue"):
        residue_type_indices(["XYZ"])
