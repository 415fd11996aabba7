"""Training task of the per-system UCG -> C-alpha / heavy-atom step (kind ``cgvae``).

The task trains one system (one sequence) from its all-atom frames:

1. training ensembles are concatenated (they must share the sequence) and
   frames missing an atom the target level needs are dropped (logged);
2. the hierarchy ``aa -> ca -> ucgN`` (``aa -> ca -> ucgM -> ucgN`` for a
   ``ucgM`` target) is built on the TRAINING frames
   (:func:`openmm_backmap.mapping.build_hierarchy`, AutoGrain-like partition);
3. every frame gives (fine, beads) pairs: fine = C-alphas (``target: ca``),
   all heavy atoms (``target: aa``) or the finer beads (``target: ucgM``),
   beads = the mapped C-alphas;
4. the loss is the :meth:`CGVAE.loss <openmm_backmap.model.steps.cgvae.CGVAE.loss>`
   negative ELBO (+ bond and deterministic terms); validation reports it and
   the RMSD (Å, no alignment: the beads fix the frame) of the deterministic
   (prior-mean) reconstruction.

Example config (``examples/configs/trpcage-ucg4-step1.yaml``)::

    kind: cgvae
    task: {beads: 4, target: ca}
    data: {root: ..., files: [md/trpcage/trpcage_train.dcd:md/trpcage/trpcage.pdb]}
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..mapping import build_hierarchy, cg_topology
from ..model import KStepModel
from ..model.steps import CGVAE, CGVAEConfig, system_context
from ..structure import ANGSTROM_PER_NM, InputError, ProteinEnsemble, build_topology
from .config import from_dict
from .distributed import shard_items
from .protocol import register_task

__all__ = ["CGVAETaskConfig", "CGVAETask"]


@dataclass
class CGVAETaskConfig:
    """Options of the ``cgvae`` task (the ``task`` section of a ``kind: cgvae`` config):
    the bead level, the VAE loss weights, batching and the partition.

    Attributes
    ----------
    beads : int
        Ultra-coarse beads (the input level is ``ucg{beads}``).
    target : str
        ``'ca'`` (UCG -> C-alpha, first step of a 2-step model), ``'aa'``
        (UCG -> heavy atoms in one step) or ``'ucgM'`` (UCG -> M finer beads,
        the first step of a k = 3 model such as ucg12 -> ucg60 -> ca -> aa;
        M > ``beads``). The finer level is partitioned first and the input
        level groups its beads, so the ``ucgM`` level is the one a
        ``beads: M, target: ca`` run on the same data builds, and the two
        steps compose (``export`` checks that the partitions agree).
    beta : float
        Weight of the KL term (nats) relative to the reconstruction (Å^2).
    free_bits : float
        KL floor per latent dimension (nats), against posterior collapse.
    kl_anneal_steps : int
        Linear warm-up of beta over this many steps (0 = none).
    bond_weight : float
        Weight of the bonded-distance term (Å^2): consecutive C-alphas
        (3.8 Å in trans peptides; the reference distance is used, so cis
        peptides are right too) or template bonds of the heavy atoms.
    det_weight : float
        Weight of the reconstruction loss of the prior-mean decode (the
        deterministic output); 0 = pure ELBO.
    batch_frames : int
        Frames per batch (0 = ``optim.batch_residues // residues``, at least 1).
    val_frames : int
        Validation frames used (evenly spaced; 0 = all).
    augment : bool
        Random rotations/translations of training pairs (unnecessary: the
        model is equivariant; harmless).
    refine, fragment_penalty :
        Options of :func:`openmm_backmap.mapping.partition_mapping`.
    context_frames : int
        Training frames used for the static fine graph and the scales.
    """

    beads: int = 12
    target: str = "ca"
    beta: float = 0.05
    free_bits: float = 0.0
    kl_anneal_steps: int = 0
    bond_weight: float = 1.0
    det_weight: float = 0.0
    batch_frames: int = 0
    val_frames: int = 32
    augment: bool = False
    refine: bool = True
    fragment_penalty: float = 1.0
    context_frames: int = 200


_TARGET_NAMES = {"ca": "C-alpha", "aa": "heavy atoms"}


def _finer_beads(opts) -> int:
    """M of a ``ucgM`` target (0 for ``ca`` / ``aa``); a one-line error for anything else."""
    t = str(opts.target)
    if t in _TARGET_NAMES:
        return 0
    m = re.fullmatch(r"ucg(\d+)", t)
    if m is None:
        raise InputError(f"task.target must be 'ca', 'aa' or 'ucgM' (M finer beads, e.g. 'ucg60'), got {t!r}")
    if int(m.group(1)) <= int(opts.beads):
        raise InputError(f"task.target {t!r} must be finer than the input ({opts.beads} beads): "
                         f"use more than {opts.beads} beads")
    return int(m.group(1))


def _one_system(ensembles, what):
    if not ensembles:
        raise InputError(f"cgvae: no {what} data")
    first = ensembles[0]
    for e in ensembles[1:]:
        if e.sequence != first.sequence:
            raise InputError(f"cgvae trains ONE system, but {e.source!r} has a different sequence from "
                             f"{first.source!r} ({e.n_residues} vs {first.n_residues} residues); list the files "
                             "of one protein in data.files")
    return first if len(ensembles) == 1 else ProteinEnsemble.concatenate(ensembles)


def _random_rotations(rng, n):
    from scipy.spatial.transform import Rotation

    return Rotation.random(n, random_state=int(rng.integers(2**31 - 1))).as_matrix().astype(np.float32)


@register_task("cgvae")
class CGVAETask:
    """Trains :class:`~openmm_backmap.model.steps.cgvae.CGVAE` on the frames of one protein.

    Attributes
    ----------
    hierarchy : Hierarchy
        ``aa -> ca -> ucgN`` built on the training frames.
    level : str
        Input level name (``ucgN``).
    model : CGVAE
    unused_parameters_in_loss : bool
        True: the loss leaves some parameters of :class:`CGVAE` out, so a
        distributed run asks DDP to find them (see
        :func:`~openmm_backmap.train.distributed.wrap_model`).
    """

    # CGVAE's loss never uses some of its parameters: the coordinate-update heads (x_ff, x_fb) of the encoder and
    # prior blocks, which do not move coordinates, and the feature update (ln, node) of the last decoder block,
    # whose features nothing reads. They stay in the model so that its weights, checkpoints and exported files keep
    # their layout; DDP must be told (find_unused_parameters), or a 2-process run stops in its second step.
    unused_parameters_in_loss = True

    def __init__(self, cfg, train, val, summary, log=print):
        if cfg.init:
            raise InputError("init (fine-tuning from an exported model) is supported for ca2aa runs only; "
                             "remove 'init' from this cgvae config")
        self.cfg = cfg
        self.opts = o = from_dict(CGVAETaskConfig, cfg.task, "task")
        self.fine_beads = _finer_beads(o)
        self.summary = summary
        self.device = torch.device("cpu")  # where batches go; the training loop sets it
        tr = _one_system(train, "training")
        va = _one_system(val, "validation")
        if va.sequence != tr.sequence:
            raise InputError("training and validation data are different proteins")
        file_of_frame = np.repeat(np.arange(len(train)), [e.n_frames for e in train])
        tr, kept = self._complete(tr, "training", log)
        va, _ = self._complete(va, "validation", log)
        self.file_of_frame = file_of_frame[kept]
        self.ensemble = tr
        self.sequence = list(tr.sequence)
        self.segment_start = np.asarray(tr.segment_start, dtype=bool).copy()
        self.segment_start[0] = True
        levels = f"ucg:{o.beads}" if not self.fine_beads else f"ucg:{self.fine_beads},ucg:{o.beads}"
        self.hierarchy, _ = build_hierarchy(tr, levels, refine=o.refine, fragment_penalty=o.fragment_penalty)
        self.level = self.hierarchy.levels[-1]
        self.bead_mapping = self.hierarchy.composed(self.level)
        self.fine_mapping = self.hierarchy.composed(o.target) if self.fine_beads else None
        self.train_fine, self.train_beads = self._pairs(tr)
        self.train_index = np.arange(len(self.train_fine))  # the frames this process samples from
        self.val_fine, self.val_beads = self._pairs(va)
        if o.val_frames and len(self.val_fine) > o.val_frames:
            keep = np.linspace(0, len(self.val_fine) - 1, o.val_frames).round().astype(int)
            self.val_fine, self.val_beads = self.val_fine[keep], self.val_beads[keep]
        residue_unit = None
        if self.fine_beads:  # aa -> ca -> ucgM -> ucgN: residues to finer beads, those to beads
            residue_unit = self.hierarchy.mappings[-2].assignment()
            residue_bead = self.hierarchy.mappings[-1].assignment()[residue_unit]
        else:
            residue_bead = self.hierarchy.mappings[-1].assignment()
        model_cfg = from_dict(CGVAEConfig, cfg.model, "model")
        pick = np.linspace(0, len(self.train_fine) - 1, min(o.context_frames, len(self.train_fine)))
        self.context = system_context(self.sequence, self.segment_start, residue_bead, o.target,
                                      self.train_fine[pick.round().astype(int)], model_cfg.fine_neighbors,
                                      model_cfg.bead_neighbors, residue_unit=residue_unit)
        self.model = CGVAE(model_cfg, self.context)
        self.model_config = model_cfg
        n_res = len(self.sequence)
        self.batch_frames = o.batch_frames or max(1, cfg.optim.batch_residues // n_res)
        log(f"cgvae: {self.level} ({o.beads} beads, rho {n_res / o.beads:.1f} residues/bead) -> "
            f"{_TARGET_NAMES.get(o.target, o.target + ' beads')} ({self.model.n_fine} particles); "
            f"{len(self.train_fine)} training / {len(self.val_fine)} validation frames, {self.batch_frames} per "
            f"batch; {sum(p.numel() for p in self.model.parameters())} parameters")

    # ------------------------------------------------------------------ data
    def shard(self, rank, world_size):
        """Sample only this rank's training frames: whole files, or contiguous blocks of a file's frames
        when there are fewer files than ranks (see :func:`~openmm_backmap.train.distributed.shard_items`)."""
        files = np.unique(self.file_of_frame)
        frames = [np.flatnonzero(self.file_of_frame == f) for f in files]
        picks = shard_items(list(files), [len(f) for f in frames], [len(f) for f in frames], rank, world_size)
        self.train_index = np.concatenate([frames[i][f] for i, f in picks])

    def _complete(self, ens, what, log):
        ok = ens.complete if self.opts.target == "aa" else ens.ca_mask.all(1)  # ucgM beads need C-alphas
        if not ok.all():
            need = "heavy atom" if self.opts.target == "aa" else "C-alpha"
            log(f"cgvae: dropped {int((~ok).sum())} of {ens.n_frames} {what} frames with a missing {need} "
                f"(target {self.opts.target!r} needs every one)")
        if not ok.any():
            raise InputError(f"cgvae: no complete {what} frames left")
        kept = np.flatnonzero(ok)
        return ens.select_frames(kept), kept

    def _pairs(self, ens):
        """Fine (F, n_fine, 3) and bead (F, N, 3) coordinates in Å, float32."""
        xyz = np.nan_to_num(ens.xyz.astype(np.float64))
        if self.fine_mapping is not None:
            fine = self.fine_mapping.apply(xyz)
        else:
            fine = ens.ca_xyz if self.opts.target == "ca" else ens.xyz
        beads = self.bead_mapping.apply(xyz)
        return (fine * ANGSTROM_PER_NM).astype(np.float32), (beads * ANGSTROM_PER_NM).astype(np.float32)

    def sample_batch(self, rng):
        n = len(self.train_index)
        idx = self.train_index[rng.choice(n, size=self.batch_frames, replace=n < self.batch_frames)]
        fine, beads = self.train_fine[idx], self.train_beads[idx]
        if self.opts.augment:
            rot = _random_rotations(rng, len(idx))
            shift = rng.normal(scale=10.0, size=(len(idx), 1, 3)).astype(np.float32)
            fine = np.einsum("bij,bnj->bni", rot, fine) + shift
            beads = np.einsum("bij,bnj->bni", rot, beads) + shift
        return (torch.from_numpy(np.ascontiguousarray(fine)).to(self.device),
                torch.from_numpy(np.ascontiguousarray(beads)).to(self.device))

    # ------------------------------------------------------------------ objective
    def beta(self) -> float:
        o = self.opts
        if o.kl_anneal_steps <= 0:
            return o.beta
        return o.beta * min(1.0, float(self.model.train_steps) / o.kl_anneal_steps)

    def loss(self, batch):
        o = self.opts
        fine, beads = batch
        loss, parts = self.model.loss(fine, beads, self.beta(), o.free_bits, o.bond_weight, o.det_weight)
        if self.model.training:
            self.model.train_steps += 1
        return loss, parts

    def validate(self) -> dict:
        """``val_loss`` (objective at the full beta, no free bits), and RMSDs in Å (no alignment).

        ``val_rmsd_A``: deterministic (prior mean) reconstruction from the beads;
        ``val_sample_rmsd_A``: one sample at temperature 1; ``val_post_rmsd_A``:
        decode of the posterior mean (what the latents can carry); ``val_kl``:
        KL(q || p) in nats per latent vector (near 0: the latents are unused and
        samples are nearly deterministic); ``val_bond_rms_A``: RMS deviation of
        bonded distances of the deterministic output.
        """
        o = self.opts
        losses, kl, sq_det, sq_post, sq_sample, sq_bond, n = [], 0.0, 0.0, 0.0, 0.0, 0.0, 0
        dev = self.device
        empty_t, empty_s = torch.zeros(0, dtype=torch.long, device=dev), torch.zeros(0, dtype=torch.bool, device=dev)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(12345)
            for s in range(0, len(self.val_fine), self.batch_frames):
                fine = torch.from_numpy(self.val_fine[s:s + self.batch_frames]).to(dev)
                beads = torch.from_numpy(self.val_beads[s:s + self.batch_frames]).to(dev)
                loss, parts = self.model.loss(fine, beads, o.beta, 0.0, o.bond_weight, o.det_weight)
                losses.append(float(loss) * len(fine))
                kl += parts["kl"] * len(fine)
                det = self.model(beads / ANGSTROM_PER_NM, empty_t, empty_s, 0, 0.0) * ANGSTROM_PER_NM
                sample = self.model(beads / ANGSTROM_PER_NM, empty_t, empty_s, s + 1, 1.0) * ANGSTROM_PER_NM
                post = self.model.reconstruct(fine, beads)
                sq_det += float(((det - fine) ** 2).sum(-1).mean(-1).sum())
                sq_sample += float(((sample - fine) ** 2).sum(-1).mean(-1).sum())
                sq_post += float(((post - fine) ** 2).sum(-1).mean(-1).sum())
                sq_bond += float(self.model.bond_error(det, fine)) * len(fine)
                n += len(fine)
        return {"val_loss": sum(losses) / n, "val_rmsd_A": (sq_det / n) ** 0.5,
                "val_sample_rmsd_A": (sq_sample / n) ** 0.5, "val_post_rmsd_A": (sq_post / n) ** 0.5,
                "val_kl": kl / n, "val_bond_rms_A": (sq_bond / n) ** 0.5}

    def on_load(self):
        """Nothing to restore: the step's buffers (graph, scales) are fixed when the task is built."""

    # ------------------------------------------------------------------ export
    def export_module(self):
        """KStepModel([step]) with the system's sequence, and the export context."""
        o = self.opts
        n_beads = self.bead_mapping.n_beads
        module = KStepModel([self.model], torch.as_tensor(self.ensemble.residue_types),
                            torch.as_tensor(self.segment_start), n_beads)
        top = cg_topology(self.bead_mapping, self.sequence, self.level)
        resolved = {"fine_cutoff": self.model.fine_cutoff, "coarse_cutoff": self.model.coarse_cutoff,
                    "offset_scale": self.model.offset_scale}
        context = {
            "kind": "cgvae",
            "sequence": list(self.sequence),
            "segment_start": [bool(s) for s in self.segment_start],
            "n_beads": int(n_beads),
            "levels": list(self.hierarchy.levels),
            "hierarchy": self.hierarchy,
            "cg_topology": top,
            "cg_xyz": self.train_beads[0] / ANGSTROM_PER_NM,
            "aa_topology": build_topology(self.sequence, self.segment_start),
            "step_meta": {"input": self.level, "output": o.target, "n_in": int(n_beads),
                          "n_out": int(self.model.n_fine), "resolved_config": {**asdict(self.model_config),
                                                                              **resolved}},
            "metadata": {"output_level": o.target, "input_level": self.level, "task": asdict(o),
                         "rho": len(self.sequence) / n_beads},
        }
        return module, context
