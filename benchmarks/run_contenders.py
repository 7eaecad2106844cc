"""Run the benchmark suite: fitjax against the alternatives, checked for agreement, tabulated.

Usage (from the repository root)::

    python -m benchmarks.run_contenders --quick --json quick.json --markdown docs/benchmarks.md
    python -m benchmarks.run_contenders --json full.json --markdown docs/benchmarks.md
    python -m benchmarks.run_contenders --runs 10000 --points 1024 --suites adam

Suites (``--suites``; all but ``chunked`` by default, ``chunked`` too on a GPU):

* ``adam``: the contenders of ``contenders.py`` (the expert optax baseline, fitjax
  with and without a history, PyTorch, NumPy, a Python loop) on every ``(I, N)`` case;
* ``optimizers``: fitjax against its optax equivalent for GD, momentum, Armijo
  backtracking and the lecture's bracketing line search (``optimizer_pairs.py``);
* ``landscape``: ``fitjax.loss_grid`` against a plain ``jax.jit(jax.vmap(loss))``
  (``landscapes.py``);
* ``chunked``: ``fitjax.fit_chunked`` over ``--chunked-runs`` starts, streamed to disk.

Every case is generated with a fixed seed, so all contenders start from the same
points. Each contender's final losses (or grid values) are compared with those of
the row it is timed against, from the same starts; Adam on a non-convex loss can
amplify float32 rounding, so the agreement is reported (maximum and median relative
difference, fraction of runs within ``--rtol``), not asserted. Times are the best of
``--repeat`` calls after a warm-up (more calls for short runs, and then their 10th
percentile: ``contenders.best``), compile time apart; process CPU time is reported
next to wall time, and ratios to the reference use both (on a shared machine CPU
time is the steadier). The targets are printed as PASS/FAIL lines at the end.

``--quick`` finishes in under two minutes on two CPU cores. ``--tiny`` shrinks every
size so that the whole suite (``chunked`` included) runs in seconds: it checks the
script, not the speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import jax
import numpy as np

import fitjax
from benchmarks import contenders as c
from benchmarks import landscapes, memory, optimizer_pairs, report

REFERENCE = "expert_optax"
ON_GPU = jax.default_backend() == "gpu"
SUITES = ("adam", "optimizers", "landscape", "chunked")

FULL_RUNS = (1, 100, 10_000, 100_000) + ((1_000_000,) if ON_GPU else ())
FULL_POINTS = (30, 1024)
FULL_OPTIMIZER_RUNS = (10_000,)
GRIDS = (1024, 4096)
SUBSET_ELEMENTS = 2**25 if ON_GPU else 2**20

QUICK_CASES = ((1, 30), (100, 1024), (10_000, 30))
"""(runs, points) in quick mode: one latency-bound, one per-point-heavy and one
many-starts case."""
QUICK_STEPS = 200
QUICK_REPEAT = 5
QUICK_LOOP_STARTS = 2
QUICK_OPTIMIZER_CASES = ((1000, 30),)

TINY_RUNS_CAP, TINY_STEPS, TINY_GRIDS, TINY_CHUNKED_RUNS = 64, 20, (64, 128), 10_000


@dataclass(frozen=True)
class Agreement:
    """How closely a contender's final losses match the reference's."""

    compared: int
    max_rel: float
    median_rel: float
    frac_within: float
    rtol: float


def agreement(reference: np.ndarray, values: np.ndarray, rtol: float) -> Agreement:
    """Relative differences of ``values`` against ``reference`` over the entries both have."""
    ref = reference[: len(values)].astype(np.float64)
    rel = np.abs(values.astype(np.float64) - ref) / np.maximum(np.abs(ref), 1e-12)
    rel = np.where(np.isnan(rel), np.inf, rel)  # a NaN on one side only is a disagreement
    rel = np.where(np.isnan(ref) & np.isnan(values.astype(np.float64)), 0.0, rel)
    return Agreement(
        compared=len(rel),
        max_rel=float(rel.max()),
        median_rel=float(np.median(rel)),
        frac_within=float(np.mean(rel <= rtol)),
        rtol=rtol,
    )


# ----------------------------------------------------------------------------- running


def measured(name: str, call: Callable[[], c.ContenderResult]) -> tuple[c.ContenderResult, dict[str, Any]]:
    """Run a contender under :func:`memory.measure`; a failure becomes a skipped result."""
    print(f"  running {name} ...", file=sys.stderr, flush=True)
    with memory.measure() as peak:
        try:
            res = call()
        except Exception as err:  # noqa: BLE001 - one failing contender must not end the suite
            traceback.print_exc(file=sys.stderr)
            res = c.ContenderResult.skipped(name, f"{type(err).__name__}: {err}".splitlines()[0])
    return res, peak.as_dict()


def make_row(
    res: c.ContenderResult, peak: dict[str, Any], ref: c.ContenderResult, reference: str, rtol: float
) -> dict[str, Any]:
    """A JSON-ready row: times, ratios to ``ref`` (ref time / this time) and agreement with it."""
    ok = res.ok and ref.ok and bool(res.run_s) and bool(res.run_cpu_s)
    return {
        "contender": res.name,
        "reference": reference,
        "compile_s": res.compile_s,
        "run_s": res.run_s,
        "run_times": list(res.run_times),
        "run_cpu_s": res.run_cpu_s,
        "run_cpu_times": list(res.run_cpu_times),
        "starts_run": res.starts_run,
        "memory": peak,
        "note": res.note,
        "skip_reason": res.skip_reason,
        "ratio": ref.run_s / res.run_s if ok else None,
        "cpu_ratio": ref.run_cpu_s / res.run_cpu_s if ok else None,
        "agreement": asdict(agreement(ref.losses, res.losses, rtol)) if res.ok and ref.ok else None,
    }


def fit_throughput(row: dict[str, Any], runs: int, points: int, steps: int) -> dict[str, Any]:
    """Add initialisation-steps per second and point evaluations per second to a fit row."""
    run_s = row["run_s"]
    init_steps = runs * steps
    row["steps"] = steps
    row["init_steps_per_s"] = init_steps / run_s if run_s else None
    row["point_evals_per_s"] = init_steps * points / run_s if run_s else None
    return row


def run_adam_case(work: c.Workload, names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Every named Adam contender on ``work`` (the reference first); one record."""
    results: dict[str, tuple[c.ContenderResult, dict[str, Any]]] = {}
    for name in [REFERENCE] + [n for n in names if n != REFERENCE]:
        kwargs: dict[str, Any] = {}
        if name == "optax_loop":
            kwargs["max_starts"] = args.loop_starts
        elif name == "numpy_vectorised":
            kwargs["max_starts"] = max(1, args.numpy_elements // work.points)
        elif name in c.SUBSET_CONTENDERS:
            kwargs["max_starts"] = max(1, args.subset_elements // work.points)
        fn = c.CONTENDERS[name]
        results[name] = measured(
            name,
            lambda fn=fn, kwargs=kwargs: fn(work.starts, work.x, work.y, work.steps, args.repeat, **kwargs),
        )
    ref = results[REFERENCE][0]
    rows = [
        fit_throughput(make_row(res, peak, ref, REFERENCE, args.rtol), work.runs, work.points, work.steps)
        for res, peak in results.values()
    ]
    return {
        "suite": "adam",
        "runs": work.runs,
        "points": work.points,
        "steps": work.steps,
        "floor_s": c.floor_seconds(work.runs, work.points, work.steps),
        "rows": rows,
    }


def run_optimizer_case(work: c.Workload, pairs: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """fitjax against its optax equivalent for each named optimizer on ``work``; one record."""
    rows = []
    for name in pairs:
        pair = optimizer_pairs.PAIRS[name]
        calls = optimizer_pairs.contenders(pair, work, args.repeat)
        (ref_name, ref_call), (ours_name, ours_call) = calls.items()
        ref, ref_peak = measured(ref_name, ref_call)
        ours, ours_peak = measured(ours_name, ours_call)
        steps = pair.steps(work.steps)
        for res, peak in ((ref, ref_peak), (ours, ours_peak)):
            row = make_row(res, peak, ref, ref_name, args.rtol)
            rows.append(fit_throughput(row, work.runs, work.points, steps))
    return {
        "suite": "optimizers",
        "runs": work.runs,
        "points": work.points,
        "steps": work.steps,
        "rows": rows,
    }


def run_landscape_case(n: int, work: c.Workload, args: argparse.Namespace) -> dict[str, Any]:
    """``fitjax.loss_grid`` against plain jit(vmap) on an ``n × n`` grid; one record."""
    rows_per_chunk = max(1, fitjax.analysis.landscape.default_chunk() // n)
    traces = fitjax.analysis.landscape.trace_count()
    calls = {
        "plain_vmap": lambda: landscapes.timed(
            "plain_vmap", landscapes.plain_grid(n, work.x, work.y), args.grid_repeat, "whole grid in one call"
        ),
        "plain_vmap_chunked": lambda: landscapes.timed(
            "plain_vmap_chunked",
            landscapes.plain_grid(n, work.x, work.y, rows=rows_per_chunk),
            args.grid_repeat,
            f"{rows_per_chunk} rows ({rows_per_chunk * n} points) per call",
        ),
        "fitjax.loss_grid": lambda: landscapes.timed(
            "fitjax.loss_grid", landscapes.fitjax_grid(n, work.x, work.y), args.grid_repeat
        ),
    }
    results = {name: measured(name, call) for name, call in calls.items()}
    if fitjax.analysis.landscape.trace_count() == traces:  # the chunk program came from an earlier grid
        res, peak = results["fitjax.loss_grid"]
        results["fitjax.loss_grid"] = (dataclasses.replace(res, note="program compiled earlier"), peak)
    ref = results["plain_vmap"][0]
    rows = []
    for res, peak in results.values():
        row = make_row(res, peak, ref, "plain_vmap", args.rtol)
        run_s = row["run_s"]
        row["grid_points_per_s"] = n * n / run_s if run_s else None
        row["point_evals_per_s"] = n * n * work.points / run_s if run_s else None
        rows.append(row)
    return {"suite": "landscape", "grid": n, "points": work.points, "rows": rows}


def run_chunked(n_runs: int, points: int, steps: int, args: argparse.Namespace) -> dict[str, Any]:
    """``fitjax.fit_chunked`` of ``n_runs`` Adam runs streamed to a temporary folder."""
    work = c.make_workload(1, points, steps, seed=args.seed)
    block = min(args.chunked_block, n_runs)
    starts = fitjax.engine.chunked.uniform_starts(
        jax.random.key(args.seed),
        n_runs,
        [c.PHI0_RANGE[0], c.PHI1_RANGE[0]],
        [c.PHI0_RANGE[1], c.PHI1_RANGE[1]],
    )
    record: dict[str, Any] = {
        "suite": "chunked",
        "runs": n_runs,
        "points": points,
        "steps": steps,
        "block": block,
    }
    print(f"  running fit_chunked ({n_runs} runs, block {block}) ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as out, memory.measure() as peak:
        try:
            t0, cpu0 = time.perf_counter(), time.process_time()
            run = fitjax.fit_chunked(
                c.FITJAX_LOSS, c.fitjax_adam(), starts, (work.x, work.y), steps=steps,
                chunk_size=2 * block, block=block, out_dir=out, progress=False,
            )  # fmt: skip
            record["wall_s"], record["cpu_s"] = time.perf_counter() - t0, time.process_time() - cpu0
            loss = np.asarray(fitjax.load_chunked(out).loss)
            record.update(
                n_chunks=run.n_chunks,
                point_evals_per_s=n_runs * points * steps / record["wall_s"],
                finite=int(np.isfinite(loss).sum()),
                median_loss=float(np.nanmedian(loss)),
                disk_bytes=sum(f.stat().st_size for f in os.scandir(out) if f.is_file()),
            )
        except Exception as err:  # noqa: BLE001 - reported, not fatal
            traceback.print_exc(file=sys.stderr)
            record["error"] = f"{type(err).__name__}: {err}".splitlines()[0]
    record["memory"] = peak.as_dict()
    return record


def chunked_text(record: dict[str, Any]) -> str:
    head = f"fit_chunked: I={record['runs']} N={record['points']} T={record['steps']} block={record['block']}"
    if "error" in record:
        return f"{head}\n  FAILED: {record['error']}"
    mem = record["memory"]
    device = f", device peak {mem['device_bytes'] / 2**20:.0f} MiB" if mem.get("device_bytes") else ""
    return (
        f"{head}\n  {record['wall_s']:.2f} s wall ({record['cpu_s']:.2f} s CPU; compile and disk writes "
        f"included), {record['point_evals_per_s']:.3g} point-evals/s, {record['n_chunks']} chunks, "
        f"{record['disk_bytes'] / 2**20:.0f} MiB on disk, host peak +{mem['host_bytes'] / 2**20:.0f} MiB"
        f"{device}; {record['finite']} finite final losses, median {record['median_loss']:.4g}"
    )


def model_check(work: c.Workload) -> float:
    """Largest |fitjax's loss − the contenders' loss| at the starts: the two must be one function."""
    ours = jax.vmap(c.FITJAX_LOSS, (0, None))(work.starts, (work.x, work.y))
    theirs = jax.vmap(c.loss_jax, (0, None, None))(work.starts, work.x, work.y)
    return float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))


# ----------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help=f"(I, N) in {QUICK_CASES}, T={QUICK_STEPS}, few repeats"
    )
    p.add_argument("--tiny", action="store_true", help="every size tiny: checks the script, not the speed")
    p.add_argument(
        "--suites", nargs="+", choices=SUITES, help="suites to run (default: see the module notes)"
    )
    p.add_argument("--runs", type=int, nargs="+", help=f"numbers of starts I (default {FULL_RUNS})")
    p.add_argument("--points", type=int, nargs="+", help=f"numbers of points N (default {FULL_POINTS})")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps T")
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions per contender (best is kept)")
    p.add_argument("--loop-starts", type=int, default=4, help="starts actually run by optax_loop")
    p.add_argument(
        "--subset-elements",
        type=int,
        default=SUBSET_ELEMENTS,
        help="torch runs at most this many (start, point) pairs, its time scaled to all starts "
        f"(default {SUBSET_ELEMENTS:,} here: 2**25 on a GPU, 2**20 on a CPU)",
    )
    p.add_argument(
        "--numpy-elements",
        type=int,
        default=2**20,
        help="numpy runs at most this many (start, point) pairs, its time scaled to all starts",
    )
    gpu_only = {"fitjax_auto", "fitjax_fast"}
    default_contenders = [n for n in c.CONTENDERS if ON_GPU or n not in gpu_only]
    p.add_argument(
        "--contenders",
        nargs="+",
        choices=list(c.CONTENDERS),
        default=default_contenders,
        help=f"Adam contenders ({REFERENCE} always runs: it is the reference; "
        "fitjax_auto and fitjax_fast are defaults only on a GPU)",
    )
    p.add_argument(
        "--optimizers", nargs="+", choices=list(optimizer_pairs.PAIRS), default=list(optimizer_pairs.PAIRS)
    )
    p.add_argument(
        "--optimizer-runs", type=int, nargs="+", help=f"I for the optimizers suite ({FULL_OPTIMIZER_RUNS})"
    )
    p.add_argument("--grids", type=int, nargs="+", default=list(GRIDS), help="landscape grid sides n (n x n)")
    p.add_argument("--grid-repeat", type=int, default=2, help="timed repetitions per landscape")
    p.add_argument("--chunked-runs", type=int, default=10_000_000, help="starts in the chunked sweep")
    p.add_argument("--chunked-points", type=int, default=28, help="N in the chunked sweep")
    p.add_argument(
        "--chunked-block", type=int, default=1 << 20, help="runs per compiled call in the chunked sweep"
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads on CPU (default 1: OpenMP spin-waits stall when the CPUs are shared; "
        "0 keeps torch's own choice)",
    )
    p.add_argument("--rtol", type=float, default=1e-3, help="agreement tolerance")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-s", type=float, help="start no new case after this many seconds")
    p.add_argument("--json", help="write the results to this JSON file (rewritten after every case)")
    p.add_argument("--markdown", help="write the tables into this Markdown page (e.g. docs/benchmarks.md)")
    p.add_argument("--section", help="the page's section to replace (default: <backend>-<mode>)")
    args = p.parse_args(argv)
    if args.suites is None:
        args.suites = list(SUITES) if ON_GPU or args.tiny else [s for s in SUITES if s != "chunked"]
    if args.quick:
        args.steps, args.repeat, args.loop_starts, args.grid_repeat = (
            QUICK_STEPS,
            QUICK_REPEAT,
            QUICK_LOOP_STARTS,
            1,
        )
    if args.tiny:
        args.steps, args.repeat, args.grid_repeat = min(args.steps, TINY_STEPS), 1, 1
        args.loop_starts = min(args.loop_starts, 2)
        args.grids = list(TINY_GRIDS)
        args.chunked_runs, args.chunked_block = min(args.chunked_runs, TINY_CHUNKED_RUNS), 2048
    mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    args.section = args.section or f"{jax.default_backend()}-{mode}"
    return args


def _dedupe(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return list(dict.fromkeys(pairs))


def adam_cases(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(runs, points): the quick set, or points × runs (all runs for the first N, then the next)."""
    if args.quick and args.runs is None and args.points is None:
        cases = list(QUICK_CASES)
    else:
        cases = [(i, n) for n, i in itertools.product(args.points or FULL_POINTS, args.runs or FULL_RUNS)]
    if args.tiny:
        cases = [(min(i, TINY_RUNS_CAP), n) for i, n in cases]
    return _dedupe(cases)


def optimizer_cases(args: argparse.Namespace) -> list[tuple[int, int]]:
    if args.quick and args.optimizer_runs is None and args.points is None:
        cases = list(QUICK_OPTIMIZER_CASES)
    else:
        cases = [
            (i, n) for n in (args.points or FULL_POINTS) for i in (args.optimizer_runs or FULL_OPTIMIZER_RUNS)
        ]
    if args.tiny:
        cases = [(min(i, TINY_RUNS_CAP), n) for i, n in cases]
    return _dedupe(cases)


def command(argv: list[str] | None) -> str:
    return "python -m benchmarks.run_contenders " + shlex.join(sys.argv[1:] if argv is None else argv)


def page_notes(args: argparse.Namespace, check: float) -> list[str]:
    subset = args.subset_elements
    return [
        "Times are the best of the timed calls after a warm-up (`--repeat` calls, more for short ones: "
        "until 0.25 s have passed, at most 200; from 10 calls on, their 10th percentile); "
        "`compile s` is apart from them "
        "(the expert: lower + compile; fitjax and the landscapes: the trace, lowering and compile "
        "times JAX reports during the first call; "
        "torch: three warm-up steps, `torch.compile` included).",
        "`vs ref` is the reference's wall time over this row's (above 1: faster than the reference); "
        "`cpu vs ref` the same with process CPU time (all threads), steadier on a shared machine.",
        "`peak MiB`: on a CPU, the growth of the process's peak resident memory during that contender "
        "(compile and all calls; `≤` where the peak could not be reset); on a GPU, the device's "
        "`peak_bytes_in_use` after it (`≤`: it did not raise the process's peak).",
        "`median rel`, `max rel`, `within`: relative differences of the final losses (grid values) from "
        f"the reference's from the same starts, and the fraction within {args.rtol:g}.",
        f"torch runs at most {subset:,} (start, point) pairs, NumPy {args.numpy_elements:,} and "
        f"`optax_loop` {args.loop_starts} starts; their run times are scaled linearly to all starts "
        "(the notes say where).",
        f"fitjax's loss `least_squares(Gabor(8.0))` and the contenders' loss differ by at most {check:.1e} "
        "at the starts (the same function).",
    ]


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch, _ = c.import_torch()
    if torch is not None and args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    env = report.environment(args.torch_threads or None)
    print("machine:", report.machine_line(env), flush=True)
    first = adam_cases(args)[0] if "adam" in args.suites else (64, 30)
    check = model_check(c.make_workload(min(first[0], 1000), first[1], 1, seed=args.seed))
    print(f"model check: max |fitjax loss - contenders' loss| at the starts = {check:.1e}", flush=True)
    start = time.monotonic()
    records: list[dict[str, Any]] = []
    not_run: list[str] = []

    def over_budget(what: str) -> bool:
        if args.budget_s is not None and time.monotonic() - start > args.budget_s:
            print(f"SKIPPED {what}: past --budget-s {args.budget_s:g} s", flush=True)
            not_run.append(what)
            return True
        return False

    def done(record: dict[str, Any]) -> None:
        records.append(record)
        text = chunked_text(record) if record["suite"] == "chunked" else report.text_table(record)
        print(text + "\n", flush=True)
        write(args, argv, env, check, records, not_run, final=False)

    def workload(runs: int, points: int, steps: int = args.steps) -> c.Workload:
        return c.make_workload(runs, points, steps, seed=args.seed)

    jobs: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    if "adam" in args.suites:
        for i, n in adam_cases(args):
            jobs.append(
                (f"adam I={i} N={n}", lambda i=i, n=n: run_adam_case(workload(i, n), args.contenders, args))
            )
    if "optimizers" in args.suites:
        for i, n in optimizer_cases(args):
            job = lambda i=i, n=n: run_optimizer_case(workload(i, n), args.optimizers, args)  # noqa: E731
            jobs.append((f"optimizers I={i} N={n}", job))
    if "landscape" in args.suites:
        n_points = 30 if args.quick else min(args.points or FULL_POINTS)
        for side in args.grids:
            jobs.append(
                (
                    f"landscape {side}x{side}",
                    lambda s=side: run_landscape_case(s, workload(1, n_points, 1), args),
                )
            )
    if "chunked" in args.suites:
        job = lambda: run_chunked(args.chunked_runs, args.chunked_points, args.steps, args)  # noqa: E731
        jobs.append((f"chunked I={args.chunked_runs}", job))
    for what, job in jobs:
        if over_budget(what):
            continue
        print(f"case {what} (T={args.steps})", file=sys.stderr, flush=True)
        load_before = os.getloadavg()[0]
        record = job()
        record["load_avg_1min"] = [load_before, os.getloadavg()[0]]
        done(record)
    results = write(args, argv, env, check, records, not_run, final=True)
    print("targets:\n" + report.targets_text(results), flush=True)
    print(f"total {time.monotonic() - start:.1f} s", flush=True)
    return 0


def write(
    args: argparse.Namespace,
    argv: list[str] | None,
    env: dict[str, Any],
    check: float,
    records: list[dict[str, Any]],
    not_run: list[str],
    final: bool,
) -> list[dict[str, Any]]:
    """Write the JSON file and the Markdown section (after every case, so a killed run leaves results)."""
    results = report.targets(records, ON_GPU)
    fits = [r for r in records if r["suite"] != "chunked"]
    if args.json:
        with open(args.json, "w") as f:
            payload = {
                "environment": env,
                "command": command(argv),
                "args": vars(args),
                "model_check": check,
                "complete": final,
                "cases": records,
                "not_run": not_run,
                "targets": results,
            }
            json.dump(payload, f, indent=2, default=float)
    if args.markdown:
        notes = page_notes(args, check)
        chunked = [r for r in records if r["suite"] == "chunked"]
        notes += [chunked_text(r).replace("\n ", ":") for r in chunked]
        if not_run:
            notes.append(f"Not run, past `--budget-s {args.budget_s:g}`: {', '.join(not_run)}.")
        if not final:
            notes.append("Incomplete: the run stopped before its last case.")
        title = f"{args.section} ({env['device_kind']})"
        body = report.markdown_section(title, env, command(argv), fits, results, notes)
        report.update_page(args.markdown, args.section, body)
    return results


if __name__ == "__main__":
    sys.exit(main())
