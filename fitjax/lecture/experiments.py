"""The lecture's experiments (``fitjax demo``), each a function returning its numbers, figures and text.

Every experiment takes the :class:`Settings` shared by all of them and returns a
:class:`Result`: ``numbers`` (what goes into ``summary.json``), ``figures`` (:class:`Figure`
specs drawn by :mod:`fitjax.analysis.plots`; matplotlib is needed only to draw them) and
``markdown`` (its section of ``report.md``). :data:`EXPERIMENTS` lists them in the lecture's
order. The settings each one uses are the constants below or the companion notebooks'
(:func:`fitjax.datasets.notebook`), so a number is defined once.

>>> r = line(Settings(grid=11))
>>> r.name, sorted(f.name for f in r.figures)
('line', ['line_fit', 'line_landscape'])
>>> round(float(r.numbers["gd"]["final_loss"]), 4)
0.1999
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
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


LINE_GD = GDRun(learning_rate=0.03, steps=100)
"""Gradient descent on the line: stable below 2/λ_max ≈ 0.04."""
GABOR_GD = GDRun(learning_rate=0.05, steps=500)
"""Gradient descent on the Gabor landscape, from :data:`GABOR_STARTS` and for the basin map."""
GABOR_STARTS = ((-1.5, 8.5), (3.5, 6.5), (5.0, 15.0), (-7.0, 10.0), (-6.0, 4.0), (0.0, 20.0))
"""The six starts of the Gabor experiment."""
BASIN_TOL = 0.1
"""Basin-map end points closer than this are one minimum."""
FLAT_SHARE = 0.15
"""In the SGD experiment a loss "near" another is within 15% of it."""


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
def _landscape(name: str, grid: int) -> Any:
    """The loss of lecture problem ``name`` on a ``grid``² grid over its box (computed once)."""
    prob = problem(name)
    assert prob.box is not None
    return fitjax.loss_grid(prob.loss, prob.data, *grid_axes(prob.box, grid))


@functools.lru_cache(maxsize=8)
def _critical_points(name: str, grid: int) -> Any:
    """The critical points of lecture problem ``name`` found on its ``grid``² landscape."""
    prob = problem(name)
    return fitjax.critical_points(prob.loss, prob.data, _landscape(name, grid))


def _traced(loss: Any, optimizer: Any, starts: Any, data: Any, steps: int, **kw: Any) -> fitjax.FitResult:
    """A fit that records the loss and parameters at every step (and keeps the final state:
    a line search's evaluation counts are read from it)."""
    return fitjax.fit(
        loss, optimizer, starts, data, steps=steps, record_every=1, record_params=True, keep_state=True, **kw
    )


def _landscape_figure(name: str, land: Any, **kwargs: Any) -> Figure:
    """A :func:`~fitjax.analysis.plots.plot_landscape` figure of ``land``."""
    return Figure(name, plots.plot_landscape, (land.coords[0], land.coords[1], land.loss), kwargs)


def _images(figures: tuple[Figure, ...], alts: tuple[str, ...], s: Settings) -> list[str]:
    """Markdown images of ``figures`` with their alternative texts."""
    return [f"![{alt}]({f.file(s.figure_format)})" for f, alt in zip(figures, alts, strict=True)]


# ----------------------------------------------------------------------------- the experiments


def line(s: Settings = Settings()) -> Result:
    """Gradient descent on the line from the notebook's start, with and without line search."""
    prob = problem("line")
    nb = fitjax.datasets.notebook()["linear_regression"]
    start = jnp.asarray([nb["gradient_descent_line_search"]["phi_init"]])
    x, y = (np.asarray(a, dtype=float) for a in prob.data)
    exact = np.linalg.lstsq(np.stack([np.ones_like(x), x], 1), y, rcond=None)[0]
    exact_loss = float(np.sum((exact[0] + exact[1] * x - y) ** 2))
    lr = LINE_GD.learning_rate
    gd = _traced(prob.loss, fitjax.gd(lr), start, prob.data, LINE_GD.steps)
    runs = {f"GD α={lr:g}": gd}
    numbers = {"gd": record(gd, learning_rate=lr), "least_squares": {"params": exact, "loss": exact_loss}}
    search = line_search_optimizer()
    if search is not None:
        ls = nb["gradient_descent_line_search"]
        cfg = ls["line_search"]
        optimizer = search(cfg["max_dist_default"], cfg["thresh"], cfg["max_iter"])
        res = _traced(prob.loss, optimizer, start, prob.data, ls["n_steps"])
        runs["GD + line search"] = res
        numbers["gd_line_search"] = record(
            res, max_dist=cfg["max_dist_default"], tol=cfg["thresh"], max_iter=cfg["max_iter"]
        )
    f1 = _landscape_figure(
        "line_landscape",
        _landscape("line", s.grid),
        trajectories=[path(r) for r in runs.values()],
        labels=[f"{k} ({r.steps} steps)" for k, r in runs.items()],
        points=exact[None],
        log=True,
        title="Line: L[φ] = Σ (φ0 + φ1 x − y)², from the notebook's start",
    )
    xs = np.linspace(0, 2, 50)
    curves = {"start": (xs, float(start[0, 0]) + float(start[0, 1]) * xs)}
    curves.update({f"{k}": (xs, float(r.params[0, 0]) + float(r.params[0, 1]) * xs) for k, r in runs.items()})
    f2 = Figure("line_fit", plots.plot_fits, (x, y, curves), {"title": "Line fits"})
    rows = "\n".join(f"| {k} | {r.steps} | {float(r.loss[0]):.6g} |" for k, r in runs.items())
    images = " ".join(_images((f1, f2), ("line landscape", "line fits"), s))
    text = f"""## Gradient descent on the line

The 12-point line fit from the notebook's start φ = (1.6, −0.5). Fixed-step gradient descent
uses α = {lr} (stable below 2/λ_max ≈ 0.04 for this loss); the least-squares solution
(NumPy) is φ = ({exact[0]:.4f}, {exact[1]:.4f}) with loss {exact_loss:.6g}.
{"" if search else "Gradient descent with line search is not in this installation."}

| run | steps | final loss |
|---|---|---|
{rows}
| least squares | — | {exact_loss:.6g} |

{images}
"""
    return Result("line", numbers, (f1, f2), text)


def _gabor_numbers(res: fitjax.FitResult, cps: Any, bm: Any, s: Settings) -> dict[str, Any]:
    """The Gabor experiment's ``summary.json`` entry: end points, critical points and basins."""
    minima = cps.kind == "minimum"
    ok = bm.label >= 0
    return {
        "gd_from_starts": [
            {"start": st, "final_params": np.asarray(res.params[i]), "final_loss": float(res.loss[i])}
            for i, st in enumerate(GABOR_STARTS)
        ],
        "learning_rate": GABOR_GD.learning_rate,
        "steps": GABOR_GD.steps,
        "critical_points": {k: int(np.sum(cps.kind == k)) for k in ("minimum", "saddle", "maximum")},
        "global_minimum": {
            "params": cps.coords[minima][0] if minima.any() else None,
            "loss": float(cps.loss[minima][0]) if minima.any() else None,
        },
        "basins": {
            "grid": [s.basin_grid, s.basin_grid],
            "steps": s.basin_steps,
            "minima": int(bm.minima.shape[0]),
            "share_reaching_lowest": float(np.mean(bm.label == 0)),
            "diverged": int(np.sum(bm.label == fitjax.DIVERGED)),
            "unsettled": int(np.sum(bm.label == fitjax.UNSETTLED)),
            "median_convergence_step": float(np.median(bm.converged_step[ok])) if ok.any() else None,
        },
    }


def _gabor_markdown(res: fitjax.FitResult, n: dict[str, Any], images: list[str], s: Settings) -> str:
    """The Gabor experiment's section of ``report.md``."""
    lr, steps = GABOR_GD.learning_rate, GABOR_GD.steps
    rows = "\n".join(
        f"| ({st[0]:g}, {st[1]:g}) | ({float(res.params[i, 0]):.3f}, {float(res.params[i, 1]):.3f}) | "
        f"{float(res.loss[i]):.4g} |"
        for i, st in enumerate(GABOR_STARTS)
    )
    glob = n["global_minimum"]["params"]
    glob_text = (
        ""
        if glob is None
        else (
            f"The lowest minimum on the grid is at φ = ({glob[0]:.4f}, {glob[1]:.4f}) with loss "
            f"{n['global_minimum']['loss']:.6g}. "
        )
    )
    cp, basins = n["critical_points"], n["basins"]
    return f"""## Gradient descent on the Gabor landscape

Gradient descent (α = {lr}, {steps} steps) from several starts on the 30-point Gabor data
(envelope w = 32) ends in different minima: the global one only from its valley.
The landscape ({s.grid}² grid) has {cp["minimum"]} local minima,
{cp["saddle"]} saddles and {cp["maximum"]} maxima
inside the box (grid tests refined by Newton's method). {glob_text}
From a {s.basin_grid}² grid of starts ({s.basin_steps} steps) the runs reach
{basins["minima"]} distinct minima (end points clustered within {BASIN_TOL});
{100 * basins["share_reaching_lowest"]:.0f}% reach the lowest, and
{basins["unsettled"]} had not settled at a minimum (grey in the map).

| start | end | final loss |
|---|---|---|
{rows}

{images[0]} {images[1]}
{images[2]}
"""


def gabor(s: Settings = Settings()) -> Result:
    """Gradient descent on the Gabor landscape from :data:`GABOR_STARTS`, its critical points and basins."""
    prob = problem("gabor")
    lr, steps = GABOR_GD.learning_rate, GABOR_GD.steps
    res = _traced(prob.loss, fitjax.gd(lr), jnp.asarray(GABOR_STARTS), prob.data, steps)
    land = _landscape("gabor", s.grid)
    cps = _critical_points("gabor", s.grid)
    assert prob.box is not None
    v0, v1 = grid_axes(prob.box, s.basin_grid)
    bm = fitjax.basin_map(prob.loss, fitjax.gd(lr), prob.data, v0, v1, steps=s.basin_steps, tol=BASIN_TOL)
    figures = (
        _landscape_figure(
            "gabor_landscape",
            land,
            trajectories=[path(res, i) for i in range(len(GABOR_STARTS))],
            labels=[f"start ({a:g}, {b:g})" for a, b in GABOR_STARTS],
            points=cps.coords,
            point_kinds=list(cps.kind),
            title=f"Gabor: GD α={lr}, {steps} steps",
        ),
        Figure(
            "gabor_surface",
            plots.plot_surface,
            (land.coords[0], land.coords[1], land.loss),
            {"title": "Gabor loss surface"},
        ),
        Figure(
            "gabor_basins",
            plots.plot_basins,
            (v0, v1, bm.label),
            {
                "minima": bm.minima,
                "converged_step": bm.converged_step,
                "title": f"Basins of GD α={lr} ({s.basin_grid}² starts)",
            },
        ),
    )
    numbers = _gabor_numbers(res, cps, bm, s)
    images = _images(figures, ("Gabor landscape", "Gabor surface", "Gabor basins"), s)
    return Result("gabor", numbers, figures, _gabor_markdown(res, numbers, images, s))


def line_search(s: Settings = Settings()) -> Result | None:
    """The notebook's line search against a fixed step on the Gabor data; ``None`` without line search."""
    search = line_search_optimizer()
    if search is None:
        return None
    prob = problem("gabor")
    nb = fitjax.datasets.notebook()["gabor"]["runs"]
    ls, fixed = nb["gd_line_search"], nb["gd_fixed_lr"]
    cfg = ls["line_search"]
    optimizer = search(cfg["max_dist"], cfg["thresh"], cfg["max_iter"])
    a = _traced(prob.loss, optimizer, jnp.asarray([ls["phi_init"]]), prob.data, ls["n_steps"])
    b = _traced(
        prob.loss, fitjax.gd(fixed["alpha"]), jnp.asarray([fixed["phi_init"]]), prob.data, fixed["n_steps"]
    )
    f1 = _landscape_figure(
        "gabor_line_search",
        _landscape("gabor", s.grid),
        trajectories=[path(a), path(b)],
        labels=[f"GD + line search (max_dist {cfg['max_dist']:g})", f"GD α={fixed['alpha']:g}"],
        title=f"Gabor: line search against a fixed step, {ls['n_steps']} steps",
    )
    curves = {"GD + line search": curve(a), f"GD α={fixed['alpha']:g}": curve(b)}
    f2 = Figure("gabor_line_search_loss", plots.plot_loss_curves, (curves,))
    evaluations = None
    try:
        evaluations = int(fitjax.loss_evaluations(a).total[0])
    except (AttributeError, TypeError):
        pass
    numbers = {
        "gd_line_search": record(
            a,
            max_dist=cfg["max_dist"],
            tol=cfg["thresh"],
            max_iter=cfg["max_iter"],
            loss_evaluations=evaluations,
        ),
        "gd_fixed": record(b, learning_rate=fixed["alpha"]),
    }
    images = " ".join(_images((f1, f2), ("line search", "line search loss"), s))
    text = f"""## Gradient descent with line search

The notebook's comparison on the Gabor data from φ = ({ls["phi_init"][0]:g}, {ls["phi_init"][1]:g}),
{ls["n_steps"]} steps: the bracketing line search (max_dist {cfg["max_dist"]:g}, threshold
{cfg["thresh"]:g}, at most {cfg["max_iter"]} iterations) against a fixed α = {fixed["alpha"]:g}.

| run | final loss |
|---|---|
| GD + line search | {float(a.loss[0]):.4g} |
| GD α = {fixed["alpha"]:g} | {float(b.loss[0]):.4g} |

The line search spent {evaluations if evaluations is not None else "n/a"} loss evaluations.

{images}
"""
    return Result("line_search", numbers, (f1, f2), text)


def _sgd_ends(sgd: fitjax.FitResult, gd: fitjax.FitResult, data: Any, grid: int) -> dict[str, Any]:
    """Where the SGD runs end: below GD, on the flat region where the model is ≈ 0, or at the global minimum.

    The loss of a model that is zero at every point is Σy² (the flat region far from the data's
    bump); the global minimum is the lowest critical point of the Gabor landscape.
    """
    sgd_loss = np.asarray(sgd.loss)
    zero_model = float(np.sum(np.asarray(data[1]) ** 2))
    cps = _critical_points("gabor", grid)
    best = float(np.min(cps.loss[cps.kind == "minimum"]))
    return {
        "below_gd": int(np.sum(sgd_loss < float(gd.loss[0]))),
        "zero_model_loss": zero_model,
        "near_zero_model": int(np.sum(np.abs(sgd_loss - zero_model) <= FLAT_SHARE * zero_model)),
        "global_minimum_loss": best,
        "at_global_minimum": int(np.sum(sgd_loss <= best * (1 + FLAT_SHARE))),
    }


def sgd_vs_gd(s: Settings = Settings()) -> Result:
    """SGD from the notebook's start, :attr:`Settings.runs` batch orders, against full-batch GD."""
    prob = problem("gabor")
    nb = fitjax.datasets.notebook()["gabor"]["runs"]
    c, fixed = nb["sgd_6_3"], nb["gd_fixed_lr"]
    start = jnp.asarray([c["phi_init"]])
    gd = _traced(prob.loss, fitjax.gd(fixed["alpha"]), start, prob.data, c["n_steps"])
    starts = jnp.tile(start, (s.runs, 1))
    batches = {"batch_size": c["batch_size"], "key": jax.random.key(s.seed)}
    sgd = _traced(prob.loss, fitjax.sgd(c["alpha"]), starts, prob.data, c["n_steps"], **batches)
    shown = min(3, s.runs)
    median = f"SGD median of {s.runs} orders"
    f1 = _landscape_figure(
        "sgd_vs_gd",
        _landscape("gabor", s.grid),
        trajectories=[path(gd)] + [path(sgd, i) for i in range(shown)],
        labels=[f"GD α={fixed['alpha']:g}"]
        + [f"SGD α={c['alpha']:g}, B={c['batch_size']} (order {i + 1})" for i in range(shown)],
        title=f"Gabor: SGD against full-batch GD, {c['n_steps']} steps",
    )
    curves = {f"GD α={fixed['alpha']:g}": curve(gd), median: curve(sgd, None), "SGD order 1": curve(sgd, 0)}
    colors = {median: "black", "SGD order 1": plots.PATH_COLORS[1]}
    f2 = Figure("sgd_vs_gd_loss", plots.plot_loss_curves, (curves,), {"colors": colors})
    ends = _sgd_ends(sgd, gd, prob.data, s.grid)
    numbers = {
        "gd": record(gd, learning_rate=fixed["alpha"]),
        "sgd": {**record(sgd, learning_rate=c["alpha"], batch_size=c["batch_size"], seed=s.seed), **ends},
    }
    sgd_loss = np.asarray(sgd.loss)
    below_gd, flat, at_best = ends["below_gd"], ends["near_zero_model"], ends["at_global_minimum"]
    zero_model, best = ends["zero_model_loss"], ends["global_minimum_loss"]
    images = " ".join(_images((f1, f2), ("SGD vs GD", "SGD vs GD loss"), s))
    text = f"""## Stochastic against full-batch gradient descent

From the SGD notebook's start φ = ({c["phi_init"][0]:g}, {c["phi_init"][1]:g}), {c["n_steps"]} steps:
full-batch GD (α = {fixed["alpha"]:g}) stops in the local minimum of its valley
(loss {float(gd.loss[0]):.4g});
SGD (α = {c["alpha"]:g}, batches of {c["batch_size"]}, {s.runs} runs with their own batch orders,
seed {s.seed}) ends with median loss {np.median(sgd_loss):.4g} (best {sgd_loss.min():.4g},
worst {sgd_loss.max():.4g}). {below_gd} of the {s.runs} SGD runs end below GD's loss, but
{flat} of them end within {FLAT_SHARE:.0%} of Σy² = {zero_model:.3g}, the loss of a model that
is zero at every data point: the mini-batches' noise carried them out of GD's valley onto the
flat region where the model is ≈ 0, and {at_best} reached the global minimum (loss ≈ {best:.4g}).
The better median is that flat region, not a better fit.

{images}
"""
    return Result("sgd_vs_gd", numbers, (f1, f2), text)


MOMENTUM_RUNS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "SGD": ("sgd_6_4", lambda c: fitjax.sgd(c["alpha"])),
    "momentum": ("momentum_6_4", lambda c: fitjax.momentum(c["alpha"], c["beta"])),
    "Nesterov": ("nesterov_6_4", lambda c: fitjax.nesterov(c["alpha"], c["beta"])),
}
"""The momentum experiment's optimizers: the notebook's run (``gabor.runs``) and how to build it."""
LECTURE_STATED = {
    "SGD": "gabor_final_loss_sgd_without_momentum",
    "momentum": "gabor_final_loss_with_momentum",
    "Nesterov": "gabor_final_loss_nesterov",
}
"""The final losses the lecture's slides quote, keys of ``lecture_stated_values``."""


def momentum_vs_nesterov(s: Settings = Settings()) -> Result:
    """SGD, momentum and Nesterov momentum with the notebook's settings and the same batch orders."""
    prob = problem("gabor")
    nb = fitjax.datasets.notebook()["gabor"]["runs"]
    stated = fitjax.datasets.notebook()["lecture_stated_values"]
    results = {}
    for name, (run, make) in MOMENTUM_RUNS.items():
        c = nb[run]
        # the same key and run ids: run i sees the same mini-batch order under every optimizer
        starts = jnp.tile(jnp.asarray([c["phi_init"]]), (s.runs, 1))
        batches = {"batch_size": c["batch_size"], "key": jax.random.key(s.seed)}
        results[name] = _traced(prob.loss, make(c), starts, prob.data, c["n_steps"], **batches)
    land = _landscape("gabor", s.grid)
    c0 = nb["momentum_6_4"]
    f1 = Figure(  # side by side, as the lecture draws them: no path hides another
        "momentum_nesterov",
        plots.plot_landscape_panels,
        (land.coords[0], land.coords[1], land.loss, [path(r) for r in results.values()], list(results)),
        {
            "title": f"Gabor: α={c0['alpha']:g}, β={c0['beta']:g}, B={c0['batch_size']}, "
            f"{c0['n_steps']} steps (order 1)"
        },
    )
    curves = {f"{k} (median of {s.runs})": curve(r, None) for k, r in results.items()}
    f2 = Figure("momentum_nesterov_loss", plots.plot_loss_curves, (curves,))
    lecture = {k: stated[key] for k, key in LECTURE_STATED.items()}
    taken = ("alpha", "beta", "batch_size")
    numbers = {
        k: {
            **record(r, **{kk: vv for kk, vv in nb[MOMENTUM_RUNS[k][0]].items() if kk in taken}),
            "lecture_stated_loss": lecture[k],
        }
        for k, r in results.items()
    }
    rows = "\n".join(
        f"| {k} | {float(r.loss[0]):.4g} | {float(np.median(np.asarray(r.loss))):.4g} | {lecture[k]:g} |"
        for k, r in results.items()
    )
    images = " ".join(_images((f1, f2), ("momentum and Nesterov", "loss curves"), s))
    text = f"""## Momentum against Nesterov momentum

The momentum notebook's settings (start φ = ({c0["phi_init"][0]:g}, {c0["phi_init"][1]:g}),
α = {c0["alpha"]:g}, β = {c0["beta"]:g}, batches of {c0["batch_size"]}, {c0["n_steps"]} steps), each
optimizer run with the same {s.runs} mini-batch orders (seed {s.seed}). The lecture's slides quote
single runs whose batches are not given, so only the ordering is comparable.

| optimizer | final loss, order 1 | median over orders | lecture |
|---|---|---|---|
{rows}

{images}
"""
    return Result("momentum_vs_nesterov", numbers, (f1, f2), text)


def _adam_runs() -> dict[str, tuple[Any, int]]:
    """The Adam notebook's four runs on the toy loss: label -> (optimizer, steps)."""
    r = fitjax.datasets.notebook()["adam_toy"]["runs"]
    small, large, norm, adam = r["gd_small_lr"], r["gd_large_lr"], r["normalized_gradients"], r["adam"]
    return {
        f"GD α={small['alpha']:g}": (fitjax.gd(small["alpha"]), small["n_steps"]),
        f"GD α={large['alpha']:g}": (fitjax.gd(large["alpha"]), large["n_steps"]),
        "normalized": (fitjax.normalized(norm["alpha"], norm["epsilon"]), norm["n_steps"]),
        "Adam": (fitjax.adam(adam["alpha"], adam["beta"], adam["gamma"], adam["epsilon"]), adam["n_steps"]),
    }


def normalized_vs_adam(s: Settings = Settings()) -> Result:
    """Fixed steps, normalized gradients and Adam on the toy loss with the notebook's settings."""
    prob = problem("toy")
    nb = fitjax.datasets.notebook()["adam_toy"]
    start = jnp.asarray([nb["phi_init"]])
    results = {k: _traced(prob.loss, opt, start, None, n) for k, (opt, n) in _adam_runs().items()}
    f1 = _landscape_figure(
        "toy_adam",
        _landscape("toy", s.grid),
        trajectories=[path(x) for x in results.values()],
        labels=list(results),
        points=np.asarray([nb["minimum"]]),
        title="Toy loss 1 − exp(−2φ1²)·exp(−(φ0 − 0.7)²/8)",
    )
    f2 = Figure("toy_adam_loss", plots.plot_loss_curves, ({k: curve(x) for k, x in results.items()},))
    numbers = {k: record(x) for k, x in results.items()}
    rows = "\n".join(
        f"| {k} | {x.steps} | ({float(x.params[0, 0]):.4f}, {float(x.params[0, 1]):.4f}) | "
        f"{float(x.loss[0]):.3g} |"
        for k, x in results.items()
    )
    images = " ".join(_images((f1, f2), ("toy landscape", "toy loss curves"), s))
    text = f"""## Normalized gradients against Adam

The Adam notebook's toy loss from φ = ({nb["phi_init"][0]:g}, {nb["phi_init"][1]:g}) (minimum at
(0.7, 0)), with its settings. A small fixed step crawls along φ0, a large one bounces across φ1;
normalized gradients move a fixed α along each coordinate and bounce near the minimum
without converging; Adam's moving averages damp the bouncing.

| optimizer | steps | end | final loss |
|---|---|---|---|
{rows}

{images}
"""
    return Result("normalized_vs_adam", numbers, (f1, f2), text)


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
