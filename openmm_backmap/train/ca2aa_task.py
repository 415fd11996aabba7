"""Training task of the transferable C-alpha -> heavy-atom step (kind ``ca2aa``).

Maximum likelihood of the reference angles of experimental chains and
ensembles; validation reports the NLL and the heavy-atom RMSD (Å) of the
deterministic reconstruction from the true C-alphas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model import KStepModel, load_model
from ..model.steps import CA2AA, CA2AAConfig, ensemble_to_slots, fit_geometry
from ..structure import InputError
from .config import from_dict
from .distributed import shard_items
from .protocol import register_task

__all__ = ["CA2AATaskConfig", "CA2AATask", "pack_chains"]


@dataclass
class CA2AATaskConfig:
    """Options of the C-alpha -> atoms task (the ``task`` section of a ``kind: ca2aa`` config):
    how training data are perturbed, batched and validated.

    Attributes
    ----------
    ca_noise : float
        Gaussian noise (Å) added to input C-alpha positions while training,
        so the model tolerates imperfect CG traces.
    ensemble_weight : float
        Sampling weight of a multi-frame ensemble relative to a single chain.
    geometry_frames : int
        Frames per file used to fit template geometry.
    val_frames : int
        Validation frames per ensemble.
    pack : bool
        Put all chains of a training batch in one row, side by side in
        space (see :func:`pack_chains`), instead of one zero-padded row each.
        Corpus chains range from 20 to 2,000 residues: padded rows waste
        about 40 % of the compute on them.
    """

    ca_noise: float = 0.05
    ensemble_weight: float = 3.0
    geometry_frames: int = 5
    val_frames: int = 8
    pack: bool = True


#: Gap (Å) between the bounding boxes of packed chains: far beyond any k-nearest-neighbour distance of a chain's
#: own residues (12 neighbours lie within about 25 Å along the chain), so no edge joins two chains.
PACK_GAP_ANGSTROM = 100.0


def pack_chains(items):
    """Concatenate training items (single frames) into one item, each chain moved clear of the others.

    The network is invariant to translations and sees only each residue's
    nearest neighbours, and every chain starts a segment, so a packed row
    gives each chain the same features, loss and gradients as a row of its
    own, without padding.

    Examples
    --------
    >>> a = {"xyz": np.zeros((3, 14, 3), np.float32), "mask": np.ones((3, 14), bool),
    ...      "types": np.zeros(3, np.int64), "seg": np.array([True, False, False])}
    >>> p = pack_chains([a, a])
    >>> p["xyz"].shape, p["seg"].tolist(), float(p["xyz"][3:, :, 0].min() - p["xyz"][:3, :, 0].max())
    ((6, 14, 3), [True, False, False, True, False, False], 100.0)
    """
    xyz, x_end = [], 0.0
    for it in items:
        ca = it["xyz"][:, 1]
        shift = -ca.mean(0)
        shift[0] = x_end - (it["xyz"][..., 0][it["mask"]].min() if it["mask"].any() else 0.0) + (
            PACK_GAP_ANGSTROM if xyz else 0.0)
        moved = np.where(it["mask"][..., None], it["xyz"] + shift.astype(np.float32), 0.0).astype(np.float32)
        x_end = float(moved[..., 0][it["mask"]].max()) if it["mask"].any() else x_end
        xyz.append(moved)
    seg = [it["seg"].copy() for it in items]
    for s_ in seg:
        s_[0] = True
    return {"xyz": np.concatenate(xyz), "mask": np.concatenate([it["mask"] for it in items]),
            "types": np.concatenate([it["types"] for it in items]), "seg": np.concatenate(seg)}


def _slots(ens):
    xyz, mask = ensemble_to_slots(ens)
    # frames with a missing C-alpha cannot be inputs
    ok = ens.ca_mask.all(1)
    return {"xyz": np.nan_to_num(xyz[ok]), "mask": mask[ok], "types": ens.residue_types,
            "seg": ens.segment_start.copy(), "source": ens.source}


def _pad(items, key, r, fill=0):
    shape = (len(items), r) + items[0][key].shape[1:]
    out = np.full(shape, fill, dtype=items[0][key].dtype)
    for i, it in enumerate(items):
        out[i, : it[key].shape[0]] = it[key]
    return torch.from_numpy(out)


@register_task("ca2aa")
class CA2AATask:
    """Trains :class:`~openmm_backmap.model.steps.ca2aa.CA2AA` by maximum likelihood of reference angles."""

    options_class = CA2AATaskConfig

    def __init__(self, cfg, train, val, summary):
        self.cfg = cfg
        self.opts = from_dict(self.options_class, cfg.task, "task")
        self.device = torch.device("cpu")  # where batches go; the training loop sets it
        base = summary.get("train_weights")
        base = np.ones(len(train)) if base is None else np.asarray(base, dtype=float)
        groups = summary.get("train_groups") or [e.source for e in train]
        slots = [(_slots(e), b, g) for e, b, g in zip(train, base, groups)]
        self.train = [s for s, _, _ in slots if len(s["xyz"])]
        self.groups = [g for s, _, g in slots if len(s["xyz"])]
        self.val = [s for s in (_slots(e) for e in val) if len(s["xyz"])]
        if cfg.init:
            self.model = self._init_from(cfg)
            # fine-tuning keeps the template geometry fitted on the broad training set of the initial model
            self.geometry = {"bond": self.model.zm_bond.numpy().copy(), "angle": self.model.zm_angle.numpy().copy(),
                             "offset": self.model.zm_offset.numpy().copy(), "pro_cd_n": self.model.pro_cd_n}
        else:
            rng = np.random.default_rng(cfg.seed)
            pick = [rng.choice(len(s["xyz"]), min(len(s["xyz"]), self.opts.geometry_frames), replace=False)
                    for s in self.train]
            self.geometry = fit_geometry([s["xyz"][p] for s, p in zip(self.train, pick)],
                                         [s["mask"][p] for s, p in zip(self.train, pick)],
                                         [s["types"] for s in self.train])
            self.model = self._new_model(cfg, self.geometry)
        self.item_weights = np.array([(self.opts.ensemble_weight if len(s["xyz"]) > 1 else 1.0) * b
                                      for s, b, _ in slots if len(s["xyz"])])
        self.weights = self.item_weights / self.item_weights.sum()
        self.summary = summary

    def shard(self, rank, world_size):
        """Keep this rank's share of the training chains (whole files and corpus clusters, see
        :func:`~openmm_backmap.train.distributed.shard_items`); the weights are renormalised within it."""
        picks = shard_items(self.groups, self.item_weights, [len(s["xyz"]) for s in self.train], rank, world_size)
        self.train = [{**self.train[i], "xyz": self.train[i]["xyz"][f], "mask": self.train[i]["mask"][f]}
                      for i, f in picks]
        self.groups = [self.groups[i] for i, _ in picks]
        self.item_weights = self.item_weights[[i for i, _ in picks]]
        self.weights = self.item_weights / self.item_weights.sum()

    @staticmethod
    def _new_model(cfg, geometry):
        """A new step with the config's hyper-parameters and the fitted template geometry."""
        return CA2AA(from_dict(CA2AAConfig, cfg.model, "model"), geometry)

    @staticmethod
    def _init_from(cfg):
        """The eager step of the exported C-alpha model ``cfg.init``; its hyper-parameters become ``cfg.model``."""
        bm = load_model(cfg.init, device="cpu")
        if bm.kind != "ca2aa":
            raise InputError(f"init {cfg.init!r} is a {bm.kind!r} model; a ca2aa run can only start from a ca2aa "
                             "model (e.g. models/ca2aa.pt)")
        hyper = bm.metadata["steps"][0].get("config") or {}
        if cfg.model and cfg.model != hyper:
            raise InputError(f"model hyper-parameters {cfg.model} differ from those of init {cfg.init!r} ({hyper}); "
                             "leave 'model' out of the config when fine-tuning")
        cfg.model = dict(hyper)
        return CA2AA.from_exported(getattr(bm.module.steps, "0"), hyper)

    def _batch(self, items):
        r = max(len(it["types"]) for it in items)
        valid = np.zeros((len(items), r), dtype=bool)
        for i, it in enumerate(items):
            valid[i, : len(it["types"])] = True
        return (_pad(items, "xyz", r), _pad(items, "mask", r, False), _pad(items, "types", r),
                torch.from_numpy(valid), _pad(items, "seg", r, True))

    def sample_batch(self, rng):
        items, total = [], 0
        while total < self.cfg.optim.batch_residues:
            s = self.train[rng.choice(len(self.train), p=self.weights)]
            f = rng.integers(len(s["xyz"]))
            items.append({"xyz": s["xyz"][f], "mask": s["mask"][f], "types": s["types"], "seg": s["seg"]})
            total += len(s["types"])
            if len(items) == 1 and total >= self.cfg.optim.batch_residues:
                break
        return tuple(t.to(self.device) for t in self._batch([pack_chains(items)] if self.opts.pack else items))

    def loss(self, batch):
        return self.model.loss(*batch, ca_noise=self.opts.ca_noise)

    def _val_items(self):
        for s in self.val:
            idx = np.linspace(0, len(s["xyz"]) - 1, min(len(s["xyz"]), self.opts.val_frames)).round().astype(int)
            for f in np.unique(idx):
                yield {"xyz": s["xyz"][f], "mask": s["mask"][f], "types": s["types"], "seg": s["seg"]}

    def validate(self):
        """Validation NLL, plus heavy-atom RMSD (Å) of the deterministic reconstruction."""
        losses, sq, n = [], 0.0, 0
        for it in self._val_items():
            xyz, mask, types, valid, seg = (t.to(self.device) for t in self._batch([it]))
            loss, _ = self.model.loss(xyz, mask, types, valid, seg)
            losses.append(float(loss))
            h, frames, has_next, has_prev = self.model.encode(xyz[:, :, 1], types, valid, seg)
            bb, chi = self.model.sample_angles(h, self.model.chi_context(h), 0, 0.0)
            out = self.model.build(xyz[:, :, 1], types, valid, frames, has_next, has_prev, bb, chi)
            m = mask & self.model.slot_valid[types]
            sq += float(((out - xyz) ** 2).sum(-1)[m].sum())
            n += int(m.sum())
        return {"val_loss": float(np.mean(losses)), "val_rmsd_A": (sq / max(n, 1)) ** 0.5}

    def on_load(self):
        """Template geometry is fitted from the data, not learned: write the task's fit into the buffers
        after a checkpoint is loaded (an older checkpoint may carry stale or incomplete tables)."""
        with torch.no_grad():
            for key in ("bond", "angle", "offset"):
                getattr(self.model, f"zm_{key}").copy_(torch.as_tensor(np.asarray(self.geometry[key]),
                                                                        dtype=torch.float32))
        self.model.pro_cd_n = float(self.geometry["pro_cd_n"])

    def export_module(self):
        """The step wrapped as a transferable k-step model, and its export context."""
        self.on_load()
        origin = "of the initial model" if self.cfg.init else "fitted on training data"
        return KStepModel([self.model]), {"kind": "ca2aa", "metadata": {"template_geometry": origin}}
