"""export refuses steps that do not chain (one line naming the order that would), and a C-alpha-output model
is a model of its own that convert refuses with a clear message instead of an internal error.

Lives in tests/train because the beads -> C-alpha step comes from a (tiny, untrained) cgvae task.
"""

import os

import numpy as np
import pytest
import torch

from openmm_backmap.cli import main
from openmm_backmap.model import export_kstep, load_model
from openmm_backmap.run import BackmapOptions, BackmapPipeline
from openmm_backmap.structure import InputError
from openmm_backmap.train import export_step
from openmm_backmap.train.cgvae_task import CGVAETask
from openmm_backmap.train.config import RunConfig, from_dict

SMALL = {"hidden": 16, "latent": 3, "encoder_layers": 1, "prior_layers": 1, "coarse_layers": 1,
         "decoder_layers": 1, "fine_neighbors": 6, "bead_neighbors": 4, "rbf": 8}


@pytest.fixture(scope="module")
def beads_to_ca(trpcage, noisy_copies, tmp_path_factory):
    """An untrained UCG4 -> C-alpha step for Trp-cage, exported through its task (the weights do not matter)."""
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("export_checks")
    cfg = from_dict(RunConfig, {"kind": "cgvae", "name": "trp-ucg4", "model": dict(SMALL),
                                "task": {"beads": 4, "target": "ca", "batch_frames": 2},
                                "run_dir": str(tmp / "run"), "seed": 0})
    task = CGVAETask(cfg, [noisy_copies(trpcage, 2, 0.03, 0)], [noisy_copies(trpcage, 1, 0.03, 1)], {"files": []},
                     log=lambda *a: None)
    task.model.eval()
    return export_step(task, cfg, {"steps": 0}, str(tmp / "ucg4_ca.pt"))


def test_wrong_order_is_refused_naming_the_right_one(beads_to_ca, tiny_ca_model, tmp_path):
    out = tmp_path / "k.pt"
    with pytest.raises(InputError, match="wrong order") as err:
        export_kstep([str(tiny_ca_model), beads_to_ca], str(out))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.endswith(f"{beads_to_ca} {tiny_ca_model}")  # the order that works, coarsest first
    assert not out.exists()
    # the order it names works, and gives atoms
    bm = load_model(export_kstep([beads_to_ca, str(tiny_ca_model)], str(out)), device="cpu")
    assert bm.output_level == "aa" and bm.backmap(np.zeros((1, 4, 3), np.float32) + [[0.0], [1.0], [2.0], [3.0]],
                                                   deterministic=True).xyz.shape == (1, 153, 3)


@pytest.mark.parametrize("parts", ["ca,ca", "ucg,ucg"])
def test_steps_that_never_chain_are_refused(beads_to_ca, tiny_ca_model, tmp_path, parts):
    paths = {"ca": str(tiny_ca_model), "ucg": beads_to_ca}
    with pytest.raises(InputError, match="do not chain in any order") as err:
        export_kstep([paths[p] for p in parts.split(",")], str(tmp_path / "k.pt"))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "k.pt").exists()


def test_cli_export_wrong_order_is_one_line(beads_to_ca, tiny_ca_model, tmp_path, capsys):
    assert main(["export", str(tiny_ca_model), beads_to_ca, "-o", str(tmp_path / "k.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wrong order" in err and "Traceback" not in err


def test_beads_to_ca_step_alone_is_a_ca_model(beads_to_ca, trpcage, tmp_path):
    path = export_kstep([beads_to_ca], str(tmp_path / "alone.pt"))
    bm = load_model(path, device="cpu")
    assert bm.output_level == "ca"
    res = bm.backmap(np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32), seed=1)
    assert res.xyz.shape == (2, 20, 3) and res.topology.n_atoms == 20
    assert [a.name for a in res.topology.atoms] == ["CA"] * trpcage.n_residues


@pytest.mark.parametrize("alone", [True, False])
def test_convert_refuses_a_ca_output_model_clearly(beads_to_ca, tmp_path, alone):
    model = export_kstep([beads_to_ca], str(tmp_path / "alone.pt")) if alone else beads_to_ca
    out = tmp_path / "out.pdb"
    with pytest.raises(InputError, match="not atoms.*export"):
        BackmapPipeline(str(out), 4, BackmapOptions(model=model, device="cpu"))
    assert not os.path.exists(out)
