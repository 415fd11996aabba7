"""k-step composition: exported step models, coarsest first, chained into one model file."""

from __future__ import annotations

import itertools
import os

import numpy as np
import torch

from ..io import check_writable
from ..structure import InputError, OutputExistsError, build_topology, residue_type_indices
from ..structure.errors import option_name
from .backmapping import load_model
from .kstep import KStepModel
from .model_file import AUTO_KEYS, save_model

__all__ = ["export_kstep", "check_step_order", "step_levels"]


def export_kstep(step_paths, output: str, force: bool = False, name: str | None = None) -> str:
    """Compose exported models, coarsest first, into one k-step model.

    The first model fixes the CG input (beads, sequence, mappings); each
    following model must accept the previous one's output (e.g. a UCG -> C-alpha
    model followed by the transferable C-alpha -> atoms model). The training
    summary, config and metrics of every part are kept under ``components``.

    Parameters
    ----------
    step_paths : list of str
        Exported models, coarsest first.
    output : str
        Path of the k-step model.
    force : bool
        Overwrite ``output``.
    name : str, optional
        Model name (default: the parts' names joined by ``+``).

    Examples
    --------
    >>> export_kstep(['runs/adk12/model.pt', 'models/ca2aa.pt'], 'models/adk-ucg12.pt')  # doctest: +SKIP
    """
    if os.path.exists(output) and not force:
        raise OutputExistsError(f"{output!r} exists; use {option_name('--force', 'force=True')} to overwrite it")
    check_writable(output, force=True)  # before the parts are loaded
    if len(step_paths) < 1:
        raise InputError("give at least one step model")
    models = [load_model(p, device="cpu") for p in step_paths]
    check_step_order(step_paths, models)
    first = models[0]
    steps = []
    for p, m in zip(step_paths, models):
        # a loaded script ModuleList cannot be indexed; its children are named "0", "1", ...
        listed = m.metadata.get("steps", [1])
        n_steps = len(listed) if isinstance(listed, list) else 0
        parts = getattr(m.module, "steps", None)
        if parts is None or not n_steps or not all(hasattr(parts, str(i)) for i in range(n_steps)):
            raise InputError(f"{p!r} has openmm-backmap metadata but is not a k-step model this package exported "
                             "(its step modules, or their list in the metadata, are missing): export it again")
        steps += [getattr(parts, str(i)) for i in range(n_steps)]
    module = KStepModel(steps, torch.as_tensor(residue_type_indices(first.sequence)) if first.sequence else None,
                        torch.as_tensor(first.segment_start) if first.sequence else None, first.n_beads)
    # the CG side (sequence, beads, levels) comes from the first part; what describes one part only
    # (its config, task, training, metrics) goes under "components"
    per_part = ("config", "task", "training", "metrics", "output_level", "input_level", "name", "kind", "steps",
                "components", "reexported", "template_geometry")
    meta = {k: v for k, v in first.metadata.items() if not k.startswith("_") and k not in AUTO_KEYS + per_part}
    meta["kind"] = "kstep"
    meta["name"] = name or "+".join(str(m.metadata.get("name") or m.kind) for m in models)
    meta["steps"] = sum((m.metadata.get("steps", []) for m in models), [])
    meta["input_level"] = first.metadata.get("input_level")
    meta["output_level"] = models[-1].output_level
    meta["components"] = [{"file": os.path.basename(p), "kind": m.kind,
                           **{k: m.metadata.get(k) for k in ("name", "config", "training", "metrics")}}
                          for p, m in zip(step_paths, models)]
    aa_top = build_topology(first.sequence, first.segment_start) if first.sequence else None
    return save_model(module, output, meta, aa_topology=aa_top, cg_topology=first.cg_topology,
                      cg_xyz=first.reference_cg_xyz, hierarchy=first.hierarchy, force=True)


def step_levels(model) -> list[tuple[str, str]]:
    """(input level, output level) of every step of a loaded model, coarsest first.

    Files written before steps recorded their levels (the shipped C-alpha
    model) get them from the step kind.

    Examples
    --------
    >>> step_levels(load_model("models/adk-ucg12.pt"))  # doctest: +SKIP
    [('ucg12', 'ca'), ('ca', 'aa')]
    """
    out = []
    for step in model.metadata.get("steps") or [{"kind": model.kind}]:
        step = step if isinstance(step, dict) else {}
        default_in = "ca" if step.get("kind") == "ca2aa" else model.metadata.get("input_level")
        out.append((str(step.get("input") or default_in or "?"), str(step.get("output") or "aa")))
    return out


def _chain_error(names, models):
    """Why the parts, in this order, do not chain (None if they do)."""
    for (a, ma), (b, mb) in zip(zip(names, models), zip(names[1:], models[1:])):
        out, into = step_levels(ma)[-1][1], step_levels(mb)[0][0]
        if out != into:
            return f"{b} takes {into!r} input but follows {a}, which outputs {out!r}"
        if not mb.transferable and ma.sequence and list(mb.sequence or []) != list(ma.sequence):
            return f"{b} was trained for another sequence than {a}"
        if out not in ("ca", "aa") and not _same_level(ma, mb, out):
            return (f"the {out!r} beads that {a} outputs are not the {out!r} beads that {b} takes (another "
                    "partition): train both steps on the same data.files with the same partition options")
    return None


def _same_level(ma, mb, level) -> bool:
    """True if both parts carry ``level`` in their hierarchies and it groups the atoms the same way.

    A UCG level between two per-system steps is a partition learned from the training frames; equal names do
    not make equal partitions, and a step fed another partition's beads would give silently wrong output.
    """
    maps = []
    for m in (ma, mb):
        h = m.hierarchy
        if h is None or level not in h.levels:
            return False
        maps.append(h.composed(level))
    x, y = maps
    return (x.n_fine == y.n_fine and x.n_beads == y.n_beads
            and all(np.array_equal(p, q) and np.allclose(v, w) for p, q, v, w in
                    zip(x.members, y.members, x.weights, y.weights)))


def check_step_order(step_paths, models) -> None:
    """Raise :class:`InputError` unless each part takes what the one before it outputs.

    Every step's input level must be the previous step's output level (e.g.
    ``ucg12 -> ca`` then ``ca -> aa``) and per-system parts must share one
    sequence. The message names an order of the same files that would
    chain, when there is one.

    Parameters
    ----------
    step_paths : list of str
    models : list of Backmapper
        The loaded parts, in the order of ``step_paths``.

    Examples
    --------
    >>> paths = ["models/ca2aa.pt", "runs/adk12/model.pt"]  # doctest: +SKIP
    >>> check_step_order(paths, [load_model(p) for p in paths])  # doctest: +SKIP
    Traceback (most recent call last):
    openmm_backmap.structure.errors.InputError: steps in the wrong order: ...
    """
    names = [os.path.basename(os.fspath(p)) for p in step_paths]
    for name, m in zip(names, models):
        levels = step_levels(m)
        for (_, out), (into, _) in zip(levels, levels[1:]):
            if out != into:
                raise InputError(f"{name}: its own steps do not chain ({out!r} output into {into!r} input)")
    why = _chain_error(names, models)
    if why is None:
        return
    order = None
    if len(models) <= 6:  # 720 orders at most, each checked from metadata only
        order = next((p for p in itertools.permutations(range(len(models)))
                      if _chain_error([names[i] for i in p], [models[i] for i in p]) is None), None)
    if order is not None:
        raise InputError(f"steps in the wrong order: {why}; give them coarsest first: "
                         f"{' '.join(os.fspath(step_paths[i]) for i in order)}")
    chain = ", ".join(f"{n} ({' -> '.join([step_levels(m)[0][0]] + [o for _, o in step_levels(m)])})"
                      for n, m in zip(names, models))
    raise InputError(f"these steps do not chain in any order: {why} (levels: {chain})")
