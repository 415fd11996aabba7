"""The default force field's heavy-atom bond lengths per residue template, from a table shipped with the package
(``openmm_backmap/data/bond_lengths_amber14.json``, written by benchmarks/build_bond_length_table.py), so that
:func:`~openmm_backmap.run.relax.systems.reference_bond_lengths` need not build an OpenMM System with hydrogens
for every new topology (about 0.9 CPU-seconds for 100 residues). The numbers are the System's, exactly
(tests/run/test_bond_lengths.py).

Two residues have coordinate-dependent templates, and the table holds their variants:

* a cysteine in a disulfide (:func:`~openmm_backmap.structure.disulfide_bonds`, as the System is built) is ``CYX``;
* histidine at pH 7 is ``HID`` or ``HIE``, chosen as :meth:`openmm.app.Modeller.addHydrogens` chooses it
  (:func:`histidine_variants`). A variant missing from the table sends the segment to the System path.
"""

from __future__ import annotations

import numpy as np

from ...structure import atom_layout, disulfide_bonds, place_oxt

#: Per-template bond lengths of the default force field (benchmarks/build_bond_length_table.py writes them from
#: OpenMM Systems; tests/run/test_bond_lengths.py checks them against Systems built here).
BOND_LENGTH_TABLE = "bond_lengths_amber14.json"
_TABLE = None
#: Modeller.addHydrogens' hydrogen-bond test for histidine (OpenMM's numbers): donor-acceptor distance (nm) and
#: the largest angle between donor->H and H->acceptor, with H 0.1 nm from the donor.
_HBOND_NM, _HBOND_DEG, _NH_NM = 0.35, 50.0, 0.1


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


def histidine_variants(sequence, xyz) -> dict:
    """``{residue: 'HID' or 'HIE'}`` for the histidines of one segment (heavy atoms, canonical order, nm), as
    :meth:`openmm.app.Modeller.addHydrogens` picks them at pH 7 when
    :func:`~openmm_backmap.run.relax.systems.build_force_field_system` builds the segment's System.

    OpenMM's rule: put HD1 and HE2 0.1 nm from ND1 and NE2, away from their ring neighbours; HIE where HE2 makes
    a hydrogen bond (an N or O of another residue, the C-terminal OXT included, within 0.35 nm of the donor and
    under 50 degrees off the N-H direction) and HD1 does not, else HID.

    Examples
    --------
    >>> from openmm_backmap.structure import atom_layout
    >>> seq = ["GLY", "HIS", "GLY"]
    >>> xyz = np.arange(atom_layout(seq).n_atoms * 3, dtype=float).reshape(-1, 3)  # atoms far apart: no H-bond
    >>> histidine_variants(seq, xyz)
    {1: 'HID'}
    """
    seq = list(sequence)
    his = [r for r, name in enumerate(seq) if name == "HIS"]
    if not his:
        return {}
    lay = atom_layout(seq)
    x = np.asarray(xyz, dtype=np.float64)
    acceptors = [i for i, name in enumerate(lay.atom_names) if name[0] in "NO"]  # element = first letter
    acc_xyz, acc_res = x[acceptors], np.asarray(lay.atom_residue)[acceptors]
    last = len(seq) - 1  # the segment's C-terminal OXT, placed as the System's topology places it
    oxt = place_oxt(x[lay.index(last, "CA")], x[lay.index(last, "C")], x[lay.index(last, "O")])
    acc_xyz, acc_res = np.vstack([acc_xyz, oxt]), np.append(acc_res, last)

    def bonded(r, donor, ring):
        d = x[lay.index(r, donor)]
        delta = sum(d - x[lay.index(r, other)] for other in ring)
        h = d + _NH_NM * delta / np.linalg.norm(delta)
        for a in acc_xyz[(acc_res != r) & (np.linalg.norm(acc_xyz - d, axis=1) <= _HBOND_NM)]:
            dh, ha = (h - d) / np.linalg.norm(h - d), (a - h) / np.linalg.norm(a - h)
            if np.degrees(np.arccos(np.clip(dh @ ha, -1.0, 1.0))) < _HBOND_DEG:
                return True
        return False

    return {r: "HIE" if not bonded(r, "ND1", ("CG", "CE1")) and bonded(r, "NE2", ("CE1", "CD2")) else "HID"
            for r in his}


def residue_templates(sequence, xyz) -> list:
    """The table's name of each residue of one segment: the residue's own, ``CYX`` for a cysteine in a
    disulfide, ``HID``/``HIE`` for histidine (:func:`histidine_variants`)."""
    seq, names = list(sequence), list(sequence)
    x = np.asarray(xyz, dtype=np.float64)
    if "CYS" in seq:
        res = atom_layout(seq).atom_residue
        for i, j in disulfide_bonds(seq, x).tolist():
            names[int(res[i])] = names[int(res[j])] = "CYX"
    for r, variant in histidine_variants(seq, x).items():
        names[r] = variant
    return names


def template_bond_lengths(sequence, segment_start, forcefield, xyz=None):
    """The bond lengths of one segment (one chain start, at residue 0) from the per-template table, or None where
    the table cannot say (another force field, a residue or variant it lacks, histidine or cysteine without
    ``xyz``, a one-residue segment):
    the same numbers as the System's, without building one (about 0.9 CPU-seconds for 100 residues)."""
    table = _load_table()
    n = len(sequence)
    if not table or tuple(table.get("forcefield", ())) != tuple(forcefield) or n < 2 or any(segment_start[1:]):
        return None
    if xyz is None and {"CYS", "HIS"}.intersection(sequence):
        return None
    templates = residue_templates(sequence, xyz) if xyz is not None else list(sequence)
    lay = atom_layout(list(sequence))
    names, res = lay.atom_names, lay.atom_residue
    residues, peptide = table["residues"], table["peptide"]
    out = []
    for a, b in lay.bonds(np.array(segment_start, dtype=bool)).tolist():
        ra, rb = int(res[a]), int(res[b])
        if ra == rb:
            entry = residues.get(f"{templates[ra]}:{_terminal(ra, n)}", {}).get(f"{names[a]}-{names[b]}")
        else:
            entry = peptide.get(f"{_terminal(ra, n)}{_terminal(rb, n)}")
        if entry is None:
            return None
        out.append(entry)
    return np.array(out, dtype=np.float64)
