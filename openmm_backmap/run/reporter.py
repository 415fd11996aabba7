"""On-the-fly backmapping of a running OpenMM simulation.

:class:`BackmapReporter` is an OpenMM reporter (the ``describeNextReport`` /
``report`` protocol of OpenMM >= 8.2). It only collects the positions of the
CG particles, makes the molecule whole across periodic boundaries, batches
frames and hands them to a :class:`~openmm_backmap.run.pipeline.BackmapPipeline`
(backmap -> optional relaxation -> :class:`~openmm_backmap.io.TrajectoryWriter`),
either in the simulation's thread or in a background worker thread. It holds
no model logic: :func:`~openmm_backmap.run.conversion.convert_trajectory`
uses the same pipeline.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import queue
import sys
import threading
import warnings
import weakref

import numpy as np
import openmm.unit as unit

from ..structure.closing import Closeable
from ..io import check_output_path
from ..structure import InputError, make_whole
from ..structure.constants import DEFAULT_MAX_MEMORY_MB
from .cg_input import prepare_cg_input
from .options import resolve_options
from .pipeline import BackmapPipeline, good_frames

__all__ = ["BackmapReporter"]

_STOP = object()


def _close_at_exit(reporter_ref):
    """``atexit`` hook of a reporter the script never closed.

    It runs before the interpreter stops its daemon threads, so the worker
    still drains the queue (a worker frozen inside torch's C++ code aborts the
    process, exit status 134). It holds only a weak reference: a reporter that
    is collected earlier is closed by its finaliser instead.
    """
    reporter = reporter_ref()
    if reporter is None:
        return
    try:
        reporter.close()
    except Exception as err:  # noqa: BLE001 - the script's own exit status must stand
        warnings.warn(f"BackmapReporter: error while closing at exit: {err}", RuntimeWarning, stacklevel=1)


class _Worker:
    """Background thread feeding batches to the pipeline, in order. Holds no reference to the reporter."""

    def __init__(self, pipeline, maxsize):
        self.pipeline = pipeline
        self.queue = queue.Queue(maxsize=maxsize)
        self.error = None
        self.reported = False
        self._lock = threading.Lock()
        self._pending = 0  # CG frames queued or being backmapped
        self.thread = threading.Thread(target=self._run, name="BackmapReporter-worker", daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            item = self.queue.get()
            try:
                if item is _STOP:
                    return
                if self.error is None:
                    self.pipeline.process(*item)
            except BaseException as err:  # noqa: BLE001 - re-raised in the simulation's thread
                self.error = err
            finally:
                if item is not _STOP:
                    with self._lock:
                        self._pending -= len(item[0])
                self.queue.task_done()

    @property
    def pending_frames(self) -> int:
        """CG frames queued or being backmapped."""
        with self._lock:
            return self._pending

    def put(self, item, even_after_error=False):
        """Queue an item; blocks while the queue is full (never drops a frame).

        Returns False (and queues nothing) once the worker has failed or stopped.
        """
        while True:
            if (self.error is not None and not even_after_error) or not self.thread.is_alive():
                return False
            n = 0 if item is _STOP else len(item[0])
            with self._lock:  # counted before the worker can take it
                self._pending += n
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                with self._lock:
                    self._pending -= n
                continue

    def stop(self):
        self.put(_STOP, even_after_error=True)
        self.thread.join()


class BackmapReporter(Closeable):
    """Backmap the CG particles of a running simulation to all-atom frames and write them.

    Parameters
    ----------
    file : str or path
        Output trajectory: ``.dcd``, ``.xtc``, ``.pdb`` (multi-model) or
        ``.h5``; DCD and XTC get a topology PDB beside them.
    reportInterval : int
        Steps between reports.
    model : str, path or Backmapper, optional
        Model file or loaded model. Default: the shipped model of the beads'
        scheme (``scheme``, else found from the particles at the first
        report: :func:`~openmm_backmap.run.cg_input.prepare_cg_input`); one
        line on stderr says which (``verbose``).
    cgParticles : sequence of int, optional
        Indices of the CG particles, in bead order (default: all particles).
        Their number must match the model (one per residue for a C-alpha or
        centre-of-mass model, ``model.n_beads`` for a per-system model). For
        Martini beads the protein's beads are taken from them in the model's
        order, and water, ions and Go-model virtual sites are left out
        (:func:`~openmm_backmap.run.cg_input.martini_beads`).
    device : str, optional
        Torch device (default: CUDA if available).
    samples : int
        Structures drawn per CG frame.
    seed : int, optional
        Base seed for reproducible output (see :class:`~openmm_backmap.run.pipeline.BackmapPipeline`).
    minimize : bool
        Relax every structure with :class:`~openmm_backmap.run.relax.Relaxer` (built once).
    append : bool
        Append to an existing output file (atom count and format must match).
    enforcePeriodicBox : bool, optional
        Passed to OpenMM as the ``periodic`` flag of ``describeNextReport``
        (wrap molecule centres into the box); default False. Either way the
        reporter makes the CG molecule whole itself for periodic systems.
    batchSize : int
        CG frames collected before they are backmapped together, at most:
        capped at the frames whose model call fits ``maxMemory``.
    asynchronous : bool
        Backmap in a background thread while the simulation keeps stepping.
        The queue is bounded (the simulation waits when it is full, no frame
        is lost); an exception in the worker is raised at the next
        :meth:`report` or at :meth:`close`. Output is identical to the
        synchronous mode with the same seed and ``batchSize``.
    deterministic : bool
        Most likely structure instead of a sample.
    relaxOptions : dict, optional
        Keyword arguments of :class:`~openmm_backmap.run.relax.Relaxer` (e.g.
        ``{'restraint': 'ca', 'platform': 'CPU', 'max_iterations': 500}``).
    onBadFrame : {'skip', 'raise'}
        Frames with NaN, infinite or exploded coordinates are skipped with a
        :class:`~openmm_backmap.run.pipeline.BadFrameWarning`, or raise ValueError.
    keepHydrogens : bool
        With ``minimize``: write all atoms, hydrogens included.
    sequence : list of str, optional
        Residue names of the CG beads, when the simulation's topology does
        not name them as standard amino acids.
    scheme : str, optional
        What the CG beads are (``'ca'``, ``'com'``, ``'martini3'``,
        ``'martini2'``); default: found from their names and positions
        (:func:`~openmm_backmap.run.cg_input.check_scheme`). Without a model
        it picks the shipped model; beads of another scheme than a given
        model's raise ValueError at the first report.
    force : bool
        Overwrite an existing output file.
    queueSize : int
        Batches the asynchronous queue holds before the simulation waits.
    maxMemory : float
        Memory budget of one model call (MB; device memory on a GPU), as
        ``--max-memory`` of ``convert``: see
        :mod:`~openmm_backmap.run.memory_budget`. A system too large for
        the budget raises ValueError at the first report.
    options : BackmapOptions, optional
        All of ``model``, ``device``, ``samples``, ``seed``, ``minimize``,
        ``append``, ``deterministic``, ``relaxOptions``, ``onBadFrame``,
        ``keepHydrogens``, ``force`` and ``maxMemory`` at once (then leave those at their
        defaults).
    verbose : bool
        Print the line that says which shipped model was picked (stderr).

    Attributes
    ----------
    options : BackmapOptions
    pipeline : BackmapPipeline or None
        Created on the first report.

    Notes
    -----
    Everything expensive (loading the model, checking the particle count and
    sequence, opening the file, building the relaxer) happens on the first
    report, so errors in the set-up surface there. Call :meth:`close` (or use
    the reporter as a context manager) at the end to write the last partial
    batch and close the file. A reporter the script never closes is closed
    when it is garbage-collected or, at the latest, by an ``atexit`` hook
    when the interpreter exits (also after an uncaught exception), so queued
    frames are written and the worker thread is joined.

    Examples
    --------
    >>> from openmm_backmap.cgsystems import calpha_go_model
    >>> top, system, pos = calpha_go_model('villin.pdb')  # doctest: +SKIP
    >>> sim = app.Simulation(top, system, openmm.LangevinMiddleIntegrator(300, 1, 0.01))  # doctest: +SKIP
    >>> sim.context.setPositions(pos)  # doctest: +SKIP
    >>> with BackmapReporter('villin_aa.dcd', 1000, model='models/ca2aa.pt', minimize=True) as rep:  # doctest: +SKIP
    ...     sim.reporters.append(rep)
    ...     sim.step(10000)
    """

    def __init__(self, file, reportInterval, model=None, cgParticles=None, device=None, samples=1, seed=None,
                 minimize=False, append=False, enforcePeriodicBox=None, batchSize=1, asynchronous=False,
                 deterministic=False, relaxOptions=None, onBadFrame="skip", keepHydrogens=False, sequence=None,
                 force=False, queueSize=4, maxMemory=DEFAULT_MAX_MEMORY_MB, options=None, scheme=None,
                 verbose=True):
        self._closed = True  # until fully constructed, so __del__ is safe
        if int(reportInterval) < 1:
            raise InputError(f"reportInterval must be a positive integer, got {reportInterval}")
        if int(batchSize) < 1:
            raise InputError(f"batchSize must be a positive integer, got {batchSize}")
        self.options = resolve_options(
            options, model=model, device=device, samples=samples, seed=seed, deterministic=deterministic,
            minimize=minimize, relax_options=relaxOptions, keep_hydrogens=keepHydrogens, append=append, force=force,
            on_bad_frame=onBadFrame, max_memory_mb=maxMemory)
        self.file = check_output_path(file, append=self.options.append, force=self.options.force)
        self.reportInterval = int(reportInterval)
        self.cgParticles = None if cgParticles is None else np.asarray(list(cgParticles), dtype=np.int64)
        self.enforcePeriodicBox = enforcePeriodicBox
        self.batchSize = int(batchSize)
        self.asynchronous = bool(asynchronous)
        self.sequence = None if sequence is None else list(sequence)
        self.scheme = scheme
        self.verbose = bool(verbose)
        self.queueSize = max(1, int(queueSize))
        self.pipeline = None
        self._worker = None
        self._buffer = []
        self._bonds = None
        self._exit_hook = None
        self.frames_reported = 0
        self._closed = False

    # ------------------------------------------------------------------ OpenMM protocol
    def describeNextReport(self, simulation):
        """Steps until the next report and what it needs (OpenMM >= 8.2 dictionary form).

        Returns
        -------
        dict
            ``{'steps': int, 'periodic': bool, 'include': ['positions']}``.
        """
        steps = self.reportInterval - simulation.currentStep % self.reportInterval
        periodic = False if self.enforcePeriodicBox is None else bool(self.enforcePeriodicBox)
        return {"steps": steps, "periodic": periodic, "include": ["positions"]}

    def report(self, simulation, state):
        """Collect the CG positions of ``state`` and backmap them (now, or when the batch is full).

        Raises
        ------
        ValueError
            Set-up problems (particle count, sequence, output file) on the
            first report; a bad frame with ``onBadFrame='raise'``.
        Exception
            Whatever the background worker raised, re-raised here.
        """
        if self._closed:
            raise InputError(f"the BackmapReporter for {self.file} is closed")
        self._raise_worker_error()
        pos = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
        box = None
        if simulation.system.usesPeriodicBoundaryConditions():
            box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
        if self.pipeline is None:
            self._setup(simulation, pos, box)
        xyz = pos[self.cgParticles]
        # the bad-frame check sees the raw positions of a frame that no periodic image explains: wrapping it whole
        # first would hide a bead blown hundreds of nm away
        if box is not None and good_frames(xyz[None], box[None])[0]:
            xyz = make_whole(xyz, box, self._bonds)
        self.frames_reported += 1
        if not self.pipeline.filter_frames(xyz[None], index=[simulation.currentStep])[0]:
            return
        time_ps = float(state.getTime().value_in_unit(unit.picosecond))
        self._buffer.append((xyz.astype(np.float32), time_ps, int(simulation.currentStep)))
        if len(self._buffer) >= min(self.batchSize, self.pipeline.batch_frames):
            self._submit()

    # ------------------------------------------------------------------ internals
    def _setup(self, simulation, pos, box):
        n_total = len(pos)
        if self.cgParticles is None:
            self.cgParticles = np.arange(n_total, dtype=np.int64)
        p = self.cgParticles
        if len(p) == 0 or p.min() < 0 or p.max() >= n_total:
            raise InputError(f"cgParticles must be indices in 0..{n_total - 1} (the system has {n_total} particles)")
        if len(np.unique(p)) != len(p):
            raise InputError("cgParticles contains duplicate indices")
        cg = prepare_cg_input(simulation.topology, pos, box, p, model=self.options.model, scheme=self.scheme,
                              sequence=self.sequence, device=self.options.device, system=simulation.system,
                              fix_count=": select them with cgParticles=[...]",
                              fix_names="; pass sequence=[...] (three-letter names, one per particle) or select the "
                                        "protein's particles with cgParticles=[...]")
        if cg.note and self.verbose:
            print(f"BackmapReporter: {cg.note}", file=sys.stderr)
        self.cgParticles, self._bonds = cg.particles, cg.bonds
        self.pipeline = BackmapPipeline(self.file, len(cg.particles), dataclasses.replace(self.options, model=cg.model),
                                        **cg.pipeline_kwargs())
        # a partial batch and an open file need closing even if the script never calls close()
        self._exit_hook = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._exit_hook)
        if self.asynchronous:
            self._worker = _Worker(self.pipeline, self.queueSize)

    def _submit(self):
        if not self._buffer:
            return
        xyz = np.stack([b[0] for b in self._buffer])
        time_ps = np.array([b[1] for b in self._buffer])
        step = np.array([b[2] for b in self._buffer], dtype=np.int64)
        self._buffer = []
        if self._worker is None:
            self.pipeline.process(xyz, time_ps, step)
        elif not self._worker.put((xyz, time_ps, step)):
            self._raise_worker_error()
            raise RuntimeError("the backmapping worker thread stopped unexpectedly")

    def _raise_worker_error(self):
        w = self._worker
        if w is None or w.error is None:
            return
        if w.reported:
            raise RuntimeError(f"the backmapping worker failed earlier ({w.error!r}); no more frames are written")
        w.reported = True
        raise w.error

    # ------------------------------------------------------------------ results
    def summary(self) -> dict:
        """The pipeline's summary (frames, timings, clash and bond checks) and the effective ``chunk`` (frames
        per model call: ``batchSize``, capped by ``maxMemory``); empty before the first report."""
        if self.pipeline is None:
            return {}
        return {**self.pipeline.summary(), "chunk": min(self.batchSize, self.pipeline.batch_frames)}

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self):
        """Backmap the last partial batch, wait for the worker, and close the file.

        Raises
        ------
        Exception
            An exception raised in the background worker (after the file is closed).
        """
        if self._closed:
            return
        self._closed = True
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)  # partial objects compare by identity: only this reporter's hook
            self._exit_hook = None
        error = None
        try:
            if self.pipeline is not None and (self._worker is None or self._worker.error is None):
                self._submit()
        except BaseException as err:  # noqa: BLE001 - re-raised after the file is closed
            error = err
        finally:
            w = self._worker
            if w is not None:
                n = w.pending_frames
                if n and self.verbose and w.error is None:
                    print(f"BackmapReporter: backmapping {n} queued frame(s) before closing {self.file} ...",
                          file=sys.stderr, flush=True)
                w.stop()
                if error is None and w.error is not None and not w.reported:
                    w.reported = True
                    error = w.error
            if self.pipeline is not None:
                self.pipeline.close()
        if error is not None:
            raise error

    def __repr__(self):
        return (f"BackmapReporter({self.file!r}, reportInterval={self.reportInterval}, "
                f"samples={self.options.samples}, asynchronous={self.asynchronous}, "
                f"minimize={self.options.minimize}, frames={self.frames_reported})")
