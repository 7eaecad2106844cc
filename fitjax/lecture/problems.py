"""The lecture's problems: the line fit, the Gabor fit and the Adam toy loss.

Each comes with its loss, its data and the box of parameters the companion notebooks draw it in.

>>> problem("line").box
((0.0, 2.0), (-1.0, 1.0))
>>> sorted(NAMES)
['gabor', 'line', 'toy']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

import fitjax

Box = tuple[tuple[float, float], tuple[float, float]]


@dataclasses.dataclass(frozen=True)
class Problem:
    """A model with its loss, data and the box its parameters are explored in."""

    name: str
    loss: Callable[[Any, Any], jax.Array]
    data: Any
    box: Box | None
    init: Callable[[jax.Array], Any] | None = None  # one set of parameters from a key (pytree models)
    description: dict[str, Any] = dataclasses.field(default_factory=dict)  # the data, for metadata.json


def _plot_box(grid: dict[str, Any]) -> Box:
    """The notebook's plot range ``{"phi0": [lo, hi, n], "phi1": ...}`` as a box."""
    return (grid["phi0"][0], grid["phi0"][1]), (grid["phi1"][0], grid["phi1"][1])


def line() -> Problem:
    """The 12-point line fit, least squares, in the notebook's plot box."""
    data = fitjax.datasets.line()
    box = _plot_box(fitjax.datasets.notebook()["linear_regression"]["loss_plot_grid"])
    about = {"data": "fitjax.datasets.line()", "points": int(data[0].shape[0])}
    return Problem("line", fitjax.least_squares(fitjax.line), data, box, description=about)


def gabor() -> Problem:
    """The 30-point Gabor fit (envelope w = 32), least squares, in the notebook's plot box."""
    data = fitjax.datasets.gabor()
    box = _plot_box(fitjax.datasets.notebook()["gabor"]["loss_plot_grid"])
    loss = fitjax.least_squares(fitjax.Gabor(fitjax.GABOR_W_NOTEBOOK))
    about = {
        "data": "fitjax.datasets.gabor()",
        "points": int(data[0].shape[0]),
        "gabor_w": fitjax.GABOR_W_NOTEBOOK,
    }
    return Problem("gabor", loss, data, box, description=about)


def toy() -> Problem:
    """The Adam notebook's toy loss (no data) in its plot box."""
    lo, hi, _ = fitjax.datasets.notebook()["adam_toy"]["plot_grid"]
    about = {"data": None, "loss": "fitjax.toy_loss (no data)"}
    return Problem("toy", fitjax.toy_loss, None, ((lo, hi), (lo, hi)), description=about)


NAMES: dict[str, Callable[[], Problem]] = {"line": line, "gabor": gabor, "toy": toy}
"""The lecture's problems by name."""


def problem(name: str) -> Problem:
    """The lecture's problem called ``name`` (one of :data:`NAMES`); raises ``ValueError`` otherwise."""
    if name not in NAMES:
        raise ValueError(f"unknown lecture problem {name!r}; choose from {', '.join(NAMES)}")
    return NAMES[name]()
