"""The package's layers: imports point one way and never form a cycle.

An AST walk over every module, function-level imports included (they hide
cycles as well as module-level ones do). ``structure`` <- ``io``,
``mapping`` <- ``model`` <- ``run`` <- ``cli``; ``evaluation`` uses
``structure`` and ``io`` only; nothing at run time imports ``train``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "openmm_backmap"
NAME = "openmm_backmap"

#: layer -> the layers it may import (itself always allowed)
ALLOWED = {
    "_version": set(),
    "structure": set(),
    "io": {"structure"},
    "mapping": {"structure", "io"},
    "model": {"structure", "io", "mapping", "_version"},
    "evaluation": {"structure", "io"},
    "cgsystems": {"structure", "io"},
    "run": {"structure", "io", "mapping", "model", "evaluation", "cgsystems", "_version"},
    "train": {"structure", "io", "mapping", "model", "evaluation", "_version"},
    "cli": {"structure", "io", "mapping", "model", "evaluation", "cgsystems", "run", "train", "_version"},
}
#: the top-level __init__ only names public objects lazily (strings, no import statements)
EXEMPT = {NAME}
MAX_LINES = 650  # "about 600": a module over this is doing more than one job


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """Package modules that ``module`` imports anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    here = module.split(".") if is_pkg else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from pkg import sub" imports the submodule too
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            if n == NAME or n.startswith(NAME + "."):
                while n not in MODULES and "." in n:
                    n = n.rsplit(".", 1)[0]
                if n in MODULES and n != module:
                    found.add(n)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_belongs_to_a_layer():
    unknown = sorted(m for m in MODULES if m not in EXEMPT and _layer(m) not in ALLOWED)
    assert not unknown, f"modules outside the known layers: {unknown}; add the layer to ALLOWED"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in EXEMPT))
def test_imports_point_down(module):
    layer = _layer(module)
    wrong = sorted(t for t in GRAPH[module]
                   if _layer(t) != layer and _layer(t) not in ALLOWED[layer])
    assert not wrong, f"{module} ({layer}) imports {wrong}; {layer} may import only {sorted(ALLOWED[layer])}"


def test_no_import_cycles():
    # Tarjan's strongly connected components over the module graph
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            # a package importing its own submodules (re-exports) is not a cycle by itself
            comp = [c for c in comp if not any(o.startswith(c + ".") for o in comp)] if len(comp) > 1 else comp
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_run_time_never_imports_train():
    run_time = [m for m in MODULES if _layer(m) not in ("train", "cli") and m not in EXEMPT]
    bad = sorted(m for m in run_time if any(_layer(t) == "train" for t in GRAPH[m]))
    assert not bad, f"run-time modules import train: {bad}"


def test_modules_stay_small():
    big = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by job): {big}"


def test_no_public_name_equals_a_module_name():
    import importlib

    clashes = []
    for m in MODULES:
        mod = importlib.import_module(m)
        for name in getattr(mod, "__all__", []):
            if f"{m}.{name}" in MODULES and not isinstance(getattr(mod, name, None), type(mod)):
                clashes.append(f"{m}.{name}")
    assert not clashes, f"public names that equal a module name: {clashes}"


def test_top_level_names_are_stable():
    import openmm_backmap as ob

    for name in ob.__all__:
        first = getattr(ob, name)
        importlib_module = __import__("importlib").import_module
        for m in MODULES:  # importing every submodule must not rebind a public name
            importlib_module(m)
        assert getattr(ob, name) is first, f"openmm_backmap.{name} changed after importing the submodules"
    assert callable(ob.convert_trajectory) and callable(ob.evaluate)
