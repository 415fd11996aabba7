"""BackmapReporter on CG OpenMM simulations (Reference platform, tiny untrained model)."""

import time

import mdtraj as md
import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
app = pytest.importorskip("openmm.app")
unit = pytest.importorskip("openmm.unit")

from openmm_backmap.run import BackmapPipeline, BackmapReporter, BadFrameWarning  # noqa: E402
from openmm_backmap.structure import make_whole  # noqa: E402


def _simulation(top, system, pos, seed=1):
    integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.01)
    integrator.setRandomNumberSeed(seed)
    sim = app.Simulation(top, system, integrator, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    sim.context.setVelocitiesToTemperature(300.0, seed)
    return sim


def _load(path):
    path = str(path)
    return md.load(path) if path.endswith(".pdb") else md.load(path, top=path.rsplit(".", 1)[0] + ".pdb")


class _FakeState:
    """Just enough of openmm.State for report(): positions (nm), time, box."""

    def __init__(self, xyz, box=None):
        self.xyz, self.box = np.asarray(xyz, dtype=np.float64), box

    def getPositions(self, asNumpy=False):
        return self.xyz * unit.nanometer

    def getTime(self):
        return 0.0 * unit.picosecond

    def getPeriodicBoxVectors(self, asNumpy=False):
        return self.box * unit.nanometer


def test_describe_next_report_protocol(tmp_path, trpcage_go, tiny_ca_backmapper):
    sim = _simulation(*trpcage_go)
    rep = BackmapReporter(tmp_path / "x.dcd", 5, model=tiny_ca_backmapper)
    assert rep.describeNextReport(sim) == {"steps": 5, "periodic": False, "include": ["positions"]}
    sim.step(7)
    assert rep.describeNextReport(sim)["steps"] == 3
    rep2 = BackmapReporter(tmp_path / "y.dcd", 5, model=tiny_ca_backmapper, enforcePeriodicBox=True)
    assert rep2.describeNextReport(sim)["periodic"] is True
    rep.close()
    rep2.close()
    assert not (tmp_path / "x.dcd").exists()  # nothing reported, nothing written


def test_frames_written_count_time_and_readable_during_run(tmp_path, trpcage_go, tiny_ca_backmapper, trpcage):
    out = tmp_path / "aa.xtc"
    sim = _simulation(*trpcage_go)
    rep = BackmapReporter(out, 10, model=tiny_ca_backmapper, samples=2, seed=5)
    sim.reporters.append(rep)
    sim.step(20)
    mid = _load(out)  # readable while the simulation runs (flushed after every write)
    assert mid.n_frames == 2 * 2
    sim.step(20)
    rep.close()
    t = _load(out)
    assert t.n_frames == (40 // 10) * 2
    assert [r.name for r in t.topology.residues] == list(trpcage.sequence)
    np.testing.assert_allclose(t.time, np.repeat([0.1, 0.2, 0.3, 0.4], 2), atol=1e-4)  # ps, per sample
    s = rep.summary()
    assert s["frames_in"] == 4 and s["frames_written"] == 8 and s["seed"] == 5
    # the C-alphas of the output are the CG positions at the last report
    ca = t.xyz[-1][[a.index for a in t.topology.atoms if a.name == "CA"]]
    cg = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    np.testing.assert_allclose(ca, cg, atol=2e-3)


def test_asynchronous_matches_synchronous(tmp_path, trpcage_go, tiny_ca_backmapper):
    results = []
    for asynchronous in (False, True):
        out = tmp_path / f"run_{asynchronous}.dcd"
        sim = _simulation(*trpcage_go, seed=3)
        with BackmapReporter(out, 10, model=tiny_ca_backmapper, seed=11, batchSize=2, samples=2,
                             asynchronous=asynchronous, queueSize=1) as rep:  # a full queue blocks, never drops
            sim.reporters.append(rep)
            sim.step(50)  # 5 frames: two full batches and a partial one written at close
        results.append(_load(out).xyz)
    assert results[0].shape == (10, 153, 3)
    np.testing.assert_array_equal(results[0], results[1])


def test_worker_exception_surfaces_at_next_report_and_at_close(tmp_path, trpcage_go, tiny_ca_backmapper,
                                                               monkeypatch):
    def boom(self, *args, **kwargs):
        raise RuntimeError("boom in the worker")

    monkeypatch.setattr(BackmapPipeline, "process", boom)
    sim = _simulation(*trpcage_go)
    rep = BackmapReporter(tmp_path / "a.dcd", 5, model=tiny_ca_backmapper, asynchronous=True)
    sim.reporters.append(rep)
    sim.step(5)  # queued; the simulation does not wait for it
    deadline = time.time() + 10
    while rep._worker.error is None and time.time() < deadline:
        time.sleep(0.01)
    with pytest.raises(RuntimeError, match="boom in the worker"):
        sim.step(5)
    sim.reporters.clear()
    rep.close()  # already reported: closing is quiet and closes the file
    assert rep.pipeline.closed

    rep = BackmapReporter(tmp_path / "b.dcd", 5, model=tiny_ca_backmapper, asynchronous=True)
    sim.reporters[:] = [rep]
    sim.step(5)
    with pytest.raises(RuntimeError, match="boom in the worker"):
        rep.close()
    assert rep.pipeline.closed and rep.closed


def test_cg_particles_subset_of_a_larger_system(tmp_path, trpcage_go, tiny_ca_backmapper):
    top0, system0, pos0 = trpcage_go
    # the CG protein plus three "solvent" particles in a residue the model does not know
    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system0))
    top = app.Topology()
    chain = top.addChain("A")
    for res in top0.residues():
        r = top.addResidue(res.name, chain, res.id)
        top.addAtom("CA", app.element.carbon, r)
    water = top.addChain("W")
    for i in range(3):
        top.addAtom("O", app.element.oxygen, top.addResidue("HOH", water, str(i + 1)))
        system.addParticle(18.0)
        for f in system.getForces():
            if isinstance(f, openmm.CustomNonbondedForce):
                f.addParticle([])
    pos = np.concatenate([pos0, pos0.mean(0) + 6.0 + np.arange(9).reshape(3, 3) * 0.5])

    with pytest.raises(ValueError, match="HOH"):
        sim = _simulation(top, system, pos)
        rep = BackmapReporter(tmp_path / "all.dcd", 5, model=tiny_ca_backmapper)
        sim.reporters.append(rep)
        sim.step(5)
    sim = _simulation(top, system, pos)
    with BackmapReporter(tmp_path / "sub.pdb", 5, model=tiny_ca_backmapper, cgParticles=range(20)) as rep:
        sim.reporters.append(rep)
        sim.step(10)
    t = md.load(str(tmp_path / "sub.pdb"))
    assert t.n_frames == 2 and t.n_residues == 20


def test_make_whole_and_periodic_reporter(tmp_path, trpcage, tiny_ca_backmapper):
    from openmm_backmap.cgsystems import calpha_go_model

    # unit: a chain split across a triclinic box is reassembled bond by bond
    box = np.array([[3.0, 0, 0], [0.5, 3.0, 0], [0.5, 0.5, 3.0]])
    chain = np.cumsum(np.full((8, 3), 0.22), axis=0)
    wrapped = chain.copy()
    wrapped[4:] -= box[2] + box[0]
    whole = make_whole(wrapped, box)
    np.testing.assert_allclose(np.diff(whole, axis=0), np.diff(chain, axis=0), atol=1e-9)

    # integration: the CG molecule straddles the box edge in the simulation
    L = 4.0
    top, system, pos = calpha_go_model(trpcage, box=L)
    pos = pos - pos.mean(0) + np.array([L, L / 2, L / 2])  # centred on the x = L face
    pos = np.mod(pos, L)  # every particle wrapped into the box: the chain is split
    assert np.linalg.norm(np.diff(pos, axis=0), axis=1).max() > 2.0
    sim = _simulation(top, system, pos)
    with BackmapReporter(tmp_path / "pbc.pdb", 2, model=tiny_ca_backmapper, seed=1) as rep:
        sim.reporters.append(rep)
        sim.step(2)
    t = md.load(str(tmp_path / "pbc.pdb"))
    ca = t.xyz[0][[a.index for a in t.topology.atoms if a.name == "CA"]]
    assert np.linalg.norm(np.diff(ca, axis=0), axis=1).max() < 0.45  # whole: consecutive C-alphas ~0.38 nm


def test_bad_frames_skipped_with_warning_or_raised(tmp_path, trpcage_go, tiny_ca_backmapper):
    sim = _simulation(*trpcage_go)
    good = sim.context.getState(getPositions=True)
    nan = _FakeState(np.full((20, 3), np.nan))
    exploded = _FakeState(np.asarray(trpcage_go[2]) * 1e6)
    rep = BackmapReporter(tmp_path / "s.pdb", 1, model=tiny_ca_backmapper)
    with pytest.warns(BadFrameWarning, match="NaN"):
        rep.report(sim, nan)
    with pytest.warns(BadFrameWarning):
        rep.report(sim, exploded)
    rep.report(sim, good)
    rep.close()
    assert md.load(str(tmp_path / "s.pdb")).n_frames == 1
    assert rep.summary()["frames_skipped"] == 2

    rep = BackmapReporter(tmp_path / "r.pdb", 1, model=tiny_ca_backmapper, onBadFrame="raise")
    with pytest.raises(ValueError, match="NaN, infinite or exploded"):
        rep.report(sim, nan)
    rep.close()


def test_setup_errors_particle_count_sequence_and_names(tmp_path, trpcage_go, tiny_ca_backmapper,
                                                       tiny_persystem_model, trpcage):
    import openmm_backmap.cgsystems as cgm

    from openmm_backmap.run.demo import villin_pdb_path

    def first_report(top, system, pos, **kw):
        sim = _simulation(top, system, pos)
        rep = BackmapReporter(tmp_path / f"e{len(list(tmp_path.iterdir()))}.dcd", 1, **kw)
        try:
            rep.report(sim, sim.context.getState(getPositions=True))
        finally:
            rep.close()

    # a per-system Trp-cage model on a 35-bead villin system: wrong particle count
    with pytest.warns(UserWarning):
        villin = cgm.calpha_go_model(villin_pdb_path())
    with pytest.raises(ValueError, match="35 particles but this model expects 20 beads"):
        first_report(*villin, model=tiny_persystem_model, device="cpu")
    # the right count but another sequence
    top, system, pos = trpcage_go
    mutant = app.Topology()
    chain = mutant.addChain("A")
    for i, res in enumerate(top.residues()):
        mutant.addAtom("CA", app.element.carbon, mutant.addResidue("ALA" if i == 3 else res.name, chain, res.id))
    with pytest.raises(ValueError, match="does not match this model's .*residue 4"):
        first_report(mutant, system, pos, model=tiny_persystem_model, device="cpu")
    # a C-alpha model needs standard residue names, or sequence=
    beads = app.Topology()
    chain = beads.addChain("A")
    for i in range(20):
        beads.addAtom("B", app.element.carbon, beads.addResidue("BEA", chain, str(i + 1)))
    with pytest.raises(ValueError, match="sequence="):
        first_report(beads, system, pos, model=tiny_ca_backmapper)
    first_report(beads, system, pos, model=tiny_ca_backmapper, sequence=trpcage.sequence)  # works with it
    assert len(list(tmp_path.glob("*.dcd"))) == 1


def test_unclosed_reporter_is_finalised_by_del(tmp_path, trpcage_go, tiny_ca_backmapper):
    import gc

    sim = _simulation(*trpcage_go)
    rep = BackmapReporter(tmp_path / "d.pdb", 5, model=tiny_ca_backmapper, batchSize=4, asynchronous=True)
    sim.reporters.append(rep)
    sim.step(10)  # two frames wait in the batch buffer
    sim.reporters.clear()
    del rep
    gc.collect()
    text = (tmp_path / "d.pdb").read_text()
    assert text.count("MODEL ") == 2 and text.rstrip().endswith("END")


def test_close_says_what_it_waits_for(tmp_path, trpcage_go, tiny_ca_backmapper, capsys):
    """Issue 23, item 5: closing with frames still queued prints one line saying so (verbose only)."""
    import threading

    gate = threading.Event()
    for verbose in (True, False):
        gate.clear()
        sim = _simulation(*trpcage_go)
        rep = BackmapReporter(tmp_path / f"q{verbose}.dcd", 10, model=tiny_ca_backmapper, seed=1, batchSize=1,
                              asynchronous=True, queueSize=8, verbose=verbose)
        sim.reporters.append(rep)
        sim.step(10)  # sets the pipeline up
        rep._worker.queue.join()  # its first frame written
        process = rep.pipeline.process
        rep.pipeline.process = lambda *a: (gate.wait(), process(*a))[1]
        sim.step(20)
        threading.Timer(0.5, gate.set).start()
        capsys.readouterr()
        rep.close()
        err = capsys.readouterr().err
        assert _load(tmp_path / f"q{verbose}.dcd").n_frames == 3
        if verbose:
            assert "BackmapReporter: backmapping 2 queued frame(s) before closing" in err
        else:
            assert "queued" not in err
