"""Time a study of 7 test functions × 6 optimizers × 8 learning rates × starts × steps.

    python -m benchmarks.compare_bench                       # 1000 starts × 1000 steps
    python -m benchmarks.compare_bench --starts 100 --steps 100

Each (function, optimizer) pair is one compiled program (the 8 learning rates go through
``fit(..., hyperparams=...)``); the time printed is the whole study, compilation included,
and the time without the first compilation of each pair (a second run of the same study).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

import fitjax
from fitjax.comparison.report import machine

FUNCTIONS = ["rosenbrock", "himmelblau", "beale", "camel", "rastrigin", "ackley", "styblinski_tang"]
OPTIMIZERS = ["gd", "momentum", "nesterov", "nesterov_classical", "normalized", "adam"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--record-every", type=int, default=10)
    args = ap.parse_args()
    lrs = np.logspace(-4, 0, 8).tolist()
    grids = {o: {"learning_rate": lrs} for o in OPTIMIZERS}
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        study = fitjax.compare(
            FUNCTIONS,
            OPTIMIZERS,
            grids,
            starts=args.starts,
            steps=args.steps,
            record_every=args.record_every,
            key=jax.random.key(0),
        )
        times.append(time.perf_counter() - t0)
    best = {}
    for c in study.cells:
        ref = study.reference(c.problem)[0]
        gap = float(np.nanmin(c.final) - ref)
        best[c.problem] = min(best.get(c.problem, np.inf), gap / max(1.0, abs(ref)))
    runs = len(FUNCTIONS) * len(OPTIMIZERS) * len(lrs) * args.starts
    print(
        json.dumps(
            {
                "machine": machine(),
                "study": f"{len(FUNCTIONS)} functions x {len(OPTIMIZERS)} optimizers x "
                f"{len(lrs)} learning rates x {args.starts} starts x {args.steps} steps = {runs} runs",
                "seconds_first_run_with_compilation": round(times[0], 2),
                "seconds_second_run": round(times[1], 2),
                "best_relative_gap_per_function": best,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
