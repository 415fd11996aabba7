"""k-step composition: exported step models, coarsest first, chained into one model file."""

from __future__ import annotations

import os

import torch

from ..structure import InputError, OutputExistsError, build_topology, residue_type_indices
from .backmapping import load_model
from .kstep import KStepModel
from .model_file import AUTO_KEYS, save_model

__all__ = ["export_kstep"]


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
        raise OutputExistsError(f"{output!r} exists; use --force to overwrite")
    if len(step_paths) < 1:
        raise InputError("give at least one step model")
    models = [load_model(p, device="cpu") for p in step_paths]
    first = models[0]
    steps = []
    for m in models:
        # a loaded script ModuleList cannot be indexed; its children are named "0", "1", ...
        steps += [getattr(m.module.steps, str(i)) for i in range(len(m.metadata.get("steps", [1])))]
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
