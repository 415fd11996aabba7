"""Reference-free checks of the structures a :class:`~.pipeline.BackmapPipeline` writes: accumulated for its summary,
and warned about once per kind.

Per structure, before and (with relaxation) after minimisation:

* clashes and bonds within 10 % of the force field's equilibrium lengths
  (:func:`~openmm_backmap.evaluation.quality.frame_quality`); a written
  structure with fewer than ``BROKEN_OUTPUT_BOND_OK_PERCENT`` of its bonds
  right is broken (:class:`OutputQualityWarning`);
* D residues and cis peptide bonds before a residue other than proline
  (:func:`~openmm_backmap.evaluation.quality.stereo_defects`), which keep
  every bond length and so pass the checks above
  (:class:`StereochemistryWarning`).
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from ..evaluation.quality import frame_quality, stereo_defects
from ..structure import atom_layout
from ..structure.constants import BROKEN_OUTPUT_BOND_OK_PERCENT
from .relax.systems import reference_bond_lengths

__all__ = ["OutputChecks", "OutputQualityWarning", "StereochemistryWarning", "STAT_KEYS"]

#: Per-structure figures a pipeline collects (``_before``: as backmapped; ``_after``: relaxed); ``..._named``: per
#: chunk, the (index, residues) of the first structure with a D residue or a cis peptide, for the warning (counts
#: alone keep the memory of a long run flat).
STAT_KEYS = tuple(f"{name}_{when}" for when in ("before", "after")
                  for name in ("clash", "bond_ok", "energy", "d_residues", "cis_peptides", "d_residues_named",
                               "cis_peptides_named"))


class OutputQualityWarning(UserWarning):
    """A written structure fails the reference-free bond check badly (fewer than
    ``BROKEN_OUTPUT_BOND_OK_PERCENT`` of its bonds within 10 % of their length): the model is wrong for these beads."""


class StereochemistryWarning(UserWarning):
    """A written structure has a D residue, or a cis peptide bond before a residue other than proline (about 0.03 %
    of such bonds in crystal structures): both pass the clash and bond checks."""


class OutputChecks:
    """The quality checks of one pipeline's structures.

    Parameters
    ----------
    sequence : list of str
    segment_start : array of bool
    forcefield : str or list of str
        Whose equilibrium bond lengths the bond check uses.

    Attributes
    ----------
    structures_broken, structures_d, structures_cis : int
        Written structures that failed the bond check badly, that have a D residue, and that have a cis peptide bond
        before a residue other than proline.

    Examples
    --------
    >>> checks = OutputChecks(seq, seg, 'amber14-all.xml')  # doctest: +SKIP
    >>> stats = {k: [] for k in STAT_KEYS}; checks.record('before', xyz, stats)  # doctest: +SKIP
    """

    def __init__(self, sequence, segment_start, forcefield):
        self.sequence = list(sequence)
        self.segment_start = segment_start
        self.forcefield = forcefield
        self._bond_lengths = None
        self.structures_broken = self.structures_d = self.structures_cis = 0

    def _reference_lengths(self, xyz):
        """The force field's bond lengths, from the first finite frame of ``xyz`` (its System needs hydrogens)."""
        finite = np.flatnonzero(np.isfinite(xyz).all(axis=(1, 2)))
        if self._bond_lengths is None and len(finite):
            try:
                self._bond_lengths = reference_bond_lengths(self.sequence, self.segment_start, xyz[finite[0]],
                                                            self.forcefield)
            except ValueError as err:  # no template, e.g. for a one-residue segment (a lone amino acid)
                warnings.warn(f"bond check skipped (bond_ok is not reported): the force field has no template for "
                              f"this topology ({str(err).splitlines()[0][:160]})", UserWarning, stacklevel=4)
                n_bonds = len(atom_layout(self.sequence).bonds(self.segment_start))
                self._bond_lengths = np.full(n_bonds, np.nan)
        return self._bond_lengths

    def record(self, when, xyz, stats) -> float:
        """Check heavy-atom frames ``xyz`` (F, A, 3, nm) and add the figures to ``stats`` under ``'..._' + when``
        (``'before'`` or ``'after'``); returns the seconds taken."""
        t0 = time.perf_counter()
        clash, bond_ok = frame_quality(xyz, self.sequence, self.segment_start, self._reference_lengths(xyz))
        d, cis = stereo_defects(xyz, self.sequence, self.segment_start)
        stats[f"clash_{when}"] += clash.tolist()
        stats[f"bond_ok_{when}"] += bond_ok.tolist()
        for key, found in (("d_residues", d), ("cis_peptides", cis)):
            counts = found.sum(axis=1)
            stats[f"{key}_{when}"] += counts.tolist()
            if counts.any():
                j = int(np.argmax(counts > 0))
                stats[f"{key}_named_{when}"].append((j, np.flatnonzero(found[j]).tolist()))
        return time.perf_counter() - t0

    def check_written(self, stats, first, minimized):
        """Warn (once per kind) about written structures ``first, first + 1, ...`` whose ``stats`` fail a check,
        and count them."""
        when = "after" if minimized else "before"
        ok = np.asarray(stats.get(f"bond_ok_{when}", []), dtype=float)
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(ok < BROKEN_OUTPUT_BOND_OK_PERCENT)
        if len(bad) and not self.structures_broken:
            warnings.warn(f"structure {first + int(bad[0])} has only {ok[bad[0]]:.1f} % of its bonds within 10 % of "
                          f"the force field's length (under {BROKEN_OUTPUT_BOND_OK_PERCENT:g} %): the model's output "
                          "is broken for these beads (a model for other beads, or other units?); the summary counts "
                          "such structures", OutputQualityWarning, stacklevel=5)
        self.structures_broken += len(bad)
        for key, attr, what, why in (
                ("d_residues", "structures_d", "D residue(s)", "a mirror-image side chain, which passes the clash "
                 "and bond checks"),
                ("cis_peptides", "structures_cis", "a cis peptide bond before residue(s)", "not a proline: real in "
                 "some proteins (about 0.03 % of such bonds; 6 of the 24 CASP targets have one) and a model error "
                 "in others, so check it")):
            n_found = int(np.count_nonzero(stats.get(f"{key}_{when}", [])))
            if n_found and not getattr(self, attr):
                j, residues = stats[f"{key}_named_{when}"][0]
                names = ", ".join(f"{self.sequence[r]}{r + 1}" for r in residues[:5])
                warnings.warn(f"structure {first + j} has {what} {names}{' ...' if len(residues) > 5 else ''}: "
                              f"{why}; the summary counts such structures", StereochemistryWarning, stacklevel=5)
            setattr(self, attr, getattr(self, attr) + n_found)
