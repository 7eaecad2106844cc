r"""The engine's entry points: :func:`fit` and :func:`sweep`.

:func:`fit` runs one optimizer from a batch of starting points: ``jax.vmap`` over the
runs, ``lax.scan`` over the steps, inside one ``jax.jit``. :func:`sweep` runs a grid of
hyperparameter values times a batch of starts through the same program. Everything
a run produces comes back as data in a :class:`FitResult`: final parameters and
loss, an optional history, and a per-run status.

A call goes through three stages, each a module: :mod:`~fitjax.engine.prepare` checks
every argument before anything is compiled and makes one
:class:`~fitjax.engine.prepare.Prepared` problem; :mod:`~fitjax.engine.program` runs it
(one run's loop is :mod:`~fitjax.engine.loop`); :mod:`~fitjax.engine.results` assembles
the :class:`FitResult`.

A run whose loss or parameters stop being finite is *diverged*: from that step on
its parameters and optimizer state stay at their last finite values and
``diverged_step`` records the step. Runs are independent under ``vmap``, so a
diverging run never changes another run's numbers.

The step loop tests for divergence once per span of about
:data:`~fitjax.engine.prepare.CHECK_EVERY` steps, not every step: a failed run goes back
to its span's start, and the span is replayed step by step after the loop (by a second
program, compiled and run only for a batch in which some run failed) to find the exact step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fitjax.engine.prepare import (
    Loss,
    Prepared,
    PyTree,
    check_grid,
    check_loss_and_optimizer,
    check_params0,
    check_swept,
    check_values,
    one_run,
    prepare,
)
from fitjax.engine.program import execute, other_backend, trace_count
from fitjax.engine.results import FitResult, History, SweepResult, as_sweep
from fitjax.optim.protocol import stepper

__all__ = ["FitResult", "History", "SweepResult", "fit", "run", "sweep", "trace_count"]


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
    keep_state: bool = False,
    jit: bool = True,
    unroll: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
    gather: bool = True,
    backend: Any = "xla",
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
      keep_state: return each run's final optimizer state as ``opt_state`` (None
        otherwise: a state the caller does not read is not copied out).
      jit: False runs the same program op by op (for debugging and tests).
      unroll: steps unrolled per iteration of the step loop (a speed knob). None: 2 on
        a GPU, 1 elsewhere (:func:`fitjax.engine.prepare.default_unroll`).
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
    problem = prepare(
        loss,
        optimizer,
        params0,
        data,
        steps=steps,
        key=key,
        batch_size=batch_size,
        shared_order=shared_order,
        record_every=record_every,
        record_params=record_params,
        hyperparams=hyperparams,
        unroll=unroll,
        keep_state=keep_state,
    )
    return run(problem, jit=jit, mesh=mesh, gather=gather, backend=backend)


def run(
    problem: Prepared,
    *,
    jit: bool = True,
    mesh: jax.sharding.Mesh | None = None,
    gather: bool = True,
    backend: Any = "xla",
) -> FitResult:
    """Run a prepared problem (:func:`fitjax.engine.prepare.prepare`): on ``backend``'s path
    when it takes the problem, else through the engine's compiled program."""
    if backend != "xla":
        if not problem.values_checked:  # the engine's program tests them; another path may not
            check_values(problem)
        result = other_backend(backend)(
            backend,
            problem.loss,
            problem.update,
            problem.params0,
            problem.data,
            plan=problem.plan,
            hp_shared=problem.hp_shared,
            hp_run=problem.hp_run,
            key=problem.key,
            jit=jit,
            mesh=mesh,
        )
        if result is not None:
            return result
    return execute(problem, jit=jit, mesh=mesh, gather=gather)


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
    values = check_grid(grid)
    n_runs = check_params0(params0)
    check_loss_and_optimizer(loss, optimizer)
    # checked as given (1e-46 is named so, not as its float32 rounding 0), then held as arrays
    check_swept(stepper(optimizer, params0)[0], one_run(params0), values)
    # the values on the host: a grid of any array type, on any device, beside starts on others
    host = tuple(v if isinstance(v, np.ndarray) else np.asarray(v) for v in values.values())
    held, per_run_values, tiled, run_ids = _grid_runs(host, params0)
    values = dict(zip(values, held, strict=True))
    per_run = dict(zip(values, per_run_values, strict=True))
    run_kwargs = {name: kwargs.pop(name) for name in ("jit", "mesh", "gather", "backend") if name in kwargs}
    problem = prepare(
        loss, optimizer, tiled, data, steps=steps, hyperparams=per_run, run_ids=run_ids, **kwargs
    )
    return as_sweep(run(problem, **run_kwargs), values, n_runs)


@jax.jit
def _grid_runs(values: tuple, params0: PyTree) -> tuple:
    """Every grid setting times every start, setting-major, made in one program (as
    separate operations, each would be a dispatch of its own): the grid's values as held,
    each hyperparameter's value per run, the starts tiled, and each run's start id."""
    n_runs = jax.tree.leaves(params0)[0].shape[0]
    mesh = jnp.meshgrid(*values, indexing="ij")
    n_settings = mesh[0].size
    per_run = tuple(jnp.repeat(m.ravel(), n_runs) for m in mesh)
    tiled = jax.tree.map(lambda a: jnp.tile(a, (n_settings,) + (1,) * (a.ndim - 1)), params0)
    run_ids = jnp.tile(jnp.arange(n_runs, dtype=jnp.uint32), n_settings)
    return values, per_run, tiled, run_ids
