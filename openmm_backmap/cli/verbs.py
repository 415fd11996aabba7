"""Command-line interface: ``openmm-backmap <verb>``.

Every verb is a thin layer over one public function; run
``openmm-backmap <verb> --help`` for its options. User mistakes (missing
files, wrong formats, mismatched models) print one line that says what was
wrong and how to fix it, and exit with status 2; ``--debug`` (before or after
the verb) shows the traceback. Warnings print one line each,
``openmm-backmap VERB: warning: MESSAGE`` (with ``--debug``: Python's own
format, with the line that raised them). Messages name options by their
flags (``--force``), not by the Python arguments the library functions take.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from .._version import __version__
from ..mapping import SCHEMES
from ..structure.constants import DEFAULT_MAX_MEMORY_MB, EXPORT_FORMATS, IMPLICIT_SOLVENT_FILES, RELAX_METHODS
from ..structure.errors import InputError, UserError, command_line_spelling

__all__ = ["main", "build_parser"]

#: The top-level help's description (plain text: argparse shows it as written).
DESCRIPTION = ("openmm-backmap: backmap coarse-grained protein simulations to all atoms. Every verb is a thin layer "
               "over one public function; 'openmm-backmap VERB --help' lists its options. A user's mistake prints "
               "one line and exits with status 2; --debug shows the traceback.")


def _demo(args):
    from ..run import run_demo

    run_demo(output_dir=args.output, steps=args.steps, model=args.model, seed=args.seed, force=args.force)


def _coarsen(args):
    from ..run import coarsen_files

    coarsen_files(args.input, topology=args.topology, levels=args.levels, out_prefix=args.output,
                  model=args.model, stride=args.stride, force=args.force)


def _evaluate(args):
    from ..evaluation import evaluate_files, format_table

    result = evaluate_files(args.reference, args.generated, reference_topology=args.topology[0] if args.topology else None,
                            generated_topology=args.topology[-1] if args.topology else None,
                            plots_dir=args.plots, json_path=args.json, stride=args.stride, ensemble=args.ensemble)
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
            export=args.export, security=args.security)


def _train(args):
    from ..train import launch_training

    launch_training(args.config, args.nproc, output_dir=args.output, resume=args.resume, overrides=args.set,
                    force=args.force)


def _export(args):
    from ..model import export_kstep

    export_kstep(args.steps, args.output, force=args.force, name=args.name)


def _info(args):
    from ..model import load_model

    bm = load_model(args.model, device="cpu")
    info = bm.info()
    print(json.dumps(info, indent=2) if args.json else _format_info(info, _input_text(bm), _output_text(bm)))


#: What the beads of each scheme are, for ``info``.
_SCHEME_TEXT = {"ca": "C-alpha beads, one per residue (named CA)",
                "com": "residue centre-of-mass beads, one per residue",
                "martini3": "Martini 3 beads (martinize2 -ff martini3001: BB, SC1 ...)",
                "martini2": "Martini 2 beads (martinize2)"}


def _input_text(bm) -> str:
    """Which beads the model takes, in words."""
    if bm.transferable:
        scheme = bm.scheme
        return f"{_SCHEME_TEXT.get(scheme, scheme + ' beads')} of any protein (--scheme {scheme})"
    level = bm.metadata.get("input_level") or "CG"
    return (f"{bm.n_beads} {level} beads of its own {len(bm.sequence or [])}-residue protein (the bead topology: "
            "openmm-backmap coarsen --model MODEL)")


def _output_text(bm) -> str:
    if bm.output_level == "ca":
        return "a C-alpha trace (compose it with a C-alpha model: export)"
    if bm.output_level != "aa":
        return (f"{bm.output_level} beads (compose it with a {bm.output_level} -> C-alpha step and a C-alpha model: "
                "export)")
    return "heavy atoms"


def _training_text(t: dict) -> str:
    """Steps, training time and best validation metrics of a training summary, in one line."""
    best = {k: round(v, 3) for k, v in (t.get("best_metrics") or {}).items()
            if k.startswith("val_") and isinstance(v, (int, float))}
    time_s = t.get("train_time_s")
    parts = [f"{t['steps']} steps" if t.get("steps") else None, f"{time_s / 60:.0f} min" if time_s else None,
             f"best {json.dumps(best)}" if best else None]
    return ", ".join(p for p in parts if p)


def _component_line(c: dict) -> str:
    """One line per part of a k-step model: kind, name, training time and best validation metrics."""
    trained = _training_text(c.get("training") or {})
    return f"{c.get('kind')} {c.get('name')!r}" + (f", trained {trained}" if trained else "")


def _format_info(info: dict, takes: str, gives: str) -> str:
    """The text ``info`` prints: which beads the model takes first, then a few lines; provenance is behind --json."""
    lines = [("takes", takes), ("gives", gives), ("name", f"{info.get('name')} (kind {info.get('kind')})")]
    if info.get("sequence"):
        seq = info["sequence"]
        lines.append(("sequence", (seq if len(seq) <= 60 else seq[:57] + "...") + f" ({len(seq)} residues)"))
    if info.get("levels"):
        lines.append(("levels", " <- ".join(info["levels"])))
    for i, c in enumerate(info.get("components") or []):
        lines.append((f"component {i + 1}", _component_line(c)))
    if not info.get("components") and _training_text(info.get("training") or {}):
        lines.append(("training", _training_text(info["training"])))
    created = str(info.get("created", "?"))[:10]
    lines.append(("format_version", f"{info.get('format_version')} (openmm-backmap {info.get('package_version')}, "
                                    f"{created})"))
    lines.append(("file", info.get("file")))
    text = "\n".join(f"{key:>16}: {value}" for key, value in lines)
    return text + "\n(--json: everything, with the training config and provenance)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="openmm-backmap", description=DESCRIPTION)
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors (also accepted after the verb)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                   help="print the version and exit")
    # --debug after the verb too; SUPPRESS: a verb's parser sets it only when given, never resets the top-level one
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    sub = p.add_subparsers(dest="verb", metavar="VERB", help="what to do ('openmm-backmap VERB --help' for its options)")
    sub.required = True

    def verb(name, help):
        return sub.add_parser(name, help=help, description=help, parents=[debug])

    d = verb("demo", "run a short CG simulation with on-the-fly backmapping (no input needed)")
    d.add_argument("--output", default="backmap-demo", help="output directory (default: %(default)s)")
    d.add_argument("--steps", type=int, default=None, help="number of CG integration steps")
    d.add_argument("--model", default=None, help="model to use (default: the shipped C-alpha model)")
    d.add_argument("--seed", type=int, default=0,
                   help="seed of the simulation and the backmapping (default: %(default)s)")
    d.add_argument("--force", action="store_true", help="overwrite the files of an earlier demo in --output")
    d.set_defaults(func=_demo)

    c = verb("coarsen", "map an all-atom trajectory to coarser levels")
    c.add_argument("input", help="all-atom structure or trajectory")
    c.add_argument("-t", "--topology", help="topology (PDB) for trajectories")
    c.add_argument("--levels", default="ca",
                   help="comma-separated levels: ca (C-alpha), com (residue centre of mass), martini3, martini2 "
                        "(martinize2's beads), ucg:N (N beads), or a mapping .json; e.g. ca,com,martini3,ucg:12 "
                        "(default: %(default)s)")
    c.add_argument("--model", help="use the mappings embedded in this model instead of --levels")
    c.add_argument("-o", "--output", required=True, help="output prefix")
    c.add_argument("--stride", type=int, default=1, help="read every N-th frame (default: %(default)s)")
    c.add_argument("--force", action="store_true", help="overwrite existing files")
    c.set_defaults(func=_coarsen)

    e = verb("evaluate", "compare generated all-atom structures with a reference")
    e.add_argument("reference", help="reference all-atom structure or trajectory")
    e.add_argument("generated", help="generated (backmapped) all-atom structure or trajectory, same residues")
    e.add_argument("-t", "--topology", action="append",
                   help="topology for trajectories; give twice for reference then generated")
    e.add_argument("--plots", help="directory for the Ramachandran plot")
    e.add_argument("--json", help="write the results as JSON here")
    e.add_argument("--stride", type=int, default=1, help="read every N-th frame (default: %(default)s)")
    e.add_argument("--ensemble", action="store_true",
                   help="also compare the ensembles as distributions (torsion KL/JS, DSSP propensities, radius of "
                        "gyration); frames need not correspond: counts that cannot be paired skip the per-frame "
                        "metrics instead of failing")
    e.set_defaults(func=_evaluate)

    v = verb("convert", "backmap a CG trajectory to all atoms")
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
    v.add_argument("--seed", type=int, default=None,
                   help="random seed: the same seed gives the same structures (default: a random one, shown in the "
                        "summary)")
    v.add_argument("--deterministic", action="store_true", help="most likely structure instead of a sample")
    v.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    v.add_argument("--stride", type=int, default=1, help="backmap every N-th frame (default: %(default)s)")
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
                        "or OUT_openmm.xml/.pdb (one coordinate file per structure when there are several); "
                        "relaxes with --relax openmm unless --relax says otherwise, since the system is meant to "
                        "start MD")
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
    v.add_argument("--security", default=None, metavar="FILE",
                   help="with --scheduler tls://...: YAML naming tls_ca_file, tls_client_cert, tls_client_key "
                        "(or a Dask config file); without it Dask's distributed.comm.tls config is used "
                        "(docs/scaling.md)")
    v.set_defaults(func=_convert)

    t = verb("train", "train a model from a YAML config")
    t.add_argument("config", help="YAML training config (examples/configs/*.yaml)")
    t.add_argument("-o", "--output", help="run directory (default: from the config); the model goes there too")
    t.add_argument("--resume", action="store_true",
                   help="resume from the run directory's checkpoint (may replace the model this run wrote before)")
    t.add_argument("--force", action="store_true",
                   help="overwrite an existing model file at the config's output and an earlier run's files in "
                   "the run directory")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.max_steps=2 (repeatable)")
    t.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel training processes started here, each taking optim.batch_residues per "
                        "step (gloo on CPUs, NCCL with one GPU each where CUDA is available; default: %(default)s)")
    t.set_defaults(func=_train)

    x = verb("export", "compose trained steps into one k-step TorchScript model")
    x.add_argument("steps", nargs="+", help="step checkpoints, coarsest first")
    x.add_argument("-o", "--output", required=True, help="the k-step model file to write")
    x.add_argument("--name", default=None, help="model name (default: the parts' names joined by '+')")
    x.add_argument("--force", action="store_true", help="overwrite an existing output")
    x.set_defaults(func=_export)

    i = verb("info", "say which beads a model takes and what it gives, with its training summary")
    i.add_argument("model", help="model file (.pt)")
    i.add_argument("--json", action="store_true", help="print all the metadata as JSON (config, provenance ...)")
    i.set_defaults(func=_info)
    return p


def _one_line_warnings(verb):
    """A ``warnings.showwarning`` that prints ``openmm-backmap VERB: warning: MESSAGE``, one line, on stderr."""
    from tqdm import tqdm

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
        # tqdm.write puts the line above a progress bar that is being drawn, not into it
        tqdm.write(f"openmm-backmap {verb}: warning: {text}", file=sys.stderr)
    return show


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings(), command_line_spelling():  # both undone when the verb returns
        if not args.debug:
            warnings.showwarning = _one_line_warnings(args.verb)
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
