"""BackmapReporter's life without close(): frames flushed at exit, no abort, no reporter kept alive."""

import gc
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
app = pytest.importorskip("openmm.app")

from openmm_backmap.run import BackmapReporter  # noqa: E402
from openmm_backmap.run import reporter as reporter_module  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
N_STEPS, INTERVAL = 50, 2  # 25 reports, all of them still queued when the script ends (queueSize=50)

SCRIPT = textwrap.dedent("""
    import sys
    import openmm, openmm.app as app
    from openmm_backmap.cgsystems import calpha_go_model
    from openmm_backmap.run import BackmapReporter

    out, model, n_steps, interval, fail = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    top, system, pos = calpha_go_model("tests/data/trpcage.pdb")
    integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.01)
    integrator.setRandomNumberSeed(1)
    sim = app.Simulation(top, system, integrator, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    rep = BackmapReporter(out, interval, model=model, device="cpu", seed=0, asynchronous=True, queueSize=50)
    sim.reporters.append(rep)
    sim.step(n_steps)
    if fail == "raise":
        raise RuntimeError("the script failed after stepping")
    # ends without rep.close()
""")


def _run_script(tmp_path, model, fail):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "aa.dcd"
    proc = subprocess.run([sys.executable, str(script), str(out), str(model), str(N_STEPS), str(INTERVAL), fail],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    return proc, out


@pytest.mark.parametrize("fail, status", [("no", 0), ("raise", 1)])
def test_unclosed_asynchronous_reporter_flushes_at_exit(tmp_path, tiny_ca_model, fail, status):
    proc, out = _run_script(tmp_path, tiny_ca_model, fail)
    assert proc.returncode == status, proc.stderr  # not 134 (abort in the worker thread)
    assert "terminate called" not in proc.stderr
    if fail == "raise":
        assert "the script failed after stepping" in proc.stderr
    traj = md.load(str(out), top=str(out.with_suffix(".pdb")))
    assert traj.n_frames == N_STEPS // INTERVAL


def test_close_unregisters_exit_hook_and_hook_holds_no_reference(tmp_path, trpcage_go, tiny_ca_backmapper,
                                                                 monkeypatch):
    registered, unregistered = [], []
    monkeypatch.setattr(reporter_module.atexit, "register", registered.append)
    monkeypatch.setattr(reporter_module.atexit, "unregister", unregistered.append)
    top, system, pos = trpcage_go

    def run(out):
        sim = app.Simulation(top, system, openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.01),
                             openmm.Platform.getPlatformByName("Reference"))
        sim.context.setPositions(pos)
        rep = BackmapReporter(out, 5, model=tiny_ca_backmapper, seed=0, asynchronous=True, queueSize=10)
        sim.reporters.append(rep)
        sim.step(20)
        return rep

    rep = run(tmp_path / "a.dcd")
    assert len(registered) == 1 and not unregistered
    rep.close()
    assert unregistered == registered  # exactly this reporter's hook
    registered[0]()  # a hook left behind would find the reporter closed: nothing happens

    rep = run(tmp_path / "b.dcd")
    ref = weakref.ref(rep)
    del rep
    gc.collect()
    assert ref() is None  # the exit hook does not keep the reporter alive
    assert unregistered == registered  # its finaliser closed it
    registered[1]()  # the hook of a collected reporter does nothing
    for name in ("a", "b"):
        t = md.load(str(tmp_path / f"{name}.dcd"), top=str(tmp_path / f"{name}.pdb"))
        assert t.n_frames == 4 and np.isfinite(t.xyz).all()
