"""Force-field systems for backmapped heavy atoms: topology, hydrogens and the soft stage.

Everything here depends only on the topology and is built once per
:class:`~openmm_backmap.run.relax.relaxer.Relaxer` (on its template frame):

* :func:`build_force_field_system`: the heavy atoms with terminal ``OXT`` and
  disulfides, hydrogens from :meth:`openmm.app.Modeller.addHydrogens` (pH 7),
  the :class:`openmm.System`, and the local frames that rebuild OXT and every
  hydrogen geometrically per frame (:meth:`ForceFieldSystem.full_positions`;
  0.6 ms for trp-cage, 2 ms for adenylate kinase, where running
  ``addHydrogens`` per frame would cost 0.5 s and 3.6 s);
* :func:`build_soft_system`: the bonded terms and restraints with the
  nonbonded forces replaced by a capped repulsion, for frames whose atoms
  overlap;
* :func:`reference_bond_lengths`: the force field's equilibrium length of
  every heavy-atom bond, for the reference-free quality checks, cached per
  topology (a Relaxer's system fills the cache, so it is built once).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from ...structure.constants import BONDI_RADII_NM, HYDROGEN_COLLAPSE_NM
from .bond_table import template_bond_lengths as _template_bond_lengths
from ...structure import (TEMPLATES, place_oxt, InputError, atom_layout, canonical_atom_name, canonical_residue_name,
                          disulfide_bonds)

__all__ = ["ForceFieldSystem", "build_force_field_system", "build_soft_system", "hydrogen_collapse", "place_oxt",
           "reference_bond_lengths", "read_heavy_topology", "pick_platform", "DEFAULT_FORCEFIELD", "SOFT_K",
           "SOFT_RADIUS_SCALE"]

#: The force field of the relaxer and of the reference bond lengths (AMBER ff14SB for proteins).
DEFAULT_FORCEFIELD = "amber14-all.xml"
#: Force constant of the soft repulsion, kJ/mol/nm^2 (``E = SOFT_K * (d0 - r)^2``, at most ``SOFT_K * d0^2``).
SOFT_K = 1.0e4
#: Contact distance of the soft repulsion as a fraction of the sum of the Bondi radii.
SOFT_RADIUS_SCALE = 0.75
#: Force group of the restraints and the chirality hold (:mod:`.restraints`; force-field terms stay in group 0, the
#: soft repulsion is group 2).
RESTRAINT_GROUP = 1
#: Topologies whose reference bond lengths are kept.
_CACHE_SIZE = 32
_BOND_LENGTHS: dict = {}


def pick_platform(platform):
    """An :class:`openmm.Platform` from a name, a platform, or None (the fastest one available)."""
    import openmm

    if platform is None:
        platforms = [openmm.Platform.getPlatform(i) for i in range(openmm.Platform.getNumPlatforms())]
        return max(platforms, key=lambda p: p.getSpeed())
    if isinstance(platform, str):
        return openmm.Platform.getPlatformByName(platform)
    return platform


def read_heavy_topology(topology):
    """Sequence, chain ids, residue numbers and segment starts (None without bonds) of a heavy-atom topology.

    Parameters
    ----------
    topology : openmm.app.Topology or mdtraj.Topology
        Canonical heavy atoms, as made by
        :func:`~openmm_backmap.structure.build_topology`.

    Raises
    ------
    InputError
        A residue is not a standard amino acid or lacks canonical heavy atoms.
    """
    import openmm.app as app

    if isinstance(topology, app.Topology):
        residues = list(topology.residues())
        res_atoms = [list(r.atoms()) for r in residues]
        chain_ids = [r.chain.id or chr(65 + r.chain.index % 26) for r in residues]
        numbers = [int(r.id) if str(r.id).lstrip("-").isdigit() else i + 1 for i, r in enumerate(residues)]
        bonds = [(a.index, b.index) for a, b in topology.bonds()]
    else:  # mdtraj
        residues = list(topology.residues)
        res_atoms = [list(r.atoms) for r in residues]
        chain_ids = [getattr(r.chain, "chain_id", None) or chr(65 + r.chain.index % 26) for r in residues]
        numbers = [int(r.resSeq) for r in residues]
        bonds = [(a.index, b.index) for a, b in topology.bonds]
    chain_index = [r.chain.index for r in residues]
    sequence = []
    for r, (res, atoms) in enumerate(zip(residues, res_atoms)):
        name = canonical_residue_name(res.name)
        if name is None:
            raise InputError(f"residue {r} ({res.name}) is not a standard amino acid; "
                             "the relaxer needs the heavy-atom topology of a backmapped protein")
        names = tuple(canonical_atom_name(name, a.name) for a in atoms)
        if names != TEMPLATES[name].atoms:
            raise InputError(f"residue {r} ({res.name}) has atoms {names}; expected the canonical heavy atoms "
                             f"{TEMPLATES[name].atoms} (build the topology with "
                             "openmm_backmap.structure.build_topology)")
        sequence.append(name)
    segment_start = None
    if bonds:
        lay = atom_layout(sequence)
        bset = {tuple(sorted(b)) for b in bonds}
        segment_start = np.zeros(len(sequence), dtype=bool)
        segment_start[:1] = True
        for r in range(1, len(sequence)):
            pep = (lay.index(r - 1, "C"), lay.index(r, "N"))
            segment_start[r] = chain_index[r] != chain_index[r - 1] or pep not in bset
    return sequence, chain_ids, numbers, segment_start


def _native_obc2(system, cutoff):
    """Replace the CustomGBForce of ``implicit/obc2.xml`` by the equivalent native GBSAOBCForce.

    Same energy (OBC II with the ACE surface term, to ~1e-5 relative) but
    about 6x faster on the CPU platform; OpenMM's ForceField cannot be asked
    for the native force itself.
    """
    import openmm

    for i, gb in enumerate(system.getForces()):
        if isinstance(gb, openmm.CustomGBForce):
            break
    else:
        return
    native = openmm.GBSAOBCForce()
    if cutoff is None:
        native.setNonbondedMethod(openmm.GBSAOBCForce.NoCutoff)
    else:
        native.setNonbondedMethod(openmm.GBSAOBCForce.CutoffNonPeriodic)
        native.setCutoffDistance(cutoff)
    native.setSoluteDielectric(1.0)
    native.setSolventDielectric(78.5)
    for j in range(gb.getNumParticles()):
        charge, offset_radius, scaled_radius = gb.getParticleParameters(j)
        native.addParticle(charge, offset_radius + 0.009, scaled_radius / offset_radius)
    system.removeForce(i)
    system.addForce(native)


def _local_frames(pos, refs):
    """Orthonormal frames (H, 3, 3), rows the axes, from (parent, neighbour a, neighbour b) atom triples."""
    p, a, b = pos[refs[:, 0]], pos[refs[:, 1]], pos[refs[:, 2]]
    e1 = a - p
    e1 /= np.maximum(np.linalg.norm(e1, axis=1, keepdims=True), 1e-9)
    v = b - p
    e2 = v - np.sum(v * e1, axis=1, keepdims=True) * e1
    e2 /= np.maximum(np.linalg.norm(e2, axis=1, keepdims=True), 1e-9)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=1)


def _hydrogen_frames(top_h, pos_h):
    """Every hydrogen's index, reference atoms (parent, a, b) and its position in their local frame."""
    import openmm.app as app

    n = top_h.getNumAtoms()
    is_h = np.array([a.element == app.element.hydrogen for a in top_h.atoms()])
    heavy_nb = [[] for _ in range(n)]
    parent = np.full(n, -1, dtype=np.int64)
    for a, b in top_h.bonds():
        i, j = a.index, b.index
        if is_h[i] and not is_h[j]:
            parent[i] = j
        elif is_h[j] and not is_h[i]:
            parent[j] = i
        elif not is_h[i] and not is_h[j]:
            heavy_nb[i].append(j)
            heavy_nb[j].append(i)
    h_idx = np.nonzero(is_h)[0]
    refs = []
    for h in h_idx:
        p = parent[h]
        if p < 0 or not heavy_nb[p]:
            raise InputError(f"hydrogen {h} has no heavy parent with a heavy neighbour")
        a = min(heavy_nb[p])
        others = sorted(x for x in heavy_nb[p] if x != a)
        if not others:
            others = sorted(x for x in heavy_nb[a] if x != p)
        if not others:
            raise InputError(f"cannot define a local frame for hydrogen {h}")
        refs.append((p, a, others[0]))
    refs = np.array(refs, dtype=np.int64).reshape(-1, 3)
    local = np.einsum("hij,hj->hi", _local_frames(pos_h, refs), pos_h[h_idx] - pos_h[refs[:, 0]])
    return h_idx, refs, local


@dataclass
class ForceFieldSystem:
    """A force-field System for canonical heavy atoms, and how to place the atoms the model does not write.

    Made by :func:`build_force_field_system`.

    Attributes
    ----------
    topology_h : openmm.app.Topology
        All atoms (OXT and hydrogens added; one chain per segment).
    system : openmm.System
    heavy_index : ndarray of int, (A,)
        Index in ``topology_h`` of every canonical heavy atom.
    heavy_bonds : ndarray of int, (n, 2)
        Heavy-atom bonds (template, peptide and disulfide), canonical indices.
    disulfides : list of (int, int)
        SG pairs bonded as disulfides (canonical indices).
    """

    topology_h: object
    system: object
    heavy_index: np.ndarray
    heavy_bonds: np.ndarray
    disulfides: list
    oxt_index: np.ndarray
    oxt_from: np.ndarray
    h_index: np.ndarray
    h_refs: np.ndarray
    h_local: np.ndarray

    def full_positions(self, xyz):
        """All-atom positions (nm, order of ``topology_h``) of a heavy-atom frame: OXT and hydrogens placed.

        Examples
        --------
        >>> ffs.full_positions(ens.xyz[0]).shape  # doctest: +SKIP
        (304, 3)
        """
        full = np.zeros((self.topology_h.getNumAtoms(), 3))
        full[self.heavy_index] = xyz
        if len(self.oxt_index):
            f = self.oxt_from
            full[self.oxt_index] = place_oxt(xyz[f[:, 0]], xyz[f[:, 1]], xyz[f[:, 2]])
        if len(self.h_index):
            frames = _local_frames(full, self.h_refs)
            full[self.h_index] = full[self.h_refs[:, 0]] + np.einsum("hij,hi->hj", frames, self.h_local)
        return full

    def bond_lengths(self, bonds):
        """Equilibrium lengths (nm) of heavy-atom ``bonds`` (canonical indices) in the System's
        HarmonicBondForce; NaN for pairs it has no term for."""
        import openmm

        r0 = {}
        for force in self.system.getForces():
            if isinstance(force, openmm.HarmonicBondForce):
                for k in range(force.getNumBonds()):
                    i, j, length, _ = force.getBondParameters(k)
                    r0[(min(i, j), max(i, j))] = length.value_in_unit(openmm.unit.nanometer)
        h = self.heavy_index
        return np.array([r0.get((min(h[i], h[j]), max(h[i], h[j])), np.nan) for i, j in bonds], dtype=np.float64)


def build_force_field_system(sequence, segment_start, xyz, chain_ids=None, residue_numbers=None,
                             forcefield=DEFAULT_FORCEFIELD, implicit=None, ph=7.0, constraints=None,
                             nonbonded_cutoff=None) -> ForceFieldSystem:
    """The OpenMM System of a backmapped protein, built on one heavy-atom frame.

    Parameters
    ----------
    sequence : sequence of str
        Canonical residue names.
    segment_start : array of bool, (R,)
        Chain starts and breaks; every segment becomes a chain with its own termini.
    xyz : ndarray, (A, 3), nm
        Heavy atoms in canonical order: hydrogens are added to this frame, and
        the disulfides of :func:`~openmm_backmap.structure.disulfide_bonds` are bonded.
    chain_ids, residue_numbers : sequences, optional
        Written into ``topology_h``.
    forcefield : str or sequence of str
        OpenMM force-field file(s).
    implicit : str, optional
        Implicit-solvent file; ``implicit/obc2.xml`` becomes the native GBSAOBCForce.
    ph : float
        For :meth:`openmm.app.Modeller.addHydrogens`.
    constraints : {'hbonds', None}
    nonbonded_cutoff : float, optional
        nm (CutoffNonPeriodic); None: no cutoff.

    Returns
    -------
    ForceFieldSystem

    Examples
    --------
    >>> ffs = build_force_field_system(ens.sequence, ens.segment_start, ens.xyz[0])  # doctest: +SKIP
    """
    import openmm.app as app
    import openmm.unit as u

    forcefield = [forcefield] if isinstance(forcefield, str) else list(forcefield)
    lay = atom_layout(sequence)
    n_res = len(sequence)
    chain_ids = ["A"] * n_res if chain_ids is None else list(chain_ids)
    residue_numbers = list(range(1, n_res + 1)) if residue_numbers is None else list(residue_numbers)
    seg = np.array(segment_start, dtype=bool)
    seg[:1] = True
    c_term = np.append(seg[1:], True)

    top = app.Topology()
    atoms, oxt_atoms, pos = [], [], []
    chain = None
    for r, name in enumerate(sequence):
        if seg[r]:
            chain = top.addChain(chain_ids[r])
        res = top.addResidue(name, chain, str(residue_numbers[r]))
        base = int(lay.residue_start[r])
        for i, a in enumerate(TEMPLATES[name].atoms):
            atoms.append(top.addAtom(a, app.Element.getBySymbol(a[0]), res))
            pos.append(xyz[base + i])
        if c_term[r]:
            oxt_atoms.append((r, top.addAtom("OXT", app.element.oxygen, res)))
            pos.append(place_oxt(xyz[base + 1], xyz[base + 2], xyz[base + 3]))
    heavy_bonds = lay.bonds(seg)
    for i, j in heavy_bonds:
        top.addBond(atoms[i], atoms[j])
    for r, a in oxt_atoms:
        top.addBond(atoms[lay.index(r, "C")], a)
    disulfides = disulfide_bonds(sequence, xyz)
    for i, j in disulfides:
        top.addBond(atoms[i], atoms[j])
    if len(disulfides):
        heavy_bonds = np.concatenate([heavy_bonds, disulfides])

    # Hydrogens are added with the plain force field: it picks the same variants, and minimising the
    # new hydrogens with implicit solvent costs 10x more (20 s instead of 2 s for 214 residues on CPU).
    modeller = app.Modeller(top, np.asarray(pos) * u.nanometer)
    state = random.getstate()  # addHydrogens starts new hydrogens at random offsets: make it reproducible
    try:
        random.seed(0)
        modeller.addHydrogens(app.ForceField(*forcefield), pH=ph)
    finally:
        random.setstate(state)
    top_h = modeller.topology
    pos_h = np.asarray(modeller.getPositions().value_in_unit(u.nanometer))

    # heavy atoms keep their order in addHydrogens; match by residue and name to be safe
    by_name = {(a.residue.index, a.name): a.index for a in top_h.atoms()}
    heavy_index = np.array([by_name[(int(r), n)] for r, n in zip(lay.atom_residue, lay.atom_names)], dtype=np.int64)
    oxt_index = np.array([by_name[(r, "OXT")] for r, _ in oxt_atoms], dtype=np.int64)
    oxt_from = np.array([[lay.index(r, "CA"), lay.index(r, "C"), lay.index(r, "O")] for r, _ in oxt_atoms],
                        dtype=np.int64).reshape(-1, 3)
    h_index, h_refs, h_local = _hydrogen_frames(top_h, pos_h)

    kwargs = dict(constraints=app.HBonds if constraints == "hbonds" else None, removeCMMotion=False)
    if nonbonded_cutoff is None:
        kwargs["nonbondedMethod"] = app.NoCutoff
    else:
        kwargs.update(nonbondedMethod=app.CutoffNonPeriodic, nonbondedCutoff=nonbonded_cutoff * u.nanometer)
    system = app.ForceField(*forcefield, *([implicit] if implicit else [])).createSystem(top_h, **kwargs)
    if implicit and str(implicit).endswith("obc2.xml"):
        _native_obc2(system, nonbonded_cutoff)
    for force in system.getForces():
        force.setForceGroup(0)
    ffs = ForceFieldSystem(top_h, system, heavy_index, heavy_bonds, disulfides, oxt_index, oxt_from, h_index,
                           h_refs, h_local)
    _remember_bond_lengths(ffs, sequence, seg, forcefield)
    return ffs


def _cache_key(sequence, segment_start, forcefield):
    seg = np.zeros(len(sequence), dtype=bool) if segment_start is None else np.array(segment_start, dtype=bool)
    seg[:1] = True
    ff = (forcefield,) if isinstance(forcefield, str) else tuple(forcefield)
    return tuple(sequence), tuple(bool(s) for s in seg), ff


def _remember_bond_lengths(ffs, sequence, segment_start, forcefield):
    key = _cache_key(sequence, segment_start, forcefield)
    if key not in _BOND_LENGTHS:
        while len(_BOND_LENGTHS) >= _CACHE_SIZE:
            _BOND_LENGTHS.pop(next(iter(_BOND_LENGTHS)))
        _BOND_LENGTHS[key] = ffs.bond_lengths(atom_layout(sequence).bonds(np.array(key[1])))


def reference_bond_lengths(sequence, segment_start, xyz, forcefield=DEFAULT_FORCEFIELD) -> np.ndarray:
    """Force-field equilibrium length of every heavy-atom bond of a topology.

    Taken from the HarmonicBondForce of the System a :class:`Relaxer` uses
    (terminal residues get their own atom types), so the quality checks
    measure against the force field that relaxes the frames. Cached per
    topology: a Relaxer that built its System fills the cache.

    Parameters
    ----------
    sequence : sequence of str
        Canonical residue names.
    segment_start : array of bool, optional
    xyz : ndarray, (A, 3), nm
        A heavy-atom frame to add hydrogens to if nothing is cached (the
        histidine variants it picks can differ slightly in bond lengths).
    forcefield : str or sequence of str

    Returns
    -------
    ndarray, (n,), nm
        One length per bond of ``atom_layout(sequence).bonds(segment_start)``,
        in that order (NaN for a bond the force field has no term for).

    Examples
    --------
    >>> r0 = reference_bond_lengths(ens.sequence, ens.segment_start, ens.xyz[0])  # doctest: +SKIP
    >>> round(float(r0[2]), 4)  # C=O of the first residue  # doctest: +SKIP
    0.1229
    """
    key = _cache_key(sequence, segment_start, forcefield)
    if key not in _BOND_LENGTHS:
        seg = np.array(key[1], dtype=bool)
        joined = _join_lone_residues(seg)
        if joined is not None:
            # a lone residue (a one-residue segment) is an N- and a C-terminus at once, which no force field has a
            # template for: measure its bonds as part of its neighbour's segment, and drop the extra peptide bond
            full = reference_bond_lengths(sequence, joined, xyz, forcefield)
            lay = atom_layout(sequence)
            index = {tuple(b): k for k, b in enumerate(lay.bonds(joined).tolist())}
            _BOND_LENGTHS[key] = full[[index[tuple(b)] for b in lay.bonds(seg).tolist()]]
        elif seg.sum() > 1:
            # segments share no bond, and the layout lists bonds segment by segment: one System per distinct
            # segment, so a condensate's 50 identical chains cost one small System, not a 46,000-atom one (68 s)
            lay = atom_layout(sequence)
            starts = np.r_[np.flatnonzero(seg), len(seg)]
            x = np.asarray(xyz, dtype=np.float64)
            _BOND_LENGTHS[key] = np.concatenate([
                reference_bond_lengths(list(sequence[a:b]), None, x[lay.residue_start[a]:lay.residue_start[b]],
                                       forcefield) for a, b in zip(starts[:-1], starts[1:])])
        else:
            table = _template_bond_lengths(key[0], key[1], key[2], xyz)
            if table is not None:
                _BOND_LENGTHS[key] = table
            else:
                build_force_field_system(list(sequence), key[1], np.asarray(xyz, dtype=np.float64),
                                         forcefield=forcefield)
    return _BOND_LENGTHS[key]


def _join_lone_residues(segment_start):
    """``segment_start`` with every one-residue segment joined to the next segment (the previous one at the end),
    or None when there is none (or the whole chain is one residue)."""
    seg = np.asarray(segment_start, dtype=bool)
    n = len(seg)
    nxt = np.r_[seg[1:], True]
    lone = np.flatnonzero(seg & nxt)
    if n < 2 or not len(lone):
        return None
    out = seg.copy()
    for r in lone:
        if r + 1 < n:
            out[r + 1] = False
        else:
            out[r] = False
    return out


def hydrogen_collapse(topology_h, pos_nm, cutoff_nm=HYDROGEN_COLLAPSE_NM) -> str:
    """The closest hydrogen within ``cutoff_nm`` of an atom it is not bonded to, as ``'TYR143 HH on LYS111 O (0.001
    nm)'`` (residue names and numbers of ``topology_h``), or '' (see
    :data:`~openmm_backmap.structure.constants.HYDROGEN_COLLAPSE_NM`).

    Examples
    --------
    >>> hydrogen_collapse(relaxer.topology_h, relaxer.full_positions(ens.xyz[0]))  # doctest: +SKIP
    ''
    """
    from scipy.spatial import cKDTree

    atoms = list(topology_h.atoms())
    pos_nm = np.asarray(pos_nm, dtype=np.float64)
    pairs = cKDTree(pos_nm).query_pairs(cutoff_nm, output_type="ndarray")
    is_h = np.array([a.element is not None and a.element.symbol == "H" for a in atoms])
    pairs = pairs[is_h[pairs].any(axis=1)]
    if not len(pairs):
        return ""
    n = len(atoms)
    bonded = np.array([min(a.index, b.index) * n + max(a.index, b.index) for a, b in topology_h.bonds()])
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[~np.isin(pairs[:, 0] * n + pairs[:, 1], bonded)]
    if not len(pairs):
        return ""
    d = np.linalg.norm(pos_nm[pairs[:, 0]] - pos_nm[pairs[:, 1]], axis=1)
    i, j = pairs[int(np.argmin(d))]
    if not is_h[i]:
        i, j = j, i

    def name(a):
        return f"{atoms[a].residue.name}{atoms[a].residue.id} {atoms[a].name}"

    return f"{name(i)} on {name(j)} ({d.min():.3f} nm)"


def build_soft_system(ffs, clone_indices=()):
    """The soft System of a :class:`ForceFieldSystem`: its bonded terms, constraints, restraints and chirality
    hold, with the nonbonded forces (Lennard-Jones, Coulomb, implicit solvent) replaced by a capped harmonic
    repulsion.

    ``SOFT_K * (d0 - r)^2`` for ``r < d0``, ``d0`` ``SOFT_RADIUS_SCALE`` times
    the sum of the Bondi radii, the force field's 1-2, 1-3 and 1-4 pairs
    excluded: it separates overlapping atoms whatever their distance, where
    the full force field's energy (~1e19 kJ/mol) stops L-BFGS.

    Parameters
    ----------
    ffs : ForceFieldSystem
    clone_indices : sequence of int or None
        Forces of ``ffs.system`` (None: none) whose clones in ``soft`` are returned, to update their parameters.

    Returns
    -------
    soft : openmm.System
    clones : list of openmm.Force or None
        The clone in ``soft`` of each force of ``clone_indices``, in that order.
    """
    import openmm

    system = ffs.system
    soft = openmm.System()
    for i in range(system.getNumParticles()):
        soft.addParticle(system.getParticleMass(i))
    for i in range(system.getNumConstraints()):
        soft.addConstraint(*system.getConstraintParameters(i))
    nonbonded_types = (openmm.NonbondedForce, openmm.CustomNonbondedForce, openmm.GBSAOBCForce, openmm.CustomGBForce)
    exclusions = []
    clones = {}
    for index, force in enumerate(system.getForces()):
        if isinstance(force, openmm.NonbondedForce):
            exclusions = [force.getExceptionParameters(k)[:2] for k in range(force.getNumExceptions())]
        if isinstance(force, nonbonded_types):
            continue
        clone = openmm.XmlSerializer.clone(force)
        soft.addForce(clone)
        clones[index] = clone
    repulsion = openmm.CustomNonbondedForce("soft_k*step(d0-r)*(d0-r)^2; d0=rad1+rad2")
    repulsion.addGlobalParameter("soft_k", SOFT_K)
    repulsion.addPerParticleParameter("rad")
    radii = [SOFT_RADIUS_SCALE * BONDI_RADII_NM.get(a.element.symbol if a.element else "", 0.17)
             for a in ffs.topology_h.atoms()]
    for r in radii:
        repulsion.addParticle([r])
    if exclusions:
        for i, j in exclusions:
            repulsion.addExclusion(i, j)
    else:  # a force field without NonbondedForce: exclude 1-2, 1-3 and 1-4 pairs of the topology
        repulsion.createExclusionsFromBonds([(a.index, b.index) for a, b in ffs.topology_h.bonds()], 3)
    repulsion.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffNonPeriodic)
    repulsion.setCutoffDistance(2 * max(radii) + 0.01)
    repulsion.setForceGroup(2)
    soft.addForce(repulsion)
    return soft, [None if i is None else clones[i] for i in clone_indices]
