"""Canonicalisation: parsed residues and atoms -> the package's heavy-atom templates.

Whatever parsed the file (OpenMM's PDB or PDBx reader, mdtraj for
trajectories), residues and atoms arrive here by name. Residue and atom
aliases are mapped onto the templates, hydrogens and atoms no template has
are dropped, missing atoms are masked (NaN), never invented, and everything
changed on the way in is reported once per file as a :class:`LoadWarning`.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..structure.constants import ANGSTROM_PER_NM
from ..structure import (MODIFIED_RESIDUES, TEMPLATES, ProteinEnsemble, atom_layout, canonical_atom_name,
                         canonical_residue_name, detect_segment_starts, warn_modified_residues)
from ..structure.errors import InputError, LoadWarning

__all__ = ["ParsedResidue", "is_hydrogen", "Canonicalizer", "group_atoms", "template_rows", "assemble"]


@dataclass
class ParsedResidue:
    """A residue as the file names it (before canonicalisation)."""

    chain: str
    number: int
    icode: str
    name: str


def is_hydrogen(name: str, element: str) -> bool:
    """Whether an atom is a hydrogen (or deuterium), by element column or name.

    Examples
    --------
    >>> is_hydrogen('HG3', 'HG'), is_hydrogen('1HB', ''), is_hydrogen('CA', 'C')
    (True, True, False)
    """
    # No heavy atom of a standard residue has a name starting with H, and
    # element columns are often missing or guessed wrongly (HG3 -> mercury).
    return element.upper() in ("H", "D") or name.lstrip("0123456789")[:1] == "H"


class Canonicalizer:
    """Maps residues onto templates and collects what is dropped or renamed, for one file.

    Parameters
    ----------
    source : str
        The file, named in the warnings.

    Examples
    --------
    >>> canon = Canonicalizer('x.pdb')
    >>> res = [ParsedResidue('A', 1, ' ', 'HSD'), ParsedResidue('A', 2, ' ', 'HOH')]
    >>> seq, kept, maps = canon.residue_map(res, [[('N', 0), ('CA', 1)], [('O', 2)]])
    >>> seq, kept, dict(canon.dropped_residues)
    (['HIS'], [0], {'HOH': 1})
    """

    def __init__(self, source):
        self.source = source
        self.dropped_residues = Counter()
        self.unknown_atoms = Counter()
        self.renamed = Counter()
        self.modified = []
        self.altlocs = 0
        self.repeated_numbers = 0
        self.duplicate_atoms = 0
        self.oxt = 0

    def residue_map(self, residues, atom_names_per_residue):
        """Return (sequence, kept residue indices, per kept residue {template atom: source index})."""
        sequence, kept, atom_maps = [], [], []
        for i, (res, atoms) in enumerate(zip(residues, atom_names_per_residue)):
            canon = canonical_residue_name(res.name)
            if canon is None:
                self.dropped_residues[res.name] += 1
                continue
            if res.name in MODIFIED_RESIDUES:
                self.modified.append(res.name)
            elif canon != res.name:
                self.renamed[f"{res.name}->{canon}"] += 1
            template = TEMPLATES[canon].atoms
            amap = {}
            for name, idx in atoms:
                cname = canonical_atom_name(canon, name)
                if cname == "OXT":
                    self.oxt += 1
                    continue
                if cname in template:
                    amap.setdefault(cname, idx)
                else:
                    self.unknown_atoms[f"{canon}:{name}"] += 1
            if "CA" not in amap:
                self.dropped_residues[f"{res.name} without CA"] += 1
                continue
            sequence.append(canon)
            kept.append(i)
            atom_maps.append(amap)
        return sequence, kept, atom_maps

    def report(self, n_missing, n_frames_missing):
        """Warn (:class:`LoadWarning`) about everything collected, one warning per kind."""
        src = os.path.basename(self.source)
        if self.dropped_residues:
            n = sum(self.dropped_residues.values())
            top = ", ".join(f"{k} x{v}" for k, v in self.dropped_residues.most_common(6))
            warnings.warn(f"{src}: dropped {n} residue(s) that are not standard amino acids ({top})",
                          LoadWarning, stacklevel=4)
        warn_modified_residues(self.modified, src, stacklevel=5)
        if self.renamed:
            top = ", ".join(f"{k} x{v}" for k, v in self.renamed.most_common(6))
            warnings.warn(f"{src}: renamed residues to their standard names ({top})", LoadWarning, stacklevel=4)
        if self.unknown_atoms:
            n = sum(self.unknown_atoms.values())
            top = ", ".join(f"{k} x{v}" for k, v in self.unknown_atoms.most_common(6))
            warnings.warn(f"{src}: ignored {n} heavy atom(s) that no template has ({top})", LoadWarning, stacklevel=4)
        if self.repeated_numbers:
            warnings.warn(f"{src}: {self.repeated_numbers} residue(s) repeat the chain, number, insertion code and "
                          "name of an earlier residue with the same atoms (insertion codes lost, as mdtraj's PDB "
                          "writer loses them, or numbering that wraps at 9999?); each is read as a residue of its "
                          "own, in file order", LoadWarning, stacklevel=4)
        if self.duplicate_atoms:
            warnings.warn(f"{src}: {self.duplicate_atoms} atom record(s) repeat an atom name within a residue; kept "
                          "the first of each", LoadWarning, stacklevel=4)
        if self.altlocs:
            warnings.warn(f"{src}: {self.altlocs} atom(s) had alternate locations; kept the first of each",
                          LoadWarning, stacklevel=4)
        if n_missing:
            warnings.warn(f"{src}: {n_missing} heavy atom(s) missing in {n_frames_missing} frame(s); "
                          "they are masked (NaN), not invented", LoadWarning, stacklevel=4)


def group_atoms(records, canon=None):
    """Group one model's heavy-atom records into residues.

    Parameters
    ----------
    records : iterable of ((chain, number, insertion code, residue name[, group]), atom name, (x, y, z) Å)
        In file order. A residue is a run of records with one key. A run whose key was seen before joins
        that residue (files that list a residue's atoms apart) unless it repeats one of its atom names, and
        the residue's first atom name seen again starts a new residue: either is a residue of its own with
        the same number (insertion codes lost, as mdtraj's PDB writer loses them, or numbering that wraps
        at 9999), counted in ``canon.repeated_numbers``. Any other repeated atom name keeps its first
        record, counted in ``canon.duplicate_atoms``. An optional fifth key element (e.g. the chain's
        ordinal in the file) keeps apart residues that share the other four.
    canon : Canonicalizer, optional
        Where repeats and duplicates are counted (the most in one model), to be reported.

    Returns
    -------
    residues : list of ParsedResidue
    atom_names : list of list of (atom name, row of ``xyz``), one list per residue
    xyz : ndarray, (N, 3), Å

    Examples
    --------
    >>> gly = ('A', 1, ' ', 'GLY')
    >>> res, names, xyz = group_atoms([(gly, 'N', (0, 0, 0)), (gly, 'CA', (1, 0, 0)), (gly, 'CA', (2, 0, 0))])
    >>> names, xyz.tolist()
    ([[('N', 0), ('CA', 1)]], [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    >>> ser, gly = ('A', 100, ' ', 'SER'), ('A', 100, ' ', 'GLY')   # 100, 100A, 100B written without codes
    >>> res, names, xyz = group_atoms([(ser, 'N', (0, 0, 0)), (gly, 'N', (1, 0, 0)), (ser, 'N', (2, 0, 0))])
    >>> [r.name for r in res]
    ['SER', 'GLY', 'SER']
    """
    residues, coords, copies = {}, [], {}
    previous, current, repeats, duplicates = None, None, 0, 0
    for key, name, xyz in records:
        atoms = residues.get(current)
        # a new run of the key, or the residue's first atom name again (two residues of one name and number
        # in a row): join the residue seen before unless this atom is in it already
        if key != previous or name == next(iter(atoms)):
            n = copies.setdefault(key, 0)
            if (key, n) in residues and name in residues[(key, n)]:
                n = copies[key] = n + 1
                repeats += 1
            previous, current = key, (key, n)
            atoms = residues.setdefault(current, {})
        if name in atoms:
            duplicates += 1
        else:
            atoms[name] = len(coords)
            coords.append(xyz)
    if canon is not None:
        canon.repeated_numbers = max(canon.repeated_numbers, repeats)
        canon.duplicate_atoms = max(canon.duplicate_atoms, duplicates)
    return ([ParsedResidue(*key[:4]) for key, _ in residues], [list(atoms.items()) for atoms in residues.values()],
            np.array(coords, dtype=np.float64).reshape(-1, 3))


def template_rows(sequence, atom_maps):
    """Where the mapped atoms go: rows of the canonical layout and the source indices they come from.

    Parameters
    ----------
    sequence : list of str
        Canonical residue names.
    atom_maps : list of dict
        Per residue {template atom name: source index}, as :meth:`Canonicalizer.residue_map` returns them.

    Returns
    -------
    rows, source : ndarray of int

    Examples
    --------
    >>> rows, source = template_rows(['GLY', 'ALA'], [{'CA': 7}, {'N': 3, 'CB': 9}])
    >>> rows.tolist(), source.tolist()
    ([1, 4, 8], [7, 3, 9])
    """
    lay = atom_layout(sequence)
    rows, source = [], []
    for r, amap in enumerate(atom_maps):
        atoms = TEMPLATES[sequence[r]].atoms
        rows += [lay.residue_start[r] + atoms.index(name) for name in amap]
        source += amap.values()
    return np.asarray(rows, dtype=np.int64), np.asarray(source, dtype=np.int64)


def assemble(models, source, canon, time_ps=None):
    """Turn parsed models into a :class:`ProteinEnsemble`.

    Parameters
    ----------
    models : iterable of (residues, atom names, xyz Å)
        As :func:`group_atoms` returns them, one per frame; atom sets may
        differ between models, the residue sequence may not.
    source : str
    canon : Canonicalizer
        Reports what it collected once all models are read.
    time_ps : array, (F,), optional

    Returns
    -------
    ProteinEnsemble
        Coordinates in nm, canonical atom order, missing atoms NaN and masked.

    Examples
    --------
    >>> model = group_atoms([(('A', 1, ' ', 'GLY'), n, (i, 0, 0)) for i, n in enumerate(['N', 'CA', 'C', 'O'])])
    >>> assemble([model], 'x.pdb', Canonicalizer('x.pdb')).sequence
    ['GLY']
    """
    sequence, residue_info, lay = None, None, None
    frames = []
    for residues, names, xyz in models:
        seq, kept, amaps = canon.residue_map(residues, names)
        if sequence is None:
            sequence, residue_info = seq, [residues[k] for k in kept]
            lay = atom_layout(sequence)
        elif seq != sequence:
            raise InputError(f"{source}: model {len(frames) + 1} has a different residue sequence than model 1; "
                             "load the models as separate ensembles")
        out = np.full((lay.n_atoms, 3), np.nan, dtype=np.float32)
        rows, src = template_rows(sequence, amaps)
        out[rows] = xyz[src] / ANGSTROM_PER_NM
        frames.append(out)
    if not sequence:
        raise InputError(f"{source}: no standard amino-acid residues found")
    xyz = np.stack(frames)
    mask = np.isfinite(xyz).all(-1)
    missing = ~mask
    canon.report(int(missing.sum()), int(missing.any(1).sum()))
    chain_ids = [r.chain for r in residue_info]
    return ProteinEnsemble(sequence, xyz, mask, detect_segment_starts(xyz, mask, sequence, chain_ids), chain_ids,
                           [r.number for r in residue_info], time_ps, str(source))
