"""The import graph of ``multistream``, read from the source with ``ast`` (imports inside functions count too).

- no cycle among the modules;
- no module imports a private name (``_x``) from a module of another package;
- the layers: ``model`` imports nothing of data, train, engine, server or evals; ``data`` nothing of train,
  engine, server or evals; ``engine`` nothing of train, server or evals; ``train`` nothing of evals or server;
  ``server`` nothing of train or evals; ``evals`` nothing of the server; no library module imports the command
  line's entry point (``multistream.cli``);
- the server talks to the engine through the engine's public interface (no ``engine.core``, no private
  attribute of another object).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import multistream

ROOT = Path(multistream.__file__).parent
PKG = "multistream"

LAYERS = {
    # module or package -> packages (and modules) it must not import
    "multistream.model": ["multistream.data", "multistream.train", "multistream.engine", "multistream.server",
                          "multistream.evals"],
    "multistream.data": ["multistream.train", "multistream.engine", "multistream.server", "multistream.evals"],
    "multistream.engine": ["multistream.train", "multistream.server", "multistream.evals"],
    "multistream.train": ["multistream.evals", "multistream.server"],
    "multistream.server": ["multistream.train", "multistream.evals"],
    "multistream.evals": ["multistream.server"],
}
# (importer, imported): edges against LAYERS still in the code, each to be removed (none left). The test fails when
# one is gone, so that this list only shrinks.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


@cache
def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's ``__init__``)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = [PKG, *path.relative_to(ROOT).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _package(module: str) -> str:
    return module if modules()[module][1] else module.rpartition(".")[0]


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = _package(module).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def imports(module: str) -> list[tuple[str, str | None, int]]:
    """(imported module, name taken from it or None, line) for every import in ``module``, at any depth."""
    mods = modules()
    out = []
    for node in ast.walk(ast.parse(mods[module][0].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == PKG]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            if target.split(".")[0] != PKG:
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((sub, None, node.lineno) if sub in mods else (target, a.name, node.lineno))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and node.args[0].value.split(".")[0] == PKG
              and ((isinstance(node.func, ast.Name) and node.func.id == "__import__")
                   or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"))):
            out.append((node.args[0].value, None, node.lineno))  # __import__("multistream.x"), import_module(...)
    return out


def graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in imports(m) if t in modules() and t != m} for m in modules()}


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_graph_is_read():
    """(The checks below would pass vacuously on an empty graph.)"""
    g = graph()
    assert len(g) > 40
    assert "multistream.engine.core" in g["multistream.engine.aio"]
    assert "multistream.engine.cli" in g["multistream.cli"]  # lazy imports inside functions count


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    cycles = _cycles(graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_private_name_from_another_package():
    bad = [
        f"{m}:{line} imports {name} from {t}"
        for m in modules()
        for t, name, line in imports(m)
        if name and name.startswith("_") and not name.startswith("__") and t in modules() and _package(t) != _package(m)
    ]
    assert not bad, "\n".join(sorted(set(bad)))


def test_layers():
    found, bad = set(), []
    for m in modules():
        for low, forbidden in LAYERS.items():
            if not _within(m, low):
                continue
            for t, _, line in imports(m):
                if any(_within(t, f) for f in forbidden):
                    if (m, t) in KNOWN_EXCEPTIONS:
                        found.add((m, t))
                    else:
                        bad.append(f"{m}:{line} imports {t}")
    assert not bad, "\n".join(sorted(set(bad)))
    assert found == KNOWN_EXCEPTIONS, f"fixed, remove from KNOWN_EXCEPTIONS: {sorted(KNOWN_EXCEPTIONS - found)}"


def test_no_library_module_imports_the_command_line_entry_point():
    bad = [f"{m}:{line}" for m in modules() for t, _, line in imports(m) if t == "multistream.cli"]
    assert not bad, "import multistream.cli: " + ", ".join(bad)


def test_the_server_uses_the_engines_public_interface():
    bad = []
    for m, (path, _) in modules().items():
        if not _within(m, "multistream.server"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute):
                continue
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            mine = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if node.attr == "core" or (private and not mine):
                bad.append(f"{m}:{node.lineno} {ast.unparse(node)}")
    assert not bad, "\n".join(sorted(set(bad)))
