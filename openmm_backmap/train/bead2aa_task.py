"""Training task of the beads -> heavy-atom step (kind ``bead2aa``): centre-of-mass and Martini beads.

The chains, ensembles and corpus of the C-alpha task, mapped to the step's
bead scheme on the fly (so one data cache serves every scheme). The step
starts from a trained C-alpha model (``init``) and learns, together, where
the C-alphas sit among the beads (mean squared error) and the angles given
the beads (likelihood, as the C-alpha task). Validation reports the
heavy-atom and C-alpha RMSD (Å) of the deterministic reconstruction from
the beads of the reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from ..model import KStepModel, load_model
from ..model.steps import CA2AA, CA2AAConfig, Bead2AA, Bead2AAConfig
from ..structure import InputError
from .ca2aa_task import CA2AATask, CA2AATaskConfig
from .config import from_dict
from .protocol import register_task

__all__ = ["Bead2AATaskConfig", "Bead2AATask"]


@dataclass
class Bead2AATaskConfig(CA2AATaskConfig):
    """Options of the beads -> atoms task: those of the C-alpha task, plus

    Attributes
    ----------
    bead_noise : float
        Gaussian noise (Å) added to the beads while training (a CG
        simulation does not place them exactly where a mapping would).
    ca_weight : float
        Weight of the C-alpha placement error (Å^2) against the angle
        likelihood (nats per angle).
    """

    bead_noise: float = 0.1
    ca_weight: float = 1.0


@register_task("bead2aa")
class Bead2AATask(CA2AATask):
    """Trains :class:`~openmm_backmap.model.steps.bead2aa.Bead2AA` from a trained C-alpha model."""

    options_class = Bead2AATaskConfig

    @staticmethod
    def _new_model(cfg, geometry):
        return Bead2AA(from_dict(Bead2AAConfig, cfg.model, "model"), geometry)

    @staticmethod
    def _init_from(cfg):
        """The step of ``cfg.init``: a C-alpha model (its network becomes the atom network of a new beads step;
        ``model`` gives the scheme and the C-alpha placement network), or a beads model of the same scheme."""
        bm = load_model(cfg.init, device="cpu")
        if bm.kind not in ("ca2aa", "bead2aa"):
            raise InputError(f"init {cfg.init!r} is a {bm.kind!r} model; a bead2aa run starts from a ca2aa or "
                             "bead2aa model (e.g. models/ca2aa.pt)")
        exported = getattr(bm.module.steps, "0")
        hyper = dict(bm.metadata["steps"][0].get("config") or {})
        if not hyper:
            raise InputError(f"init {cfg.init!r} does not record its network's hyper-parameters (steps[0].config); "
                             "re-export it with this version")
        own = {f.name for f in fields(CA2AAConfig)}
        clash = {k: v for k, v in (cfg.model or {}).items() if k in own and hyper.get(k, v) != v}
        if clash:
            raise InputError(f"model hyper-parameters {clash} differ from those of init {cfg.init!r}; leave the "
                             "C-alpha network's keys out of 'model' when starting from a model")
        if bm.kind == "ca2aa":
            config = from_dict(Bead2AAConfig, {**hyper, **(cfg.model or {})}, "model")
            step = Bead2AA.from_ca2aa(CA2AA.from_exported(exported, hyper), config)
        else:
            if (cfg.model or {}).get("scheme", hyper.get("scheme")) != hyper.get("scheme"):
                raise InputError(f"init {cfg.init!r} takes {hyper.get('scheme')!r} beads, not "
                                 f"{cfg.model.get('scheme')!r}")
            step = Bead2AA.from_exported(exported, hyper)
        cfg.model = asdict(step.config)
        return step

    def loss(self, batch):
        return self.model.bead_loss(*batch, ca_noise=self.opts.ca_noise, bead_noise=self.opts.bead_noise,
                                    ca_weight=self.opts.ca_weight)

    def validate(self):
        """Validation loss (without noise), and heavy-atom and C-alpha RMSD (Å) of the deterministic
        reconstruction from the reference's beads."""
        model = self.model
        losses, sq, n, sq_ca, n_ca = [], 0.0, 0, 0.0, 0
        for it in self._val_items():
            xyz, mask, types, valid, seg = (t.to(self.device) for t in self._batch([it]))
            loss, _ = model.bead_loss(xyz, mask, types, valid, seg)
            losses.append(float(loss))
            beads = model.beads_from_atoms(xyz, mask, types)
            ca = model.place_ca(beads, types, valid, seg)
            out = model.atoms(ca, types[0], seg[0], 0, 0.0, beads)[0] * model.angstrom_per_nm
            slots = model.slot_valid[types]
            ok = mask[slots]
            sq += float(((out - xyz[slots]) ** 2).sum(-1)[ok].sum())
            n += int(ok.sum())
            sq_ca += float(((ca - xyz[:, :, 1]) ** 2).sum(-1)[mask[..., 1]].sum())
            n_ca += int(mask[..., 1].sum())
        return {"val_loss": float(np.mean(losses)), "val_rmsd_A": (sq / max(n, 1)) ** 0.5,
                "val_ca_rmsd_A": (sq_ca / max(n_ca, 1)) ** 0.5}

    def export_module(self):
        self.on_load()
        scheme = self.model.scheme
        origin = "of the initial model" if self.cfg.init else "fitted on training data"
        return KStepModel([self.model]), {"kind": "bead2aa", "step_meta": {"input": scheme, "output": "aa"},
                                          "metadata": {"template_geometry": origin, "scheme": scheme,
                                                       "input_level": scheme}}
