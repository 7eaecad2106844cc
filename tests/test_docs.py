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
import builtins
import contextlib
import doctest
import html
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
from html.parser import HTMLParser
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


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built once for this module's tests: ``(folder, mkdocs' exit code, its output)``."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    folder = tmp_path_factory.mktemp("site")
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
            str(folder),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return folder, out.returncode, out.stdout + out.stderr


def test_mkdocs_build_strict(site):
    folder, returncode, output = site
    warnings = [line for line in output.splitlines() if "WARNING" in line]
    assert returncode == 0 and not warnings, "mkdocs build --strict failed:\n" + "\n".join(
        warnings or [output]
    )
    assert (folder / "index.html").exists()
    assert (folder / "reference" / "engine" / "index.html").exists()


class _Loads(HTMLParser):
    """What a page makes the browser fetch: scripts, stylesheets, fonts, images, frames."""

    FETCHED_LINKS = {
        "stylesheet",
        "preload",
        "modulepreload",
        "prefetch",
        "preconnect",
        "dns-prefetch",
        "icon",
    }

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "link" and self.FETCHED_LINKS & set((a.get("rel") or "").lower().split()):
            self.urls.append(a.get("href") or "")
        elif tag in ("script", "img", "iframe", "embed", "audio", "video", "source", "track") and a.get(
            "src"
        ):
            self.urls.append(a["src"])
        elif tag == "object" and a.get("data"):
            self.urls.append(a["data"])
        self._in_style = tag == "style"
        if a.get("style"):
            self.styles.append(a["style"])

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


_CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])([^'")\s]+)""")


def _remote(url: str) -> bool:
    """A URL that another host serves (``https://…``, ``//host/…``), not the site's own file."""
    url = url.strip().lower()
    return (
        url.startswith("//")
        or bool(re.match(r"^[a-z][a-z0-9+.-]*:", url))
        and not url.startswith(("data:", "blob:", "about:", "javascript:"))
    )


def test_remote_url_classifier():
    for url in (
        "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js",
        "//fonts.gstatic.com",
        "http://x",
    ):
        assert _remote(url), url
    for url in ("../assets/javascripts/bundle.js", "_css/math.css", "data:image/svg+xml;base64,AA", "#top"):
        assert not _remote(url), url
    page = _Loads()
    page.feed(
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css"><link rel="canonical" href="https://x">'
        '<script src="https://cdn/x.js"></script><script>var a = "https://not/loaded";</script>'
        '<style>@import "https://css/y.css";</style><img src="../figures/a.png">'
    )
    assert page.urls == ["https://fonts.googleapis.com/css", "https://cdn/x.js", "../figures/a.png"]
    assert _CSS_URL.findall(" ".join(page.styles)) == ["https://css/y.css"]


def test_site_loads_nothing_from_another_host(site):
    """Every page reads offline: no script, stylesheet, font or image comes from another host,
    and the equations are MathML in the page (rendered when the site was built)."""
    folder, returncode, output = site
    assert returncode == 0, output
    pages = sorted(folder.rglob("*.html"))
    assert len(pages) >= len(PAGES), pages
    remote = []
    for page in pages:
        parsed = _Loads()
        parsed.feed(page.read_text())
        urls = parsed.urls + _CSS_URL.findall(" ".join(parsed.styles))
        remote += [f"{page.relative_to(folder)}: {url}" for url in urls if _remote(url)]
    for sheet in folder.rglob("*.css"):
        remote += [
            f"{sheet.relative_to(folder)}: {u}" for u in _CSS_URL.findall(sheet.read_text()) if _remote(u)
        ]
    assert not remote, "the site loads from other hosts:\n" + "\n".join(remote)

    adam = (folder / "lecture" / "adam" / "index.html").read_text()
    assert adam.count("<math ") >= 10, "the Adam lecture's equations are not MathML"
    raw = [
        f"{page.relative_to(folder)}: {m.group(0)[:80]}"
        for page in pages
        for m in re.finditer(r'class="arithmatex">\s*\\[(\[]', page.read_text())
    ]
    assert not raw, "equations left as TeX for a script to render:\n" + "\n".join(raw)
    optimizers = (folder / "reference" / "optimizers" / "index.html").read_text()
    assert "<math " in optimizers, "the docstrings' :math: is not rendered"


def _mathml_hook():
    spec = importlib.util.spec_from_file_location("docs_mathml", DOCS / "_ext" / "mathml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mathml_hook_renders_and_refuses():
    pytest.importorskip("latex2mathml", reason="latex2mathml is not installed (pip install -e '.[docs]')")
    hook = _mathml_hook()
    page = (
        '<p>x <span class="arithmatex">\\(a &lt; \\frac{1}{2}\\)</span></p>'
        '<div class="arithmatex">\\[\n\\sum_i \\phi_i\n\\]</div>'
    )
    got = hook.render(page, where="p.md")
    assert got.count("<math ") == 2 and "\\(" not in got and "\\[" not in got
    assert 'display="inline"' in got and 'display="block"' in got
    assert "<mfrac>" in got and "&lt;" in got and 'alttext="a &lt; \\frac{1}{2}"' in got
    with pytest.raises(ValueError, match="p.md"):
        hook.render('<span class="arithmatex">\\(\\left( a\\)</span>', where="p.md")


# ----------------------------------------------------------------------------- the examples

PAGES_WITH_CODE = [p for p in PAGES if examples(p.read_text())]


def test_pages_have_examples():
    """Guards the parser: the guides and lecture pages do have runnable examples."""
    names = {_rel(p) for p in PAGES_WITH_CODE}
    assert {"getting-started.md", "lecture/adam.md", "how-to/custom-model.md", "how-to/optax.md"} <= names, (
        names
    )


@pytest.mark.loose_promotion  # the pages show a user's code, written as users write it
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


# ----------------------------------------------------------------------------- what a block needs

NEEDS = "# Uses from the blocks above:"


class _Names(ast.NodeVisitor):
    """The names a block reads before (or without) binding them, and the names its imports bind."""

    def __init__(self):
        self.bound: set[str] = set()
        self.imported: set[str] = set()
        self.free: list[str] = []

    def _read(self, name: str) -> None:
        if name not in self.bound and name not in self.free and not hasattr(builtins, name):
            self.free.append(name)

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load):
            self._read(node.id)
        else:
            self.bound.add(node.id)

    def visit_Import(self, node):
        for alias in node.names:
            name = (alias.asname or alias.name).split(".")[0]
            self.bound.add(name)
            self.imported.add(name)

    visit_ImportFrom = visit_Import

    def visit_AugAssign(self, node):
        if isinstance(node.target, ast.Name):
            self._read(node.target.id)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node):
        if node.name:
            self.bound.add(node.name)
        self.generic_visit(node)

    def _arguments(self, args: ast.arguments) -> None:
        for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
            if a is not None:
                self.bound.add(a.arg)

    def visit_FunctionDef(self, node):
        self.bound.add(node.name)
        self._arguments(node.args)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self._arguments(node.args)
        self.generic_visit(node)

    def visit_ClassDef(self, node):
        self.bound.add(node.name)
        self.generic_visit(node)

    def _comprehension(self, node, *results):
        for gen in node.generators:  # the loop variables are bound before the result is read
            self.visit(gen.iter)
            self.visit(gen.target)
            for cond in gen.ifs:
                self.visit(cond)
        for r in results:
            self.visit(r)

    def visit_ListComp(self, node):
        self._comprehension(node, node.elt)

    visit_SetComp = visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node):
        self._comprehension(node, node.key, node.value)


def block_names(source: str) -> _Names:
    names = _Names()
    names.visit(ast.parse(source))
    return names


def missing_needs(text: str) -> list[tuple[int, str]]:
    """``(line, what is wrong)`` for each python block of a page that reads names from the blocks
    above it without saying so in a first line ``# Uses from the blocks above: ...``.

    Names made by the page's earlier imports may be summed up as "the imports"; every other
    name is listed. A block that needs nothing from above must not carry the line."""
    problems = []
    imported: set[str] = set()
    for source, _, line, _ in examples(text):
        names = block_names(source)
        first = source.lstrip().splitlines()[0] if source.strip() else ""
        said = first[len(NEEDS) :] if first.startswith(NEEDS) else None
        from_imports = [n for n in names.free if n in imported]
        others = [n for n in names.free if n not in imported]
        if not names.free:
            if said is not None:
                problems.append((line, "says it uses names from above, but needs none"))
        elif said is None:
            problems.append((line, f"needs {', '.join(names.free)} from above: start it with {NEEDS!r}"))
        else:
            words = set(re.findall(r"\w+", said))
            unsaid = [n for n in others if n not in words]
            if from_imports and "imports" not in words:
                unsaid.insert(0, "the imports")
            if unsaid:
                problems.append((line, f"does not say that it uses {', '.join(unsaid)}"))
            listed = re.findall(r"`?(\w+)`?", said.replace("the imports", ""))
            stale = [n for n in listed if n not in names.free and n not in ("and", "from", "imports")]
            if stale:
                problems.append((line, f"says it uses {', '.join(stale)}, which it does not read"))
        imported |= names.imported
    return problems


def test_blocks_say_what_they_need():
    """Pasted alone, a block runs once the reader has run what it names from the blocks above."""
    problems = [
        f"{_rel(page)}:{line}: {what}"
        for page in PAGES_WITH_CODE
        for line, what in missing_needs(page.read_text())
    ]
    assert not problems, "\n".join(problems)


def test_missing_needs_finds_unsaid_names():
    page = "\n".join(
        [
            "```python",
            "import numpy as np",
            "x = np.arange(3)",
            "```",
            "```python",
            "print([v for v in x], np.sum(x))",
            "```",
            "```python",
            f"{NEEDS} the imports, x",
            "try:",
            "    print(np.sum(x))",
            "except ValueError as err:",
            "    print(err)",
            "```",
            "```python",
            f"{NEEDS} y",
            "print(np.pi)",
            "```",
            "```python",
            f"{NEEDS} nothing",
            "print(1)",
            "```",
        ]
    )
    assert missing_needs(page) == [
        (5, f"needs x, np from above: start it with {NEEDS!r}"),
        (15, "does not say that it uses the imports"),
        (15, "says it uses y, which it does not read"),
        (19, "says it uses names from above, but needs none"),
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
        shown |= set(re.findall(r"^::: (fitjax\.[\w.]+)\s*$", page.read_text(), flags=re.M))

    def documented(name: str) -> bool:  # a namespace module is documented under its own path
        obj = getattr(fitjax, name)
        return f"fitjax.{name}" in shown or getattr(obj, "__name__", None) in shown

    missing = sorted(name for name in fitjax.__all__ if not documented(name))
    assert not missing, f"add '::: fitjax.NAME' for these to a page in docs/reference/: {missing}"


_PRIVATE_NAME = re.compile(r"(?<![\w/])(?:\w+\.)*_[A-Za-z]\w*(?![\w/])")


def _article_text(page: Path) -> str:
    """The words of a built page's article (no navigation), without its markup."""
    text = page.read_text()
    article = text[text.find("<article") : text.find("</article>")]
    return html.unescape(re.sub(r"<[^>]+>", " ", article))


def test_reference_names_no_private_name(site):
    """The API reference shows the public API only: no ``_name`` or ``fitjax._module`` in its
    signatures, parameter tables or text (file paths such as ``fitjax/_data/...`` are not names)."""
    folder, returncode, output = site
    assert returncode == 0, output
    pages = sorted((folder / "reference").glob("*/index.html"))
    assert len(pages) >= 8, pages
    found = {
        page.parent.name: sorted(set(_PRIVATE_NAME.findall(_article_text(page))))
        for page in pages
        if _PRIVATE_NAME.search(_article_text(page))
    }
    assert not found, f"the API reference names private objects: {found}"


def test_private_pointers_are_dropped():
    spec = importlib.util.spec_from_file_location("docs_rst_markup", DOCS / "_ext" / "rst_markup.py")
    rst = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rst)
    cases = {
        "epoch (stochastic; see ``fitjax._sampler`` for what\n    happens last).": "epoch (stochastic).",
        "None: 2 on a GPU, 1 elsewhere (:func:`_default_unroll`).": "None: 2 on a GPU, 1 elsewhere.",
        "over them (see :mod:`fitjax._fused_loss` for the exact rules), at most": "over them, at most",
        "functions (:mod:`fitjax._fused_math`; speed on an H200)": "functions (speed on an H200)",
        "their components: :mod:`fitjax._fused_loss`) and": "their components) and",
        "float32 only). See :mod:`fitjax._fused_math`.": "float32 only).",
        "given; see ``_launch``).": "given).",
    }
    kept = "public (see :func:`fitjax.fit`) stays, ``__init__`` too"
    cases[kept] = kept
    for before, after in cases.items():
        assert rst.drop_private_pointers(before) == after, before
    assert _PRIVATE_NAME.findall("fitjax._sampler, _x, a_b, fitjax/_data/x.json, __init__") == [
        "fitjax._sampler",
        "_x",
    ]


def test_landscapes_page_quotes_the_demo():
    """The basin-map numbers of the landscapes guide are those of the demo run whose figures
    docs/figures holds (``fitjax demo --out docs/figures`` writes both)."""
    summary = json.loads((DOCS / "figures" / "summary.json").read_text())
    basins = summary["experiments"]["gabor"]["basins"]
    text = " ".join((DOCS / "how-to" / "landscapes.md").read_text().split())
    quoted = re.search(
        r"on its (\d+) × (\d+) grid \(([\d,]+) steps\) the runs reach (\d+) minima, and ([\d,]+) of the "
        r"([\d,]+) runs are unsettled",
        text,
    )
    assert quoted, "the landscapes guide no longer quotes the demo's basin map"
    n0, n1, steps, minima, unsettled, runs = (int(g.replace(",", "")) for g in quoted.groups())
    assert [n0, n1] == basins["grid"] and n0 * n1 == runs, (quoted.group(0), basins)
    assert (steps, minima, unsettled) == (basins["steps"], basins["minima"], basins["unsettled"]), (
        f"the page says {quoted.group(0)!r}; docs/figures/summary.json says {basins}"
    )


# ----------------------------------------------------------------------------- the figures


def _demo_figures() -> set[str]:
    """The figure names ``fitjax demo`` writes: the first arguments of ``Figure(...)`` and
    ``landscape_figure(...)`` in every module of fitjax/lecture/experiments/."""
    modules = sorted((ROOT / "fitjax" / "lecture" / "experiments").glob("*.py"))
    assert len(modules) > 1, modules
    return {
        node.args[0].value
        for module in modules
        for node in ast.walk(ast.parse(module.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("Figure", "landscape_figure")
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
