"""How many structures one model call may hold: batches sized from a memory budget.

Memory of a backmapping run is dominated by the model's forward pass, which
grows with the structures in one call (CG frames times samples) and the
residues of each. :func:`forward_bytes` estimates it with the cost model in
:mod:`openmm_backmap.structure.constants` (``FORWARD_BYTES_*``, measured on
the shipped model), and :func:`structures_per_call` gives the most structures
whose estimate fits a budget. The result depends on the budget and the system
size only, never on the memory free at run time, so the batches, and with
them the sampled structures, depend on the options alone.
"""

from __future__ import annotations

from ..structure import InputError
from ..structure.errors import option_name
from ..structure.constants import (BYTES_PER_MB, FORWARD_BYTES_FIXED, FORWARD_BYTES_PER_RESIDUE,
                                   FORWARD_BYTES_PER_RESIDUE_SQUARED)

__all__ = ["forward_bytes", "structures_per_call", "frames_per_call"]


def forward_bytes(n_residues: int, structures: int) -> int:
    """Estimated peak working memory (bytes) of one model call.

    Parameters
    ----------
    n_residues : int
        Residues of one structure.
    structures : int
        Structures in the call (CG frames times samples).

    Examples
    --------
    >>> forward_bytes(3000, 1) / 2**20 > 300  # MB for one structure of 3000 residues
    True
    >>> forward_bytes(100, 4) < forward_bytes(100, 8)
    True
    """
    r = int(n_residues)
    return FORWARD_BYTES_FIXED + int(structures) * (FORWARD_BYTES_PER_RESIDUE * r
                                                    + FORWARD_BYTES_PER_RESIDUE_SQUARED * r * r)


def structures_per_call(n_residues: int, max_memory_mb: float) -> int:
    """The most structures of ``n_residues`` residues whose :func:`forward_bytes` fits ``max_memory_mb``.

    Raises
    ------
    InputError
        Not even one structure fits the budget.

    Examples
    --------
    >>> structures_per_call(100, 2048)
    137
    >>> structures_per_call(3000, 256)
    Traceback (most recent call last):
    ...
    openmm_backmap.structure.errors.InputError: one structure of 3000 residues needs about 562 MB for the model, ...
    """
    budget = float(max_memory_mb) * BYTES_PER_MB
    one = forward_bytes(n_residues, 1) - FORWARD_BYTES_FIXED
    n = int((budget - FORWARD_BYTES_FIXED) // one) if one > 0 else 0
    if n < 1:
        need = forward_bytes(n_residues, 1) / BYTES_PER_MB
        raise InputError(f"one structure of {int(n_residues)} residues needs about {need:.0f} MB for the model, more "
                         f"than the memory budget of {float(max_memory_mb):g} MB; raise it with "
                         f"{option_name('--max-memory', 'max_memory_mb= (the reporter: maxMemory=)')}")
    return n


def frames_per_call(n_residues: int, samples: int, max_memory_mb: float) -> int:
    """CG frames in one model call: every sample of a frame in one call while they fit, else one frame.

    With one frame per call and more samples than :func:`structures_per_call`,
    the samples of that frame are split over several calls.

    Examples
    --------
    >>> frames_per_call(100, 2, 2048)
    68
    >>> frames_per_call(3000, 8, 2048)
    1
    """
    return max(1, structures_per_call(n_residues, max_memory_mb) // int(samples))
