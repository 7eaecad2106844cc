"""The import graph of fitjax/: no cycle, no private name crossing packages, and none
taken by a test or a benchmark; functions short enough to read on one screen.

Read from the source (``ast``), imports inside functions included, so a lazy import
cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "fitjax"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[tuple[str, str | None]]:
    """``(module, imported name or None)`` for every fitjax import of a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[tuple[str, str | None]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {(a.name, None) for a in node.names if a.name.startswith("fitjax")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if not base.startswith("fitjax"):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add((full, None) if full in MODULES else (base, alias.name))
    return found


GRAPH = {m: {t for t, _ in _imports(m, p) if t in MODULES and t != m} for m, p in MODULES.items()}


def _cycle_from(start: str) -> list[str] | None:
    """A path from ``start`` back to itself, not through the package root (which only re-exports)."""
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, path = stack.pop()
        for nxt in GRAPH[node] - {"fitjax"}:
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_the_import_graph_has_no_cycle():
    cycles = [c for m in sorted(GRAPH) if m != "fitjax" and (c := _cycle_from(m))]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_graph_is_read():
    """The tests here can fail: the engine and its helpers are found, with their edges."""
    assert "fitjax.engine.core" in GRAPH and "fitjax.optim.protocol" in GRAPH["fitjax.engine.core"]
    assert _cycle_from("fitjax.optim.protocol") is None
    assert _package("fitjax.engine.core") == "engine" and _package("fitjax._checks") == "_checks"


# Which package may import which: a package imports only those below it, so the protocol and
# the problems never depend on the engine, and the engine never on what is made of its runs.
LAYERS: dict[str, set[str]] = {
    "_checks": set(),
    "_version": set(),
    "numerics": {"_checks"},
    "optim": {"_checks", "numerics"},
    "problems": {"_checks", "numerics"},
    "engine": {"_checks", "numerics", "_version", "optim", "problems"},
    "kernels": {"_checks", "numerics", "optim", "engine"},
    "analysis": {"_checks", "numerics", "optim", "problems", "engine"},
    "comparison": {"_checks", "numerics", "optim", "problems", "engine", "analysis"},
    "lecture": {"", "_checks", "numerics", "optim", "problems", "engine", "analysis", "comparison"},
    "internal": {"_checks", "numerics", "optim", "problems", "engine", "kernels", "analysis"},
    "cli": {
        "",
        "_checks",
        "numerics",
        "optim",
        "problems",
        "engine",
        "kernels",
        "analysis",
        "comparison",
        "lecture",
    },
}


def _package(module: str) -> str:
    """The first name below ``fitjax``: the sub-package (or top-level module) a module is in."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_package_has_a_layer():
    packages = {_package(m) for m in MODULES} - {"", "__main__"}
    assert packages <= set(LAYERS), f"give these a layer in LAYERS: {sorted(packages - set(LAYERS))}"


def test_packages_import_only_the_layers_below():
    wrong = sorted(
        (m, t)
        for m, targets in GRAPH.items()
        if _package(m) in LAYERS
        for t in targets
        if _package(t) != _package(m) and _package(t) not in LAYERS[_package(m)]
    )
    assert not wrong, f"imports against the layering: {wrong}"


def _private_uses(name: str, path: Path) -> set[tuple[str, str]]:
    """``(module, private name)`` taken from other fitjax modules: imported, read as ``mod._name``,
    or replaced by name (``setattr(mod, "_name", ...)``, as ``monkeypatch.setattr`` does)."""
    found = {(m, n) for m, n in _imports(name, path) if n is not None and _is_private(n)}
    tree = ast.parse(path.read_text())
    modules: dict[str, str] = {}  # local name -> fitjax module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fitjax"):
            for alias in node.names:
                if f"{node.module}.{alias.name}" in MODULES:
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _is_private(node.attr):
            if node.value.id in modules:
                found.add((modules[node.value.id], node.attr))
        if isinstance(node, ast.Call) and _is_setattr(node.func) and len(node.args) >= 2:
            target, attr = node.args[:2]
            if isinstance(target, ast.Name) and target.id in modules and isinstance(attr, ast.Constant):
                if isinstance(attr.value, str) and _is_private(attr.value):
                    found.add((modules[target.id], attr.value))
    return found


def _is_setattr(func: ast.expr) -> bool:
    return (isinstance(func, ast.Name) and func.id == "setattr") or (
        isinstance(func, ast.Attribute) and func.attr == "setattr"
    )


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_crossings() -> set[tuple[str, str, str]]:
    """Private names one package takes from another (inside a package, modules share them)."""
    return {
        (name, module, private)
        for name, path in MODULES.items()
        for module, private in _private_uses(name, path)
        if _package(name) != _package(module)
    }


def test_no_private_name_crosses_packages():
    found = sorted(_private_crossings())
    assert not found, f"packages use private names of other packages: {found}; give them a public name"


def test_a_private_crossing_is_found(tmp_path):
    """The detector sees both forms, ``from m import _x`` and ``m._x``."""
    src = tmp_path / "probe.py"
    src.write_text("from fitjax.engine import core\nfrom fitjax.optim.protocol import _x\ncore._y\n")
    assert _private_uses("fitjax.cli.probe", src) == {
        ("fitjax.optim.protocol", "_x"),
        ("fitjax.engine.core", "_y"),
    }


# ----------------------------------------------------------------------------- tests and benchmarks

TOP = ROOT.parent
USERS = sorted([*TOP.glob("tests/*.py"), *TOP.glob("benchmarks/*.py")])


def _private_uses_of_fitjax(path: Path) -> set[tuple[str, str]]:
    """The private fitjax names a test or benchmark file imports or reads as ``mod._name``."""
    name = ".".join(path.relative_to(TOP).with_suffix("").parts)
    return {(m, n) for m, n in _private_uses(name, path) if m.startswith("fitjax")}


def test_tests_and_benchmarks_use_no_private_fitjax_name():
    """Tests and benchmarks go through the public API, the sub-packages' public names or
    ``fitjax.internal``, so that a module's private names can change freely."""
    assert len(USERS) > 20, USERS
    found = {str(p.relative_to(TOP)): sorted(uses) for p in USERS if (uses := _private_uses_of_fitjax(p))}
    assert not found, f"give these a public name (in fitjax.internal if they are not API): {found}"


def test_a_private_use_in_a_test_is_found(tmp_path):
    probe = tmp_path / "tests" / "test_probe.py"
    probe.parent.mkdir()
    lines = [
        "from fitjax.engine import loop, program",
        "from fitjax import internal",
        "loop._span",
        "internal.TRACES",
        "monkeypatch.setattr(program, '_compiled', None)",
        "monkeypatch.setattr(program, 'program', None)",
    ]
    probe.write_text("\n".join(lines))
    found = _private_uses("tests.test_probe", probe)
    assert found == {("fitjax.engine.loop", "_span"), ("fitjax.engine.program", "_compiled")}


# ----------------------------------------------------------------------------- function length

MAX_LINES = 80


def _long_functions(path: Path, most: int = MAX_LINES) -> list[tuple[str, int]]:
    """``(name, lines)`` of the functions of a file longer than ``most`` lines, docstring excluded."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            if ast.get_docstring(node) is not None:
                doc = node.body[0]
                assert doc.end_lineno is not None
                lines -= doc.end_lineno - doc.lineno + 1
            if lines > most:
                found.append((node.name, lines))
    return found


def test_functions_are_short():
    checked = list(MODULES.values())  # every module of fitjax/
    assert len(checked) >= 40, checked
    long = {str(p.relative_to(TOP)): found for p in checked if (found := _long_functions(p))}
    assert not long, f"functions over {MAX_LINES} lines (docstring excluded): {long}"


def test_a_long_function_is_found(tmp_path):
    src = tmp_path / "long.py"
    body = "".join(f"    x{i} = {i}\n" for i in range(79))
    src.write_text(f'def f():\n    """Doc.\n\n    More.\n    """\n{body}\n\ndef g():\n{body}    return 1\n')
    assert _long_functions(src) == [("g", 81)]  # f: 80 lines with its def line, the docstring left out
