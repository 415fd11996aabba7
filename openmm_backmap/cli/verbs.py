"""Command-line interface: ``openmm-backmap <verb>``.

Every verb is a thin layer over one public function; run
``openmm-backmap <verb> --help`` for its options. User mistakes (missing
files, wrong formats, mismatched models) print one line that says what was
wrong and how to fix it, and exit with status 2; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..mapping import SCHEMES
from ..structure.constants import DEFAULT_MAX_MEMORY_MB, EXPORT_FORMATS, IMPLICIT_SOLVENT_FILES, RELAX_METHODS
from ..structure.errors import InputError, UserError

__all__ = ["main", "build_parser"]



def _demo(args):
    from ..run import run_demo

    run_demo(output_dir=args.output, steps=args.steps, model=args.model, seed=args.seed)


def _coarsen(args):
    from ..run import coarsen_files

    coarsen_files(args.input, topology=args.topology, levels=args.levels, out_prefix=args.output,
                  model=args.model, stride=args.stride, force=args.force)


def _evaluate(args):
    from ..evaluation import evaluate_files, format_table

    result = evaluate_files(args.reference, args.generated, reference_topology=args.topology[0] if args.topology else None,
                            generated_topology=args.topology[-1] if args.topology else None,
                            plots_dir=args.plots, json_path=args.json, stride=args.stride)
    print(format_table(result))


def _convert(args):
    from ..run import convert_trajectory

    relax_options = {}
    if args.relax is not None:
        if not args.minimize:
            raise InputError("--relax picks the relaxation; add --minimize")
        relax_options["method"] = args.relax
    if args.relax_solvent is not None:  # an OpenMM option: it selects --relax openmm unless told otherwise
        if not args.minimize:
            raise InputError("--relax-solvent sets the solvent of the relaxation; add --minimize")
        relax_options["implicit"] = args.relax_solvent
    convert_trajectory(args.input, args.output, model=args.model, topology=args.topology, samples=args.samples, seed=args.seed,
            device=args.device, stride=args.stride, chunk=args.chunk, minimize=args.minimize,
            keep_hydrogens=args.keep_hydrogens, deterministic=args.deterministic, force=args.force,
            append=args.append, on_bad_frame=args.on_bad_frame, max_memory_mb=args.max_memory,
            relax_options=relax_options, workers=args.workers, scheduler=args.scheduler, scheme=args.scheme,
            export=args.export)


def _train(args):
    from ..train import launch_training

    launch_training(args.config, args.nproc, output_dir=args.output, resume=args.resume, overrides=args.set)


def _export(args):
    from ..model import export_kstep

    export_kstep(args.steps, args.output, force=args.force, name=args.name)


def _info(args):
    from ..model import load_model

    info = load_model(args.model, device="cpu").info()
    print(json.dumps(info, indent=2) if args.json else _format_info(info))


def _component_line(c: dict) -> str:
    """One line per part of a k-step model: kind, name, training time and best validation metrics."""
    t = c.get("training") or {}
    best = {k: round(v, 3) for k, v in (t.get("best_metrics") or {}).items()
            if k.startswith("val_") and isinstance(v, (int, float))}
    time_s = t.get("train_time_s")
    trained = f", trained {time_s / 60:.0f} min, {t.get('steps')} steps" if time_s else ""
    return f"{c.get('kind')} {c.get('name')!r}{trained}" + (f", {json.dumps(best)}" if best else "")


def _format_info(info: dict) -> str:
    lines = []
    for key, value in info.items():
        if key == "components":
            lines += [f"{'component ' + str(i + 1):>18}: {_component_line(c)}" for i, c in enumerate(value)]
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
            if len(value) > 200:
                value = value[:197] + "..."
        lines.append(f"{key:>18}: {value}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="openmm-backmap", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    d = sub.add_parser("demo", help="run a short CG simulation with on-the-fly backmapping (no input needed)")
    d.add_argument("--output", default="backmap-demo", help="output directory (default: %(default)s)")
    d.add_argument("--steps", type=int, default=None, help="number of CG integration steps")
    d.add_argument("--model", default=None, help="model to use (default: the shipped C-alpha model)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_demo)

    c = sub.add_parser("coarsen", help="map an all-atom trajectory to coarser levels")
    c.add_argument("input", help="all-atom structure or trajectory")
    c.add_argument("-t", "--topology", help="topology (PDB) for trajectories")
    c.add_argument("--levels", default="ca",
                   help="comma-separated levels: ca (C-alpha), com (residue centre of mass), martini3, martini2 "
                        "(martinize2's beads), ucg:N (N beads), or a mapping .json; e.g. ca,com,martini3,ucg:12 "
                        "(default: %(default)s)")
    c.add_argument("--model", help="use the mappings embedded in this model instead of --levels")
    c.add_argument("-o", "--output", required=True, help="output prefix")
    c.add_argument("--stride", type=int, default=1)
    c.add_argument("--force", action="store_true", help="overwrite existing files")
    c.set_defaults(func=_coarsen)

    e = sub.add_parser("evaluate", help="compare generated all-atom structures with a reference")
    e.add_argument("reference")
    e.add_argument("generated")
    e.add_argument("-t", "--topology", action="append",
                   help="topology for trajectories; give twice for reference then generated")
    e.add_argument("--plots", help="directory for the Ramachandran plot")
    e.add_argument("--json", help="write the results as JSON here")
    e.add_argument("--stride", type=int, default=1)
    e.set_defaults(func=_evaluate)

    v = sub.add_parser("convert", help="backmap a CG trajectory to all atoms")
    v.add_argument("input", help="CG trajectory, or a bead PDB / .gro")
    v.add_argument("-t", "--topology", help="CG topology (PDB or .gro) for trajectories")
    v.add_argument("--model", default=None,
                   help="model file (default: the shipped model of the beads' scheme, said on stderr: ca2aa.pt, "
                        "com2aa.pt or martini3.pt)")
    v.add_argument("--scheme", choices=SCHEMES, default=None,
                   help="what the CG beads are; default: found from their names (Martini) and spacing (C-alpha "
                        "vs residue centre of mass). A model given other beads than it takes stops with an error")
    v.add_argument("-o", "--output", required=True, help="output file (.pdb, .dcd, .xtc, .h5)")
    v.add_argument("--samples", type=int, default=1, help="samples per frame")
    v.add_argument("--seed", type=int, default=None)
    v.add_argument("--deterministic", action="store_true", help="most likely structure instead of a sample")
    v.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    v.add_argument("--stride", type=int, default=1)
    v.add_argument("--chunk", type=int, default=100,
                   help="frames per chunk, at most: --max-memory may lower it (default: %(default)s)")
    v.add_argument("--max-memory", type=float, default=DEFAULT_MAX_MEMORY_MB, metavar="MB",
                   help="memory budget of one model call in MB (device memory on a GPU); model calls hold as "
                        "many frames and samples as fit (default: %(default)s)")
    v.add_argument("--minimize", action="store_true",
                   help="relax each structure: remove clashes and fix bond lengths (see --relax)")
    v.add_argument("--relax", choices=list(RELAX_METHODS), default=None,
                   help="with --minimize: 'fast', the default, a batched heavy-atom clash repair (well under 1 s "
                        "per frame), or 'openmm', a force-field minimisation with hydrogens (seconds to minutes "
                        "per frame; --keep-hydrogens always uses it)")
    v.add_argument("--keep-hydrogens", action="store_true",
                   help="with --minimize: write hydrogens too (relaxes with --relax openmm)")
    v.add_argument("--relax-solvent", choices=list(IMPLICIT_SOLVENT_FILES), default=None,
                   help="with --minimize: implicit solvent of --relax openmm, which it implies (default: obc2)")
    v.add_argument("--export", choices=list(EXPORT_FORMATS), default=None,
                   help="with --minimize: also write the relaxed structures as a ready-to-run all-atom system "
                        "(hydrogens, force field) for this engine: OUT_gromacs.top/.gro, OUT_amber.prmtop/.inpcrd "
                        "or OUT_openmm.xml/.pdb (one coordinate file per structure when there are several)")
    v.add_argument("--on-bad-frame", choices=["skip", "raise"], default="skip",
                   help="what to do with NaN or exploded CG frames (default: %(default)s)")
    v.add_argument("--force", action="store_true", help="overwrite the output")
    v.add_argument("--append", action="store_true",
                   help="add the frames to an existing output (same format and atoms) instead of failing")
    cluster = v.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=int, default=None, metavar="N",
                         help="run on a local Dask cluster of N single-threaded worker processes (needs dask; "
                              "output identical to the serial run)")
    cluster.add_argument("--scheduler", default=None, metavar="ADDRESS",
                         help="run on an existing Dask cluster, e.g. tcp://host:8786 (started with 'dask "
                              "scheduler' and 'dask worker ADDRESS')")
    v.set_defaults(func=_convert)

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("config")
    t.add_argument("-o", "--output", help="run directory (default: from the config)")
    t.add_argument("--resume", action="store_true", help="resume from the run directory's checkpoint")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.max_steps=2 (repeatable)")
    t.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel training processes started here, each taking optim.batch_residues per "
                        "step (gloo on CPUs, NCCL with one GPU each where CUDA is available; default: %(default)s)")
    t.set_defaults(func=_train)

    x = sub.add_parser("export", help="compose trained steps into one k-step TorchScript model")
    x.add_argument("steps", nargs="+", help="step checkpoints, coarsest first")
    x.add_argument("-o", "--output", required=True)
    x.add_argument("--name", default=None, help="model name (default: the parts' names joined by '+')")
    x.add_argument("--force", action="store_true")
    x.set_defaults(func=_export)

    i = sub.add_parser("info", help="print a model's metadata")
    i.add_argument("model")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_info)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as err:  # a user's mistake: one line; anything else is a bug and keeps its traceback
        if args.debug:
            raise
        print(f"openmm-backmap {args.verb}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
