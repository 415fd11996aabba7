"""The C-alpha task's batches: packed chains give the same loss as zero-padded rows."""

import numpy as np
import pytest
import torch

from openmm_backmap.model import load_model
from openmm_backmap.model.steps import CA2AA, ensemble_to_slots
from openmm_backmap.train.ca2aa_task import PACK_GAP_ANGSTROM, CA2AATask, pack_chains


@pytest.fixture(scope="module")
def shipped_step():
    """The eager step of the shipped C-alpha model (trained, so its loss depends on the neighbours it sees)."""
    from pathlib import Path

    bm = load_model(Path(__file__).resolve().parents[2] / "models" / "ca2aa.pt", device="cpu")
    return CA2AA.from_exported(getattr(bm.module.steps, "0"), bm.metadata["steps"][0]["config"]).eval()


def _item(ens, residues, shift_angstrom):
    xyz, mask = ensemble_to_slots(ens)
    seg = ens.segment_start.copy()
    return {"xyz": np.nan_to_num(xyz[0, :residues]) + np.float32(shift_angstrom), "mask": mask[0, :residues],
            "types": ens.residue_types[:residues], "seg": seg[:residues]}


def test_packed_batch_has_the_padded_batch_loss(trpcage, shipped_step):
    # two chains of different lengths, overlapping in space as they come: packing must separate them
    items = [_item(trpcage, 20, 0.0), _item(trpcage, 14, 3.0)]
    padded = CA2AATask._batch(None, items)
    packed = CA2AATask._batch(None, [pack_chains(items)])
    naive = CA2AATask._batch(None, [{k: np.concatenate([it[k] for it in items]) for k in items[0]}])
    assert packed[0].shape[:2] == (1, 34) and padded[0].shape[:2] == (2, 20)
    with torch.no_grad():
        lp, _ = shipped_step.loss(*padded)
        lk, _ = shipped_step.loss(*packed)
        ln, _ = shipped_step.loss(*naive)
    assert float(lk) == pytest.approx(float(lp), abs=1e-5)
    assert abs(float(ln) - float(lp)) > 1e-2  # side by side without moving them apart, the chains would interact
    p = pack_chains(items)
    gap = p["xyz"][20:][p["mask"][20:]][:, 0].min() - p["xyz"][:20][p["mask"][:20]][:, 0].max()
    assert gap == pytest.approx(PACK_GAP_ANGSTROM, abs=1e-3)
