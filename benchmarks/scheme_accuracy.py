"""The bars of issue 11: the centre-of-mass and Martini 3 models on the CASP targets, scheme detection and speed.

Usage::

    python benchmarks/scheme_accuracy.py [--ca-model models/ca2aa.pt] [--com-model models/com2aa.pt] \
        [--martini3-model models/martini3.pt] [--shared ../shared/data] [--out docs/benchmarks] \
        [--cache runs/martini_cache] [--martinize-args=-dssp] [--targets TBM_T0872,...] [--detect-frames 20] \
        [--speed-repeats 5] [--threads 2] [--device cpu] [--report-only]

- **Centre of mass:** the 24 CASP targets' residue centres of mass
  (``mapping.scheme_mapping('com', seq)``) go to the centre-of-mass model, and, as reference rows, to the
  C-alpha model (what users got before); the C-alpha model also gets the true C-alphas.
- **Martini 3:** martinize2 (PyPI ``vermouth``, not the package's mapping) coarse-grains each target
  (``martinize2 -f TARGET.pdb -x cg.pdb -o topol.top -ff martini3001 -dssp``; the raw file first, the target
  written through the package's loader and mdtraj's writer if martinize2 refuses it); its beads, in its order,
  go to the Martini 3 model. Its outputs are cached in ``--cache`` and reused.
- **Detection:** ``mapping.detect_scheme`` on the C-alpha and centre-of-mass versions of the CASP targets and
  of the frames of the ``eval/`` ensembles, and on martinize2's beads (by their names).
- **Speed:** frames/s at 100 residues, batch 64, deterministic, ``--threads`` threads, every model in one run.

Accuracy is of the deterministic output before minimisation, with the metrics of
:mod:`openmm_backmap.evaluation` (those of ``ca2aa_accuracy.py``). A model given as ``none`` is left out
(its bars read n/a). Writes ``scheme_accuracy.json`` and ``scheme_accuracy.md`` into ``--out``;
``--report-only`` re-renders the Markdown from the JSON without a model.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import shlex
import shutil
import subprocess
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import mdtraj as md
import numpy as np
import torch

from openmm_backmap.evaluation import bond_ok_failures, evaluate
from openmm_backmap.io import LoadWarning, load_ensemble
from openmm_backmap.mapping import bead_residues, consecutive_deviation, detect_scheme, scheme_mapping
from openmm_backmap.model import load_model
from openmm_backmap.structure import ANGSTROM_PER_NM, canonical_residue_name

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the C-alpha benchmark's helpers sit next to this script
from _ca2aa_report import METRICS  # noqa: E402
from _scheme_report import markdown, scheme_bars  # noqa: E402
from ca2aa_accuracy import SETS, SPEED_100_RESIDUES, generated, load_set, speeds  # noqa: E402

MODELS = {"ca": "models/ca2aa.pt", "com": "models/com2aa.pt", "martini3": "models/martini3.pt"}
#: the eval/ ensembles whose frames detection sees (the C-alpha benchmark's sets, and adenylate kinase)
DETECT_SETS = {**{k: v for k, v in SETS.items() if k != "casp"}, "adk": [("md/adk/adk_dims2.xtc", "md/adk/adk.pdb")]}
MARTINIZE = ["martinize2", "-f", "{input}", "-x", "cg.pdb", "-o", "topol.top", "-ff", "martini3001"]
SPEED_BATCH = 64
#: the facts of a model's training metadata the report keeps (not its file list)
TRAINING_FACTS = ("steps", "stop_reason", "train_time_s", "best_step", "best_metrics")


def deterministic_metrics(bm, ref, beads, label):
    """The evaluation metrics (means over frames) of ``bm``'s deterministic output from ``beads`` (F, N, 3) nm,
    and the bonds that ``bond_ok`` fails in the first frame (:func:`~openmm_backmap.evaluation.bond_ok_failures`)."""
    out = bm.backmap(beads, sequence=ref.sequence, segment_start=ref.segment_start, deterministic=True)
    r = evaluate(ref, generated(ref, out.xyz, label), name=label)
    return {**{m: r[m]["mean"] for m in METRICS},
            "bond_ok_failures": bond_ok_failures(ref.sequence, ref.xyz[0], out.xyz[0], ref.segment_start)}


def com_beads(ens):
    return scheme_mapping("com", ens.sequence).apply_present(ens.xyz, ens.mask)


def run_com(models, targets) -> dict:
    """Per CASP target: the centre-of-mass model on centre-of-mass beads; the C-alpha model on them and on C-alphas."""
    rows = []
    for name, ref in targets:
        com = com_beads(ref)
        row = {"name": name, "residues": ref.n_residues}
        if models.get("com") is not None:
            row["com_model"] = deterministic_metrics(models["com"], ref, com, "com-model")
        if models.get("ca") is not None:
            row["ca_model_on_com"] = deterministic_metrics(models["ca"], ref, com, "ca-model-on-com")
            row["ca_model_on_ca"] = deterministic_metrics(models["ca"], ref, ref.ca_xyz, "ca-model-on-ca")
        rows.append(row)
        print(f"com/{name}: " + ", ".join(f"{k} {v['rmsd_angstrom']:.2f} Å" for k, v in row.items()
                                          if isinstance(v, dict)), flush=True)
    return {"targets": rows}


def martinize(name, source: Path, ens, cache: Path, extra) -> dict:
    """martinize2 on one target, cached in ``cache/name``: the raw file first, the package-written one if refused.

    Returns ``{"cg": path, "input": "raw" | "package-written", "command", "refused_raw"}`` or, where martinize2
    refuses both, ``{"error": ...}``."""
    folder = cache / name
    info_path = folder / "info.json"
    command = [*MARTINIZE, *extra]
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("template") == command and (folder / "cg.pdb").is_file():  # a refusal is tried again
            return {**info, "cg": str(folder / "cg.pdb"), "cached": True}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cg.pdb").unlink(missing_ok=True)
    raw = folder / "raw.pdb"
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rb") as fh:
        raw.write_bytes(fh.read())
    info = {"template": command}
    t0 = time.time()
    for kind, path in (("raw", raw), ("package-written", folder / "clean.pdb")):
        if kind == "package-written":
            ens.to_mdtraj().save_pdb(str(path))
        argv = [a.replace("{input}", path.name) for a in command]
        proc = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=600)
        if proc.returncode == 0 and (folder / "cg.pdb").is_file():
            info.update(input=kind, command=shlex.join(argv), seconds=round(time.time() - t0, 1))
            break
        info[f"refused_{kind}"] = " | ".join(line.strip() for line in proc.stderr.splitlines()
                                             if "ERROR" in line or "WARNING" in line)[-600:]
    else:
        info["error"] = f"martinize2 refused the raw and the package-written file: {info['refused_package-written']}"
    info_path.write_text(json.dumps(info, indent=1))
    return {**info, "cg": str(folder / "cg.pdb"), "cached": False}


def read_martini(path):
    """martinize2's beads in its order: names, residue names, residue indices, positions (N, 3) nm."""
    t = md.load(str(path), standard_names=False)
    atoms = list(t.topology.atoms)
    return ([a.name for a in atoms], [a.residue.name for a in atoms], [a.residue.index for a in atoms], t.xyz[0])


def run_martini3(model, targets, root: Path, cache: Path, extra) -> dict:
    """Per CASP target: martinize2's beads, their distance from the package's mapping, and the model's accuracy."""
    rows = []
    for name, ref in targets:
        source = next((root / "chains" / "casp").glob(f"{name}.pdb*"))
        run = martinize(name, source, ref, cache, extra)
        row = {"name": name, "residues": ref.n_residues, "martinize2_input": run.get("input"),
               "martinize2_command": run.get("command")}
        if run.get("refused_raw"):
            row["martinize2_refused_raw"] = run["refused_raw"]
        if "error" in run:
            rows.append({**row, "error": run["error"]})
            print(f"martini3/{name}: {run['error']}", flush=True)
            continue
        names, resnames, resindex, xyz = read_martini(run["cg"])
        mapping = scheme_mapping("martini3", ref.sequence)
        ours_res = [ref.sequence[r] for r in bead_residues(mapping)]
        if names != mapping.bead_names or [canonical_residue_name(r) for r in resnames] != ours_res:
            first = next((i for i, (a, b) in enumerate(zip(names, mapping.bead_names)) if a != b),
                         min(len(names), len(mapping.bead_names)))
            rows.append({**row, "beads": len(names), "error": (
                f"martinize2 wrote {len(names)} beads, the package's mapping has {mapping.n_beads}; first "
                f"difference at bead {first}")})
            print(f"martini3/{name}: {rows[-1]['error']}", flush=True)
            continue
        gap = np.linalg.norm(xyz - mapping.apply_present(ref.xyz, ref.mask)[0], axis=1)
        row.update(beads=len(names), max_deviation_from_package_nm=float(gap.max()),
                   detected=detect_scheme(names, xyz, resnames, resindex)._asdict())
        if model is not None:
            row["martini3_model"] = deterministic_metrics(model, ref, xyz[None], "martini3-model")
        rows.append(row)
        print(f"martini3/{name}: {row['martinize2_input']} input, max deviation {gap.max():.4f} nm"
              + (f", rmsd {row['martini3_model']['rmsd_angstrom']:.2f} Å" if model is not None else ""), flush=True)
    return {"targets": rows, "martinize2_version": version("vermouth"),
            "martinize2_template": shlex.join([a.replace("{input}", "TARGET.pdb") for a in [*MARTINIZE, *extra]])}


def _detection_row(label, kind, structures) -> dict:
    """Detect the scheme of every frame of one-bead-per-residue positions; ``structures``: [(name, (F, N, 3) nm,
    segment_start)], all of scheme ``kind``."""
    errors, unsure, meds = [], 0, []
    for name, frames, segment_start in structures:
        for f, x in enumerate(frames):
            guess = detect_scheme(["CA"] * x.shape[0], x, segment_start=segment_start)
            meds.append(consecutive_deviation(x, segment_start)[0] * ANGSTROM_PER_NM)
            if guess.scheme != kind:
                errors.append(f"{name} frame {f}: {guess.scheme} ({guess.evidence})")
            elif not guess.certain:
                unsure += 1
    print(f"detect {label}/{kind}: {len(errors)} errors in {len(meds)}", flush=True)
    return {"set": label, "kind": kind, "structures": len(structures), "checks": len(meds), "errors": len(errors),
            "unsure": unsure, "error_examples": errors[:3],
            "median_deviation_angstrom": [float(np.min(meds)), float(np.max(meds))]}


def run_detection(targets, root: Path, detect_frames: int, martini_rows) -> dict:
    """Detection on the C-alpha and centre-of-mass beads of the CASP targets and of ``detect_frames`` frames of each
    eval ensemble, and on martinize2's beads (by name); one row per (set, kind)."""
    rows = []
    sets = [("casp", targets)] + [(name, load_set(root, name, detect_frames, sets=DETECT_SETS)) for name in DETECT_SETS]
    for label, structures in sets:
        rows.append(_detection_row(label, "ca", [(n, e.ca_xyz, e.segment_start) for n, e in structures]))
        rows.append(_detection_row(label, "com", [(n, com_beads(e), e.segment_start) for n, e in structures]))
    got = [r for r in martini_rows if "detected" in r]
    if got:
        bad = [f"{r['name']}: {r['detected']['scheme']} ({r['detected']['evidence']})" for r in got
               if r["detected"]["scheme"] != "martini3"]
        rows.append({"set": "casp (martinize2 output)", "kind": "martini3", "structures": len(got),
                     "checks": len(got), "errors": len(bad), "unsure": sum(not r["detected"]["certain"] for r in got),
                     "error_examples": bad[:3], "median_deviation_angstrom": None})
    return {"rows": rows, "detect_frames": detect_frames}


def run_speed(models, root: Path, repeats: int) -> dict:
    """Frames/s of every model at 100 residues, batch 64, deterministic, interleaved in one run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoadWarning)
        ens = load_ensemble(root / SPEED_100_RESIDUES, frames=slice(0, 1))
    names = [k for k, bm in models.items() if bm is not None]
    beads = [scheme_mapping(models[k].scheme, ens.sequence).apply_present(ens.xyz, ens.mask)[0] for k in names]
    fps = speeds([models[k] for k in names], ens, SPEED_BATCH, repeats, beads=beads, deterministic=True)
    out = {"system": f"{Path(SPEED_100_RESIDUES).name} model 1", "residues": ens.n_residues, "batch": SPEED_BATCH,
           "repeats": repeats, "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M"),
           "frames_per_s": {k: float(v) for k, v in zip(names, fps)}}
    print("speed (frames/s):", {k: round(v, 1) for k, v in out["frames_per_s"].items()}, flush=True)
    return out


def _model_info(path, bm):
    return {"path": path, "name": bm.metadata.get("name"), "scheme": bm.scheme, "kind": bm.kind,
            "training": {k: v for k, v in bm.metadata.get("training", {}).items() if k in TRAINING_FACTS}}


def write_report(report, out: Path) -> None:
    report["bars"] = scheme_bars(report)
    (out / "scheme_accuracy.json").write_text(json.dumps(report, indent=1, default=float))
    (out / "scheme_accuracy.md").write_text(markdown(report))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for scheme, default in MODELS.items():
        p.add_argument(f"--{scheme}-model", default=default, help=f"model file, or 'none' (default {default})")
    p.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"),
                   help="the shared data folder (holds eval/)")
    p.add_argument("--out", default="docs/benchmarks")
    p.add_argument("--cache", default="runs/martini_cache", help="martinize2 outputs per target, reused")
    p.add_argument("--martinize-args", default="-dssp",
                   help="extra martinize2 arguments (default -dssp: secondary structure from mdtraj's DSSP; "
                        "martinize2 refuses to run without secondary structure unless told -ss or -maxwarn)")
    p.add_argument("--targets", default=None, help="comma-separated CASP target names (default: all 24)")
    p.add_argument("--detect-frames", type=int, default=20, help="evenly spaced frames per ensemble for detection")
    p.add_argument("--speed-repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--report-only", action="store_true", help="run no model: re-render scheme_accuracy.json")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.report_only:
        report = json.loads((out / "scheme_accuracy.json").read_text())
        write_report(report, out)
        print(markdown(report))
        return
    torch.set_num_threads(args.threads)
    root = Path(args.shared) / "eval"
    if not (root / "chains" / "casp").is_dir():
        p.error(f"no CASP targets under {root / 'chains' / 'casp'}; give the shared data folder with --shared")
    paths = {s: getattr(args, f"{s}_model") for s in MODELS}
    missing = [f for f in paths.values() if f != "none" and not Path(f).is_file()]
    if missing:
        p.error(f"no model file {', '.join(missing)} (give another path, or 'none' to leave that model out)")
    models = {s: None if f == "none" else load_model(f, device=args.device) for s, f in paths.items()}
    for s, bm in models.items():
        if bm is not None and bm.scheme != s:
            p.error(f"--{s}-model {paths[s]} takes {bm.scheme!r} beads, not {s!r}")
    extra = shlex.split(args.martinize_args)
    has_martinize2 = shutil.which("martinize2") is not None
    if models["martini3"] is not None and not has_martinize2:
        p.error("martinize2 is not on the PATH: pip install vermouth (or --martini3-model none)")
    targets = load_set(root, "casp", 1)
    n_casp = len(targets)
    if args.targets:
        want = args.targets.split(",")
        unknown = sorted(set(want) - {n for n, _ in targets})
        if unknown:
            p.error(f"unknown CASP target(s) {', '.join(unknown)}")
        targets = [(n, e) for n, e in targets if n in want]
    out.mkdir(parents=True, exist_ok=True)
    report = {"command": shlex.join(["python", "benchmarks/scheme_accuracy.py", *argv]),
              "models": {s: _model_info(paths[s], bm) for s, bm in models.items() if bm is not None},
              "device": args.device, "threads": torch.get_num_threads(), "machine": platform.machine(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "casp_targets_total": n_casp, "casp_targets_run": len(targets)}
    report["com"] = run_com(models, targets)
    if has_martinize2:  # without the Martini model, martinize2's beads still go to detection
        report["martini3"] = run_martini3(models["martini3"], targets, root, Path(args.cache), extra)
    martini_rows = report.get("martini3", {}).get("targets", [])
    report["detection"] = run_detection(targets, root, args.detect_frames, martini_rows)
    report["speed"] = run_speed(models, root, args.speed_repeats)
    write_report(report, out)
    print(markdown(report))


if __name__ == "__main__":
    main()
