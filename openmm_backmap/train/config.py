"""Typed training configs loaded from YAML; unknown keys are rejected."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..structure import InputError, MissingFileError

__all__ = ["DataConfig", "OptimConfig", "RunConfig", "load_config", "from_dict"]


@dataclass
class DataConfig:
    """Which files to train on.

    Attributes
    ----------
    root : str
        Directory the file patterns are relative to (relative paths in the
        YAML are taken relative to the YAML file).
    files : list of str
        Glob patterns of structures/trajectories; a trajectory is written as
        ``"traj.xtc:top.pdb"``.
    stride : int
        Keep every stride-th frame of trajectories and ensembles.
    max_frames : int
        At most this many frames per file (0 = all).
    validation_fraction : float
        Fraction of files (single structures) and of frames (ensembles, taken
        from the end) held out for validation.
    corpus : str
        A corpus manifest (``manifest.csv``, relative to ``root``) to train on
        as well, split by sequence cluster (see :mod:`.corpus`). Empty: none.
    corpus_fraction : float
        Fraction of the corpus's training clusters used (data-size ablations).
    corpus_validation_fraction : float
        Fraction of the corpus's clusters held out for validation.
    cache_dir : str
        Where parsed corpus files are cached (relative paths in the YAML are
        taken relative to the YAML file). Empty: ``~/.cache/openmm-backmap``.
    """

    root: str = "."
    files: list = field(default_factory=list)
    stride: int = 1
    max_frames: int = 0
    validation_fraction: float = 0.1
    corpus: str = ""
    corpus_fraction: float = 1.0
    corpus_validation_fraction: float = 0.05
    cache_dir: str = ""


@dataclass
class OptimConfig:
    """Optimisation settings.

    ``batch_residues`` is per process: a run with N processes (``--nproc N``
    or torchrun) takes N times as many residues per step. ``check_sync_every``:
    in such a run, every this many steps all processes compare a digest of
    their weights, written to ``run_dir/sync.csv``, and stop if they differ
    (0 = never).
    """

    lr: float = 1e-3
    weight_decay: float = 0.0
    max_steps: int = 20000
    time_limit_min: float = 120.0
    batch_residues: int = 2048
    grad_accumulation: int = 1
    validate_every: int = 250
    patience: int = 8
    lr_factor: float = 0.5
    lr_patience: int = 3
    min_lr: float = 1e-5
    clip_grad: float = 5.0
    threads: int = 0
    check_sync_every: int = 0


@dataclass
class RunConfig:
    """A whole training run: one step of a k-step model.

    Attributes
    ----------
    kind : str
        Step kind (a key of :data:`openmm_backmap.model.steps.STEP_KINDS`).
    model : dict
        Hyper-parameters of the step (checked against its config dataclass).
    task : dict
        Kind-specific training options (noise, mapping, ...).
    data : DataConfig
    optim : OptimConfig
    seed : int
    run_dir : str
        Where checkpoints, logs and the resolved config go.
    output : str
        Where the exported model is written (empty: ``run_dir/model.pt``).
    init : str
        An exported model of the same kind to start from (fine-tuning, e.g.
        the transferable C-alpha model on one system's trajectories); its
        hyper-parameters replace ``model``. Empty: train from scratch.
    """

    kind: str = "ca2aa"
    model: dict = field(default_factory=dict)
    task: dict = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    run_dir: str = "runs/run"
    output: str = ""
    name: str = ""
    init: str = ""


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys with a clear message."""
    if not isinstance(data, dict):
        raise InputError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise InputError(f"unknown key(s) {unknown} in {where or 'config'}; allowed: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            value = from_dict(tp, value or {}, f"{where}.{key}" if where else key)
        elif tp is float and isinstance(value, int):
            value = float(value)
        elif tp in (int, float, str, bool) and not isinstance(value, tp):
            raise InputError(f"{where + '.' if where else ''}{key}: expected {tp.__name__}, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def _apply_override(data: dict, item: str):
    if "=" not in item:
        raise InputError(f"override {item!r} must look like key.sub=value")
    key, value = item.split("=", 1)
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise InputError(f"override {item!r}: the value cannot be read as YAML: {_yaml_problem(err)}") from None


def _yaml_problem(err) -> str:
    """One line for a yaml error: what went wrong and where (lines and columns 1-based, where yaml gives them)."""
    def at(mark):
        return f"line {mark.line + 1}, column {mark.column + 1}"

    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark, context = getattr(err, "problem_mark", None), getattr(err, "context", None)
    context_mark = getattr(err, "context_mark", None)
    text = f"{at(mark)}: {problem}" if mark is not None else problem
    if context:
        text += f" ({context}" + (f" started at {at(context_mark)}" if context_mark is not None else "") + ")"
    if isinstance(err, yaml.constructor.ConstructorError):
        text += "; a config holds plain values only (no !!python tags)"
    return text


def load_config(path, overrides=()) -> RunConfig:
    """Load a :class:`RunConfig` from YAML, applying ``key=value`` overrides.

    Relative ``data.root``, ``run_dir``, ``output`` and ``init`` paths are
    resolved against the directory of the YAML file.

    Examples
    --------
    >>> cfg = load_config('examples/configs/ca2aa.yaml', ['optim.max_steps=10'])  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:  # a syntax error, or a tag safe_load will not construct (!!python/object ...)
        raise InputError(f"config file {str(path)!r} cannot be read as YAML: {_yaml_problem(err)}") from None
    for item in overrides:
        _apply_override(data, item)
    cfg = from_dict(RunConfig, data)
    base = path.resolve().parent
    cfg.data.root = str((base / cfg.data.root).resolve())
    cfg.run_dir = str((base / cfg.run_dir).resolve())
    if cfg.output:
        cfg.output = str((base / cfg.output).resolve())
    if cfg.init:
        cfg.init = str((base / cfg.init).resolve())
    if cfg.data.cache_dir:
        cfg.data.cache_dir = str((base / cfg.data.cache_dir).resolve())
    return cfg
