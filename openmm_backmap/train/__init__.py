"""Training pipeline: ``openmm-backmap train CONFIG.yaml``.

Each step of a k-step model is trained on its own (the ELBO of the k-step
model factorises over steps), from a typed YAML config.
"""

from __future__ import annotations

import json
import os

from .config import RunConfig, load_config
from ..structure.errors import InputError

__all__ = ["train_model", "load_config", "RunConfig"]


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
        Training summary (steps, time, best validation metrics, model path).

    Examples
    --------
    >>> train_model('examples/configs/ca2aa.yaml', overrides=['optim.max_steps=5'])  # doctest: +SKIP
    """
    from .data import load_training_data
    from .loop import train_task
    from .tasks import make_task

    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
    if output_dir:  # a separate run: keep its model in its own directory too
        cfg.run_dir = os.path.abspath(output_dir)
        cfg.output = os.path.join(cfg.run_dir, "model.pt")
    train_set, val_set, data_summary = load_training_data(cfg.data, log=log)
    if not train_set or not val_set:
        raise InputError("training needs both training and validation data; add files or change "
                         "data.validation_fraction")
    task = make_task(cfg, train_set, val_set, data_summary)
    summary = train_task(task, cfg, resume=resume, log=log)
    summary["data"] = data_summary
    from ..model.backmapping import export_step  # noqa: E402  (kept late: heavy and only needed here)

    out = cfg.output or os.path.join(cfg.run_dir, "model.pt")
    export_step(task, cfg, summary, out)
    summary["model_path"] = out
    with open(os.path.join(cfg.run_dir, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    log(f"model written to {out}")
    return summary
