"""Levels: parse level lists, build hierarchies for an ensemble, CG topologies and coarsening.

A level list such as ``"ca,ucg:12"`` names the resolutions to build, finest
first; :func:`build_hierarchy` turns it into a :class:`~.operators.Hierarchy`
for one ensemble (partitioning UCG levels with
:func:`~.partition.partition_mapping`), and :func:`coarsen` maps the
ensemble to every level with a topology of one pseudo-atom per bead. The
bead schemes ``com``, ``martini3`` and ``martini2`` (:mod:`.schemes`) map
the atoms directly: each is a hierarchy of its own
(:func:`build_hierarchies`), beside the chain ``aa -> ca -> ucgN``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from ..structure import InputError
from .hierarchy import Hierarchy
from .operators import Mapping, ca_mapping
from .partition import partition_mapping
from .schemes import ATOM_GROUP_SCHEMES, bead_residues, scheme_mapping

__all__ = ["LevelSpec", "parse_levels", "build_hierarchy", "build_hierarchies", "cg_topology", "coarsen"]

#: Residue name of ultra-coarse beads in CG topologies.
BEAD_RESIDUE_NAME = "BEA"


@dataclass(frozen=True)
class LevelSpec:
    """One requested level: ``kind`` is ``'ca'``, ``'scheme'`` (``com``, ``martini3``, ``martini2``), ``'ucg'``
    (with ``n_beads``) or ``'file'`` (with ``path``).

    Examples
    --------
    >>> LevelSpec('ucg12', 'ucg', 12)
    LevelSpec(name='ucg12', kind='ucg', n_beads=12, path=None)
    """

    name: str
    kind: str
    n_beads: int | None = None
    path: str | None = None


_UCG = re.compile(r"^ucg:?(\d+)$", re.IGNORECASE)


def parse_levels(spec) -> list:
    """Parse a level list such as ``"ca,ucg:12"``.

    Tokens: ``ca``; the bead schemes ``com``, ``martini3`` and ``martini2``
    (mapped from the atoms, anywhere in the list); ``ucg:N`` (or ``ucgN``)
    for N ultra-coarse beads; a path ending in ``.json`` for a user-defined
    mapping from the previous level. Levels go from fine to coarse.

    Returns
    -------
    list of LevelSpec

    Examples
    --------
    >>> [(s.name, s.kind, s.n_beads) for s in parse_levels('ca,ucg:12')]
    [('ca', 'ca', None), ('ucg12', 'ucg', 12)]
    >>> try:
    ...     parse_levels('ca,blob')
    ... except ValueError as err:
    ...     print(err)
    unknown level 'blob' in 'ca,blob'; use ca, com, martini3, martini2, ucg:N (N beads) or a mapping .json file
    """
    tokens = [t.strip() for t in spec.split(",") if t.strip()]
    if not tokens:
        raise InputError(f"no levels in {spec!r}; use e.g. 'ca' or 'ca,ucg:12'")
    out = []
    for t in tokens:
        m = _UCG.match(t)
        if t.lower() == "ca":
            out.append(LevelSpec("ca", "ca"))
        elif t.lower() in ATOM_GROUP_SCHEMES:
            out.append(LevelSpec(t.lower(), "scheme"))
        elif m:
            n = int(m.group(1))
            if n < 1:
                raise InputError(f"level {t!r}: the number of beads must be at least 1")
            out.append(LevelSpec(f"ucg{n}", "ucg", n))
        elif t.lower().endswith(".json"):
            name = os.path.basename(t)[: -len(".json")]
            name = re.sub(r"_mapping$", "", name) or "user"
            out.append(LevelSpec(name, "file", path=t))
        else:
            raise InputError(f"unknown level {t!r} in {spec!r}; use ca, com, martini3, martini2, ucg:N (N beads) or "
                             "a mapping .json file")
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"level(s) {', '.join(dup)} requested more than once in {spec!r}")
    if "aa" in names:
        raise InputError("'aa' is the all-atom input level and cannot be requested")
    return out


def build_hierarchy(ensemble, levels="ca", **partition_options):
    """Build the hierarchy ``aa -> ... `` for ``levels`` on an ensemble.

    UCG levels are partitioned from the ensemble's C-alpha coordinates
    (:func:`~.partition.partition_mapping`); a C-alpha level is inserted when a UCG or
    C-alpha-based file level is requested without it.

    Parameters
    ----------
    ensemble : ProteinEnsemble
    levels : str
        Level list (see :func:`parse_levels`).
    **partition_options
        Passed to :func:`~.partition.partition_mapping` (e.g. ``refine=False``).

    Returns
    -------
    hierarchy : Hierarchy
    requested : list of str
        Names of the requested levels (a subset of ``hierarchy.levels``).

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> h, req = build_hierarchy(load_ensemble('tests/data/trpcage.pdb'), 'ucg:4')  # doctest: +SKIP
    >>> h.levels, req  # doctest: +SKIP
    (['aa', 'ca', 'ucg4'], ['ucg4'])
    """
    specs = parse_levels(levels)
    schemes = [s.name for s in specs if s.kind == "scheme"]
    if schemes:
        raise InputError(f"level(s) {', '.join(schemes)} map the atoms directly and are no step of a hierarchy; "
                         "use build_hierarchies or coarsen")
    aa_ca = ca_mapping(ensemble.sequence)
    n_res, n_atoms = aa_ca.n_beads, ensemble.n_atoms
    maps, names = [], ["aa"]

    def add_ca():
        maps.append(aa_ca)
        names.append("ca")

    ca_xyz = None
    for spec in specs:
        current = names[-1]
        size = maps[-1].n_beads if maps else n_atoms
        if spec.kind == "ca":
            if current != "aa":
                raise InputError("level 'ca' must come first (levels go from fine to coarse); "
                                 f"got it after {current!r}")
            add_ca()
        elif spec.kind == "ucg":
            if "ca" not in names:
                if current != "aa":
                    raise InputError(f"level {spec.name!r} needs C-alphas but follows {current!r}")
                add_ca()
                current, size = "ca", n_res
            if spec.n_beads > size:
                raise InputError(f"level {spec.name!r} asks for {spec.n_beads} beads but the previous level "
                                 f"{current!r} has only {size}; list levels from fine to coarse")
            if ca_xyz is None:
                ca_xyz = _required_coordinates(ensemble, aa_ca)
            if current == "ca":
                m = partition_mapping(ca_xyz, spec.n_beads, ensemble.segment_start, name=spec.name,
                                      **partition_options)
            else:
                # nested level: group the beads of the previous level (which must partition the residues)
                units = _level_on_ca(maps, names)
                m = partition_mapping(ca_xyz, spec.n_beads, ensemble.segment_start, units=units, name=spec.name,
                                      **partition_options)
            maps.append(m)
            names.append(spec.name)
        else:
            m = Mapping.from_json(spec.path)
            if m.n_fine != size:
                if current != "aa" or m.n_fine != n_res:
                    raise InputError(f"mapping {spec.path} expects {m.n_fine} fine particles but the previous level "
                                     f"{current!r} has {size} (and the protein has {n_res} residues, "
                                     f"{n_atoms} heavy atoms)")
                add_ca()  # a mapping of the residues: insert the C-alpha level below it
            maps.append(m)
            names.append(spec.name)
    return Hierarchy(maps, names, n_residues=n_res), [s.name for s in specs]


def build_hierarchies(ensemble, levels="ca", **partition_options) -> dict:
    """The hierarchy of every requested level: bead schemes map the atoms directly, the rest share one chain.

    Parameters
    ----------
    ensemble : ProteinEnsemble
    levels : str
        Level list (see :func:`parse_levels`).
    **partition_options
        Passed to :func:`~.partition.partition_mapping`.

    Returns
    -------
    dict
        ``{level: Hierarchy}`` in the order requested; levels of the chain
        ``aa -> ca -> ucgN`` share one :class:`~.hierarchy.Hierarchy` (from
        :func:`build_hierarchy`), each bead scheme has its own ``aa -> scheme``.

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> hs = build_hierarchies(load_ensemble('tests/data/trpcage.pdb'), 'ca,martini3')  # doctest: +SKIP
    >>> {k: h.levels for k, h in hs.items()}  # doctest: +SKIP
    {'ca': ['aa', 'ca'], 'martini3': ['aa', 'martini3']}
    """
    specs = parse_levels(levels)
    chain = [s for s in specs if s.kind != "scheme"]
    shared = None
    if chain:
        tokens = [s.path if s.kind == "file" else s.name for s in chain]
        shared, _ = build_hierarchy(ensemble, ",".join(tokens), **partition_options)
    return {s.name: Hierarchy([scheme_mapping(s.name, ensemble.sequence)], ["aa", s.name],
                              n_residues=ensemble.n_residues) if s.kind == "scheme" else shared for s in specs}


def _level_on_ca(maps, names):
    """The mapping from the C-alpha level to the last level (which must partition the residues)."""
    i = names.index("ca")  # maps[j] maps level names[j] to names[j + 1]
    m = maps[i]
    for nxt in maps[i + 1:]:
        m = m.compose(nxt)
    return m


def _required_coordinates(ensemble, mapping: Mapping, partial=False) -> np.ndarray:
    """Map ``ensemble.xyz`` after checking that every atom ``mapping`` uses is present in every frame.

    With ``partial``, a bead averages the atoms present (:meth:`~.operators.Mapping.apply_present`) and only a bead
    with none of its atoms is an error.
    """
    used = np.unique(np.concatenate(mapping.members))
    missing = ~ensemble.mask[:, used]
    if partial and missing.any():
        xyz = mapping.apply_present(ensemble.xyz, ensemble.mask)
        empty = ~np.isfinite(xyz).all(-1)  # (F, beads)
        if not empty.any():
            return xyz
        missing = np.zeros_like(missing)
        for b in np.flatnonzero(empty.any(0)):  # the atoms of the empty beads, in the frames where they are empty
            missing[:, np.searchsorted(used, mapping.members[b])] |= empty[:, b, None]
    if missing.any():
        bad_atoms = used[missing.any(0)]
        lay = ensemble.layout
        res = sorted({int(r) for r in lay.atom_residue[bad_atoms]})
        labels = [f"{ensemble.sequence[r]}{ensemble.residue_numbers[r]}" for r in res[:10]]
        more = f" and {len(res) - 10} more" if len(res) > 10 else ""
        atoms = sorted({lay.atom_names[a] for a in bad_atoms})
        raise InputError(f"{ensemble.source or 'input'}: level {mapping.name!r} needs atom(s) {', '.join(atoms)} "
                         f"that are missing in {int(missing.any(1).sum())} of {ensemble.n_frames} frame(s), in "
                         f"residue(s) {', '.join(labels)}{more}; drop those frames or complete the structure")
    return mapping.apply(ensemble.xyz)


def cg_topology(mapping: Mapping, sequence, level: str, segment_start=None, chain_ids=None, residue_numbers=None):
    """An mdtraj topology with one pseudo-atom per bead of ``mapping``.

    At the C-alpha and centre-of-mass levels (``'ca'``, ``'com'``) every bead
    is a residue with its real name and one atom ``CA`` (carbon), bonded to
    the previous residue unless ``segment_start`` marks a chain start or
    break. At the Martini levels (``'martini3'``, ``'martini2'``) every
    residue holds its beads ``BB``, ``SC1`` ... as martinize2 names them,
    bonded ``BB``-``BB`` along the chain and ``BB``-``SC1``-``SC2`` ... within
    a residue (enough to make molecules whole; not the Martini topology).
    Any other level gets residues ``BEA`` numbered 1..N with atoms ``B1``,
    ``B2`` ... (carbon) and no bonds.

    Parameters
    ----------
    mapping : Mapping
        Mapping into the level (only ``n_beads`` and ``bead_names`` are used).
    sequence : sequence of str
        Residue names of the protein.
    level : str
        Level name.
    segment_start, chain_ids, residue_numbers : optional
        Per-residue chain information (residue levels only).

    Returns
    -------
    mdtraj.Topology

    Examples
    --------
    >>> top = cg_topology(ca_mapping(['GLY', 'ALA', 'SER']), ['GLY', 'ALA', 'SER'], 'ca')
    >>> top.n_atoms, top.n_bonds, str(top.residue(1))
    (3, 2, 'ALA2')
    >>> top = cg_topology(Mapping([[0, 1], [2]]), ['GLY', 'ALA', 'SER'], 'ucg2')
    >>> [a.name for a in top.atoms], top.residue(0).name
    (['B1', 'B2'], 'BEA')
    >>> from openmm_backmap.mapping.schemes import martini_mapping
    >>> top = cg_topology(martini_mapping(['GLY', 'ALA']), ['GLY', 'ALA'], 'martini3')
    >>> [f"{a.residue.name}:{a.name}" for a in top.atoms], top.n_bonds
    (['GLY:BB', 'ALA:BB', 'ALA:SC1'], 2)
    """
    import mdtraj as md

    n = mapping.n_beads
    top = md.Topology()
    if level in ("ca", "com", "martini3", "martini2"):
        sequence = list(sequence)
        n_res = len(sequence)
        if level in ("ca", "com"):
            if n_res != n:
                raise InputError(f"level {level!r} has {n} beads but the sequence has {n_res} residues")
            residue_of, names = np.arange(n), ["CA"] * n
        else:
            residue_of, names = bead_residues(mapping), mapping.bead_names
            if np.any(np.diff(residue_of) < 0) or set(residue_of.tolist()) != set(range(n_res)):
                raise InputError(f"level {level!r}: the beads are not residue by residue over the {n_res} residues")
        chain_ids = list(chain_ids) if chain_ids is not None else ["A"] * n_res
        residue_numbers = list(residue_numbers) if residue_numbers is not None else list(range(1, n_res + 1))
        seg = np.zeros(n_res, dtype=bool) if segment_start is None else np.asarray(segment_start, dtype=bool)
        starts = np.searchsorted(residue_of, np.arange(n_res + 1))
        chain, prev = None, None
        for r in range(n_res):
            if chain is None or chain_ids[r] != chain_ids[r - 1]:
                chain = _add_chain(top, chain_ids[r])
                prev = None
            res = top.add_residue(sequence[r], chain, resSeq=int(residue_numbers[r]))
            atoms = [top.add_atom(names[b], md.element.carbon, res) for b in range(starts[r], starts[r + 1])]
            if prev is not None and not seg[r]:
                top.add_bond(prev, atoms[0])
            for a, b in zip(atoms[:-1], atoms[1:]):
                top.add_bond(a, b)
            prev = atoms[0]
        return top
    chain = _add_chain(top, "A")
    for b in range(n):
        res = top.add_residue(BEAD_RESIDUE_NAME, chain, resSeq=b + 1)
        name = mapping.bead_names[b] if mapping.bead_names is not None else f"B{b + 1}"
        if len(name) > 4:
            name = f"B{b + 1}" if b + 1 < 1000 else "BX"
        top.add_atom(name, md.element.carbon, res)
    return top


def coarsen(ensemble, levels=None, hierarchy=None, **partition_options) -> dict:
    """Map a heavy-atom ensemble to coarser levels.

    Parameters
    ----------
    ensemble : ProteinEnsemble
    levels : str or list of str, optional
        Level list for :func:`parse_levels` (``'ca'``, ``'ca,ucg:12'``,
        ``'com,martini3'`` ...; default ``'ca'``). With ``hierarchy``, a subset
        of its level names, comma-separated or a list (default: all but the
        finest).
    hierarchy : Hierarchy, optional
        Use these mappings (e.g. a model's) instead of building them.
    **partition_options
        Passed to :func:`~.partition.partition_mapping`.

    Returns
    -------
    dict
        ``{level: (coords, topology, mapping)}`` with coords (F, N, 3) float32
        nm, an mdtraj topology with one pseudo-atom per bead, and the mapping
        from the heavy atoms to that level.

    Raises
    ------
    ValueError
        If an atom a level needs is missing in some frame (the message names
        the residues), or ``hierarchy`` was built for another protein. The
        bead schemes ``com``, ``martini3`` and ``martini2`` place a bead at the
        centre of the atoms present and fail only where none is.
    KeyError
        If ``levels`` names a level ``hierarchy`` does not have.

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> out = coarsen(load_ensemble('tests/data/trpcage.pdb'), 'ca,ucg:4')  # doctest: +SKIP
    >>> out['ucg4'][0].shape  # doctest: +SKIP
    (1, 4, 3)
    """
    if hierarchy is None:
        hierarchies = build_hierarchies(ensemble, "ca" if levels is None else levels, **partition_options)
    else:
        if hierarchy.sizes[0] != ensemble.n_atoms:
            raise InputError(f"the hierarchy starts from {hierarchy.sizes[0]} particles but "
                             f"{ensemble.source or 'the input'} has {ensemble.n_atoms} heavy atoms "
                             f"({ensemble.n_residues} residues); it was built for another protein")
        if levels is None:
            requested = list(hierarchy.levels[1:])
        else:
            tokens = levels.split(",") if isinstance(levels, str) else levels
            requested = [t.strip() for t in tokens if t.strip()]
        for name in requested:
            hierarchy.index(name)  # unknown names fail before any work
        hierarchies = dict.fromkeys(requested, hierarchy)
    out = {}
    for name, h in hierarchies.items():
        m = h.composed(name)
        coords = _required_coordinates(ensemble, m, partial=name in ATOM_GROUP_SCHEMES).astype(np.float32)
        top = cg_topology(m, ensemble.sequence, name, ensemble.segment_start, ensemble.chain_ids,
                          ensemble.residue_numbers)
        out[name] = (coords, top, m)
    return out


def _add_chain(top, chain_id):
    """A new chain of ``top`` named ``chain_id`` (set afterwards: mdtraj < 1.10 has no ``chain_id`` argument)."""
    chain = top.add_chain()
    chain.chain_id = chain_id
    return chain
