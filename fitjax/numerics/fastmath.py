r"""Run a loss with fitjax's float32 ``sin``, ``cos`` and ``exp`` on any backend.

:func:`polynomial_math` is a function transformation: ``polynomial_math(loss)`` computes
what ``loss`` computes, except that every float32 ``sin``, ``cos`` and ``exp`` in it (and
so in its ``jax.grad``) is evaluated by the polynomials of
:func:`fitjax.numerics.polynomials.polynomial` (the fused kernel's ``precision="full"``):

* ``sin`` and ``cos``: one reduction by :math:`\pi/2` and two short polynomials,
  within 1.6 units in the last place on :math:`[-\pi, \pi]` and :math:`1.2 \cdot 10^{-7}`
  absolute for :math:`|x| \le 6000`;
* ``exp``: a reduction by :math:`\ln 2`, a polynomial and an exponent built from bits,
  within 1.3 units in the last place.

Why: XLA's CPU backend evaluates ``sin`` and ``cos`` one element at a time, while the
polynomials are plain multiplies, adds and selects that it vectorises. On a 2-core CPU
``sin + cos + exp`` of 10⁷ float32 values took 30 ms this way against 78 ms with XLA's
functions, and the benchmark fit (Gabor, Adam) ran 1.9× as fast with 30 data points
and 3.4× with 1024 (``docs/benchmarks.md``, quick run, 1.80×/0.94× and 3.48×/0.99× the
expert baseline). Results differ from the platform functions' by float32
rounding, so a long nonconvex fit may end elsewhere on a few runs, as it may between
any two float32 implementations. Float64 (and every other dtype) is left alone: a loss
with no float32 ``sin``, ``cos`` or ``exp`` is called as it is.

**The default on a CPU.** :func:`fitjax.fit` (so :func:`fitjax.sweep`) and the
landscapes (:func:`fitjax.loss_grid`, :func:`fitjax.loss_plane`, :func:`fitjax.loss_line`)
evaluate every loss through :func:`choose_math`: on a CPU that is
``polynomial_math(loss)``, unless the loss is marked with :func:`platform_math`. The
loss an optimizer evaluates itself (a line search's ``value_fn``) is the same function.
On other platforms the loss runs as written.

What is substituted: ``sin``, ``cos`` and ``exp`` anywhere in the traced function,
including inside nested ``jax.jit`` calls. Inside other higher-order primitives
(``lax.scan``, ``lax.cond``, ``jax.custom_jvp`` functions such as ``jax.nn.softplus``)
the platform's functions stay. The fused GPU kernel has its own choice of functions
(``fitjax.fused.Fused(precision=...)``, whose default uses the same polynomials) and
runs a ``polynomial_math`` loss on the XLA path, with a ``FallbackWarning``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from fitjax.numerics.polynomials import polynomial

__all__ = ["CALL_PRIMITIVES", "choose_math", "platform_math", "polynomial_math"]

CALL_PRIMITIVES = frozenset({"jit", "pjit", "closed_call", "core_call"})
"""The call primitives whose jaxpr is evaluated inline (a nested ``jax.jit`` and its kin)."""
_CALLS = CALL_PRIMITIVES


def _eval(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any], table: dict[str, Callable]) -> list[Any]:
    """Evaluate ``jaxpr`` with the primitives named in ``table`` replaced (float32 only)."""
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, jex_core.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name in table and all(jnp.result_type(a) == jnp.float32 for a in ins):
            outs = [table[name](*ins)]
        elif name in _CALLS:
            inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            outs = _eval(inner.jaxpr, inner.consts, ins, table)
        else:
            out = eqn.primitive.bind(*ins, **eqn.primitive.get_bind_params(eqn.params))
            outs = out if eqn.primitive.multiple_results else [out]
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def _substitutes(jaxpr: Any, table: dict[str, Callable]) -> bool:
    """Whether ``jaxpr`` (nested calls included) applies a function of ``table`` to float32."""
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name in table and all(v.aval.dtype == jnp.float32 for v in eqn.invars):
            return True
        if name in _CALLS:
            inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            if _substitutes(inner.jaxpr, table):
                return True
    return False


@functools.lru_cache(maxsize=64)
def _cached(fun: Callable) -> Callable:
    return _transform(fun)


def _transform(fun: Callable) -> Callable:
    table = polynomial()

    @functools.wraps(fun)
    def wrapped(*args: Any) -> Any:
        closed, shape = jax.make_jaxpr(fun, return_shape=True)(*args)
        if not _substitutes(closed.jaxpr, table):  # nothing to replace (float64): ``fun`` itself
            return fun(*args)
        outs = _eval(closed.jaxpr, closed.consts, jax.tree.leaves(args), table)
        return jax.tree.unflatten(jax.tree.structure(shape), outs)

    wrapped.__fitjax_polynomial_math__ = fun  # type: ignore[attr-defined]
    return wrapped


def polynomial_math(fun: Callable) -> Callable:
    """``fun`` with its float32 ``sin``, ``cos`` and ``exp`` computed by fitjax's polynomials.

    The same ``fun`` gives the same wrapped function, so ``fitjax.fit`` reuses its
    compiled program across calls. Arguments are positional (a loss's ``(params, batch)``).
    On a CPU this is what :func:`fitjax.fit` and the landscapes do to a float32 loss by
    default; :func:`fitjax.platform_math` opts out.

    Accuracy, each against NumPy's float64 function at the same float32 arguments
    (10⁶ + 1 evenly spaced; XLA's CPU functions for the platform; ``python -m
    benchmarks.fastmath_accuracy``):

    ======== ================ ======================= =======================
    function range            polynomial: max, median platform: max, median
                              relative error          relative error
    ======== ================ ======================= =======================
    sin      [-π, π]          1.2e-7, 2.1e-8          6.3e-8, 1.9e-8
    sin      [-100, 100]      1.2e-7, 2.2e-8          6.3e-8, 1.9e-8
    cos      [-π, π]          1.3e-7, 2.3e-8          6.3e-8, 1.9e-8
    cos      [-100, 100]      1.3e-7, 2.2e-8          6.3e-8, 1.9e-8
    exp      [-10, 10]        1.2e-7, 2.3e-8          8.2e-8, 2.1e-8
    exp      [-80, 80]        1.2e-7, 2.6e-8          8.2e-8, 2.1e-8
    ======== ================ ======================= =======================

    Both are within a unit or two in the last place (float32's is 6e-8 relative). Over a
    fit, the difference is of the size float32 rounding makes anyway: the benchmark Gabor
    fit (Adam, 1000 starts, 30 points, 200 steps) ends within 8.4e-8 (median) and 1.4e-5
    (largest) of its float64 final losses with the polynomials, 7.3e-8 and 1.4e-5 with
    the platform's functions, no run ending in another minimum.

    Args:
      fun: a function of arrays and pytrees of arrays, such as a loss ``f(params, batch)``.

    Returns:
      A function with the same signature and results up to float32 rounding.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import fitjax
      >>> loss = fitjax.least_squares(fitjax.Gabor(8.0))
      >>> fast = fitjax.polynomial_math(loss)
      >>> phi, data = jnp.array([0.5, 10.0]), fitjax.datasets.gabor()
      >>> bool(jnp.allclose(fast(phi, data), loss(phi, data), rtol=1e-6))
      True
      >>> bool(jnp.allclose(jax.grad(fast)(phi, data), jax.grad(loss)(phi, data), rtol=1e-5))
      True
      >>> fitjax.polynomial_math(loss) is fast
      True
    """
    return _wrapped_once(fun, "__fitjax_polynomial_math__", _cached, _transform)


@functools.lru_cache(maxsize=64)
def _marked(fun: Callable) -> Callable:
    return _mark(fun)


def _mark(fun: Callable) -> Callable:
    @functools.wraps(fun)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return fun(*args, **kwargs)

    wrapped.__fitjax_platform_math__ = fun  # type: ignore[attr-defined]
    return wrapped


def platform_math(fun: Callable) -> Callable:
    """``fun``, marked to keep the platform's ``sin``, ``cos`` and ``exp`` in fitjax's programs.

    On a CPU, :func:`fitjax.fit` (and :func:`fitjax.sweep`, the landscapes) evaluate a
    float32 loss with :func:`polynomial_math` unless the loss is marked so. Use it to
    compare fitjax's arithmetic with another program's step by step, or to reproduce
    results computed with the platform's functions. The same ``fun`` gives the same
    marked function, so compiled programs are reused.

    Args:
      fun: a function, such as a loss ``f(params, batch)``.

    Returns:
      A function that calls ``fun``, with the same signature and results.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> loss = fitjax.least_squares(fitjax.Gabor(8.0))
      >>> exact = fitjax.platform_math(loss)
      >>> phi, data = jnp.array([0.5, 10.0]), fitjax.datasets.gabor()
      >>> bool(exact(phi, data) == loss(phi, data)), fitjax.platform_math(loss) is exact
      (True, True)
    """
    return _wrapped_once(fun, "__fitjax_platform_math__", _marked, _mark)


def _wrapped_once(
    fun: Callable, marker: str, cached: Callable[[Callable], Callable], wrap: Callable[[Callable], Callable]
) -> Callable:
    """``fun`` itself if it carries ``marker``, else its wrapper from ``cached`` (the same
    wrapper for the same ``fun``, so programs are reused), or a new ``wrap`` when ``fun``
    is unhashable."""
    if not callable(fun):
        raise TypeError(f"fun must be a function, got {type(fun).__name__}")
    if hasattr(fun, marker):
        return fun
    try:
        return cached(fun)
    except TypeError:  # an unhashable callable: a new wrapper each time
        return wrap(fun)


def choose_math(loss: Callable, platform: str) -> Callable:
    """The loss fitjax's programs evaluate on ``platform`` (``jax.default_backend()``).

    On ``"cpu"``: ``polynomial_math(loss)``, unless ``loss`` is already wrapped by it or
    marked by :func:`platform_math`. Elsewhere ``loss`` itself (a GPU evaluates its own
    functions in parallel; the fused kernel has its own choice). Only float32
    ``sin``, ``cos`` and ``exp`` are replaced, so a float64 loss is computed as written.

    Example:
      >>> import fitjax
      >>> from fitjax.numerics.fastmath import choose_math
      >>> loss = fitjax.least_squares(fitjax.line)
      >>> choose_math(loss, "cpu") is fitjax.polynomial_math(loss), choose_math(loss, "gpu") is loss
      (True, True)
      >>> choose_math(fitjax.platform_math(loss), "cpu") is fitjax.platform_math(loss)
      True
    """
    if platform != "cpu" or hasattr(loss, "__fitjax_platform_math__"):
        return loss
    return polynomial_math(loss)
