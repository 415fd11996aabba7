"""benchmarks/md_ready_cg.py: frames backmapped from the CG engines' own files, judged as the CASP table is."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openmm")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
_spec = importlib.util.spec_from_file_location("md_ready_cg", ROOT / "benchmarks" / "md_ready_cg.py")
md_ready_cg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(md_ready_cg)


def test_frames_are_spread_and_include_the_last():
    assert md_ready_cg.pick_frames(10, 2) == [4, 9]
    assert md_ready_cg.pick_frames(10, 1) == [9]
    assert md_ready_cg.pick_frames(3, 5) == [1, 2]  # frame 0 only when nothing else is left
    assert md_ready_cg.pick_frames(1, 2) == [0]


def test_missing_engine_output_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        md_ready_cg.main(["--runs", str(tmp_path), "--names", "calvados_ubq"])
    assert "run benchmarks/clients/" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        md_ready_cg.main(["--runs", str(tmp_path), "--structures", "relaxed"])


def test_engine_trajectory_converted_and_each_picked_frame_evaluated(tmp_path, monkeypatch):
    """A C-alpha trajectory laid out as the OpenABC run writes it (``openabc.dcd`` + ``frame0.pdb``)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run = tmp_path / "runs" / "openabc_histatin5"
    run.mkdir(parents=True)
    exe = Path(sys.executable).parent / "openmm-backmap"
    subprocess.run([str(exe), "coarsen", str(ROOT / "tests" / "data" / "trpcage.pdb"), "--levels", "ca", "-o",
                    str(tmp_path / "t")], check=True, capture_output=True)
    (tmp_path / "t_ca.dcd").rename(run / "openabc.dcd")
    (tmp_path / "t_ca.pdb").rename(run / "frame0.pdb")
    out = tmp_path / "cg"
    monkeypatch.chdir(tmp_path)  # relative folders, as the docs' command gives them
    report = md_ready_cg.main(["--runs", "runs", "--names", "openabc_histatin5", "--structures", "raw,minimized",
                               "--frames", "2", "--ps", "0.02", "--workdir", "w", "--out", "cg"])
    rows = report["rows"]
    from openmm_backmap.io import load_ensemble

    n_frames = load_ensemble(str(tmp_path / "w" / "openabc_histatin5" / "openabc_histatin5_raw.pdb")).xyz.shape[0]
    for key in ("raw", "minimized"):
        assert [r["frame"] for r in rows if r["structure"] == key] == md_ready_cg.pick_frames(n_frames, 2)
    for r in rows:
        assert "error" not in r["result"], r["result"]
        assert r["result"]["n_residues"] == 20 and r["result"]["md_ps_requested"] == pytest.approx(0.02)
    assert (tmp_path / "w" / "openabc_histatin5" / "openabc_histatin5_minimized.pdb").is_file()
    loaded = json.loads(out.with_suffix(".json").read_text())
    assert loaded["summary"]["raw"]["n"] == len([r for r in rows if r["structure"] == "raw"])
    assert "| openabc_histatin5 |" in out.with_suffix(".md").read_text()
