"""The lecture's section on line search (``## Gradient descent with line search`` of
``report.md``): the notebook's bracketing line search against a fixed step on the Gabor data,
run only where this installation has the line search."""

from __future__ import annotations

import jax.numpy as jnp

import fitjax
from fitjax.analysis import plots
from fitjax.lecture.experiments.common import (
    Figure,
    Result,
    Settings,
    curve,
    landscape,
    landscape_figure,
    line_search_optimizer,
    markdown_images,
    path,
    problem,
    record,
    traced_fit,
)


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
    a = traced_fit(prob.loss, optimizer, jnp.asarray([ls["phi_init"]]), prob.data, ls["n_steps"])
    b = traced_fit(
        prob.loss, fitjax.gd(fixed["alpha"]), jnp.asarray([fixed["phi_init"]]), prob.data, fixed["n_steps"]
    )
    f1 = landscape_figure(
        "gabor_line_search",
        landscape("gabor", s.grid),
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
    images = " ".join(markdown_images((f1, f2), ("line search", "line search loss"), s))
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
