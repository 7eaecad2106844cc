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

Full: float32 polynomials
-------------------------
:func:`polynomial`, from :mod:`fitjax.numerics.polynomials` (where they are described and
their accuracy is measured): the same functions :func:`fitjax.polynomial_math` gives
ordinary programs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fitjax.numerics.polynomials import polynomial

__all__ = ["functions", "polynomial"]

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
