"""Fit the template geometry shipped as openmm_backmap/data/ideal_geometry.json.

Bond lengths, bond angles and torsion offsets of every side-chain atom (and
CB), as medians over the experimental training chains. Trained models carry
their own fitted geometry; this file is the default for freshly initialised
steps (tests, new step families).

    python examples/fit_template_geometry.py --data ../shared/data
"""

import argparse
import glob
import json
import os
import warnings

import numpy as np

from openmm_backmap.io import LoadWarning, load_ensemble
from openmm_backmap.model.steps import ensemble_to_slots, fit_geometry


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data"))
    p.add_argument("-o", "--output", default=os.path.join(here, "..", "openmm_backmap", "data", "ideal_geometry.json"))
    args = p.parse_args()
    xs, ms, ts = [], [], []
    files = sorted(glob.glob(os.path.join(args.data, "train", "chains", "*.gz")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoadWarning)
        for f in files:
            ens = load_ensemble(f)
            x, m = ensemble_to_slots(ens)
            xs.append(np.nan_to_num(x))
            ms.append(m)
            ts.append(ens.residue_types)
    geo = fit_geometry(xs, ms, ts)
    geo["source"] = f"medians over {len(files)} experimental training chains (train/chains of the project's data set)"
    with open(args.output, "w") as fh:
        json.dump(geo, fh)
    print(f"wrote {args.output} from {len(files)} chains")


if __name__ == "__main__":
    main()
