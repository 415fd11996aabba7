"""The step registry: a step kind (the ``kind`` key of configs and model metadata) -> its class."""

from __future__ import annotations

from ...structure import InputError

__all__ = ["STEP_KINDS", "register_step", "get_step_class"]

#: Registered step families by kind; filled by the :func:`register_step` decorators of the family modules.
STEP_KINDS: dict = {}


def register_step(kind: str):
    """Class decorator registering a step family under ``kind``.

    Examples
    --------
    >>> @register_step("ca2cg")  # doctest: +SKIP
    ... class CA2CG(torch.nn.Module):
    ...     def forward(self, x_nm, residue_types, segment_start, seed: int, temperature: float): ...
    """

    def wrap(cls):
        if kind in STEP_KINDS and STEP_KINDS[kind] is not cls:
            raise ValueError(f"step kind {kind!r} is already registered")
        STEP_KINDS[kind] = cls
        cls.kind = kind
        return cls

    return wrap


def get_step_class(kind: str):
    """Return the class registered for ``kind``.

    The built-in families register themselves when :mod:`openmm_backmap.model.steps` is imported.

    Examples
    --------
    >>> from openmm_backmap.model.steps import get_step_class
    >>> get_step_class("ca2aa").__name__
    'CA2AA'
    """
    try:
        return STEP_KINDS[kind]
    except KeyError:
        raise InputError(f"unknown step kind {kind!r}; known kinds: {sorted(STEP_KINDS)}") from None
