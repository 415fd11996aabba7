"""A model given the wrong kind of beads stops with the numbers (openmm_backmap.run.cg_input.check_scheme)."""

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
app = pytest.importorskip("openmm.app")

from openmm_backmap.cli import main  # noqa: E402
from openmm_backmap.mapping import coarsen  # noqa: E402
from openmm_backmap.model import SCHEME_MODELS  # noqa: E402
from openmm_backmap.run import (BackmapReporter, cg_particle_info, check_scheme, coarsen_files,  # noqa: E402
                                convert_trajectory)
from openmm_backmap.run.cg_input import SchemeOverrideWarning  # noqa: E402
from openmm_backmap.run.pipeline import BrokenOutputError  # noqa: E402
from openmm_backmap.structure import InputError, LoadWarning  # noqa: E402

QUIET = dict(progress=False, device="cpu", seed=0)


@pytest.fixture(scope="module")
def bead_files(tmp_path_factory, tests_data):
    """C-alpha, centre-of-mass and Martini 3 beads of Trp-cage, as written by coarsen."""
    out = tmp_path_factory.mktemp("beads") / "trp"
    return coarsen_files(tests_data / "trpcage.pdb", levels="ca,com,martini3", out_prefix=str(out), verbose=False)


def _info(trpcage, level):
    coords, top, _ = coarsen(trpcage, level)[level]
    return cg_particle_info(top, xyz=coords[0]), coords[0]


def test_check_scheme_verdicts_and_override(trpcage, tiny_ca_backmapper):
    assert tiny_ca_backmapper.scheme == "ca" and SCHEME_MODELS["ca"] == "ca2aa.pt"
    info, xyz = _info(trpcage, "ca")
    assert check_scheme(info, xyz, tiny_ca_backmapper) == "ca"
    info, xyz = _info(trpcage, "com")
    with pytest.raises(InputError, match=r"look like residue centre-of-mass beads, but tiny takes C-alpha beads: "
                                         r"consecutive beads deviate .* by \d\.\d\d Å \(median over 19 pairs.*"
                                         r"or none to use the shipped one \(com2aa.pt\).*scheme='ca'"):
        check_scheme(info, xyz, tiny_ca_backmapper, where="x.pdb: ")
    with pytest.warns(SchemeOverrideWarning, match=r"scheme='ca' was given, but the CG particles are clearly residue "
                                                   r"centre-of-mass beads: consecutive beads deviate"):
        assert check_scheme(info, xyz, tiny_ca_backmapper, scheme="ca") == "ca"  # the user's word wins, loudly
    with pytest.raises(InputError, match=r"residue centre-of-mass beads \(scheme='com'\) but tiny takes C-alpha"):
        check_scheme(info, xyz, tiny_ca_backmapper, scheme="com")
    with pytest.raises(InputError, match="unknown bead scheme 'cg'"):
        check_scheme(info, xyz, tiny_ca_backmapper, scheme="cg")
    info, xyz = _info(trpcage, "martini3")
    with pytest.raises(InputError, match="look like Martini 3 beads, but tiny takes C-alpha beads: Martini bead names"):
        check_scheme(info, xyz, tiny_ca_backmapper)


def test_unsure_beads_warn(trpcage, tiny_ca_backmapper):
    info, ca = _info(trpcage, "ca")
    # consecutive beads 4.21 Å apart: 0.41 Å off 3.80 Å, between the two limits (0.30 and 0.45 Å), nearer com
    d = np.diff(ca, axis=0)
    stretched = np.vstack([ca[:1], ca[0] + np.cumsum(d / np.linalg.norm(d, axis=1, keepdims=True) * 0.421, 0)])
    with pytest.warns(LoadWarning, match="look like residue centre-of-mass beads.*unsure"):
        assert check_scheme(info, stretched, tiny_ca_backmapper) == "com"


def test_persystem_models_are_not_checked(trpcage, tiny_persystem_model):
    from openmm_backmap.model import load_model

    model = load_model(tiny_persystem_model, device="cpu")
    info, xyz = _info(trpcage, "com")
    assert model.scheme is None and check_scheme(info, xyz, model) is None


def test_convert_refuses_com_beads_unless_told(tmp_path, bead_files, tiny_ca_backmapper, tiny_ca_model, capsys):
    com = bead_files["com"]["pdb"]
    with pytest.raises(ValueError, match=r"trp_com.pdb: the CG particles look like residue centre-of-mass beads.*Å"):
        convert_trajectory(com, tmp_path / "a.pdb", model=tiny_ca_backmapper, **QUIET)
    assert not (tmp_path / "a.pdb").exists()
    with pytest.raises(ValueError, match="look like Martini 3 beads"):
        convert_trajectory(bead_files["martini3"]["pdb"], tmp_path / "b.pdb", model=tiny_ca_backmapper, **QUIET)
    with pytest.warns(SchemeOverrideWarning):
        summary = convert_trajectory(com, tmp_path / "c.pdb", model=tiny_ca_backmapper, scheme="ca", **QUIET)
    assert summary["frames_written"] == 1
    assert main(["convert", com, "-o", str(tmp_path / "d.pdb"), "--model", str(tiny_ca_model), "--device", "cpu"]) == 2
    assert "centre-of-mass beads" in capsys.readouterr().err
    assert main(["convert", com, "-o", str(tmp_path / "d.pdb"), "--model", str(tiny_ca_model), "--device", "cpu",
                 "--scheme", "ca", "--seed", "0"]) in (0, None)


def test_reporter_refuses_com_beads_at_the_first_report(tmp_path, trpcage, trpcage_go, tiny_ca_backmapper):
    top, system, _ = trpcage_go
    com = coarsen(trpcage, "com")["com"][0][0]
    sim = app.Simulation(top, system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(com.astype(np.float64))
    rep = BackmapReporter(tmp_path / "x.pdb", 1, model=tiny_ca_backmapper, device="cpu")
    with pytest.raises(ValueError, match="look like residue centre-of-mass beads.*scheme='ca'"):
        rep.report(sim, sim.context.getState(getPositions=True))
    rep.close()
    # the user's word is followed, loudly, and the broken chemistry it gives is an error at the end of the run
    with pytest.warns(SchemeOverrideWarning, match="clearly residue centre-of-mass beads"), \
            pytest.raises(BrokenOutputError, match="failed the bond check badly"):
        with BackmapReporter(tmp_path / "y.pdb", 1, model=tiny_ca_backmapper, device="cpu", scheme="ca") as rep:
            rep.report(sim, sim.context.getState(getPositions=True))


def test_a_scheme_override_on_c_alphas_is_loud(trpcage, tiny_ca_backmapper, shipped, tmp_path, bead_files):
    with pytest.warns(SchemeOverrideWarning, match="scheme='com' was given, but the CG particles are clearly C-alpha"):
        convert_trajectory(bead_files["ca"]["pdb"], tmp_path / "x.pdb", scheme="com", **QUIET)


@pytest.mark.parametrize("factor, what", [(0.1, "10 times too small: nm written where Å belong"),
                                          (10.0, "10 times too large: Å read as nm")])
def test_beads_in_the_wrong_unit_stop_with_one_line(tmp_path, bead_files, shipped, factor, what):
    for level in ("ca", "com", "martini3"):
        lines = open(bead_files[level]["pdb"]).read().splitlines()
        scaled = [ln[:30] + "".join(f"{float(ln[30 + 8 * k:38 + 8 * k]) * factor:8.3f}" for k in range(3)) + ln[54:]
                  if ln.startswith(("ATOM", "HETATM")) else ln for ln in lines]
        (tmp_path / f"{level}.pdb").write_text("\n".join(scaled) + "\n")
        with pytest.raises(InputError, match=f"consecutive residues' beads are .* nm apart .*{what}"):
            convert_trajectory(tmp_path / f"{level}.pdb", tmp_path / f"out_{level}.pdb", **QUIET)
        assert not (tmp_path / f"out_{level}.pdb").exists()
