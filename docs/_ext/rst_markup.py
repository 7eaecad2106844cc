"""Render fitjax's reStructuredText markup in docstrings on the mkdocs site.

fitjax's docstrings are Google style (``Args:``, ``Returns:``, ``Example:``) with a
few reStructuredText constructs that Markdown does not know. This griffe extension
rewrites them before mkdocstrings renders a docstring; the docstrings themselves
stay as they are (they also serve ``help()`` and doctests).

* ``:math:`x``` becomes ``$x$`` and a ``.. math::`` block a ``$$ … $$`` block (an
  ``aligned`` environment when it holds ``&`` or ``\\``), which
  ``pymdownx.arithmatex`` hands to MathJax;
* ``:func:`~fitjax.fit``` and the other roles become code spans (``~`` keeps the last
  dotted part, as in Sphinx);
* a paragraph ending in ``::`` ends in ``:`` (the indented block after it is already
  a code block in Markdown);
* an ``Example:`` section is read as griffe's ``Examples:`` (else it would be an
  admonition and its ``>>>`` lines prose);
* an argument entry that names several parameters (``loss, data: as for fit``)
  becomes one entry per parameter, each with the description;
* a pointer to a private name (``see :mod:`fitjax._sampler` for ...``, ``(:func:`_x`)``),
  useful in ``help()`` to someone reading the source, is left out: the site documents
  the public API only (tests/test_docs.py fails on any private name left on a page).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|meth|data|attr|mod|obj|exc|const):`(~?)([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_MATH_BLOCK = re.compile(r"^(\s*)\.\. math::\s*$")

# A role or a literal naming a private object: :mod:`fitjax._sampler`, ``_launch``.
_PRIVATE = r"(?::\w+:`~?(?:\w+\.)*_[A-Za-z][\w.]*`|``(?:\w+\.)*_[A-Za-z][\w.]*``)"
_PRIVATE_POINTERS = [
    (re.compile(rf"\s*\(see\s+{_PRIVATE}(?:\s+for\s[^()]*)?\)"), ""),  # (see X for the rules)
    (re.compile(rf";\s+see\s+{_PRIVATE}(?:\s+for\s[^();.]*)?(?=[).;])"), ""),  # ...; see X for what)
    (re.compile(rf"\s*\({_PRIVATE}\)"), ""),  # (X)
    (re.compile(rf"\({_PRIVATE};\s*"), "("),  # (X; more) -> (more)
    (re.compile(rf":\s+{_PRIVATE}\)"), ")"),  # its parts: X) -> its parts)
    (re.compile(rf"\s*See\s+{_PRIVATE}\."), ""),  # See X.
]


def drop_private_pointers(text: str) -> str:
    """``text`` without its pointers to private names (the forms in ``_PRIVATE_POINTERS``)."""
    for pattern, replacement in _PRIVATE_POINTERS:
        text = pattern.sub(replacement, text)
    return text


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _math_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        found = _MATH_BLOCK.match(lines[i])
        if not found:
            out.append(lines[i])
            i += 1
            continue
        pad = found.group(1)
        body: list[str] = []
        i += 1
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(pad)):
            body.append(lines[i].strip())
            i += 1
        while body and not body[-1]:
            body.pop()
        body = [b for b in body if b]
        tex = "\n".join(pad + b for b in body)
        if any("&" in b or b.endswith("\\\\") for b in body):
            tex = f"{pad}\\begin{{aligned}}\n{tex}\n{pad}\\end{{aligned}}"
        out += [f"{pad}$$", tex, f"{pad}$$", ""]
    return out


_SECTION = re.compile(r"^(\w[\w ]*):\s*$")
_GROUPED = re.compile(r"^(\s+)(\**\w+(?:,\s*\**\w+)+):(.*)$")
_UNFINISHED = re.compile(r"^\s+\**\w+(?:,\s*\**\w+)*,\s*$")  # names continued on the next line


def _split_grouped_args(lines: list[str]) -> list[str]:
    out: list[str] = []
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        header = _SECTION.match(line)
        if header:
            section = header.group(1).lower()
        in_args = section in ("args", "arguments", "parameters")
        if in_args and _UNFINISHED.match(line) and i + 1 < len(lines):
            lines = lines[:i] + [line.rstrip() + " " + lines[i + 1].strip()] + lines[i + 2 :]
            continue
        grouped = _GROUPED.match(line) if in_args else None
        if not grouped:
            out.append(line)
            i += 1
            continue
        pad, names, first = grouped.groups()
        rest: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() and _indent(lines[i]) > len(pad):
            rest.append(lines[i])
            i += 1
        for name in (n.strip() for n in names.split(",")):
            out += [f"{pad}{name}:{first}", *rest]
    return out


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with its reStructuredText markup rewritten for Markdown."""
    lines = _math_blocks(text.splitlines())
    lines = ["Examples:" if line == "Example:" else line for line in lines]
    lines = _split_grouped_args(lines)
    text = "\n".join(re.sub(r"(\S)::$", r"\1:", line) for line in lines)
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
    return _ROLE.sub(_role, drop_private_pointers(text))


class RstMarkup(griffe.Extension):
    """Rewrite every loaded docstring with :func:`rst_to_markdown`."""

    def on_object(self, *, obj: griffe.Object, loader: Any, **kwargs: Any) -> None:
        del loader, kwargs
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
        if isinstance(obj, griffe.Function):  # private keyword arguments are not part of the API
            for name in [p.name for p in obj.parameters if p.name.startswith("_")]:
                del obj.parameters[name]
