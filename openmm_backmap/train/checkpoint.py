"""Training checkpoints as plain data: state dicts, RNG states and counters, loaded with ``weights_only=True``.

``torch.load`` without ``weights_only`` unpickles arbitrary objects, so a
crafted ``last.pt`` could run code on ``--resume``. A checkpoint here holds
only tensors, numbers, strings, lists and dicts (the model, optimiser and
scheduler state dicts, the torch RNG state tensor, the numpy generator state
and the loop's counters), and is read back with ``weights_only=True``, which
refuses anything else before it can run.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from ..structure import InputError, MissingFileError
from ..structure.errors import option_name

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "restore_rng"]


def save_checkpoint(path: str, payload: dict) -> None:
    """Write ``payload`` (plain data and tensors only) to ``path`` atomically.

    Examples
    --------
    >>> save_checkpoint("run/last.pt", {"model": model.state_dict(), "state": {"step": 3}})  # doctest: +SKIP
    """
    tmp = path + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; refuse anything but plain data.

    Raises
    ------
    MissingFileError
        ``path`` does not exist.
    InputError
        The file holds pickled objects other than tensors and plain data
        (they are not run), or is not a checkpoint.

    Examples
    --------
    >>> ck = load_checkpoint("run/last.pt")  # doctest: +SKIP
    >>> ck["state"]["step"]  # doctest: +SKIP
    3
    """
    if not os.path.exists(path):
        raise MissingFileError(f"no checkpoint {path!r}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise InputError(f"{path!r} holds objects other than tensors and plain data; refusing to load it "
                         f"({str(err).splitlines()[0]})") from None
    except Exception as err:  # torch raises RuntimeError for a file that is not a torch archive
        raise InputError(f"{path!r} is not a readable checkpoint: {str(err).splitlines()[0]}") from None
    if not isinstance(ck, dict) or "model" not in ck:
        raise InputError(f"{path!r} is not a training checkpoint (no model state dict)")
    return _Checkpoint(path, ck)


class _Checkpoint(dict):
    """A loaded checkpoint: an entry it lacks is a one-line user error (e.g. ``best.pt``, which holds the weights
    only, copied over ``last.pt`` for ``--resume``), not a ``KeyError``."""

    def __init__(self, path, data):
        super().__init__(data)
        self.path = path

    def __missing__(self, key):
        raise InputError(f"{self.path!r} has no {key!r} entry, so training cannot resume from it (best.pt holds the "
                         f"weights only; {option_name('--resume', 'resume=True')} needs the last.pt that training "
                         "wrote in the run directory)")


def rng_state(rng: np.random.Generator) -> dict:
    """The torch and numpy random states, for a checkpoint.

    Examples
    --------
    >>> state = rng_state(np.random.default_rng(0))
    >>> sorted(state), state["torch_rng"].dtype
    (['numpy_rng', 'torch_rng'], torch.uint8)
    """
    return {"torch_rng": torch.get_rng_state(), "numpy_rng": rng.bit_generator.state}


def restore_rng(ck: dict, path: str = "checkpoint") -> np.random.Generator:
    """Set torch's random state from ``ck`` and return the numpy generator saved with it.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> saved = rng_state(rng)
    >>> a = (rng.random(), float(torch.rand(1)))
    >>> again = restore_rng(saved)
    >>> (again.random(), float(torch.rand(1))) == a
    True
    """
    if "torch_rng" not in ck or "numpy_rng" not in ck:
        raise InputError(f"{path!r} has no random states (written by an older version); train without --resume")
    torch.set_rng_state(ck["torch_rng"])
    rng = np.random.default_rng()
    rng.bit_generator.state = ck["numpy_rng"]
    return rng
