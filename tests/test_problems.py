"""The problem catalogue: every stated minimum is the value at the stated minimiser, the
gradient vanishes there, starts come from the stated domain, and users can add problems."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitjax
from fitjax import problems

WITH_MINIMUM = [
    ("line", {}),
    ("toy", {}),
    ("rosenbrock", {"dim": 2}),
    ("rosenbrock", {"dim": 5}),
    ("himmelblau", {}),
    ("beale", {}),
    ("camel", {}),
    ("rastrigin", {"dim": 3}),
    ("ackley", {"dim": 4}),
    ("styblinski_tang", {"dim": 3}),
]


@pytest.mark.parametrize(("name", "options"), WITH_MINIMUM, ids=lambda v: str(v))
def test_minimum_is_the_value_at_the_minimiser_and_gradient_vanishes(name, options, x64):
    prob = problems.get(name, **options)
    assert prob.minimum is not None and prob.minimisers
    for point in prob.minimisers:
        x = jnp.asarray(np.asarray(point, np.float64))
        value = float(prob.loss(x, prob.data))
        np.testing.assert_allclose(value, prob.minimum, rtol=1e-12, atol=1e-12)
        grad = np.asarray(jax.grad(prob.loss)(x, prob.data))
        assert np.all(np.isfinite(grad))
        np.testing.assert_allclose(grad, 0.0, atol=1e-7)


@pytest.mark.parametrize(("name", "options"), WITH_MINIMUM, ids=lambda v: str(v))
def test_nothing_in_the_start_domain_is_below_the_minimum(name, options):
    prob = problems.get(name, **options)
    starts = prob.starts(jax.random.key(1), 2000)
    values = np.asarray(jax.vmap(prob.loss, in_axes=(0, None))(starts, prob.data))
    assert values.min() >= prob.minimum - 1e-4 * max(1.0, abs(prob.minimum))


def test_minimum_values_against_independent_numbers(x64):
    """Values written out from the literature, not from the catalogue's own constants."""
    assert problems.get("camel").minimum == pytest.approx(-1.0316284534898774, abs=1e-12)
    assert problems.get("styblinski_tang", dim=4).minimum == pytest.approx(-156.66466281508568, abs=1e-9)
    # Styblinski-Tang's x* is the root of f'(x) = 2x^3 - 16x + 2.5 = 0 near -2.9
    roots = np.roots([2.0, 0.0, -16.0, 2.5])
    x_star = roots[np.argmin(np.abs(roots + 2.9))].real
    assert problems.get("styblinski_tang", dim=1).minimisers[0][0] == pytest.approx(x_star, abs=1e-12)
    # the line's minimum from the normal equations, computed here again
    x, y = (np.asarray(a, np.float64) for a in fitjax.datasets.line())
    a = np.stack([np.ones_like(x), x], 1)
    phi = np.linalg.solve(a.T @ a, a.T @ y)
    assert problems.get("line").minimum == pytest.approx(float(np.sum((a @ phi - y) ** 2)), rel=1e-12)


def test_starts_lie_in_the_box_and_depend_only_on_the_key():
    prob = problems.get("camel")
    a = np.asarray(prob.starts(jax.random.key(3), 500))
    b = np.asarray(prob.starts(jax.random.key(3), 500))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (500, 2)
    assert np.all(a >= np.array(prob.low)) and np.all(a <= np.array(prob.high))
    assert not np.array_equal(a, np.asarray(prob.starts(jax.random.key(4), 500)))


def test_problems_without_known_minimum_fit_and_have_pytree_starts():
    for name in ("gabor8", "gabor32", "gabor_mlp", "gabor_mlp_deep"):
        prob = problems.get(name)
        assert prob.minimum is None and prob.description
        starts = prob.starts(jax.random.key(0), 3)
        values = jax.vmap(prob.loss, in_axes=(0, None))(starts, prob.data)
        assert values.shape == (3,) and bool(jnp.all(jnp.isfinite(values)))
    prob = problems.get("gabor_mlp", hidden=4)
    res = fitjax.fit(prob.loss, fitjax.adam(0.01), prob.starts(jax.random.key(0), 3), prob.data, steps=3)
    assert res.loss.shape == (3,) and bool(jnp.all(jnp.isfinite(res.loss)))


def test_dimension_shorthand_and_errors():
    assert problems.get("rastrigin:7").starts(jax.random.key(0), 2).shape == (2, 7)
    assert problems.get("rastrigin:7").name == "rastrigin7d"
    with pytest.raises(ValueError, match="unknown problem 'nope'"):
        problems.get("nope")
    with pytest.raises(ValueError, match="takes no option"):
        problems.get("beale", dim=3)
    with pytest.raises(ValueError, match="dim of rosenbrock"):
        problems.get("rosenbrock", dim=1)


def test_user_problem_in_one_call():
    prob = problems.Problem(
        "shifted_bowl",
        lambda p, data: jnp.sum((p - data) ** 2),
        data=jnp.array([1.0, 2.0]),
        low=[-3.0, -3.0],
        high=[3.0, 3.0],
        minimum=0.0,
        minimisers=([1.0, 2.0],),
    )
    problems.register(prob)
    try:
        assert problems.get("shifted_bowl") is prob
        assert "shifted_bowl" in problems.available()
        with pytest.raises(ValueError, match="already registered"):
            problems.register(prob)
    finally:
        problems.unregister("shifted_bowl")
    assert "shifted_bowl" not in problems.available()


def test_problem_rejects_bad_definitions():
    with pytest.raises(ValueError, match="either a start box"):
        problems.Problem("p", lambda p, d: p, low=[0.0])
    with pytest.raises(ValueError, match="either a start box"):
        problems.Problem("p", lambda p, d: p)
    with pytest.raises(TypeError, match="must be a function"):
        problems.Problem("p", 3.0, low=[0.0], high=[1.0])
    with pytest.raises(ValueError, match="name must be"):
        problems.Problem("a b", lambda p, d: p, low=[0.0], high=[1.0])


def test_cross_entropy_against_numpy():
    key = jax.random.key(0)
    params = fitjax.init_mlp(key, [4, 3])
    x = jax.random.normal(jax.random.key(1), (6, 4))
    y = jnp.array([0, 1, 2, 2, 1, 0])
    got = float(problems.cross_entropy(fitjax.mlp)(params, (x, y)))
    logits = np.asarray(x, np.float64) @ np.asarray(params["layers"][0]["w"]) + np.asarray(
        params["layers"][0]["b"]
    )
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert got == pytest.approx(-logp[np.arange(6), np.asarray(y)].mean(), rel=1e-5)


def test_digits_problem_or_a_clear_error():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install scikit-learn"):
            problems.get("digits_logistic")
        pytest.skip("scikit-learn is not installed")
    prob = problems.get("digits_logistic", n=100)
    res = fitjax.fit(prob.loss, fitjax.adam(0.05), prob.starts(jax.random.key(0), 2), prob.data, steps=20)
    assert float(res.loss.max()) < np.log(10.0)
