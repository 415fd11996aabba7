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
