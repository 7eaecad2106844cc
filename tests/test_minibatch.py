"""Mini-batches: drawn without replacement, a fresh permutation every epoch, from explicit keys.

The sampler (``fitjax.engine.sampler``) is checked on its own, then the engine is checked to use
exactly the sampler's batches. To see the engine's batches, the runs fit a *recording
loss*: the parameters are one number per example and the loss of a batch is the sum of
its examples' numbers, so one step of ``gd(1.0)`` subtracts 1 from exactly the examples
in that step's batch. The recorded parameters then spell out every batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitjax
from fitjax.engine import sampler as _sampler

_indices_at = jax.jit(_sampler.indices_at, static_argnums=(2, 3))


def batches(key: jax.Array, n: int, batch_size: int, steps: int) -> np.ndarray:
    """The sampler's indices for steps 0 … steps−1, shape (steps, batch_size)."""
    return np.stack([np.asarray(_indices_at(key, jnp.asarray(t), n, batch_size)) for t in range(steps)])


# ----------------------------------------------------------------------------- the sampler


@pytest.mark.parametrize("n, batch_size", [(30, 5), (12, 4), (30, 30), (7, 1)])
def test_every_example_once_per_epoch_when_the_batch_divides_n(n, batch_size):
    spe = n // batch_size
    idx = batches(jax.random.key(0), n, batch_size, 3 * spe)
    for epoch in range(3):
        used = idx[epoch * spe : (epoch + 1) * spe].ravel()
        np.testing.assert_array_equal(np.sort(used), np.arange(n), err_msg=f"epoch {epoch}")
    if n > batch_size:  # a fresh order each epoch
        assert not np.array_equal(idx[:spe], idx[spe : 2 * spe])


@pytest.mark.parametrize("n, batch_size", [(32, 5), (30, 7), (13, 4)])
def test_a_partial_last_batch_is_left_out(n, batch_size):
    """Each epoch uses n // B full batches: n//B·B distinct examples, none twice; the rest
    (n mod B of them) are different examples from one epoch to the next."""
    spe = n // batch_size
    epochs = 6
    idx = batches(jax.random.key(1), n, batch_size, epochs * spe)
    left_out = []
    for epoch in range(epochs):
        used = idx[epoch * spe : (epoch + 1) * spe].ravel()
        assert used.size == spe * batch_size == len(set(used.tolist())), f"epoch {epoch} repeats an example"
        assert ((used >= 0) & (used < n)).all()
        left_out.append(frozenset(range(n)) - frozenset(used.tolist()))
    assert all(len(s) == n % batch_size for s in left_out)
    assert len(set(left_out)) > 1, "the same examples are left out every epoch"
    # over the epochs every example is used
    assert set(idx.ravel().tolist()) == set(range(n))


def test_same_key_same_order_other_key_other_order():
    a = batches(jax.random.key(3), 30, 5, 12)
    b = batches(jax.random.key(3), 30, 5, 12)
    c = batches(jax.random.key(4), 30, 5, 12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # a legacy uint32 key gives the same orders as the typed key it wraps
    legacy = batches(jax.random.PRNGKey(3), 30, 5, 12)
    np.testing.assert_array_equal(legacy, a)


def test_epoch_order_is_a_function_of_key_and_epoch():
    key = jax.random.key(5)
    perm = np.asarray(_sampler.epoch_permutation(key, jnp.asarray(2), 30))
    np.testing.assert_array_equal(batches(key, 30, 5, 18)[12:18].ravel(), perm)


# ----------------------------------------------------------------------------- the engine


def recording_loss(phi: jax.Array, batch: jax.Array) -> jax.Array:
    """Σ_{i ∈ batch} φ_i: its gradient is 1 at the batch's examples, 0 elsewhere."""
    return jnp.sum(phi[batch])


def engine_batches(n: int, batch_size: int, steps: int, n_runs: int, **kw) -> np.ndarray:
    """The examples in each run's batch at each step, as seen by the engine: (runs, steps, n) 0/1."""
    data = jnp.arange(n)  # example i is its own index
    res = fitjax.fit(
        recording_loss,
        fitjax.gd(1.0),
        jnp.zeros((n_runs, n)),
        data,
        steps=steps,
        batch_size=batch_size,
        record_every=1,
        record_params=True,
        **kw,
    )
    phi = np.concatenate([np.asarray(res.history.params), np.asarray(res.params)[:, None]], axis=1)
    return -np.diff(phi, axis=1)


def as_counts(idx: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((idx.shape[0], n))
    for t, row in enumerate(idx):
        np.add.at(out[t], row, 1.0)
    return out


@pytest.mark.parametrize("n, batch_size", [(30, 5), (32, 5)])
def test_engine_batches_are_the_samplers_with_one_key_per_run(n, batch_size):
    key, steps, n_runs = jax.random.key(11), 2 * (n // batch_size) + 3, 3
    seen = engine_batches(n, batch_size, steps, n_runs, key=key)
    assert set(np.unique(seen).tolist()) <= {0.0, 1.0} and (seen.sum(axis=2) == batch_size).all()
    for r in range(n_runs):
        expected = as_counts(batches(jax.random.fold_in(key, r), n, batch_size, steps), n)
        np.testing.assert_array_equal(seen[r], expected, err_msg=f"run {r}")
    # each run has its own order
    assert not np.array_equal(seen[0], seen[1]) and not np.array_equal(seen[1], seen[2])
    # and within the first epoch each run uses each example at most once (exactly once when B | n)
    first_epoch = seen[:, : n // batch_size].sum(axis=1)
    assert first_epoch.max() == 1 and (first_epoch.sum(axis=1) == (n // batch_size) * batch_size).all()


def test_shared_order_gives_every_run_the_keys_order():
    key, n, batch_size, steps = jax.random.key(12), 30, 5, 9
    seen = engine_batches(n, batch_size, steps, 3, key=key, shared_order=True)
    expected = as_counts(batches(key, n, batch_size, steps), n)
    for r in range(3):
        np.testing.assert_array_equal(seen[r], expected, err_msg=f"run {r}")


def test_engine_same_key_same_batches_other_key_other_batches():
    a = engine_batches(30, 5, 8, 2, key=jax.random.key(1))
    b = engine_batches(30, 5, 8, 2, key=jax.random.key(1))
    c = engine_batches(30, 5, 8, 2, key=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
