"""Relaxation of backmapped structures: the fast batched clash repair (:class:`FastRelaxer`, the default), the
OpenMM force-field minimisation (:class:`Relaxer`), the force-field systems it builds once per topology
(:mod:`.systems`), and the hand-off of relaxed structures to other engines (:mod:`.handoff`)."""

from .fast import CONTACT_NM, FastRelaxer
from .handoff import AMBER_RADII, GRO_PADDING_NM, GROMACS_SOLVENT_FORCEFIELD, export_paths, export_system
from .relaxer import (DEFAULT_K, STAGED_ENERGY_KJ_MOL, Relaxer, RelaxResult, broken_bond_message,
                      inverted_centres_message)
from .systems import (DEFAULT_FORCEFIELD, ForceFieldSystem, build_force_field_system, hydrogen_collapse, place_oxt,
                      reference_bond_lengths)

__all__ = ["FastRelaxer", "Relaxer", "RelaxResult", "ForceFieldSystem", "build_force_field_system",
           "reference_bond_lengths", "hydrogen_collapse", "place_oxt", "broken_bond_message", "inverted_centres_message", "DEFAULT_K", "DEFAULT_FORCEFIELD",
           "STAGED_ENERGY_KJ_MOL", "CONTACT_NM", "export_system", "export_paths", "AMBER_RADII", "GRO_PADDING_NM",
           "GROMACS_SOLVENT_FORCEFIELD"]
