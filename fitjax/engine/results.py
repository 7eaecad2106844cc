r"""What a fit returns: every run's outcome as data, and its assembly from a program's arrays.

:class:`FitResult` holds final parameters and loss, an optional :class:`History` and a
per-run status (``diverged_step``); :class:`SweepResult` is the same with the grid's
axes in front.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fitjax.engine.loop import record_steps
from fitjax.engine.prepare import Plan, PyTree


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
      opt_state: each run's final optimizer state, with ``fit(..., keep_state=True)``;
        else None.
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


def assemble(out: tuple, plan: Plan) -> FitResult:
    """The :class:`FitResult` of a program's ``(params, loss, diverged_step, history, state)``,
    the history given as its recorded arrays (or None)."""
    params, final_loss, diverged_step, hist, state = out
    history = None
    if hist is not None:
        assert plan.record_every is not None  # the programs record a history only with record_every
        history = History(record_steps(plan.steps, plan.record_every), *hist)
    return FitResult(params, final_loss, diverged_step, history, state, plan.steps)


def as_sweep(res: FitResult, grid: Mapping[str, jax.Array], n_starts: int) -> SweepResult:
    """A fit of every grid setting times ``n_starts`` starts (setting-major), with the run
    axis unflattened to ``(len(v) for v in grid.values()) + (n_starts,)``."""
    lead = tuple(v.shape[0] for v in grid.values()) + (n_starts,)
    history = res.history
    per_run = (res.params, res.loss, res.diverged_step, None if history is None else tuple(history[1:]))
    params, loss, diverged_step, recorded, opt_state = _unflattened(per_run + (res.opt_state,), lead)
    if history is not None:
        history = History(history.step, *recorded)
    return SweepResult(grid, FitResult(params, loss, diverged_step, history, opt_state, res.steps))


@functools.partial(jax.jit, static_argnums=1)
def _unflattened(tree: Any, lead: tuple[int, ...]) -> Any:
    """Each array of ``tree`` with its run axis unflattened to ``lead``, in one program (a
    reshape each would be a dispatch of its own)."""
    return jax.tree.map(lambda a: jnp.reshape(a, lead + a.shape[1:]), tree)
