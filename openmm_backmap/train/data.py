"""Training data: resolve file patterns, load ensembles, add the corpus, split train/validation."""

from __future__ import annotations

import glob
import os
import warnings

import numpy as np

from ..io import LoadWarning, load_ensemble
from ..structure import MissingFileError, torn_frames
from .corpus import load_corpus
from .progress import Progress

__all__ = ["load_training_data"]


def _expand(root, pattern):
    traj, _, top = pattern.partition(":")
    paths = sorted(glob.glob(os.path.join(root, traj)))
    if not paths:
        raise MissingFileError(f"no files match {pattern!r} under {root!r}; check data.root and data.files")
    return [(p, os.path.join(root, top) if top else None) for p in paths]


def _default_cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "openmm-backmap", "corpus")


def load_training_data(cfg, log=print):
    """Load the ensembles named by a :class:`~openmm_backmap.train.config.DataConfig`.

    Returns
    -------
    train, val : lists of ProteinEnsemble
        Single structures are split by file; ensembles (many frames) by
        frames, the last ``validation_fraction`` held out; corpus chains
        (``cfg.corpus``) by sequence cluster.
    summary : dict
        Files, frames and residues used, for the model metadata. With a
        corpus, ``summary["train_weights"]`` gives each training item's
        relative sampling weight (corpus chains share their cluster's weight),
        and ``summary["train_groups"]`` the unit a distributed run shards
        by: the file for files of the file list, the cluster for corpus
        chains. The caller removes both before the summary goes into metadata.

    Examples
    --------
    >>> train, val, summary = load_training_data(DataConfig(root='data', files=['*.pdb']))  # doctest: +SKIP
    """
    rng = np.random.default_rng(0)
    items = []
    for pattern in cfg.files:
        items += _expand(cfg.root, pattern)
    train, val, summary = [], [], {"files": [], "train_frames": 0, "val_frames": 0, "residues": 0}
    singles, groups = [], []
    n_warn = 0
    log(f"data: reading {len(items)} file(s) under {cfg.root}")
    progress = Progress(len(items), "data: file", "file", write=log)
    for k, (path, top) in enumerate(items):
        if k:
            progress.update()  # the files before this one are read
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LoadWarning)
            ens = load_ensemble(path, topology=top, stride=cfg.stride)
        n_warn += len(caught)
        torn = torn_frames(ens)
        if len(torn):  # corrupt models: a 10 nm "bond" would dominate any loss
            ens = ens.select_frames(np.setdiff1d(np.arange(ens.n_frames), torn))
            summary["dropped_corrupt_frames"] = summary.get("dropped_corrupt_frames", 0) + len(torn)
            log(f"data: {os.path.relpath(path, cfg.root)}: dropped {len(torn)} corrupt frame(s) with broken bonds")
            if ens.n_frames == 0:
                continue
        if cfg.max_frames and ens.n_frames > cfg.max_frames:
            ens = ens.select_frames(np.linspace(0, ens.n_frames - 1, cfg.max_frames).round().astype(int))
        rel = os.path.relpath(path, cfg.root)
        summary["files"].append({"path": rel, "frames": ens.n_frames, "residues": ens.n_residues})
        summary["residues"] += ens.n_residues
        if ens.n_frames == 1:
            singles.append((ens, rel))
            continue
        n_val = int(round(cfg.validation_fraction * ens.n_frames))
        if n_val:
            val.append(ens.select_frames(slice(ens.n_frames - n_val, None)))
        train.append(ens.select_frames(slice(0, ens.n_frames - n_val)))
        groups.append(rel)
    if items:
        progress.update()
    progress.close()
    order = rng.permutation(len(singles))
    n_val = int(round(cfg.validation_fraction * len(singles)))
    for k, i in enumerate(order):
        if k < n_val:
            val.append(singles[i][0])
        else:
            train.append(singles[i][0])
            groups.append(singles[i][1])
    if cfg.corpus:
        c_train, c_weights, c_val, summary["corpus"] = load_corpus(
            os.path.join(cfg.root, cfg.corpus), cfg.cache_dir or _default_cache_dir(),
            validation_fraction=cfg.corpus_validation_fraction, fraction=cfg.corpus_fraction, log=log)
        # a corpus cluster weighs as much as one file of the file list
        summary["train_weights"] = np.concatenate([np.ones(len(train)), c_weights])
        groups += [f"corpus cluster {c}" for c in summary["corpus"].pop("train_clusters")]
        train += c_train
        val += c_val
    summary["train_groups"] = groups
    summary["train_frames"] = int(sum(e.n_frames for e in train))
    summary["val_frames"] = int(sum(e.n_frames for e in val))
    log(f"data: {len(items)} files, {summary['train_frames']} training frames, {summary['val_frames']} validation "
        f"frames ({n_warn} load warnings: dropped ligands/waters, masked missing atoms)")
    return train, val, summary
