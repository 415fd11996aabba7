"""The per-system UCG -> C-alpha / heavy-atom cgvae step: equivariance, seeds, TorchScript, loss."""

import numpy as np
import pytest
import torch

from openmm_backmap.mapping import build_hierarchy
from openmm_backmap.model import KStepModel, load_model, save_model
from openmm_backmap.model.steps import CGVAE, CGVAEConfig, system_context
from openmm_backmap.structure import atom_layout

torch.set_num_threads(1)
EMPTY_T = torch.zeros(0, dtype=torch.long)
EMPTY_S = torch.zeros(0, dtype=torch.bool)
SMALL = {"hidden": 16, "latent": 3, "encoder_layers": 1, "prior_layers": 1, "coarse_layers": 1,
         "decoder_layers": 2, "fine_neighbors": 6, "bead_neighbors": 4, "rbf": 8}


@pytest.fixture(scope="module")
def system(trpcage, noisy_copies):
    """Trp-cage (test PDB plus 0.3 Å noise, 6 frames), its aa -> ca -> ucg4 hierarchy, and bead coordinates (nm)."""
    ens = noisy_copies(trpcage, 6, 0.03, 0)
    h, _ = build_hierarchy(ens, "ucg:4")
    beads = torch.as_tensor(h.composed("ucg4").apply(ens.xyz), dtype=torch.float32)  # nm
    return ens, h, beads


def _step(system, target, seed=0):
    ens, h, _ = system
    fine = (ens.ca_xyz if target == "ca" else ens.xyz) * 10.0
    ctx = system_context(ens.sequence, ens.segment_start, h.mappings[1].assignment(), target, fine,
                         SMALL["fine_neighbors"], SMALL["bead_neighbors"])
    torch.manual_seed(seed)
    step = CGVAE(CGVAEConfig(**SMALL), ctx).eval()
    # untrained coordinate heads start at zero: perturb them so the EGNN updates are exercised
    with torch.no_grad():
        for layer in step.dec_layers:
            layer.x_ff.weight.normal_(std=0.3)
            layer.x_fb.weight.normal_(std=0.3)
    return step


@pytest.mark.parametrize("target", ["ca", "aa"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_equivariance(system, target, temperature, random_rotation):
    step = _step(system, target)
    beads = system[2][:2]
    rot, shift = random_rotation(3), torch.tensor([0.7, -1.2, 2.5])
    with torch.no_grad():
        out = step(beads, EMPTY_T, EMPTY_S, 11, temperature)
        out_rt = step(beads @ rot.T + shift, EMPTY_T, EMPTY_S, 11, temperature)
    n = 20 if target == "ca" else atom_layout(system[0].sequence).n_atoms
    assert out.shape == (2, n, 3)
    assert torch.allclose(out_rt, out @ rot.T + shift, atol=2e-5)
    # the model is not trivially invariant: output moves with the input
    assert not torch.allclose(out_rt, out, atol=1e-2)


def test_seeds(system):
    step = torch.jit.script(_step(system, "ca"))
    beads = system[2][:2]
    a = step(beads, EMPTY_T, EMPTY_S, 5, 1.0)
    assert torch.equal(a, step(beads, EMPTY_T, EMPTY_S, 5, 1.0))
    assert not torch.allclose(a, step(beads, EMPTY_T, EMPTY_S, 6, 1.0))
    det = step(beads, EMPTY_T, EMPTY_S, 5, 0.0)
    assert torch.equal(det, step(beads, EMPTY_T, EMPTY_S, 99, 0.0))
    assert not torch.allclose(a, det)
    # frames of one batch get different noise
    same = beads[:1].repeat(2, 1, 1)
    s = step(same, EMPTY_T, EMPTY_S, 5, 1.0)
    assert not torch.allclose(s[0], s[1])


def test_torchscript_roundtrip(system, tmp_path):
    step = _step(system, "aa")
    beads = system[2][:2]
    scripted = torch.jit.script(step)
    path = str(tmp_path / "step.pt")
    torch.jit.save(scripted, path)
    loaded = torch.jit.load(path)
    with torch.no_grad():
        eager = step(beads, EMPTY_T, EMPTY_S, 2, 1.0)
    assert torch.equal(loaded(beads, EMPTY_T, EMPTY_S, 2, 1.0), eager)
    assert torch.equal(scripted(beads, EMPTY_T, EMPTY_S, 2, 1.0), eager)
    # passing the system's own residue types changes nothing
    types = torch.as_tensor(system[0].residue_types)
    assert torch.equal(loaded(beads, types, torch.zeros(20, dtype=torch.bool), 2, 1.0), eager)
    with pytest.raises(Exception, match="expects 4 beads"):  # torch.jit.Error
        loaded(beads[:, :3], EMPTY_T, EMPTY_S, 2, 1.0)


def test_kstep_save_load(system, tmp_path):
    ens = system[0]
    step = _step(system, "ca")
    model = KStepModel([step], torch.as_tensor(ens.residue_types), torch.as_tensor(ens.segment_start), 4).eval()
    beads = system[2][:3]
    with torch.no_grad():
        eager = model(beads, EMPTY_T, EMPTY_S, 4, 2, 1.0)
    path = save_model(model, str(tmp_path / "m.pt"), {"kind": "cgvae", "name": "t", "sequence": ens.sequence,
                                                      "segment_start": ens.segment_start.tolist(), "n_beads": 4,
                                                      "steps": [{"kind": "cgvae"}]})
    bm = load_model(path, device="cpu")
    with torch.no_grad():
        out = bm.module(beads, EMPTY_T, EMPTY_S, 4, 2, 1.0)
    assert out.shape == (6, 20, 3)
    assert torch.equal(out, eager)


def test_overfit_loss_decreases(system):
    ens, h, _ = system
    ctx = system_context(ens.sequence, ens.segment_start, h.mappings[1].assignment(), "ca", ens.ca_xyz * 10.0)
    torch.manual_seed(0)
    step = CGVAE(CGVAEConfig(**SMALL), ctx).train()
    fine = torch.as_tensor(ens.ca_xyz * 10.0)
    beads = system[2] * 10.0
    opt = torch.optim.Adam(step.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss, parts = step.loss(fine, beads, beta=0.01)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert set(parts) >= {"recon", "kl", "bond"}
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:5])
