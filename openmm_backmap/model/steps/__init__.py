"""Step families: conditional generative modules p(finer | coarser).

A registry maps a step kind (the ``kind`` key of configs and model metadata)
to its class; :func:`register_step` adds one.
"""

from __future__ import annotations
from ...structure.errors import InputError

STEP_KINDS: dict = {}

__all__ = ["STEP_KINDS", "register_step", "get_step_class"]


def register_step(kind: str):
    """Class decorator registering a step family under ``kind``."""

    def wrap(cls):
        if kind in STEP_KINDS and STEP_KINDS[kind] is not cls:
            raise ValueError(f"step kind {kind!r} is already registered")
        STEP_KINDS[kind] = cls
        cls.kind = kind
        return cls

    return wrap


def get_step_class(kind: str):
    """Return the class registered for ``kind``."""
    _load_builtin()
    try:
        return STEP_KINDS[kind]
    except KeyError:
        raise InputError(f"unknown step kind {kind!r}; known kinds: {sorted(STEP_KINDS)}") from None


def _load_builtin():
    from . import ca2aa  # noqa: F401
    try:
        from . import cgvae  # noqa: F401
    except ImportError:  # pragma: no cover - optional until written
        pass
