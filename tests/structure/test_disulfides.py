"""Disulfides of heavy-atom structures: by SG distance, or by CB distance away from metal sites."""

import numpy as np

from openmm_backmap.structure import atom_layout, disulfide_bonds


def _far_apart(sequence):
    lay = atom_layout(sequence)
    return lay, np.arange(lay.n_atoms)[:, None] * np.array([1.0, 0.0, 0.0])  # atoms 1 nm apart in a line


def test_close_cb_pair_is_a_disulfide_and_each_cysteine_has_one_partner():
    seq = ["CYS", "ALA", "CYS", "ALA", "CYS"]
    lay, xyz = _far_apart(seq)
    cb = [lay.index(r, "CB") for r in (0, 2, 4)]
    xyz[cb[1]] = xyz[cb[0]] + [0.0, 0.38, 0.0]
    assert disulfide_bonds(seq, xyz).tolist() == [[lay.index(0, "SG"), lay.index(2, "SG")]]
    xyz[cb[1]] = xyz[cb[0]] + [0.0, 0.46, 0.0]  # too far for a disulfide
    assert disulfide_bonds(seq, xyz).shape == (0, 2)
    xyz[lay.index(4, "SG")] = xyz[lay.index(0, "SG")] + [0.0, 0.0, 0.205]  # the SG atoms already bonded
    assert disulfide_bonds(seq, xyz).tolist() == [[lay.index(0, "SG"), lay.index(4, "SG")]]


def test_three_close_cysteines_are_a_metal_site_not_a_disulfide():
    seq = ["CYS", "GLY", "CYS", "GLY", "CYS"]
    lay, xyz = _far_apart(seq)
    cb = [lay.index(r, "CB") for r in (0, 2, 4)]
    xyz[cb[1]] = xyz[cb[0]] + [0.0, 0.40, 0.0]
    xyz[cb[2]] = xyz[cb[0]] + [0.0, 0.0, 0.45]
    assert disulfide_bonds(seq, xyz).shape == (0, 2)
