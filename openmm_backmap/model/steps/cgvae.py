"""Ultra-coarse beads -> finer particles: a per-system equivariant conditional VAE (CGVAE style).

One step of a k-step model, ``p(x_fine | X_beads)``, for ONE protein whose
mapping is fixed: the fine particles are its C-alphas (UCG -> CA, the
first step of the 2-step model, followed by the transferable C-alpha -> atoms
step), all its heavy atoms in canonical order (UCG -> AA directly, the
one-step baseline of the same family), or the beads of a finer ultra-coarse
level (UCG -> finer UCG, the first step of a k = 3 model).

Model (after Wang and Gomez-Bombarelli, "Generative coarse-graining of
molecular conformations", ICML 2022):

* a latent ``z`` of ``latent`` invariant numbers per fine particle (or per
  bead, ``latent_level='bead'``);
* encoder ``q(z | x, X)``: invariant message passing over the fine graph
  (a static kNN graph from the training ensemble's mean distances) and
  fine -> bead edges (each particle sees the ``bead_neighbors`` beads nearest
  to its own bead), with distances of the true fine coordinates;
* prior ``p(z | X)``: the same over the coarse graph only (a bead network,
  then lifted to the fine particles with bead-bead distances);
* decoder ``x = f(z, X)``: every fine particle starts at its bead plus an
  offset, a learned combination of the directions to the neighbouring beads
  (plus their cross products with the mean direction), and ``decoder_layers``
  EGNN layers refine it,
  ``x_i += mean_j phi(m_ij) (x_i - x_j) / (d_ij + 1) [+ mean_j psi(m_ij) u_ij x u_i]``,
  over fine neighbours and beads (bead positions stay fixed).

All messages depend on distances only, so latents and weights are invariant
and the output is equivariant: rotating and translating the beads rotates and
translates the output. The optional cross-product term (``chiral=True``,
the default) makes the decoder SE(3)- instead of E(3)-equivariant, so it can
produce chiral structures (right-handed helices, L-amino acids) from beads
alone; a mirrored input then does NOT give the mirrored output, as it should
not for proteins.

``temperature=0`` decodes the prior mean (deterministic); ``temperature=1``
samples ``z ~ p(z | X)`` with counter-based noise
(:func:`~openmm_backmap.model.geometry.hash_normal`): the same seed gives the same
output on the same device.

Per-system context (bead of every fine particle, residue types, atom slots,
the fine graph, bonds) lives in buffers; the passed ``residue_types`` are used
only when they have one entry per residue of the system (the k-step model
passes the embedded sequence), and ignored when empty.

Inputs and outputs of :meth:`CGVAE.forward` are in nm; the network works in Å.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ...structure import AMINO_ACIDS, InputError, atom_layout, residue_type_indices
from ...structure.constants import ANGSTROM_PER_NM, MAX_HEAVY_ATOMS_PER_RESIDUE
from ..geometry import hash_normal
from .registry import register_step

__all__ = ["CGVAEConfig", "CGVAE", "system_context", "N_STATIC"]

MAX_SLOTS = MAX_HEAVY_ATOMS_PER_RESIDUE
N_TYPES = len(AMINO_ACIDS)
#: Width of the static fine-edge features (bonded, same residue, sequence separation one-hot).
N_STATIC = 8


@dataclass
class CGVAEConfig:
    """Hyper-parameters of the UCG -> fine step.

    Attributes
    ----------
    hidden : int
        Width of node features.
    latent : int
        Invariant latent numbers per fine particle (or per bead).
    latent_level : str
        ``'fine'`` (one latent vector per fine particle) or ``'bead'``.
    encoder_layers, prior_layers, decoder_layers : int
        Message-passing layers of the encoder, of the prior (on the fine
        graph, after the bead network) and EGNN layers of the decoder.
    coarse_layers : int
        Layers of the bead network (shared by prior and decoder).
    fine_neighbors : int
        k of the static fine kNN graph (by mean distance over the training
        frames).
    bead_neighbors : int
        Beads seen by every fine particle: the k nearest to its own bead
        (itself included); also the k of the bead kNN graph.
    rbf : int
        Radial basis functions per distance.
    fine_cutoff, coarse_cutoff : float
        Range (Å) of the radial bases of fine-fine and of bead distances;
        0 = from the training data (set by the task).
    offset_scale : float
        Typical distance (Å) of a fine particle from its bead; scales the
        initial offsets (0 = from the training data).
    particle_embedding : bool
        Learn one embedding per fine particle (on top of residue type and
        atom slot embeddings): fine for per-system models.
    chiral : bool
        Add cross-product (SE(3)) terms to the coordinate updates.
    """

    hidden: int = 64
    latent: int = 8
    latent_level: str = "fine"
    encoder_layers: int = 3
    prior_layers: int = 2
    coarse_layers: int = 2
    decoder_layers: int = 4
    fine_neighbors: int = 12
    bead_neighbors: int = 8
    rbf: int = 16
    fine_cutoff: float = 0.0
    coarse_cutoff: float = 0.0
    offset_scale: float = 0.0
    particle_embedding: bool = True
    chiral: bool = True


# --------------------------------------------------------------------------
# per-system context (numpy, at training time)
# --------------------------------------------------------------------------
def system_context(sequence, segment_start, residue_bead, target: str, fine_xyz_A, fine_neighbors: int = 12,
                   bead_neighbors: int = 8, max_frames: int = 200, residue_unit=None) -> dict:
    """Buffers and data-derived scales of one system.

    Parameters
    ----------
    sequence : list of str
    segment_start : array of bool, (R,)
    residue_bead : array of int, (R,)
        Bead of every residue (the UCG partition of the C-alphas).
    target : str
        ``'ca'`` (fine particles = C-alphas), ``'aa'`` (canonical heavy atoms)
        or ``'ucgM'`` (the M beads of a finer ultra-coarse level, which
        ``residue_unit`` gives; the middle step of a k = 3 model).
    fine_xyz_A : array, (T, F, 3), Å
        Reference fine coordinates (training frames, complete).
    fine_neighbors, bead_neighbors : int
    max_frames : int
        Frames used for the statistics (evenly spaced).
    residue_unit : array of int, (R,), optional
        Finer bead of every residue, for a ``'ucgM'`` target. The levels must
        nest: all residues of a finer bead lie in one bead of
        ``residue_bead``. A finer bead is represented by its middle residue
        (type embedding, sequence separation); its bonds join beads
        consecutive along the sequence within a chain segment.

    Returns
    -------
    dict
        Arrays ``fine_bead, fine_res, fine_slot, fine_static, fine_nb,
        fine_nb_feat, bonds, residue_types, segment_start`` and numbers
        ``n_beads, n_res, fine_cutoff, coarse_cutoff, offset_scale``.
    """
    seq = list(sequence)
    seg = np.asarray(segment_start, dtype=bool).copy()
    seg[0] = True
    residue_bead = np.asarray(residue_bead, dtype=np.int64)
    n_res = len(seq)
    if residue_bead.shape != (n_res,) or residue_bead.min() < 0:
        raise InputError("residue_bead needs one bead index >= 0 per residue")
    n_beads = int(residue_bead.max()) + 1
    lay = atom_layout(seq)
    segid = np.cumsum(seg) - 1
    seg_end = np.zeros(n_res, dtype=bool)
    seg_end[:-1] = seg[1:]
    seg_end[-1] = True
    # fine -> bead weights: the beads are the C-alpha centroids (a C-alpha-less atom weighs 0)
    if target == "ca":
        fine_res = np.arange(n_res)
        fine_slot = np.ones(n_res, dtype=np.int64)
        weight = np.ones(n_res)
        bonds = np.array([(r, r + 1) for r in range(n_res - 1) if not seg[r + 1]], dtype=np.int64).reshape(-1, 2)
        static = np.stack([seg, seg_end], axis=1)
    elif target == "aa":
        fine_res = lay.atom_residue.copy()
        fine_slot = np.arange(lay.n_atoms) - lay.residue_start[lay.atom_residue]
        weight = np.zeros(lay.n_atoms)
        weight[lay.ca_index] = 1.0
        bonds = lay.bonds(seg)
        static = np.stack([seg[fine_res], seg_end[fine_res]], axis=1)
    elif target.startswith("ucg") and residue_unit is not None:
        unit = np.asarray(residue_unit, dtype=np.int64)
        if unit.shape != (n_res,) or unit.min() < 0:
            raise InputError("residue_unit needs one finer-bead index >= 0 per residue")
        members = [np.flatnonzero(unit == u) for u in range(int(unit.max()) + 1)]
        if any(len(m) == 0 for m in members):
            raise InputError("residue_unit leaves a finer bead without residues")
        if any(len(np.unique(residue_bead[m])) != 1 for m in members):
            raise InputError(f"the levels do not nest: a bead of {target} spans two coarser beads")
        fine_res = np.array([m[len(m) // 2] for m in members], dtype=np.int64)
        fine_slot = np.ones(len(members), dtype=np.int64)
        weight = np.array([len(m) for m in members], dtype=np.float64)
        first = np.array([m[0] for m in members])
        bonds = np.array([(u, u + 1) for u in range(len(members) - 1) if segid[first[u]] == segid[first[u + 1]]],
                         dtype=np.int64).reshape(-1, 2)
        static = np.array([[seg[m].any(), seg_end[m].any()] for m in members])
    else:
        raise InputError(f"target must be 'ca', 'aa' or 'ucgM' with residue_unit, got {target!r}")
    n_fine = len(fine_res)
    x = np.asarray(fine_xyz_A, dtype=np.float64)
    if x.ndim != 3 or x.shape[1:] != (n_fine, 3):
        raise InputError(f"fine_xyz_A must have shape (frames, {n_fine}, 3); got {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("fine_xyz_A has missing (NaN) coordinates; drop incomplete frames first")
    if x.shape[0] > max_frames:
        x = x[np.linspace(0, x.shape[0] - 1, max_frames).round().astype(int)]
    fine_bead = residue_bead[fine_res]
    weight = weight / np.bincount(fine_bead, weights=weight, minlength=n_beads)[fine_bead]
    kf = max(1, min(int(fine_neighbors), n_fine - 1))
    xt = torch.as_tensor(x, dtype=torch.float64)
    mean_d = torch.zeros(n_fine, n_fine, dtype=torch.float64)
    for t in range(0, xt.shape[0], 16):
        mean_d += torch.cdist(xt[t:t + 16], xt[t:t + 16]).sum(0)
    mean_d /= xt.shape[0]
    mean_d.fill_diagonal_(float("inf"))
    nd, nb = mean_d.topk(kf, dim=1, largest=False)
    nb = nb.numpy()
    # static edge features: bonded, same residue, |residue separation| one-hot 0..4 (5: >4 or other segment)
    bonded = np.zeros((n_fine, n_fine), dtype=bool)
    if len(bonds):
        bonded[bonds[:, 0], bonds[:, 1]] = bonded[bonds[:, 1], bonds[:, 0]] = True
    ri, rj = fine_res[:, None], fine_res[nb]
    sep = np.where(segid[rj] != segid[ri], 5, np.minimum(np.abs(rj - ri), 5))
    feat = np.zeros((n_fine, kf, N_STATIC), dtype=np.float32)
    feat[..., 0] = bonded[np.arange(n_fine)[:, None], nb]
    feat[..., 1] = ri == rj
    feat[np.arange(n_fine)[:, None], np.arange(kf)[None, :], 2 + sep] = 1.0
    static = static.astype(np.float32)  # chain start / chain end
    # data-derived scales (Å): bead-bead and fine-bead distances over (at most 50) frames
    xs = x[np.linspace(0, x.shape[0] - 1, min(50, x.shape[0])).round().astype(int)]
    beads = np.zeros((len(xs), n_beads, 3))
    np.add.at(beads, (slice(None), fine_bead), xs * weight[None, :, None])  # (T, N, 3)
    kb = max(1, min(int(bead_neighbors), n_beads))
    dbb = np.linalg.norm(beads[:, :, None] - beads[:, None], axis=-1)
    nbb = np.argsort(dbb, axis=-1, kind="stable")[..., :kb]  # (T, N, kb)
    fb = nbb[:, fine_bead]  # (T, F, kb)
    bx = beads[np.arange(len(xs))[:, None, None], fb]  # (T, F, kb, 3)
    d_fb = np.linalg.norm(xs[:, :, None] - bx, axis=-1)
    own = beads[:, fine_bead]
    offset_scale = float(np.sqrt(np.mean(np.sum((xs - own) ** 2, -1))))
    coarse_cutoff = float(1.1 * max(np.quantile(d_fb, 0.99), np.quantile(np.take_along_axis(dbb, nbb, -1), 0.99)))
    fine_cutoff = float(1.25 * np.quantile(nd.numpy(), 0.99))
    return {"fine_bead": fine_bead, "fine_res": fine_res, "fine_slot": fine_slot, "fine_static": static,
            "fine_nb": nb.astype(np.int64), "fine_nb_feat": feat, "bonds": bonds.astype(np.int64),
            "residue_types": residue_type_indices(seq), "segment_start": seg, "n_beads": n_beads,
            "n_res": n_res, "target": target, "fine_cutoff": max(fine_cutoff, 1.0),
            "coarse_cutoff": max(coarse_cutoff, 1.0), "offset_scale": max(offset_scale, 0.5)}


# --------------------------------------------------------------------------
# network pieces (TorchScript)
# --------------------------------------------------------------------------
def _rbf(d: Tensor, n: int, cutoff: float) -> Tensor:
    centers = torch.linspace(0.0, cutoff, n, device=d.device, dtype=d.dtype)
    width = cutoff / n
    return torch.exp(-((d.unsqueeze(-1) - centers) / width) ** 2)


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    """``x`` (B, M, C) at ``idx`` (B, F, K) -> (B, F, K, C)."""
    b, f, k = idx.shape
    c = x.shape[-1]
    return x.gather(1, idx.reshape(b, f * k, 1).expand(b, f * k, c)).view(b, f, k, c)


def _dist(v: Tensor) -> Tensor:
    return torch.sqrt((v * v).sum(-1) + 1e-6)


class _Edges(nn.Module):
    """Message MLP ``m_ij = MLP(A h_i + B h_j + C e_ij)``; ``B h`` is applied before gathering."""

    def __init__(self, h: int, d_edge: int):
        super().__init__()
        self.dst = nn.Linear(h, h)
        self.src = nn.Linear(h, h, bias=False)
        self.edge = nn.Linear(d_edge, h, bias=False)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(h, h), nn.SiLU())

    def forward(self, h_dst: Tensor, src_g: Tensor, e: Tensor) -> Tensor:
        return self.mlp(self.dst(h_dst).unsqueeze(2) + src_g + self.edge(e))


class _Block(nn.Module):
    """Message passing into fine particles from fine neighbours and beads, with optional EGNN coordinate update."""

    def __init__(self, h: int, n_rbf: int, coords: bool, chiral: bool):
        super().__init__()
        self.n_rbf = n_rbf
        self.coords = coords
        self.chiral = chiral
        self.ff = _Edges(h, n_rbf + N_STATIC)
        self.fb = _Edges(h, n_rbf + 1)
        self.ln = nn.LayerNorm(h)
        self.node = nn.Sequential(nn.Linear(3 * h, h), nn.SiLU(), nn.Linear(h, h))
        self.x_ff = nn.Linear(h, 2)
        self.x_fb = nn.Linear(h, 2)
        for lin in (self.x_ff, self.x_fb):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, h: Tensor, hb: Tensor, x: Tensor, xb: Tensor, nf: Tensor, nf_feat: Tensor, fb_idx: Tensor,
                fb_self: Tensor, ff_cut: float, fb_cut: float) -> tuple[Tensor, Tensor]:
        b, f, _ = h.shape
        k = nf.shape[1]
        # fine-fine (static graph)
        xj = x.index_select(1, nf.reshape(-1)).view(b, f, k, 3)
        v = xj - x.unsqueeze(2)
        d = _dist(v)
        e = torch.cat([_rbf(d, self.n_rbf, ff_cut), nf_feat.unsqueeze(0).expand(b, -1, -1, -1)], dim=-1)
        src = self.ff.src(h).index_select(1, nf.reshape(-1)).view(b, f, k, -1)
        m_ff = self.ff(h, src, e)
        # fine -> beads
        xc = _gather(xb, fb_idx)
        vb = xc - x.unsqueeze(2)
        db = _dist(vb)
        eb = torch.cat([_rbf(db, self.n_rbf, fb_cut), fb_self.unsqueeze(-1)], dim=-1)
        m_fb = self.fb(h, _gather(self.fb.src(hb), fb_idx), eb)
        if self.coords:
            u = v / (d.unsqueeze(-1) + 1.0)
            w = self.x_ff(m_ff)
            dx = -(u * w[..., 0:1]).mean(2)
            ub = vb / (db.unsqueeze(-1) + 1.0)
            wb = self.x_fb(m_fb)
            dx = dx - (ub * wb[..., 0:1]).mean(2)
            if self.chiral:
                ubar = u.mean(2, keepdim=True).expand_as(u)
                dx = dx + (torch.cross(u, ubar, dim=-1) * w[..., 1:2]).mean(2)
                ubbar = ub.mean(2, keepdim=True).expand_as(ub)
                dx = dx + (torch.cross(ub, ubbar, dim=-1) * wb[..., 1:2]).mean(2)
            x = x + dx
        h = h + self.node(torch.cat([self.ln(h), m_ff.mean(2), m_fb.mean(2)], dim=-1))
        return h, x


class _BeadLayer(nn.Module):
    def __init__(self, h: int, n_rbf: int):
        super().__init__()
        self.n_rbf = n_rbf
        self.edges = _Edges(h, n_rbf + 1)
        self.ln = nn.LayerNorm(h)
        self.node = nn.Sequential(nn.Linear(2 * h, h), nn.SiLU(), nn.Linear(h, h))

    def forward(self, hb: Tensor, nb: Tensor, dist: Tensor, is_self: Tensor, cut: float) -> Tensor:
        e = torch.cat([_rbf(dist, self.n_rbf, cut), is_self.unsqueeze(-1)], dim=-1)
        m = self.edges(hb, _gather(self.edges.src(hb), nb), e)
        return hb + self.node(torch.cat([self.ln(hb), m.mean(2)], dim=-1))


@register_step("cgvae")
class CGVAE(nn.Module):
    """Per-system UCG -> C-alpha (or -> heavy atoms) equivariant conditional VAE.

    Parameters
    ----------
    config : CGVAEConfig
    context : dict
        Output of :func:`system_context` (bead of every fine particle,
        residue types, fine graph, bonds, scales).

    Examples
    --------
    >>> import numpy as np, torch
    >>> seq = ['ALA', 'GLY', 'SER', 'LEU', 'LYS', 'ALA']
    >>> ca = np.cumsum(np.random.default_rng(0).normal(size=(3, 6, 3)), axis=1) * 2.2  # Å
    >>> ctx = system_context(seq, np.r_[True, [False] * 5], np.array([0, 0, 1, 1, 2, 2]), 'ca', ca)
    >>> step = CGVAE(CGVAEConfig(hidden=16, latent=2), ctx)
    >>> beads = torch.randn(2, 3, 3)  # nm
    >>> step(beads, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool), 1, 1.0).shape
    torch.Size([2, 6, 3])
    """

    kind: str = "cgvae"

    def __init__(self, config: CGVAEConfig | None = None, context: dict | None = None):
        super().__init__()
        cfg = config or CGVAEConfig()
        if context is None:
            raise InputError("CGVAE is a per-system step: pass the context from system_context(...)")
        if cfg.latent_level not in ("fine", "bead"):
            raise InputError(f"latent_level must be 'fine' or 'bead', got {cfg.latent_level!r}")
        self.config = cfg
        ctx = context
        as_long = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.int64)  # noqa: E731
        self.register_buffer("fine_bead", as_long(ctx["fine_bead"]))
        self.register_buffer("fine_res", as_long(ctx["fine_res"]))
        self.register_buffer("fine_slot", as_long(ctx["fine_slot"]))
        self.register_buffer("fine_static", torch.as_tensor(np.asarray(ctx["fine_static"]), dtype=torch.float32))
        self.register_buffer("fine_nb", as_long(ctx["fine_nb"]))
        self.register_buffer("fine_nb_feat", torch.as_tensor(np.asarray(ctx["fine_nb_feat"]), dtype=torch.float32))
        self.register_buffer("bonds", as_long(ctx["bonds"]).reshape(-1, 2))
        self.register_buffer("residue_types", as_long(ctx["residue_types"]))
        self.register_buffer("segment_start", torch.as_tensor(np.asarray(ctx["segment_start"]), dtype=torch.bool))
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.int64))  # for KL annealing; informative
        self.n_fine = int(len(ctx["fine_bead"]))
        self.n_beads = int(ctx["n_beads"])
        self.n_res = int(ctx["n_res"])
        self.target = str(ctx["target"])
        self.fine_cutoff = float(cfg.fine_cutoff or ctx["fine_cutoff"])
        self.coarse_cutoff = float(cfg.coarse_cutoff or ctx["coarse_cutoff"])
        self.offset_scale = float(cfg.offset_scale or ctx["offset_scale"])
        self.k_bead = int(min(cfg.bead_neighbors, self.n_beads))
        self.latent = int(cfg.latent)
        self.bead_latent = cfg.latent_level == "bead"
        self.use_particle_embedding = bool(cfg.particle_embedding)
        self.chiral = bool(cfg.chiral)
        self.n_rbf = int(cfg.rbf)
        self.max_slots = MAX_SLOTS
        # TorchScript reads module attributes, not module-level globals
        self.angstrom_per_nm = ANGSTROM_PER_NM
        self.logvar_min = -9.0
        self.logvar_max = 4.0
        h, lat = cfg.hidden, cfg.latent

        self.type_embed = nn.Embedding(N_TYPES * MAX_SLOTS, h)
        self.static_in = nn.Linear(2, h)
        self.particle_embed = nn.Embedding(self.n_fine if cfg.particle_embedding else 1, h)
        nn.init.normal_(self.particle_embed.weight, std=0.1)
        self.bead_embed = nn.Embedding(self.n_beads, h)
        self.bead_layers = nn.ModuleList([_BeadLayer(h, cfg.rbf) for _ in range(cfg.coarse_layers)])
        self.enc_layers = nn.ModuleList([_Block(h, cfg.rbf, False, False) for _ in range(cfg.encoder_layers)])
        self.enc_head = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, 2 * lat))
        self.prior_layers = nn.ModuleList([_Block(h, cfg.rbf, False, False) for _ in range(cfg.prior_layers)])
        self.prior_head = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, 2 * lat))
        self.z_in = nn.Linear(lat, h)
        self.lift = _Edges(h, cfg.rbf + 1)
        self.lift_w = nn.Linear(h, 2)
        nn.init.normal_(self.lift_w.weight, std=0.1)
        self.dec_layers = nn.ModuleList([_Block(h, cfg.rbf, True, cfg.chiral) for _ in range(cfg.decoder_layers)])

    # ------------------------------------------------------------------ pieces
    def fine_features(self, residue_types: Tensor) -> Tensor:
        """Initial fine-particle features (F, H)."""
        types = self.residue_types
        if residue_types.numel() == self.n_res:
            types = residue_types.to(self.residue_types.device)
        ft = types.index_select(0, self.fine_res) * self.max_slots + self.fine_slot
        h = self.type_embed(ft) + self.static_in(self.fine_static)
        if self.use_particle_embedding:
            h = h + self.particle_embed.weight
        return h

    def coarse(self, beads: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Bead features (B, N, H), bead kNN (B, N, kb) (self first), distances and self flags."""
        b, n, _ = beads.shape
        v = beads.unsqueeze(2) - beads.unsqueeze(1)
        d = torch.sqrt((v * v).sum(-1) + 1e-12)
        eye = torch.eye(n, device=beads.device, dtype=beads.dtype).unsqueeze(0)
        dist, nb = (d - eye).topk(self.k_bead, dim=-1, largest=False)
        dist = dist.clamp_min(0.0)
        is_self = (nb == torch.arange(n, device=beads.device).view(1, n, 1)).to(beads.dtype)
        hb = self.bead_embed.weight.unsqueeze(0).expand(b, -1, -1)
        for layer in self.bead_layers:
            hb = layer(hb, nb, dist, is_self, self.coarse_cutoff)
        return hb, nb, dist, is_self

    def _fine_bead_edges(self, nb: Tensor) -> tuple[Tensor, Tensor]:
        fb_idx = nb.index_select(1, self.fine_bead)
        fb_self = (fb_idx == self.fine_bead.view(1, -1, 1)).to(torch.float32)
        return fb_idx, fb_self

    def _to_latent_level(self, h: Tensor) -> Tensor:
        """Mean-pool fine features to beads when latents live on beads."""
        if not self.bead_latent:
            return h
        b, f, c = h.shape
        out = torch.zeros(b, self.n_beads, c, device=h.device, dtype=h.dtype)
        out = out.index_add(1, self.fine_bead, h)
        cnt = torch.zeros(self.n_beads, device=h.device, dtype=h.dtype).index_add(
            0, self.fine_bead, torch.ones(f, device=h.device, dtype=h.dtype))
        return out / cnt.clamp_min(1.0).view(1, -1, 1)

    def _split(self, out: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = out.chunk(2, dim=-1)
        return mu, logvar.clamp(self.logvar_min, self.logvar_max)

    def encode(self, fine: Tensor, beads: Tensor, h0: Tensor, hb: Tensor, fb_idx: Tensor,
               fb_self: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance from true fine coordinates (Å)."""
        h = h0
        for layer in self.enc_layers:
            h, _ = layer(h, hb, fine, beads, self.fine_nb, self.fine_nb_feat, fb_idx, fb_self, self.fine_cutoff,
                         self.coarse_cutoff)
        return self._split(self.enc_head(self._to_latent_level(h)))

    def prior(self, beads: Tensor, h0: Tensor, hb: Tensor, fb_idx: Tensor, fb_self: Tensor) -> tuple[Tensor, Tensor]:
        """Prior mean and log-variance from the beads only (fine particles sit at their beads)."""
        at_bead = beads.index_select(1, self.fine_bead)
        h = h0
        for layer in self.prior_layers:
            h, _ = layer(h, hb, at_bead, beads, self.fine_nb, self.fine_nb_feat, fb_idx, fb_self, self.coarse_cutoff,
                         self.coarse_cutoff)
        return self._split(self.prior_head(self._to_latent_level(h)))

    def decode(self, z: Tensor, beads: Tensor, h0: Tensor, hb: Tensor, fb_idx: Tensor, fb_self: Tensor) -> Tensor:
        """Fine coordinates (B, F, 3) in Å from latents and beads (Å)."""
        if self.bead_latent:
            z = z.index_select(1, self.fine_bead)
        h = h0 + self.z_in(z)
        own = beads.index_select(1, self.fine_bead)
        xc = _gather(beads, fb_idx)
        v = xc - own.unsqueeze(2)
        d = _dist(v)
        e = torch.cat([_rbf(d, self.n_rbf, self.coarse_cutoff), fb_self.unsqueeze(-1)], dim=-1)
        m = self.lift(h, _gather(self.lift.src(hb), fb_idx), e)
        w = self.lift_w(m)
        u = v / (d.unsqueeze(-1) + 1.0)
        off = (u * w[..., 0:1]).mean(2)
        if self.chiral:
            ubar = u.mean(2, keepdim=True).expand_as(u)
            off = off + (torch.cross(u, ubar, dim=-1) * w[..., 1:2]).mean(2)
        x = own + self.offset_scale * off
        for layer in self.dec_layers:
            h, x = layer(h, hb, x, beads, self.fine_nb, self.fine_nb_feat, fb_idx, fb_self, self.fine_cutoff,
                         self.coarse_cutoff)
        return x

    # ------------------------------------------------------------------ inference
    def forward(self, x_nm: Tensor, residue_types: Tensor, segment_start: Tensor, seed: int,
                temperature: float) -> Tensor:
        """Fine coordinates (B, F, 3) nm from bead coordinates (B, N, 3) nm.

        ``residue_types`` are used when they have one entry per residue of the
        system and ignored otherwise (e.g. empty); ``segment_start`` is
        ignored (the system's chain breaks are embedded).
        """
        if x_nm.shape[1] != self.n_beads:
            raise RuntimeError("this UCG step expects " + str(self.n_beads) + " beads, got " + str(x_nm.shape[1]))
        beads = x_nm.to(torch.float32) * self.angstrom_per_nm
        b = beads.shape[0]
        h0 = self.fine_features(residue_types).unsqueeze(0).expand(b, -1, -1)
        hb, nb, _, _ = self.coarse(beads)
        fb_idx, fb_self = self._fine_bead_edges(nb)
        mu, logvar = self.prior(beads, h0, hb, fb_idx, fb_self)
        z = mu
        if temperature > 0.0:
            eps = hash_normal(seed, 17, [b, mu.shape[1], self.latent], beads.device)
            z = mu + temperature * torch.exp(0.5 * logvar) * eps
        return self.decode(z, beads, h0, hb, fb_idx, fb_self) / self.angstrom_per_nm

    # ------------------------------------------------------------------ training
    @torch.jit.unused
    def loss(self, fine: Tensor, beads: Tensor, beta: float = 0.05, free_bits: float = 0.0,
             bond_weight: float = 1.0, det_weight: float = 0.0) -> tuple[Tensor, dict]:
        """Negative ELBO-style loss on a batch; ``fine`` (B, F, 3) and ``beads`` (B, N, 3) in Å.

        ``recon`` is the mean squared error per fine particle (Å^2, summed over
        x, y, z), ``kl`` the KL divergence in nats per latent vector (with
        ``free_bits`` nats per latent dimension as a floor), ``bond`` the mean
        squared deviation (Å^2) of bonded distances (consecutive C-alphas or
        template bonds) from the reference ones, and ``det`` (weight
        ``det_weight``) the reconstruction error of the prior-mean decode
        (the deterministic output).
        """
        b = fine.shape[0]
        h0 = self.fine_features(torch.zeros(0, dtype=torch.long)).unsqueeze(0).expand(b, -1, -1)
        hb, nb, _, _ = self.coarse(beads)
        fb_idx, fb_self = self._fine_bead_edges(nb)
        mu_q, lv_q = self.encode(fine, beads, h0, hb, fb_idx, fb_self)
        mu_p, lv_p = self.prior(beads, h0, hb, fb_idx, fb_self)
        z = mu_q + torch.exp(0.5 * lv_q) * torch.randn_like(mu_q)
        x = self.decode(z, beads, h0, hb, fb_idx, fb_self)
        recon = ((x - fine) ** 2).sum(-1).mean()
        kl_el = 0.5 * (lv_p - lv_q + (torch.exp(lv_q) + (mu_q - mu_p) ** 2) / torch.exp(lv_p) - 1.0)
        kl_dim = kl_el.mean(dim=(0, 1))  # per latent dimension
        kl = kl_dim.sum()
        kl_floor = kl_dim.clamp_min(free_bits).sum() if free_bits > 0 else kl
        bond = self.bond_error(x, fine)
        loss = recon + beta * kl_floor + bond_weight * bond
        parts = {"recon": float(recon.detach()), "kl": float(kl.detach()), "bond": float(bond.detach())}
        if det_weight > 0:
            xd = self.decode(mu_p, beads, h0, hb, fb_idx, fb_self)
            det = ((xd - fine) ** 2).sum(-1).mean()
            loss = loss + det_weight * (det + bond_weight * self.bond_error(xd, fine))
            parts["det"] = float(det.detach())
        return loss, parts

    @torch.jit.unused
    def bond_error(self, x: Tensor, ref: Tensor) -> Tensor:
        """Mean squared deviation (Å^2) of bonded distances of ``x`` from those of ``ref``."""
        if self.bonds.shape[0] == 0:
            return x.new_zeros(())
        i, j = self.bonds[:, 0], self.bonds[:, 1]
        d = torch.linalg.vector_norm(x[:, i] - x[:, j], dim=-1)
        d0 = torch.linalg.vector_norm(ref[:, i] - ref[:, j], dim=-1)
        return ((d - d0) ** 2).mean()

    @torch.jit.unused
    def reconstruct(self, fine: Tensor, beads: Tensor) -> Tensor:
        """Decode the posterior mean (Å): how much the latents can carry."""
        b = fine.shape[0]
        h0 = self.fine_features(torch.zeros(0, dtype=torch.long)).unsqueeze(0).expand(b, -1, -1)
        hb, nb, _, _ = self.coarse(beads)
        fb_idx, fb_self = self._fine_bead_edges(nb)
        mu_q, _ = self.encode(fine, beads, h0, hb, fb_idx, fb_self)
        return self.decode(mu_q, beads, h0, hb, fb_idx, fb_self)

