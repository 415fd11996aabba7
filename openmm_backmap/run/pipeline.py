"""The backmap -> relax -> write pipeline shared by :class:`~openmm_backmap.reporter.BackmapReporter` and
:func:`~openmm_backmap.convert.convert`.

Both front ends only gather CG frames (positions in nm); everything after
that happens here, once:

1. bad frames (NaN, infinite or exploded coordinates) are skipped with a
   :class:`BadFrameWarning` or raise (:meth:`BackmapPipeline.filter_frames`);
2. the model backmaps a batch of frames (``samples`` structures per frame,
   frame-major);
3. optionally a :class:`~openmm_backmap.relax.Relaxer`, built once, relaxes
   every structure;
4. a :class:`~openmm_backmap.io.TrajectoryWriter` writes them with their time
   and step;
5. reference-free quality checks are accumulated for the summary.

Quality checks (reference free)
-------------------------------
There is no true all-atom structure to compare with, so the summary uses the
definitions of :mod:`openmm_backmap.metrics` with the reference replaced by
the chemistry of the topology:

``clash_percent``
    :func:`openmm_backmap.metrics.clash_topology`: as
    :func:`openmm_backmap.metrics.clash` (residues with a heavy atom closer
    than 1.2 Å to a heavy atom of another residue), with the bonded pairs
    excluded taken from the *topology* (template and peptide bonds).
    Using the generated frame itself as the reference would not work: its
    distance-inferred bond graph counts every pair closer than ~2 Å as
    bonded and so hides every clash.
``bond_ok_percent``
    as :func:`openmm_backmap.metrics.bond_ok` (bonds within 10 % of the
    reference length), over the topology's heavy-atom bonds, with the
    reference lengths taken from the equilibrium lengths of the AMBER
    ff14SB force field (the one the relaxer uses).

Both are computed before and, with relaxation, after minimisation.
"""

from __future__ import annotations

import os
import time
import warnings
import xml.etree.ElementTree as ET
from functools import lru_cache

import numpy as np

from ..evaluation.metrics import BOND_OK_TOLERANCE, clash_topology
from .relax.relaxer import FAILED_ENERGY_KJ_MOL
from ..structure.templates import TEMPLATES, atom_layout, build_topology, canonical_residue_name
from ..structure.errors import InputError

__all__ = ["BackmapPipeline", "BadFrameWarning", "RelaxationWarning", "make_whole", "frame_quality",
           "ideal_bond_lengths", "cg_particle_info", "format_summary", "MAX_COORDINATE_NM", "CG_BREAK_NM",
           "RELAX_FAILED_KJ_MOL"]

#: A CG frame with any |coordinate| above this (nm) has exploded.
MAX_COORDINATE_NM = 1.0e4
#: Consecutive C-alpha beads farther apart than this (nm) start a new segment (when no bonds say otherwise).
CG_BREAK_NM = 0.5


#: A relaxed structure with a force-field energy above this (kJ/mol) was not relaxed.
RELAX_FAILED_KJ_MOL = FAILED_ENERGY_KJ_MOL


class BadFrameWarning(UserWarning):
    """A CG frame with NaN, infinite or exploded coordinates was skipped."""


class RelaxationWarning(UserWarning):
    """Relaxation failed (``RelaxResult.converged`` False, or an absurd energy); the structure is written as it
    came out of the minimiser."""


# --------------------------------------------------------------------------
# periodic images
# --------------------------------------------------------------------------
def _minimum_image(d, box):
    """Reduce difference vectors ``d`` (F, 3) by reduced (OpenMM-style) triclinic boxes ``box`` (F, 3, 3), nm."""
    d = d - box[:, 2] * np.round(d[:, 2:3] / box[:, 2, 2:3])
    d = d - box[:, 1] * np.round(d[:, 1:2] / box[:, 1, 1:2])
    return d - box[:, 0] * np.round(d[:, 0:1] / box[:, 0, 0:1])


def _parents(n, bonds):
    """BFS order and parent of every particle: along ``bonds``; unbonded particles follow the previous one."""
    nbrs = [[] for _ in range(n)]
    for i, j in (bonds if bonds is not None else []):
        if 0 <= i < n and 0 <= j < n and i != j:
            nbrs[i].append(j)
            nbrs[j].append(i)
    parent = np.full(n, -1, dtype=np.int64)
    seen = np.zeros(n, dtype=bool)
    order = []
    for root in range(n):
        if seen[root]:
            continue
        seen[root] = True
        parent[root] = root - 1  # a new component hangs on the previous particle (-1 for the first)
        queue = [root]
        while queue:
            i = queue.pop(0)
            order.append(i)
            for j in sorted(nbrs[i]):
                if not seen[j]:
                    seen[j] = True
                    parent[j] = i
                    queue.append(j)
    return np.array(order, dtype=np.int64), parent


def make_whole(xyz, box_vectors, bonds=None):
    """Make a molecule whole across periodic boundaries.

    Every particle is moved to the periodic image closest to its parent: its
    bonded neighbour found first in a breadth-first walk over ``bonds``, or,
    for particles without bonds and for the first particle of every further
    connected component, the previous particle (beads of a chain are
    consecutive). The first particle stays where it is.

    Parameters
    ----------
    xyz : array, (N, 3) or (F, N, 3), nm
    box_vectors : array, (3, 3) or (F, 3, 3), nm
        Periodic box vectors (rows), in OpenMM's reduced form.
    bonds : array of int, (n, 2), optional
        Bonds between the particles (indices into ``xyz``).

    Returns
    -------
    ndarray, same shape as ``xyz``, nm

    Examples
    --------
    >>> import numpy as np
    >>> chain = np.array([[0.1, 0, 0], [2.9, 0, 0], [2.5, 0, 0]])  # split across a 3 nm box
    >>> make_whole(chain, np.eye(3) * 3.0)[:, 0].round(2).tolist()
    [0.1, -0.1, -0.5]
    """
    x = np.array(xyz, dtype=np.float64)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None]
    box = np.asarray(box_vectors, dtype=np.float64)
    if box.ndim == 2:
        box = np.broadcast_to(box, (len(x), 3, 3))
    if box.shape != (len(x), 3, 3):
        raise InputError(f"box_vectors must have shape (3, 3) or ({len(x)}, 3, 3), got {box.shape}")
    order, parent = _parents(x.shape[1], None if bonds is None else np.asarray(bonds).reshape(-1, 2))
    for i in order:  # vectorised over frames
        p = parent[i]
        if p >= 0:
            x[:, i] = x[:, p] + _minimum_image(x[:, i] - x[:, p], box)
    return x[0] if squeeze else x


# --------------------------------------------------------------------------
# reference-free quality checks
# --------------------------------------------------------------------------
_FF_RESIDUE = {"HIS": "HIE"}


@lru_cache(maxsize=1)
def _ff14sb_tables():
    """(residue -> {atom: type}, {(type1, type2): length nm}) from OpenMM's ff14SB XML."""
    import openmm.app as app

    path = os.path.join(os.path.dirname(app.__file__), "data", "amber14", "protein.ff14SB.xml")
    root = ET.parse(path).getroot()
    residues = {}
    for res in root.find("Residues"):
        residues[res.get("name")] = {a.get("name"): a.get("type") for a in res.findall("Atom")}
    lengths = {}
    for bond in root.find("HarmonicBondForce"):
        t1, t2 = bond.get("type1"), bond.get("type2")
        if t1 and t2:
            lengths[(t1, t2)] = lengths[(t2, t1)] = float(bond.get("length"))
    return residues, lengths


@lru_cache(maxsize=64)
def _ideal_bonds(sequence: tuple, segment_start: tuple):
    lay = atom_layout(sequence)
    bonds = lay.bonds(np.array(segment_start, dtype=bool))
    residues, lengths = _ff14sb_tables()
    types = []
    for r, name in enumerate(lay.sequence):
        table = residues[_FF_RESIDUE.get(name, name)]
        types += [table[a] for a in TEMPLATES[name].atoms]
    r0 = np.array([lengths.get((types[i], types[j]), np.nan) for i, j in bonds], dtype=np.float64)
    return bonds, r0


def ideal_bond_lengths(sequence, segment_start=None):
    """Heavy-atom bonds of a sequence and their AMBER ff14SB equilibrium lengths.

    Parameters
    ----------
    sequence : sequence of str
        Three-letter residue names.
    segment_start : array of bool, optional
        Chain starts and breaks (no peptide bond before them).

    Returns
    -------
    bonds : ndarray of int, (n, 2)
        Atom indices in canonical order.
    length : ndarray, (n,), nm

    Examples
    --------
    >>> bonds, r0 = ideal_bond_lengths(['GLY', 'ALA'])
    >>> len(bonds), float(r0[0])  # N-CA of GLY
    (8, 0.1449)
    """
    seq = tuple(canonical_residue_name(s) or s for s in sequence)
    seg = np.zeros(len(seq), dtype=bool) if segment_start is None else np.asarray(segment_start, dtype=bool)
    return _ideal_bonds(seq, tuple(bool(s) for s in seg))


def frame_quality(xyz, sequence, segment_start=None):
    """Reference-free clash and bond checks of heavy-atom frames (see the module docstring).

    Parameters
    ----------
    xyz : array, (A, 3) or (F, A, 3), nm
        Heavy atoms in canonical order.
    sequence : sequence of str
    segment_start : array of bool, optional

    Returns
    -------
    clash_percent, bond_ok_percent : ndarray, (F,)
        Percent of residues with a clash (< 1.2 Å, topology bonds excluded)
        and percent of heavy-atom bonds within 10 % of the ff14SB length.

    Examples
    --------
    >>> from openmm_backmap.io import load_ensemble
    >>> ens = load_ensemble('tests/data/trpcage.pdb')  # doctest: +SKIP
    >>> frame_quality(ens.xyz, ens.sequence, ens.segment_start)  # doctest: +SKIP
    (array([0.]), array([100.]))
    """
    x = np.asarray(xyz, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    bonds, r0 = ideal_bond_lengths(sequence, segment_start)
    lay = atom_layout(sequence)
    finite = np.isfinite(x).all(axis=(1, 2))
    clash = np.full(len(x), np.nan)
    if finite.any():
        clash[finite] = clash_topology(x[finite], bonds, lay.atom_residue)
    known = np.isfinite(r0)
    ok = np.full(len(x), np.nan)
    if known.any():
        for f in np.flatnonzero(finite):
            d = np.linalg.norm(x[f, bonds[known, 0]] - x[f, bonds[known, 1]], axis=1)
            ok[f] = 100.0 * np.mean(np.abs(d - r0[known]) <= BOND_OK_TOLERANCE * r0[known])
    return clash, ok


# --------------------------------------------------------------------------
# CG topologies
# --------------------------------------------------------------------------
def cg_particle_info(topology, particles=None, xyz=None):
    """Residue names, chains and segments of CG particles, from an OpenMM or mdtraj topology.

    Parameters
    ----------
    topology : openmm.app.Topology or mdtraj.Topology
    particles : sequence of int, optional
        The CG particles (default: all), in bead order.
    xyz : array, (N, 3), nm, optional
        Positions of the particles, used to find chain breaks when the
        topology has no bonds between them (consecutive beads farther apart
        than :data:`CG_BREAK_NM`).

    Returns
    -------
    dict
        ``sequence`` (canonical names, or None when the particles are not one
        standard residue each), ``names`` (residue names as in the topology),
        ``bad_names`` (non-standard ones), ``one_per_residue``,
        ``segment_start``, ``chain_ids``, ``residue_numbers``, ``bonds``
        ((n, 2) indices into ``particles``).

    Examples
    --------
    >>> import mdtraj as md  # doctest: +SKIP
    >>> cg_particle_info(md.load_topology('ca.pdb'))['sequence'][:2]  # doctest: +SKIP
    ['ASN', 'LEU']
    """
    if hasattr(topology, "getNumAtoms"):  # OpenMM
        atoms = list(topology.atoms())
        bonds_all = [(a.index, b.index) for a, b in topology.bonds()]

        def res_of(a):
            return a.residue

        def res_info(r):
            chain = r.chain
            number = int(r.id) if str(r.id).lstrip("-").isdigit() else r.index + 1
            return r.name, number, chain.index, (chain.id or chr(65 + chain.index % 26))[:1]
    else:  # mdtraj
        atoms = list(topology.atoms)
        bonds_all = [(a.index, b.index) for a, b in topology.bonds]

        def res_of(a):
            return a.residue

        def res_info(r):
            chain = r.chain
            return r.name, int(r.resSeq), chain.index, (getattr(chain, "chain_id", None) or
                                                         chr(65 + chain.index % 26))[:1]
    if particles is None:
        particles = range(len(atoms))
    particles = [int(p) for p in particles]
    pos = {p: k for k, p in enumerate(particles)}
    residues = [res_of(atoms[p]) for p in particles]
    one_per_residue = len({id(r) for r in residues}) == len(residues)
    info = [res_info(r) for r in residues]
    names = [i[0] for i in info]
    canon = [canonical_residue_name(nm) for nm in names]
    bad = sorted({nm for nm, c in zip(names, canon) if c is None})
    bonds = np.array([(pos[i], pos[j]) for i, j in bonds_all if i in pos and j in pos], dtype=np.int64).reshape(-1, 2)
    n = len(particles)
    seg = np.zeros(n, dtype=bool)
    if n:
        seg[0] = True
        chain_index = [i[2] for i in info]
        bonded = {(min(i, j), max(i, j)) for i, j in bonds}
        for k in range(1, n):
            if chain_index[k] != chain_index[k - 1]:
                seg[k] = True
            elif bonded:
                seg[k] = (k - 1, k) not in bonded
            elif xyz is not None:
                seg[k] = bool(np.linalg.norm(np.asarray(xyz[k]) - np.asarray(xyz[k - 1])) > CG_BREAK_NM)
    return {
        "sequence": [str(c) for c in canon] if (one_per_residue and not bad and n) else None,
        "names": names,
        "bad_names": bad,
        "one_per_residue": one_per_residue,
        "segment_start": seg,
        "chain_ids": [i[3] for i in info],
        "residue_numbers": [i[1] for i in info],
        "bonds": bonds,
    }


def cg_sequence(info, model, where="", fix_count="", fix_names=""):
    """The residue sequence a model needs from CG particle info (:func:`cg_particle_info`).

    A transferable (C-alpha) model needs one particle per residue with
    standard residue names; raises ValueError saying what is wrong, followed
    by the caller's hint on how to fix it. For a per-system model whose beads
    are not residues, returns None (nothing to check).
    """
    sequence = info["sequence"]
    if model.transferable and sequence is None:
        if not info["one_per_residue"]:
            raise InputError(f"{where}the CG particles are not one per residue; a C-alpha model needs one particle "
                             f"per residue{fix_count}")
        raise InputError(f"{where}residue names {', '.join(info['bad_names'][:6])} are not standard amino acids, so "
                         f"the C-alpha model cannot know the sequence{fix_names}")
    if not model.transferable and sequence is not None and len(sequence) != model.n_beads:
        return None  # beads are not residues
    return sequence


# --------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------
class BackmapPipeline:
    """Backmap CG frames, optionally relax them, and write them: one object per output file.

    Parameters
    ----------
    model : str, path or Backmapper, optional
        Model file or loaded model (default: the shipped C-alpha model).
    output : str or path
        Output trajectory (``.dcd``, ``.xtc``, ``.pdb``, ``.h5``).
    n_particles : int
        CG particles per frame.
    sequence : list of str, optional
        Residue names of the CG beads (required by transferable C-alpha
        models; checked against per-system models).
    segment_start : array of bool, optional
        Chain starts and breaks (transferable models; per-system models use their own).
    chain_ids, residue_numbers : optional
        Chain identifier and number of every residue, for the output topology.
    samples : int
        Structures per CG frame.
    seed : int, optional
        Base seed (random when None; the one used is in :attr:`seed`). The
        model is called with ``seed + 7919 * i`` for a batch whose first
        frame is frame ``i``, so the output depends on the seed and on the
        batching, not on timing or threads.
    deterministic : bool
        Most likely structure instead of samples.
    minimize : bool
        Relax every structure with :class:`~openmm_backmap.relax.Relaxer`.
    relax_options : dict, optional
        Keyword arguments of :class:`~openmm_backmap.relax.Relaxer`
        (``restraint``, ``k``, ``platform``, ``implicit``, ``max_iterations`` ...).
    keep_hydrogens : bool
        With ``minimize``: write all atoms including hydrogens.
    append, force : bool
        Passed to :class:`~openmm_backmap.io.TrajectoryWriter`.
    device : str, optional
        Torch device of the model.
    on_bad_frame : {'skip', 'raise'}
        What :meth:`filter_frames` does with NaN or exploded frames.
    quality : bool
        Compute the reference-free checks for the summary.

    Examples
    --------
    >>> pipe = BackmapPipeline('models/ca2aa.pt', 'out.dcd', 20, sequence=seq, seed=1)  # doctest: +SKIP
    >>> pipe.process(ca_xyz_nm, time_ps=t)  # doctest: +SKIP
    >>> pipe.close(); pipe.summary()['frames_written']  # doctest: +SKIP
    """

    def __init__(self, model, output, n_particles, sequence=None, segment_start=None, chain_ids=None,
                 residue_numbers=None, samples=1, seed=None, deterministic=False, minimize=False, relax_options=None,
                 keep_hydrogens=False, append=False, force=False, device=None, on_bad_frame="skip", quality=True):
        from ..model.backmapping import load_model
        from ..io.formats import TrajectoryWriter, check_output_path

        if on_bad_frame not in ("skip", "raise"):
            raise InputError(f"on_bad_frame must be 'skip' or 'raise', not {on_bad_frame!r}")
        if int(samples) < 1:
            raise InputError(f"samples must be a positive integer, got {samples}")
        if keep_hydrogens and not minimize:
            raise InputError("keep_hydrogens needs minimize (the relaxer adds the hydrogens); use --minimize")
        self.output = os.fspath(output)
        check_output_path(self.output, append=append, force=force)
        self.model = load_model(model, device=device)
        self.n_particles = int(n_particles)
        per_system = not self.model.transferable
        self.sequence, self.segment_start = self.model.resolve_sequence(
            sequence, None if per_system else segment_start, self.n_particles)
        n_res = len(self.sequence)
        if chain_ids is None or len(chain_ids) != n_res:
            chain_ids = None
        if residue_numbers is None or len(residue_numbers) != n_res:
            residue_numbers = None
        self.chain_ids, self.residue_numbers = chain_ids, residue_numbers
        self.topology = build_topology(self.sequence, self.segment_start, chain_ids, residue_numbers)
        self.samples = int(samples)
        self.seed = int(np.random.default_rng().integers(0, 2**31 - 1)) if seed is None else int(seed)
        self.deterministic = bool(deterministic)
        self.minimize = bool(minimize)
        self.relax_options = dict(relax_options or {})
        self.keep_hydrogens = bool(keep_hydrogens)
        self.on_bad_frame = on_bad_frame
        self.quality = bool(quality)
        self.relaxer = None
        self._append, self._force = append, force
        self.writer = None
        if not self.keep_hydrogens:
            self.writer = TrajectoryWriter(self.output, self.topology, append=append, force=force)
        self.frames_in = 0
        self.frames_skipped = 0
        self.frames_written = 0
        self.relax_failures = 0
        self.seconds = {"backmap": 0.0, "relax": 0.0, "relax_build": 0.0, "write": 0.0, "quality": 0.0}
        self._stats = {k: [] for k in ("clash_before", "bond_ok_before", "clash_after", "bond_ok_after",
                                       "energy_before", "energy_after")}
        self._t0 = time.perf_counter()
        self._closed = False

    # ------------------------------------------------------------------ frames
    def filter_frames(self, cg_xyz, index=None):
        """Drop frames with NaN, infinite or exploded coordinates.

        A frame is bad when a coordinate is not finite, exceeds
        :data:`MAX_COORDINATE_NM` in magnitude, or a bead lies farther than
        ``max(20 nm, 0.5 nm * beads)`` from the centroid.

        Parameters
        ----------
        cg_xyz : array, (F, N, 3), nm
        index : array of int, (F,), optional
            Frame numbers for the messages.

        Returns
        -------
        ndarray of bool, (F,)
            True for the good frames.

        Raises
        ------
        ValueError
            With ``on_bad_frame='raise'``, at the first bad frame.
        """
        x = np.asarray(cg_xyz, dtype=np.float64)
        if x.ndim == 2:
            x = x[None]
        good = np.isfinite(x).all(axis=(1, 2))
        with np.errstate(invalid="ignore", over="ignore"):
            good &= (np.abs(np.where(np.isfinite(x), x, 0.0)) <= MAX_COORDINATE_NM).all(axis=(1, 2))
            extent = np.linalg.norm(x - x.mean(1, keepdims=True), axis=-1).max(1) if x.shape[1] else np.zeros(len(x))
        good &= ~(extent > max(20.0, 0.5 * x.shape[1]))
        if not good.all():
            bad = np.flatnonzero(~good)
            labels = [str(int(index[b])) if index is not None else str(int(b)) for b in bad[:5]]
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            msg = (f"CG frame(s) {', '.join(labels)}{more} have NaN, infinite or exploded coordinates "
                   "(the CG simulation blew up?)")
            if self.on_bad_frame == "raise":
                raise InputError(msg + "; use on_bad_frame='skip' (--on-bad-frame skip) to skip them")
            warnings.warn(msg + "; skipped", BadFrameWarning, stacklevel=2)
            self.frames_skipped += len(bad)
        return good

    def _ensure_relaxer(self, xyz0):
        from .relax.relaxer import Relaxer

        if self.relaxer is None:
            t0 = time.perf_counter()
            opts = dict(self.relax_options)
            opts.setdefault("segment_start", self.segment_start)
            if opts.get("restraint") == "cg" and opts.get("mapping") is None:
                opts["mapping"] = self.cg_mapping()
            self.relaxer = Relaxer(self.topology, template_xyz=xyz0, **opts)
            self.seconds["relax_build"] += time.perf_counter() - t0
        if self.writer is None:
            from ..io.formats import TrajectoryWriter

            self.writer = TrajectoryWriter(self.output, self.relaxer.topology_h, append=self._append,
                                           force=self._force)

    def cg_mapping(self):
        """Mapping from the output heavy atoms to the CG beads (for ``restraint='cg'`` relaxation)."""
        from ..mapping.operators import ca_mapping

        if self.model.transferable:
            return ca_mapping(self.sequence)
        h = self.model.hierarchy
        if h is None:
            raise InputError("restraint='cg' needs the model's mappings, and this model has none; use "
                             "restraint='ca' or 'heavy'")
        m = h.composed(h.levels[-1])
        if m.n_beads != self.n_particles:
            raise InputError(f"the model's coarsest level has {m.n_beads} beads, the input {self.n_particles}")
        return m

    def process(self, cg_xyz, time_ps=None, step=None) -> int:
        """Backmap, relax and write CG frames (assumed good: see :meth:`filter_frames`).

        Parameters
        ----------
        cg_xyz : array, (F, N, 3), nm
        time_ps : array, (F,), ps, optional
        step : array of int, (F,), optional

        Returns
        -------
        int
            Structures written (``F * samples``).
        """
        if self._closed:
            raise InputError("the pipeline is closed")
        x = np.asarray(cg_xyz, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (self.n_particles, 3):
            raise InputError(f"CG frames have shape {x.shape}; expected (frames, {self.n_particles}, 3) nm")
        n = len(x)
        if n == 0:
            return 0
        t0 = time.perf_counter()
        out = self.model.backmap(x, self.sequence, self.segment_start, samples=self.samples,
                                 seed=(self.seed + 7919 * self.frames_in) % (2**31 - 1),
                                 deterministic=self.deterministic).xyz
        t1 = time.perf_counter()
        self.seconds["backmap"] += t1 - t0
        if self.quality:
            c, b = frame_quality(out, self.sequence, self.segment_start)
            self._stats["clash_before"] += c.tolist()
            self._stats["bond_ok_before"] += b.tolist()
        t2 = time.perf_counter()
        self.seconds["quality"] += t2 - t1
        frames = out
        if self.minimize:
            self._ensure_relaxer(out[0])
            t2 = time.perf_counter()
            relaxed, full = [], []
            cg_restraint = self.relaxer.restraint == "cg"
            for j, frame in enumerate(out):
                res = self.relaxer.relax(frame, cg_xyz=x[j // self.samples] if cg_restraint else None,
                                         keep_hydrogens=self.keep_hydrogens)
                relaxed.append(res.xyz)
                if self.keep_hydrogens:
                    full.append(res.xyz_h)
                self._stats["energy_before"].append(res.energy_before)
                self._stats["energy_after"].append(res.energy_after)
                if (not getattr(res, "converged", True) or not np.isfinite(res.energy_after)
                        or res.energy_after > RELAX_FAILED_KJ_MOL):
                    self.relax_failures += 1
                    why = getattr(res, "message", "") or (
                        f"energy {res.energy_before:.3g} -> {res.energy_after:.3g} kJ/mol, clash "
                        f"{res.clash_before:.1f} -> {res.clash_after:.1f} %")
                    warnings.warn(f"relaxation of structure {self.frames_written + j} failed: {why}",
                                  RelaxationWarning, stacklevel=2)
            t3 = time.perf_counter()
            self.seconds["relax"] += t3 - t2
            relaxed = np.stack(relaxed)
            if self.quality:
                c, b = frame_quality(relaxed, self.sequence, self.segment_start)
                self._stats["clash_after"] += c.tolist()
                self._stats["bond_ok_after"] += b.tolist()
            self.seconds["quality"] += time.perf_counter() - t3
            frames = np.stack(full) if self.keep_hydrogens else relaxed
        t4 = time.perf_counter()
        rep = self.samples
        t = None if time_ps is None else np.repeat(np.asarray(time_ps, dtype=np.float64).reshape(-1), rep)
        s = None if step is None else np.repeat(np.asarray(step, dtype=np.int64).reshape(-1), rep)
        self.writer.write(frames, time_ps=t, step=s)
        self.seconds["write"] += time.perf_counter() - t4
        self.frames_in += n
        self.frames_written += len(frames)
        return len(frames)

    # ------------------------------------------------------------------ results
    def summary(self) -> dict:
        """Counts, timings and the mean quality checks (see the module docstring).

        Returns
        -------
        dict
            ``output``, ``topology_file``, ``model``, ``seed``, ``samples``,
            ``frames_in``, ``frames_skipped``, ``frames_written``,
            ``seconds`` (per stage and ``total``), ``frames_per_second``
            (CG frames per wall-clock second since the pipeline was made),
            ``relax_seconds_per_frame``, and ``clash_percent``,
            ``bond_ok_percent``, ``energy_kj_mol``: each ``{'before', 'after'}``
            means (``after`` None without relaxation).
        """
        total = time.perf_counter() - self._t0

        def mean(key):
            v = np.asarray(self._stats[key], dtype=np.float64)
            v = v[np.isfinite(v)]
            return float(v.mean()) if len(v) else None

        n_relaxed = len(self._stats["energy_after"])
        return {
            "output": self.output,
            "topology_file": None if self.writer is None else self.writer.topology_path,
            "model": self.model.metadata.get("name") or self.model.kind,
            "model_file": self.model.path,
            "seed": self.seed,
            "samples": self.samples,
            "frames_in": self.frames_in,
            "frames_skipped": self.frames_skipped,
            "frames_written": self.frames_written,
            "seconds": {**{k: round(v, 4) for k, v in self.seconds.items()}, "total": round(total, 4)},
            "frames_per_second": self.frames_in / total if total > 0 else None,
            "relax_seconds_per_frame": self.seconds["relax"] / n_relaxed if n_relaxed else None,
            "relax_failures": self.relax_failures,
            "clash_percent": {"before": mean("clash_before"), "after": mean("clash_after")},
            "bond_ok_percent": {"before": mean("bond_ok_before"), "after": mean("bond_ok_after")},
            "energy_kj_mol": {"before": mean("energy_before"), "after": mean("energy_after")},
        }

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self):
        """Close the output file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.writer is not None:
            self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def format_summary(summary: dict) -> str:
    """A few human-readable lines for a :meth:`BackmapPipeline.summary` result.

    Examples
    --------
    >>> print(format_summary(pipe.summary()))  # doctest: +SKIP
    """
    def f(x, d=1):
        return "n/a" if x is None else f"{x:.{d}f}"

    s = summary
    lines = [f"backmapped {s['frames_in']} CG frame(s) -> {s['frames_written']} structure(s) "
             f"({s['samples']} per frame) with {s['model']} (seed {s['seed']}) in {s['seconds']['total']:.1f} s "
             f"wall-clock ({f(s['frames_per_second'], 2)} CG frames/s)"]
    if s["frames_skipped"]:
        lines.append(f"skipped {s['frames_skipped']} bad CG frame(s)")
    if s.get("relax_failures"):
        lines.append(f"relaxation failed for {s['relax_failures']} structure(s) (written as the minimiser left "
                     "them)")
    c, b = s["clash_percent"], s["bond_ok_percent"]
    if s["energy_kj_mol"]["after"] is not None:
        lines.append(f"clash (residues, < 1.2 Å): {f(c['before'])} % -> {f(c['after'])} % after relaxation; "
                     f"bonds within 10 % of ff14SB: {f(b['before'])} % -> {f(b['after'])} %; "
                     f"relaxation {f(s['relax_seconds_per_frame'], 2)} s/frame")
    elif c["before"] is not None:
        lines.append(f"clash (residues, < 1.2 Å): {f(c['before'])} %; bonds within 10 % of ff14SB: "
                     f"{f(b['before'])} % (no relaxation)")
    where = s["output"] + (f" (topology {s['topology_file']})" if s.get("topology_file") else "")
    lines.append(f"wrote {where}")
    return "\n".join(lines)
