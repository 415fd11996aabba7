"""Shared fixtures: a seed, the small files in tests/data, and ../shared/data when present."""

import os
import random
from pathlib import Path

import numpy as np
import pytest

TESTS_DATA = Path(__file__).parent / "data"


def _shared_data_dir():
    env = os.environ.get("OPENMM_BACKMAP_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def seed():
    """Seed every random number generator; returns the seed."""
    value = 1234
    random.seed(value)
    np.random.seed(value)
    try:
        import torch

        torch.manual_seed(value)
    except ImportError:  # pragma: no cover
        pass
    return value


@pytest.fixture(scope="session")
def tests_data():
    return TESTS_DATA


@pytest.fixture(scope="session")
def shared_data():
    """``../shared/data`` (or $OPENMM_BACKMAP_SHARED_DATA); tests using it skip when it is absent."""
    path = _shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set OPENMM_BACKMAP_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def trpcage():
    """Trp-cage (20 residues) as a one-frame ProteinEnsemble."""
    from openmm_backmap.io import load_ensemble

    return load_ensemble(TESTS_DATA / "trpcage.pdb")


def _test_geometry():
    """Template geometry fitted on Trp-cage and villin (OpenMM's test.pdb); generic values for residue types
    neither has (CYS). The package fallback (no data/ideal_geometry.json) puts branched atoms on top of each other,
    which the relaxer cannot handle."""
    import math
    import warnings

    import openmm.app as app

    from openmm_backmap.io import load_ensemble
    from openmm_backmap.model.steps import ensemble_to_slots, fit_geometry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # villin's waters and ions are dropped
        ensembles = [load_ensemble(TESTS_DATA / "trpcage.pdb"),
                     load_ensemble(Path(app.__file__).parent / "data" / "test.pdb")]
    slots = [ensemble_to_slots(e) for e in ensembles]
    geo = fit_geometry([s[0] for s in slots], [s[1] for s in slots], [e.residue_types for e in ensembles])
    bond, angle = np.asarray(geo["bond"]), np.asarray(geo["angle"])
    missing = bond == 0
    bond[missing], angle[missing] = 1.5, math.radians(110.0)
    geo["bond"], geo["angle"] = bond.tolist(), angle.tolist()
    return geo


@pytest.fixture(scope="session")
def tiny_ca_model(tmp_path_factory):
    """Path of a tiny untrained transferable C-alpha -> heavy-atom model (fast, for plumbing tests)."""
    import dataclasses

    import torch

    from openmm_backmap.model import KStepModel, save_model
    from openmm_backmap.model.steps import CA2AA, CA2AAConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny_ca2aa.pt"
    config = CA2AAConfig(hidden=16, layers=1, neighbors=8)
    step = CA2AA(config, geometry=_test_geometry())
    save_model(KStepModel([step]), str(path), {"kind": "ca2aa", "transferable": True, "name": "tiny",
                                               "steps": [{"kind": "ca2aa", "config": dataclasses.asdict(config)}]})
    return path


@pytest.fixture(scope="session")
def tiny_bead_models(tmp_path_factory):
    """Paths of tiny untrained beads -> heavy-atom models by scheme (``'com'``, ``'martini3'``), for plumbing
    tests; named as the shipped ones (com2aa.pt, martini3.pt) in one folder."""
    import torch

    from openmm_backmap.model import KStepModel, save_model
    from openmm_backmap.model.steps import Bead2AA, Bead2AAConfig

    folder = tmp_path_factory.mktemp("bead_models")
    paths = {}
    for scheme, name in (("com", "com2aa.pt"), ("martini3", "martini3.pt")):
        torch.manual_seed(0)
        step = Bead2AA(Bead2AAConfig(scheme=scheme, hidden=16, layers=1, neighbors=8, ca_hidden=16, ca_layers=1),
                       geometry=_test_geometry())
        paths[scheme] = folder / name
        save_model(KStepModel([step]), str(paths[scheme]),
                   {"kind": "bead2aa", "transferable": True, "scheme": scheme, "input_level": scheme,
                    "steps": [{"kind": "bead2aa", "input": scheme, "output": "aa"}], "name": f"tiny-{scheme}"})
    return paths


@pytest.fixture(scope="session")
def tiny_ca_backmapper(tiny_ca_model):
    """The tiny model loaded once on the CPU and warmed up (TorchScript optimises on the first calls)."""
    import torch

    from openmm_backmap.model import load_model

    bm = load_model(tiny_ca_model, device="cpu")
    x = torch.randn(1, 6, 3).cumsum(1).numpy() * 0.38
    for _ in range(2):
        bm.backmap(x, ["ALA", "GLY", "SER", "LEU", "TRP", "PRO"], seed=0)
    return bm


@pytest.fixture(scope="session")
def tiny_persystem_model(tmp_path_factory, trpcage):
    """Path of a tiny per-system model for Trp-cage: 20 C-alpha beads, the sequence embedded."""
    import dataclasses

    import torch

    from openmm_backmap.model import KStepModel, save_model
    from openmm_backmap.model.steps import CA2AA, CA2AAConfig

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("models") / "tiny_trpcage.pt"
    config = CA2AAConfig(hidden=16, layers=1, neighbors=8)
    step = CA2AA(config, geometry=_test_geometry())
    module = KStepModel([step], torch.as_tensor(trpcage.residue_types), torch.as_tensor(trpcage.segment_start),
                        n_beads=trpcage.n_residues)
    save_model(module, str(path), {"kind": "kstep", "transferable": False, "name": "tiny-trpcage",
                                   "steps": [{"kind": "ca2aa", "config": dataclasses.asdict(config)}], "sequence": list(trpcage.sequence),
                                   "segment_start": trpcage.segment_start.tolist(), "n_beads": trpcage.n_residues})
    return path


@pytest.fixture(scope="session")
def trpcage_go(trpcage):
    """C-alpha Go model of Trp-cage: (openmm Topology, System, positions (20, 3) nm)."""
    from openmm_backmap.cgsystems import calpha_go_model

    return calpha_go_model(trpcage)


@pytest.fixture(scope="session")
def noisy_copies():
    """``noisy_copies(ens, n, scale_nm, seed)``: ``n`` copies of the first frame of ``ens`` plus Gaussian noise."""
    from openmm_backmap.structure import ProteinEnsemble

    def make(ens, n, scale_nm, seed):
        rng = np.random.default_rng(seed)
        xyz = ens.xyz[[0] * n] + rng.normal(scale=scale_nm, size=(n,) + ens.xyz.shape[1:]).astype(np.float32)
        return ProteinEnsemble(ens.sequence, xyz, ens.mask[[0] * n], ens.segment_start, ens.chain_ids,
                               ens.residue_numbers, None, f"noisy {ens.source}")

    return make


@pytest.fixture(scope="session")
def side_chains_onto_neighbours():
    """``make(ens, rng, n_moves, noise_nm)`` -> (x, perturbed) (nm): Gaussian noise on every atom of the first frame
    of ``ens``, and ``n_moves`` side chains shifted onto a neighbouring residue (0.8 Å away): clashes to relax."""

    def make(ens, rng, n_moves, noise_nm):
        x = ens.xyz[0].astype(np.float64)
        lay = ens.layout
        xp = x + rng.normal(scale=noise_nm, size=x.shape)
        movable = [r for r, s in enumerate(ens.sequence) if s not in ("GLY", "ALA", "PRO")]
        for r in rng.choice(movable, n_moves, replace=False):
            side = np.arange(lay.residue_start[r] + 5, lay.residue_start[r + 1])
            other = np.flatnonzero(lay.atom_residue != r)
            d = np.linalg.norm(x[other][:, None] - x[side][None], axis=-1)
            i, j = np.unravel_index(d.argmin(), d.shape)
            v = x[other[i]] - x[side[j]]
            xp[side] += v - 0.08 * v / np.linalg.norm(v)
        return x, xp

    return make


@pytest.fixture(scope="session")
def side_chain_through_plane():
    """``make(ens, residue, fraction=1.0)``: the first frame of ``ens`` (float64, nm) with residue ``residue``'s side
    chain (CB onwards) moved ``fraction`` of the way through its N-CA-C plane; 1 mirrors it (a D residue) and keeps
    every bond length."""
    from openmm_backmap.structure import chiral_centres

    def make(ens, residue, fraction=1.0):
        x = ens.xyz[0].astype(np.float64).copy()
        lay = ens.layout
        centres = chiral_centres(lay)
        n, ca, c, cb = centres[np.flatnonzero(lay.atom_residue[centres[:, 1]] == residue)[0]]
        normal = np.cross(x[n] - x[ca], x[c] - x[ca])
        normal /= np.linalg.norm(normal)
        side = np.arange(cb, lay.residue_start[residue + 1])
        x[side] -= 2 * fraction * ((x[side] - x[ca]) @ normal)[:, None] * normal
        return x

    return make


@pytest.fixture(scope="session")
def random_rotation():
    """``make(seed)``: a random proper rotation matrix (3, 3), float32, for equivariance tests."""
    import torch

    def make(seed):
        q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed)))
        if torch.det(q) < 0:
            q[:, 0] = -q[:, 0]
        return q

    return make


@pytest.fixture(scope="session")
def tiny_training(tests_data):
    """A tiny ``kind: ca2aa`` training config (dict, shared: copy before changing it): 8 training frames of
    ``tests/data/trpcage_train10.pdb.gz``, 6 steps; the training tests write it to YAML."""
    return {
        "kind": "ca2aa", "name": "tiny", "seed": 1, "run_dir": "run", "output": "run/model.pt",
        "model": {"hidden": 16, "layers": 1, "neighbors": 8, "mixture": 2, "rbf": 8, "edge_dim": 16},
        "task": {"ca_noise": 0.05, "val_frames": 2},
        "data": {"root": str(tests_data), "files": ["trpcage_train10.pdb.gz"], "validation_fraction": 0.2},
        "optim": {"max_steps": 6, "validate_every": 3, "batch_residues": 60, "threads": 1},
    }


@pytest.fixture
def shipped(tmp_path, monkeypatch, tiny_ca_model, tiny_bead_models):
    """The package's shipped models replaced by the tiny ones (ca2aa.pt, com2aa.pt, martini3.pt)."""
    import shutil

    import openmm_backmap.model.backmapping as backmapping

    folder = tmp_path / "shipped"
    folder.mkdir()
    shutil.copy(tiny_ca_model, folder / "ca2aa.pt")
    for path in tiny_bead_models.values():
        shutil.copy(path, folder / path.name)
    monkeypatch.setattr(backmapping, "_DATA_FOLDER", folder)
    return folder
