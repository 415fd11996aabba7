"""Molecules made whole across periodic boundaries (openmm_backmap.structure.periodic)."""

import numpy as np
import pytest

from openmm_backmap.structure import InputError, make_whole

BOX = np.array([[3.0, 0, 0], [0.5, 3.0, 0], [0.5, 0.5, 3.0]])  # triclinic, OpenMM's reduced form


def _chain(n=8, step=0.22):
    return np.cumsum(np.full((n, 3), step), axis=0)


def test_bonded_molecules_stay_together_in_bead_order():
    chain = _chain()
    wrapped = chain.copy()
    wrapped[4:] -= BOX[2] + BOX[0]  # the second molecule one lattice vector away
    two = [(0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (6, 7)]
    whole = make_whole(wrapped, BOX, two)
    np.testing.assert_array_equal(whole[0], wrapped[0])  # the first particle stays
    np.testing.assert_allclose(whole, chain, atol=1e-12)  # float64 kept, though mdtraj images in float32


def test_bonds_not_in_bead_order_and_per_frame_boxes():
    chain = _chain()
    frames = np.stack([chain, chain + 0.1])
    boxes = np.stack([BOX, BOX * 1.5])
    wrapped = frames.copy()
    wrapped[0, 5] += boxes[0, 1]
    wrapped[1, 2] -= boxes[1, 0]
    reversed_bonds = [(i + 1, i) for i in range(7)][::-1]
    np.testing.assert_allclose(make_whole(wrapped, boxes, reversed_bonds), frames, atol=1e-12)


def test_bad_box_shape():
    with pytest.raises(InputError, match="box_vectors"):
        make_whole(np.zeros((2, 4, 3)), np.zeros((3, 3, 3)))
