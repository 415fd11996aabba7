"""The beads -> atoms step: bead tables, C-alpha placement, equivariance, TorchScript, start from a C-alpha step."""

import numpy as np
import pytest
import torch

from openmm_backmap.evaluation.metrics import bond_ok
from openmm_backmap.mapping import scheme_mapping
from openmm_backmap.model import KStepModel
from openmm_backmap.model.steps import (CA2AA, Bead2AA, Bead2AAConfig, CA2AAConfig, bead_table, ensemble_to_slots,
                                        fit_geometry, get_step_class)
from openmm_backmap.structure import AMINO_ACIDS, InputError

SMALL = dict(hidden=32, layers=1, neighbors=8, ca_hidden=16, ca_layers=1)


@pytest.fixture(scope="module")
def geometry(trpcage):
    x, m = ensemble_to_slots(trpcage)
    return fit_geometry([x], [m], [trpcage.residue_types])


@pytest.fixture(scope="module", params=["com", "martini3"])
def step(request, geometry):
    torch.manual_seed(0)
    model = Bead2AA(Bead2AAConfig(scheme=request.param, **SMALL), geometry).eval()
    with torch.no_grad():  # a non-zero bead network, so the tests see the beads reach the angles
        for p in model.bead_in.parameters():
            p.normal_(0.0, 0.1)
    return model


def _beads(step, ens, frame=0):
    """The scheme's beads of an ensemble frame (nm), in the model's input order."""
    return torch.tensor(scheme_mapping(step.scheme, ens.sequence).apply(ens.xyz[frame]), dtype=torch.float32)


def _args(ens):
    return torch.tensor(ens.residue_types), torch.tensor(ens.segment_start)


def test_registry_and_bead_tables_follow_the_mappings():
    assert get_step_class("bead2aa") is Bead2AA
    for scheme in ("com", "martini3", "martini2"):
        counts, weights = bead_table(scheme)
        for t, res in enumerate(AMINO_ACIDS):
            m = scheme_mapping(scheme, [res])
            assert counts[t] == m.n_beads
            assert np.allclose(weights[t, : m.n_beads].sum(-1), 1.0)
            assert not weights[t, m.n_beads:].any()
    with pytest.raises(InputError, match="not 'ca'"):
        bead_table("ca")


def test_beads_from_atoms_equal_the_mapping(step, trpcage):
    xyz, mask = ensemble_to_slots(trpcage)
    types = torch.tensor(trpcage.residue_types).unsqueeze(0)
    beads = step.beads_from_atoms(torch.tensor(xyz[:1]), torch.tensor(mask[:1]), types) / 10.0
    flat, have = step.residue_beads(_beads(step, trpcage).unsqueeze(0), types[0])
    assert torch.allclose(beads[0][have], flat[0][have], atol=1e-5)


def test_output_has_exact_chemistry_and_is_equivariant(step, trpcage, random_rotation):
    types, seg = _args(trpcage)
    x = _beads(step, trpcage).unsqueeze(0)
    with torch.no_grad():
        out = step(x, types, seg, 3, 0.0)
        rot, shift = random_rotation(1), torch.tensor([0.7, -1.2, 2.0])
        out_rt = step(x @ rot.T + shift, types, seg, 3, 0.0)
    assert out.shape == (1, trpcage.n_atoms, 3)
    assert torch.allclose(out @ rot.T + shift, out_rt, atol=2e-4)
    # untrained, the C-alphas land anywhere near the beads: the bonds still come out right
    assert bond_ok(trpcage.xyz[0], out[0].numpy(), trpcage.layout.elements) > 95.0


def test_the_beads_reach_the_angles_and_the_calphas(step, trpcage):
    types, seg = _args(trpcage)
    x = _beads(step, trpcage).unsqueeze(0)
    moved = x.clone()
    moved[0, -1] += 0.05  # one bead of the last residue
    with torch.no_grad():
        a, b = step(x, types, seg, 0, 0.0), step(moved, types, seg, 0, 0.0)
    assert (a - b).abs().max() > 1e-4


def test_consecutive_calphas_get_the_ideal_distance(step):
    torch.manual_seed(1)
    ca = torch.randn(2, 30, 3).cumsum(1) * 2.2
    seg = torch.zeros(2, 30, dtype=torch.bool)
    seg[:, 0] = seg[:, 12] = True
    fixed = step.ideal_ca_distances(ca, seg)
    d = torch.linalg.vector_norm(fixed[:, 1:] - fixed[:, :-1], dim=-1)
    link = ~seg[:, 1:]
    near = torch.minimum((d - 3.80).abs(), (d - step.cis_ca_target).abs())
    assert float(near[link].median()) < 0.02
    before = torch.linalg.vector_norm(ca[:, 12] - ca[:, 11], dim=-1)
    # a break is not a bond: its distance changes only by the moves of the two ends' own bonds
    assert not torch.allclose(d[:, 11], torch.full_like(d[:, 11], 3.8), atol=0.05) or before.max() < 4.0


def test_wrong_bead_count_is_refused(step, trpcage):
    types, seg = _args(trpcage)
    x = _beads(step, trpcage).unsqueeze(0)
    with pytest.raises(RuntimeError, match="beads of scheme"):
        step(x[:, :-1], types, seg, 0, 0.0)


def test_torchscript_round_trip(step, trpcage, tmp_path):
    types, seg = _args(trpcage)
    x = _beads(step, trpcage).unsqueeze(0)
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(KStepModel([step])), str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        assert torch.allclose(loaded(x, types, seg, 5, 2, 1.0), KStepModel([step])(x, types, seg, 5, 2, 1.0),
                              atol=1e-5)


def test_a_new_step_starts_as_its_calpha_step(geometry, trpcage):
    torch.manual_seed(2)
    ca_step = CA2AA(CA2AAConfig(hidden=32, layers=1, neighbors=8), geometry).eval()
    bead = Bead2AA.from_ca2aa(ca_step, Bead2AAConfig(scheme="martini3", **SMALL)).eval()
    types, seg = _args(trpcage)
    ca = torch.tensor(trpcage.ca_xyz[:1]) * 10.0
    beads = bead.beads_from_atoms(*(torch.tensor(a[:1]) for a in ensemble_to_slots(trpcage)), types.unsqueeze(0))
    with torch.no_grad():
        same = bead.atoms(ca, types, seg, 0, 0.0, beads)
        ref = ca_step.atoms(ca, types, seg, 0, 0.0, None)
    assert torch.allclose(same, ref, atol=1e-5)
    with pytest.raises(InputError, match="does not fit"):
        Bead2AA.from_ca2aa(ca_step, Bead2AAConfig(scheme="com", **dict(SMALL, hidden=16)))


def test_bead_loss_is_finite_and_trains_both_networks(step, trpcage):
    xyz, mask = (torch.tensor(np.nan_to_num(a[:1])) for a in ensemble_to_slots(trpcage))
    types, seg = (t.unsqueeze(0) for t in _args(trpcage))
    step.train()
    loss, parts = step.bead_loss(xyz, mask, types, torch.ones_like(seg), seg, ca_noise=0.05, bead_noise=0.05)
    step.eval()
    loss.backward()
    assert torch.isfinite(loss) and parts["ca_mse"] > 0
    assert step.ca_out[-1].weight.grad.abs().sum() > 0 and step.bead_in[0].weight.grad.abs().sum() > 0
    step.zero_grad()
