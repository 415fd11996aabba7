"""Side-chain repacking of the C-alpha -> atoms step: a greedy search over rotamer candidates (TorchScript).

The step samples every side chain on its own, so two neighbours can overlap.
The search here swaps a clashing side chain for another likely candidate;
the candidates and their likelihood penalties come from the step's chi heads
(:meth:`SideChainRepacking.candidate_chis`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SideChainRepacking", "repack_search", "overlap_penalty", "neighbour_atoms"]


class SideChainRepacking(nn.Module):
    """The repacking methods of :class:`~openmm_backmap.model.steps.ca2aa.CA2AA` (its base class).

    They use the step's chi heads (``chi_heads``, ``mixture``), its side-chain builder
    (``build_side_chains``, ``max_atoms``, ``slot_valid``), its search settings (``repack_sweeps``,
    ``repack_k``, ``repack_wall``, ``repack_weight``) and its chunking (``chunk_frames``); TorchScript
    compiles them with the step.
    """

    def _chi(self, index: int, ctx: list[Tensor], prev: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Evaluate chi head ``index`` (TorchScript cannot call a ModuleList entry by a variable index)."""
        out = (prev, prev, prev)
        for i, head in enumerate(self.chi_heads):
            if i == index:
                out = head.conditional(ctx[i], prev)
        return out

    def candidate_chis(self, ctx: list[Tensor], chi: Tensor) -> tuple[Tensor, Tensor]:
        """Side-chain candidates (C, B, R, 4): the sampled chis, then every pair of chi1 and chi2 mixture
        component modes (chi1 mode major), completed autoregressively with the most probable chi3 and chi4;
        and their likelihood penalty (C, B, R), nats below the most probable components.

        ``ctx`` comes from ``chi_context``. Each chi head runs once, on all candidates stacked in a leading
        dimension (its context broadcasts over it).
        """
        m = self.mixture
        b, r = chi.shape[0], chi.shape[1]
        zeros = torch.zeros(b, r, 8, device=chi.device, dtype=chi.dtype)
        logp1, mu1, _k1 = self._chi(0, ctx, zeros)
        c1 = mu1.permute(2, 0, 1)  # (m, B, R)
        prev1 = torch.cat([torch.cos(c1).unsqueeze(-1), torch.sin(c1).unsqueeze(-1),
                           zeros[..., 2:].expand(m, -1, -1, -1)], dim=-1)
        logp2, mu2, _k2 = self._chi(1, ctx, prev1)  # (m, B, R, m): chi1 mode, ..., chi2 mode
        c2 = mu2.permute(0, 3, 1, 2).reshape(m * m, b, r)
        prev2 = torch.cat([prev1.repeat_interleave(m, 0)[..., :2], torch.cos(c2).unsqueeze(-1),
                           torch.sin(c2).unsqueeze(-1), zeros[..., 4:].expand(m * m, -1, -1, -1)], dim=-1)
        logp3, mu3, _k3 = self._chi(2, ctx, prev2)
        c3 = mu3.gather(-1, logp3.argmax(dim=-1, keepdim=True)).squeeze(-1)
        prev3 = torch.cat([prev2[..., :4], torch.cos(c3).unsqueeze(-1), torch.sin(c3).unsqueeze(-1),
                           zeros[..., 6:].expand(m * m, -1, -1, -1)], dim=-1)
        logp4, mu4, _k4 = self._chi(3, ctx, prev3)
        c4 = mu4.gather(-1, logp4.argmax(dim=-1, keepdim=True)).squeeze(-1)
        pen1 = (logp1.max(dim=-1, keepdim=True).values - logp1).permute(2, 0, 1).repeat_interleave(m, 0)
        pen2 = (logp2.max(dim=-1, keepdim=True).values - logp2).permute(0, 3, 1, 2).reshape(m * m, b, r)
        cands = torch.stack([c1.repeat_interleave(m, 0), c2, c3, c4], dim=-1)
        return (torch.cat([chi.unsqueeze(0), cands], 0),
                torch.cat([torch.zeros_like(chi[..., 0]).unsqueeze(0), pen1 + pen2], 0))

    def repack(self, x: Tensor, ctx: list[Tensor], chi: Tensor, ca: Tensor, types: Tensor) -> Tensor:
        """Swap clashing side chains for other likely rotamers (residue slots, Å).

        The candidates are those of :meth:`candidate_chis`; the search is :func:`repack_search`. Both run
        on chunks of frames (``chunk_frames``), which bounds the memory of the candidates. Slots of atoms
        a residue does not have are NaN in the result.
        """
        b, r = types.shape
        n = self.chunk_frames(ca)
        out: list[Tensor] = []
        for i in range(0, b, n):
            x_i, chi_i, ca_i, types_i = x[i:i + n], chi[i:i + n], ca[i:i + n], types[i:i + n]
            m = x_i.shape[0]
            cands, lik = self.candidate_chis([c[i:i + n] for c in ctx], chi_i)
            # the backbone is shared: all alternative side chains are built in one batched call
            n_alt = cands.shape[0] - 1
            alt = self.build_side_chains(x_i.repeat(n_alt, 1, 1, 1), types_i.repeat(n_alt, 1),
                                         cands[1:].reshape(n_alt * m, r, 4))
            allx = torch.cat([x_i.unsqueeze(0), alt.reshape(n_alt, m, r, self.max_atoms, 3)], 0)
            out.append(repack_search(allx.permute(1, 2, 0, 3, 4), lik.permute(1, 2, 0), self.slot_valid[types_i],
                                     ca_i, self.repack_sweeps, self.repack_k, self.repack_wall, self.repack_weight))
        return torch.cat(out, 0)


def neighbour_atoms(cur: Tensor, nf: Tensor, rows: Tensor) -> Tensor:
    """Atoms (n, kk * slots, 3) of the neighbour residues of ``rows``.

    ``cur`` (M, slots, 3) holds the residues' atoms, ``nf`` (M, kk) their
    neighbours and ``rows`` (n,) the residues asked for, all as flat residue
    indices.

    Examples
    --------
    >>> cur = torch.arange(3 * 2 * 3.0).view(3, 2, 3)
    >>> neighbour_atoms(cur, torch.tensor([[1], [2], [0]]), torch.tensor([0])).shape
    torch.Size([1, 2, 3])
    """
    kk = nf.shape[1]
    return cur.index_select(0, nf.index_select(0, rows).reshape(-1)).reshape(rows.shape[0], kk * cur.shape[1], 3)


def overlap_penalty(sc: Tensor, neigh: Tensor, wall: float) -> Tensor:
    """Overlap penalty (n, C) of side-chain candidates ``sc`` (n, C, s, 3) with atoms ``neigh`` (n, q, 3).

    The penalty sums ``(wall - d)^2`` over atom pairs closer than ``wall``
    (same length unit as the coordinates). Missing atoms are NaN (never closer
    than anything); only the few pairs closer than the wall are gathered.

    Examples
    --------
    >>> sc = torch.zeros(1, 1, 1, 3)
    >>> overlap_penalty(sc, torch.tensor([[[1.0, 0.0, 0.0]]]), 2.5)
    tensor([[2.2500]])
    """
    n, c, k, q = sc.shape[0], sc.shape[1], sc.shape[2], neigh.shape[1]
    a = sc.reshape(n, c * k, 3)
    # squared distances as cdist forms them (|a|^2 + |b|^2 - 2 a.b), but the square root is taken only of the
    # few pairs inside the wall: cdist's root of every pair was a third of the repacking time
    d2 = torch.baddbmm((a * a).sum(-1, keepdim=True) + (neigh * neigh).sum(-1).unsqueeze(1), a,
                       neigh.transpose(1, 2), alpha=-2.0).reshape(-1)
    close = (d2 < wall * wall).nonzero().squeeze(-1)
    pen = (wall - d2.index_select(0, close).clamp_min(0.0).sqrt()) ** 2
    out = torch.zeros(n * c, device=sc.device, dtype=sc.dtype)
    return out.index_add_(0, torch.div(close, k * q, rounding_mode="floor"), pen).view(n, c)


def repack_search(allx: Tensor, lik: Tensor, sv: Tensor, ca: Tensor, sweeps: int, neighbors: int, wall: float,
                  weight: float) -> Tensor:
    """Pick one side-chain candidate per residue; return the residue slots (B, R, slots, 3).

    Greedy sweeps: each residue takes the candidate minimising
    ``weight * overlap + likelihood penalty``, where overlap sums
    ``(wall - d)^2`` over its side-chain atoms (slots beyond CB) closer than
    ``wall`` to any atom of its ``neighbors`` nearest residues. Of the
    residues that would gain, only those gaining more than every neighbour
    move in one sweep, so neighbours do not swap into each other. Slots of
    atoms a residue does not have are NaN in the result.

    Parameters
    ----------
    allx : Tensor, (B, R, C, slots, 3)
        Residue slots of every candidate; candidate 0 is the sampled one.
    lik : Tensor, (B, R, C)
        Likelihood penalty of every candidate (nats, >= 0).
    sv : Tensor of bool, (B, R, slots)
        Which slots each residue has.
    ca : Tensor, (B, R, 3)
        C-alpha positions (pick the neighbours).
    sweeps, neighbors : int
    wall, weight : float
        Overlap distance (unit of the coordinates) and weight per squared unit of overlap.

    Examples
    --------
    >>> allx = torch.randn(1, 3, 2, 6, 3) * 3.0
    >>> out = repack_search(allx, torch.zeros(1, 3, 2), torch.ones(1, 3, 6, dtype=torch.bool), allx[:, :, 0, 1],
    ...                     sweeps=2, neighbors=2, wall=2.5, weight=10.0)
    >>> out.shape
    torch.Size([1, 3, 6, 3])
    """
    b, r, n_c, max_atoms = allx.shape[0], allx.shape[1], allx.shape[2], allx.shape[3]
    kk = min(neighbors, r - 1)
    # neighbours by the nearer of C-alpha and side-chain centre (the mean of all candidates' atoms beyond CB):
    # two long side chains (Tyr, Gln) touch with C-alphas 10-12 Å apart, beyond the 16th nearest C-alpha
    scv = sv[:, :, 5:].unsqueeze(2).unsqueeze(-1).to(allx.dtype)
    n_sc = scv.sum(dim=(2, 3)) * n_c
    centre = torch.where(n_sc > 0, (torch.nan_to_num(allx[:, :, :, 5:]) * scv).sum(dim=(2, 3)) / n_sc.clamp_min(1.0),
                         ca)
    pts = torch.stack([ca, centre], dim=2).reshape(b, 2 * r, 3)
    d = torch.cdist(pts, pts).view(b, r, 2, r, 2).amin(dim=4).amin(dim=2)
    d = d + torch.eye(r, device=ca.device, dtype=ca.dtype).unsqueeze(0) * 1e6
    nb = d.topk(kk, dim=-1, largest=False).indices  # (B, R, kk)
    xf = allx.reshape(b * r, n_c, max_atoms, 3)
    # neighbour lists as flat residue indices
    nf = (nb + (torch.arange(b, device=allx.device) * r).view(b, 1, 1)).reshape(b * r, kk)
    sf = sv.reshape(b * r, 1, max_atoms, 1)
    xf = torch.where(sf, xf, torch.full_like(xf, float("nan")))  # missing atoms never overlap
    lf = lik.reshape(b * r, n_c)
    cand_sc = xf[:, :, 5:].reshape(b * r * n_c, max_atoms - 5, 3)  # side chains beyond CB, flat
    choice = torch.zeros(b * r, dtype=torch.long, device=allx.device)
    cur = xf[:, 0]
    every = torch.arange(b * r, device=allx.device)
    pen = overlap_penalty(cur[:, 5:].unsqueeze(1), neighbour_atoms(cur, nf, every), wall).squeeze(1)
    # a residue is re-scored only if it or a neighbour moved since it was last scored (same result)
    stale = torch.ones(b * r, dtype=torch.bool, device=allx.device)
    for sweep in range(sweeps):
        act = ((pen > 0) & stale).nonzero().squeeze(-1)
        if act.numel() == 0:
            break
        stale = stale.index_fill(0, act, False)
        la = lf.index_select(0, act)
        ch = choice.index_select(0, act)
        now = weight * pen.index_select(0, act) + la.gather(1, ch.unsqueeze(-1)).squeeze(-1)
        # overlap is >= 0, so only candidates whose likelihood penalty alone is below the current
        # score can win: score just those (row, candidate) pairs
        pair = (la < (now - 1e-4).unsqueeze(-1)).nonzero()
        rows = act.index_select(0, pair[:, 0])
        sc = cand_sc.index_select(0, rows * n_c + pair[:, 1])
        over = overlap_penalty(sc.unsqueeze(1), neighbour_atoms(cur, nf, rows), wall).squeeze(1)
        score = torch.full_like(la, float("inf"))
        score = score.index_put((pair[:, 0], pair[:, 1]), weight * over + la[pair[:, 0], pair[:, 1]])
        best = score.argmin(dim=-1)
        gain = now - score.gather(-1, best.unsqueeze(-1)).squeeze(-1)
        # two neighbours moving at once can swap into each other: of the residues that would gain, only
        # those gaining more than every neighbour move in this sweep (the others are scored again)
        g = torch.zeros(b * r, device=allx.device, dtype=gain.dtype)
        g = g.index_copy(0, act, torch.where(gain > 1e-4, gain, torch.zeros_like(gain)))
        rival = g.index_select(0, nf.reshape(-1)).reshape(b * r, kk).amax(-1).index_select(0, act)
        win = (gain > 1e-4) & (gain > rival)
        stale = stale.index_fill(0, act.masked_select((gain > 1e-4) & ~win), True)
        moved = act.masked_select(win)
        if moved.numel() == 0:
            continue
        to = best.masked_select(win)
        choice = choice.index_copy(0, moved, to)
        new_atoms = xf.index_select(0, moved).gather(1, to.view(-1, 1, 1, 1).expand(-1, 1, max_atoms, 3))
        cur = cur.index_copy(0, moved, new_atoms.squeeze(1))
        flag = torch.zeros(b * r, dtype=torch.bool, device=allx.device).index_fill(0, moved, True)
        hit = (flag | flag.index_select(0, nf.reshape(-1)).reshape(b * r, kk).any(-1)).nonzero().squeeze(-1)
        stale = stale.index_fill(0, hit, True)
        sub = overlap_penalty(cur.index_select(0, hit)[:, 5:].unsqueeze(1), neighbour_atoms(cur, nf, hit), wall)
        pen = pen.index_copy(0, hit, sub.squeeze(1))
    return cur.reshape(b, r, max_atoms, 3)

