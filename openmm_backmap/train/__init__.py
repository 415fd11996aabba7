"""Train layer: ``openmm-backmap train CONFIG.yaml``.

Each step of a k-step model is trained on its own (the ELBO of the k-step
model factorises over steps), from a typed YAML config (:mod:`.config`).
``protocol`` says what a task is and keeps the registry of tasks by step kind;
``ca2aa_task``, ``bead2aa_task`` and ``cgvae_task`` register the built-in ones; ``pipeline``
runs one training from a config; ``loop`` is the optimisation shared by all,
``checkpoint`` its plain-data checkpoints, ``distributed`` its data-parallel
parts over processes (``launch`` starts them, or ``torchrun -m
openmm_backmap.train``) and ``export`` writes the trained step as a model
file. May use every layer but ``cli``; nothing outside ``train`` and ``cli``
imports it.
"""

from __future__ import annotations

from . import bead2aa_task, ca2aa_task, cgvae_task  # noqa: F401  (each registers its task kind)
from .config import RunConfig, load_config
from .data import load_training_data
from .distributed import DistContext, init_distributed
from .export import export_step
from .launch import launch_training
from .loop import train_task
from .pipeline import train_model
from .protocol import TASKS, Task, make_task, register_task

__all__ = ["train_model", "launch_training", "load_config", "RunConfig", "Task", "TASKS", "register_task",
           "make_task", "export_step", "train_task", "load_training_data", "DistContext", "init_distributed"]
