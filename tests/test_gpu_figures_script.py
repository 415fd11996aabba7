"""benchmarks/gpu_figures.py in its quick CPU mode: the three sections, finite numbers, skips that say why."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def gpu_figures(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports reporter_overhead beside it
    import gpu_figures

    return gpu_figures


def test_synthetic_trace_has_protein_like_steps_and_segments(gpu_figures):
    xyz, seq, seg = gpu_figures.synthetic_trace(700, np.random.default_rng(0))
    assert xyz.shape == (700, 3) and len(seq) == 700
    assert np.flatnonzero(seg).tolist() == [0, 300, 600]
    within = ~seg[1:]
    steps = np.linalg.norm(np.diff(xyz, axis=0), axis=1)[within]
    assert np.allclose(steps, 0.38, atol=1e-4)
    assert steps.size == 697
    assert set(seq) <= set(gpu_figures.AA_PERCENT) and len(set(seq)) > 15
    # no consecutive C-alpha triple closer than an 85 degree angle
    a, b, c = xyz[:-2], xyz[1:-1], xyz[2:]
    cos = np.sum((a - b) * (c - b), axis=1) / (np.linalg.norm(a - b, axis=1) * np.linalg.norm(c - b, axis=1))
    keep = ~seg[1:-1] & ~seg[2:]
    assert np.degrees(np.arccos(np.clip(cos[keep], -1, 1))).min() > 84.9


def test_cpu_run_writes_nothing_unless_asked(gpu_figures):
    assert gpu_figures.output_dir(None, torch.device("cpu")) is None
    assert gpu_figures.output_dir("x", torch.device("cpu")) == "x"
    assert gpu_figures.output_dir(None, torch.device("cuda")).endswith("docs/benchmarks")


def test_quick_cpu_mode_writes_three_sections_with_finite_numbers(gpu_figures, tiny_ca_model, tmp_path):
    # a 70 MB budget fits one structure of 12 residues but not 4 of 24: that combination is listed as skipped
    result = gpu_figures.main(["--device", "cpu", "--quick", "--models", str(tiny_ca_model), "--out", str(tmp_path),
                               "--max-memory-mb", "70", "--budget-s", "60"])
    md = (tmp_path / "gpu.md").read_text()
    assert json.loads((tmp_path / "gpu.json").read_text())["device"] == "cpu"
    for section in ("## Backmapping speed", "## Fast relaxation", "## Asynchronous reporter on a CG simulation"):
        assert section in md
    assert "CPU" in md and "quick check" in md
    assert "skipped: memory" in md and "Failed" not in md
    assert not re.search(r"\b(nan|inf)\b", md, re.IGNORECASE)

    rows = result["backmapping"][0]["rows"]
    timed = [r for r in rows if r["frames_per_second"] is not None]
    assert timed and all(math.isfinite(r["frames_per_second"]) and r["frames_per_second"] > 0 for r in timed)
    assert any(r.get("skipped", "").startswith("memory") for r in rows)
    relax = result["relaxation"]["rows"]
    assert relax and all(math.isfinite(r["seconds_per_frame"]) and r["seconds_per_frame"] > 0 for r in relax)
    runs = result["reporter"]["runs"]
    assert [r["interval"] for r in runs] == [None, 100, 500]
    assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in runs)
    assert all(r["frames"] > 0 for r in runs[1:])
    assert result["reporter"]["platform"] == "CPU"


def test_reporter_runs_are_sized_to_the_time_left(gpu_figures):
    steps = gpu_figures._reporter_steps(10_000, 1.0, 150.0, [1000, 10_000], 3)
    assert steps % 10_000 == 0 and 0 < steps <= 60 * 10_000
    # 3 repeats x 2 intervals x (run + reporter run up to 1.5x + 2 setups) fit the 150 s
    assert 3 * 2 * (2.5 * steps / 10_000 + 2.0) <= 150.0
    assert gpu_figures._reporter_steps(10_000, 1.0, 5.0, [1000, 10_000], 3) == 0


def _assert_every_section_has_figures(gpu_figures, result, md):
    """No section failed or came out empty, and every model has timed rows (issue 23, item 4: the whole
    backmapping section was lost to one bead model fed C-alpha traces)."""
    assert gpu_figures.problems(result) == []
    assert "Failed" not in md and "not measured" not in md
    for m in result["backmapping"]:
        assert any(r["frames_per_second"] for r in m["rows"]), m
    assert any(r.get("seconds_per_frame") for r in result["relaxation"]["rows"])
    assert any(r["reporter"] is not None and r["frames"] > 0 for r in result["reporter"]["runs"])


def test_bead_models_get_the_beads_of_their_scheme(gpu_figures, tiny_ca_model, tiny_bead_models, tmp_path):
    """com and martini3 models are timed on the beads of their scheme (coarsened from heavy atoms), not on
    C-alpha traces; the relaxation and the reporter use the C-alpha model, whatever the order of --models."""
    from openmm_backmap.mapping import scheme_mapping

    models = [str(tiny_bead_models["martini3"]), str(tiny_bead_models["com"]), str(tiny_ca_model)]
    result = gpu_figures.main(["--device", "cpu", "--quick", "--models", *models, "--out", str(tmp_path),
                               "--budget-s", "60"])
    md = (tmp_path / "gpu.md").read_text()
    _assert_every_section_has_figures(gpu_figures, result, md)
    inputs = gpu_figures._Inputs(gpu_figures.QUICK["residues"], np.random.default_rng(0), None, 1e9)
    for m, scheme in zip(result["backmapping"], ("martini3", "com", "ca")):
        assert m["scheme"] == scheme
        for row in m["rows"]:
            seq = inputs.traces[row["residues"]][1]
            assert row["particles"] == scheme_mapping(scheme, seq).n_beads
    assert "martini3 beads of the synthetic traces' heavy atoms" in md
    assert result["relaxation"]["model"] == result["reporter"]["model"] == "tiny"


def test_problems_name_every_section_without_figures(gpu_figures):
    result = {"backmapping": [{"model": "martini3", "rows": [], "error": "InputError: 12 particles"},
                              {"model": "ca2aa", "rows": [{"frames_per_second": None, "skipped": "time budget"}]}],
              "relaxation": None, "relaxation_error": "RuntimeError: x", "reporter": None}
    assert gpu_figures.problems(result) == ["relaxation: RuntimeError: x", "reporter: not measured",
                                            "backmapping of martini3: InputError: 12 particles",
                                            "backmapping of ca2aa: no combination timed"]


def test_the_ci_command_gives_figures_in_every_section_for_the_shipped_models(tmp_path):
    """What CI runs: ``python benchmarks/gpu_figures.py --device cpu --quick`` with the shipped models/*.pt (about
    half a minute on two loaded cores); it exits with 1 where a section or a model gave no figures."""
    import os
    import subprocess
    import sys

    shipped = sorted((BENCHMARKS.parent / "models").glob("*.pt"))
    if not shipped:
        pytest.skip("no models/*.pt in this checkout")
    run = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_figures.py"), "--device", "cpu", "--quick",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    result, md = json.loads((tmp_path / "gpu.json").read_text()), (tmp_path / "gpu.md").read_text()
    assert sorted(m["file"] for m in result["backmapping"]) == [f"models/{p.name}" for p in shipped]
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu_figures
    finally:
        sys.path.remove(str(BENCHMARKS))
    _assert_every_section_has_figures(gpu_figures, result, md)
