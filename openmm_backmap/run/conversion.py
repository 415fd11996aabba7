"""Post-hoc backmapping of CG trajectories: ``openmm-backmap convert``.

:func:`convert_trajectory` reads a CG structure or trajectory in chunks
(memory bounded by a budget, :mod:`~openmm_backmap.run.memory_budget`), and sends the frames through the same
:class:`~openmm_backmap.run.pipeline.BackmapPipeline` (model -> optional
:class:`~openmm_backmap.run.relax.Relaxer` -> :class:`~openmm_backmap.io.TrajectoryWriter`)
that :class:`~openmm_backmap.run.reporter.BackmapReporter` uses during a simulation.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import warnings

import numpy as np
from tqdm import tqdm

from ..io import (check_input_file, check_output_path, check_writable, dcd_frames_silenced, dcd_plugin_silenced,
                  topology_path_for)
from ..model import load_model
from ..structure import InputError, MissingFileError, canonical_residue_name, make_whole
from ..structure.closing import sigterm_as_interrupt
from ..structure.constants import DEFAULT_MAX_MEMORY_MB
from ..structure.errors import option_name
from .cg_input import prepare_cg_input
from .memory_budget import frames_per_call
from .options import resolve_options
from .pipeline import BackmapPipeline, good_frames
from .summary_text import batch_text, format_summary
from .relax.handoff import export_paths, export_system

__all__ = ["convert_trajectory", "ConversionPlan"]

_PDB_EXTENSIONS = (".pdb", ".pdb.gz", ".ent", ".ent.gz")
#: Inputs that carry their own topology besides PDB: HDF5 and GROMACS .gro files.
_SELF_DESCRIBING = (".h5", ".gro")
#: Frames of the input read first to find the beads' scheme (the statistics cover all of them).
_SCHEME_FRAMES = 10
#: Unit cells smaller than this (nm) are placeholders (e.g. the 1 nm box of box-less XTC files), not periodic boxes.
MIN_BOX_NM = 2.0


def _is_pdb(path):
    return path.lower().endswith(_PDB_EXTENSIONS)


def _load_topology(input, topology):
    import mdtraj as md

    if topology is not None:
        topology = os.fspath(topology)
        if not os.path.exists(topology):
            raise MissingFileError(f"topology file {topology!r} does not exist")
        try:
            return md.load_topology(topology), topology
        except Exception as err:  # noqa: BLE001 - mdtraj raises many kinds
            raise InputError(f"cannot read the CG topology {topology!r}: {str(err).splitlines()[0]}") from None
    if _is_pdb(input) or input.lower().endswith(_SELF_DESCRIBING):
        return None, input
    raise InputError(f"{input!r} is a trajectory without a topology; pass the CG topology with -t/--topology "
                     "(a PDB or .gro of the CG particles, e.g. the one martinize2 or 'openmm-backmap coarsen' "
                     "writes)")


def _not_a_c_alpha(atom):
    """Whether an atom named CA is a calcium ion or part of another hetero group rather than a C-alpha: its residue
    is no amino acid (nor a modified one), and it is not carbon, is alone in a residue named CA, or its residue has
    no backbone N and C."""
    res = atom.residue
    if canonical_residue_name(res.name) is not None:
        return False
    names = {a.name for a in res.atoms}
    return (atom.element is not None and atom.element.symbol not in ("C", "VS")) or res.name.strip().upper() == "CA" \
        or (len(names) > 1 and not {"N", "C"} <= names)


def _select_particles(top, transferable):
    """CG particle indices in ``top`` for a model: all atoms, or the C-alphas of an all-atom topology (a Martini
    topology keeps all: :func:`~openmm_backmap.run.cg_input.martini_beads` picks its beads); and the notes to warn
    with. Atoms named CA that are no C-alphas (calcium ions, hetero groups) are left out."""
    n = top.n_atoms
    if not transferable or any(a.name == "BB" for a in top.atoms):
        return np.arange(n), []
    named = [a for a in top.atoms if a.name == "CA"]
    ca = [a.index for a in named if not _not_a_c_alpha(a)]
    others = [a for a in named if _not_a_c_alpha(a)]
    notes = []
    if others and ca:
        kinds = ", ".join(sorted({a.residue.name for a in others}))
        notes.append(f"left out {len(others)} atom(s) named CA in residues {kinds}: hetero atoms (ions or ligands), "
                     "not C-alpha atoms")
    if not ca or (len(ca) == n - len(others) and not others):
        return np.arange(n), []
    if len(ca) != top.n_residues and len({top.atom(i).residue.index for i in ca}) != len(ca):
        return np.arange(n), []
    if len(ca) < n - len(others):
        notes.append(f"the input has {n} particles in {top.n_residues} residues; using its {len(ca)} C-alpha atoms "
                     "as the CG beads")
    return np.asarray(ca, dtype=np.int64), notes


def _read_frames(input, top, atom_indices, stride, chunk, first_chunk=0):
    """Yield (xyz nm (F, N, 3), time ps (F,), unit cell vectors (F, 3, 3) or None), chunk by chunk, from chunk
    ``first_chunk`` on (a Dask worker reads one chunk of a seekable file this way)."""
    import mdtraj as md

    if _is_pdb(input):
        traj = md.load(input, stride=stride, atom_indices=atom_indices, standard_names=False)
        for i in range(first_chunk * chunk, traj.n_frames, chunk):
            t = traj[i:i + chunk]
            yield t.xyz, None, t.unitcell_vectors
        return
    kw = {} if top is None else {"top": top}
    done = first_chunk * chunk
    try:
        for t in dcd_frames_silenced(input, md.iterload(input, chunk=chunk, stride=stride, atom_indices=atom_indices,
                                                        skip=first_chunk * chunk * stride, **kw)):
            time = np.asarray(t.time, dtype=np.float64) if t.time is not None else None
            done += t.n_frames
            yield t.xyz, time, t.unitcell_vectors
    except (ValueError, OSError, IndexError) as err:
        raise InputError(f"cannot read {input!r} with the CG topology ({str(err).splitlines()[0]}); pass the "
                         "topology the trajectory was written with") from None
    except RuntimeError as err:  # mdtraj's compiled readers report damaged frame data this way
        raise InputError(f"{input}: the data after frame {done * stride} cannot be decoded "
                         f"({str(err).splitlines()[0]}); the file is damaged there (frames before it read "
                         "fine: cut the file before the damage to convert them)") from None


def _first_frames(input, top):
    """(topology, xyz nm (F, N, 3) of the first frames, their unit cell vectors or None) of the input; ``top`` is
    the CG topology given with it, None for a file that carries its own."""
    import mdtraj as md

    if top is None:
        try:
            top = (md.load_pdb(input, frame=0, standard_names=False).topology if _is_pdb(input)
                   else md.load_topology(input))
        except Exception as err:  # noqa: BLE001 - mdtraj raises many kinds
            raise InputError(f"cannot read {input!r}: {(str(err).splitlines() or [repr(err)])[0]}") from None
        read_top = None
    else:
        read_top = top
    xyz, _, box = next(_read_frames(input, read_top, None, 1, _SCHEME_FRAMES), (None, None, None))
    if xyz is None or not len(xyz):
        raise InputError(f"{input!r} has no frames")
    return top, xyz, box


def _is_periodic(box):
    return box is not None and np.isfinite(box).all() and (np.diagonal(box, axis1=1, axis2=2) >= MIN_BOX_NM).all()


def convert_trajectory(input, output, model=None, topology=None, samples=1, seed=None, device=None, stride=1,
                       chunk=100, minimize=False, keep_hydrogens=False, deterministic=False, force=False,
                       on_bad_frame="skip", progress=True, append=False, relax_options=None,
                       max_memory_mb=DEFAULT_MAX_MEMORY_MB, options=None, client=None, workers=None,
                       scheduler=None, scheme=None, export=None, security=None) -> dict:
    """Backmap a CG structure or trajectory file to an all-atom trajectory.

    Parameters
    ----------
    input : str or path
        A C-alpha PDB (one or many models), a bead PDB as written by
        ``openmm-backmap coarsen``, or any trajectory mdtraj reads (DCD, XTC,
        HDF5 ...) with ``topology``. Coordinates in the file's units (read as
        nm by mdtraj).
    output : str or path
        ``.dcd``, ``.xtc``, ``.pdb`` (multi-model) or ``.h5``; DCD and XTC get
        a topology PDB beside them. It is written as ``<stem>.partial.<ext>``
        and renamed when complete; a failure removes it, and a run killed
        hard leaves it readable up to its last complete frame (the next run
        replaces it). Appending writes in place.
    model : str, path or Backmapper, optional
        Default: the shipped model of the beads' scheme (``scheme``, else
        found from the input: :func:`~openmm_backmap.run.cg_input.prepare_cg_input`);
        with ``progress``, one line on stderr says which.
    topology : str or path, optional
        CG topology (PDB or .gro) for trajectories. For a transferable model
        its residue names give the sequence; for a per-system model its
        particle count (and, at C-alpha level, its sequence) must match the
        model. An all-atom topology works with a C-alpha model: its C-alphas
        are used. A Martini topology (martinize2's PDB, a GROMACS .gro) gives
        the protein's beads; other particles (water, ions, Go-model virtual
        sites) are left out
        (:func:`~openmm_backmap.run.cg_input.martini_beads`).
    samples : int
        Structures per CG frame.
    seed : int, optional
        Seed for reproducible output (random if None; reported in the summary).
    device : str, optional
        Torch device (default: CUDA if available).
    stride : int
        Use every ``stride``-th frame.
    chunk : int
        Frames read and backmapped at a time, at most: capped at the frames
        whose model call fits ``max_memory_mb``. The output depends on the
        seed, ``samples`` and this effective chunk (``summary['chunk']``).
    minimize : bool
        Relax every structure with :class:`~openmm_backmap.run.relax.Relaxer`.
    keep_hydrogens : bool
        With ``minimize``: write hydrogens too.
    deterministic : bool
        Most likely structure instead of samples.
    force, append : bool
        Overwrite, or append to, an existing output.
    on_bad_frame : {'skip', 'raise'}
        NaN or exploded CG frames are skipped with a warning, or raise.
    progress : bool
        Show a progress bar and print the summary.
    relax_options : dict, optional
        Keyword arguments of :class:`~openmm_backmap.run.relax.Relaxer`.
    max_memory_mb : float
        Memory budget of one model call (MB); see
        :mod:`~openmm_backmap.run.memory_budget`.
    options : BackmapOptions, optional
        ``model``, ``samples``, ``seed``, ``device``, ``minimize``,
        ``keep_hydrogens``, ``deterministic``, ``force``, ``append``,
        ``on_bad_frame``, ``relax_options`` and ``max_memory_mb`` at once (then leave those at
        their defaults).
    client : distributed.Client, optional
        Run on this Dask cluster (:mod:`~openmm_backmap.run.distributed`):
        workers backmap (and relax) the chunks, this process writes them in
        frame order. The output is identical to the serial run's.
    workers : int, optional
        Start a local Dask cluster of this many single-threaded worker
        processes for this run.
    scheduler : str, optional
        Address of a running Dask scheduler (``dask scheduler``), e.g.
        ``tcp://10.0.0.5:8786``. Give at most one of ``client``,
        ``workers`` and ``scheduler``; none runs in this process.
    security : str, os.PathLike or distributed.security.Security, optional
        With ``scheduler``: the client's TLS credentials (a YAML file, see
        :func:`~openmm_backmap.run.distributed.load_security`); without it
        Dask's config is used, and a ``tls://`` scheduler needs one of them.
    scheme : str, optional
        What the CG beads are (``'ca'``, ``'com'``, ``'martini3'``,
        ``'martini2'``); default: found from their names and positions
        (:func:`~openmm_backmap.run.cg_input.check_scheme`). Without a model
        it picks the shipped model; beads of another scheme than a given
        model's raise ValueError.
    export : {'gromacs', 'amber', 'openmm'}, optional
        With ``minimize``: also write the relaxed structures as a ready-to-run
        all-atom system for that engine, named ``<output stem>_<export>``
        (``run_gromacs.top`` and ``run_gromacs.gro`` for ``run.dcd``; one
        coordinate file per structure when there are several), the names
        :func:`~openmm_backmap.run.relax.export_system` gives ``prefix='run'``. With
        ``export``, the relaxation is the OpenMM relaxer's (a force-field
        minimisation) unless ``relax_options`` names a ``method``: an exported
        system is meant to start MD, and the fast relaxer, which only removes
        clashes, leaves the structures far above a crystal's energy
        (docs/benchmarks/md_ready.md). Whichever relaxer ran, the System is
        the OpenMM relaxer's, built on the relaxed heavy atoms: its
        ``forcefield``, ``implicit``, ``ph`` and ``nonbonded_cutoff`` from
        ``relax_options``, else its defaults; see
        :func:`~openmm_backmap.run.relax.export_system`.

    Returns
    -------
    dict
        :meth:`BackmapPipeline.summary` plus ``input`` and ``cg_topology``:
        frames in, skipped and written, frames per second, seconds per stage,
        and the reference-free clash and bond checks before and after
        relaxation (see :mod:`openmm_backmap.run.pipeline`); with ``export``,
        ``export`` lists the files it wrote.

    Raises
    ------
    FileNotFoundError
        Missing input, topology or model file.
    FileExistsError
        The output exists (use ``force`` or ``append``).
    ValueError
        Unknown output extension, ``export`` without ``minimize`` or of an
        unknown format, an output directory that is not writable, an
        unreachable scheduler, a Dask worker that cannot import the package,
        particle-count or sequence mismatch with the model, unreadable or
        wrong-kind model, bad frames with ``on_bad_frame='raise'``.
    OSError
        :class:`~openmm_backmap.structure.errors.OutputWriteError`: writing
        failed (disk full, permissions); it says after how many frames.

    Examples
    --------
    >>> convert_trajectory('villin_ca.pdb', 'villin_aa.pdb', model='models/ca2aa.pt', seed=1)  # doctest: +SKIP
    >>> convert_trajectory('cg.dcd', 'aa.xtc', topology='cg.pdb', stride=10, samples=5, minimize=True)  # doctest: +SKIP
    >>> convert_trajectory('cg.dcd', 'aa.xtc', topology='cg.pdb', seed=1, workers=4)  # doctest: +SKIP
    """
    input = os.fspath(input)
    output = os.fspath(output)
    if sum(x is not None for x in (client, workers, scheduler)) > 1:
        raise InputError(option_name("give at most one of --workers and --scheduler",
                                     "give at most one of client, workers and scheduler"))
    if security is not None and scheduler is None:
        raise InputError(option_name("--security is for --scheduler", "security is for scheduler"))
    if workers is not None and int(workers) < 1:
        raise InputError(f"workers must be a positive integer, got {workers}")
    if not os.path.exists(input):
        raise MissingFileError(f"input file {input!r} does not exist")
    for name, value in (("stride", stride), ("chunk", chunk)):
        if int(value) < 1:
            raise InputError(f"{name} must be a positive integer, got {value}")
    stride, chunk = int(stride), int(chunk)
    opts = resolve_options(options, model=model, samples=samples, seed=seed, device=device, minimize=minimize,
                           keep_hydrogens=keep_hydrogens, deterministic=deterministic, force=force,
                           on_bad_frame=on_bad_frame, append=append, relax_options=relax_options,
                           max_memory_mb=max_memory_mb)
    if export is not None and "method" not in opts.relax_options:  # an exported system starts MD: relax it with
        opts = dataclasses.replace(opts, relax_options={**opts.relax_options, "method": "openmm"})  # the force field
    if os.path.abspath(input) == os.path.abspath(output):
        raise InputError("the output would overwrite the input; choose another output name")
    check_output_path(output, append=opts.append, force=opts.force)  # fail before loading anything
    top_out = topology_path_for(output, append=opts.append, force=opts.force)
    if top_out is not None and os.path.abspath(top_out) in {os.path.abspath(input), os.path.abspath(
            os.fspath(topology)) if topology is not None else None}:
        raise InputError(f"the output's topology file {top_out} would overwrite the input; choose another output "
                         "name")
    if export is not None:
        export_top = export_paths(export, _export_prefix(output))[0]  # an unknown format raises here
        if not opts.minimize:
            raise InputError(f"export writes the relaxed structures; add {option_name('--minimize', 'minimize=True')}")
        check_writable(export_top, force=opts.force)
    top, top_source = _load_topology(input, topology)
    check_input_file(input)  # truncated or corrupt files say so before any reader sees them
    model = None if opts.model is None else load_model(opts.model, device=opts.device)
    top, xyz0, box0 = _first_frames(input, top)
    particles, notes = _select_particles(top, model is None or model.transferable)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    cg = prepare_cg_input(top, xyz0, box0[0] if _is_periodic(box0) else None, particles, model=model, scheme=scheme,
                          device=opts.device, where=f"{top_source}: ", fix_count=": give a C-alpha topology",
                          fix_names="; rename them to their parent amino acid in the CG topology (-t/--topology)")
    if cg.note and progress:
        print(cg.note, file=sys.stderr)
    opts = dataclasses.replace(opts, model=cg.model)
    # read no more frames than one model call holds, so the batches (and the samples) follow from the options alone
    n_residues = len(cg.sequence if cg.model.transferable else cg.model.sequence)
    chunk = min(chunk, frames_per_call(n_residues, opts.samples, opts.max_memory_mb))
    read = np.unique(cg.particles)
    plan = ConversionPlan(input=input, output=output, options=opts, top_source=top_source,
                          read_top=top if topology is not None else None, particles=cg.particles,
                          atom_indices=None if len(read) == top.n_atoms else read,
                          take=None if np.array_equal(read, cg.particles) else np.searchsorted(read, cg.particles),
                          stride=stride, chunk=chunk, progress=progress, kwargs=cg.pipeline_kwargs(), bonds=cg.bonds)
    with sigterm_as_interrupt():  # kill or a batch system's time limit: cleaned up as after Ctrl-C
        if client is None and workers is None and scheduler is None:
            summary = _convert_serial(plan)
        else:
            from .distributed import convert_on_cluster  # dask is optional: imported only when asked for

            summary = convert_on_cluster(plan, client=client, workers=workers, scheduler=scheduler,
                                         security=security)
        if not summary["frames_written"]:  # the writers create no file before their first frame
            raise InputError(f"no frame was written to {output}: all {summary['frames_skipped']} CG frame(s) read "
                             f"from {input} are bad (NaN, infinite or exploded coordinates; see the warnings)")
        if export is not None:
            summary["export"] = _export(output, top_out, export, opts)
    if progress:
        print(format_summary(summary))
        if export is not None:
            print(f"{export} system: {', '.join(summary['export'])}")
    return summary


def _export_prefix(output):
    """The output without its extension: :func:`~.relax.handoff.export_paths` adds ``_<format>`` and the extensions
    (``run.dcd`` -> ``run_amber.prmtop``), the same rule as :func:`~.relax.export_system` called directly."""
    return os.path.splitext(output)[0]


def _export(output, top_out, fmt, opts):
    """Export the relaxed structures written to ``output`` (read back: the same whichever relaxer made them)
    with the OpenMM relaxer's force field and implicit solvent."""
    import mdtraj as md

    from .relax.relaxer import Relaxer

    relaxer_defaults = inspect.signature(Relaxer).parameters
    relax = {name: opts.relax_options.get(name, relaxer_defaults[name].default)
             for name in ("forcefield", "implicit", "ph", "nonbonded_cutoff")}
    if _is_pdb(output):  # the names as written: mdtraj's standard names would rename hydrogens
        relaxed = md.load_pdb(output, standard_names=False)
    elif output.lower().endswith(".h5"):
        relaxed = md.load(output)
    else:
        with dcd_plugin_silenced(output):
            relaxed = md.load(output, top=md.load_pdb(top_out, standard_names=False).topology)
    return export_system(relaxed, fmt, _export_prefix(output), force=opts.force, **relax)


@dataclasses.dataclass
class ConversionPlan:
    """What :func:`convert_trajectory` has checked and decided before reading frames: the same for the serial and
    the Dask run (:mod:`~openmm_backmap.run.distributed`).

    Examples
    --------
    >>> n_particles, kwargs, bonds = plan.pipeline_args()  # doctest: +SKIP
    >>> for xyz, time_ps, box in plan.frames():  # doctest: +SKIP
    ...     xyz = plan.whole(xyz, box, bonds)
    """

    input: str
    output: str
    options: object
    top_source: str
    read_top: object
    particles: np.ndarray
    atom_indices: object
    take: object
    stride: int
    chunk: int
    progress: bool
    kwargs: dict
    bonds: np.ndarray

    def frames(self, first_chunk=0):
        """(xyz nm, time ps or None, box or None) of the CG particles in the model's order, chunk by chunk, from
        chunk ``first_chunk`` on."""
        for xyz, time_ps, box in _read_frames(self.input, self.read_top, self.atom_indices, self.stride, self.chunk,
                                              first_chunk):
            yield (xyz if self.take is None else xyz[:, self.take]), time_ps, box

    def n_frames(self):
        """Frames to read (after the stride), or None where the format cannot say without reading it all."""
        return None if self.input.lower().endswith(".gsd") else _count_frames(self.input, self.stride)

    @staticmethod
    def whole(xyz, box, bonds):
        """``xyz`` with molecules made whole again when ``box`` is a real periodic box (not a placeholder).

        Frames that no periodic image explains (a bead farther from the others than the box allows, a coordinate
        out of range: :func:`~openmm_backmap.run.pipeline.good_frames` with the box) are left as they are, so that
        the bad-frame check after this sees them: wrapping would hide them."""
        if not _is_periodic(box):
            return xyz
        out = np.array(xyz, dtype=np.float32)
        ok = good_frames(xyz, box)
        if ok.any():
            out[ok] = make_whole(xyz[ok], box[ok], bonds)
        return out

    def pipeline_args(self):
        """(CG particles, :class:`BackmapPipeline` keywords, CG bonds)."""
        return len(self.particles), self.kwargs, self.bonds

    def progress_bar(self, pipe):
        """A progress bar in CG frames that also moves within a chunk: it is set as ``pipe``'s
        :attr:`~openmm_backmap.run.pipeline.BackmapPipeline.on_progress` (after each model call and relaxed
        structure); :meth:`FrameBar.chunk_done` puts it on the exact count after each chunk."""
        bar = FrameBar(_progress_bar(self.input, self.stride, batch_text({**pipe.summary(), "chunk": self.chunk})))
        pipe.on_progress = bar.advance
        return bar

    def summary(self, pipe):
        return {"input": self.input, "cg_topology": self.top_source, "chunk": self.chunk,
                "deterministic": bool(self.options.deterministic), **pipe.summary()}


def _convert_serial(plan):
    pipe = None
    bar = None
    try:
        for xyz, time_ps, box in plan.frames():
            if pipe is None:
                n, kwargs, bonds = plan.pipeline_args()
                pipe = BackmapPipeline(plan.output, n, plan.options, **kwargs, atomic=True)
                if plan.progress:
                    bar = plan.progress_bar(pipe)
            xyz = plan.whole(xyz, box, bonds)  # periodic input: molecules whole again
            base = pipe.frames_in + pipe.frames_skipped
            good = pipe.filter_frames(xyz, index=np.arange(base, base + len(xyz)) * plan.stride)
            pipe.process(xyz[good], None if time_ps is None else time_ps[good])
            if bar is not None:
                bar.chunk_done(len(xyz))
        if pipe is None:
            raise InputError(f"{plan.input!r} has no frames")
    except BaseException:
        if pipe is not None:
            pipe.abort()  # a failed or interrupted run leaves nothing under the output's name
        raise
    finally:
        if bar is not None:
            bar.close()
        if pipe is not None:
            pipe.close()
    return plan.summary(pipe)


class FrameBar:
    """A tqdm bar of whole CG frames fed with fractions of frames (:meth:`advance`) within a chunk."""

    def __init__(self, bar):
        self.bar = bar
        self._chunk_done = 0.0  # frames' worth of work done in the current chunk
        self._chunk_shown = 0  # of which the bar shows

    def advance(self, frames):
        self._chunk_done += frames
        step = int(self._chunk_done + 1e-9) - self._chunk_shown
        if step > 0:
            self.bar.update(step)
            self._chunk_shown += step

    def chunk_done(self, n_frames):
        """The chunk of ``n_frames`` frames read (bad ones included) is written: the bar counts all of it."""
        if n_frames > self._chunk_shown:
            self.bar.update(n_frames - self._chunk_shown)
        self._chunk_done, self._chunk_shown = 0.0, 0

    update = chunk_done  # the Dask run (:mod:`~openmm_backmap.run.distributed`) counts whole chunks

    def close(self):
        self.bar.close()


def _progress_bar(input, stride, batch):
    return tqdm(total=_count_frames(input, stride), unit="frame", desc="backmapping", leave=False, postfix=batch)


def _count_frames(input, stride):
    """Frames of a trajectory file after ``stride``, or None where the format cannot say without reading it all."""
    import mdtraj as md

    if _is_pdb(input):
        return None
    try:
        with dcd_plugin_silenced(input), md.open(input) as f:
            return (len(f) + stride - 1) // stride
    except Exception:  # noqa: BLE001 - the count is only for the bar and for seeking
        return None
