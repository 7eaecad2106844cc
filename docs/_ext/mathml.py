"""Render the site's equations to MathML when the site is built, so that they show with no network.

``pymdownx.arithmatex`` (generic mode) keeps each ``$…$`` and ``$$…$$`` of a page, and
each ``:math:`` of a docstring (see ``rst_markup.py``), away from Markdown as
``<span class="arithmatex">\\(…\\)</span>`` or ``<div class="arithmatex">\\[…\\]</div>``.
This mkdocs hook replaces every such element by the MathML that ``latex2mathml``
writes for its TeX. Browsers draw MathML themselves (Chromium 109+, Firefox, Safari):
the built pages load no script and no font for their equations, from anywhere.

The TeX stays in the page as the ``alttext`` of each ``<math>`` element (screen readers
read it). TeX that ``latex2mathml`` cannot convert fails the build, naming the page.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

_MATH = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)
_DELIMITERS = {"span": ("\\(", "\\)"), "div": ("\\[", "\\]")}


def to_mathml(tex: str, display: bool) -> str:
    """The ``<math>`` element for one equation's TeX (without its delimiters)."""
    mathml = convert(tex.strip(), display="block" if display else "inline")
    alt = html.escape(" ".join(tex.split()), quote=True)
    return mathml.replace("<math ", f'<math alttext="{alt}" ', 1)


def render(page_html: str, where: str = "") -> str:
    """``page_html`` with each arithmatex element replaced by its MathML."""

    def one(match: re.Match[str]) -> str:
        tag, body = match.groups()
        opening, closing = _DELIMITERS[tag]
        tex = html.unescape(body).strip()
        if not (tex.startswith(opening) and tex.endswith(closing)):
            raise ValueError(f"{where}: an arithmatex {tag} without {opening} … {closing}: {tex[:80]!r}")
        tex = tex[len(opening) : -len(closing)]
        try:
            mathml = to_mathml(tex, display=tag == "div")
        except Exception as err:  # latex2mathml raises several kinds
            raise ValueError(f"{where}: cannot render the TeX {tex!r} to MathML: {err}") from err
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'

    return _MATH.sub(one, page_html)


def on_page_content(content: str, page, **kwargs) -> str:
    """The mkdocs hook: runs on each page's HTML, docstrings included, before the theme wraps it."""
    return render(content, where=page.file.src_uri)
