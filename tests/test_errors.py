"""Bad input is refused before anything is compiled, naming the argument and value."""

import jax
import jax.numpy as jnp
import pytest

import fitjax

LINE = fitjax.least_squares(fitjax.line)
DATA = fitjax.datasets.line()
STARTS = jnp.zeros((4, 2))


@pytest.fixture(autouse=True)
def nothing_compiled():
    before = fitjax.trace_count()
    yield
    assert fitjax.trace_count() == before


def fit(**overrides):
    kw = dict(loss=LINE, optimizer=fitjax.gd(0.1), params0=STARTS, data=DATA, steps=10)
    kw.update(overrides)
    return fitjax.fit(kw.pop("loss"), kw.pop("optimizer"), kw.pop("params0"), kw.pop("data"), **kw)


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (dict(params0=jnp.zeros(2)), TypeError, r"leading axis is the run axis.*params0\[None\]"),
        (dict(params0=jnp.float32(1.0)), ValueError, r"params0.*scalar.*leading run axis"),
        (dict(params0={"a": jnp.zeros((3, 2)), "b": jnp.zeros((4,))}), ValueError, "different run counts"),
        (dict(params0=jnp.zeros((4, 2), jnp.int32)), TypeError, "dtype int32.*floating point"),
        (dict(params0=jnp.full((4, 2), jnp.nan)), ValueError, "params0 contains NaN"),
        (dict(data=(jnp.zeros(12), jnp.zeros(11))), ValueError, "different lengths"),
        (dict(data=(DATA[0].at[3].set(jnp.nan), DATA[1])), ValueError, r"data\[0\] contains NaN"),
        (dict(steps=0), ValueError, "steps must be >= 1, got 0"),
        (dict(steps=2.5), TypeError, "steps must be an integer"),
        (dict(record_every=0), ValueError, "record_every must be >= 1, got 0"),
        (dict(record_every=11), ValueError, r"record_every must be <= steps \(10\), got 11"),
        (dict(loss=lambda p, b: (p[0] + p[1] * b[0] - b[1]) ** 2), ValueError, r"loss must return a scalar, got shape \(12,\)"),
        (dict(loss=lambda p, b: p["missing"]), TypeError, "loss.*failed"),
        (dict(batch_size=0, key=jax.random.key(0)), ValueError, "batch_size must be >= 1, got 0"),
        (dict(batch_size=13, key=jax.random.key(0)), ValueError, r"batch_size must be <= the number of examples \(12\), got 13"),
        (dict(batch_size=4), ValueError, "key is needed"),
        (dict(key=3), TypeError, "key must be a jax.random.key"),
        (dict(optimizer="adam"), TypeError, "optimizer must be"),
        (dict(hyperparams={"learning_rate": -1.0}), ValueError, "learning_rate must be > 0"),
        (dict(hyperparams={"beta": 0.5}), ValueError, r"unknown hyperparameter\(s\) \['beta'\]"),
        (dict(hyperparams={"learning_rate": jnp.ones(3)}), ValueError, "one value per run"),
    ],
)
def test_fit_refuses(overrides, error, message):
    with pytest.raises(error, match=message):
        fit(**overrides)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: fitjax.gd(-0.1), r"learning_rate must be > 0 and finite, got -0.1"),
        (lambda: fitjax.gd(float("nan")), r"learning_rate must be > 0 and finite, got nan"),
        (lambda: fitjax.adam(0.1, beta=1.0), r"beta must be in \[0, 1\), got 1"),
        (lambda: fitjax.adam(0.1, gamma=-0.1), r"gamma must be in \[0, 1\), got -0.1"),
        (lambda: fitjax.adam(0.1, eps=-1e-8), r"eps must be >= 0 and finite, got -1e-08"),
        (lambda: fitjax.momentum(0.1, beta=1.5), r"beta must be in \[0, 1\), got 1.5"),
        (lambda: fitjax.nesterov_classical(0.1, momentum=-0.5), r"momentum must be in \[0, 1\)"),
        (lambda: fitjax.gd(lambda step: jnp.ones(3)), "learning_rate must return a scalar"),
        (lambda: fitjax.gd(jnp.array([0.1, -0.2])), r"learning_rate must be > 0 and finite, got -0.2 \(among 2 values\)"),
    ],
)
def test_optimizers_refuse(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_sweep_refuses_bad_grid():
    with pytest.raises(ValueError, match=r"grid\['beta'\] must be a non-empty 1-D"):
        fitjax.sweep(LINE, fitjax.momentum(0.1), STARTS, DATA, steps=5, grid={"beta": jnp.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\), got 1"):
        fitjax.sweep(LINE, fitjax.momentum(0.1), STARTS, DATA, steps=5, grid={"beta": jnp.array([0.5, 1.0])})
