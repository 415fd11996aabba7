"""Issue 21's bars on the real engines' runs: the reporter on martini_openmm, CALVADOS 3 and OpenABC simulations.

The runs come from ``benchmarks/clients/*_run.py`` (each attaches ``BackmapReporter(model=None,
deterministic=True)`` to a Simulation the engine built, and converts the engine's own CG file of the first
reported frame with the CLI). This script reads their output folders and reports, per run:

- chains written against the engine's molecules;
- bond_ok and clash on **every** frame the reporter wrote (the pipeline's reference-free checks);
- frame 0: heavy-atom RMSD between the reporter's structure and ``convert``'s (same frame, the file rounds beads
  to 0.001 nm), and, where the crystal is known, heavy-atom RMSD to it after superposing the C-alphas;
- for the condensate (CALVADOS slab): bonds across chains, per-chain bond_ok and clash, frames/s, and the peak
  memory of ``convert`` on the engine's DCD against the memory budget, measured in a child process.

    python benchmarks/real_clients.py --runs /work/clients/runs/worktree --shared ../shared/data \\
        --ubiquitin .../vermouth/tests/data/1UBQ.pdb --out docs/benchmarks/real_clients
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import mdtraj as md
import numpy as np

from openmm_backmap.evaluation import frame_quality
from openmm_backmap.io import load_ensemble
from openmm_backmap.run.relax.systems import reference_bond_lengths
from openmm_backmap.structure import ANGSTROM_PER_NM

#: run folder -> (crystal: 'ubiquitin' or a CASP target name, or None; the molecules the engine simulates)
RUNS = {"martini_openmm_T0862": ("FM_T0862", 2), "martini_openmm_1UBQ": ("ubiquitin", 1),
        "calvados_ubq": ("ubiquitin", 1), "openabc_histatin5": (None, 3), "calvados_slab": (None, 50)}
BARS = {"bond_ok_percent": 99.9, "clash_percent": 0.5, "rmsd_reporter_vs_convert_angstrom": 0.1,
        "rmsd_ubiquitin_angstrom": 1.5}

_PEAK_MEMORY = r"""
import json, resource, sys, warnings
warnings.simplefilter("ignore")
from openmm_backmap.model import load_model, shipped_model_path
from openmm_backmap.run import convert_trajectory
load_model(shipped_model_path("ca"), device="cpu")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
s = convert_trajectory(sys.argv[1], sys.argv[3], topology=sys.argv[2], deterministic=True, seed=0, device="cpu",
                       progress=False, force=True)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"baseline_rss_mb": base, "peak_rss_mb": peak, "summary": s}))
"""


def quality_per_frame(ens):
    seq, seg = ens.sequence, ens.segment_start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r0 = reference_bond_lengths(seq, seg, ens.xyz[0])
    clash, ok = frame_quality(ens.xyz, seq, seg, r0)
    return clash, ok


def rmsd_angstrom(a, b, mask):
    d = np.linalg.norm(a[mask] - b[mask], axis=1)
    return float(np.sqrt(np.mean(d ** 2)) * ANGSTROM_PER_NM)


def superposed_rmsd(gen, ref):
    """Heavy-atom RMSD (Å) of gen frame 0 to ref frame 0 after superposing the C-alphas (same sequence)."""
    ca = gen.layout.ca_index
    mask = gen.mask[0] & ref.mask[0]
    a, b = gen.xyz[0].astype(np.float64), ref.xyz[0].astype(np.float64)
    pa, pb = a[ca], b[ca]
    ca_ok = np.isfinite(pa).all(1) & np.isfinite(pb).all(1)
    ma, mb = pa[ca_ok].mean(0), pb[ca_ok].mean(0)
    u, _, vt = np.linalg.svd((pa[ca_ok] - ma).T @ (pb[ca_ok] - mb))
    dfix = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, 1.0, dfix]) @ vt
    return rmsd_angstrom((a - ma) @ rot + mb, b, mask)


def chainwise_rmsd(a, b, ens, mask):
    """Heavy-atom RMSD (Å) of two copies of one frame after removing each segment's translation (two outputs of the
    same periodic frame may put a molecule in another image), the largest atom deviation (Å) and its atom."""
    lay = ens.layout
    seg_of_res = np.cumsum(ens.segment_start) - 1
    owner = seg_of_res[lay.atom_residue]
    d2, worst, where = [], 0.0, None
    for c in np.unique(owner):
        m = (owner == c) & mask
        shift = (b[m] - a[m]).mean(0)
        dev = np.linalg.norm(a[m] + shift - b[m], axis=1)
        d2.append(dev ** 2)
        if dev.max() > worst:
            k = np.flatnonzero(m)[int(dev.argmax())]
            r = lay.atom_residue[k]
            worst, where = float(dev.max()), f"{ens.sequence[r]} {r + 1} {lay.atom_names[k]}"
    return float(np.sqrt(np.concatenate(d2).mean()) * ANGSTROM_PER_NM), worst * ANGSTROM_PER_NM, where


def analyse(folder: Path, crystal, molecules, shared: Path, ubiquitin: Path, memory: bool):
    res = json.loads((folder / "result.json").read_text())
    s = res["reporter_summary"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = load_ensemble(folder / "backmapped.pdb")
    clash, ok = quality_per_frame(rep)
    top = md.load_topology(str(folder / "backmapped.pdb"))
    cross = sum(b[0].residue.chain.index != b[1].residue.chain.index for b in top.bonds)
    row = {"run": folder.name, "engine_chains": res["engine_topology"]["chains"], "molecules": molecules,
           "chains_written": top.n_chains,
           "segments": s["segments"], "break_evidence": s["break_evidence"], "frames": int(rep.n_frames),
           "bonds_across_chains": int(cross), "min_bond_ok_percent": float(np.nanmin(ok)),
           "max_clash_percent": float(np.nanmax(clash)), "mean_clash_percent": float(np.nanmean(clash)),
           "frames_per_second": s["frames_per_second"], "seconds": s["seconds"]}
    converted = folder / "converted.pdb"
    if converted.is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conv = load_ensemble(converted)
        if conv.sequence == rep.sequence:
            rms, worst, atom = chainwise_rmsd(rep.xyz[0], conv.xyz[0], rep, rep.mask[0] & conv.mask[0])
            row["rmsd_reporter_vs_convert_angstrom"], row["max_deviation_reporter_vs_convert_angstrom"] = rms, worst
            row["max_deviation_atom"] = atom
        key = next((k for k in ("convert_cg_frame0", "convert_engine_dcd", "convert_frame0_pdb") if k in res), None)
        if key:
            row["convert_command"] = res[key].get("command")
            row["convert_chains"] = res[key].get("written", {}).get("mdtraj_chains")
    if crystal is not None:
        path = ubiquitin if crystal == "ubiquitin" else next((shared / "eval" / "chains" / "casp").glob(f"{crystal}.pdb*"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = load_ensemble(path)
        if ref.sequence == rep.sequence:
            row["rmsd_crystal_angstrom"] = superposed_rmsd(rep, ref)
        else:
            row["rmsd_crystal_note"] = f"sequence differs from {path.name} ({ref.n_residues} vs {rep.n_residues})"
    if top.n_chains > 1:  # per chain: its own bonds and clashes (contacts with other chains left out)
        lay = rep.layout
        starts = np.r_[np.flatnonzero(np.diff([r.chain.index for r in top.residues])) + 1, rep.n_residues]
        per = []
        for r0, r1 in zip(np.r_[0, starts[:-1]], starts):
            a0, a1 = lay.residue_start[r0], lay.residue_start[r1]
            sub = type(rep).from_arrays(rep.sequence[r0:r1], rep.xyz[:, a0:a1], rep.mask[:, a0:a1],
                                        rep.segment_start[r0:r1])
            per.append(quality_per_frame(sub))
        row["per_chain"] = {"chains": len(per), "min_bond_ok_percent": float(min(np.nanmin(o) for _, o in per)),
                            "max_clash_percent": float(max(np.nanmax(c) for c, _ in per)),
                            "mean_clash_percent": float(np.mean([np.nanmean(c) for c, _ in per]))}
    if memory and (folder / "slab.dcd").is_file():
        out = folder / "memory_convert.pdb"
        proc = subprocess.run([sys.executable, "-c", _PEAK_MEMORY, str(folder / "slab.dcd"), str(folder / "top.pdb"),
                               str(out)], capture_output=True, text=True, check=True)
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        row["memory"] = {"baseline_rss_mb": m["baseline_rss_mb"], "peak_rss_mb": m["peak_rss_mb"],
                         "growth_mb": m["peak_rss_mb"] - m["baseline_rss_mb"],
                         "budget_mb": m["summary"]["max_memory_mb"], "batch_frames": m["summary"]["batch_frames"],
                         "frames_per_second": m["summary"]["frames_per_second"], "seconds": m["summary"]["seconds"]}
    return row


def markdown(result):
    lines = ["# Real CG engines with `BackmapReporter(model=None)`", "",
             f"{result['date']}, `{result['command']}`. Runs made by `benchmarks/clients/*_run.py` (engines at the "
             "commits in benchmarks/clients/README.md), deterministic output before minimisation, shipped models, "
             "one CPU thread. bond_ok and clash: every frame the reporter wrote, the pipeline's reference-free checks.",
             "", "| run | molecules (topology chains) | chains written (evidence) | frames | min bond_ok % | max clash % | RMSD reporter "
             "vs convert, frame 0 (Å; largest atom deviation) | RMSD to crystal, frame 0, C-alpha superposed (Å) | frames/s (busy) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        rc = r.get("rmsd_reporter_vs_convert_angstrom")
        cr = r.get("rmsd_crystal_angstrom")
        worst, atom = r.get("max_deviation_reporter_vs_convert_angstrom"), r.get("max_deviation_atom")
        lines.append(f"| {r['run']} | {r['molecules']} ({r['engine_chains']}) | {r['chains_written']} ({r['break_evidence']}) | "
                     f"{r['frames']} | {r['min_bond_ok_percent']:.2f} | {r['max_clash_percent']:.2f} | "
                     f"{'n/a' if rc is None else f'{rc:.3f} ({worst:.2f}, {atom})'} | "
                     f"{'n/a' if cr is None else f'{cr:.2f}'} | "
                     f"{r['frames_per_second']:.3f} |")
    slab = next((r for r in result["runs"] if "memory" in r), None)
    if slab:
        m = slab["memory"]
        lines += ["", "## Condensate (CALVADOS slab)", "",
                  f"- {slab['engine_chains']} chains, {slab['chains_written']} written, bonds across chains: "
                  f"{slab['bonds_across_chains']}; min bond_ok {slab['min_bond_ok_percent']:.2f} %, clash "
                  f"{slab['max_clash_percent']:.2f} % (contacts between chains count); per chain: min bond_ok "
                  f"{slab['per_chain']['min_bond_ok_percent']:.2f} %, max clash {slab['per_chain']['max_clash_percent']:.2f} "
                  f"%, mean {slab['per_chain']['mean_clash_percent']:.2f} %.",
                  f"- `convert` of the engine's DCD in a child process: RSS {m['baseline_rss_mb']:.0f} MB after loading "
                  f"the model, peak {m['peak_rss_mb']:.0f} MB (growth {m['growth_mb']:.0f} MB against a budget of "
                  f"{m['budget_mb']:.0f} MB for one model call; {m['batch_frames']} frame(s) per call); "
                  f"{m['frames_per_second']:.4f} frames/s of backmapping; seconds {m['seconds']}."]
    lines += ["", "## Bars (issue 21)", ""]
    for r in result["runs"]:
        if r["run"] == "calvados_slab":
            continue
        ok = r["chains_written"] == r["molecules"]
        lines.append(f"- {r['run']}: chains as the engine's molecules **{'PASS' if ok else 'MISS'}**; bond_ok >= 99.9 % "
                     f"every frame **{'PASS' if r['min_bond_ok_percent'] >= 99.9 else 'MISS'}**; clash <= 0.5 % every "
                     f"frame **{'PASS' if r['max_clash_percent'] <= 0.5 else 'MISS'}** (max "
                     f"{r['max_clash_percent']:.2f} %)"
                     + (f"; reporter vs convert within 0.1 Å **{'PASS' if r['rmsd_reporter_vs_convert_angstrom'] <= 0.1 else 'MISS'}**"
                        if r.get("rmsd_reporter_vs_convert_angstrom") is not None else "")
                     + (f"; crystal RMSD <= 1.5 Å **{'PASS' if r['rmsd_crystal_angstrom'] <= 1.5 else 'MISS'}**"
                        if r.get("rmsd_crystal_angstrom") is not None and "ubq" in r["run"].lower() else ""))
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True, help="the --out folder of benchmarks/clients/*_run.py")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--ubiquitin", required=True, help="the 1UBQ crystal the runs started from")
    ap.add_argument("--out", default="docs/benchmarks/real_clients")
    ap.add_argument("--no-memory", action="store_true", help="skip the slab's peak-memory child process")
    args = ap.parse_args(argv)
    rows = []
    for name, (crystal, molecules) in RUNS.items():
        folder = Path(args.runs) / name
        if not (folder / "result.json").is_file():
            print(f"{name}: no run in {folder}", file=sys.stderr)
            continue
        rows.append(analyse(folder, crystal, molecules, Path(args.shared), Path(args.ubiquitin), not args.no_memory))
        print(json.dumps(rows[-1])[:400], flush=True)
    result = {"date": time.strftime("%Y-%m-%d"), "bars": BARS, "runs": rows,
              "command": "python benchmarks/real_clients.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    Path(args.out + ".json").write_text(json.dumps(result, indent=1))
    Path(args.out + ".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
