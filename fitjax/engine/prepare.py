r"""The first stage of a fit: every argument checked, before anything is compiled.

:func:`prepare` turns the arguments of :func:`fitjax.fit` into one :class:`Prepared`
problem: the optimizer seen through its :class:`~fitjax.optim.protocol.Stepper`, its
hyperparameters split into shared scalars and per-run arrays, the runs' ids, and the
:class:`Plan`, everything static that a compiled program is specialised on. Each check
names the argument, the value and the fix. Checks that trace the loss or the optimizer
abstractly run once per signature (:func:`check_loss`, :func:`check_update`), and a call
whose whole signature was checked before skips to its values: the compiled program
(compiled already) tests the starts and data finite, and :func:`check_values` names a
bad one after that run, with the same message.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import pathlib
import struct
import threading
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fitjax import _checks
from fitjax.engine import pieces as _pieces
from fitjax.optim.construction import shared_key
from fitjax.optim.protocol import Stepper, held_dtype, rule_of, stepper

PyTree = Any
Loss = Callable[[PyTree, Any], jax.Array]


MAX_STEPS = 2**31 - 2
"""The most steps a run takes: the step counter is an int32, and Nesterov reads step ``t + 1``."""

CHECK_EVERY = 32
"""About how many steps run between two divergence checks of the step loop (see
:func:`fitjax.engine.loop.run_one`); read by :func:`prepare` at each call."""


def l2_cache_bytes(cpu: str = "/sys/devices/system/cpu/cpu0") -> int | None:
    """The size of one core's level-2 cache in bytes, as Linux reports it for ``cpu``
    (``cache/index*/level`` and ``size``); None where it is not reported."""
    try:
        for index in sorted(pathlib.Path(cpu, "cache").glob("index*")):
            level, kind = ((index / name).read_text().strip() for name in ("level", "type"))
            if level == "2" and kind != "Instruction":
                size = (index / "size").read_text().strip().upper()
                scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(size[-1:], 1)
                return int(size.rstrip("KMG")) * scale
    except (OSError, ValueError):
        return None
    return None


def points_per_block(l2_bytes: int | None) -> int:
    """Run × data-point pairs per block of the step loop on a CPU with ``l2_bytes`` of
    level-2 cache per core: as many pairs as the cache has bytes, between 2¹⁸ and 2²²
    (2¹⁹ where the size is not known).

    The rule is measured, not derived: the best block was 2¹⁹ pairs on a 2-core AMD EPYC
    with 512 KiB of L2 per core and 2²¹ on a 2-core Intel Xeon with 2 MiB per core, each
    within a few percent of the best at 10⁴ × 1024, 10⁴ × 256 and 10⁵ × 28. On the Xeon
    the EPYC's 2¹⁹ lost 6–8%; on the EPYC 2²⁰ already lost 5–16%
    (``benchmarks/NOTES.md`` entries 16 and 19).
    """
    if not l2_bytes:
        return 2**19
    return min(max(int(l2_bytes), 2**18), 2**22)


RUN_BLOCK_POINTS = points_per_block(l2_cache_bytes())
"""On a CPU the step loop takes the runs in blocks of about this many run × data-point
pairs (:func:`default_run_block`), from this machine's level-2 cache
(:func:`points_per_block`); read by :func:`prepare` at each call."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything static about a run: what a compiled program is specialised on."""

    steps: int
    record_every: int | None
    record_params: bool
    batch_size: int | None
    n_data: int
    shared_order: bool
    extra_args: bool
    unroll: int = 1
    check_every: int = CHECK_EVERY  # prepare passes the value CHECK_EVERY has at the call
    keep_state: bool = False  # return each run's final optimizer state
    run_block: int | None = None  # runs stepped together in one block of the loop (None: all at once)
    loss_pieces: int = 1  # a least-squares loss summed in this many pieces (fitjax.engine.pieces)


def one_run(params0: PyTree) -> PyTree:
    """The shapes and dtypes of one run's parameters."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a)[1:], jnp.result_type(a)), params0)


def check_swept(update: Stepper, one: PyTree, values: Any) -> dict[str, Any]:
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


def split_hyperparams(
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
    dtypes = check_swept(update, one_run(params0), values)
    per_run = {name: jnp.broadcast_to(jnp.asarray(v, dtypes[name]), (n_runs,)) for name, v in values.items()}
    shared = {k: v for k, v in defaults.items() if k not in per_run}
    return shared, per_run


def check_params0(params0: PyTree) -> int:
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


def check_data(data: Any) -> int:
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


TRACED = (
    "fit was called inside jax.jit, jax.vmap or another transformation ({what}): fit compiles and runs "
    "its own program and reads back on the host whether a run needs its span replayed, so it cannot be "
    "traced. Call fit outside the transformation; to batch fits, put the starts on params0's leading "
    "axis, give one value per run with hyperparams=, or a grid to fitjax.sweep"
)


def refuse_tracers(**trees: Any) -> None:
    """Refuse, before anything is compiled, arguments that are being traced by an enclosing
    transformation (``jax.jit``, ``jax.vmap``, ``jax.grad``)."""
    for name, tree in trees.items():
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree)):
            raise TypeError(TRACED.format(what=f"{name} is traced"))


def check_loss_and_optimizer(loss: Any, optimizer: Any) -> None:
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


def check_loss(loss: Loss, params0: PyTree, batch: Any) -> None:
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


def check_update(update: Stepper, loss: Loss, params0: PyTree, batch: Any, hp: Mapping[str, Any]) -> None:
    """The optimizer's ``init`` and ``update`` run on one run's params abstractly and return
    what optax's conventions say: ``update(updates, state, params, **extra) -> (updates, state)``
    with updates shaped like the params. Nothing is compiled; checked once per signature."""
    shapes = tuple(sorted((k, jnp.shape(v), str(jnp.result_type(v))) for k, v in hp.items()))
    memo = _signature("update", update, loss, shapes, params0=params0, batch=batch)
    if memo is not None and memo in _LOSS_CHECKED:
        return
    one = one_run(params0)
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
def unused_key() -> jax.Array:
    """The key passed when none is needed (made once: building a key costs a dispatch)."""
    return jax.random.key(0)


def check_key(key: Any) -> jax.Array:
    return _checks.prng_key("key", key)


def check_batch(batch_size: int | None, data: Any, n_data: int, key: Any) -> tuple[int | None, jax.Array]:
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
    return batch_size, unused_key() if key is None else check_key(key)


def default_unroll() -> int:
    """Steps per iteration of the step loop when ``fit`` is not told: 2 on a GPU, 1 elsewhere.

    Measured with the lecture's Gabor model (``benchmarks/step_profile.py``, Adam, N = 28,
    T = 1000): on an H200 the loop of a span, a body of 4 kernels, ran at 0.35× the expert
    baseline at 10⁴ runs and at 1.06× unrolled twice (0.99× and 0.98× at 10⁶ runs); on
    a 2-core CPU unrolling cost 10% at one run.
    """
    return 2 if jax.default_backend() == "gpu" else 1


def default_run_block(points: int) -> int | None:
    """Runs stepped together per block when the runs are many: on a CPU, enough for about
    :data:`RUN_BLOCK_POINTS` run × point pairs (at least one run); None (all runs at once)
    elsewhere.

    On a CPU XLA writes each step's per-point values (the residuals' gradient, a broadcast
    of the data) to memory before summing them over the points, so at 10⁴ runs of 1024
    points a step moves about 200 MB: memory, not arithmetic, sets the pace. Stepped in
    blocks (one loop over the blocks, each block's whole run at a time) those arrays stay
    in the caches: with 500 runs a block on a CPU with 512 KiB of L2 per core, Adam on
    the Gabor fit ran 1.53× faster at 10⁴ × 1024, 1.44× at 10⁴ × 256 and 1.09× at
    10⁵ × 28 (``benchmarks/NOTES.md`` entry 16); the block's size follows the cache
    (:func:`points_per_block`). Each run's arithmetic is the same as in one batch
    (:func:`~fitjax.engine.program.in_blocks`). A GPU wants every run at once.
    """
    if jax.default_backend() != "cpu":
        return None
    return max(1, RUN_BLOCK_POINTS // max(points, 1))


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


def check_schedules(update: Stepper, params0: PyTree, steps: int) -> None:
    """Every scheduled hyperparameter passes its check at every step ``0..steps``, in the
    dtype the run holds it in.

    Step 0 is checked when the optimizer is built; the later steps only here, where
    their number is known. Nesterov reads α one step ahead, hence ``steps`` itself.
    """
    if update.rule is None:
        return
    dtypes = [held_dtype(params0), *_checks.float_dtypes(params0)]
    for name, fn in update.schedules:
        # shown in the schedule's own dtype
        given = np.asarray(jax.vmap(fn)(jnp.arange(0, steps + 1, dtype=jnp.int32)))
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


def check_optimizer(optimizer: Any, params0: PyTree, steps: int, values: Mapping[str, Any]) -> None:
    """The checks of ``optimizer`` that :func:`fit` makes, for a caller that runs it in parts:
    its schedules over ``steps`` and hyperparameter ``values`` given per run."""
    update, _ = stepper(optimizer, params0)
    check_schedules(update, params0, steps)
    if values:
        check_swept(update, one_run(params0), values)


def check_grid(grid: Mapping[str, Any]) -> dict[str, jax.Array]:
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


def batch_struct(data: Any, batch_size: int | None) -> Any:
    if data is None or batch_size is None:
        return data
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct((batch_size, *jnp.shape(a)[1:]), jnp.asarray(a).dtype), data
    )


# ----------------------------------------------------------------------------- the prepared problem


@dataclasses.dataclass(frozen=True, eq=False)
class Prepared:
    """A checked problem, ready to run: what :func:`prepare` makes of ``fit``'s arguments.

    Attributes:
      loss: ``loss(params, batch) -> scalar`` for one run's params.
      update: the optimizer as the engine steps it.
      defaults: the optimizer's own hyperparameter values (shared by all runs).
      params0: the starts, leaves with a leading run axis.
      data: the data, or None.
      key: the mini-batch key (a fixed stand-in when no mini-batches are drawn).
      plan: the static settings a compiled program is specialised on.
      hp_shared: hyperparameters shared by all runs, as scalars.
      hp_run: hyperparameters given per run, each with a leading run axis.
      run_ids: each run's id for its mini-batch key (``uint32``), or None for full batches.
      n_runs: the number of runs.
      values_checked: whether ``params0`` and ``data`` were tested finite on the host.
        :func:`prepare` skips that test for a call whose signature it has checked
        before; the engine's program then tests them (:func:`check_values` names the bad
        value), and any other path calls :func:`check_values` first.
      derived: what the engine works out once from the static part (the program it runs,
        how long that took): shared by the problems of one kept signature, and by those
        made from a problem with ``dataclasses.replace``. Never part of a result.
    """

    loss: Loss
    update: Stepper
    defaults: dict[str, jax.Array]
    params0: PyTree
    data: Any
    key: jax.Array
    plan: Plan
    hp_shared: dict[str, jax.Array]
    hp_run: dict[str, jax.Array]
    run_ids: jax.Array | None
    n_runs: int
    values_checked: bool = True
    derived: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)


def check_values(problem: Prepared) -> None:
    """The checks of ``problem``'s ``params0`` and ``data`` that depend on their values
    (every start and datum finite), with the message :func:`prepare` gives."""
    check_params0(problem.params0)
    check_data(problem.data)


class _Signature:
    """A call signature hashed once: the kept-problem lookup and its least-recently-used
    move would otherwise hash the whole tuple (the loss, the optimizer) each time."""

    __slots__ = ("parts", "hash")

    def __init__(self, parts: tuple) -> None:
        self.parts, self.hash = parts, hash(parts)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Signature) and self.hash == other.hash and self.parts == other.parts


_PREPARED: collections.OrderedDict[_Signature, tuple[_Signature, Prepared]] = collections.OrderedDict()
"""Each checked signature, to itself as kept (moved to the end by that object, the dict
finds it by identity, without comparing the signatures again) and its problem."""
_PREPARED_LOCK = threading.Lock()
PREPARED_KEPT = 64
"""How many call signatures :func:`prepare` remembers as checked (least recently used dropped)."""


def forget_checked() -> None:
    """Forget every signature :func:`prepare` has checked: the next calls check all again."""
    with _PREPARED_LOCK:
        _PREPARED.clear()
    _pieces.forget()


def _call_signature(
    loss: Loss, optimizer: Any, params0: PyTree, data: Any, key: Any, settings: tuple
) -> _Signature | None:
    """Everything but the values that :func:`prepare`'s checks depend on: the loss and the
    optimizer (by hash and equality, as the compiled programs are keyed), each leaf's
    type, shape and dtype (a tracer has its own type, and never passes), the settings with
    their types (``steps=200.0`` is not ``steps=200``), and the configuration read at a
    call. None when something is unhashable or not an array, or when a parameter is a
    16-bit float (whose precision check can warn, at every call): then every check runs."""
    try:
        p_leaves, p_def = jax.tree.flatten(params0)
        p_kinds = tuple([(type(a), a.shape, a.dtype) for a in p_leaves])
        for _, _, dtype in p_kinds:
            if dtype.itemsize < 4 and jnp.issubdtype(dtype, jnp.floating):
                return None
        d_leaves, d_def = jax.tree.flatten(data)
        signature = (
            loss,
            optimizer,
            p_def,
            d_def,
            p_kinds,
            tuple([(type(a), a.shape, a.dtype) for a in d_leaves]),
            None if key is None else (type(key), key.shape, key.dtype),
            tuple(map(type, settings)),
            settings,
            CHECK_EVERY,
            RUN_BLOCK_POINTS,
            _pieces.PIECES_FROM,
            _pieces.PIECES_UP_TO,
            jax.default_backend(),
            jax.config.jax_enable_x64,  # type: ignore[attr-defined]
            jax.config.jax_numpy_dtype_promotion,  # type: ignore[attr-defined]
        )
        return _Signature(signature)
    except (AttributeError, TypeError):
        return None


def _per_run_kind(hyperparams: Any, run_ids: Any) -> Any:
    """What a call's per-run values add to its signature: the names given per run and the
    kind of the run ids (their values are checked at every call); None when they are not
    of a kind that can be kept (then every check runs)."""
    if hyperparams is not None and not isinstance(hyperparams, Mapping):
        return None
    if not hyperparams and run_ids is None:
        return ()
    try:
        ids = None if run_ids is None else (type(run_ids), run_ids.shape, run_ids.dtype)
        return (frozenset(hyperparams or ()), ids)
    except (AttributeError, TypeError):
        return None


def as_built(optimizer: Any) -> Any:
    """An optimizer by what built it, so that a fit that builds its optimizer at each call
    is checked once, as one that passes the same object: a fitjax optimizer whose
    hyperparameters are plain numbers by its rule and values (a float by its bits, so
    ``-0.0`` is not ``0.0``), an optax transformation by its construction key, as its
    compiled programs are (:func:`~fitjax.optim.construction.shared_key`: two calls of
    ``optax.adam(0.05)`` give equal keys). Any other (a fitjax optimizer with a schedule,
    an optax one holding what may change in place) is returned itself, and is kept by
    identity."""
    found = rule_of(optimizer)
    if found is None:
        key = shared_key(optimizer)
        return optimizer if key is None else ("optimizer built as", key)
    rule, given = found
    values = []
    for name, value in given.items():
        if type(value) not in (bool, int, float):
            return optimizer
        values.append((name, type(value), struct.pack("<d", value) if type(value) is float else value))
    return ("fitjax optimizer", rule, tuple(values))


def prepare(
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
    unroll: int | None = None,
    run_ids: jax.Array | None = None,
    keep_state: bool = False,
    fitted_together: int | None = None,
) -> Prepared:
    """Check ``fit``'s arguments, in the order its refusals are documented, and prepare the problem.

    A call whose signature (the loss, optimizer, shapes, dtypes, settings, the names given
    per run) was checked before gets the kept problem with its new values, marked
    ``values_checked=False``: the starts and data are then tested by the engine's program,
    or by :func:`check_values` on any other path; values given per run (``hyperparams``,
    ``run_ids``) are checked again at every call.

    ``fitted_together`` (default: the runs of ``params0``) is how many runs a compiled call
    will fit at once, which the loss's pieces are chosen for (:func:`decide_pieces`).

    ``run_ids`` (default ``0..runs-1``) number the runs for their mini-batch keys: a
    sweep gives start ``i`` the same id under every setting.

    Example:
      >>> import jax, fitjax
      >>> from fitjax.engine import prepare
      >>> starts = fitjax.inits.uniform(jax.random.key(0), 4, [-1.0, -1.0], [1.0, 1.0])
      >>> problem = prepare.prepare(fitjax.least_squares(fitjax.line), fitjax.gd(0.02), starts,
      ...                           fitjax.datasets.line(), steps=10)
      >>> problem.n_runs, problem.plan.steps, sorted(problem.hp_shared)
      (4, 10, ['learning_rate'])
    """
    settings: tuple = (steps, batch_size, shared_order, record_every, record_params, unroll, keep_state)
    settings += (fitted_together, _per_run_kind(hyperparams, run_ids))
    # a signature checked before is kept, its per-run values (if any) checked at every call
    per_run = settings[-1] != ()
    signature = None
    if settings[-1] is not None:
        signature = _call_signature(loss, optimizer, params0, data, key, settings)
    known = _kept(signature, params0, data, key)
    built_signature = None
    if known is None and signature is not None and (built := as_built(optimizer)) is not optimizer:
        # an optimizer built anew as an earlier one was: that one's checks hold
        built_signature = _call_signature(loss, built, params0, data, key, settings)
        known = _kept(built_signature, params0, data, key)
    if known is not None:
        if per_run:
            refuse_tracers(hyperparams=hyperparams, run_ids=run_ids)
            known = _with_runs(known, params0, known.n_runs, hyperparams, run_ids)
        return known
    check_loss_and_optimizer(loss, optimizer)
    refuse_tracers(params0=params0, data=data, hyperparams=hyperparams, key=key, run_ids=run_ids)
    n_runs = check_params0(params0)
    n_data = check_data(data)
    steps = _checks.positive_int("steps", steps, upper=MAX_STEPS, upper_name="the int32 step counter's limit")
    if record_every is not None:
        record_every = _checks.positive_int("record_every", record_every, upper=steps, upper_name="steps")
    unroll = default_unroll() if unroll is None else _checks.positive_int("unroll", unroll)
    batch_size, key = check_batch(batch_size, data, n_data, key)
    check_loss(loss, params0, batch_struct(data, batch_size))
    update, defaults = stepper(optimizer, params0)
    check_schedules(update, params0, steps)
    plan = Plan(
        steps=steps,
        record_every=record_every,
        record_params=_checks.flag("record_params", record_params),
        batch_size=batch_size,
        n_data=n_data,
        shared_order=_checks.flag("shared_order", shared_order),
        extra_args=update.uses_loss,
        unroll=unroll,
        check_every=CHECK_EVERY,
        keep_state=_checks.flag("keep_state", keep_state),
        run_block=default_run_block(batch_size or n_data),
    )
    empty: dict[str, jax.Array] = {}
    problem = Prepared(loss, update, defaults, params0, data, key, plan, defaults, empty, None, 0)
    problem = _with_runs(problem, params0, n_runs, hyperparams, run_ids)
    problem = decide_pieces(problem, n_runs if fitted_together is None else fitted_together)
    _keep(signature, problem, per_run)
    _keep(built_signature, problem, per_run)
    return problem


def decide_pieces(problem: Prepared, runs: int) -> Prepared:
    """``problem`` with its least-squares loss summed in as many pieces as suit ``runs``
    runs fitted together (:func:`fitjax.engine.pieces.default_pieces`; those of one
    block when the plan steps the runs in blocks)."""
    plan = problem.plan
    together = runs if plan.run_block is None else min(runs, plan.run_block)
    pieces = _pieces.default_pieces(
        problem.loss,
        problem.params0,
        problem.data,
        plan.batch_size,
        together,
        per_run_batch=plan.batch_size is not None and not plan.shared_order,
    )
    return dataclasses.replace(problem, plan=dataclasses.replace(plan, loss_pieces=pieces))


def _kept(signature: _Signature | None, params0: PyTree, data: Any, key: Any) -> Prepared | None:
    """The problem kept for ``signature`` with these values (not checked on the host), or None.

    A copy of the kept one's fields with the values put in: ``dataclasses.replace`` costs
    a call several microseconds."""
    entry = None if signature is None else _PREPARED.get(signature)
    if entry is None:
        return None
    kept, known = entry
    with _PREPARED_LOCK, contextlib.suppress(KeyError):  # dropped by another thread meanwhile
        _PREPARED.move_to_end(kept)
    problem = object.__new__(Prepared)
    fields = problem.__dict__
    fields.update(known.__dict__)
    fields["params0"], fields["data"], fields["values_checked"] = params0, data, False
    if key is not None:
        fields["key"] = check_key(key)  # a legacy PRNGKey wrapped
    return problem


def _keep(signature: _Signature | None, problem: Prepared, per_run: bool = False) -> None:
    """Keep ``problem`` for ``signature``, without its values (which it must not keep
    alive): the starts, the data and, where they were given, the per-run values."""
    if signature is None:
        return
    kept = dataclasses.replace(problem, params0=None, data=None)
    if per_run:  # given per run: made again from each call's values
        kept = dataclasses.replace(kept, hp_run={}, run_ids=None)
    with _PREPARED_LOCK:
        _PREPARED[signature] = (signature, kept)
        if len(_PREPARED) > PREPARED_KEPT:
            _PREPARED.popitem(last=False)


def for_runs(
    problem: Prepared, params0: PyTree, hyperparams: Mapping[str, Any] | None, run_ids: jax.Array | None
) -> Prepared:
    """The same problem from other starts, with their per-run hyperparameters and run ids
    (a block of a chunked sweep): only what depends on the runs is checked again."""
    return _with_runs(problem, params0, check_params0(params0), hyperparams, run_ids)


def _with_runs(
    problem: Prepared,
    params0: PyTree,
    n_runs: int,
    hyperparams: Mapping[str, Any] | None,
    run_ids: jax.Array | None,
) -> Prepared:
    update, plan = problem.update, problem.plan
    hp_shared, hp_run = split_hyperparams(update, problem.defaults, params0, n_runs, hyperparams)
    batch = batch_struct(problem.data, plan.batch_size)
    check_update(update, problem.loss, params0, batch, {**hp_shared, **hp_run})
    if plan.batch_size is None:  # full batch: no keys to derive, nothing to pass
        run_ids = None
    elif run_ids is None:
        run_ids = jnp.arange(n_runs, dtype=jnp.uint32)
    return dataclasses.replace(
        problem, params0=params0, hp_shared=hp_shared, hp_run=hp_run, run_ids=run_ids, n_runs=n_runs
    )
