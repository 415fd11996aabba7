"""The per-system UCG -> C-alpha / heavy-atom cgvae step, its task, export and k-step composition."""

import numpy as np
import pytest
import torch

from openmm_backmap.model.backmapping import KStepModel, export_kstep, export_step, load_model, save_model
from openmm_backmap.structure.ensemble import ProteinEnsemble
from openmm_backmap.mapping.operators import build_hierarchy, coarsen
from openmm_backmap.model.steps.cgvae import CGVAE, CGVAEConfig, system_context
from openmm_backmap.structure.templates import atom_layout
from openmm_backmap.train.config import RunConfig, from_dict, load_config

torch.set_num_threads(1)
EMPTY_T = torch.zeros(0, dtype=torch.long)
EMPTY_S = torch.zeros(0, dtype=torch.bool)
SMALL = {"hidden": 16, "latent": 3, "encoder_layers": 1, "prior_layers": 1, "coarse_layers": 1,
         "decoder_layers": 2, "fine_neighbors": 6, "bead_neighbors": 4, "rbf": 8}


def _noisy(ens, n, scale_nm, seed):
    rng = np.random.default_rng(seed)
    xyz = ens.xyz[[0] * n] + rng.normal(scale=scale_nm, size=(n,) + ens.xyz.shape[1:]).astype(np.float32)
    return ProteinEnsemble(ens.sequence, xyz, ens.mask[[0] * n], ens.segment_start, ens.chain_ids,
                           ens.residue_numbers, None, "noisy trpcage")


@pytest.fixture(scope="module")
def system(tests_data):
    """Trp-cage (test PDB plus 0.3 Å noise, 6 frames), its aa -> ca -> ucg4 hierarchy, and bead coordinates (nm)."""
    from openmm_backmap.io.formats import load_ensemble

    ens = _noisy(load_ensemble(tests_data / "trpcage.pdb"), 6, 0.03, 0)
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


def _rotation(seed):
    q = torch.as_tensor(np.random.default_rng(seed).normal(size=4), dtype=torch.float64)
    a, b, c, d = (q / q.norm()).tolist()
    return torch.tensor([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                         [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
                         [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d]],
                        dtype=torch.float32)


@pytest.mark.parametrize("target", ["ca", "aa"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_equivariance(system, target, temperature):
    step = _step(system, target)
    beads = system[2][:2]
    rot, shift = _rotation(3), torch.tensor([0.7, -1.2, 2.5])
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


def _cfg(tmp_path, target="ca", **task):
    return from_dict(RunConfig, {"kind": "cgvae", "name": f"trp-{target}", "model": dict(SMALL),
                                 "task": {"beads": 4, "target": target, "batch_frames": 2, **task},
                                 "run_dir": str(tmp_path / "run"), "seed": 0})


@pytest.fixture(scope="module")
def exported(system, tmp_path_factory):
    """A cgvae UCG4 -> CA model trained for 3 steps and exported through the task."""
    from openmm_backmap.train.cgvae_task import CGVAETask
    from openmm_backmap.train.tasks import TASKS, _load_builtin

    tmp = tmp_path_factory.mktemp("cgvae")
    ens = system[0]
    logs = []
    cfg = _cfg(tmp)
    _load_builtin()  # what make_task does to find the task
    assert TASKS["cgvae"] is CGVAETask
    task = CGVAETask(cfg, [ens], [_noisy(ens, 2, 0.03, 1)], {"files": []}, log=logs.append)
    assert any("ucg4" in line for line in logs)
    rng = np.random.default_rng(0)
    opt = torch.optim.Adam(task.model.parameters(), lr=1e-3)
    for _ in range(3):
        loss, _ = task.loss(task.sample_batch(rng))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert int(task.model.train_steps) == 3
    task.model.eval()
    with torch.no_grad():
        metrics = task.validate()
    assert {"val_loss", "val_rmsd_A", "val_post_rmsd_A"} <= set(metrics)
    assert np.isfinite(metrics["val_loss"]) and metrics["val_rmsd_A"] > 0
    path = export_step(task, cfg, {"steps": 3}, str(tmp / "step1.pt"))
    return path, task


def test_task_export_loads_and_backmaps(system, exported):
    path, task = exported
    ens = system[0]
    bm = load_model(path, device="cpu")
    assert bm.kind == "cgvae" and not bm.transferable
    assert bm.n_beads == 4
    assert bm.sequence == list(ens.sequence)
    assert bm.hierarchy.levels == ["aa", "ca", "ucg4"]
    assert bm.metadata["steps"][0]["output"] == "ca"
    assert bm.cg_topology.n_atoms == 4
    assert np.allclose(bm.reference_cg_xyz, task.train_beads[0] / 10.0, atol=1e-3)  # PDB precision
    cg = coarsen(ens, hierarchy=bm.hierarchy, levels="ucg4")["ucg4"][0]
    res = bm.backmap(cg[:2], samples=2, seed=1)
    assert res.xyz.shape == (4, 20, 3)  # C-alpha trace (frame-major samples)
    det = bm.backmap(cg[:1], deterministic=True, seed=1)
    assert np.array_equal(det.xyz, bm.backmap(cg[:1], deterministic=True, seed=2).xyz)


def test_task_rejects_bad_options(system, tmp_path):
    from openmm_backmap.train.cgvae_task import CGVAETask

    ens = system[0]
    with pytest.raises(ValueError, match="unknown key"):
        CGVAETask(_cfg(tmp_path, bogus=1), [ens], [ens], {}, log=lambda *a: None)
    cfg = _cfg(tmp_path)
    cfg.model["hidden_size"] = 3
    with pytest.raises(ValueError, match="unknown key"):
        CGVAETask(cfg, [ens], [ens], {}, log=lambda *a: None)
    with pytest.raises(ValueError, match="target"):
        CGVAETask(_cfg(tmp_path, target="cb"), [ens], [ens], {}, log=lambda *a: None)


def test_compose_with_ca2aa(system, exported, tmp_path):
    from openmm_backmap.model.steps.ca2aa import CA2AA, CA2AAConfig

    path, _ = exported
    ens = system[0]
    torch.manual_seed(0)
    ca_model = KStepModel([CA2AA(CA2AAConfig(hidden=16, layers=1, heads=2, neighbors=4, mixture=2, rbf=4,
                                             edge_dim=8))])
    ca_path = save_model(ca_model, str(tmp_path / "ca2aa.pt"), {"kind": "ca2aa", "name": "tiny", "transferable": True,
                                                                "steps": [{"kind": "ca2aa"}]})
    out = export_kstep([path, ca_path], str(tmp_path / "kstep.pt"))
    bm = load_model(out, device="cpu")
    assert bm.kind == "kstep" and bm.n_beads == 4 and bm.sequence == list(ens.sequence)
    assert [s["kind"] for s in bm.metadata["steps"]] == ["cgvae", "ca2aa"]
    # levels from the two ends, per-part training summaries under components only
    assert bm.metadata["input_level"] == "ucg4" and bm.metadata["output_level"] == "aa" == bm.output_level
    assert [c["name"] for c in bm.metadata["components"]][1] == "tiny" and "training" not in bm.metadata
    assert bm.metadata["name"].endswith("+tiny")
    cg = coarsen(ens, hierarchy=bm.hierarchy, levels="ucg4")["ucg4"][0][:2]
    res = bm.backmap(cg, samples=1, seed=3)
    lay = atom_layout(ens.sequence)
    assert res.xyz.shape == (2, lay.n_atoms, 3)
    assert [a.name for a in res.topology.atoms] == list(lay.atom_names)
    # the heavy atoms are built around the first step's C-alpha trace (canonical order: CA at ca_index)
    ca = load_model(path, device="cpu").backmap(cg, samples=1, seed=3)  # step 0 gets the same seed stream
    assert np.allclose(res.xyz[:, lay.ca_index], ca.xyz, atol=1e-5)


def test_example_configs_parse(tmp_path):
    from pathlib import Path

    from openmm_backmap.model.steps.cgvae import CGVAEConfig
    from openmm_backmap.train.cgvae_task import CGVAETaskConfig

    root = Path(__file__).resolve().parents[1] / "examples" / "configs"
    for name in ("adk-ucg12-step1.yaml", "adk-ucg12-onestep.yaml", "trpcage-ucg4-step1.yaml"):
        cfg = load_config(root / name)
        assert cfg.kind == "cgvae"
        from_dict(CGVAEConfig, cfg.model, "model")
        from_dict(CGVAETaskConfig, cfg.task, "task")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: cgvae\ntask: {beads: 4}\noptim: {max_stepz: 3}\n")
    with pytest.raises(ValueError, match="unknown key"):
        load_config(bad)
