"""Chains and chain breaks of CG input: one decision, from the best evidence present.

Both front ends (the reporter on a ``Simulation``, ``convert`` on files) find
the chains of the CG beads here, so the same frame gives the same structure
either way. The evidence, strongest first:

1. **bonds** between the chain beads of consecutive residues (the bead
   itself; ``BB`` for Martini): the topology's bonds together with the
   ``System``'s bonds and constraints (:func:`system_bonds`; the reporter has
   the ``System``). Engines keep them in different places: martini_openmm
   declares many Martini 3 ``BB``-``BB`` pairs as constraints and leaves them
   out of its ``Topology``; CALVADOS puts every chain bond in a
   ``HarmonicBondForce`` and none in its ``Topology``. Where any consecutive
   pair is bonded, a pair that is not is a break.
2. **records**: a new chain of the topology (chain IDs, ``TER`` records),
   always; and, without bonds, a jump in residue numbering (missing residues).
3. **geometry**, only where neither says: consecutive chain beads farther
   apart than the scheme's limit (:data:`~openmm_backmap.structure.constants.SCHEME_BREAK_NM`,
   measured on the corpus). Such breaks are reported, naming the residues.

The pattern is decided once, on the first frame; :class:`BreakMonitor`
reports frames whose distances disagree with it later (a chain stretched
past the limit, a geometric break closed), and never re-segments.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..structure import InputError, LoadWarning
from ..structure.constants import BEAD_SPACING_RANGE_NM, BREAK_MONITOR_MARGIN_NM, SCHEME_BREAK_NM, SCHEME_DOUBT_NM

__all__ = ["ChainBreaks", "BreakMonitor", "ChainBreakWarning", "check_bead_spacing", "find_chain_breaks",
           "system_bonds"]


class ChainBreakWarning(LoadWarning):
    """Chain breaks found from bead distances alone, or a frame whose distances disagree with the breaks."""


@dataclass(frozen=True)
class ChainBreaks:
    """Where the chains of CG input start and break, and on what evidence.

    Attributes
    ----------
    segment_start : ndarray of bool, (R,)
        True where a residue starts a chain or follows a break.
    evidence : {'bonds', 'records', 'geometry'}
        The strongest evidence that decided breaks within chains: bonds
        (topology or ``System``), residue numbering, or distances alone.
    geometric : tuple of int
        Residues whose break was declared from distances alone.
    numbered : tuple of int
        Residues whose break comes from a jump in residue numbering.
    doubtful : tuple of int
        Residues kept joined to the previous one on distances alone, although farther apart than the corpus's
        99.99th percentile (:data:`~openmm_backmap.structure.constants.SCHEME_DOUBT_NM`): a gap may hide there.
    threshold_nm : float
        The scheme's break distance (also what :class:`BreakMonitor` checks).
    chain_bead : ndarray of int, (R,)
        The chain bead of every residue (index into the beads as the model takes them).
    labels : tuple of str
        Residue labels for messages (``'LYS 12 (A)'``).
    distance_nm : ndarray, (R - 1,), nm
        Distances between consecutive chain beads on the frame the breaks were decided on (NaN unknown).

    Examples
    --------
    >>> b = find_chain_breaks([0, 1, 2], [0, 0, 0], [1, 2, 3], None, [[0, 0, 0], [0.4, 0, 0], [2, 0, 0]], 'com')
    >>> b.segment_start.tolist(), b.evidence, b.geometric
    ([True, False, True], 'geometry', (2,))
    """

    segment_start: np.ndarray
    evidence: str
    geometric: tuple = ()
    numbered: tuple = ()
    doubtful: tuple = ()
    threshold_nm: float = SCHEME_BREAK_NM["ca"]
    chain_bead: np.ndarray = field(default=None, repr=False)
    labels: tuple = field(default=(), repr=False)
    distance_nm: np.ndarray = field(default=None, repr=False)

    @property
    def n_segments(self) -> int:
        return int(np.sum(self.segment_start))

    def summary(self) -> dict:
        """``segments``, ``break_evidence``, ``breaks_from_geometry``, ``breaks_from_numbering``, ``doubtful_joins``
        for run summaries."""
        return {"segments": self.n_segments, "break_evidence": self.evidence,
                "breaks_from_geometry": len(self.geometric), "breaks_from_numbering": len(self.numbered),
                "doubtful_joins": len(self.doubtful)}


def system_bonds(system) -> np.ndarray:
    """Particle pairs joined in an OpenMM ``System``: its constraints and the terms of its two-particle bond forces.

    Parameters
    ----------
    system : openmm.System

    Returns
    -------
    ndarray of int, (n, 2)

    Examples
    --------
    >>> import openmm
    >>> s = openmm.System(); _ = [s.addParticle(1.0) for _ in range(3)]
    >>> _ = s.addConstraint(0, 1, 0.35)
    >>> f = openmm.HarmonicBondForce(); _ = f.addBond(1, 2, 0.38, 1000.0); _ = s.addForce(f)
    >>> system_bonds(s).tolist()
    [[0, 1], [1, 2]]
    """
    pairs = [system.getConstraintParameters(k)[:2] for k in range(system.getNumConstraints())]
    for force in system.getForces():
        # HarmonicBondForce, CustomBondForce, ... (a CustomCompoundBondForce joins groups, not a chain)
        if hasattr(force, "getNumBonds") and hasattr(force, "getBondParameters"):
            for k in range(force.getNumBonds()):
                p = force.getBondParameters(k)
                if isinstance(p[0], int) and isinstance(p[1], int):
                    pairs.append((p[0], p[1]))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def check_bead_spacing(chain_bead, chain_index, xyz, where=""):
    """Raise InputError when consecutive chain beads are not spaced as a protein's residues are (wrong units).

    The median distance between the chain beads of consecutive residues of one chain is 0.33-0.47 nm for every
    scheme; ten times less or more means coordinates in the wrong unit (nm written where Å belong, or the
    reverse), which no model can backmap. Fewer than three pairs say nothing.

    Examples
    --------
    >>> x = np.outer(np.arange(5) * 0.038, [1.0, 0, 0])  # C-alphas written in nm where Å belong
    >>> check_bead_spacing(np.arange(5), np.zeros(5), x)
    Traceback (most recent call last):
    ...
    openmm_backmap.structure.errors.InputError: consecutive residues' beads are 0.038 nm apart ...
    """
    rep = np.asarray(chain_bead, dtype=np.int64)
    chain = np.asarray(chain_index)
    if len(rep) < 2:
        return
    same = chain[1:] == chain[:-1]
    x = np.asarray(xyz, dtype=np.float64)[rep]
    d = np.linalg.norm(np.diff(x, axis=0), axis=1)[same]
    d = d[np.isfinite(d)]
    if len(d) < 3:
        return
    med = float(np.median(d))
    low, high = BEAD_SPACING_RANGE_NM
    if low <= med <= high:
        return
    why = ("about 10 times too small: nm written where Å belong?" if med < low else
           "about 10 times too large: Å read as nm?")
    raise InputError(f"{where}consecutive residues' beads are {med:.3g} nm apart (median over {len(d)} pairs), "
                     f"where a protein's are 0.33-0.47 nm; the coordinates look {why} Fix the units of the input")


def find_chain_breaks(chain_bead, chain_index, residue_numbers, bonds, xyz, scheme, labels=None,
                      where="") -> ChainBreaks:
    """Decide where the chains of CG input start and break (see the module docstring).

    Parameters
    ----------
    chain_bead : sequence of int, (R,)
        The chain bead of every residue (index into ``xyz``).
    chain_index : sequence of int, (R,)
        The topology chain of every residue.
    residue_numbers : sequence of int, (R,), optional
        Residue numbers as the topology or file gives them.
    bonds : array of int, (n, 2), optional
        Pairs of bonded particles (topology and ``System``), indices into ``xyz``.
    xyz : array, (N, 3), nm, optional
        One frame, molecules whole (without it, no break is found from distances).
    scheme : str
        The bead scheme (``'ca'``, ``'com'``, ``'martini3'``, ``'martini2'``): the break distance.
    labels : sequence of str, (R,), optional
        Residue labels for the warning.
    where : str
        Prefix of the warning (e.g. the file).

    Returns
    -------
    ChainBreaks
    """
    rep = np.asarray(chain_bead, dtype=np.int64)
    n = len(rep)
    chain = np.asarray(chain_index)
    thr = SCHEME_BREAK_NM.get(scheme or "ca", SCHEME_BREAK_NM["ca"])
    labels = tuple(labels) if labels is not None else tuple(f"residue {k + 1}" for k in range(n))
    seg = np.ones(n, dtype=bool)
    if n == 0:
        return ChainBreaks(seg, "records", threshold_nm=thr, chain_bead=rep, labels=labels, distance_nm=np.zeros(0))
    same = chain[1:] == chain[:-1]
    seg[1:] = ~same
    d = (np.full(n - 1, np.nan) if xyz is None else
         np.linalg.norm(np.diff(np.asarray(xyz, dtype=np.float64)[rep], axis=0), axis=1))
    bonded = None
    if bonds is not None and len(bonds):
        b = np.asarray(bonds, dtype=np.int64)
        pairs = {(min(i, j), max(i, j)) for i, j in b.tolist()}
        bonded = np.array([(min(i, j), max(i, j)) in pairs for i, j in zip(rep[:-1], rep[1:])], dtype=bool)
        if not (bonded & same).any():
            bonded = None  # bonds, but none along the chains (e.g. only side chains): no evidence for breaks
    if bonded is not None:
        seg[1:] |= same & ~bonded
        return ChainBreaks(seg, "bonds", threshold_nm=thr, chain_bead=rep, labels=labels, distance_nm=d)
    numbered = np.zeros(n, dtype=bool)
    if residue_numbers is not None:
        num = np.asarray(residue_numbers, dtype=np.int64)
        step = np.diff(num)
        numbered[1:] = same & (step != 0) & (step != 1)  # 0: insertion codes (52, 52A)
    with np.errstate(invalid="ignore"):
        far = np.r_[False, same & (d > thr)]
        doubt = np.r_[False, same & ~far[1:] & (d > SCHEME_DOUBT_NM.get(scheme, np.inf))]
    geometric = far & ~numbered
    seg |= numbered | geometric
    doubt &= ~seg
    evidence = "geometry" if geometric.any() else "records"
    out = ChainBreaks(seg, evidence, tuple(np.flatnonzero(geometric).tolist()),
                      tuple(np.flatnonzero(numbered).tolist()), tuple(np.flatnonzero(doubt).tolist()), thr, rep,
                      labels, d)
    if doubt.any():
        k = np.flatnonzero(doubt)
        shown = ", ".join(f"{labels[i - 1]} - {labels[i]} ({d[i - 1]:.2f} nm)" for i in k[:5])
        warnings.warn(f"{where}{len(k)} pair(s) of consecutive {scheme} beads kept joined although farther apart "
                      f"than 99.99 % of peptide-bonded pairs ({SCHEME_DOUBT_NM[scheme]} nm; the break limit is {thr} "
                      f"nm), and no bonds or residue numbers say whether the chain breaks there: {shown}"
                      f"{' ...' if len(k) > 5 else ''}. If residues are missing there, the output bonds across the gap",
                      ChainBreakWarning, stacklevel=3)
    if geometric.any():
        k = np.flatnonzero(geometric)
        shown = ", ".join(f"{labels[i - 1]} - {labels[i]} ({d[i - 1]:.2f} nm)" for i in k[:5])
        more = f" and {len(k) - 5} more" if len(k) > 5 else ""
        warnings.warn(f"{where}{len(k)} chain break(s) found from bead distances alone (over {thr} nm, the limit "
                      f"for {scheme} beads; no bonds or records say where chains break): {shown}{more}",
                      ChainBreakWarning, stacklevel=3)
    return out


class BreakMonitor:
    """Reports frames whose bead distances disagree with the chain breaks decided at set-up; never re-segments.

    A pair joined at set-up that is farther apart than the scheme's limit
    plus :data:`~openmm_backmap.structure.constants.BREAK_MONITOR_MARGIN_NM`
    (a stretched or exploded chain, not a bond's thermal stretch; pairs that
    bonds joined although they were already beyond the limit at set-up are
    left alone), or a break declared from distances alone whose beads have
    come within the limit minus that margin, gets one
    :class:`ChainBreakWarning` per pair (with the first frame), and every
    such frame is counted.

    Parameters
    ----------
    breaks : ChainBreaks

    Examples
    --------
    >>> b = find_chain_breaks([0, 1], [0, 0], None, None, [[0, 0, 0], [0.38, 0, 0]], 'ca')
    >>> mon = BreakMonitor(b)
    >>> import warnings
    >>> frames = np.array([[[0, 0, 0], [0.38, 0, 0]], [[0, 0, 0], [0.45, 0, 0]], [[0, 0, 0], [0.9, 0, 0]]])
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter('ignore')
    ...     mon.check(frames, [0, 1, 2]).tolist()  # 0.45 nm: a bond's stretch; 0.9 nm: a torn chain
    [False, False, True]
    >>> mon.frames_changed
    1
    """

    def __init__(self, breaks: ChainBreaks):
        self.breaks = breaks
        rep = breaks.chain_bead
        start = np.asarray(breaks.segment_start, dtype=bool)
        self._a, self._b = rep[:-1], rep[1:]
        with np.errstate(invalid="ignore"):
            self._joined = ~start[1:] & ~(np.asarray(breaks.distance_nm) > breaks.threshold_nm)
        geo = np.zeros(len(start), dtype=bool)
        geo[list(breaks.geometric)] = True
        self._geometric = geo[1:]
        self._warned = set()
        self.frames_changed = 0

    def check(self, cg_xyz, index=None) -> np.ndarray:
        """Check frames ``(F, N, 3)`` nm (molecules whole); returns (F,) True where the pattern differs."""
        x = np.asarray(cg_xyz, dtype=np.float64)
        if len(self._a) == 0 or len(x) == 0:
            return np.zeros(len(x), dtype=bool)
        d = np.linalg.norm(x[:, self._b] - x[:, self._a], axis=-1)
        thr = self.breaks.threshold_nm
        with np.errstate(invalid="ignore"):
            stretched = self._joined & (d > thr + BREAK_MONITOR_MARGIN_NM)
            closed = self._geometric & (d <= thr - BREAK_MONITOR_MARGIN_NM)
        changed = (stretched | closed).any(axis=1)
        self.frames_changed += int(changed.sum())
        labels = self.breaks.labels
        for f in np.flatnonzero(changed):
            for kind, mask in (("stretched", stretched[f]), ("closed", closed[f])):
                new = [k for k in np.flatnonzero(mask) if (kind, int(k)) not in self._warned]
                if not new:
                    continue
                self._warned.update((kind, int(k)) for k in new)
                frame = int(index[f]) if index is not None else int(f)
                pairs = ", ".join(f"{labels[k]} - {labels[k + 1]} ({d[f, k]:.2f} nm)" for k in new[:5])
                more = f" and {len(new) - 5} more" if len(new) > 5 else ""
                what = (f"joined at set-up, now farther apart than {thr + BREAK_MONITOR_MARGIN_NM:.2f} nm (the "
                        f"{thr} nm limit and a margin)" if kind == "stretched" else
                        f"a break found from distances at set-up, now closer than {thr - BREAK_MONITOR_MARGIN_NM:.2f} "
                        "nm")
                warnings.warn(f"frame {frame}: {pairs}{more}: {what}; the chain breaks are kept as decided on the "
                              "first frame", ChainBreakWarning, stacklevel=3)
        return changed
