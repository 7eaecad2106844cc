"""The engine: runs any optimizer from many starts, and over hyperparameter grids, in one program.

A call of :func:`~fitjax.fit` goes through stages, each a module:

- ``prepare``: every argument checked before anything is compiled, into one prepared problem;
- ``loop``: one run's steps, checked for divergence span by span, and the replay of a failed span;
- ``program``: the runs batched with ``jax.vmap`` in one cached ``jax.jit``;
- ``results``: :class:`~fitjax.FitResult`, :class:`~fitjax.History`, :class:`~fitjax.SweepResult`;
- ``core``: :func:`~fitjax.fit` and :func:`~fitjax.sweep`, which chain them.

Beside them: ``sampler`` (mini-batches and epochs from an explicit key), ``sharding`` (the
device mesh runs are split over), ``pieces`` (a small least-squares step kept on one CPU
thread), ``waiting`` (the host's wait for a program's status), ``chunked`` and
``integrity`` (sweeps written to disk chunk by chunk, verified when read).
"""

from fitjax.engine.core import fit, sweep
from fitjax.engine.program import register_backend, trace_count
from fitjax.engine.results import FitResult, History, SweepResult

__all__ = [
    "FitResult",
    "History",
    "SweepResult",
    "fit",
    "register_backend",
    "sweep",
    "trace_count",
]
