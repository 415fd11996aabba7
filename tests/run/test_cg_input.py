"""What the CG particles of a topology are (openmm_backmap.run.cg_input)."""

import mdtraj as md
import numpy as np
import pytest

from openmm_backmap.run import cg_particle_info, cg_sequence
from openmm_backmap.structure import InputError


def _ca_topology(names, chains=(0,)):
    top = md.Topology()
    chain_objs = {c: top.add_chain() for c in sorted(set(chains))}
    chains = list(chains) * len(names) if len(chains) == 1 else list(chains)
    for i, (name, c) in enumerate(zip(names, chains)):
        top.add_atom("CA", md.element.carbon, top.add_residue(name, chain_objs[c], resSeq=i + 1))
    return top


def test_unbonded_topology_segments_from_distances_and_periodic_images(trpcage):
    ca = trpcage.ca_xyz[0].astype(np.float64)
    top = _ca_topology(trpcage.sequence)
    info = cg_particle_info(top, xyz=ca)
    assert info["sequence"] == list(trpcage.sequence) and info["segment_start"].tolist() == [True] + [False] * 19
    np.testing.assert_array_equal(info["bonds"], np.stack([np.arange(19), np.arange(1, 20)], 1))
    gap = ca.copy()
    gap[10:] += 1.0  # a real chain break (1.7 nm)
    assert np.flatnonzero(cg_particle_info(top, xyz=gap)["segment_start"]).tolist() == [0, 10]
    box = np.eye(3) * 4.0
    wrapped = ca.copy()
    wrapped[10:] -= box[0]  # split by the periodic boundary only
    assert np.flatnonzero(cg_particle_info(top, xyz=wrapped)["segment_start"]).tolist() == [0, 10]
    assert cg_particle_info(top, xyz=wrapped, box_vectors=box)["segment_start"].sum() == 1


def test_chains_bonds_and_sequence_errors(trpcage_go, tiny_ca_backmapper):
    top, _, pos = trpcage_go
    info = cg_particle_info(top, xyz=pos)
    assert len(info["bonds"]) == top.getNumBonds() and info["segment_start"].sum() == 1
    two = _ca_topology(["ALA"] * 4, chains=(0, 0, 1, 1))
    info = cg_particle_info(two, xyz=np.outer(np.arange(4) * 0.38, [1.0, 0, 0]))  # C-alphas 0.38 nm apart
    assert info["segment_start"].tolist() == [True, False, True, False]
    assert info["bonds"].tolist() == [[0, 1], [2, 3]]  # no bond across chains
    beads = _ca_topology(["BEA"] * 4)
    with pytest.raises(InputError, match="BEA are neither standard amino acids nor modified residues.*pass it"):
        cg_sequence(cg_particle_info(beads), tiny_ca_backmapper, fix_names="; pass it")
