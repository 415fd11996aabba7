"""Data-parallel training over processes with ``torch.distributed``: process group, data shards, rank RNGs.

Every process (rank) builds the same task from the same data and seed, wraps
its model in :class:`~torch.nn.parallel.DistributedDataParallel` (which
broadcasts rank 0's weights at the start and averages gradients in every
step), and draws its batches from its own shard of the training data with
its own random streams. The effective batch is therefore ``world_size x
optim.batch_residues``. Validation, logging, early stopping and checkpoints
stay on rank 0 (see :mod:`.loop`); rank 0 broadcasts every decision that
depends on them or on its clock, so all ranks take the same one.

Two ways in: ``torchrun --nproc_per_node N -m openmm_backmap.train CONFIG``
(the process group comes from torchrun's environment) or
:func:`~openmm_backmap.train.launch.launch_training` (``openmm-backmap train
CONFIG --nproc N``), which starts the N processes itself. gloo on CPUs; NCCL, one GPU per process, where
CUDA is available.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..structure import InputError
from .checkpoint import restore_rng, rng_state

__all__ = ["DistContext", "SINGLE_PROCESS", "init_distributed", "shard_items", "rank_generators", "agree",
           "mean_over_ranks", "wrap_model", "weights_digest", "gather_objects", "rank_rng_state",
           "restore_rank_rng"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a distributed run.

    Attributes
    ----------
    rank, world_size, local_rank : int
        This process, all processes, this process on its machine.
    device : torch.device
        Where this rank trains: ``cuda:local_rank`` with NCCL, else the CPU.

    Examples
    --------
    >>> SINGLE_PROCESS.world_size, SINGLE_PROCESS.is_main
    (1, True)
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates, logs and writes checkpoints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process: collectives are needed."""
        return self.world_size > 1


#: A plain single-process run.
SINGLE_PROCESS = DistContext()


def init_distributed(init_method: str = "env://") -> DistContext:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Without ``WORLD_SIZE`` (or with 1) nothing is initialised and
    :data:`SINGLE_PROCESS` comes back: ``python -m openmm_backmap.train``
    without torchrun is an ordinary run. NCCL with one GPU per local rank
    where CUDA is available, gloo otherwise.

    Examples
    --------
    >>> init_distributed().world_size  # not under torchrun
    1
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE_PROCESS
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and dist.is_nccl_available():
        backend, device = "nccl", torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        backend, device = "gloo", torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, device)


def shard_items(groups, weights, n_frames, rank: int, world_size: int) -> list:
    """This rank's part of the training items: whole groups, or contiguous frame blocks when groups are too few.

    Groups are corpus clusters or files. They are dealt to the ranks
    heaviest first, each to the rank with the least weight so far, so every
    rank samples from about the same share of the data and a cluster never
    spans two ranks. With fewer groups than ranks, each item's frames are
    cut into ``world_size`` contiguous blocks (neighbouring frames of a
    trajectory are alike, so blocks keep them together) and rank r takes block r.

    Parameters
    ----------
    groups : list
        Group key of each item.
    weights : sequence of float
        Sampling weight of each item.
    n_frames : sequence of int
        Frames of each item.

    Returns
    -------
    list of (int, ndarray)
        Item index and the frame indices of it this rank trains on.

    Raises
    ------
    InputError
        Some rank would get no data.

    Examples
    --------
    >>> groups, weights = ["c1", "c1", "c2", "c3"], [0.5, 0.5, 1, 2]
    >>> [[i for i, _ in shard_items(groups, weights, [1, 1, 1, 1], r, 2)] for r in (0, 1)]
    [[3], [0, 1, 2]]
    >>> [f.tolist() for _, f in shard_items(["traj"], [1.0], [5], 1, 2)]
    [[3, 4]]
    """
    keys = list(dict.fromkeys(groups))
    if len(keys) >= world_size:
        load = dict.fromkeys(keys, 0.0)
        for g, w in zip(groups, weights):
            load[g] += float(w)
        totals, owner = np.zeros(world_size), {}
        for key in sorted(keys, key=lambda k: -load[k]):  # stable: ties keep first-appearance order
            owner[key] = int(np.argmin(totals))
            totals[owner[key]] += load[key]
        shards = [[(i, np.arange(n)) for i, (g, n) in enumerate(zip(groups, n_frames)) if owner[g] == r]
                  for r in range(world_size)]
    else:
        shards = [[(i, b) for i, n in enumerate(n_frames) if len(b := np.array_split(np.arange(n), world_size)[r])]
                  for r in range(world_size)]
    if not all(shards):  # checked on every rank, so all of them stop rather than wait for the empty one
        raise InputError(f"{world_size} processes need at least {world_size} training files, corpus clusters or "
                         f"frames per file, but the data have {len(keys)} group(s) of {max(n_frames, default=0)} "
                         "frame(s) at most; use fewer processes or more data")
    return shards[rank]


def rank_generators(seed: int, ctx: DistContext) -> np.random.Generator:
    """Seed torch and return the numpy generator of this rank; a single process keeps ``seed`` itself.

    Rank streams come from ``SeedSequence([seed, rank])``: independent of
    each other and reproducible from the seed alone.

    Examples
    --------
    >>> a = rank_generators(3, DistContext(0, 2)).random()
    >>> b = rank_generators(3, DistContext(1, 2)).random()
    >>> a != b and rank_generators(3, DistContext(1, 2)).random() == b
    True
    """
    if not ctx.active:
        torch.manual_seed(seed)
        return np.random.default_rng(seed)
    seq = np.random.SeedSequence([seed, ctx.rank])
    torch.manual_seed(int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return np.random.default_rng(seq)


def agree(ctx: DistContext, *values: float) -> list:
    """Rank 0's ``values`` on every rank (its clock, its validation loss), so all ranks decide alike.

    Examples
    --------
    >>> agree(SINGLE_PROCESS, 1.5, 2.0)
    [1.5, 2.0]
    """
    if not ctx.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.broadcast(t, src=0)
    return t.tolist()


def mean_over_ranks(ctx: DistContext, value: float) -> float:
    """The mean of ``value`` over all ranks (the logged training loss).

    Examples
    --------
    >>> mean_over_ranks(SINGLE_PROCESS, 0.25)
    0.25
    """
    if not ctx.active:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t) / ctx.world_size


def gather_objects(ctx: DistContext, obj) -> list:
    """``obj`` of every rank, in rank order, on every rank.

    Examples
    --------
    >>> gather_objects(SINGLE_PROCESS, {"step": 1})
    [{'step': 1}]
    """
    if not ctx.active:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


class _TaskLoss(nn.Module):
    """The task's loss as a module ``forward``: DDP synchronises gradients of what runs through ``forward``, and
    the tasks compute their losses with the model's ``loss`` methods, not its ``forward``."""

    def __init__(self, task):
        super().__init__()
        self.model = task.model
        self._loss = task.loss

    def forward(self, batch):
        return self._loss(batch)


def wrap_model(task, ctx: DistContext):
    """A callable ``batch -> (loss, parts)`` whose backward averages gradients over ranks, and its ``no_sync``.

    DDP broadcasts rank 0's parameters and buffers when it is built, so
    every rank starts from the same weights; ``no_sync()`` skips the
    all-reduce on gradient-accumulation steps that are not the last.

    A task whose loss leaves some of its model's parameters out by
    construction says so with ``task.unused_parameters_in_loss = True``
    (the cgvae task): DDP then looks for them in every step
    (``find_unused_parameters``), at the cost of one graph traversal, instead
    of failing in the second step. Other tasks keep the cheaper default.

    Examples
    --------
    >>> step, no_sync = wrap_model(task, SINGLE_PROCESS)  # doctest: +SKIP
    """
    if not ctx.active:
        from contextlib import nullcontext

        return task.loss, nullcontext
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # Parameters that never enter the loss get no gradient; without find_unused_parameters DDP waits for them and
    # stops the next step ("parameters that were not used in producing loss"). With it, DDP leaves a parameter
    # that no rank used without a gradient (None), as a single process does, so the optimiser skips it alike.
    find_unused = bool(getattr(task, "unused_parameters_in_loss", False))
    ddp = nn.parallel.DistributedDataParallel(_TaskLoss(task), device_ids=ids, find_unused_parameters=find_unused)
    return ddp, ddp.no_sync


def weights_digest(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of the parameters' bytes: equal on all ranks while they are in sync.

    Examples
    --------
    >>> m = nn.Linear(2, 1)
    >>> weights_digest(m) == weights_digest(m), len(weights_digest(m))
    (True, 16)
    """
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def rank_rng_state(rng: np.random.Generator, ctx: DistContext) -> dict:
    """This rank's random states (torch, numpy, and its GPU's) for a checkpoint.

    Examples
    --------
    >>> sorted(rank_rng_state(np.random.default_rng(0), SINGLE_PROCESS))
    ['numpy_rng', 'torch_rng']
    """
    state = rng_state(rng)
    if ctx.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(ctx.device)
    return state


def restore_rank_rng(ck: dict, ctx: DistContext, path: str) -> np.random.Generator:
    """Restore this rank's random states from a checkpoint; the process count must be the one that wrote it.

    Raises
    ------
    InputError
        The checkpoint was written by another number of processes: its data
        shards and random streams do not exist in this run.

    Examples
    --------
    >>> rng = restore_rank_rng(ck, ctx, "run/last.pt")  # doctest: +SKIP
    """
    written = int(ck.get("world_size", 1))
    if written != ctx.world_size:
        raise InputError(f"{path!r} was written by {written} training process(es), this run has {ctx.world_size}; "
                         f"resume with {written} (--nproc {written} or torchrun --nproc_per_node {written})")
    state = ck["rank_rngs"][ctx.rank] if ctx.active else ck
    rng = restore_rng(state, path)
    if "cuda_rng" in state and ctx.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], ctx.device)
    return rng
