"""Evaluation layer: how close generated all-atom structures are to a reference.

Uses ``structure`` and ``io`` only; nothing here depends on a model.

* :mod:`.metrics`: per-frame RMSD, symmetry-corrected RMSD, graph edit
  distance, clashes and bond lengths (Å and percent), and frame pairing;
* :mod:`.bonds`: bond graphs inferred from distances;
* :mod:`.torsions`: backbone and side-chain torsions (degrees) and KL and
  Jensen-Shannon divergences of their histograms;
* :mod:`.ensemble`: ensembles compared as distributions, frames need not
  correspond (torsion histograms, DSSP propensities, radius of gyration);
* :mod:`.plots`: Ramachandran and structure figures (needs matplotlib);
* :mod:`.quality`: reference-free checks of one frame (bond lengths, clashes);
* :mod:`.reports`: :func:`evaluate` of whole ensembles or files, as a table or JSON.
"""

from .bonds import bond_graph, bond_ok_failures
from .ensemble import ensemble_metrics
from .metrics import bond_ok, clash, clash_topology, clashing_residues, ged, pair_frames, rmsd, rmsd_sym, \
    symmetry_corrected
from .quality import frame_quality
from .plots import ramachandran_plot, structure_plot
from .reports import evaluate, evaluate_files, format_table
from .torsions import backbone_dihedrals_deg, chi_dihedrals_deg, dihedral_deg, js_divergence, kl_divergence

__all__ = ["pair_frames", "rmsd", "rmsd_sym", "symmetry_corrected", "bond_graph", "bond_ok_failures", "ged", "clash", "clash_topology",
           "clashing_residues", "bond_ok", "dihedral_deg", "backbone_dihedrals_deg", "chi_dihedrals_deg",
           "kl_divergence", "js_divergence", "ensemble_metrics", "frame_quality", "ramachandran_plot", "structure_plot", "evaluate", "evaluate_files", "format_table"]
