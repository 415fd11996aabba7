"""``convert --minimize --export gromacs`` as a GROMACS user runs it (issue 25).

Without GROMACS, :func:`test_top_defines_what_grompp_needs` checks the ``.top`` for what ``gmx grompp``,
``gmx solvate`` and ``gmx genion`` need. Where ``gmx`` is installed (Debian's ``gromacs`` package), the rest run
the commands of docs/continue_all_atom.md ("GROMACS"): backmap Trp-cage from its C-alpha trace, solvate in the
topology's TIP3P, neutralise and add 0.15 M NaCl with ``gmx genion``, minimise, then 100 steps of NVT MD on one
thread; ``gmx grompp`` must accept every step without ``-maxwarn``. A rerun of the protein alone checks that GROMACS
gives the bonded and 1-4 energies of the OpenMM System the export translates.
"""

import re
import shutil
import subprocess
from pathlib import Path

import mdtraj as md
import numpy as np
import openmm
import openmm.unit as u
import pytest

from openmm_backmap.cli import main
from openmm_backmap.run.relax import export_system

GMX = shutil.which("gmx")
needs_gmx = pytest.mark.skipif(GMX is None, reason="GROMACS (gmx) not installed")

# the .mdp files of docs/continue_all_atom.md
IONS_MDP = """\
; only for the .tpr that gmx genion reads: nothing runs with it
integrator      = steep
nsteps          = 500
cutoff-scheme   = Verlet
pbc             = xyz
coulombtype     = cutoff
rcoulomb        = 1.0
rvdw            = 1.0
"""
EM_MDP = """\
integrator      = steep
nsteps          = 500
emtol           = 1000
cutoff-scheme   = Verlet
pbc             = xyz
coulombtype     = PME
rcoulomb        = 1.0
rvdw            = 1.0
"""
MD_MDP = """\
integrator      = md
dt              = 0.002
nsteps          = 100
nstcalcenergy   = 10
nstenergy       = 10
nstlog          = 10
cutoff-scheme   = Verlet
pbc             = xyz
coulombtype     = PME
rcoulomb        = 1.0
rvdw            = 1.0
DispCorr        = EnerPres
constraints     = h-bonds
tcoupl          = V-rescale
tc-grps         = System
tau-t           = 0.1
ref-t           = 300
gen-vel         = yes
gen-temp        = 300
gen-seed        = 1
"""


def _sections(text):
    """{section: [its lines, comments and blank lines left out]} of a .top; repeated sections concatenated, and
    ``[ moleculetype ]`` and ``[ atoms ]`` keyed per molecule type as ('atoms', name)."""
    out, key, molecule = {}, None, None
    for line in text.splitlines():
        line = line.split(";")[0].strip()
        if not line or line.startswith("#"):
            continue
        if m := re.fullmatch(r"\[\s*(\w+)\s*\]", line):
            key = m.group(1)
            continue
        if key == "moleculetype":
            molecule = line.split()[0]
        out.setdefault((key, molecule) if key in ("atoms", "settles") else key, []).append(line.split())
    return out


def test_top_defines_what_grompp_needs(tmp_path, tests_data):
    top, gro = export_system(md.load_pdb(str(tests_data / "trpcage.pdb")), "gromacs", tmp_path / "trp")
    text = Path(top).read_text()
    headers = re.findall(r"^\[ (\w+) \]", text, flags=re.M)
    assert headers[:2] == ["defaults", "atomtypes"]
    assert headers[-2:] == ["system", "molecules"]  # [ molecules ] last: gmx solvate and gmx genion append to it
    assert "#include" not in text and "partial" not in text  # self-contained; the header names the final file
    sec = _sections(text)
    assert sec["defaults"] == [["1", "2", "no", "1", "0.83333333"]]  # LJ, Lorentz-Berthelot, AMBER 1-4 scaling
    types = {row[0]: row for row in sec["atomtypes"]}
    assert len(types) == len(sec["atomtypes"])  # no atom type defined twice
    # the water and ions are defined (TIP3P with SETTLE, Na+ / Cl- of amber14/tip3p.xml) but not added
    assert [row[0] for row in sec["moleculetype"]] == ["system1", "SOL", "NA", "CL"]
    assert sec["molecules"] == [["system1", "1"]]
    assert [(r[1], r[4], float(r[6])) for r in sec[("atoms", "SOL")]] == [("OW", "OW", -0.834), ("HW", "HW1", 0.417),
                                                                          ("HW", "HW2", 0.417)]
    assert sec[("settles", "SOL")] == [["1", "1", "0.095720", "0.151390"]]
    assert "#ifdef FLEXIBLE" in text
    assert [float(r[6]) for r in sec[("atoms", "NA")] + sec[("atoms", "CL")]] == [1.0, -1.0]
    np.testing.assert_allclose([float(x) for x in types["OW"][5:7]], [0.3150752406575124, 0.635968])
    # every atom's type is defined; the protein's charge is Trp-cage's +1 (N-terminus, Lys, Arg, Asp, C-terminus)
    atoms = [row for (key, _), rows in ((k, v) for k, v in sec.items() if isinstance(k, tuple)) if key == "atoms"
             for row in rows]
    assert {row[1] for row in atoms} <= set(types)
    assert sum(float(r[6]) for r in sec[("atoms", "system1")]) == pytest.approx(1.0, abs=1e-4)
    n_gro = int(Path(gro).read_text().splitlines()[1])
    assert n_gro == len(sec[("atoms", "system1")]) == 304


def _gmx(*args, cwd, stdin=None):
    """Run ``gmx -quiet ARGS`` in ``cwd``; its stdout + stderr, after checking that it succeeded."""
    proc = subprocess.run([GMX, "-quiet", *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"gmx {' '.join(args)} failed:\n{out[-3000:]}"
    return out


def _energies(cwd, edr, terms):
    """{term: values per frame} from ``gmx energy`` (terms as it names them, spaces as dashes)."""
    _gmx("energy", "-f", edr, "-o", "energy.xvg", cwd=cwd, stdin="\n".join(terms) + "\n\n")
    lines = (cwd / "energy.xvg").read_text().splitlines()
    legends = [m.group(1).replace(" ", "-") for line in lines if (m := re.match(r'@ s\d+ legend "(.*)"', line))]
    assert sorted(legends) == sorted(terms)
    values = np.array([line.split() for line in lines if line.strip() and line[0] not in "#@"], dtype=float)
    return dict(zip(legends, values[:, 1:].T))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tests_data):
    """The user's files: Trp-cage coarsened to C-alphas, backmapped, minimised and exported for GROMACS."""
    d = tmp_path_factory.mktemp("gmx")
    assert main(["coarsen", str(tests_data / "trpcage.pdb"), "--levels", "ca", "-o", str(d / "trp")]) == 0
    assert main(["convert", str(d / "trp_ca.pdb"), "-o", str(d / "aa.pdb"), "--deterministic", "--device", "cpu",
                 "--minimize", "--export", "gromacs"]) == 0
    assert (d / "aa_gromacs.top").is_file() and (d / "aa_gromacs.gro").is_file()
    return d


@needs_gmx
def test_grompp_and_100_md_steps(exported):
    d = exported
    for name, text in (("ions.mdp", IONS_MDP), ("em.mdp", EM_MDP), ("md.mdp", MD_MDP)):
        (d / name).write_text(text)
    shutil.copy(d / "aa_gromacs.top", d / "topol.top")
    _gmx("solvate", "-cp", "aa_gromacs.gro", "-cs", "spc216.gro", "-p", "topol.top", "-o", "solvated.gro", cwd=d)
    _gmx("grompp", "-f", "ions.mdp", "-c", "solvated.gro", "-p", "topol.top", "-o", "ions.tpr", cwd=d)
    _gmx("genion", "-s", "ions.tpr", "-o", "ionized.gro", "-p", "topol.top", "-pname", "NA", "-nname", "CL",
         "-neutral", "-conc", "0.15", "-seed", "1", cwd=d, stdin="SOL\n")
    molecules = dict(line.split() for line in (d / "topol.top").read_text().split("[ molecules ]")[1].splitlines()
                     if line.strip() and not line.startswith(";"))
    assert int(molecules["SOL"]) > 1000 and int(molecules["NA"]) == int(molecules["CL"]) - 1  # Trp-cage is +1
    # every grompp without -maxwarn: a warning would stop it
    out = _gmx("grompp", "-f", "em.mdp", "-c", "ionized.gro", "-p", "topol.top", "-o", "em.tpr", cwd=d)
    assert "non-zero total charge" not in out
    _gmx("mdrun", "-deffnm", "em", "-nt", "1", "-ntmpi", "1", cwd=d)
    assert "converged to Fmax" in (d / "em.log").read_text()
    _gmx("grompp", "-f", "md.mdp", "-c", "em.gro", "-p", "topol.top", "-o", "md.tpr", cwd=d)
    _gmx("mdrun", "-deffnm", "md", "-nt", "1", "-ntmpi", "1", cwd=d)
    assert "Statistics over 101 steps" in (d / "md.log").read_text()
    e = _energies(d, "md.edr", ["Potential", "Total-Energy", "Temperature"])
    assert len(e["Potential"]) == 11  # steps 0, 10 ... 100
    assert all(np.isfinite(v).all() for v in e.values())
    assert (e["Potential"] < 0).all()  # a solvated protein
    # velocities drawn at 300 K on a minimised structure: half the kinetic energy flows into the potential first
    assert ((e["Temperature"] > 100.0) & (e["Temperature"] < 400.0)).all()


@needs_gmx
def test_gromacs_energies_match_openmm(exported, tmp_path):
    """The protein alone, in vacuum in its box: GROMACS's bonded and 1-4 terms are those of the OpenMM System."""
    relaxed = md.load_pdb(str(exported / "aa.pdb"), standard_names=False)
    top, gro = export_system(relaxed, "gromacs", tmp_path / "p")
    xml, _ = export_system(relaxed, "openmm", tmp_path / "p")
    # plain cut-off electrostatics: the protein's net charge gives a note, not a warning (no -maxwarn)
    (tmp_path / "rerun.mdp").write_text("integrator = md\nnsteps = 0\ncutoff-scheme = Verlet\npbc = xyz\n"
                                        "coulombtype = cutoff\nrcoulomb = 1.0\nrvdw = 1.0\n")
    _gmx("grompp", "-f", "rerun.mdp", "-c", gro, "-p", top, "-o", "rerun.tpr", cwd=tmp_path)
    _gmx("mdrun", "-deffnm", "rerun", "-rerun", gro, "-nt", "1", "-ntmpi", "1", cwd=tmp_path)
    terms = ["Bond", "Angle", "Proper-Dih.", "Per.-Imp.-Dih.", "LJ-14", "Coulomb-14"]
    gmx = {k: v[0] for k, v in _energies(tmp_path, "rerun.edr", terms).items()}

    system = openmm.XmlSerializer.deserialize(Path(xml).read_text())
    pos = md.load(gro).xyz[0].astype(np.float64)  # the .gro's rounded coordinates, as GROMACS read them
    for i, force in enumerate(system.getForces()):
        force.setForceGroup(i)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(pos)
    by_force = {type(f).__name__: context.getState(getEnergy=True, groups={i}).getPotentialEnergy()
                .value_in_unit(u.kilojoule_per_mole) for i, f in enumerate(system.getForces())}
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    lj14 = coulomb14 = 0.0
    for k in range(nonbonded.getNumExceptions()):
        i, j, qq, sigma, eps = nonbonded.getExceptionParameters(k)
        qq, sigma, eps = qq.value_in_unit(u.elementary_charge**2), sigma.value_in_unit(u.nanometer), eps._value
        r = np.linalg.norm(pos[i] - pos[j])
        coulomb14 += 138.935458 * qq / r  # ONE_4PI_EPS0 in kJ mol^-1 nm e^-2
        lj14 += 4 * eps * ((sigma / r) ** 12 - (sigma / r) ** 6)
    expected = {"Bond": by_force["HarmonicBondForce"], "Angle": by_force["HarmonicAngleForce"],
                "Dihedrals": by_force["PeriodicTorsionForce"], "LJ-14": lj14, "Coulomb-14": coulomb14}
    got = dict(gmx, Dihedrals=gmx["Proper-Dih."] + gmx["Per.-Imp.-Dih."])
    for term, value in expected.items():
        assert got[term] == pytest.approx(value, rel=1e-4, abs=0.01), term
