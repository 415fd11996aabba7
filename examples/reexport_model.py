"""Re-script a transferable model (C-alpha or beads) with the installed code: same weights, fitted geometry and
metadata.

Used when the inference code changes: by default the output must agree to within float rounding (1e-4 nm) on a
random input before the file is written; ``--changed REASON`` accepts a different output (an improved inference
step, e.g. the side-chain repacking) and records the reason and the largest deviation in the metadata::

    python examples/reexport_model.py models/ca2aa.pt -o models/ca2aa.pt
    python examples/reexport_model.py models/ca2aa.pt -o models/ca2aa.pt --changed "repacking neighbours by side-chain centre"
    python examples/reexport_model.py models/com2aa.pt -o models/com2aa.pt --set cis_below_angstrom=3.0 --changed "fewer cis"

``--set KEY=VALUE`` changes an inference setting of the step's config (kept in the metadata).
"""

import argparse
import dataclasses
import json

import numpy as np
import torch

from openmm_backmap import __version__
from openmm_backmap.model import KStepModel, load_model, save_model
from openmm_backmap.model.model_file import AUTO_KEYS
from openmm_backmap.model.steps import get_step_class
from openmm_backmap.structure import AMINO_ACIDS

TOLERANCE_NM = 1e-4  # float rounding of a reordered sum, far below any structural change


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                    help="change an inference setting of the step's config (JSON value), e.g. cis_below_angstrom=3.0")
    ap.add_argument("--changed", metavar="REASON", default=None,
                    help="accept an output that differs from the old file's, for this reason (kept in the metadata)")
    args = ap.parse_args(argv)
    old = load_model(args.model, device="cpu")
    if not old.transferable or len(old.metadata.get("steps") or []) != 1:
        raise SystemExit(f"{args.model} is not a one-step transferable model")
    kind = old.metadata["steps"][0].get("kind", old.kind)
    old_step = getattr(old.module.steps, "0")
    config = dict(old.metadata["steps"][0]["config"])
    known = {f.name for f in dataclasses.fields(get_step_class(kind).make_config(config))}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in known:
            raise SystemExit(f"--set {item}: the step's config has no key {key!r}")
        config[key] = json.loads(value)
    step = get_step_class(kind).from_exported(old_step, config).eval()
    gen = torch.Generator().manual_seed(0)
    types = torch.randint(0, 20, (40,), generator=gen)
    n = old.n_beads_for([AMINO_ACIDS[t] for t in types.tolist()])
    x = torch.cumsum(torch.randn(2, n, 3, generator=gen) * (0.22 if n == 40 else 0.12), dim=1)  # a random walk, nm
    seg = torch.zeros(40, dtype=torch.bool)
    seg[0] = True
    worst = 0.0
    with torch.no_grad():
        for temperature in (0.0, 1.0):
            dev = float((old_step(x, types, seg, 7, temperature)
                         - torch.jit.script(step)(x, types, seg, 7, temperature)).abs().max())
            worst = max(worst, dev)
            print(f"temperature {temperature}: largest deviation {dev:.2e} nm")
    if worst > TOLERANCE_NM and not args.changed:
        raise SystemExit(f"outputs differ by up to {worst:.3g} nm; pass --changed REASON if that is intended")
    meta = {k: v for k, v in old.metadata.items() if k not in AUTO_KEYS and not k.startswith("_")}
    meta["steps"] = [dict(meta["steps"][0], config=config)]
    note = f"weights of {old.metadata.get('created')}, re-scripted with openmm-backmap {__version__}"
    if worst > TOLERANCE_NM:
        note += f"; output changed (up to {np.round(worst, 4)} nm on a random input): {args.changed}"
    meta["reexported"] = f"{old.metadata['reexported']}; then {note}" if old.metadata.get("reexported") else note
    save_model(KStepModel([step]), args.output, meta)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
