"""Every package name the docs spell in backticks (``structure.torn_frames``, ``openmm_backmap.io.load_ensemble``,
``io.torn_frames(ens)`` ...) exists where they say: a newcomer who types it gets no ImportError (issue 23, item 9)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from docs_fixtures import resolve_dotted  # noqa: E402

DOCS = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
LAYERS = ("io", "structure", "model", "run", "mapping", "evaluation", "train", "cli", "cgsystems")
#: `layer.name` or `openmm_backmap.layer....name`, optionally called: `io.torn_frames(ens)`
NAME = re.compile(r"`((?:openmm_backmap\.)?(?:%s)(?:\.[A-Za-z_]\w*)+)(?:\([^`]*\))?`" % "|".join(LAYERS))
#: file names that look like dotted names (`cgsystems.py`, `run.dcd`)
FILE_SUFFIXES = {"py", "dcd", "pdb", "xtc", "h5", "json", "yaml", "csv", "pt", "md", "gro", "png"}


def _resolves(dotted: str) -> bool:
    name = dotted if dotted.startswith("openmm_backmap.") else "openmm_backmap." + dotted
    try:
        resolve_dotted(name)
    except (ImportError, AttributeError):
        return False
    return True


def _names():
    for doc in DOCS:
        for match in NAME.finditer(doc.read_text()):
            name = match.group(1)
            if name.rsplit(".", 1)[-1] not in FILE_SUFFIXES:
                yield doc.relative_to(ROOT).as_posix(), name


def test_docs_name_package_objects():
    assert len(list(_names())) > 10


@pytest.mark.parametrize("doc, name", sorted(set(_names())))
def test_named_object_exists(doc, name):
    assert _resolves(name), f"{doc} names `{name}`, which does not exist"


def test_the_torn_frames_name_of_data_md():
    assert _resolves("structure.torn_frames") and not _resolves("io.torn_frames")
    assert "io.torn_frames" not in (ROOT / "docs" / "data.md").read_text()
