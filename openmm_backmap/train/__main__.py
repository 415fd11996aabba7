"""``python -m openmm_backmap.train CONFIG``: one rank of a training run, for ``torchrun``.

``torchrun --nproc_per_node N -m openmm_backmap.train CONFIG [--resume] [--force] [--set KEY=VALUE]``
trains with N data-parallel processes (see :mod:`.distributed`); without
torchrun it is an ordinary single-process run. ``openmm-backmap train
CONFIG --nproc N`` does the same without torchrun.
"""

from __future__ import annotations

import argparse
import sys

from ..structure import UserError
from ..structure.errors import command_line_spelling
from .launch import run_rank


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m openmm_backmap.train`` (also checked against the docs' examples)."""
    p = argparse.ArgumentParser(prog="python -m openmm_backmap.train", description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("-o", "--output", help="run directory (default: from the config)")
    p.add_argument("--resume", action="store_true", help="resume from the run directory's checkpoint")
    p.add_argument("--force", action="store_true",
                   help="overwrite an existing model file at the config's output and an earlier run's files in "
                   "the run directory")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.max_steps=2 (repeatable)")
    return p


def main(argv=None) -> int:
    """Run this process's rank of the training given on the command line; 2 on a user's mistake.

    Examples
    --------
    >>> main(["examples/configs/ca2aa.yaml", "--set", "optim.max_steps=5"])  # doctest: +SKIP
    0
    """
    p = build_parser()
    args = p.parse_args(argv)
    try:
        with command_line_spelling():
            run_rank(args.config, output_dir=args.output, resume=args.resume, overrides=args.set, force=args.force)
    except UserError as err:
        print(f"openmm_backmap.train: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
