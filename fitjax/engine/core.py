r"""The engine: every starting point fitted in one compiled program.

:func:`fit` runs one optimizer from a batch of starting points: ``jax.vmap`` over the
runs, ``lax.scan`` over the steps, inside one ``jax.jit``. :func:`sweep` runs a grid of
hyperparameter values times a batch of starts through the same program. Everything
a run produces comes back as data in a :class:`FitResult`: final parameters and
loss, an optional history, and a per-run status.

A run whose loss or parameters stop being finite is *diverged*: from that step on
its parameters and optimizer state stay at their last finite values and
``diverged_step`` records the step. Runs are independent under ``vmap``, so a
diverging run never changes another run's numbers.

The step loop tests for divergence once per span of about :data:`CHECK_EVERY` steps, not
every step: a failed run goes back to its span's start, and the span is replayed step
by step after the loop (by a second program, compiled and run only for a batch in which
some run failed) to find the exact step.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from fitjax import _checks
from fitjax.engine import sampler as _sampler
from fitjax.engine import sharding as _shard
from fitjax.numerics.fastmath import choose_math
from fitjax.optim.protocol import Stepper, held_dtype, stepper

PyTree = Any
Loss = Callable[[PyTree, Any], jax.Array]

_TRACES: collections.Counter[str] = collections.Counter()


def trace_count() -> int:
    """How many times the engine has traced (and so compiled) a batched run."""
    return _TRACES["fit"]


class History(NamedTuple):
    """Values recorded every ``record_every`` steps, before that step's update.

    Attributes:
      step: the steps recorded, shape ``(R,)``.
      loss: full-data loss at the reported parameters, shape ``(runs..., R)``.
      grad_norm: global norm of the gradient the optimizer received at that step
        (the mini-batch gradient for SGD, the look-ahead gradient for Nesterov).
      params: the reported parameters, leaves ``(runs..., R, ...)``, when asked for.
    """

    step: jax.Array
    loss: jax.Array
    grad_norm: jax.Array
    params: PyTree | None


class FitResult(NamedTuple):
    """Every run's outcome; leading axes index the runs (and the grid, for sweeps).

    Attributes:
      params: final reported parameters of each run.
      loss: final full-data loss of each run.
      diverged_step: the first step whose gradient or updated parameters were not
        finite (the run then keeps its last finite parameters and rule state), or
        ``steps`` for a run whose parameters stayed finite but whose final loss is
        not, or -1. Recording does not change it.
      history: the recorded :class:`History`, or ``None`` for final values only.
      opt_state: each run's final optimizer state.
      steps: the number of steps run.
    """

    params: PyTree
    loss: jax.Array
    diverged_step: jax.Array
    history: History | None
    opt_state: Any
    steps: int

    @property
    def diverged(self) -> jax.Array:
        """True for runs that diverged."""
        return self.diverged_step >= 0

    def summary(self) -> dict[str, Any]:
        """A short JSON-ready summary of the final losses and statuses."""
        loss = np.asarray(self.loss, dtype=np.float64).ravel()
        diverged = np.asarray(self.diverged).ravel()
        ok = loss[~diverged]
        best = int(np.argmin(np.where(diverged, np.inf, loss))) if ok.size else None
        return {
            "runs": int(loss.size),
            "steps": int(self.steps),
            "diverged": int(diverged.sum()),
            "best_run": best,
            "best_loss": float(ok.min()) if ok.size else None,
            "median_loss": float(np.median(ok)) if ok.size else None,
            "worst_loss": float(ok.max()) if ok.size else None,
        }


class SweepResult(NamedTuple):
    """A :class:`FitResult` with leading axes ``(len(v) for v in grid.values()) + (runs,)``."""

    grid: Mapping[str, jax.Array | np.ndarray]  # numpy arrays in a loaded chunked sweep
    result: FitResult


MAX_STEPS = 2**31 - 2
"""The most steps a run takes: the step counter is an int32, and Nesterov reads step ``t + 1``."""

CHECK_EVERY = 32
"""About how many steps run between two divergence checks of the step loop (see
:func:`_run_one` and :func:`_span`)."""


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Everything static about a run: what a compiled program is specialised on."""

    steps: int
    record_every: int | None
    record_params: bool
    batch_size: int | None
    n_data: int
    shared_order: bool
    extra_args: bool
    unroll: int = 1
    check_every: int = CHECK_EVERY  # fit passes the value CHECK_EVERY has at the call


# ----------------------------------------------------------------------------- one run


_SLICE_MAX = 8  # on a GPU, a run's leaf of at most this many elements is checked element by element


def _leaf_finite(x: jax.Array) -> jax.Array:
    """Whether every element of one run's leaf is finite.

    On a GPU a small leaf (the lecture's models have 2 parameters per run) is checked
    element by element: under ``vmap`` that is elementwise work that XLA fuses into the
    update, where ``jnp.all`` is a reduction over a tiny axis. When every step was
    checked, that took the step loop at 10⁴ runs on an H200 from 0.62× to 0.70× the
    expert baseline; on a CPU it was 3% slower (XLA's CPU fusion then repeats the update
    in each consumer), so the CPU keeps the reduction. It now runs once per span, in the
    replay and at every step of the fused kernel. Both forms give the same flag. A scalar
    needs neither (and the fused kernel's Triton lowering has no ``reduce_and``).
    """
    if jnp.ndim(x) == 0:
        return jnp.isfinite(x)
    if jnp.size(x) <= _SLICE_MAX and jax.default_backend() == "gpu":
        flat = jnp.ravel(x)
        return functools.reduce(jnp.logical_and, [jnp.isfinite(flat[i]) for i in range(flat.shape[0])])
    return jnp.all(jnp.isfinite(x))


def _all_finite(tree: PyTree) -> jax.Array:
    return functools.reduce(jnp.logical_and, map(_leaf_finite, jax.tree.leaves(tree)), jnp.asarray(True))


def _norm(tree: PyTree) -> jax.Array:
    """Global norm √(Σ g²) of real leaves: ``optax.tree.norm``'s value, without its
    ``g.imag`` term (a constant that the fused kernel's Triton lowering cannot take)."""
    squares = [jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)]
    return jnp.sqrt(sum(squares))


def _select(pred: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _make_advance(loss: Loss, update: Stepper, plan: _Plan, data: Any, key: jax.Array):
    """One unchecked update of one run:
    ``advance(params, state, perm, t, with_value) -> (params, state, perm, value, grads)``.

    The loss value is computed only where it is used (``with_value``, or for an
    optimizer that reads it): XLA duplicates the model's elementwise work into every
    reduction that consumes it, so an unused value would cost a second forward pass.
    """

    def advance(params, state, perm, t, with_value):
        if plan.batch_size is None:
            batch = data
        else:
            perm = _sampler.next_permutation(key, t, perm, plan.n_data, plan.batch_size)
            spe = _sampler.steps_per_epoch(plan.n_data, plan.batch_size)
            batch = _sampler.take(data, _sampler.batch_indices(perm, t % spe, plan.batch_size))
        extra = {}
        if with_value or plan.extra_args:
            value, grads = jax.value_and_grad(loss)(params, batch)
            if plan.extra_args:
                extra = {"value": value, "grad": grads, "value_fn": lambda p: loss(p, batch)}
        else:
            value, grads = None, jax.grad(loss)(params, batch)
        updates, new_state = update.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), new_state, perm, value, grads

    return advance


def _make_step(loss: Loss, update: Stepper, plan: _Plan, data: Any, key: jax.Array):
    """One checked update of one run: ``step(carry, t, with_value) -> (carry, (value, grad_norm))``
    with ``carry = (params, state, perm, diverged_step)``.

    A run whose gradient or new parameters are not finite is flagged at step ``t`` and
    keeps its parameters and rule state from then on. Divergence is detected from the
    gradient and the new parameters alone, so it does not depend on where the loss
    happens to be evaluated.
    """
    advance = _make_advance(loss, update, plan, data, key)

    def step(carry, t, with_value):
        params, state, perm, diverged_step = carry
        new_params, new_state, perm, value, grads = advance(params, state, perm, t, with_value)
        alive = diverged_step < 0
        keep = alive & _all_finite(grads) & _all_finite(new_params)
        carry = (
            _select(keep, new_params, params),
            update.freeze(keep, new_state, state),
            perm,
            jnp.where(alive & ~keep, t, diverged_step),
        )
        return carry, (value, _norm(grads))

    return step


def _record_steps(steps: int, record_every: int) -> jax.Array:
    """The recorded steps ``0, k, 2k, ...`` before ``steps``, in the default integer dtype
    (made once per setting: an array never changes, and building it costs two dispatches)."""
    return _record_steps_in(steps, record_every, jax.dtypes.canonicalize_dtype(int))


@functools.lru_cache(maxsize=64)
def _record_steps_in(steps: int, record_every: int, dtype: Any) -> jax.Array:
    return jnp.arange(steps // record_every, dtype=dtype) * record_every


def _steps(start: int, stop: int) -> jax.Array:
    return jnp.arange(start, stop, dtype=jnp.int32)


def _span(plan: _Plan) -> int:
    """The longest stretch of unchecked steps.

    It is about ``check_every``, and at most the record interval or the run. Within half
    to twice ``check_every`` a length that divides the run (or the record interval)
    exactly is preferred: then no shorter last span needs a loop of its own, which
    compiles 15–20% faster (T = 1000: 25 spans of 40, not 31 of 32 and one of 8). Longer
    spans come first: each span's loop costs a fixed time to start on a GPU.
    """
    length = plan.record_every or plan.steps
    target = plan.check_every
    if length <= target:
        return max(1, length)
    near = sorted(range(max(2, target // 2), 2 * target + 1), key=lambda d: (d < target, abs(d - target)))
    return next((d for d in near if length % d == 0), target)


def _run_one(params, state, key, data, *, loss: Loss, update: Stepper, plan: _Plan):
    """One run's step loop, checked for divergence every few steps.

    The steps run unchecked in spans of at most :func:`_span` steps (the expert's loop:
    no per-step test or select). At the end of a span, a run whose parameters are not
    finite goes back to its state at the span's start and is marked with the span
    (``bad_from``, ``bad_end``). It stays there, and :func:`_replay` later re-runs that
    one span step by step to find the exact step and the last finite state.
    Returns ``((params, state, perm), bad_from, bad_end, history)``.
    """
    advance = _make_advance(loss, update, plan, data, key)
    span = _span(plan)

    def unchecked(c, start, count):
        # The step index travels in the carry (not as scanned-over input): the loop then
        # has no per-step read of an index array, which measurably slows small programs.
        if count == 0:
            return c

        def body(ct, _):
            (p, s, perm), t = ct
            p, s, perm, _, _ = advance(p, s, perm, t, False)
            return ((p, s, perm), t + 1), None

        return lax.scan(body, (c, jnp.asarray(start, jnp.int32)), None, length=count, unroll=plan.unroll)[0][
            0
        ]

    def check(cb, new, start, count):
        """Keep ``new`` if it is finite; else go back to the span's start and mark the span."""
        (p, s, perm), bad_from, bad_end = cb
        ok = (bad_from < 0) & _all_finite(new[0])
        failed = (bad_from < 0) & ~ok
        c = (_select(ok, new[0], p), update.freeze(ok, new[1], s), new[2])
        return c, jnp.where(failed, start, bad_from), jnp.where(failed, start + count, bad_end)

    def spans(cb, start, count):
        """``count`` steps from ``start`` in checked spans of ``span`` steps (and a shorter last one)."""
        n, rest = divmod(count, span)
        if n:

            def one(cb, i):
                t0 = start + i * span
                return check(cb, unchecked(cb[0], t0, span), t0, span), None

            cb = lax.scan(one, cb, _steps(0, n))[0]
        if rest:
            t0 = start + n * span
            cb = check(cb, unchecked(cb[0], t0, rest), t0, rest)
        return cb

    none = jnp.asarray(-1, jnp.int32)
    cb = ((params, state, _steps(0, plan.n_data)), none, none)
    # The step's own value is the full-data loss at the reported parameters unless
    # the loss sees mini-batches or the optimizer steps from a look-ahead point.
    reuse = plan.batch_size is None and not update.reports
    history = None
    if plan.record_every is None:
        cb = spans(cb, 0, plan.steps)
    else:
        k = plan.record_every
        n_blocks = plan.steps // k

        def block(cb, b):
            t0 = b * k
            (p, s, perm), bad_from, bad_end = cb
            shown = update.report(p, s)
            p1, s1, perm1, value, grads = advance(p, s, perm, t0, reuse)
            rec_loss = value if reuse else loss(shown, data)
            first = min(span, k)  # the recorded step opens the block's first span
            cb = check(cb, unchecked((p1, s1, perm1), t0 + 1, first - 1), t0, first)
            cb = spans(cb, t0 + first, k - first)
            return cb, (rec_loss, _norm(grads), shown if plan.record_params else None)

        cb, history = lax.scan(block, cb, _steps(0, n_blocks))
        cb = spans(cb, n_blocks * k, plan.steps - n_blocks * k)
    return (*cb, history)


def _replay(
    params, state, bad_from, bad_end, history, key, data, *, loss: Loss, update: Stepper, plan: _Plan
):
    """Re-run a marked run's failing span step by step, from the state saved at its start.

    Gives the run's exact ``diverged_step`` (the first step whose gradient or new
    parameters were not finite) and its last finite parameters and rule state, as if
    every step had been checked; records after that step are rewritten to show the
    frozen run as a checked loop records it. Runs that never failed are returned
    unchanged. Returns ``(params, state, diverged_step, history)``.
    """
    step = _make_step(loss, update, plan, data, key)
    bad = bad_from >= 0
    start = jnp.maximum(bad_from, 0)
    state0 = update.at_count(state, start)  # the saved state is the span's start
    if plan.batch_size is None:
        perm = _steps(0, plan.n_data)
    else:
        perm = _sampler.permutation_at(key, start, plan.n_data, plan.batch_size)

    def body(ct, _):
        carry, t = ct
        new = step(carry, t, False)[0]
        return (_select(t < bad_end, new, carry), t + 1), None

    carry = (params, state0, perm, jnp.asarray(-1, jnp.int32))
    (p, s, _, d), _ = lax.scan(body, (carry, start), None, length=_span(plan))[0]
    # A span that failed in the loop but not on replay (rounding at the edge of
    # overflow) is flagged at its last step, with the replay's state.
    d = jnp.where(d < 0, bad_end - 1, d)
    params, state = _select(bad, p, params), update.freeze(bad, s, state)
    diverged_step = jnp.where(bad, d, -1)
    if history is not None:
        history = _refreeze_history(
            history, bad, d, params, state, key, data, loss=loss, update=update, plan=plan
        )
    return params, state, diverged_step, history


def _refreeze_history(history, bad, d, params, state, key, data, *, loss: Loss, update: Stepper, plan: _Plan):
    """Records after a run's divergence step, as a checked loop makes them: the frozen
    parameters reported at that step's count, their loss, and the norm of the gradient
    at them on that step's batch."""
    h_loss, h_gnorm, h_params = history
    k = plan.record_every
    assert k is not None  # a history is recorded only with record_every (_run_one)
    at = _steps(0, plan.steps // k) * k

    def record(t):
        shown = update.report(params, update.at_count(state, t))
        if plan.batch_size is None:
            batch = data
        else:
            batch = _sampler.take(data, _sampler.indices_at(key, t, plan.n_data, plan.batch_size))
        return loss(shown, data), _norm(jax.grad(loss)(params, batch)), shown

    varies = plan.batch_size is not None or update.report_moves
    if varies:
        r_loss, r_gnorm, r_shown = jax.vmap(record)(at)
    else:  # the same record at every step: computed once
        r_loss, r_gnorm, r_shown = jax.tree.map(
            lambda a: jnp.broadcast_to(a, (at.shape[0], *jnp.shape(a))), record(at[0])
        )
    after = bad & (at > d)

    def patch(new, old):
        return jnp.where(jnp.reshape(after, after.shape + (1,) * (old.ndim - 1)), new, old)

    h_params = None if h_params is None else jax.tree.map(patch, r_shown, h_params)
    return patch(r_loss, h_loss), patch(r_gnorm, h_gnorm), h_params


def _finish(params, state, diverged_step, *, loss: Loss, update: Stepper, plan: _Plan, data: Any):
    final = update.report(params, state)
    final_loss = loss(final, data)
    # A loss that overflows while gradient and parameters stay finite is flagged at the end.
    diverged_step = jnp.where((diverged_step < 0) & ~jnp.isfinite(final_loss), plan.steps, diverged_step)
    return final, final_loss, diverged_step


def _run_keys(plan: _Plan, key: jax.Array, run_ids: jax.Array | None) -> tuple[jax.Array | None, int | None]:
    """Each run's mini-batch key and its vmap axis: none for a full batch, one shared
    key with ``shared_order``, else ``fold_in(key, run_id)`` per run."""
    if plan.batch_size is None:  # no randomness in a full-batch run
        return None, None
    if plan.shared_order:
        return key, None
    assert run_ids is not None  # fit passes run ids whenever the runs take mini-batches
    return jax.vmap(jax.random.fold_in, (None, 0))(key, run_ids), 0


@functools.lru_cache(maxsize=256)
def _program(loss: Loss, update: Stepper, plan: _Plan) -> tuple[Callable, Callable]:
    """The batched run for these static settings, raw and jitted (one jit cache per plan).

    Each run's optimizer state is built inside the program by ``update.init`` with the
    hyperparameter arrays passed in. Hyperparameters shared by all runs stay unbatched
    scalars; only swept ones carry a run axis.

    Returns the results of every run that did not fail a span check, and what
    :func:`_replay_program` needs for those that did: ``(final params, final loss,
    diverged_step, history, state, raw params, (bad_from, bad_end), any failed)``, where
    the raw params are the loop's own (``None`` when they are the reported ones).
    """
    run = functools.partial(_run_one, loss=loss, update=update, plan=plan)
    reports = update.reports

    def batched(params, hp_shared, hp_run, key, run_ids, data):
        _TRACES["fit"] += 1
        keys, key_axis = _run_keys(plan, key, run_ids)

        def one(p, hp, k):
            state = update.init(p, {**hp_shared, **hp})
            return run(p, state, k, data)

        (params, state, _), bad_from, bad_end, history = jax.vmap(one, (0, 0, key_axis))(params, hp_run, keys)
        final, final_loss, diverged_step = jax.vmap(
            functools.partial(_finish, loss=loss, update=update, plan=plan, data=data)
        )(params, state, jnp.full_like(bad_from, -1))
        failed = (bad_from, bad_end)
        raw = params if reports else None
        return final, final_loss, diverged_step, history, state, raw, failed, jnp.any(bad_from >= 0)

    return batched, jax.jit(batched)


@functools.lru_cache(maxsize=256)
def _replay_program(loss: Loss, update: Stepper, plan: _Plan) -> tuple[Callable, Callable]:
    """The runs that failed a span check, replayed (:func:`_replay`) and merged into the
    batch's results; raw and jitted. Built and compiled only when some run failed.

    Runs that did not fail keep the main program's values, bit for bit.
    """
    replay = functools.partial(_replay, loss=loss, update=update, plan=plan)

    def replayed(params, state, failed, history, key, run_ids, data, results):
        _TRACES["replay"] += 1
        keys, key_axis = _run_keys(plan, key, run_ids)
        bad_from, bad_end = failed
        p, s, d, history = jax.vmap(replay, (0, 0, 0, 0, 0, key_axis, None))(
            params, state, bad_from, bad_end, history, keys, data
        )
        s = update.keep_batching(state, s)  # the count and hyperparameters keep their batching
        new = jax.vmap(functools.partial(_finish, loss=loss, update=update, plan=plan, data=data))(p, s, d)
        bad = bad_from >= 0

        def pick(a, b):
            return jnp.where(jnp.reshape(bad, bad.shape + (1,) * (jnp.ndim(b) - 1)), a, b)

        final, final_loss, diverged_step = jax.tree.map(pick, new, results)
        return final, final_loss, diverged_step, history, s

    return replayed, jax.jit(replayed)


def _one_run(params0: PyTree) -> PyTree:
    """The shapes and dtypes of one run's parameters."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a)[1:], jnp.result_type(a)), params0)


def _check_swept(update: Stepper, one: PyTree, values: Any) -> dict[str, Any]:
    """Check hyperparameter values given per run (or per grid point): the optimizer can
    take each name per run, and each value passes its declaration. Returns name -> dtype.

    Any optimizer whose hyperparameters are held in its state takes per-run values:
    fitjax's, and optax's through ``optax.inject_hyperparams``.
    """
    if not isinstance(values, Mapping):
        raise TypeError(
            f"hyperparams must be a mapping name -> values, got {type(values).__name__} {values!r}"
        )
    sweepable = update.swept(one)
    if not sweepable:
        raise TypeError(
            "hyperparams can only be given per run for an optimizer whose state holds them: a fitjax "
            "optimizer, or an optax one wrapped as optax.inject_hyperparams(optax.adam)(learning_rate=0.1); "
            f"got {update.transform!r}"
        )
    unknown = set(values) - set(sweepable)
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {sorted(unknown)} for per-run values; this optimizer takes "
            f"{sorted(sweepable)} (a hyperparameter given as a schedule follows its schedule)"
        )
    for name, value in values.items():
        update.check(name, value, one)
    return sweepable


def _hyperparams(
    update: Stepper,
    defaults: dict[str, jax.Array],
    params0: PyTree,
    n_runs: int,
    values: Mapping[str, Any] | None,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Split an optimizer's hyperparameters into shared scalars and per-run arrays."""
    if not values:
        return defaults, {}
    for name, value in values.items():
        if np.ndim(value) not in (0, 1) or (np.ndim(value) == 1 and np.shape(value)[0] != n_runs):
            raise ValueError(
                f"hyperparams[{name!r}] must be a scalar or have one value per run ({n_runs}), "
                f"got shape {np.shape(value)}"
            )
    dtypes = _check_swept(update, _one_run(params0), values)
    per_run = {name: jnp.broadcast_to(jnp.asarray(v, dtypes[name]), (n_runs,)) for name, v in values.items()}
    shared = {k: v for k, v in defaults.items() if k not in per_run}
    return shared, per_run


# ----------------------------------------------------------------------------- checks


def _check_params0(params0: PyTree) -> int:
    leaves = jax.tree_util.tree_leaves_with_path(params0)
    if not leaves:
        raise ValueError(
            f"params0 is empty (got {params0!r}): pass an array or pytree of arrays with a leading run axis"
        )
    counts = {}
    for path, leaf in leaves:
        name = _checks.leaf_name("params0", path)
        arr = _checks.as_array(name, leaf)
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(
                f"{name} has dtype {arr.dtype}; parameters must be floating point "
                "(for example jnp.asarray(params0, dtype=float))"
            )
        if arr.ndim < 1:
            raise ValueError(
                f"{name} is a scalar ({arr}); params0 needs a leading run axis, e.g. params0[None] "
                "for a single run or fitjax.inits.uniform(...) for many"
            )
        counts[name] = arr.shape[0]
    if len(set(counts.values())) > 1:
        raise ValueError(
            f"params0 leaves have different run counts along their leading axis: {counts}; "
            "every leaf needs the same number of runs"
        )
    n = next(iter(counts.values()))
    if n < 1:
        raise ValueError(
            f"params0 has 0 runs along its leading axis (shapes {jax.tree.map(jnp.shape, params0)}); "
            "pass at least one starting point"
        )
    _checks.finite("params0", params0, "every starting point must be finite", axis="run")
    return n


def _check_data(data: Any) -> int:
    if data is None:
        return 0
    leaves = jax.tree_util.tree_leaves_with_path(data)
    if not leaves:
        raise ValueError(
            f"data is empty (got {data!r}); pass (x, y) arrays with one example per row, or None for no data"
        )
    sizes = {}
    for path, leaf in leaves:
        name = _checks.leaf_name("data", path)
        arr = _checks.as_array(name, leaf)
        if arr.ndim < 1:
            raise ValueError(
                f"{name} is a scalar ({arr}); every data array needs a leading example axis "
                "(pass arrays, e.g. (jnp.asarray(x), jnp.asarray(y)), not lists of numbers)"
            )
        sizes[name] = arr.shape[0]
    if len(set(sizes.values())) > 1:
        raise ValueError(f"data arrays have different lengths {sizes}; x and y need one row per example")
    n = next(iter(sizes.values()))
    if n < 1:
        raise ValueError(f"data has 0 examples (lengths {sizes}); pass at least one")
    _checks.finite("data", data, "clean or drop those examples", axis="example")
    return n


_TRACED = (
    "fit was called inside jax.jit, jax.vmap or another transformation ({what}): fit compiles and runs "
    "its own program and reads back on the host whether a run needs its span replayed, so it cannot be "
    "traced. Call fit outside the transformation; to batch fits, put the starts on params0's leading "
    "axis, give one value per run with hyperparams=, or a grid to fitjax.sweep"
)


def _refuse_tracers(**trees: Any) -> None:
    """Refuse, before anything is compiled, arguments that are being traced by an enclosing
    transformation (``jax.jit``, ``jax.vmap``, ``jax.grad``)."""
    for name, tree in trees.items():
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree)):
            raise TypeError(_TRACED.format(what=f"{name} is traced"))


Backend = Callable[..., "FitResult | None"]
"""``dispatch(backend, loss, stepper, params0, data, *, plan, hp_shared, hp_run, key, jit, mesh)``:
a fit on another path than this module's program, or None to run this one."""

_BACKENDS: list[Backend] = []


def register_backend(dispatch: Backend) -> None:
    """Add a path that ``fit(..., backend=...)`` can take (the fused GPU kernel registers
    itself so). The engine does not import the paths built on it: they come to it."""
    if dispatch not in _BACKENDS:
        _BACKENDS.append(dispatch)


def _other_backend(backend: Any) -> Backend:
    if not _BACKENDS:
        raise ValueError(
            f"backend={backend!r} needs a path that is not loaded; import fitjax (which loads the fused "
            "kernel) or pass backend='xla'"
        )
    return _BACKENDS[0]


def _check_loss_and_optimizer(loss: Any, optimizer: Any) -> None:
    """``loss`` is callable and ``optimizer`` has callable ``init`` and ``update``."""
    if not callable(loss):
        raise TypeError(f"loss must be a function loss(params, batch) -> scalar, got {loss!r}")
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(
            f"optimizer must be a fitjax optimizer or optax GradientTransformation, got {optimizer!r}"
        )


_LOSS_CHECKED: set[tuple] = set()


def _dtype_of(a: Any) -> Any:
    return a.dtype if hasattr(a, "dtype") else jnp.asarray(a).dtype


def _signature(*parts: Any, params0: PyTree, batch: Any) -> tuple | None:
    """What a check made on abstract values depends on: ``parts`` (the loss, the optimizer's
    view) and the structure, shapes and dtypes of one run's params and of a batch. None
    when something is unhashable (then the check runs every time)."""
    p_leaves, p_def = jax.tree.flatten(params0)
    b_leaves, b_def = jax.tree.flatten(batch)
    memo = (
        *parts,
        p_def,
        b_def,
        tuple((jnp.shape(a)[1:], _dtype_of(a)) for a in p_leaves),
        tuple((getattr(a, "shape", None), getattr(a, "dtype", a)) for a in b_leaves),
    )
    try:
        hash(memo)
    except TypeError:
        return None
    return memo


def _check_loss(loss: Loss, params0: PyTree, batch: Any) -> None:
    """``loss`` runs on one run's params and returns a scalar (traced abstractly, once per
    loss and argument shapes: later calls with the same shapes skip the trace)."""
    memo = _signature(loss, params0=params0, batch=batch)
    if memo is not None and memo in _LOSS_CHECKED:
        return
    one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a)[1:], jnp.asarray(a).dtype), params0)
    try:
        out = jax.eval_shape(loss, one, batch)
    except Exception as err:  # noqa: BLE001 - reported with the argument's name
        shapes, full = jax.tree.map(lambda a: a.shape, one), jax.tree.map(jnp.shape, params0)
        raise TypeError(
            f"loss(params, batch) failed on one run's params (shape {shapes}, from params0 of shape {full} "
            f"without its leading run axis): {type(err).__name__}: {err}. "
            "(params0's leading axis is the run axis: for a single start pass params0[None].)"
        ) from err
    if not hasattr(out, "shape") or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"loss must return a scalar, got shape {shape}; reduce it, e.g. with jnp.sum over examples"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(
            f"loss must return a real floating-point scalar, got dtype {out.dtype}; fit takes its gradient "
            "(return a float, e.g. jnp.sum(r**2); for complex residuals jnp.sum(jnp.abs(r)**2))"
        )
    try:  # fit differentiates the loss in reverse mode: refuse what jax.grad cannot take, now
        jax.eval_shape(jax.grad(loss), one, batch)
    except Exception as err:  # noqa: BLE001 - reported with the argument's name
        raise TypeError(
            f"jax.grad(loss) fails on one run's params: {type(err).__name__}: {str(err).splitlines()[0]} "
            "(fit takes reverse-mode gradients: a lax.while_loop has none, use lax.scan or lax.fori_loop "
            "with fixed bounds; a loss must not close over values traced elsewhere)"
        ) from err
    if memo is not None:
        _LOSS_CHECKED.add(memo)


def _check_update(update: Stepper, loss: Loss, params0: PyTree, batch: Any, hp: Mapping[str, Any]) -> None:
    """The optimizer's ``init`` and ``update`` run on one run's params abstractly and return
    what optax's conventions say: ``update(updates, state, params, **extra) -> (updates, state)``
    with updates shaped like the params. Nothing is compiled; checked once per signature."""
    shapes = tuple(sorted((k, jnp.shape(v), str(jnp.result_type(v))) for k, v in hp.items()))
    memo = _signature("update", update, loss, shapes, params0=params0, batch=batch)
    if memo is not None and memo in _LOSS_CHECKED:
        return
    one = _one_run(params0)
    hp_one = {k: jax.ShapeDtypeStruct(jnp.shape(v)[1:], jnp.result_type(v)) for k, v in hp.items()}

    def step(p, hp, b):
        state = update.init(p, hp)
        value, grads = jax.value_and_grad(loss)(p, b)
        extra = {}
        if update.uses_loss:
            extra = {"value": value, "grad": grads, "value_fn": lambda q: loss(q, b)}
        return update.update(grads, state, p, **extra)

    try:
        out = jax.eval_shape(step, one, hp_one, batch)
    except Exception as err:  # noqa: BLE001 - reported with the argument's name
        raise TypeError(
            f"optimizer.update failed on one run's params: {type(err).__name__}: "
            f"{str(err).splitlines()[0]}; an optimizer is an optax GradientTransformation: "
            "init(params) -> state and update(updates, state, params, **extra) -> (updates, state)"
        ) from err
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(
            f"optimizer.update must return (updates, state), got {type(out).__name__} "
            f"{jax.tree.structure(out)}; an optax GradientTransformation returns both"
        )
    _checks.same_tree(
        "the updates of optimizer.update", out[0], one, "the params", "return one update per parameter"
    )
    if memo is not None:
        _LOSS_CHECKED.add(memo)


@functools.cache
def _unused_key() -> jax.Array:
    """The key passed when none is needed (made once: building a key costs a dispatch)."""
    return jax.random.key(0)


def _check_key(key: Any) -> jax.Array:
    return _checks.prng_key("key", key)


def _check_batch(batch_size: int | None, data: Any, n_data: int, key: Any) -> tuple[int | None, jax.Array]:
    """``(batch_size, key)`` checked: a mini-batch size needs data and a key; without one
    the key is not used and a fixed one stands in."""
    if batch_size is not None:
        if data is None:
            raise ValueError("batch_size needs data to draw mini-batches from; got data=None")
        batch_size = _checks.positive_int(
            "batch_size", batch_size, upper=n_data, upper_name="the number of examples"
        )
        if key is None:
            raise ValueError(
                f"key is needed to draw mini-batches (batch_size={batch_size}), got key=None: "
                "pass key=jax.random.key(seed)"
            )
    return batch_size, _unused_key() if key is None else _check_key(key)


def _default_unroll() -> int:
    """Steps per iteration of the step loop when ``fit`` is not told: 2 on a GPU, 1 elsewhere.

    Measured with the lecture's Gabor model (``benchmarks/step_profile.py``, Adam, N = 28,
    T = 1000): on an H200 the loop of a span, a body of 4 kernels, ran at 0.35× the expert
    baseline at 10⁴ runs and at 1.06× unrolled twice (0.99× and 0.98× at 10⁶ runs); on
    a 2-core CPU unrolling cost 10% at one run.
    """
    return 2 if jax.default_backend() == "gpu" else 1


def _first_failing(check: Callable[[str, Any], None], name: str, values: np.ndarray) -> int | None:
    """The first index whose value ``check`` refuses (or that is not finite), or None."""

    def fails(v: Any) -> bool:
        try:
            check(name, v)
        except ValueError:
            return True
        return not np.all(np.isfinite(v))

    if not fails(values):
        return None
    return next(t for t, v in enumerate(values) if fails(v))


def _check_schedules(update: Stepper, params0: PyTree, steps: int) -> None:
    """Every scheduled hyperparameter passes its check at every step ``0..steps``, in the
    dtype the run holds it in.

    Step 0 is checked when the optimizer is built; the later steps only here, where
    their number is known. Nesterov reads α one step ahead, hence ``steps`` itself.
    """
    if update.rule is None:
        return
    dtypes = [held_dtype(params0), *_checks.float_dtypes(params0)]
    for name, fn in update.schedules:
        given = np.asarray(jax.vmap(fn)(_steps(0, steps + 1)))  # shown in the schedule's own dtype
        for dtype in dict.fromkeys(np.dtype(d) for d in dtypes):  # held, and met by each leaf
            with np.errstate(over="ignore"):
                values = given.astype(dtype).astype(np.float64)
            t = _first_failing(update.rule.declared(name).check, name, values)
            if t is not None:
                raise ValueError(
                    f"the {name} schedule gives {given[t]:.7g} at step {t}, {values[t]:.7g} in "
                    f"{dtype.name}; it must be finite and in range in the run's dtypes at every step "
                    f"0..{steps} (steps={steps})"
                )


def _check_optimizer(optimizer: Any, params0: PyTree, steps: int, values: Mapping[str, Any]) -> None:
    """The checks of ``optimizer`` that :func:`fit` makes, for a caller that runs it in parts:
    its schedules over ``steps`` and hyperparameter ``values`` given per run."""
    update, _ = stepper(optimizer, params0)
    _check_schedules(update, params0, steps)
    if values:
        _check_swept(update, _one_run(params0), values)


def _check_grid(grid: Mapping[str, Any]) -> dict[str, jax.Array]:
    """The grid's shape: names to 1-D arrays of the values as given (checked by the caller)."""
    if not isinstance(grid, Mapping):
        raise TypeError(
            f"grid must be a mapping name -> 1-D array of values, e.g. {{'learning_rate': [0.01, 0.1]}}; "
            f"got {type(grid).__name__} {grid!r}"
        )
    if not grid:
        raise ValueError(
            "grid must name at least one hyperparameter, e.g. {'learning_rate': jnp.logspace(-3, -1, 8)}; "
            f"got {grid!r}"
        )
    values = {}
    for name, v in grid.items():
        # as given (a list of floats stays float64 here), so that a check shows the value the user wrote
        if hasattr(v, "dtype") and hasattr(v, "shape"):
            arr = v
        else:
            try:
                arr = np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"grid[{name!r}] must be an array of numbers, got {v!r}") from None
        if arr.ndim != 1 or arr.shape[0] < 1:
            raise ValueError(f"grid[{name!r}] must be a non-empty 1-D array of values, got shape {arr.shape}")
        values[name] = arr
    return values


def _batch_struct(data: Any, batch_size: int | None) -> Any:
    if data is None or batch_size is None:
        return data
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct((batch_size, *jnp.shape(a)[1:]), jnp.asarray(a).dtype), data
    )


# ----------------------------------------------------------------------------- public


def fit(
    loss: Loss,
    optimizer: optax.GradientTransformation,
    params0: PyTree,
    data: Any,
    *,
    steps: int,
    key: jax.Array | None = None,
    batch_size: int | None = None,
    shared_order: bool = False,
    record_every: int | None = None,
    record_params: bool = False,
    hyperparams: Mapping[str, Any] | None = None,
    jit: bool = True,
    unroll: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
    gather: bool = True,
    backend: Any = "xla",
    _run_ids: jax.Array | None = None,
) -> FitResult:
    r"""Fit ``loss`` from every starting point in ``params0`` in one compiled call.

    Each run applies ``optimizer`` for ``steps`` steps to its own parameters, with
    gradients from ``jax.grad`` of ``loss(params, batch)``. Without ``batch_size``
    the batch is all of ``data`` (gradient descent); with it, mini-batches of
    ``batch_size`` examples drawn without replacement from a new permutation of the
    data every epoch (stochastic gradient descent; see ``fitjax.engine.sampler`` for what
    happens to a last partial batch).

    Args:
      loss: ``loss(params, batch) -> scalar`` for one run's params.
      optimizer: a fitjax optimizer or any optax ``GradientTransformation``.
      params0: initial parameters, a pytree whose leaves share a leading run axis.
      data: a pytree of arrays with a leading example axis (e.g. ``(x, y)``), or None.
      steps: number of updates per run.
      key: ``jax.random.key``; needed with ``batch_size`` (mini-batch orders).
      batch_size: mini-batch size B, 1 ≤ B ≤ number of examples.
      shared_order: all runs use one mini-batch order instead of one each.
      record_every: record loss and gradient norm every k steps (None: final values only).
      record_params: also record the parameters (memory: runs × steps/k × size).
      hyperparams: per-run values of a fitjax optimizer's hyperparameters (scalars or
        arrays with one value per run), held as arrays so new values reuse the
        compiled program.
      jit: False runs the same program op by op (for debugging and tests).
      unroll: steps unrolled per iteration of the step loop (a speed knob). None: 2 on
        a GPU, 1 elsewhere (:func:`_default_unroll`).
      mesh: a one-axis mesh named ``"runs"`` (:func:`fitjax.run_mesh`) to split the
        runs over; by default all devices when there are several. Run counts that do
        not divide the device count are padded, and the padding dropped.
      gather: bring sharded results back to the host of every process (True), or
        leave them on their devices (False).
      backend: ``"xla"`` (this module's program), ``"fused"`` or a
        :class:`fitjax.fused.Fused` (one GPU kernel per block of runs; a problem it
        cannot take runs here, with a :class:`fitjax.fused.FallbackWarning` saying
        why), or ``"auto"`` (the fused path on a GPU when it can take the problem and
        is expected to be faster).

    Returns:
      A :class:`FitResult` with one entry per run.

    Example:
      >>> import jax, fitjax
      >>> data = fitjax.datasets.line()
      >>> starts = fitjax.inits.uniform(jax.random.key(0), 100, [-1.0, -1.0], [1.0, 1.0])
      >>> res = fitjax.fit(fitjax.least_squares(fitjax.line), fitjax.gd(0.02), starts, data, steps=2000)
      >>> res.loss.shape, bool(res.diverged.any())
      ((100,), False)
      >>> round(float(res.loss.max()), 4)   # every run at the least-squares minimum
      0.1999
    """
    _check_loss_and_optimizer(loss, optimizer)
    _refuse_tracers(params0=params0, data=data, hyperparams=hyperparams, key=key)
    n_runs = _check_params0(params0)
    n_data = _check_data(data)
    steps = _checks.positive_int("steps", steps, upper=MAX_STEPS, upper_name="the int32 step counter's limit")
    if record_every is not None:
        record_every = _checks.positive_int("record_every", record_every, upper=steps, upper_name="steps")
    unroll = _default_unroll() if unroll is None else _checks.positive_int("unroll", unroll)
    batch_size, key = _check_batch(batch_size, data, n_data, key)
    _check_loss(loss, params0, _batch_struct(data, batch_size))
    update, defaults = stepper(optimizer, params0)
    _check_schedules(update, params0, steps)

    hp_shared, hp_run = _hyperparams(update, defaults, params0, n_runs, hyperparams)
    _check_update(update, loss, params0, _batch_struct(data, batch_size), {**hp_shared, **hp_run})
    plan = _Plan(
        steps=steps,
        record_every=record_every,
        record_params=record_params,
        batch_size=batch_size,
        n_data=n_data,
        shared_order=shared_order,
        extra_args=update.uses_loss,
        unroll=unroll,
        check_every=CHECK_EVERY,
    )
    if backend != "xla":
        result = _other_backend(backend)(
            backend,
            loss,
            update,
            params0,
            data,
            plan=plan,
            hp_shared=hp_shared,
            hp_run=hp_run,
            key=key,
            jit=jit,
            mesh=mesh,
        )
        if result is not None:
            return result
    if batch_size is None:  # full batch: no keys to derive, nothing to pass
        run_ids = None
    else:
        run_ids = jnp.arange(n_runs, dtype=jnp.uint32) if _run_ids is None else _run_ids
    loss = choose_math(loss, jax.default_backend())  # float32 sin/cos/exp as polynomials on a CPU
    try:
        raw, jitted = _program(loss, update, plan)
    except TypeError:  # an unhashable loss or optimizer: compile without the cache
        raw, jitted = _program.__wrapped__(loss, update, plan)
    mesh = _shard.default_mesh() if mesh is None else _shard.check_mesh(mesh)
    if mesh is not None:
        size = _shard.padded_size(n_runs, mesh)
        params0, hp_run, run_ids = _shard.shard_runs(
            _shard.pad_runs((params0, hp_run, run_ids), n_runs, size), mesh
        )
        hp_shared, data = _shard.replicate((hp_shared, data), mesh)
        key = jax.random.wrap_key_data(_shard.replicate(jax.random.key_data(key), mesh))
    args = (params0, hp_shared, hp_run, key, run_ids, data)
    with contextlib.nullcontext() if jit else jax.disable_jit():
        try:
            results = (jitted if jit else raw)(*args)
        except jax.errors.UnexpectedTracerError as err:
            raise TypeError(
                "the loss or the optimizer uses a value traced by another transformation (a leaked "
                "tracer, e.g. an array saved from inside a jax.jit); pass such values as data or as "
                f"concrete arrays. JAX says: {str(err).splitlines()[0]}"
            ) from err
        final, final_loss, diverged_step, hist, state, loop_params, failed, any_failed = results
        out = (final, final_loss, diverged_step, hist, state)
        if isinstance(any_failed, jax.core.Tracer):  # traced through a closure: the arguments were not
            raise TypeError(_TRACED.format(what="its results are traced"))
        if bool(any_failed):  # some run's span check failed: find its exact step
            replay_raw, replay_jitted = _replay_program(loss, update, plan)
            out = (replay_jitted if jit else replay_raw)(
                final if loop_params is None else loop_params,
                state,
                failed,
                hist,
                key,
                run_ids,
                data,
                (final, final_loss, diverged_step),
            )
    if mesh is not None:
        out = _shard.gather(out, n_runs) if gather else _shard.trim(out, n_runs)
    params, final_loss, diverged_step, hist, state = out
    history = None
    if hist is not None:
        assert record_every is not None  # the programs record a history only with record_every
        history = History(_record_steps(steps, record_every), *hist)
    return FitResult(params, final_loss, diverged_step, history, state, steps)


def sweep(
    loss: Loss,
    optimizer: optax.GradientTransformation,
    params0: PyTree,
    data: Any,
    *,
    grid: Mapping[str, Any],
    steps: int,
    **kwargs: Any,
) -> SweepResult:
    """Fit every combination of hyperparameter values in ``grid`` from every start.

    The grid's values are held as arrays, so the whole sweep is one compiled call
    and a second sweep with other values of the same sizes reuses it. Start ``i``
    uses the same mini-batch order under every setting, so settings are compared on
    equal terms.

    Args:
      grid: hyperparameter name -> 1-D array of values; the sweep runs their
        Cartesian product.
      steps, **kwargs: as for :func:`fit`.

    Returns:
      A :class:`SweepResult` whose arrays have leading axes
      ``(len(grid[name]) for name in grid) + (runs,)``.

    Example:
      >>> import jax, jax.numpy as jnp, fitjax
      >>> starts = fitjax.inits.uniform(jax.random.key(0), 10, [-1.0, -1.0], [1.0, 1.0])
      >>> out = fitjax.sweep(fitjax.least_squares(fitjax.line), fitjax.momentum(0.01), starts,
      ...                    fitjax.datasets.line(), steps=100,
      ...                    grid={"learning_rate": jnp.logspace(-3, -1, 16),
      ...                          "beta": jnp.array([0.0, 0.5, 0.9, 0.99])})
      >>> out.result.loss.shape
      (16, 4, 10)
    """
    values = _check_grid(grid)
    n_runs = _check_params0(params0)
    _check_loss_and_optimizer(loss, optimizer)
    # checked as given (1e-46 is named so, not as its float32 rounding 0), then held as arrays
    _check_swept(stepper(optimizer, params0)[0], _one_run(params0), values)
    values = {name: jnp.asarray(v) for name, v in values.items()}
    shape = tuple(v.shape[0] for v in values.values())
    n_settings = math.prod(shape)
    mesh = jnp.meshgrid(*values.values(), indexing="ij")
    per_run = {name: jnp.repeat(m.ravel(), n_runs) for name, m in zip(values, mesh, strict=False)}
    tiled = jax.tree.map(
        lambda a: jnp.tile(jnp.asarray(a), (n_settings,) + (1,) * (jnp.ndim(a) - 1)), params0
    )
    run_ids = jnp.tile(jnp.arange(n_runs, dtype=jnp.uint32), n_settings)
    res = fit(loss, optimizer, tiled, data, steps=steps, hyperparams=per_run, _run_ids=run_ids, **kwargs)
    lead = shape + (n_runs,)

    def unflatten(a):
        return jnp.reshape(a, lead + jnp.shape(a)[1:])

    history = res.history
    if history is not None:
        history = History(history.step, *jax.tree.map(unflatten, tuple(history[1:])))
    result = FitResult(
        jax.tree.map(unflatten, res.params),
        unflatten(res.loss),
        unflatten(res.diverged_step),
        history,
        jax.tree.map(unflatten, res.opt_state),
        res.steps,
    )
    return SweepResult(values, result)
