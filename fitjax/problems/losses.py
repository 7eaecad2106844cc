r"""Losses: scalar functions ``loss(params, batch)``.

Any such function works with :func:`fitjax.fit`; :func:`least_squares` builds the
lecture's loss from a model. A batch is ``(x, y)``, a pair of arrays whose leading
axis runs over examples.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LeastSquares:
    r"""The least-squares loss of a model, :math:`L[\phi] = \sum_i (f[x_i, \phi] - y_i)^2`.

    ``reduction="mean"`` divides by the number of examples in the batch. ``pieces``
    takes the sum as that many separate sums over consecutive slices of the batch,
    :math:`\sum_k \sum_{i \in S_k} (f[x_i, \phi] - y_i)^2`: the same loss, summed in
    another order (so equal up to float32 rounding) when the model predicts each example
    from that example alone. :func:`fitjax.fit` chooses it on a CPU
    (:func:`fitjax.engine.pieces.default_pieces`), where XLA would otherwise share a small
    step between threads at a loss, after checking that the model is per example.
    """

    model: Callable[[Any, jax.Array], jax.Array]
    reduction: Literal["sum", "mean"] = "sum"
    pieces: int = 1

    def __post_init__(self) -> None:
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")
        if not callable(self.model):
            raise TypeError(f"model must be a function f(params, x), got {self.model!r}")
        if isinstance(self.pieces, bool) or not isinstance(self.pieces, int) or self.pieces < 1:
            raise ValueError(f"pieces must be a positive int, got {self.pieces!r}; pass 1 for one sum")

    def residuals(self, params: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        x, y = batch
        return self.model(params, x) - y

    def __call__(self, params: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        residuals = [self.residuals(params, piece) for piece in self._pieces(batch)]
        total = functools.reduce(jnp.add, [jnp.sum(r * r) for r in residuals])
        return total / sum(r.shape[0] for r in residuals) if self.reduction == "mean" else total

    def _pieces(self, batch: tuple[jax.Array, jax.Array]) -> list[tuple[jax.Array, jax.Array]]:
        """The batch itself, or its ``pieces`` consecutive slices."""
        if self.pieces == 1:
            return [batch]
        n = jnp.shape(batch[1])[0]
        edges = [n * k // self.pieces for k in range(self.pieces + 1)]
        return [jax.tree.map(lambda a, i=i, j=j: a[i:j], batch) for i, j in itertools.pairwise(edges)]


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
