"""One training run from a config: data, task, (distributed) optimisation, export."""

from __future__ import annotations

import json
import os

import torch

from ..io import check_writable
from ..structure import InputError, OutputExistsError
from ..structure.errors import option_name
from .config import RunConfig, load_config
from .data import load_training_data
from .distributed import SINGLE_PROCESS, DistContext
from .export import export_step
from .loop import RUN_FILES, train_task
from .protocol import make_task

__all__ = ["train_model", "check_model_output", "check_run_dir"]


def _own_model(run_dir) -> str | None:
    """The model file the run in ``run_dir`` exported when it last finished (its ``summary.json``), or None."""
    try:
        with open(os.path.join(run_dir, "summary.json")) as fh:
            path = json.load(fh).get("model_path")
    except (OSError, ValueError, AttributeError):
        return None
    return os.path.abspath(path) if path else None


def check_model_output(cfg: RunConfig, resume=False, force=False) -> str:
    """The model file a run of ``cfg`` writes at its end, checked before any work: the rule of every output.

    An existing file is replaced only with ``force``, with one exception:
    ``resume`` continues a run, and may replace the model that same run
    exported when it last finished (the file its ``run_dir/summary.json``
    names), e.g. after ``--resume --set optim.max_steps=...``. A run that
    stopped before its end exported nothing, so its resume replaces nothing.

    Raises
    ------
    OutputExistsError
        The model file exists and may not be replaced.

    Examples
    --------
    >>> from openmm_backmap.train.config import RunConfig
    >>> check_model_output(RunConfig(run_dir="/nonexistent/run", output="/nonexistent/run/model.pt"))
    '/nonexistent/run/model.pt'
    """
    out = cfg.output or os.path.join(cfg.run_dir, "model.pt")
    own = resume and _own_model(cfg.run_dir) == os.path.abspath(out)
    if os.path.exists(out) and not (force or own):
        how = (" (--resume replaces only the model its own run wrote)" if resume else "")
        raise OutputExistsError(f"{out} already exists; use {option_name('--force', 'force=True')} to overwrite it, "
                                f"or write the run elsewhere ({option_name('-o RUN_DIR', 'output_dir=')}){how}")
    return check_writable(out, force=True)  # directories and permissions


def check_run_dir(cfg: RunConfig, resume=False, force=False) -> None:
    """Refuse a fresh run in a run directory that holds an earlier run's files, before any work.

    ``run_dir`` with an earlier run's ``config.yaml``, ``log.csv``,
    checkpoints or ``summary.json`` is continued with ``resume`` or replaced
    with ``force``; even then nothing there changes until the new run has
    trained (see :func:`~openmm_backmap.train.loop.train_task`).

    Raises
    ------
    OutputExistsError
        A fresh run without ``force`` would replace an earlier run's files.

    Examples
    --------
    >>> from openmm_backmap.train.config import RunConfig
    >>> check_run_dir(RunConfig(run_dir="/nonexistent/run"))
    """
    if resume or force:
        return
    earlier = [name for name in RUN_FILES if os.path.exists(os.path.join(cfg.run_dir, name))]
    if earlier:
        raise OutputExistsError(
            f"{cfg.run_dir} holds an earlier training run ({', '.join(earlier)}); continue it with "
            f"{option_name('--resume', 'resume=True')}, replace it with {option_name('--force', 'force=True')}, "
            f"or write this run elsewhere ({option_name('-o RUN_DIR', 'output_dir=')})")


def train_model(config, output_dir=None, resume=False, overrides=(), log=print,
                dist: DistContext = SINGLE_PROCESS, force=False) -> dict:
    """Train one step from a YAML config and export it.

    Parameters
    ----------
    config : str or RunConfig
        Path of the YAML config (or a loaded config).
    output_dir : str, optional
        Run directory (overrides ``run_dir`` of the config).
    resume : bool
        Continue from ``run_dir/last.pt``; may replace the model this run
        exported before (see :func:`check_model_output`).
    overrides : list of str
        ``key.sub=value`` overrides applied to the YAML.
    force : bool
        Replace an existing model file at the config's ``output`` and an
        earlier run's files in ``run_dir`` (both checked before any work;
        the earlier run's files are replaced only once this run has trained).
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
    out = check_model_output(cfg, resume=resume, force=force)
    check_run_dir(cfg, resume=resume, force=force)
    train_set, val_set, data_summary = load_training_data(cfg.data, log=log)
    if not train_set or not val_set:
        raise InputError("training needs both training and validation data; add files or change "
                         "data.validation_fraction")
    torch.manual_seed(cfg.seed)  # the task initialises the model: same seed, same start (on every rank too)
    if dist.is_main:  # mappings, partitions and features are built here: long for big data sets
        log(f"{cfg.kind}: preparing the model and its training data")
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
    export_step(task, cfg, summary, out)
    summary["model_path"] = out
    with open(os.path.join(cfg.run_dir, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    log(f"model written to {out}")
    return summary
