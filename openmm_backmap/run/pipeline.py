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
5. the reference-free quality checks of :mod:`.output_checks` (clashes,
   bonds within 10 % of the force field's equilibrium lengths, D residues and
   cis peptide bonds before a residue other than proline) are accumulated
   for the summary, before and, with relaxation, after minimisation, and
   warned about.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..structure.closing import Closeable
from ..io import TrajectoryWriter, check_output_path
from ..mapping import scheme_mapping
from ..model import load_model
from ..structure import InputError, build_topology
from ..structure.constants import BROKEN_OUTPUT_BOND_OK_PERCENT, FAILED_ENERGY_KJ_MOL, MAX_COORDINATE_NM
from .memory_budget import frames_per_call, structures_per_call
from .cg_chains import BreakMonitor
from .options import BackmapOptions
from .output_checks import STAT_KEYS, OutputChecks, OutputQualityWarning, StereochemistryWarning
from .relax.systems import DEFAULT_FORCEFIELD

__all__ = ["BackmapPipeline", "BadFrameWarning", "BrokenOutputError", "ChunkResult", "OutputQualityWarning",
           "RelaxationWarning", "StereochemistryWarning", "good_frames"]


class BadFrameWarning(UserWarning):
    """A CG frame with NaN, infinite or exploded coordinates was skipped."""


class BrokenOutputError(InputError):
    """Every structure of a run failed the reference-free bond check badly; the output is removed (``convert``)."""


class RelaxationWarning(UserWarning):
    """Relaxation failed (``RelaxResult.converged`` False, or an absurd energy); the structure is written as it
    came out of the minimiser."""


@dataclass
class ChunkResult:
    """One chunk backmapped (and relaxed) but not yet written: what :meth:`BackmapPipeline.compute` hands to
    :meth:`BackmapPipeline.write`, possibly from another process (a Dask worker).

    Attributes
    ----------
    frames : ndarray, (F * samples, A, 3), nm
        The structures to write, frame-major.
    n_cg : int
        CG frames they came from.
    topology : openmm.app.Topology or None
        The all-atom topology of ``frames`` when hydrogens are kept, else None (the pipeline's heavy-atom topology).
    template : ndarray or None
        With relaxation: the heavy-atom structure the relaxer was built on.
    relax_failures : int
    seconds : dict
        Seconds per stage spent on this chunk.
    stats : dict of list
        The per-structure quality checks and energies for the summary.

    Examples
    --------
    >>> res = pipe.compute(cg_xyz_nm)  # doctest: +SKIP
    >>> pipe.write(res, time_ps=t)  # doctest: +SKIP
    """

    frames: np.ndarray
    n_cg: int
    topology: object = None
    template: object = None
    relax_failures: int = 0
    seconds: dict = None
    stats: dict = None


class BackmapPipeline(Closeable):
    """Backmap CG frames, optionally relax them, and write them: one object per output file.

    Parameters
    ----------
    output : str, path or None
        Output trajectory (``.dcd``, ``.xtc``, ``.pdb``, ``.h5``); None for a
        pipeline that only computes chunks (:meth:`compute`) for another one
        to write (a Dask worker's, :mod:`~openmm_backmap.run.distributed`).
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
    chain_breaks : ChainBreaks, optional
        How ``segment_start`` was decided
        (:func:`~openmm_backmap.run.cg_chains.find_chain_breaks`): the summary
        counts its segments and breaks by evidence, and
        :meth:`filter_frames` reports frames that disagree with it
        (:class:`~openmm_backmap.run.cg_chains.BreakMonitor`).
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
    on_progress : callable or None
        Called as ``on_progress(frames)`` after each model call and each
        relaxed structure (a whole batch for ``relax_method='fast'``), with
        the CG frames' worth of work it finished (a float: with relaxation,
        backmapping is half of it and relaxing the other half); the calls of
        one :meth:`compute` add up to its frames. ``convert`` moves its
        progress bar with it.

    Examples
    --------
    >>> opts = BackmapOptions(model='models/ca2aa.pt', seed=1)  # doctest: +SKIP
    >>> pipe = BackmapPipeline('out.dcd', 20, opts, sequence=seq)  # doctest: +SKIP
    >>> pipe.process(ca_xyz_nm, time_ps=t)  # doctest: +SKIP
    >>> pipe.close(); pipe.summary()['frames_written']  # doctest: +SKIP
    """

    def __init__(self, output, n_particles, options=None, *, sequence=None, segment_start=None, chain_ids=None,
                 residue_numbers=None, chain_breaks=None, atomic=False):
        self.options = BackmapOptions() if options is None else options
        opts = self.options
        self.output = None if output is None else os.fspath(output)
        if self.output is not None:
            check_output_path(self.output, append=opts.append, force=opts.force)
        self.model = load_model(opts.model, device=opts.device)
        if self.model.output_level != "aa":
            rest = "models/ca2aa.pt" if self.model.output_level == "ca" else \
                f"<{self.model.output_level} -> ca step> models/ca2aa.pt"
            raise InputError(f"{self.model.path} outputs {self.model.output_level!r} positions, not atoms; compose it "
                             f"with the finer steps first (openmm-backmap export <this model> {rest} -o <model>.pt), "
                             "or call load_model(...).backmap() for those positions")
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
        if not opts.keep_hydrogens and self.output is not None:
            self.writer = TrajectoryWriter(self.output, self.topology, append=opts.append, force=opts.force,
                                           atomic=self._atomic)
        self.checks = OutputChecks(self.sequence, self.segment_start,
                                   opts.relax_options.get("forcefield", DEFAULT_FORCEFIELD))
        self.on_progress = None
        self.chain_breaks = chain_breaks
        self._monitor = None if chain_breaks is None else BreakMonitor(chain_breaks)
        self.frames_in = 0
        self.frames_skipped = 0
        self.skipped_frames = []
        self.frames_written = 0
        self.relax_failures = 0
        self.seconds = {"backmap": 0.0, "relax": 0.0, "relax_build": 0.0, "write": 0.0, "quality": 0.0}
        self._stats = {k: [] for k in STAT_KEYS}
        self._t0 = time.perf_counter()
        self._closed = False

    # ------------------------------------------------------------------ frames
    def filter_frames(self, cg_xyz, index=None):
        """Drop frames with NaN, infinite or exploded coordinates (:func:`good_frames`), and report them
        (:meth:`report_bad_frames`); report good frames whose bead distances disagree with the chain breaks
        (:meth:`check_breaks`).

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
        good = self.report_bad_frames(good_frames(cg_xyz), index)
        self.check_breaks(np.asarray(cg_xyz)[good], None if index is None else np.asarray(index)[good])
        return good

    def check_breaks(self, cg_xyz, index=None):
        """Warn about good frames (molecules whole) whose distances disagree with the chain breaks decided at
        set-up, and count them for the summary; the breaks stay as they are."""
        if self._monitor is not None:
            self._monitor.check(cg_xyz, index)

    def report_bad_frames(self, good, index=None):
        """Warn about, count and list the frames ``good`` marks bad, or raise with ``on_bad_frame='raise'``.

        Returns
        -------
        ndarray of bool
            ``good``.
        """
        good = np.asarray(good, dtype=bool)
        if not good.all():
            bad = np.flatnonzero(~good)
            labels = [str(int(index[b])) if index is not None else str(int(b)) for b in bad[:5]]
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            msg = (f"CG frame(s) {', '.join(labels)}{more} have NaN, infinite or exploded coordinates "
                   "(the CG simulation blew up?)")
            if self.options.on_bad_frame == "raise":
                raise InputError(msg + "; use on_bad_frame='skip' (--on-bad-frame skip) to skip them")
            warnings.warn(msg + "; skipped, so later output frames come earlier than their input frames (the "
                          "summary lists the skipped input frames)", BadFrameWarning, stacklevel=3)
            self.frames_skipped += len(bad)
            self.skipped_frames += [int(index[b]) if index is not None else int(b) for b in bad]
        return good

    def _ensure_relaxer(self, xyz0):
        # imported here, not at the top: tests replace the relaxers in their modules
        from .relax import fast, relaxer

        if self.relaxer is None:
            t0 = time.perf_counter()
            opts = {k: v for k, v in self.options.relax_options.items() if k != "method"}
            opts.setdefault("segment_start", self.segment_start)
            if opts.get("restraint") == "cg" and opts.get("mapping") is None:
                opts["mapping"] = self.cg_mapping()
            cls = fast.FastRelaxer if self.options.relax_method == "fast" else relaxer.Relaxer
            self.relaxer = cls(self.topology, template_xyz=xyz0, **opts)
            return time.perf_counter() - t0
        return 0.0

    def cg_mapping(self):
        """Mapping from the output heavy atoms to the CG beads (for ``restraint='cg'`` relaxation)."""
        if self.model.transferable:
            return scheme_mapping(self.model.scheme, self.sequence)
        h = self.model.hierarchy
        if h is None:
            raise InputError("restraint='cg' needs the model's mappings, and this model has none; use "
                             "restraint='ca' or 'heavy'")
        m = h.composed(h.levels[-1])
        if m.n_beads != self.n_particles:
            raise InputError(f"the model's coarsest level has {m.n_beads} beads, the input {self.n_particles}")
        return m

    def process(self, cg_xyz, time_ps=None, step=None) -> int:
        """Backmap, relax and write CG frames (assumed good: see :meth:`filter_frames`): :meth:`write` of
        :meth:`compute`.

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
        return self.write(self.compute(cg_xyz), time_ps, step)

    def compute(self, cg_xyz, first_frame=None, template=None) -> ChunkResult:
        """Backmap, and optionally relax and check, good CG frames without writing them.

        Parameters
        ----------
        cg_xyz : array, (F, N, 3), nm
        first_frame : int, optional
            Index of the first of these frames among all good frames of the
            output (default: the frames processed so far); it sets the seeds
            (see the class docstring), so chunks computed elsewhere (Dask
            workers) sample exactly what :meth:`process` would.
        template : array, (A, 3), nm, optional
            Heavy atoms to build the relaxer on (default: the first structure
            of this chunk); pass the first chunk's :attr:`ChunkResult.template`
            to relax later chunks exactly as one pipeline would.

        Returns
        -------
        ChunkResult
        """
        x = np.asarray(cg_xyz, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (self.n_particles, 3):
            raise InputError(f"CG frames have shape {x.shape}; expected (frames, {self.n_particles}, 3) nm")
        opts = self.options
        first = self.frames_in if first_frame is None else int(first_frame)
        seconds = dict.fromkeys(self.seconds, 0.0)
        stats = {k: [] for k in STAT_KEYS}
        res = ChunkResult(np.zeros((0, 0, 3), np.float32), len(x), seconds=seconds, stats=stats)
        if len(x) == 0:
            return res
        t0 = time.perf_counter()
        out = self._backmap(x, first)
        seconds["backmap"] = time.perf_counter() - t0
        if opts.minimize:  # before the checks: its System gives them the bond lengths
            res.template = out[0] if template is None else np.asarray(template)
            seconds["relax_build"] = self._ensure_relaxer(res.template)
        if opts.quality:
            seconds["quality"] += self.checks.record("before", out, stats)
        res.frames = out
        if opts.minimize:
            res.frames = self._relax(out, x, first * opts.samples, res)
            if opts.keep_hydrogens:
                res.topology = self.relaxer.topology_h
        return res

    def write(self, result: ChunkResult, time_ps=None, step=None) -> int:
        """Write a :meth:`compute` result and add its counts, timings and checks to the summary.

        Parameters
        ----------
        result : ChunkResult
        time_ps : array, (F,), ps, optional
        step : array of int, (F,), optional

        Returns
        -------
        int
            Structures written.
        """
        if self._closed:
            raise InputError("the pipeline is closed")
        if result.n_cg == 0:
            return 0
        t0 = time.perf_counter()
        if self.writer is None:  # hydrogens kept: the topology is the relaxer's, known from the first chunk
            self.writer = TrajectoryWriter(self.output, result.topology, append=self.options.append,
                                           force=self.options.force, atomic=self._atomic)
        rep = self.options.samples
        t = None if time_ps is None else np.repeat(np.asarray(time_ps, dtype=np.float64).reshape(-1), rep)
        s = None if step is None else np.repeat(np.asarray(step, dtype=np.int64).reshape(-1), rep)
        self.writer.write(result.frames, time_ps=t, step=s)
        for k, v in result.seconds.items():
            self.seconds[k] += v
        self.seconds["write"] += time.perf_counter() - t0
        for k, v in result.stats.items():
            self._stats[k] += v
        self.relax_failures += result.relax_failures
        self.checks.check_written(result.stats, self.frames_written, self.options.minimize)
        self.frames_in += result.n_cg
        self.frames_written += len(result.frames)
        return len(result.frames)

    def _backmap(self, x, first):
        """Heavy atoms of the frames ``x`` (the first one good frame ``first`` of the output), in model calls that
        fit the memory budget (see the class docstring)."""
        samples = self.options.samples
        # (first frame, frames, first sample, samples) of each model call
        if self.batch_structures >= samples:
            calls = [(i, min(self.batch_frames, len(x) - i), 0, samples) for i in range(0, len(x), self.batch_frames)]
        else:
            calls = [(i, 1, j, min(self.batch_structures, samples - j))
                     for i in range(len(x)) for j in range(0, samples, self.batch_structures)]
        out = []
        share = 0.5 if self.options.minimize else 1.0  # with relaxation, backmapping is half of a chunk's progress
        for i, n, j, k in calls:
            seed = (self.seed + 7919 * (first + i) + 104729 * j) % (2**31 - 1)
            out.append(self.model.backmap(x[i:i + n], self.sequence, self.segment_start, samples=k, seed=seed,
                                          deterministic=self.options.deterministic).xyz)
            self._progress(share * n * k / samples)
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _progress(self, frames):
        """Tell :attr:`on_progress` (when set) that ``frames`` CG frames' worth of work is done."""
        if self.on_progress is not None:
            self.on_progress(frames)

    def _relax(self, out, cg_xyz, first_structure, res):
        """Relax backmapped frames (structure ``first_structure`` of the output onwards) into ``res``; warn about
        those that fail. Returns the frames to write."""
        opts = self.options
        t0 = time.perf_counter()
        relaxed, full = [], []
        cg_restraint = self.relaxer.restraint == "cg"
        if opts.relax_method == "fast":  # all structures of the chunk at once
            beads = np.repeat(cg_xyz, opts.samples, axis=0) if cg_restraint else None
            results = self.relaxer.relax_batch(out, cg_xyz=beads).unstack()
        else:
            results = (self.relaxer.relax(frame, cg_xyz=cg_xyz[j // opts.samples] if cg_restraint else None,
                                          keep_hydrogens=opts.keep_hydrogens) for j, frame in enumerate(out))
        per_structure = 0.5 / opts.samples  # relaxation: the other half of a chunk's progress
        for j, r in enumerate(results):
            if opts.relax_method != "fast":
                self._progress(per_structure)
            relaxed.append(r.xyz)
            if opts.keep_hydrogens:
                full.append(r.xyz_h)
            res.stats["energy_before"].append(r.energy_before)
            res.stats["energy_after"].append(r.energy_after)
            if not r.converged or not np.isfinite(r.energy_after) or r.energy_after > FAILED_ENERGY_KJ_MOL:
                res.relax_failures += 1
                why = r.message or (f"energy {r.energy_before:.3g} -> {r.energy_after:.3g} kJ/mol, clash "
                                    f"{r.clash_before:.1f} -> {r.clash_after:.1f} %")
                warnings.warn(f"relaxation of structure {first_structure + j} failed: {why}",
                              RelaxationWarning, stacklevel=4)
        if opts.relax_method == "fast":
            self._progress(per_structure * len(out))
        res.seconds["relax"] = time.perf_counter() - t0
        relaxed = np.stack(relaxed)
        if opts.quality:
            res.seconds["quality"] += self.checks.record("after", relaxed, res.stats)
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
            ``seconds`` (per stage, ``busy``: their sum, and ``total``:
            wall-clock since the pipeline was made), ``frames_per_second``
            (CG frames per second of ``busy`` time: backmapping, relaxing,
            checking and writing, not the simulation between reports),
            ``segments``, ``break_evidence``, ``breaks_from_geometry``,
            ``breaks_from_numbering``, ``doubtful_joins`` (see
            :class:`~openmm_backmap.run.cg_chains.ChainBreaks`) and
            ``break_changes`` (frames whose distances disagreed with them),
            ``relax_seconds_per_frame``, ``structures_broken``,
            ``structures_with_d_residues`` and ``structures_with_cis_peptides``
            (written structures that failed those checks of
            :mod:`.output_checks`), and ``clash_percent``, ``bond_ok_percent``,
            ``energy_kj_mol``, ``d_residues``, ``cis_peptides`` (per structure;
            cis: before a residue other than proline): each ``{'before', 'after'}``
            means (``after`` None without relaxation).
        """
        total = time.perf_counter() - self._t0
        busy = sum(self.seconds.values())

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
            "seconds": {**{k: round(v, 4) for k, v in self.seconds.items()}, "busy": round(busy, 4),
                        "total": round(total, 4)},
            "frames_per_second": self.frames_in / busy if busy > 0 else None,
            **(self.chain_breaks.summary() if self.chain_breaks is not None else
               {"segments": int(np.sum(self.segment_start)), "break_evidence": "model", "breaks_from_geometry": 0,
                "breaks_from_numbering": 0, "doubtful_joins": 0}),
            "break_changes": 0 if self._monitor is None else self._monitor.frames_changed,
            "relax_method": self.options.relax_method if self.options.minimize else None,
            "relax_seconds_per_frame": self.seconds["relax"] / n_relaxed if n_relaxed else None,
            "relax_failures": self.relax_failures,
            "structures_broken": self.structures_broken,
            "structures_with_d_residues": self.checks.structures_d,
            "structures_with_cis_peptides": self.checks.structures_cis,
            **{key: {"before": mean(f"{name}_before"), "after": mean(f"{name}_after")} for key, name in (
                ("clash_percent", "clash"), ("bond_ok_percent", "bond_ok"), ("energy_kj_mol", "energy"),
                ("d_residues", "d_residues"), ("cis_peptides", "cis_peptides"))},
        }

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def structures_broken(self) -> int:
        """Written structures that failed the bond check badly (see :class:`OutputQualityWarning`)."""
        return self.checks.structures_broken

    def close(self):
        """Close the output file (idempotent).

        Raises
        ------
        BrokenOutputError
            When every structure written failed the bond check badly (see :class:`OutputQualityWarning`): the
            output is aborted instead (removed when written atomically, as ``convert`` writes).
        """
        if self._closed:
            return
        if self.frames_written and self.structures_broken == self.frames_written:
            self.abort()
            raise BrokenOutputError(f"all {self.frames_written} structure(s) failed the bond check badly (under "
                                    f"{BROKEN_OUTPUT_BOND_OK_PERCENT:g} % of bonds within 10 % of their length): the "
                                    f"model {self.model.metadata.get('name') or self.model.path} does not fit these "
                                    "beads")
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



def good_frames(cg_xyz, box=None):
    """Which CG frames are usable: a frame is bad when a coordinate is not finite, exceeds
    :data:`MAX_COORDINATE_NM` in magnitude, or a bead lies farther than ``max(20 nm, 0.5 nm * beads)`` from the
    centroid; with ``box``, for raw periodic coordinates (before molecules are made whole), farther than that plus
    the box diagonal, which is as far as periodic images can separate beads.

    Parameters
    ----------
    cg_xyz : array, (F, N, 3), nm
    box : array, (F, 3, 3), nm, optional
        Periodic box vectors of each frame.

    Returns
    -------
    ndarray of bool, (F,)

    Examples
    --------
    >>> good_frames(np.array([[[0.0, 0.0, 0.0]], [[np.nan, 0.0, 0.0]]])).tolist()
    [True, False]
    >>> split = np.array([[[0.1, 0, 0], [59.9, 0, 0]], [[0.1, 0, 0], [559.9, 0, 0]]])  # split by a 60 nm box
    >>> good_frames(split).tolist(), good_frames(split, np.eye(3)[None].repeat(2, 0) * 60).tolist()
    ([False, False], [True, False])
    """
    x = np.asarray(cg_xyz, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    good = np.isfinite(x).all(axis=(1, 2))
    limit = np.full(len(x), max(20.0, 0.5 * x.shape[1]))
    if box is not None:
        limit = limit + np.linalg.norm(np.asarray(box, dtype=np.float64).reshape(-1, 3, 3).sum(1), axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        good &= (np.abs(np.where(np.isfinite(x), x, 0.0)) <= MAX_COORDINATE_NM).all(axis=(1, 2))
        extent = np.linalg.norm(x - x.mean(1, keepdims=True), axis=-1).max(1) if x.shape[1] else np.zeros(len(x))
    return good & ~(extent > limit)
