r"""Basins of attraction: which minimum each start of a grid reaches.

:func:`basin_map` fits from every point of a grid of starts (:func:`fitjax.inits.grid`)
with :func:`fitjax.fit`, so any optimizer, hyperparameters, mini-batches and keys
work as they do there. Each start is then labelled by the minimum it reached
(:func:`label_minima`) and timed (:func:`convergence_step`):

* **Settled runs.** A run that has not reached a minimum by its last step (still
  crawling along a flat valley, or stopped on a saddle) would found a "minimum" of
  its own wherever it stopped. So each run's end point :math:`\phi_T` is tested with
  one Newton step: it is *settled* if the Hessian there has no negative curvature
  (curvatures below :math:`\sqrt{\epsilon}` of the largest count as flat) and the
  Newton step :math:`\lVert H^{-1} \nabla L(\phi_T) \rVert \le \text{tol}/2`, i.e.
  the minimum it is approaching lies within half the clustering tolerance. Other runs
  are labelled :data:`UNSETTLED` (−2). (``settle=False`` skips the test; models with
  more than 64 parameters skip it too, as it needs each run's Hessian.)
* **Labels.** Final parameters of the settled runs are clustered with a tolerance
  ``tol``: the run with the lowest final loss not yet labelled founds a new cluster
  and takes every unlabelled run whose final parameters lie within Euclidean
  distance ``tol`` of its own; this repeats until every run is labelled. Label 0 is
  therefore the lowest minimum reached, 1 the next, and so on. Diverged runs are
  labelled :data:`DIVERGED` (−1).
* **Convergence step.** With the loss recorded at steps :math:`s_0 < s_1 < \dots <
  s_{R-1}` and final loss :math:`L_T` (after the last step), a run converged at the
  first recorded step :math:`s_k` from which every recorded loss stays within
  tolerance of the final one: :math:`|L_{s_j} - L_T| \le \text{atol} + \text{rtol}\,|L_T|`
  for all :math:`j \ge k`. If even the last record is outside, the run settled after
  it and the step is ``steps``; diverged runs get −1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from fitjax import _checks
from fitjax.engine import FitResult, fit
from fitjax.problems import inits

PyTree = Any

DIVERGED = -1
"""The label (and convergence step) of a run that diverged."""

UNSETTLED = -2
"""The label of a run that had not settled at a minimum by its last step."""

_SETTLE_MAX_PARAMS = 64  # the settling test builds each run's Hessian: only for small models


class BasinMap(NamedTuple):
    """Where each start of a grid ended.

    Attributes:
      values0, values1: the grid's coordinates (``values0`` along rows).
      label: the minimum each start reached, shape ``(len(values0), len(values1))``;
        :data:`DIVERGED` for runs that diverged, :data:`UNSETTLED` for runs that had not
        settled at a minimum (see the module docstring).
      loss: each run's final loss (a diverged run's last finite loss), same shape.
      converged_step: the step at which each run converged (see the module docstring).
      minima: the final parameters of each label's lowest run, shape ``(K, d)``.
      minima_loss: the loss of each, shape ``(K,)``, ascending.
      result: the :class:`~fitjax.FitResult` of the runs, in :func:`fitjax.inits.grid` order.
    """

    values0: np.ndarray
    values1: np.ndarray
    label: np.ndarray
    loss: np.ndarray
    converged_step: np.ndarray
    minima: np.ndarray
    minima_loss: np.ndarray
    result: FitResult


def _flat_runs(params: PyTree) -> np.ndarray:
    leaves = jax.tree.leaves(params)
    n = np.shape(leaves[0])[0]
    return np.concatenate([np.reshape(np.asarray(a, dtype=np.float64), (n, -1)) for a in leaves], axis=1)


def label_minima(
    params: PyTree, loss: Any, diverged: Any = None, *, tol: float = 1e-2, unsettled: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label runs by the minimum they reached: clusters of final parameters within ``tol``.

    Args:
      params: final parameters, an array ``(n, d)`` or a pytree whose leaves have a
        leading run axis ``n``.
      loss: final losses, shape ``(n,)``; clusters are founded in order of loss.
      diverged: boolean ``(n,)``; these runs (and any with non-finite loss or
        parameters) get :data:`DIVERGED`.
      tol: Euclidean distance within which two runs share a minimum.
      unsettled: boolean ``(n,)``; these runs (unless diverged) get :data:`UNSETTLED`
        and neither found nor join a cluster.

    Returns:
      ``(labels (n,), minima (K, d), minima_loss (K,))``: the founder of each cluster
      is its lowest-loss run.

    Example:
      >>> import numpy as np, fitjax
      >>> params = np.array([[1.0, 0.0], [-1.0, 0.0], [1.001, 0.0], [9.0, 9.0]])
      >>> labels, minima, values = fitjax.label_minima(params, np.array([0.2, 0.1, 0.3, 0.0]),
      ...                                              np.array([False, False, False, True]))
      >>> labels.tolist(), minima.tolist()
      ([1, 0, 1, -1], [[-1.0, 0.0], [1.0, 0.0]])
    """
    _checks.positive("tol", tol)
    flat = _flat_runs(params)
    n = flat.shape[0]
    values = np.asarray(loss, dtype=np.float64).reshape(-1)
    if values.shape[0] != n:
        raise ValueError(f"loss must have one value per run ({n}), got shape {np.shape(loss)}")
    bad = ~np.isfinite(values) | ~np.all(np.isfinite(flat), axis=1)
    if diverged is not None:
        div = np.asarray(diverged, dtype=bool).reshape(-1)
        if div.shape[0] != n:
            raise ValueError(f"diverged must have one value per run ({n}), got shape {np.shape(diverged)}")
        bad |= div
    labels = np.full(n, DIVERGED, dtype=np.int64)
    open_ = ~bad
    if unsettled is not None:
        moving = np.asarray(unsettled, dtype=bool).reshape(-1)
        if moving.shape[0] != n:
            raise ValueError(f"unsettled must have one value per run ({n}), got shape {np.shape(unsettled)}")
        labels[open_ & moving] = UNSETTLED
        open_ &= ~moving
    founders: list[int] = []
    order = np.argsort(np.where(open_, values, np.inf), kind="stable")
    for i in order:
        if not open_[i]:
            continue
        idx = np.flatnonzero(open_)
        with np.errstate(over="ignore"):  # far-flung runs are simply not within tol
            members = idx[np.linalg.norm(flat[idx] - flat[i], axis=1) <= tol]
        labels[members] = len(founders)
        open_[members] = False
        founders.append(int(i))
    idx = np.asarray(founders, dtype=np.int64)
    return labels, flat[idx], values[idx]


def convergence_step(
    history_step: Any,
    history_loss: Any,
    final_loss: Any,
    diverged: Any,
    steps: int,
    *,
    rtol: float = 1e-3,
    atol: float = 1e-6,
) -> np.ndarray:
    r"""The first recorded step after which each run's loss stays within tolerance of its final value.

    Run ``r`` converged at ``history_step[k]`` for the smallest ``k`` with
    :math:`|L_{r,j} - L_{r,T}| \le \text{atol} + \text{rtol}\,|L_{r,T}|` for every
    ``j ≥ k``; ``steps`` if the last record is still outside; −1 if it diverged.

    Args:
      history_step: the recorded steps, shape ``(R,)`` (``FitResult.history.step``).
      history_loss: recorded losses, shape ``(..., R)`` (``FitResult.history.loss``).
      final_loss: final losses, shape ``(...)``.
      diverged: booleans, shape ``(...)``.
      steps: the number of steps run.

    Example:
      >>> import numpy as np, fitjax
      >>> fitjax.convergence_step(np.array([0, 10, 20, 30]), np.array([[5.0, 1.0, 1.0005, 1.0]]),
      ...                         np.array([1.0]), np.array([False]), 40).tolist()
      [10]
    """
    _checks.non_negative("rtol", rtol)
    _checks.non_negative("atol", atol)
    s = np.asarray(history_step)
    h = np.asarray(history_loss, dtype=np.float64)
    final = np.asarray(final_loss, dtype=np.float64)
    if h.shape != final.shape + s.shape:
        raise ValueError(
            "history_loss must have shape final_loss.shape + (len(history_step),) = "
            f"{final.shape + s.shape}, "
            f"got {h.shape}"
        )
    with np.errstate(invalid="ignore", over="ignore"):  # a non-finite record is never within
        within = np.abs(h - final[..., None]) <= atol + rtol * np.abs(final[..., None])
    stays = np.flip(np.logical_and.accumulate(np.flip(within, -1), axis=-1), -1)  # within from j on
    first = np.argmax(stays, axis=-1)
    out = np.where(stays.any(axis=-1), s[first] if s.size else steps, steps).astype(np.int64)
    return np.where(np.asarray(diverged, dtype=bool), DIVERGED, out)


@functools.lru_cache(maxsize=64)
def _newton_test(loss: Callable[[PyTree, Any], Any]) -> Callable:
    """Per run: (no negative curvature, length of the Newton step) at its end point."""

    def one(params: PyTree, data: Any) -> tuple[jax.Array, jax.Array]:
        flat, unravel = ravel_pytree(params)

        def f(v):
            return loss(unravel(v), data)

        g, h = jax.grad(f)(flat), jax.hessian(f)(flat)
        w, q = jnp.linalg.eigh(h)
        # Flat directions (|w| below √eps of the largest curvature: a network's symmetries,
        # a valley's floor) neither make a saddle nor an infinite step: the step along them
        # is the gradient over that floor, small only where the gradient there is.
        floor = jnp.sqrt(jnp.finfo(w.dtype).eps) * jnp.maximum(jnp.max(jnp.abs(w)), jnp.finfo(w.dtype).tiny)
        step = q @ ((q.T @ g) / jnp.maximum(w, floor))
        return jnp.all(w > -floor), jnp.linalg.norm(step)

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def settled(loss: Callable[[PyTree, Any], Any], params: PyTree, data: Any, *, tol: float) -> np.ndarray:
    r"""Which runs have settled at a minimum: no direction of negative curvature at the end
    point and a Newton step no longer than ``tol / 2``.

    Curvatures below :math:`\sqrt{\epsilon}` times the largest (a valley's flat floor, the
    symmetries of a network) count as flat: they make no saddle, and the step along them
    is the gradient there divided by that floor.

    Args:
      loss, data: as for :func:`fitjax.fit`.
      params: the runs' final parameters (a leading run axis).
      tol: the clustering tolerance of :func:`label_minima`.

    Returns:
      Booleans, one per run (a non-finite end point is not settled).

    Example:
      >>> import numpy as np, fitjax
      >>> f = lambda p, _: (p[0] ** 2 - 1) ** 2 + p[1] ** 2       # minima (±1, 0), saddle (0, 0)
      >>> ends = np.array([[1.0, 0.0], [0.0, 0.0], [0.9, 0.0], [0.999, 0.01]])
      >>> fitjax.settled(f, ends, None, tol=0.1).tolist()
      [True, False, False, True]
    """
    _checks.positive("tol", tol)
    try:
        test = _newton_test(loss)
    except TypeError:  # an unhashable loss
        test = _newton_test.__wrapped__(loss)
    pd, step = (np.asarray(a) for a in test(params, data))
    return pd & (step <= tol / 2)


def basin_map(
    loss: Callable[[PyTree, Any], Any],
    optimizer: optax.GradientTransformation,
    data: Any,
    values0: Any,
    values1: Any,
    *,
    steps: int,
    base: Any = None,
    index: tuple[int, int] = (0, 1),
    tol: float = 1e-2,
    record_every: int | None = None,
    rtol: float = 1e-3,
    atol: float = 1e-6,
    settle: bool = True,
    **fit_kwargs: Any,
) -> BasinMap:
    """Fit from every start of a grid and map which minimum each reaches, and when.

    Args:
      loss, optimizer, data, steps: as for :func:`fitjax.fit`.
      values0, values1, base, index: the grid of starts, as for :func:`fitjax.inits.grid`.
      tol: the clustering tolerance of :func:`label_minima`.
      record_every: how often the loss is recorded for :func:`convergence_step`
        (default ``max(1, steps // 100)``); a convergence step is a multiple of it.
      rtol, atol: the tolerances of :func:`convergence_step`.
      settle: label runs that have not settled at a minimum :data:`UNSETTLED` (see
        :func:`settled`; skipped for models of more than 64 parameters).
      **fit_kwargs: anything else :func:`fitjax.fit` takes (``key``, ``batch_size``,
        ``hyperparams``, ...).

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> loss = fitjax.least_squares(fitjax.Gabor(fitjax.GABOR_W_NOTEBOOK))
      >>> bm = fitjax.basin_map(loss, fitjax.gd(0.05), fitjax.datasets.gabor(), jnp.linspace(-10, 10, 8),
      ...                       jnp.linspace(2.5, 22.5, 8), steps=300, tol=0.1)
      >>> bm.label.shape, int(bm.minima.shape[0]) > 1   # several basins
      ((8, 8), True)
    """
    steps = _checks.positive_int("steps", steps)
    # the labelling's settings are checked here too, so that a bad one is refused before the fit runs
    _checks.positive("tol", tol)
    _checks.non_negative("rtol", rtol)
    _checks.non_negative("atol", atol)
    if record_every is None:
        record_every = max(1, steps // 100)
    starts = inits.grid(values0, values1, base=base, index=index)
    res = fit(loss, optimizer, starts, data, steps=steps, record_every=record_every, **fit_kwargs)
    shape = (np.size(values0), np.size(values1))
    diverged = np.asarray(res.diverged)
    unsettled = None
    n_params = sum(int(np.prod(np.shape(a)[1:])) for a in jax.tree.leaves(res.params))
    if settle and n_params <= _SETTLE_MAX_PARAMS:
        unsettled = ~settled(loss, res.params, data, tol=tol)
    labels, minima, minima_loss = label_minima(res.params, res.loss, diverged, tol=tol, unsettled=unsettled)
    assert res.history is not None  # fit records a history: record_every is set above
    conv = convergence_step(
        res.history.step, res.history.loss, res.loss, diverged, steps, rtol=rtol, atol=atol
    )
    return BasinMap(
        np.asarray(values0, dtype=float).ravel(),
        np.asarray(values1, dtype=float).ravel(),
        labels.reshape(shape),
        np.asarray(res.loss).reshape(shape),
        conv.reshape(shape),
        minima,
        minima_loss,
        res,
    )
