"""Structure layer: residue templates, the ensemble type, segments, units and errors.

Depends on numpy, scipy and mdtraj only; every other layer builds on it.
"""

from .constants import ANGSTROM_PER_NM
from .disulfides import disulfide_bonds
from .ensemble import ProteinEnsemble
from .errors import InputError, LoadWarning, MissingFileError, OutputExistsError, OutputWriteError, UserError
from .periodic import make_whole
from .segments import detect_segment_starts, segment_starts_from_distances, torn_frames
from .templates import (AMINO_ACIDS, MODIFIED_RESIDUES, SYMMETRIC_ATOM_PAIRS, TEMPLATES, AtomLayout, atom_layout,
                        build_topology, canonical_atom_name, canonical_residue_name, chiral_centres,
                        chirality_volumes, place_oxt,
                        residue_type_indices, warn_modified_residues)

__all__ = ["ANGSTROM_PER_NM", "ProteinEnsemble", "UserError", "InputError", "MissingFileError", "OutputExistsError",
           "OutputWriteError", "LoadWarning", "make_whole", "detect_segment_starts", "segment_starts_from_distances", "torn_frames", "AMINO_ACIDS",
           "SYMMETRIC_ATOM_PAIRS", "TEMPLATES", "AtomLayout", "atom_layout", "build_topology", "canonical_atom_name", "canonical_residue_name",
           "residue_type_indices", "MODIFIED_RESIDUES", "warn_modified_residues", "disulfide_bonds", "place_oxt",
           "chiral_centres", "chirality_volumes"]
