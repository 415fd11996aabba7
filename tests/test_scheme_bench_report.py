"""The report logic of benchmarks/scheme_accuracy.py (bars of issue 11, Markdown page) on a small fake report."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    if str(_BENCH) not in sys.path:  # the report imports the C-alpha benchmark's helpers from its folder
        sys.path.insert(0, str(_BENCH))
    spec = importlib.util.spec_from_file_location(name, _BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rep = _load("_scheme_report")


def _m(rmsd, clash=0.0, bond_ok=100.0):
    return {"rmsd_angstrom": rmsd, "rmsd_sym_angstrom": rmsd, "ged": 0.001, "clash_percent": clash,
            "bond_ok_percent": bond_ok}


def _detection(kind, errors=0, unsure=0, med=(0.01, 0.03)):
    return {"set": "casp", "kind": kind, "structures": 3, "checks": 3, "errors": errors, "unsure": unsure,
            "error_examples": ["T1 frame 0: com (why)"] if errors else [], "median_deviation_angstrom": med}


@pytest.fixture
def report():
    com = [{"name": "T1", "residues": 50, "com_model": _m(1.4, clash=0.3), "ca_model_on_com": _m(2.7, bond_ok=84.0),
            "ca_model_on_ca": _m(1.2)},
           {"name": "T2", "residues": 70, "com_model": _m(1.5, bond_ok=99.5), "ca_model_on_com": _m(2.8),
            "ca_model_on_ca": _m(1.3)},
           {"name": "T3", "residues": 90, "com_model": _m(1.6), "ca_model_on_com": _m(2.6),
            "ca_model_on_ca": _m(1.4)}]
    m3 = [{"name": "T1", "residues": 50, "beads": 120, "martinize2_input": "raw", "martinize2_command": "x",
           "max_deviation_from_package_nm": 0.0001, "martini3_model": _m(0.8),
           "detected": {"scheme": "martini3", "evidence": "BB", "certain": True}},
          {"name": "T2", "residues": 70, "beads": 160, "martinize2_input": "package-written",
           "martinize2_refused_raw": "ERROR - bad", "max_deviation_from_package_nm": 0.0004,
           "martini3_model": _m(0.9), "detected": {"scheme": "martini3", "evidence": "BB", "certain": True}},
          {"name": "T3", "residues": 90, "martinize2_input": None, "error": "martinize2 refused both"}]
    return {"command": "python benchmarks/scheme_accuracy.py --targets T1,T2,T3",
            "models": {"ca": {"path": "models/ca2aa.pt"}, "com": {"path": "models/com2aa.pt"},
                       "martini3": {"path": "models/martini3.pt"}},
            "device": "cpu", "threads": 2, "date": "2026-01-01 00:00", "casp_targets_total": 3,
            "casp_targets_run": 3, "com": {"targets": com},
            "martini3": {"targets": m3, "martinize2_version": "0.15.0",
                         "martinize2_template": "martinize2 -f TARGET.pdb -x cg.pdb -o topol.top -ff martini3001"},
            "detection": {"detect_frames": 20, "rows": [_detection("ca"), _detection("com", errors=1, med=(0.6, 1.2)),
                                                        _detection("martini3", unsure=1, med=None)]},
            "speed": {"system": "P.pdb.gz model 1", "residues": 100, "batch": 64, "repeats": 5, "threads": 2,
                      "date": "2026-01-01 00:00", "frames_per_s": {"ca": 60.0, "com": 30.0, "martini3": 15.0}}}


def _status(report):
    return {b["bar"]: (b["status"], b["value"]) for b in rep.scheme_bars(report)}


def test_bars_from_numbers(report):
    got = _status(report)
    label = "centre-of-mass beads -> com model"
    assert got[f"{label}: mean RMSD <= 1.6 Å"] == ("PASS", "1.500 Å over 3 targets")
    assert got[f"{label}: bond_ok >= 99.9 % on every CASP target"] == ("MISS", "min 99.50 %; offenders: T2 (99.50 %)")
    assert got[f"{label}: clash <= 0.5 % on every CASP target"] == ("PASS", "max 0.30 %; offenders: none")
    # a target martinize2 refused fails every Martini bar, however good the others are
    label = "martinize2 Martini 3 beads -> martini3 model"
    status, value = got[f"{label}: mean RMSD <= 1.0 Å"]
    assert status == "MISS" and value.startswith("0.850 Å over 2 targets") and "failed (see below): T3" in value
    assert got[f"{label}: clash <= 0.5 % on every CASP target"][0] == "MISS"
    status, value = next(v for k, v in got.items() if k.startswith("detection"))
    assert status == "MISS" and value.startswith("1 errors in 9 verdicts (1 right but unsure)")
    assert "casp/com (1)" in value
    status, value = next(v for k, v in got.items() if k.startswith("speed"))
    assert status == "PASS" and value == "ca 60.0; com 30.0 (0.50x ca); martini3 15.0 (0.25x ca)"


def test_martini_bars_pass_without_failures(report):
    report["martini3"]["targets"].pop()
    report["detection"]["rows"][1]["errors"] = 0
    got = _status(report)
    label = "martinize2 Martini 3 beads -> martini3 model"
    assert got[f"{label}: mean RMSD <= 1.0 Å"] == ("PASS", "0.850 Å over 2 targets")
    assert next(v for k, v in got.items() if k.startswith("detection"))[0] == "PASS"


def test_subsets_and_missing_parts_are_not_passes(report):
    report["casp_targets_total"] = 24
    del report["com"]["targets"][0]["com_model"], report["com"]["targets"][1]["com_model"]
    del report["com"]["targets"][2]["com_model"]
    report["detection"]["rows"] = [r for r in report["detection"]["rows"] if r["kind"] != "martini3"]
    report["detection"]["rows"][1]["errors"] = 0
    del report["speed"]["frames_per_s"]["martini3"]
    got = _status(report)
    assert got["centre-of-mass beads -> com model: mean RMSD <= 1.6 Å"] == ("n/a", "not run (no model given)")
    # 3 of 24 targets: the numbers are given, the verdict is not
    report["martini3"]["targets"].pop()
    got = _status(report)
    status, value = got["martinize2 Martini 3 beads -> martini3 model: mean RMSD <= 1.0 Å"]
    assert status == "n/a" and "only 3 of 24 targets run" in value
    status, value = next(v for k, v in got.items() if k.startswith("detection"))
    assert status == "n/a" and "martinize2 beads not checked" in value
    status, value = next(v for k, v in got.items() if k.startswith("speed"))
    assert status == "n/a" and value.endswith("not measured: martini3")


def test_markdown_tables(report):
    text = rep.markdown(report)
    assert "```bash\npython benchmarks/scheme_accuracy.py --targets T1,T2,T3\n```" in text
    assert "| **MISS** | centre-of-mass beads -> com model: bond_ok >= 99.9 % on every CASP target |" in text
    # reference rows: the C-alpha model on the centre-of-mass beads and on true C-alphas
    assert "| centre-of-mass beads | ca (reference: what users got before) | 3 | 2.70 |" in text
    assert "| true C-alphas | ca (reference) | 3 | 1.30 |" in text
    assert "| T1 | 50 | 1.40 | 0.30 | 100.00 | 2.70 | 0.00 | 84.00 | 1.20 |" in text
    assert "| mean (3) | 70 | 1.50 |" in text
    # Martini: what was done to the input, the distance from the package's mapping, the failure
    assert "martinize2 refused the raw file of T2, so they were written through the package's loader" in text
    assert "It refused T3 both ways." in text and "max deviation 0.0004 nm over all beads of 2 targets" in text
    assert "| T2 | 70 | 160 | package-written | 0.0004 | 0.90 |" in text and "| T3 | 90 | - | refused | - | - |" in text
    assert "| mean (3) | 70 | 140 |  |  | 0.85 |" in text
    assert "| casp | com | 3 | 3 | 1 | 0 | 0.600 to 1.200 |" in text and "T1 frame 0: com (why)" in text
    assert "| `models/com2aa.pt` | com | 30.0 | 0.50 |" in text


def test_report_only_rerenders_the_json(report, tmp_path):
    bench = _load("scheme_accuracy")
    stale = copy.deepcopy(report)
    stale["bars"] = [{"bar": "old", "status": "PASS", "value": ""}]
    (tmp_path / "scheme_accuracy.json").write_text(json.dumps(stale))
    bench.main(["--report-only", "--out", str(tmp_path)])
    again = json.loads((tmp_path / "scheme_accuracy.json").read_text())
    assert again["bars"] == rep.scheme_bars(report)
    assert (tmp_path / "scheme_accuracy.md").read_text() == rep.markdown(report)


def test_long_offender_lists_are_cut(report):
    report["com"]["targets"] = [{"name": f"T{i}", "residues": 50, "com_model": _m(1.0, clash=1.0)} for i in range(9)]
    report["casp_targets_total"] = report["casp_targets_run"] = 9
    value = _status(report)["centre-of-mass beads -> com model: clash <= 0.5 % on every CASP target"][1]
    assert value.startswith("max 1.00 %; offenders: T0 (1.00 %), ") and value.endswith("T5 (1.00 %) and 3 more")
