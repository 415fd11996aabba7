"""``convert --relax-solvent`` reaches the OpenMM relaxer's implicit-solvent option."""

import mdtraj as md
import pytest

from openmm_backmap.cli import main
from openmm_backmap.run.relax import Relaxer, relaxer
from openmm_backmap.structure.constants import IMPLICIT_SOLVENT_FILES


class _Stop(Exception):
    """Raised by the stand-in relaxer once it has seen its arguments."""


@pytest.fixture(scope="module")
def ca_pdb(tmp_path_factory, trpcage):
    path = tmp_path_factory.mktemp("relax_solvent") / "ca.pdb"
    md.Trajectory(trpcage.ca_xyz, md.Topology.from_openmm(_ca_topology(trpcage))).save_pdb(str(path))
    return str(path)


def _ca_topology(ens):
    from openmm.app import Element, Topology

    top = Topology()
    chain = top.addChain("A")
    for name in ens.sequence:
        top.addAtom("CA", Element.getBySymbol("C"), top.addResidue(name, chain))
    return top


def _relaxer_arguments(monkeypatch, argv):
    seen = {}

    def fake_relaxer(topology, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(relaxer, "Relaxer", fake_relaxer)  # the pipeline imports it on use
    with pytest.raises(_Stop):
        main(argv)
    return seen


@pytest.mark.parametrize("solvent", [None, "obc2"])  # each run loads and calls the model: the names are checked below
def test_flag_reaches_the_relaxer(monkeypatch, tmp_path, ca_pdb, tiny_ca_model, solvent):
    argv = ["convert", ca_pdb, "--model", str(tiny_ca_model), "-o", str(tmp_path / "aa.pdb"), "--minimize",
            "--seed", "1", "--device", "cpu"]
    # without --relax-solvent, --relax openmm picks the OpenMM relaxer (--relax-solvent implies it)
    seen = _relaxer_arguments(monkeypatch, argv + (["--relax", "openmm"] if solvent is None else
                                                   ["--relax-solvent", solvent]))
    if solvent is None:
        assert "implicit" not in seen  # the relaxer's own default
    else:
        assert seen["implicit"] == solvent


def test_relaxer_reads_solvent_names(trpcage):
    assert Relaxer(trpcage.topology(), implicit="obc2", platform="Reference").implicit == "implicit/obc2.xml"
    assert Relaxer(trpcage.topology(), implicit="vacuum", platform="Reference").implicit is None
    assert Relaxer(trpcage.topology(), platform="Reference").implicit == IMPLICIT_SOLVENT_FILES["obc2"]
    custom = "implicit/obc1.xml"  # a file is passed through
    assert Relaxer(trpcage.topology(), implicit=custom, platform="Reference").implicit == custom


def test_flag_without_minimize_is_one_line(tmp_path, ca_pdb, tiny_ca_model, capsys):
    out = tmp_path / "aa.pdb"
    assert main(["convert", ca_pdb, "--model", str(tiny_ca_model), "-o", str(out), "--relax-solvent", "obc2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--minimize" in err
    assert not out.exists()


def test_vacuum_relaxation_runs(tmp_path, ca_pdb, tiny_ca_model, capsys):
    out = tmp_path / "aa.pdb"
    assert main(["convert", ca_pdb, "--model", str(tiny_ca_model), "-o", str(out), "--minimize", "--seed", "1",
                 "--device", "cpu", "--relax-solvent", "vacuum"]) == 0
    assert "after relaxation" in capsys.readouterr().out
    assert md.load(str(out)).n_atoms == 153
