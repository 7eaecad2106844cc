"""What every section of the lecture's experiments shares, no lecture section of its own: the
problems as the notebook evaluated them (:func:`problem`), the :class:`Settings`, the
:class:`Result` and :class:`Figure` types, and the helpers with which each ``section_*`` module
runs its fits (:func:`traced_fit`), reads them (:func:`path`, :func:`curve`, :func:`record`) and
draws its landscapes (:func:`landscape`, :func:`critical_points`, :func:`landscape_figure`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import fitjax
from fitjax.analysis import plots
from fitjax.lecture import problems as _problems
from fitjax.lecture.problems import Box, Problem


def problem(name: str) -> Problem:
    """The lecture's problem ``name``, its loss evaluated with the platform's ``sin``, ``cos``
    and ``exp`` (:func:`fitjax.platform_math`), as the notebook's NumPy evaluated them: the
    experiments reproduce the notebook's runs, so their numbers do not move with fitjax's
    choice of functions on a CPU (a chaotic SGD run can end in another basin under float32
    rounding of another kind)."""
    prob = _problems.problem(name)
    return dataclasses.replace(prob, loss=fitjax.platform_math(prob.loss))


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every experiment shares: grid sizes, SGD runs, the seed and the figures' format."""

    grid: int = 201  # points per axis of the drawn landscapes
    basin_grid: int = 48  # starts per axis of the Gabor basin map
    basin_steps: int = 1000  # steps of each basin-map run
    runs: int = 16  # mini-batch orders of the stochastic runs
    seed: int = 0  # key of the mini-batch orders
    figure_format: str = "png"  # the file type the markdown links to


@dataclasses.dataclass(frozen=True)
class GDRun:
    """A fixed-step gradient-descent run: learning rate and number of steps."""

    learning_rate: float
    steps: int


@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure to draw: ``plot(path, *args, **kwargs)`` with a function of :mod:`fitjax.analysis.plots`."""

    name: str
    plot: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def file(self, fmt: str) -> str:
        """The file name, ``name.fmt``."""
        return f"{self.name}.{fmt}"

    def draw(self, folder: Path, fmt: str) -> Path:
        """Draws the figure into ``folder``; returns its path."""
        path = Path(folder) / self.file(fmt)
        self.plot(path, *self.args, **self.kwargs)
        return path


@dataclasses.dataclass(frozen=True)
class Result:
    """One experiment: its numbers (``summary.json``), its figures and its section of ``report.md``."""

    name: str
    numbers: dict[str, Any]
    figures: tuple[Figure, ...]
    markdown: str


# ----------------------------------------------------------------------------- helpers


def path(res: fitjax.FitResult, i: int = 0) -> np.ndarray:
    """Run ``i``'s recorded parameters followed by its final parameters, shape ``(R + 1, 2)``."""
    assert res.history is not None and res.history.params is not None  # the runs record parameters
    return np.concatenate([np.asarray(res.history.params[i]), np.asarray(res.params[i])[None]])


def curve(res: fitjax.FitResult, i: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, loss)`` of run ``i`` (or the median over runs when ``None``) including the final loss."""
    assert res.history is not None  # the runs record every step
    hist = np.asarray(res.history.loss)
    final = np.asarray(res.loss)
    values = (
        np.median(np.concatenate([hist, final[:, None]], 1), 0) if i is None else np.append(hist[i], final[i])
    )
    return np.append(np.asarray(res.history.step), res.steps), values


def record(res: fitjax.FitResult, **settings: Any) -> dict[str, Any]:
    """The settings and final losses of a fit: its own for one run, run 0, median, best and worst for many."""
    loss = np.asarray(res.loss, dtype=float)
    row = {**settings, "steps": res.steps}
    if loss.size == 1:
        row.update(final_loss=loss[0], final_params=np.asarray(res.params[0]))
    else:
        row.update(
            final_loss_run0=loss[0],
            final_loss_median=np.median(loss),
            final_loss_best=loss.min(),
            final_loss_worst=loss.max(),
            runs=loss.size,
        )
    row["diverged"] = int(np.asarray(res.diverged).sum())
    return row


def grid_axes(box: Box, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` evenly spaced values along each side of ``box``."""
    (lo0, hi0), (lo1, hi1) = box
    return np.linspace(lo0, hi0, n), np.linspace(lo1, hi1, n)


def line_search_optimizer() -> Callable[..., Any] | None:
    """``fitjax.optim.linesearch.gd_line_search`` when this installation has it, else ``None``."""
    try:
        from fitjax.optim.linesearch import gd_line_search
    except ImportError:
        return None
    return gd_line_search


@functools.lru_cache(maxsize=8)
def landscape(name: str, grid: int) -> Any:
    """The loss of lecture problem ``name`` on a ``grid``² grid over its box (computed once)."""
    prob = problem(name)
    assert prob.box is not None
    return fitjax.loss_grid(prob.loss, prob.data, *grid_axes(prob.box, grid))


@functools.lru_cache(maxsize=8)
def critical_points(name: str, grid: int) -> Any:
    """The critical points of lecture problem ``name`` found on its ``grid``² landscape."""
    prob = problem(name)
    return fitjax.critical_points(prob.loss, prob.data, landscape(name, grid))


def traced_fit(loss: Any, optimizer: Any, starts: Any, data: Any, steps: int, **kw: Any) -> fitjax.FitResult:
    """A fit that records the loss and parameters at every step (and keeps the final state:
    a line search's evaluation counts are read from it)."""
    return fitjax.fit(
        loss, optimizer, starts, data, steps=steps, record_every=1, record_params=True, keep_state=True, **kw
    )


def landscape_figure(name: str, land: Any, **kwargs: Any) -> Figure:
    """A :func:`~fitjax.analysis.plots.plot_landscape` figure of ``land``."""
    return Figure(name, plots.plot_landscape, (land.coords[0], land.coords[1], land.loss), kwargs)


def markdown_images(figures: tuple[Figure, ...], alts: tuple[str, ...], s: Settings) -> list[str]:
    """Markdown images of ``figures`` with their alternative texts."""
    return [f"![{alt}]({f.file(s.figure_format)})" for f, alt in zip(figures, alts, strict=True)]
