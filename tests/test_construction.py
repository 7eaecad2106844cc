"""Keys of optimizers and schedules by how they were built
(:func:`fitjax.optim.construction.construction_key`): equal exactly when the code and the
values it closes over are equal, and never for what cannot be compared by value."""

from __future__ import annotations

import functools
import types

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fitjax.optim.construction import construction_key as key


@pytest.mark.parametrize(
    "make",
    [
        lambda: optax.adam(0.01),
        lambda: optax.adamw(0.01, weight_decay=1e-3),
        lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.01)),
        lambda: optax.inject_hyperparams(optax.adam)(learning_rate=0.01),
        lambda: optax.sgd(0.1, momentum=0.9, nesterov=True),
        lambda: optax.cosine_decay_schedule(0.05, 100),
        lambda: optax.lbfgs(),
    ],
)
def test_built_twice_gives_equal_keys_and_hashes(make):
    a, b = make(), make()
    assert a is not b and key(a) == key(b) and hash(key(a)) == hash(key(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (lambda: optax.adam(0.01), lambda: optax.adam(0.02)),
        (lambda: optax.adam(1), lambda: optax.adam(1.0)),  # an int is not a float
        (lambda: optax.sgd(0.0), lambda: optax.sgd(-0.0)),  # floats by their bits
        (lambda: optax.sgd(np.float32(0.1)), lambda: optax.sgd(np.float64(0.1))),
        (lambda: optax.sgd(0.1, momentum=0.9), lambda: optax.sgd(0.1, momentum=0.9, nesterov=True)),
        (lambda: optax.adam(0.01), lambda: optax.adamw(0.01)),
        (lambda: optax.sgd(jnp.asarray(0.1)), lambda: optax.sgd(jnp.asarray(0.1))),  # arrays: by identity
    ],
)
def test_different_constructions_give_different_keys(a, b):
    assert key(a()) != key(b())


def _identity(k) -> bool:
    return type(k).__name__ == "_Identity"


def test_same_code_over_other_globals_differs_and_a_changed_global_gives_another_key():
    def make(scale):
        return lambda x: x * scale

    f = make(2.0)
    g = types.FunctionType(f.__code__, {}, f.__name__, f.__defaults__, f.__closure__)
    assert key(f) == key(make(2.0)) and key(f) != key(g)  # another module's globals
    # a notebook: a helper redefined, or a global number changed, then the optimizer rebuilt
    module: dict = {}
    exec("import optax\ndef helper(c): return 0.1\nx = 1.0\n", module)
    exec("def make(): return optax.sgd(lambda c: helper(c) * x)", module)
    before = key(module["make"]())
    assert before == key(module["make"]())
    exec("def helper(c): return 0.2", module)
    assert key(module["make"]()) != before
    exec("def helper(c): return 0.1", module)
    module["x"] = 2.0
    assert key(module["make"]()) != before


def test_what_may_change_in_place_is_never_shared():
    def holding(obj):
        return lambda: obj

    class Config:
        lr = 0.1

    config = Config()
    before = key(holding(config))
    assert _identity(before) and before != key(holding(config))  # an instance: no shared key
    values = np.array([0.1, 0.2])
    before = key(holding(values))
    values[0] = 0.3  # a small NumPy array by its bytes, as it is when the key is taken
    assert key(holding(values)) != before and key(holding(values)) == key(holding(values.copy()))
    held: list = [1.0]
    before = key(holding(held))
    assert before == key(holding([1.0]))  # lists and dicts by their items at the time
    held.append(2.0)
    assert key(holding(held)) != before
    assert key(holding({"a": 1.0})) == key(holding({"a": 1.0})) != key(holding({"a": 2.0}))


def test_values_equal_under_eq_but_not_alike_differ():
    assert key(np.float64(0.1)) != key(0.1)  # a float subclass keeps its type
    assert key(frozenset({1})) != key(frozenset({1.0}))
    assert key(complex(0, 0.0)) != key(complex(0, -0.0))
    assert key(np.float32(0.0)) != key(np.float32(-0.0))

    class Negated(functools.partial):
        def __call__(self, *args, **kwargs):
            return -super().__call__(*args, **kwargs)

    def f(x):
        return x

    assert key(Negated(f)) != key(functools.partial(f))
    assert key(functools.partial(f, 1.0)) == key(functools.partial(f, 1.0)) != key(functools.partial(f, 1))


def test_a_key_never_raises_and_stays_small():
    class Unhashable:
        def __hash__(self):
            raise RuntimeError("no")

    class ArrayEq:
        def __eq__(self, other):
            return np.array([True, False])

        __hash__ = object.__hash__

    unhashable = Unhashable()
    for obj in (unhashable, ArrayEq(), lambda: unhashable):
        k = key(obj)
        assert _identity(k) and k == k and hash(k) == id(obj)
    shared = optax.sgd(0.1)
    for _ in range(20):  # a chain of itself: 2^20 parts written out
        shared = optax.chain(shared, shared)
    assert _identity(key(shared))


def test_a_recursive_closure_has_no_shared_key():
    def outer():
        def again(n):
            return n if n < 1 else again(n - 1)

        return again

    a = outer()
    assert key(a) == key(a) and key(a) != key(outer())


def test_what_a_module_level_helper_reads_counts_too():
    module: dict = {}
    exec("BASE = 0.1\ndef base(s): return BASE\ndef make(): return lambda s: base(s) * 2", module)
    before = key(module["make"]())
    module["BASE"] = 0.2
    assert key(module["make"]()) != before
    exec("def make2(): return lambda s: globals()['BASE'] * 2", module)  # names read at run time
    assert _identity(key(module["make2"]()))


def test_no_shared_key_for_what_bytes_or_fields_do_not_describe():
    record = np.zeros(1, [("a", "f8"), ("b", "f8")])
    assert _identity(key(record)) and _identity(key(record.dtype))  # structured: by identity
    assert _identity(key(np.array([None])))  # objects inside

    class Matrix(np.ndarray):  # a subclass may change what * means
        pass

    assert _identity(key(np.eye(2).view(Matrix)))
    assert key(np.eye(2)) == key(np.eye(2)) != key(np.eye(2).astype(np.float32))
    assert key({1, 9}) == key({1, 9})
    nan = float("nan")
    assert key(nan) != key(-nan)

    class Scaled(functools.partial):
        def __call__(self, *args):
            return super().__call__(*args) * self.scale

    def f(x):
        return x

    a, b = Scaled(f), Scaled(f)
    a.scale, b.scale = 0.1, 0.2
    assert key(a) != key(b)

    def helper(s):
        return helper.scale

    helper.scale = 0.1
    before = key(lambda s: helper(s))
    helper.scale = 0.2
    assert key(lambda s: helper(s)) != before


def test_a_class_that_overrides_equality_is_compared_by_identity():
    class Meta(type):
        def __eq__(cls, other):
            raise RuntimeError("no")

        __hash__ = type.__hash__

    class Odd(metaclass=Meta):
        pass

    assert _identity(key(Odd())) and key(Odd) == key(Odd)
