"""Mapping layer: resolution operators between levels of a coarse-graining hierarchy.

``operators`` holds :class:`Mapping`, :class:`Hierarchy` and their JSON
format; ``partition`` groups C-alphas into compact ultra-coarse beads;
``schemes`` holds the bead schemes CG models use (C-alpha, residue centre
of mass, Martini 3 and 2; tables in ``martini_tables``); ``detection``
finds the scheme of CG particles; ``levels`` parses level lists, builds
hierarchies for an ensemble and coarsens it. Depends on the structure
layer only.
"""

from .detection import SchemeGuess, consecutive_deviation, detect_scheme
from .levels import LevelSpec, build_hierarchies, build_hierarchy, cg_topology, coarsen, parse_levels
from .hierarchy import Hierarchy
from .operators import Mapping, ca_mapping
from .partition import partition_cost, partition_mapping
from .schemes import ATOM_GROUP_SCHEMES, SCHEMES, bead_residues, com_mapping, martini_mapping, scheme_mapping

__all__ = ["Mapping", "Hierarchy", "ca_mapping", "partition_mapping", "partition_cost", "LevelSpec",
           "parse_levels", "build_hierarchy", "build_hierarchies", "cg_topology", "coarsen", "SCHEMES",
           "ATOM_GROUP_SCHEMES", "com_mapping", "martini_mapping", "scheme_mapping", "bead_residues",
           "SchemeGuess", "detect_scheme", "consecutive_deviation"]
