"""Chains and breaks of CG input from the best evidence present (openmm_backmap.run.cg_chains), as the reporter and
convert find them on what engines write: bonds only in the System, backbone pairs only as constraints, compact
centre-of-mass beads farther apart than C-alphas."""

import re
import warnings

import mdtraj as md
import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
app = pytest.importorskip("openmm.app")

from openmm_backmap.io import load_ensemble  # noqa: E402
from openmm_backmap.mapping import scheme_mapping  # noqa: E402
from openmm_backmap.run import BackmapPipeline, BackmapReporter, convert_trajectory, prepare_cg_input  # noqa: E402
from openmm_backmap.run.cg_chains import (BreakMonitor, ChainBreakWarning, find_chain_breaks,  # noqa: E402
                                          system_bonds)
from openmm_backmap.structure.constants import SCHEME_BREAK_NM  # noqa: E402

QUIET = dict(device="cpu", seed=0)


@pytest.fixture(scope="module")
def com_beads(tests_data):
    """Centre-of-mass beads of a compact CASP fragment: (sequence, residue numbers, xyz (R, 3) nm)."""
    ens = load_ensemble(tests_data / "t0872_fragment.pdb")
    xyz = scheme_mapping("com", ens.sequence).apply_present(ens.xyz[0], ens.mask[0])
    return list(ens.sequence), list(ens.residue_numbers), xyz


def _bead_topology(sequence, numbers, chains=None, name="CA"):
    """An OpenMM topology of one bead per residue and no bonds, as CALVADOS builds it."""
    top = app.Topology()
    chains = chains or [0] * len(sequence)
    objs = {c: top.addChain(chr(65 + c)) for c in sorted(set(chains))}
    for res, num, c in zip(sequence, numbers, chains):
        top.addAtom(name, app.Element.getBySymbol("C"), top.addResidue(res, objs[c], id=str(num)))
    return top


def _system(n, bonds=(), constraints=()):
    system = openmm.System()
    for _ in range(n):
        system.addParticle(100.0)
    force = openmm.HarmonicBondForce()
    for i, j in bonds:
        force.addBond(int(i), int(j), 0.38, 1000.0)
    system.addForce(force)
    for i, j in constraints:
        system.addConstraint(int(i), int(j), 0.35)
    return system


def test_compact_centre_of_mass_beads_are_one_chain(com_beads):
    seq, num, xyz = com_beads
    d = np.linalg.norm(np.diff(xyz, axis=0), axis=1)
    assert (d > SCHEME_BREAK_NM["ca"]).sum() >= 5  # what the C-alpha limit used to cut
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainBreakWarning)
        b = find_chain_breaks(np.arange(len(seq)), np.zeros(len(seq)), num, None, xyz, "com")
    assert b.n_segments == 1 and b.evidence == "records" and b.summary()["breaks_from_geometry"] == 0


def test_numbering_gaps_and_chains_break_without_a_warning(com_beads):
    seq, num, xyz = com_beads
    n = len(seq)
    gap = list(num[:10]) + [k + 5 for k in num[10:]]  # missing residues by numbering
    chains = [0] * 20 + [1] * (n - 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainBreakWarning)
        b = find_chain_breaks(np.arange(n), chains, gap, None, xyz, "com")
    assert np.flatnonzero(b.segment_start).tolist() == [0, 10, 20] and b.numbered == (10,)
    insertion = list(num[:10]) + [num[9]] + [k - 1 for k in num[11:]]  # 52, 52A: not a break
    assert find_chain_breaks(np.arange(n), [0] * n, insertion, None, xyz, "com").n_segments == 1


def test_a_break_from_distances_alone_is_named_and_counted(com_beads):
    seq, num, xyz = com_beads
    far = xyz.copy()
    far[15:] += 2.0
    labels = [f"{r} {k} (A)" for r, k in zip(seq, num)]
    with pytest.warns(ChainBreakWarning, match=rf"1 chain break\(s\) found from bead distances alone .*"
                                               rf"{re.escape(labels[14])} - {re.escape(labels[15])}"):
        b = find_chain_breaks(np.arange(len(seq)), [0] * len(seq), num, None, far, "com", labels)
    assert b.geometric == (15,) and b.evidence == "geometry" and b.summary()["breaks_from_geometry"] == 1


def test_bonds_decide_where_they_exist_topology_and_system_together(com_beads):
    seq, num, xyz = com_beads
    n = len(seq)
    top_bonds = [(i, i + 1) for i in range(0, n - 1, 2)]  # half the pairs in the topology ...
    constraints = [(i, i + 1) for i in range(1, n - 1, 2) if i != 21]  # ... the rest constraints, one missing
    got = system_bonds(_system(n, constraints=constraints))
    b = find_chain_breaks(np.arange(n), [0] * n, num, np.vstack([top_bonds, got]), xyz + 0.0, "com")
    assert b.evidence == "bonds" and np.flatnonzero(b.segment_start).tolist() == [0, 22]


def test_monitor_reports_a_changed_pattern_and_never_resegments(com_beads):
    seq, num, xyz = com_beads
    b = find_chain_breaks(np.arange(len(seq)), [0] * len(seq), num, None, xyz, "com")
    mon = BreakMonitor(b)
    frames = np.stack([xyz, xyz, xyz])
    frames[1, 30:] += 1.5
    frames[2, 30:] += 1.6
    with pytest.warns(ChainBreakWarning, match=r"frame 7: .*joined at set-up, now farther apart") as caught:
        changed = mon.check(frames, index=[5, 7, 9])
    assert changed.tolist() == [False, True, True] and mon.frames_changed == 2
    assert len([w for w in caught if issubclass(w.category, ChainBreakWarning)]) == 1  # once per pair
    assert b.n_segments == 1


def _calvados_like(seq, num, xyz, chains=1):
    """CALVADOS's layout: centre-of-mass beads named CA, no bond in the Topology, chain bonds in the System."""
    n = len(seq)
    top = _bead_topology(seq * chains, num * chains, [c for c in range(chains) for _ in range(n)])
    bonds = [(c * n + i, c * n + i + 1) for c in range(chains) for i in range(n - 1)]
    pos = np.vstack([xyz + np.array([3.0 * c, 0, 0]) for c in range(chains)])
    return top, _system(n * chains, bonds=bonds), pos


def test_reporter_reads_the_systems_bonds_and_agrees_with_convert(tmp_path, com_beads, shipped):
    seq, num, xyz = com_beads
    top, system, pos = _calvados_like(seq, num, xyz, chains=2)
    sim = app.Simulation(top, system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    rep = BackmapReporter(str(tmp_path / "rep.pdb"), 1, deterministic=True, verbose=False, **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainBreakWarning)
        rep.report(sim, sim.context.getState(getPositions=True))
    rep.close()
    s = rep.summary()
    assert s["break_evidence"] == "bonds" and s["segments"] == 2  # one per chain, none inside
    # the same frame in the engine's own file (OpenMM's PDB writer: chains, no bonds) through convert
    with open(tmp_path / "cg.pdb", "w") as fh:
        app.PDBFile.writeFile(top, pos * 10.0, fh)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainBreakWarning)
        summary = convert_trajectory(tmp_path / "cg.pdb", tmp_path / "conv.pdb", deterministic=True, progress=False,
                                     **QUIET)
    assert summary["break_evidence"] == "records" and summary["segments"] == 2
    a, b = md.load(str(tmp_path / "rep.pdb")), md.load(str(tmp_path / "conv.pdb"))
    assert a.topology.n_chains == b.topology.n_chains == 2 and a.topology.n_atoms == b.topology.n_atoms
    np.testing.assert_allclose(a.xyz, b.xyz, atol=2e-3)  # PDB precision


def test_system_bonds_win_over_a_numbering_jump(com_beads):
    seq, num, xyz = com_beads
    jump = list(num[:10]) + [k + 3 for k in num[10:]]
    top, system, pos = _calvados_like(seq, jump, xyz)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cg = prepare_cg_input(top, pos, model=None, scheme="com", device="cpu", system=system)
        no_system = prepare_cg_input(top, pos, model=None, scheme="com", device="cpu")
    assert cg.chain_breaks.evidence == "bonds" and cg.chain_breaks.n_segments == 1
    assert no_system.chain_breaks.evidence == "records" and no_system.chain_breaks.numbered == (10,)


def test_pipeline_rate_counts_backmapping_time_not_idle_time(tmp_path, trpcage, tiny_ca_backmapper):
    import time

    from openmm_backmap.run import BackmapOptions

    pipe = BackmapPipeline(tmp_path / "aa.dcd", 20, BackmapOptions(model=tiny_ca_backmapper, seed=0),
                           sequence=list(trpcage.sequence))
    pipe.process(trpcage.ca_xyz[[0, 0]])
    time.sleep(1.0)  # the simulation runs between reports
    pipe.process(trpcage.ca_xyz[[0, 0]])
    pipe.close()
    s = pipe.summary()
    assert s["seconds"]["total"] > 1.0 and s["seconds"]["busy"] < s["seconds"]["total"]
    assert s["frames_per_second"] == pytest.approx(4 / s["seconds"]["busy"], rel=1e-3)


def test_a_doubtful_join_of_centre_of_mass_beads_is_reported(com_beads):
    seq, num, xyz = com_beads
    far = xyz.copy()
    step = far[15] - far[14]
    far[15:] += step * (0.92 / np.linalg.norm(step) - 1.0)  # 0.92 nm: under the 0.96 nm limit, over 0.86 nm
    with pytest.warns(ChainBreakWarning, match=r"1 pair\(s\) of consecutive com beads kept joined .*0.92 nm"):
        b = find_chain_breaks(np.arange(len(seq)), [0] * len(seq), None, None, far, "com")
    assert b.n_segments == 1 and b.doubtful == (15,) and b.summary()["doubtful_joins"] == 1
