r"""The fused execution path: each run's whole fit inside one GPU kernel.

``fitjax.fit(..., backend="fused")`` runs the same fit as the XLA path (same
optimizer rules, same divergence rule, same history, the same :class:`~fitjax.FitResult`)
as one Pallas kernel. Each program instance of the kernel takes a block of runs,
loads the data once, and loops over all :math:`T` steps with the runs' parameters and
optimizer state held in registers; per step it evaluates the user's own loss and its
``jax.grad`` (traced inside the kernel, one run per lane, the parameters split into
their components: :mod:`fitjax.kernels.kernel_loss`) and applies the optimizer's own update
rule (``optimizer.update``, called as in the engine's step). The XLA path instead
launches the per-point work step after step; for small models with many runs that
launch-and-reload pattern is its ceiling.

What the kernel takes, and why the rest falls back to the XLA path:

* the lecture's optimizers: ``gd``/``sgd``, ``momentum``, ``nesterov`` (look-ahead form),
  ``nesterov_classical``, ``normalized``, ``adam``, with fixed or scheduled learning
  rates and swept hyperparameters; any other optimizer (optax chains, line searches,
  ``reduce_on_plateau``, rules of your own) runs on the XLA path;
* one parameter array per run, shape ``(runs, P)`` or ``(runs,)``, float32 or float64;
* a loss made of elementwise operations on one-dimensional data arrays and reductions
  over them (see :mod:`fitjax.kernels.kernel_loss` for the exact rules), at most
  ``Fused.max_points`` points per evaluation;
* full batch, or mini-batches in one order shared by all runs (``shared_order=True``):
  the batches' indices are drawn exactly as on the XLA path (see :mod:`fitjax.engine.sampler`),
  before the kernel starts, into a table of ``steps × batch_size`` indices. With
  one order per run (the default) the table would be ``runs × steps × batch_size``
  and drawing a permutation inside a kernel is not practical, so that case runs on
  the XLA path;
* one device; ``jit=True``.

``Fused(precision="full")`` (the default) computes float32 ``sin``, ``cos`` and ``exp``
with fitjax's own polynomials, ``"platform"`` with the platform's library functions,
and ``"fast"`` with the GPU's approximate instructions (:mod:`fitjax.kernels.kernel_math`;
speed and accuracy of each on an H200 in ``docs/fused.md``). Without a GPU the kernel
runs in Pallas interpret mode: correct and slow, for tests; ``backend="auto"``
therefore picks the fused path only on a GPU.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fitjax import _checks
from fitjax.engine import sampler as _sampler
from fitjax.engine import sharding as _shard
from fitjax.engine.loop import make_step, record_steps
from fitjax.engine.prepare import Plan
from fitjax.engine.program import register_backend
from fitjax.engine.results import FitResult, History
from fitjax.kernels import kernel_math as _fused_math
from fitjax.kernels.kernel_loss import KernelLoss, Unsupported, pad_size, rewrite
from fitjax.optim.protocol import OptState, Stepper

__all__ = ["FallbackWarning", "Fused", "Unsupported", "trace_count"]

_TRACES: collections.Counter[str] = collections.Counter()
FAILED_BUILDS: dict[Any, str] = {}  # kernels that did not lower or compile, with the reason

_RULES = ("gd", "momentum", "nesterov", "sgd_momentum", "nesterov_classical", "normalized", "adam", "rmsprop")
"""The fitjax rules (by name) the kernel runs: those with a fixed-size state per parameter."""
_PRECISIONS = ("full", "platform", "fast")


def _build_errors() -> tuple[type[BaseException], ...]:
    """What a kernel that does not lower or compile for the GPU raises."""
    errors: list[type[BaseException]] = [NotImplementedError, jax.errors.JaxRuntimeError]
    try:
        from jax._src.pallas.triton.lowering import LoweringError
    except ImportError:  # another jax layout: the two above still cover the common cases
        pass
    else:
        errors.append(LoweringError)
    return tuple(errors)


class FallbackWarning(UserWarning):
    """``backend="fused"`` could not take the problem; the XLA path ran instead."""


def trace_count() -> int:
    """How many times a fused program has been traced (and so compiled)."""
    return _TRACES["fused"]


@dataclasses.dataclass(frozen=True)
class Fused:
    """Settings of the fused path; pass as ``fit(..., backend=Fused(...))``.

    Attributes:
      precision: ``"full"`` (results equal to the XLA path's up to float32 rounding: in
        float32, ``sin``/``cos``/``exp`` are fitjax's own polynomials, within 1.6 units in
        the last place; in float64 and for ``log``, the platform's functions),
        ``"platform"`` (the platform's precise functions throughout, those the XLA path
        calls) or ``"fast"`` (the GPU's approximate instructions, float32 only). See
        :mod:`fitjax.kernels.kernel_math`.
      block_runs: runs per program instance, a power of two (default: one run per
        thread, ``32 × num_warps``, for many runs of at most 64 points; else about 1024
        lanes, runs × points, per program, at most 256 runs and no more than the runs
        given; see ``launch``).
      num_warps: warps per program instance on the GPU (default: up to 8, or 2 for
        ``"fast"``, with one run per thread; else 4).
      interpret: run the kernel in Pallas interpret mode (default: when the default
        backend is not a GPU).
      max_points: the largest number of data points (per evaluation) the kernel holds
        in registers; larger problems run on the XLA path.
      max_params: the largest parameter vector the kernel holds in registers.

    Example:
      >>> import fitjax
      >>> fitjax.fused.Fused(precision="fast", block_runs=128)
      Fused(precision='fast', block_runs=128, num_warps=None, interpret=None, max_points=4096, max_params=16)
    """

    precision: str = "full"
    block_runs: int | None = None
    num_warps: int | None = None
    interpret: bool | None = None
    max_points: int = 4096
    max_params: int = 16

    def __post_init__(self) -> None:
        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, got {self.precision!r}")
        if self.block_runs is not None:
            _checks.positive_int("block_runs", self.block_runs)
            if self.block_runs & (self.block_runs - 1):
                raise ValueError(f"block_runs must be a power of two (e.g. 128), got {self.block_runs}")
        if self.num_warps is not None:
            _checks.positive_int("num_warps", self.num_warps)
        if self.interpret not in (None, True, False):
            raise TypeError(f"interpret must be True, False or None, got {self.interpret!r}")
        _checks.positive_int("max_points", self.max_points)
        _checks.positive_int("max_params", self.max_params)


def resolve_backend(backend: Any) -> tuple[Fused | None, bool]:
    """``(settings, explicit)`` for ``fit``'s ``backend`` argument.

    ``"xla"`` gives no settings; ``"fused"`` and a :class:`Fused` ask for the fused path
    (``explicit``: a fallback is reported); ``"auto"`` takes it only when the default
    backend is a GPU and the kernel is expected to be faster (at most 64 points, or
    at most :math:`2^{21}` runs × points), and falls back silently.
    """
    if isinstance(backend, Fused):
        return backend, True
    if backend == "xla":
        return None, False
    if backend == "fused":
        return Fused(), True
    if backend == "auto":
        return (Fused(), False) if jax.default_backend() == "gpu" else (None, False)
    raise ValueError(f"backend must be 'xla', 'fused', 'auto' or a fitjax.fused.Fused(...), got {backend!r}")


# ----------------------------------------------------------------------------- planning


@dataclasses.dataclass(frozen=True)
class _Kernel:
    """Everything static about a fused run: what one compiled program is specialised on."""

    loss: Callable
    update: Stepper
    full: KernelLoss
    batch: KernelLoss | None
    n_params: int | None  # None: one scalar parameter per run
    plan: Plan
    hp_run: tuple[str, ...]
    hp_shared: tuple[str, ...]
    block_runs: int
    num_warps: int
    interpret: bool
    math: str  # "platform", "full" (float32 polynomials) or "fast"


@functools.lru_cache(maxsize=64)
def _rewrite_cached(loss: Callable, shape: tuple, dtype: Any, batch: Any) -> KernelLoss:
    treedef, leaves = batch
    structs = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])
    return rewrite(loss, jax.ShapeDtypeStruct(shape, dtype), structs)


def _rewrite(loss: Callable, param: jax.ShapeDtypeStruct, batch: Any) -> KernelLoss:
    leaves, treedef = jax.tree.flatten(batch)
    key = (treedef, tuple((tuple(np.shape(x)), jnp.result_type(x)) for x in leaves))
    try:
        return _rewrite_cached(loss, tuple(param.shape), param.dtype, key)
    except TypeError as err:  # an unhashable loss: rewrite without the cache
        if "unhashable" not in str(err):
            raise
        return rewrite(loss, param, batch)


_ONE_RUN_PER_THREAD = 64  # up to this many lanes per run, a thread may hold whole runs
_MIN_PROGRAMS = 512  # one run per thread only with at least this many programs (about 4 per SM)
_AUTO_LANES = 1 << 21  # "auto": larger problems (runs × lanes, lanes > 64) run on the XLA path


def launch(options: Fused, n_pad: int, n_runs: int) -> tuple[int, int]:
    """``(block_runs, num_warps)``: the settings given, else chosen from measurements.

    Many runs of a small data set (at most 64 lanes per run): one run per thread,
    ``32 × warps`` runs per program, with as many warps (at most 8, or 2 for
    ``"fast"``) as still leave at least 512 programs. Each thread then holds a run's
    points in its own registers and the sums over the points need no exchange between
    threads. Fewer runs, or more points: about 1024 lanes (runs × points) per program
    on 4 warps, several threads sharing a run, so that a small batch still fills the GPU.

    Measured on an H200 (Adam, Gabor, N = 28, T = 1000; ``docs/benchmarks.md``): at 10⁶
    runs one run per thread took 0.138 s (full, 256 runs × 8 warps) and 0.070 s (fast,
    64 × 2), against 0.14-0.35 s for several threads per run; at 10⁴ runs, 256 × 8
    leaves 40 programs and lost to 32 runs × 4 warps.
    """
    warps, block = options.num_warps, options.block_runs
    if n_pad <= _ONE_RUN_PER_THREAD and block is None:
        top = 2 if options.precision == "fast" else 8
        for w in [warps] if warps is not None else [top >> i for i in range(top.bit_length())]:
            if n_runs >= _MIN_PROGRAMS * 32 * w:
                return 32 * w, w
    warps = warps or 4
    if block is None:
        block = min(max(1, min(256, 1024 // max(n_pad, 1))), pad_size(n_runs))
    return block, warps


def plan_kernel(
    loss, update: Stepper, params0, data, plan: Plan, hp_shared, hp_run, options: Fused, jit, mesh
) -> _Kernel:
    """Check that the kernel can take the problem (else :class:`Unsupported`) and describe it."""
    if not jit:
        raise Unsupported("jit=False runs the XLA path op by op")
    if mesh is not None or _shard.default_mesh() is not None:
        raise Unsupported("the runs are split over several devices; the fused kernel runs on one")
    if update.rule is None or update.rule.name not in _RULES:
        raise Unsupported(
            f"the optimizer ({update.transform if update.rule is None else update.rule.name}) is not one the "
            f"kernel runs: fitjax {', '.join(_RULES)}"
        )
    if any(name != "learning_rate" for name, _ in update.schedules):
        raise Unsupported("a hyperparameter other than the learning rate follows a schedule")
    leaves = jax.tree.leaves(params0)
    if len(leaves) != 1 or not isinstance(params0, (jax.Array, np.ndarray)):
        raise Unsupported(
            f"params0 is a pytree of {len(leaves)} arrays; the kernel takes one array of shape (runs, P)"
        )
    params0 = jnp.asarray(params0)
    if params0.dtype not in (jnp.float32, jnp.float64):
        raise Unsupported(f"params0 has dtype {params0.dtype}; the kernel takes float32 or float64")
    if params0.ndim > 2:
        raise Unsupported(f"params0 has shape {params0.shape}; the kernel takes (runs, P) or (runs,)")
    n_params = params0.shape[1] if params0.ndim == 2 else None
    if (n_params or 1) > options.max_params:
        raise Unsupported(f"each run has {n_params} parameters, more than max_params={options.max_params}")
    if plan.batch_size is not None and not plan.shared_order:
        raise Unsupported(
            "mini-batches in one order per run (shared_order=False) would need a permutation per run and "
            "epoch inside the kernel; pass shared_order=True for the fused path"
        )
    param = jax.ShapeDtypeStruct(params0.shape[1:], params0.dtype)
    full = _rewrite(loss, param, data)
    batch = None
    if plan.batch_size is not None:
        sizes = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct((plan.batch_size, *np.shape(x)[1:]), jnp.result_type(x)), data
        )
        batch = _rewrite(loss, param, sizes)
    for kl in (full, batch):
        if kl is not None and kl.n_pad > options.max_points:
            raise Unsupported(
                f"{kl.n} data points take {kl.n_pad} lanes, more than max_points={options.max_points}"
            )
    if batch is not None and batch.point_consts:
        raise Unsupported("the loss closes over an array as long as the mini-batch")
    on_gpu = jax.default_backend() == "gpu"
    interpret = options.interpret if options.interpret is not None else not on_gpu
    if not interpret and not on_gpu:
        raise Unsupported(f"interpret=False needs a GPU; the default backend is {jax.default_backend()}")
    n_pad = (batch or full).n_pad
    block_runs, num_warps = launch(options, n_pad, params0.shape[0])
    return _Kernel(
        loss=loss,
        update=update,
        full=full,
        batch=batch,
        n_params=n_params,
        plan=plan,
        hp_run=tuple(sorted(hp_run)),
        hp_shared=tuple(sorted(hp_shared)),
        block_runs=block_runs,
        num_warps=num_warps,
        interpret=interpret,
        math=options.precision if params0.dtype == jnp.float32 else "platform",
    )


# ----------------------------------------------------------------------------- the kernel


def _split(x: jax.Array, n_params: int | None) -> list[jax.Array]:
    """``(runs, P)`` -> P arrays ``(runs,)``; ``(runs,)`` -> itself."""
    return [x] if n_params is None else [x[:, j] for j in range(n_params)]


def _join(parts: Any, n_params: int | None) -> jax.Array:
    return parts[0] if n_params is None else jnp.stack(parts, axis=-1)


def _per_run(value: Any, n_params: int | None) -> tuple:
    """A run's parameters (or a state leaf) in the kernel: P values, or one."""
    return (value,) if n_params is None else tuple(value)


def batch_table(key: jax.Array, n: int, batch_size: int, steps: int) -> jax.Array:
    """Mini-batch ``t``'s example indices, row ``t``: the XLA path's, epoch by epoch."""
    per_epoch = _sampler.steps_per_epoch(n, batch_size)
    epochs = -(-steps // per_epoch)
    perms = jax.vmap(lambda e: _sampler.epoch_permutation(key, e, n))(jnp.arange(epochs, dtype=jnp.int32))
    rows = jax.vmap(
        lambda p: jax.vmap(lambda j: _sampler.batch_indices(p, j, batch_size))(jnp.arange(per_epoch))
    )(perms)
    return rows.reshape(epochs * per_epoch, batch_size)[:steps]


class _Refs(NamedTuple):
    """A kernel instance's arguments by role, in the order :func:`kernel_program` passes them."""

    params: list
    run: dict[str, Any]
    shared: dict[str, Any]
    lr: Any
    full: list
    full_consts: list
    batch: list
    out_params: list
    out_inner: list
    out_div: Any
    h_loss: Any
    h_gnorm: Any
    h_params: list


def _unpack(k: _Kernel, n_inner: int, refs: tuple) -> _Refs:
    P = 1 if k.n_params is None else k.n_params
    it = iter(refs)

    def take(n: int) -> list:
        return [next(it) for _ in range(n)]

    params = take(P)
    run = {name: next(it) for name in k.hp_run}
    shared = {name: next(it) for name in k.hp_shared}
    lr = next(it) if k.update.schedule("learning_rate") is not None else None
    full = take(len(k.full.closed.in_avals) - 1)
    full_consts = take(len(k.full.point_consts))
    batch = take(len(full)) if k.batch is not None else []
    out_params, out_inner, out_div = take(P), take(n_inner * P), next(it)
    h_loss = h_gnorm = None
    h_params: list = []
    if k.plan.record_every is not None:
        h_loss, h_gnorm = next(it), next(it)
        if k.plan.record_params:
            h_params = take(P)
    outs = (out_params, out_inner, out_div, h_loss, h_gnorm, h_params)
    return _Refs(params, run, shared, lr, full, full_consts, batch, *outs)


def _substitutes(k: _Kernel) -> dict[str, Callable] | None:
    """The functions the loss's math is computed with in the kernel (None: the platform's)."""
    if k.math == "fast":
        return _fused_math.functions(gpu=not k.interpret)
    if k.math == "full":
        return _fused_math.polynomial()
    return None


def _scheduled_by_table(update: Stepper, lr_ref: Any) -> Stepper:
    """The optimizer with its learning-rate schedule read from the kernel's table of its
    values by step (computed outside the kernel), if it has one."""
    if lr_ref is None:
        return update
    return dataclasses.replace(update, schedules=(("learning_rate", lambda step: lr_ref[step]),))


def _store(k: _Kernel, inner_def: Any, r: _Refs, carry: tuple) -> None:
    """Write the block's final parameters, rule state and divergence steps."""
    P = 1 if k.n_params is None else k.n_params
    params, inner, diverged = carry
    for ref, part in zip(r.out_params, _per_run(params, k.n_params), strict=True):
        ref[...] = part
    leaves = inner_def.flatten_up_to(inner)
    for i, leaf in enumerate(leaves):
        for j, part in enumerate(_per_run(leaf, k.n_params)):
            r.out_inner[i * P + j][...] = part
    r.out_div[...] = diverged


def _body(k: _Kernel, n_inner: int, inner_def: Any, refs: tuple) -> None:
    """One program instance: a block of runs through all steps."""
    from jax.experimental import pallas as pl

    r = _unpack(k, n_inner, refs)
    plan, update = k.plan, _scheduled_by_table(k.update, r.lr)
    subs = _substitutes(k)
    shared = {name: ref[0] for name, ref in r.shared.items()}
    per_run = {name: ref[...] for name, ref in r.run.items()}
    full_lanes = tuple(ref[...] for ref in r.full)  # the data, loaded once
    full_consts = tuple(ref[...] for ref in r.full_consts)

    def params_of(parts):
        return parts if k.n_params is not None else parts[0]

    # A traced 1: the loss times it is the loss, bit for bit, and jax.grad's cotangent
    # seed becomes a traced value (Triton lowers no `neg` of a constant such as `neg 1.0`).
    unit = lax.convert_element_type(pl.program_id(0) * 0 + 1, r.params[0].dtype)

    def full_loss(p, lanes):
        return k.full(p, lanes, full_consts, subs) * unit

    def batch_loss(p, lanes):
        return full_loss(p, lanes) if k.batch is None else k.batch(p, lanes, (), subs) * unit

    lanes_plan = dataclasses.replace(plan, batch_size=None, extra_args=False)
    no_perm = jnp.zeros((), jnp.int32)

    def state_of(t, inner, hp):
        return OptState(t, {**shared, **hp}, {}, inner)

    def lanes_at(t):
        if k.batch is None:
            return full_lanes
        width = k.batch.n_pad
        return tuple(ref[_ds(t * width, width)] for ref in r.batch)

    def advance(carry, t, with_value):
        """Step ``t`` of every run in the block: the engine's step, one run per lane."""
        step = make_step(batch_loss, update, lanes_plan, lanes_at(t), None)

        def one_run(p, inner, hp, diverged):
            (p, state, _, diverged), out = step((p, state_of(t, inner, hp), no_perm, diverged), t, with_value)
            return (p, state.inner_state, diverged), out

        return jax.vmap(one_run)(*carry[:2], per_run, carry[2])

    def steps(carry, start, count):
        return lax.fori_loop(0, count, lambda j, c: advance(c, start + j, False)[0], carry)

    params0 = params_of(tuple(ref[...] for ref in r.params))
    inner0 = jax.vmap(lambda p, hp: update.init(p, {**shared, **hp}).inner_state)(params0, per_run)
    carry = (params0, inner0, jnp.full(r.params[0].shape, -1, jnp.int32))

    if plan.record_every is not None:
        every = plan.record_every
        reuse = k.batch is None and not update.reports

        def block(b, carry):
            t0 = b * every
            shown = jax.vmap(lambda p, inner, hp: update.report(p, state_of(t0, inner, hp)))(
                carry[0], carry[1], per_run
            )
            carry, (val, grad_norm) = advance(carry, t0, reuse)
            rec = val if reuse else jax.vmap(lambda p: full_loss(p, full_lanes))(shown)
            r.h_loss[b, :] = rec
            r.h_gnorm[b, :] = grad_norm
            if plan.record_params:
                for ref, part in zip(r.h_params, _per_run(shown, k.n_params), strict=True):
                    ref[b, :] = part
            return steps(carry, t0 + 1, every - 1)

        n_blocks = plan.steps // every
        carry = lax.fori_loop(0, n_blocks, block, carry)
        carry = steps(carry, n_blocks * every, plan.steps - n_blocks * every)
    else:
        carry = steps(carry, 0, plan.steps)

    _store(k, inner_def, r, carry)


def _ds(start, size):
    from jax.experimental import pallas as pl

    return pl.ds(pl.multiple_of(start, size) if size > 1 else start, size)


def _inputs(k: _Kernel, padded: int, params0, hp_shared, hp_run, key, data) -> tuple[list, list]:
    """The kernel's arguments, in the order :func:`_unpack` takes them, and their block specs:
    per-run values padded to ``padded`` runs and blocked, everything else whole."""
    from jax.experimental import pallas as pl

    plan, update, n_runs, br = k.plan, k.update, params0.shape[0], k.block_runs

    def pad_runs(x):
        return jnp.pad(x, [(0, padded - n_runs)] + [(0, 0)] * (x.ndim - 1), mode="edge")

    blocked = pl.BlockSpec((br,), lambda i: (i,))
    inputs: list = []
    specs: list = []

    def add(x, spec=None):
        inputs.append(x)
        specs.append(spec or pl.BlockSpec(x.shape, lambda i: (0,) * x.ndim))  # the whole array

    for part in _split(pad_runs(params0), k.n_params):
        add(part, blocked)
    for name in k.hp_run:
        add(pad_runs(hp_run[name]), blocked)
    for name in k.hp_shared:
        add(jnp.reshape(hp_shared[name], (1,)))
    schedule = update.schedule("learning_rate")
    if schedule is not None:  # the learning rate at steps 0..T, by step
        add(jax.vmap(lambda t: jnp.asarray(schedule(t)))(jnp.arange(plan.steps + 1, dtype=jnp.int32)))
    leaves = jax.tree.leaves(data)
    for x in (*k.full.pad(leaves), *k.full.padded_consts()):
        add(x)
    if k.batch is not None:  # every step's mini-batch, a row of n_pad lanes each
        assert plan.batch_size is not None  # a batch loss is made only for mini-batches (plan_kernel)
        idx = batch_table(key, k.full.n, plan.batch_size, plan.steps)
        for leaf in leaves:
            add(k.batch.pad([jnp.take(leaf, idx, axis=0)])[0].reshape(-1))
    return inputs, specs


def _results(k: _Kernel, inner_def: Any, outs: list, hp_shared, hp_run, data) -> tuple:
    """``(params, loss, diverged_step, history, state)`` from the kernel's outputs (the runs
    trimmed), as the XLA path returns them."""
    plan, update, P = k.plan, k.update, (1 if k.n_params is None else k.n_params)
    n_inner, n_runs = inner_def.num_leaves, outs[0].shape[-1]
    params = _join(outs[:P], k.n_params)
    inner = inner_def.unflatten([_join(outs[P * (1 + i) : P * (2 + i)], k.n_params) for i in range(n_inner)])
    diverged = outs[P * (1 + n_inner)]
    hyper = {name: jnp.broadcast_to(v, (n_runs,)) for name, v in hp_shared.items()}
    last = jnp.asarray(plan.steps - 1, jnp.int32)  # a scheduled value as the last step used it
    for name, fn in update.schedules:
        hyper[name] = jnp.broadcast_to(jnp.asarray(fn(last), hyper[name].dtype), (n_runs,))
    state = OptState(jnp.full((n_runs,), plan.steps, jnp.int32), {**hyper, **hp_run}, {}, inner)
    final = jax.vmap(update.report)(params, state)
    final_loss = jax.vmap(k.loss, (0, None))(final, data)
    diverged = jnp.where((diverged < 0) & ~jnp.isfinite(final_loss), plan.steps, diverged)
    history = None
    if plan.record_every is not None:
        rest = outs[P * (1 + n_inner) + 1 :]
        h_params = _join([h.T for h in rest[2:]], k.n_params) if plan.record_params else None
        history = (rest[0].T, rest[1].T, h_params)
    return final, final_loss, diverged, history, state


def kernel_program(k: _Kernel) -> Callable:
    """The jitted fused fit for these static settings."""
    from jax.experimental import pallas as pl

    plan, update, P = k.plan, k.update, (1 if k.n_params is None else k.n_params)
    one_param = jax.ShapeDtypeStruct(
        () if k.n_params is None else (k.n_params,), k.full.closed.in_avals[0].dtype
    )
    rule = update.rule
    assert rule is not None  # plan_kernel sends only fitjax's own rules to the kernel
    inner_def: Any = jax.tree.structure(jax.eval_shape(rule.init, one_param))  # jaxlib: no PyTreeDef stubs
    n_inner = inner_def.num_leaves

    def run(params0, hp_shared, hp_run, key, data):
        _TRACES["fused"] += 1
        n_runs, br = params0.shape[0], k.block_runs
        padded = -(-n_runs // br) * br

        dtype = params0.dtype
        blocked = pl.BlockSpec((br,), lambda i: (i,))
        inputs, specs = _inputs(k, padded, params0, hp_shared, hp_run, key, data)

        out_shapes = [jax.ShapeDtypeStruct((padded,), dtype)] * (P * (1 + n_inner))
        out_shapes.append(jax.ShapeDtypeStruct((padded,), jnp.int32))
        out_specs = [blocked] * len(out_shapes)
        n_rec = 0
        if plan.record_every is not None:
            n_rec = plan.steps // plan.record_every
            n_hist = 2 + (P if plan.record_params else 0)
            out_shapes += [jax.ShapeDtypeStruct((n_rec, padded), dtype)] * n_hist
            out_specs += [pl.BlockSpec((n_rec, br), lambda i: (0, i))] * n_hist

        compiler_params = None
        if not k.interpret:
            from jax.experimental.pallas import triton as pltriton

            compiler_params = pltriton.CompilerParams(num_warps=k.num_warps, num_stages=1)
        outs = pl.pallas_call(
            lambda *refs: _body(k, n_inner, inner_def, refs),
            out_shape=out_shapes,
            grid=(padded // br,),
            in_specs=specs,
            out_specs=out_specs,
            interpret=k.interpret,
            compiler_params=compiler_params,
            name="fitjax_fused_fit",
        )(*inputs)

        return _results(k, inner_def, [o[..., :n_runs] for o in outs], hp_shared, hp_run, data)

    return run


@functools.lru_cache(maxsize=64)
def compiled(k: _Kernel) -> Callable:
    return jax.jit(kernel_program(k))


def run(
    loss: Callable,
    update: Stepper,
    params0: Any,
    data: Any,
    *,
    plan: Plan,
    hp_shared: dict[str, jax.Array],
    hp_run: dict[str, jax.Array],
    key: jax.Array,
    options: Fused,
    jit: bool = True,
    mesh: Any = None,
    auto: bool = False,
) -> FitResult:
    """The fused fit of an already checked problem (called by :func:`fitjax.fit`).

    Raises :class:`Unsupported` with the reason when the kernel cannot take it, or
    (``auto``) when the XLA path is expected to be faster.
    """
    k = plan_kernel(loss, update, params0, data, plan, hp_shared, hp_run, options, jit, mesh)
    lanes = (k.batch or k.full).n_pad
    if auto and lanes > _ONE_RUN_PER_THREAD and np.shape(params0)[0] * lanes > _AUTO_LANES:
        raise Unsupported(f"{np.shape(params0)[0]} runs × {lanes} lanes: the XLA path is faster at this size")
    try:
        program, failed = compiled(k), FAILED_BUILDS.get(k)
    except TypeError:  # an unhashable loss: compile without the cache
        program, failed = jax.jit(kernel_program(k)), None
    if failed is not None:
        raise Unsupported(failed)
    try:
        out = program(jnp.asarray(params0), hp_shared, hp_run, key, data)
    except Exception as err:
        if k.interpret or not isinstance(err, _build_errors()):
            raise
        first = f"{type(err).__name__}: {err}".splitlines()[0]
        reason = f"the kernel could not be built for this device ({first})"
        with contextlib.suppress(TypeError):
            FAILED_BUILDS[k] = reason  # not tried again for the same settings
        raise Unsupported(reason) from err
    params, final_loss, diverged, hist, state = out
    history = None
    if hist is not None:
        every = plan.record_every
        assert every is not None  # the kernel records a history only with record_every
        history = History(record_steps(plan.steps, every), *hist)
    return FitResult(params, final_loss, diverged, history, state if plan.keep_state else None, plan.steps)


def dispatch(
    backend: Any,
    loss: Callable,
    update: Stepper,
    params0: Any,
    data: Any,
    **kwargs: Any,
):
    """The fused fit for ``fit(..., backend=backend)``, or None for the XLA path.

    A problem the kernel cannot take gives None, with a :class:`FallbackWarning`
    naming the reason when the fused path was asked for explicitly.
    """
    options, explicit = resolve_backend(backend)
    if options is None:
        return None
    try:
        return run(loss, update, params0, data, options=options, auto=not explicit, **kwargs)
    except Unsupported as why:
        if explicit:
            warnings.warn(
                f"backend={backend!r}: running the XLA path because {why}", FallbackWarning, stacklevel=3
            )
        return None


register_backend(dispatch)  # fit(..., backend="fused" / "auto" / Fused(...)) comes here
