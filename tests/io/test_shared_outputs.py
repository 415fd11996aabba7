"""Writing next to existing outputs (openmm_backmap.io): the topology PDB that trajectories of one stem share,
appending onto a file whose last frame was cut by a crash, and appending when the topology file is gone.

Rules (docs/reliability.md, "Output files"):

* the topology PDB ``<stem>.pdb`` is written together with its trajectory: with the first frame in place
  (the reporter), or under its partial name and renamed with the trajectory at success (``convert``); a failed
  run never deletes or replaces an existing one;
* a topology that another trajectory of the same stem uses (``r.dcd`` beside a new ``r.xtc``) is kept when it
  describes the same atoms, and is not replaced without ``force`` when it does not;
* appending needs the topology the file was written with, and checks the new atoms against it;
* appending onto a DCD or XTC whose last frame is incomplete cuts that frame off first, with a warning.
"""

import os
import struct

import mdtraj as md
import numpy as np
import pytest

from openmm_backmap.io import TrajectoryWriter
from openmm_backmap.structure import InputError, LoadWarning, OutputExistsError, build_topology


@pytest.fixture(scope="module")
def frames(trpcage):
    x = trpcage.xyz[0].astype(np.float64)
    return np.stack([x, x + 0.1, x - 0.05, x + 0.2, x - 0.15])


@pytest.fixture(scope="module")
def tops(trpcage):
    """Trp-cage and its reversed sequence: the same atom count, other atoms in order."""
    a = build_topology(trpcage.sequence)
    b = build_topology(trpcage.sequence[::-1])
    assert a.n_atoms == b.n_atoms
    return a, b


def _write(path, top, xyz, **kw):
    with TrajectoryWriter(path, top, **kw) as w:
        w.write(xyz)
    return w


def _seq(path):
    return [r.name for r in md.load_topology(str(path)).residues]


def test_a_second_trajectory_of_another_sequence_never_rewrites_the_first_ones_topology(tmp_path, tops, frames,
                                                                                        trpcage):
    a, b = tops
    _write(tmp_path / "r.dcd", a, frames[:2])
    before = (tmp_path / "r.pdb").read_bytes()
    with pytest.raises(OutputExistsError, match=r"r\.pdb is the topology of .*r\.dcd, and the frames for .*r\.xtc "
                                                r"have other atoms"):
        TrajectoryWriter(tmp_path / "r.xtc", b, atomic=True)
    assert (tmp_path / "r.pdb").read_bytes() == before and not (tmp_path / "r.xtc").exists()
    assert _seq(tmp_path / "r.pdb") == trpcage.sequence  # r.dcd still reads as its own sequence
    # the same atoms: the topology serves both trajectories and is left as it was
    _write(tmp_path / "r.xtc", a, frames[2:], atomic=True)
    assert (tmp_path / "r.pdb").read_bytes() == before
    assert md.load(str(tmp_path / "r.xtc"), top=str(tmp_path / "r.pdb")).n_frames == 3
    # force: the user asked for it; the new topology replaces the old one only when the run succeeds
    with pytest.warns(UserWarning, match=r"r\.dcd"):
        _write(tmp_path / "r.xtc", b, frames[:1], atomic=True, force=True)
    assert _seq(tmp_path / "r.pdb") == trpcage.sequence[::-1]


def test_in_place_writer_refuses_the_sibling_topology_too(tmp_path, tops, frames):
    a, b = tops
    _write(tmp_path / "s.xtc", a, frames[:2])
    before = (tmp_path / "s.pdb").read_bytes()
    with pytest.raises(OutputExistsError, match="s.xtc"):
        TrajectoryWriter(tmp_path / "s.dcd", b)  # the reporter's writer
    assert (tmp_path / "s.pdb").read_bytes() == before and not (tmp_path / "s.dcd").exists()


def test_failed_force_run_keeps_the_old_trajectory_and_its_topology(tmp_path, tops, frames):
    a, b = tops
    _write(tmp_path / "k.dcd", a, frames[:3], atomic=True)
    old = {n: (tmp_path / n).read_bytes() for n in ("k.dcd", "k.pdb")}
    with pytest.raises(RuntimeError), TrajectoryWriter(tmp_path / "k.dcd", b, force=True, atomic=True) as w:
        w.write(frames[:2])
        raise RuntimeError("the model failed")
    assert {n: (tmp_path / n).read_bytes() for n in ("k.dcd", "k.pdb")} == old
    assert sorted(os.listdir(tmp_path)) == ["k.dcd", "k.pdb"]
    # and a successful --force run replaces both together
    _write(tmp_path / "k.dcd", b, frames[:2], atomic=True, force=True)
    assert md.load(str(tmp_path / "k.dcd"), top=str(tmp_path / "k.pdb")).n_frames == 2
    assert _seq(tmp_path / "k.pdb") == [r.name for r in b.residues]


def test_failed_run_never_deletes_the_topology_of_a_finished_sibling(tmp_path, tops, frames):
    a, _ = tops
    _write(tmp_path / "s.dcd", a, frames[:3], atomic=True)
    before = (tmp_path / "s.pdb").read_bytes()
    with pytest.raises(RuntimeError), TrajectoryWriter(tmp_path / "s.xtc", a, atomic=True) as w:
        w.write(frames[:2])
        raise RuntimeError("the model failed")
    assert (tmp_path / "s.pdb").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["s.dcd", "s.pdb"]
    assert md.load(str(tmp_path / "s.dcd"), top=str(tmp_path / "s.pdb")).n_frames == 3


def test_the_topology_is_written_with_the_trajectory_not_before(tmp_path, tops, frames):
    a, _ = tops
    w = TrajectoryWriter(tmp_path / "n.dcd", a, atomic=True)
    assert os.listdir(tmp_path) == []  # nothing before the first frame
    w.write(frames[:1])
    # what a hard crash leaves: the partial trajectory and its partial topology, readable together
    assert sorted(os.listdir(tmp_path)) == ["n.partial.dcd", "n.partial.pdb"]
    assert md.load(str(tmp_path / "n.partial.dcd"), top=str(tmp_path / "n.partial.pdb")).n_frames == 1
    w.close()
    assert sorted(os.listdir(tmp_path)) == ["n.dcd", "n.pdb"]
    w = TrajectoryWriter(tmp_path / "e.xtc", a, atomic=True)
    w.close()  # no frame: no file at all (not a 0-byte trajectory)
    w = TrajectoryWriter(tmp_path / "e.dcd", a)
    w.close()
    assert sorted(os.listdir(tmp_path)) == ["n.dcd", "n.pdb"]


@pytest.mark.parametrize("fmt", ["dcd", "xtc"])
def test_append_without_its_topology_is_refused(tmp_path, tops, frames, fmt):
    a, b = tops
    path = tmp_path / f"t.{fmt}"
    _write(path, a, frames[:2])
    kept = (tmp_path / "t.pdb").read_bytes()
    os.remove(tmp_path / "t.pdb")
    size = path.stat().st_size
    for top in (b, a):  # without the topology nothing can tell the reversed sequence from the right one
        with pytest.raises(InputError, match=r"its topology file .*t\.pdb is missing"):
            TrajectoryWriter(path, top, append=True)
    assert path.stat().st_size == size and not (tmp_path / "t.pdb").exists()
    (tmp_path / "t.pdb").write_bytes(kept)  # put back: the sequence is checked
    with pytest.raises(InputError, match="other atoms than the new frames"):
        TrajectoryWriter(path, b, append=True)
    _write(path, a, frames[2:3], append=True)
    assert md.load(str(path), top=str(tmp_path / "t.pdb")).n_frames == 3


def _tear(path, n_bytes):
    data = path.read_bytes()
    path.write_bytes(data[:-n_bytes])


@pytest.mark.parametrize("fmt", ["dcd", "xtc"])
@pytest.mark.parametrize("cut", ["inside", "header-only"])
def test_append_onto_a_torn_last_frame_cuts_it_off_first(tmp_path, tops, frames, fmt, cut):
    a, _ = tops
    path = tmp_path / f"c.{fmt}"
    _write(path, a, frames[:3])
    whole = path.read_bytes()
    _write(tmp_path / "two" / f"two.{fmt}", a, frames[:2])
    one = len(whole) - (tmp_path / "two" / f"two.{fmt}").stat().st_size  # bytes of the last frame
    if cut == "header-only":
        if fmt == "xtc":
            pytest.skip("an XTC frame has no header separate from its data")
        # DCDFile counts the frame in the header before it writes its data: a crash in between
        path.write_bytes(whole[:len(whole) - one])
        with open(path, "r+b") as fh:
            fh.seek(8)
            fh.write(struct.pack("<i", 3))
    else:
        _tear(path, one // 2)  # a crash in the middle of the last frame
    with pytest.warns(LoadWarning, match=r"last frame .*incomplete.*cut off"):
        w = TrajectoryWriter(path, a, append=True)
    assert w.n_frames == 2
    w.write(frames[3:5])
    w.close()
    t = md.load(str(path), top=str(tmp_path / "c.pdb"))
    assert t.n_frames == 4
    np.testing.assert_allclose(t.xyz, frames[[0, 1, 3, 4]], atol=2e-3)  # the appended frames read back


def test_append_refuses_a_dcd_whose_size_no_crash_explains(tmp_path, tops, frames):
    a, _ = tops
    path = tmp_path / "x.dcd"
    _write(path, a, frames[:3])
    with open(path, "r+b") as fh:
        fh.seek(8)
        fh.write(struct.pack("<i", 7))  # the header claims 7 frames, the file holds 3
    size = path.stat().st_size
    with pytest.raises(InputError, match="header says 7 frames"):
        TrajectoryWriter(path, a, append=True)
    assert path.stat().st_size == size
