"""Every optimizer, one shared table, the same checks.

Each optimizer in :data:`TABLE` (the lecture's six, and one optax optimizer fitjax does
not wrap, to show any optax transformation runs the same way) is run by
:func:`fitjax.fit` on four problems with a known minimum:

* a parabola :math:`(\\phi_0-0.3)^2 + 10(\\phi_1+0.7)^2`, minimum (0.3, −0.7) in closed form;
* Rosenbrock :math:`(1-\\phi_0)^2 + 100(\\phi_1-\\phi_0^2)^2`, minimum (1, 1);
* the lecture's line data, minimum from ``numpy.linalg.lstsq``;
* the lecture's Gabor data (w = 32) from starts in the global valley, minimum from
  SciPy's BFGS (φ ≈ (0.0038, 16.026), loss ≈ 0.6457).

and is then checked for jit = no jit, vmap = a loop of single runs, dtypes kept, and no
recompilation. Steps are cheap here (two parameters): compile time is what costs, so the
programs are few and small.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize
from _problems import GABOR, LINE, gabor_numpy, line_minimum

import fitjax

# ----------------------------------------------------------------------------- problems

PARABOLA_MIN = (0.3, -0.7)


def parabola(phi: jax.Array, batch: Any = None) -> jax.Array:
    del batch
    return (phi[0] - 0.3) ** 2 + 10.0 * (phi[1] + 0.7) ** 2


def rosenbrock(phi: jax.Array, batch: Any = None) -> jax.Array:
    del batch
    return (1.0 - phi[0]) ** 2 + 100.0 * (phi[1] - phi[0] ** 2) ** 2


@functools.cache
def gabor_minimum() -> np.ndarray:
    """The global minimum by SciPy's BFGS on the NumPy loss, from the start (0, 15) in its valley."""
    data = fitjax.datasets.gabor()
    res = scipy.optimize.minimize(
        gabor_numpy, [0.0, 15.0], args=data, method="BFGS", options=dict(gtol=1e-10)
    )
    return res.x


class Problem(NamedTuple):
    loss: Any
    data: Any
    starts: list[list[float]]
    minimum: Any  # a function returning φ*


PROBLEMS = {
    "parabola": Problem(
        parabola, None, [[-1.0, 2.0], [2.0, -2.0], [0.0, 0.0]], lambda: np.array(PARABOLA_MIN)
    ),
    "rosenbrock": Problem(rosenbrock, None, [[-1.2, 1.0], [0.0, 0.0], [1.5, 2.0]], lambda: np.ones(2)),
    "line": Problem(LINE, "line", [[-1.0, -1.0], [1.0, 1.0], [0.0, 0.5]], line_minimum),
    "gabor": Problem(GABOR, "gabor", [[0.0, 15.0], [0.5, 14.0], [-0.5, 17.0]], gabor_minimum),
}


def data_of(problem: Problem) -> Any:
    return {"line": fitjax.datasets.line, "gabor": fitjax.datasets.gabor}.get(problem.data, lambda: None)()


# ----------------------------------------------------------------------------- the table


class Setting(NamedTuple):
    optimizer: optax.GradientTransformation
    steps: int
    tol: float = 1e-6  # max |φ − φ*| per coordinate at the end
    bounces: bool = False  # fixed-size sign steps: see test_normalized_bounces_by_alpha


ALPHA_NORMALIZED = 1e-3

TABLE: dict[str, dict[str, Setting]] = {
    "gd": {
        "parabola": Setting(fitjax.gd(0.02), 2000),
        "rosenbrock": Setting(fitjax.gd(1e-3), 60_000),
        "line": Setting(fitjax.gd(0.02), 3000),
        "gabor": Setting(fitjax.gd(0.01), 20_000),
    },
    "momentum": {
        "parabola": Setting(fitjax.momentum(0.02, 0.9), 2000),
        "rosenbrock": Setting(fitjax.momentum(1e-3, 0.9), 60_000),
        "line": Setting(fitjax.momentum(0.02, 0.9), 3000),
        "gabor": Setting(fitjax.momentum(0.01, 0.9), 20_000),
    },
    "nesterov": {
        "parabola": Setting(fitjax.nesterov(0.02, 0.9), 2000),
        "rosenbrock": Setting(fitjax.nesterov(1e-3, 0.9), 60_000),
        "line": Setting(fitjax.nesterov(0.02, 0.9), 3000),
        "gabor": Setting(fitjax.nesterov(0.01, 0.9), 20_000),
    },
    "nesterov_classical": {  # steps of about α/(1−μ): a smaller α than the others
        "parabola": Setting(fitjax.nesterov_classical(0.005, 0.8), 2000),
        "rosenbrock": Setting(fitjax.nesterov_classical(2e-4, 0.8), 60_000),
        "line": Setting(fitjax.nesterov_classical(0.005, 0.8), 3000),
        "gabor": Setting(fitjax.nesterov_classical(0.002, 0.8), 20_000),
    },
    "normalized": {
        p: Setting(fitjax.normalized(ALPHA_NORMALIZED), 5000, tol=ALPHA_NORMALIZED, bounces=True)
        for p in PROBLEMS
    },
    "adam": {  # with a fixed α Adam hovers near the minimum: looser tolerances
        "parabola": Setting(fitjax.adam(0.01), 2000),
        "rosenbrock": Setting(fitjax.adam(1e-3), 20_000, tol=1e-4),
        "line": Setting(fitjax.adam(0.01), 3000, tol=1e-5),
        "gabor": Setting(fitjax.adam(0.01), 5000),
    },
    "optax_adabelief": {
        "parabola": Setting(optax.adabelief(0.01), 2000),
        "rosenbrock": Setting(optax.adabelief(0.01), 20_000, tol=1e-4),
        "line": Setting(optax.adabelief(0.01), 3000),
        "gabor": Setting(optax.adabelief(0.01), 5000),
    },
}
# Normalized gradients on Rosenbrock stall instead (test_normalized_bounces_by_alpha).


def _marked(name: str, *rest: str) -> Any:
    """A case; optax's own optimizers run with standard promotion (optax's code mixes ints and floats)."""
    marks = [pytest.mark.loose_promotion] if name.startswith("optax_") else []
    return pytest.param(name, *rest, marks=marks, id="-".join((name, *rest)))


CASES = [_marked(n, p) for n in TABLE for p in PROBLEMS if not (TABLE[n][p].bounces and p == "rosenbrock")]
NAMES = [_marked(n) for n in TABLE]


def _state_float_leaves(state: Any) -> list[jax.Array]:
    return [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]


# ----------------------------------------------------------------------------- convergence


@pytest.mark.parametrize("name, problem", CASES)
def test_converges_to_the_known_minimum(x64, name, problem):
    setting, prob = TABLE[name][problem], PROBLEMS[problem]
    starts = jnp.asarray(prob.starts)
    res = fitjax.fit(
        prob.loss, setting.optimizer, starts, data_of(prob), steps=setting.steps, keep_state=True
    )
    expected = np.broadcast_to(prob.minimum(), starts.shape)
    err = np.abs(np.asarray(res.params) - expected).max(axis=0)
    assert (err <= setting.tol).all(), (
        f"{name} on {problem}: max |φ − φ*| per coordinate {err}, allowed {setting.tol}"
    )
    assert not bool(res.diverged.any())
    # float64 in, float64 out: parameters, loss and optimizer state
    assert res.params.dtype == jnp.float64 and res.loss.dtype == jnp.float64
    assert all(x.dtype == jnp.float64 for x in _state_float_leaves(res.opt_state))


def test_gabor_reference_minimum_is_the_lectures_global_minimum(x64):
    phi = gabor_minimum()
    np.testing.assert_allclose(phi, [0.004, 16.02], atol=0.01)
    assert gabor_numpy(phi, *fitjax.datasets.gabor()) == pytest.approx(0.6457, abs=1e-4)
    assert float(GABOR(jnp.asarray(phi), fitjax.datasets.gabor())) == pytest.approx(
        gabor_numpy(phi, *fitjax.datasets.gabor()), rel=1e-12
    )


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_normalized_bounces_by_alpha(x64, problem):
    """Normalized gradients step exactly α along every coordinate, every step (the sign of g).

    So they cannot settle: they end in a two-point cycle, φ_T = φ_{T−2}, each coordinate
    moving ±α. Where the sign pattern leads to the minimum (parabola, line, Gabor valley)
    the cycle straddles it, within α per coordinate. On Rosenbrock the steps, all along
    the diagonals (±α, ±α), cannot follow the curved valley φ1 = φ0²: the iterates stall
    in a cycle partway down it, lower than where they started but not at (1, 1)
    (measured, α = 1e-3: at (0.710, 0.502), (0.688, 0.471) and (1.436, 2.064) from the
    three starts, the same after 5000 or 20000 steps).
    """
    setting, prob = TABLE["normalized"][problem], PROBLEMS[problem]
    starts, data = jnp.asarray(prob.starts), data_of(prob)
    res = fitjax.fit(
        prob.loss, setting.optimizer, starts, data, steps=setting.steps, record_every=1, record_params=True
    )
    last = np.concatenate([np.asarray(res.history.params[:, -4:]), np.asarray(res.params)[:, None]], axis=1)
    moves = np.abs(np.diff(last, axis=1))
    np.testing.assert_allclose(moves, ALPHA_NORMALIZED, rtol=1e-9, err_msg="each coordinate moves α per step")
    np.testing.assert_allclose(last[:, -1], last[:, -3], atol=1e-12, err_msg="a two-point cycle")
    np.testing.assert_allclose(last[:, -2], last[:, -4], atol=1e-12, err_msg="a two-point cycle")
    err = np.abs(last[:, -1] - prob.minimum()).max(axis=0)
    if problem == "rosenbrock":
        start_loss = jax.vmap(prob.loss, (0, None))(starts, data)
        assert (np.asarray(res.loss) < np.asarray(start_loss)).all()
        off = np.abs(last[:, -1] - prob.minimum()).max(axis=1)
        assert (off > 10 * ALPHA_NORMALIZED).all(), f"stalled at {last[:, -1]}, {off} from (1, 1)"
    else:
        assert (err <= ALPHA_NORMALIZED * (1 + 1e-9)).all(), (
            f"|φ − φ*| per coordinate {err}, α = {ALPHA_NORMALIZED}"
        )


# ----------------------------------------------------------------------------- engine properties

SHORT = 10  # steps for the checks below, all on the Gabor problem


def _gabor_short(name: str) -> tuple[optax.GradientTransformation, jax.Array, Any]:
    starts = jnp.asarray([[0.0, 15.0], [-1.5, 8.5], [3.5, 6.5]])
    return TABLE[name]["gabor"].optimizer, starts, fitjax.datasets.gabor()


@pytest.mark.parametrize("name", NAMES)
def test_jit_equals_no_jit(name):
    opt, starts, data = _gabor_short(name)
    jitted = fitjax.fit(GABOR, opt, starts, data, steps=SHORT)
    eager = fitjax.fit(GABOR, opt, starts, data, steps=SHORT, jit=False)
    assert not np.allclose(jitted.params, starts), "the runs moved"
    np.testing.assert_allclose(jitted.params, eager.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jitted.loss, eager.loss, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_vmapped_runs_equal_single_runs(name):
    opt, starts, data = _gabor_short(name)
    batched = fitjax.fit(GABOR, opt, starts, data, steps=SHORT)
    for i in range(starts.shape[0]):
        single = fitjax.fit(GABOR, opt, starts[i : i + 1], data, steps=SHORT)
        np.testing.assert_allclose(single.params[0], batched.params[i], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(single.loss[0], batched.loss[i], rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_float32_stays_float32(name):
    """(float64 is checked with every convergence run above.)"""
    opt, starts, data = _gabor_short(name)
    assert starts.dtype == jnp.float32
    res = fitjax.fit(GABOR, opt, starts, data, steps=SHORT, keep_state=True)
    assert res.params.dtype == jnp.float32 and res.loss.dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in _state_float_leaves(res.opt_state))
    assert np.isfinite(np.asarray(res.params)).all()


@pytest.mark.parametrize("name", NAMES)
def test_no_recompile_on_a_second_call_or_new_hyperparameters(name):
    opt, starts, data = _gabor_short(name)
    first = fitjax.fit(GABOR, opt, starts, data, steps=SHORT)
    before = fitjax.trace_count()
    again = fitjax.fit(GABOR, opt, starts + 0.25, data, steps=SHORT)
    assert not np.allclose(again.params, first.params)
    if not isinstance(opt, fitjax.Optimizer):
        assert fitjax.trace_count() == before
        return
    # the same constructor with another α reuses the program ...
    hp = {k: float(v) for k, v in opt.init(starts[0]).hyperparams.items()}
    lr, new_lr = hp["learning_rate"], 0.3 * hp["learning_rate"]
    new = fitjax.fit(
        GABOR, getattr(fitjax, name)(**{**hp, "learning_rate": new_lr}), starts, data, steps=SHORT
    )
    assert fitjax.trace_count() == before
    # ... per-run values are one more program (the run axis moves onto α), reused for new values
    per_run = fitjax.fit(
        GABOR, opt, starts, data, steps=SHORT, hyperparams={"learning_rate": jnp.array([new_lr, lr, 2 * lr])}
    )
    other = fitjax.fit(
        GABOR, opt, starts, data, steps=SHORT, hyperparams={"learning_rate": jnp.array([2 * lr, lr, new_lr])}
    )
    assert fitjax.trace_count() <= before + 1
    # and the reused programs ran with the new values, not with those they were compiled for
    assert not np.allclose(new.params[0], first.params[0])
    np.testing.assert_allclose(new.params[0], per_run.params[0], rtol=1e-6)
    np.testing.assert_allclose(per_run.params[1], first.params[1], rtol=1e-6)
    np.testing.assert_allclose(other.params[1], first.params[1], rtol=1e-6)
    assert not np.allclose(other.params[0], per_run.params[0])


# ----------------------------------------------------------------------------- sweeps


def test_sweep_of_learning_rates_momenta_and_starts_matches_single_fits():
    """16 learning rates × 4 momenta × 100 starts in one program; cells equal their own fits."""
    data = fitjax.datasets.gabor()
    starts = fitjax.inits.uniform(jax.random.key(0), 100, [-10.0, 2.5], [10.0, 22.5])
    lrs, betas = jnp.logspace(-3, -1.5, 16), jnp.array([0.0, 0.5, 0.8, 0.95])
    out = fitjax.sweep(
        GABOR, fitjax.momentum(0.01), starts, data, steps=50, grid={"learning_rate": lrs, "beta": betas}
    )
    assert out.result.loss.shape == (16, 4, 100) and out.result.params.shape == (16, 4, 100, 2)
    np.testing.assert_array_equal(out.grid["learning_rate"], lrs)
    for i, j in [(0, 0), (5, 2), (15, 3), (9, 1)]:
        single = fitjax.fit(GABOR, fitjax.momentum(float(lrs[i]), float(betas[j])), starts, data, steps=50)
        np.testing.assert_allclose(out.result.params[i, j], single.params, rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(out.result.loss[i, j], single.loss, rtol=2e-5, atol=1e-5)
    # the grid axes are not interchangeable: different settings give different results
    assert not np.allclose(out.result.loss[0, 0], out.result.loss[15, 0])
    assert not np.allclose(out.result.loss[15, 0], out.result.loss[15, 3])


# ----------------------------------------------------------------------------- reduce_on_plateau


def test_reduce_on_plateau_runs_in_fit_and_cuts_the_step():
    """A learning rate too large for the Gabor valley bounces; the plateau rule cuts it until it settles."""
    data = fitjax.datasets.gabor()
    starts = jnp.asarray([[0.0, 15.0], [-1.5, 8.5]])
    alpha, steps = 0.2, 300
    opt = optax.chain(fitjax.gd(alpha), fitjax.reduce_on_plateau(factor=0.5, patience=10, rtol=1e-4))
    res = fitjax.fit(GABOR, opt, starts, data, steps=steps, keep_state=True)
    fixed = fitjax.fit(GABOR, fitjax.gd(alpha), starts, data, steps=steps)
    scale = np.asarray(res.opt_state[1].inner_state.scale)
    assert (scale < 1).all(), f"scales {scale}"
    best = gabor_numpy(gabor_minimum(), *fitjax.datasets.gabor())
    # measured: 0.64576 and 0.64575 with the rule, 0.94399 for both with α fixed (global 0.64570)
    assert (np.asarray(res.loss) < best + 1e-3).all(), f"with the plateau rule: {res.loss}, global {best:.5f}"
    assert (np.asarray(fixed.loss) > best + 0.05).all(), f"fixed α: {fixed.loss}, global {best:.5f}"
    # the same chain by hand, step by step, gives the same parameters
    value_and_grad, update = jax.jit(jax.value_and_grad(GABOR)), jax.jit(opt.update)
    p, state = starts[1], opt.init(starts[1])
    for _ in range(steps):
        value, g = value_and_grad(p, data)
        u, state = update(g, state, p, value=value)
        p = optax.apply_updates(p, u)
    np.testing.assert_allclose(res.params[1], p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scale[1], state[1].inner_state.scale)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(factor=1.0), ValueError, r"factor must be in \(0, 1\), got 1"),
        (dict(factor=0.0), ValueError, r"factor must be in \(0, 1\), got 0"),
        (dict(patience=0), ValueError, "patience must be an integer >= 1, got 0"),
        (dict(patience=2.5), ValueError, "patience must be an integer >= 1, got 2.5"),
        (dict(rtol=1.5), ValueError, r"rtol must be in \[0, 1\], got 1.5"),
        (dict(atol=-1.0), ValueError, "atol must be >= 0 and finite, got -1"),
        (dict(rtol=0.0, atol=0.0), ValueError, "rtol and atol are both 0"),
        (dict(cooldown=-1), ValueError, "cooldown must be an integer >= 0, got -1"),
        (dict(min_scale=2.0), ValueError, r"min_scale must be in \[0, 1\], got 2"),
    ],
)
def test_reduce_on_plateau_refuses_bad_settings(kwargs, error, message):
    with pytest.raises(error, match=message):
        fitjax.reduce_on_plateau(**kwargs)


def test_reduce_on_plateau_needs_the_loss():
    opt = fitjax.reduce_on_plateau()
    with pytest.raises(TypeError, match="needs the loss"):
        opt.update(jnp.ones(2), opt.init(jnp.ones(2)))
