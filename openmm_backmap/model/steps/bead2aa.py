"""Beads of a CG scheme -> heavy atoms: the C-alpha step behind a scheme featuriser.

Centre-of-mass and Martini beads do not sit on the C-alpha, which the
C-alpha step (:mod:`.ca2aa`) builds every residue around. This step adds
two things in front of it, and keeps its chemistry:

1. **C-alpha placement.** A small invariant graph-attention network over
   the trace of each residue's first bead (the centre of mass, or Martini's
   ``BB``) predicts the C-alpha as an offset in that trace's local residue
   frame, from the residue type and the positions of all the residue's
   beads in the frame. Consecutive C-alphas are then brought to the ideal
   trans (3.80 Å) or cis distance, so the peptide units between them are
   built without strain.
2. **Bead-conditioned angles.** Every residue's beads, in the local frame of
   its predicted C-alpha, are extra node features of the C-alpha step's
   network (:meth:`Bead2AA.bead_features`): centre-of-mass and side-chain
   beads say where the side chain points, which a C-alpha trace does not.

Everything after the C-alpha placement is the C-alpha step's: von Mises
mixture angles, NeRF building with exact bond lengths and angles, L
chirality, repacking. The output is E(3)-equivariant for proper rotations
and translations because both networks see geometry only in local frames.

A new step starts from a trained C-alpha step (:meth:`Bead2AA.from_ca2aa`):
its bead-feature layer starts at zero, so before training the step is the
C-alpha model on the predicted C-alphas.

The beads come in as one array per frame in the scheme's order (residue by
residue; for Martini, ``BB`` then ``SC1`` ... as martinize2 writes them);
the step finds each residue's beads from the residue types.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ...mapping import scheme_mapping
from ...structure import AMINO_ACIDS, InputError
from .ca2aa import CA2AA, CA2AAConfig
from .ca2aa_network import AttentionLayer
from .ca2aa_templates import MAX_ATOMS, N_TYPES
from .registry import register_step

__all__ = ["Bead2AAConfig", "Bead2AA", "BEAD_SCHEMES", "bead_table"]

#: The bead schemes this step takes (C-alpha beads go to the C-alpha step itself).
BEAD_SCHEMES = ("com", "martini3", "martini2")


@dataclass
class Bead2AAConfig(CA2AAConfig):
    """Hyper-parameters of the beads -> atoms step: those of the C-alpha step, plus the scheme and the
    C-alpha placement network.

    Attributes
    ----------
    scheme : str
        The bead scheme, one of :data:`BEAD_SCHEMES`.
    ca_hidden : int
        Width of the C-alpha placement network.
    ca_layers : int
        Its graph-attention layers.
    ca_distance_sweeps : int
        Sweeps that bring consecutive predicted C-alphas to the ideal distance.
    cis_below_angstrom : float
        Consecutive predicted C-alphas closer than this get the cis distance, the others the trans one
        (inference only). Cis peptides are rare (about 0.4 % of CASP peptides) and the beads of some schemes
        barely show them: on the CASP targets, 15 of the 18 centre-of-mass pairs predicted below 3.3 Å are
        trans, so a cis peptide built there puts the oxygen into the next proline's ring.
    """

    scheme: str = "com"
    ca_hidden: int = 64
    ca_layers: int = 2
    ca_distance_sweeps: int = 20
    cis_below_angstrom: float = 3.3


def bead_table(scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """Beads per residue type and their atom weights, for the step's residue slots.

    Returns
    -------
    counts : ndarray, (20,), int
        Beads of each residue type (in :data:`~openmm_backmap.structure.AMINO_ACIDS` order).
    weights : ndarray, (20, S, 14), float
        Weight of every heavy-atom slot in every bead (rows of a bead sum to 1; S the most beads of a residue).

    Examples
    --------
    >>> counts, weights = bead_table("martini3")
    >>> int(counts[AMINO_ACIDS.index("TRP")]), weights.shape, round(float(weights[0, 0].sum()), 6)
    (6, (20, 6, 14), 1.0)
    """
    if scheme not in BEAD_SCHEMES:
        raise InputError(f"the beads -> atoms step takes {', '.join(BEAD_SCHEMES)} beads, not {scheme!r}")
    maps = [scheme_mapping(scheme, [res]) for res in AMINO_ACIDS]
    s = max(m.n_beads for m in maps)
    counts = np.array([m.n_beads for m in maps], dtype=np.int64)
    weights = np.zeros((N_TYPES, s, MAX_ATOMS))
    for t, m in enumerate(maps):
        for b, (members, w) in enumerate(zip(m.members, m.weights)):
            weights[t, b, members] = np.asarray(w, dtype=float) / float(np.sum(w))
    return counts, weights


@register_step("bead2aa")
class Bead2AA(CA2AA):
    """Transferable beads -> heavy-atom generative step for one bead scheme.

    Parameters
    ----------
    config : Bead2AAConfig
    geometry : dict, optional
        Template geometry, as for :class:`~.ca2aa.CA2AA`.

    Examples
    --------
    >>> import torch
    >>> step = Bead2AA(Bead2AAConfig(scheme="martini3", hidden=32, layers=1, ca_hidden=16, ca_layers=1))
    >>> types = torch.tensor([7, 0, 19])  # GLY ALA VAL: 1 + 2 + 2 Martini 3 beads
    >>> beads = torch.randn(2, 5, 3).cumsum(1) * 0.3
    >>> step(beads, types, torch.tensor([True, False, False]), 0, 0.0).shape
    torch.Size([2, 16, 3])
    """

    kind: str = "bead2aa"

    def __init__(self, config: Bead2AAConfig | None = None, geometry: dict | None = None):
        cfg = config or Bead2AAConfig()
        super().__init__(cfg, geometry)
        counts, weights = bead_table(cfg.scheme)
        self.scheme = cfg.scheme
        self.n_slots = int(weights.shape[1])
        self.register_buffer("bead_count", torch.from_numpy(counts))
        self.register_buffer("bead_weights", torch.as_tensor(weights, dtype=torch.float32))
        self.distance_sweeps = cfg.ca_distance_sweeps
        self.cis_below = cfg.cis_below_angstrom
        self.trans_ca_distance = float(self.unit_trans[3, 0])
        self.cis_ca_target = float(self.unit_cis[3, 0])
        d_bead = 4 * self.n_slots
        h, ch = cfg.hidden, cfg.ca_hidden
        # bead features of the atom network: zero at the start, so a new step is the C-alpha step it starts from
        self.bead_in = nn.Sequential(nn.Linear(d_bead, h), nn.SiLU(), nn.Linear(h, h))
        nn.init.zeros_(self.bead_in[2].weight)
        nn.init.zeros_(self.bead_in[2].bias)
        # the C-alpha placement network
        d_edge = 3 + cfg.rbf + 9 + 17
        self.ca_embed = nn.Embedding(N_TYPES, ch)
        self.ca_node = nn.Sequential(nn.Linear(d_bead + 4, ch), nn.SiLU(), nn.Linear(ch, ch))
        self.ca_edge = nn.Sequential(nn.Linear(d_edge, ch), nn.SiLU(), nn.Linear(ch, ch))
        self.ca_net = nn.ModuleList([AttentionLayer(ch, 4, ch) for _ in range(cfg.ca_layers)])
        self.ca_out = nn.Sequential(nn.LayerNorm(ch), nn.Linear(ch, ch), nn.SiLU(), nn.Linear(ch, 3))

    @classmethod
    @torch.jit.unused
    def from_ca2aa(cls, step: CA2AA, config: Bead2AAConfig) -> "Bead2AA":
        """A new step whose atom network is the trained C-alpha step ``step`` (same hyper-parameters).

        Examples
        --------
        >>> ca = CA2AA(CA2AAConfig(hidden=16, layers=1))
        >>> step = Bead2AA.from_ca2aa(ca, Bead2AAConfig(scheme="com", hidden=16, layers=1))
        >>> bool(torch.equal(step.embed.weight, ca.embed.weight))
        True
        """
        out = cls(config)
        try:
            missing, unexpected = out.load_state_dict(step.state_dict(), strict=False)
        except RuntimeError as err:  # tensors of other shapes: other hyper-parameters
            raise InputError(f"the C-alpha step does not fit this config: {err}") from None
        if unexpected or any(not k.startswith(("bead_", "ca_")) for k in missing):
            raise InputError(f"the C-alpha step does not fit this config: missing {missing}, unexpected {unexpected}")
        out.pro_cd_n = float(step.pro_cd_n)
        return out

    @classmethod
    @torch.jit.unused
    def make_config(cls, config: dict) -> Bead2AAConfig:
        return Bead2AAConfig(**config)

    # ------------------------------------------------------------------ beads
    def residue_beads(self, beads: Tensor, residue_types: Tensor) -> tuple[Tensor, Tensor]:
        """The flat beads (B, N, 3) as residue slots (B, R, S, 3), and which slots exist (R, S)."""
        counts = self.bead_count[residue_types]
        if int(counts.sum()) != beads.shape[1]:
            raise RuntimeError("the input has " + str(beads.shape[1]) + " beads; this sequence has "
                               + str(int(counts.sum())) + " beads of scheme " + self.scheme)
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(self.n_slots, device=beads.device)
        have = slot.unsqueeze(0) < counts.unsqueeze(1)
        idx = torch.where(have, start.unsqueeze(1) + slot, start.unsqueeze(1)).reshape(-1)
        b = beads.shape[0]
        x = beads.index_select(1, idx).view(b, residue_types.shape[0], self.n_slots, 3)
        return x * have.unsqueeze(-1).to(x.dtype), have

    def beads_from_atoms(self, xyz: Tensor, mask: Tensor, types: Tensor) -> Tensor:
        """The scheme's beads (B, R, S, 3) of residue slots ``xyz`` (B, R, 14, 3): each bead at the weighted
        centre of its atoms present in ``mask`` (as martinize2 places beads of incomplete residues)."""
        w = self.bead_weights[types] * mask.unsqueeze(2).to(xyz.dtype)
        norm = w.sum(-1, keepdim=True)
        return torch.einsum("brsa,brac->brsc", w / norm.clamp_min(1e-6), torch.nan_to_num(xyz))

    def _local_beads(self, beads: Tensor, origin: Tensor, frames: Tensor, types: Tensor) -> Tensor:
        """Bead positions in each residue's local frame around ``origin`` (nm) and their presence flags."""
        have = (torch.arange(self.n_slots, device=beads.device) < self.bead_count[types].unsqueeze(-1)).to(beads.dtype)
        rel = torch.einsum("brij,brsj->brsi", frames, beads - origin.unsqueeze(2)) / self.angstrom_per_nm
        rel = rel * have.unsqueeze(-1)
        return torch.cat([rel.flatten(2), have], dim=-1)

    def bead_features(self, beads: Tensor, ca: Tensor, types: Tensor, frames: Tensor) -> Tensor:
        return self.bead_in(self._local_beads(beads, ca, frames, types))

    # ------------------------------------------------------------------ C-alphas
    def ca_offsets(self, beads: Tensor, types: Tensor, valid: Tensor, seg_start: Tensor) -> tuple[Tensor, Tensor]:
        """Predicted C-alpha offsets (B, R, 3), Å, in the local frames of the first-bead trace, and those
        frames (B, R, 3, 3)."""
        anchor = beads[:, :, 0]
        frames, nb, nb_mask, edge, has_next, has_prev = self._graph(anchor, types, valid, seg_start)
        node = torch.stack([has_next, has_prev, ~has_next, ~has_prev], dim=-1).to(anchor.dtype)
        h = self.ca_embed(types) + self.ca_node(torch.cat([self._local_beads(beads, anchor, frames, types), node], -1))
        e = self.ca_edge(edge)
        for layer in self.ca_net:
            h = layer(h, nb, e, nb_mask)
        return self.ca_out(h), frames

    def place_ca(self, beads: Tensor, types: Tensor, valid: Tensor, seg_start: Tensor) -> Tensor:
        """C-alphas (B, R, 3), Å, of residue beads (B, R, S, 3), Å."""
        offset, frames = self.ca_offsets(beads, types, valid, seg_start)
        ca = beads[:, :, 0] + torch.einsum("brji,brj->bri", frames, offset)
        return self.ideal_ca_distances(ca, seg_start)

    def ideal_ca_distances(self, ca: Tensor, seg_start: Tensor) -> Tensor:
        """Move consecutive C-alphas of a segment to the ideal trans (3.80 Å) distance, or the cis one below
        ``cis_below_angstrom``, sharing each correction between the two (a few Jacobi sweeps)."""
        link = (~seg_start[:, 1:]).to(ca.dtype).unsqueeze(-1)
        for _ in range(self.distance_sweeps):
            d = ca[:, 1:] - ca[:, :-1]
            n = torch.linalg.vector_norm(d, dim=-1, keepdim=True).clamp_min(1e-6)
            target = torch.where(n < self.cis_below, torch.full_like(n, self.cis_ca_target),
                                 torch.full_like(n, self.trans_ca_distance))
            step = 0.5 * (n - target) / n * d * link
            zero = torch.zeros_like(ca[:, :1])
            ca = ca + 0.5 * (torch.cat([step, zero], 1) - torch.cat([zero, step], 1))
        return ca

    # ------------------------------------------------------------------ sampling
    def forward(self, beads_nm: Tensor, residue_types: Tensor, segment_start: Tensor, seed: int,
                temperature: float) -> Tensor:
        """Heavy atoms (B, A, 3) in nm, canonical order, from the scheme's beads (B, N, 3) in nm."""
        beads, _ = self.residue_beads(beads_nm * self.angstrom_per_nm, residue_types)
        b = beads.shape[0]
        types = residue_types.unsqueeze(0).expand(b, -1)
        seg = segment_start.unsqueeze(0).expand(b, -1)
        ca = self.place_ca(beads, types, torch.ones_like(seg), seg)
        return self.atoms(ca, residue_types, segment_start, seed, temperature, beads)

    # ------------------------------------------------------------------ training
    @torch.jit.unused
    def bead_loss(self, xyz: Tensor, mask: Tensor, types: Tensor, valid: Tensor, seg_start: Tensor,
                  ca_noise: float = 0.0, bead_noise: float = 0.0, ca_weight: float = 1.0) -> tuple[Tensor, dict]:
        """NLL of the reference angles given the true C-alphas and the beads, plus ``ca_weight`` times the
        mean squared error (Å^2) of the predicted C-alphas; ``xyz`` residue slots in Å."""
        beads = self.beads_from_atoms(xyz, mask, types)
        if bead_noise > 0:
            beads = beads + bead_noise * torch.randn_like(beads)
        nll, parts = self.loss(xyz, mask, types, valid, seg_start, ca_noise=ca_noise, beads=beads)
        offset, frames = self.ca_offsets(beads, types, valid, seg_start)
        true = torch.einsum("brij,brj->bri", frames, xyz[:, :, 1] - beads[:, :, 0])
        ok = (valid & mask[..., 1]).to(xyz.dtype)
        mse = (((offset - true) ** 2).sum(-1) * ok).sum() / ok.sum().clamp_min(1.0)
        return nll + ca_weight * mse, {**parts, "ca_mse": float(mse.detach())}
