"""benchmarks/relax_contact_tuning.py: the fast relaxer's contact fractions measured on training chains. Here on
the trp-cage fixture (the script's own chain choice reads ../shared/data/train): each grid point really relaxes
with its fractions, and the report states the energies of each."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("openmm")
from openmm_backmap.run.relax import fast  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
_spec = importlib.util.spec_from_file_location("relax_contact_tuning", ROOT / "benchmarks" / "relax_contact_tuning.py")
tuning = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tuning)


def test_each_grid_point_relaxes_with_its_fractions(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # set_fractions changes the module's constants: restored after the test
    monkeypatch.setattr(fast, "CONTACT_SIGMA_FRACTION", fast.CONTACT_SIGMA_FRACTION)
    monkeypatch.setattr(fast, "POLAR_CONTACT_SIGMA_FRACTION", fast.POLAR_CONTACT_SIGMA_FRACTION)
    chains = [("trpcage", "0", str(ROOT / "tests" / "data" / "trpcage.pdb"))]
    report = tuning.run(chains, [(0.96, 0.88), (0.70, 0.70)], str(tmp_path))
    row = report["chains"][0]
    assert row["n_residues"] == 20 and len(row["points"]) == 2
    shipped, loose = row["points"]
    # pushing contacts to 0.70 sigma moves the crystal less than to 0.96 sigma
    assert loose["crystal_rmsd_A"] < shipped["crystal_rmsd_A"]
    assert (tmp_path / "trpcage" / "min_0.7_0.7.pdb").read_text() != (tmp_path / "trpcage" / "min_0.96_0.88.pdb").read_text()
    s = report["summary"]
    assert [(x["contact"], x["polar"]) for x in s] == [(0.96, 0.88), (0.70, 0.70)]
    assert s[0]["mean_delta_kj_per_res"] == pytest.approx(shipped["ours_relaxed"] - shipped["crystal_relaxed"])
    report.update(command="test", date="today", machine="here", min_res=20, max_res=30, cpu_s=1.0)
    text = tuning.markdown(report)
    assert "| 0.96 | 0.88 | " in text and "| trpcage | 0 | 20 |" in text and "Nothing from eval/" in text
