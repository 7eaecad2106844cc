"""The import graph of fitjax/: no cycle, and no new private name crossing modules.

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


PENDING = {
    ("fitjax.analysis.landscape", "fitjax.engine.core", "_check_loss"),
    ("fitjax.engine.chunked", "fitjax.problems.inits", "_as_tree"),
    ("fitjax.engine.chunked", "fitjax.problems.inits", "_leaf_keys"),
    ("fitjax.kernels.fused", "fitjax.engine.core", "_Plan"),
    ("fitjax.kernels.fused", "fitjax.engine.core", "_make_step"),
    ("fitjax.kernels.fused", "fitjax.engine.core", "_record_steps"),
}


def _private_uses(name: str, path: Path) -> set[tuple[str, str]]:
    """``(module, private name)`` taken from other fitjax modules: imported, or read as ``mod._name``."""
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
    return found


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
    found = sorted(_private_crossings() - PENDING)
    assert not found, f"packages use private names of other packages: {found}; give them a public name"


def test_a_private_crossing_is_found(tmp_path):
    """The detector sees both forms, ``from m import _x`` and ``m._x``."""
    src = tmp_path / "probe.py"
    src.write_text("from fitjax.engine import core\nfrom fitjax.optim.protocol import _x\ncore._y\n")
    assert _private_uses("fitjax.cli.probe", src) == {
        ("fitjax.optim.protocol", "_x"),
        ("fitjax.engine.core", "_y"),
    }
