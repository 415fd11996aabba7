"""Re-script a C-alpha model with the installed code: same weights, fitted geometry and metadata.

Used when the inference code gets faster without changing results (the
output is checked to agree to within float rounding, 1e-4 nm, before the
file is replaced)::

    python examples/reexport_ca2aa.py models/ca2aa.pt -o models/ca2aa.pt
"""

import argparse

import torch

from openmm_backmap import __version__
from openmm_backmap.model import KStepModel, load_model, save_model
from openmm_backmap.model.model_file import AUTO_KEYS
from openmm_backmap.model.steps import CA2AA

TOLERANCE_NM = 1e-4  # float rounding of a reordered sum, far below any structural change


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    old = load_model(args.model, device="cpu")
    if old.kind != "ca2aa":
        raise SystemExit(f"{args.model} is a {old.kind!r} model, not 'ca2aa'")
    old_step = getattr(old.module.steps, "0")
    step = CA2AA.from_exported(old_step, old.metadata["steps"][0]["config"]).eval()
    gen = torch.Generator().manual_seed(0)
    ca = torch.cumsum(torch.randn(2, 40, 3, generator=gen) * 0.22, dim=1)  # a random C-alpha walk, nm
    types = torch.randint(0, 20, (40,), generator=gen)
    seg = torch.zeros(40, dtype=torch.bool)
    seg[0] = True
    with torch.no_grad():
        for temperature in (0.0, 1.0):
            a = old_step(ca, types, seg, 7, temperature)
            b = torch.jit.script(step)(ca, types, seg, 7, temperature)
            dev = float((a - b).abs().max())
            if dev > TOLERANCE_NM:
                raise SystemExit(f"outputs differ at temperature {temperature}: {dev} nm")
            print(f"temperature {temperature}: largest deviation {dev:.2e} nm")
    meta = {k: v for k, v in old.metadata.items() if k not in AUTO_KEYS and not k.startswith("_")}
    meta["reexported"] = f"weights of {old.metadata.get('created')}, re-scripted with openmm-backmap {__version__}"
    save_model(KStepModel([step]), args.output, meta)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
