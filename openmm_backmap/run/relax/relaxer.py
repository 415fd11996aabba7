"""Restrained energy minimisation of backmapped heavy-atom structures.

A backmapping model writes heavy atoms only, in the canonical order of
:mod:`openmm_backmap.structure.templates`. :class:`Relaxer` turns such frames into
force-field structures and minimises them with OpenMM while restraining them
to where the model put them, which removes steric clashes and bad bond
geometry without moving the structure much.

Everything that depends only on the topology is built once, on the first
frame (or on ``template_xyz``), by :mod:`.systems`: the terminal ``OXT``
atoms, the hydrogens, the :class:`openmm.System`, the restraints, and the
:class:`openmm.Context`. Per frame only positions and restraint targets
change: ``OXT`` and every hydrogen are rebuilt geometrically from the heavy
atoms. The minimiser then relaxes hydrogens and heavy atoms together.

Minimisation runs without constraints: with ``HBonds`` constraints OpenMM's
minimiser repeats L-BFGS with growing constraint penalties and took 6x longer.

Badly clashing frames (atoms of different residues on top of each other, as
from an untrained or poor model) put hydrogens within 0.05 Å of each other;
the energy is then ~1e19 kJ/mol and L-BFGS cannot take a single step. Such
frames (energy above :data:`STAGED_ENERGY_KJ_MOL` or not finite, or any
frame the normal minimisation leaves with an energy above
``FAILED_ENERGY_KJ_MOL`` (:mod:`~openmm_backmap.structure.constants`), with a clash, or with a hydrogen collapsed
onto another atom (:func:`.systems.hydrogen_collapse`: ff14SB's hydroxyl hydrogen has no Lennard-Jones radius, and
from a donor too close to an acceptor the minimiser can pull it onto the acceptor, a Coulomb singularity that
reads as a low energy) are relaxed in two stages:
first in a *soft* system (the bonded terms, constraints and restraints of the
force field, Lennard-Jones, Coulomb and implicit solvent replaced by a capped
harmonic repulsion, :func:`.systems.build_soft_system`), which separates
overlapping atoms whatever their distance; then with the full force field from there.
The soft system and its Context are built once, on the first frame that
needs them. In both stages a half-harmonic term on the signed volume
(:class:`.restraints.ChiralityHold`) keeps every C-alpha stereocentre that
came in L on the L side; a frame that still ends with an L residue turned D is
flagged. A frame that still fails is returned as the minimiser left it
with ``RelaxResult.converged = False``, never silently.

Units: positions in nm, energies in kJ/mol, restraint constants ``k`` in
kJ/mol/nm^2, minimiser tolerance in kJ/mol/nm (OpenMM's convention).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ...evaluation import clash_topology
from ...structure.constants import FAILED_ENERGY_KJ_MOL, IMPLICIT_SOLVENT_FILES, UNREPAIRABLE_BOND_NM
from ...structure import InputError, atom_layout, chiral_centres, chirality_volumes, detect_segment_starts
from .restraints import ChiralityHold, Restraints
from .systems import (DEFAULT_FORCEFIELD, build_force_field_system, build_soft_system, hydrogen_collapse, pick_platform,
                      read_heavy_topology)

__all__ = ["Relaxer", "RelaxResult", "DEFAULT_K", "DEFAULT_CUTOFF_NM", "STAGED_ENERGY_KJ_MOL", "broken_bond_message", "checked_frame",
           "inverted_centres_message"]

#: Default restraint constant in kJ/mol/nm^2 (= 10 kJ/mol/Å^2, about 2.4 kcal/mol/Å^2).
DEFAULT_K = 1000.0
#: Default nonbonded cutoff of the OpenMM relaxer (nm).
DEFAULT_CUTOFF_NM = 1.2
#: Frames with a starting energy above this (kJ/mol), or not finite, go through the soft stage first.
STAGED_ENERGY_KJ_MOL = 1.0e9


def checked_frame(layout, xyz) -> np.ndarray:
    """``xyz`` as float64 after checking it is one whole heavy-atom frame of ``layout`` (nm); both relaxers use it.

    Examples
    --------
    >>> checked_frame(atom_layout(['GLY']), np.zeros((4, 3))).dtype
    dtype('float64')
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.shape != (layout.n_atoms, 3):
        raise InputError(f"frame has shape {xyz.shape}; this topology needs ({layout.n_atoms}, 3) in nm")
    if not np.isfinite(xyz).all():
        raise InputError("frame has missing (NaN) coordinates; the relaxer needs every heavy atom")
    return xyz


def broken_bond_message(xyz, bonds, layout) -> str:
    """Why a frame is beyond repair: its longest covalent bond of ``bonds`` if that exceeds
    :data:`UNREPAIRABLE_BOND_NM` (a chain break missing from the topology, or a corrupt frame), else ''.

    Examples
    --------
    >>> broken_bond_message(ens.xyz[0], ens.layout.bonds(ens.segment_start), ens.layout)  # doctest: +SKIP
    ''
    """
    length = np.linalg.norm(xyz[bonds[:, 0]] - xyz[bonds[:, 1]], axis=1)
    i = int(np.argmax(length))
    if length[i] <= UNREPAIRABLE_BOND_NM:
        return ""
    names = [f"{layout.atom_names[a]} of residue {layout.atom_residue[a] + 1}" for a in bonds[i]]
    n_long = int((length > UNREPAIRABLE_BOND_NM).sum())
    return (f"the bond {names[0]} - {names[1]} is {length[i]:.2f} nm long ({n_long} bond(s) over "
            f"{UNREPAIRABLE_BOND_NM} nm): a chain break missing from the topology or a corrupt frame; not minimised")


def inverted_centres_message(before, after, centres, layout) -> str:
    """Why a relaxed frame is wrong if the relaxation turned an L C-alpha stereocentre (:func:`chiral_centres`) into
    D (a side chain pushed through its backbone out of a clash), else ''.

    Examples
    --------
    >>> inverted_centres_message(x, x, chiral_centres(ens.layout), ens.layout)  # doctest: +SKIP
    ''
    """
    flipped = (chirality_volumes(before, centres) > 0) & (chirality_volumes(after, centres) <= 0)
    if not flipped.any():
        return ""
    residues = ", ".join(f"{layout.atom_residue[centres[i, 1]] + 1}" for i in np.flatnonzero(flipped)[:5])
    return (f"the relaxation turned residue(s) {residues}{' ...' if flipped.sum() > 5 else ''} from L to D (a side "
            "chain pushed through its backbone out of a clash); the frame is written as relaxed, but do not use it")


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
        ``CLASH_DISTANCE_ANGSTROM`` (1.2 Å) to a heavy atom of another residue
        it is not bonded to (:func:`openmm_backmap.evaluation.metrics.clash_topology`,
        bonds taken from the topology).
    rmsd_nm : float, nm
        Heavy-atom RMSD between input and relaxed structure (no superposition:
        the restraints keep the frame fixed).
    xyz_h : ndarray, shape (N, 3), nm, or None
        All atoms including OXT and hydrogens, in the order of ``topology_h``
        (only with ``keep_hydrogens=True``).
    topology_h : openmm.app.Topology or None
        Topology of ``xyz_h`` (each segment its own chain).
    converged : bool
        False when the relaxation failed: the energy after minimisation is
        not finite or above ``FAILED_ENERGY_KJ_MOL``, or a hydrogen is left
        collapsed onto another atom, even after the soft stage (``xyz`` is
        then what the minimiser left, or the input when it produced
        non-finite coordinates), or an L residue was turned D.
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
    rmsd_nm: float
    xyz_h: np.ndarray | None = None
    topology_h: object = None
    converged: bool = True
    staged: bool = False
    message: str = ""

    def unstack(self) -> list:
        """The per-frame results of a :meth:`Relaxer.relax_batch` result.

        Examples
        --------
        >>> [r.clash_after for r in relaxer.relax_batch(ens.xyz[:2]).unstack()]  # doctest: +SKIP
        [0.0, 0.0]
        """
        n = len(self.xyz)
        return [RelaxResult(xyz=self.xyz[j], energy_before=float(self.energy_before[j]),
                            energy_after=float(self.energy_after[j]), clash_before=float(self.clash_before[j]),
                            clash_after=float(self.clash_after[j]), rmsd_nm=float(self.rmsd_nm[j]),
                            xyz_h=None if self.xyz_h is None else self.xyz_h[j], topology_h=self.topology_h,
                            converged=bool(self.converged[j]), staged=bool(self.staged[j]),
                            message=self.message[j]) for j in range(n)]


class Relaxer:
    """Restrained minimisation of backmapped heavy-atom frames with OpenMM.

    Parameters
    ----------
    topology : mdtraj.Topology or openmm.app.Topology
        Heavy-atom topology in canonical order (as made by
        :func:`openmm_backmap.structure.build_topology` or
        :meth:`ProteinEnsemble.topology`). Sequence, chains and segment breaks
        (missing ``C(i)-N(i+1)`` bonds) are read from it; every segment becomes
        its own chain so the force field sees N- and C-termini.
    forcefield : str or sequence of str
        OpenMM force-field file(s).
    implicit : str or None
        Implicit-solvent file, or a name of
        :data:`~openmm_backmap.structure.constants.IMPLICIT_SOLVENT_FILES`
        (``'gbn2'``, ``'obc2'``, ``'vacuum'``); ``None`` minimises in vacuum.
        The default, OBC2 (``implicit/obc2.xml``), is replaced by the
        equivalent native GBSAOBCForce (no cutoff: 7 ms for 20 residues,
        0.4 s for 214, energy + forces on the CPU platform). GBn2 is a
        CustomGBForce, fast on GPUs but slow on the CPU platform (35 ms /
        3.5 s); vacuum 1 ms / 30-50 ms.
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
        Nonbonded cutoff in nm (CutoffNonPeriodic), default
        :data:`DEFAULT_CUTOFF_NM` (1.2 nm): the cost grows linearly with
        size instead of quadratically; ``None``: no cutoff.
    ph : float
        pH for :meth:`openmm.app.Modeller.addHydrogens`.
    platform_properties : dict, optional
        Passed to the Context (e.g. ``{'Threads': '2'}`` for CPU).

    Attributes
    ----------
    context : openmm.Context
        Created once, on the first frame.
    ffs : ForceFieldSystem
        The force-field System, hydrogens and OXT (:mod:`.systems`); created
        with the Context.
    chirality : ChiralityHold
        Holds the C-alpha stereocentres that came in L on the L side (:mod:`.restraints`), in both stages; created
        with the Context.
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

    def __init__(self, topology, forcefield=DEFAULT_FORCEFIELD, implicit="obc2", restraint="heavy",
                 k=DEFAULT_K, platform=None, tolerance=10.0, max_iterations=200, mapping=None, *,
                 segment_start=None, template_xyz=None, constraints=None, nonbonded_cutoff=DEFAULT_CUTOFF_NM, ph=7.0,
                 platform_properties=None):
        if restraint not in ("heavy", "ca", "cg", None):
            raise InputError(f"restraint must be 'heavy', 'ca', 'cg' or None, not {restraint!r}")
        if restraint == "cg" and mapping is None:
            raise InputError("restraint='cg' needs a mapping with .members and .weights")
        if constraints not in ("hbonds", None):
            raise InputError(f"constraints must be 'hbonds' or None, not {constraints!r}")
        self.sequence, self.chain_ids, self.residue_numbers, seg = read_heavy_topology(topology)
        self.layout = atom_layout(self.sequence)
        self._centres = chiral_centres(self.layout)  # checked after every frame
        self._segment_start = None if segment_start is None else np.asarray(segment_start, dtype=bool)
        if self._segment_start is None:
            self._segment_start = seg
        if self._segment_start is not None and len(self._segment_start) != len(self.sequence):
            raise InputError("segment_start needs one entry per residue")
        self.forcefield = [forcefield] if isinstance(forcefield, str) else list(forcefield)
        self.implicit = IMPLICIT_SOLVENT_FILES.get(implicit, implicit) if isinstance(implicit, str) else implicit
        self.restraint = restraint
        self._k = float(k)
        self.platform = pick_platform(platform)
        self.platform_properties = dict(platform_properties or {})
        self.tolerance = float(tolerance)
        self.max_iterations = int(max_iterations)
        self.mapping = mapping
        self.constraints = constraints
        self.nonbonded_cutoff = nonbonded_cutoff
        self.ph = ph
        self.context = None
        self.ffs = None
        self.restraints = None
        self.timings = {}
        self._soft_context = None
        self._soft_restraint = self._soft_chirality = None
        self.chirality = None
        if template_xyz is not None:
            self._build(self._check_xyz(template_xyz))

    @classmethod
    def from_ensemble(cls, ensemble, frame=0, **kwargs):
        """A relaxer for a :class:`~openmm_backmap.structure.ProteinEnsemble`: its segments, frame ``frame`` as template.

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
        return checked_frame(self.layout, xyz)

    def _build(self, xyz):
        import openmm

        t0 = time.perf_counter()
        if self._segment_start is None:
            self._segment_start = detect_segment_starts(xyz[None], np.ones((1, self.layout.n_atoms), bool),
                                                        self.sequence, self.chain_ids)
        self.ffs = build_force_field_system(self.sequence, self._segment_start, xyz, self.chain_ids,
                                            self.residue_numbers, self.forcefield, self.implicit, self.ph,
                                            self.constraints, self.nonbonded_cutoff)
        self._chain_bonds = self.layout.bonds(self._segment_start)  # disulfides left out: they may open
        if self.restraint is not None:
            self.restraints = Restraints(self.restraint, self.ffs, self.layout, self._k, xyz, self.mapping)
        self.chirality = ChiralityHold(self.ffs, self._centres)
        self._integrator = openmm.VerletIntegrator(0.001)
        self.context = openmm.Context(self.system, self._integrator, self.platform, self.platform_properties)
        self.timings.update(build=time.perf_counter() - t0)

    @property
    def system(self):
        """The force-field :class:`openmm.System` (restraints in force group 1); None before the first frame."""
        return None if self.ffs is None else self.ffs.system

    @property
    def topology_h(self):
        """All-atom topology (OXT and hydrogens added; one chain per segment); None before the first frame."""
        return None if self.ffs is None else self.ffs.topology_h

    @property
    def heavy_index(self):
        """Index in ``topology_h`` of every canonical heavy atom; None before the first frame."""
        return None if self.ffs is None else self.ffs.heavy_index

    def _soft(self):
        """The soft stage's Context (see :func:`~.systems.build_soft_system`), built on first use."""
        import openmm

        if self._soft_context is None:
            index = None if self.restraints is None else self.restraints.index
            soft, (self._soft_restraint, self._soft_chirality) = build_soft_system(self.ffs,
                                                                                   (index, self.chirality.index))
            self._soft_integrator = openmm.VerletIntegrator(0.001)
            self._soft_context = openmm.Context(soft, self._soft_integrator, self.platform, self.platform_properties)
        return self._soft_context

    def _set_targets(self, xyz, cg_xyz, soft=False):
        """Restraint targets and held stereocentres of a frame, in the main Context or the soft one."""
        if soft:
            self.chirality.set_frame(xyz, self._soft_chirality, self._soft_context)
        else:
            self.chirality.set_frame(xyz, self.chirality.force, self.context)
        if self.restraints is None:
            return
        if soft:
            self.restraints.set_targets(xyz, cg_xyz, self._soft_restraint, self._soft_context)
        else:
            self.restraints.set_targets(xyz, cg_xyz, self.restraints.force, self.context)

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
        return self.ffs.full_positions(xyz)

    def _energy(self):
        import openmm.unit as u

        state = self.context.getState(getEnergy=True, groups={0})
        return float(state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole))

    def clash(self, xyz):
        """Percent of residues in clashes (see :class:`RelaxResult`) of a heavy-atom frame (nm)."""
        bonds = self.ffs.heavy_bonds if self.ffs is not None else self.layout.bonds(self._segment_start)
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
        broken = broken_bond_message(xyz, self._chain_bonds, self.layout)
        if broken:
            # minimising across a broken chain drags atoms through the structure: return the input, flagged
            clash = self.clash(xyz)
            return RelaxResult(xyz=np.asarray(xyz, np.float32), energy_before=e_before, energy_after=e_before,
                               clash_before=clash, clash_after=clash, rmsd_nm=0.0,
                               xyz_h=full.astype(np.float32) if keep_hydrogens else None,
                               topology_h=self.topology_h if keep_hydrogens else None, converged=False,
                               message=broken)
        staged = not np.isfinite(e_before) or e_before > STAGED_ENERGY_KJ_MOL
        out, e_after = self._minimize_staged(full, xyz, cg_xyz) if staged else self._minimize(full)
        if not staged and (not self._relaxed(out, e_after) or self._flawed(out)):
            # the minimiser was stuck (or left a clash or a collapsed hydrogen): start again with the soft stage,
            # keep the better result
            staged = True
            out2, e2 = self._minimize_staged(full, xyz, cg_xyz)
            if self._rank(out2, e2) <= self._rank(out, e_after):
                out, e_after = out2, e2
        converged = self._relaxed(out, e_after)
        if not np.isfinite(out).all():
            out, e_after = full, e_before  # nothing usable came out: return the input, flagged
        heavy = out[self.heavy_index]
        # an unstaged result passed _flawed above, so only a staged one is looked at again
        collapse = hydrogen_collapse(self.topology_h, out) if converged and staged else ""
        flaw = inverted_centres_message(xyz, heavy, self._centres, self.layout) or (collapse and (
            f"a hydrogen collapsed onto an atom in the minimisation ({collapse}; the input put a donor too close to "
            "an acceptor): its energy is a Coulomb singularity; the frame is written as relaxed, but do not use it"))
        result = RelaxResult(
            xyz=heavy.astype(np.float32),
            energy_before=e_before,
            energy_after=e_after,
            clash_before=self.clash(xyz),
            clash_after=self.clash(heavy),
            rmsd_nm=float(np.sqrt(np.mean(np.sum((heavy - xyz) ** 2, axis=1)))),
            xyz_h=out.astype(np.float32) if keep_hydrogens else None,
            topology_h=self.topology_h if keep_hydrogens else None,
            converged=bool(converged) and not flaw,
            staged=bool(staged),
            message=flaw,
        )
        self.timings["frame"] = time.perf_counter() - t0
        return result

    @staticmethod
    def _relaxed(pos, energy):
        return bool(np.isfinite(pos).all() and np.isfinite(energy) and energy <= FAILED_ENERGY_KJ_MOL)

    def _rank(self, pos, energy):
        """Sort key of minimisation results: relaxed first, then without clashes, then by energy."""
        if not np.isfinite(pos).all() or not np.isfinite(energy):
            return (2, 1, np.inf)
        return (0 if energy <= FAILED_ENERGY_KJ_MOL else 1, int(self._flawed(pos)), energy)

    def _flawed(self, pos):
        """Whether minimised positions (all atoms) leave a clash or a collapsed hydrogen."""
        return self.clash(pos[self.heavy_index]) > 0 or bool(hydrogen_collapse(self.topology_h, pos))

    def _minimize(self, start, context=None):
        """Minimise from ``start`` (nm) in the main Context; returns positions (nm) and force-field energy."""
        import openmm
        import openmm.unit as u

        context = self.context if context is None else context
        context.setPositions(start)
        try:
            openmm.LocalEnergyMinimizer.minimize(context, self.tolerance, self.max_iterations)
        except openmm.OpenMMException as err:
            if "NaN" not in str(err):
                raise
            # OpenMM 8 raises where it used to leave NaN coordinates; the callers take both as "nothing usable"
            # (the soft stage, then the frame flagged), where the exception ended the whole conversion
            return np.full(np.shape(start), np.nan), (None if context is not self.context else float("nan"))
        pos = np.asarray(context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(u.nanometer))
        if context is not self.context:
            return pos, None
        return pos, self._energy() if np.isfinite(pos).all() else float("nan")

    def _minimize_staged(self, full, xyz, cg_xyz):
        """Soft stage (capped repulsion, no electrostatics or solvent), then the normal minimisation from there."""
        context = self._soft()
        self._set_targets(xyz, cg_xyz, soft=True)
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
            rmsd_nm=stack("rmsd_nm"),
            xyz_h=stack("xyz_h") if keep_hydrogens else None,
            topology_h=self.topology_h if keep_hydrogens else None,
            converged=stack("converged"),
            staged=stack("staged"),
            message=[r.message for r in results],
        )

    def __repr__(self):
        return (f"Relaxer(residues={len(self.sequence)}, restraint={self.restraint!r}, k={self._k} kJ/mol/nm^2, "
                f"platform={self.platform.getName()!r}, built={self.context is not None})")

