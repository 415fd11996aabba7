"""The beads -> atoms task: a tiny run from a C-alpha model exports a model that takes the scheme's beads."""

import numpy as np
import pytest
import yaml

from openmm_backmap.mapping import scheme_mapping
from openmm_backmap.model import load_model
from openmm_backmap.structure import InputError
from openmm_backmap.train import train_model


def _config(tmp_path, tests_data, init, **model):
    cfg = {"kind": "bead2aa", "name": "tiny-beads", "seed": 1, "run_dir": "run", "output": "run/model.pt",
           "init": str(init), "model": {"scheme": "martini3", "ca_hidden": 8, "ca_layers": 1, **model},
           "task": {"ca_noise": 0.05, "bead_noise": 0.05, "val_frames": 2},
           "data": {"root": str(tests_data), "files": ["trpcage_train10.pdb.gz"], "validation_fraction": 0.2},
           "optim": {"max_steps": 4, "validate_every": 2, "batch_residues": 60, "threads": 1}}
    path = tmp_path / "beads.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_tiny_run_exports_a_martini_model(tmp_path, tests_data, tiny_ca_model, trpcage):
    train_model(_config(tmp_path, tests_data, tiny_ca_model), log=lambda *a: None)
    bm = load_model(tmp_path / "run" / "model.pt", device="cpu")
    assert bm.kind == "bead2aa" and bm.scheme == "martini3" and bm.transferable
    assert bm.metadata["training"]["best_metrics"]["val_ca_rmsd_A"] > 0
    assert bm.metadata["steps"][0]["config"]["hidden"] == 16  # the C-alpha network of the initial model
    beads = scheme_mapping("martini3", trpcage.sequence).apply(np.concatenate([trpcage.xyz[:1]] * 2))
    out = bm.backmap(beads, trpcage.sequence, deterministic=True)
    assert out.xyz.shape == (2, trpcage.n_atoms, 3) and np.isfinite(out.xyz).all()


def test_bad_starts_are_user_errors(tmp_path, tests_data, tiny_ca_model, tiny_persystem_model):
    with pytest.raises(InputError, match="differ from those of init"):
        train_model(_config(tmp_path, tests_data, tiny_ca_model, hidden=64), log=lambda *a: None)
    with pytest.raises(InputError, match="starts from a ca2aa or bead2aa model"):
        train_model(_config(tmp_path, tests_data, tiny_persystem_model), log=lambda *a: None)
