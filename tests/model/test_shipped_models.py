"""The models committed in models/: they load standalone, carry their metadata, and are accurate."""

from pathlib import Path

import numpy as np
import pytest

from openmm_backmap.model import load_model
from openmm_backmap.evaluation.metrics import bond_ok, ged, rmsd

MODELS = Path(__file__).resolve().parents[2] / "models"
CA2AA = MODELS / "ca2aa.pt"


@pytest.fixture(scope="module")
def ca2aa():
    if not CA2AA.exists():
        pytest.skip("models/ca2aa.pt not present")
    return load_model(CA2AA, device="cpu")


def test_shipped_ca_model_metadata(ca2aa):
    info = ca2aa.info()
    assert info["kind"] == "ca2aa" and info["transferable"]
    assert info["units"]["input"] == "nm"
    assert info["training"]["data"]["train_frames"] > 100
    assert "val_loss" in info["training"]["best_metrics"]
    assert CA2AA.stat().st_size < 20e6


def test_shipped_ca_model_is_accurate_on_trpcage(ca2aa, trpcage):
    out = ca2aa.backmap(trpcage.ca_xyz, sequence=trpcage.sequence, segment_start=trpcage.segment_start,
                        deterministic=True)
    elements = trpcage.layout.elements
    assert rmsd(trpcage.xyz[0], out.xyz[0]) < 2.0  # Å
    assert ged(trpcage.xyz[0], out.xyz[0], elements) < 0.02
    assert bond_ok(trpcage.xyz[0], out.xyz[0], elements) > 99.0
    samples = ca2aa.backmap(trpcage.ca_xyz, sequence=trpcage.sequence, samples=3, seed=7)
    assert not np.allclose(samples.xyz[0], samples.xyz[1])  # stochastic samples differ


def test_default_model_is_the_shipped_one(ca2aa):
    from openmm_backmap.model import shipped_model_path

    assert Path(shipped_model_path("ca")).resolve() == CA2AA.resolve()


def test_cli_info_prints_metadata(ca2aa, capsys):
    from openmm_backmap.cli import main

    assert main(["info", str(CA2AA)]) == 0
    out = capsys.readouterr().out
    assert "ca2aa" in out and "format_version" in out


@pytest.mark.parametrize("scheme, name, max_rmsd", [("com", "com2aa.pt", 1.5), ("martini3", "martini3.pt", 1.2)])
def test_shipped_bead_models_are_standalone_and_accurate(scheme, name, max_rmsd, trpcage):
    import json

    import torch

    from openmm_backmap.mapping import scheme_mapping
    from openmm_backmap.model import shipped_model_path
    from openmm_backmap.structure import residue_type_indices

    path = MODELS / name
    if not path.exists():
        pytest.skip(f"models/{name} not present")
    assert path.stat().st_size < 20e6
    assert Path(shipped_model_path(scheme)).resolve() == path.resolve()
    beads = scheme_mapping(scheme, trpcage.sequence).apply(trpcage.xyz[:1])
    # self-contained: plain torch loads it, and its metadata says the scheme
    extra = {"metadata.json": ""}
    module = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["scheme"] == scheme
    with torch.no_grad():
        raw = module(torch.tensor(beads, dtype=torch.float32), torch.as_tensor(residue_type_indices(trpcage.sequence)),
                     torch.as_tensor(trpcage.segment_start), 0, 1, 0.0).numpy()
    bm = load_model(path, device="cpu")
    out = bm.backmap(beads, trpcage.sequence, trpcage.segment_start, deterministic=True)
    assert np.allclose(raw, out.xyz, atol=1e-5)
    elements = trpcage.layout.elements
    assert rmsd(trpcage.xyz[0], out.xyz[0]) < max_rmsd  # Å
    assert bond_ok(trpcage.xyz[0], out.xyz[0], elements) > 99.0
    samples = bm.backmap(beads, trpcage.sequence, samples=2, seed=3)
    assert not np.allclose(samples.xyz[0], samples.xyz[1])
