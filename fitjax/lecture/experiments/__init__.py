"""The lecture's experiments (``fitjax demo``), each a function returning its numbers, figures and text.

Every experiment takes the :class:`Settings` shared by all of them and returns a
:class:`Result`: ``numbers`` (what goes into ``summary.json``), ``figures`` (:class:`Figure`
specs drawn by :mod:`fitjax.analysis.plots`; matplotlib is needed only to draw them) and
``markdown`` (its section of ``report.md``). :data:`EXPERIMENTS` lists them in the lecture's
order. The settings each one uses are the constants of its module or the companion notebooks'
(:func:`fitjax.datasets.notebook`), so a number is defined once.

- ``common``: the problems, :class:`Settings`, :class:`Result`, :class:`Figure` and the helpers
  every section shares (traced fits, landscapes, records, curves).
- ``section_line``: gradient descent on the line (:func:`line`, :data:`LINE_GD`).
- ``section_gabor``: the Gabor landscape, its critical points and basins (:func:`gabor`).
- ``section_line_search``: line search against a fixed step (:func:`line_search`).
- ``section_sgd``: SGD against full-batch gradient descent (:func:`sgd_vs_gd`).
- ``section_momentum``: momentum against Nesterov momentum (:func:`momentum_vs_nesterov`).
- ``section_adam``: normalized gradients against Adam (:func:`normalized_vs_adam`).

>>> r = line(Settings(grid=11))
>>> r.name, sorted(f.name for f in r.figures)
('line', ['line_fit', 'line_landscape'])
>>> round(float(r.numbers["gd"]["final_loss"]), 4)
0.1999
"""

from __future__ import annotations

from collections.abc import Callable

from fitjax.lecture.experiments.common import (
    Figure,
    GDRun,
    Result,
    Settings,
    curve,
    grid_axes,
    line_search_optimizer,
    path,
    problem,
    record,
)
from fitjax.lecture.experiments.section_adam import normalized_vs_adam
from fitjax.lecture.experiments.section_gabor import BASIN_TOL, GABOR_GD, GABOR_STARTS, gabor
from fitjax.lecture.experiments.section_line import LINE_GD, line
from fitjax.lecture.experiments.section_line_search import line_search
from fitjax.lecture.experiments.section_momentum import LECTURE_STATED, MOMENTUM_RUNS, momentum_vs_nesterov
from fitjax.lecture.experiments.section_sgd import FLAT_SHARE, sgd_vs_gd

EXPERIMENTS: tuple[tuple[str, Callable[[Settings], Result | None]], ...] = (
    ("line", line),
    ("gabor", gabor),
    ("line_search", line_search),
    ("sgd_vs_gd", sgd_vs_gd),
    ("momentum_vs_nesterov", momentum_vs_nesterov),
    ("normalized_vs_adam", normalized_vs_adam),
)
"""The demo's experiments in the lecture's order: ``(name, function)``; a function returns ``None``
when this installation cannot run it."""

__all__ = [
    "BASIN_TOL",
    "EXPERIMENTS",
    "FLAT_SHARE",
    "GABOR_GD",
    "GABOR_STARTS",
    "LECTURE_STATED",
    "LINE_GD",
    "MOMENTUM_RUNS",
    "Figure",
    "GDRun",
    "Result",
    "Settings",
    "curve",
    "gabor",
    "grid_axes",
    "line",
    "line_search",
    "line_search_optimizer",
    "momentum_vs_nesterov",
    "normalized_vs_adam",
    "path",
    "problem",
    "record",
    "sgd_vs_gd",
]
