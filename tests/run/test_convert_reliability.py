"""``convert`` and the reporter next to existing outputs, on damaged periodic input, when no frame can be written,
on a structure with calcium ions, and under SIGTERM (docs/reliability.md lists what the user sees for each)."""

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest

from openmm_backmap.cli import main
from openmm_backmap.run import BackmapPipeline, BackmapReporter, BadFrameWarning
from openmm_backmap.run import convert_trajectory as convert
from openmm_backmap.structure import InputError, LoadWarning

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
QUIET = {"progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    """C-alpha PDBs of Trp-cage (``a``) and of its reversed sequence (``b``: same atom count after backmapping),
    an 8-frame C-alpha trajectory in a 10 nm box (``xyz``, ``box``) and its topology (``top``)."""
    d = tmp_path_factory.mktemp("ca")
    t = md.load(str(DATA / "trpcage.pdb"))
    t = t.atom_slice(t.topology.select("name CA"))
    t.save_pdb(str(d / "a.pdb"))
    rev = t.topology.copy()
    for res, name in zip(rev.residues, [r.name for r in t.topology.residues][::-1]):
        res.name = name
    md.Trajectory(t.xyz, rev).save_pdb(str(d / "b.pdb"))
    rng = np.random.default_rng(0)
    xyz = (t.xyz[[0] * 8] + rng.normal(scale=0.01, size=(8,) + t.xyz.shape[1:]) + 5.0).astype(np.float32)
    return {"dir": d, "a": str(d / "a.pdb"), "b": str(d / "b.pdb"), "top": str(d / "a.pdb"), "xyz": xyz,
            "seq": [r.name for r in t.topology.residues]}


def _cli(*args, model):
    return main(["convert", *map(str, args), "--model", str(model), "--device", "cpu", "--seed", "0"])


def _seq(top):
    return [r.name for r in md.load_topology(str(top)).residues]


# ---------------------------------------------------------------- outputs next to existing ones (items 1-3)
def test_second_output_of_another_sequence_never_rewrites_the_first_ones_topology(tmp_path, ca, tiny_ca_model,
                                                                                  capsys):
    assert _cli(ca["a"], "-o", tmp_path / "r.dcd", model=tiny_ca_model) == 0
    before = (tmp_path / "r.pdb").read_bytes()
    assert _cli(ca["b"], "-o", tmp_path / "r.xtc", model=tiny_ca_model) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "r.pdb is the topology of" in err[-1] and "--force" in err[-1]
    assert (tmp_path / "r.pdb").read_bytes() == before and not (tmp_path / "r.xtc").exists()
    assert _seq(tmp_path / "r.pdb") == ca["seq"]  # r.dcd still reads as A
    assert _cli(ca["a"], "-o", tmp_path / "r.xtc", model=tiny_ca_model) == 0  # same atoms: the file is shared
    assert (tmp_path / "r.pdb").read_bytes() == before


def test_failed_force_convert_keeps_the_old_output_and_its_topology(tmp_path, ca, tiny_ca_backmapper, monkeypatch):
    convert(ca["a"], tmp_path / "k.dcd", model=tiny_ca_backmapper, seed=0, **QUIET)
    old = {n: (tmp_path / n).read_bytes() for n in ("k.dcd", "k.pdb")}

    def fail(self, *args, **kwargs):
        raise RuntimeError("the model failed")

    monkeypatch.setattr(BackmapPipeline, "process", fail)
    with pytest.raises(RuntimeError, match="model failed"):
        convert(ca["b"], tmp_path / "k.dcd", model=tiny_ca_backmapper, force=True, **QUIET)
    assert {n: (tmp_path / n).read_bytes() for n in ("k.dcd", "k.pdb")} == old
    with pytest.raises(RuntimeError, match="model failed"):  # a failed run to a sibling deletes nothing either
        convert(ca["a"], tmp_path / "k.xtc", model=tiny_ca_backmapper, **QUIET)
    assert sorted(os.listdir(tmp_path)) == ["k.dcd", "k.pdb"]


def _torn_dcd(path, ca, model):
    """A 3-structure DCD of A whose last frame a crash cut in the middle."""
    convert(ca["a"], path, model=model, samples=3, seed=0, **QUIET)
    frame = 3 * (8 + 4 * md.load_topology(str(path.with_suffix(".pdb"))).n_atoms)  # x, y, z records
    path.write_bytes(path.read_bytes()[:-frame // 2])


def test_convert_append_onto_a_torn_dcd_cuts_the_partial_frame_off(tmp_path, ca, tiny_ca_model, capsys):
    out = tmp_path / "t.dcd"
    from openmm_backmap.model import load_model

    _torn_dcd(out, ca, load_model(tiny_ca_model, device="cpu"))
    assert _cli(ca["a"], "-o", out, "--append", "--samples", "2", model=tiny_ca_model) == 0
    assert "last frame is incomplete" in capsys.readouterr().err  # the CLI prints warnings on stderr
    t = md.load(str(out), top=str(tmp_path / "t.pdb"))
    assert t.n_frames == 4 and np.isfinite(t.xyz).all()  # 2 complete + 2 appended, all readable
    ca_idx = t.topology.select("name CA")
    np.testing.assert_allclose(t.xyz[3][ca_idx], md.load(ca["a"]).xyz[0], atol=1e-3)


def test_reporter_append_onto_a_torn_dcd(tmp_path, ca, trpcage_go, tiny_ca_backmapper):
    import openmm
    import openmm.app as app

    out = tmp_path / "r.dcd"
    _torn_dcd(out, ca, tiny_ca_backmapper)
    top, system, pos = trpcage_go
    sim = app.Simulation(top, system, openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.01),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    with pytest.warns(LoadWarning, match="last frame is incomplete"):
        with BackmapReporter(out, 1, model=tiny_ca_backmapper, append=True, seed=0) as rep:
            sim.reporters.append(rep)
            sim.step(3)
    t = md.load(str(out), top=str(tmp_path / "r.pdb"))
    assert t.n_frames == 5 and np.isfinite(t.xyz).all()


def test_convert_append_without_the_topology_is_refused(tmp_path, ca, tiny_ca_model, capsys):
    out = tmp_path / "g.xtc"
    assert _cli(ca["a"], "-o", out, model=tiny_ca_model) == 0
    os.remove(tmp_path / "g.pdb")
    size = out.stat().st_size
    assert _cli(ca["b"], "-o", out, "--append", model=tiny_ca_model) == 2  # a reversed sequence, same atom count
    assert "topology file" in capsys.readouterr().err and out.stat().st_size == size


# ---------------------------------------------------------------- exploded frames in periodic input (item 4)
def _periodic_dcd(path, ca, bad):
    xyz = ca["xyz"].copy()
    for i, how in bad.items():
        if how == "huge":
            xyz[i, 3] = 1e19  # nm: 1e20 Å in the file
        elif how == "bead":
            xyz[i, 5, 0] += 500.0
        elif how == "scatter":
            xyz[i] += np.random.default_rng(i).uniform(-300, 300, size=xyz[i].shape)
    n = len(xyz)
    md.Trajectory(xyz, md.load_topology(ca["top"]), unitcell_lengths=np.full((n, 3), 10.0),
                  unitcell_angles=np.full((n, 3), 90.0)).save_dcd(str(path))


def test_exploded_frames_in_periodic_input_are_skipped_not_wrapped(tmp_path, ca, tiny_ca_backmapper):
    inp = tmp_path / "pbc.dcd"
    _periodic_dcd(inp, ca, {2: "huge", 5: "bead", 7: "scatter"})
    with pytest.warns(BadFrameWarning, match=r"CG frame\(s\) 2, 5, 7 have"):
        s = convert(inp, tmp_path / "aa.xtc", topology=ca["top"], model=tiny_ca_backmapper, seed=0, **QUIET)
    assert s["frames_written"] == 5 and s["skipped_frames"] == [2, 5, 7]
    # a molecule split by the box is not a bad frame: it is made whole
    ok = tmp_path / "split.dcd"
    xyz = ca["xyz"].copy()
    xyz[:, 10:] -= [10.0, 0.0, 0.0]
    md.Trajectory(xyz, md.load_topology(ca["top"]), unitcell_lengths=np.full((8, 3), 10.0),
                  unitcell_angles=np.full((8, 3), 90.0)).save_dcd(str(ok))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BadFrameWarning)
        s = convert(ok, tmp_path / "ok.xtc", topology=ca["top"], model=tiny_ca_backmapper, seed=0, **QUIET)
    assert s["frames_written"] == 8


def test_reporter_flags_an_exploded_bead_in_a_periodic_system(tmp_path, trpcage, tiny_ca_backmapper):
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    from openmm_backmap.cgsystems import calpha_go_model

    top, system, pos = calpha_go_model(trpcage, box=10.0)
    sim = app.Simulation(top, system, openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.01),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)

    class State:
        def __init__(self, xyz):
            self.xyz = np.asarray(xyz, dtype=np.float64)

        def getPositions(self, asNumpy=False):
            return self.xyz * unit.nanometer

        def getTime(self):
            return 0.0 * unit.picosecond

        def getPeriodicBoxVectors(self, asNumpy=False):
            return np.eye(3) * 10.0 * unit.nanometer

    moved = np.array(pos, dtype=np.float64)
    moved[5, 0] += 500.0
    rep = BackmapReporter(tmp_path / "p.pdb", 1, model=tiny_ca_backmapper, seed=0)
    with pytest.warns(BadFrameWarning, match="exploded"):
        rep.report(sim, State(moved))
    rep.report(sim, State(pos))
    rep.close()
    assert rep.summary()["frames_skipped"] == 1 and md.load(str(tmp_path / "p.pdb")).n_frames == 1
    # a reporter that saw only bad frames leaves no file (no empty DCD, no header-only PDB)
    for name in ("q.dcd", "q.pdb"):
        rep = BackmapReporter(tmp_path / "none" / name, 1, model=tiny_ca_backmapper, seed=0)
        with pytest.warns(BadFrameWarning):
            rep.report(sim, State(moved))
        rep.close()
    assert not (tmp_path / "none").exists() or os.listdir(tmp_path / "none") == []


# ---------------------------------------------------------------- no frame written (item 7)
@pytest.mark.parametrize("fmt", ["xtc", "pdb", "dcd"])
def test_a_run_that_writes_no_frame_fails_and_leaves_no_file(tmp_path, ca, tiny_ca_backmapper, fmt):
    inp = tmp_path / "in" / "nan.dcd"
    inp.parent.mkdir()
    xyz = ca["xyz"].copy()
    xyz[:, 4] = np.nan
    md.Trajectory(xyz, md.load_topology(ca["top"])).save_dcd(str(inp))
    out = tmp_path / "out" / f"aa.{fmt}"
    with pytest.warns(BadFrameWarning), pytest.raises(InputError, match="no frame was written") as info:
        convert(inp, out, topology=ca["top"], model=tiny_ca_backmapper, **QUIET)
    assert "\n" not in str(info.value)
    assert not out.parent.exists() or os.listdir(out.parent) == []


def test_asynchronous_reporter_whose_model_fails_leaves_no_empty_file(tmp_path, trpcage_go, tiny_ca_backmapper,
                                                                      monkeypatch):
    import openmm
    import openmm.app as app

    def fail(self, *args, **kwargs):
        raise RuntimeError("the model failed at run time")

    monkeypatch.setattr(BackmapPipeline, "_backmap", fail)
    top, system, pos = trpcage_go
    sim = app.Simulation(top, system, openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.01),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    rep = BackmapReporter(tmp_path / "a.dcd", 2, model=tiny_ca_backmapper, asynchronous=True)
    sim.reporters.append(rep)
    sim.step(2)
    sim.reporters.clear()
    with pytest.raises(RuntimeError, match="failed at run time"):
        rep.close()
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- calcium ions named CA (item 11)
def _with_calcium(path):
    lines = [ln for ln in (DATA / "trpcage.pdb").read_text().splitlines() if ln.startswith("ATOM")]
    lines += ["HETATM  999 CA    CA A 101      10.000  10.000  10.000  1.00  0.00          CA  ",
              "HETATM 1000 CA    CA A 102      12.000  10.000  10.000  1.00  0.00          CA  ",
              "HETATM 1001  O   HOH A 201      14.000  10.000  10.000  1.00  0.00           O  ", "END"]
    path.write_text("\n".join(lines) + "\n")


def test_calcium_ions_named_ca_are_left_out_of_the_beads(tmp_path, tiny_ca_backmapper):
    inp = tmp_path / "ca_ions.pdb"
    _with_calcium(inp)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = convert(inp, tmp_path / "aa.pdb", model=tiny_ca_backmapper, seed=0, **QUIET)
    said = [str(w.message) for w in caught if "named CA" in str(w.message)]
    assert len(said) == 1 and "2 atom(s) named CA" in said[0] and "not C-alpha" in said[0], said
    assert s["frames_written"] == 1 and md.load(str(tmp_path / "aa.pdb")).n_residues == 20


def test_1ajj_with_its_calcium_ion_converts(tmp_path, shared_data, tiny_ca_backmapper):
    src = shared_data / "train" / "chains" / "1AJJ.pdb.gz"
    if not src.exists():
        pytest.skip("1AJJ not in the shared data")
    with pytest.warns(UserWarning, match="1 atom\\(s\\) named CA"):
        s = convert(src, tmp_path / "aa.pdb", model=tiny_ca_backmapper, seed=0, **QUIET)
    assert s["frames_written"] == 1


# ---------------------------------------------------------------- SIGTERM (item 12)
_SLOW_CONVERT = textwrap.dedent("""
    import sys, time
    from openmm_backmap.io import TrajectoryWriter
    from openmm_backmap.cli import main

    real = TrajectoryWriter.write
    def write(self, *args, **kwargs):
        real(self, *args, **kwargs)
        print("wrote", self.n_frames, flush=True)
        time.sleep(0.5)  # a long input: still converting when the signal comes
    TrajectoryWriter.write = write
    sys.exit(main(sys.argv[1:]))
""")


def test_sigterm_cleans_up_like_ctrl_c(tmp_path, tiny_ca_model):
    out = tmp_path / "out" / "aa.dcd"
    traj = DATA / "trpcage_train10.pdb.gz"
    child = subprocess.Popen([sys.executable, "-c", _SLOW_CONVERT, "convert", str(traj), "-o", str(out), "--model",
                              str(tiny_ca_model), "--device", "cpu", "--chunk", "1", "--seed", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    for line in child.stdout:
        if line.startswith("wrote") or time.time() > deadline:
            break
    assert (out.parent / "aa.partial.dcd").exists()  # mid-run: the partial file is there
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert os.listdir(out.parent) == []  # no partial trajectory, no partial topology
