"""fitjax's optimizers at optax's seams: injection, schedules, tree get/set, jit(init),
dtypes, complex numbers, keyword arguments, per-run hyperparameters of optax optimizers.

Each test is a user's reproduction; the reference is optax itself, run side by side.
"""

from __future__ import annotations

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fitjax

G = jnp.array([2.0, -4.0, 0.5])
P = jnp.array([1.0, -2.0, 3.0])


def run(opt: optax.GradientTransformation, steps: int, params=P, grad_fn=None, edit=None):
    """Updates of ``steps`` steps of a fixed quadratic's gradient; ``edit(t, state)`` may change the state."""
    grad_fn = grad_fn or (lambda p: 2.0 * p + G)
    state = opt.init(params)
    out = []
    for t in range(steps):
        if edit is not None:
            state = edit(t, state)
        u, state = opt.update(grad_fn(params), state, params)
        params = optax.apply_updates(params, u)
        out.append(u)
    return jnp.stack([jnp.ravel(x) for x in out]) if out[0].ndim <= 1 else out, state


def set_lr(value):
    def edit(t, state):
        if t == 2:
            state.hyperparams["learning_rate"] = jnp.asarray(value, state.hyperparams["learning_rate"].dtype)
        return state

    return edit


# ----------------------------------------------------------------------------- injection


@pytest.mark.loose_promotion  # optax's own code mixes Python floats, ints and floats
def test_inject_hyperparams_of_fitjax_adam_follows_an_edited_learning_rate():
    ours, _ = run(optax.inject_hyperparams(fitjax.adam)(learning_rate=0.1), 5, edit=set_lr(1e-6))
    ref, _ = run(optax.inject_hyperparams(optax.adam)(learning_rate=0.1), 5, edit=set_lr(1e-6))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-12)
    assert float(jnp.abs(ours[3]).max()) < 1e-5  # the edit took effect


@pytest.mark.loose_promotion  # optax's own code mixes Python floats, ints and floats
def test_editing_a_fitjax_optimizers_own_state_takes_effect_and_lasts():
    ours, _ = run(fitjax.adam(0.1), 5, edit=set_lr(1e-6))
    ref, _ = run(optax.inject_hyperparams(optax.adam)(learning_rate=0.1), 5, edit=set_lr(1e-6))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-12)


def test_optax_tree_get_and_set_read_and_change_fitjax_hyperparameters():
    opt = fitjax.adam(0.1)
    state = opt.init(P)
    assert float(optax.tree.get(state, "learning_rate")) == pytest.approx(0.1)
    assert optax.tree.get(state, "mu").shape == P.shape  # optax's field names
    assert optax.tree.get(state, "nu").shape == P.shape
    state = optax.tree.set(state, learning_rate=jnp.asarray(0.0, jnp.float32))
    u, _ = opt.update(G, state, P)
    np.testing.assert_array_equal(u, jnp.zeros_like(P))


@pytest.mark.loose_promotion  # optax's own code mixes Python floats, ints and floats
@pytest.mark.parametrize("factory,ref", [(fitjax.adam, optax.adam), (fitjax.gd, optax.sgd)])
def test_an_injected_schedule_is_followed_step_by_step(factory, ref):
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 10, 50)
    ours, _ = run(optax.inject_hyperparams(factory)(learning_rate=schedule), 50)
    theirs, _ = run(optax.inject_hyperparams(ref)(learning_rate=schedule), 50)
    np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=1e-9)


def test_an_injected_momentum_schedule_is_followed():
    beta = optax.linear_schedule(0.0, 0.9, 20)
    ours, _ = run(optax.inject_hyperparams(fitjax.sgd)(learning_rate=0.01, momentum=beta), 30)
    theirs, _ = run(optax.inject_hyperparams(optax.sgd)(learning_rate=0.01, momentum=beta), 30)
    np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=1e-9)


@pytest.mark.loose_promotion  # a user's schedule written loosely: a Python float meets the int32 step
def test_schedules_may_start_at_zero_on_any_hyperparameter():
    warm = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 10, 50)
    ours, _ = run(fitjax.adam(warm), 50)
    theirs, _ = run(optax.adam(warm), 50)
    np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=1e-9)
    np.testing.assert_array_equal(ours[0], 0.0)
    ours, _ = run(optax.inject_hyperparams(fitjax.gd)(lambda c: c), 3)  # α_t = t
    theirs, _ = run(optax.inject_hyperparams(optax.sgd)(lambda c: c), 3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    beta = optax.linear_schedule(0.0, 0.9, 10)
    ours, _ = run(fitjax.momentum(0.1, beta=beta), 20)
    m, ref = jnp.zeros_like(P), []
    params = P
    for t in range(20):  # the lecture's moving average with β_t
        g = 2.0 * params + G
        m = beta(t) * m + (1 - beta(t)) * g
        ref.append(-0.1 * m)
        params = params - 0.1 * m
    np.testing.assert_allclose(ours, jnp.stack(ref), rtol=2e-5, atol=1e-9)


def test_jit_init_then_eager_init_hold_no_tracer_and_serialise():
    serialization = pytest.importorskip("flax.serialization")
    opt = fitjax.adam(0.1)
    jitted = jax.jit(opt.init)(P)
    eager = opt.init(P)
    for state in (jitted, eager):
        assert not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(state))
        restored = serialization.from_bytes(state, serialization.to_bytes(state))
        chex.assert_trees_all_equal(restored, state)
    chex.assert_trees_all_equal(jitted, eager)


# ----------------------------------------------------------------------------- values given to constructors


def test_an_array_given_to_a_constructor_is_refused_pointing_to_hyperparams():
    with pytest.raises(ValueError, match=r"learning_rate must be one value.*shape \(2,\).*hyperparams="):
        fitjax.gd(jnp.array([0.001, 0.05]))
    with pytest.raises(ValueError, match=r"beta must be one value.*hyperparams="):
        fitjax.adam(0.1, beta=np.array([0.5, 0.9]))


def test_one_value_per_run_goes_through_fit_hyperparams():
    loss = fitjax.least_squares(fitjax.line)
    data = fitjax.datasets.line()
    res = fitjax.fit(
        loss, fitjax.gd(0.01), jnp.zeros((2, 2)), data, steps=20, hyperparams={"learning_rate": [0.001, 0.05]}
    )
    assert float(res.loss[0]) != float(res.loss[1])
    for i, lr in enumerate([0.001, 0.05]):
        one = fitjax.fit(loss, fitjax.gd(lr), jnp.zeros((1, 2)), data, steps=20)
        np.testing.assert_allclose(res.loss[i], one.loss[0], rtol=1e-6)


# ----------------------------------------------------------------------------- dtypes and numbers


@pytest.mark.loose_promotion  # a loss written loosely: 16-bit parameters meet float32 data
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_parameters_run_with_a_warning_and_keep_their_dtype(dtype):
    opt = fitjax.adam(1e-3)
    params = jnp.ones(3, dtype)
    with pytest.warns(fitjax.PrecisionWarning, match=r"gamma = 0.999 rounds to 1|eps = 1e-08 is below"):
        state = opt.init(params)
    updates, state = opt.update(jnp.full(3, 0.5, dtype), state, params)
    assert updates.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(updates)))
    ref_u, _ = optax.adam(1e-3).update(jnp.full(3, 0.5, dtype), optax.adam(1e-3).init(params), params)
    np.testing.assert_allclose(np.asarray(updates, np.float32), np.asarray(ref_u, np.float32), rtol=2e-2)


def test_a_line_search_runs_in_float16():
    params = jnp.array([[1.0, -0.5]], jnp.float16)
    data = jax.tree.map(lambda a: a.astype(jnp.float16), fitjax.datasets.line())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fitjax.PrecisionWarning)
        res = fitjax.fit(fitjax.least_squares(fitjax.line), fitjax.gd_line_search(), params, data, steps=5)
    assert res.params.dtype == jnp.float16 and bool(jnp.isfinite(res.loss).all())


@pytest.mark.loose_promotion  # optax's own code mixes Python floats, ints and floats
def test_complex_parameters_use_the_squared_magnitude_as_optax():
    params = jnp.array([1.0 + 1.0j, -0.5 + 2.0j], jnp.complex64)

    def grad_fn(p):
        return jnp.conj(2.0 * p + jnp.array([1.0 - 2.0j, 0.5j]))

    for ours, theirs in [
        (fitjax.adam(0.1), optax.adam(0.1)),
        (fitjax.rmsprop(0.1), optax.rmsprop(0.1, eps_in_sqrt=False)),
        (fitjax.sgd(0.1, momentum=0.9), optax.sgd(0.1, momentum=0.9)),
    ]:
        a, _ = run(ours, 10, params, grad_fn)
        b, _ = run(theirs, 10, params, grad_fn)
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)
    first, _ = run(fitjax.adam(0.1), 1, params, grad_fn)
    assert not np.allclose(np.asarray(first), -0.1)  # the step follows the gradient's phase


def test_updates_keep_each_leafs_dtype_in_a_mixed_tree():
    with jax.enable_x64(True):
        params = {"a": jnp.ones(2, jnp.float32), "b": jnp.ones(2, jnp.float64)}
        for opt in (
            fitjax.adam(0.1),
            fitjax.nesterov(0.1),
            fitjax.rmsprop(0.1),
            fitjax.normalized(0.1),
        ):
            updates, _ = opt.update(params, opt.init(params), params)
            assert updates["a"].dtype == jnp.float32 and updates["b"].dtype == jnp.float64


def test_update_takes_optax_keyword_names():
    opt = fitjax.adam(0.1)
    state = opt.init(P)
    u1, _ = opt.update(updates=G, state=state, params=P)
    u2, _ = opt.update(G, state, P)
    np.testing.assert_array_equal(u1, u2)


# ----------------------------------------------------------------------------- optax's sgd, by name


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_takes_optax_signature_and_meaning(nesterov):
    ours, _ = run(fitjax.sgd(1e-2, momentum=0.9, nesterov=nesterov), 20)
    theirs, _ = run(optax.sgd(1e-2, momentum=0.9, nesterov=nesterov), 20)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-9)


def test_momentum_ported_from_optax_sgd_by_the_documented_rule():
    beta = 0.9
    ours, _ = run(fitjax.momentum(1e-2 / (1 - beta), beta), 20)
    theirs, _ = run(optax.sgd(1e-2, momentum=beta), 20)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-8)


def test_rmsprop_equals_optax_rmsprop_step_by_step():
    ours, s_ours = run(fitjax.rmsprop(0.01, gamma=0.95, eps=1e-6), 30)
    theirs, s_ref = run(optax.rmsprop(0.01, decay=0.95, eps=1e-6, eps_in_sqrt=False), 30)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(optax.tree.get(s_ours, "nu"), optax.tree.get(s_ref, "nu"), rtol=1e-5)


# ------------------------------------------------------------------- per-run hyperparameters of optax


@pytest.mark.loose_promotion  # optax's own code mixes Python floats, ints and floats
def test_fit_sweeps_an_injected_optax_optimizer_without_recompiling():
    loss = fitjax.least_squares(fitjax.line)
    data = fitjax.datasets.line()
    starts = jnp.zeros((3, 2))
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=0.05)
    before = fitjax.trace_count()
    a = fitjax.fit(loss, opt, starts, data, steps=30, hyperparams={"learning_rate": [0.01, 0.05, 0.1]})
    b = fitjax.fit(loss, opt, starts, data, steps=30, hyperparams={"learning_rate": [0.02, 0.03, 0.2]})
    assert fitjax.trace_count() - before == 1
    for i, lr in enumerate([0.02, 0.03, 0.2]):
        p, s = starts[i], optax.adam(lr).init(starts[i])
        for _ in range(30):
            g = jax.grad(loss)(p, data)
            u, s = optax.adam(lr).update(g, s, p)
            p = optax.apply_updates(p, u)
        np.testing.assert_allclose(b.params[i], p, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a.params, b.params)


def _optax_reference(opt: optax.GradientTransformation, loss, start, data, steps: int) -> jax.Array:
    p, s = start, opt.init(start)
    for _ in range(steps):
        u, s = opt.update(jax.grad(loss)(p, data), s, p)
        p = optax.apply_updates(p, u)
    return p


@pytest.mark.loose_promotion  # optax's own code mixes Python floats, ints and floats
@pytest.mark.parametrize(
    "make",
    [
        lambda lr: optax.adam(lr),
        lambda lr: optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(lr, momentum=0.9, nesterov=True)),
        lambda lr: optax.inject_hyperparams(optax.adam)(learning_rate=lr),
        lambda lr: fitjax.adam(optax.cosine_decay_schedule(lr, 30)),
    ],
    ids=["adam", "chain", "inject", "schedule"],
)
def test_an_optax_optimizer_built_anew_each_call_is_compiled_once(make):
    """A loop that builds ``optax.adam(lr)`` for each call: one program per value of what
    the optimizer was built from, and each call's result is optax's own for its value."""
    loss = fitjax.least_squares(fitjax.line)
    data = fitjax.datasets.line()
    starts = jnp.asarray([[0.0, 0.0], [1.0, -1.0]])
    before = fitjax.trace_count()
    first = fitjax.fit(loss, make(0.05), starts, data, steps=30)
    again = fitjax.fit(loss, make(0.05), starts, data, steps=30)
    assert fitjax.trace_count() - before == 1
    np.testing.assert_array_equal(again.params, first.params)
    other = fitjax.fit(loss, make(0.2), starts, data, steps=30)  # another value: another program
    assert fitjax.trace_count() - before == 2
    # float32 rounding: the clipped momentum case moves by 5e-4 between optax run eagerly,
    # optax jitted and fit (each as far from float64); the two rates lie 20% apart
    for lr, got in ((0.05, first), (0.2, other)):
        for i in range(2):
            ref = _optax_reference(make(lr), loss, starts[i], data, 30)
            np.testing.assert_allclose(got.params[i], ref, rtol=1e-3, atol=1e-6)


@pytest.mark.loose_promotion  # optax's own code mixes Python floats, ints and floats
def test_an_optimizer_holding_an_array_is_compiled_for_each_object():
    """An array held by the optimizer's closures is compared by identity: never shared
    by two optimizers, so a changed value is never run by an old program."""
    loss = fitjax.least_squares(fitjax.line)
    data = fitjax.datasets.line()
    starts = jnp.zeros((2, 2))
    before = fitjax.trace_count()
    a = fitjax.fit(loss, optax.sgd(jnp.asarray(0.01)), starts, data, steps=5)
    b = fitjax.fit(loss, optax.sgd(jnp.asarray(0.02)), starts, data, steps=5)
    assert fitjax.trace_count() - before == 2
    assert not np.allclose(a.params, b.params)


def test_sweep_grids_an_injected_optax_optimizer():
    out = fitjax.sweep(
        fitjax.least_squares(fitjax.line),
        optax.inject_hyperparams(optax.sgd)(learning_rate=0.01, momentum=0.5),
        jnp.zeros((2, 2)),
        fitjax.datasets.line(),
        steps=10,
        grid={"learning_rate": [0.001, 0.01], "momentum": [0.0, 0.9]},
    )
    assert out.result.loss.shape == (2, 2, 2)
    assert len(np.unique(np.asarray(out.result.loss[:, :, 0]))) == 4


def test_a_plain_optax_optimizer_cannot_take_per_run_values_and_says_how():
    with pytest.raises(TypeError, match=r"optax.inject_hyperparams\(optax.adam\)"):
        fitjax.fit(
            fitjax.least_squares(fitjax.line),
            optax.adam(0.1),
            jnp.zeros((2, 2)),
            fitjax.datasets.line(),
            steps=3,
            hyperparams={"learning_rate": [0.1, 0.2]},
        )


def test_a_grid_that_is_not_a_mapping_is_refused():
    with pytest.raises(TypeError, match=r"grid must be a mapping.*list"):
        fitjax.sweep(
            fitjax.least_squares(fitjax.line),
            fitjax.gd(0.1),
            jnp.zeros((2, 2)),
            fitjax.datasets.line(),
            steps=3,
            grid=[("learning_rate", [0.1])],
        )


def test_adding_an_optimizer_is_one_rule():
    """A user's own rule, built the one way every fitjax optimizer is built, sweeps in fit."""

    def sign_step(g, inner, hp, lr, t):
        return jax.tree.map(lambda g: -lr(t) * jnp.sign(g), g), inner

    rule = fitjax.Rule(
        "signgd",
        sign_step,
        lambda p: optax.EmptyState(),
        (fitjax.Hyperparam("learning_rate", lambda name, v: None),),
    )
    opt = fitjax.build(rule, learning_rate=0.1)
    u, _ = opt.update(G, opt.init(P), P)
    np.testing.assert_allclose(u, -0.1 * jnp.sign(G))
    res = fitjax.fit(
        fitjax.least_squares(fitjax.line),
        opt,
        jnp.zeros((2, 2)),
        fitjax.datasets.line(),
        steps=5,
        hyperparams={"learning_rate": [0.0, 0.1]},
    )
    np.testing.assert_array_equal(res.params[0], 0.0)
    assert float(jnp.abs(res.params[1]).max()) > 0
