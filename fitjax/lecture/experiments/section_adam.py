"""The lecture's sections on normalized gradients and Adam (``## Normalized gradients against
Adam`` of ``report.md``): small and large fixed steps, normalized gradients and Adam on the toy
loss with the Adam notebook's settings."""

from __future__ import annotations

from typing import Any

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
    landscape_figure,
    markdown_images,
    path,
    problem,
    record,
    traced_fit,
)


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
    results = {k: traced_fit(prob.loss, opt, start, None, n) for k, (opt, n) in _adam_runs().items()}
    f1 = landscape_figure(
        "toy_adam",
        landscape("toy", s.grid),
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
    images = " ".join(markdown_images((f1, f2), ("toy landscape", "toy loss curves"), s))
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
