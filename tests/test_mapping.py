"""Resolution operators: mappings, partitions, hierarchies, CG topologies and the coarsen verb."""

import itertools
import json
import sys
import time
import types
import warnings

import numpy as np
import pytest
import torch

from openmm_backmap.structure.ensemble import ProteinEnsemble
from openmm_backmap.mapping.operators import (
    Hierarchy,
    LevelSpec,
    Mapping,
    build_hierarchy,
    ca_mapping,
    cg_topology,
    coarsen,
    coarsen_files,
    parse_levels,
    partition_cost,
    partition_mapping,
)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _chain(rng, n_res, n_frames, noise=0.05, step=0.38):
    """A compact random-walk 'protein' of n_res C-alphas with thermal noise, (F, R, 3) nm."""
    steps = rng.normal(size=(n_res, 3))
    steps *= step / np.linalg.norm(steps, axis=1, keepdims=True)
    base = np.cumsum(steps, axis=0)
    base = base / 2.0 + np.cumsum(steps[::-1], axis=0)[::-1] / 2.0  # fold back on itself a bit
    return base[None] + rng.normal(scale=noise, size=(n_frames, n_res, 3))


def _check_partition(m, n_units, n_beads):
    assign = m.assignment()
    assert m.n_fine == n_units and m.n_beads == n_beads
    assert (assign >= 0).all(), "every residue must be in a bead"
    counts = np.bincount(np.concatenate(m.members), minlength=n_units)
    assert (counts == 1).all(), "every residue must be in exactly one bead"
    assert all(len(a) > 0 for a in m.members)
    for w in m.weights:
        assert np.isclose(w.sum(), 1.0)


def _mean_radius(x, members):
    """Mean over beads of the ensemble-averaged radius of gyration (nm)."""
    out = []
    for a in members:
        d = x[:, a] - x[:, a].mean(axis=1, keepdims=True)
        out.append(np.sqrt((d ** 2).sum(-1).mean(-1)).mean())
    return float(np.mean(out))


def _max_intra(x, members):
    return max(float(np.linalg.norm(x[:, a, None] - x[:, None, a], axis=-1).max()) for a in members)


def _random_contiguous(rng, n_res, n_beads):
    cuts = np.sort(rng.choice(np.arange(1, n_res), n_beads - 1, replace=False))
    return np.split(np.arange(n_res), cuts)


# --------------------------------------------------------------------------
# Mapping basics and validation
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# torch
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# C-alpha mapping, composition, hierarchy
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# partitions
# --------------------------------------------------------------------------
def test_partition_dp_is_the_exact_contiguous_optimum():
    rng = np.random.default_rng(3)
    x = _chain(rng, 10, 7, noise=0.15)
    m = partition_mapping(x, 3, refine=False)
    best = min(partition_cost(x, Mapping(np.split(np.arange(10), cuts)))
               for cuts in itertools.combinations(range(1, 10), 2))
    assert partition_cost(x, m) == pytest.approx(best, rel=1e-9)
    assert all(np.all(np.diff(a) == 1) for a in m.members)  # contiguous without refinement


def test_partition_invariants_and_compactness():
    rng = np.random.default_rng(4)
    x = _chain(rng, 120, 30)
    for n in (1, 7, 15, 120):
        m = partition_mapping(x, n)
        _check_partition(m, 120, n)
        assert m.name == f"ucg{n}" and m.bead_names[0] == "B1"
        firsts = [a.min() for a in m.members]
        assert firsts == sorted(firsts)  # numbered along the sequence
    m = partition_mapping(x, 10)
    dp = partition_mapping(x, 10, refine=False)
    assert partition_cost(x, m) <= partition_cost(x, dp) + 1e-9  # refinement never makes it worse
    random_radii = [_mean_radius(x, _random_contiguous(rng, 120, 10)) for _ in range(20)]
    assert _mean_radius(x, m.members) < np.mean(random_radii)
    assert _mean_radius(x, m.members) < _mean_radius(x, np.array_split(np.arange(120), 10))
    # deterministic
    again = partition_mapping(x, 10)
    assert all(np.array_equal(a, b) for a, b in zip(m.members, again.members))


def test_partition_straight_line_is_contiguous_and_even():
    rng = np.random.default_rng(5)
    x = np.zeros((10, 30, 3))
    x[..., 0] = np.arange(30) * 0.38
    x += rng.normal(scale=0.01, size=x.shape)
    m = partition_mapping(x, 5)
    assert [a.tolist() for a in m.members] == [list(range(6 * i, 6 * i + 6)) for i in range(5)]


def test_partition_respects_segment_starts_when_possible():
    x = np.zeros((2, 12, 3))
    x[..., 0] = np.arange(12) * 0.38
    free = partition_mapping(x, 2)
    assert [len(a) for a in free.members] == [6, 6]
    seg = np.zeros(12, dtype=bool)
    seg[[0, 3]] = True
    m = partition_mapping(x, 2, seg)
    assert [a.tolist() for a in m.members] == [[0, 1, 2], list(range(3, 12))]


def test_partition_moves_a_residue_to_the_bead_it_sits_in():
    # residue 7 is in the middle of the second stretch in sequence but sits inside the first cluster
    x = np.zeros((3, 10, 3))
    x[:, :, 0] = np.where(np.arange(10) < 5, 0.0, 10.0) + (np.arange(10) % 5) * 0.1
    x[:, 7] = [0.2, 0.05, 0.0]
    dp = partition_mapping(x, 2, refine=False)
    m = partition_mapping(x, 2, fragment_penalty=0.0)
    assert partition_cost(x, m) < 0.5 * partition_cost(x, dp)
    assert [a.tolist() for a in m.members] == [[0, 1, 2, 3, 4, 7], [5, 6, 8, 9]]
    _check_partition(m, 10, 2)
    # with the default fragment penalty a single stray residue still moves when the gain is this large
    assert partition_mapping(x, 2).members[0].tolist() == [0, 1, 2, 3, 4, 7]


@pytest.mark.parametrize("n", [0, 21, -3, 2.5])
def test_partition_rejects_bad_bead_counts(trpcage, n):
    with pytest.raises(ValueError, match="n_beads"):
        partition_mapping(trpcage.ca_xyz, n)


def test_nested_levels_partition_the_finer_beads(trpcage):
    h, requested = build_hierarchy(trpcage, "ca,ucg:6,ucg:3")
    assert requested == ["ca", "ucg6", "ucg3"] and h.levels == ["aa", "ca", "ucg6", "ucg3"]
    ca_to_6 = h.mappings[1]
    six_to_3 = h.mappings[2]
    _check_partition(six_to_3, 6, 3)
    composed = ca_to_6.compose(six_to_3)  # C-alpha level -> ucg3
    _check_partition(composed, 20, 3)
    for a, w in zip(composed.members, composed.weights):
        np.testing.assert_allclose(w, 1.0 / len(a))  # plain C-alpha centroid
    assert h.rho[1:] == pytest.approx([1.0, 20 / 6, 20 / 3])
    with pytest.raises(ValueError, match="fine to coarse"):
        build_hierarchy(trpcage, "ca,ucg:3,ucg:6")
    with pytest.raises(ValueError, match="must come first"):
        build_hierarchy(trpcage, "ucg:3,ca")


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


# --------------------------------------------------------------------------
# CG topologies and coarsening
# --------------------------------------------------------------------------
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


def test_coarsen_files_trpcage(tmp_path, tests_data, capsys):
    import mdtraj as md

    prefix = tmp_path / "out" / "trp"
    res = coarsen_files(tests_data / "trpcage.pdb", levels="ca,ucg:4", out_prefix=prefix)
    printed = capsys.readouterr().out
    assert "ucg4: 4 beads, rho 5.00" in printed and "ca: 20 beads" in printed
    for level, n in (("ca", 20), ("ucg4", 4)):
        files = res[level]
        traj = md.load(files["dcd"], top=files["pdb"])
        assert traj.n_atoms == n and traj.n_frames == 1
        level_file = json.loads(open(files["mapping"]).read())
        mapping = Mapping.from_json(files["mapping"])
        h = Hierarchy.from_json(files["mapping"])
        assert mapping.n_fine == h.sizes[0] and mapping.n_beads == n and level_file["level"] == level
        assert h.composed(level) == mapping
    ens_ca = md.load(str(prefix) + "_ca.pdb")
    from openmm_backmap.io.formats import load_ensemble

    ref = load_ensemble(tests_data / "trpcage.pdb")
    np.testing.assert_allclose(ens_ca.xyz[0], ref.ca_xyz[0], atol=2e-4)
    with pytest.raises(FileExistsError, match="--force"):
        coarsen_files(tests_data / "trpcage.pdb", levels="ca,ucg:4", out_prefix=prefix)
    res2 = coarsen_files(tests_data / "trpcage.pdb", levels="ca,ucg:4", out_prefix=prefix, force=True)
    assert res2["ucg4"]["n_beads"] == 4 and res2["ucg4"]["rho"] == pytest.approx(5.0)


def test_cli_coarsen(tmp_path, tests_data, capsys):
    from openmm_backmap.cli import main

    argv = ["coarsen", str(tests_data / "trpcage.pdb"), "--levels", "ca,ucg:5", "-o", str(tmp_path / "c")]
    assert main(argv) == 0
    assert (tmp_path / "c_ucg5.dcd").exists() and (tmp_path / "c_ca_mapping.json").exists()
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0
    assert main(["coarsen", str(tests_data / "trpcage.pdb"), "--levels", "ucg:50", "-o", str(tmp_path / "d")]) == 2


def test_coarsen_files_with_model_hierarchy(tmp_path, tests_data, trpcage, monkeypatch):
    hierarchy = Hierarchy([ca_mapping(trpcage.sequence), partition_mapping(trpcage.ca_xyz, 3, name="beads")])
    calls = []

    def load_model(path, device=None):
        calls.append((str(path), device))
        return types.SimpleNamespace(hierarchy=hierarchy)

    fake = types.ModuleType("openmm_backmap.model.backmapping")
    fake.load_model = load_model
    monkeypatch.setitem(sys.modules, "openmm_backmap.model.backmapping", fake)
    res = coarsen_files(tests_data / "trpcage.pdb", levels="ca,ucg:7", out_prefix=tmp_path / "m",
                        model="fake.pt", verbose=False)
    assert calls == [("fake.pt", "cpu")]
    assert sorted(res) == ["beads", "ca"]  # the model's levels, not --levels
    assert Mapping.from_json(res["beads"]["mapping"]) == hierarchy.composed("beads")
    out = coarsen(trpcage, hierarchy=hierarchy)
    assert list(out) == ["ca", "beads"] and out["beads"][0].shape == (1, 3, 3)
    assert list(coarsen(trpcage, "beads", hierarchy=hierarchy)) == ["beads"]
    with pytest.raises(KeyError, match="no level 'ucg3'"):
        coarsen(trpcage, "ucg3", hierarchy=hierarchy)
    other = Hierarchy([ca_mapping(["GLY", "ALA"])])
    fake.load_model = lambda path, device=None: types.SimpleNamespace(hierarchy=other)
    with pytest.raises(ValueError, match="another protein"):
        coarsen_files(tests_data / "trpcage.pdb", out_prefix=tmp_path / "n", model="fake.pt", verbose=False)


# --------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------
def test_adk_twelve_beads(shared_data):
    from openmm_backmap.io.formats import load_ensemble

    adk = shared_data / "train" / "md" / "adk"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = load_ensemble(adk / "adk_dims.xtc", topology=adk / "adk.pdb")
    ca = ens.ca_xyz
    assert ca.shape[1] == 214 and ens.n_frames > 50
    t0 = time.perf_counter()
    h, _ = build_hierarchy(ens, "ca,ucg:12")
    elapsed = time.perf_counter() - t0
    m = h.mappings[-1]
    rho = h.rho[-1]
    print(f"\nadk ucg12: rho = {rho:.2f}, built in {elapsed:.2f} s")
    for b, a in enumerate(m.members):
        print(f"  B{b + 1}: {len(a)} residues", _ranges(a))
    assert rho == pytest.approx(214 / 12) and round(rho, 1) == 17.8
    _check_partition(m, 214, 12)
    assert elapsed < 5.0
    # compact: no bead spans much of the protein, beads tighter than random contiguous cuts
    assert _max_intra(ca, m.members) < 3.0
    rng = np.random.default_rng(0)
    randoms = [_random_contiguous(rng, 214, 12) for _ in range(20)]
    assert _mean_radius(ca, m.members) < np.mean([_mean_radius(ca, r) for r in randoms])
    assert partition_cost(ca, m) < min(partition_cost(ca, Mapping(r)) for r in randoms)
    # mostly contiguous: few extra sequence fragments
    n_fragments = sum(1 + int(np.sum(np.diff(a) > 1)) for a in m.members)
    assert n_fragments <= 2 * 12


def _ranges(a):
    a = np.sort(a)
    breaks = np.flatnonzero(np.diff(a) > 1)
    starts = np.concatenate([[a[0]], a[breaks + 1]])
    ends = np.concatenate([a[breaks], [a[-1]]])
    return ",".join(f"{s + 1}-{e + 1}" if e > s else f"{s + 1}" for s, e in zip(starts, ends))
