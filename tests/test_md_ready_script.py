"""benchmarks/md_ready.py (issue 25) end to end on trp-cage (20 residues): the CLI calls, the single-point
energies and a 0.2 ps implicit-solvent MD stability verdict for the crystal, raw and minimised output."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("openmm")

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("md_ready", ROOT / "benchmarks" / "md_ready.py")
md_ready = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(md_ready)


def test_md_ready_on_trpcage(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = md_ready.run_target(str(ROOT / "tests" / "data" / "trpcage.pdb"), str(tmp_path / "work"),
                                 ps=0.2, platform="CPU")
    report = md_ready.build_report([result], 0.2, "CPU", "test")
    out = tmp_path / "md_ready"
    (out.with_suffix(".json")).write_text(json.dumps(report))
    (out.with_suffix(".md")).write_text(md_ready.markdown(report))
    loaded = json.loads(out.with_suffix(".json").read_text())
    t = loaded["targets"][0]
    for key in ("crystal", "raw", "minimized"):
        r = t[key]
        assert r["n_residues"] == 20
        assert math.isfinite(r["energy_kj_per_res"])
        assert -1000 < r["energy_kj_per_res"] < 1000
        assert isinstance(r["stable"], bool)
        assert r["md_ps_requested"] == pytest.approx(0.2)
        assert r["heavy_atoms_moved_in_h_relax_nm"] == 0.0  # heavy atoms frozen while H relax
    assert t["crystal"]["stable"]
    assert "CG2AT2 (quoted)" in out.with_suffix(".md").read_text()
    assert loaded["summary"]["raw"]["n"] == 1
