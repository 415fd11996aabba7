"""``openmm-backmap demo`` (openmm_backmap.run.demo)."""

import json
import os

import numpy as np
import pytest

from openmm_backmap.cli import main
from openmm_backmap.run.demo import run_demo


def test_demo_short_run(tmp_path, tiny_ca_backmapper, capsys):
    out = tmp_path / "demo"
    result = run_demo(out, steps=40, report_interval=20, model=tiny_ca_backmapper, seed=1)
    printed = capsys.readouterr().out
    files = result["files"]
    for key in ("trajectory", "topology", "cg_trajectory", "cg_topology", "ramachandran", "summary"):
        assert os.path.getsize(files[key]) > 0, key
        assert files[key] in printed  # says what was written where
    s = result["summary"]
    assert s["frames_written"] == 2 and s["frames_in"] == 2
    assert s["clash_percent"]["after"] <= s["clash_percent"]["before"]  # frames were relaxed
    assert 0.0 < result["rmsd_first_frame_angstrom"] < 10.0
    assert 0.0 < result["ca_rmsd_first_frame_angstrom"] < 5.0  # the Go model keeps villin near native
    assert np.isfinite(result["rmsd_native_ca_angstrom"])
    assert "RMSD" in printed and "clash" in printed
    with open(files["summary"]) as fh:
        assert json.load(fh)["summary"]["frames_written"] == 2
    with open(files["ramachandran"], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_demo_without_matplotlib_skips_only_the_plot(tmp_path, tiny_ca_backmapper, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if it were not installed
    result = run_demo(tmp_path / "demo", steps=20, report_interval=20, model=tiny_ca_backmapper, seed=1)
    printed = capsys.readouterr().out
    assert "ramachandran" not in result["files"] and result["summary"]["frames_written"] == 1
    assert "plot skipped" in printed and "openmm-backmap[plots]" in printed


def test_demo_without_shipped_model_says_so(tmp_path, monkeypatch, capsys):
    import openmm_backmap.model.backmapping as backmapper

    monkeypatch.setattr(backmapper, "_DATA_FOLDER", tmp_path / "no-models")
    with pytest.raises(FileNotFoundError, match="shipped C-alpha model.*--model"):
        run_demo(tmp_path / "d", steps=10)
    assert main(["demo", "--output", str(tmp_path / "d2"), "--steps", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model" in err[0]
    assert not (tmp_path / "d2").exists()  # nothing written before the model is found


@pytest.mark.slow
def test_full_demo_under_three_minutes(tmp_path, tiny_ca_model):
    result = run_demo(tmp_path / "demo", model=tiny_ca_model)
    assert result["summary"]["frames_written"] == 10
    assert result["seconds"]["total"] < 180
