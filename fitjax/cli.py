"""The ``fitjax`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


import jax.numpy as jnp

import fitjax


def _demo(args: argparse.Namespace) -> int:
    """Fit the lecture's 30-point Gabor set from a grid of starts with gradient descent."""
    data = fitjax.datasets.gabor()
    loss = fitjax.least_squares(fitjax.Gabor(fitjax.GABOR_W_NOTEBOOK))
    starts = fitjax.inits.grid(jnp.linspace(-10, 10, args.grid), jnp.linspace(2.5, 22.5, args.grid))
    result = fitjax.fit(loss, fitjax.gd(args.learning_rate), starts, data, steps=args.steps)
    summary = result.summary()
    best = summary["best_run"]
    summary["best_params"] = [float(v) for v in result.params[best]] if best is not None else None
    summary["runs_near_best"] = int(jnp.sum(result.loss < summary["best_loss"] + 1e-3))
    print(json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fitjax", description=fitjax.__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit the lecture's Gabor data from a grid of starts and summarise")
    demo.add_argument("--grid", type=int, default=64, help="starts per axis (default 64, so 4096 runs)")
    demo.add_argument("--steps", type=int, default=1000, help="gradient-descent steps (default 1000)")
    demo.add_argument("--learning-rate", type=float, default=0.01, help="step size α (default 0.01)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as err:
        print(f"fitjax {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
