"""What a newcomer meets on the command line (issue 23): conventions of mdtraj/OpenMM/martinize2 scripts, one overwrite
rule, one-line warnings without Python's source lines or C plugins' chatter, and messages in the CLI's own words."""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import warnings

import mdtraj as md
import pytest

from openmm_backmap._version import __version__
from openmm_backmap.cli import build_parser, main

TRPCAGE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "trpcage.pdb")


def _parsers():
    """(name, parser) of the top level and of every verb."""
    top = build_parser()
    out = [("openmm-backmap", top)]
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            out += [(f"openmm-backmap {name}", p) for name, p in action.choices.items()]
    return out


def test_every_option_and_argument_has_help():
    missing = []
    for name, parser in _parsers():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {action.option_strings or action.dest}")
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{name} {a.dest}" for a in action._choices_actions if not (a.help or "").strip()]
    assert not missing, f"options without help text: {missing}"


def test_help_has_no_rest_markup():
    for name, parser in _parsers():
        text = parser.format_help()
        assert "``" not in text and ":func:" not in text and ":class:" not in text, name


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"openmm-backmap {__version__}"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_verb(tmp_path, where):
    from openmm_backmap.structure import UserError

    args = ["info", str(tmp_path / "missing.pt")]
    with pytest.raises(UserError):
        main(["--debug"] + args if where == "before" else args + ["--debug"])


def test_no_debug_after_the_verb_keeps_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.pt")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# ---------------------------------------------------------------- info
def test_info_says_first_which_beads_the_model_takes(tiny_ca_model, tiny_bead_models, capsys):
    assert main(["info", str(tiny_ca_model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(":")[0].strip() == "takes" and "C-alpha beads" in lines[0] and "--scheme ca" in lines[0]
    assert lines[1].split(":")[0].strip() == "gives" and "heavy atoms" in lines[1]
    assert len(lines) <= 10 and not any(line.strip().startswith(("signature", "torch_version")) for line in lines)
    assert main(["info", str(tiny_bead_models["martini3"])]) == 0
    assert "Martini 3 beads" in capsys.readouterr().out.splitlines()[0]
    assert main(["info", str(tiny_ca_model), "--json"]) == 0
    assert '"signature"' in capsys.readouterr().out  # everything is still there, behind --json


def test_info_of_a_per_system_model(tiny_persystem_model, capsys):
    assert main(["info", str(tiny_persystem_model)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "20 " in first and "20-residue protein" in first


# ---------------------------------------------------------------- convert: warnings, plugin output, summary
@pytest.fixture(scope="module")
def all_atom_dcd(tmp_path_factory):
    """Trp-cage with all its atoms, 3 frames: a DCD and its PDB topology (convert then warns that it takes the
    C-alphas as beads)."""
    folder = tmp_path_factory.mktemp("aa_dcd")
    traj = md.load(TRPCAGE)
    traj = md.join([traj] * 3)
    traj.save_dcd(str(folder / "aa.dcd"))
    traj[0].save_pdb(str(folder / "aa.pdb"))
    return str(folder / "aa.dcd"), str(folder / "aa.pdb")


def _main_with_warnings_shown(args):
    """``main(args)`` as in a fresh process, whatever filters earlier tests left (a doctest sets 'ignore'); every
    warning shown, deprecations too."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default")
        # pytest's warnings plugin records warnings instead of printing them: print them as Python does
        warnings.showwarning = _python_format
        return main(args)


def _python_format(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _flush_c_stdout():
    try:
        ctypes.CDLL(None).fflush(None)  # text a C library printed but still buffered reaches capfd now
    except (OSError, AttributeError, TypeError):  # pragma: no cover - no C library (Windows)
        pass


@pytest.mark.parametrize("deterministic", [False, True])
def test_convert_prints_one_line_warnings_and_no_plugin_chatter(all_atom_dcd, tiny_ca_model, tmp_path, capfd,
                                                                 deterministic):
    dcd, pdb = all_atom_dcd
    args = ["convert", dcd, "-t", pdb, "-o", str(tmp_path / "aa.pdb"), "--model", str(tiny_ca_model), "--device",
            "cpu", "--seed", "5"] + (["--deterministic"] if deterministic else [])
    assert _main_with_warnings_shown(args) == 0
    _flush_c_stdout()
    out, err = capfd.readouterr()
    lines = (out + err).splitlines()
    assert not [line for line in lines if "Warning" in line or ".py:" in line or "warnings.warn" in line], lines
    assert not [line for line in lines if "dcdplugin" in line], "mdtraj's DCD plugin printed on stdout"
    assert not [line for line in lines if "torch.jit" in line], "TorchScript deprecation warnings"
    warned = [line for line in err.splitlines() if "warning:" in line]
    assert warned and all(line.startswith("openmm-backmap convert: warning: ") for line in warned), err
    assert any("C-alpha atoms" in line for line in warned)
    summary = next(line for line in out.splitlines() if line.startswith("backmapped"))
    if deterministic:
        assert "(deterministic)" in summary and "seed" not in summary
    else:
        assert "(seed 5)" in summary


def test_debug_keeps_pythons_warning_format(all_atom_dcd, tiny_ca_model, tmp_path, capfd):
    dcd, pdb = all_atom_dcd
    assert _main_with_warnings_shown(["convert", dcd, "-t", pdb, "-o", str(tmp_path / "aa.pdb"), "--model",
                                      str(tiny_ca_model), "--device", "cpu", "--debug"]) == 0
    err = capfd.readouterr().err
    assert "openmm-backmap convert: warning:" not in err and "UserWarning: the input has" in err


def test_library_warnings_stay_python_warnings_outside_the_cli(all_atom_dcd, tiny_ca_model, tmp_path):
    from openmm_backmap.run import convert_trajectory

    dcd, pdb = all_atom_dcd
    with warnings.catch_warnings(), pytest.warns(UserWarning, match="C-alpha atoms"):
        warnings.simplefilter("default")
        convert_trajectory(dcd, tmp_path / "aa.pdb", topology=pdb, model=str(tiny_ca_model), device="cpu",
                           progress=False)


# ---------------------------------------------------------------- messages name the CLI flag only
def test_overwrite_message_names_the_flag_of_its_reader(tmp_path, capsys):
    from openmm_backmap.run import convert_trajectory
    from openmm_backmap.structure import OutputExistsError

    out = tmp_path / "aa.pdb"
    out.write_text("kept")
    assert main(["convert", TRPCAGE, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "force=True" not in err and "append=True" not in err
    with pytest.raises(OutputExistsError) as python_err:
        convert_trajectory(TRPCAGE, out, progress=False)
    assert "force=True" in str(python_err.value) and "--force" not in str(python_err.value)


def test_bead_count_message_names_no_python_argument(tiny_persystem_model, tmp_path, capsys):
    ca = md.load(TRPCAGE)
    ca = ca.atom_slice(ca.topology.select("name CA")[:19])  # one bead short of the model's 20
    ca.save_pdb(str(tmp_path / "ca19.pdb"))
    assert main(["convert", str(tmp_path / "ca19.pdb"), "-o", str(tmp_path / "aa.pdb"), "--model",
                 str(tiny_persystem_model), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "expects 20 beads" in err and "cgParticles" not in err and "=" not in err


# ---------------------------------------------------------------- demo: the overwrite rule
def test_demo_into_an_earlier_demo_needs_force(tmp_path, capsys, monkeypatch):
    import openmm_backmap.run.demo as demo

    def no_model(*args, **kwargs):
        raise AssertionError("the output check comes before the model loads")

    monkeypatch.setattr(demo, "load_model", no_model)
    (tmp_path / "summary.json").write_text("{}")
    assert main(["demo", "--output", str(tmp_path), "--steps", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("openmm-backmap demo: error:") and "--force" in err
    assert "summary.json" in err and "force=True" not in err
    assert (tmp_path / "summary.json").read_text() == "{}"


def test_demo_with_force_replaces_an_earlier_demo(tmp_path, tiny_ca_backmapper, capsys):
    from openmm_backmap.run.demo import run_demo

    (tmp_path / "summary.json").write_text("{}")
    result = run_demo(tmp_path, steps=20, report_interval=20, model=tiny_ca_backmapper, seed=1, force=True)
    assert result["summary"]["frames_written"] == 1 and (tmp_path / "summary.json").read_text() != "{}"


# ---------------------------------------------------------------- TorchScript deprecation warnings
def test_model_load_and_save_give_no_torchscript_deprecation_warning(tiny_ca_model, tmp_path):
    import warnings

    from openmm_backmap.model import KStepModel, load_model, save_model
    from openmm_backmap.model.model_file import _without_jit_deprecation
    from openmm_backmap.model.steps import CA2AA, CA2AAConfig

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_model(tiny_ca_model, device="cpu")
        save_model(KStepModel([CA2AA(CA2AAConfig(hidden=8, layers=1))]), str(tmp_path / "m.pt"),
                   {"kind": "ca2aa", "transferable": True})
        load_model(tmp_path / "m.pt", device="cpu")
    assert not [str(w.message) for w in caught if "torch.jit" in str(w.message)]
    with warnings.catch_warnings(record=True) as caught:  # only those: other deprecations still show
        warnings.simplefilter("always")
        with _without_jit_deprecation():
            warnings.warn("`torch.jit.load` is deprecated. Please switch to `torch.export`.", DeprecationWarning)
            warnings.warn("something else is deprecated", DeprecationWarning)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]
