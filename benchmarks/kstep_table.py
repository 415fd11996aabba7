"""One-step vs two-step backmapping from ultra-coarse beads, measured in one run.

For every row (system x bead count) this trains, with the same model family
(``cgvae``) and the same budget rules:

* the ONE-STEP baseline: UCG -> heavy atoms directly (``task.target=aa``);
* the first step of the TWO-STEP model: UCG -> C-alpha (``task.target=ca``),
  composed with the transferable C-alpha model (``--ca-model``, default
  ``models/ca2aa.pt``) by :func:`openmm_backmap.model.export_kstep`;

then evaluates both on the held-out eval set of the system: the eval
all-atom frames are coarsened with the model's OWN embedded mappings
(:func:`openmm_backmap.mapping.coarsen` with the model's hierarchy) and
backmapped, deterministically (temperature 0) and with one sample per frame
(temperature 1); :func:`openmm_backmap.evaluation.evaluate` gives RMSD, GED,
clash and bond-ok; the C-alpha RMSD (no alignment) shows how much error the
C-alpha level carries. Training time and peak memory of every training run
(each in its own process) are recorded; numbers are mean and std over
``--seeds``. Writes ``<out>.json`` and ``<out>.md`` (default
``docs/benchmarks/kstep_table``).

Usage::

    python benchmarks/kstep_table.py [--data ../shared/data] [--ca-model models/ca2aa.pt] \\
        [--seeds 0 1 2] [--rows adk12,trpcage4] [--reuse] [--threads 2] [--eval-frames 100] \\
        [--time-limit-min 25]
    python benchmarks/kstep_table.py --quick   # plumbing check: tiny models, a few steps
    python benchmarks/kstep_table.py --merge part_a.json part_b.json   # rows run in parallel processes
    python benchmarks/kstep_table.py --merge new.json old.json:onestep   # and only the 1-step models of old.json
    python benchmarks/kstep_table.py --evaluate models/adk-ucg12.pt OLD.pt --system adk   # no training

``--finetune-min M`` adds a third model per row: the 2-step model whose
C-alpha step is the transferable model fine-tuned for M minutes on the
system's training files (once per system and seed, shared by its rows).

Rows: adenylate kinase with 12, 22 and 60 beads (train: DIMS + TMD paths;
eval: an independent DIMS path), Trp-cage with 4 beads (train: frames
0-3999; eval: frames 4000-4998), PED00153 with 10 beads (train: ensembles
e007-e010; eval: ensemble e011). k = 3 rows (``--variants threestep``):
adenylate kinase 12 -> 60 -> 214 C-alphas -> atoms and PED00153 10 -> 30 -> 100
C-alphas -> atoms; PED00151, the iterative paper's IDP, is in eval/ only, so no
per-system step may be trained on it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "examples" / "configs"
METRICS = ("rmsd_angstrom", "rmsd_sym_angstrom", "ged", "clash_percent", "bond_ok_percent")

# inline base config of the IDP row (no example YAML): the same model sizes as adenylate kinase
PED_STEP1 = {
    "kind": "cgvae", "name": "ped153-ucg10-step1", "seed": 0,
    "model": {"hidden": 64, "latent": 8, "encoder_layers": 2, "prior_layers": 2, "coarse_layers": 2,
              "decoder_layers": 4, "fine_neighbors": 10, "bead_neighbors": 6, "rbf": 16},
    "task": {"beads": 10, "target": "ca", "beta": 0.05, "kl_anneal_steps": 500, "bond_weight": 1.0,
             "det_weight": 0.0, "batch_frames": 8, "val_frames": 32},
    "data": {"root": "train", "files": ["idp/PED00153/PED00153e00[7-9].pdb.gz", "idp/PED00153/PED00153e010.pdb.gz"],
             "validation_fraction": 0.1},
    "optim": {"lr": 0.002, "max_steps": 6000, "time_limit_min": 55, "validate_every": 200, "patience": 8,
              "lr_patience": 3, "threads": 2},
}
PED_ONESTEP_OVERRIDES = {"name": "ped153-ucg10-onestep", "task.target": "aa", "task.batch_frames": 2,
                         "model.hidden": 48, "model.latent": 4, "model.prior_layers": 1, "optim.max_steps": 5000}
TRP_ONESTEP_OVERRIDES = {"name": "trpcage-ucg4-onestep", "task.target": "aa", "task.batch_frames": 8,
                         "optim.time_limit_min": 15.0}

ROWS = {
    "adk12": {"system": "adk", "beads": 12, "step1": ("adk-ucg12-step1.yaml", {}),
              "onestep": ("adk-ucg12-onestep.yaml", {})},
    "adk22": {"system": "adk", "beads": 22, "step1": ("adk-ucg12-step1.yaml", {"task.beads": 22}),
              "onestep": ("adk-ucg12-onestep.yaml", {"task.beads": 22})},
    "adk60": {"system": "adk", "beads": 60, "step1": ("adk-ucg12-step1.yaml", {"task.beads": 60}),
              "onestep": ("adk-ucg12-onestep.yaml", {"task.beads": 60})},
    "trpcage4": {"system": "trpcage", "beads": 4, "step1": ("trpcage-ucg4-step1.yaml", {}),
                 "onestep": ("trpcage-ucg4-step1.yaml", TRP_ONESTEP_OVERRIDES)},
    "ped153-10": {"system": "PED00153", "beads": 10, "step1": (PED_STEP1, {}),
                  "onestep": (PED_STEP1, PED_ONESTEP_OVERRIDES)},
    # k = 3: UCG -> finer UCG -> C-alpha -> atoms. The finer level is partitioned first and the input level groups
    # its beads; the second step is the first step of the finer row (same data, same partition), so the k = 3 model
    # is the k = 2 model of the finer row with one more step in front.
    "adk12-60": {"system": "adk", "beads": 12, "mid": 60,
                 "threestep": (("adk-ucg12-step1.yaml", {"task.target": "ucg60", "name": "adk-ucg12-ucg60"}),
                               ("adk-ucg12-step1.yaml", {"task.beads": 60}))},
    "ped153-10-30": {"system": "PED00153", "beads": 10, "mid": 30,
                     "threestep": ((PED_STEP1, {"task.target": "ucg30", "name": "ped153-ucg10-ucg30"}),
                                   (PED_STEP1, {"task.beads": 30}))},
}
EVAL = {
    "adk": ("eval/md/adk/adk_dims2.xtc", "eval/md/adk/adk.pdb"),
    "trpcage": ("eval/md/trpcage/trpcage_eval.dcd", "eval/md/trpcage/trpcage.pdb"),
    "PED00153": ("eval/idp/PED00153/PED00153e011.pdb.gz", None),
}
SYSTEM_NAMES = {"adk": "adenylate kinase (214 res)", "trpcage": "Trp-cage (20 res)",
                "PED00153": "PED00153 IDP (100 res)"}
VARIANTS = {"onestep": "1-step UCG→AA", "twostep": "2-step UCG→CA→AA",
            "twostep_ft": "2-step, CA→AA fine-tuned on the system", "threestep": "3-step UCG→UCG→CA→AA"}
#: --variants names: the models a row trains (step1 is the first step of the 2-step model)
TRAINED = ("onestep", "step1", "threestep")
QUICK = {"optim.max_steps": 3, "optim.validate_every": 3, "optim.time_limit_min": 2.0, "data.max_frames": 12,
         "model.hidden": 16, "model.latent": 2, "model.encoder_layers": 1, "model.prior_layers": 1,
         "model.coarse_layers": 1, "model.decoder_layers": 1, "task.val_frames": 4}


# --------------------------------------------------------------------------
# configs and training
# --------------------------------------------------------------------------
def _set(d: dict, dotted: str, value):
    node = d
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def build_config(base, overrides: dict, data_root: Path, run_dir: Path, seed: int, threads: int,
                 name: str) -> dict:
    """A config dict with absolute paths for one training run."""
    if isinstance(base, str):
        d = yaml.safe_load((CONFIGS / base).read_text())
        root = (CONFIGS / d["data"]["root"]).resolve()
        # the example YAMLs point at ../shared/data/train; follow --data instead
        if root.name == "train":
            root = data_root / "train"
    else:
        d = copy.deepcopy(base)
        root = data_root / d["data"]["root"]
    for k, v in overrides.items():
        _set(d, k, v)
    d["data"]["root"] = str(root)
    d["run_dir"] = str(run_dir)
    d["output"] = str(run_dir / "model.pt")
    d["seed"] = int(seed)
    d.setdefault("optim", {})["threads"] = int(threads)
    d["name"] = f"{name}-s{seed}"
    return d


def train_one(cfg: dict, run_dir: Path, reuse: bool, threads: int, log) -> dict:
    """Train in a fresh process (own peak memory); return the training summary."""
    model, summary_path = run_dir / "model.pt", run_dir / "summary.json"
    if reuse and model.exists() and summary_path.exists():
        log(f"  reuse {model}")
        return json.loads(summary_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "input.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    code = "import sys; from openmm_backmap.train import train_model; train_model(sys.argv[1])"
    t0 = time.time()
    with open(run_dir / "train.log", "w") as fh:
        proc = subprocess.run([sys.executable, "-c", code, str(cfg_path)], stdout=fh, stderr=subprocess.STDOUT,
                              env=env, cwd=str(REPO))
    if proc.returncode != 0:
        raise RuntimeError(f"training failed (exit {proc.returncode}); see {run_dir / 'train.log'}")
    summary = json.loads(summary_path.read_text())
    summary["wall_s"] = round(time.time() - t0, 1)
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    log(f"  trained {cfg['name']}: {summary.get('steps')} steps, {summary.get('train_time_s')} s, "
        f"peak {summary.get('peak_rss_mb')} MB")
    return summary


_FINETUNED: dict = {}


def finetuned_ca_model(spec: dict, step1_cfg: dict, ca_model: Path, runs: Path, seed: int, args, data_root, log):
    """The C-alpha model fine-tuned on the system's training files (the first step's data); once per system."""
    key = (spec["system"], seed)
    if key not in _FINETUNED:
        run_dir = runs / f"ca2aa_ft_{spec['system']}" / f"s{seed}"
        over = {"optim.time_limit_min": args.finetune_min}
        if args.quick:
            over.update({"optim.max_steps": 3, "optim.validate_every": 3, "task.val_frames": 2})
        cfg = build_config("ca2aa-finetune-adk.yaml", over, data_root, run_dir, seed, args.threads,
                           f"ca2aa-{spec['system']}")
        cfg["data"] = copy.deepcopy(step1_cfg["data"])  # the system's own training files (absolute root)
        cfg["init"] = str(Path(ca_model).resolve())
        summary = train_one(cfg, run_dir, args.reuse, args.threads, log)
        _FINETUNED[key] = {"model": str(run_dir / "model.pt"), "train_time_s": summary.get("train_time_s"),
                           "peak_rss_mb": summary.get("peak_rss_mb"), "steps": summary.get("steps"),
                           "best_metrics": summary.get("best_metrics")}
    return _FINETUNED[key]


def tiny_ca_model(path: Path):
    """An untrained tiny C-alpha -> atoms model (``--quick`` without models/ca2aa.pt)."""
    import torch

    from openmm_backmap.model import KStepModel, save_model
    from openmm_backmap.model.steps import CA2AA, CA2AAConfig

    torch.manual_seed(0)
    model = KStepModel([CA2AA(CA2AAConfig(hidden=16, layers=1, heads=2, neighbors=4, mixture=2, rbf=4,
                                          edge_dim=8))])
    return save_model(model, str(path), {"kind": "ca2aa", "name": "tiny-untrained", "transferable": True,
                                          "steps": [{"kind": "ca2aa"}]})


# --------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------
_EVAL_CACHE: dict = {}


def eval_ensemble(system: str, data_root: Path, max_frames: int):
    from openmm_backmap.io import LoadWarning, load_ensemble
    from openmm_backmap.structure.segments import torn_frames

    key = (system, str(data_root), max_frames)
    if key not in _EVAL_CACHE:
        path, top = EVAL[system]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LoadWarning)
            ens = load_ensemble(data_root / path, topology=data_root / top if top else None)
        ens = ens.select_frames(np.flatnonzero(ens.ca_mask.all(1)))
        ens = ens.select_frames(np.setdiff1d(np.arange(ens.n_frames), torn_frames(ens)))  # corrupt models
        if max_frames and ens.n_frames > max_frames:
            ens = ens.select_frames(np.linspace(0, ens.n_frames - 1, max_frames).round().astype(int))
        _EVAL_CACHE[key] = ens
    return _EVAL_CACHE[key]


def evaluate_model(path: str, ref, seed: int, samples: int) -> dict:
    """Coarsen ``ref`` with the model's own mappings, backmap, and compare."""
    from openmm_backmap.model.backmapping import load_model
    from openmm_backmap.structure.ensemble import ProteinEnsemble
    from openmm_backmap.mapping import coarsen
    from openmm_backmap.evaluation import evaluate

    bm = load_model(path, device="cpu")
    if list(bm.sequence) != list(ref.sequence):
        raise ValueError(f"{path}: the model's sequence differs from the eval set {ref.source}")
    level = bm.hierarchy.levels[-1]
    cg = coarsen(ref, hierarchy=bm.hierarchy, levels=level)[level][0]
    out = {"level": level, "n_frames": int(ref.n_frames)}
    lay = ref.layout
    ref_ca = ref.ca_xyz.astype(np.float64)
    for mode, kwargs in (("det", {"deterministic": True}), ("sample", {"samples": samples, "temperature": 1.0})):
        t0 = time.perf_counter()
        res = bm.backmap(cg, seed=seed, **kwargs)
        dt = time.perf_counter() - t0
        k = res.samples
        gen = ProteinEnsemble.from_arrays(ref.sequence, res.xyz, segment_start=ref.segment_start,
                                          source=f"{os.path.basename(path)}:{mode}")
        ev = evaluate(ref, gen, name=f"{os.path.basename(path)}:{mode}")
        ca = res.xyz[:, lay.ca_index].astype(np.float64)
        ca_rmsd = np.sqrt(((ca - np.repeat(ref_ca, k, axis=0)) ** 2).sum(-1).mean(-1)) * 10.0
        out[mode] = {m: ev[m]["mean"] for m in METRICS}
        out[mode]["ca_rmsd_angstrom"] = float(np.mean(ca_rmsd))
        out[mode]["kl_ramachandran"] = ev["kl"]["ramachandran"]
        out[mode]["ms_per_frame"] = 1000.0 * dt / max(1, gen.n_frames)
    return out


# --------------------------------------------------------------------------
# aggregation and output
# --------------------------------------------------------------------------
def _mean_std(values):
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def aggregate(runs: list) -> dict:
    agg = {"train_time_min": _mean_std([r["train"].get("train_time_s", np.nan) / 60.0 for r in runs]),
           "peak_rss_mb": _mean_std([r["train"].get("peak_rss_mb") for r in runs]),
           "val_rmsd_angstrom": _mean_std([r["train"].get("best_metrics", {}).get("val_rmsd_A") for r in runs])}
    for mode in ("det", "sample"):
        for m in METRICS + ("ca_rmsd_angstrom", "kl_ramachandran", "ms_per_frame"):
            agg[f"{mode}_{m}"] = _mean_std([r["eval"][mode][m] for r in runs])
    return agg


def _fmt(s, digits=2):
    if s is None or s.get("mean") is None:
        return "-"
    if s["n"] > 1:
        return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"
    return f"{s['mean']:.{digits}f}"


def markdown(result: dict) -> str:
    lines = ["# One-step vs two-step backmapping from ultra-coarse beads", "",
             f"Generated by `benchmarks/kstep_table.py` on {result['created']} ({result['machine']}); "
             f"seeds {result['seeds']} (per row in the seeds column; ± is the std over them), {result['threads']} "
             "thread(s) per training run"
             + (" — **QUICK MODE: plumbing check, numbers meaningless**" if result["quick"] else "") + ".", "",
             "Eval frames are coarsened with each model's own mappings and backmapped; RMSD (Å, no alignment: "
             "the beads fix the frame), GED, clash % and bond-ok % from `openmm_backmap.evaluation.evaluate` on "
             "heavy atoms; CA RMSD isolates the C-alpha level. *det*: temperature 0; *sample*: one sample per "
             "frame at temperature 1. Train time and peak memory are those of the trained step (the 2-step model "
             f"adds the transferable C-alpha model `{result['ca_model']}`, trained once for all systems"
             + (f": {result['ca_model_train_min']:.0f} min" if result.get("ca_model_train_min") else "") + ").", "",
             "| row | system | beads | model | seeds | train min | peak MB | val RMSD Å | RMSD Å det | RMSD Å sample "
             "| CA RMSD Å det | GED det | clash % det | bond ok % det | ms/frame | measured |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row, r in result["rows"].items():
        for variant, name in VARIANTS.items():
            if variant not in r:
                continue
            if variant == "threestep":
                name = name.replace("UCG→UCG", f"UCG{r['beads']}→UCG{r['mid']}")
            a = r[variant]["aggregate"]
            seeds = ",".join(str(run["seed"]) for run in r[variant]["runs"])
            lines.append(f"| {row} | {SYSTEM_NAMES[r['system']]} | {r['beads']} | {name} | {seeds} | "
                         f"{_fmt(a['train_time_min'], 1)} | {_fmt(a['peak_rss_mb'], 0)} | "
                         f"{_fmt(a['val_rmsd_angstrom'])} | {_fmt(a['det_rmsd_angstrom'])} | "
                         f"{_fmt(a['sample_rmsd_angstrom'])} | {_fmt(a['det_ca_rmsd_angstrom'])} | "
                         f"{_fmt(a['det_ged'], 3)} | {_fmt(a['det_clash_percent'])} | "
                         f"{_fmt(a['det_bond_ok_percent'], 1)} | {_fmt(a['det_ms_per_frame'], 1)} | "
                         f"{r[variant].get('measured', result['created'])[:10]} |")
    lines += ["", "val RMSD: the step's own validation RMSD on held-out training frames (C-alpha for the first step "
              "of the 2-step model and the last per-system step of the 3-step model, heavy atoms for the 1-step "
              "model). Train min of the 3-step model is the sum of its two per-system steps, peak MB the larger. "
              "measured: the date of the run that trained and evaluated the model (`--merge` combines runs; the "
              "1-step models do not use the C-alpha model). ms/frame is measured while other runs share the "
              "machine.", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="data root (train/ and eval/)")
    ap.add_argument("--ca-model", default=str(REPO / "models" / "ca2aa.pt"), help="transferable C-alpha model")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {', '.join(ROWS)}")
    ap.add_argument("--reuse", action="store_true", help="reuse trained models found in the run directories")
    ap.add_argument("--runs", default=None, help="run directory root (default runs/kstep, runs/kstep_quick)")
    ap.add_argument("--out", default=None, help="output prefix (default docs/benchmarks/kstep_table)")
    ap.add_argument("--threads", type=int, default=2, help="threads per training run")
    ap.add_argument("--finetune-min", type=float, default=0.0,
                    help="also fine-tune the C-alpha model on each system's training data for this many minutes "
                         "(examples/configs/ca2aa-finetune-adk.yaml with the system's files) and report the 2-step "
                         "model with it (0 = skip)")
    ap.add_argument("--time-limit-min", type=float, default=None,
                    help="training budget of every run in minutes (default: each config's optim.time_limit_min)")
    ap.add_argument("--eval-frames", type=int, default=100, help="evenly spaced eval frames per system (0 = all)")
    ap.add_argument("--samples", type=int, default=1, help="samples per frame at temperature 1")
    ap.add_argument("--variants", default="onestep,step1,threestep",
                    help="which models of each row to train and evaluate: onestep, step1 (the 2-step model), "
                         "threestep (the k = 3 rows), or several; e.g. one process per variant trains a row's "
                         "models in parallel. A row trains only the variants it defines")
    ap.add_argument("--quick", action="store_true", help="tiny models and a few steps: checks the plumbing only")
    ap.add_argument("--merge", nargs="+", metavar="PART.json[:MODELS]",
                    help="only combine the rows of result files written by separate runs (e.g. --rows in parallel "
                         "processes with their own --out) into --out, and stop; PART.json:onestep takes only the "
                         f"named models ({', '.join(VARIANTS)}) of that file")
    ap.add_argument("--evaluate", nargs="+", metavar="MODEL.pt",
                    help="only evaluate these k-step model files (no training) on the eval frames of --system, "
                         "print the metrics and write them to --out (.json), and stop")
    ap.add_argument("--system", default="adk", choices=sorted(EVAL), help="the eval set of --evaluate")
    args = ap.parse_args(argv)
    if args.evaluate:
        return evaluate_files(args)
    if args.merge:
        out = Path(args.out or REPO / "docs" / "benchmarks" / "kstep_table")
        try:
            result = merge_results([read_part(p) for p in args.merge])
        except ValueError as e:
            ap.error(str(e))
        _write(out, result)
        print(f"merged {len(result['rows'])} rows into {out}.json and {out}.md")
        return result

    import torch

    torch.set_num_threads(args.threads)
    data_root = Path(args.data).resolve()
    runs = Path(args.runs or (REPO / "runs" / ("kstep_quick" if args.quick else "kstep"))).resolve()
    out = Path(args.out or (runs / "kstep_table" if args.quick else REPO / "docs" / "benchmarks" / "kstep_table"))
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown row(s) {unknown}; choose from {list(ROWS)}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or set(variants) - set(TRAINED):
        ap.error(f"--variants {args.variants!r}: choose from {', '.join(TRAINED)}")
    if not (data_root / "train").is_dir() or not (data_root / "eval").is_dir():
        ap.error(f"--data {data_root} must contain train/ and eval/")
    ca_model = Path(args.ca_model)
    if not ca_model.exists():
        if not args.quick:
            ap.error(f"C-alpha model {ca_model} not found: train it (openmm-backmap train examples/configs/"
                     "ca2aa.yaml) or pass --ca-model")
        runs.mkdir(parents=True, exist_ok=True)
        ca_model = Path(tiny_ca_model(runs / "tiny_ca2aa.pt"))
    eval_frames = 4 if args.quick else args.eval_frames
    log = print

    from openmm_backmap.model import export_kstep, load_model

    ca_meta = load_model(str(ca_model), device="cpu").metadata
    ca_train = (ca_meta.get("training") or {}).get("train_time_s")
    result = {"created": time.strftime("%Y-%m-%d %H:%M"), "quick": args.quick, "seeds": args.seeds,
              "threads": args.threads, "ca_model": os.path.relpath(ca_model, REPO),
              "ca_model_train_min": ca_train / 60.0 if ca_train else None,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
                         f"{torch.__version__}", "eval_frames": eval_frames, "samples": args.samples, "rows": {}}
    for row in rows:
        spec = ROWS[row]
        log(f"[{row}] {SYSTEM_NAMES[spec['system']]}, {spec['beads']} beads")
        ref = eval_ensemble(spec["system"], data_root, eval_frames)
        entry = {"system": spec["system"], "beads": spec["beads"], "eval": str(EVAL[spec["system"]][0]),
                 "eval_frames": int(ref.n_frames)}
        per = {"onestep": [], "twostep": [], "threestep": []}
        if "mid" in spec:
            entry["mid"] = spec["mid"]
        for seed in args.seeds:
            for variant in (v for v in variants if v in spec):
                if variant == "threestep":
                    per[variant].append(three_step(row, spec, seed, ca_model, runs, data_root, ref, args, log))
                    continue
                base, over = spec[variant]
                over = dict(over, **(QUICK if args.quick else {}))
                if args.time_limit_min is not None and not args.quick:
                    over["optim.time_limit_min"] = args.time_limit_min
                run_dir = runs / row / f"{variant}_s{seed}"
                cfg = build_config(base, over, data_root, run_dir, seed, args.threads, f"{row}-{variant}")
                summary = train_one(cfg, run_dir, args.reuse, args.threads, log)
                model = str(run_dir / "model.pt")
                if variant == "step1":
                    kstep = str(run_dir / "kstep.pt")
                    export_kstep([model, str(ca_model)], kstep, force=True)
                    model, variant = kstep, "twostep"
                t0 = time.perf_counter()
                ev = evaluate_model(model, ref, seed, args.samples)
                log(f"  {variant} seed {seed}: RMSD det {ev['det']['rmsd_angstrom']:.2f} Å, sample "
                    f"{ev['sample']['rmsd_angstrom']:.2f} Å, CA {ev['det']['ca_rmsd_angstrom']:.2f} Å, bond ok "
                    f"{ev['det']['bond_ok_percent']:.1f} % ({time.perf_counter() - t0:.0f} s)")
                keep = {k: summary.get(k) for k in ("steps", "best_step", "stop_reason", "train_time_s",
                                                    "peak_rss_mb", "best_metrics", "wall_s")}
                per[variant].append({"seed": seed, "model": os.path.relpath(model, REPO), "train": keep, "eval": ev})
                if variant == "twostep" and args.finetune_min > 0:
                    ft = finetuned_ca_model(spec, cfg, ca_model, runs, seed, args, data_root, log)
                    kstep = str(run_dir / "kstep_ft.pt")
                    export_kstep([str(run_dir / "model.pt"), ft["model"]], kstep, force=True)
                    ev = evaluate_model(kstep, ref, seed, args.samples)
                    log(f"  twostep_ft seed {seed}: RMSD det {ev['det']['rmsd_angstrom']:.2f} Å, bond ok "
                        f"{ev['det']['bond_ok_percent']:.1f} %")
                    both = dict(keep, train_time_s=keep["train_time_s"] + ft["train_time_s"],
                                peak_rss_mb=max(keep["peak_rss_mb"] or 0, ft["peak_rss_mb"] or 0),
                                finetune=ft)
                    per.setdefault("twostep_ft", []).append(
                        {"seed": seed, "model": os.path.relpath(kstep, REPO), "train": both, "eval": ev})
        for variant, rs in per.items():
            if not rs:
                continue
            entry[variant] = {"runs": rs, "aggregate": aggregate(rs)}
        result["rows"][row] = entry
        _write(out, result)  # after every row: partial results survive interruptions
    log(f"wrote {out}.json and {out}.md")
    return result


def three_step(row: str, spec: dict, seed: int, ca_model, runs: Path, data_root: Path, ref, args, log) -> dict:
    """Train the two per-system steps of a k = 3 row, compose them with the C-alpha model, evaluate."""
    from openmm_backmap.model import export_kstep

    run_dir = runs / row / f"threestep_s{seed}"
    models, summaries = [], []
    for tag, (base, over) in zip(("a", "b"), spec["threestep"]):
        over = dict(over, **(QUICK if args.quick else {}))
        if args.time_limit_min is not None and not args.quick:
            over["optim.time_limit_min"] = args.time_limit_min
        cfg = build_config(base, over, data_root, run_dir / tag, seed, args.threads, f"{row}-threestep-{tag}")
        summaries.append(train_one(cfg, run_dir / tag, args.reuse, args.threads, log))
        models.append(str(run_dir / tag / "model.pt"))
    kstep = str(run_dir / "kstep.pt")
    export_kstep(models + [str(ca_model)], kstep, force=True)  # checks that the middle level is one partition
    ev = evaluate_model(kstep, ref, seed, args.samples)
    log(f"  threestep seed {seed}: RMSD det {ev['det']['rmsd_angstrom']:.2f} Å, CA {ev['det']['ca_rmsd_angstrom']:.2f}"
        f" Å, bond ok {ev['det']['bond_ok_percent']:.1f} %")
    total = lambda key: sum(s.get(key) or 0 for s in summaries)  # noqa: E731
    keep = {"steps": [s.get("steps") for s in summaries], "train_time_s": total("train_time_s"),
            "wall_s": total("wall_s"), "peak_rss_mb": max(s.get("peak_rss_mb") or 0 for s in summaries),
            "best_metrics": summaries[-1].get("best_metrics"), "parts": summaries}
    return {"seed": seed, "model": os.path.relpath(kstep, REPO), "train": keep, "eval": ev}


def evaluate_files(args) -> dict:
    """``--evaluate``: :func:`evaluate_model` of each file on the eval frames of ``--system``, seed 0."""
    import torch

    torch.set_num_threads(args.threads)
    ref = eval_ensemble(args.system, Path(args.data).resolve(), args.eval_frames)
    result = {"system": args.system, "eval_frames": int(ref.n_frames), "samples": args.samples,
              "created": time.strftime("%Y-%m-%d %H:%M"), "threads": args.threads, "models": {}}
    for path in args.evaluate:
        result["models"][path] = evaluate_model(path, ref, seed=0, samples=args.samples)
        print(path, {k: round(v, 4) for k, v in result["models"][path]["det"].items()}, flush=True)
    if args.out:
        Path(f"{args.out}.json").write_text(json.dumps(result, indent=1, default=float))
    return result


def read_part(spec: str) -> dict:
    """A result file for :func:`merge_results`; ``PATH:onestep,twostep`` keeps only those models of its rows.
    Every model entry is stamped with the date of the run that measured it."""
    path, _, keep = spec.partition(":")
    part = json.loads(Path(path).read_text())
    wanted = [v for v in keep.split(",") if v] or list(VARIANTS)
    unknown = sorted(set(wanted) - set(VARIANTS))
    if unknown:
        raise ValueError(f"{spec}: unknown model(s) {unknown}; choose from {list(VARIANTS)}")
    for row, entry in part["rows"].items():
        for variant in VARIANTS:
            if variant in entry and variant not in wanted:
                del entry[variant]
            elif variant in entry:
                entry[variant].setdefault("measured", part["created"])
    return part


def merge_results(parts: list) -> dict:
    """Rows of several result dicts in one; the run-wide fields must agree (their first value is kept)."""
    if not parts:
        raise ValueError("nothing to merge")
    merged = dict(parts[0], rows={})
    for key in ("quick", "ca_model", "eval_frames", "samples"):
        values = {json.dumps(p.get(key)) for p in parts}
        if len(values) > 1:
            raise ValueError(f"cannot merge results that differ in {key!r}: {sorted(values)}")
    for p in parts:
        for row, entry in p["rows"].items():
            have = merged["rows"].setdefault(row, dict(entry))
            if have == entry:
                continue
            for variant in VARIANTS:  # the same row, other variants (--variants in separate processes)
                if variant in entry:
                    if variant in have:
                        raise ValueError(f"row {row!r}, model {variant!r} appears in more than one result")
                    have[variant] = entry[variant]
    merged["rows"] = {row: merged["rows"][row] for row in sorted(merged["rows"], key=lambda k: list(ROWS).index(k))}
    merged["seeds"] = sorted({s for p in parts for s in p["seeds"]})
    merged["created"] = max(p["created"] for p in parts)
    threads = sorted({p["threads"] for p in parts})
    merged["threads"] = threads[0] if len(threads) == 1 else threads
    return merged


def _write(out: Path, result: dict):
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(result, indent=1, default=float))
    Path(f"{out}.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
