"""The lecture's sections on momentum and Nesterov momentum (``## Momentum against Nesterov
momentum`` of ``report.md``): SGD, momentum and Nesterov momentum with the notebook's settings
and the same mini-batch orders, beside the final losses the lecture's slides quote."""

from __future__ import annotations

from collections.abc import Callable
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
    curve,
    landscape,
    markdown_images,
    path,
    problem,
    record,
    traced_fit,
)

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
        results[name] = traced_fit(prob.loss, make(c), starts, prob.data, c["n_steps"], **batches)
    land = landscape("gabor", s.grid)
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
    images = " ".join(markdown_images((f1, f2), ("momentum and Nesterov", "loss curves"), s))
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
