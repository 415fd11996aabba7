"""The report logic of benchmarks/ca2aa_accuracy.py (bars, FlowBack columns, training runs) on a tiny fake report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from openmm_backmap.structure import InputError, MissingFileError

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_ca2aa_report.py"
_spec = importlib.util.spec_from_file_location("_ca2aa_report", _PATH)
rep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rep)


def _m(rmsd, clash=0.0, bond_ok=100.0, ged=0.0):
    return {"rmsd_angstrom": rmsd, "rmsd_sym_angstrom": rmsd, "ged": ged, "clash_percent": clash,
            "bond_ok_percent": bond_ok}


def _summary(ms):
    return {k: sum(m[k] for m in ms) / len(ms) for k in rep.METRICS}


@pytest.fixture
def report():
    targets = [{"name": "T1", "residues": 50, "frames": 1, "deterministic": _m(1.2), "pulchra": _m(1.5)},
               {"name": "T2", "residues": 70, "frames": 1, "deterministic": _m(1.3, clash=0.7), "pulchra": _m(1.1)},
               {"name": "T3", "residues": 90, "frames": 1, "deterministic": _m(1.4, bond_ok=99.5, ged=0.01),
                "pulchra": _m(1.6)}]
    kl = {"ramachandran": 0.1, "chi1": 0.2}
    casp = {"structures": targets, "kl_deterministic": kl,
            "summary": {"deterministic": _summary([t["deterministic"] for t in targets]),
                        "pulchra": _summary([t["pulchra"] for t in targets])}}
    md = {"structures": [], "kl_deterministic": kl,
          "summary": {"deterministic": _m(2.0), "pulchra": _m(1.9)}}
    flowback = {"source": "flowback_casp.json", "about": "as given",
                "targets": {"T1": _m(1.0), "T2": _m(1.2), "T3": _m(1.35)}}
    return {"model": "ca2aa.pt", "device": "cpu", "threads": 2, "max_frames": 10, "samples": 1,
            "eval_sets": ["casp", "md", "idp"], "sets": {"casp": casp, "md": md}, "flowback": flowback,
            "speed": {"100_residues": {"batch_1_frames_per_s": 20.0, "batch_64_frames_per_s": 60.0,
                                       "baseline_batch_1_frames_per_s": 20.0, "baseline_batch_64_frames_per_s": 70.0},
                      "baseline_model": "old.pt"}}


def _status(lines):
    return {b["bar"]: (b["status"], b["value"]) for b in lines}


def test_bars_from_numbers(report):
    got = _status(rep.bars(report))
    assert got["CASP mean RMSD <= 1.40 Å"] == ("PASS", "1.300 Å")
    assert got["CASP mean RMSD below FlowBack's"][0] == "MISS"  # 1.30 vs 1.183
    status, value = got["better than PULCHRA (RMSD) on >= 22 of 3 CASP targets"]
    assert status == "MISS" and value.startswith("2 of 3") and "T2 (1.30 vs 1.10)" in value
    assert got["CASP mean clash <= 0.1 %"][0] == "MISS"
    status, value = got["no CASP target above 0.5 % clash"]
    assert status == "MISS" and "T2" in value and "T1" not in value
    assert got["bond_ok >= 99.9 % on every CASP target"] == (
        "MISS", "min 99.50 %; offenders: T3 (99.50 %); FlowBack (as given) on these targets: T3 100.00 %")
    assert got["ged <= 0.005 on every CASP target"][1].endswith("offenders: T3 (0.0100)")
    # md misses; idp was never run, which is said
    status, value = got["better than PULCHRA (RMSD) on every eval set"]
    assert status == "MISS" and "md (2.00 vs 1.90)" in value and "not compared: idp" in value
    assert got[">= 50 frames/s at 100 residues, batch 64"][0] == "PASS"
    assert got["speed at or above the baseline model's (100 residues, batch 64, same run)"][0] == "MISS"


def test_bars_unmeasured_are_not_passes(report):
    for t in report["sets"]["casp"]["structures"]:
        del t["pulchra"]
    for e in report["sets"].values():
        del e["summary"]["pulchra"]
    del report["speed"]["100_residues"]["baseline_batch_64_frames_per_s"]
    got = _status(rep.bars(report))
    assert got["better than PULCHRA (RMSD) on >= 22 CASP targets"] == ("n/a", "PULCHRA not run")
    assert got["better than PULCHRA (RMSD) on every eval set"][0] == "n/a"
    assert got["speed at or above the baseline model's (100 residues, batch 64, same run)"][0] == "n/a"


def test_markdown_casp_table_has_flowback_and_means(report):
    text = rep.markdown(report)
    assert "- **MISS** CASP mean clash <= 0.1 %: 0.233 %" in text
    assert "figures as given" in text and "not run by us" in text
    assert "| **T2** | 70 | 1.30 | 0.70 |" in text  # PULCHRA wins T2: in bold
    row = next(line for line in text.splitlines() if line.startswith("| mean (3) |"))
    assert row.split(" | ")[1:3] == ["70", "1.30"] and "| 1.18 |" in row  # FlowBack's mean rmsd
    assert "| casp | FlowBack (as given) | 1.18 |" in text


def _write_run(path, rows, summary=None):
    path.mkdir()
    lines = ["step,time_s,lr,train_loss,val_loss,val_rmsd_A"]
    lines += [f"{s},{s / 10},0.001,1.0,{loss},{r}" for s, loss, r in rows]
    (path / "log.csv").write_text("\n".join(lines) + "\n")
    if summary:
        (path / "summary.json").write_text(json.dumps(summary))


def test_training_runs_bests_and_ablation_table(tmp_path, report):
    _write_run(tmp_path / "a", [(100, 0.9, 2.0), (200, 0.5, 1.6), (300, 0.6, 1.5)],
               {"steps": 300, "stop_reason": "max_steps", "train_time_s": 30.0,
                "data": {"train_frames": 80, "corpus": {"chains_train": 1704, "residues_train": 450963}}})
    _write_run(tmp_path / "b", [(100, 1.0, 2.2)])
    runs = rep.read_training_runs([f"full={tmp_path / 'a'}", f"small={tmp_path / 'b'}"])
    assert (runs["full"]["best_val_rmsd_A"], runs["full"]["best_val_rmsd_A_step"]) == (1.5, 300)
    assert (runs["full"]["best_val_loss"], runs["full"]["best_val_loss_step"]) == (0.5, 200)
    assert "summary" not in runs["small"]
    report["training"] = runs
    text = rep.markdown(report)
    assert "| full | 80 | 1704 | 450963 | 300 | 1.500 (300) | 0.5000 (200) |" in text
    assert "| small | - | - | - | 100 | 2.200 (100) | 1.0000 (100) |" in text
    assert "still running or unfinished" in text


def test_training_run_errors(tmp_path):
    with pytest.raises(MissingFileError, match="no run directory"):
        rep.read_training_runs([f"x={tmp_path / 'missing'}"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="log.csv"):
        rep.read_training_runs([f"x={tmp_path / 'empty'}"])
    with pytest.raises(InputError, match="NAME=RUN_DIR"):
        rep.read_training_runs([str(tmp_path)])


def test_flowback_fields_mapped(tmp_path):
    path = tmp_path / "fb.json"
    path.write_text(json.dumps({"_about": "x", "T1": {"rmsd": 1.4, "rmsd_sym": 1.3, "ged": 0.001, "clash": 0.0,
                                                      "bond_ok": 99.9, "residues": 50}}))
    fb = rep.load_flowback(path)
    assert fb["targets"]["T1"]["rmsd_angstrom"] == 1.4 and fb["targets"]["T1"]["residues"] == 50
    path.write_text(json.dumps({"T1": {"rmsd": 1.4}}))
    with pytest.raises(InputError, match="lacks field"):
        rep.load_flowback(path)


def test_failed_bonds_are_counted_and_listed(report):
    ref_fault = {"atoms": ["ILE4:O", "VAL9:O"], "ref_angstrom": 1.67, "gen_angstrom": 4.4,
                 "reference_fault": "not a covalent bond"}
    ours = {"atoms": ["CYS2:SG", "CYS8:SG"], "ref_angstrom": 2.03, "gen_angstrom": 2.6, "reference_fault": None}
    report["sets"]["casp"]["structures"][2]["bond_ok_failures"] = [ref_fault, ours]
    status, value = _status(rep.bars(report))["bond_ok >= 99.9 % on every CASP target"]
    assert status == "MISS"  # the bar is the metric's, reference faults or not
    assert "2 failed bonds on these targets, 1 of them the reference's (1 not a covalent bond)" in value
    text = rep.markdown(report)
    assert "| T3 | ILE4:O - VAL9:O | 1.67 | 4.40 | not a covalent bond |" in text
    assert "| T3 | CYS2:SG - CYS8:SG | 2.03 | 2.60 | none: the model is wrong |" in text
