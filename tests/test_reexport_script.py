"""examples/reexport_model.py: re-scripting a model's C-alpha step with the installed code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from openmm_backmap.model import load_model

_PATH = Path(__file__).resolve().parents[1] / "examples" / "reexport_model.py"
_spec = importlib.util.spec_from_file_location("reexport_model", _PATH)
reexport = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reexport)


def test_transferable_model_is_rescripted_unchanged(tiny_ca_model, tmp_path):
    out = tmp_path / "again.pt"
    reexport.main([str(tiny_ca_model), "-o", str(out)])
    old, new = load_model(tiny_ca_model), load_model(out)
    assert new.metadata["steps"] == old.metadata["steps"]
    assert "re-scripted with openmm-backmap" in new.metadata["reexported"]
    x = np.cumsum(np.random.default_rng(0).normal(size=(1, 6, 3)), axis=1) * 0.2
    seq = ["ALA", "GLY", "SER", "LEU", "TRP", "PRO"]
    np.testing.assert_allclose(new.backmap(x, seq, seed=3).xyz, old.backmap(x, seq, seed=3).xyz, atol=1e-5)


def test_per_system_model_keeps_its_system(tiny_persystem_model, tmp_path):
    out = tmp_path / "system.pt"
    reexport.main([str(tiny_persystem_model), "-o", str(out), "--set", "repack_sweeps=0", "--changed", "no repacking"])
    new = load_model(out)
    assert not new.transferable and new.n_beads == load_model(tiny_persystem_model).n_beads
    assert new.metadata["steps"][0]["config"]["repack_sweeps"] == 0
    assert "no repacking" in new.metadata["reexported"]


def test_unknown_setting_and_unasked_change_are_refused(tiny_ca_model, tmp_path):
    with pytest.raises(SystemExit, match="no key 'nope'"):
        reexport.main([str(tiny_ca_model), "-o", str(tmp_path / "x.pt"), "--set", "nope=1"])
    with pytest.raises(SystemExit, match="pass --changed"):
        reexport.main([str(tiny_ca_model), "-o", str(tmp_path / "y.pt"), "--set", "repack_sweeps=0"])
    assert not (tmp_path / "y.pt").exists()
