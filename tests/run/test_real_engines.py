"""The reporter on simulations the real engines build (slow; needs the engines, see benchmarks/clients/README.md).

Set ``OPENMM_BACKMAP_CLIENTS_PYTHON`` to the Python of an environment that has martini_openmm, CALVADOS 3 and OpenABC
(``benchmarks/clients/setup_clients.sh`` makes one); without it these tests skip. CI runs the fixtures captured from
these engines instead (tests/run/test_real_clients.py).

    OPENMM_BACKMAP_CLIENTS_PYTHON=/work/clients/venv/bin/python python -m pytest -m slow tests/run/test_real_engines.py
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = os.environ.get("OPENMM_BACKMAP_CLIENTS_PYTHON")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not PYTHON, reason="OPENMM_BACKMAP_CLIENTS_PYTHON (an environment with the CG "
                                                    "engines, benchmarks/clients/setup_clients.sh) is not set")]

#: script, arguments, run folder, molecules the engine simulates
ENGINES = {
    "martini_openmm": ("martini_openmm_run.py", ["--cases", "T0862"], "martini_openmm_T0862", 2),
    "calvados": ("calvados_run.py", ["--cases", "ubq"], "calvados_ubq", 1),
    "openabc": ("openabc_run.py", [], "openabc_histatin5", 3),
}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_reporter_on_the_real_engine(tmp_path, engine):
    script, args, folder, molecules = ENGINES[engine]
    subprocess.run([PYTHON, str(ROOT / "benchmarks" / "clients" / script), "--out", str(tmp_path), "--reports", "3",
                    "--minimize", *args], check=True, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    result = json.loads((tmp_path / folder / "result.json").read_text())
    s = result["reporter_summary"]
    assert s["segments"] == molecules and s["break_evidence"] == "bonds"
    assert result["reporter"]["written"]["mdtraj_chains"] == molecules
    assert s["bond_ok_percent"]["before"] >= 99.9 and s["bond_ok_percent"]["after"] >= 99.9
    assert s["clash_percent"]["after"] <= 0.5
    converted = next(v for k, v in result.items() if k.startswith("convert_"))
    assert converted["written"]["mdtraj_chains"] == molecules
