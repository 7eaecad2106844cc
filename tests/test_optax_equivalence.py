"""Each fitjax optimizer against its optax counterpart (or a NumPy reference), step by step.

Both sides are driven by hand: the gradient is ``jax.grad`` of the loss at each side's
own parameters, the update goes through ``optax.apply_updates``, and the parameters
are compared after every one of at least 100 steps, in float64, to 1e-10. Two
problems: the 2-parameter Gabor fit of the lecture (w = 32, 30 points) and a small
MLP, whose parameters are a pytree (dict of lists of dicts).

The relations themselves (``momentum(α, β) = sgd(α(1−β), momentum=β)`` and so on) are
derived in the docstrings of ``fitjax/optim/rules.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _problems import gabor_grad_numpy

import fitjax
from fitjax.engine import sampler as _sampler

STEPS = 100
TOL = dict(rtol=1e-10, atol=1e-10)
GABOR_W = fitjax.GABOR_W_NOTEBOOK


# ----------------------------------------------------------------------------- problems


def gabor_problem() -> dict[str, Any]:
    x, y = fitjax.datasets.gabor()
    return dict(
        loss=fitjax.least_squares(fitjax.Gabor(GABOR_W)),
        data=(x, y),
        params0=jnp.array([-1.5, 8.5]),
        lr=0.01,
        adam_lr=0.05,
        plateau_lr=0.2,
    )


def mlp_problem() -> dict[str, Any]:
    data = fitjax.datasets.synthetic_regression(jax.random.key(0), 32)
    return dict(
        loss=fitjax.least_squares(fitjax.mlp),
        data=data,
        params0=fitjax.init_mlp(jax.random.key(1), [1, 8, 8, 1]),
        lr=0.01,
        adam_lr=0.01,
        plateau_lr=0.05,
    )


PROBLEMS = {"gabor": gabor_problem, "mlp": mlp_problem}


# ----------------------------------------------------------------------------- driving by hand


# Compiled once per loss / update function (fitjax's update functions compare equal by
# value, so equal rules share one), to keep the many hand-driven steps cheap.
_jitted = functools.cache(jax.jit)
_apply_updates = jax.jit(optax.apply_updates)
_indices_at = jax.jit(_sampler.indices_at, static_argnums=(2, 3))


@functools.cache
def _jitted_value_and_grad(loss: Callable) -> Callable:
    return jax.jit(jax.value_and_grad(loss))


def descend(
    opt: optax.GradientTransformation,
    loss: Callable,
    params0: Any,
    batch_at: Callable[[int], Any],
    steps: int = STEPS,
    *,
    pass_value: bool = False,
) -> tuple[list[Any], list[Any], list[Any]]:
    """Apply ``opt`` by hand for ``steps`` steps; returns (params after each step, states, grads).

    ``params[t]`` are the parameters after ``t + 1`` updates; ``grads[t]`` the gradient that
    step ``t`` received (at ``params[t - 1]``, or ``params0`` for ``t = 0``).
    """
    value_and_grad, update = _jitted_value_and_grad(loss), _jitted(opt.update)
    params, state = params0, opt.init(params0)
    trajectory, states, grads = [], [], []
    for t in range(steps):
        value, g = value_and_grad(params, batch_at(t))
        extra = {"value": value} if pass_value else {}
        updates, state = update(g, state, params, **extra)
        params = _apply_updates(params, updates)
        trajectory.append(params)
        states.append(state)
        grads.append(g)
    return trajectory, states, grads


def assert_close(actual: Any, expected: Any, what: str) -> None:
    """Pytrees equal to 1e-10 leaf by leaf."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected), what
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), err_msg=what, **TOL)


def stack(trees: list[Any]) -> Any:
    """A list of pytrees as one pytree of NumPy arrays with a leading step axis."""
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *trees)


def assert_same_trajectory(ours: Any, ref: Any, what: str = "params") -> None:
    """Two trajectories (lists of pytrees, or pytrees with a leading step axis) agree at every step."""
    ours = stack(ours) if isinstance(ours, list) else jax.tree.map(np.asarray, ours)
    ref = stack(ref) if isinstance(ref, list) else jax.tree.map(np.asarray, ref)
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    for a, e in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        assert a.shape == e.shape and a.shape[0] >= 100, (a.shape, e.shape)
        bad = ~np.isclose(a, e, **TOL).reshape(a.shape[0], -1).all(axis=1)
        first = int(np.argmax(bad)) if bad.any() else None
        np.testing.assert_allclose(a, e, err_msg=f"{what}: first mismatch after step {first}", **TOL)
        assert np.isfinite(a).all(), f"{what} not finite"


def full_batch(data: Any) -> Callable[[int], Any]:
    return lambda t: data


def n_examples(data: Any) -> int:
    return int(jax.tree.leaves(data)[0].shape[0])


def minibatch(data: Any, key: jax.Array, batch_size: int) -> Callable[[int], Any]:
    """The mini-batch of step ``t`` taken with the sampler's own indices."""
    n = n_examples(data)
    return lambda t: _sampler.take(data, _indices_at(key, jnp.asarray(t), n, batch_size))


def moved(ours: list[Any], params0: Any, scale: float = 1e-3) -> None:
    """The comparison means something only if the parameters actually moved."""
    diffs = [
        np.asarray(a) - np.asarray(b)
        for a, b in zip(jax.tree.leaves(ours[-1]), jax.tree.leaves(params0), strict=True)
    ]
    dist = np.sqrt(sum(float(np.sum(d * d)) for d in diffs))
    assert dist > scale, f"parameters moved only {dist:.2e}"


# ----------------------------------------------------------------------------- plain rules


@pytest.mark.parametrize("problem", PROBLEMS)
def test_gd_equals_optax_sgd(x64, problem):
    p = PROBLEMS[problem]()
    ours, _, _ = descend(fitjax.gd(p["lr"]), p["loss"], p["params0"], full_batch(p["data"]))
    ref, _, _ = descend(optax.sgd(p["lr"]), p["loss"], p["params0"], full_batch(p["data"]))
    moved(ours, p["params0"])
    assert_same_trajectory(ours, ref)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_sgd_on_the_samplers_minibatches_equals_optax_sgd(x64, problem):
    p = PROBLEMS[problem]()
    key, batch_size = jax.random.key(42), 5
    batches = minibatch(p["data"], key, batch_size)
    ours, _, _ = descend(fitjax.sgd(p["lr"]), p["loss"], p["params0"], batches)
    ref, _, _ = descend(optax.sgd(p["lr"]), p["loss"], p["params0"], batches)
    moved(ours, p["params0"])
    assert_same_trajectory(ours, ref)


def _run(tree: Any, r: int) -> Any:
    return jax.tree.map(lambda a: a[r], tree)


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("shared_order", [False, True])
def test_fit_with_batch_size_reproduces_the_hand_loop(x64, problem, shared_order):
    """Run r of ``fit`` draws its batches with ``fold_in(key, r)`` (or ``key`` with shared_order)."""
    p = PROBLEMS[problem]()
    key, batch_size, n_runs = jax.random.key(7), 5, 2
    starts = jax.tree.map(
        jnp.asarray, stack([jax.tree.map(lambda a, r=r: a + 0.1 * r, p["params0"]) for r in range(n_runs)])
    )
    res = fitjax.fit(
        p["loss"],
        fitjax.sgd(p["lr"]),
        starts,
        p["data"],
        steps=STEPS,
        key=key,
        batch_size=batch_size,
        shared_order=shared_order,
        record_every=1,
        record_params=True,
    )
    recorded = jax.tree.map(np.asarray, res.history.params)  # (runs, steps, ...): params before each step
    for r in range(n_runs):
        run_key = key if shared_order else jax.random.fold_in(key, r)
        hand, _, _ = descend(
            fitjax.sgd(p["lr"]), p["loss"], _run(starts, r), minibatch(p["data"], run_key, batch_size)
        )
        # fit's record before step t + 1 (and its final params) are the hand loop's params after step t
        fit_traj = jax.tree.map(
            lambda a, f, r=r: np.concatenate([a[r, 1:], np.asarray(f)[r][None]]), recorded, res.params
        )
        assert_same_trajectory(fit_traj, hand, f"fit run {r}")


@pytest.mark.parametrize("problem", PROBLEMS)
def test_momentum_equals_optax_sgd_with_scaled_learning_rate(x64, problem):
    p = PROBLEMS[problem]()
    alpha, beta = p["lr"], 0.8
    ours, s_ours, _ = descend(fitjax.momentum(alpha, beta), p["loss"], p["params0"], full_batch(p["data"]))
    ref, s_ref, _ = descend(
        optax.sgd(alpha * (1 - beta), momentum=beta), p["loss"], p["params0"], full_batch(p["data"])
    )
    moved(ours, p["params0"])
    assert_same_trajectory(ours, ref)
    for t, (a, b) in enumerate(zip(s_ours, s_ref, strict=True)):
        assert_close(
            a.inner_state.mu,
            jax.tree.map(lambda tr: (1 - beta) * tr, b[0].trace),
            f"m vs (1−β)·trace, step {t}",
        )


@pytest.mark.loose_promotion  # optax's own code mixes Python floats, ints and floats
@pytest.mark.parametrize("problem", PROBLEMS)
def test_normalized_equals_optax_adam_without_averaging(x64, problem):
    p = PROBLEMS[problem]()
    alpha, eps = 1e-3, 1e-8
    ours, _, _ = descend(fitjax.normalized(alpha, eps), p["loss"], p["params0"], full_batch(p["data"]))
    ref, _, _ = descend(
        optax.adam(alpha, b1=0.0, b2=0.0, eps=eps), p["loss"], p["params0"], full_batch(p["data"])
    )
    moved(ours, p["params0"], scale=1e-2)
    assert_same_trajectory(ours, ref)


@pytest.mark.loose_promotion  # optax's own code mixes Python floats, ints and floats
@pytest.mark.parametrize("problem", PROBLEMS)
def test_adam_equals_optax_adam_with_states(x64, problem):
    p = PROBLEMS[problem]()
    alpha, beta, gamma, eps = p["adam_lr"], 0.9, 0.99, 1e-8
    ours, s_ours, _ = descend(
        fitjax.adam(alpha, beta, gamma, eps), p["loss"], p["params0"], full_batch(p["data"])
    )
    ref, s_ref, _ = descend(
        optax.adam(alpha, b1=beta, b2=gamma, eps=eps), p["loss"], p["params0"], full_batch(p["data"])
    )
    moved(ours, p["params0"])
    assert_same_trajectory(ours, ref)
    for t, (a, b) in enumerate(zip(s_ours, s_ref, strict=True)):
        assert_close(a.inner_state.mu, b[0].mu, f"m vs mu, step {t}")
        assert_close(a.inner_state.nu, b[0].nu, f"v vs nu, step {t}")


@pytest.mark.parametrize("problem", PROBLEMS)
def test_nesterov_classical_equals_optax_nesterov(x64, problem):
    p = PROBLEMS[problem]()
    alpha, mu = p["lr"], 0.8
    ours, s_ours, _ = descend(
        fitjax.nesterov_classical(alpha, mu), p["loss"], p["params0"], full_batch(p["data"])
    )
    ref, s_ref, _ = descend(
        optax.sgd(alpha, momentum=mu, nesterov=True), p["loss"], p["params0"], full_batch(p["data"])
    )
    moved(ours, p["params0"])
    assert_same_trajectory(ours, ref)
    for t, (a, b) in enumerate(zip(s_ours, s_ref, strict=True)):
        assert_close(a.inner_state.trace, b[0].trace, f"b vs trace, step {t}")


# ----------------------------------------------------------------------------- the lecture's Nesterov


def nesterov_numpy(phi0, x, y, alphas, beta):
    """The lecture's two equations in float64 NumPy, the gradient by hand; returns φ_1 … φ_T."""
    phi, m = np.array(phi0, dtype=np.float64), np.zeros(2)
    out = []
    for alpha in alphas:
        m = beta * m + (1 - beta) * gabor_grad_numpy(phi - alpha * m, x, y)  # m ← β m + (1−β) ∇L(φ − α m)
        phi = phi - alpha * m  # φ ← φ − α m
        out.append(phi)
    return out


def test_numpy_gabor_gradient_is_the_derivative(x64):
    x, y = (np.asarray(a) for a in fitjax.datasets.gabor())
    loss = fitjax.least_squares(fitjax.Gabor(GABOR_W))
    phi, h = np.array([-1.5, 8.5]), 1e-6
    central = [
        (float(loss(jnp.asarray(phi + h * e), (x, y))) - float(loss(jnp.asarray(phi - h * e), (x, y))))
        / (2 * h)
        for e in np.eye(2)
    ]
    np.testing.assert_allclose(gabor_grad_numpy(phi, x, y), central, rtol=1e-7)


def _check_nesterov_against_numpy(opt, alphas, beta):
    x, y = fitjax.datasets.gabor()
    loss = fitjax.least_squares(fitjax.Gabor(GABOR_W))
    phi0 = jnp.array([-1.5, 8.5])
    expected = np.stack(nesterov_numpy(phi0, np.asarray(x), np.asarray(y), alphas, beta))
    assert float(np.linalg.norm(expected[-1] - np.asarray(phi0))) > 1e-2
    psi, states, _ = descend(opt, loss, phi0, full_batch((x, y)), steps=len(alphas))
    assert_same_trajectory(
        [opt.report(p, s) for p, s in zip(psi, states, strict=True)], expected, "φ from Optimizer.report"
    )
    assert_same_trajectory(
        [fitjax.reported_params(opt, p, s) for p, s in zip(psi, states, strict=True)],
        expected,
        "φ from reported_params",
    )
    # the look-ahead coordinates are not φ: the test is not comparing ψ with φ by accident
    assert not np.allclose(np.asarray(psi[5]), expected[5], rtol=1e-6)
    res = fitjax.fit(loss, opt, phi0[None], (x, y), steps=len(alphas), record_every=1, record_params=True)
    np.testing.assert_allclose(res.history.params[0, 0], phi0, **TOL)
    from_fit = np.concatenate([np.asarray(res.history.params[0, 1:]), np.asarray(res.params)])
    assert_same_trajectory(from_fit, expected, "φ from fit's history and final params")
    # the engine reports the loss at φ, not at the look-ahead
    np.testing.assert_allclose(res.loss[0], loss(jnp.asarray(expected[-1]), (x, y)), **TOL)


def test_nesterov_equals_the_lectures_equations_in_numpy(x64):
    alpha, beta = 0.01, 0.9
    _check_nesterov_against_numpy(fitjax.nesterov(alpha, beta), [alpha] * STEPS, beta)


def test_nesterov_with_a_schedule_equals_numpy_with_alpha_t(x64):
    alpha0, rate, every, beta = 0.02, 0.5, 40, 0.8

    def schedule(t):
        # optax.exponential_decay would do, but it computes in float32 for an int32 count
        # even under x64 (and its jitted and eager values differ in the last float32 bit),
        # which is not what is under test here; this is the same decay in float64.
        return alpha0 * rate ** (jnp.asarray(t, jnp.float64) / every)

    alphas = [alpha0 * rate ** (t / every) for t in range(STEPS)]  # α_t, written out independently
    _check_nesterov_against_numpy(fitjax.nesterov(schedule, beta), alphas, beta)


def test_nesterov_with_a_float32_schedule_in_float64(x64):
    """A schedule may return float32 α_t for float64 parameters (optax's own decays do under x64).

    The optimizer must still follow the lecture's equations with those α_t exactly: α_t and
    α_{t+1} are combined in the parameters' dtype, not in the schedule's.
    """
    beta = 0.8
    table = np.float32(0.02) * np.float32(0.5) ** (np.arange(STEPS + 1, dtype=np.float32) / 40)
    schedule = lambda t: jnp.asarray(table)[t]  # a lookup: the same float32 values jitted or not
    assert schedule(3).dtype == jnp.float32
    _check_nesterov_against_numpy(fitjax.nesterov(schedule, beta), [float(a) for a in table[:STEPS]], beta)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_nesterov_step_is_the_derived_optax_trace_combination(x64, problem):
    """ψ_{t+1} − ψ_t = −(α(1−β)/β)(g_t + (2β−1) b_{t+1}), b the optax trace of the look-ahead gradients."""
    p = PROBLEMS[problem]()
    alpha, beta = p["lr"], 0.7
    psi, _, grads = descend(fitjax.nesterov(alpha, beta), p["loss"], p["params0"], full_batch(p["data"]))
    trace = optax.trace(decay=beta)
    state = trace.init(p["params0"])
    before = p["params0"]
    c = alpha * (1 - beta) / beta
    for t, (g, after) in enumerate(zip(grads, psi, strict=True)):
        b, state = trace.update(g, state)
        predicted = jax.tree.map(lambda s, g, b: s - c * (g + (2 * beta - 1) * b), before, g, b)
        assert_close(after, predicted, f"ψ after step {t}")
        before = after
    moved(psi, p["params0"])


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("problem", PROBLEMS)
def test_gd_with_exponential_decay_equals_optax_sgd(x64, problem):
    p = PROBLEMS[problem]()
    schedule = optax.exponential_decay(2 * p["lr"], transition_steps=30, decay_rate=0.3)
    ours, _, _ = descend(fitjax.gd(schedule), p["loss"], p["params0"], full_batch(p["data"]))
    ref, _, _ = descend(optax.sgd(schedule), p["loss"], p["params0"], full_batch(p["data"]))
    moved(ours, p["params0"])
    assert_same_trajectory(ours, ref)


@pytest.mark.loose_promotion  # optax's own code mixes Python floats, ints and floats
@pytest.mark.parametrize("problem", PROBLEMS)
def test_adam_with_cosine_decay_equals_optax_adam(x64, problem):
    p = PROBLEMS[problem]()
    schedule = optax.cosine_decay_schedule(p["adam_lr"], decay_steps=STEPS, alpha=0.1)
    ours, _, _ = descend(fitjax.adam(schedule), p["loss"], p["params0"], full_batch(p["data"]))
    ref, _, _ = descend(optax.adam(schedule), p["loss"], p["params0"], full_batch(p["data"]))
    moved(ours, p["params0"])
    assert_same_trajectory(ours, ref)


# ----------------------------------------------------------------------------- loss-dependent rate

PLATEAU = dict(factor=0.5, patience=3, rtol=1e-2, atol=1e-6, cooldown=2, min_scale=0.02)


@pytest.mark.loose_promotion  # optax's own code mixes Python floats, ints and floats
@pytest.mark.parametrize("problem", PROBLEMS)
def test_reduce_on_plateau_equals_optax_contrib(x64, problem):
    p = PROBLEMS[problem]()
    # a step too large for the loss to keep improving, so the scale is cut again and again
    alpha = p["plateau_lr"]
    ours_opt = optax.chain(fitjax.gd(alpha), fitjax.reduce_on_plateau(**PLATEAU))
    ref_opt = optax.chain(fitjax.gd(alpha), optax.contrib.reduce_on_plateau(**PLATEAU))
    ours, s_ours, _ = descend(ours_opt, p["loss"], p["params0"], full_batch(p["data"]), pass_value=True)
    ref, s_ref, _ = descend(ref_opt, p["loss"], p["params0"], full_batch(p["data"]), pass_value=True)
    assert_same_trajectory(ours, ref)
    a, b = stack([s[1].inner_state for s in s_ours]), stack([s[1] for s in s_ref])
    for field in ("scale", "best_value", "plateau_count", "cooldown_count"):
        first = np.flatnonzero(getattr(a, field) != getattr(b, field))
        assert first.size == 0, f"{field} differs from step {first[:1]} on"
    # the comparison covered cuts, cooldowns and the floor
    assert len(set(a.scale)) >= 6, f"scales seen: {sorted(set(a.scale))}"
    assert a.cooldown_count.max() == PLATEAU["cooldown"]
    assert a.scale.min() == np.float64(PLATEAU["min_scale"]), f"scales seen: {sorted(set(a.scale))}"
