"""Data: the lecture's toy sets, shipped with the package, and seeded synthetic sets.

The 12-point line and 30-point Gabor sets, and the settings of the lecture's
companion notebooks (starting points, step counts, learning rates), come from
``fitjax/_data/udl_chapter6.json`` (see the README beside it for provenance).
Every set is a pair ``(x, y)`` of arrays in the default float dtype.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jax
import jax.numpy as jnp

from fitjax import _checks
from fitjax.problems.models import GABOR_W_NOTEBOOK, Gabor
from fitjax.problems.models import line as line_model

Data = tuple[jax.Array, jax.Array]


@functools.cache
def notebook() -> dict[str, Any]:
    """The companion notebooks' numbers (data, starting points, settings) as a dict."""
    text = resources.files("fitjax").joinpath("_data/udl_chapter6.json").read_text()
    return json.loads(text)


def _pair(section: str) -> Data:
    d = notebook()[section]
    return jnp.asarray(d["x"], dtype=float), jnp.asarray(d["y"], dtype=float)


def line() -> Data:
    """The lecture's 12 points for the straight-line fit.

    Example:
      >>> import fitjax
      >>> x, y = fitjax.datasets.line()
      >>> x.shape, y.shape
      ((12,), (12,))
    """
    return _pair("linear_regression")


def gabor() -> Data:
    """The lecture's 30 points for the Gabor fit (made with ``w = 32``, :data:`GABOR_W_NOTEBOOK`)."""
    return _pair("gabor")


def synthetic_line(key: jax.Array, n: int, phi: tuple[float, float] = (0.5, 0.6), noise: float = 0.1) -> Data:
    """``n`` points on ``φ0 + φ1·x`` with Gaussian noise, x uniform in [0, 2]."""
    key = _checks.prng_key("key", key)
    n = _checks.positive_int("n", n)
    _checks.non_negative("noise", noise)
    kx, ky = jax.random.split(key)
    x = jax.random.uniform(kx, (n,), minval=0.0, maxval=2.0)
    return x, line_model(jnp.asarray(phi, x.dtype), x) + noise * jax.random.normal(ky, (n,))


def synthetic_gabor(
    key: jax.Array,
    n: int,
    phi: tuple[float, float] = (0.0, 16.6),
    noise: float = 0.1,
    w: float = GABOR_W_NOTEBOOK,
    x_range: tuple[float, float] = (-15.0, 15.0),
) -> Data:
    """``n`` points of a Gabor function with Gaussian noise, x uniform in ``x_range``."""
    if not (len(x_range) == 2 and -float("inf") < x_range[0] < x_range[1] < float("inf")):
        raise ValueError(f"x_range must be (low, high) with finite low < high, got {x_range!r}")
    key = _checks.prng_key("key", key)
    n = _checks.positive_int("n", n)
    _checks.non_negative("noise", noise)
    kx, ky = jax.random.split(key)
    x = jax.random.uniform(kx, (n,), minval=x_range[0], maxval=x_range[1])
    return x, Gabor(w)(jnp.asarray(phi, x.dtype), x) + noise * jax.random.normal(ky, (n,))


def synthetic_regression(key: jax.Array, n: int, noise: float = 0.05) -> Data:
    """``n`` points of ``sin(3x)·x`` on x in [−1, 1] with noise: a small set for the MLP."""
    key = _checks.prng_key("key", key)
    n = _checks.positive_int("n", n)
    _checks.non_negative("noise", noise)
    kx, ky = jax.random.split(key)
    x = jax.random.uniform(kx, (n,), minval=-1.0, maxval=1.0)
    return x, jnp.sin(3 * x) * x + noise * jax.random.normal(ky, (n,))
