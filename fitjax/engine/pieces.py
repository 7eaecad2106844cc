r"""A small step's sum of squares in pieces, so that XLA's CPU compiler keeps it on one thread.

XLA's CPU compiler gives an elementwise fusion to several threads when its cost model
rates the fusion at 2·10⁵ or more (flops, plus twice the transcendental functions, plus
ten times the bytes; ``xla/service/cpu/parallel_task_assignment.cc``). The threads then
meet at every step of the loop. A step of one to a few thousand run × point pairs is a
few microseconds of work, less than the meeting costs: on a 2-core Xeon, Adam on the
Gabor fit with its polynomial ``sin``, ``cos`` and ``exp`` ran a 1 × 1024 fit in
748–1034 µs split across the cores and 630 µs in pieces, each piece on one thread
(``benchmarks/NOTES.md`` entries 20 and 21).

A least-squares loss is a sum over its points, so it can be written as a sum of
separate sums over consecutive slices of the batch
(:attr:`fitjax.LeastSquares.pieces`). Each slice is its own fusion, small enough not to
be split, and the loss is the same up to float32 rounding (the order of the sum).
:func:`default_pieces` asks XLA itself: it compiles the gradient of one step over the
runs stepped together (with the mini-batches taken inside, as the engine takes them)
and reads whether a fusion was split; if so, it tries 2, then 4 pieces, and keeps the
first that XLA leaves whole. A loss that is not a :class:`~fitjax.LeastSquares` (whose
additivity fitjax cannot see), and a model that reads the batch as a whole
(:func:`per_example`), are left as they are. The choice changes the order of a sum, so
the same run fitted alone and among many runs (where no pieces are taken) can differ
in the last bits, as XLA's own choices by batch size already allow.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fitjax.engine.sampler import take
from fitjax.numerics.fastmath import choose_math, platform_math, polynomial_math
from fitjax.problems.losses import LeastSquares

PyTree = Any
Loss = Callable[[PyTree, Any], jax.Array]

PIECES_FROM, PIECES_UP_TO = 1024, 4096
"""Run × point pairs a step where pieces are considered. Below 1024 the Gabor gradient is
not split; from about 16,000 the split pays (1.25× on two cores, ``benchmarks/NOTES.md``
entry 20) and at 8192 eight pieces gained 9% for twice the compile time (entry 21).
Part of the call signature that ``fit`` keeps; ``PIECES_UP_TO = 0`` turns pieces off."""

MAX_PIECES = 4
"""The most pieces: each is a copy of the model in the compiled program, and with the
polynomial maths eight pieces took twice as long to compile as one."""

MIN_PIECE_POINTS = 128
"""The fewest points a piece holds: smaller pieces of many runs are split by XLA again
(100 runs in 4 pieces of 7 points were, ``benchmarks/NOTES.md`` entry 21)."""

_MARKERS: tuple[tuple[str, Callable[[Callable], Callable]], ...] = (
    ("__fitjax_polynomial_math__", polynomial_math),
    ("__fitjax_platform_math__", platform_math),
)


def additive(loss: Loss) -> LeastSquares | None:
    """The :class:`~fitjax.LeastSquares` that ``loss`` is (seen through
    :func:`fitjax.polynomial_math` and :func:`fitjax.platform_math`), or None."""
    if isinstance(loss, LeastSquares):
        return loss
    for marker, _ in _MARKERS:
        inner = getattr(loss, marker, None)
        if inner is not None:
            return additive(inner)
    return None


def with_pieces(loss: Loss, pieces: int) -> Loss:
    """``loss`` with its sum of squares in ``pieces`` pieces, wrapped as it was; ``loss``
    itself when ``pieces`` is 1 or it is not a :class:`~fitjax.LeastSquares`.

    Example:
      >>> import fitjax
      >>> from fitjax.engine.pieces import with_pieces
      >>> loss = fitjax.least_squares(fitjax.Gabor(8.0))
      >>> with_pieces(loss, 2).pieces, with_pieces(loss, 1) is loss
      (2, True)
      >>> with_pieces(fitjax.platform_math(loss), 2) is fitjax.platform_math(with_pieces(loss, 2))
      True
    """
    if pieces == 1:
        return loss
    if isinstance(loss, LeastSquares):
        return dataclasses.replace(loss, pieces=pieces)
    for marker, wrap in _MARKERS:
        inner = getattr(loss, marker, None)
        if inner is not None:
            pieced = with_pieces(inner, pieces)
            return loss if pieced is inner else wrap(pieced)
    return loss


def cores() -> int:
    """The cores this process may run on (its affinity where the system reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def per_example(loss: LeastSquares, params: PyTree, batch: Any) -> bool:
    """Whether ``loss``'s model predicts each example of ``batch`` from that example alone,
    as far as ``params`` (and ``params + 0.5``) show: its residuals on the first half of
    the batch equal the first half of its residuals on the whole (to float32 rounding). A model that uses
    the batch as a whole (centred by ``x.mean()``, say) would give another loss in
    pieces, so it is not cut.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> from fitjax.engine.pieces import per_example
      >>> data, phi = fitjax.datasets.line(), jnp.array([0.5, 1.0])
      >>> per_example(fitjax.least_squares(fitjax.line), phi, data)
      True
      >>> per_example(fitjax.least_squares(lambda p, x: p[0] + p[1] * (x - x.mean())), phi, data)
      False
    """
    for at in (params, jax.tree.map(lambda a: a + 0.5, params)):  # the second where the first is degenerate
        whole, first = (np.asarray(r) for r in _halves(loss, at, batch))
        half = first.shape[0]
        scale = float(np.max(np.abs(whole), initial=0.0)) + 1e-30
        if first.shape != whole[:half].shape or not np.all(np.abs(first - whole[:half]) <= 1e-5 * scale):
            return False
    return True


@functools.partial(jax.jit, static_argnums=0)
def _halves(loss: LeastSquares, params: PyTree, batch: Any) -> tuple[jax.Array, jax.Array]:
    """``loss``'s residuals on the whole batch and on its first half (one program, not
    each operation compiled on its own as it would be run eagerly)."""
    half = jnp.shape(batch[1])[0] // 2
    return loss.residuals(params, batch), loss.residuals(params, jax.tree.map(lambda a: a[:half], batch))


def split_by_xla(
    loss: Loss, one_params: PyTree, data: Any, runs: int, batch: int | None, per_run: bool
) -> bool:
    """Whether XLA's CPU compiler (the default backend) splits some fusion of one step's
    gradient of ``runs`` runs across threads (it marks one with ``outer_dimension_partitions``).

    The step is built as the engine builds it: over the whole ``data`` (shapes and dtypes),
    or over a mini-batch of ``batch`` examples taken from it by index inside the step,
    each run its own with ``per_run``.
    """
    grad = jax.grad(choose_math(loss, "cpu"))
    params = jax.tree.map(lambda s: jax.ShapeDtypeStruct((runs, *s.shape), s.dtype), one_params)
    if batch is None:
        step = jax.vmap(grad, in_axes=(0, None))
        return _split(step, params, data)
    idx = jax.ShapeDtypeStruct((runs, batch) if per_run else (batch,), jnp.int32)
    step = jax.vmap(lambda p, i, d: grad(p, take(d, i)), in_axes=(0, 0 if per_run else None, None))
    return _split(step, params, idx, data)


def _split(step: Callable, *args: Any) -> bool:
    return "outer_dimension_partitions" in (jax.jit(step).lower(*args).compile().as_text() or "")


def default_pieces(
    loss: Loss, params0: PyTree, data: Any, batch_size: int | None, runs: int, *, per_run_batch: bool = False
) -> int:
    """How many pieces the engine takes ``loss``'s sum of squares in, for ``runs`` runs
    stepped together from ``params0`` (one row a run) over ``data`` in batches of
    ``batch_size`` (None: all of it; ``per_run_batch``: each run draws its own) on the
    default backend: 1 unless, on a CPU with two or more cores, XLA would split a step
    of :data:`PIECES_FROM` to :data:`PIECES_UP_TO` run × point pairs; then the fewest of
    2, 4, ... :data:`MAX_PIECES` (each of at least :data:`MIN_PIECE_POINTS` points) that
    XLA keeps whole, or 1 if none does. A model that is not :func:`per_example` on the
    first run and the first batch is not cut.

    Deciding compiles one small program per number tried (0.1 s each on a 2-core Xeon,
    0.25–0.6 s in all); the answer is kept for the last 64 losses, shapes and run counts
    (:func:`forget`), and every other case returns at once.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> from fitjax.engine.pieces import default_pieces
      >>> starts = jnp.array([[0.5, 10.0]])
      >>> default_pieces(fitjax.least_squares(fitjax.Gabor(8.0)), starts, fitjax.datasets.gabor(), None, 1)
      1
    """
    least_squares = additive(loss)
    if jax.default_backend() != "cpu" or least_squares is None or least_squares.pieces != 1 or cores() < 2:
        return 1
    try:
        points = batch_size or int(jnp.shape(data[1])[0])
    except (TypeError, IndexError):  # not an (x, y) batch of arrays
        return 1
    if not PIECES_FROM <= runs * points <= PIECES_UP_TO:
        return 1
    one = jax.tree.map(lambda a: a[0], params0)
    shapes = (_shapes(one), _shapes(data), runs, batch_size, per_run_batch, MAX_PIECES, MIN_PIECE_POINTS)
    try:
        if not per_example(least_squares, one, jax.tree.map(lambda a: a[:points], data)):
            return 1
        try:
            return _decided(loss, *shapes)
        except TypeError:  # an unhashable loss: decided anew
            return _decide(loss, *shapes)
    except Exception:  # noqa: BLE001 (a choice of speed only: a loss the probe cannot compile stays whole)
        return 1


def forget() -> None:
    """Forget the kept decisions (and the losses they hold): the next are made anew."""
    _decided.cache_clear()


def _shapes(tree: PyTree) -> tuple:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(jnp.shape(a)), jnp.result_type(a).name) for a in leaves)


def _structs(shapes: tuple) -> PyTree:
    treedef, leaves = shapes
    return jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in leaves])


def _decide(
    loss: Loss, params: tuple, data: tuple, runs: int, batch: int | None, per_run: bool, most: int, least: int
) -> int:
    one_params, structs = _structs(params), _structs(data)
    points = batch or int(jax.tree.leaves(structs)[0].shape[0])
    pieces = 1
    while split_by_xla(with_pieces(loss, pieces), one_params, structs, runs, batch, per_run):
        pieces *= 2
        if pieces > most or points < pieces * least:
            return 1
    return pieces


_decided = functools.lru_cache(maxsize=64)(_decide)
