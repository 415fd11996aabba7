"""Re-script the C-alpha (or beads) steps of a model with the installed code: same weights, fitted geometry and
metadata. Works on the transferable models and on k-step models whose last step is one (other steps are kept).

Used when the inference code changes: by default the output must agree to within float rounding (1e-4 nm) on a
random input before the file is written; ``--changed REASON`` accepts a different output (an improved inference
step, e.g. the side-chain repacking) and records the reason and the largest deviation in the metadata::

    python examples/reexport_model.py models/ca2aa.pt -o models/ca2aa.pt
    python examples/reexport_model.py models/ca2aa.pt -o models/ca2aa.pt --changed "repacking neighbours by side-chain centre"
    python examples/reexport_model.py models/com2aa.pt -o models/com2aa.pt --set cis_below_angstrom=3.0 --changed "fewer cis"
    python examples/reexport_model.py models/adk-ucg12.pt -o models/adk-ucg12.pt --changed "proline phi"

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
#: step kinds re-scripted from their weights; other steps (a per-system ``cgvae``) are kept as they are
RESCRIPTABLE = ("ca2aa", "bead2aa")


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
    kinds = [s.get("kind", old.kind) for s in old.metadata.get("steps") or []]
    rescript = [i for i, kind in enumerate(kinds) if kind in RESCRIPTABLE]
    if not rescript:
        raise SystemExit(f"{args.model} has no step of kind {', '.join(RESCRIPTABLE)} to re-script")
    steps, configs = [], []
    for i, kind in enumerate(kinds):
        scripted = getattr(old.module.steps, str(i))
        config = dict(old.metadata["steps"][i].get("config") or {})
        if i in rescript and not config:
            raise SystemExit(f"{args.model}: step {i} ({kind}) has no config in its metadata, so it cannot be rebuilt")
        if i == rescript[-1]:  # --set applies to the last transferable step (the one that writes the atoms)
            known = {f.name for f in dataclasses.fields(get_step_class(kind).make_config(config))}
            for item in args.set:
                key, _, value = item.partition("=")
                if key not in known:
                    raise SystemExit(f"--set {item}: the step's config has no key {key!r}")
                config[key] = json.loads(value)
        configs.append(config)
        steps.append(get_step_class(kind).from_exported(scripted, config).eval() if i in rescript else scripted)
    gen = torch.Generator().manual_seed(0)
    if old.transferable:
        module = KStepModel(steps)
        types = torch.randint(0, 20, (40,), generator=gen)
        n = old.n_beads_for([AMINO_ACIDS[t] for t in types.tolist()])
        seg = torch.zeros(40, dtype=torch.bool)
        seg[0] = True
    else:  # a per-system model: its own sequence and bead count
        types, seg = torch.as_tensor(old.module.residue_types), torch.as_tensor(old.module.segment_start)
        module = KStepModel(steps, types, seg, old.n_beads)
        n = old.n_beads
    x = torch.cumsum(torch.randn(2, n, 3, generator=gen) * (0.22 if n == len(types) else 0.12), dim=1)  # a walk, nm
    if old.reference_cg_xyz is not None:  # a per-system model's own CG frame is the better input
        x = torch.as_tensor(old.reference_cg_xyz, dtype=torch.float32).unsqueeze(0).repeat(2, 1, 1)
    args_in = (x, types, seg)
    worst = 0.0
    new = torch.jit.script(module)
    with torch.no_grad():
        for temperature in (0.0, 1.0):
            dev = float((old.module(*args_in, 7, 1, temperature) - new(*args_in, 7, 1, temperature)).abs().max())
            worst = max(worst, dev)
            print(f"temperature {temperature}: largest deviation {dev:.2e} nm")
    if worst > TOLERANCE_NM and not args.changed:
        raise SystemExit(f"outputs differ by up to {worst:.3g} nm; pass --changed REASON if that is intended")
    meta = {k: v for k, v in old.metadata.items() if k not in AUTO_KEYS and not k.startswith("_")}
    meta["steps"] = [dict(s, config=c) for s, c in zip(meta["steps"], configs)]
    note = f"weights of {old.metadata.get('created')}, re-scripted with openmm-backmap {__version__}"
    if worst > TOLERANCE_NM:
        note += f"; output changed (up to {np.round(worst, 4)} nm on a random input): {args.changed}"
    meta["reexported"] = f"{old.metadata['reexported']}; then {note}" if old.metadata.get("reexported") else note
    extra = {} if old.transferable else {"cg_topology": old.cg_topology, "cg_xyz": old.reference_cg_xyz,
                                         "hierarchy": old.hierarchy}
    save_model(module, args.output, meta, **extra)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
