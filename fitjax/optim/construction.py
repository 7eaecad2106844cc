r"""Optimizers and schedules compared by how they were built, not by which object they are.

An optax transformation is a pair of closures, and a schedule is one: two calls of
``optax.adam(0.01)`` give two objects that compute the same thing but compare unequal,
so a program keyed on the object itself (as ``jax.jit`` keys a static argument) is
compiled again for each. :func:`construction_key` gives such objects a key that is
equal only when they were built by the same code from the same values, as they are at
the time the key is taken:

* a Python function: its code, its module (the globals dict), its defaults, the keys
  of the values its closure holds, and the module-level values its code names (a
  function defined there by identity, others by their keys: so a helper redefined in a
  notebook, or a global number changed, gives another key);
* a ``functools.partial``, a bound method and a frozen dataclass: their type and the keys
  of their parts;
* tuples (NamedTuples such as ``optax.GradientTransformation`` included), lists, dicts
  and sets: their type and the keys of their items, as they are now;
* ``None``, booleans, ints, floats, complex numbers, strings and bytes: their type and
  value, a float by its bits (``0.0`` and ``-0.0`` differ, ``1`` is not ``1.0``, a
  ``np.float64`` is not a ``float``); a NumPy scalar, dtype or small array by its type,
  dtype and bytes;
* modules, classes, builtins and JAX arrays (immutable) by identity.

Anything else (an instance of a user's class, a large NumPy array, a cycle) may
change without its identity changing, so the object it is in gets no shared key: its key
is the object itself, by identity, as before. Not looked into: attributes of modules and
classes (a class attribute changed after a program was traced is not seen, as with
``jax.jit``).

So ``optax.adam(0.01)`` built twice gives equal keys, ``optax.adam(0.02)`` another.

Example:
  >>> import optax
  >>> from fitjax.optim.construction import construction_key
  >>> construction_key(optax.adam(0.01)) == construction_key(optax.adam(0.01))
  True
  >>> construction_key(optax.adam(0.01)) == construction_key(optax.adam(0.02))
  False
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any

import jax
import numpy as np

__all__ = ["construction_key"]

_EXACT = (type(None), bool, int, str, bytes)
_BY_IDENTITY = (types.ModuleType, type, types.BuiltinFunctionType, jax.Array)
_MAX_DEPTH = 64
_MAX_ARRAY_BYTES = 1 << 16
_MAX_KEY_SIZE = 100_000


class _Identity:
    """An object compared by identity."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __repr__(self) -> str:
        return f"_Identity({type(self.obj).__name__} at {id(self.obj):#x})"


class _NoKey(Exception):
    """Raised inside :func:`construction_key` at a part that may change in place."""


def construction_key(obj: Any) -> Any:
    """A hashable key of ``obj``, equal for objects built the same way (module doc);
    ``obj`` itself by identity when some part of it may change in place. Never raises."""
    try:
        key = _Keys().key(obj, frozenset(), 0)
        hash(key)
        return key
    except Exception:  # _NoKey, or any surprise from an object's own methods
        return _Identity(obj)


class _Keys:
    """One key's walk: each object visited once (shared parts are not walked again)."""

    def __init__(self) -> None:
        self.done: dict[int, tuple[Any, int]] = {}  # id -> (key, its size written out)
        self.size = 0  # the size of the key so far, shared parts counted each time

    def count(self, n: int) -> None:
        self.size += n
        if self.size > _MAX_KEY_SIZE:  # hashing and comparing it would cost too much
            raise _NoKey

    def key(self, obj: Any, seen: frozenset[int], depth: int) -> Any:
        self.count(1)
        if type(obj) in _EXACT:
            return (type(obj), obj)
        if type(obj) is float:
            return (float, obj.hex())
        if type(obj) is complex:
            return (complex, obj.real.hex(), obj.imag.hex())
        if isinstance(obj, _BY_IDENTITY):
            return _Identity(obj)
        if id(obj) in self.done:
            key, size = self.done[id(obj)]
            self.count(size - 1)
            return key
        if id(obj) in seen or depth > _MAX_DEPTH:  # a cycle, or too deep
            raise _NoKey
        start = self.size
        key = self._compound(obj, seen | {id(obj)}, depth + 1)
        self.done[id(obj)] = (key, self.size - start + 1)
        return key

    def _compound(self, obj: Any, seen: frozenset[int], depth: int) -> Any:
        def parts(values: Any) -> tuple:
            return tuple(self.key(v, seen, depth) for v in values)

        if isinstance(obj, np.generic):
            return (type(obj), obj.dtype.str, obj.tobytes())
        if isinstance(obj, np.dtype):
            return (np.dtype, obj.str, obj.name)
        if isinstance(obj, np.ndarray) and obj.nbytes <= _MAX_ARRAY_BYTES and obj.dtype != object:
            return (np.ndarray, obj.dtype.str, obj.shape, obj.tobytes())
        if isinstance(obj, types.FunctionType):
            return self._function(obj, seen, depth)
        if type(obj) in (tuple, list) or (isinstance(obj, tuple) and hasattr(obj, "_fields")):
            return (type(obj), parts(obj))
        if type(obj) is dict:
            return (dict, parts(obj.keys()), parts(obj.values()))
        if type(obj) in (set, frozenset):
            return (type(obj), frozenset(parts(obj)))
        if isinstance(obj, types.MethodType):
            return (
                types.MethodType,
                self.key(obj.__func__, seen, depth),
                self.key(obj.__self__, seen, depth),
            )
        if isinstance(obj, functools.partial):
            return (
                type(obj),
                self.key(obj.func, seen, depth),
                parts(obj.args),
                self.key(obj.keywords, seen, depth),
            )
        if dataclasses.is_dataclass(obj) and type(obj).__dataclass_params__.frozen:  # type: ignore[union-attr]
            fields = dataclasses.fields(obj)
            return (type(obj), tuple(f.name for f in fields), parts(getattr(obj, f.name) for f in fields))
        raise _NoKey

    def _function(self, fun: types.FunctionType, seen: frozenset[int], depth: int) -> tuple:
        cells = []
        for cell in fun.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # a cell not yet filled
                raise _NoKey from None
            cells.append(self.key(value, seen, depth))
        module = fun.__globals__
        named = sorted(n for n in _names(fun.__code__) if n in module)
        return (
            types.FunctionType,
            fun.__code__,
            _Identity(module),
            self.key(fun.__defaults__, seen, depth),
            self.key(fun.__kwdefaults__, seen, depth),
            tuple(cells),
            tuple((n, self._global(module[n], seen, depth)) for n in named),
        )

    def _global(self, value: Any, seen: frozenset[int], depth: int) -> Any:
        """A module-level value a function names: a function defined there by identity (a
        redefinition is a new object), anything else by its key."""
        if isinstance(value, types.FunctionType):
            return _Identity(value)
        return self.key(value, seen, depth)


@functools.lru_cache(maxsize=1024)
def _names(code: types.CodeType) -> frozenset[str]:
    """The names ``code`` (and the code nested in it) may look up in its module."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return frozenset(names)
