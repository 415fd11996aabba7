"""What the training loop needs from a task, and the registry of tasks by step kind.

A task owns one step's model and data: it draws batches, computes the loss,
validates and hands the trained module to the exporter. The loop
(:mod:`.loop`) does everything else. Each task module registers its class
with :func:`register_task`; :mod:`openmm_backmap.train` imports them.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from ..structure import InputError

__all__ = ["Task", "TASKS", "register_task", "make_task"]

#: Registered task classes by step kind.
TASKS: dict = {}


class Task(Protocol):
    """A training task: the interface the training loop and the exporter use.

    Attributes
    ----------
    model : nn.Module
        The step being trained (eager, with ``loss`` methods).
    device : torch.device
        Where batches and validation tensors are put; the loop sets it to
        the model's device (a GPU per process with NCCL, else the CPU).
    unused_parameters_in_loss : bool, optional
        True when ``loss`` leaves some of the model's parameters out by
        construction: distributed runs then build DDP with
        ``find_unused_parameters`` (default False).

    Examples
    --------
    >>> from openmm_backmap.train.ca2aa_task import CA2AATask
    >>> isinstance(CA2AATask, type) and all(hasattr(CA2AATask, m) for m in
    ...     ("sample_batch", "loss", "validate", "export_module", "on_load", "shard"))
    True
    """

    model: nn.Module
    device: torch.device

    def sample_batch(self, rng: np.random.Generator) -> Any:
        """One training batch drawn with ``rng``."""

    def loss(self, batch) -> tuple[Tensor, dict]:
        """Scalar loss of ``batch`` and its named parts (floats)."""

    def validate(self) -> dict:
        """Validation metrics; ``val_loss`` drives early stopping and the learning rate."""

    def export_module(self) -> tuple[nn.Module, dict]:
        """The module to save (a KStepModel) and its export context (kind, sequence, topologies, metadata)."""

    def on_load(self) -> None:
        """Restore what a checkpoint does not hold (e.g. data-fitted tables) after loading one."""

    def shard(self, rank: int, world_size: int) -> None:
        """Draw batches from this rank's part of the training data only (distributed runs; optional)."""


def register_task(kind: str):
    """Class decorator registering a task for step kind ``kind``.

    Examples
    --------
    >>> @register_task("ca2cg")  # doctest: +SKIP
    ... class CA2CGTask: ...
    """

    def wrap(cls):
        TASKS[kind] = cls
        return cls

    return wrap


def make_task(cfg, train, val, summary) -> Task:
    """Build the task registered for ``cfg.kind`` from a run config and loaded data.

    Examples
    --------
    >>> task = make_task(cfg, train_set, val_set, data_summary)  # doctest: +SKIP
    """
    if cfg.kind not in TASKS:
        raise InputError(f"no training task for step kind {cfg.kind!r}; known: {sorted(TASKS)}")
    return TASKS[cfg.kind](cfg, train, val, summary)
