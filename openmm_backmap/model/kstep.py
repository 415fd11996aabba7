"""The exported network: a chain of steps, coarsest first, behind one TorchScript signature."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["KStepModel"]


class KStepModel(nn.Module):
    """Chain of steps, coarsest first, behind the one exported signature.

    Each step is a module ``step(x_nm, residue_types, segment_start, seed, temperature) -> finer_nm``.

    Parameters
    ----------
    steps : list of nn.Module
    residue_types, segment_start : Tensor, optional
        Embedded sequence context (per-system models); ``None`` for a
        transferable model that takes the sequence at call time.
    n_beads : int
        Number of CG particles expected (0 = any, for transferable models).

    Examples
    --------
    >>> from openmm_backmap.model.steps import CA2AA, CA2AAConfig
    >>> model = torch.jit.script(KStepModel([CA2AA(CA2AAConfig(hidden=16, layers=1))]))
    >>> xyz = model(torch.randn(1, 4, 3).cumsum(1) * 0.38, torch.tensor([0, 7, 7, 0]),
    ...             torch.tensor([True, False, False, False]), 1, 2, 1.0)
    >>> xyz.shape
    torch.Size([2, 18, 3])
    """

    def __init__(self, steps, residue_types: Tensor | None = None, segment_start: Tensor | None = None,
                 n_beads: int = 0):
        super().__init__()
        self.steps = nn.ModuleList(steps)
        self.register_buffer("residue_types", torch.as_tensor(
            residue_types if residue_types is not None else torch.zeros(0), dtype=torch.int64))
        self.register_buffer("segment_start", torch.as_tensor(
            segment_start if segment_start is not None else torch.zeros(0), dtype=torch.bool))
        self.n_beads = int(n_beads)

    def forward(self, cg_xyz: Tensor, residue_types: Tensor, segment_start: Tensor, seed: int, samples: int,
                temperature: float) -> Tensor:
        if cg_xyz.dim() != 3 or cg_xyz.shape[2] != 3:
            raise RuntimeError("cg_xyz must have shape [frames, beads, 3] (nm)")
        if self.n_beads > 0 and cg_xyz.shape[1] != self.n_beads:
            raise RuntimeError("cg_xyz has " + str(cg_xyz.shape[1]) + " beads; this model expects "
                               + str(self.n_beads))
        types = residue_types
        seg = segment_start
        if types.numel() == 0:
            types = self.residue_types
            seg = self.segment_start
        if types.numel() == 0:
            raise RuntimeError("this model is transferable: pass residue_types and segment_start")
        if seg.numel() == 0:
            seg = torch.zeros_like(types, dtype=torch.bool)
            seg[0] = True
        x = cg_xyz.to(torch.float32)
        if samples > 1:
            x = x.repeat_interleave(samples, dim=0)
        i = 0
        for step in self.steps:
            x = step(x, types.to(x.device), seg.to(x.device), seed * 1000003 + 7919 * i, temperature)
            i += 1
        return x
