"""The package's exceptions and warnings.

:class:`UserError` is the one exception class the command line treats as a
user's mistake: it prints one line saying what was wrong and how to fix it.
Anything else is a bug and shows its traceback. The subclasses also derive
from the built-in exception a Python caller would expect, so
``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["UserError", "InputError", "MissingFileError", "OutputExistsError", "OutputWriteError", "LoadWarning"]


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
