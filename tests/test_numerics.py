"""Numerical edge cases: overflow, exactly zero gradients, low and high precision, extreme step sizes.

What fitjax promises (``docs/errors.md``): a run whose loss or parameters stop being finite is
flagged with the step (``diverged_step``) and keeps its last finite parameters, and no run changes
another run's numbers, bit for bit. Each case is checked against a NumPy reference of the same rule
(float32 where the overflow step is the point, float64 elsewhere), and every affected batch against
the same batch with the bad runs replaced by good ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _problems import LINE

import fitjax

STEPS = 60


def _line_data(dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    x, y = fitjax.datasets.line()
    return np.asarray(x, dtype), np.asarray(y, dtype)


def _line_grad(phi: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The line's least-squares loss and gradient, in the dtype of the inputs."""
    r = phi[0] + phi[1] * x - y
    two = phi.dtype.type(2)
    return np.sum(r * r), two * np.array([np.sum(r), np.sum(r * x)], dtype=phi.dtype)


def _gd_divergence(phi0, lr, steps: int, check_loss: bool) -> tuple[int, np.ndarray]:
    """Gradient descent on the line in float32, with the engine's rule for flagging a run.

    At step ``t`` the run is flagged if ``φ_{t+1}`` is not finite, or (when the loss is
    computed at every step, ``check_loss``) if ``L[φ_t]`` is not; it then keeps ``φ_t``. A loss
    still non-finite after the last step is flagged at ``steps``. Returns ``(step or -1, φ)``.
    """
    x, y = _line_data()
    phi, lr = np.asarray(phi0, np.float32), np.float32(lr)
    with np.errstate(all="ignore"):
        for t in range(steps):
            loss, g = _line_grad(phi, x, y)
            new = phi - lr * g
            if (check_loss and not np.isfinite(loss)) or not np.isfinite(new).all():
                return t, phi
            phi = new
        return (steps if not np.isfinite(_line_grad(phi, x, y)[0]) else -1), phi


def _assert_runs_equal(a: fitjax.FitResult, b: fitjax.FitResult, runs) -> None:
    """Runs ``runs`` of ``a`` and ``b`` are identical, bit for bit, in everything they return."""
    runs = np.asarray(runs)
    for x, y in zip(
        jax.tree.leaves((a.params, a.loss, a.diverged_step, a.opt_state.inner_state)),
        jax.tree.leaves((b.params, b.loss, b.diverged_step, b.opt_state.inner_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(x)[runs], np.asarray(y)[runs])
    if a.history is not None:
        for x, y in zip(jax.tree.leaves(a.history[1:]), jax.tree.leaves(b.history[1:]), strict=True):
            np.testing.assert_array_equal(np.asarray(x)[runs], np.asarray(y)[runs])


# ----------------------------------------------------------------------------- overflow


@pytest.mark.parametrize("record_every", [None, 1], ids=["final-values-only", "loss-recorded-every-step"])
def test_runs_that_overflow_are_flagged_at_the_reference_step_and_the_others_are_untouched(record_every):
    starts = fitjax.inits.uniform(jax.random.key(6), 8, [-1.0, -1.0], [1.0, 1.0])
    good = jnp.full(8, 0.01)
    # 0.2 grows slowly past float32's range, 1e30 (a very large step) overflows at once, 0.06 grows
    # (|1 − α·λ_max| > 1) but stays finite for 60 steps: it must not be flagged.
    lrs = good.at[1].set(0.2).at[4].set(1e30).at[6].set(0.06)
    kw = dict(steps=STEPS, record_every=record_every, keep_state=True)
    data = fitjax.datasets.line()
    base = fitjax.fit(LINE, fitjax.gd(0.01), starts, data, hyperparams={"learning_rate": good}, **kw)
    mixed = fitjax.fit(LINE, fitjax.gd(0.01), starts, data, hyperparams={"learning_rate": lrs}, **kw)

    # Recording the loss does not change where a run is flagged: both variants flag at the
    # reference step where the gradient or the parameters first stop being finite.
    expected = [_gd_divergence(starts[i], lrs[i], STEPS, check_loss=False) for i in range(8)]
    np.testing.assert_array_equal(mixed.diverged_step, [step for step, _ in expected])
    assert set(np.flatnonzero(mixed.diverged)) == {1, 4}
    for i in (1, 4, 6):  # the kept parameters are the reference's last finite ones
        np.testing.assert_allclose(mixed.params[i], expected[i][1], rtol=1e-5)
    assert np.isfinite(np.asarray(mixed.params)).all() and not base.diverged.any()
    _assert_runs_equal(mixed, base, [0, 2, 3, 5, 7])
    # without the state kept, the replay reads it from the program's packed arrays: the same runs
    unkept = fitjax.fit(
        LINE, fitjax.gd(0.01), starts, data, hyperparams={"learning_rate": lrs}, **kw | {"keep_state": False}
    )
    assert unkept.opt_state is None
    for x, y in zip(jax.tree.leaves(unkept[:4]), jax.tree.leaves(mixed[:4]), strict=True):
        np.testing.assert_array_equal(x, y)
    if record_every is not None:  # the record shows the loss overflowing first, then stays put
        history = np.asarray(mixed.history.loss)
        t = int(mixed.diverged_step[1])
        first_inf = int(np.argmax(~np.isfinite(history[1])))
        assert 0 < first_inf <= t and np.isfinite(history[1, :first_inf]).all()
        np.testing.assert_array_equal(history[1, t:], history[1, t])


def test_a_loss_that_overflows_while_the_parameters_stay_finite_is_flagged():
    """L = 1e30·Σφ² is inf in float32 at φ = 1e5 while its gradient 2e30·φ is not.

    Divergence is judged on the gradient and the parameters, which stay finite here, so the run
    keeps stepping as plain gradient descent whether or not its (infinite) loss is recorded,
    and is flagged at the end (step ``steps``) for its non-finite final loss.
    """

    def steep(p, batch=None):
        del batch
        return 1e30 * jnp.sum(p * p)

    starts = jnp.array([[1e5, -1e5], [1.0, 2.0]], jnp.float32)
    lr = 1e-37  # each step multiplies φ by 1 − 2e-7: φ stays near 1e5, so the loss stays inf
    steps = 10
    recorded = fitjax.fit(steep, fitjax.gd(lr), starts, None, steps=steps, record_every=1)
    final_only = fitjax.fit(steep, fitjax.gd(lr), starts, None, steps=steps)
    np.testing.assert_array_equal(recorded.diverged_step, [steps, -1])
    np.testing.assert_array_equal(final_only.diverged_step, [steps, -1])
    np.testing.assert_array_equal(recorded.params, final_only.params)
    assert np.isinf(np.asarray(recorded.history.loss)[0]).all()
    phi = np.asarray(starts[0])
    for _ in range(steps):
        phi = phi - np.float32(lr) * (np.float32(2e30) * phi)
    assert not np.array_equal(phi, starts[0])
    np.testing.assert_allclose(final_only.params[0], phi, rtol=1e-6)
    np.testing.assert_allclose(recorded.params[1], final_only.params[1], rtol=1e-6)  # the finite run


def test_a_sweep_flags_only_the_settings_that_overflow():
    starts = fitjax.inits.uniform(jax.random.key(2), 3, [-1.0, -1.0], [1.0, 1.0])
    bad = fitjax.sweep(
        LINE,
        fitjax.momentum(0.01),
        starts,
        fitjax.datasets.line(),
        steps=STEPS,
        grid={"learning_rate": jnp.array([0.01, 1e6, 0.02]), "beta": jnp.array([0.0, 0.9])},
    )
    good = fitjax.sweep(
        LINE,
        fitjax.momentum(0.01),
        starts,
        fitjax.datasets.line(),
        steps=STEPS,
        grid={"learning_rate": jnp.array([0.01, 0.015, 0.02]), "beta": jnp.array([0.0, 0.9])},
    )
    flagged = np.asarray(bad.result.diverged)
    assert flagged[1].all() and not flagged[[0, 2]].any()
    for name in ("params", "loss", "diverged_step"):
        np.testing.assert_array_equal(
            np.asarray(getattr(bad.result, name))[[0, 2]], np.asarray(getattr(good.result, name))[[0, 2]]
        )
    # with β = 0 momentum is gradient descent: the flagged step is the float32 reference's
    for i in range(3):
        assert bad.result.diverged_step[1, 0, i] == _gd_divergence(starts[i], 1e6, STEPS, False)[0]


# ----------------------------------------------------------------------------- exactly zero gradients


def _toy_grad(phi: np.ndarray) -> np.ndarray:
    """∂/∂φ of the lecture's toy loss 1 − exp(−2φ1²)·exp(−(φ0 − 0.7)²/8), in float64."""
    e = np.exp(-2 * phi[1] ** 2) * np.exp(-((phi[0] - 0.7) ** 2) / 8)
    return np.array([e * (phi[0] - 0.7) / 4, 4 * phi[1] * e])


def _reference_adam(phi, lr, beta, gamma, eps, steps):
    """The lecture's Adam in float64, with 0/0 taken as 0; returns φ_0 .. φ_steps."""
    phi = np.asarray(phi, np.float64)
    m, v, path = np.zeros_like(phi), np.zeros_like(phi), [phi]
    for t in range(steps):
        g = _toy_grad(phi)
        m, v = beta * m + (1 - beta) * g, gamma * v + (1 - gamma) * g * g
        m_hat, v_hat = m / (1 - beta ** (t + 1)), v / (1 - gamma ** (t + 1))
        den = np.sqrt(v_hat) + eps
        with np.errstate(invalid="ignore"):
            phi = phi - lr * np.where((m_hat == 0) & (den == 0), 0.0, m_hat / den)
        path.append(phi)
    return np.array(path)


@pytest.mark.parametrize(
    "optimizer, reference",
    [
        # normalized = Adam with β = γ = 0: φ0 steps by α towards 0.7, then bounces
        (fitjax.normalized(0.1, eps=0.0), dict(lr=0.1, beta=0.0, gamma=0.0, eps=0.0)),
        (fitjax.adam(0.05, eps=0.0), dict(lr=0.05, beta=0.9, gamma=0.999, eps=0.0)),
    ],
    ids=["normalized", "adam"],
)
def test_eps_zero_and_a_component_whose_gradient_is_exactly_zero(x64, optimizer, reference):
    """At φ1 = 0 the toy loss's ∂L/∂φ1 is exactly 0 at every step: the rule's m/(√v + ε) is 0/0.

    fitjax takes 0/0 as 0 (its value for every ε > 0), so φ1 stays exactly 0 and φ0 follows the
    float64 reference; nothing is flagged.
    """
    start = np.array([[0.0, 0.0]])
    assert _toy_grad(start[0])[1] == 0.0
    res = fitjax.fit(
        fitjax.toy_loss, optimizer, jnp.asarray(start), None, steps=25, record_every=1, record_params=True
    )
    path = _reference_adam(start[0], steps=25, **reference)
    assert res.diverged_step[0] == -1
    np.testing.assert_array_equal(np.asarray(res.history.params)[0, :, 1], 0.0)
    np.testing.assert_allclose(res.history.params[0], path[:-1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(res.params[0], path[-1], rtol=1e-12, atol=1e-15)
    assert (path[:, 0] >= 0.7).any()  # φ0 does travel from 0 to (normalized: onto) the minimum's 0.7


MINIMUM = jnp.array([0.7, 0.0], jnp.float32)  # the toy loss's minimum, where ∂L/∂φ = 0 exactly


@pytest.mark.parametrize(
    "optimizer",
    [
        fitjax.gd(0.1),
        fitjax.momentum(0.1),
        fitjax.nesterov(0.1),
        fitjax.nesterov_classical(0.1),
        fitjax.normalized(0.1, eps=0.0),
        fitjax.adam(0.1, eps=0.0),
        fitjax.backtracking_armijo(),
        fitjax.gd_line_search(max_iter=3),
    ],
    ids=["gd", "momentum", "nesterov", "nesterov_classical", "normalized", "adam", "armijo", "line_search"],
)
def test_a_run_started_at_a_zero_gradient_stays_exactly_put(optimizer):
    assert not np.asarray(jax.grad(fitjax.toy_loss)(MINIMUM)).any()
    starts = jnp.stack([MINIMUM, jnp.array([0.3, 0.2])])
    res = fitjax.fit(fitjax.toy_loss, optimizer, starts, None, steps=10, keep_state=True)
    np.testing.assert_array_equal(res.params[0], MINIMUM)
    assert res.loss[0] == 0.0 and res.diverged_step[0] == -1
    assert res.diverged_step[1] == -1 and not np.array_equal(res.params[1], starts[1])


@pytest.mark.loose_promotion  # optax's own code mixes Python floats, ints and floats
def test_optax_adam_with_eps_zero_gives_nan_there_and_only_that_run_is_flagged():
    """The same 0/0 through an optax optimizer (which does not guard it) is a NaN: the run is
    flagged at step 0, keeps its start, and the other runs are those of a batch without it."""
    starts = jnp.array([[0.0, 0.0], [0.3, 0.2], [-0.5, 0.4]])
    clean = starts.at[0].set(jnp.array([0.1, 0.1]))
    opt = optax.adam(0.05, eps=0.0)
    bad = fitjax.fit(fitjax.toy_loss, opt, starts, None, steps=20, record_every=5, keep_state=True)
    good = fitjax.fit(fitjax.toy_loss, opt, clean, None, steps=20, record_every=5, keep_state=True)
    np.testing.assert_array_equal(bad.diverged_step, [0, -1, -1])
    np.testing.assert_array_equal(bad.params[0], starts[0])

    def outputs(res):
        return jax.tree.leaves((res.params, res.loss, res.history.loss, res.opt_state))

    for a, b in zip(outputs(bad), outputs(good), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[1:], np.asarray(b)[1:])
    guarded = fitjax.fit(fitjax.toy_loss, fitjax.adam(0.05, eps=0.0), starts, None, steps=20)
    assert not guarded.diverged.any()


# ----------------------------------------------------------------------------- precision


LOW = {  # settings bfloat16 and float16 both hold (see docs/errors.md)
    "gd": lambda: fitjax.gd(0.01),
    "momentum": lambda: fitjax.momentum(0.01, beta=0.9),
    "nesterov": lambda: fitjax.nesterov(0.01, beta=0.9),
    "nesterov_classical": lambda: fitjax.nesterov_classical(0.01, momentum=0.5),
    # a fixed α bounces by α around the minimum; a decaying one settles to the dtype's resolution
    "normalized": lambda: fitjax.normalized(optax.exponential_decay(0.05, 100, 0.5), eps=0.0),
    "adam": lambda: fitjax.adam(0.02, beta=0.9, gamma=0.99, eps=1e-3),
}


@pytest.mark.loose_promotion  # a loss written loosely: 16-bit parameters meet float32 data
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name", LOW)
def test_low_precision_parameters_keep_their_dtype_and_still_fit(name, dtype):
    """Parameters, the rule's state and recorded parameters stay in the low dtype; the fit lands
    within the dtype's resolution of the float64 least-squares solution."""
    x, y = _line_data(np.float64)
    solution = np.linalg.lstsq(np.stack([np.ones_like(x), x], axis=1), y, rcond=None)[0]
    starts = jnp.array([[0.0, 0.0], [1.5, -0.5], [0.2, 1.0]], dtype)
    res = fitjax.fit(
        LINE,
        LOW[name](),
        starts,
        fitjax.datasets.line(),
        steps=600,
        record_every=100,
        record_params=True,
        keep_state=True,
    )
    assert res.params.dtype == dtype and res.history.params.dtype == dtype
    floats = [a for a in jax.tree.leaves(res.opt_state.inner_state) if jnp.issubdtype(a.dtype, jnp.floating)]
    assert all(a.dtype == dtype for a in floats)  # the rule's state in the parameters' dtype
    held = jax.tree.leaves(res.opt_state.hyperparams)  # the hyperparameters exact, in float32
    assert held and all(a.dtype == jnp.float32 for a in held if jnp.issubdtype(a.dtype, jnp.floating))
    assert not res.diverged.any()
    # the steps stall once α·g is below half an ulp of φ: a few ulps from the solution
    ulps = float(jnp.finfo(dtype).eps) * np.abs(solution).max()
    np.testing.assert_allclose(
        np.asarray(res.params, np.float64), np.broadcast_to(solution, (3, 2)), rtol=0, atol=8 * ulps
    )


def test_float64_is_kept_end_to_end_and_matches_the_float64_reference(x64):
    x, y = (jnp.asarray(a, jnp.float64) for a in fitjax.datasets.line())
    starts = jnp.array([[1.6, -0.5], [0.0, 0.0], [-1.0, 2.0]], jnp.float64)
    opt = fitjax.adam(0.05, beta=0.8, gamma=0.99, eps=1e-10)
    res = fitjax.fit(LINE, opt, starts, (x, y), steps=30, record_every=1, record_params=True, keep_state=True)
    for leaf in (
        res.params,
        res.loss,
        res.history.loss,
        res.history.grad_norm,
        res.history.params,
        *jax.tree.leaves(res.opt_state.inner_state),
        *res.opt_state.hyperparams.values(),
    ):
        assert leaf.dtype == jnp.float64, leaf.dtype
    xn, yn = np.asarray(x), np.asarray(y)
    for i in range(3):
        phi, m, v = np.asarray(starts[i]), np.zeros(2), np.zeros(2)
        for t in range(30):
            loss, g = _line_grad(phi, xn, yn)
            np.testing.assert_allclose(res.history.params[i, t], phi, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(res.history.loss[i, t], loss, rtol=1e-12)
            np.testing.assert_allclose(res.history.grad_norm[i, t], np.linalg.norm(g), rtol=1e-12)
            m, v = 0.8 * m + 0.2 * g, 0.99 * v + 0.01 * g * g
            phi = phi - 0.05 * (m / (1 - 0.8 ** (t + 1))) / (np.sqrt(v / (1 - 0.99 ** (t + 1))) + 1e-10)
        np.testing.assert_allclose(res.params[i], phi, rtol=1e-12, atol=1e-14)
    # a sweep keeps float64 too, its grid included
    swept = fitjax.sweep(LINE, opt, starts, (x, y), steps=5, grid={"learning_rate": jnp.array([0.01, 0.05])})
    assert swept.grid["learning_rate"].dtype == jnp.float64 and swept.result.params.dtype == jnp.float64
    single = fitjax.fit(LINE, opt, starts, (x, y), steps=5)
    np.testing.assert_allclose(swept.result.params[1], single.params, rtol=1e-12)


# ----------------------------------------------------------------------------- extreme step sizes


def test_a_tiny_learning_rate_leaves_float32_parameters_exactly_unchanged():
    """α·g is far below half an ulp of φ, so φ − α·g rounds back to φ, as in float32 NumPy."""
    starts = fitjax.inits.uniform(jax.random.key(3), 5, [-1.0, -1.0], [1.0, 1.0])
    for opt in (fitjax.gd(1e-30), fitjax.adam(1e-30)):
        res = fitjax.fit(LINE, opt, starts, fitjax.datasets.line(), steps=20)
        np.testing.assert_array_equal(res.params, starts)
        at_start = jax.vmap(LINE, (0, None))(starts, fitjax.datasets.line())
        np.testing.assert_allclose(res.loss, at_start, rtol=1e-6)
        assert not res.diverged.any()
    x, y = _line_data()
    phi = np.asarray(starts[0])
    assert np.array_equal(phi - np.float32(1e-30) * _line_grad(phi, x, y)[1], phi)


def test_a_huge_learning_rate_for_adam_is_flagged_when_its_loss_overflows():
    """Adam's step is about α per component whatever the gradient, so α = 1e30 puts φ near 1e30 at
    step 0. The loss (≈ 1e60) overflows from step 1 on, but the gradient (≈ 1e31) and φ stay finite
    in float32, so the run keeps stepping and is flagged at the end for its non-finite loss."""
    starts = jnp.array([[0.5, 0.5], [1.0, -1.0], [0.1, 0.2]])
    lrs = jnp.array([0.01, 1e30, 0.01])
    res = fitjax.fit(
        LINE,
        fitjax.adam(0.01),
        starts,
        fitjax.datasets.line(),
        steps=20,
        record_every=1,
        hyperparams={"learning_rate": lrs},
        keep_state=True,
    )
    base = fitjax.fit(
        LINE,
        fitjax.adam(0.01),
        starts,
        fitjax.datasets.line(),
        steps=20,
        record_every=1,
        hyperparams={"learning_rate": jnp.full(3, 0.01)},
        keep_state=True,
    )
    np.testing.assert_array_equal(res.diverged_step, [-1, 20, -1])
    history = np.asarray(res.history.loss)[1]
    assert np.isfinite(history[0]) and np.isinf(history[1:]).all()  # the record shows the overflow
    x, y = _line_data()
    g = _line_grad(np.asarray(starts[1]), x, y)[1]
    np.testing.assert_allclose(res.history.grad_norm[1, 0], np.linalg.norm(g), rtol=1e-5)
    assert np.isfinite(np.asarray(res.params[1])).all() and np.abs(np.asarray(res.params[1])).max() > 1e29
    _assert_runs_equal(res, base, [0, 2])
