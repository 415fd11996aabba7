"""Centre-of-mass and Martini input: the shipped model of the beads' scheme is picked, Martini beads are read residue
by residue (openmm_backmap.run.cg_input.prepare_cg_input, martini_beads), convert and the reporter use them."""

import shutil
import subprocess

import mdtraj as md
import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
app = pytest.importorskip("openmm.app")

from openmm_backmap.cli import main  # noqa: E402
from openmm_backmap.mapping import coarsen, martini_mapping  # noqa: E402
from openmm_backmap.model import shipped_model_path  # noqa: E402
from openmm_backmap.run import (BackmapReporter, cg_particle_info, coarsen_files, convert_trajectory,  # noqa: E402
                                martini_beads, prepare_cg_input)
from openmm_backmap.structure import InputError, LoadWarning, MissingFileError  # noqa: E402

QUIET = dict(device="cpu", seed=0)


@pytest.fixture(scope="module")
def martini_trp(trpcage):
    """Trp-cage's Martini 3 beads (the package's mapping): (rows (chain, residue name, number, bead), xyz (46, 3))."""
    coords, top, _ = coarsen(trpcage, "martini3")["martini3"]
    rows = [(0, a.residue.name, a.residue.resSeq, a.name) for a in top.atoms]
    return rows, coords[0].astype(np.float64)


def _topology(rows):
    """mdtraj Topology without bonds: one atom per row (chain, residue name, number, atom name); consecutive rows of
    one (chain, number, name) share a residue."""
    top = md.Topology()
    chains, res, last = {}, None, None
    for chain, name, number, atom in rows:
        if chain not in chains:
            chains[chain] = top.add_chain()
        if (chain, name, number) != last:
            res, last = top.add_residue(name, chains[chain], resSeq=number), (chain, name, number)
        top.add_atom(atom, md.element.carbon, res)
    return top


def _beads(rows, xyz, **kw):
    return martini_beads(cg_particle_info(_topology(rows)), "martini3", xyz, **kw)


# ---------------------------------------------------------------------------------------------- Martini beads


def test_martini_beads_in_model_order_and_extras_left_out(trpcage, martini_trp):
    rows, xyz = martini_trp
    plain = _beads(rows, xyz)
    assert plain["sequence"] == list(trpcage.sequence)
    assert [rows[k][3] for k in plain["order"]] == martini_mapping(trpcage.sequence).bead_names
    assert plain["segment_start"].tolist() == [True] + [False] * 19
    # Trp's beads written backwards (SC5 ... BB), Go sites (CA on every BB, appended as martinize2 -go does), water
    # and ions: the same beads come out, in the model's order
    trp = [k for k, r in enumerate(rows) if r[1] == "TRP"]
    perm = list(range(trp[0])) + trp[::-1] + list(range(trp[-1] + 1, len(rows)))
    messy = [rows[k] for k in perm]
    messy += [(0, r[1], r[2], "CA") for r in rows if r[3] == "BB"]
    messy += [(1, "W", 100 + i, "W") for i in range(3)] + [(1, "ION", 200, "NA"), (1, "CA", 201, "CA")]
    n_extra = len(messy) - len(rows)
    extra_xyz = xyz[:1] + np.arange(1, n_extra + 1)[:, None] * 0.5
    with pytest.warns(LoadWarning, match="left out 20 Go-model virtual sites") as caught:
        got = _beads(messy, np.vstack([xyz[perm], extra_xyz]))
    assert len(caught) == 1  # water and ions (calcium is also named CA) go silently
    np.testing.assert_array_equal(np.asarray(perm)[got["order"]], plain["order"])
    assert got["sequence"] == plain["sequence"] and got["segment_start"].tolist() == plain["segment_start"].tolist()


def test_dummy_charge_beads_are_left_out_with_a_warning(martini_trp):
    rows, xyz = martini_trp
    with_dummies = rows + [(0, "ASP", 9, "SCD")]
    with_dummies.sort(key=lambda r: r[2])  # into its residue
    k = [i for i, r in enumerate(with_dummies) if r[3] == "SCD"][0]
    x = np.insert(xyz, k, xyz[k - 1], axis=0)
    with pytest.warns(LoadWarning, match="left out 1 dummy charge beads"):
        got = _beads(with_dummies, x)
    assert k not in got["order"] and len(got["order"]) == len(rows)


@pytest.mark.parametrize("edit, message", [
    (lambda rows: [r for r in rows if not (r[1] == "TRP" and r[3] == "SC3")],
     r"residue TRP 6 \(chain A\): bead SC3 is missing \(martini3's TRP has BB, SC1, SC2, SC3, SC4, SC5\)"),
    (lambda rows: [r if not (r[1] == "LEU" and r[3] == "SC1") else r[:3] + ("SC2",) for r in rows],
     r"residue LEU 2 \(chain A\): bead SC2 is not one of martini3's LEU beads \(BB, SC1\)"),
    (lambda rows: [r if not (r[2] == 9) else (0, "XYZ", 9, r[3]) for r in rows],
     r"residue XYZ 9 \(chain A\) has Martini beads, but XYZ is neither a standard amino acid"),
])
def test_bad_martini_residues_are_one_line_errors(martini_trp, edit, message):
    rows, xyz = martini_trp
    bad = edit(rows)
    with pytest.raises(InputError, match=message):
        _beads(bad, xyz[:len(bad)], where="cg.pdb: ")


def test_chain_breaks_follow_the_bb_beads(martini_trp):
    rows, xyz = martini_trp
    res = np.array([r[2] for r in rows])
    gap = xyz.copy()
    gap[res >= 11] += 0.6  # BB 10 and 11 now far apart
    assert np.flatnonzero(_beads(rows, gap)["segment_start"]).tolist() == [0, 10]
    wrapped = xyz.copy()
    box = np.eye(3) * 5.0
    wrapped[res >= 11] -= box[0]  # only split by the periodic boundary
    assert np.flatnonzero(_beads(rows, wrapped)["segment_start"]).tolist() == [0, 10]
    assert _beads(rows, wrapped, box_vectors=box)["segment_start"].sum() == 1
    # a topology with bonds: consecutive BB without a bond start a segment, whatever their distance
    top = _topology(rows)
    bb = [next(a for a in r.atoms if a.name == "BB") for r in top.residues]
    for r, b in zip(top.residues, bb):
        for a in r.atoms:
            if a is not b:
                top.add_bond(b, a)
    for a, b in zip(bb[:-1], bb[1:]):
        if b.residue.resSeq != 15:
            top.add_bond(a, b)
    got = martini_beads(cg_particle_info(top), "martini3", xyz)
    assert np.flatnonzero(got["segment_start"]).tolist() == [0, 14]
    assert {tuple(sorted(b)) for b in got["bonds"].tolist()} >= {(0, 1), (0, 2)}  # SC1-BB of Asn, BB-BB


# ------------------------------------------------------------------------------------------- the shipped model


def test_the_shipped_model_of_the_scheme_is_picked(tmp_path, trpcage, shipped, martini_trp):
    rows, xyz = martini_trp
    cg = prepare_cg_input(_topology(rows), xyz, device="cpu", where="cg.pdb: ")
    assert cg.scheme == "martini3" and cg.model.path == str(shipped / "martini3.pt")
    assert cg.note.startswith("cg.pdb: Martini 3 beads (Martini bead names") and "martini3.pt" in cg.note
    assert cg.sequence == list(trpcage.sequence) and len(cg.particles) == 46
    for level, name in (("ca", "ca2aa.pt"), ("com", "com2aa.pt")):
        coords, top, _ = coarsen(trpcage, level)[level]
        cg = prepare_cg_input(top, coords[0], device="cpu")
        assert cg.scheme == level and cg.model.path == str(shipped / name) and name in cg.note
    coords, top, _ = coarsen(trpcage, "com")["com"]
    cg = prepare_cg_input(top, coords[0], scheme="ca", device="cpu")  # the user's word wins
    assert cg.model.path == str(shipped / "ca2aa.pt") and "scheme='ca' given" in cg.note
    coords, top, _ = coarsen(trpcage, "martini2")["martini2"]
    with pytest.raises(InputError, match=r"^x: the CG particles are Martini 2 beads \(.*\): no shipped model takes "
                                         r"martini2 beads \(shipped: ca, com, martini3\); pass a model"):
        prepare_cg_input(top, coords[0], device="cpu", where="x: ")


def test_a_missing_shipped_model_is_a_missing_file(tmp_path, monkeypatch):
    import openmm_backmap.model.backmapping as backmapping

    monkeypatch.setattr(backmapping, "_DATA_FOLDER", tmp_path)
    with pytest.raises(MissingFileError, match=r"the shipped martini3 model \(martini3.pt\) is missing.*model=FILE"):
        shipped_model_path("martini3")
    with pytest.raises(InputError, match="unknown bead scheme 'cg'"):
        shipped_model_path("cg")


def test_convert_picks_the_model_and_says_so(tmp_path, tests_data, shipped, capsys):
    out = tmp_path / "trp"
    beads = coarsen_files(tests_data / "trpcage.pdb", levels="com,martini2", out_prefix=str(out), verbose=False)
    assert main(["convert", beads["com"]["pdb"], "-o", str(tmp_path / "com_aa.pdb"), "--device", "cpu",
                 "--seed", "0"]) in (0, None)
    err = capsys.readouterr().err
    assert "residue centre-of-mass beads" in err and "shipped model com2aa.pt" in err
    assert md.load(tmp_path / "com_aa.pdb").n_residues == 20
    assert main(["convert", beads["martini2"]["pdb"], "-o", str(tmp_path / "m2.pdb"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no shipped model takes martini2 beads" in err[0] and "--model" in err[0]
    assert not (tmp_path / "m2.pdb").exists()


def test_convert_hands_the_beads_to_the_model_in_its_order(tmp_path, tests_data, shipped):
    out = coarsen_files(tests_data / "trpcage.pdb", levels="martini3", out_prefix=str(tmp_path / "trp"),
                        verbose=False)["martini3"]["pdb"]
    lines = open(out).read().splitlines(keepends=True)
    trp = [i for i, ln in enumerate(lines) if ln.startswith("ATOM") and ln[17:20] == "TRP"]
    shuffled = lines[:trp[0]] + [lines[i] for i in trp[::-1]] + lines[trp[-1] + 1:]  # SC5 ... BB
    (tmp_path / "shuffled.pdb").write_text("".join(shuffled))
    for name in ("trp_martini3.pdb", "shuffled.pdb"):
        convert_trajectory(tmp_path / name, tmp_path / f"aa_{name}", deterministic=True, progress=False, **QUIET)
    a, b = (md.load(str(tmp_path / f"aa_{name}")) for name in ("trp_martini3.pdb", "shuffled.pdb"))
    np.testing.assert_allclose(a.xyz, b.xyz, atol=1e-4)


# ------------------------------------------------------------------------------ martinize2 output end to end


@pytest.fixture(scope="module")
def martinize(tmp_path_factory, tests_data):
    """martinize2's Martini 3 model of Trp-cage with Go sites (``-go``), and the same without them: paths of
    ``cg_go.pdb`` and ``cg.pdb`` (its CONECT records kept)."""
    if shutil.which("martinize2") is None:
        pytest.skip("martinize2 (pip install vermouth) is not installed")
    folder = tmp_path_factory.mktemp("martinize2")
    subprocess.run(["martinize2", "-f", str(tests_data / "trpcage.pdb"), "-x", "cg_go.pdb", "-o", "topol.top",
                    "-ff", "martini3001", "-ss", "C", "-go"], cwd=folder, check=True, capture_output=True)
    go = folder / "cg_go.pdb"
    # the Go sites come after the beads (as martinize2 -go appends them), so leaving their lines out keeps the
    # numbers the CONECT records refer to
    lines = [ln for ln in go.read_text().splitlines(keepends=True)
             if not (ln.startswith("ATOM") and ln[12:16].strip() == "CA")]
    (folder / "cg.pdb").write_text("".join(lines))
    return {"go": go, "plain": folder / "cg.pdb"}


def _jittered_xtc(pdb, path, frames=3):
    cg = md.load(str(pdb))
    rng = np.random.default_rng(0)
    xyz = cg.xyz[0] + rng.normal(scale=0.01, size=(frames, cg.n_atoms, 3)).astype(np.float32)
    md.Trajectory(xyz, cg.topology, time=np.arange(frames) * 10.0).save_xtc(str(path))
    return path


def _assert_trpcage(path, trpcage, frames):
    aa = md.load(str(path))
    assert aa.n_frames == frames and aa.n_atoms == trpcage.layout.n_atoms
    assert [r.name for r in aa.topology.residues] == list(trpcage.sequence)
    assert np.isfinite(aa.xyz).all()


def test_convert_reads_a_gromacs_martini_trajectory(tmp_path, trpcage, martinize, shipped, capsys):
    xtc = _jittered_xtc(martinize["plain"], tmp_path / "cg.xtc")
    assert main(["convert", str(xtc), "-t", str(martinize["plain"]), "-o", str(tmp_path / "aa.pdb"), "--device",
                 "cpu", "--seed", "0"]) in (0, None)
    err = capsys.readouterr().err
    assert "Martini 3 beads" in err and "shipped model martini3.pt" in err
    _assert_trpcage(tmp_path / "aa.pdb", trpcage, 3)
    # the .gro GROMACS writes (no chains, no bonds: breaks from distances), and Go sites in the topology
    go = md.load(str(martinize["go"]))
    go.save_gro(str(tmp_path / "cg.gro"))
    xtc_go = _jittered_xtc(martinize["go"], tmp_path / "cg_go.xtc")
    with pytest.warns(LoadWarning, match="left out 20 Go-model virtual sites"):
        summary = convert_trajectory(xtc_go, tmp_path / "aa_gro.xtc", topology=tmp_path / "cg.gro", progress=False,
                                     **QUIET)
    assert summary["frames_written"] == 3
    aa = md.load(str(tmp_path / "aa_gro.xtc"), top=str(tmp_path / "aa_gro.pdb"))
    assert aa.n_frames == 3 and aa.n_atoms == trpcage.layout.n_atoms
    with pytest.warns(LoadWarning, match="left out 20 Go-model virtual sites"):  # the .gro alone
        convert_trajectory(tmp_path / "cg.gro", tmp_path / "aa_one.pdb", progress=False, **QUIET)
    _assert_trpcage(tmp_path / "aa_one.pdb", trpcage, 1)


def test_reporter_on_an_openmm_martini_simulation(tmp_path, trpcage, martinize, shipped, capsys):
    from openmm_backmap.cgsystems import elastic_network_model

    pdb = app.PDBFile(str(martinize["plain"]))
    pos = np.array(pdb.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer))
    _, system, _ = elastic_network_model(pos, cutoff=1.0, k=1000.0)
    sim = app.Simulation(pdb.topology, system, openmm.LangevinMiddleIntegrator(300, 1, 0.005),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    with BackmapReporter(tmp_path / "aa.pdb", 5, model=None, **QUIET) as rep:
        sim.reporters.append(rep)
        sim.step(10)
    assert "BackmapReporter: Martini 3 beads" in capsys.readouterr().err
    assert rep.pipeline.model.path == str(shipped / "martini3.pt")
    _assert_trpcage(tmp_path / "aa.pdb", trpcage, 2)
    with BackmapReporter(tmp_path / "b.pdb", 5, model=None, verbose=False, **QUIET) as rep:
        rep.report(sim, sim.context.getState(getPositions=True))
    assert "BackmapReporter" not in capsys.readouterr().err
