"""Training targets of the C-alpha step: the internal coordinates of reference structures.

Eager code, used by :meth:`~openmm_backmap.model.steps.ca2aa.CA2AA.loss` and ``rebuild``; the exported model
never calls it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..geometry import dihedral, take_residues
from .ca2aa_templates import MAX_ATOMS

__all__ = ["reference_angles"]


def reference_angles(step, xyz: Tensor, mask: Tensor, types: Tensor, valid: Tensor, seg_start: Tensor) -> dict:
    """The angles the step predicts, measured on reference structures, and where they are defined.

    ``xyz`` (B, R, 14, 3) residue slots in Å with ``mask`` (B, R, 14) of present atoms; ``types``, ``valid`` and
    ``seg_start`` (B, R). Returns the backbone angles ``bb`` (theta, N-terminal psi, C-terminal phi, O torsion)
    and ``chi`` (B, R, 4), each with its ``ok_`` mask, and the step's frames and segment flags. Training only.
    """
    ca = xyz[:, :, 1]
    frames, _, _, _, has_next, has_prev = step._graph(ca, types, valid, seg_start)
    b, r = types.shape
    idx = torch.arange(r, device=xyz.device).unsqueeze(0).expand(b, -1)
    nxt = (idx + 1).clamp(max=r - 1)
    g = take_residues
    n, c, o = xyz[:, :, 0], xyz[:, :, 2], xyz[:, :, 3]
    ca_next = g(ca, nxt)
    n_next = g(n, nxt)
    cis = (torch.linalg.vector_norm(ca_next - ca, dim=-1) < step.cis_ca_distance).unsqueeze(-1).unsqueeze(-1)
    unit = torch.where(cis, step.unit_cis, step.unit_trans)
    pts = torch.stack([c - ca, o - ca, n_next - ca_next], dim=2)
    loc = torch.einsum("brij,brkj->brki", frames, pts)
    loc = torch.cat([loc[:, :, :2], (loc[:, :, 2] + unit[:, :, 3]).unsqueeze(2)], dim=2)
    y0 = unit[:, :, :3, 1]
    theta = torch.atan2((y0 * loc[..., 2]).sum(-1), (y0 * loc[..., 1]).sum(-1))
    m = mask
    m_next = m.gather(1, nxt.unsqueeze(-1).expand(-1, -1, MAX_ATOMS))
    ok_theta = has_next & m[..., 1] & m[..., 2] & m[..., 3] & m_next[..., 0]
    psi_n = dihedral(n, ca, c, n_next)
    ok_psi = has_next & ~has_prev & m[..., 0] & m[..., 2] & m_next[..., 0]
    prv = (idx - 1).clamp(min=0)
    c_prev = g(c, prv)
    phi_c = dihedral(c_prev, n, ca, c)
    m_prev = m.gather(1, prv.unsqueeze(-1).expand(-1, -1, MAX_ATOMS))
    ok_phi = has_prev & ~has_next & m[..., 0] & m[..., 2] & m_prev[..., 2]
    om = dihedral(n, ca, c, o)
    ok_om = has_prev & ~has_next & m[..., 0] & m[..., 2] & m[..., 3]
    cd = step.chi_def[types]  # (B, R, 4, 4)
    pos = [xyz.gather(2, cd[..., j].unsqueeze(-1).expand(-1, -1, -1, 3)) for j in range(4)]
    chi = dihedral(pos[0], pos[1], pos[2], pos[3])
    mk = [m.gather(2, cd[..., j]) for j in range(4)]
    ok_chi = step.chi_valid[types] & mk[0] & mk[1] & mk[2] & mk[3] & valid.unsqueeze(-1)
    bb = torch.stack([theta, psi_n, phi_c, om], dim=-1)
    ok_bb = torch.stack([ok_theta, ok_psi, ok_phi, ok_om], dim=-1)
    return {"bb": torch.nan_to_num(bb), "ok_bb": ok_bb, "chi": torch.nan_to_num(chi), "ok_chi": ok_chi,
            "frames": frames, "has_next": has_next, "has_prev": has_prev}
