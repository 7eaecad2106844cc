"""Where XLA's CPU compiler splits a step across threads, and what the split costs.

Usage (from the repository root)::

    python -m benchmarks.task_split                    # every core
    taskset -c 0 python -m benchmarks.task_split       # the same programs on one core

XLA's CPU compiler gives an elementwise fusion to several threads when its cost model
rates it at 2·10⁵ or more (flops, plus twice the transcendental functions, plus ten
times the bytes); the threads then meet once per step. The polynomial ``sin``, ``cos``
and ``exp`` of :func:`fitjax.polynomial_math` are some 20 flops each where the
platform's count as one transcendental, so a polynomial step is split from about 1024
run × point pairs on, where the platform's is not. ``fit`` then takes a least-squares
loss in pieces (:mod:`fitjax.engine.pieces`). For each size this prints how many
fusions of the whole-sum program are split, the pieces ``fit`` chose, and the 10th
percentile of ``fit`` (the default), ``fit`` of the same loss as a function fitjax cannot
see into (``whole``: one sum, as before pieces), ``fit`` with :func:`fitjax.platform_math`
and the expert's program, called in turn (Adam on the Gabor fit of
``benchmarks/contenders.py``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import functools
import re
from typing import Any

import jax

import fitjax
from benchmarks import call_profile as cp
from benchmarks import contenders as c
from benchmarks import fused_bench as fb
from benchmarks import step_profile as sp
from fitjax import internal

_SPLIT = re.compile(r'outer_dimension_partitions":\[("\d+",?)+\]')


def split_fusions(runs: int, points: int, steps: int) -> int:
    """How many fusions XLA splits across threads in ``fit``'s program at this size, the loss in one sum."""
    work = c.make_workload(runs, points, steps)
    starts, x, y = jax.device_put((work.starts, work.x, work.y))
    update, defaults = fb.stepper(fb.adam(), starts)
    shared, per_run = internal.hyperparams_split(update, defaults, starts, runs, None)
    _, jitted = internal.program(fitjax.polynomial_math(fb.LOSS), update, fb._plan(steps, points))
    run_ids = jax.numpy.arange(runs, dtype=jax.numpy.uint32)
    hlo = jitted.lower(starts, shared, per_run, jax.random.key(0), run_ids, (x, y)).compile().as_text()
    return sum(1 for line in hlo.splitlines() if _SPLIT.search(line))


def whole(params: Any, batch: Any) -> jax.Array:
    """The benchmark's loss as a plain function: ``fit`` cannot see it is a sum, so it is one sum."""
    return fb.LOSS(params, batch)


def measure(runs: int, points: int, steps: int, rounds: int) -> str:
    work = c.make_workload(runs, points, steps)
    starts, x, y = jax.device_put((work.starts, work.x, work.y))
    fit = functools.partial(fitjax.fit, optimizer=fb.adam(), params0=starts, data=(x, y), steps=steps)
    calls = {
        "fit": functools.partial(fit, fb.LOSS),
        "whole": functools.partial(fit, whole),
        "platform": functools.partial(fit, fitjax.platform_math(fb.LOSS)),
        "expert": functools.partial(sp.expert_program(steps), starts, x, y),
    }
    blocking = {name: (lambda f=f: jax.block_until_ready(f())) for name, f in calls.items()}
    for call in blocking.values():  # compile and warm up
        call()
    pieces = internal.prepare(fb.LOSS, fb.adam(), starts, (x, y), steps=steps).plan.loss_pieces
    times = cp.interleaved(blocking, rounds, 10)
    p10 = {name: t["p10_us"] for name, t in times.items()}
    return (
        f"{runs:>6} {points:>5} {runs * points:>8} {split_fusions(runs, points, steps):>6} {pieces:>6}"
        + "".join(f" {p10[name]:>10.0f}" for name in calls)
        + f" {p10['expert'] / p10['fit']:>8.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["1x1024", "2x1024", "4x1024", "8x1024", "16x1024", "32x1024", "100x28", "1000x28"],
        help="runs x points",
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; p10 of interleaved calls, µs")
    names = ("I", "N", "I x N", "split", "pieces", "fit", "whole", "platform", "expert", "vs expert")
    widths = (6, 5, 8, 6, 6, 10, 10, 10, 10, 9)
    print(" ".join(f"{n:>{w}}" for n, w in zip(names, widths, strict=True)))
    for size in args.sizes:
        runs, points = (int(v) for v in size.split("x"))
        print(measure(runs, points, args.steps, args.rounds), flush=True)


if __name__ == "__main__":
    main()
