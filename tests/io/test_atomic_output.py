"""Safe output (openmm_backmap.io.paths): partial names, atomic rename, cleanup, writability checks, write errors."""

import errno
import os

import mdtraj as md
import numpy as np
import pytest

from openmm_backmap.io import (AtomicOutput, StalePartialWarning, TrajectoryWriter, check_output_path, check_writable,
                               partial_path)
from openmm_backmap.structure import InputError, OutputExistsError, OutputWriteError

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module")
def frames(trpcage):
    x = trpcage.xyz[0].astype(np.float64)
    return np.stack([x, x + 0.1, x - 0.05])


def test_partial_path_keeps_the_extension():
    assert partial_path("out/run.dcd") == os.path.join("out", "run.partial.dcd")
    assert partial_path("a.b.json") == "a.b.partial.json"


def test_atomic_output_renames_on_success_and_removes_on_failure(tmp_path):
    out = tmp_path / "r.json"
    with AtomicOutput(out) as tmp:
        with open(tmp, "w") as fh:
            fh.write("{}")
        assert not out.exists()  # nothing under the final name until the block succeeds
    assert out.read_text() == "{}" and not os.path.exists(tmp)
    with pytest.raises(RuntimeError, match="boom"), AtomicOutput(out) as tmp:
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("boom")
    assert out.read_text() == "{}" and not os.path.exists(tmp)  # the old file stands, the partial one is gone


def test_atomic_output_turns_os_errors_into_one_line(tmp_path):
    out = tmp_path / "r.json"
    with pytest.raises(OutputWriteError) as info, AtomicOutput(out) as tmp:
        open(tmp, "w").close()
        raise ENOSPC
    msg = str(info.value)
    assert "\n" not in msg and str(out) in msg and "No space left" in msg and "free disk space" in msg
    assert not os.path.exists(tmp) and not out.exists()


def test_stale_partial_file_is_replaced_with_a_warning(tmp_path):
    out = tmp_path / "r.json"
    stale = tmp_path / "r.partial.json"
    stale.write_text("left by a killed run")
    with pytest.warns(StalePartialWarning, match="did not finish"), AtomicOutput(out) as tmp:
        assert not os.path.exists(tmp)
        with open(tmp, "w") as fh:
            fh.write("new")
    assert out.read_text() == "new" and not stale.exists()


def test_check_writable(tmp_path, monkeypatch):
    assert check_writable(tmp_path / "new" / "deeper" / "x.dcd") == str(tmp_path / "new" / "deeper" / "x.dcd")
    with pytest.raises(InputError, match="is a directory"):
        check_writable(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="afile is a file, not a directory"):
        check_writable(tmp_path / "afile" / "x.dcd")
    with pytest.raises(OutputExistsError, match="--force|force=True"):
        check_writable(tmp_path / "afile")
    assert check_writable(tmp_path / "afile", force=True)
    (tmp_path / "x.dcd").write_text("x")
    with pytest.raises(OutputExistsError, match="--append|append=True"):
        check_output_path(tmp_path / "x.dcd")
    # tests run as root, which os.access lets write anywhere: a read-only directory is simulated
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(tmp_path) else real_access(p, mode))
    with pytest.raises(InputError, match=f"the directory {tmp_path} is not writable; choose another output"):
        check_output_path(tmp_path / "y.dcd")
    with pytest.raises(InputError, match="not writable"):
        check_writable(tmp_path / "missing_dir" / "y.dcd")  # the directory to create it in is read-only


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_check_writable_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(InputError, match="not writable"):
            check_output_path(ro / "x.dcd")
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("fmt", ["dcd", "xtc", "pdb"])
def test_atomic_writer_keeps_the_partial_file_readable_and_renames_on_close(tmp_path, trpcage, frames, fmt):
    out = tmp_path / f"t.{fmt}"
    w = TrajectoryWriter(out, trpcage.topology(), atomic=True)
    assert w.file_path == str(tmp_path / f"t.partial.{fmt}") and not out.exists()
    for i in range(len(frames)):
        w.write(frames[i])
        # what a hard crash would leave: the partial file, readable up to the last frame
        t = md.load(w.file_path) if fmt == "pdb" else md.load(w.file_path, top=w.topology_file_path)
        assert t.n_frames == i + 1
    w.close()
    assert out.exists() and not os.path.exists(w.file_path)
    t = md.load(str(out)) if fmt == "pdb" else md.load(str(out), top=w.topology_path)
    assert t.n_frames == len(frames)


def test_atomic_writer_removes_everything_on_failure_and_keeps_an_old_output(tmp_path, trpcage, frames):
    out = tmp_path / "t.dcd"
    with pytest.raises(RuntimeError), TrajectoryWriter(out, trpcage.topology(), atomic=True) as w:
        w.write(frames)
        raise RuntimeError("the model failed")
    assert sorted(os.listdir(tmp_path)) == []  # no trajectory, no partial file, no topology
    with TrajectoryWriter(out, trpcage.topology(), atomic=True) as w:
        w.write(frames)
    with pytest.raises(RuntimeError), TrajectoryWriter(out, trpcage.topology(), force=True, atomic=True) as w:
        w.write(frames[:1])
        raise RuntimeError("the model failed")
    assert md.load(str(out), top=str(tmp_path / "t.pdb")).n_frames == 3  # the finished output is untouched
    assert not (tmp_path / "t.partial.dcd").exists()


def test_disk_full_is_one_line_with_the_frame_count(tmp_path, trpcage, frames, monkeypatch):
    from openmm.app import DCDFile

    real = DCDFile.writeModel
    calls = []

    def write_model(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise ENOSPC
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DCDFile, "writeModel", write_model)
    out = tmp_path / "full.dcd"
    w = TrajectoryWriter(out, trpcage.topology(), atomic=True)
    w.write(frames)
    with pytest.raises(OutputWriteError) as info:
        w.write(frames)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"cannot write {out}: No space left on device after 3 frame(s)")
    assert "nothing was kept" in msg and w.closed
    assert sorted(os.listdir(tmp_path)) == []
    # in place (the reporter): the complete frames stay, and the message says where
    calls.clear()
    w = TrajectoryWriter(out, trpcage.topology())
    w.write(frames)
    with pytest.raises(OutputWriteError, match=f"the 3 complete frame\\(s\\) are in {out}"):
        w.write(frames)
    assert md.load(str(out), top=w.topology_path).n_frames >= 3


def test_xtc_writer_that_writes_nothing_is_an_error(tmp_path, trpcage, frames, monkeypatch):
    import openmm.app.internal.xtc_utils as xtc_utils

    monkeypatch.setattr(xtc_utils, "xtc_write_frame", lambda *args: None)  # what a full disk looks like to it
    w = TrajectoryWriter(tmp_path / "t.xtc", trpcage.topology(), atomic=True)
    with pytest.raises(OutputWriteError, match="wrote nothing"):
        w.write(frames)
    assert sorted(os.listdir(tmp_path)) == []
