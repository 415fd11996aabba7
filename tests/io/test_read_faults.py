"""Damaged inputs: empty, garbage, cut short or corrupt files give InputError or a LoadWarning, never a crash
(openmm_backmap.io.validate through load_ensemble)."""

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from openmm_backmap.io import LoadWarning, load_ensemble
from openmm_backmap.structure.errors import InputError

N_FRAMES = 5


@pytest.fixture(scope="module")
def good(tmp_path_factory, tests_data):
    """A 5-frame trpcage DCD (with unit cell) and XTC, their topology, and the frames written (nm)."""
    import mdtraj as md

    d = tmp_path_factory.mktemp("good")
    t = md.load(str(tests_data / "trpcage.pdb"))
    xyz = np.repeat(t.xyz, N_FRAMES, axis=0) + np.arange(N_FRAMES, dtype=np.float32)[:, None, None] * 0.05
    traj = md.Trajectory(xyz, t.topology, unitcell_lengths=np.full((N_FRAMES, 3), 5.0),
                         unitcell_angles=np.full((N_FRAMES, 3), 90.0))
    traj[0].save_pdb(str(d / "top.pdb"))
    traj.save_dcd(str(d / "good.dcd"))
    traj.save_xtc(str(d / "good.xtc"))
    return {"dir": d, "top": d / "top.pdb", "dcd": (d / "good.dcd").read_bytes(), "xtc": (d / "good.xtc").read_bytes(),
            "n_atoms": t.n_atoms}


def _dcd_layout(data):
    """(byte offset of frame 0, bytes per frame) of a little-endian DCD with a unit cell record."""
    title_bytes = struct.unpack("<i", data[92:96])[0]
    start = 92 + 4 + title_bytes + 4 + 12
    return start, (len(data) - start) // N_FRAMES


@pytest.mark.parametrize("text", ["", "this is not a structure\n\x00\x01garbage\n"])
def test_empty_or_garbage_pdb_names_the_file(tmp_path, text):
    path = tmp_path / "broken.pdb"
    path.write_text(text)
    with pytest.raises(InputError, match=r"broken\.pdb: .*not a PDB file"):
        load_ensemble(path)


def test_good_files_load_every_frame(good, tmp_path):
    for ext in ("dcd", "xtc"):
        path = tmp_path / f"ok.{ext}"
        path.write_bytes(good[ext])
        ens = load_ensemble(path, topology=good["top"])
        assert ens.n_frames == N_FRAMES


@pytest.mark.parametrize("frames_kept, extra_bytes", [(3, 100), (4, 1), (1, 0)])
def test_cut_dcd_warns_with_the_complete_frame_count_and_keeps_frame_order(good, tmp_path, frames_kept, extra_bytes):
    start, frame_bytes = _dcd_layout(good["dcd"])
    path = tmp_path / "cut.dcd"
    path.write_bytes(good["dcd"][:start + frames_kept * frame_bytes + extra_bytes])
    full = load_ensemble(_write(tmp_path, "full.dcd", good["dcd"]), topology=good["top"])
    with pytest.warns(LoadWarning, match=rf"cut\.dcd: .*promises {N_FRAMES} frames, it holds {frames_kept} complete"):
        ens = load_ensemble(path, topology=good["top"])
    assert ens.n_frames == frames_kept
    np.testing.assert_allclose(ens.xyz, full.xyz[:frames_kept], atol=1e-5)


def _write(directory, name, data):
    path = directory / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("size", [0, 50, 200])
def test_dcd_without_a_complete_frame_or_header_raises(good, tmp_path, size):
    path = _write(tmp_path, "short.dcd", good["dcd"][:size])
    with pytest.raises(InputError, match=r"short\.dcd: "):
        load_ensemble(path, topology=good["top"])


@pytest.mark.parametrize("record", [0, 2])  # the unit cell record's marker, the y record's marker
def test_dcd_frame_with_broken_record_markers_is_named_not_dropped(good, tmp_path, record):
    start, _ = _dcd_layout(good["dcd"])
    data = bytearray(good["dcd"])
    frame_bytes = (len(data) - start) // N_FRAMES
    offsets = [0, 56, 56 + 8 + 4 * good["n_atoms"]]
    at = start + 2 * frame_bytes + offsets[record]
    data[at:at + 4] = b"\xff\xff\xff\xff"
    path = _write(tmp_path, "corrupt.dcd", bytes(data))
    with pytest.raises(InputError, match=r"corrupt\.dcd: DCD frame 2 is corrupt.*the 2 frames before it"):
        load_ensemble(path, topology=good["top"])


_XTC_CASES = {
    # name: (byte offset inside frame 2 or None for a cut, bytes written there)
    "magic": (0, struct.pack(">i", 0)),
    "natoms": (4, struct.pack(">i", 10 ** 8)),
    "lsize": (52, struct.pack(">i", 7)),
    "smallidx_negative": (84, struct.pack(">i", -5_000_000)),  # segfaults mdtraj's decompressor unchecked
    "precision": (56, struct.pack(">f", -1.0)),
    "block_size": (88, struct.pack(">i", 2 ** 31 - 1)),
    "cut_in_header": (None, 20),
    "cut_in_block": (None, 300),
}


def test_corrupt_xtc_raises_input_error_naming_the_frame(good, tmp_path):
    offset = 0  # of frame 2: 92 header bytes and the compressed block, padded to 4 bytes, per frame
    for _ in range(2):
        offset += 92 + (struct.unpack(">i", good["xtc"][offset + 88:offset + 92])[0] + 3) // 4 * 4
    assert struct.unpack(">i", good["xtc"][offset:offset + 4])[0] == 1995
    paths = {}
    for name, (at, patch) in _XTC_CASES.items():
        if at is None:
            data = good["xtc"][:offset + patch]
        else:
            data = good["xtc"][:offset + at] + patch + good["xtc"][offset + at + len(patch):]
        paths[name] = str(_write(tmp_path, f"{name}.xtc", data))
    paths["empty"] = str(_write(tmp_path, "empty.xtc", b""))
    # a subprocess, so that a reader crash fails this test instead of ending the test run
    script = (
        "import json, sys\n"
        "from openmm_backmap.io import load_ensemble\n"
        "out = {}\n"
        "for name, path in json.loads(sys.argv[1]).items():\n"
        "    try:\n"
        "        out[name] = 'loaded %d' % load_ensemble(path, topology=sys.argv[2]).n_frames\n"
        "    except Exception as err:\n"
        "        out[name] = type(err).__name__ + ': ' + str(err)\n"
        "print(json.dumps(out))\n")
    run = subprocess.run([sys.executable, "-c", script, json.dumps(paths), str(good["top"])], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    for name in _XTC_CASES:
        assert result[name].startswith(f"InputError: {paths[name]}: XTC frame 2 is "), (name, result[name])
        assert "the 2 frames before it are readable" in result[name]
    assert result["empty"].startswith(f"InputError: {paths['empty']}: the file is empty")


def test_convert_refuses_a_garbage_pdb(tmp_path, capsys):
    """Through the command line: one line naming the file, exit 2, no output written."""
    from openmm_backmap.cli import main

    bad = tmp_path / "garbage.pdb"
    bad.write_text("this is not a PDB file\n" * 5)
    out = tmp_path / "out.pdb"
    assert main(["convert", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "garbage.pdb" in err and err.count("\n") == 1
    assert not out.exists()
