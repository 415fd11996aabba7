"""Mapping layer: resolution operators between levels of a coarse-graining hierarchy.

``operators`` holds :class:`Mapping`, :class:`Hierarchy` and their JSON
format; ``partition`` groups C-alphas into compact ultra-coarse beads;
``levels`` parses level lists, builds hierarchies for an ensemble and
coarsens it. Depends on the structure layer only.
"""

from .levels import LevelSpec, build_hierarchy, cg_topology, coarsen, parse_levels
from .hierarchy import Hierarchy
from .operators import Mapping, ca_mapping
from .partition import partition_cost, partition_mapping

__all__ = ["Mapping", "Hierarchy", "ca_mapping", "partition_mapping", "partition_cost", "LevelSpec",
           "parse_levels", "build_hierarchy", "cg_topology", "coarsen"]
