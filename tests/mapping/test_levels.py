"""Level lists, hierarchies built for an ensemble, CG topologies and coarsening."""

import numpy as np
import pytest

from openmm_backmap.mapping import (Hierarchy, LevelSpec, Mapping, build_hierarchy, ca_mapping, cg_topology, coarsen,
                                    parse_levels, partition_mapping)
from openmm_backmap.structure import ProteinEnsemble


def test_parse_levels():
    assert parse_levels("ca,ucg:12") == [LevelSpec("ca", "ca"), LevelSpec("ucg12", "ucg", 12)]
    assert parse_levels(" ucg22 ") == [LevelSpec("ucg22", "ucg", 22)]
    spec = parse_levels("ca,maps/my_beads.json")[1]
    assert spec.kind == "file" and spec.name == "my_beads" and spec.path == "maps/my_beads.json"
    for bad, msg in [("", "no levels"), ("ca,foo", "unknown level 'foo'"), ("ucg:0", "at least 1"),
                     ("ca,ca", "more than once"), ("aa", "unknown level")]:
        with pytest.raises(ValueError, match=msg):
            parse_levels(bad)


def test_user_mapping_level_from_json(tmp_path, trpcage):
    p = tmp_path / "halves.json"
    Mapping([list(range(10)), list(range(10, 20))], name="halves").to_json(p)
    h, requested = build_hierarchy(trpcage, str(p))
    assert h.levels == ["aa", "ca", "halves"] and requested == ["halves"]
    np.testing.assert_allclose(h.composed("halves").apply(trpcage.xyz)[0, 0], trpcage.ca_xyz[0, :10].mean(0),
                               atol=1e-6)
    Mapping([[0, 1]], n_fine=7).to_json(p)
    with pytest.raises(ValueError, match="expects 7 fine particles"):
        build_hierarchy(trpcage, str(p))


def test_cg_topology_ca_and_ucg(trpcage):
    seq = trpcage.sequence
    top = cg_topology(ca_mapping(seq), seq, "ca")
    assert top.n_atoms == top.n_residues == 20 and top.n_bonds == 19
    assert [r.name for r in top.residues] == seq and {a.name for a in top.atoms} == {"CA"}
    seg = np.zeros(20, dtype=bool)
    seg[[0, 10]] = True
    assert cg_topology(ca_mapping(seq), seq, "ca", segment_start=seg).n_bonds == 18
    top = cg_topology(partition_mapping(trpcage.ca_xyz, 4), seq, "ucg4")
    assert [a.name for a in top.atoms] == ["B1", "B2", "B3", "B4"]
    assert {r.name for r in top.residues} == {"BEA"} and [r.resSeq for r in top.residues] == [1, 2, 3, 4]
    assert all(a.element.symbol == "C" for a in top.atoms)
    with pytest.raises(ValueError, match="20 residues"):
        cg_topology(Mapping([[0]]), seq, "ca")


def test_coarsen_reports_missing_atoms(trpcage):
    xyz = np.repeat(trpcage.xyz, 3, axis=0)
    xyz[1, trpcage.layout.ca_index[4]] = np.nan
    ens = ProteinEnsemble.from_arrays(trpcage.sequence, xyz, source="broken")
    with pytest.raises(ValueError, match=r"CA.*1 of 3 frame\(s\).*residue\(s\) " + trpcage.sequence[4] + "5"):
        coarsen(ens, "ca")
    # side-chain atoms are not needed at the C-alpha level
    xyz = np.repeat(trpcage.xyz, 2, axis=0)
    xyz[0, trpcage.layout.index(1, "CB")] = np.nan
    out = coarsen(ProteinEnsemble.from_arrays(trpcage.sequence, xyz), "ca,ucg:3")
    assert np.isfinite(out["ucg3"][0]).all()


def test_coarsen_with_a_given_hierarchy(trpcage):
    hierarchy = Hierarchy([ca_mapping(trpcage.sequence), partition_mapping(trpcage.ca_xyz, 3, name="beads")])
    out = coarsen(trpcage, hierarchy=hierarchy)
    assert list(out) == ["ca", "beads"] and out["beads"][0].shape == (1, 3, 3)
    assert out["beads"][2] == hierarchy.composed("beads")
    assert list(coarsen(trpcage, "beads", hierarchy=hierarchy)) == ["beads"]
    assert list(coarsen(trpcage, ["beads", "ca"], hierarchy=hierarchy)) == ["beads", "ca"]
    with pytest.raises(KeyError, match="no level 'ucg3'"):
        coarsen(trpcage, "ucg3", hierarchy=hierarchy)
    other = Hierarchy([ca_mapping(["GLY", "ALA"])])
    with pytest.raises(ValueError, match="another protein"):
        coarsen(trpcage, hierarchy=other)


def test_cg_topology_keeps_chain_ids():
    seq = ["GLY", "ALA", "SER", "GLY"]
    seg = np.array([True, False, True, False])
    top = cg_topology(ca_mapping(seq), seq, "ca", segment_start=seg, chain_ids=["A", "A", "B", "B"],
                      residue_numbers=[5, 6, 1, 2])
    assert [c.chain_id for c in top.chains] == ["A", "B"]
    assert [r.resSeq for r in top.residues] == [5, 6, 1, 2] and top.n_bonds == 2
    assert [c.chain_id for c in cg_topology(Mapping([[0, 1], [2, 3]]), seq, "ucg2").chains] == ["A"]


def test_build_hierarchy_from_a_user_mapping_of_the_heavy_atoms(tmp_path, trpcage):
    p = tmp_path / "two_atoms_mapping.json"
    Mapping([[0, 1], list(range(2, trpcage.n_atoms))], name="x").to_json(p)
    h, requested = build_hierarchy(trpcage, str(p))
    assert h.levels == ["aa", "two_atoms"] and requested == ["two_atoms"]
    with pytest.raises(ValueError, match="needs C-alphas but follows 'two_atoms'"):
        build_hierarchy(trpcage, f"{p},ucg:1")
