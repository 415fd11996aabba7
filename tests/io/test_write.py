"""TrajectoryWriter: incremental DCD/XTC/PDB/HDF5 output, append and overwrite checks (openmm_backmap.io)."""

import struct

import mdtraj as md
import numpy as np
import pytest

from openmm_backmap.io import TrajectoryWriter, load_ensemble


@pytest.fixture(scope="module")
def frames(trpcage):
    x = trpcage.xyz[0].astype(np.float64)
    return np.stack([x, x + 0.1, x - 0.05])


def _read(path, writer):
    return md.load(path, top=writer.topology_path) if writer.topology_path and not path.endswith(".h5") \
        else md.load(path)


# mdtraj's own tolerance per format: XTC stores 1e-3 nm, PDB 1e-3 Å, DCD float32
TOLERANCE = {"dcd": 1e-5, "xtc": 1e-3, "pdb": 1e-4, "h5": 1e-5}


@pytest.mark.parametrize("fmt", ["dcd", "xtc", "pdb", "h5"])
def test_readable_after_every_write_and_units(tmp_path, trpcage, frames, fmt):
    if fmt == "h5":
        pytest.importorskip("tables")
    path = str(tmp_path / f"out.{fmt}")
    w = TrajectoryWriter(path, trpcage.topology())
    w.write(frames[:2], time_ps=[2.0, 4.0], step=[200, 400])
    t = _read(path, w)  # before close: every write is flushed
    assert t.n_frames == 2
    np.testing.assert_allclose(t.xyz, frames[:2], atol=TOLERANCE[fmt])  # nm in, nm out (Å inside DCD/PDB)
    w.write(frames[2], time_ps=6.0, step=600)
    assert _read(path, w).n_frames == 3
    w.close()
    t = _read(path, w)
    assert t.n_frames == 3 and w.n_frames == 3
    if fmt in ("xtc", "h5"):
        np.testing.assert_allclose(t.time, [2.0, 4.0, 6.0])
    ens = load_ensemble(path, topology=w.topology_path)
    assert ens.sequence == trpcage.sequence and ens.n_frames == 3


def test_time_and_step_in_pdb_and_dcd_header(tmp_path, trpcage, frames):
    top = trpcage.topology()
    with TrajectoryWriter(tmp_path / "t.pdb", top) as w:
        w.write(frames[:2], time_ps=[2.0, 4.0], step=[200, 400])
    titles = [ln for ln in open(tmp_path / "t.pdb") if ln.startswith("TITLE")]
    assert titles == ["TITLE     openmm-backmap t= 2.00000 step= 200\n",
                      "TITLE     openmm-backmap t= 4.00000 step= 400\n"]
    with TrajectoryWriter(tmp_path / "t.dcd", top) as w:
        w.write(frames, time_ps=[2.0, 4.0, 6.0], step=[200, 400, 600])
    nset, istart, nsavc, nstep = struct.unpack("<4i", (tmp_path / "t.dcd").read_bytes()[8:24])
    delta = struct.unpack("<f", (tmp_path / "t.dcd").read_bytes()[44:48])[0]
    assert (nset, istart, nsavc, nstep) == (3, 200, 200, 600)
    assert delta * 0.04888821 == pytest.approx(0.01, rel=1e-4)  # ps per step, AKMA units in the header


def test_unknown_extension_lists_supported(tmp_path, trpcage):
    with pytest.raises(ValueError, match=r"\.dcd, \.xtc, \.pdb, \.h5"):
        TrajectoryWriter(tmp_path / "out.mol2", trpcage.topology())


def test_refuses_overwrite_without_force(tmp_path, trpcage, frames):
    path = tmp_path / "out.xtc"
    with TrajectoryWriter(path, trpcage.topology()) as w:
        w.write(frames)
    with pytest.raises(FileExistsError, match="--force|force=True"):
        TrajectoryWriter(path, trpcage.topology())
    with TrajectoryWriter(path, trpcage.topology(), force=True) as w:
        w.write(frames[:1])
    assert md.load(str(path), top=str(tmp_path / "out.pdb")).n_frames == 1


@pytest.mark.parametrize("fmt", ["dcd", "xtc", "pdb"])
def test_append_adds_frames_and_checks_atoms(tmp_path, trpcage, frames, fmt):
    path = str(tmp_path / f"a.{fmt}")
    top = trpcage.topology()
    with TrajectoryWriter(path, top) as w:
        w.write(frames[:2], time_ps=[1.0, 2.0], step=[10, 20])
    with TrajectoryWriter(path, top, append=True) as w:
        assert w.n_frames == 2
        w.write(frames[2], time_ps=3.0, step=30)
        assert _read(path, w).n_frames == 3  # readable mid-append too
    t = _read(path, w)
    assert t.n_frames == 3
    np.testing.assert_allclose(t.xyz[2], frames[2], atol=TOLERANCE[fmt])
    if fmt == "xtc":
        np.testing.assert_allclose(t.time, [1.0, 2.0, 3.0])
    other = top.subset(range(top.n_atoms - 10))
    with pytest.raises(ValueError, match=f"{top.n_atoms} atoms"):
        TrajectoryWriter(path, other, append=True)


def test_append_checks_format(tmp_path, trpcage):
    bad = tmp_path / "x.dcd"
    bad.write_text("REMARK this is not a DCD file\n" * 10)
    with pytest.raises(ValueError, match="not a DCD"):
        TrajectoryWriter(bad, trpcage.topology(), append=True)
    single = tmp_path / "single.pdb"
    trpcage.to_mdtraj().save_pdb(str(single))
    with pytest.raises(ValueError, match="MODEL"):
        TrajectoryWriter(single, trpcage.topology(), append=True)


def test_topology_file_never_clobbers_a_foreign_pdb(tmp_path, trpcage, frames):
    foreign = tmp_path / "out.pdb"
    foreign.write_text("HEADER    the user's own structure\n")
    with TrajectoryWriter(tmp_path / "out.dcd", trpcage.topology()) as w:
        w.write(frames)
    assert foreign.read_text() == "HEADER    the user's own structure\n"
    assert w.topology_path == str(tmp_path / "out_topology.pdb")
    np.testing.assert_allclose(md.load(w.topology_path).xyz[0], frames[0], atol=1e-4)  # a viewable first frame
    assert md.load(str(tmp_path / "out.dcd"), top=w.topology_path).n_frames == 3


def test_bad_frames_and_openmm_topology(tmp_path, trpcage_go, trpcage):
    top, _, pos = trpcage_go  # an openmm.app.Topology works as well
    with TrajectoryWriter(tmp_path / "ca.pdb", top) as w:
        w.write(pos)
        with pytest.raises(ValueError, match=r"\(frames, 20, 3\)"):
            w.write(np.zeros((1, 21, 3)))
        with pytest.raises(ValueError, match="NaN"):
            w.write(np.full((20, 3), np.nan))
    assert md.load(str(tmp_path / "ca.pdb")).n_frames == 1
    with pytest.raises(ValueError, match="closed"):
        w.write(pos)


@pytest.mark.parametrize("fmt", ["dcd", "xtc", "pdb"])
def test_append_checks_residue_and_atom_names_not_only_the_count(tmp_path, trpcage, frames, fmt):
    from openmm_backmap.structure import build_topology
    from openmm_backmap.structure.errors import InputError

    path = str(tmp_path / f"a.{fmt}")
    with TrajectoryWriter(path, trpcage.topology()) as w:
        w.write(frames[:1])
    reversed_top = build_topology(trpcage.sequence[::-1])  # same atoms, other order
    assert reversed_top.n_atoms == trpcage.topology().n_atoms
    with pytest.raises(InputError, match="other atoms than the new frames"):
        TrajectoryWriter(path, reversed_top, append=True)
    assert _read(path, w).n_frames == 1  # the refused append left the file alone


def test_dcd_header_from_frames_written_one_at_a_time(tmp_path, trpcage, frames):
    path = tmp_path / "one.dcd"
    with TrajectoryWriter(path, trpcage.topology()) as w:
        for i, frame in enumerate(frames):
            w.write(frame, time_ps=2.0 * (i + 1), step=200 * (i + 1))
            t = md.load(str(path), top=w.topology_path)  # readable after every single-frame write
            assert t.n_frames == i + 1
    np.testing.assert_allclose(t.xyz, frames, atol=TOLERANCE["dcd"])
    nset, istart, nsavc, nstep = struct.unpack("<4i", path.read_bytes()[8:24])
    assert (nset, istart, nsavc, nstep) == (3, 200, 200, 600)


def test_xtc_keeps_every_frames_own_time_and_step(tmp_path, trpcage, frames):
    path = str(tmp_path / "irregular.xtc")
    with TrajectoryWriter(path, trpcage.topology()) as w:
        w.write(frames, time_ps=[10.0, 10.0, 35.5], step=[1000, 1000, 3550])  # two samples of one frame, a gap
    from mdtraj.formats import XTCTrajectoryFile

    with XTCTrajectoryFile(path) as f:
        _, time, step, _ = f.read()
    np.testing.assert_allclose(time, [10.0, 10.0, 35.5])
    assert step.tolist() == [1000, 1000, 3550]
