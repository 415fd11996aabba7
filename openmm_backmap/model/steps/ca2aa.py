"""C-alpha -> heavy atoms: a transferable internal-coordinate generative step.

The step predicts, for every residue, a distribution over the few internal
coordinates that C-alpha positions leave free, and builds all heavy atoms from
them with template geometry (NeRF):

* the rotation ``theta`` of each peptide plane (C, O, N of the next residue)
  about its C-alpha/C-alpha axis (an ideal trans or cis unit, bent at its
  angles to fit the pair's distance),
* the N-terminal ``psi`` and the C-terminal ``phi`` and O torsion of every
  segment end,
* the side-chain torsions chi1..chi4, autoregressively (chi_k conditioned on
  the sampled chi_<k).

Each angle has a mixture of von Mises densities whose parameters come from an
invariant graph-attention network over the C-alpha kNN graph, with all
geometry expressed in local residue frames. The output is therefore
E(3)-equivariant for proper rotations and translations, bond lengths are
exact by construction (ged ~ 0), as are the angles except the two peptide
angles that absorb a C-alpha pair's distance from the ideal, and chirality is
fixed (L amino acids, CB from ideal tetrahedral geometry, THR/ILE branches
from the templates). Proline phi, carbonyl contacts and disulfides, which
join residues, are enforced after sampling (:mod:`.ca2aa_chemistry`).
``temperature=0`` gives the deterministic mode (the mean of the most probable
component); ``temperature=1`` samples.

Inputs and outputs of :meth:`CA2AA.forward` are in nm; the network works in Å.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from ...structure import AMINO_ACIDS
from ...structure.constants import (ANGSTROM_PER_NM, CIS_CA_DISTANCE_ANGSTROM, DISULFIDE_ANGLE_DEG, DISULFIDE_BOND_NM,
                                    DISULFIDE_CB_NM, DISULFIDE_NM, METAL_SITE_CB_NM, PROLINE_PHI_DEG,
                                    PROLINE_PHI_RANGE_DEG)
from ..geometry import dihedral, local_frames, place_atom, take_residues, wrap_angle
from .ca2aa_chemistry import (GRID, HINGE_ANGSTROM, carbonyl_planes, close_disulfides, peptide_atoms, plane_phi,
                              pressed_carbonyls, proline_theta)
from .ca2aa_network import AngleHead, AttentionLayer, sample_von_mises, vm_mixture_nll
from .ca2aa_repack import SideChainRepacking
from .ca2aa_targets import reference_angles
from .ca2aa_templates import (BACKBONE_ANGLE_DEG, BACKBONE_BOND_ANGSTROM, MAX_ATOMS, N_TYPES, default_geometry,
                              peptide_unit, residue_tables)
from .registry import register_step

__all__ = ["CA2AAConfig", "CA2AA"]


@dataclass
class CA2AAConfig:
    """Hyper-parameters of the C-alpha -> atoms step.

    Attributes
    ----------
    hidden : int
        Width of node features.
    layers : int
        Graph-attention layers.
    heads : int
        Attention heads.
    neighbors : int
        k of the C-alpha kNN graph.
    mixture : int
        von Mises components per angle.
    rbf : int
        Radial basis functions for distances (0-20 Å).
    edge_dim : int
        Width of edge features.
    repack_sweeps : int
        Sweeps of side-chain repacking after sampling (0 disables it).
    repack_neighbors : int
        Neighbouring residues whose atoms a side chain is checked against.
    proline_phi : bool
        Re-pick the peptide plane before a proline whose phi its ring cannot
        close (:func:`~.ca2aa_chemistry.proline_theta`).
    carbonyls : bool
        Re-pick the peptide plane of a residue whose O is pressed into
        another residue (:meth:`CA2AA.fix_carbonyls`).
    disulfides : bool
        Close disulfides by turning both cysteines' chi1 together
        (:func:`~.ca2aa_chemistry.close_disulfides`).
    dropout : float
        Dropout on the residual branches of the attention trunk while
        training (regularisation; inactive at inference).
    """

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    neighbors: int = 16
    mixture: int = 4
    rbf: int = 16
    edge_dim: int = 64
    repack_sweeps: int = 6
    repack_neighbors: int = 16
    proline_phi: bool = True
    carbonyls: bool = True
    disulfides: bool = True
    dropout: float = 0.0




@register_step("ca2aa")
class CA2AA(SideChainRepacking):
    """Transferable C-alpha -> heavy-atom generative step.

    Parameters
    ----------
    config : CA2AAConfig
    geometry : dict, optional
        Template bond lengths, angles and torsion offsets per residue type and
        slot (arrays of shape (20, 14)), as fitted by :meth:`fit_geometry`.

    Examples
    --------
    >>> import torch
    >>> step = CA2AA(CA2AAConfig(hidden=32, layers=1))
    >>> ca = torch.randn(2, 5, 3).cumsum(1) * 0.38
    >>> types = torch.tensor([0, 7, 5, 13, 19])  # ALA GLY GLN PHE VAL
    >>> xyz = step(ca, types, torch.tensor([True, False, False, False, False]), 0, 0.0)
    >>> xyz.shape
    torch.Size([2, 36, 3])
    """

    kind: str = "ca2aa"

    def __init__(self, config: CA2AAConfig | None = None, geometry: dict | None = None):
        super().__init__()
        cfg = config or CA2AAConfig()
        self.config = cfg
        tabs = residue_tables()
        self.n_levels = tabs["n_levels"]
        self.register_buffer("slot_valid", torch.from_numpy(tabs["valid"]))
        self.register_buffer("zm", torch.from_numpy(tabs["zm"]))
        self.register_buffer("zm_chi", torch.from_numpy(tabs["chi"]))
        self.register_buffer("zm_level", torch.from_numpy(tabs["level"]))
        self.register_buffer("chi_def", torch.from_numpy(tabs["chi_def"]))
        self.register_buffer("chi_valid", torch.from_numpy(tabs["chi_valid"]))
        geometry = geometry or default_geometry()
        for key in ("bond", "angle", "offset"):
            self.register_buffer(f"zm_{key}", torch.as_tensor(np.asarray(geometry[key]), dtype=torch.float32))
        self.register_buffer("unit_trans", torch.tensor(peptide_unit(False), dtype=torch.float32))
        self.register_buffer("unit_cis", torch.tensor(peptide_unit(True), dtype=torch.float32))
        self.cis_ca_distance = CIS_CA_DISTANCE_ANGSTROM
        # TorchScript reads module attributes, not module-level globals
        self.angstrom_per_nm = ANGSTROM_PER_NM
        self.max_atoms = MAX_ATOMS
        self.mixture = cfg.mixture
        self.repack_sweeps = cfg.repack_sweeps
        self.repack_k = cfg.repack_neighbors
        self.repack_wall = 2.5  # Å: side-chain atoms closer than this to another residue's atoms are penalised
        self.repack_weight = 10.0  # penalty units per Å^2 of overlap, against 1 per nat of likelihood
        # encoding and repacking run on chunks of frames of about this many residues: memory is bounded, and on
        # a CPU a chunk's tensors stay in cache (1.2x faster than whole batches at 100 residues x 64 frames)
        self.chunk_residues = (1024, 65536)  # (CPU, CUDA)
        self.pro_type = AMINO_ACIDS.index("PRO")
        self.cys_type = AMINO_ACIDS.index("CYS")
        self.proline_phi = cfg.proline_phi
        self.disulfides = cfg.disulfides
        self.carbonyls = cfg.carbonyls
        lo, hi = PROLINE_PHI_RANGE_DEG
        self.pro_phi = (math.radians(PROLINE_PHI_DEG), math.radians(lo), math.radians(hi))
        self.pro_phi_kappa = 1.0 / math.radians(15.0) ** 2  # von Mises prior on proline phi, about +-15 degrees
        self.ss_cuts = (DISULFIDE_NM * ANGSTROM_PER_NM, DISULFIDE_CB_NM * ANGSTROM_PER_NM,
                        METAL_SITE_CB_NM * ANGSTROM_PER_NM, DISULFIDE_BOND_NM * ANGSTROM_PER_NM)
        self.ss_angle = math.radians(DISULFIDE_ANGLE_DEG)
        self.angle_grid = GRID
        self.hinge = HINGE_ANGSTROM
        self.pro_cd_n = float(geometry.get("pro_cd_n", 1.473))
        bond, angle = BACKBONE_BOND_ANGSTROM, BACKBONE_ANGLE_DEG
        self.bond_n_ca, self.bond_ca_c, self.bond_c_o = bond["N-CA"], bond["CA-C"], bond["C-O"]
        self.angle_n_ca_c, self.angle_ca_c_o = math.radians(angle["N-CA-C"]), math.radians(angle["CA-C-O"])

        h, k = cfg.hidden, cfg.mixture
        self.k_nb = cfg.neighbors
        self.n_rbf = cfg.rbf
        d_edge = 3 + cfg.rbf + 9 + 17
        self.embed = nn.Embedding(N_TYPES, h)
        self.node_in = nn.Linear(4, h)
        self.edge_in = nn.Sequential(nn.Linear(d_edge, h), nn.SiLU(), nn.Linear(h, cfg.edge_dim))
        self.layers = nn.ModuleList([AttentionLayer(h, cfg.heads, cfg.edge_dim, cfg.dropout) for _ in range(cfg.layers)])
        self.ln = nn.LayerNorm(h)
        # heads: peptide theta, N-term psi, C-term phi, C-term O torsion, chi1..4 (autoregressive)
        self.bb_heads = nn.ModuleList([AngleHead(h, h, k) for _ in range(4)])
        self.chi_heads = nn.ModuleList([AngleHead(h + 8, h, k) for _ in range(4)])

    @classmethod
    @torch.jit.unused
    def from_exported(cls, step, config: dict) -> "CA2AA":
        """An eager step with the weights and fitted geometry of an exported (TorchScript) one.

        Use it to fine-tune a shipped model or to re-export it with the installed code.

        Parameters
        ----------
        step : torch.jit.ScriptModule
            The C-alpha step of a loaded model (``getattr(model.module.steps, "0")``).
        config : dict
            The step's config from the model metadata (``metadata["steps"][0]["config"]``).

        Examples
        --------
        >>> bm = load_model("models/ca2aa.pt")  # doctest: +SKIP
        >>> step = CA2AA.from_exported(getattr(bm.module.steps, "0"), bm.metadata["steps"][0]["config"])  # doctest: +SKIP
        """
        out = cls(cls.make_config(config))
        out.load_state_dict(step.state_dict(), strict=True)
        out.pro_cd_n = float(step.pro_cd_n)
        return out

    @classmethod
    @torch.jit.unused
    def make_config(cls, config: dict) -> CA2AAConfig:
        """The step's typed config from a dict (metadata or YAML)."""
        return CA2AAConfig(**config)

    # ------------------------------------------------------------------ features
    def _graph(self, ca: Tensor, types: Tensor, valid: Tensor, seg_start: Tensor):
        """Segment bookkeeping, frames, neighbours and edge features. ``ca`` in Å."""
        b, r, _ = ca.shape
        dev = ca.device
        seg = torch.cumsum(seg_start.long(), dim=1)
        idx = torch.arange(r, device=dev).unsqueeze(0).expand(b, -1)
        nxt = (idx + 1).clamp(max=r - 1)
        prv = (idx - 1).clamp(min=0)
        has_next = (idx + 1 < r) & valid.gather(1, nxt) & (seg.gather(1, nxt) == seg) & valid
        has_prev = (idx > 0) & valid.gather(1, prv) & (seg.gather(1, prv) == seg) & valid
        nxt2 = (idx + 2).clamp(max=r - 1)
        prv2 = (idx - 2).clamp(min=0)
        has_next2 = has_next & has_next.gather(1, nxt)
        has_prev2 = has_prev & has_prev.gather(1, prv)

        # kNN over valid residues (self excluded)
        d = torch.cdist(ca, ca)
        big = torch.full_like(d, 1e6)
        pair_ok = valid.unsqueeze(1) & valid.unsqueeze(2)
        d = torch.where(pair_ok, d, big)
        d = d + torch.eye(r, device=dev, dtype=d.dtype).unsqueeze(0) * 1e6
        kk = min(self.k_nb, max(r - 1, 1))
        dist, nb = d.topk(kk, dim=-1, largest=False)
        nb_mask = dist < 1e5

        # frame points: toward = next (or prev at a C-terminus), plane = prev (or next-next / prev-prev)
        near1 = nb[:, :, 0]
        near2 = nb[:, :, min(1, kk - 1)]
        toward = torch.where(has_next, nxt, torch.where(has_prev, prv, near1))
        plane = torch.where(has_next & has_prev, prv,
                            torch.where(has_next & has_next2, nxt2,
                                        torch.where(has_prev & has_prev2, prv2,
                                                    torch.where(near1 == toward, near2, near1))))
        frames = local_frames(ca, take_residues(ca, toward), take_residues(ca, plane))
        # a lone residue has no direction at all: fall back to a fixed frame (a plane point on the
        # e1 axis, as in a 2-residue chain, is handled by local_frames)
        eye = torch.eye(3, device=dev, dtype=ca.dtype).expand(b, r, 3, 3)
        ok = torch.isfinite(frames).all(-1).all(-1) & (toward != idx)
        frames = torch.where(ok.unsqueeze(-1).unsqueeze(-1), frames, eye)

        # edge features
        flat = nb.reshape(b, -1)
        ca_j = ca.gather(1, flat.unsqueeze(-1).expand(-1, -1, 3)).view(b, r, kk, 3)
        rel = torch.einsum("brij,brkj->brki", frames, ca_j - ca.unsqueeze(2)) / self.angstrom_per_nm
        centers = torch.linspace(0.0, 20.0, self.n_rbf, device=dev)
        rbf = torch.exp(-((dist.clamp(max=30.0).unsqueeze(-1) - centers) / (20.0 / self.n_rbf)) ** 2)
        f_j = frames.reshape(b, r, 9).gather(1, flat.unsqueeze(-1).expand(-1, -1, 9)).view(b, r, kk, 3, 3)
        rot = torch.einsum("brij,brkmj->brkim", frames, f_j).reshape(b, r, kk, 9)
        seg_j = seg.gather(1, flat).view(b, r, kk)
        off = (nb - idx.unsqueeze(-1)).clamp(-8, 8) + 8
        off = torch.where(seg_j == seg.unsqueeze(-1), off, torch.full_like(off, 16))
        onehot = torch.nn.functional.one_hot(off, 17).to(ca.dtype)
        edge = torch.cat([rel, rbf, rot, onehot], dim=-1)
        return frames, nb, nb_mask, edge, has_next, has_prev

    def encode(self, ca: Tensor, types: Tensor, valid: Tensor, seg_start: Tensor, beads: Optional[Tensor] = None):
        """Residue features (B, R, hidden), local frames and segment flags from C-alphas ``ca`` (Å).

        ``beads`` (B, R, S, 3), Å, are the CG beads of each residue for steps that see more than C-alphas
        (:meth:`bead_features`)."""
        frames, nb, nb_mask, edge, has_next, has_prev = self._graph(ca, types, valid, seg_start)
        node = torch.stack([has_next, has_prev, ~has_next, ~has_prev], dim=-1).to(ca.dtype)
        h = self.embed(types) + self.node_in(node)
        if beads is not None:
            h = h + self.bead_features(beads, ca, types, frames)
        e = self.edge_in(edge)
        for layer in self.layers:
            h = layer(h, nb, e, nb_mask)
        return self.ln(h), frames, has_next, has_prev

    def encode_chunks(self, ca: Tensor, types: Tensor, valid: Tensor, seg_start: Tensor,
                      beads: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`encode`, :meth:`chunk_frames` frames at a time (the frames are independent)."""
        n = self.chunk_frames(ca)
        if n >= ca.shape[0]:
            return self.encode(ca, types, valid, seg_start, beads)
        parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        for i in range(0, ca.shape[0], n):
            part = None if beads is None else beads[i:i + n]
            parts.append(self.encode(ca[i:i + n], types[i:i + n], valid[i:i + n], seg_start[i:i + n], part))
        return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]),
                torch.cat([p[3] for p in parts]))

    def chunk_frames(self, ca: Tensor) -> int:
        """Frames per chunk of encoding and repacking for C-alphas ``ca`` (B, R, 3): about
        ``chunk_residues`` residues, at least one frame."""
        budget = self.chunk_residues[1] if ca.is_cuda else self.chunk_residues[0]
        return max(1, budget // max(1, ca.shape[1]))

    def bead_features(self, beads: Tensor, ca: Tensor, types: Tensor, frames: Tensor) -> Tensor:
        """Node features from the beads of each residue: none for C-alpha input (a step conditioned on
        more beads overrides this; TorchScript needs the method on every class that calls it)."""
        return torch.zeros(ca.shape[0], ca.shape[1], self.embed.embedding_dim, device=ca.device, dtype=ca.dtype)

    # ------------------------------------------------------------------ building
    def build(self, ca: Tensor, types: Tensor, valid: Tensor, frames: Tensor, has_next: Tensor, has_prev: Tensor,
              bb: Tensor, chi: Tensor) -> Tensor:
        """Build residue-slot coordinates (B, R, 14, 3) in Å from angles.

        ``bb`` holds (theta, psi_N, phi_C, omega_O) per residue, ``chi`` chi1..4.
        """
        x = self.build_backbone(ca, types, valid, frames, has_next, has_prev, bb)
        return self.build_side_chains(x, types, chi)

    def build_backbone(self, ca: Tensor, types: Tensor, valid: Tensor, frames: Tensor, has_next: Tensor,
                       has_prev: Tensor, bb: Tensor) -> Tensor:
        """Residue slots (B, R, 14, 3) in Å with N, CA, C, O and CB placed (the rest zero)."""
        b, r, _ = ca.shape
        dev = ca.device
        idx = torch.arange(r, device=dev).unsqueeze(0).expand(b, -1)
        nxt = (idx + 1).clamp(max=r - 1)
        prv = (idx - 1).clamp(min=0)
        c_pep, o_pep, n_next = peptide_atoms(self.unit_trans, self.unit_cis, self.cis_ca_distance, self.hinge,
                                             ca, take_residues(ca, nxt), frames, bb[..., 0])

        # N: from the previous peptide plane, or placed by psi at N-termini
        n_from_prev = take_residues(n_next, prv)
        c_prev = take_residues(c_pep, prv)
        ones = torch.ones_like(bb[..., 0])
        n_term = place_atom(n_next, c_pep, ca, ones * self.bond_n_ca, ones * self.angle_n_ca_c, bb[..., 1])
        iso_n = ca + frames[:, :, 1] * self.bond_n_ca
        n = torch.where(has_prev.unsqueeze(-1), n_from_prev, torch.where(has_next.unsqueeze(-1), n_term, iso_n))
        # C and O: from this residue's peptide plane, or placed at C-termini
        ref = torch.where(has_prev.unsqueeze(-1), c_prev, ca + frames[:, :, 2])
        c_term = place_atom(ref, n, ca, ones * self.bond_ca_c, ones * self.angle_n_ca_c, bb[..., 2])
        o_term = place_atom(n, ca, c_term, ones * self.bond_c_o, ones * self.angle_ca_c_o, bb[..., 3])
        hn = has_next.unsqueeze(-1)
        c = torch.where(hn, c_pep, c_term)
        o = torch.where(hn, o_pep, o_term)
        bond = self.zm_bond[types]
        angle = self.zm_angle[types]
        cb = place_atom(c, n, ca, bond[:, :, 4], angle[:, :, 4], self.zm_offset[types][:, :, 4])

        x = torch.zeros(b, r, self.max_atoms, 3, device=dev, dtype=ca.dtype)
        return torch.cat([torch.stack([n, ca, c, o, cb], dim=2), x[:, :, 5:]], dim=2)

    def build_side_chains(self, x: Tensor, types: Tensor, chi: Tensor) -> Tensor:
        """Place the side-chain atoms beyond CB of slots ``x`` (B, R, 14, 3), Å, from ``chi`` (B, R, 4)."""
        bond = self.zm_bond[types]
        angle = self.zm_angle[types]
        zm = self.zm[types]  # (B, R, 14, 3)
        lev = self.zm_level[types]
        zchi = self.zm_chi[types]
        # proline rings only close for chi1 within about +-40 degrees
        chi1 = torch.where(types == self.pro_type, wrap_angle(chi[..., 0]).clamp(-0.7, 0.7), chi[..., 0])
        chi = torch.cat([chi1.unsqueeze(-1), chi[..., 1:]], dim=-1)
        chi_pad = torch.cat([torch.zeros_like(chi[..., :1]), chi], dim=-1)
        tors = (chi_pad.gather(2, zchi) + self.zm_offset[types]).reshape(-1)
        # work on the flat atom list: each level places only its own atoms (a few per residue)
        b, r = types.shape
        flat = x.reshape(b * r * self.max_atoms, 3).clone()  # filled in place, level by level
        slot0 = (torch.arange(b * r, device=x.device) * self.max_atoms).view(b, r, 1, 1)
        ref = (zm + slot0).reshape(-1, 3)  # flat indices of the three reference atoms
        lev = lev.reshape(-1)
        bond = bond.reshape(-1)
        angle = angle.reshape(-1)
        for level in range(1, self.n_levels + 1):
            idx = (lev == level).nonzero().squeeze(-1)
            if idx.numel() == 0:
                continue
            rf = ref.index_select(0, idx)
            new = place_atom(flat.index_select(0, rf[:, 0]), flat.index_select(0, rf[:, 1]),
                             flat.index_select(0, rf[:, 2]), bond.index_select(0, idx), angle.index_select(0, idx),
                             tors.index_select(0, idx))
            flat.index_copy_(0, idx, new)
        return self._close_proline(flat.reshape(b, r, self.max_atoms, 3), types)

    def _close_proline(self, x: Tensor, types: Tensor) -> Tensor:
        """Put proline CD on the circle where both CG-CD and CD-N have their bond lengths.

        The point nearest the Z-matrix placement is kept, so the ring is closed
        exactly whatever chi1/chi2 the network sampled.
        """
        cg, n, cd = x[:, :, 5], x[:, :, 0], x[:, :, 6]
        u = n - cg
        d = torch.linalg.vector_norm(u, dim=-1, keepdim=True).clamp_min(1e-6)
        u = u / d
        r1 = self.zm_bond[self.pro_type, 6]
        r2 = self.pro_cd_n
        a = (r1 * r1 - r2 * r2 + d * d) / (2.0 * d)
        h = torch.sqrt((r1 * r1 - a * a).clamp_min(0.0))
        center = cg + a * u
        v = cd - center
        v = v - (v * u).sum(-1, keepdim=True) * u
        v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(1e-6)
        closed = center + h * v
        is_pro = (types == self.pro_type).unsqueeze(-1)
        return torch.cat([x[:, :, :6], torch.where(is_pro, closed, cd).unsqueeze(2), x[:, :, 7:]], dim=2)

    # ------------------------------------------------------------------ sampling
    def chi_context(self, h: Tensor) -> list[Tensor]:
        """Each chi head's first layer applied to the residue features ``h`` (shared by all calls)."""
        return [head.context(h) for head in self.chi_heads]

    def sample_angles(self, h: Tensor, ctx: list[Tensor], seed: int, temperature: float) -> tuple[Tensor, Tensor]:
        """Backbone angles (B, R, 4) and chi1..4 (B, R, 4), radians; ``ctx`` from :meth:`chi_context`."""
        bb = []
        for i, head in enumerate(self.bb_heads):
            logp, mu, kappa = head(h)
            bb.append(sample_von_mises(logp, mu, kappa, temperature, seed, 10 * i))
        prev = torch.zeros(h.shape[0], h.shape[1], 8, device=h.device, dtype=h.dtype)
        chis = []
        for i, head in enumerate(self.chi_heads):
            logp, mu, kappa = head.conditional(ctx[i], prev)
            x = sample_von_mises(logp, mu, kappa, temperature, seed, 100 + 10 * i)
            chis.append(x)
            upd = torch.stack([torch.cos(x), torch.sin(x)], dim=-1)
            prev = torch.cat([prev[..., : 2 * i], upd, prev[..., 2 * i + 2:]], dim=-1)
        return torch.stack(bb, dim=-1), torch.stack(chis, dim=-1)

    def forward(self, ca_nm: Tensor, residue_types: Tensor, segment_start: Tensor, seed: int,
                temperature: float) -> Tensor:
        """Heavy atoms (B, A, 3) in nm, canonical order, from C-alpha (B, R, 3) in nm.

        ``residue_types`` (R,) and ``segment_start`` (R,) describe the one
        sequence shared by all frames; ``seed`` makes sampling reproducible;
        ``temperature`` 0 is the deterministic mode.
        """
        ca = ca_nm * self.angstrom_per_nm
        return self.atoms(ca, residue_types, segment_start, seed, temperature, None)

    def atoms(self, ca: Tensor, residue_types: Tensor, segment_start: Tensor, seed: int, temperature: float,
              beads: Optional[Tensor]) -> Tensor:
        """Heavy atoms (B, A, 3) in nm, canonical order, from C-alphas ``ca`` (B, R, 3) in Å (and the
        residues' ``beads`` (B, R, S, 3), Å, for steps conditioned on them)."""
        b, r, _ = ca.shape
        types = residue_types.unsqueeze(0).expand(b, -1)
        seg = segment_start.unsqueeze(0).expand(b, -1)
        valid = torch.ones_like(seg)
        h, frames, has_next, has_prev = self.encode_chunks(ca, types, valid, seg, beads)
        ctx = self.chi_context(h)
        bb, chi = self.sample_angles(h, ctx, seed, temperature)
        x = self.build_backbone(ca, types, valid, frames, has_next, has_prev, bb)
        if self.proline_phi:
            new_bb = self.fix_proline_phi(h, x, ca, types, frames, has_next, has_prev, bb)
            if not torch.equal(new_bb, bb):
                bb = new_bb
                x = self.build_backbone(ca, types, valid, frames, has_next, has_prev, bb)
        x = self.build_side_chains(x, types, chi)
        if self.repack_sweeps > 0 and r > 2:
            x = self.repack(x, ctx, chi, ca, types)
        if self.carbonyls and r > 3:
            new_bb = self.fix_carbonyls(h, x, ca, types, frames, has_next, bb)
            redo = (new_bb != bb).flatten(1).any(1).nonzero().squeeze(-1)
            if redo.numel() > 0:  # rebuild (and repack) the frames with re-picked planes
                x = x.index_copy(0, redo, self.build_frames(redo, ca, types, valid, frames, has_next, has_prev,
                                                             new_bb, chi, ctx))
        if self.disulfides:
            x = self.close_disulfides(x, types)
        keep = self.slot_valid[residue_types].reshape(-1).nonzero().squeeze(-1)
        return x.reshape(b, r * self.max_atoms, 3).index_select(1, keep) / self.angstrom_per_nm

    def build_frames(self, idx: Tensor, ca: Tensor, types: Tensor, valid: Tensor, frames: Tensor, has_next: Tensor,
                     has_prev: Tensor, bb: Tensor, chi: Tensor, ctx: list[Tensor]) -> Tensor:
        """Slots (len(idx), R, 14, 3) of frames ``idx`` built from ``bb`` and ``chi``, and repacked."""
        sub = [c.index_select(0, idx) for c in ctx]
        ca_i, types_i = ca.index_select(0, idx), types.index_select(0, idx)
        chi_i = chi.index_select(0, idx)
        x = self.build(ca_i, types_i, valid.index_select(0, idx), frames.index_select(0, idx),
                       has_next.index_select(0, idx), has_prev.index_select(0, idx), bb.index_select(0, idx), chi_i)
        if self.repack_sweeps > 0:
            x = self.repack(x, sub, chi_i, ca_i, types_i)
        return x

    def theta_mixture(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The theta head's mixture (log weights, means, concentrations) for residue features ``h``."""
        out = (h, h, h)
        for k, head in enumerate(self.bb_heads):
            if k == 0:  # TorchScript cannot index a ModuleList by a variable
                out = head(h)
        return out

    def fix_carbonyls(self, h: Tensor, x: Tensor, ca: Tensor, types: Tensor, frames: Tensor, has_next: Tensor,
                      bb: Tensor) -> Tensor:
        """``bb`` with the plane of every carbonyl pressed into another residue re-picked
        (:func:`~.ca2aa_chemistry.pressed_carbonyls`, :func:`~.ca2aa_chemistry.carbonyl_planes`); planes before
        a proline are :meth:`fix_proline_phi`'s."""
        site, near = pressed_carbonyls(x, ca, types == self.pro_type, has_next)
        if site.shape[0] == 0:
            return bb
        fb, i = site[:, 0], site[:, 1]
        logp, mu, kappa = self.theta_mixture(h[fb, i])  # the theta head, at those residues only
        return carbonyl_planes(fb, i, near, ca, frames, bb, logp, mu, kappa, self.unit_trans, self.unit_cis,
                               self.cis_ca_distance, self.hinge)

    def fix_proline_phi(self, h: Tensor, x: Tensor, ca: Tensor, types: Tensor, frames: Tensor, has_next: Tensor,
                        has_prev: Tensor, bb: Tensor) -> Tensor:
        """``bb`` with the plane before each proline re-picked where the proline's phi in the backbone ``x``
        (B, R, 14, 3), Å, is impossible (:func:`~.ca2aa_chemistry.proline_theta`)."""
        site = (types == self.pro_type) & has_prev & has_next
        if not bool(site.any()):
            return bb
        fb, i = site.nonzero().unbind(1)
        p = i - 1
        phi = dihedral(x[fb, p, 2], x[fb, i, 0], ca[fb, i], x[fb, i, 2])
        target, lo, hi = self.pro_phi
        if not bool(((phi < lo) | (phi > hi)).any()):
            return bb
        phi_g = plane_phi(self.unit_trans, self.unit_cis, self.cis_ca_distance, self.hinge, ca[fb, p], ca[fb, i],
                          frames[fb, p], x[fb, i, 2], self.angle_grid)
        logp, mu, kappa = self.theta_mixture(h[fb, p])
        theta, change = proline_theta(phi, phi_g, logp, mu, kappa, target, lo, hi, self.pro_phi_kappa)
        out = bb.clone()
        out[fb, p, 0] = torch.where(change, theta, bb[fb, p, 0])
        return out

    def close_disulfides(self, x: Tensor, types: Tensor) -> Tensor:
        """Residue slots ``x`` (B, R, 14, 3), Å, with every disulfide's SG-SG made a bond
        (:func:`~.ca2aa_chemistry.close_disulfides`)."""
        sg_cut, cb_cut, crowd_cut, ss_bond = self.ss_cuts
        c = self.cys_type
        return close_disulfides(x, types, c, self.zm[c, 5], self.zm_bond[c, 5], self.zm_angle[c, 5],
                                self.zm_offset[c, 5], sg_cut, cb_cut, crowd_cut, ss_bond, self.ss_angle,
                                self.angle_grid)

    # ------------------------------------------------------------------ training
    @torch.jit.unused
    def loss(self, xyz: Tensor, mask: Tensor, types: Tensor, valid: Tensor, seg_start: Tensor,
             ca_noise: float = 0.0, beads: Optional[Tensor] = None) -> tuple[Tensor, dict]:
        """Mean NLL (nats per angle) of the reference angles; ``xyz`` residue slots in Å (``beads`` as in
        :meth:`encode`)."""
        t = reference_angles(self, xyz, mask, types, valid, seg_start)
        ca = xyz[:, :, 1]
        if ca_noise > 0:
            ca = ca + ca_noise * torch.randn_like(ca)
        h, _, _, _ = self.encode(ca, types, valid, seg_start, beads)
        ctx = self.chi_context(h)
        nll_bb = []
        for i, head in enumerate(self.bb_heads):
            logp, mu, kappa = head(h)
            nll_bb.append(vm_mixture_nll(logp, mu, kappa, t["bb"][..., i]))
        nll_bb = torch.stack(nll_bb, -1)
        cs = torch.stack([torch.cos(t["chi"]), torch.sin(t["chi"])], dim=-1)  # teacher forcing
        nll_chi = []
        for i, head in enumerate(self.chi_heads):
            prev = torch.zeros(*h.shape[:2], 8, device=h.device, dtype=h.dtype)
            if i:
                prev = torch.cat([cs[:, :, :i].reshape(*h.shape[:2], 2 * i), prev[..., 2 * i:]], dim=-1)
            logp, mu, kappa = head.conditional(ctx[i], prev)
            nll_chi.append(vm_mixture_nll(logp, mu, kappa, t["chi"][..., i]))
        nll_chi = torch.stack(nll_chi, -1)
        okb, okc = t["ok_bb"].float(), t["ok_chi"].float()
        n_bb, n_chi = okb.sum().clamp_min(1), okc.sum().clamp_min(1)
        lb = (nll_bb * okb).sum() / n_bb
        lc = (nll_chi * okc).sum() / n_chi
        loss = ((nll_bb * okb).sum() + (nll_chi * okc).sum()) / (n_bb + n_chi)
        return loss, {"nll_bb": float(lb.detach()), "nll_chi": float(lc.detach())}

    @torch.jit.unused
    def rebuild(self, xyz: Tensor, mask: Tensor, types: Tensor, valid: Tensor, seg_start: Tensor) -> Tensor:
        """Rebuild residue slots from the reference angles (checks geometry; Å)."""
        t = reference_angles(self, xyz, mask, types, valid, seg_start)
        return self.build(xyz[:, :, 1], types, valid, t["frames"], t["has_next"], t["has_prev"], t["bb"], t["chi"])

