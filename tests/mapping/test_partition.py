"""Ultra-coarse partitions: exact contiguous optimum, refinement, segment starts, nested levels, real data."""

import itertools
import time
import warnings

import numpy as np
import pytest

from openmm_backmap.mapping import Mapping, build_hierarchy, partition_cost, partition_mapping


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


def _ranges(a):
    a = np.sort(a)
    breaks = np.flatnonzero(np.diff(a) > 1)
    starts = np.concatenate([[a[0]], a[breaks + 1]])
    ends = np.concatenate([a[breaks], [a[-1]]])
    return ",".join(f"{s + 1}-{e + 1}" if e > s else f"{s + 1}" for s, e in zip(starts, ends))


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


def test_adk_twelve_beads(shared_data):
    from openmm_backmap.io import load_ensemble

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
