"""Fast clash repair of backmapped heavy atoms: a vectorised restrained minimisation in torch.

The default relaxation of ``convert --minimize`` and ``BackmapReporter(minimize=True)``. It does what a
backmapped frame needs, not a force-field minimisation: it separates heavy atoms that are too close, puts
bond lengths back to the force field's, and moves nothing else. The energy of a frame is

* a harmonic bond term on every heavy-atom bond (template, peptide, disulfide), at the length of AMBER ff14SB
  (:func:`~.systems.reference_bond_lengths`; the input's length where the force field has none); disulfides
  (:func:`~openmm_backmap.structure.disulfide_bonds` of the first frame: backmapped cysteines whose CB atoms
  sit as in a disulfide) are closed to 0.204 nm;
* a harmonic 1-3 term on every bonded angle, at the input's 1-3 distance clipped to angles of 95-135 degrees
  (bond angles stay as the model made them, so clashes are resolved by torsions and small shifts, not by
  bending; only an absurd angle is corrected);
* a half-harmonic repulsion between heavy atoms that are neither 1-2 nor 1-3 neighbours. A pair is pushed apart
  to :data:`CONTACT_SIGMA_FRACTION` of its AMBER ff14SB Lennard-Jones diameter (0.96 sigma_ij, 0.33 nm for two
  carbons), where the force field's repulsion starts; N/O pairs, which hydrogen-bond at 0.27-0.30 nm, only to
  :data:`POLAR_CONTACT_SIGMA_FRACTION` (0.88 sigma_ij); 1-4 pairs, whose distance the torsions set, to
  :data:`CONTACT_NM` (0.22 nm). A crystal structure hardly moves (0.06 Å on corpus validation chains), while
  backmapped frames lose the close contacts that the clash metric (0.12 nm) does not count but the force field
  does: the ff14SB/OBC2 energy of ``convert --minimize`` output fell from 38 to 13 kJ/mol per residue above the
  crystal's (a contact of 0.22 nm alone left them at 38; benchmarks/md_ready.py). The fractions give our output
  its lowest energy, within 0.2 kJ/mol per residue, on training chains the models never saw
  (benchmarks/relax_contact_tuning.py; docs/relaxation.md);
* a half-harmonic term on the signed volume of each C-alpha stereocentre (N, C, CB around CA) that is L in the
  input, keeping it above :data:`CHIRAL_VOLUME_MIN_NM3`: without it, a side chain pushed out of a severe clash
  can pass through its backbone and come out a D-amino acid (3 D residues in 20 frames backmapped from CALVADOS and
  OpenABC runs; benchmarks/md_ready_cg.py). A frame that still ends with an inverted centre is flagged;
* the restraints of :class:`~.relaxer.Relaxer` (``'heavy'``, ``'ca'``, ``'cg'`` centroids, or None).

All frames of a batch are minimised at once with FIRE (Bitzek et al., PRL 97, 170201 (2006)) on the flattened
(frames x atoms) coordinates; step size, velocity mixing and convergence are per frame, and a frame stops moving
once its largest force is below :data:`FORCE_TOLERANCE_KJ_MOL_NM` with no clash left, so a batch gives the same
frames as one frame at a time. Neighbour pairs come from a k-d tree (scipy) per frame and are rebuilt only when
an atom has moved more than half the skin. Forces are analytic (``index_add_``), float64: on the CPU the result
is bit-for-bit reproducible. OpenMM has no batched minimiser over many independent frames, and a
:class:`openmm.System` per frame would rebuild the cost this replaces, hence the hand-written minimiser.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.spatial import cKDTree

from ...evaluation import clash_topology
from ...structure.constants import CLASH_DISTANCE_ANGSTROM, ANGSTROM_PER_NM, CHIRAL_VOLUME_MIN_NM3, DISULFIDE_BOND_NM, \
    K_CHIRAL
from ...structure import (InputError, atom_layout, chiral_centres, chirality_volumes, detect_segment_starts,
                          disulfide_bonds)
from ...structure.errors import option_name
from .relaxer import DEFAULT_K, RelaxResult, broken_bond_message, checked_frame, inverted_centres_message
from .systems import DEFAULT_FORCEFIELD, read_heavy_topology, reference_bond_lengths

__all__ = ["FastRelaxer", "CONTACT_NM", "CONTACT_SIGMA_FRACTION", "POLAR_CONTACT_SIGMA_FRACTION", "LJ_SIGMA_NM",
           "FORCE_TOLERANCE_KJ_MOL_NM", "FAST_MAX_ITERATIONS"]

#: 1-4 neighbours are pushed apart to at least this distance (nm), and no pair to less.
CONTACT_NM = 0.22
#: Other pairs: to this fraction of their Lennard-Jones diameter ``(sigma_i + sigma_j) / 2``.
CONTACT_SIGMA_FRACTION = 0.96
#: ... and pairs of two N/O atoms (hydrogen-bond donors and acceptors) to this fraction.
POLAR_CONTACT_SIGMA_FRACTION = 0.88
#: AMBER ff14SB Lennard-Jones sigma (nm) by element of the heavy atoms (types C/CT/CA/..., N, O/O2, S/SH; the
#: hydroxyl oxygen's 0.3066 is taken as O's 0.2960, the smaller, so no hydroxyl hydrogen bond is pushed apart).
LJ_SIGMA_NM = {"C": 0.33997, "N": 0.32500, "O": 0.29599, "S": 0.35636}
#: A frame is converged when no atom feels a larger force (kJ/mol/nm) and no clash remains.
FORCE_TOLERANCE_KJ_MOL_NM = 20.0
#: Default iteration limit of the FIRE minimiser.
FAST_MAX_ITERATIONS = 1000
#: The 1-3 terms keep the input's bond angles within this range (degrees; MET's CG-SD-CE is 100, TRP's
#: CG-CD2-CE3 134), and move angles outside it to the nearer limit.
ANGLE_RANGE_DEG = (95.0, 135.0)
#: Bond, 1-3 and repulsion force constants (kJ/mol/nm^2), ``E = k/2 (d - d0)^2``.
K_BOND = 1.0e5
K_ANGLE = 2.0e4
K_REPULSION = 1.0e5
#: Neighbour-list skin (nm): pairs are listed out to their contact distance + SKIN_NM.
SKIN_NM = 0.1
# FIRE parameters (unit masses; time in arbitrary units matched to the stiffest term above)
_DT0, _DT_MAX, _N_MIN, _F_INC, _F_DEC, _ALPHA0, _F_ALPHA = 2e-4, 1.5e-3, 5, 1.1, 0.5, 0.1, 0.99


def _angles(bonds, n_atoms):
    """Every bonded angle i-j-k (i < k) as (n, 3) atom indices and (n, 2) indices into ``bonds`` of i-j, j-k."""
    nb = [[] for _ in range(n_atoms)]
    for b, (i, j) in enumerate(bonds):
        nb[i].append((j, b))
        nb[j].append((i, b))
    out = sorted((min(a, c), j, max(a, c), ba if a < c else bc, bc if a < c else ba)
                 for j, n in enumerate(nb) for x, (a, ba) in enumerate(n) for c, bc in n[x + 1:])
    out = np.array(out, dtype=np.int64).reshape(-1, 5)
    return out[:, :3], out[:, 3:]


def _pair_keys_14(bonds, triples, n_atoms):
    """Keys ``i * n_atoms + j`` (i < j) of every 1-4 pair: the ends of a bonded chain i-a-b-j."""
    nb = [[] for _ in range(n_atoms)]
    for i, j in bonds.tolist():
        nb[i].append(j)
        nb[j].append(i)
    keys = {min(m, c) * n_atoms + max(m, c) for a, b, c in triples.tolist() for m in nb[a] if m not in (b, c)}
    keys |= {min(m, a) * n_atoms + max(m, a) for a, b, c in triples.tolist() for m in nb[c] if m not in (a, b)}
    return np.array(sorted(keys), dtype=np.int64)


class FastRelaxer:
    """Batched clash repair of heavy-atom frames in torch (see the module docstring).

    Same interface as :class:`~.relaxer.Relaxer` (``relax``, ``relax_batch``, :class:`RelaxResult`) for
    heavy atoms only: ``energy_before``/``energy_after`` are the repair energy (bonds, 1-3 terms and
    repulsion in kJ/mol, restraints excluded), not a force-field energy; there are no hydrogens (use
    :class:`~.relaxer.Relaxer` for them, as ``keep_hydrogens`` does in the pipeline).

    Parameters
    ----------
    topology : mdtraj.Topology or openmm.app.Topology
        Heavy-atom topology in canonical order.
    restraint : {'heavy', 'ca', 'cg', None}
        As in :class:`~.relaxer.Relaxer`.
    k : float
        Restraint constant, kJ/mol/nm^2 per restrained atom ('cg': ``n * k`` per bead of ``n`` atoms).
    mapping : object, optional
        For ``restraint='cg'``: ``.members`` and ``.weights`` per bead.
    max_iterations : int
        FIRE iteration limit.
    device : str or torch.device, optional
        Default CPU (the cost is small; a GPU pays off for large batches).
    segment_start : array of bool, optional
    template_xyz : ndarray, (A, 3), nm, optional
        Frame to build on (disulfides, reference bond lengths); default: the first frame relaxed.
    forcefield : str or sequence of str
        Where the reference bond lengths come from.

    Examples
    --------
    >>> relaxer = FastRelaxer(ens.topology(), template_xyz=ens.xyz[0])  # doctest: +SKIP
    >>> res = relaxer.relax_batch(frames)  # doctest: +SKIP
    >>> res.clash_after.max()  # doctest: +SKIP
    0.0
    """

    def __init__(self, topology, restraint="heavy", k=DEFAULT_K, mapping=None, max_iterations=FAST_MAX_ITERATIONS,
                 device=None, *, segment_start=None, template_xyz=None, forcefield=DEFAULT_FORCEFIELD):
        if restraint not in ("heavy", "ca", "cg", None):
            raise InputError(f"restraint must be 'heavy', 'ca', 'cg' or None, not {restraint!r}")
        if restraint == "cg" and mapping is None:
            raise InputError("restraint='cg' needs a mapping with .members and .weights")
        self.sequence, self.chain_ids, _, seg = read_heavy_topology(topology)
        self.layout = atom_layout(self.sequence)
        self.segment_start = seg if segment_start is None else np.asarray(segment_start, dtype=bool)
        if self.segment_start is not None and len(self.segment_start) != len(self.sequence):
            raise InputError("segment_start needs one entry per residue")
        self.restraint = restraint
        self.k = float(k)
        self.mapping = mapping
        self.max_iterations = int(max_iterations)
        self.device = torch.device(device or "cpu")
        self.forcefield = forcefield
        self.bonds = None
        self.timings = {}
        if template_xyz is not None:
            self._build(self._check_xyz(template_xyz))

    # ------------------------------------------------------------------ build
    def _check_xyz(self, xyz):
        return checked_frame(self.layout, xyz)

    def _build(self, xyz):
        t0 = time.perf_counter()
        lay = self.layout
        if self.segment_start is None:
            self.segment_start = detect_segment_starts(xyz[None], np.ones((1, lay.n_atoms), bool), self.sequence,
                                                       self.chain_ids)
        chain = lay.bonds(self.segment_start)
        try:
            r0 = np.asarray(reference_bond_lengths(self.sequence, self.segment_start, xyz, self.forcefield), float)
        except ValueError:  # no force-field template (e.g. a one-residue segment): keep the input's lengths
            r0 = np.full(len(chain), np.nan)
        self._chain_bonds = chain
        ss = disulfide_bonds(self.sequence, xyz)
        self.bonds = np.concatenate([chain, ss])
        self._bond_r0 = np.concatenate([r0, np.full(len(ss), DISULFIDE_BOND_NM)])
        triples, self._angle_bonds = _angles(self.bonds, lay.n_atoms)
        self.angles = triples[:, [0, 2]]
        n = lay.n_atoms
        excluded = np.concatenate([self.bonds, self.angles])
        self._excluded_keys = np.unique(np.minimum(excluded[:, 0], excluded[:, 1]) * n +
                                        np.maximum(excluded[:, 0], excluded[:, 1]))
        self._keys_14 = np.setdiff1d(_pair_keys_14(self.bonds, triples, n), self._excluded_keys)
        element = np.array(lay.elements)
        self._sigma = np.array([LJ_SIGMA_NM.get(e, LJ_SIGMA_NM["C"]) for e in element])
        self._polar = np.isin(element, ["N", "O"])
        self._pair_cutoff = max(CONTACT_NM, CONTACT_SIGMA_FRACTION * self._sigma.max()) + SKIN_NM
        self._centres = chiral_centres(lay)
        if self.restraint == "cg":
            members = [np.asarray(m, dtype=np.int64) for m in self.mapping.members]
            weights = getattr(self.mapping, "weights", None)
            rows, cols, vals = [], [], []
            for b, m in enumerate(members):
                if len(m) == 0 or m.min() < 0 or m.max() >= n:
                    raise InputError(f"mapping bead {b} has members outside 0..{n - 1}")
                w = np.ones(len(m)) if weights is None or weights[b] is None else np.asarray(weights[b], float)
                if w.shape != m.shape:
                    raise InputError(f"mapping bead {b}: {len(w)} weights for {len(m)} members")
                rows += [b] * len(m)
                cols += list(m)
                vals += list(w / w.sum())
            self._bead_size = np.array([len(m) for m in members], dtype=np.float64)
            self._cg = (np.array(rows), np.array(cols), np.array(vals))
        self.timings["build"] = time.perf_counter() - t0

    def clash(self, xyz):
        """Percent of residues in clashes (metrics definition, bonds from the topology) of a heavy-atom frame."""
        return float(clash_topology(xyz, self._chain_bonds, self.layout.atom_residue))

    def bead_positions(self, xyz):
        """Centroids (nm) of the mapping's beads in frames ``xyz`` (..., A, 3); for ``restraint='cg'``."""
        rows, cols, vals = self._cg
        out = np.zeros(np.shape(xyz)[:-2] + (len(self._bead_size), 3))
        np.add.at(out, (..., rows, slice(None)), np.asarray(xyz)[..., cols, :] * vals[:, None])
        return out

    # ------------------------------------------------------------------ frames
    def relax(self, xyz, cg_xyz=None, keep_hydrogens=False) -> RelaxResult:
        """Relax one heavy-atom frame: :meth:`relax_batch` of one frame, without the frame axis.

        Examples
        --------
        >>> res = relaxer.relax(ens.xyz[0])  # doctest: +SKIP
        """
        return self.relax_batch(np.asarray(xyz)[None], None if cg_xyz is None else np.asarray(cg_xyz)[None],
                                keep_hydrogens).unstack()[0]

    def relax_batch(self, xyz, cg_xyz=None, keep_hydrogens=False) -> RelaxResult:
        """Relax frames together (see the module docstring).

        Parameters
        ----------
        xyz : ndarray, (F, A, 3), nm
            Heavy atoms in canonical order.
        cg_xyz : ndarray, (F, B, 3), nm, optional
            Bead targets for ``restraint='cg'`` (default: the bead centroids of ``xyz``).
        keep_hydrogens : bool
            Not available here (heavy atoms only): raises.

        Returns
        -------
        RelaxResult
            Fields with a leading frame axis; ``staged`` all False, ``message`` a list.

        Examples
        --------
        >>> res = relaxer.relax_batch(ens.xyz[:8])  # doctest: +SKIP
        >>> res.xyz.shape  # doctest: +SKIP
        (8, 304, 3)
        """
        if keep_hydrogens:
            raise InputError("the fast relaxation works on heavy atoms; for hydrogens use the OpenMM relaxer "
                             f"({option_name('--relax openmm', repr({'method': 'openmm'}))})")
        t0 = time.perf_counter()
        xyz = np.asarray(xyz, dtype=np.float64)
        if xyz.ndim == 2:
            xyz = xyz[None]
        if self.bonds is None:
            self._build(self._check_xyz(xyz[0]))
        for x in xyz:
            self._check_xyz(x)
        targets = None
        if self.restraint == "cg":
            targets = self.bead_positions(xyz) if cg_xyz is None else np.asarray(cg_xyz, dtype=np.float64)
            if targets.ndim == 2:
                targets = targets[None]
            if targets.shape != (len(xyz), len(self._bead_size), 3):
                raise InputError(f"cg_xyz has shape {targets.shape}; expected ({len(xyz)}, "
                                 f"{len(self._bead_size)}, 3) for these frames and the mapping's beads")
        messages = [broken_bond_message(x, self._chain_bonds, self.layout) for x in xyz]
        todo = np.array([not m for m in messages])
        out = xyz.copy()
        e_before = np.zeros(len(xyz))
        e_after = np.zeros(len(xyz))
        done = np.zeros(len(xyz), dtype=bool)
        if todo.any():
            sel = np.flatnonzero(todo)
            moved, eb, ea, ok = self._minimize(xyz[sel], None if targets is None else targets[sel])
            out[sel], e_before[sel], e_after[sel], done[sel] = moved, eb, ea, ok
        clash_before = np.array([self.clash(x) for x in xyz])
        clash_after = np.array([self.clash(x) for x in out])
        inverted = [inverted_centres_message(x, y, self._centres, self.layout) for x, y in zip(xyz, out)]
        messages = [m or inv for m, inv in zip(messages, inverted)]
        converged = todo & done & (clash_after == 0) & ~np.array([bool(m) for m in inverted])
        self.timings["frame"] = (time.perf_counter() - t0) / len(xyz)
        return RelaxResult(xyz=out.astype(np.float32), energy_before=e_before, energy_after=e_after,
                           clash_before=clash_before, clash_after=clash_after,
                           rmsd_nm=np.sqrt(np.mean(np.sum((out - xyz) ** 2, axis=-1), axis=-1)),
                           converged=converged, staged=np.zeros(len(xyz), dtype=bool), message=messages)

    # ------------------------------------------------------------------ minimiser
    def _pairs(self, x):
        """Repulsion candidates of one frame (nm), 1-2 and 1-3 left out, and the distance (nm) each is pushed to."""
        p = cKDTree(x).query_pairs(self._pair_cutoff, output_type="ndarray")
        if len(p):
            p = np.sort(p, axis=1)
            p = p[np.lexsort((p[:, 1], p[:, 0]))]  # a fixed order: the same sums whatever the tree did
            p = p[~np.isin(p[:, 0] * len(x) + p[:, 1], self._excluded_keys)]
        p = p.reshape(-1, 2)
        fraction = np.where(self._polar[p[:, 0]] & self._polar[p[:, 1]], POLAR_CONTACT_SIGMA_FRACTION,
                            CONTACT_SIGMA_FRACTION)
        d0 = np.maximum(CONTACT_NM, fraction * 0.5 * (self._sigma[p[:, 0]] + self._sigma[p[:, 1]]))
        d0[np.isin(p[:, 0] * len(x) + p[:, 1], self._keys_14)] = CONTACT_NM
        keep = np.linalg.norm(x[p[:, 1]] - x[p[:, 0]], axis=1) < d0 + SKIN_NM
        return p[keep], d0[keep]

    def _minimize(self, xyz, targets):
        """FIRE over frames ``xyz`` (F, A, 3); returns positions, repair energies before and after, converged."""
        if self.device.type != "cpu":
            return self._fire(xyz, targets)
        # thousands of small ops: intra-op threads only add overhead (40x slower on 2 busy cores)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._fire(xyz, targets)
        finally:
            torch.set_num_threads(threads)

    def _fire(self, xyz, targets):
        dev, dt64 = self.device, torch.float64
        f_n, n = xyz.shape[:2]
        offs = np.arange(f_n)[:, None] * n

        def flat(pairs):  # per-frame pair lists -> global atom indices in the flattened (F*A, 3) array
            return np.concatenate([p + offs[f, 0] for f, p in enumerate(pairs)]).reshape(-1, 2)

        bonds = flat([self.bonds] * f_n)
        r0 = np.broadcast_to(self._bond_r0, (f_n, len(self.bonds)))
        own = np.linalg.norm(xyz[:, self.bonds[:, 0]] - xyz[:, self.bonds[:, 1]], axis=-1)
        r0 = np.where(np.isfinite(r0), r0, own).reshape(-1)
        angles = flat([self.angles] * f_n)
        d13 = np.linalg.norm(xyz[:, self.angles[:, 0]] - xyz[:, self.angles[:, 1]], axis=-1)
        # the input's angle, unless it is outside what a protein has (a side chain torn off its CB)
        b1, b2 = (r0.reshape(f_n, -1)[:, self._angle_bonds[:, c]] for c in (0, 1))
        lo, hi = (np.sqrt(b1 ** 2 + b2 ** 2 - 2 * b1 * b2 * np.cos(np.radians(a))) for a in ANGLE_RANGE_DEG)
        d13 = np.clip(d13, lo, hi).reshape(-1)
        harmonic_idx = torch.as_tensor(np.concatenate([bonds, angles]), device=dev)
        harmonic_r0 = torch.as_tensor(np.concatenate([r0, d13]), dtype=dt64, device=dev)
        harmonic_k = torch.as_tensor(np.concatenate([np.full(len(bonds), K_BOND), np.full(len(angles), K_ANGLE)]),
                                     dtype=dt64, device=dev)
        x = torch.as_tensor(xyz.reshape(-1, 3), dtype=dt64, device=dev).clone()
        x_in = x.clone()
        frame_of = torch.arange(f_n, device=dev).repeat_interleave(n)
        restrained = self._restraint_weights(n, f_n)
        if self.restraint == "cg":
            rows, cols, vals = self._cg
            n_beads = len(self._bead_size)
            bead_rows = torch.as_tensor((np.arange(f_n)[:, None] * n_beads + rows).reshape(-1), device=dev)
            bead_cols = torch.as_tensor((offs + cols).reshape(-1), device=dev)
            bead_w = torch.as_tensor(np.tile(vals, f_n), dtype=dt64, device=dev)
            bead_k = torch.as_tensor(np.tile(self._bead_size * self.k, f_n), dtype=dt64, device=dev)
            bead_t = torch.as_tensor(targets.reshape(-1, 3), dtype=dt64, device=dev)

        v_in = chirality_volumes(xyz, self._centres)  # (F, n): only what came in as L is held L
        held = (np.arange(f_n)[:, None] * n)[..., None] + self._centres[None]
        chiral = torch.as_tensor(held[v_in > 0].reshape(-1, 4), device=dev)

        def chirality_term(f, energy):
            a, b, c = (x[chiral[:, k]] - x[chiral[:, 1]] for k in (0, 2, 3))  # N, C, CB from CA
            vol = (torch.linalg.cross(a, b) * c).sum(1)
            dev_ = (vol - CHIRAL_VOLUME_MIN_NM3).clamp_max(0.0)
            if not bool((dev_ < 0).any()):
                return
            grads = (torch.linalg.cross(b, c), torch.linalg.cross(c, a), torch.linalg.cross(a, b))  # dV/dN, C, CB
            scale = (K_CHIRAL * dev_)[:, None]
            for k, g in zip((0, 2, 3), grads):
                f.index_add_(0, chiral[:, k], -scale * g)
            f.index_add_(0, chiral[:, 1], scale * (grads[0] + grads[1] + grads[2]))
            energy.index_add_(0, frame_of[chiral[:, 1]], 0.5 * K_CHIRAL * dev_ ** 2)

        def distance_terms(idx, d0, k, repulsive):
            v = x[idx[:, 1]] - x[idx[:, 0]]
            d = torch.linalg.vector_norm(v, dim=1).clamp_min(1e-6)
            dev_ = d - d0
            if repulsive:
                dev_ = dev_.clamp_max(0.0)
            e = 0.5 * k * dev_ ** 2
            g = (k * dev_ / d)[:, None] * v  # dE/dx_j; -g on i
            return e, g

        def forces(pairs):
            f = torch.zeros_like(x)
            energy = torch.zeros(f_n, dtype=dt64, device=dev)
            for idx, d0, k, rep in ((harmonic_idx, harmonic_r0, harmonic_k, False),
                                    (pairs, pair_d0, K_REPULSION, True)):
                if len(idx) == 0:
                    continue
                e, g = distance_terms(idx, d0, k, rep)
                f.index_add_(0, idx[:, 0], g)
                f.index_add_(0, idx[:, 1], -g)
                energy.index_add_(0, frame_of[idx[:, 0]], e)
            if len(chiral):
                chirality_term(f, energy)
            if restrained is not None:
                f -= restrained[:, None] * (x - x_in)
            if self.restraint == "cg":
                centre = torch.zeros((len(bead_t), 3), dtype=dt64, device=dev)
                centre.index_add_(0, bead_rows, bead_w[:, None] * x[bead_cols])
                pull = bead_k[:, None] * (centre - bead_t)
                f.index_add_(0, bead_cols, -bead_w[:, None] * pull[bead_rows])
            return f, energy

        def listed(i, frame):  # frame i's pairs (global indices) and their contact distances
            p, d0 = self._pairs(frame)
            return torch.as_tensor(p + offs[i, 0], device=dev), torch.as_tensor(d0, dtype=dt64, device=dev)

        pair_lists = [listed(i, frame) for i, frame in enumerate(xyz)]
        pairs, pair_d0 = (torch.cat(t) for t in zip(*pair_lists))
        x_list = x.clone()
        v = torch.zeros_like(x)
        dt = torch.full((f_n,), _DT0, dtype=dt64, device=dev)
        alpha = torch.full((f_n,), _ALPHA0, dtype=dt64, device=dev)
        n_pos = torch.zeros(f_n, dtype=torch.int64, device=dev)
        active = torch.ones(f_n, dtype=torch.bool, device=dev)
        f, energy = forces(pairs)
        e_before = energy.cpu().numpy().copy()
        clash_cut = CLASH_DISTANCE_ANGSTROM / ANGSTROM_PER_NM
        for _ in range(self.max_iterations):
            f_atom = torch.linalg.vector_norm(f, dim=1).view(f_n, n)
            close = torch.zeros(f_n, dtype=torch.bool, device=dev)
            if len(pairs):
                d = torch.linalg.vector_norm(x[pairs[:, 1]] - x[pairs[:, 0]], dim=1)
                close.index_fill_(0, frame_of[pairs[:, 0]][d < clash_cut], True)
            active &= (f_atom.max(dim=1).values > FORCE_TOLERANCE_KJ_MOL_NM) | close
            if not bool(active.any()):
                break
            ff = f.view(f_n, n * 3)
            vv = v.view(f_n, n * 3)
            power = (ff * vv).sum(1)
            f_norm = torch.linalg.vector_norm(ff, dim=1).clamp_min(1e-12)
            v_norm = torch.linalg.vector_norm(vv, dim=1)
            mixed = (1 - alpha)[:, None] * vv + (alpha * v_norm / f_norm)[:, None] * ff
            uphill = power <= 0
            vv = torch.where(uphill[:, None], torch.zeros_like(vv), mixed)
            grow = ~uphill & (n_pos >= _N_MIN)
            dt = torch.where(uphill, dt * _F_DEC, torch.where(grow, (dt * _F_INC).clamp_max(_DT_MAX), dt))
            alpha = torch.where(uphill, torch.full_like(alpha, _ALPHA0), torch.where(grow, alpha * _F_ALPHA, alpha))
            n_pos = torch.where(uphill, torch.zeros_like(n_pos), n_pos + 1)
            step = torch.where(active, dt, torch.zeros_like(dt))[:, None]
            vv = torch.where(active[:, None], vv + step * ff, torch.zeros_like(vv))
            v = vv.view(-1, 3)
            x = x + (step[:, None] * vv.view(f_n, n, 3)).view(-1, 3)
            moved = torch.linalg.vector_norm((x - x_list).view(f_n, n, 3), dim=2).max(dim=1).values
            stale = (moved > SKIN_NM / 2).cpu().numpy()
            if stale.any():
                pos = x.cpu().numpy().reshape(f_n, n, 3)
                for i in np.flatnonzero(stale):
                    pair_lists[i] = listed(i, pos[i])
                pairs, pair_d0 = (torch.cat(t) for t in zip(*pair_lists))
                x_list = torch.where(torch.as_tensor(stale, device=dev).repeat_interleave(n)[:, None], x, x_list)
            f, energy = forces(pairs)
        converged = ~active.cpu().numpy()
        return x.cpu().numpy().reshape(f_n, n, 3), e_before, energy.cpu().numpy(), converged

    def _restraint_weights(self, n, f_n):
        """Per-atom restraint constants (F*A,) for 'heavy' and 'ca'; None otherwise."""
        if self.restraint not in ("heavy", "ca"):
            return None
        w = np.full(n, self.k) if self.restraint == "heavy" else np.zeros(n)
        if self.restraint == "ca":
            w[self.layout.ca_index] = self.k
        return torch.as_tensor(np.tile(w, f_n), dtype=torch.float64, device=self.device)

    def __repr__(self):
        return (f"FastRelaxer(residues={len(self.sequence)}, restraint={self.restraint!r}, k={self.k} kJ/mol/nm^2, "
                f"device={str(self.device)!r})")
