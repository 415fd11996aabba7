"""benchmarks/md_ready.py (issue 25): the stability rule on core heavy atoms, the summary and the issue's bars on
made-up numbers (fast), end to end on trp-cage (20 residues: the CLI calls for every structure kind, the crystal
relaxed the same ways, energies and a 0.2 ps implicit-solvent MD verdict), and --jobs 2 keeping target order."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openmm")
from openmm_backmap.io import load_ensemble  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("md_ready", ROOT / "benchmarks" / "md_ready.py")
md_ready = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(md_ready)


# ------------------------------------------------------------------ stability rule (fast)
def test_core_heavy_atoms_leave_out_three_residues_at_each_chain_end():
    assert md_ready.TERMINAL_RESIDUES == 3
    # chain A: 8 glycines (4 heavy atoms each), chain B (a segment): 5 glycines, too short for a core
    seq, seg = ["GLY"] * 13, [True] + [False] * 7 + [True] + [False] * 4
    idx = md_ready.core_heavy_atoms(seq, seg)
    assert idx.tolist() == list(range(12, 20))  # residues 3 and 4 of chain A
    # one chain of 13: residues 3..9
    idx = md_ready.core_heavy_atoms(seq, [True] + [False] * 12)
    assert idx.tolist() == list(range(12, 40))
    # nothing but short chains: all heavy atoms rather than none
    assert len(md_ready.core_heavy_atoms(["GLY"] * 4, [True, False, True, False])) == 16


def test_max_displacement_counts_core_heavy_atoms_after_their_own_superposition():
    rng = np.random.default_rng(0)
    seq, seg = ["GLY"] * 10, [True] + [False] * 9
    heavy = np.arange(40)  # 40 heavy atoms, then 10 "hydrogens"
    core = heavy[md_ready.core_heavy_atoms(seq, seg)]
    start = rng.normal(scale=1.0, size=(50, 3))
    c, s = np.cos(0.7), np.sin(0.7)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    x = start @ rot.T + np.array([3.0, -2.0, 5.0])  # a rigid move: nothing moved
    x[0] += [2.0, 0, 0]      # a terminal heavy atom (residue 0) flies off
    x[45] += [0, 1.5, 0]     # so does a hydrogen
    # the core rule: core atoms superposed on themselves; the literal rule: every atom, heavy atoms superposed
    d_core, d_all = md_ready.max_moved(start, x, core), md_ready.max_moved(start, x, heavy, of=slice(None))
    assert d_core < 1e-6
    assert d_all > md_ready.MAX_DISPLACEMENT_NM  # the literal rule would call it unstable
    x[20] += [0, 0, 1.5]     # a core heavy atom (residue 5) moves: the core rule sees it
    d_core = md_ready.max_moved(start, x, core)
    assert d_core > md_ready.MAX_DISPLACEMENT_NM


# ------------------------------------------------------------------ summary and bars (fast, made-up numbers)
def _row(energy, stable=True, n_res=50):
    return {"n_residues": n_res, "energy_kj_per_res": energy, "stable": stable, "drift_rmsd_end_A": 1.0,
            "drift_rmsd_max_A": 1.2, "max_displacement_nm": 0.3 if stable else 1.4,
            "max_displacement_all_atoms_nm": 0.8, "bond_ok_percent_start": 100.0, "clash_percent_start": 0.0,
            "bond_ok_min_percent": 100.0, "cpu_s_total": 10.0, "cpu_s_md": 5.0, "md_ps": 2.0}


def _target(name, crystal, raw, cmin, mini, comm, omm, raw_stable=True):
    rows = ["crystal", "raw", "crystal+minimized", "minimized", "crystal+openmm", "openmm"]
    t = {"target": name, "rows": rows, "structures": ["raw", "minimized", "openmm"],
         "convert_cpu_s": {"raw": 3.0, "minimized": 3.0, "openmm": 9.0},
         "relax_cpu_s": {"crystal+minimized": 0.1, "crystal+openmm": 2.0}}
    for key, e in zip(rows, (crystal, raw, cmin, mini, comm, omm)):
        t[key] = _row(e, stable=raw_stable if key == "raw" else True)
    return t


def test_summary_compares_like_with_like_and_states_the_bars():
    targets = [_target("A", -100, -80, -90, -86, -120, -100),
               _target("B", -110, -90, -100, -94, -130, -108, raw_stable=False),
               {"target": "C", "error": "RuntimeError: boom"}]
    report = md_ready.build_report(targets, 2.0, "CPU", "test", structures=("raw", "minimized", "openmm"))
    s = report["summary"]
    assert list(s) == ["crystal", "raw", "crystal+minimized", "minimized", "crystal+openmm", "openmm"]
    assert s["raw"]["compared_with"] == "crystal" and s["raw"]["mean_delta_vs_reference"] == pytest.approx(20)
    assert s["minimized"]["compared_with"] == "crystal+minimized"
    assert s["minimized"]["mean_delta_vs_reference"] == pytest.approx(5)  # not 12, its gap to the raw crystal
    assert s["openmm"]["compared_with"] == "crystal+openmm"
    assert s["openmm"]["mean_delta_vs_reference"] == pytest.approx(21)
    assert s["crystal+minimized"]["mean_delta_vs_reference"] == pytest.approx(10)
    assert s["raw"]["stable"] == 1 and s["raw"]["n"] == 2 and s["minimized"]["stable"] == 2
    assert s["raw"]["md_cpu_s_per_ps_per_res"] == pytest.approx(0.05)
    verdict = {(b["structure"], b["bar"].split()[0]): b["verdict"] for b in report["bars"]}
    assert verdict[("minimized", "100")] == "met"
    assert verdict[("minimized", "energy")] == "met"      # 5 kJ/mol/res <= 10
    assert verdict[("openmm", "energy")] == "missed"      # 21 > 10
    assert verdict[("raw", "raw")] == "missed"            # 1/2 < 95 %
    assert verdict[("sampled", "raw")] == "not measured"
    assert "2 targets at 2 ps" in report["bars"][0]["protocol"] and "24" in report["bars"][0]["protocol"]
    text = md_ready.markdown(report)
    assert "100 % stable after `--minimize`: **met** (2/2 stable)" in text
    assert "| minimized | 2/2 | -90.0 | 5.0 | crystal+minimized |" in text
    assert "| A | 50 | minimized | -86.0 | 4.0 | crystal+minimized |" in text
    assert "| C | | | error: RuntimeError: boom" in text
    assert "<!-- docs-test: slow:" in text and "```bash" in text  # the docs test runs the page's blocks


def test_the_structural_rule_is_summarised_and_judged_beside_the_stability_rule():
    targets = [_target("A", -100, -80, -90, -86, -120, -100), _target("B", -110, -90, -100, -94, -130, -108)]
    for t, intact in zip(targets, (True, False)):
        for key in t["rows"]:
            t[key].update(intact=intact or key != "minimized", max_displacement_backbone_nm=0.2,
                          longest_bond="LYS5 CD-LYS5 CE x1.080 at 2 ps", d_residues_start=0,
                          cis_peptides_start=int(key == "raw"))
    report = md_ready.build_report(targets, 2.0, "CPU", "test", structures=("raw", "minimized", "openmm"))
    s = report["summary"]
    assert s["minimized"]["intact"] == 1 and s["openmm"]["intact"] == 2 and s["raw"]["cis_peptides_start"] == 2
    verdict = {(b["structure"], b["bar"].split()[2]): b["verdict"] for b in report["bars"] if "intact" in b["bar"]}
    assert verdict == {("minimized", "intact"): "missed", ("openmm", "intact"): "met"}
    text = md_ready.markdown(report)
    assert "| A | 50 | minimized | -86.0 | 4.0 | crystal+minimized | 100.00 | 0.0 | 0 / 0 | yes |" in text
    assert "| 1/2 | 0 / 0 |" in text and "LYS5 CD-LYS5 CE x1.080 at 2 ps" in text
    # rows from before the rule existed: dashes, no intact bar
    old = md_ready.build_report([_target("C", -100, -80, -90, -86, -120, -100)], 2.0, "CPU", "test")
    assert old["summary"]["minimized"]["intact"] is None and not any("intact" in b["bar"] for b in old["bars"])
    assert "| – | 0 / 0 |" in md_ready.markdown(old)


def test_the_energy_bar_is_judged_on_the_casp_targets_when_eval_sets_join_the_run():
    targets = [_target("TBM_T0001", -100, -80, -90, -70, -120, -100), _target("trpcage", -100, -80, -90, -110, -120,
                                                                              -100)]
    report = md_ready.build_report(targets, 2.0, "CPU", "test", structures=("raw", "minimized", "openmm"))
    assert report["summary"]["minimized"]["mean_delta_vs_reference"] == pytest.approx(0)  # (20 - 20) / 2
    assert report["summary_casp"]["minimized"]["n"] == 1
    energy = [b for b in report["bars"] if b["structure"] == "minimized" and b["bar"].startswith("energy")][0]
    assert energy["verdict"] == "missed" and "20.0 kJ/mol/res over 1 target" in energy["figure"]
    assert "mean over the CASP targets" in energy["bar"]
    assert "### The CASP targets only" in md_ready.markdown(report)


def test_energies_only_leave_the_stability_verdicts_unmeasured():
    """--ps 0: rows without MD; the energy bar is judged, the stability bars are not measured, the table has no
    stability columns."""
    targets = [_target("TBM_T0001", -100, -80, -90, -84, -120, -100)]
    for key in targets[0]["rows"]:
        r = targets[0][key]
        for k in ("drift_rmsd_end_A", "drift_rmsd_max_A", "max_displacement_nm", "max_displacement_all_atoms_nm",
                  "bond_ok_min_percent"):
            del r[k]
        r.update(stable=None, intact=None, md_ps=0.0, cpu_s_md=0.0)
    report = md_ready.build_report(targets, 0.0, "CPU", "test", structures=("raw", "minimized", "openmm"))
    s = report["summary"]["minimized"]
    assert s["stable"] is None and s["mean_drift_A"] is None and s["mean_delta_vs_reference"] == pytest.approx(6)
    verdict = {(b["structure"], b["bar"].split()[0]): b["verdict"] for b in report["bars"]}
    assert verdict[("minimized", "energy")] == "met" and verdict[("openmm", "energy")] == "missed"  # 6 and 20
    assert verdict[("minimized", "100")] == "not measured" and verdict[("raw", "raw")] == "not measured"
    assert "single-point energies only" in report["bars"][0]["protocol"]
    text = md_ready.markdown(report)
    assert "no MD was run" in text and "| stable |" not in text.split("## Summary")[0]
    assert "| TBM_T0001 | 50 | minimized | -84.0 | 6.0 | crystal+minimized | 100.00 | 0.0 | – | 10.0 | 3.0 |" in text
    assert "| minimized | – | -84.0 | 6.0 |" in text


def test_a_hydrogen_collapsed_onto_an_acceptor_has_its_energy_left_out():
    """ff14SB's hydroxyl hydrogen has no Lennard-Jones radius: with the heavy atoms frozen it can fall onto an
    acceptor (TYR102 HH on LYS70 O in one raw CASP output), and the energy is a Coulomb singularity."""
    # the finder is the package's (tests/run/test_relax.py); here its place in the report: left out of the means,
    # named in the table, counted in the summary
    targets = [_target("TBM_T0001", -100, -80, -90, -84, -120, -100), _target("TBM_T0002", -100, -80, -90, -84,
                                                                              -120, -100)]
    targets[1]["raw"].update(energy_kj_per_res=float("nan"), hydrogen_collapse="TYR102 HH on LYS70 O (0.000 nm)")
    report = md_ready.build_report(targets, 2.0, "CPU", "test", structures=("raw", "minimized", "openmm"))
    s = report["summary"]["raw"]
    assert s["mean_delta_vs_reference"] == pytest.approx(20) and s["n_energy"] == 1 and s["hydrogen_collapse"] == 1
    assert s["mean_energy_kj_per_res"] == pytest.approx(-80)
    text = md_ready.markdown(report)
    assert "| TBM_T0002 | 50 | raw | left out: TYR102 HH on LYS70 O (0.000 nm) |" in text
    assert "| 0 / 0 | 20.0 | 1 |" in text


def _only(t, rows):
    """``t`` with only ``rows`` (and the crystal rows they are compared with)."""
    keep = {k: v for k, v in t.items() if k not in t["rows"]}
    keep["rows"] = [k for k in t["rows"] if k in rows]
    keep["structures"] = [k for k in t["structures"] if k in rows]
    keep.update({k: t[k] for k in keep["rows"]})
    return keep


def test_merge_joins_runs_split_over_processes(tmp_path):
    """Two runs, one with the fast relaxer's rows and one with OpenMM's, and a target measured by both: one report,
    each target's rows joined, the duplicate named, both commands kept; runs of another protocol refuse to merge."""
    a_, b_ = _target("TBM_T0001", -100, -80, -90, -86, -120, -100), _target("TBM_T0002", -110, -90, -100, -94,
                                                                              -130, -108)
    fast = ("crystal", "raw", "crystal+minimized", "minimized")
    run1 = md_ready.build_report([_only(a_, fast), _only(b_, fast)], 2.0, "CPU", "cmd one")
    run2 = md_ready.build_report([_only(b_, ("crystal", "crystal+openmm", "openmm"))], 2.0, "CPU", "cmd two")
    paths = []
    for i, r in enumerate((run1, run2)):
        paths.append(str(tmp_path / f"run{i}.json"))
        Path(paths[-1]).write_text(json.dumps(r))
    out = str(tmp_path / "merged")
    report = md_ready.main(["--merge", *paths, "--out", out, "--comment", "why run two"])
    t2 = next(t for t in report["targets"] if t["target"] == "TBM_T0002")
    assert t2["rows"] == ["crystal", "raw", "crystal+minimized", "minimized", "crystal+openmm", "openmm"]
    assert t2["structures"] == ["raw", "minimized", "openmm"] and set(t2["relax_cpu_s"]) == {"crystal+minimized",
                                                                                             "crystal+openmm"}
    s = report["summary"]
    assert s["openmm"]["n"] == 1 and s["openmm"]["mean_delta_vs_reference"] == pytest.approx(22)
    assert s["minimized"]["n"] == 2 and s["minimized"]["mean_delta_vs_reference"] == pytest.approx(5)
    assert report["command"].split("\n")[:2] == ["cmd one", "cmd two"]
    assert "TBM_T0002 crystal" in report["command"]  # measured by both runs, the first kept
    assert report["command"].endswith(f"\n# why run two\n# joined by: python benchmarks/md_ready.py --merge "
                                      f"{' '.join(paths)} --out {out} --comment 'why run two'")
    assert json.loads(Path(out + ".json").read_text())["summary"] == json.loads(json.dumps(s))
    run3 = md_ready.build_report([_only(a_, fast)], 20.0, "CPU", "cmd three")
    Path(paths[1]).write_text(json.dumps(run3))
    with pytest.raises(SystemExit):
        md_ready.main(["--merge", *paths, "--out", out])
    with pytest.raises(SystemExit):  # the default --out is a docs report
        md_ready.main(["--merge", *paths])


def test_structures_option_is_checked():
    with pytest.raises(SystemExit):
        md_ready.main(["--structures", "raw,relaxed"])
    with pytest.raises(ValueError):
        md_ready.run_target(str(ROOT / "tests" / "data" / "trpcage.pdb"), "/nonexistent", structures=("fast",))


# ------------------------------------------------------------------ end to end (CLI calls, OpenMM)
def test_md_ready_on_trpcage(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    work = tmp_path / "work"
    result = md_ready.run_target(str(ROOT / "tests" / "data" / "trpcage.pdb"), str(work), ps=0.2, platform="CPU")
    report = md_ready.build_report([result], 0.2, "CPU", "test")
    out = tmp_path / "md_ready"
    (out.with_suffix(".json")).write_text(json.dumps(report))
    (out.with_suffix(".md")).write_text(md_ready.markdown(report))
    loaded = json.loads(out.with_suffix(".json").read_text())
    t = loaded["targets"][0]
    n_heavy = load_ensemble(str(ROOT / "tests" / "data" / "trpcage.pdb")).n_atoms
    assert t["rows"] == ["crystal", "raw", "sampled", "crystal+minimized", "minimized", "crystal+openmm", "openmm"]
    for key in t["rows"]:
        r = t[key]
        assert r["n_residues"] == 20
        assert math.isfinite(r["energy_kj_per_res"])
        assert -1000 < r["energy_kj_per_res"] < 1000
        assert isinstance(r["stable"], bool)
        assert r["md_ps_requested"] == pytest.approx(0.2)
        assert r["heavy_atoms_moved_in_h_relax_nm"] == 0.0  # heavy atoms frozen while H relax
        assert 0 < r["n_core_heavy_atoms"] < n_heavy  # residues 4-17 of 20
        assert 0 <= r["max_displacement_nm"] < 1 and 0 < r["max_displacement_all_atoms_nm"] < 1
        # the structural rule: the backbone barely moves in 0.2 ps and no bond comes near breaking
        assert isinstance(r["intact"], bool) and 0 <= r["max_displacement_backbone_nm"] <= r["max_displacement_nm"]
        assert 1.0 < r["max_bond_stretch"] < md_ready.BROKEN_BOND_RATIO and " x1." in r["longest_bond"]
        assert r["d_residues_start"] == 0 and r["cis_peptides_start"] == 0
    assert t["crystal"]["stable"] and t["crystal"]["intact"]
    assert set(t["convert_cpu_s"]) == {"raw", "sampled", "minimized", "openmm"}
    assert set(t["relax_cpu_s"]) == {"crystal+minimized", "crystal+openmm"}
    assert all(t["crystal_relax"][c]["converged"] for c in t["relax_cpu_s"])
    # the crystal really went through both relaxers (the OpenMM one lowers its energy), and the sampled frame
    # is not the deterministic one
    assert 0 < t["crystal_relax"]["crystal+openmm"]["rmsd_A"] < 1
    assert t["crystal+openmm"]["energy_kj_per_res"] < t["crystal"]["energy_kj_per_res"] - 5
    assert (work / "crystal_openmm.pdb").is_file() and (work / "crystal_minimized.pdb").is_file()
    assert (work / "sampled.pdb").read_text() != (work / "raw.pdb").read_text()
    text = out.with_suffix(".md").read_text()
    assert "CG2AT2 (quoted)" in text
    assert "| trpcage | 20 | openmm |" in text and "| crystal+openmm |" in text
    assert loaded["summary"]["raw"]["n"] == 1 and loaded["summary"]["openmm"]["compared_with"] == "crystal+openmm"


def test_ps_0_measures_energies_without_md(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "e"
    report = md_ready.main(["--targets", str(ROOT / "tests" / "data" / "trpcage.pdb"), "--ps", "0", "--structures",
                            "minimized", "--workdir", str(tmp_path / "work"), "--out", str(out)])
    t = report["targets"][0]
    assert t["rows"] == ["crystal", "crystal+minimized", "minimized"]
    for key in t["rows"]:
        r = t[key]
        assert r["md_ps"] == 0 and r["stable"] is None and "drift_rmsd_end_A" not in r
        assert -1000 < r["energy_kj_per_res"] < 1000 and r["bond_ok_percent_start"] > 99
    assert report["summary"]["minimized"]["mean_delta_vs_reference"] == pytest.approx(
        t["minimized"]["energy_kj_per_res"] - t["crystal+minimized"]["energy_kj_per_res"])
    assert "no MD was run" in out.with_suffix(".md").read_text()


def test_jobs_runs_targets_in_worker_processes_and_keeps_their_order(tmp_path):
    # the larger target first: it finishes last, yet comes first in the report
    first = tmp_path / "zz_t0872.pdb"
    shutil.copy(ROOT / "tests" / "data" / "t0872_fragment.pdb", first)
    second = tmp_path / "aa_trp.pdb"
    shutil.copy(ROOT / "tests" / "data" / "trpcage.pdb", second)
    out = tmp_path / "r"
    report = md_ready.main(["--targets", f"{first},{second}", "--ps", "0.02", "--structures", "raw", "--jobs", "2",
                            "--workdir", str(tmp_path / "work"), "--out", str(out)])
    loaded = json.loads(out.with_suffix(".json").read_text())
    assert [t["target"] for t in loaded["targets"]] == ["zz_t0872", "aa_trp"]
    assert report["jobs"] == 2 and "2 worker processes" in report["machine"]
    for t in loaded["targets"]:
        assert "error" not in t, t.get("error")
        assert t["rows"] == ["crystal", "raw"]
        assert t["raw"]["md_ps_requested"] == pytest.approx(0.02)
    assert (tmp_path / "work" / "zz_t0872" / "raw.pdb").is_file()
    assert "--jobs 2" in out.with_suffix(".md").read_text()
