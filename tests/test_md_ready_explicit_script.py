"""benchmarks/md_ready_explicit.py (issue 25, 100 ps in TIP3P): it runs the docs page's script as written, and it
judges each production frame with md_ready's rules. The checks run on made-up DCDs here (fast); one real solvated
run of a few steps is slow."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openmm")
import mdtraj as md  # noqa: E402

from openmm_backmap.io import load_ensemble  # noqa: E402
from openmm_backmap.run.relax import export_system  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
_spec = importlib.util.spec_from_file_location("md_ready_explicit", ROOT / "benchmarks" / "md_ready_explicit.py")
mde = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mde)
TRPCAGE = ROOT / "tests" / "data" / "trpcage.pdb"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """trp-cage handed over as the benchmark hands the crystal: ``export_system`` to ``PREFIX_openmm.pdb``; the
    DCD frames of a fake run: all atoms of that file, Å, as the script's DCDReporter writes them."""
    folder = tmp_path_factory.mktemp("explicit")
    prefix = str(folder / "crystal")
    export_system(md.load(str(TRPCAGE)), "openmm", prefix, implicit="obc2")
    pdb = md.load(prefix + "_openmm.pdb")
    return prefix, pdb


def _write_dcd(prefix, frames_nm):
    with md.formats.DCDTrajectoryFile(prefix + "_md.dcd", "w", force_overwrite=True) as dcd:
        dcd.write(np.asarray(frames_nm, dtype=np.float32) * 10.0)


def test_the_script_run_is_the_docs_page_block_as_written():
    script = mde.docs_script()
    page = (ROOT / "docs" / "continue_all_atom.md").read_text()
    assert script in page
    assert "modeller.addSolvent" in script and "app.PME" in script and 'sys.argv[2]' in script
    compile(script, "continue_md.py", "exec")
    # a DCD frame every 500 steps of 2 fs: the picosecond each frame is judged at
    assert 'DCDReporter(f"{prefix}_md.dcd", 500)' in script and "dt = 0.002" in script
    assert mde.FRAME_PS == 500 * 0.002


def test_a_quiet_run_is_stable_and_a_broken_bond_is_not_intact(exported):
    prefix, pdb = exported
    rng = np.random.default_rng(0)
    quiet = [pdb.xyz[0] + rng.normal(0, 0.001, pdb.xyz[0].shape) for _ in range(3)]
    _write_dcd(prefix, quiet)
    ok = mde.analyse(prefix, 0, "#\"Step\",...\n500,1.0,-1000.0,300.0,0\n1000,2.0,-1000.0,300.0,8.31\n"
                     "done: -1000 kJ/mol\n", 3.0)
    assert ok["stable"] and ok["intact"] and ok["finite"] and ok["md_ps"] == 3.0 and ok["check_points"] == 3
    assert ok["ns_per_day"] == pytest.approx(8.31)
    assert 0 < ok["drift_rmsd_end_A"] < 0.05
    # pull one core CA 0.3 nm away from its residue: the bond to it is broken, the backbone has not gone anywhere
    ens = load_ensemble(prefix + "_openmm.pdb")
    where = {(a.residue.index, a.name): a.index for a in pdb.topology.atoms}
    ca = where[(10, "CA")]
    broken = pdb.xyz[0].copy()
    broken[ca] += [0.3, 0.0, 0.0]
    _write_dcd(prefix, [pdb.xyz[0], broken])
    bad = mde.analyse(prefix, 0, "done", 2.0)
    assert bad["finite"] and not bad["intact"] and not bad["stable"]
    assert bad["max_bond_stretch"] > mde.BROKEN_BOND_RATIO and "11 CA" in bad["longest_bond"]
    assert bad["max_displacement_nm"] == pytest.approx(0.3, abs=0.05)
    assert len(ens.sequence) == bad["n_residues"] == 20


def test_a_run_that_died_keeps_its_frames_and_fails_with_the_engines_message(exported):
    prefix, pdb = exported
    _write_dcd(prefix, [pdb.xyz[0]] * 2)
    res = mde.analyse(prefix, 1, "Traceback ...\nopenmm.OpenMMException: Particle coordinate is NaN.\n", 100.0)
    assert not res["finite"] and not res["stable"] and not res["intact"]
    assert res["md_ps"] == 2.0 and "Particle coordinate is NaN" in res["failure"]
    # a run that wrote no production frame and said nothing is not counted as stable either
    Path(prefix + "_md.dcd").unlink()
    res = mde.analyse(prefix, 0, "", 100.0)
    assert not res["stable"] and res["failure"] == "no production frames written"


def test_report_summarises_each_row_and_keeps_errors(tmp_path):
    runs = [{"target": "T", "row": "crystal", "md_ps": 100.0, "stable": True, "intact": True,
             "max_displacement_nm": 0.6, "max_displacement_backbone_nm": 0.4, "bond_ok_min_percent": 100.0,
             "longest_bond": "LEU3 CB-LEU3 CG x1.10 at 5 ps", "drift_rmsd_end_A": 1.4, "drift_rmsd_max_A": 1.5,
             "ns_per_day": 2.5, "cpu_s_md": 3600.0, "failure": "", "max_bond_stretch": 1.10},
            {"target": "T", "row": "minimized", "error": "RuntimeError: boom"}]
    report = mde.build_report(runs, ["cmd"], 100.0)
    assert report["summary"]["crystal"]["stable"] == 1 and "minimized" not in report["summary"]
    mde._write(report, str(tmp_path / "r"))
    text = (tmp_path / "r.md").read_text()
    assert "| T | crystal | 100 | yes | yes | 0.60 |" in text and "error: RuntimeError: boom" in text
    assert json.loads((tmp_path / "r.json").read_text())["cpu_s"] == 3600.0
    # two runs' reports merge into one, each command kept
    mde._write(mde.build_report([dict(runs[0], target="U")], ["cmd2"], 100.0), str(tmp_path / "s"))
    merged = mde.main(["--merge", str(tmp_path / "r.json"), str(tmp_path / "s.json"), "--out", str(tmp_path / "m"),
                       "--note", "U was stopped after its crystal row."])
    assert [r["target"] for r in merged] == ["T", "T", "U"]
    text = (tmp_path / "m.md").read_text()
    assert "cmd\ncmd2\n```\n\nU was stopped after its crystal row." in text and "| crystal | 2 | 2/2 | 2/2 |" in text
    with pytest.raises(SystemExit):
        mde.main(["--structures", "crystal,sampled"])


@pytest.mark.slow
def test_trpcage_runs_through_the_docs_script_in_water(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "r"
    runs = mde.main(["--targets", str(TRPCAGE), "--ps", "2", "--structures", "crystal,minimized", "--jobs", "2",
                     "--workdir", str(tmp_path / "work"), "--out", str(out)])
    assert [r["row"] for r in runs] == ["crystal", "minimized"]
    for r in runs:
        assert "error" not in r and r["finite"] and r["intact"] and r["md_ps"] == 2.0, r
        assert r["ns_per_day"] > 0 and r["cpu_s_md"] > 1 and r["prepare_cpu_s"] >= 0
    assert (tmp_path / "work" / "trpcage" / "minimized_openmm.pdb").is_file()


def test_a_target_that_cannot_be_prepared_gets_error_rows_and_the_others_still_run(tmp_path, monkeypatch):
    calls = []

    def fake_prepare(target, workdir, rows, script):
        if "bad" in target:
            raise ValueError("3 heavy atoms missing in bad.pdb")
        return {r: str(tmp_path / r) for r in rows}, {r: 1.5 for r in rows}

    def fake_run_row(name, row, prefix, ps):
        calls.append((name, row))
        return {"target": name, "row": row, "cpu_s_md": 2.0, "md_ps": ps, "stable": True, "intact": True,
                "max_displacement_nm": 0.1, "max_displacement_backbone_nm": 0.1, "bond_ok_min_percent": 100.0,
                "longest_bond": "", "drift_rmsd_end_A": 0.5, "drift_rmsd_max_A": 0.5, "ns_per_day": 1.0,
                "failure": "", "max_bond_stretch": 1.05}

    monkeypatch.setattr(mde, "prepare", fake_prepare)
    monkeypatch.setattr(mde, "run_row", fake_run_row)
    (tmp_path / "bad.pdb").write_text("END\n")
    runs = mde.main(["--targets", f"{tmp_path / 'bad.pdb'},{TRPCAGE}", "--ps", "1", "--structures", "crystal,raw",
                     "--workdir", str(tmp_path / "w"), "--out", str(tmp_path / "r")])
    assert calls == [("trpcage", "crystal"), ("trpcage", "raw")]
    assert [(r["target"], r["row"]) for r in runs] == [("bad", "crystal"), ("bad", "raw"), ("trpcage", "crystal"),
                                                       ("trpcage", "raw")]
    assert "heavy atoms missing" in runs[0]["error"] and runs[2]["prepare_cpu_s"] == 1.5
    assert "error: ValueError: 3 heavy atoms missing" in (tmp_path / "r.md").read_text()
