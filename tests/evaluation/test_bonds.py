"""Bond graphs inferred from distances (openmm_backmap.evaluation.bonds)."""

import numpy as np
import pytest

from openmm_backmap.evaluation import bond_graph, bond_ok, bond_ok_failures
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



def test_bond_ok_failures_tell_reference_faults_from_generator_errors(trpcage):
    seq, seg, lay = trpcage.sequence, trpcage.segment_start, trpcage.layout
    ref = trpcage.xyz[0].astype(np.float64).copy()
    gen = ref.copy()
    # the reference squashes one peptide bond (C3-N4 to 1.15 Å) that the generator builds at its proper length
    c3, n4 = lay.index(3, "C"), lay.index(4, "N")
    ref[n4] = ref[c3] + (ref[n4] - ref[c3]) * 0.115 / np.linalg.norm(ref[n4] - ref[c3])
    # ... and the generator stretches one sound bond (CA-CB of residue 8) by 30 %
    ca8, cb8 = lay.index(8, "CA"), lay.index(8, "CB")
    gen[cb8] = gen[ca8] + (gen[cb8] - gen[ca8]) * 1.3
    # ... and the reference shortens a CB-CG bond by 9.5 % (fails bond_ok, 10.5 % off; the outlier is told by
    # which of the two lies further from the structure's median) that the generator builds at its length
    cb5, cg5 = lay.index(5, "CB"), lay.index(5, "CG")
    ref[cg5] = ref[cb5] + (ref[cg5] - ref[cb5]) * 0.905
    fails = bond_ok_failures(seq, ref, gen, seg)
    by_atoms = {tuple(f["atoms"]): f["reference_fault"] for f in fails}
    assert by_atoms[(f"{seq[3]}3:C", f"{seq[4]}4:N")] == "distorted in the reference"
    assert by_atoms[(f"{seq[8]}8:CA", f"{seq[8]}8:CB")] is None
    assert by_atoms[(f"{seq[5]}5:CB", f"{seq[5]}5:CG")] == "distorted in the reference"
    # the count agrees with bond_ok's
    n_bonds = len(bond_graph(ref, lay.elements))
    assert bond_ok(ref, gen, lay.elements) == pytest.approx(100.0 * (1 - len(fails) / n_bonds))
    assert bond_ok_failures(seq, ref, ref, seg) == []
