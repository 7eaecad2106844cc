"""What stepping the runs in blocks gains on this device: ``fit`` with every run in one batch
against ``fit`` with the runs a block at a time, in the same process, calls interleaved.

Usage (from the repository root)::

    python -m benchmarks.run_blocks                                  # the sizes of NOTES entry 16
    python -m benchmarks.run_blocks --sizes 10000x1024 --points-per-block 262144 524288

For each size ``I x N`` (Adam on the Gabor fit of ``benchmarks/contenders.py``, float32,
T steps) it times ``fitjax.fit`` as a user calls it with
``fitjax.engine.prepare.RUN_BLOCK_POINTS`` set to each value given (run × point pairs per
block; ``0`` means one block of every run, the engine before blocks), after one untimed
call of each, and prints the best and median of ``--repeat`` interleaved calls, the
point-evaluations per second and the ratio of the one-batch time to each. It also checks
that the final parameters and losses are the same bit for bit as the one-batch run's.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import fitjax
from benchmarks import contenders as c
from fitjax import internal

ALL_AT_ONCE = 2**62


def _sizes(text: str) -> tuple[int, int]:
    runs, points = text.lower().split("x")
    return int(runs), int(points)


def _block(runs: int, points: int, value: int) -> str:
    """The runs per block that ``in_blocks`` takes for this setting, as text."""
    most = max(1, value // points) if value else runs
    if runs <= most:
        return "all runs"
    blocks = -(-runs // most)
    return f"{-(-runs // blocks)} runs"


def measure(runs: int, points: int, steps: int, settings: list[int], repeat: int) -> None:
    w = c.make_workload(runs, points, steps)
    starts, data = jax.device_put((w.starts, (w.x, w.y)))
    prep = internal.prepare_module
    default = prep.RUN_BLOCK_POINTS

    def call(value: int) -> fitjax.FitResult:
        prep.RUN_BLOCK_POINTS = value or ALL_AT_ONCE
        try:
            return jax.block_until_ready(
                fitjax.fit(c.FITJAX_LOSS, c.fitjax_adam(), starts, data, steps=steps)
            )
        finally:
            prep.RUN_BLOCK_POINTS = default

    first = {v: call(v) for v in settings}
    times: dict[int, list[float]] = {v: [] for v in settings}
    for _ in range(repeat):
        for v in settings:
            t0 = time.perf_counter()
            call(v)
            times[v].append(time.perf_counter() - t0)
    base = min(times[settings[0]])
    ref = first[settings[0]]
    for v in settings:
        t = sorted(times[v])
        block = _block(runs, points, v)
        same = np.array_equal(np.asarray(first[v].params), np.asarray(ref.params)) and np.array_equal(
            np.asarray(first[v].loss), np.asarray(ref.loss)
        )
        print(
            f"I={runs} N={points} T={steps} block {block:>10}: "
            f"best {t[0]:.4f} s, median {t[len(t) // 2]:.4f} s, "
            f"{runs * points * steps / t[0]:.3g} pt-evals/s, {base / t[0]:.2f}x one batch, "
            f"results {'identical' if same else 'DIFFER'}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", nargs="+", type=_sizes, default=[(10000, 1024), (10000, 256), (100000, 28)]
    )
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--points-per-block", nargs="+", type=int, default=[0, 262144, 524288, 1048576])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    default = internal.prepare_module.RUN_BLOCK_POINTS
    settings = [0] + [v for v in args.points_per_block if v != 0]  # one batch first: the base
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; RUN_BLOCK_POINTS default {default}")
    for runs, points in args.sizes:
        measure(runs, points, args.steps, settings, args.repeat)


if __name__ == "__main__":
    main()
