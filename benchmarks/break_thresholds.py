"""Per-scheme chain-break distances, measured on the training corpus.

Where CG input carries no bonds and no file records to say where a chain is
broken, the distance between consecutive beads decides
(``structure.constants.SCHEME_BREAK_NM``). This script measures, for each
bead scheme, the distance between the beads of consecutive residues joined by
a peptide bond (C and N present, C-N <= 0.2 nm) in the corpus's experimental
chains, mapped as ``openmm-backmap coarsen`` maps them, and reports its
percentiles. The shipped thresholds (``SCHEME_BREAK_NM``) add a margin for the
thermal fluctuations of bonds in a CG simulation to the 99.99th percentile;
the script also counts how many true breaks (a peptide C-N over
0.2 nm, or missing residues by numbering) fall below each threshold, i.e. go
unnoticed by geometry alone.

Only ``train/corpus`` is read (never ``eval/``).

    python benchmarks/break_thresholds.py --data ../shared/data --files 600 --out docs/benchmarks/break_thresholds
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
import warnings

import numpy as np

from openmm_backmap.io import load_ensemble
from openmm_backmap.mapping import scheme_mapping
from openmm_backmap.structure import atom_layout
from openmm_backmap.structure.constants import PEPTIDE_BREAK_NM, SCHEME_BREAK_NM

SCHEMES = ("ca", "com", "martini3", "martini2")
PERCENTILES = (50, 99, 99.9, 99.99, 100)


def representative_beads(scheme, sequence):
    """(mapping, index of each residue's chain bead: the bead itself, or its BB)."""
    m = scheme_mapping(scheme, sequence)
    if scheme in ("ca", "com"):
        return m, np.arange(len(sequence))
    return m, np.flatnonzero(np.array(m.bead_names) == "BB")


def measure(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = load_ensemble(path)
    lay = atom_layout(ens.sequence)
    x, mask = ens.xyz[0], ens.mask[0]
    start = lay.residue_start[:-1]
    n_i, ca_i, c_i = start, start + 1, start + 2
    have = mask[n_i] & mask[ca_i] & mask[c_i]
    d_pep = np.linalg.norm(x[c_i[:-1]] - x[n_i[1:]], axis=1)
    chains = ens.chain_ids if ens.chain_ids is not None else [""] * len(ens.sequence)
    same_chain = np.array([a == b for a, b in zip(chains[:-1], chains[1:])], dtype=bool)
    joined = same_chain & have[:-1] & have[1:] & (d_pep <= PEPTIDE_BREAK_NM)
    broken = same_chain & have[:-1] & have[1:] & (d_pep > PEPTIDE_BREAK_NM)
    step = np.diff(np.asarray(ens.residue_numbers, dtype=np.int64))
    unnumbered = broken & ((step == 0) | (step == 1))  # a break the numbering does not show
    out = {}
    for scheme in SCHEMES:
        m, rep = representative_beads(scheme, ens.sequence)
        beads = m.apply_present(x, mask)[rep]
        d = np.linalg.norm(np.diff(beads, axis=0), axis=1)
        ok = np.isfinite(d)
        out[scheme] = (d[joined & ok], d[broken & ok], d[unnumbered & ok])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the shared data folder (reads train/corpus only)")
    ap.add_argument("--files", type=int, default=0, help="a random sample of this many corpus files (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/benchmarks/break_thresholds", help="PREFIX for PREFIX.json and .md")
    args = ap.parse_args(argv)
    corpus = os.path.join(args.data, "train", "corpus")
    with open(os.path.join(corpus, "manifest.csv")) as fh:
        files = sorted({row["file"] for row in csv.DictReader(fh)})
    if args.files:
        files = random.Random(args.seed).sample(files, min(args.files, len(files)))
    joined = {s: [] for s in SCHEMES}
    broken = {s: [] for s in SCHEMES}
    unnumbered = {s: [] for s in SCHEMES}
    t0, failed = time.time(), 0
    for k, f in enumerate(files):
        try:
            res = measure(os.path.join(corpus, f))
        except Exception as err:  # messy real files: count them, go on
            failed += 1
            print(f"skip {f}: {err}", file=sys.stderr)
            continue
        for s, (j, b, u) in res.items():
            joined[s].append(j)
            broken[s].append(b)
            unnumbered[s].append(u)
        if k % 50 == 0:
            print(f"{k}/{len(files)} files, {time.time() - t0:.0f} s", file=sys.stderr)
    table = {}
    for s in SCHEMES:
        j, b, u = (np.concatenate(v[s]) for v in (joined, broken, unnumbered))
        pct = {str(p): round(float(np.percentile(j, p)), 4) for p in PERCENTILES}
        thr = SCHEME_BREAK_NM[s]
        table[s] = {"pairs": int(len(j)), "percentiles_nm": pct,
                    "p99_99_rounded_up_nm": float(np.ceil(np.percentile(j, 99.99) * 100) / 100),
                    "shipped_nm": thr, "joined_over_shipped": int((j > thr).sum()),
                    "breaks": int(len(b)), "breaks_under_shipped": int((b <= thr).sum()),
                    "breaks_unnumbered": int(len(u)), "breaks_unnumbered_under_shipped": int((u <= thr).sum())}
    result = {"files": len(files) - failed, "files_failed": failed, "seed": args.seed,
              "date": time.strftime("%Y-%m-%d"), "schemes": table,
              "command": "python benchmarks/break_thresholds.py " + " ".join(argv or sys.argv[1:])}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as fh:
        json.dump(result, fh, indent=2)
    lines = ["# Chain-break distances per bead scheme", "",
             f"Consecutive residues joined by a peptide bond in {result['files']} corpus files "
             f"(`train/corpus`, {f'a random sample, seed {args.seed}' if args.files else 'all of them'}), mapped as "
             "`coarsen` maps them. "
             "Distances between the residues' chain beads (the bead; `BB` for Martini), nm. "
             "`structure.constants.SCHEME_BREAK_NM` adds a margin for thermal fluctuations in simulations to the 99.99th "
             "percentile; "
             "the last columns count true breaks (peptide C-N over 0.2 nm) that geometry alone would miss, all of "
             "them and those the residue numbering does not show either (no jump in numbers).", "",
             "| scheme | pairs | median | 99 % | 99.9 % | 99.99 % | max | shipped | joined pairs over it | "
             "breaks under it | unnumbered breaks under it |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s, r in table.items():
        p = r["percentiles_nm"]
        lines.append(f"| {s} | {r['pairs']} | {p['50']:.3f} | {p['99']:.3f} | {p['99.9']:.3f} | {p['99.99']:.3f} | "
                     f"{p['100']:.3f} | {r['shipped_nm']:.2f} | {r['joined_over_shipped']} | "
                     f"{r['breaks_under_shipped']} of {r['breaks']} | "
                     f"{r['breaks_unnumbered_under_shipped']} of {r['breaks_unnumbered']} |")
    lines += ["", f"Command: `{result['command']}` ({result['date']})", ""]
    with open(args.out + ".md", "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
