"""The fused path against the XLA path and the expert optax baseline, with accuracy.

Usage (from the repository root)::

    python -m benchmarks.fused_bench --runs 1000000 --points 28 --steps 1000
    python -m benchmarks.fused_bench                      # without a GPU: correctness only

The workload is the contenders' (``benchmarks/contenders.py``): the Gabor model
(w = 8) fitted by Adam (0.05, 0.9, 0.999, 1e-8) from ``runs`` uniform starts to
``points`` synthetic points for ``steps`` steps, float32.

On a GPU it prints, in one run:

* time: the compile (lower + compile) apart from the run, each run ended by
  ``block_until_ready``, best of ``--repeat`` after a warm-up, for the expert baseline
  (optax + vmap + scan in one jit), fitjax's XLA path and the fused kernel in each
  precision mode (the block sizes and warp counts of ``--configs`` are tried for each
  mode and the fastest is kept), plus
  ``fitjax.fit(..., backend=...)`` end to end;
* the ratio of each to the expert baseline measured in the same run;
* accuracy against float64 (fitjax's XLA path with x64 on ``--ref-runs`` runs): the
  loss and gradient norm at the starts (the functions' own error, no optimisation in
  between) and the final loss after all steps (where a nonconvex fit can amplify any
  rounding, so the float32 XLA path's figures are printed as the yardstick).

``--dry-run`` runs that GPU report without a GPU (interpret mode, its times mean
nothing), to check the script itself on small sizes.

Without a GPU the kernel runs in Pallas interpret mode, which says nothing about speed:
the script then checks correctness only, on at most ``--cpu-runs`` runs and
``--cpu-steps`` steps, and the fast mode there uses XLA's precise functions (only the
plumbing is checked).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import fitjax
from benchmarks import contenders as c
from fitjax import internal
from fitjax.kernels import fused
from fitjax.optim.protocol import stepper

LOSS = fitjax.least_squares(fitjax.Gabor(8.0))
PRECISIONS = ("platform", "full", "fast")


def adam() -> Any:
    return fitjax.adam(c.ADAM.lr, c.ADAM.b1, c.ADAM.b2, c.ADAM.eps)


# ----------------------------------------------------------------------------- programs


def _plan(steps: int, n: int, record_every: int | None = None, unroll: int | None = None) -> internal.Plan:
    return internal.Plan(
        steps=steps,
        record_every=record_every,
        record_params=False,
        batch_size=None,
        n_data=n,
        shared_order=False,
        extra_args=False,
        unroll=internal.default_unroll() if unroll is None else unroll,
        check_every=internal.prepare_module.CHECK_EVERY,
    )


def xla_program(
    starts, data, steps: int, record_every: int | None = None, unroll: int | None = None, loss: Any = LOSS
) -> tuple[Callable, tuple]:
    """fitjax's XLA path as a jitted function and its arguments (``unroll``: fit's default),
    for ``loss`` as given (the platform's functions for the default: ``fit`` would take
    :func:`fitjax.polynomial_math` of it on a CPU)."""
    update, defaults = stepper(adam(), starts)
    shared, per_run = internal.hyperparams_split(update, defaults, starts, starts.shape[0], None)
    plan = _plan(steps, data[0].shape[0], record_every, unroll)
    _, jitted = internal.program(loss, update, plan)
    run_ids = jnp.arange(starts.shape[0], dtype=jnp.uint32)
    return jitted, (starts, shared, per_run, jax.random.key(0), run_ids, data)


def fused_program(starts, data, steps: int, options: fused.Fused, record_every: int | None = None):
    """The fused kernel as a jitted function and its arguments."""
    update, defaults = stepper(adam(), starts)
    shared, per_run = internal.hyperparams_split(update, defaults, starts, starts.shape[0], None)
    plan = _plan(steps, data[0].shape[0], record_every)
    kernel = internal.fused_plan(LOSS, update, starts, data, plan, shared, per_run, options, True, None)
    return internal.fused_compiled(kernel), (starts, shared, per_run, jax.random.key(0), data)


def _fused_at(starts, data, options: fused.Fused, steps: int, record_every: int | None):
    return fused_program(starts, data, steps, options, record_every)


def timed(jitted: Callable, args: tuple, repeat: int) -> dict[str, Any]:
    """Compile apart from run; best of ``repeat`` runs after a warm-up."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    out = jax.block_until_ready(compiled(*args))
    runs = []
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "run_s": min(runs), "run_times": runs, "out": out}


def timed_fit(starts, data, steps: int, backend: Any, repeat: int) -> dict[str, Any]:
    """``fitjax.fit`` end to end (argument checks included); the first call compiles."""

    def call():
        return jax.block_until_ready(fitjax.fit(LOSS, adam(), starts, data, steps=steps, backend=backend))

    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        call()
        runs.append(time.perf_counter() - t0)
    return {"first_call_s": first, "run_s": min(runs), "run_times": runs}


# ----------------------------------------------------------------------------- accuracy


def rel_error(values: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    ref = np.asarray(ref, np.float64)
    err = np.abs(np.asarray(values, np.float64) - ref) / np.maximum(np.abs(ref), 1e-12)
    err = np.where(np.isfinite(ref), err, 0.0)
    return {
        "max": float(err.max()),
        "p99": float(np.percentile(err, 99)),
        "median": float(np.median(err)),
        "within_1e-3": float(np.mean(err <= 1e-3)),
    }


def at_starts(result) -> tuple[np.ndarray, np.ndarray]:
    """Loss and gradient norm at the starts (the first history entry)."""
    return np.asarray(result[3][0][:, 0]), np.asarray(result[3][1][:, 0])


def accuracy(starts, data, steps: int, options: dict[str, fused.Fused], ref_runs: int) -> dict[str, Any]:
    """Errors against float64, on the first ``ref_runs`` runs, for each float32 path."""
    sub = starts[:ref_runs]
    with jax.enable_x64(True):
        data64 = tuple(jnp.asarray(np.asarray(a), jnp.float64) for a in data)
        sub64 = jnp.asarray(np.asarray(sub), jnp.float64)
        jitted, args = xla_program(sub64, data64, 1, 1)
        loss0_64, gnorm0_64 = at_starts(jitted(*args))
        jitted, args = xla_program(sub64, data64, steps)
        final64 = np.asarray(jitted(*args)[1])
    paths: dict[str, Callable[[int, int | None], tuple]] = {
        "xla_f32": functools.partial(xla_program, sub, data)
    }
    for name, o in options.items():
        paths[f"fused_{name}"] = functools.partial(_fused_at, sub, data, o)
    out = {}
    for name, build in paths.items():
        try:
            jitted, args = build(1, 1)
            loss0, gnorm0 = at_starts(jitted(*args))
            jitted, args = build(steps, None)
            final = np.asarray(jitted(*args)[1])
        except Exception as err:  # noqa: BLE001 - reported, the other paths still run
            out[name] = {"error": f"{type(err).__name__}: {err}".splitlines()[0]}
            continue
        out[name] = {
            "loss_at_starts": rel_error(loss0, loss0_64),
            "grad_norm_at_starts": rel_error(gnorm0, gnorm0_64),
            "final_loss": rel_error(final, final64),
        }
    return out


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1_000_000)
    p.add_argument("--points", type=int, default=28)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3, help="timed runs per contender (best kept)")
    p.add_argument(
        "--configs",
        default="32x4,64x4,128x4,64x8",
        help="block_runs x num_warps tried for each precision mode (the fastest is kept)",
    )
    p.add_argument("--ref-runs", type=int, default=100_000, help="runs compared with float64")
    p.add_argument("--cpu-runs", type=int, default=64, help="runs checked without a GPU")
    p.add_argument("--cpu-steps", type=int, default=200, help="steps checked without a GPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--dry-run", action="store_true", help="the GPU report in interpret mode (no GPU needed)")
    return p.parse_args(argv)


def _configs(text: str) -> list[tuple[int, int]]:
    """``"64x4,128x8"`` -> ``[(64, 4), (128, 8)]``."""
    return [tuple(int(v) for v in item.split("x")) for item in text.split(",") if item]


def _print_accuracy(acc: dict[str, Any]) -> None:
    print("\naccuracy vs float64 (relative error; max / p99 / median / fraction within 1e-3)")
    for name, row in acc.items():
        if "error" in row:
            print(f"  {name:<12} FAILED: {row['error']}")
            continue
        for what, s in row.items():
            print(
                f"  {name:<12} {what:<20} {s['max']:.2e} / {s['p99']:.2e} / {s['median']:.2e} / "
                f"{s['within_1e-3']:.4f}"
            )


def check_only(args: argparse.Namespace) -> dict[str, Any]:
    """Without a GPU: the fused kernel (interpret mode) against the XLA path and float64."""
    runs, steps = min(args.runs, args.cpu_runs), min(args.steps, args.cpu_steps)
    work = c.make_workload(runs, args.points, steps, seed=args.seed)
    starts, data = jnp.asarray(work.starts), (jnp.asarray(work.x), jnp.asarray(work.y))
    print(
        f"no GPU ({jax.default_backend()}): correctness only, interpret mode, "
        f"I={runs} N={args.points} T={steps}"
    )
    jitted, xargs = xla_program(starts, data, steps)
    xla = jax.device_get(jitted(*xargs))
    out: dict[str, Any] = {"runs": runs, "points": args.points, "steps": steps}
    params = {}
    for precision in PRECISIONS:
        jitted, fargs = fused_program(starts, data, steps, fused.Fused(precision=precision, interpret=True))
        got = jax.device_get(jitted(*fargs))
        params[precision] = got[0]
        diff = {
            "params_max_abs": float(np.max(np.abs(got[0] - xla[0]))),
            "loss": rel_error(got[1], xla[1]),
            "same_divergence": bool(np.array_equal(got[2], xla[2])),
        }
        out[f"fused_{precision}_vs_xla"] = diff
        print(
            f"  fused {precision:<8} vs XLA path: max |Δparams| {diff['params_max_abs']:.2e}, "
            f"loss rel max {diff['loss']['max']:.2e} median {diff['loss']['median']:.2e}, "
            f"same divergence flags: {diff['same_divergence']}"
        )
    out["fast_vs_full_params_max_abs"] = float(np.max(np.abs(params["fast"] - params["platform"])))
    print(
        f"  fast vs platform: max |Δparams| {out['fast_vs_full_params_max_abs']:.2e} "
        "(interpret mode: the fast formulas with precise functions; "
        "the GPU's approximate instructions are not exercised)"
    )
    options = {p: fused.Fused(precision=p, interpret=True) for p in PRECISIONS}
    out["accuracy"] = accuracy(starts, data, steps, options, runs)
    _print_accuracy(out["accuracy"])
    return out


def benchmark(args: argparse.Namespace, interpret: bool = False) -> dict[str, Any]:
    """On a GPU: times, ratios to the expert baseline, accuracy."""
    work = c.make_workload(args.runs, args.points, args.steps, seed=args.seed)
    starts, data = jnp.asarray(work.starts), (jnp.asarray(work.x), jnp.asarray(work.y))
    floor = c.floor_seconds(args.runs, args.points, args.steps)
    print(f"{jax.devices()[0]}  jax {jax.__version__}  I={args.runs} N={args.points} T={args.steps}")
    print(f"compute floor (70 flop/pt @ 50 TFLOP/s): {floor:.4f} s")
    if interpret:
        print("DRY RUN: the fused kernel runs in interpret mode; its times say nothing about a GPU")
    rows: dict[str, dict[str, Any]] = {}

    expert = c.expert_optax(work.starts, work.x, work.y, args.steps, repeat=args.repeat)
    rows["expert_optax"] = {"compile_s": expert.compile_s, "run_s": expert.run_s, "losses": expert.losses}

    def attempt(name: str, build: Callable[[], tuple[Callable, tuple]]) -> None:
        try:
            row = timed(*build(), args.repeat)
            row["losses"] = np.asarray(row.pop("out")[1])
        except Exception as err:  # noqa: BLE001 - a kernel that fails to build is reported, not fatal
            traceback.print_exc(file=sys.stderr)
            row = {"error": f"{type(err).__name__}: {err}".splitlines()[0]}
        rows[name] = row

    attempt("fitjax_xla", lambda: xla_program(starts, data, args.steps))
    bests: dict[str, fused.Fused] = {}
    for precision in PRECISIONS:
        for br, warps in _configs(args.configs):
            options = fused.Fused(precision, block_runs=br, num_warps=warps, interpret=interpret)
            name = _label(options)
            attempt(name, lambda o=options: fused_program(starts, data, args.steps, o))
            best = bests.get(precision)
            if "run_s" in rows[name] and (best is None or rows[name]["run_s"] < rows[_label(best)]["run_s"]):
                bests[precision] = options
    best = bests.get("full")
    for label, backend in (("fit(backend='xla')", "xla"), ("fit(backend=best fused)", best)):
        if backend is None:
            continue
        try:
            rows[label] = timed_fit(starts, data, args.steps, backend, args.repeat)
        except Exception as err:  # noqa: BLE001 - reported, not fatal
            rows[label] = {"error": f"{type(err).__name__}: {err}".splitlines()[0]}

    ref = rows["expert_optax"]
    print(
        f"\n{'path':<30} {'compile s':>10} {'run s':>9} {'vs expert':>10} {'x floor':>8} "
        f"{'loss vs expert (max rel)':>25}"
    )
    for name, row in rows.items():
        if "error" in row:
            print(f"{name:<30} FAILED: {row['error']}")
            continue
        compile_s = row.get("compile_s", row.get("first_call_s"))
        agree = rel_error(row["losses"], ref["losses"])["max"] if "losses" in row else float("nan")
        print(
            f"{name:<30} {compile_s:>10.3f} {row['run_s']:>9.4f} {ref['run_s'] / row['run_s']:>10.2f} "
            f"{row['run_s'] / floor:>8.2f} {agree:>25.2e}"
        )
    print("(vs expert > 1: faster than the expert baseline; fit() rows: compile column is the first call)")

    acc = accuracy(starts, data, args.steps, bests, args.ref_runs)
    _print_accuracy(acc)
    for row in rows.values():
        row.pop("losses", None)
    return {
        "runs": args.runs,
        "points": args.points,
        "steps": args.steps,
        "floor_s": floor,
        "rows": rows,
        "accuracy": acc,
    }


def _label(options: fused.Fused) -> str:
    return f"fused_{options.precision}[b={options.block_runs},w={options.num_warps}]"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    on_gpu = jax.default_backend() == "gpu"
    result = benchmark(args, interpret=not on_gpu) if on_gpu or args.dry_run else check_only(args)
    result["device"] = str(jax.devices()[0])
    result["jax"] = jax.__version__
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=float)


if __name__ == "__main__":
    main()
