"""The package's exceptions and warnings.

:class:`UserError` is the one exception class the command line treats as a
user's mistake: it prints one line saying what was wrong and how to fix it.
Anything else is a bug and shows its traceback. The subclasses also derive
from the built-in exception a Python caller would expect, so
``except ValueError`` keeps working.
"""

from __future__ import annotations

import contextlib

__all__ = ["UserError", "InputError", "MissingFileError", "OutputExistsError", "OutputWriteError", "LoadWarning",
           "option_name", "command_line_spelling"]

_COMMAND_LINE = [False]  # True while a verb of the command line runs (set by its main, read by every thread)


def option_name(cli: str, python: str) -> str:
    """How a message names an option: the command line's flag while a CLI verb runs, else the Python argument.

    Messages of the lower layers serve both the command line and Python
    callers (functions, the reporter); each names the option the way its
    reader types it, never both.

    Examples
    --------
    >>> option_name("--force", "force=True")
    'force=True'
    >>> with command_line_spelling():
    ...     option_name("--force", "force=True")
    '--force'
    """
    return cli if _COMMAND_LINE[0] else python


@contextlib.contextmanager
def command_line_spelling():
    """Within this block :func:`option_name` gives the command line's spelling (``openmm-backmap``'s main)."""
    before = _COMMAND_LINE[0]
    _COMMAND_LINE[0] = True
    try:
        yield
    finally:
        _COMMAND_LINE[0] = before


class UserError(Exception):
    """A mistake the user can fix; the message says how.

    Examples
    --------
    >>> try:
    ...     raise InputError("--stride must be >= 1, got 0")
    ... except UserError as err:
    ...     print(err)
    --stride must be >= 1, got 0
    """


class InputError(UserError, ValueError):
    """An argument, file content or model does not fit what was asked."""


class MissingFileError(UserError, FileNotFoundError):
    """An input file does not exist."""


class OutputExistsError(UserError, FileExistsError):
    """The output exists and neither ``force`` nor ``append`` was given."""


class OutputWriteError(UserError, OSError):
    """Writing an output failed (disk full, quota, permissions); the message says what was kept and where."""


class LoadWarning(UserWarning):
    """Something in the input was dropped, renamed or repaired while loading it."""
