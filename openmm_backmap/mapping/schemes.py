"""Bead schemes: the ways CG models place their beads on a protein, as mappings from the heavy atoms.

=============  ==========================================================================================
``ca``         one bead per residue on its C-alpha (:func:`~.operators.ca_mapping`)
``com``        one bead per residue at the mass-weighted centre of all its heavy atoms (CALVADOS 3 folded
               domains and similar); beads named ``CA`` like C-alpha beads
``martini3``   Martini 3.0: ``BB`` plus ``SC1`` ... ``SC5`` per residue, each at the centre of its atom group
               as martinize2 ``-ff martini3001`` places it
``martini2``   Martini 2.2, the same way (martinize2 ``-ff martini22``)
=============  ==========================================================================================

Every scheme is a :class:`~.operators.Mapping` from the canonical heavy
atoms (``structure.atom_layout``) to the beads, in nm, so it composes and
serialises like any other level. The Martini atom groups come from
vermouth's mapping files (:mod:`.martini_tables`); martinize2 weighs every
atom by its share of the bead times an integer mass (C 12, N 14, O 16,
S 32), which is what these mappings do, so beads match martinize2's on
heavy-atom input. Hydrogens are not part of the package's layout: where
martinize2 sees hydrogens it adds them with mass 1, moving a bead by up to
about 0.01 nm. The C-terminal ``OXT`` is not in the layout either, so the
last ``BB`` of a chain follows martinize2 on input without ``OXT``.

Missing atoms: the atom-group schemes place a bead at the centre of the
members present in that frame (:meth:`~.operators.Mapping.apply_present`,
as martinize2 does for atoms without coordinates); a bead with no atom
present is an error (see :func:`~.levels.coarsen`).
"""

from __future__ import annotations

import numpy as np

from ..structure import InputError, atom_layout
from .martini_tables import MARTINI_BEADS, MARTINI_MASSES
from .operators import Mapping, ca_mapping

__all__ = ["SCHEMES", "ATOM_GROUP_SCHEMES", "com_mapping", "martini_mapping", "scheme_mapping", "bead_residues"]

#: Every bead scheme by name.
SCHEMES = ("ca", "com", "martini3", "martini2")
#: Schemes whose beads average several atoms (a missing atom moves a bead, it does not remove it).
ATOM_GROUP_SCHEMES = ("com", "martini3", "martini2")


def _element_masses():
    import mdtraj as md

    # mdtraj's standard atomic weights, for the residue centres of mass (Martini uses vermouth's integer masses)
    return {s: md.element.get_by_symbol(s).mass for s in ("C", "N", "O", "S")}


def com_mapping(sequence) -> Mapping:
    """Heavy atoms -> one bead per residue at the residue's centre of mass (all heavy atoms, standard masses).

    Parameters
    ----------
    sequence : sequence of str
        Three-letter residue names.

    Returns
    -------
    Mapping
        Named ``'com'``, ``bead_names`` the residue names.

    Examples
    --------
    >>> m = com_mapping(['GLY', 'ALA'])
    >>> m.n_beads, m.members[1].tolist(), round(float(m.weights[0][0]), 3)
    (2, [4, 5, 6, 7, 8], 0.259)
    """
    lay = atom_layout(sequence)
    mass = _element_masses()
    masses = np.array([mass[e] for e in lay.elements])
    members = [np.arange(a, b) for a, b in zip(lay.residue_start[:-1], lay.residue_start[1:])]
    return Mapping(members, [masses[m] for m in members], n_fine=lay.n_atoms, name="com",
                   bead_names=list(lay.sequence), fine_residues=lay.atom_residue)


def martini_mapping(sequence, scheme="martini3") -> Mapping:
    """Heavy atoms -> Martini beads (``BB``, ``SC1`` ...) as martinize2 places them on heavy-atom input.

    Parameters
    ----------
    sequence : sequence of str
        Three-letter residue names.
    scheme : {'martini3', 'martini2'}
        Martini 3.0 (``-ff martini3001``) or Martini 2.2 (``-ff martini22``).

    Returns
    -------
    Mapping
        Beads residue by residue in martinize2's order; ``bead_names`` the
        Martini bead names, :func:`bead_residues` their residues.

    Examples
    --------
    >>> m = martini_mapping(['GLY', 'TRP'])
    >>> m.bead_names
    ['BB', 'BB', 'SC1', 'SC2', 'SC3', 'SC4', 'SC5']
    >>> martini_mapping(['ALA'], 'martini2').bead_names
    ['BB']
    """
    if scheme not in MARTINI_BEADS:
        raise InputError(f"unknown Martini scheme {scheme!r}; use one of {', '.join(MARTINI_BEADS)}")
    lay = atom_layout(sequence)
    table = MARTINI_BEADS[scheme]
    members, weights, names = [], [], []
    for r, res in enumerate(lay.sequence):
        for bead, atoms in table[res]:
            members.append([lay.index(r, a) for a, _ in atoms])
            weights.append([share * MARTINI_MASSES[lay.elements[i]] for (_, share), i in zip(atoms, members[-1])])
            names.append(bead)
    return Mapping(members, weights, n_fine=lay.n_atoms, name=scheme, bead_names=names,
                   fine_residues=lay.atom_residue)


def scheme_mapping(scheme, sequence) -> Mapping:
    """The mapping of bead scheme ``scheme`` (one of :data:`SCHEMES`) for a sequence.

    Examples
    --------
    >>> scheme_mapping('com', ['GLY']).name, scheme_mapping('ca', ['GLY']).members[0].tolist()
    ('com', [1])
    """
    if scheme == "ca":
        return ca_mapping(sequence)
    if scheme == "com":
        return com_mapping(sequence)
    if scheme in MARTINI_BEADS:
        return martini_mapping(sequence, scheme)
    raise InputError(f"unknown bead scheme {scheme!r}; use one of {', '.join(SCHEMES)}")


def bead_residues(mapping: Mapping) -> np.ndarray:
    """Residue index of every bead of a per-residue mapping (each bead within one residue), shape (n_beads,).

    Examples
    --------
    >>> bead_residues(martini_mapping(['GLY', 'ALA'])).tolist()
    [0, 1, 1]
    """
    if mapping.fine_residues is None:
        raise InputError(f"mapping {mapping.name!r} does not know the residues of its fine particles")
    res = [np.unique(mapping.fine_residues[m]) for m in mapping.members]
    if any(r.size != 1 for r in res):
        raise InputError(f"mapping {mapping.name!r} has beads that span residues")
    return np.array([int(r[0]) for r in res], dtype=np.int64)
