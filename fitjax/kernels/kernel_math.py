r"""The fused kernel's own transcendentals: ``Fused(precision="fast")`` and ``"full"``.

Fast: the GPU's approximate instructions
----------------------------------------

On an NVIDIA GPU each function is one PTX instruction of the special-function unit,
emitted as inline assembly in the Triton kernel, after a cheap argument reduction:

* ``sin(x)``: ``sin.approx.ftz.f32`` of :math:`r = x - 2\pi k`, with :math:`k = \lfloor x/2\pi + 1/2 \rfloor`;
* ``cos(x)``: ``cos.approx.ftz.f32`` of the same :math:`r`;
* ``exp(x)``: ``ex2.approx.ftz.f32`` of :math:`x \log_2 e`;
* ``log(x)``: :math:`\ln 2` times ``lg2.approx.ftz.f32`` of :math:`x`.

These are the instructions behind CUDA's ``__sinf``, ``__cosf``, ``__expf`` and ``__logf``
intrinsics (what ``nvcc --use_fast_math`` emits). NVIDIA gives ``sin.approx`` and
``cos.approx`` an absolute error of about :math:`2^{-21}` on :math:`[-\pi, \pi]`, growing
outside it, hence the reduction (2π split in two float32 constants so that ``x − 2πk``
loses little for moderate ``k``); ``ex2.approx`` and ``lg2.approx`` are accurate to a few
units in the last place, and rounding :math:`x\log_2 e` adds a relative error of about
:math:`|x| \cdot 2^{-24}` to ``exp``. ``.ftz`` flushes results below :math:`2^{-126}` to
zero. ``tanh.approx`` (error about :math:`2^{-11}`) is too coarse for fitting and is not
used: ``tanh`` stays precise. JAX's own ``accuracy=`` argument of ``lax.sin``/``lax.exp``
is not a way to get these: the Pallas Triton lowering ignores it (it always calls
libdevice's precise ``__nv_sinf``/``__nv_expf``), and XLA's GPU build of the plain path
was measured to ignore it too.

Each function carries its own derivative (``d sin = cos``, ``d exp = exp``, ...) made of
the same fast functions, so ``jax.grad`` of a loss built from them stays fast.

Without a GPU (Pallas interpret mode) there is no special-function unit: the same
reformulations run with XLA's precise ``sin``/``cos``/``exp2``/``log2``. That checks the
plumbing and the argument reduction, not the hardware's approximation error, which
only a GPU run can measure (``benchmarks/fused_bench.py``).

Full: float32 polynomials (:func:`polynomial`)
----------------------------------------------
Ordinary float32 arithmetic only (multiply, add, floor, a select, an exponent built from
bits), so the kernel's compiler sees plain arithmetic that it can schedule and share:

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
  :math:`e^r \approx 1 + r + r^2 E(r)` with :math:`E` of degree 4, times :math:`2^{n_1} 2^{n_2}`,
  :math:`n_1 + n_2 = n`, each factor built from its exponent bits (so overflow gives
  ``inf`` and underflow gives 0 or a subnormal, as for the precise function).

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

_TWO_PI_HI = np.float32(2 * np.pi)
_TWO_PI_LO = np.float32(2 * np.pi - np.float64(_TWO_PI_HI))
_INV_TWO_PI = np.float32(1 / (2 * np.pi))
_LOG2_E = np.float32(np.log2(np.e))
_LN_2 = np.float32(np.log(2.0))


def _reduce(x: jax.Array) -> jax.Array:
    """``x − 2πk`` in ``[-π, π]`` (up to rounding), ``k`` the nearest integer to ``x/2π``."""
    k = jnp.floor(x * _INV_TWO_PI + np.float32(0.5))
    return (x - k * _TWO_PI_HI) - k * _TWO_PI_LO


def _ptx(instruction: str) -> Callable[[jax.Array], jax.Array]:
    """One float32 PTX instruction applied elementwise, usable under ``jax.vmap``."""
    from jax.experimental.pallas import triton as pltriton

    def apply(x):
        [out] = pltriton.elementwise_inline_asm(
            f"{instruction} $0, $1;",
            args=[x],
            constraints="=f,f",
            pack=1,
            result_shape_dtypes=[jax.ShapeDtypeStruct(x.shape, x.dtype)],
        )
        return out

    @jax.custom_batching.custom_vmap
    def op(x):
        return apply(x)

    @op.def_vmap
    def _batched(axis_size, in_batched, x):
        del axis_size  # elementwise: the batched array is just a larger array
        return apply(x), in_batched[0]

    return op


def _primitives(gpu: bool) -> dict[str, Callable[[jax.Array], jax.Array]]:
    if gpu:
        return {name: _ptx(f"{name}.approx.ftz.f32") for name in ("sin", "cos", "ex2", "lg2")}
    return {"sin": lax.sin, "cos": lax.cos, "ex2": lax.exp2, "lg2": jnp.log2}


@functools.lru_cache(maxsize=2)
def functions(gpu: bool) -> dict[str, Callable[[jax.Array], jax.Array]]:
    """Fast ``sin``, ``cos``, ``exp`` and ``log`` with their derivatives, by primitive name.

    ``gpu=True`` gives the inline-PTX versions (only lowerable in a Triton kernel),
    ``gpu=False`` the same formulas with XLA's precise functions.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> fast = functions(gpu=False)
      >>> x = jnp.array([0.5, 40.0])
      >>> bool(jnp.allclose(fast["sin"](x), jnp.sin(x), atol=1e-5))
      True
      >>> bool(jnp.allclose(jax.grad(lambda x: fast["exp"](x).sum())(x), jnp.exp(x), rtol=1e-5))
      True
    """
    prim = _primitives(gpu)

    @jax.custom_jvp
    def sin(x):
        return prim["sin"](_reduce(x))

    @jax.custom_jvp
    def cos(x):
        return prim["cos"](_reduce(x))

    @sin.defjvp
    def _sin_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return sin(x), cos(x) * t

    @cos.defjvp
    def _cos_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return cos(x), -sin(x) * t

    @jax.custom_jvp
    def exp(x):
        return prim["ex2"](x * _LOG2_E)

    @exp.defjvp
    def _exp_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        y = exp(x)
        return y, y * t

    @jax.custom_jvp
    def log(x):
        return prim["lg2"](x) * _LN_2

    @log.defjvp
    def _log_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return log(x), t / x

    return {"sin": sin, "cos": cos, "exp": exp, "log": log}


# ----------------------------------------------------------------------------- full: polynomials


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
    xc = jnp.clip(x, np.float32(-104), np.float32(89))  # beyond: 0 and inf after scaling
    n = jnp.floor(xc * _LOG2_E + np.float32(0.5))
    r = (xc - n * _LN2_1) - n * _LN2_2
    y = np.float32(1) + r + r * r * _horner(r, _EXP)
    n1 = jnp.floor(n * np.float32(0.5))
    return jnp.where(jnp.isnan(x), x, y * _pow2(n1) * _pow2(n - n1))


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
