r"""Classical test functions of optimization, each ``f(x, data=None)`` for one point ``x``.

Every function takes a 1-D array ``x`` of length d (two for the two-dimensional
ones) and ignores ``data``, so it can be handed to :func:`fitjax.fit` with ``data=None``.
Their minima and minimisers are listed in :mod:`fitjax.problems`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

STYBLINSKI_TANG_X = -2.903534027771178
"""The coordinate of the Styblinski–Tang minimiser, the root of 4x³ − 32x + 5 = 0 near −2.9."""

STYBLINSKI_TANG_F = -39.16616570377142
"""The Styblinski–Tang minimum per dimension (the minimum is d times this)."""

CAMEL_X = (0.08984201368301331, -0.7126564032704135)
"""One of the two minimisers of the six-hump camel function (the other is its negative)."""

CAMEL_F = -1.031628453489877
"""The six-hump camel minimum."""

HIMMELBLAU_X = (
    (3.0, 2.0),
    (-2.805118086952745, 3.131312518250573),
    (-3.779310253377747, -3.283185991286170),
    (3.584428340330492, -1.848126526964404),
)
"""The four minimisers of Himmelblau's function, where it is 0."""


def rosenbrock(x: jax.Array, data: Any = None) -> jax.Array:
    r"""Rosenbrock's valley :math:`f(x) = \sum_{i=1}^{d-1} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`.

    Minimum 0 at :math:`x = (1, \dots, 1)`; d ≥ 2.

    Example:
      >>> import jax.numpy as jnp
      >>> float(rosenbrock(jnp.ones(4)))
      0.0
    """
    del data
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def himmelblau(x: jax.Array, data: Any = None) -> jax.Array:
    r"""Himmelblau's function :math:`f(x, y) = (x^2 + y - 11)^2 + (x + y^2 - 7)^2`.

    Four minima, all 0 (:data:`HIMMELBLAU_X`), one of them at (3, 2).
    """
    del data
    return (x[0] ** 2 + x[1] - 11.0) ** 2 + (x[0] + x[1] ** 2 - 7.0) ** 2


def beale(x: jax.Array, data: Any = None) -> jax.Array:
    r"""Beale's function :math:`f(x, y) = (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2`.

    Minimum 0 at (3, 0.5).
    """
    del data
    a, b = x[0], x[1]
    return (1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2 + (2.625 - a + a * b**3) ** 2


def camel(x: jax.Array, data: Any = None) -> jax.Array:
    r"""The six-hump camel function :math:`f(x, y) = (4 - 2.1x^2 + x^4/3)\,x^2 + xy + (-4 + 4y^2)\,y^2`.

    Minimum −1.0316284534898774 at ±(0.0898420137, −0.7126564033) (:data:`CAMEL_X`).
    """
    del data
    a, b = x[0], x[1]
    return (4.0 - 2.1 * a**2 + a**4 / 3.0) * a**2 + a * b + (-4.0 + 4.0 * b**2) * b**2


def rastrigin(x: jax.Array, data: Any = None) -> jax.Array:
    r"""Rastrigin's function :math:`f(x) = 10 d + \sum_i \bigl(x_i^2 - 10 \cos(2\pi x_i)\bigr)`.

    Minimum 0 at the origin, with a local minimum near every integer point.
    """
    del data
    return 10.0 * x.shape[0] + jnp.sum(x**2 - 10.0 * jnp.cos(2.0 * jnp.pi * x))


def _safe_norm(x: jax.Array) -> jax.Array:
    """:math:`\\lVert x \\rVert_2` whose gradient at 0 is taken as 0 (not NaN)."""
    sq = jnp.sum(x * x)
    nonzero = sq > 0
    return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1.0)), 0.0)


def ackley(x: jax.Array, data: Any = None) -> jax.Array:
    r"""Ackley's function, with :math:`r = \sqrt{\tfrac1d \sum_i x_i^2}`,
    :math:`f(x) = -20 \exp(-0.2\, r) - \exp\bigl(\tfrac1d \sum_i \cos 2\pi x_i\bigr) + 20 + e`.

    Minimum 0 at the origin, where f has a cone-shaped kink (it is not differentiable
    there); the gradient returned at the origin is 0, a subgradient.
    """
    del data
    d = x.shape[0]
    r = _safe_norm(x) / jnp.sqrt(jnp.asarray(d, x.dtype))
    # written with expm1 so that both terms are exactly 0 at the origin, in any precision
    c = jnp.mean(jnp.cos(2.0 * jnp.pi * x)) - 1.0
    return -20.0 * jnp.expm1(-0.2 * r) - jnp.e * jnp.expm1(c)


def styblinski_tang(x: jax.Array, data: Any = None) -> jax.Array:
    r"""The Styblinski–Tang function :math:`f(x) = \tfrac12 \sum_i (x_i^4 - 16 x_i^2 + 5 x_i)`.

    Minimum :math:`-39.16616570377142\, d` at :math:`x_i = -2.903534027771178` for every i.
    """
    del data
    return 0.5 * jnp.sum(x**4 - 16.0 * x**2 + 5.0 * x)
