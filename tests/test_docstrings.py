"""Every Examples section in the package's docstrings runs as written (those marked +SKIP need files or time)."""

from __future__ import annotations

import doctest
import importlib
import os
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "openmm_backmap"
MODULES = sorted(".".join(("openmm_backmap",) + f.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
                 for f in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(PACKAGE.parent)  # examples name files relative to the repository root
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False,
                             report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
