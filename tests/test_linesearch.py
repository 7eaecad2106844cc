"""Line searches: the lecture's bracketing search and GD with it, and backtracking (Armijo).

References: a float64 NumPy transcription of the notebooks' procedure
(``notebook()["line_search_procedure"]``), the closed-form line minimiser of a
quadratic, SciPy's bounded scalar minimiser, ``numpy.linalg.lstsq``, and
``optax.scale_by_backtracking_linesearch`` step by step.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize
from _problems import GABOR, LINE

import fitjax

NB = fitjax.datasets.notebook()
BOUND = 0.505 / 0.33  # |s − s*| ≤ 0.505·(d − a) and |b − c| ≥ 0.33·(d − a) at exit: ≤ 1.5303·tol


def notebook_search(h, max_dist, tol, max_iter):
    """The notebooks' four-point search in plain Python floats; returns (s, iterations, a, d)."""
    a, b, c, d, n = 0.0, 0.33 * max_dist, 0.66 * max_dist, max_dist, 0
    while abs(b - c) > tol and n < max_iter:
        n += 1
        ha, hb, hc, hd = h(a), h(b), h(c), h(d)
        if ha <= min(hb, hc, hd):
            b, c, d = a + (b - a) / 2, a + (c - a) / 2, a + (d - a) / 2
        elif hb < hc:
            d = c
            b, c = a + (d - a) / 3, a + 2 * (d - a) / 3
        else:
            a = b
            b, c = a + (d - a) / 3, a + 2 * (d - a) / 3
    return (b + c) / 2, n, a, d


def notebook_1d(phi, xp=np):
    """``line_search_1d`` of notebook 6_1."""
    return 1 - 0.5 * xp.exp(-((phi - 0.65) ** 2) / 0.1) - 0.45 * xp.exp(-((phi - 0.35) ** 2) / 0.02)


def spd(key, n):
    m = jax.random.normal(key, (n, n))
    return np.asarray(m @ m.T / n + 0.1 * jnp.eye(n))


# ----------------------------------------------------------------------------- bracket_search


@pytest.mark.parametrize("n", [2, 5, 20])
def test_quadratic_step_is_the_exact_line_minimiser(x64, n):
    kh, kp, kb = jax.random.split(jax.random.key(n), 3)
    H, phi, bvec = (
        spd(kh, n),
        np.asarray(jax.random.normal(kp, (n,))),
        np.asarray(jax.random.normal(kb, (n,))),
    )
    g = H @ phi - bvec  # gradient of L = ½φᵀHφ − bᵀφ
    exact = g @ g / (g @ H @ g)  # argmin_s L[φ − s·g]

    def line(s):
        p = phi - s * g
        return 0.5 * p @ (H @ p) - bvec @ p

    search = jax.jit(lambda d, t, m: fitjax.bracket_search(line, d, t, m))
    for ratio in (1.3, 2.0, 3.7):  # the minimiser inside [0, D] at different places
        tol = 1e-7 * exact
        found = search(ratio * exact, tol, 200)
        assert int(found.evaluations) < 4 * 200  # stopped on the tolerance
        assert abs(float(found.step) - exact) <= BOUND * tol
        # Same decisions as the NumPy transcription, at a tolerance where the four losses
        # differ by far more than rounding (so that no comparison is a coin toss).
        tol = 1e-4 * exact
        found = search(ratio * exact, tol, 200)
        ref_s, ref_n, a, d = notebook_search(lambda s: float(line(s)), ratio * exact, tol, 200)
        assert ref_n < 200 and a <= exact <= d  # stopped on the tolerance, minimiser bracketed
        assert abs(float(found.step) - exact) <= BOUND * tol
        np.testing.assert_allclose(found.step, ref_s, rtol=1e-12)
        assert int(found.evaluations) == 4 * ref_n
    # Minimiser beyond D: the bracket never grows, the step ends just short of D.
    found = search(0.5 * exact, tol, 200)
    assert 0.5 * exact - BOUND * tol <= float(found.step) < 0.5 * exact


def test_finds_the_minimum_of_the_notebook_1d_function(x64):
    """``line_search_1d``: L has two Gaussian wells, but on [0, 1] the wide one only tilts the
    narrow one, so L has a single minimum, at φ ≈ 0.3803. The bracketing search and SciPy's
    bounded Brent search both find it; on a loss with two minima in the interval they could
    differ, since each discards parts of the interval by its own rule (four-point comparisons
    here, golden-section and parabolic steps in Brent's method) and each returns a local one."""
    spec = NB["line_search_1d"]
    lo, hi = spec["interval"]
    scipy_min = scipy.optimize.minimize_scalar(
        notebook_1d, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10}
    )
    grid = np.linspace(lo, hi, 200_001)
    assert abs(scipy_min.x - grid[np.argmin(notebook_1d(grid))]) < 1e-5  # SciPy found the global minimum
    assert abs(scipy_min.x - 0.3803) < 1e-4
    h = lambda s: notebook_1d(s, jnp)
    tol = spec["thresh"]
    # Enough iterations: leaves on the tolerance, within 1.53·tol of the minimum.
    found = fitjax.bracket_search(h, hi - lo, tol, 50)
    ref_s, ref_n, _, _ = notebook_search(notebook_1d, hi - lo, tol, 50)
    assert ref_n < 50 and abs(float(found.step) - scipy_min.x) <= BOUND * tol
    np.testing.assert_allclose(found.step, ref_s, rtol=1e-12)
    # The notebook's 10 iterations stop on the count, with the minimum still inside the bracket.
    found = fitjax.bracket_search(h, hi - lo, tol, spec["max_iter"])
    ref_s, ref_n, a, d = notebook_search(notebook_1d, hi - lo, tol, spec["max_iter"])
    assert ref_n == spec["max_iter"] and int(found.evaluations) == 40
    assert a <= scipy_min.x <= d
    np.testing.assert_allclose(found.step, ref_s, rtol=1e-12)


@pytest.mark.parametrize(
    "name, h",
    [
        ("flat", lambda s: 1.0 + 0.0 * s),  # all four equal: h(a) wins the tie, the bracket shrinks to 0
        ("step", lambda s: jnp.where(s < 0.2, 1.0, 0.0)),  # h(b) = h(c) < h(a): not rule 2, so a <- b
    ],
)
def test_ties_are_broken_as_the_notebook_says(x64, name, h):
    found = fitjax.bracket_search(h, 1.0, 1e-3, 12)
    ref_s, ref_n, _, _ = notebook_search(lambda s: float(h(s)), 1.0, 1e-3, 12)
    np.testing.assert_allclose(found.step, ref_s, rtol=1e-12)
    assert int(found.evaluations) == 4 * ref_n
    # flat: b, c, d pulled to a = 0; step: rule 3 moved a to 0.33, then h(a) = 0 wins every tie
    assert (ref_s < 0.01) if name == "flat" else (0.33 < ref_s < 0.34)


@pytest.mark.parametrize(
    "max_dist, tol, max_iter", [(1.0, 1e-4, 50), (1.0, 1e-4, 3), (0.05, 0.2, 10), (2.0, 1e-6, 1)]
)
def test_four_loss_evaluations_per_iteration(max_dist, tol, max_iter):
    calls = []

    def counted(s):
        calls.append(s)
        return notebook_1d(s, jnp)

    with jax.disable_jit():  # the loop runs in Python: one call per evaluation
        found = fitjax.bracket_search(counted, max_dist, tol, max_iter)
    _, ref_n, _, _ = notebook_search(notebook_1d, max_dist, tol, max_iter)
    assert len(calls) == int(found.evaluations) == 4 * ref_n
    # compiled, counted by a callback run at every evaluation
    calls.clear()

    def called_back(s):
        jax.debug.callback(lambda v: calls.append(v), s)
        return notebook_1d(s, jnp)

    found = jax.jit(lambda: fitjax.bracket_search(called_back, max_dist, tol, max_iter))()
    jax.effects_barrier()
    assert len(calls) == int(found.evaluations) == 4 * ref_n


def test_vmap_masks_finished_searches_but_still_computes_them():
    """Under vmap the loop runs until the slowest search is done: every run's loss is computed
    each time (4 × slowest iterations × runs), but finished runs keep their values and counts."""
    calls = []

    def called_back(s):
        jax.debug.callback(lambda v: calls.append(v), s)
        return (s - 0.3) ** 2

    tols = jnp.array([1e-1, 1e-3, 1e-6])
    found = jax.jit(jax.vmap(lambda t: fitjax.bracket_search(called_back, 1.0, t, 100)))(tols)
    jax.effects_barrier()
    singles = [fitjax.bracket_search(lambda s: (s - 0.3) ** 2, 1.0, float(t), 100) for t in tols]
    np.testing.assert_array_equal(found.evaluations, [int(s.evaluations) for s in singles])
    assert len(np.unique(np.asarray(found.evaluations))) == 3
    assert len(calls) == 3 * int(found.evaluations.max()) > int(found.evaluations.sum())


def test_vmapped_over_1000_searches_equals_1000_single_searches(x64):
    kd, kt, km = jax.random.split(jax.random.key(7), 3)
    n = 1000
    dist = jax.random.uniform(kd, (n,), minval=0.2, maxval=2.0)
    tol = 10.0 ** jax.random.uniform(kt, (n,), minval=-7.0, maxval=-1.0)
    max_iter = jax.random.randint(km, (n,), 1, 40)
    h = lambda s: notebook_1d(s, jnp)
    search = lambda d, t, m: fitjax.bracket_search(h, d, t, m)
    batched = jax.jit(jax.vmap(search))(dist, tol, max_iter)
    single = jax.jit(search)
    looped = [single(dist[i], tol[i], max_iter[i]) for i in range(n)]
    np.testing.assert_allclose(batched.step, [r.step for r in looped], rtol=1e-13, atol=0)
    np.testing.assert_array_equal(batched.evaluations, [r.evaluations for r in looped])
    assert len(np.unique(np.asarray(batched.evaluations))) > 10  # the runs really differ in length


# ----------------------------------------------------------------------------- gd_line_search


def test_gd_line_search_follows_the_notebook_and_reaches_the_least_squares_fit(x64):
    """The notebooks' line-fit settings (start (1.6, −0.5), max_dist 0.1, threshold 1e-5,
    15 iterations). The notebook runs 10 steps; GD with line search zig-zags (κ(H) ≈ 12.5),
    so reaching the least-squares optimum to 1e-9 takes about 100."""
    x, y = (np.asarray(a) for a in fitjax.datasets.line())
    A = np.stack([np.ones_like(x), x], 1)
    spec = NB["linear_regression"]["gradient_descent_line_search"]
    ls = spec["line_search"]
    opt = fitjax.gd_line_search(ls["max_dist_default"], ls["thresh"], ls["max_iter"])
    start = jnp.asarray([spec["phi_init"]])
    steps = spec["n_steps"]
    res = fitjax.fit(
        LINE, opt, start, (x, y), steps=steps, record_every=1, record_params=True, keep_state=True
    )
    # NumPy float64: φ ← φ − s·g with s from the notebook search, for the notebook's 10 steps.
    phi, counts = np.asarray(spec["phi_init"]), []
    for t in range(steps + 1):
        shown = res.history.params[0, t] if t < steps else res.params[0]
        np.testing.assert_allclose(shown, phi, rtol=1e-10)
        g = 2 * A.T @ (A @ phi - y)
        h = functools.partial(lambda s, phi, g: float(np.sum((A @ (phi - s * g) - y) ** 2)), phi=phi, g=g)
        s, n, _, _ = notebook_search(h, ls["max_dist_default"], ls["thresh"], ls["max_iter"])
        phi, counts = phi - s * g, counts + [4 * n]
    evals = fitjax.loss_evaluations(res)
    assert int(evals.last_step[0]) == counts[steps - 1] and int(evals.total[0]) == sum(counts[:steps])
    assert float(evals.per_step[0]) == sum(counts[:steps]) / steps
    best = np.linalg.lstsq(A, y, rcond=None)[0]
    assert np.abs(res.params[0] - best).max() > 1e-2  # 10 steps are not enough
    res = fitjax.fit(LINE, opt, start, (x, y), steps=100)
    np.testing.assert_allclose(res.params[0], best, rtol=1e-9)


def test_gd_line_search_descends_on_the_gabor_fit():
    run = NB["gabor"]["runs"]["gd_line_search"]
    ls = run["line_search"]
    opt = fitjax.gd_line_search(ls["max_dist"], ls["thresh"], ls["max_iter"])
    res = fitjax.fit(
        GABOR,
        opt,
        jnp.asarray([run["phi_init"]]),
        fitjax.datasets.gabor(),
        steps=run["n_steps"],
        record_every=1,
        keep_state=True,
    )
    losses = np.append(np.asarray(res.history.loss[0]), float(res.loss[0]))
    assert np.all(np.diff(losses) < 0), losses
    assert losses[-1] < 0.1 * losses[0]
    evals = fitjax.loss_evaluations(res)
    assert int(evals.total[0]) == 4 * ls["max_iter"] * run["n_steps"]


def test_gd_line_search_settings_sweep_in_one_program():
    data = fitjax.datasets.gabor()
    starts = fitjax.inits.uniform(jax.random.key(3), 4, [-10.0, 2.5], [10.0, 22.5])
    grid = {"max_dist": jnp.array([0.5, 2.0]), "max_iter": jnp.array([5, 40])}
    out = fitjax.sweep(
        GABOR, fitjax.gd_line_search(tol=1e-4), starts, data, grid=grid, steps=5, keep_state=True
    )
    before = fitjax.trace_count()
    for i, dist in enumerate([0.5, 2.0]):
        for j, iters in enumerate([5, 40]):
            one = fitjax.fit(
                GABOR, fitjax.gd_line_search(dist, 1e-4, iters), starts, data, steps=5, keep_state=True
            )
            np.testing.assert_allclose(out.result.params[i, j], one.params, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(
                fitjax.loss_evaluations(out).total[i, j], fitjax.loss_evaluations(one).total
            )
    assert fitjax.trace_count() == before + 1  # new settings reuse one compiled program
    assert int(fitjax.loss_evaluations(out).total[0, 0].max()) <= 5 * 5 * 4


# ----------------------------------------------------------------------------- backtracking_armijo


def barrier(phi, batch=None):
    """Finite only for |φ_i| < 1, so long steps see inf/NaN and must backtrack."""
    return jnp.sum(-jnp.log1p(-(phi**2)) + 0.3 * phi)


SETTINGS = [
    {},
    dict(
        max_backtracking_steps=4,
        slope_rtol=0.3,
        decrease_factor=0.5,
        increase_factor=1.0,
        max_learning_rate=0.5,
    ),
    dict(
        max_backtracking_steps=30,
        slope_rtol=0.0,
        decrease_factor=0.9,
        increase_factor=np.inf,
        max_learning_rate=2.0,
    ),
    # gives up after two tries: takes the last step tried, or none if every loss was NaN
    dict(max_backtracking_steps=1, decrease_factor=0.9, max_learning_rate=3.0),
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("problem", ["gabor", "barrier"])
def test_armijo_matches_optax_step_by_step(x64, settings, problem):
    if problem == "gabor":
        loss, data, phi0 = GABOR, fitjax.datasets.gabor(), jnp.array([-1.5, 8.5])
    else:
        loss, data, phi0 = barrier, None, jnp.array([0.9, -0.5, 0.2])
    ref = optax.chain(
        optax.sgd(1.0), optax.scale_by_backtracking_linesearch(**{"max_backtracking_steps": 15, **settings})
    )
    ours = fitjax.backtracking_armijo(**settings)
    fn = lambda p: loss(p, data)

    def stepper(opt):
        @jax.jit
        def step(p, state):
            value, g = jax.value_and_grad(fn)(p)
            u, state = opt.update(g, state, p, value=value, grad=g, value_fn=fn)
            return optax.apply_updates(p, u), state

        return step

    step_ref, step_ours = stepper(ref), stepper(ours)
    p_ref, p_ours, s_ref, s_ours = phi0, phi0, ref.init(phi0), ours.init(phi0)
    steps, trajectory, counts = 25, [], []
    for _ in range(steps):
        trajectory.append(p_ref)
        p_ref, s_ref = step_ref(p_ref, s_ref)
        p_ours, s_ours = step_ours(p_ours, s_ours)
        np.testing.assert_allclose(p_ours, p_ref, rtol=0, atol=1e-10)
        np.testing.assert_allclose(
            s_ours.inner_state.learning_rate, s_ref[1].learning_rate, rtol=0, atol=1e-10
        )
        assert int(s_ours.inner_state.evaluations) == int(s_ref[1].info.num_linesearch_steps)
        counts.append(int(s_ours.inner_state.evaluations))
    assert int(s_ours.inner_state.total_evaluations) == sum(counts)
    assert float(fn(p_ref)) <= float(fn(phi0))
    # the engine runs the same trajectory and counts the same evaluations
    res = fitjax.fit(
        loss, ours, phi0[None], data, steps=steps, record_every=1, record_params=True, keep_state=True
    )
    np.testing.assert_allclose(res.history.params[0], np.stack(trajectory), rtol=0, atol=1e-10)
    assert int(fitjax.loss_evaluations(res).total[0]) == sum(counts)


def test_armijo_backtracks_past_non_finite_losses_or_stays_put():
    """The guards that the optax comparison exercises on the barrier: the first guess leaves
    its domain (NaN loss), so the search shrinks the step; if it never gets back inside, the
    step is 0, and so is every later guess."""
    phi = jnp.array([0.9, -0.5, 0.2])
    value, g = jax.value_and_grad(barrier)(phi)
    assert np.isnan(float(barrier(phi - g)))
    opt = fitjax.backtracking_armijo()
    _, state = opt.update(g, opt.init(phi), phi, value=value, grad=g, value_fn=barrier)
    assert int(state.inner_state.evaluations) > 1 and 0 < float(state.inner_state.learning_rate) < 1
    opt = fitjax.backtracking_armijo(max_backtracking_steps=1, decrease_factor=0.9, max_learning_rate=3.0)
    res = fitjax.fit(barrier, opt, phi[None], None, steps=3, keep_state=True)
    np.testing.assert_array_equal(res.params[0], phi)
    assert float(res.opt_state.inner_state.learning_rate[0]) == 0.0
    assert int(fitjax.loss_evaluations(res).total[0]) == 2 + 1 + 1  # two tries, then η = 0 passes


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: fitjax.gd_line_search(max_dist=0.0), ValueError, "max_dist must be > 0 and finite, got 0"),
        (lambda: fitjax.gd_line_search(max_dist=-2.0), ValueError, "max_dist must be > 0 and finite, got -2"),
        (lambda: fitjax.gd_line_search(tol=0.0), ValueError, "tol must be > 0 and finite, got 0"),
        (lambda: fitjax.gd_line_search(tol=float("nan")), ValueError, "tol must be > 0 and finite, got nan"),
        (lambda: fitjax.gd_line_search(max_iter=0), ValueError, "max_iter must be an integer >= 1, got 0"),
        (
            lambda: fitjax.gd_line_search(max_iter=2.5),
            ValueError,
            "max_iter must be an integer >= 1, got 2.5",
        ),
        (
            lambda: fitjax.gd_line_search(max_iter=True),
            TypeError,
            "max_iter must be an integer >= 1, got True",
        ),
        (
            lambda: fitjax.bracket_search(lambda s: s, -1.0, 1e-3, 5),
            ValueError,
            "max_dist must be > 0 and finite, got -1",
        ),
        (
            lambda: fitjax.bracket_search(lambda s: s, 1.0, 1e-3, 0),
            ValueError,
            "max_iter must be an integer >= 1, got 0",
        ),
        (
            lambda: fitjax.bracket_search(lambda s: s, 1.0, jnp.array([1e-3, -1.0]), 5),
            ValueError,
            r"tol must be > 0 and finite, got -1 \(value 2 of 2",
        ),
        (lambda: fitjax.bracket_search("h", 1.0, 1e-3, 5), TypeError, "h must be a function"),
        (
            lambda: fitjax.backtracking_armijo(max_backtracking_steps=-1),
            ValueError,
            "max_backtracking_steps must be an integer >= 0, got -1",
        ),
        (
            lambda: fitjax.backtracking_armijo(slope_rtol=1.0),
            ValueError,
            r"slope_rtol must be in \[0, 1\), got 1",
        ),
        (
            lambda: fitjax.backtracking_armijo(decrease_factor=1.0),
            ValueError,
            r"decrease_factor must be in \(0, 1\), got 1",
        ),
        (
            lambda: fitjax.backtracking_armijo(decrease_factor=0.0),
            ValueError,
            r"decrease_factor must be in \(0, 1\), got 0",
        ),
        (
            lambda: fitjax.backtracking_armijo(increase_factor=0.5),
            ValueError,
            r"increase_factor must be in \[1, inf\], got 0.5",
        ),
        (
            lambda: fitjax.backtracking_armijo(max_learning_rate=0.0),
            ValueError,
            "max_learning_rate must be > 0 and finite, got 0",
        ),
    ],
)
def test_bad_settings_are_refused_when_built(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_bad_settings_are_refused_by_fit_and_sweep_before_compiling():
    before = fitjax.trace_count()
    starts, data = jnp.zeros((3, 2)), fitjax.datasets.line()
    with pytest.raises(ValueError, match="max_dist must be > 0 and finite, got -1"):
        fitjax.fit(LINE, fitjax.gd_line_search(), starts, data, steps=2, hyperparams={"max_dist": -1.0})
    with pytest.raises(ValueError, match=r"max_iter must be an integer >= 1, got 0 \(value 1 of 2\)"):
        fitjax.sweep(
            LINE, fitjax.gd_line_search(), starts, data, steps=2, grid={"max_iter": jnp.array([0, 5])}
        )
    assert fitjax.trace_count() == before


def test_update_without_the_loss_and_counts_without_a_line_search_are_refused():
    phi = jnp.zeros(2)
    for opt, name in [
        (fitjax.gd_line_search(), "gd_line_search"),
        (fitjax.backtracking_armijo(), "backtracking_armijo"),
    ]:
        with pytest.raises(TypeError, match=f"{name}.update needs the loss as value_fn"):
            opt.update(phi, opt.init(phi), phi)
    with pytest.raises(TypeError, match="loss_evaluations reads the counts"):
        fitjax.loss_evaluations(
            fitjax.fit(LINE, fitjax.gd(0.01), phi[None], fitjax.datasets.line(), steps=1, keep_state=True)
        )
    with pytest.raises(ValueError, match="keep_state=True keeps each run's final state"):
        fitjax.loss_evaluations(
            fitjax.fit(LINE, fitjax.backtracking_armijo(), phi[None], fitjax.datasets.line(), steps=1)
        )
