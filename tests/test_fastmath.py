"""fitjax.polynomial_math: the loss with fitjax's float32 sin/cos/exp, on the XLA path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitjax
from fitjax.numerics.fastmath import choose_math

GABOR = fitjax.least_squares(fitjax.Gabor(8.0))


def _starts(n=64, seed=0):
    return fitjax.inits.uniform(jax.random.key(seed), n, [-10.0, 2.5], [10.0, 22.5])


def _primitives(fun, *args):
    """Names of the primitives in ``fun``'s jaxpr, nested jit calls included."""
    names = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            names.append(eqn.primitive.name)
            for value in eqn.params.values():
                if hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
                    walk(value.jaxpr)

    walk(jax.make_jaxpr(fun)(*args).jaxpr)
    return names


def test_values_and_gradients_match_the_platform_functions():
    fast = fitjax.polynomial_math(GABOR)
    data = fitjax.datasets.gabor()
    for phi in np.asarray(_starts(32)):
        phi = jnp.asarray(phi)
        np.testing.assert_allclose(fast(phi, data), GABOR(phi, data), rtol=2e-6)
        want = jax.grad(GABOR)(phi, data)
        np.testing.assert_allclose(jax.grad(fast)(phi, data), want, rtol=2e-4, atol=1e-4)


def test_float64_against_an_analytic_gradient(x64):
    # float64 is left to the platform: the value and gradient are the float64 formulas'
    fast = fitjax.polynomial_math(GABOR)
    x, y = (np.asarray(a, np.float64) for a in fitjax.datasets.gabor())
    phi = np.array([0.3, 11.0])
    u = phi[0] + 0.06 * phi[1] * x
    f = np.sin(u) * np.exp(-(u**2) / 8)
    df = (np.cos(u) - u / 4 * np.sin(u)) * np.exp(-(u**2) / 8)
    r = f - y
    want = np.array([np.sum(2 * r * df), np.sum(2 * r * df * 0.06 * x)])
    got = jax.grad(fast)(jnp.asarray(phi), (jnp.asarray(x), jnp.asarray(y)))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert fast(jnp.asarray(phi), (jnp.asarray(x), jnp.asarray(y))) == GABOR(
        jnp.asarray(phi), (jnp.asarray(x), jnp.asarray(y))
    )


def test_the_platform_functions_are_gone_in_float32_and_kept_in_float64(x64):
    fast = fitjax.polynomial_math(GABOR)
    phi32 = jnp.asarray([0.5, 10.0], jnp.float32)
    data32 = tuple(jnp.asarray(a, jnp.float32) for a in fitjax.datasets.gabor())
    names = _primitives(fast, phi32, data32)
    assert not {"sin", "cos", "exp"} & set(names)
    assert {"sin", "exp"} <= set(_primitives(GABOR, phi32, data32))
    data64 = tuple(jnp.asarray(a, jnp.float64) for a in data32)
    assert {"sin", "exp"} <= set(_primitives(fast, jnp.asarray([0.5, 10.0]), data64))


def test_nested_jit_is_rewritten_and_other_primitives_are_kept():
    @jax.jit
    def inner(u):
        return jnp.sin(u) * jnp.exp(-u) + jax.nn.softplus(u) + jnp.tanh(u)

    def loss(phi, x):
        return jnp.sum(inner(phi[0] + phi[1] * x) ** 2)

    fast = fitjax.polynomial_math(loss)
    x = jnp.linspace(-2.0, 2.0, 17)
    phi = jnp.asarray([0.1, 0.7])
    assert "sin" not in _primitives(fast, phi, x)
    np.testing.assert_allclose(fast(phi, x), loss(phi, x), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(fast)(phi, x), jax.grad(loss)(phi, x), rtol=1e-5)
    # pytree outputs and arguments keep their structure
    two = fitjax.polynomial_math(lambda p, d: {"a": jnp.cos(p["w"]) * d, "b": (p["w"],)})
    out = two({"w": jnp.ones(3)}, 2.0)
    assert jax.tree.structure(out) == jax.tree.structure({"a": 0, "b": (0,)})
    np.testing.assert_allclose(out["a"], 2 * np.cos(1.0), rtol=1e-6)


def test_fit_with_polynomial_math_matches_the_platform_fit_and_reuses_its_program():
    data, starts = fitjax.datasets.gabor(), _starts(64)
    opt = fitjax.adam(0.05)
    ref = fitjax.fit(fitjax.platform_math(GABOR), opt, starts, data, steps=100)
    fast = fitjax.fit(fitjax.polynomial_math(GABOR), opt, starts, data, steps=100)
    # same runs, same flags; over 100 steps float32 rounding moves no end point by 1e-4
    # (measured: at most 8e-6; a long nonconvex fit could end elsewhere)
    np.testing.assert_array_equal(fast.diverged_step, ref.diverged_step)
    np.testing.assert_allclose(fast.params, ref.params, atol=1e-4, rtol=0)
    np.testing.assert_allclose(fast.loss, ref.loss, rtol=1e-5)
    # jit and no jit agree; a second call reuses the compiled program
    unjitted = fitjax.fit(fitjax.polynomial_math(GABOR), opt, starts[:4], data, steps=5, jit=False)
    jitted = fitjax.fit(fitjax.polynomial_math(GABOR), opt, starts[:4], data, steps=5)
    np.testing.assert_allclose(unjitted.params, jitted.params, rtol=1e-5, atol=1e-6)
    before = fitjax.trace_count()
    fitjax.fit(fitjax.polynomial_math(GABOR), fitjax.adam(0.01), _starts(64, seed=1), data, steps=100)
    assert fitjax.trace_count() == before


def test_wrapping_twice_or_a_non_function():
    fast = fitjax.polynomial_math(GABOR)
    assert fitjax.polynomial_math(fast) is fast
    with pytest.raises(TypeError, match="fun must be a function, got int"):
        fitjax.polynomial_math(3)


def test_the_engine_chooses_the_polynomials_on_a_cpu_unless_the_loss_is_marked():
    data, starts = fitjax.datasets.gabor(), _starts(16)
    opt = fitjax.adam(0.05)
    default = fitjax.fit(GABOR, opt, starts, data, steps=50)
    wrapped = fitjax.fit(fitjax.polynomial_math(GABOR), opt, starts, data, steps=50)
    marked = fitjax.fit(fitjax.platform_math(GABOR), opt, starts, data, steps=50)
    if jax.default_backend() == "cpu":
        np.testing.assert_array_equal(default.params, wrapped.params)
    else:
        np.testing.assert_array_equal(default.params, marked.params)
    # the two maths differ by float32 rounding only
    np.testing.assert_allclose(wrapped.loss, marked.loss, rtol=1e-5)


def test_choose_math_by_platform_and_mark():
    assert choose_math(GABOR, "cpu") is fitjax.polynomial_math(GABOR)
    assert choose_math(GABOR, "gpu") is GABOR
    marked = fitjax.platform_math(GABOR)
    assert choose_math(marked, "cpu") is marked and fitjax.platform_math(marked) is marked
    fast = fitjax.polynomial_math(GABOR)
    assert choose_math(fast, "cpu") is fast
    with pytest.raises(TypeError, match="fun must be a function, got int"):
        fitjax.platform_math(3)


def test_a_line_search_evaluates_the_same_loss_as_the_gradient():
    """The engine hands the optimizer ``value_fn`` built from the loss it differentiates."""
    data, starts = fitjax.datasets.gabor(), _starts(8)
    opt = fitjax.gd_line_search(max_dist=0.5, tol=1e-4, max_iter=8)
    default = fitjax.fit(GABOR, opt, starts, data, steps=10)
    want = fitjax.polynomial_math(GABOR) if jax.default_backend() == "cpu" else GABOR
    same = fitjax.fit(want, opt, starts, data, steps=10)
    np.testing.assert_array_equal(default.params, same.params)


def test_a_float64_loss_is_computed_as_written(x64):
    data = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), fitjax.datasets.gabor())
    starts = jnp.asarray(_starts(8), jnp.float64)
    phi = starts[0]
    assert fitjax.polynomial_math(GABOR)(phi, data) == GABOR(phi, data)
    opt = fitjax.adam(0.05)
    default = fitjax.fit(GABOR, opt, starts, data, steps=50)
    marked = fitjax.fit(fitjax.platform_math(GABOR), opt, starts, data, steps=50)
    np.testing.assert_array_equal(default.params, marked.params)
