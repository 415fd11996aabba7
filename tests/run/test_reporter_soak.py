"""Soak test of the BackmapReporter: 10^5 reports on a tiny system, no frame lost, memory flat after warm-up."""

import resource

import mdtraj as md
import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
app = pytest.importorskip("openmm.app")

from openmm_backmap.cgsystems import calpha_go_model  # noqa: E402
from openmm_backmap.run import BackmapReporter  # noqa: E402

N_REPORTS = 100_000
WARM_UP = 10_000
MAX_GROWTH_MB = 50.0


def _rss_mb():
    """Current resident set size (Linux /proc), falling back to the peak elsewhere."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:  # pragma: no cover
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def minimal_ca_model(tmp_path_factory, tiny_ca_model):
    """The tiny test model without side-chain repacking: the soak exercises the reporter, not the network."""
    from openmm_backmap.model import KStepModel, load_model, save_model
    from openmm_backmap.model.steps import CA2AA

    bm = load_model(str(tiny_ca_model), device="cpu")
    step = CA2AA.from_exported(getattr(bm.module.steps, "0"), {"hidden": 16, "layers": 1, "neighbors": 8,
                                                                "repack_sweeps": 0})
    path = tmp_path_factory.mktemp("soak_model") / "minimal.pt"
    save_model(KStepModel([step]), str(path), dict(bm.metadata))
    return path


@pytest.mark.slow
def test_100k_reports_lose_no_frame_and_keep_memory_flat(tmp_path, minimal_ca_model, tests_data):
    top, system, pos = calpha_go_model(str(tests_data / "trpcage.pdb"))
    integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.01)
    integrator.setRandomNumberSeed(3)
    sim = app.Simulation(top, system, integrator, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    out = tmp_path / "soak.xtc"
    rep = BackmapReporter(str(out), 1, model=str(minimal_ca_model), device="cpu", seed=0, asynchronous=True,
                          batchSize=200, queueSize=8, deterministic=True)
    sim.reporters.append(rep)
    sim.step(WARM_UP)
    before = _rss_mb()
    sim.step(N_REPORTS - WARM_UP)
    after = _rss_mb()
    rep.close()
    assert after - before < MAX_GROWTH_MB, f"RSS grew {after - before:.1f} MB over {N_REPORTS - WARM_UP} reports"
    n = sum(chunk.n_frames for chunk in md.iterload(str(out), top=str(out.with_suffix(".pdb")), chunk=10_000))
    assert n == N_REPORTS
    last = md.load_frame(str(out), n - 1, top=str(out.with_suffix(".pdb")))
    assert np.isfinite(last.xyz).all()
