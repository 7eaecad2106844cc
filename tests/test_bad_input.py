"""Every bad input is refused clearly, before anything is compiled: one table for the whole API.

Each row calls one public function with one bad argument and names the exception type, the
argument and the offending value; the test checks that the message contains both (and, where
given, a hint of the fix). A fixture checks that nothing was compiled first: the engine's and the
landscape's trace counters do not move. ``docs/errors.md`` lists the same checks for users.

The command line has its own table below: exit code 2 and one line on stderr.
"""

from __future__ import annotations

import atexit
import dataclasses
import gc
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _problems import LINE

import fitjax
from fitjax import internal
from fitjax.analysis import plots
from fitjax.cli import main

DATA = fitjax.datasets.line()  # 12 examples
STARTS = jnp.zeros((4, 2))
KEY = jax.random.key(0)


def _large(bad: float, at: int) -> np.ndarray:
    """70,002 zeros (more than fitjax tests on the host when small) with ``bad`` at ``at``."""
    x = np.zeros(70_002, np.float32)
    x[at] = bad
    return x


def _counters() -> tuple[int, ...]:
    return fitjax.trace_count(), fitjax.analysis.landscape.trace_count()


@pytest.fixture
def nothing_compiled():
    before = _counters()
    yield
    assert _counters() == before, "something was traced for compilation before the error"


def fit(**overrides: Any) -> fitjax.FitResult:
    kw: dict[str, Any] = dict(loss=LINE, optimizer=fitjax.gd(0.1), params0=STARTS, data=DATA, steps=10)
    kw.update(overrides)
    return fitjax.fit(kw.pop("loss"), kw.pop("optimizer"), kw.pop("params0"), kw.pop("data"), **kw)


def sweep(grid: Any, optimizer: Any = None, params0: Any = STARTS) -> fitjax.SweepResult:
    return fitjax.sweep(LINE, optimizer or fitjax.momentum(0.1), params0, DATA, steps=5, grid=grid)


def update(optimizer: Any, state_params: Any, grads: Any, params: Any = None) -> Any:
    """An optimizer's update with a state built for ``state_params``."""
    return optimizer.update(grads, optimizer.init(state_params), params)


def _jitted_update(optimizer: Any, state_params: Any, grads: Any) -> Any:
    return jax.jit(optimizer.update)(grads, optimizer.init(state_params))


def _nan_late(step: jax.Array) -> jax.Array:
    return 0.01 * jnp.sqrt(5.0 - step.astype(jnp.float32))  # NaN from step 6 on


def _raises(step: jax.Array) -> float:
    return float(step)  # a Python float of a traced step: cannot be traced


def _mlp_loss(params: Any, batch: Any) -> jax.Array:
    return LINE(params, batch)


def _while_loss(params: Any, batch: Any) -> jax.Array:
    """A loss with a lax.while_loop, which has no reverse-mode derivative."""
    return jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] * jnp.sum(params), c[1] + 1), (1.0, 0))[0]


_TWO_ARG_UPDATE = optax.GradientTransformation(lambda p: optax.EmptyState(), lambda g, s: (g, s))
_ONE_VALUE_UPDATE = optax.GradientTransformation(lambda p: optax.EmptyState(), lambda g, s, p=None: g)
X64 = np.linspace(-1.0, 1.0, 6)  # float64 on the host
F16_DATA = tuple(np.asarray(a, np.float16) for a in DATA)


@dataclasses.dataclass(frozen=True)
class Bad:
    """One bad input: ``call()`` raises ``error`` whose message contains ``argument`` and ``value``."""

    call: Callable[[], Any]
    error: type[Exception]
    argument: str
    value: str
    fix: str = ""


def row(name: str, call: Callable[[], Any], error: type[Exception], argument: str, value: str, fix: str = ""):
    return pytest.param(Bad(call, error, argument, value, fix), id=name)


TMP = Path(tempfile.mkdtemp(prefix="fitjax-bad-input-"))  # for rows that name paths
atexit.register(shutil.rmtree, TMP, ignore_errors=True)
A_FILE = TMP / "a-file"
A_FILE.write_text("a file, not a folder")
V5 = jnp.linspace(-1.0, 1.0, 5)
MLP = fitjax.init_mlp(KEY, [1, 4, 1])


BF16 = STARTS.astype(jnp.bfloat16)
F16 = STARTS.astype(jnp.float16)

CATALOGUE = [
    # ------------------------------------------------------------------ fit: starting points
    row(
        "params0-without-run-axis",
        lambda: fit(params0=jnp.zeros(2)),
        TypeError,
        "params0",
        "shape (2,)",
        "params0[None]",
    ),
    row(
        "params0-scalar",
        lambda: fit(params0=jnp.float32(1.5)),
        ValueError,
        "params0",
        "scalar (1.5)",
        "leading run axis",
    ),
    row(
        "params0-run-counts-differ",
        lambda: fit(params0={"a": jnp.zeros((3, 2)), "b": jnp.zeros((4,))}),
        ValueError,
        "params0['b']",
        "4",
        "same number of runs",
    ),
    row(
        "params0-int",
        lambda: fit(params0=jnp.zeros((4, 2), jnp.int32)),
        TypeError,
        "params0",
        "int32",
        "floating point",
    ),
    row(
        "params0-complex",
        lambda: fit(params0=jnp.zeros((4, 2), jnp.complex64)),
        TypeError,
        "params0",
        "complex64",
        "floating point",
    ),
    row("params0-strings", lambda: fit(params0=("one", "two")), TypeError, "params0[0]", "'one'"),
    row(
        "params0-nan",
        lambda: fit(params0=STARTS.at[1, 0].set(jnp.nan)),
        ValueError,
        "params0[1, 0]",
        "is nan (run 1)",
        "finite",
    ),
    row(
        "params0-inf-in-a-pytree",
        lambda: fit(loss=lambda p, b: LINE(p["w"], b), params0={"w": STARTS.at[2, 1].set(-jnp.inf)}),
        ValueError,
        "params0['w'][2, 1]",
        "-inf (run 2)",
    ),
    row("params0-empty", lambda: fit(params0={}), ValueError, "params0", "{}"),
    row("params0-zero-runs", lambda: fit(params0=jnp.zeros((0, 2))), ValueError, "params0", "(0, 2)"),
    row(
        "params0-pytree-the-loss-does-not-take",
        lambda: fit(params0={"w": STARTS}),
        TypeError,
        "loss",
        "{'w': (2,)}",
        "params0",
    ),
    # ------------------------------------------------------------------ fit: dtypes and hyperparameters
    row(
        "float32-learning-rate-underflows",
        lambda: fit(optimizer=fitjax.gd(1e-50)),
        ValueError,
        "learning_rate",
        "1e-50",
        "float32",
    ),
    row(
        "float32-learning-rate-overflows",
        lambda: fit(optimizer=fitjax.gd(1e39)),
        ValueError,
        "learning_rate",
        "1e+39 rounds to inf in float32",
    ),
    row(
        "hyperparams-negative",
        lambda: fit(hyperparams={"learning_rate": -1.0}),
        ValueError,
        "learning_rate",
        "-1",
    ),
    row(
        "hyperparams-unknown-name",
        lambda: fit(hyperparams={"beta": 0.5}),
        ValueError,
        "hyperparameter",
        "['beta']",
        "['learning_rate']",
    ),
    row(
        "hyperparams-one-per-run",
        lambda: fit(hyperparams={"learning_rate": jnp.ones(3)}),
        ValueError,
        "hyperparams['learning_rate']",
        "(3,)",
        "one value per run (4)",
    ),
    row(
        "hyperparams-for-an-optax-optimizer",
        lambda: fit(optimizer=optax.sgd(0.1), hyperparams={"learning_rate": 0.1}),
        TypeError,
        "hyperparams",
        "GradientTransformation",
    ),
    row(
        "schedule-nan-at-a-later-step",
        lambda: fit(optimizer=fitjax.gd(_nan_late)),
        ValueError,
        "learning_rate schedule",
        "nan at step 6",
        "steps=10",
    ),
    row(
        "schedule-negative-at-a-later-step",
        lambda: fit(optimizer=fitjax.gd(optax.linear_schedule(0.1, -0.1, 10)), steps=10),
        ValueError,
        "learning_rate schedule",
        "-0.02 at step 6",
    ),
    # ------------------------------------------------------------------ fit: data
    row(
        "data-lengths-differ",
        lambda: fit(data=(jnp.zeros(12), jnp.zeros(11))),
        ValueError,
        "data[1]",
        "11",
        "one row per example",
    ),
    row(
        "data-nan",
        lambda: fit(data=(DATA[0].at[3].set(jnp.nan), DATA[1])),
        ValueError,
        "data[0][3]",
        "nan (example 3)",
    ),
    row(  # more than internal.checks.HOST_CHECK_MAX values, as a NumPy array and as a jax array
        "data-nan-large-numpy",
        lambda: fit(data=(_large(np.nan, 70_001), np.zeros(70_002))),
        ValueError,
        "data[0][70001]",
        "nan (example 70001)",
    ),
    row(
        "data-inf-large-jax",
        lambda: fit(data=(jnp.zeros(70_002), jnp.asarray(_large(np.inf, 69_999)))),
        ValueError,
        "data[1][69999]",
        "inf (example 69999)",
    ),
    row(
        "data-inf",
        lambda: fit(data=(DATA[0], DATA[1].at[5].set(-jnp.inf))),
        ValueError,
        "data[1][5]",
        "-inf (example 5)",
    ),
    row("data-empty-pytree", lambda: fit(data=()), ValueError, "data", "()"),
    row(
        "data-zero-examples", lambda: fit(data=(jnp.zeros(0), jnp.zeros(0))), ValueError, "data", "0 examples"
    ),
    row(
        "data-scalar",
        lambda: fit(data=(jnp.float32(1.0), jnp.float32(2.0))),
        ValueError,
        "data[0]",
        "scalar (1.0)",
        "leading example axis",
    ),
    row("data-strings", lambda: fit(data=("abc", "def")), TypeError, "data[0]", "'abc'"),
    # ------------------------------------------------------------------ fit: settings
    row("steps-zero", lambda: fit(steps=0), ValueError, "steps", "got 0"),
    row("steps-float", lambda: fit(steps=2.5), TypeError, "steps", "2.5"),
    row("steps-bool", lambda: fit(steps=True), TypeError, "steps", "True"),
    row("record-every-zero", lambda: fit(record_every=0), ValueError, "record_every", "got 0"),
    row(
        "record-every-past-steps",
        lambda: fit(record_every=11),
        ValueError,
        "record_every",
        "got 11",
        "<= steps (10)",
    ),
    row("unroll-zero", lambda: fit(unroll=0), ValueError, "unroll", "got 0"),
    row(
        "loss-not-scalar",
        lambda: fit(loss=lambda p, b: (p[0] + p[1] * b[0] - b[1]) ** 2),
        ValueError,
        "loss",
        "shape (12,)",
        "jnp.sum",
    ),
    row("loss-not-callable", lambda: fit(loss="mse"), TypeError, "loss", "'mse'"),
    row("optimizer-a-name", lambda: fit(optimizer="adam"), TypeError, "optimizer", "'adam'"),
    row("batch-size-zero", lambda: fit(batch_size=0, key=KEY), ValueError, "batch_size", "got 0"),
    row(
        "batch-size-past-data",
        lambda: fit(batch_size=13, key=KEY),
        ValueError,
        "batch_size",
        "got 13",
        "examples (12)",
    ),
    row("batch-size-without-key", lambda: fit(batch_size=4), ValueError, "key", "key=None", "jax.random.key"),
    row(
        "batch-size-without-data",
        lambda: fit(loss=fitjax.toy_loss, data=None, batch_size=2, key=KEY),
        ValueError,
        "batch_size",
        "data=None",
    ),
    row("key-an-int", lambda: fit(key=3), TypeError, "key", "got 3"),
    row("key-wrong-shape", lambda: fit(key=jnp.zeros(3, jnp.uint32)), TypeError, "key", "[0, 0, 0]"),
    # ------------------------------------------------------------------ sweep
    row("grid-empty", lambda: sweep({}), ValueError, "grid", "{}"),
    row("grid-2d", lambda: sweep({"beta": jnp.zeros((2, 2))}), ValueError, "grid['beta']", "(2, 2)"),
    row(
        "grid-out-of-range",
        lambda: sweep({"beta": jnp.array([0.5, 1.0])}),
        ValueError,
        "beta",
        "1 (value 2 of 2)",
        "[0, 1)",
    ),
    row(
        "grid-unknown-name",
        lambda: sweep({"gamma": jnp.array([0.5])}),
        ValueError,
        "hyperparameter",
        "['gamma']",
    ),
    row(
        "grid-strings",
        lambda: sweep({"learning_rate": ["fast"]}),
        TypeError,
        "grid['learning_rate']",
        "['fast']",
    ),
    row(
        "grid-for-an-optax-optimizer",
        lambda: sweep({"learning_rate": jnp.array([0.1])}, optax.sgd(0.1)),
        TypeError,
        "hyperparams",
        "GradientTransformation",
    ),
    # ------------------------------------------------------------------ optimizers: hyperparameters
    row("gd-negative", lambda: fitjax.gd(-0.1), ValueError, "learning_rate", "-0.1", ">= 0"),
    row("gd-nan", lambda: fitjax.gd(float("nan")), ValueError, "learning_rate", "nan"),
    row("gd-inf", lambda: fitjax.gd(float("inf")), ValueError, "learning_rate", "inf"),
    row("gd-none", lambda: fitjax.gd(None), TypeError, "learning_rate", "None"),
    row("gd-a-string", lambda: fitjax.gd("fast"), TypeError, "learning_rate", "'fast'"),
    row("gd-a-bool", lambda: fitjax.gd(True), TypeError, "learning_rate", "True"),
    row(
        "gd-array-with-a-bad-value",
        lambda: fitjax.gd(jnp.array([0.1, -0.2])),
        ValueError,
        "learning_rate",
        "shape (2,)",
        "hyperparams=",
    ),
    row(
        "schedule-not-scalar",
        lambda: fitjax.gd(lambda step: jnp.ones(3)),
        ValueError,
        "learning_rate",
        "shape (3,)",
    ),
    row(
        "schedule-nan-at-0",
        lambda: fitjax.gd(lambda step: jnp.nan * step.astype(jnp.float32)),
        ValueError,
        "learning_rate(0)",
        "nan",
    ),
    row(
        "schedule-negative-at-0",
        lambda: fitjax.gd(optax.linear_schedule(-0.1, 0.1, 10)),
        ValueError,
        "learning_rate(0)",
        "got -0.1",
    ),
    row("schedule-not-traceable", lambda: fitjax.gd(_raises), TypeError, "learning_rate", "float"),
    row("momentum-beta-1.5", lambda: fitjax.momentum(0.1, beta=1.5), ValueError, "beta", "1.5", "[0, 1)"),
    row("nesterov-beta-1", lambda: fitjax.nesterov(0.1, beta=1.0), ValueError, "beta", "got 1"),
    row(
        "nesterov-classical-negative",
        lambda: fitjax.nesterov_classical(0.1, momentum=-0.5),
        ValueError,
        "momentum",
        "-0.5",
    ),
    row("normalized-eps-negative", lambda: fitjax.normalized(0.1, eps=-1.0), ValueError, "eps", "-1"),
    row("adam-beta-1", lambda: fitjax.adam(0.1, beta=1.0), ValueError, "beta", "got 1"),
    row("adam-gamma-negative", lambda: fitjax.adam(0.1, gamma=-0.1), ValueError, "gamma", "-0.1"),
    row("adam-eps-negative", lambda: fitjax.adam(0.1, eps=-1e-8), ValueError, "eps", "-1e-08"),
    # ------------------------------------------------------------------ optimizers: a foreign state
    row(
        "update-state-for-another-pytree",
        lambda: update(fitjax.momentum(0.1), {"a": jnp.zeros(2)}, {"b": jnp.ones(2)}),
        ValueError,
        "state.inner_state",
        "{'a': *}",
        "init(params)",
    ),
    row(
        "update-state-for-another-shape",
        lambda: update(fitjax.adam(0.1), {"a": jnp.zeros(2)}, {"a": jnp.ones(3)}),
        ValueError,
        "state.inner_state.mu['a']",
        "shape (2,)",
        "need (3,)",
    ),
    row(
        "update-state-that-would-broadcast",
        lambda: update(fitjax.momentum(0.1), jnp.zeros(1), jnp.ones(3)),
        ValueError,
        "state.inner_state.mu",
        "shape (1,)",
        "need (3,)",
    ),
    row(
        "update-state-of-another-optimizer",
        lambda: fitjax.adam(0.1).update(jnp.ones(3), fitjax.momentum(0.1).init(jnp.zeros(3))),
        ValueError,
        "state.inner_state",
        "MomentumState",
        "AdamState",
    ),
    row(
        "update-an-optax-state",
        lambda: fitjax.gd(0.1).update(jnp.ones(3), optax.sgd(0.1).init(jnp.ones(3))),
        TypeError,
        "state",
        "EmptyState",
    ),
    row(
        "update-params-not-like-grads",
        lambda: update(fitjax.gd(0.1), jnp.zeros(3), jnp.ones(3), params=jnp.zeros(4)),
        ValueError,
        "params",
        "shape (4,)",
        "need (3,)",
    ),
    row(
        "update-under-jit-is-refused-while-tracing",
        lambda: _jitted_update(fitjax.nesterov(0.1), jnp.zeros((2, 2)), jnp.ones((2, 3))),
        ValueError,
        "state.inner_state.mu",
        "(2, 2)",
    ),
    row(
        "line-search-update-without-the-loss",
        lambda: update(fitjax.gd_line_search(), jnp.zeros(2), jnp.ones(2), params=jnp.zeros(2)),
        TypeError,
        "value_fn",
        "None",
    ),
    row(
        "line-search-update-foreign-state",
        lambda: fitjax.backtracking_armijo().update(
            jnp.ones(2),
            fitjax.gd(0.1).init(jnp.zeros(2)),
            jnp.zeros(2),
            value=jnp.float32(1.0),
            value_fn=jnp.sum,
        ),
        ValueError,
        "state.inner_state",
        "EmptyState",
        "ArmijoState",
    ),
    # ------------------------------------------------------------------ line searches
    row(
        "bracket-max-dist-zero",
        lambda: fitjax.bracket_search(jnp.square, 0.0, 1e-3, 10),
        ValueError,
        "max_dist",
        "got 0",
    ),
    row(
        "bracket-tol-negative",
        lambda: fitjax.bracket_search(jnp.square, 1.0, -1e-3, 10),
        ValueError,
        "tol",
        "-0.001",
    ),
    row(
        "bracket-max-iter-fractional",
        lambda: fitjax.bracket_search(jnp.square, 1.0, 1e-3, 2.5),
        ValueError,
        "max_iter",
        "2.5",
    ),
    row("bracket-h-not-callable", lambda: fitjax.bracket_search(3, 1.0, 1e-3, 10), TypeError, "h", "got 3"),
    row(
        "gd-line-search-max-iter-zero",
        lambda: fitjax.gd_line_search(max_iter=0),
        ValueError,
        "max_iter",
        "got 0",
    ),
    row(
        "armijo-decrease-factor-1",
        lambda: fitjax.backtracking_armijo(decrease_factor=1.0),
        ValueError,
        "decrease_factor",
        "got 1",
        "(0, 1)",
    ),
    row(
        "armijo-increase-factor-below-1",
        lambda: fitjax.backtracking_armijo(increase_factor=0.5),
        ValueError,
        "increase_factor",
        "0.5",
    ),
    row(
        "armijo-negative-steps",
        lambda: fitjax.backtracking_armijo(max_backtracking_steps=-1),
        ValueError,
        "max_backtracking_steps",
        "-1",
    ),
    # ------------------------------------------------------------------ reduce on plateau
    row("plateau-factor-1", lambda: fitjax.reduce_on_plateau(factor=1.0), ValueError, "factor", "got 1"),
    row("plateau-patience-0", lambda: fitjax.reduce_on_plateau(patience=0), ValueError, "patience", "got 0"),
    row(
        "plateau-no-tolerance",
        lambda: fitjax.reduce_on_plateau(rtol=0.0, atol=0.0),
        ValueError,
        "rtol",
        "both 0",
    ),
    # ------------------------------------------------------------------ starting points
    row(
        "uniform-n-zero",
        lambda: fitjax.inits.uniform(KEY, 0, [0.0, 0.0], [1.0, 1.0]),
        ValueError,
        "n",
        "got 0",
    ),
    row(
        "uniform-low-above-high",
        lambda: fitjax.inits.uniform(KEY, 3, [0.0, 2.0], [1.0, 1.0]),
        ValueError,
        "low",
        "[0. 2.]",
    ),
    row(
        "uniform-structures-differ",
        lambda: fitjax.inits.uniform(KEY, 3, {"a": 0.0}, {"b": 1.0}),
        ValueError,
        "low and high",
        "{'a': *}",
    ),
    row(
        "uniform-infinite-bound",
        lambda: fitjax.inits.uniform(KEY, 3, [0.0, -jnp.inf], [1.0, 1.0]),
        ValueError,
        "low[1]",
        "-inf",
    ),
    row("uniform-key-an-int", lambda: fitjax.inits.uniform(0, 3, [0.0], [1.0]), TypeError, "key", "got 0"),
    row(
        "normal-std-negative", lambda: fitjax.inits.normal(KEY, 3, [0.0, 0.0], -1.0), ValueError, "std", "-1"
    ),
    row(
        "normal-mean-nan",
        lambda: fitjax.inits.normal(KEY, 3, [0.0, float("nan")]),
        ValueError,
        "mean[1]",
        "nan",
    ),
    row("grid-values-empty", lambda: fitjax.inits.grid([], [1.0]), ValueError, "grid values", "0 and 1"),
    row(
        "grid-values-nan",
        lambda: fitjax.inits.grid([0.0, float("nan")], [1.0]),
        ValueError,
        "values0[1]",
        "nan",
    ),
    row(
        "grid-index-repeated",
        lambda: fitjax.inits.grid([0.0], [1.0], index=(0, 0)),
        ValueError,
        "index",
        "(0, 0)",
    ),
    # ------------------------------------------------------------------ data sets, models, losses
    row("synthetic-n-zero", lambda: fitjax.datasets.synthetic_line(KEY, 0), ValueError, "n", "got 0"),
    row(
        "synthetic-noise-negative",
        lambda: fitjax.datasets.synthetic_regression(KEY, 8, noise=-1.0),
        ValueError,
        "noise",
        "-1",
    ),
    row(
        "synthetic-x-range-reversed",
        lambda: fitjax.datasets.synthetic_gabor(KEY, 8, x_range=(1.0, -1.0)),
        ValueError,
        "x_range",
        "(1.0, -1.0)",
    ),
    row(
        "synthetic-key-a-string",
        lambda: fitjax.datasets.synthetic_line("seed", 8),
        TypeError,
        "key",
        "'seed'",
    ),
    row("gabor-w-zero", lambda: fitjax.Gabor(w=0.0), ValueError, "w", "got 0"),
    row("gabor-w-nan", lambda: fitjax.Gabor(w=float("nan")), ValueError, "w", "nan"),
    row("mlp-one-size", lambda: fitjax.init_mlp(KEY, [3]), ValueError, "sizes", "[3]"),
    row("mlp-zero-width", lambda: fitjax.init_mlp(KEY, [1, 0, 1]), ValueError, "sizes[1]", "got 0"),
    row(
        "loss-unknown-reduction",
        lambda: fitjax.least_squares(fitjax.line, "max"),
        ValueError,
        "reduction",
        "'max'",
    ),
    row("loss-model-not-callable", lambda: fitjax.least_squares(3), TypeError, "model", "got 3"),
    # ------------------------------------------------------------------ landscapes and basins
    row(
        "loss-grid-axis-2d",
        lambda: fitjax.loss_grid(LINE, DATA, jnp.zeros((2, 2)), V5),
        ValueError,
        "axes[0]",
        "shape (2, 2)",
    ),
    row(
        "loss-grid-chunk-size-zero",
        lambda: fitjax.loss_grid(LINE, DATA, V5, V5, chunk_size=0),
        ValueError,
        "chunk_size",
        "got 0",
    ),
    row(
        "loss-grid-loss-not-callable",
        lambda: fitjax.loss_grid("mse", DATA, V5, V5),
        TypeError,
        "loss",
        "'mse'",
    ),
    row(
        "loss-plane-direction-shape",
        lambda: fitjax.loss_plane(LINE, DATA, jnp.zeros(2), (jnp.ones(3),), (V5,)),
        ValueError,
        "directions[0]",
        "(3,)",
    ),
    row(
        "loss-plane-axes-count",
        lambda: fitjax.loss_plane(LINE, DATA, jnp.zeros(2), (jnp.ones(2),), (V5, V5)),
        ValueError,
        "axes",
        "got 2",
    ),
    row(
        "filter-normalize-unknown-bias",
        lambda: fitjax.filter_normalize(MLP, MLP, bias="unit"),
        ValueError,
        "bias",
        "'unit'",
    ),
    row(
        "filter-normalize-shape",
        lambda: fitjax.filter_normalize(jnp.ones(3), jnp.ones(2)),
        ValueError,
        "direction",
        "(3,)",
    ),
    row(
        "filter-normalize-structure",
        lambda: fitjax.filter_normalize({"w": jnp.ones(2)}, MLP),
        ValueError,
        "direction",
        "{'w': *}",
    ),
    row(
        "random-directions-n-zero", lambda: fitjax.random_directions(KEY, MLP, n=0), ValueError, "n", "got 0"
    ),
    row(
        "pca-too-few-steps",
        lambda: fitjax.pca_directions(jnp.zeros((2, 3))),
        ValueError,
        "trajectory",
        "got 2",
    ),
    row(
        "pca-center-size",
        lambda: fitjax.pca_directions(jnp.zeros((5, 3)), center=jnp.zeros(4)),
        ValueError,
        "center",
        "4",
    ),
    row(
        "critical-points-newton-steps-zero",
        lambda: fitjax.critical_points(
            LINE, DATA, fitjax.Landscape((V5, V5), jnp.zeros((5, 5)), jnp.zeros(2), ()), newton_steps=0
        ),
        ValueError,
        "newton_steps",
        "got 0",
    ),
    row(
        "label-minima-tol-zero",
        lambda: fitjax.label_minima(jnp.zeros((3, 2)), jnp.zeros(3), tol=0.0),
        ValueError,
        "tol",
        "got 0",
    ),
    row(
        "label-minima-loss-per-run",
        lambda: fitjax.label_minima(jnp.zeros((3, 2)), jnp.zeros(4)),
        ValueError,
        "loss",
        "(4,)",
    ),
    row(
        "convergence-step-rtol-negative",
        lambda: fitjax.convergence_step(
            jnp.arange(3), jnp.zeros((2, 3)), jnp.zeros(2), jnp.zeros(2, bool), 3, rtol=-1.0
        ),
        ValueError,
        "rtol",
        "-1",
    ),
    row(
        "basin-map-steps-zero",
        lambda: fitjax.basin_map(LINE, fitjax.gd(0.1), DATA, V5, V5, steps=0),
        ValueError,
        "steps",
        "got 0",
    ),
    row(
        "basin-map-grid-nan",
        lambda: fitjax.basin_map(LINE, fitjax.gd(0.1), DATA, V5.at[0].set(jnp.nan), V5, steps=2),
        ValueError,
        "values0[0]",
        "nan",
    ),
    row(
        "basin-map-tol-zero",
        lambda: fitjax.basin_map(LINE, fitjax.gd(0.1), DATA, V5, V5, steps=2, tol=0.0),
        ValueError,
        "tol",
        "got 0",
    ),
    row(
        "basin-map-atol-negative",
        lambda: fitjax.basin_map(LINE, fitjax.gd(0.1), DATA, V5, V5, steps=2, atol=-1e-3),
        ValueError,
        "atol",
        "-0.001",
    ),
    row(
        "loss-grid-data-nan",
        lambda: fitjax.loss_grid(LINE, (DATA[0].at[1].set(jnp.nan), DATA[1]), V5, V5),
        ValueError,
        "data[0][1]",
        "nan",
        "clean or drop",
    ),
    row(
        "loss-grid-base-inf",
        lambda: fitjax.loss_grid(
            lambda p, b: p[2] * LINE(p[:2], b), DATA, V5, V5, base=jnp.array([0.0, 0.0, jnp.inf])
        ),
        ValueError,
        "base[2]",
        "inf",
    ),
    row(
        "loss-plane-center-nan",
        lambda: fitjax.loss_plane(LINE, DATA, jnp.array([0.0, jnp.nan]), (jnp.ones(2),), (V5,)),
        ValueError,
        "center[1]",
        "nan",
    ),
    row(
        "loss-grid-axis-nan",
        lambda: fitjax.loss_grid(LINE, DATA, V5.at[3].set(jnp.nan), V5),
        ValueError,
        "axes[0][3]",
        "nan",
        "finite",
    ),
    row(
        "pca-trajectory-nan",
        lambda: fitjax.pca_directions(jnp.zeros((5, 3)).at[1, 1].set(jnp.nan)),
        ValueError,
        "trajectory[1, 1]",
        "nan (step 1)",
    ),
    row(
        "random-directions-key-an-int",
        lambda: fitjax.random_directions(3, MLP),
        TypeError,
        "key",
        "got 3",
        "jax.random.key",
    ),
    row(
        "project-center-shape",
        lambda: fitjax.project(jnp.zeros((5, 3)), jnp.zeros(2), (jnp.ones(3),)),
        ValueError,
        "center",
        "2 parameters (shape (2,))",
        "(shape (3,)",
    ),
    row(
        "project-direction-shape",
        lambda: fitjax.project(jnp.zeros((5, 3)), jnp.zeros(3), (jnp.ones(3), jnp.ones(4))),
        ValueError,
        "directions[1]",
        "4 parameters",
    ),
    # ------------------------------------------------------------------ figures
    row(
        "plot-unknown-format",
        lambda: plots.plot_landscape(TMP / "f.jpg", V5, V5, jnp.zeros((5, 5))),
        ValueError,
        "path",
        "f.jpg'",
        ".png",
    ),
    row(
        "plot-folder-missing",
        lambda: plots.plot_landscape(TMP / "missing" / "f.png", V5, V5, jnp.zeros((5, 5))),
        ValueError,
        "path",
        "missing/f.png'",
        "create it first",
    ),
    row(
        "plot-path-under-a-file",
        lambda: plots.plot_landscape(A_FILE / "f.png", V5, V5, jnp.zeros((5, 5))),
        ValueError,
        "path",
        "a-file/f.png'",
    ),
    row(
        "plot-size-zero",
        lambda: plots.plot_landscape(TMP / "f.png", V5, V5, jnp.zeros((5, 5)), size=(0, 3)),
        ValueError,
        "size",
        "(0, 3)",
    ),
    row(
        "plot-grid-shape",
        lambda: plots.plot_landscape(TMP / "f.png", V5, V5, jnp.zeros((4, 5))),
        ValueError,
        "grid",
        "(4, 5)",
    ),
    # ------------------------------------------------------------------ chunked sweeps
    row(
        "chunked-chunk-size-zero",
        lambda: fitjax.fit_chunked(
            LINE, fitjax.gd(0.1), STARTS, DATA, steps=2, chunk_size=0, out_dir=TMP / "c0"
        ),
        ValueError,
        "chunk_size",
        "got 0",
    ),
    row(
        "chunked-out-dir-under-a-file",
        lambda: fitjax.fit_chunked(
            LINE,
            fitjax.gd(0.1),
            STARTS,
            DATA,
            steps=2,
            chunk_size=2,
            out_dir=A_FILE / "sweep",
            progress=False,
        ),
        ValueError,
        "out_dir",
        "a-file/sweep'",
    ),
    row(
        "chunked-grid-unknown-name",
        lambda: fitjax.fit_chunked(
            LINE,
            fitjax.gd(0.1),
            STARTS,
            DATA,
            steps=2,
            chunk_size=2,
            out_dir=TMP / "c1",
            grid={"beta": [0.5]},
        ),
        ValueError,
        "hyperparameter",
        "['beta']",
    ),
    row(
        "chunked-uniform-starts-nan",
        lambda: fitjax.engine.chunked.uniform_starts(KEY, 4, [0.0, jnp.nan], [1.0, 1.0]),
        ValueError,
        "low[1]",
        "nan",
    ),
    row("chunked-load-not-a-sweep", lambda: fitjax.load_chunked(TMP), ValueError, "manifest.json", str(TMP)),
    row(
        "chunked-nan-start",
        lambda: fitjax.fit_chunked(
            LINE,
            fitjax.gd(0.1),
            STARTS.at[3, 0].set(jnp.nan),
            DATA,
            steps=2,
            chunk_size=2,
            block=2,
            out_dir=TMP / "c2",
            progress=False,
        ),
        ValueError,
        "starts[3, 0]",
        "nan (run 3)",
        "finite",
    ),
    row(
        "chunked-inf-start-in-a-pytree",
        lambda: fitjax.fit_chunked(
            lambda p, b: LINE(p["w"], b),
            fitjax.gd(0.1),
            {"w": STARTS.at[2, 1].set(jnp.inf)},
            DATA,
            steps=2,
            chunk_size=2,
            block=2,
            out_dir=TMP / "c4",
            progress=False,
        ),
        ValueError,
        "starts['w'][2, 1]",
        "inf (run 2)",
    ),
    row(
        "chunked-int-starts",
        lambda: fitjax.fit_chunked(
            LINE,
            fitjax.gd(0.1),
            STARTS.astype(jnp.int32),
            DATA,
            steps=2,
            chunk_size=2,
            out_dir=TMP / "c5",
            progress=False,
        ),
        TypeError,
        "starts",
        "int32",
        "floating-point",
    ),
]


@pytest.mark.parametrize("bad", CATALOGUE)
def test_refused_naming_the_argument_and_the_value(bad: Bad):
    before = _counters()
    with pytest.raises(bad.error) as caught:
        bad.call()
    assert _counters() == before, "something was traced for compilation before the error"
    message = str(caught.value)
    for part in (bad.argument, bad.value, bad.fix):
        assert part in message, f"{part!r} not in the message: {message}"


# A hyperparameter that changes meaning in a 16-bit parameter dtype is a warning, not a
# refusal: the run goes on in that dtype, as optax's does (see tests/test_optax_protocol.py).
LOW_PRECISION = [
    row(
        "chunked-bfloat16-starts-adam",
        lambda: fitjax.fit_chunked(
            LINE, fitjax.adam(0.1), BF16, DATA, steps=2, chunk_size=2, out_dir=TMP / "c3", progress=False
        ),
        ValueError,
        "gamma",
        "bfloat16",
    ),
    row(
        "grid-value-bfloat16-cannot-hold",
        lambda: sweep({"beta": jnp.array([0.5, 0.999])}, params0=BF16),
        ValueError,
        "beta",
        "0.999",
        "bfloat16",
    ),
    row(
        "bfloat16-params-adam-gamma-rounds-to-1",
        lambda: fit(optimizer=fitjax.adam(0.1), params0=BF16),
        ValueError,
        "gamma",
        "0.999 rounds to 1 in bfloat16",
        "float32",
    ),
    row(
        "float16-params-adam-eps-flushed",
        lambda: fit(optimizer=fitjax.adam(0.1), params0=F16),
        ValueError,
        "eps",
        "1e-08",
        "float16",
    ),
    row(
        "float16-params-learning-rate-flushed",
        lambda: fit(optimizer=fitjax.gd(1e-6), params0=F16),
        ValueError,
        "learning_rate",
        "1e-06",
        "float16",
    ),
    row(
        "mixed-pytree-bfloat16-leaf",
        lambda: fit(
            loss=lambda p, b: LINE(p["a"] + p["b"].astype(jnp.float32), b),
            optimizer=fitjax.adam(0.1),
            params0={"a": STARTS, "b": BF16},
        ),
        ValueError,
        "gamma",
        "bfloat16",
    ),
]


@pytest.mark.loose_promotion  # a loss written loosely: 16-bit parameters meet float32 data
@pytest.mark.parametrize("bad", LOW_PRECISION)
def test_low_precision_warns_naming_the_argument_and_the_value(bad: Bad):
    with pytest.warns(fitjax.PrecisionWarning) as caught:
        bad.call()
    message = " ".join(str(w.message) for w in caught)
    for part in (bad.argument, bad.value, bad.fix):
        assert part in message, f"{part!r} not in the message: {message}"


def test_the_catalogue_is_broad():
    assert len(CATALOGUE) >= 40
    assert len({p.id for p in CATALOGUE}) == len(CATALOGUE)


# ----------------------------------------------------------------------------- the command line

CLI = [
    (["sweep", "--model", "line", "--optimizer", "gd", "--box", "1,0,0,1"], "--box", "'1,0,0,1'"),
    (["sweep", "--model", "line", "--optimizer", "gd", "--learning-rate", "nan"], "--learning-rate", "'nan'"),
    (["sweep", "--model", "line", "--optimizer", "gd", "--learning-rate", "1e-50"], "learning_rate", "1e-50"),
    (["sweep", "--model", "line", "--optimizer", "adam", "--eps", "-1"], "eps", "-1"),
    (
        ["sweep", "--model", "line", "--optimizer", "gd", "--seed", "9223372036854775808"],
        "--seed",
        "2**63 - 1",
    ),
    (["sweep", "--model", "line", "--optimizer", "adam", "--gamma", "1"], "gamma", "got 1"),
    (
        ["sweep", "--model", "line", "--optimizer", "momentum", "--beta", "0.5,1.0"],
        "beta",
        "got 1 (--beta: value 2 of 2)",
    ),
    (["sweep", "--model", "mlp", "--optimizer", "adam", "--hidden", "0"], "--hidden", "0"),
    (["sweep", "--model", "line", "--optimizer", "gd", "--seed", "abc"], "--seed", "'abc'"),
    (
        ["sweep", "--model", "line", "--optimizer", "gd", "--steps", "5", "--record-every", "10"],
        "record_every",
        "got 10",
    ),
    (["sweep", "--model", "line", "--optimizer", "gd", "--starts", "grid:1"], "--starts", "'grid:1'"),
    (["sweep", "--model", "line", "--optimizer", "gd", "--starts", "uniform:0"], "--starts", "'uniform:0'"),
    (["sweep", "--model", "line", "--optimizer", "sgd", "--batch-size", "0"], "--batch-size", "0"),
    (["landscape", "--model", "gabor", "--chunk-size", "0"], "--chunk-size", "0"),
    (["landscape", "--model", "mlp", "--extent", "-1"], "--extent", "'-1'"),
]


def _cli_id(value):
    return " ".join(value) if isinstance(value, list) else None


@pytest.mark.parametrize("argv, argument, value", CLI, ids=_cli_id)
def test_command_line_refuses_with_one_line_and_exit_code_2(
    argv, argument, value, tmp_path, capsys, nothing_compiled
):
    assert main([*argv, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("fitjax") and "error:" in err and "Traceback" not in err
    assert argument in err and value in err, err


def test_command_line_refuses_an_output_path_that_is_a_file(tmp_path, capsys, nothing_compiled):
    taken = tmp_path / "taken"
    taken.write_text("a file, not a folder")
    assert main(["sweep", "--model", "line", "--optimizer", "gd", "--out", str(taken), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot write to output folder" in err and str(taken) in err


def test_a_loss_closing_over_a_leaked_tracer_is_refused_by_name():
    leaked: list = []
    jax.jit(lambda x: leaked.append(x) or x)(1.0)
    with pytest.raises(TypeError, match="leaked tracer"):
        fit(loss=lambda p, b: LINE(p, b) * leaked[0])


def test_a_numpy_array_changed_between_calls_is_checked_again(monkeypatch):
    # A jax array found finite is not tested again (its values cannot change); a NumPy
    # array can change in place, so every call tests it.
    from fitjax.internal import checks

    tested = []
    original = checks.on_host
    monkeypatch.setattr(checks, "on_host", lambda arr: tested.append(arr) or original(arr))
    line = fitjax.least_squares(fitjax.line)
    x, y = (np.array(a) for a in fitjax.datasets.line())
    starts = np.float32([[0.1, 0.2], [0.3, 0.4]])
    fitjax.fit(line, fitjax.gd(0.01), starts, (x, y), steps=2)
    y[3] = np.nan
    with pytest.raises(ValueError, match=r"data\[1\]\[3\] is nan"):
        fitjax.fit(line, fitjax.gd(0.01), starts, (x, y), steps=2)
    starts_d, data_d = jnp.asarray(starts), fitjax.datasets.line()
    fitjax.fit(line, fitjax.gd(0.01), starts_d, data_d, steps=2)
    tested.clear()
    fitjax.fit(line, fitjax.gd(0.01), starts_d, data_d, steps=2)
    assert not any(a is starts_d or any(a is d for d in data_d) for a in tested)
    with pytest.raises(ValueError, match=r"params0\[1, 0\] is inf"):
        fitjax.fit(line, fitjax.gd(0.01), starts_d.at[1, 0].set(jnp.inf), data_d, steps=2)


# ----------------------------------------------------------------------------- a signature checked before
# A call whose loss, optimizer, shapes, dtypes and settings were checked before skips the checks
# that do not depend on the values; the compiled program tests the values, and a bad one is then
# named as on a first call.
KEPT_OPTIMIZER = fitjax.gd(0.1)
BIG = np.zeros((70_002, 2), np.float32)  # tested on the device on a first call: large


@pytest.mark.parametrize(
    ("clean", "bad", "named"),
    [
        (dict(), dict(params0=STARTS.at[1, 0].set(jnp.nan)), ["params0[1, 0]", "is nan (run 1)", "finite"]),
        (dict(), dict(data=(DATA[0], DATA[1].at[5].set(-jnp.inf))), ["data[1][5]", "-inf (example 5)"]),
        pytest.param(
            dict(data=(np.asarray(DATA[0], np.float64), np.asarray(DATA[1], np.float64))),
            dict(data=(np.asarray(DATA[0], np.float64), np.asarray(DATA[1], np.float64) * 1e39)),
            ["data[1]", "which is inf in float32"],
            marks=pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
        ),
        (dict(params0=BIG), dict(), []),
    ],
    ids=["params0-nan", "data-inf", "data-float64-overflows-float32", "params0-large"],
)
def test_a_bad_value_is_named_when_its_signature_was_checked_before(monkeypatch, clean, bad, named):
    if not named:  # the large case: a copy with one inf (a row built in the test, not at import)
        big = BIG.copy()
        big[69_999, 1] = np.inf
        bad, named = dict(params0=big), ["params0[69999, 1]", "inf (run 69999)"]
    fit(optimizer=KEPT_OPTIMIZER, **clean)  # checked and compiled
    checked = fitjax.trace_count()
    for name in ("check_loss", "check_update", "check_schedules"):  # must not run again

        def refuse(*args: Any, name: str = name, **kwargs: Any) -> None:
            raise AssertionError(f"{name} ran again for a signature checked before")

        monkeypatch.setattr(internal.prepare_module, name, refuse)
    fit(optimizer=KEPT_OPTIMIZER, **clean)  # the same signature: none of them runs
    with pytest.raises(ValueError) as caught:
        fit(optimizer=KEPT_OPTIMIZER, **(clean | bad))
    assert fitjax.trace_count() == checked, "the program was compiled again"
    for part in named:
        assert part in str(caught.value), f"{part!r} not in the message: {caught.value}"


def _count_update_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that gets an entry each time ``prepare`` checks an optimizer's update."""
    ran: list[str] = []
    check_update = internal.prepare_module.check_update

    def counted(*args: Any, **kwargs: Any) -> None:
        ran.append("check_update")
        check_update(*args, **kwargs)

    monkeypatch.setattr(internal.prepare_module, "check_update", counted)
    return ran


def test_a_fitjax_optimizer_built_again_alike_keeps_the_checks_and_another_value_does_not(monkeypatch):
    """``fit(loss, fitjax.gd(0.1), ...)`` in a loop builds its optimizer at each call: one
    built from the same rule and numbers (a float by its bits) is checked once; another
    value, ``-0.0`` against ``0.0`` included, is checked and runs with its own value."""
    internal.forget_checked()
    first = fit(optimizer=fitjax.gd(0.125))
    ran = _count_update_checks(monkeypatch)
    again = fit(optimizer=fitjax.gd(0.125))
    assert ran == []
    np.testing.assert_array_equal(first.params, again.params)
    other = fit(optimizer=fitjax.gd(0.25))
    assert ran == ["check_update"] and not np.array_equal(other.params, first.params)
    fit(optimizer=fitjax.gd(0.0))
    fit(optimizer=fitjax.gd(-0.0))
    assert ran == ["check_update"] * 3
    scheduled = fitjax.gd(optax.constant_schedule(0.125))  # a schedule: kept by identity
    fit(optimizer=scheduled)
    fit(optimizer=scheduled)
    fit(optimizer=fitjax.gd(optax.constant_schedule(0.125)))
    assert ran == ["check_update"] * 5


def test_an_optax_optimizer_built_again_alike_keeps_the_checks_as_it_keeps_its_program(monkeypatch):
    """``fit(loss, optax.adam(lr), ...)`` in a loop: an optax transformation built by the
    same code from the same values (its construction key, which also keys its compiled
    program) is checked once; another value, or one holding an object that may change in
    place, is checked again."""
    internal.forget_checked()
    first = fit(optimizer=optax.sgd(0.125, momentum=0.5))
    ran = _count_update_checks(monkeypatch)
    again = fit(optimizer=optax.sgd(0.125, momentum=0.5))
    assert ran == []
    np.testing.assert_array_equal(first.params, again.params)
    other = fit(optimizer=optax.sgd(0.125, momentum=0.25))
    assert ran == ["check_update"] and not np.array_equal(other.params, first.params)

    class Rate:  # an instance of a user's class: may change in place, so kept by identity
        value = 0.125

    for _ in range(2):
        rate = Rate()
        fit(optimizer=optax.sgd(lambda count, rate=rate: rate.value))
    assert ran == ["check_update"] * 3


def test_values_given_per_run_are_checked_at_every_call_of_a_kept_signature(monkeypatch):
    """A fit with ``hyperparams`` (a sweep's runs) keeps its signature's checks too: later
    calls with other values check only those values, run with them, and name a bad one
    as a first call does; the kept signature holds no per-run arrays."""
    internal.forget_checked()
    rates = jnp.array([0.01, 0.02, 0.05, 0.1])
    fit(optimizer=KEPT_OPTIMIZER, hyperparams={"learning_rate": rates})
    for name in ("check_loss", "check_schedules", "check_params0"):  # must not run again

        def refuse(*args: Any, name: str = name, **kwargs: Any) -> None:
            raise AssertionError(f"{name} ran again for a signature checked before")

        monkeypatch.setattr(internal.prepare_module, name, refuse)
    other = fit(optimizer=KEPT_OPTIMIZER, hyperparams={"learning_rate": rates[::-1]})
    monkeypatch.undo()
    internal.forget_checked()
    fresh = fit(optimizer=KEPT_OPTIMIZER, hyperparams={"learning_rate": rates[::-1]})
    np.testing.assert_array_equal(other.params, fresh.params)
    with pytest.raises(ValueError) as first:
        internal.forget_checked()
        fit(optimizer=KEPT_OPTIMIZER, hyperparams={"learning_rate": rates.at[2].set(-1.0)})
    fit(optimizer=KEPT_OPTIMIZER, hyperparams={"learning_rate": rates})  # kept again
    with pytest.raises(ValueError) as kept:
        fit(optimizer=KEPT_OPTIMIZER, hyperparams={"learning_rate": rates.at[2].set(-1.0)})
    assert str(kept.value) == str(first.value) and "learning_rate" in str(kept.value)
    internal.forget_checked()
    problem = internal.prepare(
        LINE, KEPT_OPTIMIZER, STARTS, DATA, steps=10, hyperparams={"learning_rate": rates * 2}
    )
    ref = weakref.ref(problem.hp_run["learning_rate"])  # the per-run array the first call made
    del problem
    gc.collect()
    assert ref() is None, "a kept signature keeps the per-run values alive"


def test_traced_run_ids_are_refused_at_a_first_call_as_at_a_later_one():
    kw = dict(steps=5, batch_size=2, key=KEY)
    for _ in range(2):
        with pytest.raises(TypeError, match="run_ids is traced"):
            jax.jit(
                lambda ids: internal.prepare(LINE, KEPT_OPTIMIZER, STARTS, DATA, run_ids=ids, **kw).n_runs
            )(jnp.arange(4, dtype=jnp.uint32))


def test_a_checked_signature_does_not_keep_its_arrays_alive():
    """What ``prepare`` keeps per signature holds no starts and no data: they can be freed."""
    x, y = np.asarray(DATA[0]), np.asarray(DATA[1])
    starts = np.zeros((4, 2), np.float32)
    refs = [weakref.ref(a) for a in (x, y, starts)]
    fit(optimizer=KEPT_OPTIMIZER, params0=starts, data=(x, y))
    del x, y, starts
    gc.collect()
    assert all(r() is None for r in refs)


@pytest.mark.parametrize(
    ("first", "then", "named"),
    [
        (dict(steps=10), dict(steps=10.0), "steps"),
        (dict(record_every=None), dict(record_params=1), "record_params"),
        (dict(), dict(keep_state="yes"), "keep_state"),
    ],
)
def test_settings_equal_in_value_but_not_in_type_are_checked_again(first, then, named):
    fit(optimizer=KEPT_OPTIMIZER, **first)
    with pytest.raises(TypeError, match=named):
        fit(optimizer=KEPT_OPTIMIZER, **then)


def test_a_fit_inside_jit_is_refused_after_its_signature_was_checked():
    fit(optimizer=KEPT_OPTIMIZER)
    with pytest.raises(TypeError, match="params0 is traced"):
        jax.jit(lambda p: fit(optimizer=KEPT_OPTIMIZER, params0=p).loss)(STARTS)


def test_a_chunked_sweep_refuses_bad_data_before_writing_after_its_signature_was_checked(tmp_path):
    kw = dict(steps=2, chunk_size=2, progress=False)
    fitjax.fit_chunked(LINE, KEPT_OPTIMIZER, STARTS, DATA, out_dir=tmp_path / "clean", **kw)
    bad = (DATA[0], DATA[1].at[5].set(jnp.nan))
    with pytest.raises(ValueError, match=r"data\[1\]\[5\] is nan \(example 5\)"):
        fitjax.fit_chunked(LINE, KEPT_OPTIMIZER, STARTS, bad, out_dir=tmp_path / "bad", **kw)
    assert not (tmp_path / "bad").exists(), "a folder was made for data that is refused"


def test_a_legacy_key_is_wrapped_in_a_repeated_call_too():
    kw = dict(optimizer=KEPT_OPTIMIZER, batch_size=4, key=jax.random.PRNGKey(3))
    first = fit(**kw)
    traced = fitjax.trace_count()
    again = fit(**kw)  # the same signature: no new program for a raw key
    assert fitjax.trace_count() == traced
    np.testing.assert_array_equal(first.params, again.params)


@pytest.mark.loose_promotion  # the line's loss meets bfloat16 parameters with float32 data
def test_a_precision_warning_is_given_at_every_call():
    opt = fitjax.adam(0.01)  # gamma = 0.999 rounds to 1 in bfloat16
    for _ in range(2):
        with pytest.warns(fitjax.PrecisionWarning, match="bfloat16"):
            fit(optimizer=opt, params0=BF16)
