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


def test_same_code_over_other_globals_or_mutable_objects_differs():
    def make(scale):
        return lambda x: x * scale

    f = make(2.0)
    g = types.FunctionType(f.__code__, {}, f.__name__, f.__defaults__, f.__closure__)
    assert key(f) == key(make(2.0)) and key(f) != key(g)  # another module's globals

    def holding(obj):
        return lambda: obj

    held: list = [1.0]
    before = key(holding(held))
    assert before == key(holding([1.0]))  # lists and dicts by their items at the time
    held.append(2.0)
    assert key(holding(held)) != before
    assert key(holding({"a": 1.0})) == key(holding({"a": 1.0})) != key(holding({"a": 2.0}))
    assert key(functools.partial(make, 1.0)) == key(functools.partial(make, 1.0))
    assert key(functools.partial(make, 1.0)) != key(functools.partial(make, 3.0))


def test_a_recursive_closure_has_a_key():
    def outer():
        def again(n):
            return n if n < 1 else again(n - 1)

        return again

    a, b = outer(), outer()
    assert key(a) == key(a) and key(a) != key(b)  # the cycle is compared by identity
    hash(key(a))
