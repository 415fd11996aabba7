"""The canonical "protein ensemble": one protein at heavy-atom resolution."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .templates import AtomLayout, atom_layout, build_topology, residue_type_indices
from .errors import InputError

__all__ = ["ProteinEnsemble"]


@dataclass
class ProteinEnsemble:
    """Heavy-atom coordinates of one protein over many frames, in canonical order.

    Parameters
    ----------
    sequence : list of str
        Canonical three-letter residue names.
    xyz : ndarray, shape (F, A, 3), float32, nm
        Heavy-atom coordinates in canonical template order; NaN where missing.
    mask : ndarray, shape (F, A), bool
        True where an atom is present in the source.
    segment_start : ndarray, shape (R,), bool
        True where a residue starts a chain or follows a chain break.
    chain_ids : list of str
        Chain identifier of every residue.
    residue_numbers : list of int
        Residue numbers as read from the source.
    time_ps : ndarray, shape (F,), optional
        Simulation time of each frame in ps, when the source has it.
    source : str
        Where the data came from.

    Examples
    --------
    >>> import numpy as np
    >>> ens = ProteinEnsemble.from_arrays(['GLY', 'ALA'], np.zeros((1, 9, 3)))
    >>> ens.n_frames, ens.n_residues, ens.n_atoms
    (1, 2, 9)
    """

    sequence: list
    xyz: np.ndarray
    mask: np.ndarray
    segment_start: np.ndarray
    chain_ids: list
    residue_numbers: list
    time_ps: np.ndarray | None = None
    source: str = ""
    layout: AtomLayout = field(init=False, repr=False)

    def __post_init__(self):
        self.sequence = list(self.sequence)
        self.layout = atom_layout(self.sequence)
        self.xyz = np.asarray(self.xyz, dtype=np.float32)
        if self.xyz.ndim == 2:
            self.xyz = self.xyz[None]
        self.mask = np.asarray(self.mask, dtype=bool).reshape(self.xyz.shape[:2])
        self.segment_start = np.asarray(self.segment_start, dtype=bool)
        if self.xyz.shape[1:] != (self.layout.n_atoms, 3):
            raise InputError(f"xyz has shape {self.xyz.shape}; the sequence needs (frames, {self.layout.n_atoms}, 3)")
        if len(self.segment_start) != len(self.sequence):
            raise InputError("segment_start needs one entry per residue")

    @classmethod
    def from_arrays(cls, sequence, xyz, mask=None, segment_start=None, chain_ids=None, source=""):
        """Build an ensemble from canonical-order coordinates (nm)."""
        xyz = np.asarray(xyz, dtype=np.float32)
        if xyz.ndim == 2:
            xyz = xyz[None]
        n = len(sequence)
        if segment_start is None:
            segment_start = np.zeros(n, dtype=bool)
            segment_start[:1] = True
        if mask is None:
            mask = np.isfinite(xyz).all(-1)
        return cls(list(sequence), xyz, mask, segment_start,
                   list(chain_ids) if chain_ids is not None else ["A"] * n,
                   list(range(1, n + 1)), None, source)

    # --- sizes -------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return self.xyz.shape[0]

    @property
    def n_residues(self) -> int:
        return len(self.sequence)

    @property
    def n_atoms(self) -> int:
        return self.layout.n_atoms

    @property
    def residue_types(self) -> np.ndarray:
        """Integer residue types, shape (R,) (see :data:`~openmm_backmap.structure.templates.AMINO_ACIDS`)."""
        return residue_type_indices(self.sequence)

    @property
    def ca_xyz(self) -> np.ndarray:
        """C-alpha coordinates, shape (F, R, 3), nm (NaN where missing)."""
        return self.xyz[:, self.layout.ca_index]

    @property
    def ca_mask(self) -> np.ndarray:
        return self.mask[:, self.layout.ca_index]

    @property
    def complete(self) -> np.ndarray:
        """Per frame: True where every heavy atom is present."""
        return self.mask.all(axis=1)

    # --- conversion --------------------------------------------------------
    def topology(self):
        """mdtraj topology of the heavy atoms (bonds omitted across segment starts)."""
        return build_topology(self.sequence, self.segment_start, self.chain_ids, self.residue_numbers)

    def to_mdtraj(self):
        """Return an :class:`mdtraj.Trajectory`; missing atoms are NaN."""
        import mdtraj as md

        return md.Trajectory(self.xyz.copy(), self.topology(), time=self.time_ps)

    def select_frames(self, frames) -> "ProteinEnsemble":
        """A new ensemble with only ``frames`` (index array, slice or bool mask)."""
        time = None if self.time_ps is None else self.time_ps[frames]
        return ProteinEnsemble(self.sequence, self.xyz[frames], self.mask[frames], self.segment_start,
                               self.chain_ids, self.residue_numbers, time, self.source)

    @staticmethod
    def concatenate(ensembles) -> "ProteinEnsemble":
        """Stack frames of ensembles of the same sequence."""
        first = ensembles[0]
        for e in ensembles[1:]:
            if e.sequence != first.sequence:
                raise InputError(f"cannot concatenate {e.source!r}: its sequence differs from {first.source!r}")
        seg = np.logical_or.reduce([e.segment_start for e in ensembles])
        return ProteinEnsemble(first.sequence, np.concatenate([e.xyz for e in ensembles]),
                               np.concatenate([e.mask for e in ensembles]), seg, first.chain_ids,
                               first.residue_numbers, None, first.source)

    def __repr__(self):
        return (f"ProteinEnsemble({self.source or 'unnamed'!r}, frames={self.n_frames}, residues={self.n_residues}, "
                f"atoms={self.n_atoms}, segments={int(self.segment_start.sum())})")
