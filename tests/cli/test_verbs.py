"""The command line: a user's mistake is one line and exit status 2; a bug keeps its traceback."""

from __future__ import annotations

import pytest

from openmm_backmap.cli import main
from openmm_backmap.cli import verbs
from openmm_backmap.structure import InputError, UserError


def test_user_error_is_one_line(tmp_path, capsys):
    code = main(["info", str(tmp_path / "missing.pt")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("openmm-backmap info: error:") and "missing.pt" in err


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    with pytest.raises(UserError):
        main(["--debug", "info", str(tmp_path / "missing.pt")])


@pytest.mark.parametrize("bug", [RuntimeError("internal"), KeyError("slot"), ValueError("plain")])
def test_anything_else_is_a_bug_with_its_traceback(monkeypatch, bug):
    def broken(args):
        raise bug

    monkeypatch.setattr(verbs, "_info", broken)
    parser = verbs.build_parser()
    monkeypatch.setattr(verbs, "build_parser", lambda: _rebind(parser, broken))
    with pytest.raises(type(bug)):
        main(["info", "model.pt"])


def _rebind(parser, func):
    for action in parser._subparsers._group_actions:
        action.choices["info"].set_defaults(func=func)
    return parser


def test_user_errors_are_the_builtin_kinds_too():
    assert issubclass(InputError, ValueError) and issubclass(InputError, UserError)
