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
import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fitjax.engine import sharding as _shard
from fitjax.engine import waiting
from fitjax.engine.loop import all_finite, finish, replay_span, run_keys, run_one
from fitjax.engine.pieces import with_pieces
from fitjax.engine.prepare import TRACED, Loss, Plan, Prepared, check_values
from fitjax.engine.results import FitResult, assemble
from fitjax.numerics.fastmath import choose_math
from fitjax.optim.protocol import Stepper

TRACES: collections.Counter[str] = collections.Counter()


def trace_count() -> int:
    """How many times the engine has traced (and so compiled) a batched run."""
    return TRACES["fit"]


def _group(dtype: Any) -> str:
    """The array :func:`pack` puts a leaf of ``dtype`` in: numbers of 4 or 8 bytes share one
    by size (as their bits), any other dtype has its own."""
    if jax.dtypes.issubdtype(dtype, jax.dtypes.extended):  # a typed PRNG key: an array of its own
        return str(dtype)
    dtype = np.dtype(dtype)
    if dtype.kind in "fiu" and dtype.itemsize in (4, 8):
        return f"bits{8 * dtype.itemsize}"
    return str(dtype)


def pack(tree: Any) -> dict[str, jax.Array]:
    """The leaves of a tree batched over runs as a few ``(runs, k)`` arrays, the leaves'
    columns side by side in leaf order: the 32-bit numbers (``float32``, ``int32``,
    ``uint32``) as their bits in one ``uint32`` array, the 64-bit ones in one ``uint64``
    array, any other dtype in one array of its own. A program returns a few outputs
    where the tree has many: each output buffer costs a call microseconds."""
    groups: dict[str, list[jax.Array]] = {}
    for leaf in jax.tree.leaves(tree):
        group = _group(leaf.dtype)
        column = jnp.reshape(leaf, (leaf.shape[0], -1))
        if group.startswith("bits"):
            column = jax.lax.bitcast_convert_type(column, np.dtype(f"uint{group[4:]}"))
        groups.setdefault(group, []).append(column)
    return {group: jnp.concatenate(columns, axis=1) for group, columns in groups.items()}


def unpack(packed: dict[str, jax.Array], like: Any) -> Any:
    """The tree :func:`pack` made ``packed`` from, given its shapes and dtypes ``like``."""
    leaves, treedef = jax.tree.flatten(like)
    taken: collections.Counter[str] = collections.Counter()
    out = []
    for leaf in leaves:
        group, width = _group(leaf.dtype), math.prod(leaf.shape[1:])
        column = packed[group][:, taken[group] : taken[group] + width]
        if group.startswith("bits"):
            column = jax.lax.bitcast_convert_type(column, leaf.dtype)
        out.append(jnp.reshape(column, leaf.shape))
        taken[group] += width
    return jax.tree.unflatten(treedef, out)


def in_blocks(fun: Callable, args: tuple, in_axes: tuple, block: int | None) -> Any:
    """``jax.vmap(fun, in_axes)(*args)``, evaluated ``block`` runs at a time when there are more.

    The runs (the leading axis of each argument whose axis is 0; the others are shared)
    are split into equal blocks of at most ``block`` runs, padded with copies of the last
    run, stepped block after block by :func:`jax.lax.map`, and the padding is trimmed from
    the results. Each run's arithmetic is the one it has in a single batch: the results
    are the same bit for bit but for what already depends on a run's place in a batch
    (the recorded gradient norms, to float32 rounding). What changes is how much memory
    one step of the loop touches
    (:func:`~fitjax.engine.prepare.default_run_block`).
    """
    batched = jax.vmap(fun, in_axes)
    runs = [a for a, axis in zip(args, in_axes, strict=True) if axis == 0]
    n = jax.tree.leaves(runs)[0].shape[0]
    if block is None or n <= block:
        return batched(*args)
    blocks = -(-n // block)
    block = -(-n // blocks)  # as even as can be: fewer than ``blocks`` padded runs

    def split(a: jax.Array) -> jax.Array:
        padded = jnp.concatenate([a, jnp.repeat(a[-1:], blocks * block - n, axis=0)])
        return padded.reshape((blocks, block) + a.shape[1:])

    per_run = jax.tree.map(split, runs)

    def step_block(chunk: list) -> Any:
        it = iter(chunk)
        return batched(*(next(it) if axis == 0 else a for a, axis in zip(args, in_axes, strict=True)))

    out = jax.lax.map(step_block, per_run)
    return jax.tree.map(lambda a: a.reshape((blocks * block,) + a.shape[2:])[:n], out)


def _init_states(update: Stepper, params: Any, hp_shared: Any, hp_run: Any) -> Any:
    """Every run's optimizer state as ``update.init`` builds it, with its hyperparameters."""
    return jax.vmap(lambda p, hp: update.init(p, {**hp_shared, **hp}))(params, hp_run)


@functools.lru_cache(maxsize=256)
def program(loss: Loss, update: Stepper, plan: Plan) -> tuple[Callable, Callable]:
    """The batched run for these static settings, raw and jitted (one jit cache per plan).

    Each run's optimizer state is built inside the program by ``update.init`` with the
    hyperparameter arrays passed in. Hyperparameters shared by all runs stay unbatched
    scalars; only swept ones carry a run axis.

    Returns the results of every run that did not fail a span check, and what
    :func:`replay_program` needs for those that did: ``(final params, final loss,
    diverged_step, history, state, spare, status)``. The state is the optimizer state as
    a tree when ``plan.keep_state``, else None. ``spare`` is what only a replay reads,
    packed by :func:`pack` into as few arrays as its dtypes allow (one for a float32 run):
    ``(failed, state, raw params)``, where ``failed`` is each run's failed span
    ``[from, end)`` (``-1`` where none failed), shape ``(runs, 2)``, the state is there
    when it is not kept, and the raw params are the loop's own when they are not the
    reported ones (:func:`spare_like`). ``status`` is ``[some run failed a span check,
    some start or datum is not finite]``, the one array a call reads back. The inputs'
    finiteness is tested here, in the dtype the program holds them in, so that a call
    whose values were not checked on the host
    (:attr:`~fitjax.engine.prepare.Prepared.values_checked`) costs no dispatch.
    """
    run = functools.partial(run_one, loss=loss, update=update, plan=plan)
    reports = update.reports

    def batched(params, hp_shared, hp_run, key, run_ids, data):
        TRACES["fit"] += 1
        inexact = [x for x in jax.tree.leaves((params, data)) if jnp.issubdtype(x.dtype, jnp.inexact)]
        inputs_finite = all_finite(inexact)
        keys, key_axis = run_keys(plan, key, run_ids)

        def one(p, hp, k):
            state = update.init(p, {**hp_shared, **hp})
            return run(p, state, k, data)

        (params, state, _), bad_from, bad_end, history = in_blocks(
            one, (params, hp_run, keys), (0, 0, key_axis), plan.run_block
        )
        final, final_loss, diverged_step = jax.vmap(
            functools.partial(finish, loss=loss, update=update, plan=plan, data=data)
        )(params, state, jnp.full_like(bad_from, -1))
        failed = jnp.stack([bad_from, bad_end], axis=-1)
        spare = pack((failed, None if plan.keep_state else state, params if reports else None))
        status = jnp.stack([jnp.any(bad_from >= 0), ~inputs_finite])
        return final, final_loss, diverged_step, history, state if plan.keep_state else None, spare, status

    return batched, jax.jit(batched)


def spare_like(update: Stepper, plan: Plan, params: Any, hp_shared: Any, hp_run: Any) -> tuple:
    """The shapes and dtypes of what :func:`program` packs in its ``spare`` output, for runs
    from ``params``: ``(failed, state or None, raw params or None)``."""
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), a.dtype), params)
    n_runs = jax.tree.leaves(params)[0].shape[0]
    failed = jax.ShapeDtypeStruct((n_runs, 2), jnp.int32)
    state = None
    if not plan.keep_state:
        state = jax.eval_shape(functools.partial(_init_states, update), params, hp_shared, hp_run)
    return failed, state, params if update.reports else None


@functools.lru_cache(maxsize=256)
def replay_program(loss: Loss, update: Stepper, plan: Plan) -> tuple[Callable, Callable]:
    """The runs that failed a span check, replayed (:func:`~fitjax.engine.loop.replay_span`)
    and merged into the batch's results; raw and jitted. Built and compiled only when some run failed.

    Runs that did not fail keep the main program's values, bit for bit. It takes the
    main program's final params, its state (None when not kept) and its ``spare``, and
    gives the state back as it came.
    """
    replay = functools.partial(replay_span, loss=loss, update=update, plan=plan)

    def replayed(final, state, spare, hp_shared, hp_run, history, key, run_ids, data, results):
        TRACES["replay"] += 1
        keys, key_axis = run_keys(plan, key, run_ids)
        failed, packed_state, raw = unpack(spare, spare_like(update, plan, final, hp_shared, hp_run))
        state = state if plan.keep_state else packed_state
        params = final if raw is None else raw
        bad_from, bad_end = failed[:, 0], failed[:, 1]
        p, s, d, history = jax.vmap(replay, (0, 0, 0, 0, 0, key_axis, None))(
            params, state, bad_from, bad_end, history, keys, data
        )
        s = update.keep_batching(state, s)  # the count and hyperparameters keep their batching
        new = jax.vmap(functools.partial(finish, loss=loss, update=update, plan=plan, data=data))(p, s, d)
        bad = bad_from >= 0

        def pick(a, b):
            return jnp.where(jnp.reshape(bad, bad.shape + (1,) * (jnp.ndim(b) - 1)), a, b)

        final, final_loss, diverged_step = jax.tree.map(pick, new, results)
        return final, final_loss, diverged_step, history, s if plan.keep_state else None

    return replayed, jax.jit(replayed)


Backend = Callable[..., FitResult | None]
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


def _compiled(loss: Loss, update: Stepper, plan: Plan) -> tuple[Callable, Callable]:
    """:func:`program`, from the cache when the loss and the optimizer hash."""
    try:
        return program(loss, update, plan)
    except TypeError:  # an unhashable loss or optimizer: compile without the cache
        return program.__wrapped__(loss, update, plan)


@dataclasses.dataclass(frozen=True)
class Programs:
    """What :func:`execute` runs for a problem with ``plan``: the loss as evaluated on this
    platform, :func:`program`'s raw and jitted forms, and the jitted one's last run."""

    plan: Plan
    loss: Loss
    raw: Callable
    jitted: Callable
    last_run: waiting.LastRun


def programs(problem: Prepared, plan: Plan) -> Programs:
    """:class:`Programs` for ``problem`` run with ``plan``, worked out once and kept in
    ``problem.derived``: the calls of a kept signature skip the lookups (the loss's
    maths and pieces, the program's cache key, hashed whole)."""
    found = problem.derived.get("programs")
    if found is not None and (found.plan is plan or found.plan == plan):  # a mesh's plan is made per call
        return found
    loss = choose_math(with_pieces(problem.loss, plan.loss_pieces), jax.default_backend())
    found = Programs(plan, loss, *_compiled(loss, problem.update, plan), waiting.LastRun())
    problem.derived["programs"] = found
    return found


def execute(problem: Prepared, *, jit: bool, mesh: jax.sharding.Mesh | None, gather: bool) -> FitResult:
    """Run every run of ``problem`` and assemble their :class:`~fitjax.FitResult`.

    The runs are split over ``mesh`` (by default all devices when there are several),
    padded to a multiple of its size and trimmed back; a batch in which some run failed
    a span check goes through :func:`replay_program` too. On a CPU the loss's float32
    ``sin``, ``cos`` and ``exp`` are evaluated as polynomials unless it is marked
    :func:`fitjax.platform_math` (:func:`~fitjax.numerics.fastmath.choose_math`).
    """
    plan, n_runs = problem.plan, problem.n_runs
    params0, hp_shared, hp_run, run_ids = problem.params0, problem.hp_shared, problem.hp_run, problem.run_ids
    key, data = problem.key, problem.data
    mesh = _shard.default_mesh() if mesh is None else _shard.check_mesh(mesh)
    if mesh is not None and plan.run_block is not None:  # split over devices, each takes its share at once
        plan = dataclasses.replace(plan, run_block=None)
    found = programs(problem, plan)
    loss, update = found.loss, problem.update
    if mesh is not None:
        size = _shard.padded_size(n_runs, mesh)
        params0, hp_run, run_ids = _shard.shard_runs(
            _shard.pad_runs((params0, hp_run, run_ids), n_runs, size), mesh
        )
        hp_shared, data = _shard.replicate((hp_shared, data), mesh)
        key = jax.random.wrap_key_data(_shard.replicate(jax.random.key_data(key), mesh))
    with contextlib.nullcontext() if jit else jax.disable_jit():
        called = found.jitted if jit else found.raw
        try:
            results = called(params0, hp_shared, hp_run, key, run_ids, data)
            dispatched = time.perf_counter()
        except jax.errors.UnexpectedTracerError as err:
            raise TypeError(
                "the loss or the optimizer uses a value traced by another transformation (a leaked "
                "tracer, e.g. an array saved from inside a jax.jit); pass such values as data or as "
                f"concrete arrays. JAX says: {str(err).splitlines()[0]}"
            ) from err
        final, final_loss, diverged_step, hist, state, spare, status = results
        out = (final, final_loss, diverged_step, hist, state)
        if isinstance(status, jax.core.Tracer):  # traced through a closure: the arguments were not
            raise TypeError(TRACED.format(what="its results are traced"))
        result = assemble(out, plan) if mesh is None else None  # made while the program runs
        # the one read-back of a call, waited for first (:func:`~fitjax.engine.waiting.wait`): on a
        # CPU, reading an array that is not ready costs about 20 µs more than waiting for it
        waiting.wait(status, found.last_run if jit else waiting.LastRun(), dispatched)
        any_failed, bad_inputs = np.asarray(status)
        if bad_inputs:  # only where the values were not checked before: name the bad one
            check_values(problem)
            raise ValueError("params0 or data holds a value that is not finite in the dtype the run uses")
        if any_failed:  # some run's span check failed: find its exact step
            replay_raw, replay_jitted = replay_program(loss, update, plan)
            out = (replay_jitted if jit else replay_raw)(
                final,
                state,
                spare,
                hp_shared,
                hp_run,
                hist,
                key,
                run_ids,
                data,
                (final, final_loss, diverged_step),
            )
            result = None
    if mesh is not None:
        out = _shard.gather(out, n_runs) if gather else _shard.trim(out, n_runs)
    return assemble(out, plan) if result is None else result
