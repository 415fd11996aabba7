"""``openmm-backmap demo``: a CG simulation of villin backmapped on the fly; no input files needed.

The villin headpiece (35 residues) comes from OpenMM's bundled test
structure (``openmm/app/data/test.pdb``). :func:`run_demo` builds a C-alpha
Go-like model of it (:func:`~openmm_backmap.cgsystems.calpha_go_model`), runs
Langevin dynamics (Reference platform for so small a system, else CPU) with a
:class:`~openmm_backmap.run.reporter.BackmapReporter` attached, relaxes every
backmapped frame, and reports what came out.
"""

from __future__ import annotations

import json
import os
import time
import warnings

import numpy as np

from ..cgsystems import calpha_go_model
from ..evaluation import backbone_dihedrals_deg, ramachandran_plot, rmsd
from ..io import load_ensemble
from ..model import load_model
from ..structure import InputError, MissingFileError, OutputExistsError
from ..structure.constants import ANGSTROM_PER_NM
from ..structure.errors import option_name
from .summary_text import format_summary
from .reporter import BackmapReporter

__all__ = ["run_demo", "villin_pdb_path", "DEFAULT_STEPS", "DEFAULT_REPORTS"]

#: CG integration steps of the default demo (10 fs each: 200 ps).
DEFAULT_STEPS = 20000
#: Backmapped frames of the default demo.
DEFAULT_REPORTS = 10
#: Relaxation settings of the demo: a short restrained minimisation in vacuum removes the clashes (about 0.5 s
#: per villin frame on one CPU core; GBn2 implicit solvent, the Relaxer's default, costs about 10 s).
DEMO_RELAX_OPTIONS = {"implicit": None, "restraint": "heavy", "max_iterations": 200}


def villin_pdb_path() -> str:
    """Path of OpenMM's bundled villin headpiece structure (with water), ``openmm/app/data/test.pdb``."""
    import openmm.app as app

    return os.path.join(os.path.dirname(app.__file__), "data", "test.pdb")


#: Below this many particles the Reference platform is faster than CPU (per-step overhead dominates:
#: 10116 vs 1316 steps/s measured for the 35-bead villin Go model on 2 cores).
SMALL_SYSTEM_PARTICLES = 200


def _pick_platform(n_particles):
    import openmm

    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    use_cpu = "CPU" in names and n_particles >= SMALL_SYSTEM_PARTICLES
    return openmm.Platform.getPlatformByName("CPU" if use_cpu else "Reference")


def _superposed_rmsd_angstrom(generated, native, atom_indices=None):
    """RMSD (Å) of the first frames of two ensembles of one sequence after optimal superposition (mdtraj)."""
    import mdtraj as md

    return float(md.rmsd(generated.to_mdtraj()[0], native.to_mdtraj(), 0, atom_indices=atom_indices)[0]
                 * ANGSTROM_PER_NM)


def run_demo(output_dir="backmap-demo", steps=None, model=None, seed=0, report_interval=None, device=None,
             relax_options=None, verbose=True, force=False) -> dict:
    """Simulate villin with a C-alpha Go model and backmap it on the fly.

    Parameters
    ----------
    output_dir : str or path
        Where the files go (created when missing).
    steps : int, optional
        CG steps of 10 fs (default :data:`DEFAULT_STEPS`, about a minute on
        two CPU cores).
    model : str, path or Backmapper, optional
        Backmapping model (default: the shipped C-alpha model).
    seed : int
        Seed of the Langevin integrator, the velocities and the backmapping.
    report_interval : int, optional
        Steps between backmapped frames (default: ``steps // 10``).
    device : str, optional
        Torch device of the model.
    relax_options : dict, optional
        :class:`~openmm_backmap.run.relax.Relaxer` options (default
        :data:`DEMO_RELAX_OPTIONS` on the simulation's platform).
    verbose : bool
        Print what is done and written.
    force : bool
        Overwrite the files of an earlier demo in ``output_dir``; without it
        a folder that holds any of them stops the demo before it starts (the
        rule of every output of the package).

    Returns
    -------
    dict
        Paths written (``files``), the reporter's summary, ``rmsd_first_frame_angstrom``
        (heavy atoms of the first backmapped frame vs the native structure,
        after superposition), ``ca_rmsd_first_frame_angstrom`` (its C-alpha
        trace vs native), ``rmsd_native_ca_angstrom`` (backmapping the native
        C-alpha trace itself, no superposition), timings.

    Raises
    ------
    FileNotFoundError
        The model file (or the shipped model) is missing.
    OutputExistsError
        ``output_dir`` holds a file the demo writes and ``force`` is not set.

    Examples
    --------
    >>> result = run_demo('backmap-demo', steps=2000)  # doctest: +SKIP
    >>> sorted(result['files'])  # doctest: +SKIP
    ['cg_topology', 'cg_trajectory', 'ramachandran', 'summary', 'topology', 'trajectory']
    """
    import openmm
    import openmm.app as app

    def say(msg):
        if verbose:
            print(msg, flush=True)

    t_start = time.perf_counter()
    steps = DEFAULT_STEPS if steps is None else int(steps)
    if steps < 1:
        raise InputError(f"steps must be a positive integer, got {steps}")
    interval = int(report_interval) if report_interval else max(1, steps // DEFAULT_REPORTS)
    output_dir = os.fspath(output_dir)
    files = {
        "trajectory": os.path.join(output_dir, "villin_backmapped.xtc"),
        "topology": os.path.join(output_dir, "villin_backmapped.pdb"),
        "cg_trajectory": os.path.join(output_dir, "villin_cg.dcd"),
        "cg_topology": os.path.join(output_dir, "villin_cg.pdb"),
        "ramachandran": os.path.join(output_dir, "ramachandran.png"),
        "summary": os.path.join(output_dir, "summary.json"),
    }
    existing = [os.path.basename(p) for p in files.values() if os.path.exists(p)]
    if existing and not force:  # before the model loads: the same rule as every other output
        raise OutputExistsError(f"{output_dir} holds the files of an earlier demo ({', '.join(existing)}); use "
                                f"{option_name('--force', 'force=True')} to overwrite them, or another "
                                f"{option_name('--output', 'output_dir')}")
    say("loading the model ...")
    if model is None:
        try:
            bm = load_model(None, device=device)
        except FileNotFoundError:
            raise MissingFileError("the shipped C-alpha model (openmm_backmap/data/ca2aa.pt) is not installed, so "
                                    "the demo has nothing to backmap with; pass a model file with --model PATH "
                                    "(e.g. models/ca2aa.pt once trained)") from None
    else:
        bm = load_model(model, device=device)
    say(f"model: {bm.metadata.get('name') or bm.kind} ({bm.path}), device {bm.device}")

    os.makedirs(output_dir, exist_ok=True)
    for key in ("trajectory", "topology", "cg_trajectory", "cg_topology"):
        if os.path.exists(files[key]):
            os.unlink(files[key])  # the demo's own outputs from an earlier run (force)

    say("building villin's C-alpha Go model ...")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # test.pdb has waters and ions, dropped on purpose
        native = load_ensemble(villin_pdb_path())
    top, system, pos = calpha_go_model(native)
    platform = _pick_platform(system.getNumParticles())
    say(f"villin headpiece: {native.n_residues} residues, {native.n_atoms} heavy atoms; C-alpha Go model with "
        f"{system.getNumParticles()} particles on the {platform.getName()} platform")

    integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.010)
    integrator.setRandomNumberSeed(int(seed) + 1)
    sim = app.Simulation(top, system, integrator, platform)
    sim.context.setPositions(pos)
    sim.context.setVelocitiesToTemperature(300.0, int(seed) + 1)
    with open(files["cg_topology"], "w") as fh:
        app.PDBFile.writeFile(top, pos * openmm.unit.nanometer, fh)
    cg_reporter = app.DCDReporter(files["cg_trajectory"], interval)
    sim.reporters.append(cg_reporter)
    relax = dict(DEMO_RELAX_OPTIONS, platform=platform.getName())
    relax.update(relax_options or {})
    reporter = BackmapReporter(files["trajectory"], interval, model=bm, seed=seed, minimize=True, relaxOptions=relax,
                               force=True)
    sim.reporters.append(reporter)
    say(f"running {steps} steps of 10 fs ({steps * 0.01:g} ps), backmapping and relaxing every {interval} steps ...")
    t0 = time.perf_counter()
    try:
        parts = min(10, steps)  # the same trajectory as one step() call, with a line every tenth
        done = 0
        for k in range(1, parts + 1):
            n = steps * k // parts - done
            sim.step(n)
            done += n
            say(f"  step {done}/{steps} ({reporter.frames_reported} frame(s) reported, "
                f"{time.perf_counter() - t0:.0f} s)")
    finally:
        reporter.close()
        sim.reporters.clear()
        del cg_reporter  # DCDReporter has no close(); dropping the last reference closes its file
    t_sim = time.perf_counter() - t0
    summary = reporter.summary()
    if not summary or summary["frames_written"] == 0:
        raise InputError("no frame was backmapped (fewer steps than the report interval?)")

    say("comparing the backmapped frames with native villin and drawing the Ramachandran plot ...")
    generated = load_ensemble(files["trajectory"], topology=files["topology"])
    rmsd_first = _superposed_rmsd_angstrom(generated, native)
    ca_rmsd_first = _superposed_rmsd_angstrom(generated, native, native.layout.ca_index)
    direct = bm.backmap(native.ca_xyz[:1], native.sequence, native.segment_start, seed=seed).xyz
    rmsd_native = float(rmsd(native.xyz[0], direct[0]))

    phi_r, psi_r = backbone_dihedrals_deg(native)
    phi_g, psi_g = backbone_dihedrals_deg(generated)
    try:
        ramachandran_plot(np.stack([phi_r.ravel(), psi_r.ravel()], 1), np.stack([phi_g.ravel(), psi_g.ravel()], 1),
                          files["ramachandran"],
                          title=f"villin: native (left) vs {generated.n_frames} backmapped frames")
    except InputError as err:  # matplotlib is optional: the demo's numbers do not need it
        say(f"Ramachandran plot skipped ({err})")
        del files["ramachandran"]
    result = {
        "files": files,
        "steps": steps,
        "report_interval": interval,
        "platform": platform.getName(),
        "summary": summary,
        "rmsd_first_frame_angstrom": rmsd_first,
        "ca_rmsd_first_frame_angstrom": ca_rmsd_first,
        "rmsd_native_ca_angstrom": rmsd_native,
        "seconds": {"simulation_with_backmapping": t_sim, "total": time.perf_counter() - t_start},
    }
    with open(files["summary"], "w") as fh:
        json.dump(result, fh, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))

    say(format_summary(summary))
    say(f"first backmapped frame (relaxed) vs native villin: heavy-atom RMSD {rmsd_first:.2f} Å after superposition "
        f"(its C-alpha trace: {ca_rmsd_first:.2f} Å; the CG model moved it)")
    say(f"backmapping the native C-alpha trace directly: heavy-atom RMSD {rmsd_native:.2f} Å (no superposition)")
    say("files:")
    labels = {"trajectory": "backmapped all-atom trajectory", "topology": "its topology",
              "cg_trajectory": "CG trajectory", "cg_topology": "CG topology",
              "ramachandran": "Ramachandran plot, native vs backmapped", "summary": "all numbers, JSON"}
    for key, path in files.items():
        say(f"  {path:<45} {labels[key]}")
    say(f"done in {result['seconds']['total']:.1f} s")
    return result
