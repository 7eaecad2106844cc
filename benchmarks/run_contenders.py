"""Run the Gabor multi-start contenders, check they agree, and tabulate speed.

Usage (from the repository root)::

    python benchmarks/run_contenders.py --quick --json contenders.json
    python benchmarks/run_contenders.py --runs 10000 --points 1024 --steps 1000

For every ``(runs, points)`` case the workload is generated with a fixed seed,
each contender is run on it, and its final losses are compared with those of
``expert_optax`` from the same starts. Adam on a non-convex loss can amplify
float32 rounding, so the agreement is reported (maximum and median relative
difference, fraction of runs within ``--rtol``) rather than asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import jax
import numpy as np

try:  # python -m benchmarks.run_contenders
    from . import contenders as c
except ImportError:  # python benchmarks/run_contenders.py
    import contenders as c

REFERENCE = "expert_optax"

QUICK_CASES = ((1, 30), (100, 1024), (10000, 30))
"""(runs, points) in quick mode: one latency-bound, one per-point-heavy and
one many-starts case, each with T = 1000 steps."""
QUICK_LOOP_STARTS = 2
QUICK_REPEAT = 2


@dataclass(frozen=True)
class Agreement:
    """How closely a contender's final losses match the reference's."""

    compared: int
    max_rel: float
    median_rel: float
    frac_within: float
    rtol: float


def agreement(reference: np.ndarray, losses: np.ndarray, rtol: float) -> Agreement:
    """Relative differences of ``losses`` against ``reference`` over the runs both have."""
    ref = reference[: len(losses)].astype(np.float64)
    rel = np.abs(losses.astype(np.float64) - ref) / np.maximum(np.abs(ref), 1e-12)
    return Agreement(
        compared=len(rel),
        max_rel=float(rel.max()),
        median_rel=float(np.median(rel)),
        frac_within=float(np.mean(rel <= rtol)),
        rtol=rtol,
    )


def throughput(result: c.ContenderResult, work: c.Workload) -> dict[str, float | None]:
    """Initialisation-steps per second and point evaluations per second."""
    if not result.ok or not result.run_s:
        return {"init_steps_per_s": None, "point_evals_per_s": None}
    init_steps = work.runs * work.steps
    return {
        "init_steps_per_s": init_steps / result.run_s,
        "point_evals_per_s": init_steps * work.points / result.run_s,
    }


def run_case(
    work: c.Workload, names: list[str], repeat: int, loop_starts: int, rtol: float
) -> dict[str, Any]:
    """Run the named contenders (reference first) on ``work``; one JSON-ready record."""
    results: dict[str, c.ContenderResult] = {}
    for name in [REFERENCE] + [n for n in names if n != REFERENCE]:
        kwargs = {"max_starts": loop_starts} if name == "optax_loop" else {}
        print(f"  running {name} ...", file=sys.stderr, flush=True)
        results[name] = c.CONTENDERS[name](work.starts, work.x, work.y, work.steps, repeat=repeat, **kwargs)
    ref = results[REFERENCE]
    rows = []
    for name, res in results.items():
        row: dict[str, Any] = {
            "contender": name,
            "compile_s": res.compile_s,
            "run_s": res.run_s,
            "run_times": list(res.run_times),
            "run_cpu_s": res.run_cpu_s,
            "run_cpu_times": list(res.run_cpu_times),
            "starts_run": res.starts_run,
            "note": res.note,
            "skip_reason": res.skip_reason,
            **throughput(res, work),
            "ratio_vs_expert": ref.run_s / res.run_s if res.ok else None,
            "cpu_ratio_vs_expert": ref.run_cpu_s / res.run_cpu_s if res.ok else None,
            "agreement": None,
        }
        if res.ok:
            row["agreement"] = asdict(agreement(ref.losses, res.losses, rtol))
        rows.append(row)
    return {
        "runs": work.runs,
        "points": work.points,
        "steps": work.steps,
        "floor_s": c.floor_seconds(work.runs, work.points, work.steps),
        "contenders": rows,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# (header, width, value of a row as text)
_COLUMNS: list[tuple[str, int, Callable[[dict[str, Any]], str]]] = [
    ("compile s", 9, lambda r: _fmt(r["compile_s"], ".3f")),
    ("run s", 8, lambda r: _fmt(r["run_s"], ".3f")),
    ("run cpu s", 9, lambda r: _fmt(r["run_cpu_s"], ".3f")),
    ("init-steps/s", 12, lambda r: _fmt(r["init_steps_per_s"], ".3g")),
    ("pt-evals/s", 10, lambda r: _fmt(r["point_evals_per_s"], ".3g")),
    ("vs expert", 9, lambda r: _fmt(r["ratio_vs_expert"], ".3g")),
    ("cpu vs exp", 10, lambda r: _fmt(r["cpu_ratio_vs_expert"], ".3g")),
    ("median rel", 10, lambda r: _fmt((r["agreement"] or {}).get("median_rel"), ".1e")),
    ("max rel", 8, lambda r: _fmt((r["agreement"] or {}).get("max_rel"), ".1e")),
    ("within", 8, lambda r: _fmt((r["agreement"] or {}).get("frac_within"), ".2%")),
]


def format_case(case: dict[str, Any]) -> str:
    """Plain-text table for one case."""
    head = (
        f"I={case['runs']} N={case['points']} T={case['steps']}  "
        f"compute floor (70 flop/pt @ 50 TFLOP/s) = {case['floor_s']:.2e} s"
    )
    if "load_avg_1min" in case:
        before, after = case["load_avg_1min"]
        head += f"  load avg {before:.1f} -> {after:.1f} on {os.cpu_count()} CPUs"
    cols = f"{'contender':<24}" + "".join(f" {h:>{w}}" for h, w, _ in _COLUMNS) + "  note"
    lines = [head, cols, "-" * len(cols)]
    for row in case["contenders"]:
        note = f"SKIPPED: {row['skip_reason']}" if row["skip_reason"] else row["note"]
        cells = "".join(f" {cell(row):>{w}}" for _, w, cell in _COLUMNS)
        lines.append(f"{row['contender']:<24}{cells}  {note}")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """Versions and devices the figures were measured on."""
    torch, _ = c.import_torch()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jax_device": str(jax.devices()[0]),
        "torch": getattr(torch, "__version__", None),
        "torch_cuda": bool(torch and torch.cuda.is_available()),
        "torch_threads": torch.get_num_threads() if torch else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, nargs="+", default=[100], help="numbers of starts I")
    p.add_argument("--points", type=int, nargs="+", default=[1024], help="numbers of points N")
    p.add_argument("--steps", type=int, default=1000, help="Adam steps T")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"(I, N) in {QUICK_CASES}, T=1000, --repeat {QUICK_REPEAT}, --loop-starts {QUICK_LOOP_STARTS}",
    )
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions per contender (best is kept)")
    p.add_argument("--loop-starts", type=int, default=4, help="starts actually run by optax_loop")
    p.add_argument(
        "--contenders",
        nargs="+",
        choices=list(c.CONTENDERS),
        default=list(c.CONTENDERS),
        help=f"contenders to run ({REFERENCE} always runs: it is the reference)",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        help="torch intra-op threads on CPU (default: torch's own choice); "
        "1 avoids OpenMP spin-wait stalls when the CPUs are shared with other work",
    )
    p.add_argument("--rtol", type=float, default=1e-3, help="agreement tolerance")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeat, args.loop_starts = 1000, QUICK_REPEAT, QUICK_LOOP_STARTS
        args.runs = args.points = None  # the cases are QUICK_CASES
    return args


def cases(args: argparse.Namespace) -> list[tuple[int, int]]:
    """The (runs, points) cases to run: the quick set, or the --runs x --points grid."""
    if args.quick:
        return list(QUICK_CASES)
    return list(itertools.product(args.runs, args.points))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch, _ = c.import_torch()
    if torch is not None and args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    env = environment()
    print(
        f"device: jax {env['jax_device']}, torch "
        f"{'cuda' if env['torch_cuda'] else 'cpu' if env['torch'] else 'absent'}"
    )
    records = []
    for runs, points in cases(args):
        print(f"case I={runs} N={points} T={args.steps}", file=sys.stderr, flush=True)
        work = c.make_workload(runs, points, args.steps, seed=args.seed)
        load_before = os.getloadavg()[0]
        record = run_case(work, args.contenders, args.repeat, args.loop_starts, args.rtol)
        record["load_avg_1min"] = [load_before, os.getloadavg()[0]]
        records.append(record)
        print(format_case(record) + "\n", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "args": vars(args), "cases": records}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
