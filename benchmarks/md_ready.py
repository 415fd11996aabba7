"""Are backmapped frames ready for all-atom MD? (issue 25)

For each CASP target this runs the command line as a user would::

    openmm-backmap coarsen TARGET --levels ca -o WORK/T
    openmm-backmap convert WORK/T_ca.pdb -o WORK/raw.pdb --deterministic                       # raw
    openmm-backmap convert WORK/T_ca.pdb -o WORK/sampled.pdb --seed 1                          # sampled
    openmm-backmap convert WORK/T_ca.pdb -o WORK/min.pdb --deterministic --minimize            # minimized
    openmm-backmap convert WORK/T_ca.pdb -o WORK/openmm.pdb --deterministic --minimize --relax openmm  # openmm

(``--structures`` picks a subset), relaxes the crystal's canonical heavy atoms the way each ``--minimize``
path does (the same relaxer class, built as the pipeline builds it: :class:`~openmm_backmap.run.relax.FastRelaxer`
for ``crystal+minimized``, :class:`~openmm_backmap.run.relax.Relaxer` with its defaults, OBC2, for
``crystal+openmm``), and then treats every structure the same way:

* heavy atoms read with ``openmm_backmap.io.load_ensemble`` (canonical order; any hydrogens in the
  file dropped), OXT placed and hydrogens added by OpenMM ``Modeller.addHydrogens`` (pH 7) through
  ``openmm_backmap.run.relax.systems.build_force_field_system``;
* AMBER ff14SB (``amber14-all.xml``) + OBC2 (``implicit/obc2.xml``), no cutoff;
* hydrogens relaxed with the heavy atoms frozen (heavy-atom masses set to 0, which OpenMM's
  ``LocalEnergyMinimizer`` holds fixed), then the single-point energy per residue (kJ/mol);
* Langevin MD (``LangevinMiddleIntegrator``, 300 K, 1/ps, 2 fs, HBonds constraints) for ``--ps``
  picoseconds straight from that structure, no further minimisation. Stable if every check point
  has a finite energy, no core heavy atom moves more than 1 nm from its start and bond_ok
  (``openmm_backmap.evaluation.frame_quality`` against the force field's lengths,
  ``reference_bond_lengths``) stays >= 99.9 %. Core heavy atoms: all heavy atoms except those of the
  first and last ``TERMINAL_RESIDUES`` residues of each chain (each segment, which the force field makes
  a chain of its own), displacement measured after superposing the core heavy atoms on their start.
  The issue's literal rule (every atom, hydrogens and termini included, after superposing all heavy
  atoms) is reported beside it as ``max_displacement_all_atoms_nm``: it is dominated by hydrogens and
  free termini (the crystals reach 0.7-0.8 nm in 2 ps);
* heavy-atom RMSD (after superposition) of the last frame to the first and the largest over the run, Å;
* energies compared like with like: raw and sampled output with the crystal, ``minimized`` with
  ``crystal+minimized``, ``openmm`` with ``crystal+openmm`` (:data:`REFERENCE`);
* CPU seconds (``time.process_time`` of this process: system build, H relaxation and MD), the CPU
  seconds of each ``convert`` call and of the crystal's relaxations.

Run (2-core machine: two targets at a time, one thread each)::

    python benchmarks/md_ready.py --ps 20 --targets 8 --jobs 2

Cost: the MD dominates; with OBC2 and no cutoff it grows with the square of the size: about 0.0029 CPU s per ps
per residue squared per structure (0.21 CPU s per ps per residue at 74 residues), seven structures per target
with all ``--structures``. The command above: about 11 CPU hours; all 24 CASP targets at 20 ps: about 220.

Writes docs/benchmarks/md_ready.json and md_ready.md (``--out`` to change the stem).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

CASP_DIR = "/work/shared/data/eval/chains/casp"
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "docs", "benchmarks", "md_ready")
FORCEFIELD = "amber14-all.xml"
IMPLICIT = "implicit/obc2.xml"
MAX_DISPLACEMENT_NM = 1.0
BOND_OK_MIN = 99.9
CHECKPOINTS = 10
#: Residues at each end of every chain (segment) left out of the displacement check: free termini fray.
TERMINAL_RESIDUES = 3
#: Seed of the one sampled (non-deterministic) frame per target.
SAMPLE_SEED = 1
#: Our structures: output file and the ``convert`` options that make it from the C-alpha beads.
STRUCTURES = {
    "raw": ("raw.pdb", ["--deterministic"]),
    "sampled": ("sampled.pdb", ["--seed", str(SAMPLE_SEED)]),
    "minimized": ("min.pdb", ["--deterministic", "--minimize"]),
    "openmm": ("openmm.pdb", ["--deterministic", "--minimize", "--relax", "openmm"]),
}
#: The crystal row each structure's energy is compared with (same treatment).
REFERENCE = {"raw": "crystal", "sampled": "crystal", "minimized": "crystal+minimized", "openmm": "crystal+openmm"}
#: Crystal rows: the relaxation applied to the crystal's heavy atoms (None: as deposited).
CRYSTAL_RELAX = {"crystal": None, "crystal+minimized": "fast", "crystal+openmm": "openmm"}
#: Table order: each crystal row right before the structures compared with it.
ROW_ORDER = ("crystal", "raw", "sampled", "crystal+minimized", "minimized", "crystal+openmm", "openmm")
#: The issue's bars.
BAR_ENERGY_KJ_PER_RES = 10.0
BAR_RAW_STABLE = 0.95
#: The issue's protocol (the bars are stated for it).
ISSUE_PS = 20.0
ISSUE_TARGETS = 24
#: Environment of every worker and CLI call: one thread.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                  "OPENMM_CPU_THREADS": "1"}

#: Quoted from issue 25 (measured elsewhere, NOT by this script).
CG2AT2_QUOTED = {
    "source": "issue 25 (quoted, not measured here)",
    "setting": "martinize2 Martini 3 beads of 8 CASP targets; fragments + GROMACS minimisation",
    "rmsd_A": 1.02, "clash_percent": 0.0, "bond_ok_percent": 99.98, "cpu_s_per_structure": 40,
    "rmsd_after_own_5ps_nvt_A": 1.88,
}


def _platform_and_props(name):
    import openmm

    plat = openmm.Platform.getPlatformByName(name)
    props = {"Threads": "1"} if name == "CPU" else {}
    return plat, props


def _kabsch_rmsd(a, b):
    """RMSD (same units) of ``b`` onto ``a`` after optimal superposition."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1, 1, d]) @ vt
    return float(np.sqrt(np.mean(np.sum((b @ rot - a) ** 2, axis=1)))), rot


def _superposed(ref_sub, x_all, sub_index):
    """All atoms of ``x_all`` superposed onto ``ref_sub`` by the atoms ``sub_index``."""
    h = x_all[sub_index]
    _, rot = _kabsch_rmsd(ref_sub, h)
    return (x_all - h.mean(0)) @ rot + ref_sub.mean(0)


def core_heavy_atoms(sequence, segment_start, terminal=TERMINAL_RESIDUES):
    """Canonical heavy-atom indices of the core: every residue but the first and last ``terminal`` of each
    chain (segment). Chains of ``2 * terminal`` residues or fewer have no core; if no chain has one (fewer
    than 3 atoms), all heavy atoms are returned.

    Examples
    --------
    >>> idx = core_heavy_atoms(['GLY'] * 8, [True] + [False] * 7)
    >>> len(idx)  # residues 3 and 4, four heavy atoms each
    8
    """
    from openmm_backmap.structure import atom_layout

    layout = atom_layout(sequence)
    n = len(sequence)
    seg = np.zeros(n, dtype=bool) if segment_start is None else np.asarray(segment_start, dtype=bool).copy()
    seg[0] = True
    seg_id = np.cumsum(seg) - 1
    first = np.flatnonzero(seg)
    last = np.append(first[1:], n) - 1
    r = np.arange(n)
    core_res = (r - first[seg_id] >= terminal) & (last[seg_id] - r >= terminal)
    idx = np.flatnonzero(core_res[layout.atom_residue])
    return idx if len(idx) >= 3 else np.arange(layout.n_atoms)


def max_displacements(start, x, core_index, heavy_index):
    """(core heavy atoms, all atoms): the largest displacement (nm) from ``start`` of the core heavy atoms after
    superposing them on their start, and of any atom after superposing all heavy atoms (the issue's literal rule).
    """
    core = _superposed(start[core_index], x, core_index)[core_index]
    d_core = float(np.linalg.norm(core - start[core_index], axis=1).max())
    sup = _superposed(start[heavy_index], x, heavy_index)
    d_all = float(np.linalg.norm(sup - start, axis=1).max())
    return d_core, d_all


def evaluate_structure(path, ps=20.0, platform="CPU", seed=1, frame=0):
    """Single-point energy and MD stability of one heavy-atom structure, model ``frame`` of ``path`` (see the
    module docstring).

    Returns a dict of plain floats / bools (JSON-ready).
    """
    import openmm
    import openmm.unit as u

    from openmm_backmap.evaluation import frame_quality
    from openmm_backmap.io.read import load_ensemble
    from openmm_backmap.run.relax.systems import build_force_field_system, reference_bond_lengths

    t0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = load_ensemble(path)
    if not ens.mask[frame].all():
        return {"error": f"{int((~ens.mask[frame]).sum())} heavy atoms missing in frame {frame}"}
    xyz = ens.xyz[frame].astype(np.float64)
    seq, seg = ens.sequence, ens.segment_start
    ffs = build_force_field_system(seq, seg, xyz, implicit=IMPLICIT, constraints=None)
    r0 = reference_bond_lengths(seq, seg, xyz)
    system, top = ffs.system, ffs.topology_h
    n_res = len(seq)
    is_h = np.array([a.element is not None and a.element.symbol == "H" for a in top.atoms()])
    masses = [system.getParticleMass(i) for i in range(system.getNumParticles())]
    heavy_index = np.asarray(ffs.heavy_index)
    core_index = heavy_index[core_heavy_atoms(seq, seg)]
    # Modeller.addHydrogens placed them; start from the package's ideal placement as well
    pos = np.asarray(ffs.full_positions(xyz))

    plat, props = _platform_and_props(platform)

    # 1) hydrogens relaxed, heavy atoms frozen (mass 0)
    for i in np.flatnonzero(~is_h):
        system.setParticleMass(int(i), 0.0)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), plat, props)
    ctx.setPositions(pos * u.nanometer)
    e_before = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
    openmm.LocalEnergyMinimizer.minimize(ctx, 1.0, 2000)
    st = ctx.getState(getEnergy=True, getPositions=True)
    energy = st.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
    pos = np.asarray(st.getPositions(asNumpy=True).value_in_unit(u.nanometer))
    heavy_moved = float(np.abs(pos[heavy_index] - xyz).max())
    del ctx
    t_energy = time.process_time() - t0

    # 2) MD: real masses, HBonds constraints at the force field's lengths
    for i, m in enumerate(masses):
        system.setParticleMass(i, m)
    h_bond_r0 = {}
    for force in system.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            for k in range(force.getNumBonds()):
                i, j, length, _ = force.getBondParameters(k)
                if is_h[i] or is_h[j]:
                    h_bond_r0[(i, j)] = length
    for (i, j), length in h_bond_r0.items():
        system.addConstraint(i, j, length)
    integ = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1.0 / u.picosecond, 0.002 * u.picoseconds)
    integ.setRandomNumberSeed(seed)
    ctx = openmm.Context(system, integ, plat, props)
    ctx.setPositions(pos * u.nanometer)
    ctx.applyConstraints(1e-6)
    ctx.setVelocitiesToTemperature(300 * u.kelvin, seed)
    n_steps = max(1, int(round(ps / 0.002)))
    per = max(1, n_steps // CHECKPOINTS)
    start = np.asarray(ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(u.nanometer))
    ref_heavy = start[heavy_index]
    finite, failure = True, ""
    max_disp, max_disp_all, bond_ok_min, rmsd_max, rmsd_end, clash_end = 0.0, 0.0, 100.0, 0.0, 0.0, 0.0
    done = 0
    t_md = time.process_time()
    while done < n_steps:
        k = min(per, n_steps - done)
        try:
            integ.step(k)
        except Exception as err:  # NaN coordinates etc.
            finite, failure = False, f"{type(err).__name__}: {err}"[:200]
            break
        done += k
        s = ctx.getState(getEnergy=True, getPositions=True)
        e = s.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
        x = np.asarray(s.getPositions(asNumpy=True).value_in_unit(u.nanometer))
        if not (np.isfinite(e) and np.isfinite(x).all()):
            finite, failure = False, f"non-finite energy/coordinates at step {done}"
            break
        d_core, d_all = max_displacements(start, x, core_index, heavy_index)
        max_disp, max_disp_all = max(max_disp, d_core), max(max_disp_all, d_all)
        rmsd_end = _kabsch_rmsd(ref_heavy, x[heavy_index])[0]
        rmsd_max = max(rmsd_max, rmsd_end)
        clash, ok = frame_quality(x[heavy_index], seq, seg, r0)
        bond_ok_min = min(bond_ok_min, float(ok[0]))
        clash_end = float(clash[0])
    e_end = e if finite else float("nan")
    stable = bool(finite and max_disp <= MAX_DISPLACEMENT_NM and bond_ok_min >= BOND_OK_MIN)
    cpu = time.process_time() - t0
    cpu_md = time.process_time() - t_md
    clash0, ok0 = frame_quality(xyz, seq, seg, r0)
    return {
        "n_residues": n_res, "n_atoms": int(top.getNumAtoms()), "n_core_heavy_atoms": int(len(core_index)),
        "clash_percent_start": float(clash0[0]), "bond_ok_percent_start": float(ok0[0]),
        "energy_kj_per_res": energy / n_res,
        "energy_before_h_relax_kj_per_res": e_before / n_res,
        "heavy_atoms_moved_in_h_relax_nm": heavy_moved,
        "md_ps": done * 0.002, "md_ps_requested": n_steps * 0.002,
        "stable": stable, "finite": finite, "failure": failure,
        "max_displacement_nm": max_disp, "max_displacement_all_atoms_nm": max_disp_all,
        "bond_ok_min_percent": bond_ok_min, "clash_percent_end": clash_end,
        "energy_end_kj_per_res": e_end / n_res,
        "drift_rmsd_end_A": 10 * rmsd_end, "drift_rmsd_max_A": 10 * rmsd_max,
        "cpu_s_energy": t_energy, "cpu_s_md": cpu_md, "cpu_s_total": cpu,
    }


def _cli(args, cwd):
    """Run ``openmm-backmap ARGS`` as a user would; return its CPU seconds (children rusage)."""
    exe = os.path.join(os.path.dirname(sys.executable), "openmm-backmap")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", **ONE_THREAD_ENV)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"openmm-backmap {' '.join(args)} failed:\n{proc.stderr}")
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def relax_crystal(path, out_path, method):
    """The crystal's canonical heavy atoms relaxed as ``convert --minimize`` relaxes our output (``method``
    'fast': :class:`FastRelaxer`, ``relax_batch``; 'openmm': :class:`Relaxer`, ``relax``; built as
    ``BackmapPipeline`` builds them, with their defaults), written to ``out_path``. Returns its CPU seconds, heavy-atom RMSD to the crystal (Å) and convergence."""
    from openmm_backmap.io.paths import write_topology_pdb
    from openmm_backmap.io.read import load_ensemble
    from openmm_backmap.run.relax import FastRelaxer, Relaxer

    t0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = load_ensemble(path)
    if not ens.mask[0].all():
        raise ValueError(f"{int((~ens.mask[0]).sum())} heavy atoms missing")
    xyz = ens.xyz[0]
    cls = FastRelaxer if method == "fast" else Relaxer
    relaxer = cls(ens.topology(), template_xyz=xyz, segment_start=ens.segment_start)
    if method == "fast":
        res = relaxer.relax_batch(xyz[None]).unstack()[0]
    else:
        res = relaxer.relax(xyz)
    write_topology_pdb(out_path, ens.topology(), np.asarray(res.xyz).reshape(-1, 3), title=f"crystal, {method} relax")
    return {"cpu_s": time.process_time() - t0, "rmsd_A": 10 * float(res.rmsd_nm), "converged": bool(res.converged),
            "clash_before": float(res.clash_before), "clash_after": float(res.clash_after)}


def run_target(target, workdir, ps=20.0, platform="CPU", structures=tuple(STRUCTURES)):
    """Coarsen + convert through the CLI (``structures``), relax the crystal the same ways, evaluate every row."""
    unknown = set(structures) - set(STRUCTURES)
    if unknown:
        raise ValueError(f"unknown structures {sorted(unknown)}; choose from {list(STRUCTURES)}")
    os.makedirs(workdir, exist_ok=True)
    name = os.path.basename(target).split(".")[0]
    target = os.path.abspath(target)
    _cli(["coarsen", target, "--levels", "ca", "-o", name, "--force"], workdir)
    cg = f"{name}_ca.pdb"
    out = {"target": name, "structures": [k for k in STRUCTURES if k in structures],
           "convert_cpu_s": {}, "relax_cpu_s": {}, "crystal_relax": {}}
    paths = {"crystal": target}
    for key in out["structures"]:
        fname, opts = STRUCTURES[key]
        out["convert_cpu_s"][key] = _cli(["convert", cg, "-o", fname, *opts, "--force"], workdir)
        paths[key] = os.path.join(workdir, fname)
    crystals = [c for c in CRYSTAL_RELAX if c == "crystal" or c in (REFERENCE[k] for k in out["structures"])]
    for c in crystals[1:]:
        paths[c] = os.path.join(workdir, c.replace("+", "_") + ".pdb")
        info = relax_crystal(target, paths[c], CRYSTAL_RELAX[c])
        out["relax_cpu_s"][c] = info.pop("cpu_s")
        out["crystal_relax"][c] = info
    out["rows"] = [k for k in ROW_ORDER if k in paths]
    for key in out["rows"]:
        out[key] = evaluate_structure(paths[key], ps=ps, platform=platform)
    return out


def pick_targets(spec):
    """``N``: the N smallest CASP targets (by C-alpha count); else comma-separated CASP names (T0872, ...) or
    paths of PDB files, in the order given."""
    files = sorted(glob.glob(os.path.join(CASP_DIR, "*.pdb.gz")))
    if spec.isdigit():
        def n_ca(f):
            import gzip
            with gzip.open(f, "rt") as fh:
                return sum(1 for line in fh if line.startswith("ATOM") and line[12:16].strip() == "CA")
        return sorted(files, key=n_ca)[: int(spec)]
    out = []
    for item in spec.split(","):
        found = [item] if os.path.isfile(item) else [f for f in files if item in os.path.basename(f)]
        if not found:
            raise SystemExit(f"md_ready.py: no CASP target or file {item!r}")
        out += [f for f in found if f not in out]
    return out


def _fmt(v, nd=1):
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def _reference(key):
    """The crystal row a row's energy is compared with (None for the crystal itself)."""
    return REFERENCE.get(key) or (None if key == "crystal" else "crystal")


def _delta(t, key):
    ref = _reference(key)
    if ref is None or ref not in t or "error" in t[ref] or "error" in t[key]:
        return None
    return t[key]["energy_kj_per_res"] - t[ref]["energy_kj_per_res"]


def _rows(targets):
    present = {k for t in targets if "error" not in t for k in t.get("rows", ())}
    return [k for k in ROW_ORDER if k in present]


def summarize(targets):
    """Per row kind: stable count, mean energy, mean ΔE against its like-for-like crystal row, mean drift, ..."""
    out = {}
    for key in _rows(targets):
        ts = [t for t in targets if "error" not in t and key in t and "error" not in t[key]]
        rows = [t[key] for t in ts]
        de = [d for d in (_delta(t, key) for t in ts) if d is not None]
        out[key] = {
            "n": len(rows), "stable": sum(r["stable"] for r in rows),
            "compared_with": _reference(key),
            "mean_energy_kj_per_res": float(np.mean([r["energy_kj_per_res"] for r in rows])) if rows else None,
            "mean_delta_vs_reference": float(np.mean(de)) if de else None,
            "mean_drift_A": float(np.nanmean([r["drift_rmsd_end_A"] for r in rows])) if rows else None,
            "max_displacement_nm": float(max(r["max_displacement_nm"] for r in rows)) if rows else None,
            "max_displacement_all_atoms_nm":
                float(max(r["max_displacement_all_atoms_nm"] for r in rows)) if rows else None,
            "md_cpu_s_per_ps_per_res": float(np.mean([r["cpu_s_md"] / (r["md_ps"] * r["n_residues"])
                                                      for r in rows if r["md_ps"] > 0])) if rows else None,
        }
    return out


def bars(summary, ps, n_targets):
    """The issue's bars, each with the figure it is judged on and 'met' / 'missed' / 'not measured'."""
    out = []

    def add(bar, key, ok, figure):
        s = summary.get(key)
        verdict = "not measured" if not s or not s["n"] else ("met" if ok(s) else "missed")
        out.append({"bar": bar, "structure": key, "figure": figure(s) if s and s["n"] else "",
                    "verdict": verdict})

    for key, how in (("minimized", "--minimize"), ("openmm", "--minimize --relax openmm")):
        add(f"100 % stable after `{how}`", key, lambda s: s["stable"] == s["n"],
            lambda s: f"{s['stable']}/{s['n']} stable")
        add(f"energy after `{how}` within {BAR_ENERGY_KJ_PER_RES:g} kJ/mol/res of the crystal's, same "
            "treatment, mean over targets", key,
            lambda s: s["mean_delta_vs_reference"] is not None
            and abs(s["mean_delta_vs_reference"]) <= BAR_ENERGY_KJ_PER_RES,
            lambda s: f"mean ΔE vs {s['compared_with']} {_fmt(s['mean_delta_vs_reference'])} kJ/mol/res")
    for key in ("raw", "sampled"):
        add(f"raw output (`{key}`, no relaxation) stable on ≥ {BAR_RAW_STABLE:.0%} of frames (goal)", key,
            lambda s: s["stable"] >= BAR_RAW_STABLE * s["n"],
            lambda s: f"{s['stable']}/{s['n']} stable ({100 * s['stable'] / s['n']:.0f} %)")
    partial = ps < ISSUE_PS or n_targets < ISSUE_TARGETS
    for b in out:
        b["protocol"] = f"{n_targets} target{'s' if n_targets != 1 else ''} at {ps:g} ps" + (
            f" (the issue's bars are for all {ISSUE_TARGETS} CASP targets at {ISSUE_PS:g} ps)" if partial else "")
    return out


def cpu_totals(targets):
    """CPU seconds of (evaluation, ``convert`` calls, crystal relaxations) over the targets without an error."""
    ok = [t for t in targets if "error" not in t]
    ev = sum(t[k]["cpu_s_total"] for t in ok for k in t["rows"] if "error" not in t[k])
    cv = sum(sum(t["convert_cpu_s"].values()) for t in ok)
    rv = sum(sum(t.get("relax_cpu_s", {}).values()) for t in ok)
    return ev, cv, rv


def markdown(report):
    ps, structures = report["ps"], report.get("structures", list(STRUCTURES))
    made = {"raw": "`convert T_ca.pdb -o raw.pdb --deterministic`",
            "sampled": f"`convert T_ca.pdb -o sampled.pdb --seed {SAMPLE_SEED}` (one sampled frame, no relaxation)",
            "minimized": "`... --deterministic --minimize` (fast relaxer, the default)",
            "openmm": "`... --deterministic --minimize --relax openmm` (OpenMM minimisation, OBC2, the default "
                      "`--relax-solvent`)"}
    lines = [
        "# MD-readiness of backmapped frames (issue 25)",
        "",
        f"Measured {report['date']} on {report['machine']}.",
        "",
        f"<!-- docs-test: slow: about {max(1, round(sum(cpu_totals(report['targets'])) / 60))} CPU minutes on "
        "one thread, on ../shared/data -->",
        "```bash",
        report["command"],
        "```",
        "",
        "Per target, the command line as a user runs it: `openmm-backmap coarsen T --levels ca -o T`, then "
        + "; ".join(f"**{k}** = {made[k]}" for k in structures) + ". "
        "The crystal is treated the same way: **crystal** as deposited (heavy atoms), **crystal+minimized** = its "
        "canonical heavy atoms through the fast relaxer (`FastRelaxer.relax_batch`, what `--minimize` runs), "
        "**crystal+openmm** = through `Relaxer.relax` (what `--relax openmm` runs), both built as the pipeline "
        "builds them, with their defaults. ΔE compares like with like: raw and sampled with crystal, minimized "
        "with crystal+minimized, openmm with crystal+openmm (the crystal+… rows with the crystal); the "
        "*vs* column names it.",
        "",
        "**Method.** Heavy atoms read in canonical order; OXT placed and hydrogens added by OpenMM "
        "`Modeller.addHydrogens` (pH 7, via `build_force_field_system`); AMBER ff14SB (`amber14-all.xml`) + "
        "OBC2 (`implicit/obc2.xml`), no cutoff. Hydrogens relaxed with the heavy atoms **frozen by setting "
        "their masses to 0** (OpenMM's minimiser holds massless particles fixed), then the single-point "
        "energy per residue. MD: `LangevinMiddleIntegrator`, 300 K, 1/ps, 2 fs, HBonds constraints, "
        f"**{ps:g} ps** per structure started straight from that structure (no further minimisation). "
        f"Stable = finite energy at every one of {CHECKPOINTS} check points, no **core heavy atom** > "
        f"{MAX_DISPLACEMENT_NM:g} nm from its start, and bond_ok (`frame_quality` against the force field's bond "
        f"lengths) ≥ {BOND_OK_MIN} % throughout. Core heavy atoms: all heavy atoms but those of the first and "
        f"last {TERMINAL_RESIDUES} residues of each chain (segment), superposed on their own start before "
        "measuring. The issue's literal rule counts every atom: hydrogens and free termini dominate it (crystals "
        "reach 0.7-0.8 nm in 2 ps), so it is reported beside it (*all atoms*, after superposing all heavy atoms) "
        "but not used. Drift = heavy-atom RMSD after superposition, last frame vs first (max over the run in "
        "brackets). CPU s = process CPU time of the evaluation (system build, H relaxation, MD) on one thread; "
        "convert / relax CPU s = the `convert` call's own (dominated by start-up) or the crystal relaxation's.",
        "",
    ]
    if ps < ISSUE_PS:
        lines += [f"**The runs are {ps:g} ps, not the issue's {ISSUE_PS:g} ps**; rerun with `--ps {ISSUE_PS:g}` "
                  f"(`--targets {ISSUE_TARGETS}` for all of CASP) for the issue's protocol.", ""]
    lines += [
        "| target | res | structure | E (kJ/mol/res) | ΔE | vs | bond_ok start % | clash start % | stable | "
        "max disp core (nm) | max disp all atoms (nm) | min bond_ok % | drift Å (max) | eval CPU s | "
        "convert / relax CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in report["targets"]:
        if "error" in t:
            lines.append(f"| {t['target']} | | | error: {t['error'][-200:]} |||||||||||")
            continue
        for key in t["rows"]:
            r = t[key]
            if "error" in r:
                lines.append(f"| {t['target']} | | {key} | error: {r['error']} ||||||||||||")
                continue
            prep = t["convert_cpu_s"].get(key, t.get("relax_cpu_s", {}).get(key))
            de = _delta(t, key)
            lines.append(
                f"| {t['target']} | {r['n_residues']} | {key} | {_fmt(r['energy_kj_per_res'])} | "
                f"{'' if de is None else _fmt(de)} | {_reference(key) or ''} | "
                f"{_fmt(r['bond_ok_percent_start'], 2)} | {_fmt(r['clash_percent_start'])} | "
                f"{'yes' if r['stable'] else 'NO'} | {_fmt(r['max_displacement_nm'], 2)} | "
                f"{_fmt(r['max_displacement_all_atoms_nm'], 2)} | "
                f"{_fmt(r['bond_ok_min_percent'], 2)} | {_fmt(r['drift_rmsd_end_A'], 2)} "
                f"({_fmt(r['drift_rmsd_max_A'], 2)}) | {_fmt(r['cpu_s_total'])} | "
                f"{'' if prep is None else _fmt(prep)} |")
    ev, cv, rv = cpu_totals(report["targets"])
    lines += ["", f"Total CPU: {ev:.0f} s of evaluation (energies + MD), {cv:.0f} s of `convert` calls and "
              f"{rv:.0f} s of crystal relaxations, one thread per process"
              + (f", {report['jobs']} targets at a time" if report.get("jobs", 1) > 1 else "") + "."]
    s = report["summary"]
    lines += ["", "## Summary", "",
              "| structure | stable | mean E (kJ/mol/res) | mean ΔE | vs | mean drift Å | max disp core (nm) | "
              "max disp all atoms (nm) | MD CPU s / ps / residue |",
              "|---|---|---|---|---|---|---|---|---|"]
    for key, v in s.items():
        lines.append(f"| {key} | {v['stable']}/{v['n']} | {_fmt(v['mean_energy_kj_per_res'])} | "
                     f"{_fmt(v['mean_delta_vs_reference'])} | {v['compared_with'] or ''} | "
                     f"{_fmt(v['mean_drift_A'], 2)} | {_fmt(v['max_displacement_nm'], 2)} | "
                     f"{_fmt(v['max_displacement_all_atoms_nm'], 2)} | {_fmt(v['md_cpu_s_per_ps_per_res'], 3)} |")
    lines += ["", "## The issue's bars", ""]
    if report["bars"]:
        lines += [f"Judged on these numbers: {report['bars'][0]['protocol']}.", ""]
    for b in report["bars"]:
        lines.append(f"- {b['bar']}: **{b['verdict']}**" + (f" ({b['figure']})" if b["figure"] else ""))
    q = report["cg2at2_quoted"]
    lines += [
        "",
        "## Reference: CG2AT2 (quoted from issue 25, not measured here)",
        "",
        "| method | setting | RMSD Å | clash % | bond_ok % | CPU s/structure | RMSD after its own 5 ps NVT |",
        "|---|---|---|---|---|---|---|",
        f"| CG2AT2 (quoted) | {q['setting']} | {q['rmsd_A']} | {q['clash_percent']} | {q['bond_ok_percent']} | "
        f"~{q['cpu_s_per_structure']} | {q['rmsd_after_own_5ps_nvt_A']} Å |",
        "",
        "No single-point energy or MD-stability figures exist for CG2AT2 on this protocol; the row is "
        "context only. FlowBack-Adjoint's claims (stable MD without relaxation, lower energies) are likewise "
        "quoted in the issue and not reproduced here.",
        "",
        "## Not done yet (issue 25)",
        "",
        "The eval ensembles; more than one sampled frame per target; 100 ps explicit TIP3P on a subset. Frames "
        "from real CG engine runs (CALVADOS 3, martini_openmm, OpenABC) are in [md_ready_cg.md](md_ready_cg.md) "
        "(`benchmarks/md_ready_cg.py`). `--export gromacs` through `gmx grompp`, minimisation and "
        "100 steps of `gmx mdrun` is tested where GROMACS is installed (`tests/run/test_gromacs_export.py`; "
        "commands in [continue_all_atom.md](../continue_all_atom.md#gromacs)).",
        "",
    ]
    return "\n".join(lines)


def build_report(targets, ps, platform, command, jobs=1, structures=tuple(STRUCTURES)):
    summary = summarize(targets)
    n_targets = sum("error" not in t for t in targets)
    return {
        "command": command,
        "date": datetime.date.today().isoformat(),
        "machine": f"shared {os.cpu_count()}-core CPU machine (other jobs running), OpenMM {platform} "
                   f"platform{' with 1 thread' if platform == 'CPU' else ''}, OMP_NUM_THREADS=1"
                   + (f", {jobs} worker processes" if jobs > 1 else ""),
        "platform": platform, "ps": ps, "jobs": jobs, "structures": [k for k in STRUCTURES if k in structures],
        "forcefield": FORCEFIELD, "implicit": IMPLICIT,
        "hydrogens": "OpenMM Modeller.addHydrogens (pH 7), relaxed with heavy-atom masses set to 0",
        "stability_criteria": {"finite_energy": True, "max_displacement_nm": MAX_DISPLACEMENT_NM,
                               "displacement_atoms": f"heavy atoms, first and last {TERMINAL_RESIDUES} residues of "
                                                     "each chain (segment) excluded, superposed on themselves",
                               "terminal_residues_excluded": TERMINAL_RESIDUES,
                               "bond_ok_min_percent": BOND_OK_MIN},
        "compared_with": {k: _reference(k) for k in ROW_ORDER},
        "cg2at2_quoted": CG2AT2_QUOTED,
        "targets": targets,
        "summary": summary,
        "bars": bars(summary, ps, n_targets),
    }


def _write(report, out):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w") as fh:
        json.dump(report, fh, indent=1)
    with open(out + ".md", "w") as fh:
        fh.write(markdown(report))


def _run_in_worker(target, a, structures):
    """One target in a fresh ``python md_ready.py --worker-out`` process with one thread; its result dict."""
    name = os.path.basename(target).split(".")[0]
    fd, res = tempfile.mkstemp(suffix=".json", prefix=f"md_ready_{name}_")
    os.close(fd)
    cmd = [sys.executable, os.path.abspath(__file__), "--targets", os.path.abspath(target), "--ps", str(a.ps),
           "--platform", a.platform, "--workdir", a.workdir, "--structures", ",".join(structures),
           "--worker-out", res]
    try:
        proc = subprocess.run(cmd, env=dict(os.environ, **ONE_THREAD_ENV), capture_output=True, text=True)
        if proc.returncode:
            return {"target": name, "error": f"worker failed (exit {proc.returncode}): {proc.stderr[-2000:]}"}
        with open(res) as fh:
            return json.load(fh)
    finally:
        os.unlink(res)


def _run_here(target, a, structures):
    name = os.path.basename(target).split(".")[0]
    try:
        return run_target(target, os.path.join(a.workdir, name), ps=a.ps, platform=a.platform, structures=structures)
    except Exception as err:  # one broken target must not cost the others' hours
        if a.worker_out:
            raise
        return {"target": name, "error": f"{type(err).__name__}: {err}"[:2000]}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--targets", default="4",
                   help="N smallest CASP targets, or comma-separated CASP names (T0872,...) or PDB paths")
    p.add_argument("--ps", type=float, default=ISSUE_PS, help="MD length per structure (default 20 ps)")
    p.add_argument("--structures", default=",".join(STRUCTURES),
                   help=f"comma-separated, of {','.join(STRUCTURES)} (default: all); the crystal rows they are "
                        "compared with come along")
    p.add_argument("--jobs", type=int, default=1,
                   help="targets run at once, each in its own one-thread process (default 1: in this process)")
    p.add_argument("--platform", default="CPU", choices=["CPU", "Reference", "CUDA"])
    p.add_argument("--workdir", default="/tmp/md_ready")
    p.add_argument("--out", default=DEFAULT_OUT, help="output stem (.json and .md are written)")
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    structures = [s for s in a.structures.split(",") if s]
    bad = set(structures) - set(STRUCTURES)
    if bad or not structures:
        p.error(f"--structures: choose from {','.join(STRUCTURES)}, got {a.structures!r}")
    if a.jobs < 1:
        p.error("--jobs must be >= 1")
    for k, v in ONE_THREAD_ENV.items():  # before OpenMM or torch is imported here, and for every child
        os.environ.setdefault(k, v)
    targets = pick_targets(a.targets)
    if a.worker_out:
        result = _run_here(targets[0], a, structures)
        with open(a.worker_out, "w") as fh:
            json.dump(result, fh)
        return result
    command = "OMP_NUM_THREADS=1 python benchmarks/md_ready.py " + " ".join(argv)
    results = [None] * len(targets)
    report = None
    t_start = time.time()

    def finished(i, result):
        nonlocal report
        results[i] = result
        print(f"{result['target']}: done at {time.time() - t_start:.0f} s wall"
              + (f" (error: {result['error'][:200]})" if "error" in result else ""), file=sys.stderr, flush=True)
        report = build_report([r for r in results if r is not None], a.ps, a.platform, command, a.jobs, structures)
        _write(report, a.out)

    if a.jobs == 1:
        for i, target in enumerate(targets):
            finished(i, _run_here(target, a, structures))
    else:
        # largest file first (MD cost grows with size squared): the last target does not run alone for hours
        order = sorted(range(len(targets)), key=lambda i: -os.path.getsize(targets[i]))
        with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
            futures = {pool.submit(_run_in_worker, targets[i], a, structures): i for i in order}
            for fut in concurrent.futures.as_completed(futures):
                finished(futures[fut], fut.result())
    return report


if __name__ == "__main__":
    main()
