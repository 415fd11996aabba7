"""The cgvae training task: options, validation, export through the task, and k-step composition."""

import numpy as np
import pytest
import torch

from openmm_backmap.mapping import coarsen
from openmm_backmap.model import KStepModel, export_kstep, load_model, save_model
from openmm_backmap.structure import atom_layout
from openmm_backmap.train import TASKS, export_step
from openmm_backmap.train.cgvae_task import CGVAETask
from openmm_backmap.train.config import RunConfig, from_dict, load_config

torch.set_num_threads(1)
SMALL = {"hidden": 16, "latent": 3, "encoder_layers": 1, "prior_layers": 1, "coarse_layers": 1,
         "decoder_layers": 2, "fine_neighbors": 6, "bead_neighbors": 4, "rbf": 8}


@pytest.fixture(scope="module")
def system(trpcage, noisy_copies):
    """Trp-cage plus 0.3 Å noise (6 frames)."""
    return noisy_copies(trpcage, 6, 0.03, 0)


def _cfg(tmp_path, target="ca", **task):
    return from_dict(RunConfig, {"kind": "cgvae", "name": f"trp-{target}", "model": dict(SMALL),
                                 "task": {"beads": 4, "target": target, "batch_frames": 2, **task},
                                 "run_dir": str(tmp_path / "run"), "seed": 0})


@pytest.fixture(scope="module")
def exported(system, noisy_copies, tmp_path_factory):
    """A cgvae UCG4 -> CA model trained for 3 steps and exported through the task."""
    tmp = tmp_path_factory.mktemp("cgvae")
    ens = system
    logs = []
    cfg = _cfg(tmp)
    assert TASKS["cgvae"] is CGVAETask  # registered when openmm_backmap.train is imported
    task = CGVAETask(cfg, [ens], [noisy_copies(ens, 2, 0.03, 1)], {"files": []}, log=logs.append)
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
    ens = system
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
    ens = system
    with pytest.raises(ValueError, match="unknown key"):
        CGVAETask(_cfg(tmp_path, bogus=1), [ens], [ens], {}, log=lambda *a: None)
    cfg = _cfg(tmp_path)
    cfg.model["hidden_size"] = 3
    with pytest.raises(ValueError, match="unknown key"):
        CGVAETask(cfg, [ens], [ens], {}, log=lambda *a: None)
    with pytest.raises(ValueError, match="target"):
        CGVAETask(_cfg(tmp_path, target="cb"), [ens], [ens], {}, log=lambda *a: None)


def test_compose_with_ca2aa(system, exported, tmp_path):
    from openmm_backmap.model.steps import CA2AA, CA2AAConfig

    path, _ = exported
    ens = system
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

    from openmm_backmap.model.steps import CGVAEConfig
    from openmm_backmap.train.cgvae_task import CGVAETaskConfig

    root = Path(__file__).resolve().parents[2] / "examples" / "configs"
    for name in ("adk-ucg12-step1.yaml", "adk-ucg12-onestep.yaml", "trpcage-ucg4-step1.yaml"):
        cfg = load_config(root / name)
        assert cfg.kind == "cgvae"
        from_dict(CGVAEConfig, cfg.model, "model")
        from_dict(CGVAETaskConfig, cfg.task, "task")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: cgvae\ntask: {beads: 4}\noptim: {max_stepz: 3}\n")
    with pytest.raises(ValueError, match="unknown key"):
        load_config(bad)


def _train_export(task, cfg, path, steps=2):
    rng = np.random.default_rng(0)
    opt = torch.optim.Adam(task.model.parameters(), lr=1e-3)
    for _ in range(steps):
        loss, _ = task.loss(task.sample_batch(rng))
        opt.zero_grad()
        loss.backward()
        opt.step()
    task.model.eval()
    return export_step(task, cfg, {"steps": steps}, str(path))


def test_three_step_model_composes_and_backmaps(system, noisy_copies, tmp_path):
    """k = 3: ucg4 -> ucg10 -> ca -> aa. The middle level nests in the input level and is the partition that a
    ``beads: 10`` run on the same frames builds, so the parts compose and the output follows the chain."""
    from openmm_backmap.model.steps import CA2AA, CA2AAConfig

    ens, val = system, noisy_copies(system, 2, 0.03, 1)
    logs = []
    task_a = CGVAETask(_cfg(tmp_path / "a", target="ucg10"), [ens], [val], {"files": []}, log=logs.append)
    assert "ucg10 beads (10 particles)" in logs[-1]
    assert task_a.hierarchy.levels == ["aa", "ca", "ucg10", "ucg4"]
    assert task_a.train_fine.shape[1:] == (10, 3) and task_a.train_beads.shape[1:] == (4, 3)
    # the input beads are the centroids of the finer beads' C-alphas: the levels nest
    unit = task_a.hierarchy.mappings[1].assignment()  # residue -> finer bead
    for b, members in enumerate(task_a.hierarchy.mappings[2].members):
        inside = np.isin(unit, members)
        assert set(task_a.context["fine_bead"][unit[inside]]) == {b}
    path_a = _train_export(task_a, task_a.cfg, tmp_path / "a.pt")
    bm_a = load_model(path_a, device="cpu")
    assert bm_a.output_level == "ucg10" and bm_a.topology().n_atoms == 10

    task_b = CGVAETask(_cfg(tmp_path / "b", beads=10), [ens], [val], {"files": []}, log=lambda *a: None)
    path_b = _train_export(task_b, task_b.cfg, tmp_path / "b.pt")
    torch.manual_seed(0)
    ca_model = KStepModel([CA2AA(CA2AAConfig(hidden=16, layers=1, heads=2, neighbors=4, mixture=2, rbf=4,
                                             edge_dim=8))])
    ca_path = save_model(ca_model, str(tmp_path / "ca2aa.pt"), {"kind": "ca2aa", "name": "tiny", "transferable": True,
                                                                "steps": [{"kind": "ca2aa"}]})
    out = export_kstep([path_a, path_b, ca_path], str(tmp_path / "k3.pt"))
    bm = load_model(out, device="cpu")
    assert [(s["input"], s["output"]) for s in bm.metadata["steps"][:2]] == [("ucg4", "ucg10"), ("ucg10", "ca")]
    assert bm.n_beads == 4 and bm.output_level == "aa"
    cg = coarsen(ens, hierarchy=bm.hierarchy, levels="ucg4")["ucg4"][0][:2]
    res = bm.backmap(cg, deterministic=True, seed=0)
    assert res.xyz.shape == (2, atom_layout(ens.sequence).n_atoms, 3) and np.isfinite(res.xyz).all()
    # the C-alphas of the composed model are step b's output on step a's output
    mid = bm_a.backmap(cg, deterministic=True, seed=0).xyz
    ca = load_model(path_b, device="cpu").backmap(mid, deterministic=True, seed=0).xyz
    assert np.allclose(res.xyz[:, atom_layout(ens.sequence).ca_index], ca, atol=1e-4)


def test_three_step_refuses_another_partition(system, noisy_copies, tmp_path):
    """Two ucg10 levels with one name but different partitions must not compose: the second step would read
    beads it was not trained on, and the output would be silently wrong."""
    ens, val = system, noisy_copies(system, 2, 0.03, 1)
    task_a = CGVAETask(_cfg(tmp_path / "a", target="ucg10"), [ens], [val], {"files": []}, log=lambda *a: None)
    path_a = _train_export(task_a, task_a.cfg, tmp_path / "a.pt", steps=1)
    other = CGVAETask(_cfg(tmp_path / "b", beads=10, refine=False, fragment_penalty=0.0), [ens], [val],
                      {"files": []}, log=lambda *a: None)
    mine = task_a.hierarchy.composed("ucg10").members
    theirs = other.hierarchy.composed("ucg10").members
    if all(np.array_equal(x, y) for x, y in zip(mine, theirs)):  # make sure the partitions really differ
        other = CGVAETask(_cfg(tmp_path / "b", beads=10), [noisy_copies(ens, 6, 0.3, 7)], [val], {"files": []},
                          log=lambda *a: None)
        theirs = other.hierarchy.composed("ucg10").members
    assert not all(np.array_equal(x, y) for x, y in zip(mine, theirs))
    path_b = _train_export(other, other.cfg, tmp_path / "b.pt", steps=1)
    with pytest.raises(ValueError, match="another partition"):
        export_kstep([path_a, path_b], str(tmp_path / "k.pt"))


@pytest.mark.parametrize("target,match", [("ucg4", "finer than the input"), ("ucg2", "finer than the input"),
                                          ("ucgx", "'ca', 'aa' or 'ucgM'"), ("ucg99", "beads")])
def test_bad_finer_targets(system, tmp_path, target, match):
    with pytest.raises(ValueError, match=match):
        CGVAETask(_cfg(tmp_path, target=target), [system], [system], {}, log=lambda *a: None)
