"""A chain break inside one chain is visible in every file written: no reader bonds across it.

PDB readers bond consecutive residues of one chain; without a TER record at the break, mdtraj and
OpenMM built a 1-2 nm "peptide bond" across it on reading back.
"""

import mdtraj as md
import numpy as np
import pytest
from openmm.app import PDBFile

from openmm_backmap.io import TrajectoryWriter, topology_pdb_text
from openmm_backmap.structure import ProteinEnsemble

BREAK = 10  # first residue of the second segment of chain A


@pytest.fixture(scope="module")
def broken(trpcage):
    """Trp-cage as one chain A with a 1.5 nm gap before residue BREAK."""
    xyz = trpcage.xyz.copy()
    xyz[:, trpcage.layout.residue_start[BREAK]:] += np.float32(1.5)
    seg = np.zeros(trpcage.n_residues, dtype=bool)
    seg[[0, BREAK]] = True
    return ProteinEnsemble(trpcage.sequence, xyz, trpcage.mask, seg, ["A"] * trpcage.n_residues,
                           trpcage.residue_numbers, None, "broken trp-cage")


def _cross_break_bonds(bonds):
    """Bonds between a residue before the break and one at or after it (residue indices)."""
    return [(a, b) for a, b in bonds if min(a, b) < BREAK <= max(a, b)]


def _mdtraj_bonds(top):
    return [(a.residue.index, b.residue.index) for a, b in top.bonds]


def _openmm_bonds(path):
    top = PDBFile(str(path)).topology
    return [(a.residue.index, b.residue.index) for a, b in top.bonds()], [c.id for c in top.chains()]


def _check_pdb(path, n_residues):
    t = md.load(str(path))
    assert t.topology.n_residues == n_residues
    assert _cross_break_bonds(_mdtraj_bonds(t.topology)) == []
    # the peptide bonds inside each segment are kept
    peptide = {(a, b) for a, b in _mdtraj_bonds(t.topology) if a != b}
    assert len(peptide) == n_residues - 2
    omm, chains = _openmm_bonds(path)
    assert _cross_break_bonds(omm) == []
    assert len({(a, b) for a, b in omm if a != b}) == n_residues - 2
    assert set(chains) == {"A"}  # the chain keeps its identifier; the break is a TER record


def test_topology_has_no_bond_across_the_break(broken):
    assert _cross_break_bonds(_mdtraj_bonds(broken.topology())) == []


def test_topology_pdb_text_read_back(tmp_path, broken):
    path = tmp_path / "top.pdb"
    path.write_text(topology_pdb_text(broken.topology(), broken.xyz[0]))
    lines = path.read_text().splitlines()
    assert sum(ln.startswith("TER") for ln in lines) == 2
    assert not any(ln.startswith("CONECT") for ln in lines)
    _check_pdb(path, broken.n_residues)


@pytest.mark.parametrize("fmt", ["pdb", "dcd", "xtc", "h5"])
def test_written_trajectory_read_back(tmp_path, broken, fmt):
    if fmt == "h5":
        pytest.importorskip("tables")
    path = tmp_path / f"out.{fmt}"
    with TrajectoryWriter(path, broken.topology()) as w:
        w.write(np.concatenate([broken.xyz, broken.xyz + 0.01]))
    if fmt == "pdb":
        _check_pdb(path, broken.n_residues)
        assert md.load(str(path)).n_frames == 2
    if w.topology_path is not None:  # the PDB topology beside a trajectory
        _check_pdb(w.topology_path, broken.n_residues)
    if fmt == "h5":
        assert _cross_break_bonds(_mdtraj_bonds(md.load(str(path)).topology)) == []


def test_append_to_a_pdb_with_a_break(tmp_path, broken):
    path = tmp_path / "out.pdb"
    with TrajectoryWriter(path, broken.topology()) as w:
        w.write(broken.xyz)
    with TrajectoryWriter(path, broken.topology(), append=True) as w:
        w.write(broken.xyz + 0.01)
    assert md.load(str(path)).n_frames == 2
    _check_pdb(path, broken.n_residues)


def test_unbroken_chain_is_one_chain(tmp_path, trpcage):
    path = tmp_path / "whole.pdb"
    path.write_text(topology_pdb_text(trpcage.topology(), trpcage.xyz[0]))
    assert sum(ln.startswith("TER") for ln in path.read_text().splitlines()) == 1
    assert md.load(str(path)).topology.n_chains == 1
