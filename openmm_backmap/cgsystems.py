"""Coarse-grained OpenMM systems for examples and tests.

Two simple models whose particles match the beads that backmapping models
expect (particle order = bead order):

* :func:`calpha_go_model`: a structure-based (Go-like) C-alpha model in the
  style of Clementi, Nymeyer and Onuchic (J. Mol. Biol. 298, 937 (2000)), one
  particle per residue;
* :func:`elastic_network_model`: a (heterogeneous) elastic network for
  ultra-coarse-grained beads, with spring constants from the fluctuations of
  an ensemble of bead positions.

Both return ``(topology, system, positions)``: an :class:`openmm.app.Topology`,
an :class:`openmm.System` and positions as a numpy array of shape (N, 3) in
nm (OpenMM reads plain arrays as nm). Energies are in kJ/mol, spring
constants in kJ/mol/nm^2 (bonds) and kJ/mol/rad^2 (angles), masses in amu.
An optional periodic ``box`` (nm) makes every force periodic.
"""

from __future__ import annotations

import os

import mdtraj
import numpy as np

from .structure import InputError, ProteinEnsemble, canonical_residue_name
from .structure.constants import BOLTZMANN_KJ_MOL_K

__all__ = ["calpha_go_model", "elastic_network_model", "bead_masses", "RESIDUE_MASSES"]

#: Average masses (amu) of amino-acid residues in a chain (free amino acid minus water).
RESIDUE_MASSES = {
    "ALA": 71.08, "ARG": 156.19, "ASN": 114.10, "ASP": 115.09, "CYS": 103.14, "GLN": 128.13, "GLU": 129.12,
    "GLY": 57.05, "HIS": 137.14, "ILE": 113.16, "LEU": 113.16, "LYS": 128.17, "MET": 131.19, "PHE": 147.18,
    "PRO": 97.12, "SER": 87.08, "THR": 101.10, "TRP": 186.21, "TYR": 163.18, "VAL": 99.13,
}


def _as_ensemble(ensemble_or_path):
    from .io import load_ensemble

    if isinstance(ensemble_or_path, ProteinEnsemble):
        return ensemble_or_path
    if isinstance(ensemble_or_path, (str, os.PathLike)):
        return load_ensemble(ensemble_or_path)
    raise TypeError(f"expected a ProteinEnsemble or a path, got {type(ensemble_or_path).__name__}")


def _box_vectors(box):
    """Box as three openmm Vec3 (nm) or None; accepts a scalar, 3 lengths or a 3x3 matrix."""
    import openmm

    if box is None:
        return None
    b = np.asarray(getattr(box, "_value", box), dtype=np.float64)
    if b.ndim == 0:
        b = np.diag([float(b)] * 3)
    elif b.shape == (3,):
        b = np.diag(b)
    elif b.shape != (3, 3):
        raise InputError(f"box must be a length, three lengths or a 3x3 matrix (nm), got shape {b.shape}")
    if np.any(np.diag(b) <= 0):
        raise InputError(f"box lengths must be positive, got {np.diag(b).tolist()}")
    return [openmm.Vec3(*row) for row in b]


def _check_cutoff(vectors, cutoff):
    if vectors is not None and cutoff * 2 > min(v[i] for i, v in enumerate(vectors)):
        raise InputError(f"the box ({[round(v[i], 3) for i, v in enumerate(vectors)]} nm) must be at least twice "
                         f"the cutoff ({cutoff} nm)")


def bead_masses(sequence, residue_groups):
    """Bead masses (amu) as the sum of the masses of the residues of each bead.

    Parameters
    ----------
    sequence : sequence of str
        Three-letter residue names.
    residue_groups : sequence of sequence of int
        Residue indices of every bead.

    Returns
    -------
    ndarray, shape (B,)

    Examples
    --------
    >>> bead_masses(['GLY', 'ALA', 'SER'], [[0, 1], [2]]).round(2).tolist()
    [128.13, 87.08]
    """
    per_res = np.array([RESIDUE_MASSES[canonical_residue_name(s) or s] for s in sequence])
    return np.array([per_res[np.asarray(g, dtype=np.int64)].sum() for g in residue_groups])


def _runs(seg_id, size):
    """Index windows (n, size) of ``size`` consecutive particles within one segment."""
    idx = np.arange(max(len(seg_id) - size + 1, 0))[:, None] + np.arange(size)
    return idx[seg_id[idx[:, 0]] == seg_id[idx[:, -1]]]


def calpha_go_model(ensemble_or_path, frame=0, epsilon=10.0, contact_cutoff=0.8, min_separation=3,
                    repulsion_sigma=0.4, mass=110.0, bond_k=None, angle_k=None, torsion_k1=None, torsion_k3=None,
                    nonbonded_cutoff=1.2, box=None):
    """A C-alpha Go-like model of a protein (one particle per residue).

    Energy (Clementi, Nymeyer and Onuchic 2000), with ``eps = epsilon``::

        sum_bonds     0.5 * bond_k  * (r - r0)^2                  bond_k  = 1e5 kJ/mol/nm^2
        sum_angles    0.5 * angle_k * (theta - theta0)^2          angle_k = 40 eps / rad^2
        sum_torsions  k1 * (1 - cos(phi - phi0)) + k3 * (1 - cos(3 (phi - phi0)))   k1 = eps, k3 = eps / 2
        sum_native    eps * (5 (s/r)^12 - 6 (s/r)^10)             s = native distance
        sum_other     eps * (repulsion_sigma / r)^12

    Bonds, angles and torsions join consecutive C-alphas within a segment
    (no terms across chain breaks). Native contacts are C-alpha pairs closer
    than ``contact_cutoff`` in the native frame and at least
    ``min_separation`` apart in sequence (any pair in different segments);
    every other pair at least ``min_separation`` apart is repulsive. With the
    default ``epsilon`` (10 kJ/mol, kT/eps = 0.25 at 300 K) small proteins
    stay folded at 300 K (villin headpiece: C-alpha RMSD to native about
    1-2.5 Å) with a 10 fs Langevin time step. The bond constant does not
    scale with ``epsilon`` (Clementi et al. use 100 eps/Å^2), which keeps the
    bonds stiff but the 10 fs step stable (bond period about 100 fs).

    Parameters
    ----------
    ensemble_or_path : ProteinEnsemble or str
        All-atom (heavy-atom) structure; its segments give the chain breaks.
    frame : int
        Frame used as the native structure.
    epsilon : float
        Energy scale in kJ/mol.
    contact_cutoff : float
        Native-contact C-alpha distance cutoff (nm).
    min_separation : int
        Minimum sequence separation of contacts and repulsive pairs.
    repulsion_sigma : float
        Size of the non-native repulsion (nm).
    mass : float or 'residue'
        Particle mass in amu, or the residue masses of :data:`RESIDUE_MASSES`.
    bond_k, angle_k, torsion_k1, torsion_k3 : float, optional
        Override the force constants above (kJ/mol/nm^2, kJ/mol/rad^2, kJ/mol).
    nonbonded_cutoff : float
        Cutoff of the repulsion (nm); the contact terms have none.
    box : float, (3,) or (3, 3), optional
        Periodic box (nm): makes every force periodic.

    Returns
    -------
    topology : openmm.app.Topology
        One residue per bead (the real residue name) with one atom 'CA';
        one chain per chain of the input.
    system : openmm.System
    positions : ndarray, shape (R, 3), nm
        Native C-alpha positions.

    Examples
    --------
    >>> import openmm, openmm.app as app, os
    >>> pdb = os.path.join(os.path.dirname(app.__file__), 'data', 'test.pdb')
    >>> top, system, pos = calpha_go_model(pdb)  # doctest: +SKIP
    >>> system.getNumParticles() == top.getNumResidues()  # doctest: +SKIP
    True
    >>> integrator = openmm.LangevinMiddleIntegrator(300, 1.0, 0.01)  # doctest: +SKIP
    >>> sim = app.Simulation(top, system, integrator); sim.context.setPositions(pos)  # doctest: +SKIP
    """
    import openmm
    import openmm.app as app

    ens = _as_ensemble(ensemble_or_path)
    ca = np.asarray(ens.ca_xyz[frame], dtype=np.float64)
    if not np.isfinite(ca).all():
        raise InputError(f"frame {frame} has residues without C-alpha coordinates")
    n = len(ca)
    seg = np.asarray(ens.segment_start, dtype=bool).copy()
    seg[:1] = True
    seg_id = np.cumsum(seg) - 1
    eps = float(epsilon)
    bond_k = 1e5 if bond_k is None else bond_k
    angle_k = 40.0 * eps if angle_k is None else angle_k
    torsion_k1 = eps if torsion_k1 is None else torsion_k1
    torsion_k3 = 0.5 * eps if torsion_k3 is None else torsion_k3
    vectors = _box_vectors(box)
    _check_cutoff(vectors, nonbonded_cutoff)
    periodic = vectors is not None

    # topology
    top = app.Topology()
    atoms, chain = [], None
    for r, name in enumerate(ens.sequence):
        if chain is None or ens.chain_ids[r] != ens.chain_ids[r - 1]:
            chain = top.addChain(ens.chain_ids[r])
        res = top.addResidue(name, chain, str(ens.residue_numbers[r]))
        atoms.append(top.addAtom("CA", app.element.carbon, res))
    if periodic:
        top.setPeriodicBoxVectors(vectors)

    system = openmm.System()
    if mass == "residue":
        masses = bead_masses(ens.sequence, [[r] for r in range(n)])
    else:
        masses = np.full(n, float(mass))
    for m in masses:
        system.addParticle(float(m))
    if periodic:
        system.setDefaultPeriodicBoxVectors(*vectors)

    bond_force = openmm.HarmonicBondForce()
    for i, j in _runs(seg_id, 2).tolist():
        bond_force.addBond(i, j, float(np.linalg.norm(ca[j] - ca[i])), bond_k)
        top.addBond(atoms[i], atoms[j])
    native = mdtraj.Trajectory(ca[None], None)
    triples = _runs(seg_id, 3)
    angle_force = openmm.HarmonicAngleForce()
    for (i, j, k), theta0_rad in zip(triples.tolist(), mdtraj.compute_angles(native, triples, periodic=False)[0]):
        angle_force.addAngle(i, j, k, float(theta0_rad), angle_k)
    quads = _runs(seg_id, 4)
    torsion_force = openmm.PeriodicTorsionForce()
    for (i, j, k, m), phi0_rad in zip(quads.tolist(), mdtraj.compute_dihedrals(native, quads, periodic=False)[0]):
        # k (1 - cos(n(phi - phi0))) == k (1 + cos(n phi - (n phi0 + pi)))
        torsion_force.addTorsion(i, j, k, m, 1, float(phi0_rad) + np.pi, torsion_k1)
        torsion_force.addTorsion(i, j, k, m, 3, 3 * float(phi0_rad) + np.pi, torsion_k3)

    # pairs: native contacts and repulsion
    d = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
    idx = np.arange(n)
    far = (np.abs(idx[:, None] - idx[None]) >= min_separation) | (seg_id[:, None] != seg_id[None])
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    native = far & upper & (d < contact_cutoff)
    contact_force = openmm.CustomBondForce("eps_go*(5*(s/r)^12-6*(s/r)^10)")
    contact_force.addGlobalParameter("eps_go", eps)
    contact_force.addPerBondParameter("s")
    for i, j in zip(*np.nonzero(native)):
        contact_force.addBond(int(i), int(j), [float(d[i, j])])
    repulsion = openmm.CustomNonbondedForce("eps_go*(sigma_rep/r)^12")
    repulsion.addGlobalParameter("eps_go", eps)
    repulsion.addGlobalParameter("sigma_rep", float(repulsion_sigma))
    for _ in range(n):
        repulsion.addParticle([])
    for i, j in zip(*np.nonzero(upper & (~far | native))):
        repulsion.addExclusion(int(i), int(j))
    repulsion.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic if periodic
                                 else openmm.CustomNonbondedForce.CutoffNonPeriodic)
    repulsion.setCutoffDistance(nonbonded_cutoff)
    for force in (bond_force, angle_force, torsion_force, contact_force):
        force.setUsesPeriodicBoundaryConditions(periodic)
        system.addForce(force)
    system.addForce(repulsion)
    return top, system, ca


def elastic_network_model(bead_xyz, cutoff=1.5, k=500.0, temperature=300.0, k_min=10.0, k_max=1e4,
                          min_neighbors=3, masses=None, sequence=None, residue_groups=None, frame=0, box=None):
    """A (heterogeneous) elastic network of beads.

    Springs ``0.5 * k_ij * (r - r0_ij)^2`` join every pair of beads whose
    (mean) distance is below ``cutoff``; beads with fewer than
    ``min_neighbors`` springs also get springs to their nearest beads.

    * One structure, shape (N, 3): homogeneous network, ``k_ij = k`` and
      ``r0_ij`` the distance in the structure.
    * An ensemble, shape (F, N, 3) with F > 1: heterogeneous network
      (fluctuation matching to first order): ``r0_ij = <d_ij>`` and
      ``k_ij = kT / var(d_ij)`` (equipartition for one harmonic distance),
      clipped to ``[k_min, k_max]``.

    Parameters
    ----------
    bead_xyz : ndarray, shape (N, 3) or (F, N, 3), nm
        Bead positions.
    cutoff : float
        Spring cutoff (nm).
    k : float
        Spring constant of the homogeneous network (kJ/mol/nm^2).
    temperature : float
        Temperature for ``kT`` (K).
    k_min, k_max : float
        Clip range of the heterogeneous spring constants (kJ/mol/nm^2).
    min_neighbors : int
        Minimum springs per bead.
    masses : array of float, shape (N,), optional
        Bead masses (amu). Default: the sum of the residue masses of every bead
        when ``sequence`` and ``residue_groups`` are given (see
        :func:`bead_masses`), else 110 amu per bead.
    sequence, residue_groups : optional
        Residue names and per bead the residue indices it contains.
    frame : int
        Frame returned as the starting positions.
    box : float, (3,) or (3, 3), optional
        Periodic box (nm): the springs use minimum-image distances.

    Returns
    -------
    topology : openmm.app.Topology
        One chain, one residue 'BEA' per bead with one carbon atom 'B1', 'B2', ...
    system : openmm.System
    positions : ndarray, shape (N, 3), nm

    Examples
    --------
    >>> import numpy as np
    >>> xyz = np.random.default_rng(0).normal(scale=0.5, size=(20, 8, 3))
    >>> top, system, pos = elastic_network_model(xyz.mean(0) + 0.05 * xyz, cutoff=2.0)
    >>> system.getNumParticles(), pos.shape
    (8, (8, 3))
    """
    import openmm
    import openmm.app as app

    xyz = np.asarray(bead_xyz, dtype=np.float64)
    if xyz.ndim == 2:
        xyz = xyz[None]
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise InputError(f"bead_xyz must have shape (N, 3) or (F, N, 3), got {np.shape(bead_xyz)}")
    if not np.isfinite(xyz).all():
        raise InputError("bead_xyz has non-finite coordinates")
    n_frames, n = xyz.shape[:2]
    vectors = _box_vectors(box)
    periodic = vectors is not None
    delta = xyz[:, :, None] - xyz[:, None]
    if periodic:
        lengths = np.array([v[i] for i, v in enumerate(vectors)])
        delta -= lengths * np.round(delta / lengths)  # minimum image (rectangular boxes)
    dist = np.linalg.norm(delta, axis=-1)
    r0 = dist.mean(0)
    if n_frames > 1:
        kt = BOLTZMANN_KJ_MOL_K * temperature
        kij = np.clip(kt / np.maximum(dist.var(0), 1e-12), k_min, k_max)
    else:
        kij = np.full((n, n), float(k))
    np.fill_diagonal(r0, np.inf)
    pairs = r0 < cutoff
    order = np.argsort(r0, axis=1)
    for i in range(n):
        if pairs[i].sum() < min_neighbors:
            nearest = order[i, :min(min_neighbors, n - 1)]
            pairs[i, nearest] = pairs[nearest, i] = True
    pairs = np.triu(pairs, 1)

    if masses is None:
        if sequence is not None and residue_groups is not None:
            masses = bead_masses(sequence, residue_groups)
        else:
            masses = np.full(n, 110.0)
    masses = np.asarray(masses, dtype=np.float64)
    if masses.shape != (n,):
        raise InputError(f"masses has shape {masses.shape}; expected ({n},)")

    top = app.Topology()
    chain = top.addChain("A")
    for b in range(n):
        top.addAtom(f"B{b + 1}", app.element.carbon, top.addResidue("BEA", chain, str(b + 1)))
    system = openmm.System()
    for m in masses:
        system.addParticle(float(m))
    if periodic:
        top.setPeriodicBoxVectors(vectors)
        system.setDefaultPeriodicBoxVectors(*vectors)
    springs = openmm.HarmonicBondForce()
    for i, j in zip(*np.nonzero(pairs)):
        springs.addBond(int(i), int(j), float(r0[i, j]), float(kij[i, j]))
    springs.setUsesPeriodicBoundaryConditions(periodic)
    system.addForce(springs)
    return top, system, xyz[frame].copy()
