"""Training configs and an end-to-end tiny training run."""

import csv
import json

import pytest
import yaml

from openmm_backmap.train import load_config, train_model as train
from openmm_backmap.train.config import RunConfig, from_dict


@pytest.fixture
def tiny_config(tmp_path, tiny_training):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_training))
    return path


def test_unknown_keys_are_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"kind": "ca2aa", "optim": {"learning_rate": 1}}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['learning_rate'\] in optim"):
        load_config(bad)
    with pytest.raises(ValueError, match="expected int"):
        from_dict(RunConfig, {"seed": "x"})


def test_overrides_and_relative_paths(tiny_config):
    cfg = load_config(tiny_config, ["optim.max_steps=2", "model.hidden=8"])
    assert cfg.optim.max_steps == 2 and cfg.model["hidden"] == 8
    assert cfg.run_dir.startswith(str(tiny_config.parent))


def test_train_writes_config_log_checkpoint_and_model_then_resumes(tiny_config, seed):
    from openmm_backmap.model import load_model

    summary = train(tiny_config, log=lambda *a: None)
    run = tiny_config.parent / "run"
    assert (run / "config.yaml").exists() and (run / "best.pt").exists() and (run / "last.pt").exists()
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert float(rows[-1]["val_rmsd_A"]) > 0
    resolved = yaml.safe_load(open(run / "config.yaml"))
    assert resolved["model"]["hidden"] == 16
    bm = load_model(summary["model_path"], device="cpu")
    assert bm.metadata["config"]["optim"]["max_steps"] == 6  # resolved config inside the model file
    assert bm.metadata["training"]["data"]["train_frames"] == 8
    # resume continues from the checkpoint
    more = train(tiny_config, resume=True, overrides=["optim.max_steps=9"], log=lambda *a: None)
    assert more["steps"] == 9
    assert json.load(open(run / "summary.json"))["steps"] == 9


def test_resume_continues_exactly(tiny_config):
    """Stopping at a checkpoint and resuming gives the same weights as one uninterrupted run."""
    import torch

    from openmm_backmap.train.checkpoint import load_checkpoint

    quiet = {"log": lambda *a: None}
    train(tiny_config, overrides=["run_dir=straight", "output=straight/model.pt"], **quiet)
    train(tiny_config, overrides=["run_dir=split", "output=split/model.pt", "optim.max_steps=3"], **quiet)
    assert load_checkpoint(str(tiny_config.parent / "split" / "last.pt"))["state"]["step"] == 3
    train(tiny_config, resume=True, overrides=["run_dir=split", "output=split/model.pt"], **quiet)
    straight = load_checkpoint(str(tiny_config.parent / "straight" / "last.pt"))
    split = load_checkpoint(str(tiny_config.parent / "split" / "last.pt"))
    assert split["state"]["step"] == straight["state"]["step"] == 6
    for key, value in straight["model"].items():
        assert torch.equal(split["model"][key], value), key
    assert torch.equal(split["torch_rng"], straight["torch_rng"])


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: what a crafted checkpoint could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def test_resume_refuses_a_checkpoint_with_pickled_code(tiny_config):
    import torch

    quiet = {"log": lambda *a: None}
    train(tiny_config, overrides=["optim.max_steps=3"], **quiet)
    run = tiny_config.parent / "run"
    marker = tiny_config.parent / "payload-ran"
    ck = torch.load(run / "last.pt", weights_only=True)
    ck["state"]["note"] = _Payload(str(marker))
    torch.save(ck, run / "last.pt")
    with pytest.raises(ValueError, match="refusing to load"):
        train(tiny_config, resume=True, **quiet)
    assert not marker.exists()


def test_cli_train_reports_missing_config(capsys):
    from openmm_backmap.cli import main

    assert main(["train", "does-not-exist.yaml"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_refuses_to_overwrite_a_model_without_force(tiny_config, capsys):
    """The rule of convert and export: an existing model file is replaced only with --force, checked before any
    work (not after the training), and the run directory is left as it was."""
    from openmm_backmap.cli import main
    from openmm_backmap.model import load_model
    from openmm_backmap.structure import OutputExistsError

    run = tiny_config.parent / "run"
    run.mkdir()
    (run / "model.pt").write_text("a model someone keeps")
    with pytest.raises(OutputExistsError, match="force=True"):
        train(tiny_config, log=lambda *a: None)
    assert main(["train", str(tiny_config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err and "force=True" not in err
    assert (run / "model.pt").read_text() == "a model someone keeps" and sorted(p.name for p in run.iterdir()) == [
        "model.pt"]  # nothing written: no config.yaml, no log.csv
    assert main(["train", str(tiny_config), "--force", "--set", "optim.max_steps=3"]) == 0
    assert load_model(str(run / "model.pt"), device="cpu").kind == "ca2aa"


def test_resume_may_replace_only_its_own_model(tmp_path):
    """--resume continues a run: the model that run exported (its summary.json names it) may be replaced, another
    file at the output may not."""
    import json

    from openmm_backmap.structure import OutputExistsError
    from openmm_backmap.train.config import RunConfig
    from openmm_backmap.train.pipeline import check_model_output

    run, out = tmp_path / "run", tmp_path / "run" / "model.pt"
    run.mkdir()
    out.write_text("model")
    cfg = RunConfig(run_dir=str(run), output=str(out))
    for resume in (False, True):  # no summary.json: not this run's model
        with pytest.raises(OutputExistsError):
            check_model_output(cfg, resume=resume)
    (run / "summary.json").write_text(json.dumps({"model_path": str(tmp_path / "elsewhere.pt")}))
    with pytest.raises(OutputExistsError, match="replaces only the model its own run wrote"):
        check_model_output(cfg, resume=True)
    (run / "summary.json").write_text(json.dumps({"model_path": str(out)}))
    assert check_model_output(cfg, resume=True) == str(out)
    with pytest.raises(OutputExistsError):
        check_model_output(cfg)  # a new run (no --resume) into the same place still needs --force
    assert check_model_output(cfg, force=True) == str(out)


def test_fine_tune_starts_from_an_exported_model(tiny_config, tmp_path):
    """``init``: weights, hyper-parameters and template geometry come from the exported model."""
    import torch

    from openmm_backmap.model import load_model
    from openmm_backmap.train.data import load_training_data
    from openmm_backmap.train import make_task

    first = train(tiny_config, log=lambda *a: None)["model_path"]
    cfg = load_config(tiny_config, [f"init={first}", "model={}", "run_dir=ft", "output=ft/model.pt"])
    assert cfg.init == first
    train_set, val_set, summary = load_training_data(cfg.data, log=lambda *a: None)
    task = make_task(cfg, train_set, val_set, summary)
    start = getattr(load_model(first, device="cpu").module.steps, "0").state_dict()
    for key, value in task.model.state_dict().items():
        assert torch.equal(value, start[key]), key
    assert cfg.model["hidden"] == 16
    # different hyper-parameters than the initial model: a clear error
    bad = load_config(tiny_config, [f"init={first}", "model.hidden=8"])
    with pytest.raises(ValueError, match="differ from those of init"):
        make_task(bad, train_set, val_set, summary)
    out = train(cfg, log=lambda *a: None)
    bm = load_model(out["model_path"], device="cpu")
    assert bm.metadata["config"]["init"] == first and bm.metadata["template_geometry"] == "of the initial model"


def test_training_data_drops_corrupt_frames(tmp_path, trpcage):
    """Frames with broken bonds (as in the PED ensembles) never reach a loss: dropped, logged, counted."""
    import numpy as np

    from openmm_backmap.structure.ensemble import ProteinEnsemble
    from openmm_backmap.train.config import DataConfig
    from openmm_backmap.train.data import load_training_data

    xyz = np.repeat(trpcage.xyz, 5, axis=0) + np.random.default_rng(0).normal(scale=0.01, size=(5,) + trpcage.xyz.shape[1:])
    xyz[3, trpcage.layout.residue_start[8]:] += 5.0
    ProteinEnsemble.from_arrays(trpcage.sequence, xyz.astype(np.float32)).to_mdtraj().save(str(tmp_path / "ens.pdb"))
    lines = []
    train_set, val_set, summary = load_training_data(DataConfig(root=str(tmp_path), files=["ens.pdb"],
                                                                validation_fraction=0.2), log=lines.append)
    assert summary["dropped_corrupt_frames"] == 1
    assert sum(e.n_frames for e in train_set + val_set) == 4
    assert any("dropped 1 corrupt frame" in line for line in lines)
