"""Fault injection across the package: generated bad files and crashes, one test per class of fault.

Classes (docs/reliability.md lists what the user sees for each):

* damaged input: files truncated at random byte offsets, flipped bytes, zero-length files, NaN frames, a wrong
  topology. Each either raises a one-line user error, or converts every frame, or says (a warning) what it did
  not convert; frame indices in the output match the input's. Nothing else may escape (no IndexError, no crash).
* damaged model files and checkpoints: truncated or flipped bytes are a user error, never an unpickled object.
* crashes while writing: a child process killed with SIGKILL while a reporter writes leaves every completed frame
  readable.

The random offsets come from fixed seeds, so a failure reproduces.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest

from openmm_backmap.run import BadFrameWarning
from openmm_backmap.run import convert_trajectory as convert
from openmm_backmap.structure import LoadWarning, UserError

ROOT = Path(__file__).resolve().parents[1]
N_FRAMES = 6
QUIET = {"progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def ca_inputs(tmp_path_factory, trpcage):
    """A 6-frame C-alpha trajectory of Trp-cage as PDB (multi-model), DCD and XTC, with its topology."""
    d = tmp_path_factory.mktemp("fault_inputs")
    ca = md.load(str(ROOT / "tests" / "data" / "trpcage.pdb")).atom_slice(
        md.load_topology(str(ROOT / "tests" / "data" / "trpcage.pdb")).select("name CA"))
    rng = np.random.default_rng(0)
    xyz = ca.xyz[[0] * N_FRAMES] + rng.normal(scale=0.02, size=(N_FRAMES,) + ca.xyz.shape[1:]).astype(np.float32)
    traj = md.Trajectory(xyz, ca.topology, time=np.arange(N_FRAMES, dtype=float))
    traj[0].save_pdb(str(d / "top.pdb"))
    traj.save_pdb(str(d / "multi.pdb"))
    traj.save_dcd(str(d / "traj.dcd"))
    traj.save_xtc(str(d / "traj.xtc"))
    return {"dir": d, "top": str(d / "top.pdb"), "xyz": xyz,
            **{k: (d / name).read_bytes() for k, name in (("pdb", "multi.pdb"), ("dcd", "traj.dcd"),
                                                           ("xtc", "traj.xtc"))}}


def _run_convert(path, top, model, tmp_path):
    """Convert; return (outcome, summary or error, warnings). Anything but a UserError escapes and fails the test."""
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}.xtc"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            summary = convert(str(path), str(out), topology=top, model=model, deterministic=True, **QUIET)
        except UserError as err:
            assert "\n" not in str(err).strip(), "a user error must be one line"
            assert not out.exists(), "a failed convert must not leave its output"
            return "error", err, caught
    said = [str(w.message) for w in caught if issubclass(w.category, (LoadWarning, BadFrameWarning))]
    return "ok", summary, said


def _check_outcome(outcome, result, said, n_expected):
    if outcome == "error":
        return
    written = result["frames_written"]
    if written != n_expected:
        assert said, f"converted {written} of {n_expected} frames without a warning"


def _damaged(data, rng, how):
    if how == "truncate":
        return data[: int(rng.integers(1, len(data)))]
    out = bytearray(data)
    for pos in rng.integers(0, len(data), size=3):
        out[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


@pytest.mark.parametrize("fmt", ["pdb", "dcd", "xtc"])
@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_damaged_inputs_never_convert_silently_in_part(ca_inputs, tiny_ca_backmapper, tmp_path, fmt, how):
    rng = np.random.default_rng({"pdb": 1, "dcd": 2, "xtc": 3}[fmt] * 10 + (how == "flip"))
    top = None if fmt == "pdb" else ca_inputs["top"]
    for trial in range(4):
        path = tmp_path / f"bad{trial}.{fmt}"
        path.write_bytes(_damaged(ca_inputs[fmt], rng, how))
        outcome, result, said = _run_convert(path, top, tiny_ca_backmapper, tmp_path)
        _check_outcome(outcome, result, said, N_FRAMES)


@pytest.mark.parametrize("fmt", ["pdb", "dcd", "xtc", "pt"])
def test_zero_length_files_are_user_errors(tmp_path, ca_inputs, fmt):
    from openmm_backmap.model import load_model

    path = tmp_path / f"empty.{fmt}"
    path.write_bytes(b"")
    with pytest.raises(UserError):
        if fmt == "pt":
            load_model(str(path), device="cpu")
        else:
            convert(str(path), str(tmp_path / "out.pdb"), topology=None if fmt == "pdb" else ca_inputs["top"],
                    **QUIET)
    assert not (tmp_path / "out.pdb").exists()


def test_nan_frames_are_named_and_indices_stay_traceable(ca_inputs, tiny_ca_backmapper, tmp_path):
    xyz = ca_inputs["xyz"].copy()
    xyz[2, 5] = np.nan
    traj = md.Trajectory(xyz, md.load_topology(ca_inputs["top"]), time=np.arange(N_FRAMES, dtype=float))
    traj.save_xtc(str(tmp_path / "nan.xtc"))
    with pytest.warns(BadFrameWarning, match=r"CG frame\(s\) 2 have NaN"):
        s = convert(str(tmp_path / "nan.xtc"), str(tmp_path / "aa.xtc"), topology=ca_inputs["top"],
                    model=tiny_ca_backmapper, deterministic=True, **QUIET)
    assert s["frames_written"] == N_FRAMES - 1 and s["skipped_frames"] == [2]
    from openmm_backmap.structure import InputError

    with pytest.raises(InputError, match="frame"):
        convert(str(tmp_path / "nan.xtc"), str(tmp_path / "aa2.xtc"), topology=ca_inputs["top"],
                model=tiny_ca_backmapper, on_bad_frame="raise", **QUIET)
    assert not (tmp_path / "aa2.xtc").exists()


def test_wrong_topology_is_a_user_error(ca_inputs, tiny_ca_backmapper, tmp_path, tests_data):
    path = tmp_path / "traj.xtc"
    path.write_bytes(ca_inputs["xtc"])
    with pytest.raises(UserError):  # an all-atom topology for a C-alpha trajectory: atom counts differ
        convert(str(path), str(tmp_path / "aa.pdb"), topology=str(tests_data / "trpcage.pdb"),
                model=tiny_ca_backmapper, **QUIET)
    assert not (tmp_path / "aa.pdb").exists()


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_damaged_model_files_are_user_errors(tiny_ca_model, tmp_path, how):
    from openmm_backmap.model import load_model

    data = Path(tiny_ca_model).read_bytes()
    rng = np.random.default_rng(7 + (how == "flip"))
    for trial in range(5):
        path = tmp_path / f"bad{trial}.pt"
        path.write_bytes(_damaged(data, rng, how))
        try:
            bm = load_model(str(path), device="cpu")
        except UserError as err:
            assert "\n" not in str(err).strip()
            continue
        # a flip that hit nothing the archive checks (padding, a constant) may still load: it must then run
        out = bm.backmap(np.cumsum(np.full((1, 5, 3), 0.22, dtype=np.float32), axis=1),
                         ["ALA", "GLY", "SER", "LEU", "LYS"], seed=0)
        assert out.xyz.shape[0] == 1


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_damaged_checkpoints_are_user_errors(tmp_path, how):
    import torch

    from openmm_backmap.train.checkpoint import load_checkpoint, save_checkpoint

    good = tmp_path / "good.pt"
    save_checkpoint(str(good), {"model": {"w": torch.arange(1000.0)}, "state": {"step": 3}})
    rng = np.random.default_rng(11 + (how == "flip"))
    for trial in range(5):
        path = tmp_path / f"bad{trial}.pt"
        path.write_bytes(_damaged(good.read_bytes(), rng, how))
        try:
            ck = load_checkpoint(str(path))
        except UserError:
            continue
        assert set(ck) == {"model", "state"}


_REPORTER_CHILD = textwrap.dedent("""
    import sys, time
    import openmm, openmm.app as app, openmm.unit as u
    from openmm_backmap.cgsystems import calpha_go_model
    from openmm_backmap.io import load_ensemble
    from openmm_backmap.run import BackmapReporter
    ens = load_ensemble(sys.argv[1])
    top, system, pos = calpha_go_model(ens)
    sim = app.Simulation(top, system, openmm.LangevinMiddleIntegrator(300, 1, 0.01),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    sim.reporters.append(BackmapReporter(sys.argv[2], 10, model=sys.argv[3], deterministic=True, device="cpu"))
    for i in range(10 ** 6):
        sim.step(10)
        print("frame", i + 1, flush=True)
""")


def test_kill_9_while_the_reporter_writes_leaves_every_completed_frame_readable(tmp_path, tiny_ca_model,
                                                                               tests_data):
    out = tmp_path / "aa.dcd"
    script = tmp_path / "child.py"
    script.write_text(_REPORTER_CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(tests_data / "trpcage.pdb"), str(out),
                              str(tiny_ca_model)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             cwd=str(tmp_path))
    reported = 0
    deadline = time.time() + 120
    try:
        for line in child.stdout:
            if line.startswith("frame"):
                reported = int(line.split()[1])
            if reported >= 5 or time.time() > deadline:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert reported >= 5, "the child never reported"
    top = out.with_suffix(".pdb")
    traj = md.load(str(out), top=str(top))
    # synchronous reports are flushed as they are written: every frame reported before the kill is there
    assert traj.n_frames >= reported
    assert np.isfinite(traj.xyz).all()
