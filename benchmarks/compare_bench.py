"""Time a study of 7 test functions × 6 optimizers × 8 learning rates × starts × steps, three ways.

    python -m benchmarks.compare_bench                       # 1000 starts × 1000 steps
    python -m benchmarks.compare_bench --starts 100 --steps 100
    python -m benchmarks.compare_bench --tiny                # what tests/test_benchmarks.py runs

The same study (the same starts, learning rates, steps and loss recorded every
``--record-every`` steps) is run

* through :func:`fitjax.compare`: each (function, optimizer) pair is one compiled program,
  its 8 learning rates passed per run (``fit(..., hyperparams=...)``). Timed twice: the
  first run includes compiling, the second reuses the compiled programs.
* **hand-written**, as an expert writes it with optax: per (function, optimizer) one
  ``jax.jit`` of ``jax.vmap`` over starts of a ``lax.scan`` over steps, the learning rate
  an argument (so one compilation per pair, reused by its 8 settings), one call per
  setting. Compiling (``.lower().compile()``) is timed apart from running.
* as a **Python loop** over starts, one jitted optax step per call: on a sample (one
  learning rate per pair, cycling through the 8, and ``--loop-starts`` starts), the
  per-run time extrapolated to every run of the study. The first call of each pair's
  step (its compilation) is timed apart.

Every timed call ends with ``block_until_ready``; all three are measured in the same
process, one after the other, so their ratios share the machine's state. The optax
counterparts follow docs/how-to/optax.md: ``sgd(η)`` for gd, ``sgd(η(1 − β), momentum=β)``
for the lecture's momentum, ``sgd(η, momentum=0.9, nesterov=True)`` for
``nesterov_classical`` (and, with η(1 − β), for the lecture's look-ahead ``nesterov``,
the same work per step but not the same iterates), ``adam(η, b1=0, b2=0, eps=1e-20)``
for ``normalized`` and ``adam(η)``. The hand-written final losses are checked against
fitjax's for the pairs that are the same rule (all but ``nesterov``), on the runs that
neither diverged.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fitjax
from fitjax import problems
from fitjax.comparison.report import machine
from fitjax.comparison.study import seed_of

FUNCTIONS = ["rosenbrock", "himmelblau", "beale", "camel", "rastrigin", "ackley", "styblinski_tang"]
OPTIMIZERS = ["gd", "momentum", "nesterov", "nesterov_classical", "normalized", "adam"]

OPTAX: dict[str, Callable[[Any], optax.GradientTransformation]] = {
    "gd": lambda lr: optax.sgd(lr),
    "momentum": lambda lr: optax.sgd(lr * (1 - 0.9), momentum=0.9),
    "nesterov": lambda lr: optax.sgd(lr * (1 - 0.9), momentum=0.9, nesterov=True),
    "nesterov_classical": lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
    "normalized": lambda lr: optax.adam(lr, b1=0.0, b2=0.0, eps=1e-20),
    "adam": lambda lr: optax.adam(lr),
}
"""The optax transformation doing each fitjax optimizer's work, as a function of the learning rate."""

SAME_RULE = ("gd", "momentum", "nesterov_classical", "normalized", "adam")
"""The optimizers whose optax counterpart computes the same iterates (agreement is checked)."""


def _done(tree: Any) -> Any:
    return jax.block_until_ready(tree)


def run_fitjax(fns: list[str], opts: list[str], lrs: list[float], args: argparse.Namespace) -> dict:
    grids = {o: {"learning_rate": lrs} for o in opts}
    times, study = [], None
    for _ in range(2):
        t0 = time.perf_counter()
        study = fitjax.compare(
            fns, opts, grids, starts=args.starts, steps=args.steps, record_every=args.record_every, key=KEY
        )
        times.append(time.perf_counter() - t0)
    assert study is not None
    return {"study": study, "first": times[0], "second": times[1]}


def hand_written_program(loss: Callable, make: Callable, steps: int, record_every: int) -> Callable:
    """``program(x0, lr) -> (recorded losses (n, steps // record_every), final loss (n,))``."""

    def one(x: jax.Array, lr: jax.Array) -> tuple[jax.Array, jax.Array]:
        tx = make(lr)

        def step(carry: Any, _: Any) -> tuple[Any, jax.Array]:
            x, s = carry
            value, g = jax.value_and_grad(loss)(x, None)
            u, s = tx.update(g, s, x)
            return (optax.apply_updates(x, u), s), value

        def block(carry: Any, _: Any) -> tuple[Any, jax.Array]:
            carry, values = jax.lax.scan(step, carry, None, length=record_every)
            return carry, values[0]

        (x, _), recorded = jax.lax.scan(block, (x, tx.init(x)), None, length=steps // record_every)
        return recorded, loss(x, None)

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def run_hand_written(fns: list[str], opts: list[str], lrs: list[float], args: argparse.Namespace) -> dict:
    compile_s = run_s = 0.0
    finals: dict[tuple[str, str, float], np.ndarray] = {}
    for fn in fns:
        prob = problems.get(fn)
        x0 = _starts(prob, args.starts)
        for opt in opts:
            program = hand_written_program(prob.loss, OPTAX[opt], args.steps, args.record_every)
            t0 = time.perf_counter()
            compiled = program.lower(x0, jnp.float32(lrs[0])).compile()
            compile_s += time.perf_counter() - t0
            for lr in lrs:
                t0 = time.perf_counter()
                _, final = _done(compiled(x0, jnp.float32(lr)))
                run_s += time.perf_counter() - t0
                finals[(fn, opt, lr)] = np.asarray(final)
    return {"compile": compile_s, "run": run_s, "finals": finals}


def run_loop(fns: list[str], opts: list[str], lrs: list[float], args: argparse.Namespace) -> dict:
    """A Python loop over a sample of starts, one jitted optax step per call."""
    compile_s = run_s = 0.0
    runs = 0
    for i, (fn, opt) in enumerate((f, o) for f in fns for o in opts):
        prob, lr = problems.get(fn), jnp.float32(lrs[i % len(lrs)])
        make = OPTAX[opt]

        @jax.jit
        def step(
            x: jax.Array, s: Any, lr: jax.Array, make: Callable = make, loss: Callable = prob.loss
        ) -> Any:
            value, g = jax.value_and_grad(loss)(x, None)
            u, s = make(lr).update(g, s, x)
            return optax.apply_updates(x, u), s, value

        x0 = _starts(prob, args.starts)[: args.loop_starts]
        t0 = time.perf_counter()
        _done(step(x0[0], make(lr).init(x0[0]), lr))  # compiles
        compile_s += time.perf_counter() - t0
        for x in x0:
            t0 = time.perf_counter()
            s, recorded = make(lr).init(x), []
            for k in range(args.steps):
                x, s, value = step(x, s, lr)
                if k % args.record_every == 0:
                    recorded.append(value)
            _done((x, recorded))
            run_s += time.perf_counter() - t0
            runs += 1
    return {"compile": compile_s, "run": run_s, "sample_runs": runs, "per_run": run_s / runs}


def _starts(prob: problems.Problem, n: int) -> jax.Array:
    """The study's starting points of ``prob`` (as :func:`fitjax.compare` draws them)."""
    return prob.starts(jax.random.fold_in(KEY, seed_of("starts", prob.name)), n)


KEY = jax.random.key(0)


def agreement(study: Any, finals: dict, rtol: float = 1e-3, atol: float = 1e-5) -> dict:
    """fitjax's final losses against the hand-written ones, for the optimizers of the same rule:
    the share within ``atol + rtol·|theirs|`` in all, and per (function, optimizer) where under 99%."""
    counts: dict[str, list[int]] = {}
    for c in study.cells:
        if c.optimizer not in SAME_RULE:
            continue
        theirs = finals[(c.problem, c.optimizer, c.setting["learning_rate"])]
        ok = (c.diverged_step < 0) & np.isfinite(theirs) & np.isfinite(c.final)
        diff = np.abs(c.final[ok] - theirs[ok])
        n = counts.setdefault(f"{c.problem} {c.optimizer}", [0, 0])
        n[0] += int(np.sum(diff <= atol + rtol * np.abs(theirs[ok])))
        n[1] += int(ok.sum())
    within, total = (sum(n[i] for n in counts.values()) for i in (0, 1))
    return {
        "runs_compared": total,
        "frac_within": within / max(total, 1),
        "rtol": rtol,
        "atol": atol,
        "pairs_under_99_percent": {k: round(w / t, 3) for k, (w, t) in counts.items() if t and w < 0.99 * t},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--starts", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--record-every", type=int, default=10)
    ap.add_argument("--loop-starts", type=int, default=2, help="starts per pair timed in the Python loop")
    ap.add_argument("--tiny", action="store_true", help="2 functions x 2 optimizers x 2 rates, 8 starts")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    fns, opts, lrs = FUNCTIONS, OPTIMIZERS, np.logspace(-4, 0, 8).tolist()
    if args.tiny or os.environ.get("FITJAX_BENCH_TINY") == "1":
        fns, opts, lrs = fns[:2], ["gd", "adam"], [1e-3, 1e-2]
        args.starts, args.steps, args.record_every, args.loop_starts = 8, 20, 2, 1
    runs = len(fns) * len(opts) * len(lrs) * args.starts
    fj = run_fitjax(fns, opts, lrs, args)
    hand = run_hand_written(fns, opts, lrs, args)
    loop = run_loop(fns, opts, lrs, args)
    loop_study = loop["per_run"] * runs
    result = {
        "machine": machine(),
        "study": f"{len(fns)} functions x {len(opts)} optimizers x {len(lrs)} learning rates x "
        f"{args.starts} starts x {args.steps} steps = {runs} runs, loss recorded every {args.record_every}",
        "fitjax_seconds_with_compiling": round(fj["first"], 3),
        "fitjax_seconds_compiled": round(fj["second"], 3),
        "fitjax_compiling_seconds": round(fj["first"] - fj["second"], 3),
        "hand_written_compile_seconds": round(hand["compile"], 3),
        "hand_written_run_seconds": round(hand["run"], 3),
        "loop_sample": f"{loop['sample_runs']} runs: one learning rate per (function, optimizer), cycling "
        f"through the {len(lrs)}, {args.loop_starts} start(s) each, {args.steps} steps",
        "loop_sample_run_seconds": round(loop["run"], 3),
        "loop_compile_seconds": round(loop["compile"], 3),
        "loop_seconds_per_run": loop["per_run"],
        "loop_run_seconds_extrapolated": round(loop_study, 1),
        "ratio_fitjax_over_hand_written_run": fj["second"] / hand["run"],
        "ratio_fitjax_over_hand_written_with_compiling": fj["first"] / (hand["compile"] + hand["run"]),
        "ratio_fitjax_over_loop_run": fj["second"] / loop_study,
        "ratio_fitjax_over_loop_with_compiling": fj["first"] / (loop_study + loop["compile"]),
        "agreement_with_hand_written": agreement(fj["study"], hand["finals"]),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
