"""What one call of ``fitjax.fit`` costs beyond its compiled program, on this device.

Usage (from the repository root)::

    python -m benchmarks.call_profile                          # I = 1 (T = 200) on a CPU
    python -m benchmarks.call_profile --runs 10000 100000 --steps 1000   # on a GPU

For the Adam workload of ``benchmarks/contenders.py`` it times, interleaved (each round
calls every contender in turn, so that a slow stretch of the machine hits them all):

* ``expert``: the expert baseline's compiled program (2 outputs);
* ``expert + outputs``: the same program returning as many arrays as fitjax's program,
  the extra ones small: what the output buffers cost;
* ``program``: fitjax's own jitted program, the one ``fit`` runs (on a CPU, with
  :func:`fitjax.polynomial_math`; at 1024–4096 run × point pairs ``fit`` would also sum
  the loss in pieces, which this program does not), called directly with its arguments;
* ``program, status read``: the same, then its status array read back as ``fit`` reads
  it (:func:`fitjax.engine.waiting.wait`: polled after a short last run);
* ``program, status read asleep``: the same, waited for in ``block_until_ready``: what
  the poll saves;
* ``fit``: ``fitjax.fit`` end to end, as a user calls it;
* ``fit, every check run``: the same with every argument check made again (of
  ``params0``, ``data``, the loss, the optimizer, its schedules and the hyperparameters),
  as at the first call of a signature: what the checks that ``prepare`` keeps per
  signature save;
* with ``--record K``, ``fit, record every K``: what recording costs per call.

Every call ends in ``block_until_ready``. With ``--gap US`` every call of every contender
comes after ``US`` µs of the caller's own Python (a busy loop): a caller that does some work
between fits, after which the runtime's worker thread has gone to sleep (NOTES entry 23).
``--poll gpu`` polls for results on a GPU too (the default polls on the CPU only): the
rows ``program, status read`` and ``fit`` then show what polling gives there.
It prints the minimum, 10th percentile and median of each, in µs, and then a ``cProfile``
of ``fit``'s calls: the functions with the most time of their own. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import pstats
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import fitjax
from benchmarks import contenders as c
from benchmarks import fused_bench as fb
from benchmarks import step_profile as sp
from fitjax import internal
from fitjax.engine import waiting
from fitjax.numerics.fastmath import choose_math


def expert_with_outputs(steps: int, extra: int) -> Callable:
    """The expert's program (``contenders._scan_fit`` with ``optax.adam``) returning
    ``extra`` more small arrays: its final optimizer state, then zeros up to that count."""
    fit_one = functools.partial(c._scan_fit, c._adam_optax(), False, steps=steps, with_state=True)

    def one(phi, x, y):
        phi, loss, state = fit_one(phi, x, y)
        state = jax.tree.leaves(state)[:extra]
        return phi, loss, state, [jnp.zeros((), jnp.int32)] * (extra - len(state))

    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


def _with_status(program: Callable, args: tuple, last: waiting.LastRun | None) -> Any:
    """``program(*args)`` with its status (the last output) read back, as ``fit`` reads it
    (polled after a short ``last`` run), or waited for asleep (``last=None``)."""
    out = program(*args)
    if last is None:
        out[-1].block_until_ready()
    else:
        waiting.wait(out[-1], last, time.perf_counter())
    np.asarray(out[-1])
    return out


def _busy(seconds: float) -> None:
    """The caller's own work between calls: ``seconds`` of a busy loop."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def _returning(value: Any) -> Callable:
    """A function of any arguments that returns ``value``."""
    return lambda *args, **kwargs: value


def checking_every_call(call: Callable) -> Callable:
    """``call`` after ``prepare`` forgot the signatures it checked: every argument check
    runs, as at the first call of a signature (the program is compiled already)."""

    def checked():
        internal.forget_checked()
        return call()

    return checked


def interleaved(
    calls: dict[str, Callable], rounds: int, per_round: int, gap_us: float = 0.0
) -> dict[str, dict[str, float]]:
    """Each round calls every entry ``per_round`` times in turn, each call after ``gap_us``
    µs of busy work (not timed); µs per call."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(per_round):
                if gap_us:
                    _busy(gap_us * 1e-6)
                t0 = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - t0)
    return {
        name: {
            "min_us": 1e6 * float(np.min(t)),
            "p10_us": 1e6 * float(np.percentile(t, 10)),
            "median_us": 1e6 * float(np.median(t)),
        }
        for name, t in times.items()
    }


def profile(
    runs: int, points: int, steps: int, calls: int, top: int, record: int | None = None, gap_us: float = 0.0
) -> dict[str, Any]:
    work = c.make_workload(runs, points, steps)
    starts, x, y = jax.device_put((work.starts, work.x, work.y))
    data = (x, y)
    # the program fit runs: on a CPU the loss with fitjax's polynomial maths
    program, args = fb.xla_program(starts, data, steps, loss=choose_math(fb.LOSS, jax.default_backend()))
    n_outputs = len(jax.tree.leaves(program(*args)))
    optimizer = fb.adam()

    def fit():
        return fitjax.fit(fb.LOSS, optimizer, starts, data, steps=steps)

    expert = sp.expert_program(steps)
    wider = expert_with_outputs(steps, n_outputs - 2)
    entries = {
        "expert": functools.partial(expert, starts, x, y),
        f"expert + {n_outputs - 2} outputs": functools.partial(wider, starts, x, y),
        f"program ({n_outputs} outputs)": functools.partial(program, *args),
        "program, status read": functools.partial(_with_status, program, args, waiting.LastRun()),
        "program, status read asleep": functools.partial(_with_status, program, args, None),
        "fit": fit,
        "fit, every check run": checking_every_call(fit),
    }
    if record:
        entries[f"fit, record every {record}"] = functools.partial(
            fitjax.fit, fb.LOSS, optimizer, starts, data, steps=steps, record_every=record
        )
    blocking = {name: (lambda f=f: jax.block_until_ready(f())) for name, f in entries.items()}
    for call in blocking.values():  # compile and warm up
        call()
    rounds = 5
    times = interleaved(blocking, rounds, max(1, calls // rounds), gap_us)

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(max(1, calls // 2)):
        blocking["fit"]()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)

    gap = f", after {gap_us:g} µs of the caller's work" if gap_us else ""
    print(f"\nAdam I={runs} N={points} T={steps} on {jax.devices()[0].device_kind}{gap}; µs per call")
    print(f"{'call':<28} {'min':>10} {'p10':>10} {'median':>10}")
    for name, row in times.items():
        print(f"{name:<28} {row['min_us']:>10.1f} {row['p10_us']:>10.1f} {row['median_us']:>10.1f}")
    print(f"\ncProfile of {max(1, calls // 2)} calls of fit, by own time:")
    print(text.getvalue().strip())
    return {"times": times, "outputs": n_outputs, "profile": text.getvalue()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, nargs="+", default=[1])
    p.add_argument("--points", type=int, default=30)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--calls", type=int, default=2000, help="timed calls of each contender")
    p.add_argument("--top", type=int, default=15, help="functions shown from the profile")
    p.add_argument("--record", type=int, metavar="K", help="also time fit recording every K steps")
    p.add_argument("--gap", type=float, default=0.0, metavar="US", help="µs of busy work before each call")
    p.add_argument(
        "--poll",
        nargs="+",
        metavar="PLATFORM",
        help="poll for results on these platforms too (fitjax.engine.waiting.POLL_PLATFORMS), e.g. gpu",
    )
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    if args.poll:
        waiting.POLL_PLATFORMS = waiting.POLL_PLATFORMS | set(args.poll)
        print(f"polling for results on {sorted(waiting.POLL_PLATFORMS)}")
    settings = (args.points, args.steps, args.calls, args.top, args.record, args.gap)
    out = {str(r): profile(r, *settings) for r in args.runs}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(jax.devices()[0]), "jax": jax.__version__, "cases": out}, f, indent=2)


if __name__ == "__main__":
    main()
