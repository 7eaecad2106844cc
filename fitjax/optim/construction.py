r"""Optimizers and schedules compared by how they were built, not by which object they are.

An optax transformation is a pair of closures, and a schedule is one: two calls of
``optax.adam(0.01)`` give two objects that compute the same thing but compare unequal,
so a program keyed on the object itself (as ``jax.jit`` keys a static argument) is
compiled again for each. :func:`construction_key` gives such objects a key that is
equal only when they were built by the same code from the same values, as they are at
the time the key is taken:

* a Python function: its code, its module (the globals dict), its defaults, its
  attributes, the keys of the values its closure holds, and the keys of the
  module-level values its code names, functions defined there walked the same way (so
  a helper redefined in a notebook, or a global number changed, gives another key);
* a ``functools.partial``, a bound method and a frozen dataclass: their type and the keys
  of their parts and attributes;
* tuples (NamedTuples such as ``optax.GradientTransformation`` included), lists, dicts
  and sets: their type and the keys of their items in order, as they are now;
* ``None``, booleans, ints, floats, complex numbers, strings and bytes: their type and
  value, a float by its bits (``0.0`` and ``-0.0`` differ, ``1`` is not ``1.0``, a
  ``np.float64`` is not a ``float``); a NumPy scalar, dtype or small array by its type,
  dtype and bytes;
* modules, classes, builtins and JAX arrays (immutable) by identity, and a part met
  again inside itself (a recursive function) by identity where it is met again.

Anything else may change without its identity changing (an instance of a user's class,
a large, structured or subclassed NumPy array, a function that reads ``globals()``), so
the object it is in gets no shared key: its key is the object itself, by identity, as
before. Not looked into: attributes of modules and classes (a class attribute changed
after a program was traced is not seen, as with ``jax.jit``).

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
import struct
import types
from typing import Any

import jax
import numpy as np

__all__ = ["construction_key", "shared_key"]

_BY_IDENTITY = (types.ModuleType, type, types.BuiltinFunctionType, jax.Array)
_DYNAMIC_NAMES = frozenset({"globals", "vars", "eval", "exec", "__import__", "locals"})
_MAX_DEPTH = 64
_MAX_ARRAY_BYTES = 1 << 16
_MAX_KEY_SIZE = 100_000


class _Identity:
    """An object compared by identity."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return type(other) is _Identity and other.obj is self.obj

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
        key = _Keys().key(obj, 0)
        hash(key)
        return key
    except Exception:  # _NoKey, or any surprise from an object's own methods
        return _Identity(obj)


def shared_key(obj: Any) -> Any:
    """:func:`construction_key` of ``obj`` where objects built the same way share it;
    None where ``obj`` is keyed by identity (some part of it may change in place)."""
    key = construction_key(obj)
    return None if isinstance(key, _Identity) else key


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)  # every bit: the sign of a zero, a NaN's sign and payload


class _Keys:
    """One key's walk: each object visited once (shared parts are not walked again)."""

    def __init__(self) -> None:
        # id -> (the object, kept alive so that its id is not reused in this walk; its key;
        # the key's size written out)
        self.done: dict[int, tuple[Any, Any, int]] = {}
        self.path: set[int] = set()  # the objects being keyed, from the root to here
        self.size = 0  # the size of the key so far, shared parts counted each time

    def count(self, n: int) -> None:
        self.size += n
        if self.size > _MAX_KEY_SIZE:  # hashing and comparing it would cost too much
            raise _NoKey

    def key(self, obj: Any, depth: int) -> Any:
        self.count(1)
        kind = type(obj)
        if obj is None or kind is bool or kind is int or kind is str or kind is bytes:  # by identity
            return (_Identity(kind), obj)
        if kind is float:
            return (_Identity(float), _bits(obj))
        if kind is complex:
            return (_Identity(complex), _bits(obj.real), _bits(obj.imag))
        if isinstance(obj, _BY_IDENTITY):
            return _Identity(obj)
        at = id(obj)
        if at in self.done:
            _, key, size = self.done[at]
            self.count(size - 1)
            return key
        if at in self.path:  # a cycle: the walk above keys its parts
            return _Identity(obj)
        if depth > _MAX_DEPTH:
            raise _NoKey
        start = self.size
        self.path.add(at)
        try:
            key = (_Identity(kind), self._parts(obj, depth + 1))
        finally:
            self.path.discard(at)
        self.done[at] = (obj, key, self.size - start + 1)
        return key

    def _items(self, values: Any, depth: int) -> tuple:
        return tuple([self.key(v, depth) for v in values])

    def _attributes(self, obj: Any, depth: int) -> Any:
        """What an instance holds beyond its fields."""
        return self.key(dict(getattr(obj, "__dict__", {})), depth)

    def _parts(self, obj: Any, depth: int) -> Any:
        kind = type(obj)
        if kind is types.FunctionType:
            return self._function(obj, depth)
        if kind is tuple or kind is list:
            return (self._items(obj, depth), None)
        if kind is dict:
            return (self._items(obj.keys(), depth), self._items(obj.values(), depth))
        if isinstance(obj, (np.number, np.bool_)):
            return (obj.dtype.str, obj.tobytes())
        if kind is np.dtype and obj.fields is None and not obj.hasobject:
            return (obj.str, obj.name)
        if kind is np.ndarray and obj.dtype.fields is None and not obj.dtype.hasobject:
            if obj.nbytes > _MAX_ARRAY_BYTES:
                raise _NoKey
            return (obj.dtype.str, obj.dtype.name, obj.shape, obj.tobytes())
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return (self._items(obj, depth), self._attributes(obj, depth))
        if kind in (set, frozenset):  # in iteration order, which a function may depend on
            return self._items(obj, depth)
        if isinstance(obj, functools.partial):
            return (
                self.key(obj.func, depth),
                self._items(obj.args, depth),
                self.key(obj.keywords, depth),
                self._attributes(obj, depth),
            )
        if kind is types.MethodType:
            return (self.key(obj.__func__, depth), self.key(obj.__self__, depth))
        if dataclasses.is_dataclass(obj) and kind.__dataclass_params__.frozen:
            if not hasattr(obj, "__dict__"):
                raise _NoKey  # slots: fields only, but a field may be a descriptor
            return self._attributes(obj, depth)
        raise _NoKey

    def _function(self, fun: types.FunctionType, depth: int) -> tuple:
        names = _names(fun.__code__)
        if names & _DYNAMIC_NAMES:  # it may read any global, or its own frame
            raise _NoKey
        cells = []
        for cell in fun.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # a cell not yet filled
                raise _NoKey from None
            cells.append(self.key(value, depth))
        module = fun.__globals__
        named = sorted(n for n in names if n in module)
        return (
            fun.__code__,
            _Identity(module),
            self.key(fun.__defaults__, depth),
            self.key(fun.__kwdefaults__, depth),
            tuple(cells),
            tuple([(n, self.key(module[n], depth)) for n in named]),
            self.key(dict(fun.__dict__), depth),
        )


@functools.lru_cache(maxsize=1024)
def _names(code: types.CodeType) -> frozenset[str]:
    """The names ``code`` (and the code nested in it) may look up in its module."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return frozenset(names)
