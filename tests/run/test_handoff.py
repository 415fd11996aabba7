"""Hand-off to other engines (openmm_backmap.run.relax.handoff) and ``convert --minimize --export``.

Every export is loaded back (ParmEd for GROMACS and AMBER, OpenMM's XmlSerializer and PDBFile for OpenMM) and its
potential energy is compared with the energy the relaxer's own System gives the same coordinates (the ones read back
from the file, so coordinate rounding in the file cancels). The tolerance, 1e-5 relative, covers the parameters the
files store to 6-8 significant digits (GROMACS ``.top`` charges and force constants, AMBER ``%16.8E`` fields);
measured differences are ~1e-7 relative.
"""

from pathlib import Path

import mdtraj as md
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import parmed
import pytest

from openmm_backmap.cli import main
from openmm_backmap.run import convert_trajectory
from openmm_backmap.run.relax import AMBER_RADII, Relaxer, export_system
from openmm_backmap.structure import InputError, OutputExistsError

RELATIVE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def relaxed(trpcage):
    """Trp-cage relaxed in vacuum on the Reference platform: (relaxer, result with hydrogens, heavy-atom trajectory)."""
    relaxer = Relaxer.from_ensemble(trpcage, implicit=None, nonbonded_cutoff=None, platform="Reference",
                                    max_iterations=50)
    res = relaxer.relax(trpcage.xyz[0], keep_hydrogens=True)
    return relaxer, res, md.Trajectory(res.xyz[None], trpcage.topology())


def _energy(system, pos_nm, groups=-1):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.asarray(pos_nm, dtype=np.float64))
    return context.getState(getEnergy=True, groups=groups).getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)


def _load_back(fmt, paths):
    """(System, positions nm, atom names) of an export, read with the engine's own reader."""
    if fmt == "openmm":
        with open(paths[0], encoding="utf-8") as fh:
            system = openmm.XmlSerializer.deserialize(fh.read())
        pdb = app.PDBFile(paths[1])
        return system, pdb.getPositions(asNumpy=True).value_in_unit(u.nanometer), [a.name for a in pdb.topology.atoms()]
    structure = parmed.load_file(paths[0], xyz=paths[1])
    return structure.createSystem(), np.asarray(structure.coordinates) / 10.0, [a.name for a in structure.atoms]


@pytest.mark.parametrize("fmt", ["gromacs", "amber", "openmm"])
def test_export_energy_matches_openmm(tmp_path, relaxed, fmt):
    relaxer, _, heavy = relaxed
    paths = export_system(heavy, fmt, tmp_path / "trp")
    suffixes = {"gromacs": (".top", ".gro"), "amber": (".prmtop", ".inpcrd"), "openmm": (".xml", ".pdb")}[fmt]
    assert paths == [str(tmp_path / f"trp_{fmt}") + s for s in suffixes]
    system, pos, names = _load_back(fmt, paths)
    assert names == [a.name for a in relaxer.topology_h.atoms()]  # hydrogens and OXT, in the relaxer's order
    e_export = _energy(system, pos)
    e_openmm = _energy(relaxer.system, pos, groups={0})  # the relaxer's force field, restraints left out
    assert np.isfinite(e_openmm)
    assert abs(e_export - e_openmm) <= RELATIVE_TOLERANCE * abs(e_openmm)
    # the heavy atoms are the relaxed ones (the .gro centres the protein in its box)
    shift = pos[relaxer.heavy_index].mean(axis=0) - heavy.xyz[0].mean(axis=0) if fmt == "gromacs" else 0.0
    np.testing.assert_allclose(pos[relaxer.heavy_index] - shift, heavy.xyz[0], atol=1e-3)


def test_export_keeps_given_hydrogens_and_implicit_solvent(tmp_path, relaxed):
    relaxer, res, _ = relaxed
    full = md.Trajectory(res.xyz_h[None], md.Topology.from_openmm(res.topology_h))
    paths = export_system(full, "openmm", tmp_path / "trp", implicit="gbn2", nonbonded_cutoff=1.2)
    system, pos, _ = _load_back("openmm", paths)
    np.testing.assert_allclose(pos, res.xyz_h, atol=1e-4)  # the relaxed hydrogens, not re-placed ones
    assert any(isinstance(f, openmm.CustomGBForce) for f in system.getForces())  # GBn2 is part of the System
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nonbonded.getNonbondedMethod() == openmm.NonbondedForce.CutoffNonPeriodic
    assert nonbonded.getCutoffDistance().value_in_unit(u.nanometer) == pytest.approx(1.2)
    amber = export_system(full, "amber", tmp_path / "trp", implicit="gbn2", nonbonded_cutoff=1.2)
    parm = parmed.load_file(amber[0])
    assert AMBER_RADII["implicit/gbn2.xml"] in parm.parm_data["RADIUS_SET"][0]


def test_export_several_frames(tmp_path, relaxed):
    _, _, heavy = relaxed
    two = md.Trajectory(np.concatenate([heavy.xyz, heavy.xyz + 0.1]), heavy.topology)
    paths = export_system(two, "amber", tmp_path / "pair")
    assert paths == [str(tmp_path / f) for f in ("pair_amber.prmtop", "pair_amber_0.inpcrd", "pair_amber_1.inpcrd")]
    xyz = [np.asarray(parmed.load_file(paths[0], xyz=p).coordinates) for p in paths[1:]]
    np.testing.assert_allclose(xyz[1] - xyz[0], 1.0, atol=1e-4)  # one file per frame, 0.1 nm = 1 Å apart


def test_export_bad_input(tmp_path, relaxed):
    _, _, heavy = relaxed
    with pytest.raises(InputError, match="unknown export format 'charmm'"):
        export_system(heavy, "charmm", tmp_path / "x")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file, not a directory"):
        export_system(heavy, "gromacs", tmp_path / "file" / "x")
    paths = export_system(heavy, "gromacs", tmp_path / "x")
    with pytest.raises(OutputExistsError):
        export_system(heavy, "gromacs", tmp_path / "x")
    assert export_system(heavy, "gromacs", tmp_path / "x", force=True) == paths
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "x_gromacs.gro", "x_gromacs.top"]  # no partial files


@pytest.fixture(scope="module")
def ca_pdb(tmp_path_factory, trpcage):
    from openmm_backmap.run.coarsening import coarsen_files

    d = tmp_path_factory.mktemp("ca")
    return coarsen_files(trpcage.source, levels="ca", out_prefix=str(d / "trp"), verbose=False)["ca"]["pdb"]


@pytest.mark.parametrize("relax_options", [None, {"method": "openmm", "platform": "Reference", "implicit": "vacuum",
                                                   "max_iterations": 100}], ids=["default-relaxer", "openmm"])
def test_convert_minimize_export(tmp_path, ca_pdb, tiny_ca_backmapper, relax_options):
    out = tmp_path / "relaxed.dcd"
    s = convert_trajectory(ca_pdb, out, model=tiny_ca_backmapper, seed=2, minimize=True, export="gromacs",
                           relax_options=relax_options, progress=False)
    assert s["export"] == [str(tmp_path / "relaxed_gromacs.top"), str(tmp_path / "relaxed_gromacs.gro")]
    written = md.load(str(out), top=s["topology_file"]).xyz[0]
    structure = parmed.load_file(s["export"][0], xyz=s["export"][1])
    heavy = np.array([[a.xx, a.xy, a.xz] for a in structure.atoms if a.element > 1 and a.name != "OXT"]) / 10.0
    assert len(structure.atoms) > 1.8 * len(written)  # hydrogens added
    np.testing.assert_allclose(heavy - heavy.mean(axis=0), written - written.mean(axis=0), atol=1e-3)
    assert np.isfinite(_energy(structure.createSystem(), np.asarray(structure.coordinates) / 10.0))


def test_export_relaxes_with_the_force_field_unless_told(tmp_path, ca_pdb, tiny_ca_backmapper):
    """An exported system starts MD: without a named method the relaxation is the OpenMM relaxer's (issue 25: the
    fast relaxer leaves the energy far above the crystal's); a named method is kept."""
    s = convert_trajectory(ca_pdb, tmp_path / "a.pdb", model=tiny_ca_backmapper, seed=2, minimize=True,
                           export="openmm", relax_options={"platform": "Reference", "implicit": "vacuum",
                                                           "max_iterations": 50}, progress=False)
    assert s["relax_method"] == "openmm"
    s = convert_trajectory(ca_pdb, tmp_path / "b.pdb", model=tiny_ca_backmapper, seed=2, minimize=True,
                           export="openmm", relax_options={"method": "fast"}, progress=False)
    assert s["relax_method"] == "fast"
    s = convert_trajectory(ca_pdb, tmp_path / "c.pdb", model=tiny_ca_backmapper, seed=2, minimize=True,
                           progress=False)
    assert s["relax_method"] == "fast"  # no export: the fast relaxer stays the default


def test_convert_export_needs_minimize(tmp_path, ca_pdb, tiny_ca_model, capsys):
    out = str(tmp_path / "aa.pdb")
    assert main(["convert", ca_pdb, "-o", out, "--model", str(tiny_ca_model), "--export", "amber"]) == 2
    err = capsys.readouterr().err.strip()
    assert "add --minimize" in err and "minimize=True" not in err and len(err.splitlines()) == 1
    with pytest.raises(InputError, match="unknown export format"):
        convert_trajectory(ca_pdb, out, model=tiny_ca_model, minimize=True, export="lammps", progress=False)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_python_export_names_are_the_cli_names(tmp_path, relaxed, ca_pdb, tiny_ca_model, capsys):
    """Issue 23, item 9: ``export_system(relaxed, 'amber', 'py')`` wrote ``py.prmtop`` where ``convert -o py.pdb
    --export amber`` writes ``py_amber.prmtop``. Both now take their names from ``export_paths``."""
    _, _, heavy = relaxed
    cli, py = tmp_path / "cli", tmp_path / "py"
    assert main(["convert", ca_pdb, "-o", str(cli / "run.pdb"), "--model", str(tiny_ca_model), "--minimize",
                 "--export", "amber"]) == 0
    written = sorted(p.name for p in cli.iterdir() if "_amber" in p.name)
    paths = export_system(heavy, "amber", py / "run")
    assert written == sorted(p.name for p in py.iterdir()) == sorted(Path(p).name for p in paths) \
        == ["run_amber.inpcrd", "run_amber.prmtop"]
    assert "amber system: " + ", ".join(str(cli / n) for n in reversed(written)) in capsys.readouterr().out
