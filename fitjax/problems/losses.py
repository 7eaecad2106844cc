r"""Losses: scalar functions ``loss(params, batch)``.

Any such function works with :func:`fitjax.fit`; :func:`least_squares` builds the
lecture's loss from a model. A batch is ``(x, y)``, a pair of arrays whose leading
axis runs over examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LeastSquares:
    r"""The least-squares loss of a model, :math:`L[\phi] = \sum_i (f[x_i, \phi] - y_i)^2`.

    ``reduction="mean"`` divides by the number of examples in the batch.
    """

    model: Callable[[Any, jax.Array], jax.Array]
    reduction: Literal["sum", "mean"] = "sum"

    def __post_init__(self) -> None:
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")
        if not callable(self.model):
            raise TypeError(f"model must be a function f(params, x), got {self.model!r}")

    def residuals(self, params: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        x, y = batch
        return self.model(params, x) - y

    def __call__(self, params: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        r = self.residuals(params, batch)
        total = jnp.sum(r * r)
        return total / r.shape[0] if self.reduction == "mean" else total


def least_squares(
    model: Callable[[Any, jax.Array], jax.Array], reduction: Literal["sum", "mean"] = "sum"
) -> LeastSquares:
    r"""The lecture's least-squares loss :math:`L[\phi] = \sum_{i=1}^I (f[x_i,\phi] - y_i)^2` of ``model``.

    Example:
      >>> import fitjax, jax.numpy as jnp
      >>> loss = fitjax.least_squares(fitjax.line)
      >>> x, y = fitjax.datasets.line()
      >>> round(float(loss(jnp.array([0.6, -0.2]), (x, y))), 3)
      12.367
    """
    return LeastSquares(model, reduction)


def toy_loss(phi: jax.Array, batch: Any = None) -> jax.Array:
    r"""The lecture's Adam toy loss :math:`1 - e^{-2\phi_1^2}\, e^{-(\phi_0 - 0.7)^2/8}`.

    Its minimum is 0 at φ = (0.7, 0); it is far steeper in φ1 than in φ0, which is the
    case where a fixed step size struggles. ``batch`` is ignored (no data).

    Example:
      >>> import fitjax, jax.numpy as jnp
      >>> float(fitjax.toy_loss(jnp.array([0.7, 0.0])))
      0.0
    """
    del batch
    return 1.0 - jnp.exp(-2.0 * phi[1] ** 2) * jnp.exp(-((phi[0] - 0.7) ** 2) / 8.0)
