"""Write openmm_backmap/data/bond_lengths_amber14.json: the default force field's equilibrium length of every
heavy-atom bond, per residue template (N-terminal ``:N``, inner ``:M``, C-terminal ``:C``) and for the peptide bond
(by the terminal states of its two residues), taken from OpenMM Systems built by
:func:`~openmm_backmap.run.relax.systems.reference_bond_lengths` on backmapped structures. Histidine is stored per
variant (``HID``, ``HIE``: :func:`~openmm_backmap.run.relax.bond_table.histidine_variants`), and cysteine both
free (``CYS``) and in a disulfide (``CYX``); HIE and CYX come from structures edited to have them (an acceptor
moved onto HE2's hydrogen bond, two SG atoms moved 0.2 nm apart). Every length must come out the same wherever it
occurs, else the script fails: so a histidine variant picked otherwise than OpenMM picks it stops the script.

Usage: ``python benchmarks/build_bond_length_table.py``
"""

import json
import os

import numpy as np

from openmm_backmap.model import load_model
from openmm_backmap.run.relax import bond_table, systems
from openmm_backmap.structure import atom_layout

NAMES = ["ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS", "MET", "PHE", "PRO", "SER",
         "THR", "TRP", "TYR", "VAL"]
#: Five-residue segments for the edited variants: HIE and CYX at the N-terminus, inside and at the C-terminus.
EDITED = [("HIE", 0), ("HIE", 2), ("HIE", 4), ("CYX", (0, 4)), ("CYX", (1, 3))]
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "openmm_backmap", "data",
                   bond_table.BOND_LENGTH_TABLE)


def segments():
    """Each residue N-terminal, inner and C-terminal, beside different neighbours."""
    n = len(NAMES)
    for shift in (1, 5, 11):
        for k in range(n):
            yield [NAMES[k], NAMES[(k + shift) % n], NAMES[(k + 2 * shift) % n], NAMES[(k + 3 * shift) % n]]
    yield [NAMES[(7 * i) % n] for i in range(40)]


def _edited(kind, where):
    """(sequence, edit) of a segment with HIE or CYX; edit(xyz) moves atoms so that the variant is picked."""
    seq = ["ALA", "SER", "GLY", "LEU", "THR"]
    lay = None
    if kind == "HIE":
        seq[where] = "HIS"
        lay = atom_layout(seq)
        other = 4 if where < 2 else 0

        def edit(x):
            ne2 = x[lay.index(where, "NE2")]
            out = 2 * ne2 - x[lay.index(where, "CE1")] - x[lay.index(where, "CD2")]
            x[lay.index(other, "O")] = ne2 + 0.28 * out / np.linalg.norm(out)  # on HE2's line, 0.28 nm from NE2
            return x
    else:
        i, j = where
        seq[i] = seq[j] = "CYS"
        lay = atom_layout(seq)

        def edit(x):
            a, b = x[lay.index(i, "SG")], x[lay.index(j, "SG")]
            x[lay.index(j, "SG")] = a + 0.2 * (b - a) / np.linalg.norm(b - a)
            return x
    return seq, edit


def main():
    bm = load_model(None, device="cpu")
    ff = (systems.DEFAULT_FORCEFIELD,)
    residues, peptide = {}, {}

    def put(where, key, value):
        old = where.setdefault(key, value)
        if not (old == value or (np.isnan(old) and np.isnan(value))):
            raise SystemExit(f"{key}: {old} and {value} in different places; the table cannot hold it")

    cases = [(seq, None, None) for seq in segments()]
    cases += [(*_edited(kind, where), kind) for kind, where in EDITED]
    for seq, edit, kind in cases:
        k = np.arange(len(seq))
        ca = np.stack([0.23 * np.cos(np.radians(100 * k)), 0.23 * np.sin(np.radians(100 * k)), 0.15 * k], 1)
        xyz = bm.backmap(ca[None].astype(np.float32), seq, seed=1, deterministic=True).xyz[0].astype(np.float64)
        if edit is None:
            assert not len(systems.disulfide_bonds(seq, xyz))
        else:
            xyz = edit(xyz)
            assert kind in bond_table.residue_templates(seq, xyz), f"the edit did not make {kind}"
        templates = bond_table.residue_templates(seq, xyz)
        bond_table._TABLE = {}  # measure on Systems, not on an earlier table
        systems._BOND_LENGTHS.clear()
        r0 = systems.reference_bond_lengths(seq, None, xyz, systems.DEFAULT_FORCEFIELD)
        lay = atom_layout(seq)
        n = len(seq)
        for (a, b), length in zip(lay.bonds(None).tolist(), r0.tolist()):
            ra, rb = int(lay.atom_residue[a]), int(lay.atom_residue[b])
            if ra == rb:
                put(residues.setdefault(f"{templates[ra]}:{bond_table._terminal(ra, n)}", {}),
                    f"{lay.atom_names[a]}-{lay.atom_names[b]}", length)
            else:
                put(peptide, f"{bond_table._terminal(ra, n)}{bond_table._terminal(rb, n)}", length)
    with open(OUT, "w") as fh:
        json.dump({"forcefield": list(ff), "residues": residues, "peptide": peptide}, fh, indent=0, sort_keys=True)
    print(f"wrote {OUT}: {len(residues)} residue templates, peptide bonds {sorted(peptide)}")


if __name__ == "__main__":
    main()
