"""The engine: runs any optimizer from many starts, and over hyperparameter grids, in one program.

- ``core``: :func:`~fitjax.fit` and :func:`~fitjax.sweep`, their checks, loop and results;
- ``sampler``: mini-batches and epochs drawn from an explicit key;
- ``sharding``: the device mesh runs are split over;
- ``chunked`` and ``integrity``: sweeps written to disk chunk by chunk, verified when read.
"""

from fitjax.engine.core import FitResult, History, SweepResult, fit, sweep, trace_count

__all__ = ["FitResult", "History", "SweepResult", "fit", "sweep", "trace_count"]
