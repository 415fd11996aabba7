"""Step families: conditional generative modules p(finer | coarser).

Importing this package registers the built-in families (``ca2aa``,
``bead2aa``, ``cgvae``) in the step registry (:mod:`.registry`).
"""

from .bead2aa import BEAD_SCHEMES, Bead2AA, Bead2AAConfig, bead_table
from .ca2aa import CA2AA, CA2AAConfig
from .ca2aa_templates import ensemble_to_slots, fit_geometry
from .cgvae import CGVAE, CGVAEConfig, system_context
from .registry import STEP_KINDS, get_step_class, register_step

__all__ = ["STEP_KINDS", "register_step", "get_step_class", "CA2AA", "CA2AAConfig", "Bead2AA", "Bead2AAConfig", "BEAD_SCHEMES", "bead_table", "CGVAE", "CGVAEConfig",
           "system_context", "ensemble_to_slots", "fit_geometry"]
