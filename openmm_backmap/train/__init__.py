"""Train layer: ``openmm-backmap train CONFIG.yaml``.

Each step of a k-step model is trained on its own (the ELBO of the k-step
model factorises over steps), from a typed YAML config (:mod:`.config`).
``protocol`` says what a task is and keeps the registry of tasks by step kind;
``ca2aa_task`` and ``cgvae_task`` register the built-in ones; ``loop`` is the
optimisation shared by all, ``checkpoint`` its plain-data checkpoints and
``export`` writes the trained step as a model file. May use every layer but
``cli``; nothing outside ``train`` and ``cli`` imports it.
"""

from __future__ import annotations

import json
import os

import torch

from ..structure import InputError
from . import ca2aa_task, cgvae_task  # noqa: F401  (each registers its task kind)
from .config import RunConfig, load_config
from .data import load_training_data
from .export import export_step
from .loop import train_task
from .protocol import TASKS, Task, make_task, register_task

__all__ = ["train_model", "load_config", "RunConfig", "Task", "TASKS", "register_task", "make_task", "export_step",
           "train_task", "load_training_data"]


def train_model(config, output_dir=None, resume=False, overrides=(), log=print) -> dict:
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

    Returns
    -------
    dict
        Training summary (steps, time, best validation metrics, model path),
        also written to ``run_dir/summary.json``.

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
    torch.manual_seed(cfg.seed)  # the task initialises the model: same seed, same start
    task = make_task(cfg, train_set, val_set, data_summary)
    data_summary.pop("train_weights", None)  # per-item weights: the task's business, not metadata
    summary = train_task(task, cfg, resume=resume, log=log)
    summary["data"] = data_summary
    out = cfg.output or os.path.join(cfg.run_dir, "model.pt")
    export_step(task, cfg, summary, out)
    summary["model_path"] = out
    with open(os.path.join(cfg.run_dir, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    log(f"model written to {out}")
    return summary
