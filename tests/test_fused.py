"""The fused execution path (``fit(..., backend="fused")``), in Pallas interpret mode.

Each fused fit is compared run by run with the XLA path (the engine's own program,
which ``test_engine.py`` and ``test_optax_equivalence.py`` check against optax and
NumPy), in float32 to a few float32 roundings and in float64 to 1e-12. The kernel's
GPU form is checked as far as a machine without a GPU allows: it must lower to a
Triton kernel, with the precise libdevice functions or the approximate PTX ones.
"""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _problems import GABOR, LINE

import fitjax
from fitjax import internal
from fitjax.engine import sampler as _sampler
from fitjax.kernels import fused
from fitjax.kernels import kernel_loss as _fused_loss
from fitjax.kernels import kernel_math as _fused_math
from fitjax.optim.protocol import stepper

OPTIMIZERS = {
    "gd": lambda: fitjax.gd(0.002),
    "momentum": lambda: fitjax.momentum(0.005, 0.8),
    "nesterov": lambda: fitjax.nesterov(0.002, 0.8),
    "nesterov_classical": lambda: fitjax.nesterov_classical(0.001, 0.8),
    "normalized": lambda: fitjax.normalized(0.05),
    "adam": lambda: fitjax.adam(0.05),
}
PROBLEMS = {
    "line": (LINE, fitjax.datasets.line, ([-1.0, -1.0], [1.0, 1.0])),
    "gabor": (GABOR, fitjax.datasets.gabor, ([-10.0, 2.5], [10.0, 22.5])),
}


def _starts(problem, n=6, seed=0):
    low, high = PROBLEMS[problem][2]
    return fitjax.inits.uniform(jax.random.key(seed), n, low, high)


def _fused_fit(*args, options=None, **kwargs):
    """A fused fit that must not fall back to the XLA path."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", fused.FallbackWarning)
        return fitjax.fit(*args, backend=options or fused.Fused(interpret=True), **kwargs)


def _assert_same(ours, ref, rtol=2e-5, atol=2e-5):
    """Run by run: parameters, loss, divergence, history and optimizer state."""
    np.testing.assert_array_equal(ours.diverged_step, ref.diverged_step)
    np.testing.assert_allclose(ours.params, ref.params, rtol=rtol, atol=atol)
    np.testing.assert_allclose(ours.loss, ref.loss, rtol=rtol, atol=atol)
    assert ours.steps == ref.steps
    assert jax.tree.structure(ours.opt_state) == jax.tree.structure(ref.opt_state)
    for a, b in zip(jax.tree.leaves(ours.opt_state), jax.tree.leaves(ref.opt_state), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    assert (ours.history is None) == (ref.history is None)
    if ref.history is not None:
        np.testing.assert_array_equal(ours.history.step, ref.history.step)
        for name in ("loss", "grad_norm", "params"):
            a, b = getattr(ours.history, name), getattr(ref.history, name)
            assert (a is None) == (b is None), name
            if b is not None:
                np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
                np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)


# ----------------------------------------------------------------------------- equal to the XLA path


# Every optimizer on the Gabor model; on the line (a quadratic) the three rule shapes:
# stateless, look-ahead with a reported point, and two moving averages.
CASES = [("gabor", name) for name in sorted(OPTIMIZERS)] + [
    ("line", name) for name in ("gd", "nesterov", "adam")
]


@pytest.mark.parametrize("problem, name", CASES)
def test_full_batch_equals_xla_path_run_by_run(problem, name):
    loss, data, _ = PROBLEMS[problem]
    starts = _starts(problem)
    kwargs = dict(steps=40, record_every=7, record_params=name in ("nesterov", "adam"))
    ref = fitjax.fit(loss, OPTIMIZERS[name](), starts, data(), **kwargs)
    ours = _fused_fit(loss, OPTIMIZERS[name](), starts, data(), **kwargs)
    _assert_same(ours, ref)


@pytest.mark.parametrize("name", ["adam", "nesterov"])
def test_float64_equals_xla_path_to_1e12(x64, name):
    # A scheduled learning rate and per-run hyperparameters; without float32 rounding
    # in the way, any difference in the step's algebra shows.
    opt = {
        "adam": fitjax.adam(optax.exponential_decay(0.05, 10, 0.7)),
        "nesterov": fitjax.nesterov(0.002, 0.8),
    }[name]
    starts = _starts("gabor", n=5)
    kwargs = dict(steps=20, record_every=4, hyperparams={"beta": jnp.linspace(0.5, 0.95, 5)})
    ref = fitjax.fit(GABOR, opt, starts, fitjax.datasets.gabor(), **kwargs)
    ours = _fused_fit(GABOR, opt, starts, fitjax.datasets.gabor(), **kwargs)
    assert ours.params.dtype == jnp.float64
    _assert_same(ours, ref, rtol=1e-12, atol=1e-12)


def test_divergence_flags_and_frozen_runs_match():
    # Learning rates from stable to explosive: some runs overflow at different steps.
    starts = _starts("line", n=12)
    lr = jnp.logspace(-2, -0.3, 12)
    kwargs = dict(steps=120, record_every=10, hyperparams={"learning_rate": lr})
    for opt in (fitjax.gd(0.1), fitjax.nesterov(0.1)):
        ref = fitjax.fit(LINE, opt, starts, fitjax.datasets.line(), **kwargs)
        ours = _fused_fit(LINE, opt, starts, fitjax.datasets.line(), **kwargs)
        assert ref.diverged.any() and not ref.diverged.all()
        _assert_same(ours, ref, rtol=1e-5, atol=1e-5)


def test_sweep_through_the_fused_path():
    grid = {"learning_rate": jnp.array([0.01, 0.05]), "gamma": jnp.array([0.9, 0.999])}
    starts = _starts("gabor", n=3)
    ref = fitjax.sweep(GABOR, fitjax.adam(0.05), starts, fitjax.datasets.gabor(), grid=grid, steps=25)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fused.FallbackWarning)  # the fused path, not a fallback
        ours = fitjax.sweep(
            GABOR, fitjax.adam(0.05), starts, fitjax.datasets.gabor(), grid=grid, steps=25, backend="fused"
        )
    assert ours.result.params.shape == (2, 2, 3, 2)
    _assert_same(ours.result, ref.result)


def test_scalar_parameter_and_no_data():
    starts = _starts("line", n=5)
    ref = fitjax.fit(fitjax.toy_loss, fitjax.adam(0.1), starts, None, steps=30, record_every=5)
    _assert_same(_fused_fit(fitjax.toy_loss, fitjax.adam(0.1), starts, None, steps=30, record_every=5), ref)

    def scalar_loss(a, batch):
        x, y = batch
        return jnp.mean((jnp.sin(a * x) - y) ** 2)

    ref = fitjax.fit(scalar_loss, fitjax.momentum(0.05), starts[:, 0], fitjax.datasets.gabor(), steps=30)
    ours = _fused_fit(scalar_loss, fitjax.momentum(0.05), starts[:, 0], fitjax.datasets.gabor(), steps=30)
    assert ours.params.shape == (5,)
    _assert_same(ours, ref)


# ----------------------------------------------------------------------------- mini-batches


def test_batch_table_equals_the_samplers_indices():
    key = jax.random.key(7)
    n, batch_size, steps = 11, 3, 17  # 3 steps per epoch, 2 examples unused each epoch
    table = internal.batch_table(key, n, batch_size, steps)
    at = jax.jit(lambda t: _sampler.indices_at(key, t, n, batch_size))  # step by step, as the engine
    expected = np.stack([at(jnp.int32(t)) for t in range(steps)])
    np.testing.assert_array_equal(table, expected)


@pytest.mark.parametrize("name", ["gd", "nesterov"])
def test_shared_order_minibatches_equal_xla_path(name):
    starts = _starts("gabor", n=5)
    kwargs = dict(steps=30, batch_size=7, shared_order=True, key=jax.random.key(3), record_every=6)
    ref = fitjax.fit(GABOR, OPTIMIZERS[name](), starts, fitjax.datasets.gabor(), **kwargs)
    ours = _fused_fit(GABOR, OPTIMIZERS[name](), starts, fitjax.datasets.gabor(), **kwargs)
    _assert_same(ours, ref)


# ----------------------------------------------------------------------------- what falls back, and why


def _dict_loss(params, batch):
    x, y = batch
    return jnp.sum((params["offset"] + params["slope"] * x - y) ** 2)


@pytest.mark.loose_promotion  # one case runs optax's own optimizer
@pytest.mark.parametrize(
    "case, reason",
    [
        ("per_run_order", "shared_order=True"),
        ("optax_optimizer", "not one the kernel runs"),
        ("pytree_params", "pytree of"),
        ("slices_data", "`slice` to the data"),
        ("relu_on_data", "own derivative rule"),
        ("no_jit", "jit=False"),
    ],
)
def test_unsupported_problems_fall_back_with_the_reason(case, reason):
    data = fitjax.datasets.gabor()
    starts = _starts("gabor", n=4)
    loss, opt, kwargs = GABOR, fitjax.adam(0.05), dict(steps=2)
    if case == "per_run_order":
        kwargs.update(batch_size=5, key=jax.random.key(0))
    elif case == "optax_optimizer":
        opt = optax.adam(0.05)
    elif case == "pytree_params":
        loss = _dict_loss
        starts = {"offset": starts[:, 0], "slope": starts[:, 1]}
    elif case == "slices_data":
        loss = lambda p, b: jnp.sum((fitjax.line(p, b[0][1:]) - b[1][1:]) ** 2)  # noqa: E731
    elif case == "relu_on_data":
        loss = lambda p, b: jnp.sum(jax.nn.relu(fitjax.line(p, b[0]) - b[1]))  # noqa: E731
    elif case == "no_jit":
        kwargs.update(jit=False)
    ref = fitjax.fit(loss, opt, starts, data, **kwargs)
    with pytest.warns(fused.FallbackWarning, match=reason):
        ours = fitjax.fit(loss, opt, starts, data, backend="fused", **kwargs)
    # The fallback is the XLA path itself: the same numbers, bit for bit.
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(a, b)


def test_default_launch_settings():
    full, fast = fused.Fused("full"), fused.Fused("fast")
    # many runs of at most 64 lanes: one run per thread, 32 × warps runs, >= 512 programs
    assert internal.fused_launch(full, 32, 10**6) == (256, 8)
    assert internal.fused_launch(fast, 32, 10**6) == (64, 2)
    assert internal.fused_launch(full, 64, 10**5) == (128, 4)
    assert internal.fused_launch(fused.Fused(num_warps=2), 32, 10**6) == (64, 2)
    # few runs: several threads share a run (about 1024 lanes per program, 4 warps)
    assert internal.fused_launch(full, 32, 10**4) == (32, 4)
    assert internal.fused_launch(fast, 32, 5) == (8, 4)  # never more than the runs
    # more points
    assert internal.fused_launch(full, 1024, 10**6) == (1, 4)
    assert internal.fused_launch(full, 128, 10**6) == (8, 4)
    # what is given is kept
    assert internal.fused_launch(fused.Fused(block_runs=16, num_warps=1), 32, 10**6) == (16, 1)
    assert internal.fused_launch(fused.Fused(block_runs=16), 32, 10**6) == (16, 4)


def test_auto_leaves_large_problems_to_the_xla_path():
    opt, starts = fitjax.adam(0.05), _starts("gabor", n=4096)
    x = jnp.linspace(-15.0, 15.0, 1024)
    data = (x, jnp.sin(x))
    plan = internal.Plan(
        steps=3,
        record_every=None,
        record_params=False,
        batch_size=None,
        n_data=1024,
        shared_order=False,
        extra_args=False,
    )
    update, defaults = stepper(opt, starts)
    shared, per_run = internal.hyperparams_split(update, defaults, starts, starts.shape[0], None)
    kwargs = dict(plan=plan, hp_shared=shared, hp_run=per_run, key=jax.random.key(0))
    options = fused.Fused(interpret=True)
    with pytest.raises(fused.Unsupported, match="4096 runs × 1024 lanes: the XLA path is faster"):
        fused.run(GABOR, update, starts, data, options=options, auto=True, **kwargs)
    small = fused.run(GABOR, update, starts[:8], data, options=options, auto=True, **{**kwargs, "hp_run": {}})
    assert small.params.shape == (8, 2)


def test_auto_runs_the_xla_path_quietly_without_a_gpu():
    if jax.default_backend() == "gpu":
        pytest.skip("on a GPU, auto takes the fused path")
    before = fused.trace_count()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitjax.fit(
            GABOR, fitjax.adam(0.05), _starts("gabor"), fitjax.datasets.gabor(), steps=5, backend="auto"
        )
    assert fused.trace_count() == before


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="backend must be"):
        fitjax.fit(LINE, fitjax.gd(0.1), _starts("line"), fitjax.datasets.line(), steps=2, backend="gpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        fused.Fused(precision="approx")
    with pytest.raises(ValueError, match="block_runs must be a power of two"):
        fused.Fused(block_runs=100)
    with pytest.raises(ValueError, match="max_points"):
        fused.Fused(max_points=0)


def test_too_many_points_fall_back():
    with pytest.warns(fused.FallbackWarning, match="more than max_points=16"):
        fitjax.fit(
            GABOR,
            fitjax.adam(0.05),
            _starts("gabor"),
            fitjax.datasets.gabor(),
            steps=2,
            backend=fused.Fused(max_points=16, interpret=True),
        )


def test_a_kernel_that_does_not_build_falls_back_once_and_is_remembered(monkeypatch):
    # What a GPU build failure looks like to the engine (a primitive Triton cannot lower),
    # simulated: the compiled program raises as Pallas does.
    calls = []

    def broken(kernel):
        def program(*args):
            calls.append(kernel)
            raise NotImplementedError("Unimplemented primitive in Pallas Triton lowering: erf_inv.")

        return program

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(fused, "compiled", broken)
    monkeypatch.setattr(fused, "FAILED_BUILDS", {})
    args = (LINE, fitjax.gd(0.01), _starts("line"), fitjax.datasets.line())
    ref = fitjax.fit(*args, steps=3)
    for _ in range(2):
        with pytest.warns(fused.FallbackWarning, match="could not be built.*erf_inv"):
            res = fitjax.fit(*args, steps=3, backend="fused")
        np.testing.assert_array_equal(res.params, ref.params)
    assert len(calls) == 1  # the second fit did not try the same kernel again


def test_interpret_false_without_a_gpu_falls_back():
    if jax.default_backend() == "gpu":
        pytest.skip("needs a machine without a GPU")
    with pytest.warns(fused.FallbackWarning, match="interpret=False needs a GPU"):
        fitjax.fit(
            LINE,
            fitjax.gd(0.01),
            _starts("line"),
            fitjax.datasets.line(),
            steps=3,
            backend=fused.Fused(interpret=False),
        )


def test_no_recompile_for_new_starts_or_hyperparameter_values():
    data = fitjax.datasets.line()
    _fused_fit(LINE, fitjax.adam(0.05), _starts("line", seed=1), data, steps=9)
    before = fused.trace_count()
    _fused_fit(LINE, fitjax.adam(0.01, beta=0.5), _starts("line", seed=2), data, steps=9)
    assert fused.trace_count() == before


# ----------------------------------------------------------------------------- precision


def test_fast_mode_plumbing_in_interpret_mode():
    # Without a GPU the fast functions are the same reformulations (argument reduction,
    # exp through exp2) with precise hardware functions: results move by a few roundings.
    starts = _starts("gabor")
    full = _fused_fit(GABOR, fitjax.adam(0.05), starts, fitjax.datasets.gabor(), steps=30)
    fast = _fused_fit(
        GABOR,
        fitjax.adam(0.05),
        starts,
        fitjax.datasets.gabor(),
        steps=30,
        options=fused.Fused(precision="fast", interpret=True),
    )
    assert not np.array_equal(fast.params, full.params)  # the fast functions were used
    np.testing.assert_allclose(fast.params, full.params, rtol=1e-4, atol=1e-4)


def test_fast_functions_against_float64():
    fast = _fused_math.functions(gpu=False)
    x = np.linspace(-60.0, 60.0, 4001, dtype=np.float32)
    for name, ref in (("sin", np.sin), ("cos", np.cos)):
        err = np.abs(np.asarray(fast[name](jnp.asarray(x)), np.float64) - ref(x.astype(np.float64)))
        assert err.max() < 2e-6, name  # the 2π reduction loses little up to |x| = 60
    z = np.linspace(-80.0, 20.0, 2001, dtype=np.float32)
    rel = np.abs(np.asarray(fast["exp"](jnp.asarray(z)), np.float64) / np.exp(z.astype(np.float64)) - 1)
    assert rel.max() < 1e-5  # rounding x·log2(e) costs about |x|·2^-24
    w = np.geomspace(1e-3, 50.0, 101).astype(np.float32)
    np.testing.assert_allclose(fast["log"](jnp.asarray(w)), np.log(w.astype(np.float64)), atol=1e-6)
    # their derivatives are the fast functions' own
    g = jax.grad(lambda v: jnp.sum(fast["sin"](v) + fast["exp"](v) + fast["log"](v)))(jnp.asarray(w))
    np.testing.assert_allclose(g, np.cos(w) + np.exp(w) + 1 / w, rtol=1e-5)


def _ulp_error(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return np.abs(got - ref) / np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)


def test_full_precision_polynomials_against_float64():
    full = _fused_math.polynomial()
    rng = np.random.default_rng(0)
    near = rng.uniform(-np.pi, np.pi, 200_000).astype(np.float32)
    wide = rng.uniform(-6000.0, 6000.0, 200_000).astype(np.float32)
    for name, ref in (("sin", np.sin), ("cos", np.cos)):
        assert _ulp_error(full[name](jnp.asarray(near)), ref(near.astype(np.float64))).max() < 1.6, name
        err = np.abs(np.asarray(full[name](jnp.asarray(wide)), np.float64) - ref(wide.astype(np.float64)))
        assert err.max() < 1.2e-7, name  # absolute: the reduction by π/2 stays exact enough
    # up to ln(max float32): past 88.38, 2^n is 2 * 2^127 (n = 128 has no float32)
    z = np.concatenate([rng.uniform(-87.0, 88.72, 200_000), rng.uniform(88.3, 88.7228, 20_000)])
    z = z.astype(np.float32)
    assert _ulp_error(full["exp"](jnp.asarray(z)), np.exp(z.astype(np.float64))).max() < 1.3
    # the edges: overflow, underflow, signed zeros, inf and NaN as the precise functions give them
    edge = jnp.asarray([np.nan, np.inf, -np.inf, 89.0, 88.7229, -88.0, -104.0, 0.0, -0.0], jnp.float32)
    expected = [np.nan, np.inf, 0.0, np.inf, np.inf, 0.0, 0.0, 1.0, 1.0]
    np.testing.assert_array_equal(full["exp"](edge), expected)
    np.testing.assert_array_equal(jax.jit(full["exp"])(edge), jax.jit(jnp.exp)(edge))  # the CPU flushes
    np.testing.assert_array_equal(np.isnan(full["sin"](edge[:3])), [True] * 3)
    np.testing.assert_array_equal(full["cos"](edge[-2:]), [1.0, 1.0])
    # derivatives: d sin = cos, d cos = -sin, d exp = exp, from the same polynomials
    g = jax.grad(lambda v: jnp.sum(full["sin"](v) - full["cos"](v) + full["exp"](v)))(jnp.asarray(near))
    ref = np.cos(near.astype(np.float64)) + np.sin(near.astype(np.float64)) + np.exp(near.astype(np.float64))
    np.testing.assert_allclose(g, ref, rtol=1e-6, atol=1e-6)


def test_full_and_platform_precision_differ_only_by_rounding():
    starts, data = _starts("gabor"), fitjax.datasets.gabor()
    got = {
        p: _fused_fit(
            GABOR, fitjax.adam(0.05), starts, data, steps=30, options=fused.Fused(p, interpret=True)
        )
        for p in ("full", "platform")
    }
    assert not np.array_equal(got["full"].params, got["platform"].params)  # the polynomials were used
    np.testing.assert_allclose(got["full"].params, got["platform"].params, rtol=2e-5, atol=2e-5)
    # float64 has no polynomials: "full" is the platform's functions, bit for bit
    starts64, data64 = np.asarray(starts, np.float64), jax.tree.map(lambda a: np.asarray(a, np.float64), data)
    with jax.enable_x64(True):
        a, b = (
            _fused_fit(
                GABOR, fitjax.adam(0.05), starts64, data64, steps=5, options=fused.Fused(p, interpret=True)
            )
            for p in ("full", "platform")
        )
        np.testing.assert_array_equal(a.params, b.params)


# ----------------------------------------------------------------------------- the GPU form (no GPU needed)


def _lowered(loss, opt, starts, data, precision="full", **kwargs):
    """The fused program lowered for CUDA, as XLA would receive it on a GPU."""
    plan = internal.Plan(
        steps=kwargs.get("steps", 10),
        record_every=kwargs.get("record_every"),
        record_params=kwargs.get("record_params", False),
        batch_size=kwargs.get("batch_size"),
        n_data=0 if data is None else len(data[0]),
        shared_order=True,
        extra_args=False,
    )
    update, defaults = stepper(opt, starts)
    shared, per_run = internal.hyperparams_split(
        update, defaults, starts, starts.shape[0], kwargs.get("hyperparams")
    )
    options = fused.Fused(precision=precision, interpret=True)
    kernel = internal.fused_plan(loss, update, starts, data, plan, shared, per_run, options, True, None)
    kernel = dataclasses.replace(kernel, interpret=False)  # the GPU kernel, lowered here without one
    traced = jax.jit(internal.fused_program(kernel)).trace(starts, shared, per_run, jax.random.key(0), data)
    return traced.lower(lowering_platforms=("cuda",)).as_text()


@pytest.mark.parametrize("precision", ["platform", "full", "fast"])
def test_lowers_to_a_triton_kernel_with_the_chosen_functions(precision):
    text = _lowered(GABOR, fitjax.adam(0.05), _starts("gabor", n=300), fitjax.datasets.gabor(), precision)
    assert "__gpu$xla.gpu.triton" in text
    precise = ("__nv_sinf", "__nv_cosf", "__nv_expf")
    approx = ("sin.approx.ftz.f32", "cos.approx.ftz.f32", "ex2.approx.ftz.f32")
    expected, absent = {
        "platform": (precise, approx),
        "fast": (approx, precise),
        "full": ((), precise + approx),  # plain arithmetic only
    }[precision]
    assert all(name in text for name in expected)
    assert not any(name in text for name in absent)


@pytest.mark.loose_promotion  # optax's cosine schedule mixes ints and floats
@pytest.mark.parametrize(
    "opt, kwargs",
    [
        (fitjax.nesterov(optax.cosine_decay_schedule(0.01, 10)), dict(record_every=3, record_params=True)),
        (
            fitjax.gd(0.01),
            dict(batch_size=7, record_every=3, hyperparams={"learning_rate": jnp.full(300, 0.01)}),
        ),
        (fitjax.normalized(0.01), {}),
    ],
)
def test_history_schedules_minibatches_lower_to_triton(opt, kwargs):
    text = _lowered(GABOR, opt, _starts("gabor", n=300), fitjax.datasets.gabor(), **kwargs)
    assert "__gpu$xla.gpu.triton" in text


# ----------------------------------------------------------------------------- the loss rewrite


WEIGHTS = jnp.linspace(0.5, 1.5, 30)


def _everything(p, batch):
    x, y = batch
    z = jnp.where(x > 0, p[0] * x, 0.0)
    flat = jax.lax.stop_gradient(p[1]) * jnp.ones_like(x) + jnp.zeros(x.shape[0])
    return (
        jnp.dot(z - y, z - y)
        + jnp.max(flat * x)
        + jnp.min(jnp.cos(x * p[1]))
        + jnp.square(p).sum()
        + p @ jnp.array([1.0, 2.0])
        + jnp.clip(p[0], 0, 1)
        + jnp.logaddexp(p[0], p[1])
        + jnp.mean(WEIGHTS * (p[0] - y) ** 2)
    )


@pytest.mark.loose_promotion  # one loss mixes in a float64 NumPy constant on purpose
@pytest.mark.parametrize("loss", [GABOR, fitjax.least_squares(fitjax.line, "mean"), _everything])
def test_rewritten_loss_equals_the_loss_and_its_gradient(x64, loss):
    x, y = fitjax.datasets.gabor()
    kloss = _fused_loss.rewrite(loss, jax.ShapeDtypeStruct((2,), jnp.float64), (x, y))
    assert (kloss.n, kloss.n_pad) == (30, 32)
    for phi in (jnp.array([0.3, 11.0]), jnp.array([-2.0, 4.0])):
        lanes, consts = kloss.pad([x, y]), kloss.padded_consts()
        value, grad = jax.jit(jax.value_and_grad(kloss))((phi[0], phi[1]), lanes, consts)
        ref_value, ref_grad = jax.jit(jax.value_and_grad(loss))(phi, (x, y))
        np.testing.assert_allclose(value, ref_value, rtol=1e-13)
        np.testing.assert_allclose(jnp.stack(grad), ref_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "loss, reason",
    [
        (lambda p, b: jnp.sum(jnp.cumsum(b[0]) * p[0]), "`cumsum`"),
        (lambda p, b: jnp.sum(jnp.outer(b[0], b[1])) * p[0], "the data"),
        (lambda p, b: jnp.sum((p[0] * b[0] - b[1])[::2]), "`slice` to the data"),
    ],
)
def test_rewrite_refuses_what_it_cannot_represent(loss, reason):
    x, y = fitjax.datasets.gabor()
    with pytest.raises(_fused_loss.Unsupported, match=reason):
        _fused_loss.rewrite(loss, jax.ShapeDtypeStruct((2,), jnp.float32), (x, y))
