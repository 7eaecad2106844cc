r"""Machine-learning problems: a classification loss and scikit-learn's digits (optional).

The digits set (1,797 images of 8 × 8 pixels, ten classes) comes with scikit-learn,
which fitjax does not require: :func:`digits_data` raises ``ImportError`` naming the
fix when it is missing, and the catalogue's ``digits_*`` problems then cannot be built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fitjax.problems.models import mlp


@dataclasses.dataclass(frozen=True)
class CrossEntropy:
    r"""The mean softmax cross-entropy of a model's logits,
    :math:`L[\phi] = -\frac1I \sum_i \log \operatorname{softmax}(f[x_i, \phi])_{y_i}`.

    ``batch`` is ``(x, y)`` with integer class labels ``y``.
    """

    model: Callable[[Any, jax.Array], jax.Array]

    def __call__(self, params: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        x, y = batch
        logits = self.model(params, x)
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1))


def cross_entropy(model: Callable[[Any, jax.Array], jax.Array]) -> CrossEntropy:
    """The mean softmax cross-entropy loss of ``model`` (see :class:`CrossEntropy`).

    Example:
      >>> import jax, jax.numpy as jnp, fitjax
      >>> params = fitjax.init_mlp(jax.random.key(0), [4, 3])
      >>> x, y = jnp.zeros((5, 4)), jnp.array([0, 1, 2, 0, 1])
      >>> round(float(cross_entropy(fitjax.mlp)(params, (x, y))), 4)   # log 3 at zero logits
      1.0986
    """
    return CrossEntropy(model)


mlp_classifier = CrossEntropy(mlp)
"""The cross-entropy of :func:`fitjax.mlp`'s logits: a logistic regression for sizes
``[d, k]``, a network for ``[d, h, ..., k]``."""


def digits_data(n: int | None = None) -> tuple[jax.Array, jax.Array]:
    """scikit-learn's digits as ``(x, y)``: pixels scaled to [0, 1] (÷16), integer labels.

    ``n`` keeps the first ``n`` images (all 1,797 by default).

    Raises:
      ImportError: scikit-learn is not installed (``pip install scikit-learn``).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "the digits problems need scikit-learn, which is not installed; "
            "install it with `pip install scikit-learn` or choose another problem"
        ) from err
    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int32)
    if n is not None:
        if not (isinstance(n, int) and 1 <= n <= x.shape[0]):
            raise ValueError(f"n must be a whole number in [1, {x.shape[0]}], got {n!r}")
        x, y = x[:n], y[:n]
    return jnp.asarray(x, dtype=float), jnp.asarray(y)
