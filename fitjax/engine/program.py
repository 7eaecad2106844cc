r"""The compiled programs: every run of a prepared problem in one ``jax.jit``.

:func:`program` batches one run's loop (:func:`fitjax.engine.loop.run_one`) over the runs
with ``jax.vmap``, inside one ``jax.jit``, cached per ``(loss, optimizer, plan)``: new
values of the same shapes reuse it. :func:`replay_program` is compiled only for a batch in
which some run failed a span check. :func:`execute` runs a
:class:`~fitjax.engine.prepare.Prepared` problem through them, split over devices when
there are several. Other paths (the fused GPU kernel) come to the engine through
:func:`register_backend`.
"""

from __future__ import annotations

import collections
import contextlib
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from fitjax.engine import sharding as _shard
from fitjax.engine.loop import finish, replay_span, run_keys, run_one
from fitjax.engine.prepare import TRACED, Loss, Plan, Prepared
from fitjax.optim.protocol import Stepper

if TYPE_CHECKING:
    from fitjax.engine.results import FitResult

TRACES: collections.Counter[str] = collections.Counter()


def trace_count() -> int:
    """How many times the engine has traced (and so compiled) a batched run."""
    return TRACES["fit"]


@functools.lru_cache(maxsize=256)
def program(loss: Loss, update: Stepper, plan: Plan) -> tuple[Callable, Callable]:
    """The batched run for these static settings, raw and jitted (one jit cache per plan).

    Each run's optimizer state is built inside the program by ``update.init`` with the
    hyperparameter arrays passed in. Hyperparameters shared by all runs stay unbatched
    scalars; only swept ones carry a run axis.

    Returns the results of every run that did not fail a span check, and what
    :func:`replay_program` needs for those that did: ``(final params, final loss,
    diverged_step, history, state, raw params, (bad_from, bad_end), any failed)``, where
    the raw params are the loop's own (``None`` when they are the reported ones).
    """
    run = functools.partial(run_one, loss=loss, update=update, plan=plan)
    reports = update.reports

    def batched(params, hp_shared, hp_run, key, run_ids, data):
        TRACES["fit"] += 1
        keys, key_axis = run_keys(plan, key, run_ids)

        def one(p, hp, k):
            state = update.init(p, {**hp_shared, **hp})
            return run(p, state, k, data)

        (params, state, _), bad_from, bad_end, history = jax.vmap(one, (0, 0, key_axis))(params, hp_run, keys)
        final, final_loss, diverged_step = jax.vmap(
            functools.partial(finish, loss=loss, update=update, plan=plan, data=data)
        )(params, state, jnp.full_like(bad_from, -1))
        failed = (bad_from, bad_end)
        raw = params if reports else None
        return final, final_loss, diverged_step, history, state, raw, failed, jnp.any(bad_from >= 0)

    return batched, jax.jit(batched)


@functools.lru_cache(maxsize=256)
def replay_program(loss: Loss, update: Stepper, plan: Plan) -> tuple[Callable, Callable]:
    """The runs that failed a span check, replayed (:func:`~fitjax.engine.loop.replay_span`)
    and merged into the batch's results; raw and jitted. Built and compiled only when some run failed.

    Runs that did not fail keep the main program's values, bit for bit.
    """
    replay = functools.partial(replay_span, loss=loss, update=update, plan=plan)

    def replayed(params, state, failed, history, key, run_ids, data, results):
        TRACES["replay"] += 1
        keys, key_axis = run_keys(plan, key, run_ids)
        bad_from, bad_end = failed
        p, s, d, history = jax.vmap(replay, (0, 0, 0, 0, 0, key_axis, None))(
            params, state, bad_from, bad_end, history, keys, data
        )
        s = update.keep_batching(state, s)  # the count and hyperparameters keep their batching
        new = jax.vmap(functools.partial(finish, loss=loss, update=update, plan=plan, data=data))(p, s, d)
        bad = bad_from >= 0

        def pick(a, b):
            return jnp.where(jnp.reshape(bad, bad.shape + (1,) * (jnp.ndim(b) - 1)), a, b)

        final, final_loss, diverged_step = jax.tree.map(pick, new, results)
        return final, final_loss, diverged_step, history, s

    return replayed, jax.jit(replayed)


Backend = Callable[..., "FitResult | None"]
"""``dispatch(backend, loss, stepper, params0, data, *, plan, hp_shared, hp_run, key, jit, mesh)``:
a fit on another path than this module's program, or None to run this one."""


_BACKENDS: list[Backend] = []


def register_backend(dispatch: Backend) -> None:
    """Add a path that ``fit(..., backend=...)`` can take (the fused GPU kernel registers
    itself so). The engine does not import the paths built on it: they come to it."""
    if dispatch not in _BACKENDS:
        _BACKENDS.append(dispatch)


def other_backend(backend: Any) -> Backend:
    if not _BACKENDS:
        raise ValueError(
            f"backend={backend!r} needs a path that is not loaded; import fitjax (which loads the fused "
            "kernel) or pass backend='xla'"
        )
    return _BACKENDS[0]


def _compiled(problem: Prepared) -> tuple[Callable, Callable]:
    """:func:`program` for the problem, from the cache when its loss and optimizer hash."""
    try:
        return program(problem.loss, problem.update, problem.plan)
    except TypeError:  # an unhashable loss or optimizer: compile without the cache
        return program.__wrapped__(problem.loss, problem.update, problem.plan)


def execute(problem: Prepared, *, jit: bool, mesh: jax.sharding.Mesh | None, gather: bool) -> tuple:
    """Run every run of ``problem``: ``(params, loss, diverged_step, history, state)``, the
    history as recorded arrays (or None).

    The runs are split over ``mesh`` (by default all devices when there are several),
    padded to a multiple of its size and trimmed back; a batch in which some run failed
    a span check goes through :func:`replay_program` too.
    """
    loss, update, plan, n_runs = problem.loss, problem.update, problem.plan, problem.n_runs
    params0, hp_shared, hp_run, run_ids = problem.params0, problem.hp_shared, problem.hp_run, problem.run_ids
    key, data = problem.key, problem.data
    raw, jitted = _compiled(problem)
    mesh = _shard.default_mesh() if mesh is None else _shard.check_mesh(mesh)
    if mesh is not None:
        size = _shard.padded_size(n_runs, mesh)
        params0, hp_run, run_ids = _shard.shard_runs(
            _shard.pad_runs((params0, hp_run, run_ids), n_runs, size), mesh
        )
        hp_shared, data = _shard.replicate((hp_shared, data), mesh)
        key = jax.random.wrap_key_data(_shard.replicate(jax.random.key_data(key), mesh))
    with contextlib.nullcontext() if jit else jax.disable_jit():
        try:
            results = (jitted if jit else raw)(params0, hp_shared, hp_run, key, run_ids, data)
        except jax.errors.UnexpectedTracerError as err:
            raise TypeError(
                "the loss or the optimizer uses a value traced by another transformation (a leaked "
                "tracer, e.g. an array saved from inside a jax.jit); pass such values as data or as "
                f"concrete arrays. JAX says: {str(err).splitlines()[0]}"
            ) from err
        final, final_loss, diverged_step, hist, state, loop_params, failed, any_failed = results
        out = (final, final_loss, diverged_step, hist, state)
        if isinstance(any_failed, jax.core.Tracer):  # traced through a closure: the arguments were not
            raise TypeError(TRACED.format(what="its results are traced"))
        if bool(any_failed):  # some run's span check failed: find its exact step
            replay_raw, replay_jitted = replay_program(loss, update, plan)
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
    return out
