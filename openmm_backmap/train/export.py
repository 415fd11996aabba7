"""Export of a trained step: its TorchScript module, the run's config and training summary in one model file."""

from __future__ import annotations

from dataclasses import asdict

from ..model import save_model
from .protocol import Task

__all__ = ["export_step"]


def export_step(task: Task, cfg, summary: dict, path: str) -> str:
    """Write the trained step of ``task`` as a model file (called at the end of training).

    A transferable step (C-alpha -> atoms) becomes a model on its own; a
    per-system step is exported with its context (sequence, mappings, CG
    reference) and can be composed with others by
    :func:`~openmm_backmap.model.export_kstep`.

    Parameters
    ----------
    task : Task
        The trained task (its :meth:`~Task.export_module` gives module and context).
    cfg : RunConfig
        The run's resolved config (stored in the metadata).
    summary : dict
        Training summary (stored under ``training``).
    path : str
        Model file to write.

    Returns
    -------
    str
        The model file, loadable with :func:`openmm_backmap.load_model`.

    Examples
    --------
    >>> export_step(task, cfg, {"steps": 3}, "runs/trp/model.pt")  # doctest: +SKIP
    'runs/trp/model.pt'
    """
    module, context = task.export_module()
    meta = {"kind": context.pop("kind", cfg.kind), "name": cfg.name or cfg.kind,
            "transferable": context.get("sequence") is None,
            "steps": [{"kind": cfg.kind, "config": cfg.model, **context.pop("step_meta", {})}],
            "config": asdict(cfg), "training": summary, **context.pop("metadata", {})}
    for key in ("sequence", "segment_start", "n_beads", "levels"):
        if key in context:
            meta[key] = context[key]
    return save_model(module, path, meta, aa_topology=context.get("aa_topology"),
                      cg_topology=context.get("cg_topology"), cg_xyz=context.get("cg_xyz"),
                      hierarchy=context.get("hierarchy"))
