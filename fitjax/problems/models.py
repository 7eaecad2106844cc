r"""Models: pure functions ``f(params, x)`` over pytrees of parameters.

``x`` holds a batch of inputs along its leading axis and the model returns one
prediction per input. Models are hashable values (module functions or frozen
dataclasses), so a compiled fit is reused whenever the same model is fitted again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from fitjax import _checks

PyTree = dict | list | tuple | jax.Array

GABOR_W_LECTURE = 8.0
"""The envelope denominator the lecture writes."""

GABOR_W_NOTEBOOK = 32.0
"""The envelope denominator the companion notebooks used to make the 30-point Gabor data."""


def line(phi: jax.Array, x: jax.Array) -> jax.Array:
    r"""The lecture's straight line :math:`f[x, \phi] = \phi_0 + \phi_1 x`.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> fitjax.line(jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0, 2.0]))
      Array([1., 3., 5.], dtype=float32)
    """
    return phi[0] + phi[1] * x


@dataclasses.dataclass(frozen=True)
class Gabor:
    r"""The Gabor model :math:`f[x,\phi] = \sin(z)\,\exp(-z^2/w)`, :math:`z = \phi_0 + 0.06\,\phi_1 x`.

    The lecture writes ``w = 8``; the companion notebooks' 30-point data set was made
    with ``w = 32`` (:data:`GABOR_W_NOTEBOOK`), which :func:`fitjax.datasets.gabor`
    pairs with it. φ0 shifts the function left and right, φ1 shrinks and stretches it.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> model = fitjax.Gabor(w=8.0)
      >>> model(jnp.array([0.0, 10.0]), jnp.array([0.0]))
      Array([0.], dtype=float32)
    """

    w: float = GABOR_W_LECTURE

    def __post_init__(self) -> None:
        _checks.positive("w", self.w)

    def __call__(self, phi: jax.Array, x: jax.Array) -> jax.Array:
        z = phi[0] + 0.06 * phi[1] * x
        return jnp.sin(z) * jnp.exp(-(z * z) / self.w)


gabor = Gabor(GABOR_W_LECTURE)
"""The Gabor model with the lecture's ``w = 8``."""


def mlp(params: dict, x: jax.Array) -> jax.Array:
    """A multilayer perceptron with tanh hidden layers over a dict/list pytree of weights.

    ``params = {"layers": [{"w": (d_in, d_out), "b": (d_out,)}, ...]}``; ``x`` has shape
    ``(n, d_in)`` or ``(n,)`` for one input feature. Returns ``(n,)`` when the last
    layer has one output, else ``(n, d_out)``.

    Example:
      >>> import jax, fitjax
      >>> params = fitjax.init_mlp(jax.random.key(0), [1, 8, 1])
      >>> fitjax.mlp(params, jax.numpy.linspace(-1, 1, 5)).shape
      (5,)
    """
    h = x[:, None] if x.ndim == 1 else x
    layers = params["layers"]
    for layer in layers[:-1]:
        h = jnp.tanh(h @ layer["w"] + layer["b"][None])
    out = h @ layers[-1]["w"] + layers[-1]["b"][None]
    return out[:, 0] if out.shape[-1] == 1 else out


def init_mlp(key: jax.Array, sizes: Sequence[int], dtype: jnp.dtype | None = None) -> dict:
    """One set of MLP weights for layer ``sizes`` (LeCun-normal weights, zero biases)."""
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least an input and an output size, got {list(sizes)}")
    for i, s in enumerate(sizes):
        _checks.positive_int(f"sizes[{i}]", s)
    dtype = dtype or jnp.result_type(float)
    keys = jax.random.split(key, len(sizes) - 1)
    layers = [
        {
            "w": jax.random.normal(k, (d_in, d_out), dtype) / jnp.sqrt(jnp.asarray(d_in, dtype)),
            "b": jnp.zeros((d_out,), dtype),
        }
        for k, d_in, d_out in zip(keys, sizes[:-1], sizes[1:], strict=False)
    ]
    return {"layers": layers}
