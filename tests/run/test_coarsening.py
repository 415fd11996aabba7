"""The coarsen verb: files per level, --force, the CLI and a model's own hierarchy."""

import json
import types

import numpy as np
import pytest

from openmm_backmap.mapping import Hierarchy, Mapping, ca_mapping, partition_mapping
from openmm_backmap.run.coarsening import coarsen_files


def test_coarsen_files_trpcage(tmp_path, tests_data, capsys):
    import mdtraj as md

    prefix = tmp_path / "out" / "trp"
    res = coarsen_files(tests_data / "trpcage.pdb", levels="ca,ucg:4", out_prefix=prefix)
    printed = capsys.readouterr().out
    assert "ucg4: 4 beads, rho 5.00" in printed and "ca: 20 beads" in printed
    for level, n in (("ca", 20), ("ucg4", 4)):
        files = res[level]
        traj = md.load(files["dcd"], top=files["pdb"])
        assert traj.n_atoms == n and traj.n_frames == 1
        level_file = json.loads(open(files["mapping"]).read())
        mapping = Mapping.from_json(files["mapping"])
        h = Hierarchy.from_json(files["mapping"])
        assert mapping.n_fine == h.sizes[0] and mapping.n_beads == n and level_file["level"] == level
        assert h.composed(level) == mapping
    ens_ca = md.load(str(prefix) + "_ca.pdb")
    from openmm_backmap.io import load_ensemble

    ref = load_ensemble(tests_data / "trpcage.pdb")
    np.testing.assert_allclose(ens_ca.xyz[0], ref.ca_xyz[0], atol=2e-4)
    with pytest.raises(FileExistsError, match="force=True"):  # the Python argument; the CLI says --force
        coarsen_files(tests_data / "trpcage.pdb", levels="ca,ucg:4", out_prefix=prefix)
    res2 = coarsen_files(tests_data / "trpcage.pdb", levels="ca,ucg:4", out_prefix=prefix, force=True)
    assert res2["ucg4"]["n_beads"] == 4 and res2["ucg4"]["rho"] == pytest.approx(5.0)


def test_cli_coarsen(tmp_path, tests_data, capsys):
    from openmm_backmap.cli import main

    argv = ["coarsen", str(tests_data / "trpcage.pdb"), "--levels", "ca,ucg:5", "-o", str(tmp_path / "c")]
    assert main(argv) == 0
    assert (tmp_path / "c_ucg5.dcd").exists() and (tmp_path / "c_ca_mapping.json").exists()
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0
    assert main(["coarsen", str(tests_data / "trpcage.pdb"), "--levels", "ucg:50", "-o", str(tmp_path / "d")]) == 2


def _fake_models(monkeypatch, hierarchy):
    """Make load_model return an object with ``hierarchy`` (patched where the run layer may look it up)."""
    import openmm_backmap.model as model_layer
    import openmm_backmap.model.backmapping as backmapping

    calls = []

    def load_model(path, device=None):
        calls.append((str(path), device))
        return types.SimpleNamespace(hierarchy=hierarchy)

    monkeypatch.setattr(backmapping, "load_model", load_model)
    monkeypatch.setattr(model_layer, "load_model", load_model, raising=False)
    return calls


def test_coarsen_files_with_model_hierarchy(tmp_path, tests_data, trpcage, monkeypatch):
    hierarchy = Hierarchy([ca_mapping(trpcage.sequence), partition_mapping(trpcage.ca_xyz, 3, name="beads")])
    calls = _fake_models(monkeypatch, hierarchy)
    res = coarsen_files(tests_data / "trpcage.pdb", levels="ca,ucg:7", out_prefix=tmp_path / "m",
                        model="fake.pt", verbose=False)
    assert calls == [("fake.pt", "cpu")]
    assert sorted(res) == ["beads", "ca"]  # the model's levels, not --levels
    assert Mapping.from_json(res["beads"]["mapping"]) == hierarchy.composed("beads")
    assert Hierarchy.from_json(res["beads"]["mapping"]) == hierarchy
    _fake_models(monkeypatch, Hierarchy([ca_mapping(["GLY", "ALA"])]))
    with pytest.raises(ValueError, match="another protein"):
        coarsen_files(tests_data / "trpcage.pdb", out_prefix=tmp_path / "n", model="fake.pt", verbose=False)


def test_coarsen_files_model_without_mappings(tmp_path, tests_data, monkeypatch):
    from openmm_backmap.structure import InputError

    _fake_models(monkeypatch, None)
    with pytest.raises(InputError, match="no mapping hierarchy"):
        coarsen_files(tests_data / "trpcage.pdb", out_prefix=tmp_path / "n", model="fake.pt", verbose=False)
    assert not list(tmp_path.iterdir())  # nothing written


def test_coarsen_files_inserts_the_ca_level_it_needs(tmp_path, tests_data):
    res = coarsen_files(tests_data / "trpcage.pdb", levels="ucg:4", out_prefix=tmp_path / "u", verbose=False)
    assert list(res) == ["ucg4"]  # only the requested level is written
    h = Hierarchy.from_json(res["ucg4"]["mapping"])
    assert h.levels == ["aa", "ca", "ucg4"]
    level_file = json.loads(open(res["ucg4"]["mapping"]).read())
    assert level_file["format"] == "openmm-backmap-level" and level_file["n_frames"] == 1
    assert level_file["source"].endswith("trpcage.pdb")


def test_failed_coarsen_leaves_no_file_and_checks_the_directory_first(tmp_path, tests_data, monkeypatch):
    import errno
    import os

    from openmm_backmap.structure import InputError, OutputWriteError

    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="is a file, not a directory"):
        coarsen_files(tests_data / "missing.pdb", out_prefix=tmp_path / "afile" / "trp")  # before reading input

    def disk_full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Hierarchy, "to_level_json", disk_full)
    with pytest.raises(OutputWriteError, match="No space left on device"):
        coarsen_files(tests_data / "trpcage.pdb", levels="ca,ucg:4", out_prefix=tmp_path / "trp", verbose=False)
    assert sorted(os.listdir(tmp_path)) == ["afile"]  # no level's PDB, DCD or JSON, under either name
    monkeypatch.undo()
    res = coarsen_files(tests_data / "trpcage.pdb", levels="ca", out_prefix=tmp_path / "trp", verbose=False)
    assert sorted(os.listdir(tmp_path)) == sorted(["afile"] + [os.path.basename(p) for k, p in res["ca"].items()
                                                               if k in ("pdb", "dcd", "mapping")])
