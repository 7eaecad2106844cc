"""Argument checks run in Python when an optimizer or a run is built.

Every check names the argument, the offending value and what to change, so that a
bad setting is refused before anything is traced or compiled. Values may be
scalars or arrays of candidate values (for sweeps); an array is accepted only if
every element passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def _is_traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def _as_float_array(name: str, value: Any) -> np.ndarray | None:
    if _is_traced(value):
        return None  # cannot inspect a traced value; checked by whoever built it
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got {value!r}")
    return arr


def _show(arr: np.ndarray, bad: np.ndarray) -> str:
    return f"{arr.item():g}" if arr.ndim == 0 else f"{arr[bad].ravel()[0]:g} (among {arr.size} values)"


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


def interval(name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> None:
    """``value`` in the interval from ``low`` to ``high``, each end open or closed, e.g. a factor in (0, 1)."""
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
    arr = _as_float_array(name, value)
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


def schedule(name: str, fn: Callable[[Any], Any]) -> None:
    """A schedule ``step -> value`` must return a finite positive scalar at step 0."""
    try:
        out = jax.eval_shape(fn, jax.ShapeDtypeStruct((), np.int32))
    except Exception as err:  # noqa: BLE001 - reported with the argument's name
        raise TypeError(f"{name} must be a function step -> scalar; calling it failed: {err}") from err
    if getattr(out, "shape", None) != ():
        raise ValueError(f"{name} must return a scalar, got shape {getattr(out, 'shape', out)}")
    positive(f"{name}(0)", fn(0))


# Hyperparameters are checked by name, so the same rule applies when an optimizer
# is built and when a sweep hands it a grid of values.
_BY_NAME: dict[str, Callable[[str, Any], None]] = {
    "learning_rate": positive,
    "beta": unit_interval,
    "gamma": unit_interval,
    "momentum": unit_interval,
    "eps": non_negative,
    # line searches (fitjax.linesearch)
    "max_dist": positive,
    "tol": positive,
    "max_iter": lambda name, value: integer_at_least(name, value, 1),
    "max_backtracking_steps": lambda name, value: integer_at_least(name, value, 0),
    "slope_rtol": unit_interval,
    "decrease_factor": lambda name, value: interval(name, value, 0, 1, low_open=True, high_open=True),
    "increase_factor": lambda name, value: interval(name, value, 1, np.inf),
    "max_learning_rate": positive,
}


def hyperparam(name: str, value: Any) -> None:
    """Check one hyperparameter value (or array of values) by its name."""
    check = _BY_NAME.get(name)
    if check is not None:
        check(name, value)
