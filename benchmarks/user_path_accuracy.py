"""Accuracy as users get it: bead FILES written by the tools users use, through the ``openmm-backmap`` CLI.

For each CASP target (``eval/chains/casp``), three inputs are written as files and converted with
``openmm-backmap convert FILE -o OUT.pdb --deterministic`` (the CLI's own ``main``, in this process):

- ``com``: ``openmm-backmap coarsen TARGET --levels com`` (centre-of-mass beads named ``CA``, the target's
  chains and residue numbers);
- ``calvados``: the same beads as CALVADOS 3 writes a folded domain: OpenMM's PDB writer on a topology that
  numbers residues from 1 and has no bonds (so missing residues show only in the geometry);
- ``martini3``: ``martinize2 -f TARGET -x cg.pdb -o topol.top -ff martini3001 -dssp`` (PyPI ``vermouth``);
- ``ca``: ``openmm-backmap coarsen TARGET --levels ca`` (C-alpha traces; the C-alpha model of ``ca2aa_accuracy.py``).

Each output is compared with the target (``openmm_backmap.evaluation.evaluate``, the reference's bond graph),
and its chains are counted against the reference's segments. Beside it stands the in-memory figure of the same
model: the same beads handed to ``Backmapper.backmap`` with the reference's segments (what
``scheme_accuracy.py`` reports). Writes ``PREFIX.json`` and ``PREFIX.md``.

    python benchmarks/user_path_accuracy.py --shared ../shared/data --out docs/benchmarks/user_path_accuracy
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
import warnings
from pathlib import Path

import mdtraj as md
import numpy as np

from openmm_backmap.cli import main as cli
from openmm_backmap.evaluation import evaluate
from openmm_backmap.io import load_ensemble
from openmm_backmap.model import load_model, shipped_model_path
from openmm_backmap.run.cg_chains import ChainBreakWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ca2aa_report import METRICS  # noqa: E402
from ca2aa_accuracy import generated, load_set  # noqa: E402
from scheme_accuracy import com_beads, martinize, read_martini  # noqa: E402

PATHS = ("com", "calvados", "martini3", "ca")
MODEL_OF = {"com": "com", "calvados": "com", "martini3": "martini3", "ca": "ca"}
#: the bars of issue 21, through the CLI
BARS = {"rmsd_vs_memory_angstrom": 0.05, "bond_ok_percent": 99.9, "clash_percent": 0.5}


def write_calvados_style(ref, path):
    """Centre-of-mass beads as CALVADOS 3 writes a folded domain: named CA, residues numbered from 1 in each
    chain, OpenMM's PDB writer, no bonds."""
    from openmm import app

    top = app.Topology()
    chains = ref.chain_ids or ["A"] * ref.n_residues
    current, number = None, 0
    for res, c in zip(ref.sequence, chains):
        if c != current:
            chain, current, number = top.addChain(c), c, 0
        number += 1
        top.addAtom("CA", app.Element.getBySymbol("C"), top.addResidue(res, chain, id=str(number)))
    with open(path, "w") as fh:
        app.PDBFile.writeFile(top, com_beads(ref)[0] * 10.0, fh)


def convert(cg_file, out):
    """``openmm-backmap convert`` on a file; (exit code, seconds, geometry-break warnings, stderr tail)."""
    err = io.StringIO()
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        rc = cli(["convert", str(cg_file), "-o", str(out), "--deterministic", "--seed", "0", "--force",
                  "--device", "cpu"])
    # the CLI prints its warnings itself (one line each); those about chains are these
    breaks = [str(w.message) for w in caught if issubclass(w.category, ChainBreakWarning)] + [
        line for line in err.getvalue().splitlines()
        if "warning:" in line and ("from bead distances alone" in line or "kept joined although" in line)]
    return rc or 0, time.perf_counter() - t0, breaks, err.getvalue()[-400:]


def measure(ref, name, path_kind, cg_file, out, model):
    rc, sec, breaks, err = convert(cg_file, out)
    row = {"exit": rc, "seconds": round(sec, 2), "chain_warnings": breaks}
    if rc != 0 or not out.is_file():
        return {**row, "error": err}
    gen = load_ensemble(out)
    row["chains_out"] = md.load(str(out)).topology.n_chains
    row["segments_ref"] = int(ref.segment_start.sum())
    if gen.sequence != ref.sequence:
        return {**row, "error": f"output sequence differs ({len(gen.sequence)} vs {len(ref.sequence)} residues)"}
    r = evaluate(ref, generated(ref, gen.xyz, f"{path_kind}-cli"), name=name)
    row["cli"] = {m: r[m]["mean"] for m in METRICS}
    return row


def in_memory(ref, beads, model, label):
    out = model.backmap(beads, sequence=ref.sequence, segment_start=ref.segment_start, deterministic=True, seed=0)
    r = evaluate(ref, generated(ref, out.xyz, label), name=label)
    return {m: r[m]["mean"] for m in METRICS}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--out", default="docs/benchmarks/user_path_accuracy", help="PREFIX of .json and .md")
    ap.add_argument("--work", default="runs/user_path", help="where the bead files and outputs go")
    ap.add_argument("--targets", default=None, help="comma-separated CASP target names (default: all 24)")
    ap.add_argument("--paths", default=",".join(PATHS[:3]), help=f"which inputs (of {','.join(PATHS)})")
    ap.add_argument("--martinize-args", default="-dssp")
    args = ap.parse_args(argv)
    root = Path(args.shared) / "eval"
    work = Path(args.work)
    paths = args.paths.split(",")
    targets = load_set(root, "casp", 1)
    if args.targets:
        keep = set(args.targets.split(","))
        targets = [(n, e) for n, e in targets if n in keep]
    models = {k: load_model(shipped_model_path(k), device="cpu") for k in {MODEL_OF[p] for p in paths}}
    rows = []
    for name, ref in targets:
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        source = next((root / "chains" / "casp").glob(f"{name}.pdb*"))
        row = {"name": name, "residues": ref.n_residues, "segments_ref": int(ref.segment_start.sum())}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if "com" in paths:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    cli(["coarsen", str(source), "--levels", "com", "-o", str(folder / "t")])
                row["com"] = measure(ref, name, "com", folder / "t_com.pdb", folder / "aa_com.pdb", models["com"])
            if "calvados" in paths:
                write_calvados_style(ref, folder / "calvados.pdb")
                row["calvados"] = measure(ref, name, "calvados", folder / "calvados.pdb", folder / "aa_calvados.pdb",
                                          models["com"])
            if "ca" in paths:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    cli(["coarsen", str(source), "--levels", "ca", "-o", str(folder / "t")])
                row["ca"] = measure(ref, name, "ca", folder / "t_ca.pdb", folder / "aa_ca.pdb", models["ca"])
                if "cli" in row["ca"]:
                    row["ca"]["memory"] = in_memory(ref, ref.ca_xyz, models["ca"], "ca-memory")
            if "com" in paths or "calvados" in paths:
                mem = in_memory(ref, com_beads(ref), models["com"], "com-memory")
                for p in ("com", "calvados"):
                    if p in row:
                        row[p]["memory"] = mem
            if "martini3" in paths:
                run = martinize(name, source, ref, work / "martinize2", args.martinize_args.split())
                if "error" in run:
                    row["martini3"] = {"error": run["error"]}
                else:
                    row["martini3"] = measure(ref, name, "martini3", Path(run["cg"]), folder / "aa_martini3.pdb",
                                              models["martini3"])
                    row["martini3"]["martinize2"] = run.get("command")
                    if "cli" in row["martini3"]:
                        xyz = read_martini(run["cg"])[3]
                        row["martini3"]["memory"] = in_memory(ref, xyz[None], models["martini3"], "m3-memory")
        rows.append(row)
        print(name + ": " + "; ".join(
            f"{p} {row[p]['cli']['rmsd_angstrom']:.2f} Å (memory {row[p]['memory']['rmsd_angstrom']:.2f}), "
            f"chains {row[p]['chains_out']}/{row['segments_ref']}, clash {row[p]['cli']['clash_percent']:.2f} %, "
            f"bond_ok {row[p]['cli']['bond_ok_percent']:.2f} %" if "cli" in row.get(p, {}) else
            f"{p} ERROR {row.get(p, {}).get('error', '')[:200]}" for p in paths if p in row), flush=True)
    result = {"date": time.strftime("%Y-%m-%d"), "command": "python benchmarks/user_path_accuracy.py "
              + " ".join(sys.argv[1:] if argv is None else argv), "paths": paths, "bars": BARS, "targets": rows,
              "summary": summarise(rows, paths)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(result, indent=1))
    Path(args.out + ".md").write_text(markdown(result))
    print(markdown(result))


def summarise(rows, paths):
    out = {}
    for p in paths:
        ok = [r[p] for r in rows if "cli" in r.get(p, {})]
        if not ok:
            out[p] = {"targets": 0, "failed": len(rows)}
            continue
        cli_rmsd = np.array([r["cli"]["rmsd_angstrom"] for r in ok])
        mem_rmsd = np.array([r["memory"]["rmsd_angstrom"] for r in ok])
        out[p] = {"targets": len(ok), "failed": len(rows) - len(ok),
                  "rmsd_cli_angstrom": float(cli_rmsd.mean()), "rmsd_memory_angstrom": float(mem_rmsd.mean()),
                  "chains_right": int(sum(r["chains_out"] == r["segments_ref"] for r in ok)),
                  "min_bond_ok_percent": float(min(r["cli"]["bond_ok_percent"] for r in ok)),
                  "max_clash_percent": float(max(r["cli"]["clash_percent"] for r in ok)),
                  "mean_clash_percent": float(np.mean([r["cli"]["clash_percent"] for r in ok])),
                  "chain_warnings": int(sum(len(r["chain_warnings"]) > 0 for r in ok)),
                  "seconds_per_target": float(np.mean([r["seconds"] for r in ok]))}
    return out


def markdown(result):
    s = result["summary"]
    label = {"com": "`coarsen --levels com` PDB", "calvados": "CALVADOS-style PDB (CA names, renumbered, no bonds)",
             "martini3": "martinize2 `-ff martini3001` PDB", "ca": "`coarsen --levels ca` PDB"}
    lines = ["# Accuracy through the user's path: bead files and the `convert` CLI", "",
             f"{result['date']}, `{result['command']}`. 24 CASP targets (eval/chains/casp), deterministic output "
             "before minimisation, shipped models. **CLI**: the bead file written by the user's tool, through "
             "`openmm-backmap convert FILE -o OUT.pdb --deterministic`; **memory**: the same beads given to the model "
             "with the reference's segments. Chains: output chains equal to the reference's segments.", "",
             "| input | targets | RMSD CLI (Å) | RMSD memory (Å) | chains right | min bond_ok (%) | max clash (%) | "
             "mean clash (%) | targets warned (geometry-only breaks, doubtful joins) | s/target (CLI, 1 frame) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p, r in s.items():
        if not r.get("targets"):
            lines.append(f"| {label[p]} | 0 | failed on all | | | | | | | |")
            continue
        lines.append(f"| {label[p]} | {r['targets']} | {r['rmsd_cli_angstrom']:.3f} | {r['rmsd_memory_angstrom']:.3f} "
                     f"| {r['chains_right']} of {r['targets']} | {r['min_bond_ok_percent']:.2f} | "
                     f"{r['max_clash_percent']:.2f} | {r['mean_clash_percent']:.3f} | {r['chain_warnings']} | "
                     f"{r['seconds_per_target']:.1f} |")
    lines += ["", "## Bars (issue 21)", ""]
    for p, r in s.items():
        if not r.get("targets"):
            continue
        d = abs(r["rmsd_cli_angstrom"] - r["rmsd_memory_angstrom"])
        checks = [("mean RMSD within 0.05 Å of in-memory", d <= BARS["rmsd_vs_memory_angstrom"], f"{d:.3f} Å"),
                  ("one segment per true chain", r["chains_right"] == r["targets"],
                   f"{r['chains_right']} of {r['targets']}"),
                  ("bond_ok >= 99.9 % on every target", r["min_bond_ok_percent"] >= BARS["bond_ok_percent"],
                   f"min {r['min_bond_ok_percent']:.2f} %"),
                  ("clash <= 0.5 % on every target", r["max_clash_percent"] <= BARS["clash_percent"],
                   f"max {r['max_clash_percent']:.2f} %")]
        for what, ok, val in checks:
            lines.append(f"- {label[p]}: {what}: **{'PASS' if ok else 'MISS'}** ({val})")
    lines += ["", "## Per target", "", "| target | residues | segments | " + " | ".join(
        f"{p} RMSD CLI / memory (Å), chains, bond_ok %, clash %" for p in result["paths"]) + " |",
        "|---|---|---|" + "---|" * len(result["paths"])]
    for row in result["targets"]:
        cells = []
        for p in result["paths"]:
            r = row.get(p, {})
            if "cli" not in r:
                cells.append("error: " + str(r.get("error", "n/a"))[:80].replace("|", "/").replace("\n", " "))
                continue
            c = r["cli"]
            cells.append(f"{c['rmsd_angstrom']:.2f} / {r['memory']['rmsd_angstrom']:.2f}, {r['chains_out']}, "
                         f"{c['bond_ok_percent']:.2f}, {c['clash_percent']:.2f}")
        lines.append(f"| {row['name']} | {row['residues']} | {row['segments_ref']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
