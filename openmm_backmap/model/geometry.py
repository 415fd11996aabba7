"""Internal coordinates, local frames and reproducible noise, in TorchScript-able torch.

Conventions: functions here work in whatever length unit they are given
(the models use Å internally and nm at their boundaries); angles in radians;
dihedrals follow the IUPAC sign convention.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["dihedral", "bond_angle", "place_atom", "take_residues", "local_frames", "ideal_cb", "hash_uniform",
           "hash_normal", "wrap_angle"]


def wrap_angle(x: Tensor) -> Tensor:
    """Wrap angles to (-pi, pi]."""
    return torch.atan2(torch.sin(x), torch.cos(x))


def dihedral(p0: Tensor, p1: Tensor, p2: Tensor, p3: Tensor) -> Tensor:
    """Dihedral angle p0-p1-p2-p3 in radians (IUPAC sign), over leading dimensions.

    Examples
    --------
    >>> import torch
    >>> p = torch.tensor([[1., 0, 0], [0, 0, 0], [0, 1, 0], [0, 1, 1]])
    >>> round(float(dihedral(*p)), 4)
    -1.5708
    """
    b0 = p0 - p1
    b1 = p2 - p1
    b2 = p3 - p2
    b1n = b1 / torch.linalg.vector_norm(b1, dim=-1, keepdim=True).clamp_min(1e-8)
    v = b0 - (b0 * b1n).sum(-1, keepdim=True) * b1n
    w = b2 - (b2 * b1n).sum(-1, keepdim=True) * b1n
    x = (v * w).sum(-1)
    y = (torch.cross(b1n, v, dim=-1) * w).sum(-1)
    return torch.atan2(y, x)


def bond_angle(p0: Tensor, p1: Tensor, p2: Tensor) -> Tensor:
    """Angle p0-p1-p2 in radians."""
    a = p0 - p1
    b = p2 - p1
    cos = (a * b).sum(-1) / (torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(b, dim=-1)).clamp_min(1e-8)
    return torch.acos(cos.clamp(-1.0, 1.0))


def take_residues(x: Tensor, i: Tensor) -> Tensor:
    """Gather per-residue vectors: ``x`` (B, R, 3), residue indices ``i`` (B, R) -> (B, R, 3).

    Examples
    --------
    >>> x = torch.arange(6.0).view(1, 2, 3)
    >>> take_residues(x, torch.tensor([[1, 1]])).tolist()
    [[[3.0, 4.0, 5.0], [3.0, 4.0, 5.0]]]
    """
    return x.gather(1, i.unsqueeze(-1).expand(-1, -1, 3))


def place_atom(a: Tensor, b: Tensor, c: Tensor, bond: Tensor, angle: Tensor, torsion: Tensor) -> Tensor:
    """Natural-extension reference frame (NeRF): place d bonded to c.

    ``|cd| = bond``, angle ``b-c-d = angle``, dihedral ``a-b-c-d = torsion``.
    All arguments broadcast over leading dimensions.
    """
    bc = c - b
    bc = bc / torch.linalg.vector_norm(bc, dim=-1, keepdim=True).clamp_min(1e-8)
    n = torch.cross(b - a, bc, dim=-1)
    n = n / torch.linalg.vector_norm(n, dim=-1, keepdim=True).clamp_min(1e-8)
    m = torch.cross(n, bc, dim=-1)
    d2 = torch.stack([-bond * torch.cos(angle), bond * torch.sin(angle) * torch.cos(torsion),
                      bond * torch.sin(angle) * torch.sin(torsion)], dim=-1)
    return c + d2[..., 0:1] * bc + d2[..., 1:2] * m + d2[..., 2:3] * n


def local_frames(origin: Tensor, toward: Tensor, plane: Tensor) -> Tensor:
    """Right-handed orthonormal frames, shape (..., 3, 3) with rows e1, e2, e3.

    ``e1`` points from ``origin`` to ``toward``; ``e2`` lies in the plane of
    ``plane`` (orthogonalised against e1); ``e3 = e1 x e2``. A vector ``v``
    in the global frame has local coordinates ``frames @ v``.

    When ``plane`` lies on the e1 axis (within 1e-3 rad: two points only, or
    collinear points) it fixes no plane, and ``e2`` is taken perpendicular to
    the coordinate axis least aligned with e1, so the frame stays
    orthonormal; rotations about e1 are then a free choice.

    Examples
    --------
    >>> o, t = torch.zeros(3), torch.tensor([0.0, 3.0, 4.0])
    >>> f = local_frames(o, t, 2 * t)  # collinear: still a rotation
    >>> bool(torch.allclose(f @ f.T, torch.eye(3), atol=1e-6)), f[0].tolist()
    (True, [0.0, 0.6000000238418579, 0.800000011920929])
    """
    e1 = toward - origin
    e1 = e1 / torch.linalg.vector_norm(e1, dim=-1, keepdim=True).clamp_min(1e-8)
    u = plane - origin
    reach = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    u = u - (u * e1).sum(-1, keepdim=True) * e1
    # below this the float rounding of u is no longer small against u itself (e2 would not be
    # perpendicular to e1): a degenerate plane, where any perpendicular is as good as another
    on_axis = torch.linalg.vector_norm(u, dim=-1, keepdim=True) <= 1e-3 * reach
    helper = torch.nn.functional.one_hot(e1.abs().argmin(dim=-1), 3).to(e1.dtype)
    u = torch.where(on_axis, helper - (helper * e1).sum(-1, keepdim=True) * e1, u)
    e2 = u / torch.linalg.vector_norm(u, dim=-1, keepdim=True).clamp_min(1e-8)
    e3 = torch.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-2)


def ideal_cb(n: Tensor, ca: Tensor, c: Tensor) -> Tensor:
    """C-beta of an L-amino acid from ideal tetrahedral geometry (Å coordinates)."""
    b = ca - n
    cc = c - ca
    a = torch.cross(b, cc, dim=-1)
    return -0.58273431 * a + 0.56802827 * b - 0.54067466 * cc + ca


def _mix32(x: Tensor) -> Tensor:
    # lowbias32-style integer hash on int64 holding 32-bit values; multipliers
    # below 2**31 keep every product inside int64.
    m = 0xFFFFFFFF
    x = x & m
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & m
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & m
    x = x ^ (x >> 16)
    return x


def hash_uniform(seed: int, stream: int, shape: list[int], device: torch.device) -> Tensor:
    """Counter-based uniform numbers in (0, 1): the same on every device for a given seed.

    Unlike ``torch.manual_seed`` this works inside TorchScript and gives
    bit-identical draws on CPU and CUDA.
    """
    n = 1
    for s in shape:
        n *= s
    idx = torch.arange(n, device=device, dtype=torch.int64)
    key = _mix32(torch.full_like(idx, (seed * 0x3C6EF372 + stream * 0x1B873593) & 0xFFFFFFFF))
    x = _mix32(idx ^ key)
    x = _mix32(x + (stream & 0xFFFF) * 0x9E37 + 1)
    return ((x.to(torch.float64) + 0.5) / 4294967296.0).to(torch.float32).reshape(shape)


def hash_normal(seed: int, stream: int, shape: list[int], device: torch.device) -> Tensor:
    """Standard normal numbers from :func:`hash_uniform` (Box-Muller)."""
    u1 = hash_uniform(seed, 2 * stream, shape, device)
    u2 = hash_uniform(seed, 2 * stream + 1, shape, device)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
