r"""One run: its steps, its spans checked for divergence, and the replay of a failed span.

Everything here is written for a single run and batched with ``jax.vmap`` from outside
(:mod:`fitjax.engine.program`). A run's steps go unchecked in spans of about
:data:`~fitjax.engine.prepare.CHECK_EVERY` steps; a run whose parameters are not finite at
the end of a span goes back to the span's start, and :func:`replay_span` later re-runs that
span step by step to find the exact step and the last finite state.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from fitjax.engine import sampler as _sampler
from fitjax.engine.prepare import Loss, Plan, PyTree
from fitjax.optim.protocol import Stepper

SLICE_MAX = 8  # on a GPU, a run's leaf of at most this many elements is checked element by element


def leaf_finite(x: jax.Array) -> jax.Array:
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
    if jnp.size(x) <= SLICE_MAX and jax.default_backend() == "gpu":
        flat = jnp.ravel(x)
        return functools.reduce(jnp.logical_and, [jnp.isfinite(flat[i]) for i in range(flat.shape[0])])
    return jnp.all(jnp.isfinite(x))


def all_finite(tree: PyTree) -> jax.Array:
    return functools.reduce(jnp.logical_and, map(leaf_finite, jax.tree.leaves(tree)), jnp.asarray(True))


def norm(tree: PyTree) -> jax.Array:
    """Global norm √(Σ g²) of real leaves: ``optax.tree.norm``'s value, without its
    ``g.imag`` term (a constant that the fused kernel's Triton lowering cannot take)."""
    squares = [jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)]
    return jnp.sqrt(sum(squares))


def select(pred: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def make_advance(loss: Loss, update: Stepper, plan: Plan, data: Any, key: jax.Array):
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


def make_step(loss: Loss, update: Stepper, plan: Plan, data: Any, key: jax.Array):
    """One checked update of one run: ``step(carry, t, with_value) -> (carry, (value, grad_norm))``
    with ``carry = (params, state, perm, diverged_step)``.

    A run whose gradient or new parameters are not finite is flagged at step ``t`` and
    keeps its parameters and rule state from then on. Divergence is detected from the
    gradient and the new parameters alone, so it does not depend on where the loss
    happens to be evaluated.
    """
    advance = make_advance(loss, update, plan, data, key)

    def step(carry, t, with_value):
        params, state, perm, diverged_step = carry
        new_params, new_state, perm, value, grads = advance(params, state, perm, t, with_value)
        alive = diverged_step < 0
        keep = alive & all_finite(grads) & all_finite(new_params)
        carry = (
            select(keep, new_params, params),
            update.freeze(keep, new_state, state),
            perm,
            jnp.where(alive & ~keep, t, diverged_step),
        )
        return carry, (value, norm(grads))

    return step


def record_steps(steps: int, record_every: int) -> jax.Array:
    """The recorded steps ``0, k, 2k, ...`` before ``steps``, in the default integer dtype
    (made once per setting: an array never changes, and building it costs two dispatches)."""
    return _record_steps_in(steps, record_every, jax.dtypes.canonicalize_dtype(int))


@functools.lru_cache(maxsize=64)
def _record_steps_in(steps: int, record_every: int, dtype: Any) -> jax.Array:
    return jnp.arange(steps // record_every, dtype=dtype) * record_every


def _steps(start: int, stop: int) -> jax.Array:
    return jnp.arange(start, stop, dtype=jnp.int32)


def _span(plan: Plan) -> int:
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


def run_one(params, state, key, data, *, loss: Loss, update: Stepper, plan: Plan):
    """One run's step loop, checked for divergence every few steps.

    The steps run unchecked in spans of at most :func:`_span` steps (the expert's loop:
    no per-step test or select). At the end of a span, a run whose parameters are not
    finite goes back to its state at the span's start and is marked with the span
    (``bad_from``, ``bad_end``). It stays there, and :func:`replay_span` later re-runs that
    one span step by step to find the exact step and the last finite state.
    Returns ``((params, state, perm), bad_from, bad_end, history)``.
    """
    advance = make_advance(loss, update, plan, data, key)
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
        ok = (bad_from < 0) & all_finite(new[0])
        failed = (bad_from < 0) & ~ok
        c = (select(ok, new[0], p), update.freeze(ok, new[1], s), new[2])
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
            return cb, (rec_loss, norm(grads), shown if plan.record_params else None)

        cb, history = lax.scan(block, cb, _steps(0, n_blocks))
        cb = spans(cb, n_blocks * k, plan.steps - n_blocks * k)
    return (*cb, history)


def replay_span(
    params, state, bad_from, bad_end, history, key, data, *, loss: Loss, update: Stepper, plan: Plan
):
    """Re-run a marked run's failing span step by step, from the state saved at its start.

    Gives the run's exact ``diverged_step`` (the first step whose gradient or new
    parameters were not finite) and its last finite parameters and rule state, as if
    every step had been checked; records after that step are rewritten to show the
    frozen run as a checked loop records it. Runs that never failed are returned
    unchanged. Returns ``(params, state, diverged_step, history)``.
    """
    step = make_step(loss, update, plan, data, key)
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
        return (select(t < bad_end, new, carry), t + 1), None

    carry = (params, state0, perm, jnp.asarray(-1, jnp.int32))
    (p, s, _, d), _ = lax.scan(body, (carry, start), None, length=_span(plan))[0]
    # A span that failed in the loop but not on replay (rounding at the edge of
    # overflow) is flagged at its last step, with the replay's state.
    d = jnp.where(d < 0, bad_end - 1, d)
    params, state = select(bad, p, params), update.freeze(bad, s, state)
    diverged_step = jnp.where(bad, d, -1)
    if history is not None:
        history = _refreeze_history(
            history, bad, d, params, state, key, data, loss=loss, update=update, plan=plan
        )
    return params, state, diverged_step, history


def _refreeze_history(history, bad, d, params, state, key, data, *, loss: Loss, update: Stepper, plan: Plan):
    """Records after a run's divergence step, as a checked loop makes them: the frozen
    parameters reported at that step's count, their loss, and the norm of the gradient
    at them on that step's batch."""
    h_loss, h_gnorm, h_params = history
    k = plan.record_every
    assert k is not None  # a history is recorded only with record_every (run_one)
    at = _steps(0, plan.steps // k) * k

    def record(t):
        shown = update.report(params, update.at_count(state, t))
        if plan.batch_size is None:
            batch = data
        else:
            batch = _sampler.take(data, _sampler.indices_at(key, t, plan.n_data, plan.batch_size))
        return loss(shown, data), norm(jax.grad(loss)(params, batch)), shown

    varies = plan.batch_size is not None or update.report_moves
    if varies:  # one record after the other: a mini-batch's permutation batched over the
        # records as well as the runs took XLA seconds to compile (3.4 s against 1.1 s)
        r_loss, r_gnorm, r_shown = lax.map(record, at)
    else:  # the same record at every step: computed once
        r_loss, r_gnorm, r_shown = jax.tree.map(
            lambda a: jnp.broadcast_to(a, (at.shape[0], *jnp.shape(a))), record(at[0])
        )
    after = bad & (at > d)

    def patch(new, old):
        return jnp.where(jnp.reshape(after, after.shape + (1,) * (old.ndim - 1)), new, old)

    h_params = None if h_params is None else jax.tree.map(patch, r_shown, h_params)
    return patch(r_loss, h_loss), patch(r_gnorm, h_gnorm), h_params


def finish(params, state, diverged_step, *, loss: Loss, update: Stepper, plan: Plan, data: Any):
    final = update.report(params, state)
    final_loss = loss(final, data)
    # A loss that overflows while gradient and parameters stay finite is flagged at the end.
    diverged_step = jnp.where((diverged_step < 0) & ~jnp.isfinite(final_loss), plan.steps, diverged_step)
    return final, final_loss, diverged_step


def run_keys(plan: Plan, key: jax.Array, run_ids: jax.Array | None) -> tuple[jax.Array | None, int | None]:
    """Each run's mini-batch key and its vmap axis: none for a full batch, one shared
    key with ``shared_order``, else ``fold_in(key, run_id)`` per run."""
    if plan.batch_size is None:  # no randomness in a full-batch run
        return None, None
    if plan.shared_order:
        return key, None
    assert run_ids is not None  # fit passes run ids whenever the runs take mini-batches
    return jax.vmap(jax.random.fold_in, (None, 0))(key, run_ids), 0
