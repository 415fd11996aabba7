"""Output faults of ``convert`` (and the reporter's file): nothing half-written under the output's name, clean
reruns, writability checked before the work, one-line disk-full errors, and a readable partial file after kill -9."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest

from openmm_backmap.cli import main
from openmm_backmap.io import StalePartialWarning
from openmm_backmap.run import BackmapPipeline, BackmapReporter
from openmm_backmap.run import convert_trajectory as convert
from openmm_backmap.structure import InputError, OutputWriteError

QUIET = {"progress": False}
ROOT = Path(__file__).resolve().parents[2]
TRAJ10 = ROOT / "tests" / "data" / "trpcage_train10.pdb.gz"  # 10 all-atom frames; convert uses the C-alphas


def _convert10(out, model, **kw):
    with pytest.warns(UserWarning, match="C-alpha atoms as the CG beads"):
        return convert(TRAJ10, out, model=model, chunk=3, seed=0, device="cpu", **QUIET, **kw)


def test_failed_convert_leaves_nothing_and_the_rerun_needs_no_force(tmp_path, tiny_ca_backmapper, monkeypatch):
    real = BackmapPipeline.process

    def process(self, *args, **kwargs):
        if self.frames_in >= 3:
            raise RuntimeError("the model failed on chunk 2")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(BackmapPipeline, "process", process)
    with pytest.raises(RuntimeError, match="chunk 2"):
        _convert10(tmp_path / "aa.dcd", tiny_ca_backmapper)
    assert os.listdir(tmp_path) == []  # no empty or half-written output, no partial file, no topology
    monkeypatch.setattr(BackmapPipeline, "process", real)
    s = _convert10(tmp_path / "aa.dcd", tiny_ca_backmapper)
    assert s["frames_written"] == 10
    assert sorted(os.listdir(tmp_path)) == ["aa.dcd", "aa.pdb"]


def test_disk_full_during_convert_is_one_line(tmp_path, tiny_ca_backmapper, monkeypatch):
    from openmm.app import DCDFile

    real = DCDFile.writeModel
    calls = []

    def write_model(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DCDFile, "writeModel", write_model)
    out = tmp_path / "full.dcd"
    with pytest.raises(OutputWriteError) as info:  # a UserError: the CLI prints it as one line
        _convert10(out, tiny_ca_backmapper)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"cannot write {out}: No space left on device after 3 frame(s)")
    assert "nothing was kept" in msg and "free disk space" in msg
    assert os.listdir(tmp_path) == []


def test_unwritable_output_fails_before_any_work(tmp_path, monkeypatch):
    ca_pdb = ROOT / "tests" / "data" / "trpcage.pdb"
    missing_model = tmp_path / "no_such_model.pt"  # loading it would fail: the output check must come first
    (tmp_path / "dir.pdb").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        convert(ca_pdb, tmp_path / "dir.pdb", model=missing_model, **QUIET)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file, not a directory"):
        convert(ca_pdb, tmp_path / "file" / "aa.pdb", model=missing_model, **QUIET)
    # root ignores permissions, so a read-only directory is simulated through os.access
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(ro) else real_access(p, mode))
    with pytest.raises(InputError, match=f"the directory {ro} is not writable"):
        convert(ca_pdb, ro / "aa.pdb", model=missing_model, **QUIET)
    assert main(["convert", str(ca_pdb), "-o", str(ro / "aa.pdb"), "--model", str(missing_model)]) == 2


_KILLED_CONVERT = """
import os, signal, sys
from openmm_backmap.io import TrajectoryWriter
from openmm_backmap.run import convert_trajectory

real = TrajectoryWriter.write
def write(self, *args, **kwargs):
    real(self, *args, **kwargs)
    if self.n_frames >= 6:  # two chunks of three frames are on disk: crash hard, as the OOM killer would
        os.kill(os.getpid(), signal.SIGKILL)
TrajectoryWriter.write = write
convert_trajectory(sys.argv[1], sys.argv[2], model=sys.argv[3], chunk=3, seed=0, device="cpu", progress=False)
"""


def test_kill_9_leaves_a_readable_partial_file_and_the_rerun_replaces_it(tmp_path, tiny_ca_model,
                                                                          tiny_ca_backmapper):
    out = tmp_path / "aa.dcd"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILLED_CONVERT), str(TRAJ10), str(out),
                           str(ROOT / "models" / "ca2aa.pt")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    partial = tmp_path / "aa.partial.dcd"
    assert not out.exists() and partial.exists()
    t = md.load(str(partial), top=str(tmp_path / "aa.partial.pdb"))  # the partial topology goes with it
    assert t.n_frames == 6 and np.isfinite(t.xyz).all()
    with pytest.warns(StalePartialWarning, match="aa.partial.dcd"):
        s = _convert10(out, tiny_ca_backmapper)  # no --force needed, nothing blocks the rerun
    assert s["frames_written"] == 10 and not partial.exists()
    assert md.load(str(out), top=str(tmp_path / "aa.pdb")).n_frames == 10


def test_reporter_creates_no_file_before_its_first_report(tmp_path, trpcage_go, tiny_ca_backmapper):
    import openmm
    import openmm.app as app

    top, system, pos = trpcage_go
    sim = app.Simulation(top, system, openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.01),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    rep = BackmapReporter(tmp_path / "r.dcd", 2, model=tiny_ca_backmapper, seed=0)
    sim.reporters.append(rep)
    assert os.listdir(tmp_path) == []
    sim.step(1)  # no report yet
    assert os.listdir(tmp_path) == []
    sim.step(1)
    # the reporter writes in place (like OpenMM's reporters), flushed: the frame is readable before close()
    assert sorted(os.listdir(tmp_path)) == ["r.dcd", "r.pdb"]
    assert md.load(str(tmp_path / "r.dcd"), top=str(tmp_path / "r.pdb")).n_frames == 1
    rep.close()
