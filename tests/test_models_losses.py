"""Models, losses and data against the lecture's formulas and the notebooks' stated values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _problems import gabor_grad_numpy

import fitjax


def test_stated_losses_of_the_companion_notebooks():
    phi = jnp.array([0.6, -0.2])
    assert float(fitjax.least_squares(fitjax.line)(phi, fitjax.datasets.line())) == pytest.approx(
        12.367, abs=5e-4
    )
    gabor_data = fitjax.datasets.gabor()
    assert float(fitjax.least_squares(fitjax.Gabor(32.0))(phi, gabor_data)) == pytest.approx(16.419, abs=5e-4)
    assert float(fitjax.least_squares(fitjax.gabor)(phi, gabor_data)) == pytest.approx(15.545, abs=5e-4)


def test_data_sizes_and_values():
    x, y = fitjax.datasets.line()
    assert x.shape == y.shape == (12,)
    assert float(x[0]) == pytest.approx(0.03) and float(y[-1]) == pytest.approx(1.6)
    x, y = fitjax.datasets.gabor()
    assert x.shape == y.shape == (30,)
    assert float(x[1]) == pytest.approx(-14.22)


def test_line_gradient_is_analytic_in_float64(x64):
    x, y = fitjax.datasets.line()
    xn, yn = np.asarray(x, np.float64), np.asarray(y, np.float64)
    loss = fitjax.least_squares(fitjax.line)
    for phi in ([0.6, -0.2], [1.6, -0.5], [-3.0, 7.5]):
        g = np.asarray(jax.grad(loss)(jnp.asarray(phi), (x, y)))
        r = phi[0] + phi[1] * xn - yn
        expected = np.array([np.sum(2 * r), np.sum(2 * xn * r)])
        np.testing.assert_allclose(g, expected, rtol=1e-12)


def test_gabor_gradient_is_analytic_in_float64(x64):
    x, y = fitjax.datasets.gabor()
    xn, yn = np.asarray(x, np.float64), np.asarray(y, np.float64)
    for w in (8.0, 32.0):
        loss = fitjax.least_squares(fitjax.Gabor(w))
        for phi in ([0.6, -0.2], [-1.5, 8.5], [2.0, 16.0]):
            g = np.asarray(jax.grad(loss)(jnp.asarray(phi), (x, y)))
            np.testing.assert_allclose(g, gabor_grad_numpy(phi, xn, yn, w), rtol=1e-12)


def test_mean_reduction_divides_by_batch_size():
    data = fitjax.datasets.line()
    phi = jnp.array([0.1, 0.2])
    total = fitjax.least_squares(fitjax.line)(phi, data)
    mean = fitjax.least_squares(fitjax.line, "mean")(phi, data)
    assert float(mean) == pytest.approx(float(total) / 12, rel=1e-6)


def test_mlp_over_a_pytree_of_weights():
    params = fitjax.init_mlp(jax.random.key(0), [1, 16, 16, 1])
    x, y = fitjax.datasets.synthetic_regression(jax.random.key(1), 64)
    out = fitjax.mlp(params, x)
    assert out.shape == (64,)
    grads = jax.grad(fitjax.least_squares(fitjax.mlp))(params, (x, y))
    assert jax.tree.structure(grads) == jax.tree.structure(params)


def test_synthetic_generators_are_seeded():
    for gen in (
        fitjax.datasets.synthetic_line,
        fitjax.datasets.synthetic_gabor,
        fitjax.datasets.synthetic_regression,
    ):
        a = gen(jax.random.key(3), 50)
        b = gen(jax.random.key(3), 50)
        c = gen(jax.random.key(4), 50)
        np.testing.assert_array_equal(a[1], b[1])
        assert not np.array_equal(a[1], c[1])
        assert a[0].shape == (50,)


def test_toy_loss_minimum():
    assert float(fitjax.toy_loss(jnp.array([0.7, 0.0]))) == 0.0
    assert float(fitjax.toy_loss(jnp.array([-0.7, -0.9]))) > 0.5


def test_gabor_w_must_be_positive():
    with pytest.raises(ValueError, match="w must be > 0"):
        fitjax.Gabor(w=0.0)
