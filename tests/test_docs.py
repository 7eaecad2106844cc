"""The documentation site: it builds without warnings, and what it shows is true.

* ``mkdocs build --strict`` passes (broken links, missing pages, docstrings that do
  not parse and unresolved cross-references are all errors).
* Every ```` ```python ```` block of every page runs, in order, one namespace per
  page; where a ```` ```text ```` block follows a python block directly, it is the
  output that block prints, compared as doctest compares (``...`` matches anything,
  whitespace is normalised). A python block preceded by ``<!-- test: skip -->``
  (one that needs a GPU, several hosts or a long run) is shown but not run.
* Every ``fitjax ...`` command in a ```` ```bash ```` block parses with the command
  line's own parser (it is not run: that is tests/test_cli.py's job).
* The optax equivalence table names real tests: every ``tests/<file>.py::<test>`` in
  its last column is a test function in that file.
* The API reference documents every name in ``fitjax.__all__``.
* Every figure the pages show is in ``docs/figures`` and is one that ``fitjax demo``
  draws, so regenerating them (``fitjax demo --out docs/figures``) refreshes them all.
"""

from __future__ import annotations

import ast
import contextlib
import doctest
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import fitjax

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if not {"_ext", "figures"} & set(p.relative_to(DOCS).parts))

_FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)[^\n]*$")
SKIP = "<!-- test: skip -->"


def _rel(path: Path) -> str:
    return path.relative_to(DOCS).as_posix()


def code_blocks(text: str) -> list[dict]:
    """The fenced blocks of a Markdown page: language, source, first line, and the line before."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.group(1), opening.group(2).lower()
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        before = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        blocks.append(
            {
                "lang": lang,
                "source": "\n".join(lines[i + 1 : j]),
                "line": i + 1,
                "start": i,
                "end": j,
                "before": before,
            }
        )
        i = j + 1
    return blocks


def examples(text: str) -> list[tuple[str, str | None, int, bool]]:
    """``(source, expected output or None, line, skipped)`` for each python block of a page."""
    blocks = code_blocks(text)
    lines = text.splitlines()
    out = []
    for k, b in enumerate(blocks):
        if b["lang"] not in ("python", "py"):
            continue
        want = None
        nxt = blocks[k + 1] if k + 1 < len(blocks) else None
        if (
            nxt is not None
            and nxt["lang"] == "text"
            and not any(s.strip() for s in lines[b["end"] + 1 : nxt["start"]])
        ):
            want = nxt["source"] + "\n"
        out.append((b["source"], want, b["line"], b["before"] == SKIP))
    return out


# ----------------------------------------------------------------------------- the build


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # Not -q: mkdocs counts warnings for --strict only at the log levels it shows.
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    warnings = [line for line in (out.stdout + out.stderr).splitlines() if "WARNING" in line]
    assert out.returncode == 0 and not warnings, "mkdocs build --strict failed:\n" + "\n".join(
        warnings or [out.stderr]
    )
    assert (tmp_path / "index.html").exists()
    assert (tmp_path / "reference" / "engine" / "index.html").exists()


# ----------------------------------------------------------------------------- the examples

PAGES_WITH_CODE = [p for p in PAGES if examples(p.read_text())]


def test_pages_have_examples():
    """Guards the parser: the guides and lecture pages do have runnable examples."""
    names = {_rel(p) for p in PAGES_WITH_CODE}
    assert {"getting-started.md", "lecture/adam.md", "how-to/custom-model.md", "how-to/optax.md"} <= names, (
        names
    )


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_rel)
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for source, want, line, skipped in examples(page.read_text()):
        if skipped:
            continue
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(source, f"{_rel(page)}:{line}", "exec"), namespace)
        got = printed.getvalue()
        if want is not None and not checker.check_output(want, got, flags):
            pytest.fail(
                f"{_rel(page)}, block at line {line} printed\n{got}\nbut the page shows\n{want}",
                pytrace=False,
            )


def test_example_parser():
    page = "\n".join(
        [
            "```python",
            "print(1 + 1)",
            "```",
            "",
            "```text",
            "2",
            "```",
            SKIP,
            "```python",
            "raise SystemExit",
            "```",
            "```bash",
            "fitjax demo",
            "```",
            "```python",
            "x = 1",
            "```",
            "text between",
            "```text",
            "not output",
            "```",
        ]
    )
    got = examples(page)
    assert [(s, w, skip) for s, w, _, skip in got] == [
        ("print(1 + 1)", "2\n", False),
        ("raise SystemExit", None, True),
        ("x = 1", None, False),
    ]


# ----------------------------------------------------------------------------- the commands


def cli_commands() -> list[tuple[str, list[str]]]:
    """``(page, argv)`` for each ``fitjax ...`` line of the pages' bash blocks."""
    found = []
    for page in PAGES:
        for block in code_blocks(page.read_text()):
            if block["lang"] not in ("bash", "sh", "console"):
                continue
            for line in block["source"].replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if words[:1] == ["fitjax"]:
                    found.append((_rel(page), words[1:]))
    return found


def test_cli_commands_in_the_docs_parse():
    from fitjax.cli import build_parser

    commands = cli_commands()
    assert len(commands) >= 5, commands
    parser = build_parser()
    for page, argv in commands:
        try:
            parser.parse_args(argv)
        except Exception as err:  # CLIError, or SystemExit from argparse
            pytest.fail(f"{page}: 'fitjax {' '.join(argv)}' does not parse: {err}", pytrace=False)


# ----------------------------------------------------------------------------- the optax table


def equivalence_rows() -> list[tuple[str, list[str]]]:
    """``(fitjax column, [tests/<file>.py::<name>, ...])`` for each row of the equivalence table."""
    text = (DOCS / "optax-equivalence.md").read_text()
    table = text.split("<!-- equivalence table -->", 2)[1]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or set(cells[0]) <= {"-", ":", " "} or cells[0] == "fitjax":
            continue
        rows.append((cells[0], re.findall(r"(tests/[\w/]+\.py)::(\w+)", cells[-1])))
    return rows


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_equivalence_table_names_real_tests():
    rows = equivalence_rows()
    assert len(rows) >= 7, rows
    missing = []
    for fitjax_cell, tests in rows:
        assert tests, f"the row {fitjax_cell!r} names no test"
        for file, name in tests:
            if not (ROOT / file).exists() or name not in _test_functions(ROOT / file):
                missing.append(f"{file}::{name} (row {fitjax_cell})")
    assert not missing, "the optax equivalence table names tests that do not exist: " + ", ".join(missing)


def test_equivalence_table_covers_every_optimizer():
    cells = " ".join(cell for cell, _ in equivalence_rows())
    for name in (
        "gd",
        "sgd",
        "momentum",
        "nesterov",
        "nesterov_classical",
        "normalized",
        "adam",
        "backtracking_armijo",
        "reduce_on_plateau",
    ):
        assert re.search(rf"\b{name}\(", cells), f"no row for fitjax.{name}"


# ----------------------------------------------------------------------------- the reference


def test_reference_documents_every_public_name():
    shown = set()
    for page in (DOCS / "reference").glob("*.md"):
        shown |= set(re.findall(r"^::: fitjax\.(\w+)\s*$", page.read_text(), flags=re.M))
    missing = sorted(set(fitjax.__all__) - shown)
    assert not missing, f"add '::: fitjax.NAME' for these to a page in docs/reference/: {missing}"


# ----------------------------------------------------------------------------- the figures


def _demo_figures() -> set[str]:
    """The figure names ``fitjax demo`` writes: the string arguments of ``d.fig(...)`` in fitjax/cli.py."""
    tree = ast.parse((ROOT / "fitjax" / "cli.py").read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "fig"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


def test_figures_shown_are_the_demos():
    drawn = _demo_figures()
    assert len(drawn) >= 10, drawn
    shown = set()
    for page in PAGES:
        shown |= set(re.findall(r"figures/(\w+)\.png", page.read_text()))
    assert shown, "no page shows a figure"
    assert shown <= drawn, f"pages show figures that fitjax demo does not draw: {sorted(shown - drawn)}"
    missing = sorted(name for name in shown if not (DOCS / "figures" / f"{name}.png").exists())
    assert not missing, f"run fitjax demo --out docs/figures to make: {missing}"
