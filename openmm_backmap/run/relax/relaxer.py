"""Restrained energy minimisation of backmapped heavy-atom structures.

A backmapping model writes heavy atoms only, in the canonical order of
:mod:`openmm_backmap.topology`. :class:`Relaxer` turns such frames into
force-field structures and minimises them with OpenMM while restraining them
to where the model put them, which removes steric clashes and bad bond
geometry without moving the structure much.

Everything that depends only on the topology is built once, on the first
frame (or on ``template_xyz``): the terminal ``OXT`` atoms, the hydrogens
(:meth:`openmm.app.Modeller.addHydrogens` at pH 7), the :class:`openmm.System`
and the :class:`openmm.Context`. Per frame only positions and restraint
targets change: ``OXT`` is placed in the carboxylate plane and every hydrogen
is rebuilt geometrically in the local frame of its parent heavy atom, as in
the template (0.6 ms for trp-cage, 2 ms for adenylate kinase; running
``Modeller.addHydrogens`` per frame would cost 0.5 s and 3.6 s). The
minimiser then relaxes hydrogens and heavy atoms together.

Minimisation runs without constraints: with ``HBonds`` constraints OpenMM's
minimiser repeats L-BFGS with growing constraint penalties and took 6x longer.

Badly clashing frames (atoms of different residues on top of each other, as
from an untrained or poor model) put hydrogens within 0.05 Å of each other;
the energy is then ~1e19 kJ/mol and L-BFGS cannot take a single step. Such
frames (energy above :data:`STAGED_ENERGY_KJ_MOL` or not finite, or any
frame the normal minimisation leaves with an energy above
:data:`FAILED_ENERGY_KJ_MOL` or with a clash) are relaxed in two stages:
first in a *soft* system (the bonded terms, constraints and restraints of the
force field, Lennard-Jones, Coulomb and implicit solvent replaced by a capped
harmonic repulsion, :data:`SOFT_K` ``* (d0 - r)^2`` for ``r < d0``, with
``d0`` :data:`SOFT_RADIUS_SCALE` times the sum of the Bondi radii and the
force field's 1-2, 1-3 and 1-4 pairs excluded), which separates overlapping
atoms whatever their distance; then with the full force field from there.
The soft system and its Context are built once, on the first frame that
needs them. A frame that still fails is returned as the minimiser left it
with ``RelaxResult.converged = False``, never silently.

Units: positions in nm, energies in kJ/mol, restraint constants ``k`` in
kJ/mol/nm^2, minimiser tolerance in kJ/mol/nm (OpenMM's convention).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np

from ...evaluation.metrics import CLASH_DISTANCE_ANGSTROM, clash_topology
from ...structure.templates import TEMPLATES, atom_layout, canonical_atom_name, canonical_residue_name
from ...structure.errors import InputError

__all__ = ["Relaxer", "RelaxResult", "DEFAULT_K", "CLASH_CUTOFF_NM", "FAILED_ENERGY_KJ_MOL", "STAGED_ENERGY_KJ_MOL",
           "UNREPAIRABLE_BOND_NM", "place_oxt"]

#: Default restraint constant in kJ/mol/nm^2 (= 10 kJ/mol/Å^2, about 2.4 kcal/mol/Å^2).
DEFAULT_K = 1000.0
#: Heavy atoms of different residues closer than this (nm) clash.
CLASH_CUTOFF_NM = CLASH_DISTANCE_ANGSTROM / 10.0
#: A relaxed structure with a force-field energy above this (kJ/mol) is not relaxed (``converged=False``).
FAILED_ENERGY_KJ_MOL = 1.0e6
#: Frames with a starting energy above this (kJ/mol), or not finite, go through the soft stage first.
STAGED_ENERGY_KJ_MOL = 1.0e9
#: Force constant of the soft repulsion, kJ/mol/nm^2 (``E = SOFT_K * (d0 - r)^2``, at most ``SOFT_K * d0^2``).
SOFT_K = 1.0e4
#: Contact distance of the soft repulsion as a fraction of the sum of the Bondi radii.
SOFT_RADIUS_SCALE = 0.75
#: Bondi van der Waals radii (nm) by element symbol (others: 0.17).
BONDI_RADII_NM = {"H": 0.12, "C": 0.17, "N": 0.155, "O": 0.152, "S": 0.18, "P": 0.18, "Se": 0.19}
#: A covalent bond of the input longer than this (nm) is beyond repair (e.g. a chain break missing from the
#: topology, or a corrupt frame): such frames are not minimised (``converged=False``, ``message`` says why).
UNREPAIRABLE_BOND_NM = 1.0
#: C-OXT bond length (nm).
OXT_BOND_NM = 0.125
#: SG-SG distance below which two cysteines are treated as a disulfide (nm).
DISULFIDE_NM = 0.25
#: Force group of the restraints (force-field terms stay in group 0).
_RESTRAINT_GROUP = 1


@dataclass
class RelaxResult:
    """What :meth:`Relaxer.relax` returns (arrays gain a leading frame axis in :meth:`Relaxer.relax_batch`).

    Attributes
    ----------
    xyz : ndarray, shape (A, 3), nm
        Relaxed heavy atoms in canonical order (no OXT, no hydrogens).
    energy_before, energy_after : float, kJ/mol
        Force-field potential energy (restraints excluded) of the input with
        OXT and hydrogens placed, and of the relaxed structure.
    clash_before, clash_after : float, percent
        Percentage of residues with a heavy atom closer than
        :data:`CLASH_CUTOFF_NM` (1.2 Å) to a heavy atom of another residue
        it is not bonded to (:func:`openmm_backmap.metrics.clash_topology`,
        bonds taken from the topology).
    rmsd : float, nm
        Heavy-atom RMSD between input and relaxed structure (no superposition:
        the restraints keep the frame fixed).
    xyz_h : ndarray, shape (N, 3), nm, or None
        All atoms including OXT and hydrogens, in the order of ``topology_h``
        (only with ``keep_hydrogens=True``).
    topology_h : openmm.app.Topology or None
        Topology of ``xyz_h`` (each segment its own chain).
    converged : bool
        False when the relaxation failed: the energy after minimisation is
        not finite or above :data:`FAILED_ENERGY_KJ_MOL` even after the soft
        stage (``xyz`` is then what the minimiser left, or the input when it
        produced non-finite coordinates).
    staged : bool
        True when the soft stage ran before the normal minimisation (see the
        module docstring).
    message : str
        Why the frame was not relaxed (empty when it was).
    """

    xyz: np.ndarray
    energy_before: float
    energy_after: float
    clash_before: float
    clash_after: float
    rmsd: float
    xyz_h: np.ndarray | None = None
    topology_h: object = None
    converged: bool = True
    staged: bool = False
    message: str = ""


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


def _native_obc2(system, cutoff):
    """Replace the CustomGBForce of ``implicit/obc2.xml`` by the equivalent native GBSAOBCForce.

    Same energy (OBC II with the ACE surface term, to ~1e-5 relative) but
    about 6x faster on the CPU platform.
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


def _pick_platform(platform):
    import openmm

    if platform is None:
        platforms = [openmm.Platform.getPlatform(i) for i in range(openmm.Platform.getNumPlatforms())]
        return max(platforms, key=lambda p: p.getSpeed())
    if isinstance(platform, str):
        return openmm.Platform.getPlatformByName(platform)
    return platform


def _parse_topology(topology):
    """Sequence, chain ids, residue numbers, segment starts (None when no bonds) of a heavy-atom topology."""
    import openmm.app as app

    if isinstance(topology, app.Topology):
        residues = list(topology.residues())
        res_atoms = [list(r.atoms()) for r in residues]
        chain_ids = [r.chain.id or chr(65 + r.chain.index % 26) for r in residues]
        chain_index = [r.chain.index for r in residues]
        numbers = [int(r.id) if str(r.id).lstrip("-").isdigit() else i + 1 for i, r in enumerate(residues)]
        bonds = [(a.index, b.index) for a, b in topology.bonds()]
    else:  # mdtraj
        residues = list(topology.residues)
        res_atoms = [list(r.atoms) for r in residues]
        chain_ids = [getattr(r.chain, "chain_id", None) or chr(65 + r.chain.index % 26) for r in residues]
        chain_index = [r.chain.index for r in residues]
        numbers = [int(r.resSeq) for r in residues]
        bonds = [(a.index, b.index) for a, b in topology.bonds]
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
                             "openmm_backmap.topology.build_topology)")
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


class Relaxer:
    """Restrained minimisation of backmapped heavy-atom frames with OpenMM.

    Parameters
    ----------
    topology : mdtraj.Topology or openmm.app.Topology
        Heavy-atom topology in canonical order (as made by
        :func:`openmm_backmap.topology.build_topology` or
        :meth:`ProteinEnsemble.topology`). Sequence, chains and segment breaks
        (missing ``C(i)-N(i+1)`` bonds) are read from it; every segment becomes
        its own chain so the force field sees N- and C-termini.
    forcefield : str or sequence of str
        OpenMM force-field file(s).
    implicit : str or None
        Implicit-solvent file (default GBn2); ``None`` minimises in vacuum.
        GBn2 is a CustomGBForce, fast on GPUs but slow on the CPU platform
        (energy + forces, no cutoff: 35 ms for 20 residues, 3.5 s for 214).
        On CPUs use ``None`` (1 ms / 30-50 ms) or ``'implicit/obc2.xml'``,
        which is replaced by the equivalent native GBSAOBCForce (7 ms / 0.4 s).
    restraint : {'heavy', 'ca', 'cg', None}
        Harmonic position restraints on all backmapped heavy atoms, on the
        C-alphas only, on the centroids of the CG beads of ``mapping`` (kept at
        the bead positions given per frame), or none.
    k : float
        Restraint constant in kJ/mol/nm^2 per restrained atom. For 'cg' the
        centroid restraint of a bead of ``n`` atoms uses ``n * k``, so that a
        rigid shift of a bead costs as much as with 'heavy'.
    platform : str or openmm.Platform, optional
        Default: the fastest platform available (CUDA > OpenCL > CPU > Reference).
    tolerance : float
        Minimiser tolerance in kJ/mol/nm (RMS force).
    max_iterations : int
        Minimiser iteration limit (0: until converged). Clashes and bond
        lengths are fixed within ~50 iterations; 200 gets the energy within a
        few percent of the converged minimum (adenylate kinase: 200 iterations
        ~5 s, until converged ~7 s on 2 CPU cores, vacuum, 1.2 nm cutoff).
    mapping : object, optional
        For ``restraint='cg'``: has ``.members`` (per bead an array of heavy
        atom indices in canonical order) and ``.weights`` (per bead an array of
        weights, or None for equal weights).
    segment_start : array of bool, optional
        Overrides the segment starts read from the topology (needed when the
        topology has no bonds; otherwise they are detected from the geometry
        of the template frame).
    template_xyz : ndarray, shape (A, 3), nm, optional
        Frame used to add hydrogens and build the system; default: the first
        frame relaxed. Cysteines whose SG atoms are within 0.25 nm in it are
        bonded as disulfides.
    constraints : {'hbonds', None}
        Bond constraints during minimisation. With 'hbonds' the hydrogens keep
        their bond lengths; the minimiser handles constraints.
    nonbonded_cutoff : float, optional
        Nonbonded cutoff in nm (CutoffNonPeriodic); default ``None`` = no
        cutoff. A cutoff (e.g. 1.2) speeds up large proteins.
    ph : float
        pH for :meth:`openmm.app.Modeller.addHydrogens`.
    platform_properties : dict, optional
        Passed to the Context (e.g. ``{'Threads': '2'}`` for CPU).

    Attributes
    ----------
    context : openmm.Context
        Created once, on the first frame.
    system : openmm.System
    topology_h : openmm.app.Topology
        All-atom topology (OXT and hydrogens added; one chain per segment).
    heavy_index : ndarray of int
        Index in ``topology_h`` of every canonical heavy atom.
    timings : dict
        Seconds spent building the system (``'build'``) and in the last
        frame (``'frame'``).

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> ens = load_ensemble('tests/data/trpcage.pdb')  # doctest: +SKIP
    >>> relaxer = Relaxer(ens.topology(), platform='CPU', max_iterations=200)  # doctest: +SKIP
    >>> res = relaxer.relax(ens.xyz[0])  # doctest: +SKIP
    >>> res.clash_after, res.energy_after < res.energy_before  # doctest: +SKIP
    (0.0, True)
    """

    def __init__(self, topology, forcefield="amber14-all.xml", implicit="implicit/gbn2.xml", restraint="heavy",
                 k=DEFAULT_K, platform=None, tolerance=10.0, max_iterations=200, mapping=None, *,
                 segment_start=None, template_xyz=None, constraints=None, nonbonded_cutoff=None, ph=7.0,
                 platform_properties=None):
        if restraint not in ("heavy", "ca", "cg", None):
            raise InputError(f"restraint must be 'heavy', 'ca', 'cg' or None, not {restraint!r}")
        if restraint == "cg" and mapping is None:
            raise InputError("restraint='cg' needs a mapping with .members and .weights")
        if constraints not in ("hbonds", None):
            raise InputError(f"constraints must be 'hbonds' or None, not {constraints!r}")
        self.sequence, self.chain_ids, self.residue_numbers, seg = _parse_topology(topology)
        self.layout = atom_layout(self.sequence)
        self._segment_start = None if segment_start is None else np.asarray(segment_start, dtype=bool)
        if self._segment_start is None:
            self._segment_start = seg
        if self._segment_start is not None and len(self._segment_start) != len(self.sequence):
            raise InputError("segment_start needs one entry per residue")
        self.forcefield = [forcefield] if isinstance(forcefield, str) else list(forcefield)
        self.implicit = implicit
        self.restraint = restraint
        self._k = float(k)
        self.platform = _pick_platform(platform)
        self.platform_properties = dict(platform_properties or {})
        self.tolerance = float(tolerance)
        self.max_iterations = int(max_iterations)
        self.mapping = mapping
        self.constraints = constraints
        self.nonbonded_cutoff = nonbonded_cutoff
        self.ph = ph
        self.context = None
        self.system = None
        self.topology_h = None
        self.heavy_index = None
        self.timings = {}
        self._soft_context = None
        self._soft_restraint = None
        self._bonds = None
        if template_xyz is not None:
            self._build(self._check_xyz(template_xyz))

    @classmethod
    def from_ensemble(cls, ensemble, frame=0, **kwargs):
        """A relaxer for a :class:`~openmm_backmap.ensemble.ProteinEnsemble`: its segments, frame ``frame`` as template.

        Examples
        --------
        >>> relaxer = Relaxer.from_ensemble(ens, platform='CPU')  # doctest: +SKIP
        """
        kwargs.setdefault("segment_start", ensemble.segment_start)
        if ensemble.mask[frame].all():
            kwargs.setdefault("template_xyz", ensemble.xyz[frame])
        return cls(ensemble.topology(), **kwargs)

    # ------------------------------------------------------------------ build
    @property
    def k(self) -> float:
        """Restraint constant (kJ/mol/nm^2); setting it updates the Context."""
        return self._k

    @k.setter
    def k(self, value):
        self._k = float(value)
        if self.context is not None and self.restraint is not None:
            self.context.setParameter("k_restraint", self._k)
        if self._soft_context is not None and self.restraint is not None:
            self._soft_context.setParameter("k_restraint", self._k)

    @property
    def segment_start(self):
        return self._segment_start

    def _check_xyz(self, xyz):
        xyz = np.asarray(xyz, dtype=np.float64)
        if xyz.shape != (self.layout.n_atoms, 3):
            raise InputError(f"frame has shape {xyz.shape}; this topology needs ({self.layout.n_atoms}, 3) in nm")
        if not np.isfinite(xyz).all():
            raise InputError("frame has missing (NaN) coordinates; the relaxer needs every heavy atom")
        return xyz

    def _build(self, xyz):
        import openmm
        import openmm.app as app
        import openmm.unit as u

        t0 = time.perf_counter()
        lay = self.layout
        if self._segment_start is None:
            from ...structure.segments import detect_segment_starts

            self._segment_start = detect_segment_starts(xyz[None], np.ones((1, lay.n_atoms), bool), self.sequence,
                                                        self.chain_ids)
        seg = self._segment_start.copy()
        seg[:1] = True
        c_term = np.append(seg[1:], True)

        # heavy-atom topology with OXT, one chain per segment
        top = app.Topology()
        atoms, oxt_atoms = [], []
        pos = []
        chain = None
        for r, name in enumerate(self.sequence):
            if seg[r]:
                chain = top.addChain(self.chain_ids[r])
            res = top.addResidue(name, chain, str(self.residue_numbers[r]))
            base = int(lay.residue_start[r])
            for i, a in enumerate(TEMPLATES[name].atoms):
                atoms.append(top.addAtom(a, app.Element.getBySymbol(a[0]), res))
                pos.append(xyz[base + i])
            if c_term[r]:
                oxt_atoms.append((r, top.addAtom("OXT", app.element.oxygen, res)))
                pos.append(place_oxt(xyz[base + 1], xyz[base + 2], xyz[base + 3]))
        for i, j in lay.bonds(seg):
            top.addBond(atoms[i], atoms[j])
        for r, a in oxt_atoms:
            top.addBond(atoms[lay.index(r, "C")], a)
        sg = np.array([lay.index(r, "SG") for r, n in enumerate(self.sequence) if n == "CYS"], dtype=np.int64)
        self.disulfides = []
        if len(sg) > 1:
            d = np.linalg.norm(xyz[sg][:, None] - xyz[sg][None], axis=-1)
            for i, j in zip(*np.nonzero(np.triu(d < DISULFIDE_NM, 1))):
                top.addBond(atoms[sg[i]], atoms[sg[j]])
                self.disulfides.append((int(sg[i]), int(sg[j])))

        # Hydrogens are added with the plain force field: it picks the same variants, and minimising the
        # new hydrogens with implicit solvent costs 10x more (20 s instead of 2 s for 214 residues on CPU).
        modeller = app.Modeller(top, np.asarray(pos) * u.nanometer)
        state = random.getstate()  # addHydrogens starts new hydrogens at random offsets: make it reproducible
        try:
            random.seed(0)
            modeller.addHydrogens(app.ForceField(*self.forcefield), pH=self.ph)
        finally:
            random.setstate(state)
        ff = app.ForceField(*self.forcefield, *([self.implicit] if self.implicit else []))
        t_h = time.perf_counter()
        top_h = modeller.topology
        pos_h = np.asarray(modeller.getPositions().value_in_unit(u.nanometer))

        # index maps (heavy atoms keep their order in addHydrogens; match by residue and name to be safe)
        by_name = {(a.residue.index, a.name): a.index for a in top_h.atoms()}
        self.heavy_index = np.array([by_name[(int(r), n)] for r, n in zip(lay.atom_residue, lay.atom_names)],
                                    dtype=np.int64)
        self._oxt_index = np.array([by_name[(r, "OXT")] for r, _ in oxt_atoms], dtype=np.int64)
        self._oxt_from = np.array([[lay.index(r, "CA"), lay.index(r, "C"), lay.index(r, "O")] for r, _ in oxt_atoms],
                                  dtype=np.int64).reshape(-1, 3)
        self._setup_hydrogens(top_h, pos_h)

        # system
        kwargs = dict(constraints=app.HBonds if self.constraints == "hbonds" else None, removeCMMotion=False)
        if self.nonbonded_cutoff is None:
            kwargs["nonbondedMethod"] = app.NoCutoff
        else:
            kwargs.update(nonbondedMethod=app.CutoffNonPeriodic, nonbondedCutoff=self.nonbonded_cutoff * u.nanometer)
        system = ff.createSystem(top_h, **kwargs)
        if self.implicit and str(self.implicit).endswith("obc2.xml"):
            _native_obc2(system, self.nonbonded_cutoff)
        for force in system.getForces():
            force.setForceGroup(0)
        self._add_restraints(system, xyz)
        integrator = openmm.VerletIntegrator(0.001)
        self.context = openmm.Context(system, integrator, self.platform, self.platform_properties)
        self.system, self.topology_h, self._integrator = system, top_h, integrator
        self._heavy_bonds = lay.bonds(seg)
        if self.disulfides:
            self._heavy_bonds = np.concatenate([self._heavy_bonds, np.array(self.disulfides, dtype=np.int64)])
        self.timings.update(build=time.perf_counter() - t0, add_hydrogens=t_h - t0)

    def _setup_hydrogens(self, top_h, pos_h):
        """Store every hydrogen in the local frame (parent, neighbour a, neighbour b) of the template."""
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
        self._h_index, self._h_refs = h_idx, refs
        frames = self._local_frames(pos_h, refs)
        self._h_local = np.einsum("hij,hj->hi", frames, pos_h[h_idx] - pos_h[refs[:, 0]])

    @staticmethod
    def _local_frames(pos, refs):
        p, a, b = pos[refs[:, 0]], pos[refs[:, 1]], pos[refs[:, 2]]
        e1 = a - p
        e1 /= np.maximum(np.linalg.norm(e1, axis=1, keepdims=True), 1e-9)
        v = b - p
        e2 = v - np.sum(v * e1, axis=1, keepdims=True) * e1
        e2 /= np.maximum(np.linalg.norm(e2, axis=1, keepdims=True), 1e-9)
        e3 = np.cross(e1, e2)
        return np.stack([e1, e2, e3], axis=1)  # rows are the axes

    def _add_restraints(self, system, xyz):
        import openmm

        self._restraint_force = None
        self._restraint_force_index = None
        if self.restraint is None:
            return
        if self.restraint in ("heavy", "ca"):
            force = openmm.CustomExternalForce("0.5*k_restraint*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
            force.addGlobalParameter("k_restraint", self._k)
            for p in ("x0", "y0", "z0"):
                force.addPerParticleParameter(p)
            sel = np.arange(self.layout.n_atoms) if self.restraint == "heavy" else self.layout.ca_index
            self._restrained = sel
            for i in sel:
                force.addParticle(int(self.heavy_index[i]), list(xyz[i]))
        else:
            members = [np.asarray(m, dtype=np.int64) for m in self.mapping.members]
            weights = getattr(self.mapping, "weights", None)
            # scaled by the bead size: a rigid shift of a bead costs as much as with restraint='heavy'
            force = openmm.CustomCentroidBondForce(1, "0.5*k_restraint*size*((x1-x0)^2+(y1-y0)^2+(z1-z0)^2)")
            force.addGlobalParameter("k_restraint", self._k)
            for p in ("x0", "y0", "z0", "size"):
                force.addPerBondParameter(p)
            self._cg_weights = []
            for b, m in enumerate(members):
                if len(m) == 0 or m.min() < 0 or m.max() >= self.layout.n_atoms:
                    raise InputError(f"mapping bead {b} has members outside 0..{self.layout.n_atoms - 1}")
                w = np.ones(len(m)) if weights is None or weights[b] is None else np.asarray(weights[b], float)
                if w.shape != m.shape:
                    raise InputError(f"mapping bead {b}: {len(w)} weights for {len(m)} members")
                w = w / w.sum()
                self._cg_weights.append(w)
                g = force.addGroup([int(i) for i in self.heavy_index[m]], list(w))
                force.addBond([g], [*(w @ xyz[m]), float(len(m))])
            self._cg_members = members
        force.setForceGroup(_RESTRAINT_GROUP)
        self._restraint_force_index = system.addForce(force)
        self._restraint_force = force

    def _build_soft(self):
        """The soft system (bonded terms, constraints, restraints, capped repulsion) and its Context; built once."""
        import openmm

        system = self.system
        soft = openmm.System()
        for i in range(system.getNumParticles()):
            soft.addParticle(system.getParticleMass(i))
        for i in range(system.getNumConstraints()):
            soft.addConstraint(*system.getConstraintParameters(i))
        nonbonded_types = (openmm.NonbondedForce, openmm.CustomNonbondedForce, openmm.GBSAOBCForce,
                           openmm.CustomGBForce)
        exclusions = []
        for index, force in enumerate(system.getForces()):
            if isinstance(force, openmm.NonbondedForce):
                exclusions = [force.getExceptionParameters(k)[:2] for k in range(force.getNumExceptions())]
            if isinstance(force, nonbonded_types):
                continue
            clone = openmm.XmlSerializer.clone(force)
            soft.addForce(clone)
            if index == self._restraint_force_index:
                self._soft_restraint = clone
        repulsion = openmm.CustomNonbondedForce("soft_k*step(d0-r)*(d0-r)^2; d0=rad1+rad2")
        repulsion.addGlobalParameter("soft_k", SOFT_K)
        repulsion.addPerParticleParameter("rad")
        radii = [SOFT_RADIUS_SCALE * BONDI_RADII_NM.get(a.element.symbol if a.element else "", 0.17)
                 for a in self.topology_h.atoms()]
        for r in radii:
            repulsion.addParticle([r])
        if exclusions:
            for i, j in exclusions:
                repulsion.addExclusion(i, j)
        else:  # a force field without NonbondedForce: exclude 1-2, 1-3 and 1-4 pairs of the topology
            repulsion.createExclusionsFromBonds([(a.index, b.index) for a, b in self.topology_h.bonds()], 3)
        repulsion.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffNonPeriodic)
        repulsion.setCutoffDistance(2 * max(radii) + 0.01)
        repulsion.setForceGroup(2)
        soft.addForce(repulsion)
        self._soft_integrator = openmm.VerletIntegrator(0.001)
        self._soft_context = openmm.Context(soft, self._soft_integrator, self.platform, self.platform_properties)
        self._soft_system = soft
        return self._soft_context

    def _set_targets(self, xyz, cg_xyz, force=None, context=None):
        """Restraint targets of a frame, in the main Context (default) or the soft one."""
        force = self._restraint_force if force is None else force
        context = self.context if context is None else context
        if force is None:
            return
        if self.restraint in ("heavy", "ca"):
            for k, i in enumerate(self._restrained):
                force.setParticleParameters(k, int(self.heavy_index[i]), xyz[i])
        else:
            if cg_xyz is None:
                cg_xyz = np.array([w @ xyz[m] for m, w in zip(self._cg_members, self._cg_weights)])
            cg_xyz = np.asarray(cg_xyz, dtype=np.float64)
            if cg_xyz.shape != (len(self._cg_members), 3):
                raise InputError(f"cg_xyz has shape {cg_xyz.shape}; the mapping has {len(self._cg_members)} beads")
            for b, m in enumerate(self._cg_members):
                force.setBondParameters(b, [b], [*cg_xyz[b], float(len(m))])
        force.updateParametersInContext(context)

    # ------------------------------------------------------------------ frames
    def full_positions(self, xyz):
        """All-atom positions (nm, order of ``topology_h``) for a heavy-atom frame: OXT and hydrogens placed.

        Examples
        --------
        >>> pos = relaxer.full_positions(ens.xyz[0])  # doctest: +SKIP
        """
        xyz = self._check_xyz(xyz)
        if self.context is None:
            self._build(xyz)
        full = np.zeros((self.topology_h.getNumAtoms(), 3))
        full[self.heavy_index] = xyz
        if len(self._oxt_index):
            f = self._oxt_from
            full[self._oxt_index] = place_oxt(xyz[f[:, 0]], xyz[f[:, 1]], xyz[f[:, 2]])
        if len(self._h_index):
            frames = self._local_frames(full, self._h_refs)
            full[self._h_index] = full[self._h_refs[:, 0]] + np.einsum("hij,hi->hj", frames, self._h_local)
        return full

    def _energy(self):
        import openmm.unit as u

        state = self.context.getState(getEnergy=True, groups={0})
        return float(state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole))

    def clash(self, xyz):
        """Percent of residues in clashes (see :class:`RelaxResult`) of a heavy-atom frame (nm)."""
        bonds = self._heavy_bonds if self.context is not None else self.layout.bonds(self._segment_start)
        return float(clash_topology(xyz, bonds, self.layout.atom_residue))

    def relax(self, xyz, cg_xyz=None, keep_hydrogens=False) -> RelaxResult:
        """Relax one heavy-atom frame.

        Parameters
        ----------
        xyz : ndarray, shape (A, 3), nm
            Heavy atoms in canonical order.
        cg_xyz : ndarray, shape (B, 3), nm, optional
            Bead positions for ``restraint='cg'`` (default: the centroids of
            ``xyz``).
        keep_hydrogens : bool
            Also return all atoms with hydrogens and their topology.

        Returns
        -------
        RelaxResult

        Examples
        --------
        >>> res = relaxer.relax(ens.xyz[0])  # doctest: +SKIP
        >>> res.xyz.shape == ens.xyz[0].shape  # doctest: +SKIP
        True
        """
        t0 = time.perf_counter()
        xyz = self._check_xyz(xyz)
        full = self.full_positions(xyz)
        self._set_targets(xyz, cg_xyz)
        self.context.setPositions(full)
        e_before = self._energy()
        broken = self._broken_bond(xyz)
        if broken:
            # minimising across a broken chain drags atoms through the structure: return the input, flagged
            clash = self.clash(xyz)
            return RelaxResult(xyz=np.asarray(xyz, np.float32), energy_before=e_before, energy_after=e_before,
                               clash_before=clash, clash_after=clash, rmsd=0.0,
                               xyz_h=full.astype(np.float32) if keep_hydrogens else None,
                               topology_h=self.topology_h if keep_hydrogens else None, converged=False,
                               message=broken)
        staged = not np.isfinite(e_before) or e_before > STAGED_ENERGY_KJ_MOL
        out, e_after = self._minimize_staged(full, xyz, cg_xyz) if staged else self._minimize(full)
        if not staged and (not self._relaxed(out, e_after) or self.clash(out[self.heavy_index]) > 0):
            # the minimiser was stuck (or left a clash): start again with the soft stage, keep the better result
            staged = True
            out2, e2 = self._minimize_staged(full, xyz, cg_xyz)
            if self._rank(out2, e2) <= self._rank(out, e_after):
                out, e_after = out2, e2
        converged = self._relaxed(out, e_after)
        if not np.isfinite(out).all():
            out, e_after = full, e_before  # nothing usable came out: return the input, flagged
        heavy = out[self.heavy_index]
        result = RelaxResult(
            xyz=heavy.astype(np.float32),
            energy_before=e_before,
            energy_after=e_after,
            clash_before=self.clash(xyz),
            clash_after=self.clash(heavy),
            rmsd=float(np.sqrt(np.mean(np.sum((heavy - xyz) ** 2, axis=1)))),
            xyz_h=out.astype(np.float32) if keep_hydrogens else None,
            topology_h=self.topology_h if keep_hydrogens else None,
            converged=bool(converged),
            staged=bool(staged),
        )
        self.timings["frame"] = time.perf_counter() - t0
        return result

    def _broken_bond(self, xyz) -> str:
        """A description of the longest covalent bond of ``xyz`` if it exceeds :data:`UNREPAIRABLE_BOND_NM`, else ''."""
        if self._bonds is None:
            self._bonds = self.layout.bonds(self.segment_start)
        b = self._bonds
        length = np.linalg.norm(xyz[b[:, 0]] - xyz[b[:, 1]], axis=1)
        i = int(np.argmax(length))
        if length[i] <= UNREPAIRABLE_BOND_NM:
            return ""
        lay = self.layout
        names = [f"{lay.atom_names[a]} of residue {lay.atom_residue[a] + 1}" for a in b[i]]
        return (f"the bond {names[0]} - {names[1]} is {length[i]:.2f} nm long ({int((length > UNREPAIRABLE_BOND_NM).sum())} "
                f"bond(s) over {UNREPAIRABLE_BOND_NM} nm): a chain break missing from the topology or a corrupt frame; "
                "not minimised")

    @staticmethod
    def _relaxed(pos, energy):
        return bool(np.isfinite(pos).all() and np.isfinite(energy) and energy <= FAILED_ENERGY_KJ_MOL)

    def _rank(self, pos, energy):
        """Sort key of minimisation results: relaxed first, then without clashes, then by energy."""
        if not np.isfinite(pos).all() or not np.isfinite(energy):
            return (2, 1, np.inf)
        return (0 if energy <= FAILED_ENERGY_KJ_MOL else 1, int(self.clash(pos[self.heavy_index]) > 0), energy)

    def _minimize(self, start, context=None):
        """Minimise from ``start`` (nm) in the main Context; returns positions (nm) and force-field energy."""
        import openmm
        import openmm.unit as u

        context = self.context if context is None else context
        context.setPositions(start)
        openmm.LocalEnergyMinimizer.minimize(context, self.tolerance, self.max_iterations)
        pos = np.asarray(context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(u.nanometer))
        if context is not self.context:
            return pos, None
        return pos, self._energy() if np.isfinite(pos).all() else float("nan")

    def _minimize_staged(self, full, xyz, cg_xyz):
        """Soft stage (capped repulsion, no electrostatics or solvent), then the normal minimisation from there."""
        context = self._soft_context or self._build_soft()
        self._set_targets(xyz, cg_xyz, self._soft_restraint, context)
        # a small deterministic jitter: atoms exactly on top of each other have no direction to separate in
        start = full + np.random.default_rng(0).normal(scale=0.002, size=full.shape)
        soft, _ = self._minimize(start, context)
        if not np.isfinite(soft).all():
            soft = start
        return self._minimize(soft)

    def relax_batch(self, xyz, cg_xyz=None, keep_hydrogens=False) -> RelaxResult:
        """Relax frames one after the other in the same Context.

        Parameters
        ----------
        xyz : ndarray, shape (F, A, 3), nm
        cg_xyz : ndarray, shape (F, B, 3), nm, optional
        keep_hydrogens : bool

        Returns
        -------
        RelaxResult
            Every field with a leading frame axis (``xyz`` (F, A, 3),
            energies, clashes, RMSDs, ``converged`` and ``staged`` (F,); ``message`` a list).

        Examples
        --------
        >>> res = relaxer.relax_batch(ens.xyz[:4])  # doctest: +SKIP
        >>> res.xyz.shape  # doctest: +SKIP
        (4, 304, 3)
        """
        xyz = np.asarray(xyz)
        if xyz.ndim == 2:
            xyz = xyz[None]
        if cg_xyz is not None:
            cg_xyz = np.asarray(cg_xyz)
            if cg_xyz.ndim == 2:
                cg_xyz = cg_xyz[None]
            if len(cg_xyz) != len(xyz):
                raise InputError(f"{len(cg_xyz)} CG frames for {len(xyz)} frames")
        results = [self.relax(x, None if cg_xyz is None else cg_xyz[i], keep_hydrogens) for i, x in enumerate(xyz)]

        def stack(name):
            return np.stack([getattr(r, name) for r in results])

        return RelaxResult(
            xyz=stack("xyz"),
            energy_before=stack("energy_before"),
            energy_after=stack("energy_after"),
            clash_before=stack("clash_before"),
            clash_after=stack("clash_after"),
            rmsd=stack("rmsd"),
            xyz_h=stack("xyz_h") if keep_hydrogens else None,
            topology_h=self.topology_h if keep_hydrogens else None,
            converged=stack("converged"),
            staged=stack("staged"),
            message=[r.message for r in results],
        )

    def __repr__(self):
        return (f"Relaxer(residues={len(self.sequence)}, restraint={self.restraint!r}, k={self._k} kJ/mol/nm^2, "
                f"platform={self.platform.getName()!r}, built={self.context is not None})")

