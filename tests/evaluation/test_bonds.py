"""Bond graphs inferred from distances (openmm_backmap.evaluation.bonds)."""

import numpy as np
import pytest

from openmm_backmap.evaluation import bond_graph
from openmm_backmap.structure import InputError


def test_bond_graph_matches_template_bonds(trpcage):
    graph = bond_graph(trpcage.xyz[0], trpcage.layout.elements)
    template = np.sort(trpcage.layout.bonds(trpcage.segment_start), axis=1)
    assert set(map(tuple, graph.tolist())) == set(map(tuple, template.tolist()))
    assert np.all(graph[:, 0] < graph[:, 1])


def test_bond_graph_reads_atom_names_and_rejects_unknown_elements():
    xyz = np.array([[0, 0, 0], [0.147, 0, 0], [0.3, 0, 0], [0.3, 0.18, 0]])  # C-N 1.47 Å, N...C 1.53 Å, C-S 1.8 Å
    assert bond_graph(xyz, ["CA", "N", "C", "SG"]).tolist() == [[0, 1], [1, 2], [2, 3]]
    assert bond_graph(xyz, ["C", "N", "C", "S"], mask=[True, False, True, True]).tolist() == [[2, 3]]
    xyz[1] = np.nan
    assert bond_graph(xyz, ["C", "N", "C", "S"]).tolist() == [[2, 3]]
    with pytest.raises(InputError, match="no covalent radius for element 'X'"):
        bond_graph(xyz, ["C", "X", "C", "S"])
    with pytest.raises(InputError, match="3 elements for 4 atoms"):
        bond_graph(xyz, ["C", "N", "C"])

