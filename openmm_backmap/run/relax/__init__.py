"""Restrained minimisation of backmapped structures: the per-frame :class:`Relaxer` and the force-field
systems it builds once per topology (:mod:`.systems`)."""

from .relaxer import DEFAULT_K, STAGED_ENERGY_KJ_MOL, Relaxer, RelaxResult
from .systems import DEFAULT_FORCEFIELD, ForceFieldSystem, build_force_field_system, place_oxt, reference_bond_lengths

__all__ = ["Relaxer", "RelaxResult", "ForceFieldSystem", "build_force_field_system", "reference_bond_lengths",
           "place_oxt", "DEFAULT_K", "DEFAULT_FORCEFIELD", "STAGED_ENERGY_KJ_MOL"]
