"""The lecture's section on the Gabor model, its minima and saddles (``## Gradient descent on the
Gabor landscape`` of ``report.md``): gradient descent from :data:`GABOR_STARTS`, the landscape's
critical points and the basins of attraction of gradient descent."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

import fitjax
from fitjax.analysis import plots
from fitjax.lecture.experiments.common import (
    Figure,
    GDRun,
    Result,
    Settings,
    critical_points,
    grid_axes,
    landscape,
    landscape_figure,
    markdown_images,
    path,
    problem,
    traced_fit,
)

GABOR_GD = GDRun(learning_rate=0.05, steps=500)
"""Gradient descent on the Gabor landscape, from :data:`GABOR_STARTS` and for the basin map."""
GABOR_STARTS = ((-1.5, 8.5), (3.5, 6.5), (5.0, 15.0), (-7.0, 10.0), (-6.0, 4.0), (0.0, 20.0))
"""The six starts of the Gabor experiment."""
BASIN_TOL = 0.1
"""Basin-map end points closer than this are one minimum."""


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
    res = traced_fit(prob.loss, fitjax.gd(lr), jnp.asarray(GABOR_STARTS), prob.data, steps)
    land = landscape("gabor", s.grid)
    cps = critical_points("gabor", s.grid)
    assert prob.box is not None
    v0, v1 = grid_axes(prob.box, s.basin_grid)
    bm = fitjax.basin_map(prob.loss, fitjax.gd(lr), prob.data, v0, v1, steps=s.basin_steps, tol=BASIN_TOL)
    figures = (
        landscape_figure(
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
    images = markdown_images(figures, ("Gabor landscape", "Gabor surface", "Gabor basins"), s)
    return Result("gabor", numbers, figures, _gabor_markdown(res, numbers, images, s))
