"""One training run from a config: data, task, (distributed) optimisation, export."""

from __future__ import annotations

import json
import os

import torch

from ..structure import InputError
from .config import RunConfig, load_config
from .data import load_training_data
from .distributed import SINGLE_PROCESS, DistContext
from .export import export_step
from .loop import train_task
from .protocol import make_task

__all__ = ["train_model"]


def train_model(config, output_dir=None, resume=False, overrides=(), log=print,
                dist: DistContext = SINGLE_PROCESS) -> dict:
    """Train one step from a YAML config and export it.

    Parameters
    ----------
    config : str or RunConfig
        Path of the YAML config (or a loaded config).
    output_dir : str, optional
        Run directory (overrides ``run_dir`` of the config).
    resume : bool
        Continue from ``run_dir/last.pt``.
    overrides : list of str
        ``key.sub=value`` overrides applied to the YAML.
    dist : DistContext
        This process's place in a distributed run (see
        :mod:`openmm_backmap.train.distributed`); each rank trains on its own
        shard of the training data, rank 0 validates and exports.

    Returns
    -------
    dict
        Training summary (steps, time, best validation metrics, model path),
        also written to ``run_dir/summary.json``. Ranks other than 0 return
        the summary of the optimisation only.

    Examples
    --------
    >>> train_model('examples/configs/ca2aa.yaml', overrides=['optim.max_steps=5'])  # doctest: +SKIP
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
    if output_dir:  # a separate run: keep its model in its own directory too
        cfg.run_dir = os.path.abspath(output_dir)
        cfg.output = os.path.join(cfg.run_dir, "model.pt")
    train_set, val_set, data_summary = load_training_data(cfg.data, log=log)
    if not train_set or not val_set:
        raise InputError("training needs both training and validation data; add files or change "
                         "data.validation_fraction")
    torch.manual_seed(cfg.seed)  # the task initialises the model: same seed, same start (on every rank too)
    task = make_task(cfg, train_set, val_set, data_summary)
    for key in ("train_weights", "train_groups"):  # per-item sampling data: the task's business, not metadata
        data_summary.pop(key, None)
    if dist.active:
        if not hasattr(task, "shard"):
            raise InputError(f"the {cfg.kind!r} task cannot train on several processes (it has no shard method); "
                             "train it in one process")
        task.shard(dist.rank, dist.world_size)
    summary = train_task(task, cfg, resume=resume, log=log, dist=dist)
    if not dist.is_main:
        return summary
    summary["data"] = data_summary
    out = cfg.output or os.path.join(cfg.run_dir, "model.pt")
    export_step(task, cfg, summary, out)
    summary["model_path"] = out
    with open(os.path.join(cfg.run_dir, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    log(f"model written to {out}")
    return summary
