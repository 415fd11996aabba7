"""Chemistry that the C-alpha step's per-residue angle heads cannot see: peptide units, proline phi, carbonyls,
disulfides.

The heads of :class:`~openmm_backmap.model.steps.ca2aa.CA2AA` predict each angle
of each residue, so constraints that join atoms of different residues can be
broken by an otherwise likely sample:

* **Peptide units.** :func:`peptide_atoms` fits the ideal unit to a C-alpha
  pair's distance by bending its angles first (:func:`_hinge`).
* **Proline phi.** The pyrrolidine ring ties phi to about -65 degrees, but phi
  of residue ``i`` is set by the peptide plane before it (the rotation
  ``theta`` of plane ``i-1``). A wrong plane (seen at some cis or
  ambiguous X-Pro pairs) gives phi near +120 degrees, and the preceding
  carbonyl lands in the ring. :func:`proline_theta` re-picks that plane.
* **Carbonyls.** A plane's O can land inside a residue far along the chain;
  :func:`pressed_carbonyls` finds them and :func:`carbonyl_planes` re-picks their planes.
* **Disulfides.** The two SG atoms of a disulfide are placed by two
  independent chi1 angles, so the S-S bond comes out 2.3-4 Å instead of
  2.04 Å. :func:`close_disulfides` turns the two chi1 together.

Written by hand: both are small searches inside the exported TorchScript model,
which no library provides. All lengths in Å, angles in radians.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..geometry import bond_angle, dihedral, place_atom
from .ca2aa_network import vm_mixture_nll
from .ca2aa_repack import overlap_penalty

__all__ = ["peptide_atoms", "plane_phi", "proline_theta", "pressed_carbonyls", "carbonyl_planes", "close_disulfides",
           "overlap"]

#: candidate angles per full turn in the searches (5 degrees apart)
GRID = 72
#: the most (Å) by which a peptide unit's bond angles absorb its C-alphas' distance from the ideal; the bonds
#: share the rest (:func:`_hinge`)
HINGE_ANGSTROM = 0.2


def peptide_atoms(unit_trans: Tensor, unit_cis: Tensor, cis_distance: float, hinge: float, ca: Tensor,
                  ca_next: Tensor, frames: Tensor, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """C, O and the next N of the peptide planes between ``ca`` and ``ca_next`` (..., 3), Å.

    The ideal unit (``unit_trans``, or ``unit_cis`` for pairs closer than
    ``cis_distance``; rows C, O, N, next CA in the pair's local frame, in
    its xy plane) is fitted to the pair's distance by bending its angles for
    up to ``hinge`` Å and stretching its bonds for the rest (:func:`_hinge`), turned by ``theta`` (...) about the C-alpha axis and
    rotated back to the global frame by ``frames`` (..., 3, 3).

    Examples
    --------
    >>> from openmm_backmap.model.steps.ca2aa_templates import peptide_unit
    >>> trans = torch.tensor(peptide_unit(False), dtype=torch.float32)
    >>> cis = torch.tensor(peptide_unit(True), dtype=torch.float32)
    >>> ca, nxt = torch.zeros(1, 3), torch.tensor([[3.8, 0.0, 0.0]])
    >>> c, o, n = peptide_atoms(trans, cis, 3.3, HINGE_ANGSTROM, ca, nxt, torch.eye(3).unsqueeze(0), torch.zeros(1))
    >>> round(float(torch.linalg.vector_norm(c - ca)), 2)  # the CA-C bond
    1.52
    """
    dist = torch.linalg.vector_norm(ca_next - ca, dim=-1)
    unit = torch.where((dist < cis_distance).unsqueeze(-1).unsqueeze(-1), unit_cis, unit_trans)  # (..., 4, 3)
    c, o, n = _hinge(unit, dist, hinge)
    cos, sin = torch.cos(theta), torch.sin(theta)
    loc = torch.stack([_turn_x(c, cos, sin), _turn_x(o, cos, sin), _turn_x(n, cos, sin)], dim=-2)
    glob = torch.einsum("...ji,...kj->...ki", frames, loc)
    return ca + glob[..., 0, :], ca + glob[..., 1, :], ca + glob[..., 2, :]


def _hinge(unit: Tensor, dist: Tensor, hinge: float) -> tuple[Tensor, Tensor, Tensor]:
    """C, O and N (..., 2) of a planar peptide unit (..., 4, 3) whose C-alphas are ``dist`` (...) apart, Å.

    Experimental C-alpha distances stray from the ideal unit's (3.80 Å trans) by a few hundredths of an Å, and
    the three bonds between the C-alphas keep their lengths: up to ``hinge`` Å (:data:`HINGE_ANGSTROM`) of it goes
    into the bond angles. C and O turn about the first C-alpha and N about the second, in the plane, by the
    smallest turns that restore the C-N bond (Gauss-Newton; 0.1 Å is about 6 degrees on CA-C-N and C-N-CA,
    0.2 Å about 12).
    The rest of a larger difference (a generated C-alpha trace) is shared by the three bonds: the bent unit is
    stretched along its axis, as all of it was before.
    """
    ideal = unit[..., 3, 0]
    c, o = unit[..., 0, :2], unit[..., 1, :2]
    bent = torch.minimum(torch.maximum(dist, ideal - hinge), ideal + hinge)
    ca2 = torch.stack([bent, torch.zeros_like(dist)], dim=-1)
    n = unit[..., 2, :2] - unit[..., 3, :2]  # N relative to the second C-alpha
    length = torch.linalg.vector_norm(unit[..., 0, :2] - unit[..., 2, :2], dim=-1)
    turn_c = torch.zeros_like(dist)
    turn_n = torch.zeros_like(dist)
    for _ in range(6):
        c_t, n_t = _rotate2(c, turn_c), _rotate2(n, turn_n)
        v = c_t - (ca2 + n_t)
        norm = torch.linalg.vector_norm(v, dim=-1).clamp_min(1e-6)
        u = v / norm.unsqueeze(-1)
        err = norm - length
        jc = u[..., 1] * c_t[..., 0] - u[..., 0] * c_t[..., 1]  # d|v|/d turn_c: u . (-y, x)
        jn = -(u[..., 1] * n_t[..., 0] - u[..., 0] * n_t[..., 1])
        step = err / (jc * jc + jn * jn + 1e-6)
        turn_c = (turn_c - jc * step).clamp(-0.5, 0.5)
        turn_n = (turn_n - jn * step).clamp(-0.5, 0.5)
    same = (dist - ideal).abs() < 1e-4  # the ideal unit as it is (no float drift from the iterations)
    turn_c = torch.where(same, torch.zeros_like(turn_c), turn_c)
    turn_n = torch.where(same, torch.zeros_like(turn_n), turn_n)
    stretch = torch.stack([dist / bent, torch.ones_like(dist)], dim=-1)
    return _rotate2(c, turn_c) * stretch, _rotate2(o, turn_c) * stretch, (ca2 + _rotate2(n, turn_n)) * stretch


def _turn_x(p: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """3-D points (..., 3) from points (..., 2) of the xy plane turned about x by the angle of ``cos, sin``."""
    return torch.stack([p[..., 0], p[..., 1] * cos, p[..., 1] * sin], dim=-1)


def _rotate2(p: Tensor, angle: Tensor) -> Tensor:
    """2-D points ``p`` (..., 2) turned by ``angle`` (...) about the origin."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([p[..., 0] * cos - p[..., 1] * sin, p[..., 0] * sin + p[..., 1] * cos], dim=-1)


def angle_grid(n: int, like: Tensor) -> Tensor:
    """``n`` angles evenly spaced over a turn, from -pi (radians, the dtype and device of ``like``)."""
    return torch.arange(n, device=like.device, dtype=like.dtype) * (2.0 * math.pi / n) - math.pi


def plane_phi(unit_trans: Tensor, unit_cis: Tensor, cis_distance: float, hinge: float, ca_prev: Tensor,
              ca: Tensor, frames_prev: Tensor, c: Tensor, n_grid: int) -> Tensor:
    """phi (P, n_grid) of residues at ``ca`` (P, 3) with C atom ``c`` (P, 3), for each of ``n_grid`` rotations
    (:func:`angle_grid`) of the peptide plane from ``ca_prev`` (P, 3; its frames ``frames_prev`` (P, 3, 3)).

    Examples
    --------
    >>> from openmm_backmap.model.steps.ca2aa_templates import peptide_unit
    >>> trans = torch.tensor(peptide_unit(False), dtype=torch.float32)
    >>> phi = plane_phi(trans, trans, 3.3, HINGE_ANGSTROM, torch.zeros(1, 3), torch.tensor([[3.8, 0.0, 0.0]]),
    ...                 torch.eye(3).unsqueeze(0), torch.tensor([[4.5, 1.4, 0.0]]), GRID)
    >>> phi.shape, bool((phi.max() - phi.min()) > 3.0)  # the plane's rotation sweeps phi over most of a turn
    (torch.Size([1, 72]), True)
    """
    g = n_grid
    grid = angle_grid(g, ca).expand(ca.shape[0], -1)
    c_g, _o, n_g = peptide_atoms(unit_trans, unit_cis, cis_distance, hinge, ca_prev.unsqueeze(1).expand(-1, g, -1),
                                 ca.unsqueeze(1).expand(-1, g, -1), frames_prev.unsqueeze(1).expand(-1, g, -1, -1),
                                 grid)
    return dihedral(c_g, n_g, ca.unsqueeze(1), c.unsqueeze(1))


def proline_theta(phi: Tensor, candidates_phi: Tensor, logp: Tensor, mu: Tensor, kappa: Tensor,
                  phi_target: float, phi_lo: float, phi_hi: float, phi_kappa: float) -> tuple[Tensor, Tensor]:
    """Pick the plane rotation before each proline that gives it a phi its ring can close.

    Only prolines whose current ``phi`` (P,) lies outside ``(phi_lo, phi_hi)``
    change. Their plane gets the candidate of the :data:`GRID` rotations
    ``2 pi g / GRID - pi`` that maximises the theta head's log-density (the
    mixture ``logp, mu, kappa``, (P, K)) plus a von Mises prior on phi
    (centre ``phi_target``, concentration ``phi_kappa``); ``candidates_phi``
    (P, GRID) is the proline's phi with each candidate.

    Returns
    -------
    theta : Tensor, (P,)
        The chosen rotation (only meaningful where ``change``).
    change : Tensor of bool, (P,)

    Examples
    --------
    >>> grid = angle_grid(GRID, torch.zeros(1))
    >>> flat = torch.zeros(1, 1)  # one uniform component: the phi prior decides
    >>> th, change = proline_theta(torch.tensor([2.0]), (grid - 1.0).unsqueeze(0), flat, flat, flat + 1e-6,
    ...                            -1.0, -2.09, -0.52, 10.0)
    >>> bool(change[0]), abs(float(th[0])) < 1e-6  # phi = theta - 1 is -1.0 (the prior's centre) at theta = 0
    (True, True)
    """
    change = (phi < phi_lo) | (phi > phi_hi)
    grid = angle_grid(candidates_phi.shape[1], phi)
    loglik = -vm_mixture_nll(logp.unsqueeze(1), mu.unsqueeze(1), kappa.unsqueeze(1), grid.unsqueeze(0))
    score = loglik + phi_kappa * torch.cos(candidates_phi - phi_target)
    return grid[score.argmax(dim=1)], change


def pressed_carbonyls(x: Tensor, ca: Tensor, is_pro: Tensor, has_next: Tensor) -> tuple[Tensor, Tensor]:
    """Residues whose O overlaps an atom of a residue two or more away, and the atoms around each O.

    An overlap is closer than 1.5 Å (near the 1.2 Å of a clash), among the atoms of the 16 residues with the
    nearest C-alphas; ``x`` (B, R, 14, 3), Å, holds the built slots. Planes before a proline (``is_pro`` of the
    next residue) set the proline's phi and are left out. Tight contacts (1.5-2.2 Å: 0.9 % of the residues of
    the CASP targets) are left to minimisation: re-building for them would repack almost every frame twice.

    Returns
    -------
    site : Tensor of int, (P, 2)
        (frame, residue) of each pressed carbonyl.
    near : Tensor, (B, R, K, 3)
        The atoms each residue's O was checked against (bonded neighbours and missing atoms far away).

    Examples
    --------
    >>> x = torch.randn(1, 4, 14, 3) * 30.0  # atoms far apart: nothing pressed
    >>> site, near = pressed_carbonyls(x, x[:, :, 1], torch.zeros(1, 4, dtype=torch.bool),
    ...                                torch.ones(1, 4, dtype=torch.bool))
    >>> site.shape[0]
    0
    """
    b, r, s = x.shape[0], x.shape[1], x.shape[2]
    kk = min(16, r - 1)
    d_ca = torch.cdist(ca, ca) + torch.eye(r, device=ca.device, dtype=ca.dtype).unsqueeze(0) * 1e6
    nb = d_ca.topk(kk, dim=-1, largest=False).indices  # (B, R, kk)
    own = torch.arange(r, device=ca.device).view(1, r, 1)
    far = (nb - own).abs() > 1  # bonded neighbours' atoms sit 2.2-2.4 Å from O
    flat = (nb + (torch.arange(b, device=ca.device) * r).view(b, 1, 1)).reshape(-1)
    near = x.reshape(b * r, s, 3).index_select(0, flat).view(b, r, kk, s, 3)
    near = torch.where(far.unsqueeze(-1).unsqueeze(-1), near, torch.full_like(near, 1e4)).view(b, r, kk * s, 3)
    d_o = torch.linalg.vector_norm(torch.nan_to_num(near, nan=1e4) - x[:, :, 3].unsqueeze(2), dim=-1)
    before_pro = torch.cat([is_pro[:, 1:], is_pro[:, :1]], dim=1)
    return ((d_o < 1.5).any(-1) & has_next & ~before_pro).nonzero(), near


def carbonyl_planes(fb: Tensor, i: Tensor, near: Tensor, ca: Tensor, frames: Tensor, bb: Tensor, logp: Tensor,
                    mu: Tensor, kappa: Tensor, unit_trans: Tensor, unit_cis: Tensor, cis_distance: float,
                    hinge: float) -> Tensor:
    """Backbone angles ``bb`` (B, R, 4) with the peptide planes of residues ``(fb, i)`` re-picked.

    Each plane becomes, of its current value and the theta head's component means (``logp, mu, kappa``
    (P, K), at those residues), the one minimising :func:`overlap` of its O with ``near`` (from
    :func:`pressed_carbonyls`) within 2.6 Å plus the negative log-density. The caller rebuilds the atoms when
    the result differs.

    Examples
    --------
    >>> from openmm_backmap.model.steps.ca2aa_templates import peptide_unit
    >>> unit = torch.tensor(peptide_unit(False), dtype=torch.float32)
    >>> ca = torch.tensor([[[0.0, 0, 0], [3.8, 0, 0]]])
    >>> near = torch.full((1, 2, 1, 3), 1e4)  # nothing nearby: the likelier plane wins
    >>> bb = torch.zeros(1, 2, 4)
    >>> out = carbonyl_planes(torch.tensor([0]), torch.tensor([0]), near, ca, torch.eye(3).expand(1, 2, 3, 3), bb,
    ...                       torch.log(torch.tensor([[0.9, 0.1]])), torch.tensor([[1.0, -2.0]]),
    ...                       torch.tensor([[50.0, 50.0]]), unit, unit, 3.3, HINGE_ANGSTROM)
    >>> round(float(out[0, 0, 0]), 2)
    1.0
    """
    r = ca.shape[1]
    cand = torch.cat([bb[fb, i, 0].unsqueeze(1), mu], dim=1)  # the current plane, then the component means
    n_c = cand.shape[1]
    nxt = (i + 1).clamp(max=r - 1)
    _c, o, _n = peptide_atoms(unit_trans, unit_cis, cis_distance, hinge, ca[fb, i].unsqueeze(1).expand(-1, n_c, -1),
                              ca[fb, nxt].unsqueeze(1).expand(-1, n_c, -1),
                              frames[fb, i].unsqueeze(1).expand(-1, n_c, -1, -1), cand)
    nll = vm_mixture_nll(logp.unsqueeze(1), mu.unsqueeze(1), kappa.unsqueeze(1), cand)
    best = (overlap(o, near[fb, i], 2.6) + nll).argmin(dim=1)
    out = bb.clone()
    out[fb, i, 0] = cand.gather(1, best.unsqueeze(1)).squeeze(1)
    return out


def close_disulfides(x: Tensor, types: Tensor, cys_type: int, zm: Tensor, bond: Tensor, angle: Tensor,
                     offset: Tensor, sg_cut: float, cb_cut: float, crowd_cut: float, ss_bond: float,
                     ss_angle: float, n_grid: int) -> Tensor:
    """Turn the chi1 of both cysteines of each disulfide so that SG-SG is a bond.

    A disulfide is found as in :func:`openmm_backmap.structure.disulfide_bonds`:
    SG closer than ``sg_cut``, or CB closer than ``cb_cut`` with no third
    cysteine's CB within ``crowd_cut`` of either (a metal site); each cysteine
    pairs with its nearest such partner, mutually. The two chi1 angles are
    searched on a grid of ``n_grid`` values, then on a finer one around the best pair, for the SG-SG
    distance ``ss_bond``, CB-SG-SG angles ``ss_angle``, a CB-SG-SG-CB torsion of +-90 degrees, staggered chi1 and
    no SG closer than 3 Å to other atoms; of equally good pairs, the one nearest the sampled SG atoms wins.

    Parameters
    ----------
    x : Tensor, (B, R, 14, 3)
        Residue slots, Å (N, CA, C, O, CB, SG for cysteine).
    types : Tensor, (B, R)
        Residue types (the same sequence in every frame).
    cys_type : int
    zm, bond, angle, offset : Tensor
        The step's Z-matrix tables for cysteine's SG slot: reference atom
        slots (3,), bond length, angle and torsion offset (scalars).
    sg_cut, cb_cut, crowd_cut, ss_bond : float
        Å.
    ss_angle : float
        Radians.
    n_grid : int
        Grid points per turn (:data:`GRID`).

    Returns
    -------
    Tensor, (B, R, 14, 3)
        ``x`` with the SG atoms of the disulfides moved.

    Examples
    --------
    >>> x = torch.zeros(1, 1, 14, 3)
    >>> close_disulfides(x, torch.zeros(1, 1, dtype=torch.long), 1, torch.tensor([0, 1, 4]), torch.tensor(1.8),
    ...                  torch.tensor(1.97), torch.tensor(0.0), 2.5, 4.3, 5.0, 2.04, 1.82, GRID).shape
    torch.Size([1, 1, 14, 3])
    """
    cys = (types[0] == cys_type).nonzero().squeeze(-1)
    if cys.numel() < 2:
        return x
    b = x.shape[0]
    c = cys.numel()
    cb = x[:, cys, 4]
    sg = x[:, cys, 5]
    eye = torch.eye(c, device=x.device, dtype=torch.bool).unsqueeze(0)
    big = torch.full_like(cb[:, :, 0], 1e6).unsqueeze(-1)
    d_cb = torch.where(eye, big, torch.cdist(cb, cb))
    d_sg = torch.where(eye, big, torch.cdist(sg, sg))
    crowded = (d_cb < crowd_cut).sum(-1) > 1
    ok = (d_sg < sg_cut) | ((d_cb < cb_cut) & ~crowded.unsqueeze(-1) & ~crowded.unsqueeze(-2))
    masked = torch.where(ok, d_cb, big)
    best = masked.min(dim=-1)
    partner = best.indices
    own = torch.arange(c, device=x.device).unsqueeze(0).expand(b, -1)
    pair = (best.values < 1e5) & (partner.gather(1, partner) == own) & (own < partner)
    if not bool(pair.any()):
        return x
    fb, ci = pair.nonzero().unbind(1)
    ri = cys.index_select(0, ci)
    rj = cys.index_select(0, partner[fb, ci])
    out = x.clone()
    near_i = _surroundings(x, fb, ri, rj)
    near_j = _surroundings(x, fb, rj, ri)
    step = 2.0 * math.pi / n_grid
    coarse = angle_grid(n_grid, x)
    fine = torch.linspace(-step, step, 21, device=x.device, dtype=x.dtype)
    chi_i = coarse.unsqueeze(0).expand(ri.numel(), -1)
    chi_j = chi_i
    for _ in range(2):  # the coarse grid, then a finer one around its best pair
        sg_i = _sg_candidates(x, fb, ri, chi_i, zm, bond, angle, offset)
        sg_j = _sg_candidates(x, fb, rj, chi_j, zm, bond, angle, offset)
        cb_i = x[fb, ri, 4].unsqueeze(1).unsqueeze(1)
        cb_j = x[fb, rj, 4].unsqueeze(1).unsqueeze(1)
        si, sj = sg_i.unsqueeze(2), sg_j.unsqueeze(1)  # (P, Gi, 1, 3), (P, 1, Gj, 3)
        d = torch.linalg.vector_norm(si - sj, dim=-1)
        chi3 = dihedral(cb_i, si, sj, cb_j).abs()
        # bond length, CB-SG-SG angles, the S-S torsion (+-90 degrees) and staggered chi1 (-60, 60, 180), then a
        # weak pull toward the sampled SG positions (Å^2), which picks between otherwise equal solutions
        stagger = 2.0 * (1.0 + torch.cos(3.0 * (chi_i + offset))).unsqueeze(2) \
            + 2.0 * (1.0 + torch.cos(3.0 * (chi_j + offset))).unsqueeze(1)
        score = ((d - ss_bond) / 0.05) ** 2 + ((bond_angle(cb_i, si, sj) - ss_angle) / 0.17) ** 2 \
            + ((bond_angle(cb_j, sj, si) - ss_angle) / 0.17) ** 2 + ((chi3 - 0.5 * math.pi) / 0.35) ** 2 + stagger \
            + 0.1 * ((si - x[fb, ri, 5].unsqueeze(1).unsqueeze(1)) ** 2).sum(-1) \
            + 0.1 * ((sj - x[fb, rj, 5].unsqueeze(1).unsqueeze(1)) ** 2).sum(-1) \
            + overlap(sg_i, near_i, 3.0).unsqueeze(2) + overlap(sg_j, near_j, 3.0).unsqueeze(1)
        k = score.flatten(1).argmin(dim=1)
        gi = torch.div(k, chi_j.shape[1], rounding_mode="floor")
        gj = k - gi * chi_j.shape[1]
        out[fb, ri, 5] = sg_i[torch.arange(ri.numel(), device=x.device), gi]
        out[fb, rj, 5] = sg_j[torch.arange(rj.numel(), device=x.device), gj]
        chi_i = chi_i.gather(1, gi.unsqueeze(1)) + fine.unsqueeze(0)
        chi_j = chi_j.gather(1, gj.unsqueeze(1)) + fine.unsqueeze(0)
    return out


def _surroundings(x: Tensor, fb: Tensor, res: Tensor, partner: Tensor) -> Tensor:
    """The 48 atoms (P, 48, 3) nearest the CB of cysteines ``(fb, res)``, other than their own and their
    partner's (missing atoms are far away): all that an SG 1.8 Å from the CB can touch in a packed protein.
    The constants are literals because TorchScript cannot read module globals."""
    b, r = x.shape[0], x.shape[1]
    atoms = x.index_select(0, fb).reshape(fb.numel(), r * x.shape[2], 3)
    owner = torch.arange(r, device=x.device).repeat_interleave(x.shape[2]).unsqueeze(0)
    mine = (owner == res.unsqueeze(1)) | (owner == partner.unsqueeze(1))
    far = torch.full_like(atoms, 1e4)
    atoms = torch.where(mine.unsqueeze(-1) | ~torch.isfinite(atoms), far, atoms)
    d = torch.linalg.vector_norm(atoms - x[fb, res, 4].unsqueeze(1), dim=-1)
    k = min(48, d.shape[1])
    idx = d.topk(k, dim=1, largest=False).indices
    return atoms.gather(1, idx.unsqueeze(-1).expand(-1, -1, 3))


def overlap(points: Tensor, near: Tensor, wall: float) -> Tensor:
    """Penalty (P, G) of candidate atoms ``points`` (P, G, 3) closer than ``wall`` to atoms ``near`` (P, K, 3):
    ``10 sum (wall - d)^2``, as the side-chain repacking weighs overlaps (:func:`.ca2aa_repack.overlap_penalty`;
    missing (NaN) atoms never overlap).

    Examples
    --------
    >>> round(float(overlap(torch.zeros(1, 1, 3), torch.tensor([[[2.0, 0.0, 0.0]]]), 3.0)), 1)
    10.0
    """
    return 10.0 * overlap_penalty(points.unsqueeze(2), near, wall)


def _sg_candidates(x: Tensor, fb: Tensor, res: Tensor, chi: Tensor, zm: Tensor, bond: Tensor, angle: Tensor,
                   offset: Tensor) -> Tensor:
    """SG positions (P, G, 3) of cysteines ``(fb, res)`` for chi1 values ``chi`` (P, G)."""
    a = x[fb, res, int(zm[0])].unsqueeze(1).expand(-1, chi.shape[1], -1)
    b_ = x[fb, res, int(zm[1])].unsqueeze(1).expand(-1, chi.shape[1], -1)
    c_ = x[fb, res, int(zm[2])].unsqueeze(1).expand(-1, chi.shape[1], -1)
    return place_atom(a, b_, c_, bond.expand_as(chi), angle.expand_as(chi), chi + offset)
