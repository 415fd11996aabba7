"""Every code block of the README and of docs/ is an example that runs as written (issue 23).

The default run checks every fenced block without running it (seconds):

* every block is classified: ``bash``/``sh``/``console``/``python``/``pycon`` blocks are examples to run;
  ``text``/``yaml``/``json`` ... blocks are shown, never run; a block without a language fails. An example
  that cannot run here carries an HTML comment (GitHub does not render it) on the line(s) just above its fence:

  ``<!-- docs-test: skip: REASON -->``   never run (needs martinize2, GROMACS, a GPU, the user's data ...)
  ``<!-- docs-test: slow: REASON -->``   runs, but for long (training): run only with OPENMM_BACKMAP_DOCS_SLOW=1
  ``<!-- docs-test: file: NAME -->``     the page says to save the block as NAME: the run writes it there
  ``<!-- docs-test: setup: COMMAND -->`` a shell command run before the block: it makes the stand-in of a
                                          user's file the block names (``cg.pdb`` from ``tests/data``)
  ``<!-- docs-test: given: NAME -->``    a fragment uses objects of the user's script (``simulation``):
                                          ``tests/docs_fixtures.py``'s NAME() builds stand-ins for them
  ``<!-- docs-test: signature: NAME -->`` the block spells NAME's call signature: it must equal the real one

  A skip or slow without a reason fails, as does a misplaced or unknown ``docs-test`` comment.
* every ``openmm-backmap ...`` command (backslash continuations joined, shell variables of the block
  substituted), in every bash block and setup command, skipped ones included, goes through the package's own
  argparse parser (``openmm_backmap.cli.build_parser``); so does ``python -m openmm_backmap.train ...`` (also
  under ``torchrun``); ``python examples/X.py ...`` and ``python benchmarks/X.py ...`` go through the script's
  own parser, which is stopped right after parsing. A wrong verb, flag or choice fails.
* every python block compiles; every ``openmm_backmap`` module and name it imports or spells resolves, and the
  keyword arguments of calls to the package's functions and classes exist in their signatures.
* every repository file a command or a python block reads (``examples/...``, ``tests/data/...``,
  ``models/...``, ``benchmarks/...``; ``../shared/data/...`` where that folder exists) exists.

``test_page_examples_run`` runs the examples, page by page (the quick pages, ``QUICK_PAGES``, in the default
run, every page with ``python -m pytest -m "slow or not slow" tests/test_docs_examples.py``), in the order of the
page, as a user who follows it from the repository root of a clone: in a temporary copy of the repository
(so outputs never land in the working tree), bash blocks in bash with ``set -e``, python blocks in one
interpreter namespace per page, with a time limit per page. ``../shared/data`` is the real one where it exists;
a page whose runnable blocks need it is skipped without it.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import glob
import importlib
import inspect
import io
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docs_fixtures  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: the data the docs call ../shared/data (as tests/conftest.py finds it)
SHARED_DATA = Path(os.environ.get("OPENMM_BACKMAP_SHARED_DATA") or ROOT.parent / "shared" / "data")
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))

#: languages of examples (run by the slow test unless marked)
RUN_LANGS = {"bash", "sh", "console", "python", "pycon"}
SHELL_LANGS = {"bash", "sh", "console"}
PYTHON_LANGS = {"python", "pycon"}
#: languages of blocks that are shown, never run (output, file contents, diagrams, formulas)
NOT_CODE_LANGS = {"text", "yaml", "json", "toml", "ini", "output", "csv", "diff", "markdown"}
DIRECTIVES = {"skip", "slow", "file", "setup", "given", "signature"}
NEEDS_REASON = DIRECTIVES

#: folders of the repository that examples read from (a path under them must exist)
REPO_DIRS = ("examples/", "tests/", "models/", "benchmarks/", "docs/", "openmm_backmap/")
#: what the run copies into its temporary clone (everything a user's clone has that examples touch)
CLONE_ITEMS = ("README.md", "pyproject.toml", "setup.py", "examples", "tests", "models", "docs", "benchmarks")
#: seconds each page may take in the slow test (the machines are shared: pages stay under 5 minutes)
PAGE_TIMEOUT_S = float(os.environ.get("OPENMM_BACKMAP_DOCS_TIMEOUT", "290"))
#: with OPENMM_BACKMAP_DOCS_SLOW=1, pages with slow blocks run without a limit unless one is given
RUN_SLOW_BLOCKS = os.environ.get("OPENMM_BACKMAP_DOCS_SLOW") == "1"

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>[\w-]+)\s*(?::\s*(?P<value>.*?))?\s*-->\s*$")
ANY_DIRECTIVE = re.compile(r"docs-test")


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    directives: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        doc = self.doc.relative_to(ROOT).as_posix() if self.doc.is_relative_to(ROOT) else self.doc.name
        return f"{doc}:{self.line}"

    def values(self, kind: str) -> list[str]:
        return [v for k, v in self.directives if k == kind]

    @property
    def kind(self) -> str:
        """'run', 'slow', 'skip', 'file', 'not code' or 'unclassified'."""
        if self.lang in NOT_CODE_LANGS:
            return "not code"
        if self.lang not in RUN_LANGS:
            return "unclassified"
        for k in ("skip", "slow", "file"):
            if self.values(k):
                return k
        if self.values("signature"):
            return "skip"
        return "run"

    @property
    def shell(self) -> bool:
        return self.lang in SHELL_LANGS

    @property
    def python(self) -> bool:
        return self.lang in PYTHON_LANGS

    @property
    def source(self) -> str:
        """The code a user types: prompts of console and pycon blocks removed, output lines dropped."""
        if self.lang == "console":
            return "\n".join(l[2:] for l in self.code.splitlines() if l.startswith("$ "))
        if self.lang == "pycon":
            return "\n".join(l[4:] for l in self.code.splitlines() if l.startswith((">>> ", "... ")))
        return self.code


def parse_blocks(doc: Path) -> list[Block]:
    lines = doc.read_text().splitlines()
    blocks, used = [], set()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m["indent"].expandtabs()), m["fence"]
        info = m["info"].strip()
        lang = info.split()[0].lower() if info else ""
        j = i + 1
        close = re.compile(r"^[ \t]*%s{%d,}[ \t]*$" % (re.escape(fence[0]), len(fence)))
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        body = []
        for raw in lines[i + 1:j]:
            strip = min(indent, len(raw) - len(raw.lstrip(" ")))
            body.append(raw[strip:])
        block = Block(doc, i + 1, lang, "\n".join(body) + "\n")
        k = i - 1
        while k >= 0 and ANY_DIRECTIVE.search(lines[k]):
            d = DIRECTIVE.match(lines[k])
            used.add(k)
            if not d:
                block.errors.append(f"line {k + 1}: a docs-test comment must read <!-- docs-test: KIND: VALUE -->")
            elif d["kind"] not in DIRECTIVES:
                block.errors.append(f"line {k + 1}: unknown docs-test kind {d['kind']!r} (known: {sorted(DIRECTIVES)})")
            elif d["kind"] in NEEDS_REASON and not (d["value"] or "").strip():
                block.errors.append(f"line {k + 1}: 'docs-test: {d['kind']}' needs a value (the reason, file or command)")
            else:
                block.directives.insert(0, (d["kind"], d["value"].strip()))
            k -= 1
        blocks.append(block)
        i = j + 1
    for k, text in enumerate(lines):
        if ANY_DIRECTIVE.search(text) and k not in used and "`" not in text:
            blocks.append(Block(doc, k + 1, "text", "", errors=[
                f"line {k + 1}: a docs-test comment that is not right above a code fence"]))
    return blocks


def all_blocks() -> list[Block]:
    return [b for doc in DOCS for b in parse_blocks(doc)]


BLOCKS = all_blocks()


# ---------------------------------------------------------------- shell commands


@dataclass
class Command:
    argv: list[str]
    text: str


def _logical_lines(code: str) -> list[str]:
    out, cur = [], ""
    for line in code.splitlines():
        if line.rstrip().endswith("\\") and not line.lstrip().startswith("#"):
            cur += line.rstrip()[:-1] + " "
        else:
            out.append(cur + line)
            cur = ""
    if cur:
        out.append(cur)
    return out


ASSIGN = re.compile(r"^(?:export\s+)?([A-Za-z_]\w*)=(\S*)$")
VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def shell_commands(code: str) -> list[Command]:
    """The simple commands of a shell snippet, with the snippet's own variables substituted."""
    env: dict[str, str] = {}
    commands = []
    for line in _logical_lines(code):
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
        lex.whitespace_split = True
        lex.commenters = "#"
        try:
            tokens = list(lex)
        except ValueError as err:  # unbalanced quotes
            commands.append(Command(["<unparsable>", str(err)], line))
            continue
        cur: list[str] = []
        for tok in tokens + [";"]:
            if tok and set(tok) <= set(";&|()<>"):
                if tok in (">", ">>", "<", "2>", "&>"):
                    cur.append(tok)
                    continue
                if cur:
                    argv = [VAR.sub(lambda m: env.get(m[1] or m[2], m[0]), a) for a in cur]
                    # redirections: drop the operator and its target
                    clean, skip = [], False
                    for a in argv:
                        if skip:
                            skip = False
                            continue
                        if a in (">", ">>", "<", "2>", "&>"):
                            skip = True
                            continue
                        clean.append(a)
                    while clean and ASSIGN.match(clean[0]) and len(clean) > 1:
                        clean = clean[1:]  # VAR=value command ...: the value is for that command only
                    if len(clean) == 1 and ASSIGN.match(clean[0]) or clean[:1] == ["export"]:
                        for a in clean[1:] if clean[:1] == ["export"] else clean:
                            m = ASSIGN.match(a)
                            if m:
                                env[m[1]] = VAR.sub(lambda n: env.get(n[1] or n[2], n[0]), m[2])
                    elif clean:
                        commands.append(Command(clean, line.strip()))
                cur = []
            else:
                cur.append(tok)
    return commands


class _Parsed(Exception):
    def __init__(self, namespace):
        self.namespace = namespace


@contextlib.contextmanager
def _stop_after_parsing():
    """Make every ArgumentParser raise _Parsed(namespace) once it has parsed its arguments."""
    original = argparse.ArgumentParser.parse_known_args

    def parse_known_args(self, args=None, namespace=None):
        ns, extra = original(self, args, namespace)
        if getattr(self, "_docs_test_known", False):
            return ns, extra
        raise _Parsed(ns) if not extra else self.error("unrecognized arguments: " + " ".join(extra))

    def parse_args(self, args=None, namespace=None):
        ns, extra = original(self, args, namespace)
        if extra:
            self.error("unrecognized arguments: " + " ".join(extra))
        raise _Parsed(ns)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", parse_args)
        mp.setattr(argparse.ArgumentParser, "parse_known_args", parse_known_args)
        yield


def _parse(parser: argparse.ArgumentParser, args: list[str]) -> tuple[argparse.Namespace | None, str]:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(args), ""
    except SystemExit as exc:
        if exc.code in (0, None):  # --help, --version
            return argparse.Namespace(), ""
        return None, err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {exc.code}"


def _script_parse(script: Path, args: list[str]) -> tuple[argparse.Namespace | None, str]:
    """Run a repository script up to its argument parsing, with these arguments, and stop there."""
    err = io.StringIO()
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [str(script)] + args
    sys.path.insert(0, str(script.parent))
    try:
        with _stop_after_parsing(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(script), run_name="__main__")
    except _Parsed as done:
        return done.namespace, ""
    except SystemExit as exc:
        if exc.code in (0, None):
            return argparse.Namespace(), ""
        text = err.getvalue().strip()
        return None, text.splitlines()[-1] if text else f"exit {exc.code}"
    except ModuleNotFoundError as exc:
        # a client script run with its engine's environment ($PY): cannot be imported here
        if exc.name and not exc.name.startswith(("openmm_backmap", "_common")):
            return argparse.Namespace(), f"not checked: needs {exc.name}"
        raise
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
    return None, "the script finished without parsing any arguments"


def _cli_parser() -> argparse.ArgumentParser:
    from openmm_backmap.cli import build_parser

    return build_parser()


def _train_parser() -> argparse.ArgumentParser:
    from openmm_backmap.train.__main__ import build_parser

    return build_parser()


#: options whose value is a file the command writes, not reads
OUTPUT_OPTIONS = {"-o", "--output", "--out", "--json", "--plots", "--pulchra-cache", "--cache", "-x", "-deffnm"}


def check_command(cmd: Command) -> tuple[list[str], list[str]]:
    """(errors, repository paths the command reads) of one shell command."""
    argv = cmd.argv
    errors: list[str] = []
    prog = os.path.basename(argv[0])
    ns = None
    if prog == "openmm-backmap":
        ns, err = _parse(_cli_parser(), argv[1:])
        if ns is None:
            errors.append(f"`{cmd.text}`: {err}")
    elif prog.startswith("python") or prog == "torchrun":
        rest = argv[1:]
        if prog == "torchrun":  # torchrun [its options] -m MODULE ARGS
            rest = rest[rest.index("-m"):] if "-m" in rest else []
        if rest[:2] == ["-m", "openmm_backmap.train"]:
            ns, err = _parse(_train_parser(), rest[2:])
            if ns is None:
                errors.append(f"`{cmd.text}`: {err}")
        elif rest[:1] == ["-m"] and rest[1:2] and rest[1].startswith("openmm_backmap"):
            errors.append(f"`{cmd.text}`: no command-line module {rest[1]} is known to this test; add its parser")
        elif rest and rest[0].endswith(".py") and rest[0].startswith(("examples/", "benchmarks/")):
            script = ROOT / rest[0]
            if not script.is_file():
                errors.append(f"`{cmd.text}`: {rest[0]} does not exist")
            elif "parse_args(" in script.read_text():
                ns, err = _script_parse(script, rest[1:])
                if ns is None:
                    errors.append(f"`{cmd.text}`: {err}")
    # repository files read by the command
    reads, prev = [], ""
    for k, a in enumerate(argv[1:], 1):
        value = a.split("=", 1)[1] if a.startswith("-") and "=" in a else a
        is_output = prev in OUTPUT_OPTIONS or (prog in ("cp", "mv") and k == len(argv) - 1)
        if "=" in a and a.startswith("--"):
            is_output = is_output or a.split("=", 1)[0] in OUTPUT_OPTIONS
        if not is_output:
            reads.append(value)
        prev = a
    return errors, reads


def _expand_braces(path: str) -> list[str]:
    m = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if not m:
        return [path]
    return [p for alt in m[1].split(",") for p in _expand_braces(path[:m.start()] + alt + path[m.end():])]


def missing_paths(candidates: list[str]) -> list[str]:
    missing = []
    for given in candidates:
        cand = given
        cand = cand.split("::", 1)[0].split(":", 1)[0] if cand.startswith(REPO_DIRS) else cand
        if cand.startswith(REPO_DIRS):
            base = ROOT
        elif cand.startswith("../shared/data/"):
            if not SHARED_DATA.is_dir():
                continue
            base, cand = SHARED_DATA, cand[len("../shared/data/"):]
        else:
            continue
        if "..." in cand or "<" in cand or cand.endswith("/"):
            continue
        for path in _expand_braces(cand):
            if not glob.glob(str(base / path)):
                missing.append(given)
    return missing


# ---------------------------------------------------------------- python blocks


_resolve = docs_fixtures.resolve_dotted


def _dotted(node) -> str | None:
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + names[::-1])
    return None


def check_python(block: Block) -> tuple[list[str], list[str]]:
    """(errors, string literals that may be repository paths) of a python block."""
    code = block.source
    try:
        tree = ast.parse(code, block.where)
        compile(tree, block.where, "exec")
    except SyntaxError as err:
        return [f"{block.where}: does not compile: {err}"], []
    errors, strings = [], []
    known: dict[str, str] = {}  # local name -> dotted package name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "openmm_backmap":
                    try:
                        importlib.import_module(a.name)
                    except ImportError as err:
                        errors.append(f"import {a.name}: {err}")
                    known[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "openmm_backmap":
            for a in node.names:
                try:
                    _resolve(f"{node.module}.{a.name}")
                except (ImportError, AttributeError) as err:
                    errors.append(f"from {node.module} import {a.name}: {err}")
                else:
                    known[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.append(node.value)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and not isinstance(getattr(node, "parent", None), ast.Attribute):
            dotted = _dotted(node)
            if dotted and dotted.split(".")[0] in known:
                head, _, rest = dotted.partition(".")
                full = known[head] + "." + rest
                try:
                    _resolve(full)
                except (ImportError, AttributeError) as err:
                    errors.append(f"`{dotted}`: {err}")
        if isinstance(node, ast.Call):
            dotted = _dotted(node.func)
            if not dotted or dotted.split(".")[0] not in known:
                continue
            head, _, rest = dotted.partition(".")
            try:
                obj = _resolve(known[head] + ("." + rest if rest else ""))
                sig = inspect.signature(obj)
            except (ImportError, AttributeError, TypeError, ValueError):
                continue
            if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
                continue
            try:
                sig.bind_partial(*[None] * len(node.args), **{k.arg: None for k in node.keywords})
            except TypeError as err:
                errors.append(f"`{dotted}(...)` (line {node.lineno} of the block): {err}")
    return [f"{block.where}: {e}" for e in errors], strings


def check_signature(block: Block, name: str) -> list[str]:
    """The block spells `name(p1, p2=default, ...)`: the same parameters and defaults as the real one."""
    call = ast.parse(block.source.strip(), mode="eval").body
    if not isinstance(call, ast.Call):
        return [f"{block.where}: a 'signature' block must be one call expression"]
    sig = inspect.signature(_resolve(name))
    params = [p for p in sig.parameters.values() if p.name != "self"]
    written = [(ast.unparse(a), None) for a in call.args] + [(k.arg, ast.unparse(k.value)) for k in call.keywords]
    real = [(p.name, None if p.default is inspect.Parameter.empty else repr(p.default)) for p in params]
    if [n for n, _ in written] != [n for n, _ in real]:
        return [f"{block.where}: the block lists {[n for n, _ in written]}, {name} takes {[n for n, _ in real]}"]
    bad = [f"{n}={w} (real: {r})" for (n, w), (_, r) in zip(written, real)
           if w is not None and r is not None and ast.literal_eval(w) != ast.literal_eval(r)]
    errors = [f"{block.where}: defaults differ from {name}'s: {', '.join(bad)}"] if bad else []
    text = block.doc.read_text()
    undocumented = [n for n, _ in real if f"`{n}`" not in text]
    if undocumented:
        errors.append(f"{block.where}: the page does not explain {undocumented} (no `name` in its text)")
    return errors


# ---------------------------------------------------------------- the fast tests


def test_the_docs_have_examples():
    kinds = [b.kind for b in BLOCKS]
    assert kinds.count("run") >= 10 and kinds.count("skip") >= 1


def test_every_block_is_classified():
    problems = []
    for b in BLOCKS:
        problems += [f"{b.where}: {e}" for e in b.errors]
        if b.kind == "unclassified":
            problems.append(f"{b.where}: a code block without a known language ({b.lang or 'none'!r}): "
                            f"mark it bash/python (an example) or text (not code)")
        if b.lang in NOT_CODE_LANGS and any(k != "file" for k, _ in b.directives):
            problems.append(f"{b.where}: a {b.lang} block is never run; its docs-test comment has no effect")
        if len(b.values("file")) + len(b.values("skip")) + len(b.values("slow")) > 1:
            problems.append(f"{b.where}: give one of skip, slow, file")
    assert not problems, "\n".join(problems)


def block_errors(block: Block) -> list[str]:
    """Everything wrong with one code block that can be found without running it."""
    errors, reads = [], []
    shell_code = [block.source] if block.shell else []
    shell_code += block.values("setup")
    for code in shell_code:
        for cmd in shell_commands(code):
            e, r = check_command(cmd)
            errors += [f"{block.where}: {x}" for x in e]
            reads += r
    if block.python:
        e, strings = check_python(block)
        errors += e
        reads += strings
    for name in block.values("signature"):
        errors += check_signature(block, name)
    for name in block.values("given"):
        if not callable(getattr(docs_fixtures, name, None)):
            errors.append(f"{block.where}: 'given: {name}': tests/docs_fixtures.py has no function {name}")
    errors += [f"{block.where}: reads {p}, which does not exist" for p in missing_paths(reads)]
    return errors


CODE_BLOCKS = [b for b in BLOCKS if b.lang in RUN_LANGS]


@pytest.mark.parametrize("block", CODE_BLOCKS, ids=[b.where for b in CODE_BLOCKS])
def test_block_is_consistent_with_the_package(block):
    errors = block_errors(block)
    assert not errors, "\n".join(errors)


def test_the_checks_catch_mistakes(tmp_path):
    """The checks above fail on each kind of mistake they are meant to find (so their passing means something)."""
    doc = tmp_path / "page.md"
    doc.write_text(textwrap.dedent("""\
        ```
        openmm-backmap info models/ca2aa.pt
        ```

        <!-- docs-test: skip: -->
        ```bash
        openmm-backmap info models/ca2aa.pt
        ```

        <!-- docs-test: sometimes: now -->
        ```bash
        openmm-backmap convert cg.dcd -o aa.xtc --samples 5 \\
            --relax quick
        openmm-backmap trian examples/configs/ca2aa.yaml
        python -m openmm_backmap.train examples/configs/nope.yaml --steps 3
        python benchmarks/kstep_table.py --rowz adk12
        ```

        ```python
        from openmm_backmap import load_model, no_such_name
        from openmm_backmap.run import BackmapReporter
        r = BackmapReporter("aa.dcd", 100, reportinterval=3)
        bm = load_model("models/nope.pt")
        ```

        <!-- docs-test: slow: trains -->
        ```python
        def broken(:
        ```

        <!-- docs-test: skip: lost -->

        Text.
        """))
    blocks = parse_blocks(doc)
    kinds = [b.kind for b in blocks]
    assert kinds[:5] == ["unclassified", "run", "run", "run", "slow"], kinds
    assert "needs a value" in blocks[1].errors[0] and "unknown docs-test kind" in blocks[2].errors[0]
    assert "not right above a code fence" in blocks[-1].errors[0]
    shell = "\n".join(block_errors(blocks[2]))
    for wrong in ("--relax: invalid choice: 'quick'", "invalid choice: 'trian'", "unrecognized arguments: --steps",
                  "unrecognized arguments: --rowz", "reads examples/configs/nope.yaml"):
        assert wrong in shell, (wrong, shell)
    py = "\n".join(block_errors(blocks[3]))
    for wrong in ("import no_such_name", "reportinterval", "reads models/nope.pt"):
        assert wrong in py, (wrong, py)
    assert "does not compile" in block_errors(blocks[4])[0]
    cmds = shell_commands("D=../x\nexport N=2\nOMP_NUM_THREADS=1 openmm-backmap coarsen $D/a.pdb -o ${D}/b && ls | wc")
    assert [c.argv for c in cmds] == [["openmm-backmap", "coarsen", "../x/a.pdb", "-o", "../x/b"], ["ls"], ["wc"]]


# ---------------------------------------------------------------- the slow test: run them

DRIVER = r'''
import json, subprocess, sys, time, traceback
blocks = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
sys.path.insert(0, "tests")
for b in blocks:
    print(f"\n===== {b['where']} ({b['lang']})", flush=True)
    t0 = time.perf_counter()
    for name in b["given"]:
        import docs_fixtures
        print(f"----- given: {name}", flush=True)
        ns.update(getattr(docs_fixtures, name)())
    for cmd in b["setup"]:
        print(f"----- setup: {cmd}", flush=True)
        if subprocess.run(["bash", "-e", "-o", "pipefail", "-c", cmd]).returncode:
            print(f"FAILED: {b['where']}: setup command failed", flush=True)
            sys.exit(1)
    if b["file"]:
        with open(b["file"], "w") as fh:
            fh.write(b["code"])
        print(f"----- wrote {b['file']}", flush=True)
    elif b["shell"]:
        if subprocess.run(["bash", "-e", "-o", "pipefail", "-c", b["code"]]).returncode:
            print(f"FAILED: {b['where']}: the block exited non-zero", flush=True)
            sys.exit(1)
    else:
        try:
            exec(compile(b["code"], b["where"], "exec"), ns)
        except BaseException:
            traceback.print_exc()
            print(f"FAILED: {b['where']}: the block raised", flush=True)
            sys.exit(1)
    print(f"----- {b['where']}: {time.perf_counter() - t0:.1f} s", flush=True)
'''


def _run_order(doc: Path) -> list[Block]:
    return [b for b in parse_blocks(doc) if b.kind in ("run", "file") or (b.kind == "slow" and RUN_SLOW_BLOCKS)]


PAGES = [doc for doc in DOCS if _run_order(doc)]
#: Pages whose runnable examples take under a minute here (wall s on the shared 2-core machine, 2026-12-06:
#: quickstart 54, continue_all_atom 19, relaxation 9, scaling 3.5): they run in the default test run, so CI executes
#: them on every change. The others (README 99 s, the pages on ../shared/data or external engines) run with -m slow.
QUICK_PAGES = ("docs/quickstart.md", "docs/continue_all_atom.md", "docs/relaxation.md", "docs/scaling.md")
_PAGE_PARAMS = [pytest.param(d, id=d.relative_to(ROOT).as_posix(),
                             marks=() if d.relative_to(ROOT).as_posix() in QUICK_PAGES else pytest.mark.slow)
                for d in PAGES]


def _make_clone(tmp: Path) -> Path:
    """A copy of the repository's files a user's clone has, with ../shared/data beside it (a link)."""
    clone = tmp / "clone"
    clone.mkdir()
    for item in CLONE_ITEMS:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, clone / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.is_file():
            shutil.copy2(src, clone / item)
    if SHARED_DATA.is_dir():
        (tmp / "shared").mkdir()
        (tmp / "shared" / "data").symlink_to(SHARED_DATA)
    return clone


@pytest.mark.parametrize("doc", _PAGE_PARAMS)
def test_page_examples_run(doc, tmp_path):
    blocks = _run_order(doc)
    if any("../shared/" in b.code + " ".join(b.values("setup")) for b in blocks) and not SHARED_DATA.is_dir():
        pytest.skip("the page's examples read ../shared/data, which is not here")
    clone = _make_clone(tmp_path)
    spec = [{"where": b.where, "lang": b.lang, "code": b.source, "shell": b.shell,
             "file": (b.values("file") or [None])[0], "setup": b.values("setup"),
             "given": b.values("given")} for b in blocks]
    (tmp_path / "blocks.json").write_text(json.dumps(spec))
    (tmp_path / "driver.py").write_text(DRIVER)
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    # shared machines: one thread per library unless the caller says otherwise
    for var in ("OMP_NUM_THREADS", "OPENMM_CPU_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env.setdefault("MPLBACKEND", "Agg")
    timeout = PAGE_TIMEOUT_S
    if any(b.kind == "slow" for b in blocks) and "OPENMM_BACKMAP_DOCS_TIMEOUT" not in os.environ:
        timeout = None
    try:
        proc = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "blocks.json")],
                              cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"{doc.name}: over {PAGE_TIMEOUT_S:.0f} s\n{out[-4000:]}")
    report = proc.stdout[-6000:] + "\n" + proc.stderr[-6000:]
    print(proc.stdout)
    assert proc.returncode == 0, report
