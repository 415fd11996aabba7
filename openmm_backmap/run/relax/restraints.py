"""Terms a relaxation adds to the force field to stay near its input, built once and updated per frame.

* :class:`Restraints`: harmonic restraints on heavy atoms, C-alphas or
  CG-bead centroids, with per-frame targets;
* :class:`ChiralityHold`: keeps every C-alpha stereocentre that came in L on
  the L side (per frame: which ones did).

Both sit in force group :data:`~.systems.RESTRAINT_GROUP`, outside the energy a relaxer reports.
"""

from __future__ import annotations

import numpy as np

from ...structure import InputError, chirality_volumes
from ...structure.constants import CHIRAL_VOLUME_MIN_NM3, K_CHIRAL
from .systems import RESTRAINT_GROUP

__all__ = ["Restraints", "ChiralityHold"]


class Restraints:
    """Harmonic restraints of a relaxation, added to a System once; targets change per frame.

    Parameters
    ----------
    kind : {'heavy', 'ca', 'cg'}
        All heavy atoms, the C-alphas, or the centroids of the beads of ``mapping``.
    ffs : ForceFieldSystem
    layout : AtomLayout
    k : float
        kJ/mol/nm^2 per restrained atom (a 'cg' bead of ``n`` atoms gets ``n * k``).
    xyz : ndarray, (A, 3), nm
        Initial targets.
    mapping : object, optional
        For 'cg': ``.members`` (heavy-atom indices per bead) and ``.weights``
        (per bead, or None for equal weights).

    Attributes
    ----------
    force : openmm.Force
        In force group ``RESTRAINT_GROUP``, global parameter ``k_restraint``.
    index : int
        Its index in ``ffs.system``.
    """

    def __init__(self, kind, ffs, layout, k, xyz, mapping=None):
        import openmm

        self.kind = kind
        self.heavy_index = ffs.heavy_index
        if kind in ("heavy", "ca"):
            force = openmm.CustomExternalForce("0.5*k_restraint*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
            force.addGlobalParameter("k_restraint", float(k))
            for p in ("x0", "y0", "z0"):
                force.addPerParticleParameter(p)
            self.atoms = np.arange(layout.n_atoms) if kind == "heavy" else layout.ca_index
            for i in self.atoms:
                force.addParticle(int(self.heavy_index[i]), list(xyz[i]))
        else:
            self.members = [np.asarray(m, dtype=np.int64) for m in mapping.members]
            weights = getattr(mapping, "weights", None)
            # scaled by the bead size: a rigid shift of a bead costs as much as with restraint='heavy'
            force = openmm.CustomCentroidBondForce(1, "0.5*k_restraint*size*((x1-x0)^2+(y1-y0)^2+(z1-z0)^2)")
            force.addGlobalParameter("k_restraint", float(k))
            for p in ("x0", "y0", "z0", "size"):
                force.addPerBondParameter(p)
            self.weights = []
            for b, m in enumerate(self.members):
                if len(m) == 0 or m.min() < 0 or m.max() >= layout.n_atoms:
                    raise InputError(f"mapping bead {b} has members outside 0..{layout.n_atoms - 1}")
                w = np.ones(len(m)) if weights is None or weights[b] is None else np.asarray(weights[b], float)
                if w.shape != m.shape:
                    raise InputError(f"mapping bead {b}: {len(w)} weights for {len(m)} members")
                w = w / w.sum()
                self.weights.append(w)
                g = force.addGroup([int(i) for i in self.heavy_index[m]], list(w))
                force.addBond([g], [*(w @ xyz[m]), float(len(m))])
        force.setForceGroup(RESTRAINT_GROUP)
        self.index = ffs.system.addForce(force)
        self.force = force

    def set_targets(self, xyz, cg_xyz, force, context):
        """Targets of a frame in ``context``: ``xyz`` (nm), or for 'cg' the bead positions ``cg_xyz`` (nm;
        default: the bead centroids of ``xyz``). ``force`` is :attr:`force` or its clone in that context."""
        if self.kind in ("heavy", "ca"):
            for k, i in enumerate(self.atoms):
                force.setParticleParameters(k, int(self.heavy_index[i]), xyz[i])
        else:
            if cg_xyz is None:
                cg_xyz = np.array([w @ xyz[m] for m, w in zip(self.members, self.weights)])
            cg_xyz = np.asarray(cg_xyz, dtype=np.float64)
            if cg_xyz.shape != (len(self.members), 3):
                raise InputError(f"cg_xyz has shape {cg_xyz.shape}; the mapping has {len(self.members)} beads")
            for b, m in enumerate(self.members):
                force.setBondParameters(b, [b], [*cg_xyz[b], float(len(m))])
        force.updateParametersInContext(context)


class ChiralityHold:
    """A half-harmonic term on the signed volume of C-alpha stereocentres, added to a System once; per frame it
    acts on those that came in L.

    ``E = K_CHIRAL/2 (V - V_min)^2`` for ``V < V_min``
    (:data:`~openmm_backmap.structure.constants.CHIRAL_VOLUME_MIN_NM3`), ``V`` the signed volume of
    :func:`~openmm_backmap.structure.chirality_volumes`. Without it, the soft stage and the force field push a side
    chain out of a severe clash through its backbone and make a D residue (12 in 20 frames backmapped from
    CALVADOS and OpenABC runs). What came in D is left alone: flipping it back would drag a whole side chain
    through the backbone. The fast relaxer has the same term (:mod:`.fast`).

    Parameters
    ----------
    ffs : ForceFieldSystem
    centres : ndarray, (n, 4)
        Heavy-atom indices (N, CA, C, CB) of :func:`~openmm_backmap.structure.chiral_centres`.

    Attributes
    ----------
    force : openmm.CustomCompoundBondForce
        In force group ``RESTRAINT_GROUP`` (so not in the reported energy); per-bond parameter ``on``.
    index : int
        Its index in ``ffs.system``.

    Examples
    --------
    >>> hold = ChiralityHold(ffs, chiral_centres(layout))  # doctest: +SKIP
    >>> hold.set_frame(xyz, hold.force, context)  # doctest: +SKIP
    """

    #: (N - CA) . ((C - CA) x (CB - CA)), the same triple product as chirality_volumes
    ENERGY = ("on*0.5*k_chiral*step(v_min-v)*(v-v_min)^2; "
              "v=ax*(by*cz-bz*cy)+ay*(bz*cx-bx*cz)+az*(bx*cy-by*cx); "
              "ax=x1-x2; ay=y1-y2; az=z1-z2; bx=x3-x2; by=y3-y2; bz=z3-z2; cx=x4-x2; cy=y4-y2; cz=z4-z2")

    def __init__(self, ffs, centres):
        import openmm

        self.centres = np.asarray(centres, dtype=np.int64).reshape(-1, 4)
        force = openmm.CustomCompoundBondForce(4, self.ENERGY)
        force.addGlobalParameter("k_chiral", K_CHIRAL)
        force.addGlobalParameter("v_min", CHIRAL_VOLUME_MIN_NM3)
        force.addPerBondParameter("on")
        for atoms in ffs.heavy_index[self.centres]:
            force.addBond([int(a) for a in atoms], [1.0])
        force.setForceGroup(RESTRAINT_GROUP)
        self.index = ffs.system.addForce(force)
        self.force = force
        self._on = {}  # per force: the flags last sent to its Context

    def set_frame(self, xyz, force, context):
        """Act on the centres of heavy-atom frame ``xyz`` (nm) that are L; ``force`` is :attr:`force` or its clone
        in ``context``. Only a change of the flags reaches the Context."""
        on = chirality_volumes(xyz, self.centres) > 0
        if not len(on) or np.array_equal(self._on.get(id(force)), on):
            return
        for b, flag in enumerate(on):
            atoms, _ = force.getBondParameters(b)
            force.setBondParameters(b, atoms, [float(flag)])
        force.updateParametersInContext(context)
        self._on[id(force)] = on
