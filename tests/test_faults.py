"""Fault injection across the package: generated bad files and crashes, one test per class of fault.

Classes (docs/reliability.md lists what the user sees for each):

* damaged input: files truncated at random byte offsets, flipped bytes, zero-length files, NaN frames, a wrong
  topology. Each either raises a one-line user error, or converts every frame the damage did not reach with its own
  coordinates and index, and says (a warning) what it did not convert. The formats carry no checksum, so a frame
  the damage reached may be converted with changed coordinates. Nothing else may escape (no IndexError, no crash).
* clear errors: damaged model metadata, a best.pt used to resume, a foreign model (wrong output shape, or no
  step modules for export), a training config that is bad YAML or has a !!python tag: one line each.
* damaged model files and checkpoints: truncated or flipped bytes are a user error, never an unpickled object.
* crashes while writing: a child process killed with SIGKILL while a reporter writes leaves every completed frame
  readable.

The random offsets come from fixed seeds, so a failure reproduces.
"""

import os
import signal
import struct
import subprocess
import sys
import tempfile
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
    """Convert; return (outcome, summary or error, warnings, output). Anything but a UserError escapes and fails
    the test."""
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}.xtc"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            summary = convert(str(path), str(out), topology=top, model=model, deterministic=True, **QUIET)
        except UserError as err:
            assert "\n" not in str(err).strip(), "a user error must be one line"
            assert not out.exists(), "a failed convert must not leave its output"
            return "error", err, caught, out
    said = [str(w.message) for w in caught if issubclass(w.category, (LoadWarning, BadFrameWarning))]
    return "ok", summary, said, out


def _frame_spans(data, fmt):
    """(start, end) byte offsets of every frame (model) of an undamaged file; bytes before the first belong to the
    file's header, which every frame depends on."""
    if fmt == "pdb":
        starts = [i for i in range(len(data)) if data.startswith(b"MODEL", i) and (i == 0 or data[i - 1:i] == b"\n")]
        return list(zip(starts, starts[1:] + [len(data)]))
    if fmt == "dcd":
        from openmm_backmap.io.validate import _dcd_layout

        with tempfile.NamedTemporaryFile(suffix=".dcd") as fh:
            fh.write(data)
            fh.flush()
            _, _, _, start, _, frame, _ = _dcd_layout(fh.name)
        return [(start + i * frame, start + (i + 1) * frame) for i in range(N_FRAMES)]
    spans, offset = [], 0  # XTC: compressed frames, each with its own header and byte count
    while offset < len(data):
        n_bytes = struct.unpack(">i", data[offset + 88:offset + 92])[0]
        end = offset + 92 + (n_bytes + 3) // 4 * 4
        spans.append((offset, end))
        offset = end
    return spans


def _touched_frames(original, damaged, how, spans):
    """Indices of the frames whose bytes the damage reached (all of them when it reached the header)."""
    if how == "truncate":
        return {i for i, (_, end) in enumerate(spans) if end > len(damaged)}
    changed = np.flatnonzero(np.frombuffer(original, np.uint8) != np.frombuffer(damaged, np.uint8))
    if changed.size and changed.min() < spans[0][0]:
        return set(range(len(spans)))
    return {i for i, (a, b) in enumerate(spans) if ((changed >= a) & (changed < b)).any()}


def _check_outcome(outcome, result, said, out, original_xyz, touched):
    """What convert promises for a damaged input (DCD, XTC and PDB carry no checksum, so a flipped bit inside a
    coordinate can change it unseen; docs/reliability.md):

    * a one-line user error and no output; or
    * every frame the damage did not reach is converted, in order, with its own coordinates (the C-alphas of the
      output are the input's), and frames that are missing or skipped are named in a warning (so output frame k
      is traceable to its input frame through ``skipped_frames``); every written frame is finite.
    """
    if outcome == "error":
        return
    n_read = result["frames_in"] + result["frames_skipped"]
    written_from = [i for i in range(n_read) if i not in set(result["skipped_frames"])]
    assert result["frames_written"] == len(written_from)
    if n_read < N_FRAMES or result["frames_skipped"]:
        assert said, f"converted {result['frames_written']} of {N_FRAMES} frames without a warning"
    first_touched = min(touched, default=N_FRAMES)
    assert n_read >= first_touched, "frames before the damage were lost"
    assert not set(range(first_touched)) & set(result["skipped_frames"]), "an undamaged frame was skipped"
    t = md.load(str(out), top=result["topology_file"])
    assert t.n_frames == len(written_from) and np.isfinite(t.xyz).all()
    ca = t.xyz[:, t.topology.select("name CA")]
    for k, i in enumerate(written_from):
        if i not in touched:  # frame k of the output is input frame i, with the input's coordinates
            np.testing.assert_allclose(ca[k], original_xyz[i], atol=2e-3, err_msg=f"output frame {k} (input {i})")


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
    spans = _frame_spans(ca_inputs[fmt], fmt)
    assert len(spans) == N_FRAMES
    for trial in range(6):
        path = tmp_path / f"bad{trial}.{fmt}"
        damaged = _damaged(ca_inputs[fmt], rng, how)
        path.write_bytes(damaged)
        outcome, result, said, out = _run_convert(path, top, tiny_ca_backmapper, tmp_path)
        _check_outcome(outcome, result, said, out, ca_inputs["xyz"],
                       _touched_frames(ca_inputs[fmt], damaged, how, spans))


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


@pytest.mark.parametrize("metadata", ["{not json", '{"format_version": "x", "kind": "ca2aa"}', "[1, 2]"])
def test_damaged_model_metadata_is_one_line(tiny_ca_model, tmp_path, metadata, capsys):
    import torch

    from openmm_backmap.cli import main
    from openmm_backmap.model import load_model
    from openmm_backmap.model.model_file import EXTRA_FILES

    extra = {name: "" for name in EXTRA_FILES}
    module = torch.jit.load(str(tiny_ca_model), map_location="cpu", _extra_files=extra)
    extra = {k: v for k, v in extra.items() if v}
    extra["metadata.json"] = metadata
    path = tmp_path / "bad_meta.pt"
    torch.jit.save(module, str(path), _extra_files=extra)
    with pytest.raises(UserError, match="damaged metadata") as info:
        load_model(str(path), device="cpu")
    assert "\n" not in str(info.value)
    assert main(["info", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_best_checkpoint_used_to_resume_is_one_line(tmp_path):
    import torch

    from openmm_backmap.train.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"  # best.pt copied over last.pt: the weights only
    save_checkpoint(str(path), {"model": {"w": torch.zeros(3)}, "step": 7, "metrics": {"val_loss": 1.0}})
    ck = load_checkpoint(str(path))
    assert ck["step"] == 7
    with pytest.raises(UserError, match="'optim'.*cannot resume") as info:
        ck["optim"]  # what train --resume reads next
    assert "\n" not in str(info.value)


def _foreign_model(path):
    """A TorchScript module with the package's metadata (saved by save_model) whose output has the wrong shape
    and which has no step modules."""
    import torch

    from openmm_backmap.model import save_model

    class Foreign(torch.nn.Module):
        def forward(self, cg_xyz: torch.Tensor, residue_types: torch.Tensor, segment_start: torch.Tensor, seed: int,
                    samples: int, temperature: float) -> torch.Tensor:
            return cg_xyz[:, :2]

    save_model(torch.jit.script(Foreign()), str(path), {"kind": "ca2aa", "transferable": True})
    return path


def test_foreign_model_with_the_wrong_output_shape_is_one_line(ca_inputs, tmp_path, capsys):
    from openmm_backmap.cli import main
    from openmm_backmap.model import load_model

    model = _foreign_model(tmp_path / "foreign.pt")
    bm = load_model(str(model), device="cpu")
    with pytest.raises(UserError, match=r"expected \(B\*samples, A, 3\) = \(2, 153, 3\).*got \(1, 2, 3\)") as info:
        bm.backmap(ca_inputs["xyz"][:1], sequence=[r.name for r in md.load_topology(ca_inputs["top"]).residues],
                   samples=2, seed=0)
    assert "\n" not in str(info.value)
    out = tmp_path / "aa.pdb"
    assert main(["convert", ca_inputs["top"], "-o", str(out), "--model", str(model), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "expected (B*samples, A, 3)" in err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["foreign", "plain", "junk"])
def test_export_of_a_foreign_model_is_one_line(tmp_path, kind, capsys):
    import torch

    from openmm_backmap.cli import main

    path = tmp_path / f"{kind}.pt"
    if kind == "foreign":  # package metadata, but no step modules inside
        _foreign_model(path)
    elif kind == "plain":  # a TorchScript file without the package's metadata
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    else:
        path.write_bytes(b"not a model at all")
    out = tmp_path / "kstep.pt"
    assert main(["export", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("openmm-backmap export: error:") and str(path) in err[0]
    assert not out.exists()


@pytest.mark.parametrize("text, line", [("optim:\n  max_steps: 3\n  lr: [1e-3,\nrun_dir: x\n", "line 3"),
                                        ("optim: !!python/object:os.system {}\n", "line 1")])
def test_bad_yaml_config_is_one_line(tmp_path, text, line, capsys):
    from openmm_backmap.cli import main
    from openmm_backmap.train.config import load_config

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=f"bad.yaml.*{line}") as info:
        load_config(path)
    assert "\n" not in str(info.value)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.yaml" in err[0] and line in err[0]
