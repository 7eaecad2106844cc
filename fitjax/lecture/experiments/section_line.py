"""The lecture's section "Gradient descent on the line" (``## Gradient descent on the line`` of
``report.md``): fixed-step gradient descent on the 12-point line fit from the notebook's start,
with and without the notebook's line search, against the least-squares solution."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import fitjax
from fitjax.analysis import plots
from fitjax.lecture.experiments.common import (
    Figure,
    GDRun,
    Result,
    Settings,
    landscape,
    landscape_figure,
    line_search_optimizer,
    markdown_images,
    path,
    problem,
    record,
    traced_fit,
)

LINE_GD = GDRun(learning_rate=0.03, steps=100)
"""Gradient descent on the line: stable below 2/λ_max ≈ 0.04."""


def line(s: Settings = Settings()) -> Result:
    """Gradient descent on the line from the notebook's start, with and without line search."""
    prob = problem("line")
    nb = fitjax.datasets.notebook()["linear_regression"]
    start = jnp.asarray([nb["gradient_descent_line_search"]["phi_init"]])
    x, y = (np.asarray(a, dtype=float) for a in prob.data)
    exact = np.linalg.lstsq(np.stack([np.ones_like(x), x], 1), y, rcond=None)[0]
    exact_loss = float(np.sum((exact[0] + exact[1] * x - y) ** 2))
    lr = LINE_GD.learning_rate
    gd = traced_fit(prob.loss, fitjax.gd(lr), start, prob.data, LINE_GD.steps)
    runs = {f"GD α={lr:g}": gd}
    numbers = {"gd": record(gd, learning_rate=lr), "least_squares": {"params": exact, "loss": exact_loss}}
    search = line_search_optimizer()
    if search is not None:
        ls = nb["gradient_descent_line_search"]
        cfg = ls["line_search"]
        optimizer = search(cfg["max_dist_default"], cfg["thresh"], cfg["max_iter"])
        res = traced_fit(prob.loss, optimizer, start, prob.data, ls["n_steps"])
        runs["GD + line search"] = res
        numbers["gd_line_search"] = record(
            res, max_dist=cfg["max_dist_default"], tol=cfg["thresh"], max_iter=cfg["max_iter"]
        )
    f1 = landscape_figure(
        "line_landscape",
        landscape("line", s.grid),
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
    images = " ".join(markdown_images((f1, f2), ("line landscape", "line fits"), s))
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
