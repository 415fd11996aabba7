"""Starting a distributed training run: N local processes spawned here, or one process under ``torchrun``."""

from __future__ import annotations

import json
import os
import tempfile

import torch.distributed as dist
import torch.multiprocessing as mp

from ..structure import InputError, UserError
from .config import load_config
from .distributed import init_distributed
from .pipeline import check_model_output, check_run_dir, train_model

__all__ = ["launch_training", "run_rank"]


def run_rank(config, init_method: str = "env://", **kwargs) -> dict:
    """Run this process's rank of a distributed training (``RANK``/``WORLD_SIZE`` from the environment).

    What ``torchrun --nproc_per_node N -m openmm_backmap.train CONFIG``
    runs in each process; without torchrun's environment it is a plain
    single-process run. Only rank 0 prints.

    Examples
    --------
    >>> run_rank("examples/configs/ca2aa.yaml", overrides=["optim.max_steps=5"])  # doctest: +SKIP
    """
    ctx = init_distributed(init_method)
    try:
        return train_model(config, dist=ctx, log=print if ctx.is_main else (lambda *a: None), **kwargs)
    finally:
        if ctx.active:
            dist.destroy_process_group()


def _spawned(rank, world_size, store, errors, config, kwargs):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world_size))
    try:
        run_rank(config, f"file://{store}", **kwargs)
    except UserError as err:  # the parent raises it again as the one-line error it is
        errors.put(err)
        raise


def launch_training(config, nproc: int, output_dir=None, resume=False, overrides=(), force=False) -> dict:
    """Train with ``nproc`` local processes started here (no ``torchrun`` needed); return rank 0's summary.

    Each process takes ``optim.batch_residues`` per step, so the effective
    batch is ``nproc`` times that. ``nproc=1`` is an ordinary run.

    Parameters
    ----------
    config : str
        Path of the YAML config.
    nproc : int
        Number of processes (gloo on CPUs; NCCL, one GPU each, where CUDA is available).
    output_dir, resume, overrides, force
        As for :func:`~openmm_backmap.train.train_model`.

    Examples
    --------
    >>> summary = launch_training("examples/configs/ca2aa.yaml", 2)  # doctest: +SKIP
    """
    if nproc < 1:
        raise InputError(f"--nproc must be >= 1, got {nproc}")
    kwargs = {"output_dir": output_dir, "resume": resume, "overrides": list(overrides), "force": force}
    if nproc == 1:
        return train_model(config, **kwargs)
    if not (dist.is_available() and dist.is_gloo_available()):
        raise InputError("this PyTorch build has no torch.distributed (gloo); train with --nproc 1")
    cfg = load_config(config, overrides)  # a bad config fails here, once, not in every process
    if output_dir:
        cfg.run_dir = os.path.abspath(output_dir)
        cfg.output = os.path.join(cfg.run_dir, "model.pt")
    check_model_output(cfg, resume=resume, force=force)  # so does an output that may not be replaced
    check_run_dir(cfg, resume=resume, force=force)  # or an earlier run's directory
    errors = mp.get_context("spawn").SimpleQueue()
    with tempfile.TemporaryDirectory(prefix="openmm-backmap-dist-") as tmp:
        try:
            mp.spawn(_spawned, args=(nproc, os.path.join(tmp, "store"), errors, str(config), kwargs),
                     nprocs=nproc, join=True)
        except mp.ProcessRaisedException:
            if not errors.empty():
                raise errors.get() from None
            raise
    # rank 0 wrote it; a queue could block the rank on a large summary while this process waits in join
    with open(os.path.join(cfg.run_dir, "summary.json")) as fh:
        return json.load(fh)
