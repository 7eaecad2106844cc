"""The lecture's section on SGD, batches and epochs (``## Stochastic against full-batch gradient
descent`` of ``report.md``): SGD from the notebook's start under :attr:`Settings.runs` mini-batch
orders against full-batch gradient descent, and where the SGD runs end."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import fitjax
from fitjax.analysis import plots
from fitjax.lecture.experiments.common import (
    Figure,
    Result,
    Settings,
    critical_points,
    curve,
    landscape,
    landscape_figure,
    markdown_images,
    path,
    problem,
    record,
    traced_fit,
)

FLAT_SHARE = 0.15
"""In the SGD experiment a loss "near" another is within 15% of it."""


def _sgd_ends(sgd: fitjax.FitResult, gd: fitjax.FitResult, data: Any, grid: int) -> dict[str, Any]:
    """Where the SGD runs end: below GD, on the flat region where the model is ≈ 0, or at the global minimum.

    The loss of a model that is zero at every point is Σy² (the flat region far from the data's
    bump); the global minimum is the lowest critical point of the Gabor landscape.
    """
    sgd_loss = np.asarray(sgd.loss)
    zero_model = float(np.sum(np.asarray(data[1]) ** 2))
    cps = critical_points("gabor", grid)
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
    gd = traced_fit(prob.loss, fitjax.gd(fixed["alpha"]), start, prob.data, c["n_steps"])
    starts = jnp.tile(start, (s.runs, 1))
    batches = {"batch_size": c["batch_size"], "key": jax.random.key(s.seed)}
    sgd = traced_fit(prob.loss, fitjax.sgd(c["alpha"]), starts, prob.data, c["n_steps"], **batches)
    shown = min(3, s.runs)
    median = f"SGD median of {s.runs} orders"
    f1 = landscape_figure(
        "sgd_vs_gd",
        landscape("gabor", s.grid),
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
    images = " ".join(markdown_images((f1, f2), ("SGD vs GD", "SGD vs GD loss"), s))
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
