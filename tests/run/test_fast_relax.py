"""The fast batched clash repair (openmm_backmap.run.relax.fast) and its place as the pipeline's default."""

import numpy as np
import pytest

from openmm_backmap.evaluation.metrics import clash_topology
from openmm_backmap.run import BackmapOptions
from openmm_backmap.run.relax import FastRelaxer, reference_bond_lengths
from openmm_backmap.structure import InputError


def _rotated_side_chain(ens):
    """A side chain rotated about CA-CB until it sits in another residue (chi1 turned in 10 degree steps)."""
    x = ens.xyz[0].astype(np.float64)
    lay = ens.layout
    bonds = lay.bonds(ens.segment_start)
    for r, name in enumerate(ens.sequence):
        if name in ("GLY", "ALA", "PRO") or lay.residue_start[r + 1] - lay.residue_start[r] < 7:
            continue
        ca, cb = lay.index(r, "CA"), lay.index(r, "CB")
        side = np.arange(cb + 1, lay.residue_start[r + 1])
        axis = (x[cb] - x[ca]) / np.linalg.norm(x[cb] - x[ca])
        for deg in range(10, 360, 10):
            t = np.radians(deg)
            p = x[side] - x[cb]
            rot = (p * np.cos(t) + np.cross(axis, p) * np.sin(t) + axis * (p @ axis)[:, None] * (1 - np.cos(t)))
            y = x.copy()
            y[side] = x[cb] + rot
            if clash_topology(y, bonds, lay.atom_residue) > 0:
                return x, y
    raise AssertionError("no rotamer of this structure clashes")


@pytest.fixture(scope="module")
def relaxer(trpcage):
    return FastRelaxer(trpcage.topology(), template_xyz=trpcage.xyz[0])


def _bond_ok(xyz, bonds, r0):
    d = np.linalg.norm(xyz[bonds[:, 0]] - xyz[bonds[:, 1]], axis=1)
    known = np.isfinite(r0)
    return 100.0 * np.mean(np.abs(d[known] - r0[known]) <= 0.1 * r0[known])


@pytest.mark.parametrize("make", ["shifted", "rotated"])
def test_clashes_removed_bonds_kept_little_drift(trpcage, relaxer, make, seed, side_chains_onto_neighbours):
    if make == "shifted":
        x, bad = side_chains_onto_neighbours(trpcage, np.random.default_rng(seed), n_moves=3, noise_nm=0.003)
    else:
        x, bad = _rotated_side_chain(trpcage)
    lay = trpcage.layout
    bonds = lay.bonds(trpcage.segment_start)
    r0 = reference_bond_lengths(trpcage.sequence, trpcage.segment_start, x)
    res = relaxer.relax(bad)
    assert res.clash_before > 0 and res.clash_after == 0.0 and res.converged
    assert clash_topology(res.xyz, bonds, lay.atom_residue) == 0.0
    assert _bond_ok(res.xyz, bonds, r0) >= 99.9
    assert res.energy_after < res.energy_before
    # only what clashed, and its close contacts, moves: heavy-atom RMSD to the input well under 1 Å, most atoms
    # by less than 0.2 Å (Trp-cage is small: the side chains moved onto neighbours touch a quarter of its atoms)
    moved = np.linalg.norm(res.xyz - bad, axis=1)
    assert res.rmsd_nm == pytest.approx(np.sqrt(np.mean(moved ** 2)), rel=1e-5)
    assert res.rmsd_nm < 0.05 and np.mean(moved < 0.02) > 0.7


def test_contact_distances_follow_the_force_fields_diameters_and_hydrogen_bonds_stay(trpcage, relaxer):
    """Pairs are pushed to 0.96 sigma_ij (C-C 0.326 nm: no clash at 0.27, but 5 kJ/mol of ff14SB repulsion), N/O
    pairs to 0.88 sigma_ij, 1-4 pairs to 0.22 nm; the crystal's backbone hydrogen bonds (N-O 0.28-0.31 nm) stay hydrogen bonds."""
    from openmm_backmap.run.relax.fast import (CONTACT_NM, CONTACT_SIGMA_FRACTION, LJ_SIGMA_NM,
                                               POLAR_CONTACT_SIGMA_FRACTION)

    lay = trpcage.layout
    x = trpcage.xyz[0].astype(np.float64)
    names = np.asarray(lay.atom_names)
    pairs, d0 = relaxer._pairs(x)
    element = np.array([nm[0] for nm in names])
    e0, e1 = element[pairs[:, 0]], element[pairs[:, 1]]
    res = lay.atom_residue
    apart = np.abs(res[pairs[:, 0]] - res[pairs[:, 1]]) > 1
    cc, no = apart & (e0 == "C") & (e1 == "C"), apart & (e0 == "N") & (e1 == "O")
    assert cc.any() and no.any()
    assert np.allclose(d0[cc], CONTACT_SIGMA_FRACTION * LJ_SIGMA_NM["C"])
    assert np.allclose(d0[no], POLAR_CONTACT_SIGMA_FRACTION * (LJ_SIGMA_NM["N"] + LJ_SIGMA_NM["O"]) / 2)
    # N - CA - C - O of one residue: a 1-4 pair, whatever its elements
    one_four = (res[pairs[:, 0]] == res[pairs[:, 1]]) & (names[pairs[:, 0]] == "N") & (names[pairs[:, 1]] == "O")
    assert one_four.sum() >= 5 and np.all(d0[one_four] == CONTACT_NM)

    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    far = np.abs(res[:, None] - res[None, :]) > 1
    hb = np.argwhere((d < 0.31) & (names == "N")[:, None] & (names == "O")[None, :] & far)
    assert len(hb) >= 3
    out = relaxer.relax(x).xyz
    after = np.linalg.norm(out[hb[:, 0]] - out[hb[:, 1]], axis=1)
    assert np.all(after < 0.32) and np.mean(np.abs(after - d[hb[:, 0], hb[:, 1]])) < 0.01


def test_clean_frame_hardly_moves(trpcage, relaxer):
    """A clash-free experimental structure: bond lengths go to the force field's, drift stays below 0.1 Å."""
    res = relaxer.relax(trpcage.xyz[0])
    assert res.clash_after == 0.0 and res.converged
    assert res.rmsd_nm < 0.01  # nm = 0.1 Å


def test_cg_restraint_keeps_beads(trpcage, seed, side_chains_onto_neighbours):
    from openmm_backmap.mapping.operators import ca_mapping

    x, bad = side_chains_onto_neighbours(trpcage, np.random.default_rng(seed), n_moves=3, noise_nm=0.003)
    mapping = ca_mapping(trpcage.sequence)
    relaxer = FastRelaxer(trpcage.topology(), restraint="cg", mapping=mapping, template_xyz=x)
    beads = relaxer.bead_positions(bad)
    res = relaxer.relax(bad, cg_xyz=beads)
    assert res.clash_after == 0.0
    assert np.linalg.norm(relaxer.bead_positions(res.xyz) - beads, axis=1).max() < 0.05  # nm
    # beads given explicitly are where the centroids go, not where the input centroids were
    shifted = relaxer.relax(bad, cg_xyz=beads + [0.04, 0.0, 0.0])
    # to within the force tolerance (20 kJ/mol/nm on a one-atom bead of k = 1000 kJ/mol/nm^2: 0.02 nm)
    assert np.mean(relaxer.bead_positions(shifted.xyz)[:, 0] - beads[:, 0]) > 0.02


def test_deterministic_and_batch_equals_single(trpcage, relaxer, seed, side_chains_onto_neighbours):
    rng = np.random.default_rng(seed)
    frames = np.stack([side_chains_onto_neighbours(trpcage, rng, n_moves=3, noise_nm=0.003)[1] for _ in range(3)]
                      + [trpcage.xyz[0]])
    batch = relaxer.relax_batch(frames)
    again = relaxer.relax_batch(frames)
    assert batch.xyz.tobytes() == again.xyz.tobytes()  # same input, same bytes
    fresh = FastRelaxer(trpcage.topology(), template_xyz=trpcage.xyz[0]).relax_batch(frames)
    assert fresh.xyz.tobytes() == batch.xyz.tobytes()
    for j, frame in enumerate(frames):
        single = relaxer.relax(frame)
        np.testing.assert_allclose(single.xyz, batch.xyz[j], atol=1e-6)
        assert single.clash_after == batch.clash_after[j] == 0.0
    assert batch.xyz.shape == frames.shape and list(batch.converged) == [True] * 4


def test_broken_chain_and_bad_input(trpcage, relaxer):
    lay = trpcage.layout
    x = trpcage.xyz[0].astype(np.float64)
    torn = x.copy()
    torn[lay.residue_start[10]:] += [2.0, 0, 0]
    res = relaxer.relax_batch(np.stack([torn, x]))
    assert not res.converged[0] and "not minimised" in res.message[0] and res.converged[1]
    np.testing.assert_allclose(res.xyz[0], torn, atol=1e-6)
    with pytest.raises(InputError, match="shape"):
        relaxer.relax(x[:-1])
    with pytest.raises(InputError, match="OpenMM"):
        relaxer.relax(x, keep_hydrogens=True)
    with pytest.raises(InputError, match="restraint"):
        FastRelaxer(trpcage.topology(), restraint="all")


def test_options_pick_the_relaxer():
    assert BackmapOptions(minimize=True).relax_method == "fast"
    assert BackmapOptions(minimize=True, relax_options={"implicit": "obc2"}).relax_method == "openmm"
    assert BackmapOptions(minimize=True, keep_hydrogens=True).relax_method == "openmm"
    assert BackmapOptions(minimize=True, relax_options={"method": "fast", "k": 500.0}).relax_method == "fast"
    with pytest.raises(InputError, match="OpenMM relaxer"):
        BackmapOptions(minimize=True, relax_options={"method": "fast", "platform": "CPU"})
    with pytest.raises(InputError, match="'fast' or 'openmm'"):
        BackmapOptions(minimize=True, relax_options={"method": "gromacs"})


def test_convert_minimize_uses_the_fast_relaxer(tmp_path, trpcage, tiny_ca_backmapper):
    import mdtraj as md

    from openmm_backmap.run import convert_trajectory

    top = md.Topology()
    chain = top.add_chain()
    for name in trpcage.sequence:
        top.add_atom("CA", md.element.carbon, top.add_residue(name, chain))
    ca = tmp_path / "ca.pdb"
    md.Trajectory(trpcage.ca_xyz, top).save_pdb(str(ca))
    s = convert_trajectory(str(ca), tmp_path / "fast.pdb", model=tiny_ca_backmapper, seed=0, minimize=True,
                           samples=2, progress=False)
    assert s["frames_written"] == 2 and s["relax_failures"] == 0
    assert s["clash_percent"]["after"] == 0.0
    assert s["relax_seconds_per_frame"] < 5.0


def test_backmapped_disulfide_is_closed(shared_data):
    """2EQQ's Cys6-Cys18 disulfide: the shipped C-alpha model closes it; with that rule off its SG atoms are 0.44 nm
    apart, and the relaxer closes them."""
    import warnings
    from pathlib import Path

    import torch

    from openmm_backmap.io import LoadWarning, load_ensemble
    from openmm_backmap.model import load_model
    from openmm_backmap.model.steps import CA2AA

    model = Path(__file__).resolve().parents[2] / "models" / "ca2aa.pt"
    if shared_data is None or not model.exists():
        pytest.skip("needs ../shared/data and models/ca2aa.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoadWarning)
        ens = load_ensemble(shared_data / "eval" / "nmr" / "2EQQ.pdb.gz", frames=slice(0, 1))
    bm = load_model(model, device="cpu")
    out = bm.backmap(ens.ca_xyz, ens.sequence, ens.segment_start, deterministic=True)
    sg = [ens.layout.index(r, "SG") for r in (6, 18)]
    assert ens.sequence[6] == ens.sequence[18] == "CYS"
    assert abs(np.linalg.norm(out.xyz[0, sg[0]] - out.xyz[0, sg[1]]) - 0.204) < 0.01
    config = dict(bm.metadata["steps"][0]["config"], disulfides=False)
    step = CA2AA.from_exported(getattr(bm.module.steps, "0"), config).eval()
    with torch.no_grad():
        xyz = step(torch.tensor(ens.ca_xyz), torch.tensor(ens.residue_types), torch.tensor(ens.segment_start), 0,
                   0.0).numpy()[0]
    assert np.linalg.norm(xyz[sg[0]] - xyz[sg[1]]) > 0.3
    relaxed = np.asarray(FastRelaxer(out.topology).relax(xyz).xyz).reshape(-1, ens.n_atoms, 3)[0]
    assert abs(np.linalg.norm(relaxed[sg[0]] - relaxed[sg[1]]) - 0.204) < 0.01


def test_stereocentres_held_l_and_an_inversion_is_flagged(trpcage, relaxer, side_chain_through_plane):
    """A CB pushed nearly into the N-CA-C plane goes back to the L side; a relaxation that ends with an L residue
    turned D says so (the message the pipeline warns with) instead of passing as converged."""
    from openmm_backmap.run.relax import inverted_centres_message
    from openmm_backmap.structure.constants import CHIRAL_VOLUME_MIN_NM3
    from openmm_backmap.structure import chiral_centres, chirality_volumes

    centres = chiral_centres(trpcage.layout)
    squashed = side_chain_through_plane(trpcage, 3, 0.45)
    v0 = chirality_volumes(squashed, centres)[3]
    assert 0 < v0 < CHIRAL_VOLUME_MIN_NM3
    res = relaxer.relax(squashed)
    assert chirality_volumes(res.xyz, centres)[3] > 0.9 * CHIRAL_VOLUME_MIN_NM3 and res.converged
    mirrored = side_chain_through_plane(trpcage, 3)
    assert chirality_volumes(mirrored, centres)[3] < 0
    message = inverted_centres_message(trpcage.xyz[0], mirrored, centres, trpcage.layout)
    assert "residue(s) 4 from L to D" in message
    assert inverted_centres_message(trpcage.xyz[0], trpcage.xyz[0], centres, trpcage.layout) == ""
    # what came in as D is left alone (and not reported: the relaxation did not make it)
    res = relaxer.relax(mirrored)
    assert chirality_volumes(res.xyz, centres)[3] < 0 and res.message == ""
