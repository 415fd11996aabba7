"""The training loop shared by every step kind.

A *task* (see :class:`openmm_backmap.train.protocol.Task`) owns the model and knows how
to draw a batch, compute its loss and validate; this loop owns everything
else: optimiser, learning-rate reduction on plateau, early stopping,
checkpoint and resume, gradient accumulation, progress (a bar on a terminal,
a line every few seconds otherwise: :mod:`.progress`), and a CSV log of
losses and validation metrics. In a distributed run (:mod:`.distributed`)
every rank runs this loop on its own data shard; rank 0 validates, logs and
writes checkpoints, and broadcasts what the other ranks need to decide alike
(its clock and the validation loss).
"""

from __future__ import annotations

import csv
import os
import time
from contextlib import nullcontext
from dataclasses import asdict

import numpy as np
import torch
import yaml

from ..structure import MissingFileError
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RunConfig
from .distributed import (SINGLE_PROCESS, DistContext, agree, gather_objects, mean_over_ranks, rank_generators,
                          rank_rng_state, restore_rank_rng, weights_digest, wrap_model)
from .progress import Progress, tqdm
from .protocol import Task

__all__ = ["train_task", "RUN_FILES"]


def train_task(task: Task, cfg: RunConfig, resume: bool = False, log=print,
               dist: DistContext = SINGLE_PROCESS) -> dict:
    """Optimise ``task.model``; return a summary (best validation metrics, time, steps).

    The run directory receives ``config.yaml`` (the resolved config),
    ``log.csv``, ``last.pt`` (for resuming) and ``best.pt`` (best validation
    loss). Checkpoints hold plain data only (see :mod:`.checkpoint`), so a
    resumed run continues exactly where the checkpoint left off. A
    distributed run's checkpoint holds every rank's random states and must
    be resumed with as many processes; with ``optim.check_sync_every`` its
    ranks compare weight digests (``sync.csv``) and stop if they differ.
    These files are written (and a fresh run's predecessors in ``run_dir``
    removed) only once the run has trained, at its first sync check or
    validation: a run that fails to start leaves the directory as it was.

    Examples
    --------
    >>> summary = train_task(make_task(cfg, train, val, data), cfg)  # doctest: +SKIP
    """
    main = dist.is_main
    if cfg.optim.threads:
        torch.set_num_threads(cfg.optim.threads)
    elif dist.active:  # share the cores among the local processes
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    rng = rank_generators(cfg.seed, dist)
    model = task.model.to(dist.device)
    task.device = dist.device
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.optim.lr_factor,
                                                       patience=cfg.optim.lr_patience, min_lr=cfg.optim.min_lr)
    state = {"step": 0, "best": float("inf"), "bad": 0, "elapsed": 0.0, "best_metrics": {}}
    last_path = os.path.join(cfg.run_dir, "last.pt")
    best_path = os.path.join(cfg.run_dir, "best.pt")
    log_path = os.path.join(cfg.run_dir, "log.csv")
    sync_path = os.path.join(cfg.run_dir, "sync.csv")
    if resume:
        if not os.path.exists(last_path):
            raise MissingFileError(f"cannot resume: no checkpoint {last_path!r}; run without --resume")
        ck = load_checkpoint(last_path)
        model.load_state_dict(ck["model"])
        task.on_load()
        opt.load_state_dict(ck["optim"])
        sched.load_state_dict(ck["sched"])
        state = ck["state"]
        rng = restore_rank_rng(ck, dist, last_path)
        log(f"resumed from step {state['step']}")
    forward, no_sync = wrap_model(task, dist)  # after loading: DDP starts every rank from rank 0's weights
    # Nothing in the run directory changes before this run has trained: config.yaml, and a fresh run's removal of
    # an earlier run's files (allowed by --force only, see pipeline.check_run_dir), wait for the first file this
    # run writes (a sync row or the first validation), so a run that fails to start leaves the earlier run intact.
    started = [False]

    def start_files():
        if main and not started[0]:
            _start_run_files(cfg, resume)
            started[0] = True

    fields = None
    t0 = time.time() - state["elapsed"]
    # step, loss, s/step and ETA every few seconds, also where no bar is drawn (output to a file or a pipe)
    bar = Progress(cfg.optim.max_steps, "step", "step", initial=state["step"], enabled=main,
                   deadline_s=60 * cfg.optim.time_limit_min - state["elapsed"])
    running = []
    stop_reason = "max_steps"
    peak_rss = state.get("peak_rss_mb") or 0.0
    while state["step"] < cfg.optim.max_steps:
        if agree(dist, time.time() - t0)[0] > 60 * cfg.optim.time_limit_min:  # e.g. resumed after the limit
            stop_reason = "time_limit"
            break
        model.train()
        opt.zero_grad(set_to_none=True)
        for k in range(cfg.optim.grad_accumulation):
            with no_sync() if k < cfg.optim.grad_accumulation - 1 else nullcontext():
                loss, parts = forward(task.sample_batch(rng))
                (loss / cfg.optim.grad_accumulation).backward()
            running.append(float(loss.detach()))
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
        opt.step()
        state["step"] += 1
        bar.update(1, loss=f"{np.mean(running[-50:]):.4f}", lr=f"{opt.param_groups[0]['lr']:.1e}")
        if cfg.optim.check_sync_every and dist.active and state["step"] % cfg.optim.check_sync_every == 0:
            start_files()
            _check_sync(dist, model, state["step"], sync_path)
        elapsed = agree(dist, time.time() - t0)[0]
        last = state["step"] >= cfg.optim.max_steps or elapsed > 60 * cfg.optim.time_limit_min
        if state["step"] % cfg.optim.validate_every == 0 or last:
            train_loss = mean_over_ranks(dist, float(np.mean(running)) if running else float("nan"))
            metrics = {}
            if main:
                model.eval()
                with torch.no_grad():
                    metrics = task.validate()
            val = agree(dist, metrics.get("val_loss", 0.0))[0]
            sched.step(val)
            try:
                import resource

                peak_rss = max(peak_rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            except ImportError:  # pragma: no cover
                pass
            state["peak_rss_mb"] = peak_rss
            row = {"step": state["step"], "time_s": round(elapsed, 1), "lr": opt.param_groups[0]["lr"],
                   "train_loss": train_loss, **metrics}
            running = []
            improved = val < state["best"] - 1e-4
            if improved:
                state["best"], state["bad"] = val, 0
                state["best_metrics"] = {k: v for k, v in row.items()}
            else:
                state["bad"] += 1
            state["elapsed"] = elapsed
            rngs = gather_objects(dist, rank_rng_state(rng, dist))
            if main:
                start_files()
                fields = _write_row(log_path, row, fields, resume)
                if improved:
                    save_checkpoint(best_path, {"model": model.state_dict(), "step": state["step"], "metrics": row})
                tqdm.write(f"step {state['step']:6d}  train {row['train_loss']:.4f}  val {val:.4f}"
                           + "".join(f"  {k} {v:.3f}" for k, v in metrics.items() if k != "val_loss")
                           + ("  *" if improved else ""))
                ranks = {"world_size": dist.world_size, "rank_rngs": rngs} if dist.active else {}
                save_checkpoint(last_path, {"model": model.state_dict(), "optim": opt.state_dict(),
                                            "sched": sched.state_dict(), "state": state, **rngs[0], **ranks})
            if state["bad"] >= cfg.optim.patience:
                stop_reason = "early_stopping"
                break
            if elapsed > 60 * cfg.optim.time_limit_min:
                stop_reason = "time_limit"
                break
    bar.close()
    summary = {"steps": state["step"], "stop_reason": stop_reason, "train_time_s": round(state["elapsed"], 1),
               "peak_rss_mb": round(peak_rss, 1) if peak_rss else None, "best_metrics": state["best_metrics"]}
    if dist.active:
        summary["processes"] = dist.world_size
    model.to("cpu")
    task.device = torch.device("cpu")
    if not main:
        return summary
    best = load_checkpoint(best_path)
    model.load_state_dict(best["model"])
    task.on_load()
    summary["best_step"] = best["step"]
    log(f"training stopped ({stop_reason}) after {state['step']} steps, {state['elapsed'] / 60:.1f} min; "
        f"best val_loss {state['best']:.4f} at step {best['step']}")
    return summary


#: What a run writes in its run directory besides the model: a fresh run replaces all of them.
RUN_FILES = ("config.yaml", "log.csv", "sync.csv", "last.pt", "best.pt", "summary.json")


def _start_run_files(cfg, resume):
    """Rank 0, once this run has trained: a fresh run removes an earlier run's files; both write config.yaml."""
    os.makedirs(cfg.run_dir, exist_ok=True)
    if not resume:
        for name in RUN_FILES:
            path = os.path.join(cfg.run_dir, name)
            if os.path.exists(path):
                os.remove(path)
    with open(os.path.join(cfg.run_dir, "config.yaml"), "w") as fh:
        yaml.safe_dump(asdict(cfg), fh, sort_keys=False)


def _write_row(log_path, row, fields, resume):
    """Append ``row`` to the CSV log (a header first in a new log); return the log's fields."""
    new = fields is None and not (resume and os.path.exists(log_path))
    fields = fields or list(row)
    with open(log_path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
    return fields


def _check_sync(dist, model, step, path):
    """Every rank's weight digest into ``sync.csv`` (rank 0); stop if they differ: the ranks have diverged."""
    digests = gather_objects(dist, weights_digest(model))
    if dist.is_main:
        with open(path, "a") as fh:
            fh.write(f"{step}," + ",".join(digests) + "\n")
    if len(set(digests)) > 1:
        raise RuntimeError(f"distributed ranks hold different weights after step {step}: {digests}")
