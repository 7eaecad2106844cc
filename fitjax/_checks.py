"""Argument checks run in Python when an optimizer or a run is built.

Every check names the argument, the offending value and what to change, so that a
bad setting is refused before anything is traced or compiled. Values may be
scalars or arrays of candidate values (for sweeps); an array is accepted only if
every element passes.
"""

from __future__ import annotations

import argparse
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_NUMBERS = "a number or an array of numbers"


def _is_traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def _as_float_array(name: str, value: Any, what: str = _NUMBERS) -> np.ndarray | None:
    if _is_traced(value):
        return None  # cannot inspect a traced value; checked by whoever built it
    if value is None or isinstance(value, (str, bytes, bool, np.bool_)):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {what}, got {value!r}") from None
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got {value!r}")
    return arr


def _show(arr: np.ndarray, bad: np.ndarray) -> str:
    """The first offending value as given (to 10 significant digits) and, in an array,
    which of its values it is."""
    if arr.ndim == 0:
        return f"{arr.item():.10g}"
    index = int(np.flatnonzero(np.ravel(bad))[0])
    return f"{np.ravel(arr)[index]:.10g} (value {index + 1} of {arr.size})"


def positive(name: str, value: Any) -> None:
    """``value > 0`` and finite, e.g. a learning rate."""
    arr = _as_float_array(name, value)
    if arr is None:
        return
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        raise ValueError(f"{name} must be > 0 and finite, got {_show(arr, bad)}")


def non_negative(name: str, value: Any) -> None:
    """``value >= 0`` and finite, e.g. the ε that guards a division."""
    arr = _as_float_array(name, value)
    if arr is None:
        return
    bad = ~(np.isfinite(arr) & (arr >= 0))
    if bad.any():
        raise ValueError(f"{name} must be >= 0 and finite, got {_show(arr, bad)}")


def unit_interval(name: str, value: Any) -> None:
    """``0 <= value < 1``, e.g. a momentum or moving-average coefficient."""
    arr = _as_float_array(name, value)
    if arr is None:
        return
    bad = ~((arr >= 0) & (arr < 1))
    if bad.any():
        raise ValueError(f"{name} must be in [0, 1), got {_show(arr, bad)}")


def interval(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> None:
    """``value`` between ``low`` and ``high``, each end open or closed, e.g. a factor in (0, 1)."""
    arr = _as_float_array(name, value)
    if arr is None:
        return
    above = arr > low if low_open else arr >= low
    below = arr < high if high_open else arr <= high
    bad = ~(above & below)
    if bad.any():
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {span}, got {_show(arr, bad)}")


def non_negative_int(name: str, value: Any) -> int:
    """A Python integer ``>= 0``, e.g. a number of steps to wait."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def integer_at_least(name: str, value: Any, low: int) -> None:
    """Whole numbers ``>= low`` (a scalar or an array of candidates), e.g. an iteration cap."""
    arr = _as_float_array(name, value, f"an integer >= {low}")
    if arr is None:
        return
    if np.asarray(value).dtype == bool:
        raise TypeError(f"{name} must be an integer >= {low}, got {value!r}")
    bad = ~(np.isfinite(arr) & (arr == np.round(arr)) & (arr >= low))
    if bad.any():
        raise ValueError(f"{name} must be an integer >= {low}, got {_show(arr, bad)}")


def positive_int(name: str, value: Any, *, upper: int | None = None, upper_name: str = "") -> int:
    """A Python integer ``>= 1`` (and ``<= upper`` when given)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if upper is not None and value > upper:
        raise ValueError(f"{name} must be <= {upper_name} ({upper}), got {value}")
    return int(value)


def flag(name: str, value: Any) -> bool:
    """``value`` as a bool: only True or False (``1`` or ``"no"`` could mean something else)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def schedule(name: str, fn: Callable[[Any], Any], check: Callable[[str, Any], None]) -> None:
    """A schedule ``step -> value`` returns a scalar, and its value at step 0 passes ``check``.

    Later steps are checked by :func:`fitjax.fit`, which knows how many steps there are.
    """
    try:
        out = jax.eval_shape(fn, jax.ShapeDtypeStruct((), np.int32))
    except Exception as err:  # noqa: BLE001 - reported with the argument's name
        raise TypeError(f"{name} must be a function step -> scalar; calling it failed: {err}") from err
    if getattr(out, "shape", None) != ():
        raise ValueError(f"{name} must return a scalar, got shape {getattr(out, 'shape', out)}")
    check(f"{name}(0)", fn(jnp.zeros((), jnp.int32)))  # the step as optax passes it: an int32 array


# ----------------------------------------------------------------------------- arrays, keys, dtypes


def leaf_name(name: str, path: Any) -> str:
    """``name`` followed by a leaf's key path, e.g. ``params0['w'][0]``."""
    return name + jax.tree_util.keystr(tuple(path))


def as_array(name: str, value: Any) -> Any:
    """``value`` as an array (kept on its device), or a TypeError naming it."""
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        return value
    try:
        return jnp.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers, got {value!r}") from None


HOST_CHECK_MAX = 1 << 16  # arrays up to this size are tested on the host from any device


def on_host(arr: Any) -> bool:
    """Whether ``np.asarray(arr)`` is cheap: a NumPy array, a small array, or one on the CPU."""
    if isinstance(arr, np.ndarray) or arr.size <= HOST_CHECK_MAX:
        return True
    devices = getattr(getattr(arr, "sharding", None), "device_set", ())
    return bool(devices) and all(d.platform == "cpu" for d in devices)


_KNOWN_FINITE: dict[int, weakref.ref] = {}
"""``id`` -> weak reference of jax arrays already found finite. A jax array never changes
its values, so a fit called again with the same array does not test it again."""


def _all_finite(arr: Any) -> bool:
    cacheable = isinstance(arr, jax.Array) and not isinstance(arr, jax.core.Tracer)
    if cacheable:
        known = _KNOWN_FINITE.get(id(arr))
        if known is not None and known() is arr:
            return True
    if on_host(arr):
        ok = bool(np.isfinite(np.asarray(arr)).all())
    else:
        ok = bool(jnp.all(jnp.isfinite(arr)))
    if ok and cacheable:
        key = id(arr)

        def forget(_: weakref.ref, key: int = key) -> None:
            _KNOWN_FINITE.pop(key, None)

        _KNOWN_FINITE[key] = weakref.ref(arr, forget)
    return ok


def _run_dtype(dtype: Any) -> np.dtype:
    """The dtype JAX computes a host array of ``dtype`` in (float64 is float32 unless x64 is on)."""
    return np.dtype(jax.dtypes.canonicalize_dtype(dtype))


def finite(name: str, tree: Any, fix: str, *, axis: str | None = None, offset: int = 0) -> None:
    """Every floating-point element of ``tree`` is finite in the dtype the run uses; else
    name the first that is not.

    A small array, or one in host memory, is tested there (a device reduction and its
    read-back cost more than the test); a large one on an accelerator is tested where it
    lives. A float64 host array that the run will hold in float32 (float64 not enabled)
    is tested in float32 too: 1e39 is finite as given and inf in the run. Only a failing
    leaf is copied to the host to find the offending entry. ``axis`` names the leading
    axis in the message (``"run"``, ``"example"``); ``offset`` is added to the leading
    index, for rows ``offset, offset + 1, ...`` of a larger array checked a slice at a time.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        arr = as_array(leaf_name(name, path), leaf)
        if not jnp.issubdtype(arr.dtype, jnp.inexact):
            continue
        used = _run_dtype(arr.dtype)
        narrowed = used != np.dtype(arr.dtype)
        if _all_finite(arr) and not (narrowed and not _finite_as(arr, used)):
            continue
        host = np.asarray(arr)
        with np.errstate(over="ignore"):
            seen = host.astype(used) if narrowed else host
        bad = ~np.isfinite(seen.astype(np.complex128 if np.iscomplexobj(seen) else np.float64))
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        shown = (index[0] + offset, *index[1:]) if index else index
        where = leaf_name(name, path) + (f"[{', '.join(map(str, shown))}]" if shown else "")
        lead = f" ({axis} {shown[0]})" if axis and shown else ""
        value = f"{host[index]}"
        if narrowed and np.isfinite(host[index]):
            value += (
                f", which is {seen[index]} in {used.name}, the dtype the run computes in "
                "(float64 needs jax.config.update('jax_enable_x64', True))"
            )
        raise ValueError(
            f"{where} is {value}{lead}, one of {int(bad.sum())} non-finite value(s) in "
            f"{leaf_name(name, path)}; {fix}"
        )


def _finite_as(arr: Any, dtype: np.dtype) -> bool:
    host = np.asarray(arr)
    with np.errstate(over="ignore"):
        return bool(np.isfinite(host.astype(dtype)).all())


def prng_key(name: str, value: Any) -> jax.Array:
    """A typed ``jax.random.key`` (a legacy ``PRNGKey``, uint32 of shape (2,), is wrapped)."""
    if isinstance(value, jax.Array):
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key) and value.shape == ():
            return value
        if value.dtype == np.uint32 and value.shape == (2,):
            return jax.random.wrap_key_data(value)
    raise TypeError(f"{name} must be one jax.random.key(seed) (or a PRNGKey), got {value!r}")


def float_dtypes(tree: Any) -> list[np.dtype]:
    """The distinct floating-point dtypes of ``tree``'s leaves."""
    found = {np.dtype(x.dtype) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}
    return sorted(found, key=str)


def rounding(
    name: str, value: Any, dtype: Any, check: Callable[[str, Any], None], *, lost_at_zero: bool
) -> str | None:
    """How ``value`` changes meaning when held in ``dtype``, or None if it does not.

    A value that rounds out of its allowed range (Adam's γ = 0.999 is 1 in bfloat16) or
    overflows, or a nonzero value that ``lost_at_zero`` forbids to vanish and that
    rounds below the dtype's smallest normal number (ε = 1e-8 in float16, which XLA
    flushes to 0).
    """
    arr = _as_float_array(name, value)
    if arr is None:
        return None
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        held = arr.astype(dtype).astype(np.float64)
    tiny = float(jnp.finfo(dtype).tiny)
    lost = (arr != 0) & (np.abs(held) < tiny)
    if lost_at_zero and lost.any():
        return (
            f"{name} = {_show(arr, lost)} is below the smallest normal {dtype.name} ({tiny:g}) and acts as 0"
        )
    try:
        check(name, held)
    except ValueError as err:
        bad = held != arr
        return f"{name} = {_show(arr, bad)} rounds to {_show(held, bad)} in {dtype.name}, where {err}"
    return None


def same_tree(name: str, tree: Any, expected: Any, expected_name: str, fix: str) -> None:
    """``tree`` has the pytree structure and leaf shapes of ``expected``.

    Only structure and shapes are compared, so this also runs while tracing (under
    ``jit``), before anything is compiled.
    """
    got, want = jax.tree.structure(tree), jax.tree.structure(expected)
    # jaxlib ships no type stubs for PyTreeDef, so mypy cannot see its __ne__.
    if got != want:  # type: ignore[operator]
        raise ValueError(f"{name} has structure {got}, but {expected_name} need {want}; {fix}")
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    for (path, a), b in zip(leaves, jax.tree.leaves(expected), strict=True):
        shape, needed = np.shape(a), np.shape(b)
        if shape != needed:
            where = leaf_name(name, path)
            raise ValueError(f"{where} has shape {shape}, but {expected_name} need {needed}; {fix}")


def seed_arg(text: str) -> int:
    """A ``--seed`` from the command line: a whole number ``jax.random.key`` takes (64 bits)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not -(2**63) <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected a whole number from -2**63 to 2**63 - 1, got {value}")
    return value


def positive_int_arg(text: str) -> int:
    """A command-line count (``--steps``, ``--starts``): a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value
