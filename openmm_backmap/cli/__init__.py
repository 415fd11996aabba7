"""Command-line interface: ``openmm-backmap <verb>`` (see :mod:`.verbs`)."""

from .verbs import build_parser, main

__all__ = ["build_parser", "main"]
