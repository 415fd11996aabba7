"""Post-hoc conversion (openmm_backmap.run.conversion) and the ``convert`` CLI verb."""

import mdtraj as md
import numpy as np
import pytest

from openmm_backmap.cli import main
from openmm_backmap.io import load_ensemble
from openmm_backmap.run import BadFrameWarning
from openmm_backmap.run import convert_trajectory as convert

QUIET = {"progress": False}


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory, trpcage):
    """Trp-cage coarsened to C-alphas (PDB + 1-frame DCD) and a 7-frame noisy CA XTC (5 ps apart)."""
    from openmm_backmap.run.coarsening import coarsen_files

    d = tmp_path_factory.mktemp("ca")
    files = coarsen_files(trpcage.source, levels="ca", out_prefix=str(d / "trp"), verbose=False)["ca"]
    rng = np.random.default_rng(0)
    ca = trpcage.ca_xyz[0]
    xyz = (ca[None] + rng.normal(scale=0.01, size=(7, 20, 3))).astype(np.float32)
    md.Trajectory(xyz, md.load_topology(files["pdb"]), time=np.arange(7) * 5.0).save_xtc(str(d / "traj.xtc"))
    files.update(traj=str(d / "traj.xtc"), traj_xyz=xyz, dir=d)
    return files


def _ca(ens):
    return ens.xyz[:, ens.layout.ca_index]


def test_convert_ca_pdb(tmp_path, ca_files, trpcage, tiny_ca_backmapper):
    out = tmp_path / "aa.pdb"
    s = convert(ca_files["pdb"], out, model=tiny_ca_backmapper, samples=3, seed=1, **QUIET)
    assert (s["frames_in"], s["frames_written"], s["samples"]) == (1, 3, 3)
    ens = load_ensemble(out)
    assert ens.sequence == trpcage.sequence and ens.n_frames == 3 and ens.mask.all()
    np.testing.assert_allclose(_ca(ens), np.repeat(trpcage.ca_xyz, 3, axis=0), atol=1e-3)
    assert 0.0 <= s["clash_percent"]["before"] <= 100.0 and s["clash_percent"]["after"] is None
    assert s["bond_ok_percent"]["before"] > 90.0  # template geometry: bonds close to ff14SB lengths
    assert s["frames_per_second"] > 0


def test_convert_dcd_with_topology_stride_chunk_samples(tmp_path, ca_files, tiny_ca_backmapper):
    out = tmp_path / "aa.xtc"
    s = convert(ca_files["traj"], out, topology=ca_files["pdb"], model=tiny_ca_backmapper, stride=2, chunk=3,
                samples=2, seed=4, **QUIET)
    assert (s["frames_in"], s["frames_written"]) == (4, 8)  # frames 0, 2, 4, 6; two samples each
    t = md.load(str(out), top=s["topology_file"])
    ens = load_ensemble(out, topology=s["topology_file"])
    np.testing.assert_allclose(_ca(ens)[::2], ca_files["traj_xyz"][::2], atol=2e-3)  # frame order kept
    np.testing.assert_allclose(t.time, np.repeat([0.0, 10.0, 20.0, 30.0], 2), atol=1e-3)  # time (ps) kept
    assert not np.allclose(t.xyz[0], t.xyz[1], atol=1e-3)  # two different samples of one frame
    # same seed and chunking: identical output
    s2 = convert(ca_files["traj"], tmp_path / "again.xtc", topology=ca_files["pdb"], model=tiny_ca_backmapper,
                 stride=2, chunk=3, samples=2, seed=4, **QUIET)
    np.testing.assert_array_equal(md.load(str(tmp_path / "again.xtc"), top=s2["topology_file"]).xyz, t.xyz)


def test_convert_with_relaxation_and_hydrogens(tmp_path, ca_files, tiny_ca_backmapper):
    s = convert(ca_files["pdb"], tmp_path / "relaxed.dcd", model=tiny_ca_backmapper, seed=2, minimize=True,
                keep_hydrogens=True, relax_options={"platform": "CPU", "implicit": None, "max_iterations": 150},
                **QUIET)
    assert s["frames_written"] == 1
    t = md.load(str(tmp_path / "relaxed.dcd"), top=s["topology_file"])
    n_h = sum(a.element.symbol == "H" for a in t.topology.atoms)
    assert n_h > 100 and t.n_atoms == 153 + n_h + 1  # heavy atoms, hydrogens and the terminal OXT
    assert s["clash_percent"]["after"] <= s["clash_percent"]["before"]  # relaxing never adds clashes
    assert s["energy_kj_mol"]["after"] < s["energy_kj_mol"]["before"]
    assert s["relax_seconds_per_frame"] > 0


def test_bad_frames_skipped_or_raised(tmp_path, ca_files, tiny_ca_backmapper):
    xyz = ca_files["traj_xyz"].copy()
    xyz[2] = np.nan
    xyz[4] *= 1e5  # exploded
    bad = str(tmp_path / "bad.dcd")
    md.Trajectory(xyz, md.load_topology(ca_files["pdb"])).save_dcd(bad)
    with pytest.warns(BadFrameWarning, match="2, 4"):
        s = convert(bad, tmp_path / "ok.pdb", topology=ca_files["pdb"], model=tiny_ca_backmapper, seed=0, **QUIET)
    assert (s["frames_in"], s["frames_skipped"], s["frames_written"]) == (5, 2, 5)
    with pytest.raises(ValueError, match="on_bad_frame='skip'"):
        convert(bad, tmp_path / "no.pdb", topology=ca_files["pdb"], model=tiny_ca_backmapper, on_bad_frame="raise",
                **QUIET)


def _bad_model(kind, path):
    import torch

    from openmm_backmap.model import KStepModel, save_model
    from openmm_backmap.model.steps.ca2aa import CA2AA, CA2AAConfig

    if kind == "garbage":
        path.write_bytes(b"\x00\x01 this is not a model" * 50)
        return path
    meta = {"kind": "ca2aa", "transferable": True, "steps": [{"kind": "ca2aa"}]}
    meta.update({"newer": {"format_version": 99}, "kind": {"kind": "foo"}}[kind])
    torch.manual_seed(0)
    save_model(KStepModel([CA2AA(CA2AAConfig(hidden=8, layers=1, neighbors=4))]), str(path), meta)
    return path


@pytest.mark.parametrize("kind, message", [
    ("garbage", "not a readable TorchScript model"),
    ("newer", "uses model format 99.*upgrade openmm-backmap"),
    ("kind", "unknown model kind 'foo'"),
])
def test_bad_model_files(tmp_path, ca_files, kind, message):
    model = _bad_model(kind, tmp_path / "m.pt")
    with pytest.raises(ValueError, match=message):
        convert(ca_files["pdb"], tmp_path / "out.pdb", model=model, device="cpu", **QUIET)
    assert not (tmp_path / "out.pdb").exists()


def test_user_errors(tmp_path, ca_files, tiny_ca_backmapper, tiny_persystem_model):
    from openmm_backmap.run.demo import villin_pdb_path
    from openmm_backmap.run.coarsening import coarsen_files

    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert(tmp_path / "missing.pdb", tmp_path / "o.pdb", model=tiny_ca_backmapper, **QUIET)
    with pytest.raises(ValueError, match=r"unknown output extension; use one of \.dcd"):
        convert(ca_files["pdb"], tmp_path / "o.gro", model=tiny_ca_backmapper, **QUIET)
    with pytest.raises(ValueError, match="-t/--topology"):
        convert(ca_files["traj"], tmp_path / "o.pdb", model=tiny_ca_backmapper, **QUIET)
    (tmp_path / "exists.pdb").write_text("x")
    with pytest.raises(FileExistsError, match="force=True"):  # the Python argument; the CLI says --force
        convert(ca_files["pdb"], tmp_path / "exists.pdb", model=tiny_ca_backmapper, **QUIET)
    # per-system Trp-cage model: inputs of another size or sequence do not fit
    with pytest.warns(UserWarning):
        villin = coarsen_files(villin_pdb_path(), levels="ca,ucg:5", out_prefix=str(tmp_path / "vil"),
                               verbose=False)
    with pytest.raises(ValueError, match="35 particles but this model expects 20 beads"):
        convert(villin["ca"]["pdb"], tmp_path / "o1.pdb", model=tiny_persystem_model, device="cpu", **QUIET)
    lines = open(ca_files["pdb"]).read().splitlines()
    mutant = tmp_path / "mutant_ca.pdb"  # Trp-cage with residue 4 (ILE) renamed to ALA
    mutant.write_text("\n".join(ln[:17] + "ALA" + ln[20:] if ln.startswith("ATOM") and ln[22:26].strip() == "4"
                                else ln for ln in lines) + "\n")
    with pytest.raises(ValueError, match="sequence does not match this model's .*residue 4: ALA vs ILE"):
        convert(mutant, tmp_path / "o4.pdb", model=tiny_persystem_model, device="cpu", **QUIET)
    with pytest.raises(ValueError, match="5 particles but this model expects 20 beads"):
        convert(villin["ucg5"]["pdb"], tmp_path / "o2.pdb", model=tiny_persystem_model, device="cpu", **QUIET)
    with pytest.raises(ValueError, match="neither standard amino acids nor modified residues"):
        convert(villin["ucg5"]["pdb"], tmp_path / "o3.pdb", model=tiny_ca_backmapper, **QUIET)
    assert not any((tmp_path / f"o{i}.pdb").exists() for i in (1, 2, 3, 4))
    # the per-system model accepts its own system
    s = convert(ca_files["pdb"], tmp_path / "own.pdb", model=tiny_persystem_model, device="cpu", seed=0, **QUIET)
    assert s["frames_written"] == 1


def test_cli_convert(tmp_path, ca_files, tiny_ca_model, capsys):
    out = tmp_path / "cli.dcd"
    rc = main(["convert", ca_files["traj"], "-t", ca_files["pdb"], "-o", str(out), "--model", str(tiny_ca_model),
               "--device", "cpu", "--seed", "3", "--stride", "3", "--chunk", "2", "--samples", "2"])
    assert rc == 0
    assert md.load(str(out), top=str(tmp_path / "cli.pdb")).n_frames == 3 * 2  # frames 0, 3, 6
    assert "wrote" in capsys.readouterr().out
    rc = main(["convert", ca_files["traj"], "-t", ca_files["pdb"], "-o", str(out), "--model", str(tiny_ca_model)])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("openmm-backmap convert: error:") and "--force" in err[0]


def test_failed_relaxation_is_reported(tmp_path, ca_files, tiny_ca_backmapper, monkeypatch):
    import openmm_backmap.run.relax.relaxer as relax
    from openmm_backmap.run import RelaxationWarning

    class StuckRelaxer:  # a minimiser that makes no progress, as with overlapping atoms
        restraint = "heavy"

        def __init__(self, topology, **kwargs):
            self.topology_h = None

        def relax(self, xyz, cg_xyz=None, keep_hydrogens=False):
            return relax.RelaxResult(np.asarray(xyz, np.float32), 7e19, 2e12, 35.0, 35.0, 0.0)

    monkeypatch.setattr(relax, "Relaxer", StuckRelaxer)
    with pytest.warns(RelaxationWarning, match="failed"):
        s = convert(ca_files["pdb"], tmp_path / "stuck.pdb", model=tiny_ca_backmapper, minimize=True, seed=0,
                    relax_options={"method": "openmm"}, **QUIET)
    assert s["relax_failures"] == 1 and s["frames_written"] == 1


def test_cli_convert_append(tmp_path, ca_files, tiny_ca_model, capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    assert "--append" in capsys.readouterr().out
    out = tmp_path / "app.dcd"
    base = ["convert", ca_files["traj"], "-t", ca_files["pdb"], "-o", str(out), "--model", str(tiny_ca_model),
            "--device", "cpu", "--seed", "3", "--stride", "4"]  # frames 0 and 4
    assert main(base) == 0
    assert main(base + ["--append"]) == 0
    assert md.load(str(out), top=str(tmp_path / "app.pdb")).n_frames == 4


def test_unconverged_relaxation_is_reported(tmp_path, ca_files, tiny_ca_backmapper, monkeypatch):
    """A RelaxResult flagged converged=False counts as a failure even with an unremarkable energy."""
    import openmm_backmap.run.relax.relaxer as relax
    from openmm_backmap.run import RelaxationWarning

    class FlaggingRelaxer:
        restraint = "heavy"

        def __init__(self, topology, **kwargs):
            self.topology_h = None

        def relax(self, xyz, cg_xyz=None, keep_hydrogens=False):
            return relax.RelaxResult(np.asarray(xyz, np.float32), 5e5, 2e5, 35.0, 10.0, 0.01, converged=False)

    monkeypatch.setattr(relax, "Relaxer", FlaggingRelaxer)
    with pytest.warns(RelaxationWarning, match="failed"):
        s = convert(ca_files["pdb"], tmp_path / "flagged.pdb", model=tiny_ca_backmapper, minimize=True, seed=0,
                    relax_options={"method": "openmm"}, **QUIET)
    assert s["relax_failures"] == 1


def test_convert_reads_a_modified_residue_in_a_ca_trace(tmp_path, ca_files, tiny_ca_backmapper):
    """A C-alpha trace with SME (methionine sulfoxide) converts as MET, with one warning; unknown names are named."""
    text = open(ca_files["pdb"]).read().splitlines()
    lines = [ln[:17] + "SME" + ln[20:] if ln.startswith(("ATOM", "HETATM")) and int(ln[22:26]) == 3 else ln
             for ln in text]
    path = tmp_path / "sme.pdb"
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="modified residue\\(s\\) SME read as their parent MET"):
        convert(str(path), tmp_path / "aa.pdb", model=tiny_ca_backmapper, deterministic=True, **QUIET)
    assert load_ensemble(tmp_path / "aa.pdb").sequence[2] == "MET"
    bad = tmp_path / "xyz.pdb"
    bad.write_text("\n".join(ln[:17] + "XYZ" + ln[20:] if ln.startswith("ATOM") and int(ln[22:26]) == 3 else ln
                             for ln in text) + "\n")
    with pytest.raises(ValueError, match="XYZ are neither standard amino acids nor modified residues"):
        convert(str(bad), tmp_path / "aa2.pdb", model=tiny_ca_backmapper, **QUIET)
