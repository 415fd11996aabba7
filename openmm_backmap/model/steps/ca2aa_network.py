"""Network pieces of the C-alpha -> atoms step: graph attention and von Mises mixture heads (TorchScript)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..geometry import hash_normal, hash_uniform, wrap_angle

__all__ = ["AngleHead", "AttentionLayer", "vm_mixture_nll", "sample_von_mises"]


class AngleHead(nn.Module):
    """MLP -> mixture of von Mises parameters for one angle.

    The input may be split into shared features and a small per-call part
    (the previous chi angles): :meth:`context` applies the first layer to the
    shared features once, and :meth:`conditional` adds the small part, so
    evaluating many candidates costs little more than one evaluation.

    Examples
    --------
    >>> head = AngleHead(8, 16, k=3)
    >>> logp, mu, kappa = head(torch.randn(2, 5, 8))
    >>> logp.shape, bool((kappa >= 0.5).all())
    (torch.Size([2, 5, 3]), True)
    """

    def __init__(self, d_in: int, hidden: int, k: int):
        super().__init__()
        self.k = k
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, 4 * k))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self._mixture(self.net(x))

    def context(self, h: Tensor) -> Tensor:
        """First-layer pre-activation of the leading ``h.shape[-1]`` input features (bias included)."""
        first = self.net[0]
        return torch.nn.functional.linear(h, first.weight[:, : h.shape[-1]], first.bias)

    def conditional(self, context: Tensor, extra: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Same as ``forward(cat([h, extra]))`` given ``context = self.context(h)``."""
        first = self.net[0]
        z = context + torch.nn.functional.linear(extra, first.weight[:, first.weight.shape[1] - extra.shape[-1]:])
        return self._mixture(self.net[2](self.net[1](z)))

    def _mixture(self, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, c, s, lk = out.split(self.k, dim=-1)
        mu = torch.atan2(s, c + 1e-6)
        kappa = torch.nn.functional.softplus(lk) + 0.5
        return torch.log_softmax(logits, dim=-1), mu, kappa.clamp(max=500.0)


def vm_mixture_nll(logp: Tensor, mu: Tensor, kappa: Tensor, x: Tensor) -> Tensor:
    """Negative log-likelihood of angles ``x`` under a von Mises mixture (per element).

    Examples
    --------
    >>> one = torch.zeros(1, 1)  # one component: log weight 0
    >>> round(float(vm_mixture_nll(one, one, one * 1e-6, torch.zeros(1))), 4)  # uniform: log(2 pi)
    1.8379
    """
    log_i0 = torch.log(torch.special.i0e(kappa)) + kappa
    comp = logp + kappa * torch.cos(x.unsqueeze(-1) - mu) - math.log(2 * math.pi) - log_i0
    return -torch.logsumexp(comp, dim=-1)


def sample_von_mises(logp: Tensor, mu: Tensor, kappa: Tensor, temperature: float, seed: int, stream: int) -> Tensor:
    """Draw one angle per element from a von Mises mixture with counter-based noise (radians).

    ``temperature`` scales the Gumbel choice of the component and the spread
    within it; 0 returns the mean of the most probable component. The same
    ``seed`` and ``stream`` give the same draws on every device.

    Examples
    --------
    >>> logp, mu, kappa = torch.log(torch.tensor([[0.5, 0.5]])), torch.tensor([[0.0, 3.0]]), torch.full((1, 2), 50.0)
    >>> float(sample_von_mises(logp, mu, kappa, 0.0, seed=1, stream=0)[0])
    0.0
    >>> a = sample_von_mises(logp, mu, kappa, 1.0, seed=1, stream=0)
    >>> bool(torch.equal(a, sample_von_mises(logp, mu, kappa, 1.0, seed=1, stream=0)))
    True
    """
    if temperature <= 0.0:
        best = logp.argmax(dim=-1, keepdim=True)
        return mu.gather(-1, best).squeeze(-1)
    shape = list(logp.shape)
    g = -torch.log(-torch.log(hash_uniform(seed, stream, shape, logp.device)))
    k = (logp / temperature + g).argmax(dim=-1, keepdim=True)
    m = mu.gather(-1, k).squeeze(-1)
    kap = kappa.gather(-1, k).squeeze(-1)
    eps = hash_normal(seed, stream + 1, shape[:-1], logp.device)
    return wrap_angle(m + temperature * eps / torch.sqrt(kap))


class AttentionLayer(nn.Module):
    """Pre-norm graph-attention block over the C-alpha kNN graph with edge features in keys and values.

    Examples
    --------
    >>> layer = AttentionLayer(8, heads=2, d_edge=4)
    >>> nb = torch.tensor([[[1], [0]]])  # (B, R, k): each residue attends to the other
    >>> layer(torch.randn(1, 2, 8), nb, torch.randn(1, 2, 1, 4), torch.ones(1, 2, 1, dtype=torch.bool)).shape
    torch.Size([1, 2, 8])
    """

    def __init__(self, h: int, heads: int, d_edge: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.drop = nn.Dropout(dropout)
        self.ln1 = nn.LayerNorm(h)
        self.q = nn.Linear(h, h)
        self.kv = nn.Linear(h, 2 * h)
        self.e = nn.Linear(d_edge, 2 * h)
        self.o = nn.Linear(h, h)
        self.ln2 = nn.LayerNorm(h)
        self.ff = nn.Sequential(nn.Linear(h, 2 * h), nn.SiLU(), nn.Linear(2 * h, h))

    def forward(self, h: Tensor, nb: Tensor, edge: Tensor, nb_mask: Tensor) -> Tensor:
        """Attention of each residue over its neighbours ``nb`` (B, R, k), keys and values shifted by
        ``e(edge)``.

        Keys and values are linear in the neighbour's normalised features ``x_j`` and in the edge, so
        both enter through the query side: the score is ``(W_k^T q) . x_j + (W_ek^T q) . edge`` and the
        message ``W_v (sum_j att_j x_j) + W_ev (sum_j att_j edge_j) + b_v + b_ev``. Only ``x_j``
        (B*R, k, h) is gathered; no per-edge key, value or edge projection is formed. (The key biases
        add the same ``q . b`` to every neighbour's score and cancel in the softmax; the value biases
        pass through because the weights sum to one.)"""
        b, r, kk = nb.shape
        nh = self.heads
        x = self.ln1(h)
        d = x.shape[-1]
        dh = d // nh
        q = self.q(x).view(b * r, nh, dh)
        flat_nb = (nb + (torch.arange(b, device=nb.device) * r).view(b, 1, 1)).reshape(-1)
        xj = x.reshape(b * r, d).index_select(0, flat_nb).view(b * r, kk, d)
        wkv = self.kv.weight.view(2, nh, dh, d)
        we = self.e.weight.view(2, nh, dh, -1)
        ed = edge.reshape(b * r, kk, -1)
        qx = torch.einsum("nhc,hcd->nhd", q, wkv[0])  # (BR, heads, h)
        qe = torch.einsum("nhc,hcd->nhd", q, we[0])  # (BR, heads, d_edge)
        score = torch.bmm(qx, xj.transpose(1, 2)) + torch.bmm(qe, ed.transpose(1, 2))  # (BR, heads, k)
        att = (score / math.sqrt(dh)).masked_fill(~nb_mask.reshape(b * r, 1, kk), -1e9).softmax(dim=-1)
        msg = (torch.einsum("nhd,hcd->nhc", torch.bmm(att, xj), wkv[1])
               + torch.einsum("nhd,hcd->nhc", torch.bmm(att, ed), we[1])
               + self.kv.bias.view(2, nh, dh)[1] + self.e.bias.view(2, nh, dh)[1])
        h = h + self.drop(self.o(msg.reshape(b, r, nh * dh)))
        return h + self.drop(self.ff(self.ln2(h)))
