"""Finding the bead scheme of CG particles from their names and positions.

Martini beads are told by their names (``BB``, ``SC1`` ...; Martini 2 from
Martini 3 by the side-chain beads of each residue type). One bead per
residue is either a C-alpha or a residue centre of mass, and the names do
not help (CALVADOS names its centre-of-mass beads ``CA``), so geometry
decides: consecutive true C-alpha atoms sit 3.80 Å apart (2.90 Å across a
cis peptide), centre-of-mass beads do not. The statistic is the median,
over all consecutive pairs within chains, of the distance's deviation from
the nearer of 3.80 and 2.90 Å:

- at most 0.30 Å: C-alpha beads (real structures give <= 0.03 Å, all-atom
  MD <= 0.08 Å, CG beads on soft 0.38 nm bonds about 0.12 Å);
- above 0.45 Å: not C-alphas, residue centres of mass (they give 0.65 Å
  and more on the 24 CASP targets);
- in between: the nearer of the two, marked unsure.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from ..structure import ANGSTROM_PER_NM, InputError, canonical_residue_name
from ..structure.constants import (CA_CA_CIS_NM, CA_CA_TRANS_NM, CA_SCHEME_MAX_DEVIATION_NM,
                                   COM_SCHEME_MIN_DEVIATION_NM, SCHEME_PAIR_MAX_NM)
from .martini_tables import MARTINI_BEADS

__all__ = ["SchemeGuess", "detect_scheme", "consecutive_deviation"]

_MARTINI_NAME = re.compile(r"^(BB|SC\d|SCD\d?)$")
_DUMMY_NAME = re.compile(r"^SCD\d?$")  # Martini 2 dummy charge beads of some set-ups (e.g. HADDOCK's)


class SchemeGuess(NamedTuple):
    """What :func:`detect_scheme` found.

    Attributes
    ----------
    scheme : str or None
        ``'ca'``, ``'com'``, ``'martini3'`` or ``'martini2'``; None when the
        input cannot tell (fewer than two consecutive beads).
    evidence : str
        Why, with the numbers, for messages.
    certain : bool
        False where the numbers sit between the limits of the two verdicts.
    """

    scheme: str | None
    evidence: str
    certain: bool


def consecutive_deviation(xyz, segment_start=None):
    """Deviation of consecutive bead distances from a C-alpha spacing, and the pairs it covers.

    Parameters
    ----------
    xyz : array, (N, 3) or (F, N, 3), nm
        One bead per residue, in chain order.
    segment_start : array of bool, (N,), optional
        True where a chain starts (a pair across it is not counted).

    Returns
    -------
    median_nm : float
        Median over all pairs (and frames) of ``min(|d - 0.380|, |d - 0.290|)``;
        NaN without pairs. Pairs over 0.8 nm apart (chain breaks) are left out.
    within : float
        Fraction of pairs with ``|d - 0.380| <= 0.005`` nm.
    n_pairs : int

    Examples
    --------
    >>> import numpy as np
    >>> x = np.cumsum(np.full((5, 3), 0.38 / np.sqrt(3)), axis=0)
    >>> m, f, n = consecutive_deviation(x); round(m, 6), f, n
    (0.0, 1.0, 4)
    """
    x = np.asarray(xyz, dtype=np.float64)
    x = x[None] if x.ndim == 2 else x
    d = np.linalg.norm(np.diff(x, axis=1), axis=-1)
    if segment_start is not None:
        d = d[:, ~np.asarray(segment_start, dtype=bool)[1:]]
    d = d[np.isfinite(d) & (d <= SCHEME_PAIR_MAX_NM)]
    if d.size == 0:
        return float("nan"), float("nan"), 0
    dev = np.minimum(np.abs(d - CA_CA_TRANS_NM), np.abs(d - CA_CA_CIS_NM))
    return float(np.median(dev)), float(np.mean(np.abs(d - CA_CA_TRANS_NM) <= 0.005)), int(d.size)


def _geometry_guess(xyz, segment_start):
    med, within, n = consecutive_deviation(xyz, segment_start)
    if n == 0:
        return SchemeGuess(None, "fewer than two consecutive beads: cannot tell C-alpha from centre-of-mass beads",
                           False)
    a = ANGSTROM_PER_NM
    numbers = (f"consecutive beads deviate from the C-alpha spacing (3.80 Å, 2.90 Å for cis) by {med * a:.2f} Å "
               f"(median over {n} pairs; {within:.0%} within 3.80 ± 0.05 Å)")
    if med <= CA_SCHEME_MAX_DEVIATION_NM:
        return SchemeGuess("ca", f"{numbers}; C-alpha beads give <= {CA_SCHEME_MAX_DEVIATION_NM * a:.2f} Å", True)
    if med > COM_SCHEME_MIN_DEVIATION_NM:
        return SchemeGuess("com", f"{numbers}; C-alpha beads give <= {CA_SCHEME_MAX_DEVIATION_NM * a:.2f} Å, "
                                  f"residue centres of mass > {COM_SCHEME_MIN_DEVIATION_NM * a:.2f} Å", True)
    middle = (CA_SCHEME_MAX_DEVIATION_NM + COM_SCHEME_MIN_DEVIATION_NM) / 2
    scheme = "ca" if med <= middle else "com"
    return SchemeGuess(scheme, f"{numbers}: between the C-alpha limit ({CA_SCHEME_MAX_DEVIATION_NM * a:.2f} Å) and "
                               f"the centre-of-mass limit ({COM_SCHEME_MIN_DEVIATION_NM * a:.2f} Å), unsure", False)


def _martini_guess(names, residue_names, residue_index):
    if residue_names is None or residue_index is None:
        return SchemeGuess("martini3", "Martini bead names (BB, SC1 ...); no residues given to tell Martini 2 from 3",
                           False)
    if any(_DUMMY_NAME.match(n) for n in names):
        return SchemeGuess("martini2", "Martini bead names with SCD dummy charge beads (Martini 2 set-ups)", True)
    beads = {}
    for name, res, key in zip(names, residue_names, residue_index):
        beads.setdefault(int(key), [canonical_residue_name(str(res)) or res, []])[1].append(name)
    fits = {}
    for scheme, table in MARTINI_BEADS.items():
        fits[scheme] = sum(tuple(b) == tuple(n for n, _ in table[res]) for res, b in beads.values() if res in table)
    best = max(fits, key=fits.get)
    other = next(s for s in fits if s != best)
    evidence = (f"Martini bead names (BB, SC1 ...); the beads of {fits[best]} of {len(beads)} residues are "
                f"{best}'s, of {fits[other]} {other}'s")
    return SchemeGuess(best, evidence, fits[best] > fits[other])


def detect_scheme(names, xyz=None, residue_names=None, residue_index=None, segment_start=None) -> SchemeGuess:
    """The bead scheme of CG particles: Martini by bead names, C-alpha or centre of mass by geometry.

    Parameters
    ----------
    names : sequence of str
        Particle (atom) names.
    xyz : array, (N, 3) or (F, N, 3), nm, optional
        Particle positions; needed to tell C-alpha from centre-of-mass beads.
    residue_names, residue_index : sequence, optional
        Residue name and residue (any hashable int key) of every particle;
        used to tell Martini 2 from Martini 3 by the beads of each residue.
    segment_start : array of bool, (N,), optional
        True where a chain starts (one bead per residue).

    Returns
    -------
    SchemeGuess
        ``(scheme, evidence, certain)``.

    Raises
    ------
    ValueError
        If ``xyz`` does not match ``names``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.cumsum(np.tile([[0.38, 0.0, 0.0], [0.0, 0.38, 0.0]], (5, 1)), axis=0)
    >>> detect_scheme(['CA'] * 10, x).scheme
    'ca'
    >>> detect_scheme(['CA'] * 10, x * 1.2).scheme
    'com'
    >>> detect_scheme(['BB', 'SC1', 'BB'], None, ['ALA', 'ALA', 'GLY'], [0, 0, 1]).scheme
    'martini3'
    """
    names = [str(n).strip().upper() for n in names]
    if "BB" in names:  # other particles (W, ions, Go sites) may ride along; the protein's beads decide
        keep = [i for i, n in enumerate(names) if _MARTINI_NAME.match(n)]
        pick = (lambda v: None if v is None else [v[i] for i in keep])
        return _martini_guess(pick(names), pick(residue_names), pick(residue_index))
    if xyz is None:
        return SchemeGuess(None, "no positions given: cannot tell C-alpha from centre-of-mass beads", False)
    x = np.asarray(xyz)
    if x.shape[-2:] != (len(names), 3):
        raise InputError(f"detect_scheme: {len(names)} names but positions of shape {x.shape}")
    return _geometry_guess(x, segment_start)
