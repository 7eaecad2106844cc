r"""Optimizers and schedules compared by how they were built, not by which object they are.

An optax transformation is a pair of closures, and a schedule is one: two calls of
``optax.adam(0.01)`` give two objects that compute the same thing but compare unequal,
so a program keyed on the object itself (as ``jax.jit`` keys a static argument) is
compiled again for each. :func:`construction_key` gives such objects a key that is
equal when they were built by the same code from equal values:

* a Python function: its code, its module's globals (the dict itself), its defaults and
  the keys of the values its closure holds;
* a ``functools.partial``: the key of its function and of its arguments;
* tuples (NamedTuples such as ``optax.GradientTransformation`` included), lists and dicts:
  their type and the keys of their items at the time (a list changed afterwards does not
  change a key already taken, as it does not change a program already traced);
* ``None``, booleans, numbers, strings and bytes: their type and value (a float by its bits,
  so ``0.0`` and ``-0.0`` differ, and ``1`` is not ``1.0``); a NumPy scalar by its type and bits;
* any other hashable object: itself, under its own ``==``; anything else, such as an
  array a closure holds: the object itself, by identity.

So ``optax.adam(0.01)`` built twice gives equal keys, ``optax.adam(0.02)`` another,
and ``optax.adam(jnp.asarray(0.01))`` built twice two different ones (an array is
compared by identity). Equal keys mean the same code over the same values, which is
what a compiled program is specialised on: like ``jax.jit``, a program does not see a
global changed after it was traced.

Example:
  >>> import optax
  >>> from fitjax.optim.construction import construction_key
  >>> construction_key(optax.adam(0.01)) == construction_key(optax.adam(0.01))
  True
  >>> construction_key(optax.adam(0.01)) == construction_key(optax.adam(0.02))
  False
"""

from __future__ import annotations

import functools
import types
from typing import Any

import numpy as np

__all__ = ["construction_key"]

_PLAIN = (type(None), bool, int, str, bytes, complex)
_MAX_DEPTH = 64


class _Identity:
    """An object compared by identity: the key of what has no key of its own."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __repr__(self) -> str:
        return f"_Identity({type(self.obj).__name__} at {id(self.obj):#x})"


def construction_key(obj: Any) -> Any:
    """A hashable key of ``obj`` that is equal for objects built the same way (module doc)."""
    return _key(obj, frozenset(), 0)


def _key(obj: Any, seen: frozenset[int], depth: int) -> Any:
    if isinstance(obj, float):
        return (float, obj.hex())
    if isinstance(obj, _PLAIN):
        return (type(obj), obj)
    if isinstance(obj, np.generic):  # a NumPy scalar: its type and bits
        return (type(obj), obj.tobytes())
    if id(obj) in seen or depth > _MAX_DEPTH:  # a cycle, or too deep: by identity
        return _Identity(obj)
    inner = seen | {id(obj)}
    if isinstance(obj, types.FunctionType):
        return _function_key(obj, inner, depth + 1)
    if isinstance(obj, functools.partial):
        return (
            functools.partial,
            _key(obj.func, inner, depth + 1),
            _key(obj.args, inner, depth + 1),
            _key(obj.keywords, inner, depth + 1),
        )
    if type(obj) in (tuple, list) or (isinstance(obj, tuple) and hasattr(obj, "_fields")):
        return (type(obj), tuple(_key(v, inner, depth + 1) for v in obj))
    if type(obj) is dict:
        return (dict, tuple((_key(k, inner, depth + 1), _key(v, inner, depth + 1)) for k, v in obj.items()))
    try:
        hash(obj)
    except TypeError:
        return _Identity(obj)
    return (type(obj), obj)


def _function_key(fun: types.FunctionType, seen: frozenset[int], depth: int) -> tuple:
    cells = []
    for cell in fun.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # a cell not yet filled
            cells.append(_Identity(cell))
            continue
        cells.append(_key(value, seen, depth))
    return (
        types.FunctionType,
        fun.__code__,
        _Identity(fun.__globals__),
        _key(fun.__defaults__, seen, depth),
        _key(fun.__kwdefaults__, seen, depth),
        tuple(cells),
    )
