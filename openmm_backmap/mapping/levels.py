"""Levels: parse level lists, build a hierarchy for an ensemble, CG topologies and coarsening.

A level list such as ``"ca,ucg:12"`` names the resolutions to build, finest
first; :func:`build_hierarchy` turns it into a :class:`~.operators.Hierarchy`
for one ensemble (partitioning UCG levels with
:func:`~.partition.partition_mapping`), and :func:`coarsen` maps the
ensemble to every level with a topology of one pseudo-atom per bead.
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

__all__ = ["LevelSpec", "parse_levels", "build_hierarchy", "cg_topology", "coarsen"]

#: Residue name of ultra-coarse beads in CG topologies.
BEAD_RESIDUE_NAME = "BEA"


@dataclass(frozen=True)
class LevelSpec:
    """One requested level: ``kind`` is ``'ca'``, ``'ucg'`` (with ``n_beads``) or ``'file'`` (with ``path``).

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

    Tokens: ``ca``; ``ucg:N`` (or ``ucgN``) for N ultra-coarse beads; a path
    ending in ``.json`` for a user-defined mapping from the previous level.
    Levels go from fine to coarse.

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
    unknown level 'blob' in 'ca,blob'; use ca, ucg:N (N beads) or a mapping .json file
    """
    tokens = [t.strip() for t in spec.split(",") if t.strip()]
    if not tokens:
        raise InputError(f"no levels in {spec!r}; use e.g. 'ca' or 'ca,ucg:12'")
    out = []
    for t in tokens:
        m = _UCG.match(t)
        if t.lower() == "ca":
            out.append(LevelSpec("ca", "ca"))
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
            raise InputError(f"unknown level {t!r} in {spec!r}; use ca, ucg:N (N beads) or a mapping .json file")
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


def _level_on_ca(maps, names):
    """The mapping from the C-alpha level to the last level (which must partition the residues)."""
    i = names.index("ca")  # maps[j] maps level names[j] to names[j + 1]
    m = maps[i]
    for nxt in maps[i + 1:]:
        m = m.compose(nxt)
    return m


def _required_coordinates(ensemble, mapping: Mapping) -> np.ndarray:
    """Map ``ensemble.xyz`` after checking that every atom ``mapping`` uses is present in every frame."""
    used = np.unique(np.concatenate(mapping.members))
    missing = ~ensemble.mask[:, used]
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

    At the C-alpha level (``level == 'ca'``) every bead is a residue with its
    real name and one atom ``CA`` (carbon), bonded to the previous residue
    unless ``segment_start`` marks a chain start or break. Any other level
    gets residues ``BEA`` numbered 1..N with atoms ``B1``, ``B2`` ... (carbon)
    and no bonds.

    Parameters
    ----------
    mapping : Mapping
        Mapping into the level (only ``n_beads`` and ``bead_names`` are used).
    sequence : sequence of str
        Residue names of the protein.
    level : str
        Level name.
    segment_start, chain_ids, residue_numbers : optional
        Per-residue chain information (C-alpha level only).

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
    """
    import mdtraj as md

    n = mapping.n_beads
    top = md.Topology()
    if level == "ca":
        sequence = list(sequence)
        if len(sequence) != n:
            raise InputError(f"C-alpha level has {n} beads but the sequence has {len(sequence)} residues")
        chain_ids = list(chain_ids) if chain_ids is not None else ["A"] * n
        residue_numbers = list(residue_numbers) if residue_numbers is not None else list(range(1, n + 1))
        seg = np.zeros(n, dtype=bool) if segment_start is None else np.asarray(segment_start, dtype=bool)
        chain, prev = None, None
        for r in range(n):
            if chain is None or chain_ids[r] != chain_ids[r - 1]:
                chain = _add_chain(top, chain_ids[r])
                prev = None
            res = top.add_residue(sequence[r], chain, resSeq=int(residue_numbers[r]))
            atom = top.add_atom("CA", md.element.carbon, res)
            if prev is not None and not seg[r]:
                top.add_bond(prev, atom)
            prev = atom
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
        Level list for :func:`parse_levels` (``'ca'``, ``'ca,ucg:12'`` ...;
        default ``'ca'``). With ``hierarchy``, a subset of its level names,
        comma-separated or a list (default: all but the finest).
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
        the residues), or ``hierarchy`` was built for another protein.
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
        hierarchy, requested = build_hierarchy(ensemble, "ca" if levels is None else levels, **partition_options)
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
    out = {}
    for name in requested:
        m = hierarchy.composed(name)
        coords = _required_coordinates(ensemble, m).astype(np.float32)
        top = cg_topology(m, ensemble.sequence, name, ensemble.segment_start, ensemble.chain_ids,
                          ensemble.residue_numbers)
        out[name] = (coords, top, m)
    return out


def _add_chain(top, chain_id):
    """A new chain of ``top`` named ``chain_id`` (set afterwards: mdtraj < 1.10 has no ``chain_id`` argument)."""
    chain = top.add_chain()
    chain.chain_id = chain_id
    return chain
