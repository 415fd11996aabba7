"""Model calls sized from a memory budget (openmm_backmap.run.memory_budget), in convert, the pipeline, the
reporter and the CLI."""

import json
import os
import subprocess
import sys

import mdtraj as md
import numpy as np
import pytest

from openmm_backmap.cli import main
from openmm_backmap.run import BackmapOptions, BackmapReporter, format_summary
from openmm_backmap.run import convert_trajectory as convert
from openmm_backmap.run.memory_budget import forward_bytes, frames_per_call, structures_per_call
from openmm_backmap.structure import InputError
from openmm_backmap.structure.constants import BYTES_PER_MB, DEFAULT_MAX_MEMORY_MB

QUIET = {"progress": False}


def _budget_mb(n_residues, structures):
    """The smallest budget (MB) that holds ``structures`` structures of ``n_residues`` residues in one call."""
    return (forward_bytes(n_residues, structures) + 1) / BYTES_PER_MB  # + 1 byte: no rounding down


@pytest.fixture(scope="module")
def ca_traj(tmp_path_factory, trpcage):
    """Trp-cage C-alpha PDB and a 6-frame noisy C-alpha DCD."""
    d = tmp_path_factory.mktemp("budget")
    top = md.Topology()
    chain = top.add_chain()
    for name in trpcage.sequence:
        top.add_atom("CA", md.element.carbon, top.add_residue(name, chain))
    ca = trpcage.ca_xyz[0]
    xyz = (ca[None] + np.random.default_rng(0).normal(scale=0.01, size=(6, len(ca), 3))).astype(np.float32)
    md.Trajectory(xyz[:1], top).save_pdb(str(d / "ca.pdb"))
    md.Trajectory(xyz, top).save_dcd(str(d / "ca.dcd"))
    return {"pdb": str(d / "ca.pdb"), "dcd": str(d / "ca.dcd"), "n_res": len(ca)}


@pytest.mark.parametrize("budget_mb", [128, 512, 2048, 8192])
def test_batch_shrinks_with_residues_and_samples_and_fits_the_budget(budget_mb):
    sizes = [20, 200, 1000, 3000]
    calls = [structures_per_call(r, budget_mb) if forward_bytes(r, 1) <= budget_mb * BYTES_PER_MB else 0
             for r in sizes]
    assert calls == sorted(calls, reverse=True) and calls[0] > calls[-1]
    for r, n in zip(sizes, calls):
        if n:
            assert forward_bytes(r, n) <= budget_mb * BYTES_PER_MB < forward_bytes(r, n + 1)
    frames = [frames_per_call(200, s, budget_mb) for s in (1, 2, 5, 50)]
    assert frames == sorted(frames, reverse=True) and frames[0] > frames[-1] >= 1
    per_call, five = structures_per_call(200, budget_mb), frames_per_call(200, 5, budget_mb)
    assert five * 5 <= per_call or (five == 1 and per_call < 5)  # else the 5 samples are split over calls


def test_structure_too_big_for_the_budget_is_one_line_input_error(tmp_path, ca_traj, tiny_ca_backmapper):
    with pytest.raises(InputError, match=r"3000 residues needs about \d+ MB.*budget of 100 MB.*max_memory_mb="):
        structures_per_call(3000, 100)
    too_small = _budget_mb(ca_traj["n_res"], 1) * 0.999
    out = tmp_path / "aa.dcd"
    with pytest.raises(InputError, match="raise it with max_memory_mb=") as err:
        convert(ca_traj["dcd"], out, topology=ca_traj["pdb"], model=tiny_ca_backmapper, max_memory_mb=too_small,
                seed=0, **QUIET)
    assert "\n" not in str(err.value)
    assert not os.listdir(tmp_path)  # refused before any output was created


@pytest.mark.parametrize("bad", [0, -5, "lots", float("nan"), float("inf")])
def test_options_reject_a_bad_budget(bad):
    with pytest.raises(InputError, match="max_memory_mb"):
        BackmapOptions(max_memory_mb=bad)
    assert BackmapOptions().max_memory_mb == DEFAULT_MAX_MEMORY_MB


def _convert(tmp_path, files, bm, name, **kw):
    out = tmp_path / name
    s = convert(files["dcd"], out, topology=files["pdb"], model=bm, seed=3, **QUIET, **kw)
    return s, md.load(str(out), top=s["topology_file"]).xyz


def test_deterministic_output_does_not_depend_on_the_budget(tmp_path, ca_traj, tiny_ca_backmapper):
    small, x_small = _convert(tmp_path, ca_traj, tiny_ca_backmapper, "small.dcd", samples=2, deterministic=True,
                              max_memory_mb=_budget_mb(ca_traj["n_res"], 2))
    big, x_big = _convert(tmp_path, ca_traj, tiny_ca_backmapper, "big.dcd", samples=2, deterministic=True)
    assert (small["chunk"], small["batch_frames"], small["batch_structures"]) == (1, 1, 2)
    assert big["chunk"] == 100 and small["frames_written"] == big["frames_written"] == 12
    np.testing.assert_allclose(x_small, x_big, atol=1e-5)


def test_sampled_output_depends_on_the_effective_chunk_only(tmp_path, ca_traj, tiny_ca_backmapper):
    two = _budget_mb(ca_traj["n_res"], 4)  # 4 structures: 2 frames of 2 samples
    capped, x_capped = _convert(tmp_path, ca_traj, tiny_ca_backmapper, "capped.dcd", samples=2, chunk=100,
                                max_memory_mb=two)
    plain, x_plain = _convert(tmp_path, ca_traj, tiny_ca_backmapper, "plain.dcd", samples=2, chunk=2)
    assert capped["chunk"] == plain["chunk"] == 2
    np.testing.assert_array_equal(x_capped, x_plain)
    # a budget below one frame's samples splits them over calls: still every sample, all different
    split, x_split = _convert(tmp_path, ca_traj, tiny_ca_backmapper, "split.dcd", samples=3,
                              max_memory_mb=_budget_mb(ca_traj["n_res"], 2))
    assert (split["batch_frames"], split["batch_structures"], split["frames_written"]) == (1, 2, 18)
    again, x_again = _convert(tmp_path, ca_traj, tiny_ca_backmapper, "again.dcd", samples=3,
                              max_memory_mb=_budget_mb(ca_traj["n_res"], 2))
    np.testing.assert_array_equal(x_split, x_again)
    assert not np.allclose(x_split[0], x_split[2], atol=1e-4)  # the third sample has its own seed


def test_progress_bar_and_summary_show_the_effective_chunk(tmp_path, ca_traj, tiny_ca_backmapper, capsys):
    convert(ca_traj["dcd"], tmp_path / "aa.dcd", topology=ca_traj["pdb"], model=tiny_ca_backmapper, seed=0,
            samples=2, max_memory_mb=_budget_mb(ca_traj["n_res"], 4), progress=True)
    captured = capsys.readouterr()
    budget = f"{_budget_mb(ca_traj['n_res'], 4):g}"
    assert f"chunk=2 frames x 2 samples (memory budget {budget} MB)" in captured.err  # the bar
    assert f"chunk=2 frames x 2 samples (memory budget {budget} MB)" in captured.out  # the summary


def test_cli_max_memory_reaches_the_options(tmp_path, ca_traj, tiny_ca_model, monkeypatch):
    import openmm_backmap.run as run

    seen = {}
    monkeypatch.setattr(run, "convert_trajectory", lambda *a, **kw: seen.update(kw))
    assert main(["convert", ca_traj["dcd"], "-t", ca_traj["pdb"], "-o", str(tmp_path / "o.dcd"),
                 "--max-memory", "512"]) == 0
    assert seen["max_memory_mb"] == 512.0
    monkeypatch.undo()
    code = main(["convert", ca_traj["dcd"], "-t", ca_traj["pdb"], "-o", str(tmp_path / "o.dcd"), "--model",
                 str(tiny_ca_model), "--device", "cpu", "--max-memory", "1"])
    assert code == 2 and not (tmp_path / "o.dcd").exists()


def test_reporter_batches_from_max_memory(tmp_path, trpcage_go, tiny_ca_backmapper):
    openmm = pytest.importorskip("openmm")
    app = pytest.importorskip("openmm.app")

    def run(name, **kw):
        integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.01)
        integrator.setRandomNumberSeed(1)
        sim = app.Simulation(*trpcage_go[:2], integrator, openmm.Platform.getPlatformByName("Reference"))
        sim.context.setPositions(trpcage_go[2])
        sim.context.setVelocitiesToTemperature(300.0, 1)
        rep = BackmapReporter(tmp_path / name, 2, model=tiny_ca_backmapper, seed=5, samples=2, **kw)
        sim.reporters.append(rep)
        calls = []
        sim.step(2)  # the first report builds the pipeline
        process = rep.pipeline.process
        rep.pipeline.process = lambda xyz, *a: calls.append(len(xyz)) or process(xyz, *a)
        sim.step(10)
        rep.close()
        assert rep.summary()["chunk"] == 2 and "chunk=2 frames x 2 samples" in format_summary(rep.summary())
        return calls, md.load(str(tmp_path / name), top=str(tmp_path / name).replace(".dcd", ".pdb")).xyz

    calls, x_capped = run("capped.dcd", batchSize=10, maxMemory=_budget_mb(20, 4))
    assert calls == [2, 2, 2]  # 6 reports in model calls of 2 frames, not one batch of 10 at close()
    _, x_plain = run("plain.dcd", batchSize=2)
    np.testing.assert_array_equal(x_capped, x_plain)
    assert BackmapReporter(tmp_path / "y.dcd", 2, maxMemory=100).options.max_memory_mb == 100.0
    with pytest.raises(InputError, match="max_memory_mb"):
        BackmapReporter(tmp_path / "x.dcd", 2, options=BackmapOptions(), maxMemory=100)


_RSS_SCRIPT = """
import json, resource, sys
import numpy as np, mdtraj as md
from openmm_backmap.model import load_model
from openmm_backmap.run import convert_trajectory
bm = load_model(sys.argv[3], device="cpu")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
s = convert_trajectory(sys.argv[1], sys.argv[2], model=bm, topology=sys.argv[4], samples=2, seed=0,
                       max_memory_mb=float(sys.argv[5]), progress=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"growth": after - before, "written": s["frames_written"], "calls": s["batch_structures"]}))
"""


@pytest.mark.slow
def test_rss_of_a_large_conversion_stays_within_the_budget(tmp_path):
    """3000 residues, 3 frames, 2 samples: the default chunk would hold all 6 structures (about 2.1 GB measured);
    a budget of 1024 MB allows 1 structure per call."""
    model = os.path.join(os.path.dirname(__file__), "..", "..", "models", "ca2aa.pt")
    if not os.path.exists(model):
        pytest.skip("models/ca2aa.pt is not in this checkout")
    rng = np.random.default_rng(0)
    n = 3000
    steps = rng.normal(size=(n, 3))
    ca = np.cumsum(0.38 * steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0)
    xyz = (ca[None] + rng.normal(scale=0.01, size=(3, n, 3))).astype(np.float32)
    top = md.Topology()
    chain = top.add_chain()
    names = ["ALA", "LEU", "GLU", "LYS", "SER", "PHE", "ARG", "TRP", "GLY", "VAL"]
    for i in range(n):
        top.add_atom("CA", md.element.carbon, top.add_residue(names[i % len(names)], chain))
    md.Trajectory(xyz[:1], top).save_pdb(str(tmp_path / "ca.pdb"))
    md.Trajectory(xyz, top).save_dcd(str(tmp_path / "ca.dcd"))
    budget_mb = 1024
    res = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(tmp_path / "ca.dcd"), str(tmp_path / "aa.dcd"),
                          model, str(tmp_path / "ca.pdb"), str(budget_mb)], capture_output=True, text=True,
                         check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["written"] == 6 and out["calls"] == structures_per_call(n, budget_mb)
    # margin for what is outside the model call: reading, the output arrays, the writer, allocator slack
    assert out["growth"] < (budget_mb + 256) * BYTES_PER_MB, out


def _record_bar_updates(conversion, monkeypatch):
    """The list every update of convert's progress bar is appended to."""
    updates = []
    real = conversion._progress_bar

    def spy(*args, **kw):
        bar = real(*args, **kw)
        update = bar.update
        bar.update = lambda n=1: (updates.append(n), update(n))[1]
        return bar

    monkeypatch.setattr(conversion, "_progress_bar", spy)
    return updates


def test_progress_moves_within_a_chunk(tmp_path, ca_traj, tiny_ca_backmapper, monkeypatch):
    """Issue 23, item 5: one chunk of several model calls moves the bar after each call, not once at its end."""
    import openmm_backmap.run.conversion as conversion

    updates = _record_bar_updates(conversion, monkeypatch)
    s = convert(ca_traj["dcd"], tmp_path / "aa.dcd", topology=ca_traj["pdb"], model=tiny_ca_backmapper, seed=0,
                samples=4, chunk=100, max_memory_mb=_budget_mb(ca_traj["n_res"], 1), progress=True)
    assert (s["chunk"], s["batch_structures"]) == (1, 1)  # 6 chunks of one frame, 4 model calls each
    assert sum(updates) == 6 and len(updates) == 6
    # fractions of a frame are shown once whole: check the callback itself
    calls = []
    pipe_cls = conversion.BackmapPipeline
    monkeypatch.setattr(pipe_cls, "_progress", lambda self, f: calls.append(f))
    convert(ca_traj["dcd"], tmp_path / "bb.dcd", topology=ca_traj["pdb"], model=tiny_ca_backmapper, seed=0,
            samples=4, chunk=100, max_memory_mb=_budget_mb(ca_traj["n_res"], 1), progress=False)
    assert len(calls) == 24 and sum(calls) == pytest.approx(6)  # one call per model call


def test_progress_bar_moves_per_model_call_of_a_big_chunk(tmp_path, ca_traj, tiny_ca_backmapper, monkeypatch):
    """A chunk split over several model calls (samples over the budget) updates the bar more than once."""
    import openmm_backmap.run.conversion as conversion

    updates = _record_bar_updates(conversion, monkeypatch)
    monkeypatch.setattr(conversion, "frames_per_call", lambda *a: 100)  # one chunk of all 6 frames
    s = convert(ca_traj["dcd"], tmp_path / "aa.dcd", topology=ca_traj["pdb"], model=tiny_ca_backmapper, seed=0,
                samples=1, chunk=100, max_memory_mb=_budget_mb(ca_traj["n_res"], 2), progress=True)
    assert s["batch_frames"] == 2 and s["frames_written"] == 6
    assert updates == [2, 2, 2]  # after each of the three model calls of the one chunk
