"""The C-alpha -> atoms step: geometry, chirality, equivariance, TorchScript, reproducibility."""

import math

import numpy as np
import pytest
import torch

from openmm_backmap.model.geometry import dihedral, place_atom
from openmm_backmap.evaluation.metrics import bond_ok
from openmm_backmap.model.steps import CA2AA, STEP_KINDS, CA2AAConfig, ensemble_to_slots, fit_geometry, get_step_class
from openmm_backmap.model.steps.ca2aa_repack import overlap_penalty


@pytest.fixture(scope="module")
def step(trpcage):
    torch.manual_seed(0)
    x, m = ensemble_to_slots(trpcage)
    geo = fit_geometry([x], [m], [trpcage.residue_types])
    return CA2AA(CA2AAConfig(hidden=32, layers=2, neighbors=8), geo).eval()


def _inputs(ens):
    return (torch.tensor(ens.ca_xyz), torch.tensor(ens.residue_types), torch.tensor(ens.segment_start))


def test_registry_knows_the_step():
    assert get_step_class("ca2aa") is CA2AA
    assert "ca2aa" in STEP_KINDS
    with pytest.raises(ValueError, match="unknown step kind"):
        get_step_class("nope")


def test_nerf_places_atoms_with_requested_internal_coordinates():
    a, b, c = torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 0.0]), torch.tensor([1.5, 0.0, 0.0])
    d = place_atom(a, b, c, torch.tensor(1.3), torch.tensor(math.radians(110)), torch.tensor(math.radians(-60)))
    assert float(torch.linalg.vector_norm(d - c)) == pytest.approx(1.3, abs=1e-5)
    assert math.degrees(float(dihedral(a, b, c, d))) == pytest.approx(-60, abs=1e-3)


def test_rebuild_from_reference_angles_is_close(step, trpcage):
    x, m = ensemble_to_slots(trpcage)
    X = torch.tensor(np.nan_to_num(x))
    T = torch.tensor(trpcage.residue_types)[None]
    out = step.rebuild(X, torch.tensor(m), T, torch.ones_like(T, dtype=torch.bool),
                       torch.tensor(trpcage.segment_start)[None])
    valid = torch.tensor(m) & step.slot_valid[T]
    rmsd = float(((out - X) ** 2).sum(-1)[valid].mean().sqrt())
    assert rmsd < 0.4  # Å: only ideal-geometry error remains


def test_covalent_geometry_is_exact_whatever_the_network_says(step, trpcage):
    ca, types, seg = _inputs(trpcage)
    out = step(ca, types, seg, 3, 1.0).detach().numpy()
    ref = trpcage.xyz
    # every template bond has its reference length (an untrained network may still make
    # non-bonded contacts, which ged counts; the trained model is checked in benchmarks)
    bonds = trpcage.layout.bonds(trpcage.segment_start)
    d_gen = np.linalg.norm(out[0, bonds[:, 0]] - out[0, bonds[:, 1]], axis=-1)
    d_ref = np.linalg.norm(ref[0, bonds[:, 0]] - ref[0, bonds[:, 1]], axis=-1)
    assert np.all(np.abs(d_gen / d_ref - 1) < 0.1)
    assert bond_ok(ref[0], out[0], trpcage.layout.elements) > 95.0
    # C-alpha positions are kept exactly
    assert np.allclose(out[0, trpcage.layout.ca_index], ca[0].numpy(), atol=1e-5)


def test_chirality_is_l(step, trpcage):
    ca, types, seg = _inputs(trpcage)
    out = step(ca, types, seg, 0, 0.0)[0]
    lay = trpcage.layout
    for r, name in enumerate(trpcage.sequence):
        if name == "GLY":
            continue
        n, a, c, b = (out[lay.index(r, k)] for k in ("N", "CA", "C", "CB"))
        # improper N-CA-C-CB: positive (~ +34 degrees) for L amino acids
        assert float(dihedral(n, c, a, b)) * 180 / math.pi == pytest.approx(-34.0, abs=15.0) or \
            float(torch.dot(torch.cross(n - a, c - a, dim=0), b - a)) > 0


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_equivariance_under_rotation_and_translation(step, trpcage, temperature, random_rotation):
    ca, types, seg = _inputs(trpcage)
    rot = random_rotation(1)
    shift = torch.tensor([1.0, -2.0, 0.5])
    out = step(ca, types, seg, 11, temperature)
    out_rot = step(ca @ rot.T + shift, types, seg, 11, temperature)
    assert torch.allclose(out @ rot.T + shift, out_rot, atol=2e-4)


def test_seed_reproducible_and_samples_differ(step, trpcage):
    ca, types, seg = _inputs(trpcage)
    a = step(ca, types, seg, 5, 1.0)
    b = step(ca, types, seg, 5, 1.0)
    c = step(ca, types, seg, 6, 1.0)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    d0 = step(ca, types, seg, 5, 0.0)
    assert torch.equal(d0, step(ca, types, seg, 99, 0.0))  # deterministic mode ignores the seed


def test_torchscript_round_trip(step, trpcage, tmp_path):
    ca, types, seg = _inputs(trpcage)
    scripted = torch.jit.script(step)
    path = tmp_path / "step.pt"
    torch.jit.save(scripted, str(path))
    loaded = torch.jit.load(str(path))
    assert torch.allclose(loaded(ca, types, seg, 2, 1.0), step(ca, types, seg, 2, 1.0), atol=1e-5)


def test_chain_breaks_termini_and_tiny_segments(step):
    # three segments: 1 residue, 2 residues, 4 residues
    torch.manual_seed(0)
    ca = torch.cat([torch.zeros(1, 1, 3), torch.tensor([[[1.0, 0, 0], [1.38, 0, 0]]]),
                    torch.tensor([[[2.5, 0, 0], [2.8, 0.25, 0], [3.1, 0.0, 0.1], [3.4, 0.25, 0.2]]])], dim=1)
    types = torch.tensor([0, 5, 13, 1, 7, 19, 16])
    seg = torch.tensor([True, True, False, True, False, False, False])
    out = step(ca, types, seg, 0, 1.0)
    assert torch.isfinite(out).all()


def test_loss_is_finite_and_has_gradients(step, trpcage):
    x, m = ensemble_to_slots(trpcage)
    T = torch.tensor(trpcage.residue_types)[None]
    loss, parts = step.loss(torch.tensor(np.nan_to_num(x)), torch.tensor(m), T, torch.ones_like(T, dtype=torch.bool),
                            torch.tensor(trpcage.segment_start)[None], ca_noise=0.05)
    loss.backward()
    assert math.isfinite(float(loss)) and set(parts) == {"nll_bb", "nll_chi"}
    assert step.embed.weight.grad is not None and step.embed.weight.grad.abs().sum() > 0
    step.zero_grad()


def _close_contacts(xyz, ens, cutoff_nm=0.2):
    from scipy.spatial import cKDTree

    lay = ens.layout
    bonds = set(map(tuple, lay.bonds(ens.segment_start).tolist()))
    pairs = cKDTree(xyz).query_pairs(cutoff_nm)
    return sum(1 for i, j in pairs if lay.atom_residue[i] != lay.atom_residue[j] and (i, j) not in bonds)


def test_repacking_removes_side_chain_overlaps(trpcage):
    torch.manual_seed(3)
    x, m = ensemble_to_slots(trpcage)
    geo = fit_geometry([x], [m], [trpcage.residue_types])
    # carbonyls=False: the carbonyl fix sees the side chains, so it could move the backbone of one of the two
    plain = CA2AA(CA2AAConfig(hidden=32, layers=2, neighbors=8, repack_sweeps=0, carbonyls=False), geo).eval()
    packed = CA2AA(CA2AAConfig(hidden=32, layers=2, neighbors=8, repack_sweeps=6, carbonyls=False), geo).eval()
    packed.load_state_dict(plain.state_dict())
    ca, types, seg = _inputs(trpcage)
    before = sum(_close_contacts(plain(ca, types, seg, s, 1.0)[0].detach().numpy(), trpcage) for s in range(4))
    after = sum(_close_contacts(packed(ca, types, seg, s, 1.0)[0].detach().numpy(), trpcage) for s in range(4))
    assert before > 0 and after < before
    # repacking only changes side chains beyond CB
    a, b = plain(ca, types, seg, 0, 0.0)[0], packed(ca, types, seg, 0, 0.0)[0]
    lay = trpcage.layout
    slot = np.arange(lay.n_atoms) - lay.residue_start[lay.atom_residue]
    assert torch.allclose(a[slot < 5], b[slot < 5])


def test_chunks_of_frames_give_the_same_atoms(trpcage):
    """Encoding and repacking run on chunks of frames (bounded memory): a chunk of one frame, or of all of
    them, gives the same structures, sampled or deterministic."""
    torch.manual_seed(5)
    x, m = ensemble_to_slots(trpcage)
    step = CA2AA(CA2AAConfig(hidden=32, layers=2, neighbors=8), fit_geometry([x], [m], [trpcage.residue_types])).eval()
    ca, types, seg = _inputs(trpcage)
    ca = ca.repeat(5, 1, 1) + torch.randn(5, ca.shape[1], 3, generator=torch.Generator().manual_seed(1)) * 0.02
    with torch.no_grad():
        whole = [step(ca, types, seg, 3, t) for t in (0.0, 1.0)]
        step.chunk_residues = (2 * ca.shape[1], 2 * ca.shape[1])  # two frames per chunk: 2 + 2 + 1
        assert step.chunk_frames(ca) == 2
        chunked = [step(ca, types, seg, 3, t) for t in (0.0, 1.0)]
    for a, b in zip(whole, chunked):
        assert torch.allclose(a, b, atol=1e-5)


def test_candidate_chis_follow_the_heads_pair_by_pair(step, trpcage):
    """Candidate 1 + m * k1 + k2 is chi1 mode k1, chi2 mode k2 of the head given it, then the most probable
    chi3 and chi4; its penalty is the nats of both modes below the best ones (the heads run stacked)."""
    ca, types, seg = _inputs(trpcage)
    with torch.no_grad():
        h = step.encode(ca * 10.0, types.unsqueeze(0), torch.ones(1, len(types), dtype=torch.bool),
                        seg.unsqueeze(0))[0]
        ctx = step.chi_context(h)
        chi = torch.zeros(1, len(types), 4)
        cands, pen = step.candidate_chis(ctx, chi)
        m = step.mixture
        assert cands.shape == (1 + m * m, 1, len(types), 4) and torch.equal(cands[0], chi)
        heads = step.chi_heads
        for k1, k2 in ((0, 0), (1, m - 1), (m - 1, 2)):
            zeros = torch.zeros(1, len(types), 8)
            logp1, mu1, _ = heads[0].conditional(ctx[0], zeros)
            c1 = mu1[..., k1]
            prev = torch.cat([torch.stack([c1.cos(), c1.sin()], -1), zeros[..., 2:]], -1)
            logp2, mu2, _ = heads[1].conditional(ctx[1], prev)
            c2 = mu2[..., k2]
            prev = torch.cat([prev[..., :2], torch.stack([c2.cos(), c2.sin()], -1), zeros[..., 4:]], -1)
            logp3, mu3, _ = heads[2].conditional(ctx[2], prev)
            c3 = mu3.gather(-1, logp3.argmax(-1, keepdim=True)).squeeze(-1)
            prev = torch.cat([prev[..., :4], torch.stack([c3.cos(), c3.sin()], -1), zeros[..., 6:]], -1)
            logp4, mu4, _ = heads[3].conditional(ctx[3], prev)
            c4 = mu4.gather(-1, logp4.argmax(-1, keepdim=True)).squeeze(-1)
            i = 1 + m * k1 + k2
            assert torch.allclose(cands[i, 0], torch.stack([c1, c2, c3, c4], -1)[0], atol=1e-5)
            expected = logp1.max(-1).values - logp1[..., k1] + logp2.max(-1).values - logp2[..., k2]
            assert torch.allclose(pen[i], expected, atol=1e-5)


def test_split_chi_head_equals_full_head(step):
    """Candidates reuse the first layer on the shared features: same mixture as the full input."""
    torch.manual_seed(1)
    head = step.chi_heads[2]
    h, extra = torch.randn(3, 7, 32), torch.randn(3, 7, 8)
    for a, b in zip(head(torch.cat([h, extra], dim=-1)), head.conditional(head.context(h), extra)):
        assert torch.allclose(a, b, atol=1e-5)


def test_attention_layer_matches_the_direct_formula(step):
    """The layer folds the edge projection into queries and attention weights; check it against
    softmax(q . (k_j + e_k)) summed over (v_j + e_v) computed the direct way."""
    torch.manual_seed(2)
    layer = step.layers[0]
    b, r, kk, hdim = 2, 9, 5, 32
    h = torch.randn(b, r, hdim)
    nb = torch.randint(0, r, (b, r, kk))
    edge = torch.randn(b, r, kk, layer.e.in_features)
    mask = torch.rand(b, r, kk) > 0.2
    mask[:, :, 0] = True
    x = layer.ln1(h)
    q = layer.q(x).view(b, r, 1, layer.heads, -1)
    kv = torch.stack([layer.kv(x)[i, nb[i]] for i in range(b)]) + layer.e(edge)
    k, v = kv.chunk(2, dim=-1)
    k, v = k.reshape(b, r, kk, layer.heads, -1), v.reshape(b, r, kk, layer.heads, -1)
    att = ((q * k).sum(-1) / math.sqrt(k.shape[-1])).masked_fill(~mask.unsqueeze(-1), -1e9).softmax(dim=2)
    out = h + layer.o((att.unsqueeze(-1) * v).sum(2).reshape(b, r, -1))
    out = out + layer.ff(layer.ln2(out))
    assert torch.allclose(layer(h, nb, edge, mask), out, atol=1e-5)


def test_overlap_penalty_matches_brute_force(step):
    """sum over atom pairs closer than the wall of (wall - d)^2; missing atoms (NaN) never count."""
    g = torch.Generator().manual_seed(4)
    sc = torch.randn(6, 3, 4, 3, generator=g) * 2.0
    neigh = torch.randn(6, 10, 3, generator=g) * 2.0
    sc[:, :, 3] = float("nan")
    neigh[:, 7:] = float("nan")
    d = torch.linalg.vector_norm(sc[:, :, :3].unsqueeze(3) - neigh[:, None, None, :7], dim=-1)
    expected = ((step.repack_wall - d).clamp_min(0.0) ** 2).sum(dim=(-1, -2))
    assert expected.sum() > 0
    assert torch.allclose(overlap_penalty(sc, neigh, step.repack_wall), expected, atol=1e-5)
    # far from the origin (a large system): the squared distances lose digits to |a|^2 + |b|^2 but stay usable
    shift = torch.tensor([60.0, -45.0, 70.0])
    assert torch.allclose(overlap_penalty(sc + shift, neigh + shift, step.repack_wall), expected, atol=2e-3)
