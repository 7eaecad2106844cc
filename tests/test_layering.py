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
    """The test above can fail: the engine and its helpers are found, with their edges."""
    assert "fitjax.engine" in GRAPH and "fitjax._base" in GRAPH["fitjax.engine"]
    assert _cycle_from("fitjax._base") is None


# Private names that one module still takes from another. No new one may be added: a
# module needs a public (or internal) name of another. Remove an entry when it goes.
KNOWN_PRIVATE_CROSSINGS = {
    ("fitjax.fastmath", "fitjax._fused_loss", "_CALLS"),
    ("fitjax.fused", "fitjax.engine", "_make_step"),
    ("fitjax.fused", "fitjax.engine", "_Plan"),
    ("fitjax.fused", "fitjax.engine", "_record_steps"),
    ("fitjax.landscape", "fitjax.engine", "_check_loss"),
}


def _unit(module: str) -> str:
    """A sub-package is one unit (its modules share private names); a top-level module is its own."""
    package = module.rpartition(".")[0]
    return module if package == "fitjax" else package


def _private_crossings() -> set[tuple[str, str, str]]:
    found = set()
    for name, path in MODULES.items():
        for module, imported in _imports(name, path):
            private = imported is not None and imported.startswith("_") and not imported.startswith("__")
            if private and _unit(name) != _unit(module):
                found.add((name, module, imported))
    return found


def test_no_new_private_name_crosses_modules():
    new = sorted(_private_crossings() - KNOWN_PRIVATE_CROSSINGS)
    assert not new, f"modules import private names of other modules: {new}; give them a public name"


def test_the_known_crossings_are_still_there():
    """An entry that is gone must leave the list (so the list only shrinks)."""
    gone = sorted(KNOWN_PRIVATE_CROSSINGS - _private_crossings())
    assert not gone, f"these no longer cross; remove them from KNOWN_PRIVATE_CROSSINGS: {gone}"
