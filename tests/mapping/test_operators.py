"""Mapping and Hierarchy: construction, validation, applying (numpy and torch), composition and JSON files."""

import json

import numpy as np
import pytest
import torch

from openmm_backmap.mapping import Hierarchy, Mapping, ca_mapping, partition_mapping


def test_mapping_matrix_apply_and_normalised_weights():
    m = Mapping([[0, 2], [1], [3, 4, 5]], weights=[[1, 3], [7], [1, 1, 2]], n_fine=6, name="x")
    np.testing.assert_allclose(m.weights[0], [0.25, 0.75])
    np.testing.assert_allclose(m.weights[2], [0.25, 0.25, 0.5])
    W = m.matrix()
    assert W.shape == (3, 6)
    np.testing.assert_allclose(W.sum(1), 1.0)
    x = np.random.default_rng(0).normal(size=(4, 2, 6, 3))
    np.testing.assert_allclose(m.apply(x), W @ x, atol=1e-12)
    assert m.apply(x.astype(np.float32)).dtype == np.float32
    assert m.assignment().tolist() == [0, 1, 0, 2, 2, 2]
    assert m.residues_per_bead is None
    with pytest.raises(ValueError, match=r"\(\.\.\., 6, 3\)"):
        m.apply(np.zeros((5, 3)))


def test_apply_nan_stays_local():
    m = Mapping([[0, 1], [2, 3]])
    x = np.zeros((4, 3))
    x[0] = np.nan
    out = m.apply(x)
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()


@pytest.mark.parametrize("bad, msg", [
    (dict(members=[[0, 5]], n_fine=3), "outside 0..2"),
    (dict(members=[[0, -1]], n_fine=3), "outside"),
    (dict(members=[[0], []]), "bead 1 has no members"),
    (dict(members=[[0, 0]]), "more than once"),
    (dict(members=[[0, 1]], weights=[[1.0, 0.0]]), "positive"),
    (dict(members=[[0, 1]], weights=[[1.0, -2.0]]), "positive"),
    (dict(members=[[0, 1]], weights=[[1.0]]), "2 members but 1 weights"),
    (dict(members=[]), "at least one bead"),
    (dict(members=[[0, [1, 2]]]), "list of integers"),
    (dict(members=[[0, 1]], bead_names=["a", "b"]), "bead_names has 2 entries"),
    (dict(members=[[0, 1]], fine_residues=[0]), "fine_residues has 1 entries"),
])
def test_mapping_constructor_validation(bad, msg):
    with pytest.raises(ValueError, match=msg):
        Mapping(**bad)


@pytest.mark.parametrize("content, msg", [
    ({"name": "x"}, "missing key 'members'"),
    ({"members": [[0, 1], [7]], "n_fine": 4}, "bead 1 has member indices \\[7\\] outside 0..3"),
    ({"members": [[0], []]}, "bead 1 has no members"),
    ({"members": [[0, 1]], "weights": [[0.5, -0.5]]}, "weights must be positive"),
    ({"members": [[0, 1]], "n_beads": 3}, "n_beads is 3"),
    ({"members": [[0, "a"]]}, "integers"),
    ({"members": "0,1"}, "list of lists"),
    ([1, 2], "JSON object"),
])
def test_user_json_validation(tmp_path, content, msg):
    p = tmp_path / "user.json"
    p.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=msg) as err:
        Mapping.from_json(p)
    assert "user.json" in str(err.value)


def test_user_json_not_json_and_missing(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{members: ")
    with pytest.raises(ValueError, match="not valid JSON"):
        Mapping.from_json(p)
    with pytest.raises(FileNotFoundError):
        Mapping.from_json(tmp_path / "nope.json")


def test_mapping_json_roundtrip(tmp_path):
    m = Mapping([[0, 2], [1, 3, 4]], weights=[[12.0, 14.0], [1, 2, 3]], n_fine=6, name="user",
                bead_names=["P", "Q"], fine_residues=[0, 0, 1, 1, 2, 2])
    p = tmp_path / "m.json"
    m.to_json(p)
    back = Mapping.from_json(p)
    assert back == m
    for a, b in zip(back.weights, m.weights):
        assert np.array_equal(a, b)  # bit-exact round trip
    assert back.residues_per_bead.tolist() == [2, 3]
    assert Mapping.from_dict(m.to_dict()).to_dict() == m.to_dict()
    assert back != Mapping([[0, 2], [1, 3, 4]], n_fine=6, name="user", bead_names=["P", "Q"],
                           fine_residues=[0, 0, 1, 1, 2, 2])  # uniform weights differ


def test_apply_torch_matches_numpy_and_is_differentiable():
    rng = np.random.default_rng(1)
    m = Mapping([[0, 3, 4], [1], [2, 5]], weights=[[1, 2, 3], [1], [5, 1]], n_fine=6)
    x = rng.normal(size=(3, 6, 3))
    ref = m.apply(x)
    for dtype in (torch.float64, torch.float32):
        xt = torch.tensor(x, dtype=dtype, requires_grad=True)
        out = m.apply(xt)
        assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == (3, 3, 3)
        np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-5, atol=1e-6)
        g = torch.tensor(rng.normal(size=(3, 3, 3)), dtype=dtype)
        (out * g).sum().backward()
        expected = m.matrix().T @ g.double().numpy()  # d/dx of <W x, g> = W^T g
        np.testing.assert_allclose(xt.grad.double().numpy(), expected, rtol=1e-5, atol=1e-6)
    # selection mappings take the indexing path; still differentiable
    sel = Mapping([[4], [1]], n_fine=6)
    xt = torch.tensor(x, requires_grad=True)
    sel.apply(xt).sum().backward()
    assert xt.grad[:, [1, 4]].eq(1).all() and xt.grad[:, [0, 2, 3, 5]].eq(0).all()


def test_ca_mapping_picks_ca_exactly(trpcage):
    m = ca_mapping(trpcage.sequence)
    assert m.n_fine == trpcage.n_atoms and m.n_beads == trpcage.n_residues == 20
    assert np.array_equal(m.apply(trpcage.xyz), trpcage.ca_xyz)
    assert [trpcage.layout.atom_names[a[0]] for a in m.members] == ["CA"] * 20
    assert m.bead_names == trpcage.sequence
    assert m.residues_per_bead.tolist() == [1] * 20
    a = m.assignment()
    assert (a >= 0).sum() == 20 and a[trpcage.layout.ca_index].tolist() == list(range(20))


def test_compose_equals_sequential_apply(trpcage):
    rng = np.random.default_rng(2)
    aa_ca = ca_mapping(trpcage.sequence)
    ca_ucg = partition_mapping(trpcage.ca_xyz, 5)
    ucg_top = Mapping([[0, 1], [2, 3, 4]], weights=[[1, 3], [2, 1, 1]], name="top")
    x = trpcage.xyz[0] + rng.normal(scale=0.1, size=(6,) + trpcage.xyz.shape[1:])
    seq = ucg_top.apply(ca_ucg.apply(aa_ca.apply(x)))
    comp = aa_ca.compose(ca_ucg).compose(ucg_top)
    assert comp.n_fine == trpcage.n_atoms and comp.n_beads == 2 and comp.name == "top"
    np.testing.assert_allclose(comp.apply(x), seq, atol=1e-6)
    np.testing.assert_allclose(comp.matrix(), ucg_top.matrix() @ ca_ucg.matrix() @ aa_ca.matrix(), atol=1e-12)
    assert comp.residues_per_bead.sum() == 20
    with pytest.raises(ValueError, match="cannot compose"):
        ca_ucg.compose(aa_ca)


def test_hierarchy_apply_composed_rho_and_json(tmp_path, trpcage):
    ca_ucg = partition_mapping(trpcage.ca_xyz, 4)
    h = Hierarchy([ca_mapping(trpcage.sequence), ca_ucg])
    assert h.levels == ["aa", "ca", "ucg4"]
    assert h.sizes == [trpcage.n_atoms, 20, 4]
    assert h.rho == pytest.approx([20 / trpcage.n_atoms, 1.0, 5.0])
    out = h.apply_all(trpcage.xyz)
    assert list(out) == h.levels and out["ucg4"].shape == (1, 4, 3)
    np.testing.assert_allclose(h.composed("ucg4").apply(trpcage.xyz), out["ucg4"], atol=1e-6)
    np.testing.assert_array_equal(h.composed(0).apply(trpcage.xyz), trpcage.xyz)
    assert h.composed(-1).name == "ucg4"
    p = tmp_path / "h.json"
    h.to_json(p)
    back = Hierarchy.from_json(p)
    assert back == h and back.rho == h.rho
    with pytest.raises(ValueError, match="gives 4 beads but mapping 1"):
        Hierarchy([ca_ucg, ca_ucg])
    with pytest.raises(KeyError):
        h.composed("ucg99")


def test_level_file_holds_the_mapping_and_the_hierarchy(tmp_path, trpcage):
    h = Hierarchy([ca_mapping(trpcage.sequence), partition_mapping(trpcage.ca_xyz, 4)])
    p = tmp_path / "ucg4_mapping.json"
    h.to_level_json(p, "ucg4", source=tmp_path / "in.pdb", n_frames=3)
    d = json.loads(p.read_text())
    assert [d[k] for k in ("format", "version", "level", "n_frames")] == ["openmm-backmap-level", 1, "ucg4", 3]
    assert d["source"] == str(tmp_path / "in.pdb")
    assert Mapping.from_json(p) == h.composed("ucg4") and Hierarchy.from_json(p) == h
