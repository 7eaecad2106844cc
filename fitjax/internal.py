"""What fitjax's tests and benchmarks use beyond the public API, under stable names.

Nothing here is user API: these are the engine's and the fused kernel's parts, named so
that a test or a benchmark never reaches into a module's private names. A name may
change with the module it comes from; the tests say when.

- the engine's stages: :func:`prepare` makes a :class:`Prepared` problem whose static
  part is a :class:`Plan`; :func:`program` and :func:`replay_program` are the cached
  batched programs (``.cache_clear()`` empties them; a checked signature keeps the
  program it ran until :func:`forget_checked`), :data:`TRACES` counts their traces;
  :func:`pack` and :func:`unpack` carry what only a replay reads out of a program as one array
  per word size;
- one run's helpers: :func:`all_finite`, :func:`run_one`, :data:`SLICE_MAX`;
- the argument checks: :func:`check_params0`, :func:`check_data`,
  :func:`hyperparams_split`, :func:`default_unroll`, :func:`unused_key`,
  :func:`forget_checked` (the signatures ``prepare`` has checked);
- the fused kernel: :func:`fused_launch`, :func:`fused_plan`, :func:`fused_program`,
  :func:`fused_compiled`, :func:`batch_table`;
- the figures' parts: :func:`draw_paths`, :func:`draw_surface`.

Modules whose attributes a test replaces (``monkeypatch.setattr``) are named here too, as
modules: :mod:`sampler`, :mod:`chunked` (``commit``), :mod:`integrity`, :mod:`prepare_module`
(``CHECK_EVERY``), :mod:`program_module` (``program``), :mod:`loop` and :mod:`checks`
(``on_host``).
"""

from __future__ import annotations

from fitjax import _checks as checks
from fitjax.analysis.plots import draw_paths, draw_surface
from fitjax.engine import chunked, integrity, loop, sampler
from fitjax.engine import prepare as prepare_module
from fitjax.engine import program as program_module
from fitjax.engine.loop import SLICE_MAX, all_finite, run_one
from fitjax.engine.prepare import (
    Plan,
    Prepared,
    check_data,
    check_params0,
    default_unroll,
    forget_checked,
    prepare,
    unused_key,
)
from fitjax.engine.prepare import split_hyperparams as hyperparams_split
from fitjax.engine.program import TRACES, pack, program, replay_program, unpack
from fitjax.kernels.fused import batch_table
from fitjax.kernels.fused import compiled as fused_compiled
from fitjax.kernels.fused import kernel_program as fused_program
from fitjax.kernels.fused import launch as fused_launch
from fitjax.kernels.fused import plan_kernel as fused_plan

__all__ = [
    "SLICE_MAX",
    "TRACES",
    "Plan",
    "Prepared",
    "all_finite",
    "batch_table",
    "check_data",
    "check_params0",
    "forget_checked",
    "checks",
    "chunked",
    "default_unroll",
    "draw_paths",
    "draw_surface",
    "fused_compiled",
    "fused_launch",
    "fused_plan",
    "fused_program",
    "hyperparams_split",
    "integrity",
    "loop",
    "pack",
    "prepare",
    "prepare_module",
    "program",
    "program_module",
    "replay_program",
    "run_one",
    "sampler",
    "unpack",
    "unused_key",
]
