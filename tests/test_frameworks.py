"""fitjax's optimizers in a Flax NNX, a Flax Linen and an Equinox training loop.

Each trains a small MLP with ``fitjax.adam``, ``fitjax.momentum`` and ``fitjax.nesterov``
and compares with the optax equivalent (``optax.adam``; ``optax.sgd(α·(1−β), β)`` for the
lecture's momentum) or, for the lecture's Nesterov momentum, which optax does not have,
with the lecture's update written out in plain JAX. The state is initialised under
``jit`` and goes through a checkpoint round trip (``flax.serialization``) halfway.
"""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fitjax

# Flax, Equinox and optax code runs in every case, and optax's code mixes ints and floats.
pytestmark = pytest.mark.loose_promotion

flax = pytest.importorskip("flax")
serialization = pytest.importorskip("flax.serialization")

X = jnp.linspace(-1.0, 1.0, 32)[:, None]
Y = jnp.sin(3.0 * X)
STEPS = 20
OPTIMIZERS = {
    "adam": (lambda: fitjax.adam(1e-2), lambda: optax.adam(1e-2)),
    "momentum": (lambda: fitjax.momentum(0.1, 0.9), lambda: optax.sgd(0.1 * (1 - 0.9), momentum=0.9)),
    "nesterov": (lambda: fitjax.nesterov(0.05, 0.9), None),
}


def lecture_nesterov(loss, params, alpha=0.05, beta=0.9, steps=STEPS):
    """The lecture's Nesterov momentum in φ: m ← β·m + (1−β)·∇L[φ − α·m]; φ ← φ − α·m."""
    m = jax.tree.map(jnp.zeros_like, params)
    for _ in range(steps):
        look = jax.tree.map(lambda p, m: p - alpha * m, params, m)
        g = jax.grad(loss)(look)
        m = jax.tree.map(lambda m, g: beta * m + (1 - beta) * g, m, g)
        params = jax.tree.map(lambda p, m: p - alpha * m, params, m)
    return params


def round_trip(state):
    """A checkpoint written and read back, as a training script resumes one."""
    return serialization.from_bytes(state, serialization.to_bytes(state))


def close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2e-6)


# ----------------------------------------------------------------------------- Equinox


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_equinox_loop(name):
    eqx = pytest.importorskip("equinox")
    model0 = eqx.nn.MLP(1, 1, 8, 1, key=jax.random.key(0))

    def loss(model):
        return jnp.mean((jax.vmap(model)(X) - Y) ** 2)

    def train(tx):
        model = model0
        state = jax.jit(tx.init)(eqx.filter(model, eqx.is_array))

        @eqx.filter_jit
        def step(model, state):
            grads = eqx.filter_grad(loss)(model)
            updates, state = tx.update(grads, state, eqx.filter(model, eqx.is_array))
            return eqx.apply_updates(model, updates), state

        for t in range(STEPS):
            if t == STEPS // 2:  # Equinox's own checkpoint of the state
                buffer = io.BytesIO()
                eqx.tree_serialise_leaves(buffer, state)
                buffer.seek(0)
                state = eqx.tree_deserialise_leaves(
                    buffer, jax.jit(tx.init)(eqx.filter(model0, eqx.is_array))
                )
            model, state = step(model, state)
        return model, state

    ours, theirs = OPTIMIZERS[name]
    model, state = train(ours())
    if theirs is not None:
        ref, _ = train(theirs())
        close(eqx.filter(model, eqx.is_array), eqx.filter(ref, eqx.is_array))
    else:  # a Flax/Equinox user holds ψ; φ is reported_params
        tx = ours()
        phi = fitjax.reported_params(tx, eqx.filter(model, eqx.is_array), state)
        params0, static = eqx.partition(model0, eqx.is_array)
        ref = lecture_nesterov(lambda p: loss(eqx.combine(p, static)), params0)
        close(phi, ref)
    assert loss(model) < loss(model0)


# ----------------------------------------------------------------------------- Flax NNX


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_flax_nnx_optimizer(name):
    nnx = pytest.importorskip("flax.nnx")

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Linear(1, 8, rngs=rngs)
            self.b = nnx.Linear(8, 1, rngs=rngs)

        def __call__(self, x):
            return self.b(jnp.tanh(self.a(x)))

    def loss(model):
        return jnp.mean((model(X) - Y) ** 2)

    def train(tx):
        model = MLP(nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

        @nnx.jit
        def step(model, optimizer):
            grads = nnx.grad(loss)(model)
            optimizer.update(model, grads)

        for t in range(STEPS):
            if t == STEPS // 2:  # the optimizer state through a checkpoint
                state = nnx.state(optimizer)
                restored = serialization.from_state_dict(
                    nnx.to_pure_dict(state), serialization.to_state_dict(nnx.to_pure_dict(state))
                )
                nnx.replace_by_pure_dict(state, restored)
                nnx.update(optimizer, state)
            step(model, optimizer)
        return model, optimizer

    ours, theirs = OPTIMIZERS[name]
    model, optimizer = train(ours())
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    if theirs is not None:
        ref, _ = train(theirs())
        close(params, nnx.to_pure_dict(nnx.state(ref, nnx.Param)))
    else:
        model0 = MLP(nnx.Rngs(0))
        graphdef, p0 = nnx.split(model0, nnx.Param)
        p0 = nnx.to_pure_dict(p0)

        def pure_loss(p):
            state = nnx.state(MLP(nnx.Rngs(0)), nnx.Param)
            nnx.replace_by_pure_dict(state, p)
            return loss(nnx.merge(graphdef, state))

        ref = lecture_nesterov(pure_loss, p0)
        opt_state = jax.tree.map(
            lambda v: v.value if hasattr(v, "value") else v,
            nnx.to_pure_dict(nnx.state(optimizer))["opt_state"],
        )
        phi = fitjax.reported_params(ours(), params, _as_opt_state(opt_state, ours(), params))
        close(phi, ref)


def _as_opt_state(pure, tx, params):
    """The optax state of ``tx`` for ``params`` with the leaves of a pure dict (NNX keeps it so)."""
    template = tx.init(params)
    return jax.tree.unflatten(jax.tree.structure(template), jax.tree.leaves(pure))


# ----------------------------------------------------------------------------- Flax Linen


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_flax_linen_train_state(name):
    nn = pytest.importorskip("flax.linen")
    train_state = pytest.importorskip("flax.training.train_state")

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(jnp.tanh(nn.Dense(8)(x)))

    model = MLP()
    params0 = model.init(jax.random.key(0), X)

    def loss(params):
        return jnp.mean((model.apply(params, X) - Y) ** 2)

    def train(tx):
        create = jax.jit(lambda p: train_state.TrainState.create(apply_fn=model.apply, params=p, tx=tx))
        state = create(params0)

        @jax.jit
        def step(state):
            return state.apply_gradients(grads=jax.grad(loss)(state.params))

        for t in range(STEPS):
            if t == STEPS // 2:
                state = round_trip(state)
            state = step(state)
        return state

    ours, theirs = OPTIMIZERS[name]
    state = train(ours())
    if theirs is not None:
        close(state.params, train(theirs()).params)
    else:
        phi = fitjax.reported_params(state.tx, state.params, state.opt_state)
        close(phi, lecture_nesterov(loss, params0))
    assert loss(state.params) < loss(params0)
