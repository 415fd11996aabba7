"""Residue templates and per-system atom layouts.

Every all-atom structure in openmm-backmap uses the same *canonical heavy-atom
order*: residues in sequence order, and inside a residue the atoms listed in
:data:`TEMPLATES` (backbone ``N CA C O`` first, then the side chain in PDB
order). Hydrogens and the terminal ``OXT`` are not part of the representation
(the relaxation step adds them back). Because the order is fixed by the
sequence alone, a model's output can be paired with an OpenMM or mdtraj
topology without name look-ups at run time.

The side chain of each residue is described as a Z-matrix tree: every atom
beyond ``CB`` is placed from three earlier atoms ``(a, b, c)`` with a bond to
``c``, a bond angle ``b-c-atom`` and a torsion ``a-b-c-atom``. The torsion is
either one of the residue's chi angles plus an offset, or a fixed value. Bond
lengths, angles and offsets live in ``data/ideal_geometry.json``
(see :mod:`openmm_backmap.model.geometry`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
from .constants import OXT_BOND_NM
from .errors import InputError, LoadWarning

__all__ = [
    "place_oxt",
    "chiral_centres",
    "chirality_volumes",
    "ResidueTemplate",
    "TEMPLATES",
    "AMINO_ACIDS",
    "RESIDUE_ALIASES",
    "MODIFIED_RESIDUES",
    "warn_modified_residues",
    "ATOM_ALIASES",
    "SYMMETRIC_ATOM_PAIRS",
    "canonical_residue_name",
    "canonical_atom_name",
    "AtomLayout",
    "atom_layout",
    "build_topology",
    "residue_type_indices",
]


@dataclass(frozen=True)
class ResidueTemplate:
    """Heavy-atom template of one standard amino acid.

    Attributes
    ----------
    name : str
        Three-letter residue name (``'ALA'`` ...).
    one_letter : str
        One-letter code.
    atoms : tuple of str
        Heavy atoms in canonical order, backbone first.
    zmatrix : tuple
        For each side-chain atom beyond CB: ``(atom, a, b, c, chi)`` where the
        atom is bonded to ``c`` and its torsion ``a-b-c-atom`` equals chi
        number ``chi`` (1-based) plus an offset, or is fixed when ``chi`` is 0.
    ring_bonds : tuple
        Bonds that close rings (not part of the Z-matrix tree).
    n_chi : int
        Number of side-chain torsions the residue has.
    symmetric_chi : int
        1-based index of a chi angle with a 180 degree symmetry (0 if none).

    Examples
    --------
    >>> from openmm_backmap.structure import TEMPLATES
    >>> TEMPLATES['SER'].atoms
    ('N', 'CA', 'C', 'O', 'CB', 'OG')
    """

    name: str
    one_letter: str
    atoms: tuple
    zmatrix: tuple
    ring_bonds: tuple = ()
    symmetric_chi: int = 0

    @property
    def n_chi(self) -> int:
        return max((z[4] for z in self.zmatrix), default=0)

    @property
    def elements(self) -> tuple:
        return tuple(a[0] for a in self.atoms)

    @property
    def bonds(self) -> tuple:
        """Intra-residue bonds as pairs of atom names."""
        bb = [("N", "CA"), ("CA", "C"), ("C", "O")]
        if "CB" in self.atoms:
            bb.append(("CA", "CB"))
        return tuple(bb + [(z[3], z[0]) for z in self.zmatrix] + list(self.ring_bonds))


_BB = ("N", "CA", "C", "O")


def _t(name, one, side, zmat=(), rings=(), sym=0):
    return ResidueTemplate(name, one, _BB + tuple(side), tuple(zmat), tuple(rings), sym)


#: The 20 standard amino acids.
TEMPLATES: dict[str, ResidueTemplate] = {
    t.name: t
    for t in [
        _t("ALA", "A", ["CB"]),
        _t("ARG", "R", ["CB", "CG", "CD", "NE", "CZ", "NH1", "NH2"], [
            ("CG", "N", "CA", "CB", 1), ("CD", "CA", "CB", "CG", 2),
            ("NE", "CB", "CG", "CD", 3), ("CZ", "CG", "CD", "NE", 4),
            ("NH1", "CD", "NE", "CZ", 0), ("NH2", "CD", "NE", "CZ", 0)]),
        _t("ASN", "N", ["CB", "CG", "OD1", "ND2"], [
            ("CG", "N", "CA", "CB", 1), ("OD1", "CA", "CB", "CG", 2),
            ("ND2", "CA", "CB", "CG", 2)]),
        _t("ASP", "D", ["CB", "CG", "OD1", "OD2"], [
            ("CG", "N", "CA", "CB", 1), ("OD1", "CA", "CB", "CG", 2),
            ("OD2", "CA", "CB", "CG", 2)], sym=2),
        _t("CYS", "C", ["CB", "SG"], [("SG", "N", "CA", "CB", 1)]),
        _t("GLN", "Q", ["CB", "CG", "CD", "OE1", "NE2"], [
            ("CG", "N", "CA", "CB", 1), ("CD", "CA", "CB", "CG", 2),
            ("OE1", "CB", "CG", "CD", 3), ("NE2", "CB", "CG", "CD", 3)]),
        _t("GLU", "E", ["CB", "CG", "CD", "OE1", "OE2"], [
            ("CG", "N", "CA", "CB", 1), ("CD", "CA", "CB", "CG", 2),
            ("OE1", "CB", "CG", "CD", 3), ("OE2", "CB", "CG", "CD", 3)], sym=3),
        _t("GLY", "G", []),
        _t("HIS", "H", ["CB", "CG", "ND1", "CD2", "CE1", "NE2"], [
            ("CG", "N", "CA", "CB", 1), ("ND1", "CA", "CB", "CG", 2),
            ("CD2", "CA", "CB", "CG", 2), ("CE1", "CB", "CG", "ND1", 0),
            ("NE2", "CB", "CG", "CD2", 0)], rings=[("CE1", "NE2")]),
        _t("ILE", "I", ["CB", "CG1", "CG2", "CD1"], [
            ("CG1", "N", "CA", "CB", 1), ("CG2", "N", "CA", "CB", 1),
            ("CD1", "CA", "CB", "CG1", 2)]),
        _t("LEU", "L", ["CB", "CG", "CD1", "CD2"], [
            ("CG", "N", "CA", "CB", 1), ("CD1", "CA", "CB", "CG", 2),
            ("CD2", "CA", "CB", "CG", 2)]),
        _t("LYS", "K", ["CB", "CG", "CD", "CE", "NZ"], [
            ("CG", "N", "CA", "CB", 1), ("CD", "CA", "CB", "CG", 2),
            ("CE", "CB", "CG", "CD", 3), ("NZ", "CG", "CD", "CE", 4)]),
        _t("MET", "M", ["CB", "CG", "SD", "CE"], [
            ("CG", "N", "CA", "CB", 1), ("SD", "CA", "CB", "CG", 2),
            ("CE", "CB", "CG", "SD", 3)]),
        _t("PHE", "F", ["CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ"], [
            ("CG", "N", "CA", "CB", 1), ("CD1", "CA", "CB", "CG", 2),
            ("CD2", "CA", "CB", "CG", 2), ("CE1", "CB", "CG", "CD1", 0),
            ("CE2", "CB", "CG", "CD2", 0), ("CZ", "CG", "CD1", "CE1", 0)],
            rings=[("CE2", "CZ")], sym=2),
        _t("PRO", "P", ["CB", "CG", "CD"], [
            ("CG", "N", "CA", "CB", 1), ("CD", "CA", "CB", "CG", 2)],
            rings=[("CD", "N")]),
        _t("SER", "S", ["CB", "OG"], [("OG", "N", "CA", "CB", 1)]),
        _t("THR", "T", ["CB", "OG1", "CG2"], [
            ("OG1", "N", "CA", "CB", 1), ("CG2", "N", "CA", "CB", 1)]),
        _t("TRP", "W", ["CB", "CG", "CD1", "CD2", "NE1", "CE2", "CE3", "CZ2", "CZ3", "CH2"], [
            ("CG", "N", "CA", "CB", 1), ("CD1", "CA", "CB", "CG", 2),
            ("CD2", "CA", "CB", "CG", 2), ("NE1", "CB", "CG", "CD1", 0),
            ("CE2", "CB", "CG", "CD2", 0), ("CE3", "CB", "CG", "CD2", 0),
            ("CZ2", "CG", "CD2", "CE2", 0), ("CZ3", "CG", "CD2", "CE3", 0),
            ("CH2", "CD2", "CE2", "CZ2", 0)],
            rings=[("NE1", "CE2"), ("CZ3", "CH2")]),
        _t("TYR", "Y", ["CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ", "OH"], [
            ("CG", "N", "CA", "CB", 1), ("CD1", "CA", "CB", "CG", 2),
            ("CD2", "CA", "CB", "CG", 2), ("CE1", "CB", "CG", "CD1", 0),
            ("CE2", "CB", "CG", "CD2", 0), ("CZ", "CG", "CD1", "CE1", 0),
            ("OH", "CD1", "CE1", "CZ", 0)],
            rings=[("CE2", "CZ")], sym=2),
        _t("VAL", "V", ["CB", "CG1", "CG2"], [
            ("CG1", "N", "CA", "CB", 1), ("CG2", "N", "CA", "CB", 1)]),
    ]
}

#: Residue names in a fixed order; the index is the residue type used by models.
AMINO_ACIDS: tuple = tuple(sorted(TEMPLATES))

#: Chemically modified amino acids common in the PDB and their parent
#: residue. Their backbone and the parent's side-chain atoms are kept; atoms
#: the parent lacks (phosphate, extra methyls, hydroxyls) are dropped. Each
#: is reported once per file or topology (:func:`warn_modified_residues`).
MODIFIED_RESIDUES: dict[str, str] = {
    "MSE": "MET", "SME": "MET", "FME": "MET",  # selenomethionine, Met sulfoxide, N-formyl-Met
    "MLY": "LYS", "MLZ": "LYS", "M3L": "LYS", "ALY": "LYS", "KCX": "LYS", "LLP": "LYS",  # methyl/acetyl/carboxy-Lys
    "HYP": "PRO",  # hydroxyproline
    "SEP": "SER", "TPO": "THR", "PTR": "TYR", "TYS": "TYR",  # phospho- and sulfo-residues
    "CSO": "CYS", "CME": "CYS", "CSD": "CYS", "OCS": "CYS", "CAS": "CYS", "CSS": "CYS", "SNC": "CYS",  # oxidised Cys
    "NEP": "HIS", "HIC": "HIS",  # phospho-/methyl-His
    "MEN": "ASN",  # N-methyl-Asn
    "PCA": "GLU",  # pyroglutamate (cyclised N-terminal Gln/Glu)
}

#: Non-standard names of standard residues (force-field protonation states,
#: disulfides), modified residues (:data:`MODIFIED_RESIDUES`), and what they
#: map to.
RESIDUE_ALIASES: dict[str, str] = {
    "HSD": "HIS", "HSE": "HIS", "HSP": "HIS", "HID": "HIS", "HIE": "HIS",
    "HIP": "HIS", "HSC": "HIS", "CYX": "CYS", "CYM": "CYS", "ASH": "ASP",
    "GLH": "GLU", "LYN": "LYS",
    **MODIFIED_RESIDUES,
    # terminal-capped AMBER names (NALA, CALA, ...)
    **{p + n: n for n in TEMPLATES for p in ("N", "C")},
}


def warn_modified_residues(names, source: str = "input", stacklevel: int = 3) -> None:
    """Warn (:class:`LoadWarning`) once per kind of modified residue among residue ``names``.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter('always')
    ...     warn_modified_residues(['ALA', 'SEP', 'SEP', 'MSE'], 'x.pdb')
    >>> [str(m.message) for m in w]  # doctest: +NORMALIZE_WHITESPACE
    ['x.pdb: 1 modified residue(s) MSE read as their parent MET; atoms MET lacks are dropped',
     'x.pdb: 2 modified residue(s) SEP read as their parent SER; atoms SER lacks are dropped']
    """
    counts = {}
    for name in names:
        key = name.strip().upper()
        if key in MODIFIED_RESIDUES:
            counts[key] = counts.get(key, 0) + 1
    for key in sorted(counts):
        parent = MODIFIED_RESIDUES[key]
        warnings.warn(f"{source}: {counts[key]} modified residue(s) {key} read as their parent {parent}; atoms "
                      f"{parent} lacks are dropped", LoadWarning, stacklevel=stacklevel)

#: Per-residue atom renames applied while loading; ``'*'`` applies to all.
ATOM_ALIASES: dict[str, dict[str, str]] = {
    "*": {"OT1": "O", "OT2": "OXT", "OC1": "O", "OC2": "OXT", "O1": "O", "O2": "OXT"},
    "ILE": {"CD": "CD1"},
    "MET": {"SE": "SD"},
}

#: Atom pairs that are chemically equivalent by symmetry (swapped by ``rmsd_sym``).
SYMMETRIC_ATOM_PAIRS: dict[str, tuple] = {
    "ASP": (("OD1", "OD2"),),
    "GLU": (("OE1", "OE2"),),
    "PHE": (("CD1", "CD2"), ("CE1", "CE2")),
    "TYR": (("CD1", "CD2"), ("CE1", "CE2")),
    "ARG": (("NH1", "NH2"),),
}


def canonical_residue_name(name: str) -> str | None:
    """Return the standard three-letter name for ``name``, or ``None``.

    Examples
    --------
    >>> canonical_residue_name('HSD'), canonical_residue_name('HOH')
    ('HIS', None)
    """
    name = name.strip().upper()
    if name in TEMPLATES:
        return name
    return RESIDUE_ALIASES.get(name)


def canonical_atom_name(residue: str, atom: str) -> str:
    """Rename an atom of a (canonical) residue to its template name.

    Examples
    --------
    >>> canonical_atom_name('ILE', 'CD'), canonical_atom_name('ALA', 'OT1')
    ('CD1', 'O')
    """
    atom = atom.strip().upper()
    return ATOM_ALIASES.get(residue, {}).get(atom, ATOM_ALIASES["*"].get(atom, atom))


def residue_type_indices(sequence) -> np.ndarray:
    """Map three-letter names to integer residue types (index in :data:`AMINO_ACIDS`).

    Examples
    --------
    >>> residue_type_indices(['ALA', 'GLY']).tolist()
    [0, 7]
    """
    index = {n: i for i, n in enumerate(AMINO_ACIDS)}
    try:
        return np.array([index[canonical_residue_name(s) or s] for s in sequence], dtype=np.int64)
    except KeyError as err:
        raise InputError(f"unknown residue name {err.args[0]!r}; expected one of {AMINO_ACIDS}") from None


@dataclass(frozen=True)
class AtomLayout:
    """Canonical heavy-atom layout of a sequence.

    Attributes
    ----------
    sequence : tuple of str
    atom_names : tuple of str
        Name of every atom, in canonical order.
    atom_residue : ndarray of int, shape (A,)
        Residue index of every atom.
    residue_start : ndarray of int, shape (R+1,)
        Offsets: the atoms of residue ``r`` are ``residue_start[r]:residue_start[r+1]``.
    ca_index : ndarray of int, shape (R,)
        Index of each residue's C-alpha.
    """

    sequence: tuple
    atom_names: tuple
    atom_residue: np.ndarray
    residue_start: np.ndarray
    ca_index: np.ndarray

    @property
    def n_atoms(self) -> int:
        return len(self.atom_names)

    @cached_property
    def elements(self) -> tuple:
        """Element symbol of every atom (computed once: callers index it atom by atom)."""
        return tuple(a[0] for a in self.atom_names)

    def index(self, residue: int, atom: str) -> int:
        """Index of ``atom`` in residue number ``residue`` (0-based)."""
        name = self.sequence[residue]
        return int(self.residue_start[residue]) + TEMPLATES[name].atoms.index(atom)

    def bonds(self, segment_start=None) -> np.ndarray:
        """All covalent bonds as an (n, 2) index array.

        Peptide bonds ``C(i)-N(i+1)`` are omitted where ``segment_start[i+1]``
        is True (chain starts and breaks).
        """
        out = []
        for r, name in enumerate(self.sequence):
            base = int(self.residue_start[r])
            atoms = TEMPLATES[name].atoms
            out += [(base + atoms.index(a), base + atoms.index(b)) for a, b in TEMPLATES[name].bonds]
            if r + 1 < len(self.sequence) and not (segment_start is not None and segment_start[r + 1]):
                out.append((self.index(r, "C"), self.index(r + 1, "N")))
        return np.array(out, dtype=np.int64).reshape(-1, 2)


@lru_cache(maxsize=64)
def _layout(sequence: tuple) -> AtomLayout:
    names, res, start, ca = [], [], [0], []
    for r, s in enumerate(sequence):
        if s not in TEMPLATES:
            raise InputError(f"residue {r} has non-standard name {s!r}; map it with canonical_residue_name first")
        atoms = TEMPLATES[s].atoms
        ca.append(start[-1] + 1)
        names += atoms
        res += [r] * len(atoms)
        start.append(start[-1] + len(atoms))
    return AtomLayout(tuple(sequence), tuple(names), np.array(res, dtype=np.int64),
                      np.array(start, dtype=np.int64), np.array(ca, dtype=np.int64))


def atom_layout(sequence) -> AtomLayout:
    """Return the canonical heavy-atom layout of ``sequence`` (three-letter names).

    Examples
    --------
    >>> lay = atom_layout(['GLY', 'ALA'])
    >>> lay.atom_names
    ('N', 'CA', 'C', 'O', 'N', 'CA', 'C', 'O', 'CB')
    >>> lay.ca_index.tolist()
    [1, 5]
    """
    return _layout(tuple(canonical_residue_name(s) or s for s in sequence))


def build_topology(sequence, segment_start=None, chain_ids=None, residue_numbers=None):
    """Build an mdtraj topology of the heavy atoms of ``sequence``.

    Parameters
    ----------
    sequence : sequence of str
        Three-letter residue names.
    segment_start : array of bool, optional
        True where a residue starts a new segment. A new chain is started when
        ``chain_ids`` changes; otherwise a segment start only omits the bond.
    chain_ids : sequence of str, optional
        Chain identifier per residue (default: one chain 'A').
    residue_numbers : sequence of int, optional
        Residue numbers to write (default 1..R).

    Returns
    -------
    mdtraj.Topology

    Examples
    --------
    >>> top = build_topology(['GLY', 'ALA'])
    >>> top.n_atoms, top.n_bonds
    (9, 8)
    """
    import mdtraj as md

    lay = atom_layout(sequence)
    n = len(lay.sequence)
    chain_ids = list(chain_ids) if chain_ids is not None else ["A"] * n
    residue_numbers = list(residue_numbers) if residue_numbers is not None else list(range(1, n + 1))
    top = md.Topology()
    atoms = []
    chain = None
    for r, name in enumerate(lay.sequence):
        if chain is None or chain_ids[r] != chain_ids[r - 1]:
            chain = top.add_chain(chain_id=chain_ids[r]) if _has_chain_id_arg() else top.add_chain()
        res = top.add_residue(name, chain, resSeq=int(residue_numbers[r]))
        for a in TEMPLATES[name].atoms:
            atoms.append(top.add_atom(a, md.element.get_by_symbol(a[0]), res))
    for i, j in lay.bonds(segment_start):
        top.add_bond(atoms[i], atoms[j])
    return top


@lru_cache(maxsize=1)
def _has_chain_id_arg() -> bool:
    import inspect

    import mdtraj as md

    return "chain_id" in inspect.signature(md.Topology.add_chain).parameters


def place_oxt(ca, c, o, bond=OXT_BOND_NM):
    """Place terminal OXT atoms in the plane of CA, C, O.

    The carboxylate is built with OXT opposite the bisector of the C->CA and
    C->O directions, which gives angles of about 120 degrees to both.

    Parameters
    ----------
    ca, c, o : ndarray, shape (..., 3), nm
    bond : float
        C-OXT distance (nm).

    Returns
    -------
    ndarray, shape (..., 3), nm

    Examples
    --------
    >>> import numpy as np
    >>> oxt = place_oxt(np.array([-0.15, 0, 0]), np.zeros(3), np.array([0.0625, 0.108, 0]))
    >>> round(float(np.linalg.norm(oxt)), 3)
    0.125
    """
    u1 = ca - c
    u2 = o - c
    u1 = u1 / np.maximum(np.linalg.norm(u1, axis=-1, keepdims=True), 1e-9)
    u2 = u2 / np.maximum(np.linalg.norm(u2, axis=-1, keepdims=True), 1e-9)
    d = -(u1 + u2)
    d = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-9)
    return c + bond * d


def chiral_centres(layout) -> np.ndarray:
    """(n, 4) atom indices (N, CA, C, CB) of every residue with a CB: the C-alpha stereocentres of ``layout``.

    Examples
    --------
    >>> chiral_centres(atom_layout(["GLY", "ALA"])).tolist()
    [[4, 5, 6, 8]]
    """
    out = [[layout.index(r, name) for name in ("N", "CA", "C", "CB")]
           for r in range(len(layout.residue_start) - 1) if "CB" in layout.atom_names[layout.residue_start[r]:
                                                                                     layout.residue_start[r + 1]]]
    return np.array(out, dtype=np.int64).reshape(-1, 4)


def chirality_volumes(xyz, centres) -> np.ndarray:
    """Signed volume ``((N - CA) x (C - CA)) . (CB - CA)`` (nm^3) of each C-alpha stereocentre of
    :func:`chiral_centres` in frames ``xyz`` (..., A, 3): positive for an L-amino acid, negative for D.

    Examples
    --------
    >>> (chirality_volumes(ens.xyz, chiral_centres(ens.layout)) > 0).all()  # a PDB structure  # doctest: +SKIP
    True
    """
    x = np.asarray(xyz, dtype=np.float64)
    n, ca, c, cb = (x[..., centres[:, k], :] for k in range(4))
    return np.einsum("...i,...i->...", np.cross(n - ca, c - ca), cb - ca)
