r"""A small step's sum of squares in pieces, so that XLA's CPU compiler keeps it on one thread.

XLA's CPU compiler gives an elementwise fusion to several threads when its cost model
rates the fusion at 2·10⁵ or more (flops, plus twice the transcendental functions, plus
ten times the bytes; ``xla/service/cpu/parallel_task_assignment.cc``). The threads then
meet at every step of the loop. A step of one to a few thousand run × point pairs is a
few microseconds of work, less than the meeting costs: on a 2-core Xeon, Adam on the
Gabor fit with its polynomial ``sin``, ``cos`` and ``exp`` ran a 1 × 1024 fit in
1155 µs split and 640 µs whole (``benchmarks/NOTES.md`` entries 20 and 21).

A least-squares loss is a sum over its points, so it can be written as a sum of
separate sums over consecutive slices of the batch
(:attr:`fitjax.LeastSquares.pieces`). Each slice is its own fusion, small enough not to
be split, and the loss is the same up to float32 rounding (the order of the sum).
:func:`default_pieces` asks XLA itself: it compiles the gradient of one step over the
runs stepped together and reads whether a fusion was split; if so, it tries 2, then 4
pieces, and keeps the first that XLA leaves whole. A loss that is not a
:class:`~fitjax.LeastSquares` (whose additivity fitjax cannot see) is left as it is.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import jax

from fitjax.numerics.fastmath import choose_math, platform_math, polynomial_math
from fitjax.problems.losses import LeastSquares

PyTree = Any
Loss = Callable[[PyTree, Any], jax.Array]

PIECES_FROM, PIECES_UP_TO = 1024, 4096
"""Run × point pairs a step where pieces are considered. Below 1024 the Gabor gradient is
not split; from about 16,000 the split pays (1.25× on two cores) and at 8192 pieces
gained 9% for twice the compile time (``benchmarks/NOTES.md`` entry 21). Read by
:func:`default_pieces` when ``fit`` meets a call signature first; ``PIECES_UP_TO = 0``
turns pieces off."""

MAX_PIECES = 4
"""The most pieces: each is a copy of the model in the compiled program, and with the
polynomial maths eight pieces took twice as long to compile as one."""

MIN_PIECE_POINTS = 128
"""The fewest points a piece holds: smaller pieces of many runs are split by XLA again
(100 runs × 7 points were, ``benchmarks/NOTES.md`` entry 21)."""

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


def split_by_xla(loss: Loss, one_params: PyTree, batch: Any, runs: int) -> bool:
    """Whether XLA's CPU compiler (the default backend) splits some fusion of one step's
    gradient of ``runs`` runs across threads (it marks one with ``outer_dimension_partitions``)."""
    grad = jax.jit(jax.vmap(jax.grad(choose_math(loss, "cpu")), in_axes=(0, None)))
    params = jax.tree.map(lambda s: jax.ShapeDtypeStruct((runs, *s.shape), s.dtype), one_params)
    return "outer_dimension_partitions" in (grad.lower(params, batch).compile().as_text() or "")


def default_pieces(loss: Loss, one_params: PyTree, batch: Any, runs: int, backend: str) -> int:
    """How many pieces the engine takes ``loss``'s sum of squares in, for ``runs`` runs
    stepped together over ``batch`` (arrays, or their shapes and dtypes) on ``backend``: 1
    unless XLA's CPU compiler would split a step of :data:`PIECES_FROM` to
    :data:`PIECES_UP_TO` run × point pairs; then the fewest of 2, 4, ... :data:`MAX_PIECES`
    (each of at least :data:`MIN_PIECE_POINTS` points) that it keeps whole, or 1 if none does.

    Deciding compiles one small program per number tried (0.1 s each on a 2-core Xeon,
    0.25–0.6 s in all), once per loss, shapes and runs (kept for the process); every
    other case returns at once.

    Example:
      >>> import jax, jax.numpy as jnp, fitjax
      >>> from fitjax.engine.pieces import default_pieces
      >>> one, data = jax.ShapeDtypeStruct((2,), jnp.float32), fitjax.datasets.gabor()
      >>> default_pieces(fitjax.least_squares(fitjax.Gabor(8.0)), one, data, 1, "cpu")  # 28 points
      1
    """
    least_squares = additive(loss)
    if backend != "cpu" or least_squares is None or least_squares.pieces != 1 or cores() < 2:
        return 1
    try:
        points = int(jax.numpy.shape(batch[1])[0])
    except (TypeError, IndexError):  # not an (x, y) batch of arrays
        return 1
    if not PIECES_FROM <= runs * points <= PIECES_UP_TO:
        return 1
    shapes = (_shapes(one_params), _shapes(batch), runs, points, MAX_PIECES, MIN_PIECE_POINTS)
    try:
        return _decided(loss, *shapes)
    except TypeError:  # an unhashable loss: decided anew
        return _decide(loss, *shapes)


def _shapes(tree: PyTree) -> tuple:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(jax.numpy.shape(a)), jax.numpy.result_type(a).name) for a in leaves)


def _structs(shapes: tuple) -> PyTree:
    treedef, leaves = shapes
    return jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in leaves])


def _decide(loss: Loss, params: tuple, batch: tuple, runs: int, points: int, most: int, least: int) -> int:
    one_params, structs = _structs(params), _structs(batch)
    pieces = 1
    try:
        while split_by_xla(with_pieces(loss, pieces), one_params, structs, runs):
            pieces *= 2
            if pieces > most or points < pieces * least:
                return 1
    except Exception:  # noqa: BLE001 (a choice of speed only: a loss the probe cannot compile stays whole)
        return 1
    return pieces


_decided = functools.lru_cache(maxsize=64)(_decide)
