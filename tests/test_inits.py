import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitjax


def test_uniform_box_and_seed():
    s = fitjax.inits.uniform(jax.random.key(0), 500, [-10.0, 2.5], [10.0, 22.5])
    assert s.shape == (500, 2)
    assert float(s[:, 0].min()) >= -10 and float(s[:, 0].max()) <= 10
    assert float(s[:, 1].min()) >= 2.5 and float(s[:, 1].max()) <= 22.5
    np.testing.assert_array_equal(s, fitjax.inits.uniform(jax.random.key(0), 500, [-10.0, 2.5], [10.0, 22.5]))


def test_uniform_over_a_pytree():
    low = {"a": jnp.zeros(3), "b": -jnp.ones((2, 2))}
    high = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
    s = fitjax.inits.uniform(jax.random.key(0), 7, low, high)
    assert s["a"].shape == (7, 3) and s["b"].shape == (7, 2, 2)


def test_normal_around_a_point():
    params = fitjax.init_mlp(jax.random.key(0), [1, 4, 1])
    s = fitjax.inits.normal(jax.random.key(1), 5, params, std=0.0)
    for leaf, ref in zip(jax.tree.leaves(s), jax.tree.leaves(params), strict=False):
        np.testing.assert_array_equal(leaf, jnp.broadcast_to(ref, leaf.shape))
    s = fitjax.inits.normal(jax.random.key(1), 2000, [1.0, -1.0], std=0.5)
    np.testing.assert_allclose(np.asarray(s).mean(0), [1.0, -1.0], atol=0.05)
    np.testing.assert_allclose(np.asarray(s).std(0), [0.5, 0.5], atol=0.05)


def test_grid_order():
    g = fitjax.inits.grid(jnp.array([0.0, 1.0]), jnp.array([5.0, 6.0, 7.0]))
    m = np.asarray(g).reshape(2, 3, 2)
    assert m[1, 2].tolist() == [1.0, 7.0] and m[0, 1].tolist() == [0.0, 6.0]


def test_bad_box():
    with pytest.raises(ValueError, match="low must be below high"):
        fitjax.inits.uniform(jax.random.key(0), 3, [1.0, 0.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="n must be >= 1"):
        fitjax.inits.uniform(jax.random.key(0), 0, [0.0], [1.0])
