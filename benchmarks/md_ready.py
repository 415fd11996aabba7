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
  free termini (the crystals reach 0.7-0.8 nm in 2 ps). At 20 ps the stability rule fails crystals too (a
  surface side chain swings 1.1 nm; one bond 10 % long for one check point), so a structural rule is reported
  beside it, ``intact``: finite, no core backbone atom (N, CA, C, O) more than 1 nm from its start after
  superposing the core backbone, and no heavy-atom bond longer than ``BROKEN_BOND_RATIO`` (1.25) times its
  force-field length at any check point (``longest_bond`` names the most stretched one). ``d_residues_start``
  and ``cis_peptides_start`` count D residues and non-proline cis peptides of the starting structure;
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
import glob
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

CASP_DIR = "/work/shared/data/eval/chains/casp"
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "docs", "benchmarks", "md_ready")
#: Environment of every worker and CLI call: one thread.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                  "OPENMM_CPU_THREADS": "1"}

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the report helpers sit next to this script
from _md_ready_report import (  # noqa: E402
    BACKBONE_ATOMS, BOND_OK_MIN, BROKEN_BOND_RATIO, CHECKPOINTS, CRYSTAL_RELAX, IMPLICIT,
    ISSUE_PS, MAX_DISPLACEMENT_NM, REFERENCE, ROW_ORDER, STRUCTURES, TERMINAL_RESIDUES, build_report, markdown,
    merge_reports)


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


def max_moved(start, x, index, of=None):
    """The largest displacement (nm) from ``start`` of the atoms ``of`` (default: ``index``) after superposing the
    atoms ``index`` on their start."""
    of = index if of is None else of
    return float(np.linalg.norm(_superposed(start[index], x, index)[of] - start[of], axis=1).max())



class RunChecks:
    """What an MD run did to a structure, from its heavy atoms (canonical order, nm) at each check point.

    The stability rule and the structural rule ("intact") of the module docstring, the most stretched bond by
    name, bond_ok and clashes, and the heavy-atom drift; the implicit-solvent runs here and the explicit-water
    runs of ``md_ready_explicit.py`` share it.

    Examples
    --------
    >>> from openmm_backmap.io.read import load_ensemble  # doctest: +SKIP
    >>> ens = load_ensemble('tests/data/trpcage.pdb')  # doctest: +SKIP
    >>> checks = RunChecks(ens.xyz[0], ens, r0)  # doctest: +SKIP
    >>> checks.update(x_heavy, t_ps=2.0)  # doctest: +SKIP
    >>> checks.result(finite=True)['intact']  # doctest: +SKIP
    True
    """

    def __init__(self, start_heavy, ens, r0):
        from openmm_backmap.evaluation import frame_quality

        self.start = np.asarray(start_heavy, dtype=np.float64)
        self.seq, self.seg, self.r0 = ens.sequence, ens.segment_start, r0
        self.residue, self.names = ens.layout.atom_residue, np.asarray(ens.layout.atom_names)
        self.core = core_heavy_atoms(self.seq, self.seg)
        self.backbone = self.core[np.isin(self.names[self.core], BACKBONE_ATOMS)]
        known = np.isfinite(r0)
        self.bonds, self.r0_known = ens.layout.bonds(self.seg)[known], r0[known]
        clash0, ok0 = frame_quality(self.start, self.seq, self.seg, r0)
        self.out = {"clash_percent_start": float(clash0[0]), "bond_ok_percent_start": float(ok0[0]),
                    "max_displacement_nm": 0.0, "max_displacement_backbone_nm": 0.0, "max_bond_stretch": 0.0,
                    "longest_bond": "", "bond_ok_min_percent": 100.0, "clash_percent_end": 0.0,
                    "drift_rmsd_end_A": 0.0, "drift_rmsd_max_A": 0.0, "check_points": 0}

    def _atom_name(self, i):
        return f"{self.seq[self.residue[i]]}{self.residue[i] + 1} {self.names[i]}"

    def update(self, x, t_ps):
        """One check point: heavy atoms ``x`` (nm, canonical order) at ``t_ps``."""
        from openmm_backmap.evaluation import frame_quality

        x = np.asarray(x, dtype=np.float64)
        o = self.out
        o["check_points"] += 1
        o["max_displacement_nm"] = max(o["max_displacement_nm"], max_moved(self.start, x, self.core))
        o["max_displacement_backbone_nm"] = max(o["max_displacement_backbone_nm"],
                                                max_moved(self.start, x, self.backbone))
        ratio = np.linalg.norm(x[self.bonds[:, 0]] - x[self.bonds[:, 1]], axis=1) / self.r0_known
        if ratio.max() > o["max_bond_stretch"]:
            i, j = self.bonds[int(np.argmax(ratio))]
            o["max_bond_stretch"] = float(ratio.max())
            o["longest_bond"] = f"{self._atom_name(i)}-{self._atom_name(j)} x{ratio.max():.3f} at {t_ps:g} ps"
        rmsd = 10 * _kabsch_rmsd(self.start, x)[0]
        o["drift_rmsd_end_A"], o["drift_rmsd_max_A"] = rmsd, max(o["drift_rmsd_max_A"], rmsd)
        clash, ok = frame_quality(x, self.seq, self.seg, self.r0)
        o["bond_ok_min_percent"] = min(o["bond_ok_min_percent"], float(ok[0]))
        o["clash_percent_end"] = float(clash[0])

    def result(self, finite, failure=""):
        """The measures so far and the two verdicts (a run that was not ``finite`` fails both)."""
        o = dict(self.out)
        o["stable"] = bool(finite and o["max_displacement_nm"] <= MAX_DISPLACEMENT_NM
                           and o["bond_ok_min_percent"] >= BOND_OK_MIN)
        o["intact"] = bool(finite and o["max_displacement_backbone_nm"] <= MAX_DISPLACEMENT_NM
                           and o["max_bond_stretch"] <= BROKEN_BOND_RATIO)
        o["finite"], o["failure"] = bool(finite), failure
        return o


def evaluate_structure(path, ps=20.0, platform="CPU", seed=1, frame=0):
    """Single-point energy and MD stability of one heavy-atom structure, model ``frame`` of ``path`` (see the
    module docstring).

    Returns a dict of plain floats / bools (JSON-ready).
    """
    import openmm
    import openmm.unit as u

    from openmm_backmap.evaluation.quality import stereo_defects
    from openmm_backmap.io.read import load_ensemble
    from openmm_backmap.run.relax.systems import build_force_field_system, hydrogen_collapse, reference_bond_lengths

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
    n_core = len(core_heavy_atoms(seq, seg))
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
    collapse = hydrogen_collapse(top, pos)  # the product's check (the OpenMM relaxer runs it too)
    if collapse:  # a Coulomb singularity, not the structure's energy
        energy = float("nan")
    del ctx
    t_energy = time.process_time() - t0

    d_res, cis = stereo_defects(xyz, seq, seg)
    out = {"n_residues": n_res, "n_atoms": int(top.getNumAtoms()), "n_core_heavy_atoms": n_core,
           "energy_kj_per_res": energy / n_res,
           "energy_before_h_relax_kj_per_res": e_before / n_res,
           "heavy_atoms_moved_in_h_relax_nm": heavy_moved, "hydrogen_collapse": collapse,
           "d_residues_start": int(d_res.sum()), "cis_peptides_start": int(cis.sum()),
           "cpu_s_energy": t_energy}
    if ps <= 0:  # energies only: the starting structure's checks, no verdicts
        start = RunChecks(xyz, ens, r0).out
        out.update({k: start[k] for k in ("clash_percent_start", "bond_ok_percent_start")},
                   md_ps=0.0, md_ps_requested=0.0, stable=None, intact=None, cpu_s_md=0.0,
                   cpu_s_total=time.process_time() - t0)
        return out

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
    checks = RunChecks(start[heavy_index], ens, r0)
    finite, failure = True, ""
    max_disp_all = 0.0
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
        # the issue's literal rule (every atom, after superposing the heavy atoms); RunChecks does the core
        max_disp_all = max(max_disp_all, max_moved(start, x, heavy_index, of=slice(None)))
        checks.update(x[heavy_index], done * 0.002)
    e_end = e if finite else float("nan")
    cpu_md = time.process_time() - t_md
    out.update({"md_ps": done * 0.002, "md_ps_requested": n_steps * 0.002, **checks.result(finite, failure),
                "max_displacement_all_atoms_nm": max_disp_all, "energy_end_kj_per_res": e_end / n_res,
                "cpu_s_md": cpu_md, "cpu_s_total": time.process_time() - t0})
    return out


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
    ``BackmapPipeline`` builds them, with their defaults), written to ``out_path``. Returns its CPU seconds,
    heavy-atom RMSD to the crystal (Å) and convergence."""
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


def _write(report, out, render=markdown):
    """``out``.json and ``out``.md (``render(report)``)."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w") as fh:
        json.dump(report, fh, indent=1)
    with open(out + ".md", "w") as fh:
        fh.write(render(report))


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
    p.add_argument("--ps", type=float, default=ISSUE_PS,
                   help="MD length per structure (default 20 ps; 0: single-point energies only, no MD)")
    p.add_argument("--structures", default=",".join(STRUCTURES),
                   help=f"comma-separated, of {','.join(STRUCTURES)} (default: all); the crystal rows they are "
                        "compared with come along")
    p.add_argument("--jobs", type=int, default=1,
                   help="targets run at once, each in its own one-thread process (default 1: in this process)")
    p.add_argument("--platform", default="CPU", choices=["CPU", "Reference", "CUDA"])
    p.add_argument("--workdir", default="/tmp/md_ready")
    p.add_argument("--out", default=DEFAULT_OUT, help="output stem (.json and .md are written)")
    p.add_argument("--merge", nargs="+", metavar="JSON", default=None,
                   help="join the .json reports of runs split over processes into one (--out required); runs nothing")
    p.add_argument("--comment", action="append", default=[],
                   help="with --merge: a line for the report's command block (why a run was split or repeated)")
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.merge:
        if a.out == DEFAULT_OUT:
            p.error("--merge needs --out: the stem of the joined report")
        reports = []
        for path in a.merge:
            with open(path) as fh:
                reports.append(json.load(fh))
        try:
            report = merge_reports(reports)
        except ValueError as err:
            p.error(f"--merge: {err}")
        report["command"] += "".join(f"\n# {line}" for line in a.comment)
        report["command"] += "\n# joined by: python benchmarks/md_ready.py " + shlex.join(argv)
        _write(report, a.out)
        return report
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
