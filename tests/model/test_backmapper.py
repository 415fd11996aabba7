"""Model format: export, load, metadata, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from openmm_backmap.model import FORMAT_VERSION, KStepModel, load_model, save_model
from openmm_backmap.model.steps import CA2AA, CA2AAConfig


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "tiny.pt"
    save_model(KStepModel([CA2AA(CA2AAConfig(hidden=16, layers=1, neighbors=8))]), str(path),
               {"kind": "ca2aa", "transferable": True, "steps": [{"kind": "ca2aa"}], "name": "tiny",
                "training": {"files": 1}})
    return path


def test_load_and_backmap(model_path, trpcage):
    bm = load_model(model_path, device="cpu")
    assert bm.transferable and bm.kind == "ca2aa"
    out = bm.backmap(trpcage.ca_xyz, sequence=trpcage.sequence, samples=2, seed=3)
    assert out.xyz.shape == (2, trpcage.n_atoms, 3)
    assert out.topology.n_atoms == trpcage.n_atoms
    assert [a.name for a in out.topology.atoms] == list(trpcage.layout.atom_names)
    again = bm.backmap(trpcage.ca_xyz, sequence=trpcage.sequence, samples=2, seed=3)
    assert np.array_equal(out.xyz, again.xyz)
    det = bm.backmap(trpcage.ca_xyz[0], sequence=trpcage.sequence, deterministic=True)
    assert det.xyz.shape == (1, trpcage.n_atoms, 3)


def test_metadata_travels_in_the_file(model_path):
    extra = {"metadata.json": ""}
    torch.jit.load(str(model_path), _extra_files=extra)
    meta = json.loads(extra["metadata.json"])
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["units"]["input"] == "nm"
    assert "signature" in meta and meta["name"] == "tiny"
    info = load_model(model_path, device="cpu").info()
    assert info["kind"] == "ca2aa" and info["training"] == {"files": 1}


def test_model_loads_without_the_package(model_path):
    code = ("import sys, torch; sys.modules['openmm_backmap'] = None; m = torch.jit.load(sys.argv[1]); "
            "x = torch.randn(2, 6, 3).cumsum(1) * 0.38; t = torch.tensor([0, 1, 2, 3, 4, 5]); "
            "s = torch.tensor([True] + [False] * 5); print(tuple(m(x, t, s, 0, 3, 1.0).shape))")
    res = subprocess.run([sys.executable, "-c", code, str(model_path)], capture_output=True, text=True, check=True)
    assert res.stdout.strip().endswith("(6, 47, 3)")  # ALA ARG ASN ASP CYS GLN: 47 heavy atoms


def test_transferable_model_needs_matching_sequence(model_path, trpcage):
    bm = load_model(model_path, device="cpu")
    with pytest.raises(ValueError, match="needs the sequence"):
        bm.backmap(trpcage.ca_xyz)
    with pytest.raises(ValueError, match="particles but the sequence has"):
        bm.backmap(trpcage.ca_xyz, sequence=trpcage.sequence[:-1])
    with pytest.raises(ValueError, match="non-standard name"):
        bm.backmap(trpcage.ca_xyz, sequence=["XYZ"] * 20)


def test_per_system_model_checks_beads_and_sequence(tmp_path, trpcage):
    path = tmp_path / "sys.pt"
    save_model(KStepModel([CA2AA(CA2AAConfig(hidden=16, layers=1, neighbors=8))],
                          torch.tensor(trpcage.residue_types), torch.tensor(trpcage.segment_start), n_beads=20),
               str(path), {"kind": "kstep", "transferable": False, "sequence": trpcage.sequence,
                           "segment_start": trpcage.segment_start.tolist(), "n_beads": 20, "steps": [{}]})
    bm = load_model(path, device="cpu")
    assert bm.backmap(trpcage.ca_xyz, seed=0).xyz.shape == (1, trpcage.n_atoms, 3)
    with pytest.raises(ValueError, match="expects 20 beads"):
        bm.backmap(trpcage.ca_xyz[:, :10])
    wrong = list(trpcage.sequence)
    wrong[3] = "GLY"
    with pytest.raises(ValueError, match="does not match this model"):
        bm.backmap(trpcage.ca_xyz, sequence=wrong)


def test_bad_model_files(tmp_path, model_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a readable TorchScript model"):
        load_model(junk, device="cpu")
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(plain))
    with pytest.raises(ValueError, match="not an openmm-backmap model"):
        load_model(plain, device="cpu")
    newer = tmp_path / "newer.pt"
    save_model(KStepModel([CA2AA(CA2AAConfig(hidden=8, layers=1))]), str(newer),
               {"kind": "ca2aa", "transferable": True, "format_version": FORMAT_VERSION + 1})
    with pytest.raises(ValueError, match="upgrade openmm-backmap"):
        load_model(newer, device="cpu")
    wrong_kind = tmp_path / "kind.pt"
    save_model(KStepModel([CA2AA(CA2AAConfig(hidden=8, layers=1))]), str(wrong_kind), {"kind": "banana"})
    with pytest.raises(ValueError, match="unknown model kind"):
        load_model(wrong_kind, device="cpu")


def test_scripted_kstep_rejects_wrong_bead_count(trpcage):
    m = torch.jit.script(KStepModel([CA2AA(CA2AAConfig(hidden=8, layers=1))], torch.tensor(trpcage.residue_types),
                                    torch.tensor(trpcage.segment_start), n_beads=20))
    with pytest.raises(torch.jit.Error, match="expects 20"):
        m(torch.zeros(1, 5, 3), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool), 0, 1, 0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_cuda_matches_cpu_in_deterministic_mode(model_path, trpcage):
    cpu = load_model(model_path, device="cpu").backmap(trpcage.ca_xyz, sequence=trpcage.sequence, deterministic=True)
    gpu = load_model(model_path, device="cuda").backmap(trpcage.ca_xyz, sequence=trpcage.sequence, deterministic=True)
    assert np.allclose(cpu.xyz, gpu.xyz, atol=1e-4)


@pytest.mark.parametrize("device", ["gpu0", "cuda:x", "tpu"])
def test_unknown_device_is_named_not_the_model_file(device):
    from openmm_backmap.model import load_model
    from openmm_backmap.structure import InputError

    with pytest.raises(InputError, match="unknown device") as err:
        load_model("models/ca2aa.pt", device=device)
    assert "model" not in str(err.value)


def test_cli_convert_with_a_bad_device_says_so(tmp_path, capsys):
    from openmm_backmap.cli import main

    code = main(["convert", "tests/data/trpcage.pdb", "-o", str(tmp_path / "o.pdb"), "--device", "gpu0"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown device 'gpu0'" in err and err.count("\n") == 1
    assert not (tmp_path / "o.pdb").exists()


def test_output_follows_the_beads_far_from_the_origin(tests_data):
    """A frame 30 nm from the origin (the far side of a periodic box) backmaps to the same structure, moved: the
    shipped model computed side chains in float32 there and chose others (4.3 Å deviations at 30 nm)."""
    import warnings

    from openmm_backmap.io import load_ensemble
    from openmm_backmap.model import shipped_model_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = load_ensemble(tests_data / "t0872_fragment.pdb")
    bm = load_model(shipped_model_path("ca"), device="cpu")
    ca = ens.ca_xyz - ens.ca_xyz.mean(axis=1, keepdims=True)
    near = bm.backmap(ca, ens.sequence, ens.segment_start, deterministic=True, seed=0).xyz
    shift = np.array([30.0, 30.0, 30.0], dtype=np.float32)
    far = bm.backmap(ca + shift, ens.sequence, ens.segment_start, deterministic=True, seed=0).xyz - shift
    assert np.abs(far - near).max() < 1e-3  # nm
