"""Accuracy and speed of the C-alpha -> all-atom model against PULCHRA and FlowBack, in one run.

Usage::

    python benchmarks/ca2aa_accuracy.py --model models/ca2aa.pt --data ../shared/data \
        --out docs/benchmarks [--max-frames 10] [--samples 5] [--skip-pulchra] \
        [--baseline-model OLD.pt [--baseline-accuracy]] [--training-runs NAME=RUN_DIR ...]

For every eval set the same C-alpha inputs (``--max-frames`` evenly spaced
frames of each ensemble, every CASP target) go to our model (deterministic,
and ``--samples`` stochastic samples: best-of-n by RMSD and mean over the n)
and to PULCHRA (PyPI ``pulchra``, default settings, per chain segment);
``--baseline-accuracy`` also runs the baseline model (deterministic) on them.
FlowBack's CASP figures are read as given from
``eval/chains/casp/flowback_casp.json`` (FlowBack cannot be installed here).
All metrics are from :mod:`openmm_backmap.evaluation.metrics`, before any
minimisation. Writes ``ca2aa_accuracy.json`` and ``ca2aa_accuracy.md`` (with
the bars of issue 10, PASS/MISS) plus one Ramachandran plot per set and, with
``--training-runs``, the validation curves into ``--out``. ``--report-only``
re-renders an existing JSON (adding FlowBack and training runs) without a model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from openmm_backmap.model.backmapping import load_model
from openmm_backmap.structure.ensemble import ProteinEnsemble
from openmm_backmap.io import LoadWarning, load_ensemble
from openmm_backmap.structure.segments import torn_frames
from openmm_backmap.evaluation import (backbone_dihedrals_deg, bond_ok_failures, chi_dihedrals_deg, evaluate,
                                       kl_divergence, ramachandran_plot)
from openmm_backmap.structure import InputError, MissingFileError
from openmm_backmap.structure.templates import TEMPLATES

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the report helpers sit next to this script
from _ca2aa_report import (METRICS, VALIDATION_CURVE_PLOT, bars, load_flowback, markdown,  # noqa: E402
                           read_training_runs, validation_curve_plot)

FLOWBACK_FILE = "chains/casp/flowback_casp.json"
SPEED_100_RESIDUES = "idp/PED00153/PED00153e011.pdb.gz"  # its first model: the 100-residue speed case
SETS = {
    "casp": [("chains/casp/*.pdb.gz", None)],
    "trpcage": [("md/trpcage/trpcage_eval.dcd", "md/trpcage/trpcage.pdb")],
    "ntl9": [("md/ntl9/ntl9_eval.xtc", "md/ntl9/ntl9.pdb")],
    "lysozyme": [("md/lysozyme/1am7.xtc", "md/lysozyme/1am7.pdb")],
    "PED00151": [("idp/PED00151/PED00151.pdb.gz", None)],
    "PED00153_e011": [("idp/PED00153/PED00153e011.pdb.gz", None)],
    "2EQQ": [("nmr/2EQQ.pdb.gz", None)],
}


def load_set(root: Path, name: str, max_frames: int, sets=SETS):
    """The structures of eval set ``name`` of ``sets`` (set -> [(file glob, topology)]) as (name, ensemble)."""
    out = []
    for pattern, top in sets[name]:
        for path in sorted(root.glob(pattern)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LoadWarning)
                ens = load_ensemble(path, topology=root / top if top else None)
            keep = ens.ca_mask.all(1)
            ens = ens.select_frames(np.nonzero(keep)[0])
            if ens.n_frames > max_frames:
                ens = ens.select_frames(np.linspace(0, ens.n_frames - 1, max_frames).round().astype(int))
            # corrupt reference frames (a chain break only they have, e.g. 4 models of PED00153 e011) are
            # dropped after the even spacing, so the other frames (and cached PULCHRA results) stay the same
            torn = torn_frames(ens)
            if len(torn):
                print(f"{path.name}: dropped {len(torn)} corrupt frame(s) (torn chain)", flush=True)
                ens = ens.select_frames(np.setdiff1d(np.arange(ens.n_frames), torn))
            out.append((path.name.split(".")[0], ens))
    return out


def generated(ref: ProteinEnsemble, xyz: np.ndarray, source: str) -> ProteinEnsemble:
    return ProteinEnsemble.from_arrays(ref.sequence, xyz, segment_start=ref.segment_start, source=source)


def pulchra_frame(ens: ProteinEnsemble, frame: int) -> np.ndarray:
    """PULCHRA on one frame's C-alphas, segment by segment; canonical order, nm, NaN where missing."""
    from pulchra import Pulchra

    lay = ens.layout
    out = np.full((lay.n_atoms, 3), np.nan, dtype=np.float32)
    starts = list(np.nonzero(ens.segment_start)[0]) + [ens.n_residues]
    p = Pulchra()
    for a, b in zip(starts[:-1], starts[1:]):
        seq = "".join(TEMPLATES[s].one_letter for s in ens.sequence[a:b])
        if b - a < 3:
            out[lay.ca_index[a:b]] = ens.ca_xyz[frame, a:b]
            continue
        with warnings.catch_warnings(), open(os.devnull, "w") as devnull:
            warnings.simplefilter("ignore")
            stdout, sys.stdout = sys.stdout, devnull
            try:
                mol = p.reconstruct_coords(ens.ca_xyz[frame, a:b] * 10.0, seq)
            finally:
                sys.stdout = stdout
        for k, res in enumerate(mol.residues):
            r = a + k
            atoms = TEMPLATES[ens.sequence[r]].atoms
            for atom in res.atoms:
                name = atom.name.strip()
                if name in atoms:
                    out[lay.residue_start[r] + atoms.index(name)] = np.asarray(atom.coords) / 10.0
    return out


class PulchraCache:
    """PULCHRA outputs keyed by a hash of the exact C-alpha input, so a rerun of the benchmark
    (e.g. for a new model) reuses them; the inputs are the same by construction."""

    def __init__(self, path):
        self.path = Path(path) if path else None
        self.data = dict(np.load(self.path)) if self.path and self.path.exists() else {}

    @staticmethod
    def key(ens, frame):
        import hashlib

        h = hashlib.sha1(np.ascontiguousarray(ens.ca_xyz[frame]).tobytes())
        h.update("".join(ens.sequence).encode())
        h.update(ens.segment_start.tobytes())
        return h.hexdigest()

    def get(self, ens, frame):
        k = self.key(ens, frame)
        if k not in self.data:
            self.data[k] = pulchra_frame(ens, frame)
            if self.path:
                np.savez_compressed(self.path, **self.data)
        return self.data[k]


def summarize(results):
    """Mean over structures of the per-structure means."""
    return {m: float(np.nanmean([r[m]["mean"] for r in results])) for m in METRICS}


def best_of(result, samples):
    """Per reference frame, the metrics of the sample with the lowest RMSD."""
    rmsd = np.asarray(result["rmsd_angstrom"]["per_frame"]).reshape(-1, samples)
    pick = np.nanargmin(rmsd, axis=1) + np.arange(rmsd.shape[0]) * samples
    return {m: {"mean": float(np.nanmean(np.asarray(result[m]["per_frame"])[pick]))} for m in METRICS}


def angles(ens):
    phi, psi = backbone_dihedrals_deg(ens, ens.segment_start)
    return np.stack([phi.ravel(), psi.ravel()], 1), chi_dihedrals_deg(ens).reshape(-1, 4)


def pooled_kl(refs, gens):
    ra, rc = zip(*[angles(e) for e in refs])
    ga, gc = zip(*[angles(e) for e in gens])
    ra, ga, rc, gc = np.concatenate(ra), np.concatenate(ga), np.concatenate(rc), np.concatenate(gc)
    kl = {"ramachandran": kl_divergence(ra, ga)}
    for k in range(4):
        kl[f"chi{k + 1}"] = kl_divergence(rc[:, k], gc[:, k])
    return kl, ra, ga


def speeds(models, ens, batch, repeats, seed=0, beads=None, deterministic=False):
    """Frames/s of each model: the median over ``repeats`` timed calls, the models' calls interleaved so that
    a change in the machine's load (a shared CPU) hits the model and its baseline alike. ``beads``: each model's
    input frame, (N, 3) nm (default: the first frame's C-alphas for every model)."""
    beads = [ens.ca_xyz[0]] * len(models) if beads is None else beads
    xs = [np.repeat(np.asarray(b)[None], batch, axis=0) for b in beads]
    for bm, x in zip(models, xs):
        for i in range(3):  # warm-up (TorchScript optimises a graph over its first calls)
            bm.backmap(x, sequence=ens.sequence, segment_start=ens.segment_start, seed=seed + i,
                       deterministic=deterministic)
    seconds = np.zeros((repeats, len(models)))
    for i in range(repeats):
        for k, (bm, x) in enumerate(zip(models, xs)):
            t0 = time.perf_counter()
            bm.backmap(x, sequence=ens.sequence, segment_start=ens.segment_start, seed=seed + i,
                       deterministic=deterministic)
            seconds[i, k] = time.perf_counter() - t0
    return batch / np.median(seconds, axis=0)


def measure_speed(bm, base, root: Path, args) -> dict:
    """Frames/s at 100 residues (a PED00153 model) and 214 (adenylate kinase), batch 1 and 64, vs PULCHRA
    and vs the baseline model ``base`` (None: no baseline)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoadWarning)
        cases = {"100_residues": load_ensemble(root / SPEED_100_RESIDUES, frames=slice(0, 1)),
                 "adk_214_residues": load_ensemble(root / "md/adk/adk.pdb")}
    out = {}
    for label, ens in cases.items():
        models = [bm] if base is None else [bm, base]
        s = {}
        for batch, repeats in ((1, 20), (64, 5)):
            fps = speeds(models, ens, batch, repeats)
            s[f"batch_{batch}_frames_per_s"] = float(fps[0])
            if base is not None:
                s[f"baseline_batch_{batch}_frames_per_s"] = float(fps[1])
        if not args.skip_pulchra:
            t0 = time.perf_counter()
            pulchra_frame(ens, 0)
            s["pulchra_frames_per_s"] = 1.0 / (time.perf_counter() - t0)
            s["ratio_batch_64_vs_pulchra"] = s["batch_64_frames_per_s"] / s["pulchra_frames_per_s"]
        out[label] = s
        print(label, {k: round(v, 2) for k, v in s.items()}, flush=True)
    if base is not None:
        out["baseline_model"] = args.baseline_model
    return out


def run_set(name, bm, base, cache, root: Path, out: Path, args) -> dict:
    """Every structure of one eval set through our model, the baseline (``--baseline-accuracy``) and PULCHRA."""
    t0 = time.time()
    rows = {"deterministic": [], f"best_of_{args.samples}": [], f"mean_of_{args.samples}": [], "pulchra": [],
            "baseline_deterministic": []}
    refs, gen_det, gen_pul, gen_sto = [], [], [], []
    per_structure = []
    for sname, ref in load_set(root, name, args.max_frames):
        det = bm.backmap(ref.ca_xyz, sequence=ref.sequence, segment_start=ref.segment_start, deterministic=True)
        sto = bm.backmap(ref.ca_xyz, sequence=ref.sequence, segment_start=ref.segment_start,
                         samples=args.samples, seed=1)
        g_det = generated(ref, det.xyz, "model-deterministic")
        r_det = evaluate(ref, g_det, name=sname)
        g_sto = generated(ref, sto.xyz, "model-samples")
        r_sto = evaluate(ref, g_sto, name=sname)
        rows["deterministic"].append(r_det)
        rows[f"mean_of_{args.samples}"].append(r_sto)
        rows[f"best_of_{args.samples}"].append(best_of(r_sto, args.samples))
        refs.append(ref)
        gen_det.append(g_det)
        gen_sto.append((ref, g_sto))
        entry = {"name": sname, "residues": ref.n_residues, "frames": ref.n_frames,
                 "deterministic": {m: r_det[m]["mean"] for m in METRICS}}
        if ref.n_frames == 1:  # single structures (CASP): which bonds bond_ok fails, and which are the reference's
            entry["bond_ok_failures"] = bond_ok_failures(ref.sequence, ref.xyz[0], det.xyz[0], ref.segment_start)
        if base is not None and args.baseline_accuracy:
            old = base.backmap(ref.ca_xyz, sequence=ref.sequence, segment_start=ref.segment_start,
                               deterministic=True)
            r_old = evaluate(ref, generated(ref, old.xyz, "baseline-deterministic"), name=sname)
            rows["baseline_deterministic"].append(r_old)
            entry["baseline"] = {m: r_old[m]["mean"] for m in METRICS}
        if not args.skip_pulchra:
            xyz = np.stack([cache.get(ref, f) for f in range(ref.n_frames)])
            g_pul = generated(ref, xyz, "pulchra")
            r_pul = evaluate(ref, g_pul, name=sname)
            rows["pulchra"].append(r_pul)
            gen_pul.append(g_pul)
            entry["pulchra"] = {m: r_pul[m]["mean"] for m in METRICS}
        per_structure.append(entry)
        print(f"{name}/{sname}: det rmsd {r_det['rmsd_angstrom']['mean']:.2f} Å"
              + (f", baseline {entry['baseline']['rmsd_angstrom']:.2f} Å" if "baseline" in entry else "")
              + (f", pulchra {entry['pulchra']['rmsd_angstrom']:.2f} Å" if "pulchra" in entry else ""),
              flush=True)
    kl_det, ra, ga = pooled_kl(refs, gen_det)
    ramachandran_plot(ra, ga, out / "plots" / f"ca2aa_{name}_ramachandran.png",
                      title=f"{name}: reference vs openmm-backmap (deterministic)", kl=kl_det["ramachandran"])
    # samples: compare with the reference frames repeated once per sample
    kl_sto = pooled_kl([r.select_frames(np.repeat(np.arange(r.n_frames), args.samples)) for r, _ in gen_sto],
                       [g for _, g in gen_sto])[0]
    entry = {"structures": per_structure, "kl_deterministic": kl_det, "kl_samples": kl_sto,
             "summary": {k: summarize(v) for k, v in rows.items() if v}, "seconds": round(time.time() - t0, 1)}
    if gen_pul:
        entry["kl_pulchra"] = pooled_kl(refs, gen_pul)[0]
    return entry


def write_report(report, out: Path, flowback, training) -> None:
    """Add FlowBack's figures (when CASP is in the report), the training runs and the bars; write JSON + Markdown."""
    if flowback is not None and "casp" in report["sets"]:
        report["flowback"] = flowback
    if training:
        report["training"] = training
        plot = validation_curve_plot(training, out / VALIDATION_CURVE_PLOT)
        report["training_plot"] = VALIDATION_CURVE_PLOT if plot else None
        if plot is None:
            print("matplotlib not installed: no validation curve plot", flush=True)
    report["bars"] = bars(report)
    (out / "ca2aa_accuracy.json").write_text(json.dumps(report, indent=1, default=float))
    (out / "ca2aa_accuracy.md").write_text(markdown(report))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="models/ca2aa.pt")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--out", default="docs/benchmarks")
    p.add_argument("--max-frames", type=int, default=10, help="frames per ensemble (evenly spaced)")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--skip-pulchra", action="store_true")
    p.add_argument("--speed-only", action="store_true",
                   help="only measure speed; update the speed section of an existing ca2aa_accuracy.json")
    p.add_argument("--report-only", action="store_true",
                   help="run no model: re-render an existing ca2aa_accuracy.json (bars, FlowBack, --training-runs)")
    p.add_argument("--baseline-model", default=None,
                   help="also time this model (e.g. an older export) in the same run, for a speed ratio")
    p.add_argument("--baseline-accuracy", action="store_true",
                   help="also run --baseline-model (deterministic) on every input, for old-vs-new accuracy")
    p.add_argument("--training-runs", nargs="+", default=(), metavar="NAME=RUN_DIR",
                   help="training run directories (log.csv, summary.json) for the validation curve and ablation")
    p.add_argument("--device", default=None)
    p.add_argument("--pulchra-cache", default=None, help="npz file caching PULCHRA outputs per C-alpha input")
    p.add_argument("--pulchra-only", action="store_true", help="only fill the PULCHRA cache")
    args = p.parse_args(argv)
    if args.baseline_accuracy and not args.baseline_model:
        p.error("--baseline-accuracy needs --baseline-model")
    unknown = sorted(set(args.sets.split(",")) - set(SETS))
    if unknown:
        p.error(f"unknown set(s) {', '.join(unknown)}; known: {', '.join(SETS)}")
    root = Path(args.data) / "eval"
    out = Path(args.out)
    cache = PulchraCache(args.pulchra_cache)
    if args.pulchra_only:
        for name in args.sets.split(","):
            for sname, ref in load_set(root, name, args.max_frames):
                t0 = time.time()
                for f in range(ref.n_frames):
                    cache.get(ref, f)
                print(f"pulchra {name}/{sname}: {ref.n_frames} frames, {time.time() - t0:.0f} s", flush=True)
        return
    try:  # user mistakes (a missing run directory or data file) fail here, before any model runs
        training = read_training_runs(args.training_runs)
        flowback = load_flowback(root / FLOWBACK_FILE)
    except (InputError, MissingFileError) as e:
        p.error(str(e))
    (out / "plots").mkdir(parents=True, exist_ok=True)
    if args.report_only or args.speed_only:
        report = json.loads((out / "ca2aa_accuracy.json").read_text())
        if args.speed_only:
            bm = load_model(args.model, device=args.device)
            base = load_model(args.baseline_model, device=args.device) if args.baseline_model else None
            report["speed"] = measure_speed(bm, base, root, args)
            report["speed_threads"] = torch.get_num_threads()
            report["speed_date"] = time.strftime("%Y-%m-%d %H:%M")
        write_report(report, out, flowback, training)
        print(markdown(report))
        return
    bm = load_model(args.model, device=args.device)
    base = load_model(args.baseline_model, device=args.device) if args.baseline_model else None
    report = {"model": os.path.basename(args.model), "model_training": bm.metadata.get("training", {}),
              "device": str(bm.device), "threads": torch.get_num_threads(), "machine": platform.machine(),
              "max_frames": args.max_frames, "samples": args.samples, "eval_sets": list(SETS), "sets": {}}
    if base is not None and args.baseline_accuracy:
        report["baseline_model"] = args.baseline_model
    for name in args.sets.split(","):
        report["sets"][name] = run_set(name, bm, base, cache, root, out, args)
    report["speed"] = measure_speed(bm, base, root, args)
    write_report(report, out, flowback, training)
    print(markdown(report))


if __name__ == "__main__":
    main()
