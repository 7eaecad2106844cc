r"""Float32 ``sin``, ``cos`` and ``exp`` from plain arithmetic (:func:`polynomial`).

Used by :func:`fitjax.polynomial_math` (the engine's default for float32 losses on a
CPU) and by the fused kernel's ``precision="full"``. Only multiplies, adds, floors, a
select and an exponent built from bits, so a compiler sees plain arithmetic that it can
vectorise (XLA's CPU backend evaluates its own ``sin`` and ``cos`` one element at a time)
and share between functions of the same argument:

* ``sin`` and ``cos``: :math:`j = \lfloor 2x/\pi + 1/2 \rfloor`, :math:`r = x - j\pi/2` with
  :math:`\pi/2` split into three float32 parts (the first two with 12 trailing zero
  bits, so :math:`j \cdot` part is exact for :math:`|j| < 2^{12}`), then on
  :math:`|r| \le \pi/4`

  .. math::
      \sin r \approx r + r^3 S(r^2), \qquad \cos r \approx 1 - r^2/2 + r^4 C(r^2),

  with :math:`S, C` of degree 2 fitted here (near-minimax, relative error in float64),
  and the quadrant :math:`j \bmod 4` choosing the sign and which of the two is returned.
  ``sin(x)`` and ``cos(x)`` of the same ``x`` share the reduction after common
  subexpression elimination, as the gradient of ``sin`` needs ``cos`` at the same point.
* ``exp``: :math:`n = \lfloor x\log_2 e + 1/2\rfloor`, :math:`r = x - n\ln 2` (two parts),
  :math:`e^r \approx 1 + r + r^2 E(r)` with :math:`E` of degree 4, times :math:`2^n` built
  from its exponent bits (one factor: :math:`2 \cdot 2^{127}` at :math:`n = 128`). Overflow
  gives ``inf``; a result below the smallest normal float32 (:math:`2^{-126}`, about
  :math:`x < -87.3`) is 0 or, for :math:`x > -87.7`, a subnormal where the platform keeps
  them. XLA's CPU flushes every subnormal result to 0, its own ``exp`` included, so on a
  CPU the two agree there too.

Measured against float64 on two million float32 arguments each (``tests/test_fused.py``
keeps the bounds): ``sin``/``cos`` within 1.6 units in the last place on
:math:`[-\pi, \pi]`, and within :math:`1.2 \cdot 10^{-7}` absolute error for :math:`|x| \le 6000`
(where :math:`j \cdot` the first part is exact; the relative error grows only next to a zero
of the function, as the reduction's rounding becomes visible there; beyond, the error
grows with :math:`|x|` unless the compiler contracts the reduction into fused
multiply-adds); ``exp`` within 1.3 units in the last place wherever the result is
a normal float32. XLA's own functions are within about 1 unit; the two differ by float32
rounding. ``log`` stays the platform's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["polynomial"]

_LOG2_E = np.float32(np.log2(np.e))


def _split_bits(value: float, zero_bits: int) -> np.float32:
    """``value`` rounded to float32 with its last ``zero_bits`` mantissa bits cleared."""
    bits = np.array(np.float32(value)).view(np.uint32) & np.uint32((0xFFFFFFFF << zero_bits) & 0xFFFFFFFF)
    return np.float32(bits.view(np.float32)[()])


_PIO2_1 = _split_bits(np.pi / 2, 12)
_PIO2_2 = _split_bits(np.pi / 2 - float(_PIO2_1), 12)
_PIO2_3 = np.float32(np.pi / 2 - float(_PIO2_1) - float(_PIO2_2))
_TWO_OVER_PI = np.float32(2 / np.pi)
_LN2_1 = _split_bits(np.log(2.0), 12)
_LN2_2 = np.float32(np.log(2.0) - float(_LN2_1))
# Fitted in float64 on Chebyshev nodes (iteratively reweighted towards minimax), then rounded.
_SIN = tuple(np.float32(c) for c in (-0.16666650772094727, 0.00833197869360447, -0.00019495649030432105))
_COS = tuple(np.float32(c) for c in (0.04166664555668831, -0.001388736767694354, 2.4438442778773606e-05))
_EXP = tuple(
    np.float32(c)
    for c in (0.5, 0.166665181517601, 0.04166620969772339, 0.008368884213268757, 0.0013950340216979384)
)


def _horner(z: jax.Array, coefficients: tuple) -> jax.Array:
    acc = coefficients[-1]
    for c in coefficients[-2::-1]:
        acc = acc * z + c
    return acc


def _sincos(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    j = jnp.floor(x * _TWO_OVER_PI + np.float32(0.5))
    r = ((x - j * _PIO2_1) - j * _PIO2_2) - j * _PIO2_3
    z = r * r
    s = r + r * z * _horner(z, _SIN)
    c = np.float32(1) - np.float32(0.5) * z + z * z * _horner(z, _COS)
    q = j - np.float32(4) * jnp.floor(j * np.float32(0.25))  # the quadrant, 0..3
    swap = (q == 1) | (q == 3)
    sin, cos = jnp.where(swap, c, s), jnp.where(swap, s, c)
    return jnp.where(q >= 2, -sin, sin), jnp.where((q == 1) | (q == 2), -cos, cos)


def _pow2(n: jax.Array) -> jax.Array:
    """:math:`2^n` for an integral float32 ``n`` in [-126, 127], from its exponent bits."""
    bits = lax.shift_left(n.astype(jnp.int32) + np.int32(127), np.int32(23))
    return lax.bitcast_convert_type(bits, jnp.float32)


def _exp(x: jax.Array) -> jax.Array:
    # Clipped, n lies in [-127, 128]. 2^-127 from its bits is 0, which gives the flushed
    # underflow; 2^128 has no float32, so there the result is 2y * 2^127 (inf, as it overflows).
    # A NaN would stay NaN through the clip and the polynomial, but the select that returns
    # it is kept: without it XLA's CPU compiles the landscapes' programs 4x slower.
    xc = jnp.clip(x, np.float32(-88), np.float32(89))
    n = jnp.floor(xc * _LOG2_E + np.float32(0.5))
    r = (xc - n * _LN2_1) - n * _LN2_2
    y = np.float32(1) + r + r * r * _horner(r, _EXP)
    top = n > np.float32(127)
    scaled = (y * jnp.where(top, np.float32(2), np.float32(1))) * _pow2(jnp.where(top, np.float32(127), n))
    return jnp.where(jnp.isnan(x), x, scaled)


@functools.lru_cache(maxsize=1)
def polynomial() -> dict[str, Callable[[jax.Array], jax.Array]]:
    """Float32 ``sin``, ``cos`` and ``exp`` from plain arithmetic, with their derivatives.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> full = polynomial()
      >>> x = jnp.linspace(-30.0, 30.0, 1001)
      >>> float(jnp.max(jnp.abs(full["sin"](x) - jnp.sin(x)))) < 2e-7
      True
      >>> float(jnp.max(jnp.abs(full["exp"](x) / jnp.exp(x) - 1))) < 3e-7
      True
    """

    @jax.custom_jvp
    def sin(x):
        return _sincos(x)[0]

    @jax.custom_jvp
    def cos(x):
        return _sincos(x)[1]

    @sin.defjvp
    def _sin_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        s, c = _sincos(x)
        return s, c * t

    @cos.defjvp
    def _cos_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        s, c = _sincos(x)
        return c, -s * t

    @jax.custom_jvp
    def exp(x):
        return _exp(x)

    @exp.defjvp
    def _exp_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        y = _exp(x)
        return y, y * t

    return {"sin": sin, "cos": cos, "exp": exp}
