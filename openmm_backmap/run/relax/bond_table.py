"""The default force field's heavy-atom bond lengths per residue template, from a table shipped with the package
(``openmm_backmap/data/bond_lengths_amber14.json``, written by benchmarks/build_bond_length_table.py), so that
:func:`~openmm_backmap.run.relax.systems.reference_bond_lengths` need not build an OpenMM System with hydrogens
for every new topology (about 0.9 CPU-seconds for 100 residues). The numbers are the System's, exactly
(tests/run/test_bond_lengths.py).
"""

from __future__ import annotations

import numpy as np

from ...structure import atom_layout, disulfide_bonds

#: Per-template bond lengths of the default force field (benchmarks/build_bond_length_table.py writes them from
#: OpenMM Systems; tests/run/test_bond_lengths.py checks them against Systems built here).
BOND_LENGTH_TABLE = "bond_lengths_amber14.json"
#: Residues whose template depends on the coordinates (histidine's protonation): their segments are measured on an
#: OpenMM System as before; so are segments with a disulfide (cysteines without one are in the table).
_COORDINATE_DEPENDENT = frozenset({"HIS"})
_TABLE = None


def _load_table():
    global _TABLE
    if _TABLE is None:
        import json
        from importlib import resources

        try:
            _TABLE = json.loads(resources.files("openmm_backmap.data").joinpath(BOND_LENGTH_TABLE).read_text())
        except (FileNotFoundError, OSError):
            _TABLE = {}
    return _TABLE


def _terminal(i, n):
    return "N" if i == 0 else "C" if i == n - 1 else "M"


def template_bond_lengths(sequence, segment_start, forcefield, xyz=None):
    """The bond lengths of one segment (one chain start, at residue 0) from the per-template table, or None where
    the table cannot say (another force field, a residue it lacks, histidine, a disulfide in ``xyz`` (or cysteine
    without ``xyz``), a one-residue segment):
    the same numbers as the System's, without building one (about 0.9 CPU-seconds for 100 residues)."""
    table = _load_table()
    n = len(sequence)
    if (not table or tuple(table.get("forcefield", ())) != tuple(forcefield) or n < 2 or any(segment_start[1:])
            or _COORDINATE_DEPENDENT.intersection(sequence)):
        return None
    if "CYS" in sequence and (xyz is None or len(disulfide_bonds(list(sequence), np.asarray(xyz, np.float64)))):
        return None
    lay = atom_layout(list(sequence))
    names, res = lay.atom_names, lay.atom_residue
    residues, peptide = table["residues"], table["peptide"]
    out = []
    for a, b in lay.bonds(np.array(segment_start, dtype=bool)).tolist():
        ra, rb = int(res[a]), int(res[b])
        if ra == rb:
            entry = residues.get(f"{sequence[ra]}:{_terminal(ra, n)}", {}).get(f"{names[a]}-{names[b]}")
        else:
            entry = peptide.get(f"{_terminal(ra, n)}{_terminal(rb, n)}")
        if entry is None:
            return None
        out.append(entry)
    return np.array(out, dtype=np.float64)
