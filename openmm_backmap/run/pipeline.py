"""The backmap -> relax -> write pipeline shared by :class:`~openmm_backmap.run.reporter.BackmapReporter` and
:func:`~openmm_backmap.run.conversion.convert_trajectory`.

Both front ends only gather CG frames (positions in nm); everything after
that happens here, once:

1. bad frames (NaN, infinite or exploded coordinates) are skipped with a
   :class:`BadFrameWarning` or raise (:meth:`BackmapPipeline.filter_frames`);
2. the model backmaps a batch of frames (``samples`` structures per frame,
   frame-major);
3. optionally a :class:`~openmm_backmap.run.relax.Relaxer`, built once,
   relaxes every structure;
4. a :class:`~openmm_backmap.io.TrajectoryWriter` writes them with their time
   and step;
5. the reference-free quality checks of
   :func:`~openmm_backmap.evaluation.quality.frame_quality` (clashes, and
   bonds within 10 % of the force field's equilibrium lengths) are
   accumulated for the summary, before and, with relaxation, after
   minimisation.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np

from ..structure.closing import Closeable
from ..evaluation import frame_quality
from ..io import TrajectoryWriter, check_output_path
from ..mapping import ca_mapping
from ..model import load_model
from ..structure import InputError, atom_layout, build_topology
from ..structure.constants import FAILED_ENERGY_KJ_MOL, MAX_COORDINATE_NM
from .memory_budget import frames_per_call, structures_per_call
from .options import BackmapOptions
from .relax.systems import DEFAULT_FORCEFIELD, reference_bond_lengths

__all__ = ["BackmapPipeline", "BadFrameWarning", "RelaxationWarning", "batch_text", "format_summary"]


class BadFrameWarning(UserWarning):
    """A CG frame with NaN, infinite or exploded coordinates was skipped."""


class RelaxationWarning(UserWarning):
    """Relaxation failed (``RelaxResult.converged`` False, or an absurd energy); the structure is written as it
    came out of the minimiser."""


class BackmapPipeline(Closeable):
    """Backmap CG frames, optionally relax them, and write them: one object per output file.

    Parameters
    ----------
    output : str or path
        Output trajectory (``.dcd``, ``.xtc``, ``.pdb``, ``.h5``).
    n_particles : int
        CG particles per frame.
    options : BackmapOptions, optional
        Model, samples, seed, relaxation, output mode, memory budget
        (default: the defaults). Each :meth:`process` call is split into
        model calls of at most :attr:`batch_frames` frames (all their
        samples), or, when one frame's samples exceed the budget, of at most
        :attr:`batch_structures` samples of one frame. A call whose first
        structure is sample ``j`` of frame ``i`` gets the seed
        ``seed + 7919 * i + 104729 * j``. The output therefore depends on the
        seed, the samples, the frames per :meth:`process` call and the
        budget (through :attr:`batch_frames`), not on timing, threads or
        free memory; a budget that allows the whole call changes nothing.
    sequence : list of str, optional
        Residue names of the CG beads (required by transferable C-alpha
        models; checked against per-system models).
    segment_start : array of bool, optional
        Chain starts and breaks (transferable models; per-system models use their own).
    chain_ids, residue_numbers : optional
        Chain identifier and number of every residue, for the output topology.
    atomic : bool
        Write a new output under its partial name and rename it on
        :meth:`close`; :meth:`abort` removes it (``convert``). The reporter
        writes in place, like OpenMM's reporters.

    Attributes
    ----------
    model : Backmapper
    seed : int
        The base seed used (drawn at random when ``options.seed`` is None).
    relaxer : Relaxer or None
        Built on the first frame with ``options.minimize``.
    batch_structures : int
        Structures (frames times samples) in one model call at most, from
        ``options.max_memory_mb`` and the residue count
        (:func:`~openmm_backmap.run.memory_budget.structures_per_call`).
    batch_frames : int
        CG frames in one model call at most
        (:func:`~openmm_backmap.run.memory_budget.frames_per_call`).

    Examples
    --------
    >>> opts = BackmapOptions(model='models/ca2aa.pt', seed=1)  # doctest: +SKIP
    >>> pipe = BackmapPipeline('out.dcd', 20, opts, sequence=seq)  # doctest: +SKIP
    >>> pipe.process(ca_xyz_nm, time_ps=t)  # doctest: +SKIP
    >>> pipe.close(); pipe.summary()['frames_written']  # doctest: +SKIP
    """

    def __init__(self, output, n_particles, options=None, *, sequence=None, segment_start=None, chain_ids=None,
                 residue_numbers=None, atomic=False):
        self.options = BackmapOptions() if options is None else options
        opts = self.options
        self.output = os.fspath(output)
        check_output_path(self.output, append=opts.append, force=opts.force)
        self.model = load_model(opts.model, device=opts.device)
        if self.model.output_level != "aa":
            raise InputError(f"{self.model.path} outputs {self.model.output_level!r} positions, not atoms; compose it "
                             "with a C-alpha -> atoms model first (openmm-backmap export <this model> "
                             "models/ca2aa.pt -o <model>.pt), or call load_model(...).backmap() for the C-alpha trace")
        self.n_particles = int(n_particles)
        per_system = not self.model.transferable
        self.sequence, self.segment_start = self.model.resolve_sequence(
            sequence, None if per_system else segment_start, self.n_particles)
        n_res = len(self.sequence)
        if chain_ids is None or len(chain_ids) != n_res:
            chain_ids = None
        if residue_numbers is None or len(residue_numbers) != n_res:
            residue_numbers = None
        self.topology = build_topology(self.sequence, self.segment_start, chain_ids, residue_numbers)
        # before the writer: a budget too small for one structure must not leave an output file behind
        self.batch_structures = structures_per_call(n_res, opts.max_memory_mb)
        self.batch_frames = frames_per_call(n_res, opts.samples, opts.max_memory_mb)
        self.seed = int(np.random.default_rng().integers(0, 2**31 - 1)) if opts.seed is None else opts.seed
        self.relaxer = None
        self.writer = None
        self._atomic = bool(atomic)
        if not opts.keep_hydrogens:
            self.writer = TrajectoryWriter(self.output, self.topology, append=opts.append, force=opts.force,
                                           atomic=self._atomic)
        self._bond_lengths = None
        self.frames_in = 0
        self.frames_skipped = 0
        self.skipped_frames = []
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
            if self.options.on_bad_frame == "raise":
                raise InputError(msg + "; use on_bad_frame='skip' (--on-bad-frame skip) to skip them")
            warnings.warn(msg + "; skipped, so later output frames come earlier than their input frames (the "
                          "summary lists the skipped input frames)", BadFrameWarning, stacklevel=2)
            self.frames_skipped += len(bad)
            self.skipped_frames += [int(index[b]) if index is not None else int(b) for b in bad]
        return good

    def _ensure_relaxer(self, xyz0):
        # imported here, not at the top: tests replace Relaxer in its module
        from .relax.relaxer import Relaxer

        if self.relaxer is None:
            t0 = time.perf_counter()
            opts = dict(self.options.relax_options)
            opts.setdefault("segment_start", self.segment_start)
            if opts.get("restraint") == "cg" and opts.get("mapping") is None:
                opts["mapping"] = self.cg_mapping()
            self.relaxer = Relaxer(self.topology, template_xyz=xyz0, **opts)
            self.seconds["relax_build"] += time.perf_counter() - t0
        if self.writer is None:
            self.writer = TrajectoryWriter(self.output, self.relaxer.topology_h, append=self.options.append,
                                           force=self.options.force, atomic=self._atomic)

    def _record_quality(self, when, xyz):
        """Clash and bond checks of heavy-atom frames, kept for the summary under ``'..._before'/'..._after'``."""
        t0 = time.perf_counter()
        if self._bond_lengths is None:
            finite = np.flatnonzero(np.isfinite(xyz).all(axis=(1, 2)))
            if len(finite):  # the System is built on a frame (hydrogens are added to it)
                forcefield = self.options.relax_options.get("forcefield", DEFAULT_FORCEFIELD)
                try:
                    self._bond_lengths = reference_bond_lengths(self.sequence, self.segment_start, xyz[finite[0]],
                                                                forcefield)
                except ValueError as err:  # no template, e.g. for a one-residue segment (a lone amino acid)
                    warnings.warn(f"bond check skipped (bond_ok is not reported): the force field has no "
                                  f"template for this topology ({str(err).splitlines()[0][:160]})", UserWarning,
                                  stacklevel=2)
                    n_bonds = len(atom_layout(self.sequence).bonds(self.segment_start))
                    self._bond_lengths = np.full(n_bonds, np.nan)
        clash, bond_ok = frame_quality(xyz, self.sequence, self.segment_start, self._bond_lengths)
        self._stats[f"clash_{when}"] += clash.tolist()
        self._stats[f"bond_ok_{when}"] += bond_ok.tolist()
        self.seconds["quality"] += time.perf_counter() - t0

    def cg_mapping(self):
        """Mapping from the output heavy atoms to the CG beads (for ``restraint='cg'`` relaxation)."""
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
        opts = self.options
        t0 = time.perf_counter()
        out = self._backmap(x)
        self.seconds["backmap"] += time.perf_counter() - t0
        if opts.minimize:
            self._ensure_relaxer(out[0])  # before the checks: its System gives them the bond lengths
        if opts.quality:
            self._record_quality("before", out)
        frames = out
        if opts.minimize:
            frames = self._relax(out, x)
        t4 = time.perf_counter()
        rep = opts.samples
        t = None if time_ps is None else np.repeat(np.asarray(time_ps, dtype=np.float64).reshape(-1), rep)
        s = None if step is None else np.repeat(np.asarray(step, dtype=np.int64).reshape(-1), rep)
        self.writer.write(frames, time_ps=t, step=s)
        self.seconds["write"] += time.perf_counter() - t4
        self.frames_in += n
        self.frames_written += len(frames)
        return len(frames)

    def _backmap(self, x):
        """Heavy atoms of the frames ``x``, in model calls that fit the memory budget (see the class docstring)."""
        samples = self.options.samples
        # (first frame, frames, first sample, samples) of each model call
        if self.batch_structures >= samples:
            calls = [(i, min(self.batch_frames, len(x) - i), 0, samples) for i in range(0, len(x), self.batch_frames)]
        else:
            calls = [(i, 1, j, min(self.batch_structures, samples - j))
                     for i in range(len(x)) for j in range(0, samples, self.batch_structures)]
        out = []
        for i, n, j, k in calls:
            seed = (self.seed + 7919 * (self.frames_in + i) + 104729 * j) % (2**31 - 1)
            out.append(self.model.backmap(x[i:i + n], self.sequence, self.segment_start, samples=k, seed=seed,
                                          deterministic=self.options.deterministic).xyz)
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _relax(self, out, cg_xyz):
        """Relax backmapped frames; warn about those that fail. Returns the frames to write."""
        opts = self.options
        t0 = time.perf_counter()
        relaxed, full = [], []
        cg_restraint = self.relaxer.restraint == "cg"
        for j, frame in enumerate(out):
            res = self.relaxer.relax(frame, cg_xyz=cg_xyz[j // opts.samples] if cg_restraint else None,
                                     keep_hydrogens=opts.keep_hydrogens)
            relaxed.append(res.xyz)
            if opts.keep_hydrogens:
                full.append(res.xyz_h)
            self._stats["energy_before"].append(res.energy_before)
            self._stats["energy_after"].append(res.energy_after)
            if not res.converged or not np.isfinite(res.energy_after) or res.energy_after > FAILED_ENERGY_KJ_MOL:
                self.relax_failures += 1
                why = res.message or (f"energy {res.energy_before:.3g} -> {res.energy_after:.3g} kJ/mol, clash "
                                      f"{res.clash_before:.1f} -> {res.clash_after:.1f} %")
                warnings.warn(f"relaxation of structure {self.frames_written + j} failed: {why}",
                              RelaxationWarning, stacklevel=3)
        self.seconds["relax"] += time.perf_counter() - t0
        relaxed = np.stack(relaxed)
        if opts.quality:
            self._record_quality("after", relaxed)
        return np.stack(full) if opts.keep_hydrogens else relaxed

    # ------------------------------------------------------------------ results
    def summary(self) -> dict:
        """Counts, timings and the mean quality checks (see the module docstring).

        Returns
        -------
        dict
            ``output``, ``topology_file``, ``model``, ``seed``, ``samples``,
            ``frames_in``, ``frames_skipped``, ``skipped_frames`` (their input
            indices), ``frames_written``, ``max_memory_mb``, ``batch_frames`` and ``batch_structures`` (the
            largest model call the budget allows, see the class docstring),
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
            "samples": self.options.samples,
            "max_memory_mb": self.options.max_memory_mb,
            "batch_frames": self.batch_frames,
            "batch_structures": min(self.batch_structures, self.batch_frames * self.options.samples),
            "frames_in": self.frames_in,
            "frames_skipped": self.frames_skipped,
            "skipped_frames": list(self.skipped_frames),
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

    def abort(self):
        """Close after a failure: see :meth:`TrajectoryWriter.abort <openmm_backmap.io.TrajectoryWriter.abort>`
        (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.writer is not None:
            self.writer.abort()



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
    lines.append(batch_text(s))
    if s["frames_skipped"]:
        shown = ", ".join(str(i) for i in s.get("skipped_frames", [])[:10])
        more = " ..." if len(s.get("skipped_frames", [])) > 10 else ""
        lines.append(f"skipped {s['frames_skipped']} bad CG frame(s) (input frames {shown}{more}); later output "
                     "frames are shifted by the frames skipped before them")
    if s.get("relax_failures"):
        lines.append(f"relaxation failed for {s['relax_failures']} structure(s) (written as the minimiser left "
                     "them)")
    c, b = s["clash_percent"], s["bond_ok_percent"]
    if s["energy_kj_mol"]["after"] is not None:
        lines.append(f"clash (residues, < 1.2 Å): {f(c['before'])} % -> {f(c['after'])} % after relaxation; "
                     f"bonds within 10 % of the force field's length: {f(b['before'])} % -> {f(b['after'])} %; "
                     f"relaxation {f(s['relax_seconds_per_frame'], 2)} s/frame")
    elif c["before"] is not None:
        lines.append(f"clash (residues, < 1.2 Å): {f(c['before'])} %; bonds within 10 % of the force field's length: "
                     f"{f(b['before'])} % (no relaxation)")
    where = s["output"] + (f" (topology {s['topology_file']})" if s.get("topology_file") else "")
    lines.append(f"wrote {where}")
    return "\n".join(lines)


def batch_text(summary: dict) -> str:
    """The model batch and memory budget of a :meth:`BackmapPipeline.summary` (``chunk``: the frames per
    :meth:`~BackmapPipeline.process` call, where the front end caps them), for the progress bar and the summary.

    Examples
    --------
    >>> batch_text({'chunk': 12, 'batch_frames': 12, 'batch_structures': 24, 'samples': 2, 'max_memory_mb': 2048.0})
    'chunk=12 frames x 2 samples (memory budget 2048 MB)'
    >>> batch_text({'batch_frames': 40, 'batch_structures': 40, 'samples': 1, 'max_memory_mb': 512.0})
    'chunk=40 frames (memory budget 512 MB)'
    >>> batch_text({'batch_frames': 1, 'batch_structures': 3, 'samples': 8, 'max_memory_mb': 1024.0})
    'chunk=3 of the 8 samples of 1 frame (memory budget 1024 MB)'
    """
    s = summary
    budget = f"(memory budget {s['max_memory_mb']:g} MB)"
    if s["batch_structures"] < s["samples"]:
        return f"chunk={s['batch_structures']} of the {s['samples']} samples of 1 frame {budget}"
    frames = min(s.get("chunk") or s["batch_frames"], s["batch_frames"])
    samples = f" x {s['samples']} samples" if s["samples"] > 1 else ""
    return f"chunk={frames} frames{samples} {budget}"
