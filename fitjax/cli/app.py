"""The ``fitjax`` command line.

``fitjax demo``
    The lecture's experiments on the built-in data: gradient descent on the line,
    gradient descent from several starts on the Gabor landscape (with its critical
    points and basins of attraction), gradient descent with line search, SGD against
    full-batch gradient descent, momentum against Nesterov momentum, normalized
    gradients against Adam on the toy loss. Writes the figures, ``summary.json`` and
    ``report.md`` into ``--out`` (default ``fitjax-demo``).
``fitjax sweep``
    Any built-in model and optimizer from a grid or box of starts, with
    hyperparameters given as single values or grids; ranks the settings
    (:mod:`fitjax.analysis.sweep_report`), prints the top ones and saves ``results.csv``,
    ``sweep.npz``, ``sweep.json``, ``metadata.json``, and the basin map
    (``basins.npz``, ``basins*.png``) for grid starts (default ``--out fitjax-sweep``).
``fitjax landscape``
    A loss landscape of a built-in model and its critical points (default
    ``--out fitjax-landscape``).

Every command takes ``--help``; ``docs/reference/outputs.md`` describes every file
written. A bad flag, an unknown model or optimizer, a bad value, an option that does
not apply to the model or command, or an output folder that cannot be written (or
holds another command's results, without ``--force``) gives one line on stderr and
exit code 2. Ctrl-C stops within a second or two, keeps the finished work, says so in
one line and exits with code 130. Progress is drawn on stderr when both stdout and
stderr are terminals (not with ``--quiet``). matplotlib (the ``plot`` extra) is
imported only when a command runs.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import fitjax
from fitjax import _checks
from fitjax.analysis import sweep_report
from fitjax.cli.demo import _demo
from fitjax.cli.landscape import _landscape
from fitjax.cli.options import (
    CLIError,
    _box,
    _float_list,
    _grid_size,
    _Parser,
    _positive_float,
    _positive_int,
    _starts,
)
from fitjax.cli.problems import MATHS, MODELS, OPTIMIZERS
from fitjax.cli.progress import _WORKER
from fitjax.cli.sweep import _sweep
from fitjax.lecture import experiments


def _add_common(p: argparse.ArgumentParser, out_default: str) -> None:
    p.add_argument("--out", default=out_default, metavar="DIR", help=f"output folder (default {out_default})")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into --out even if it holds another command's results",
    )
    p.add_argument("--seed", type=_checks.seed_arg, default=0, help="seed of every random choice (default 0)")
    p.add_argument(
        "--quiet", action="store_true", help="no progress (also off when stdout is not a terminal)"
    )


def _add_model(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument(
        "--model",
        choices=MODELS,
        default=default,
        required=default is None,
        help="line, gabor (the lecture's data), toy (the Adam toy loss) or mlp (a small network)",
    )
    p.add_argument(
        "--box",
        type=_box,
        metavar="LO0,HI0,LO1,HI1",
        help="line, gabor, toy: the box of φ0 × φ1 explored (default: the notebooks' plotting ranges); "
        "negative values work as they are: --box -1,3,-2,2",
    )
    p.add_argument("--hidden", type=_positive_int, help="mlp only: hidden units (default 16)")
    p.add_argument(
        "--math",
        choices=MATHS,
        default="auto",
        help="float32 sin/cos/exp: auto (default: fitjax's polynomials on a CPU, several times "
        "faster and equal up to float32 rounding; the platform's elsewhere), platform "
        "(fitjax.platform_math) or polynomial (fitjax.polynomial_math) everywhere",
    )


def _add_optimizer(p: argparse.ArgumentParser, default: str | None, lists: bool = True) -> None:
    p.add_argument(
        "--optimizer",
        choices=tuple(OPTIMIZERS),
        default=default,
        required=default is None and lists,
        help="the update rule (sgd is gd on mini-batches of --batch-size, default 5)"
        + ("" if lists else "; mlp only (default adam)"),
    )
    several = "one value or several to sweep" if lists else "one value"
    p.add_argument(
        "--learning-rate",
        type=_float_list,
        metavar="A[,A...]" if lists else "A",
        help=f"α, {several} (default 0.01, 0.05 for adam; for mlp 0.003, 0.001 for nesterov-classical, "
        "0.01 for adam)",
    )
    p.add_argument("--beta", type=_float_list, metavar="B[,B...]", help="β of momentum, nesterov and adam")
    p.add_argument("--gamma", type=_float_list, metavar="G[,G...]", help="γ of adam")
    p.add_argument("--eps", type=_float_list, metavar="E[,E...]", help="ε of normalized and adam")
    p.add_argument("--momentum", type=_float_list, metavar="M[,M...]", help="μ of nesterov-classical")
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        help="mini-batch size (default: the full data; 5 for sgd); not with gd or the toy model",
    )


def _add_demo(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="reproduce the lecture's experiments: figures, summary.json and report.md",
        description="Reproduce the lecture's experiments on the built-in data and write the figures, "
        "summary.json (final losses) and report.md into --out.",
    )
    _add_common(demo, "fitjax-demo")
    s = experiments.Settings()  # the experiments' defaults, defined once in fitjax.lecture
    demo.add_argument(
        "--format",
        choices=("png", "svg"),
        default=s.figure_format,
        help=f"figure format (default {s.figure_format})",
    )
    demo.add_argument("--grid", type=_grid_size, default=s.grid, help=argparse.SUPPRESS)
    demo.add_argument("--basin-grid", type=_grid_size, default=s.basin_grid, help=argparse.SUPPRESS)
    demo.add_argument("--basin-steps", type=_positive_int, default=s.basin_steps, help=argparse.SUPPRESS)
    demo.add_argument("--runs", type=_positive_int, default=s.runs, help=argparse.SUPPRESS)
    demo.set_defaults(func=_demo)


def _add_sweep(sub: Any) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="fit a built-in model from many starts over a grid of hyperparameters, and rank the settings",
        description="Fit a built-in model with one optimizer from a grid or box of starts, for every "
        "combination of the hyperparameter values given (e.g. --learning-rate 0.01,0.05 "
        "--beta 0.5,0.9), rank the settings (--rank-by) and print the top ones. Saves results.csv, "
        "sweep.npz, sweep.json and metadata.json; with grid starts also the basin map (basins.npz, "
        "basins*.png). See docs/reference/outputs.md.",
    )
    _add_model(sweep, None)
    _add_optimizer(sweep, None)
    sweep.add_argument(
        "--starts",
        type=_starts,
        metavar="SPEC",
        help="grid:N (N x N over the box), grid:N0xN1 or uniform:N "
        "(default grid:32; uniform:16 random initialisations for mlp)",
    )
    sweep.add_argument("--steps", type=_positive_int, default=500, help="steps per run (default 500)")
    sweep.add_argument(
        "--record-every",
        type=_positive_int,
        help="record the loss every k steps (default steps/100): steps to the target and basin convergence",
    )
    sweep.add_argument(
        "--rank-by",
        choices=tuple(sweep_report.RANK_BY),
        help="the metric the settings are ranked by: reach (default: share of starts reaching the best "
        "minimum found), median, q10, q90 (final loss quantiles), best, diverged, steps (median steps "
        "to the loss target)",
    )
    sweep.add_argument(
        "--top", type=_positive_int, metavar="K", help="settings shown in the table (default 10)"
    )
    sweep.add_argument(
        "--reach-tol",
        type=_positive_float,
        metavar="R",
        help="a start reaches the best minimum when its final loss is <= best + R·|best| (default 0.01)",
    )
    sweep.add_argument(
        "--target-loss",
        type=float,
        metavar="L",
        help="the loss target of the steps-to-target metric (default: the reach threshold)",
    )
    sweep.add_argument(
        "--cluster-tol",
        type=_positive_float,
        help="grid starts: distance within which end points count as one minimum (default 0.01)",
    )
    sweep.add_argument(
        "--chunk-size",
        type=_positive_int,
        metavar="N",
        help="fit N runs at a time and stream them to OUT/chunks (fitjax.fit_chunked): resumable, for "
        "sweeps larger than memory; no basin map or ranking; uniform and mlp starts are then drawn "
        "run by run",
    )
    sweep.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --chunk-size: continue the sweep found in OUT/chunks (default), or refuse to touch it",
    )
    sweep.add_argument(
        "--devices", type=_positive_int, metavar="N", help="fit on the first N devices (default all)"
    )
    _add_common(sweep, "fitjax-sweep")
    sweep.set_defaults(func=_sweep)


def _add_landscape(sub: Any) -> None:
    land = sub.add_parser(
        "landscape",
        help="compute and plot a loss landscape and its critical points",
        description="The loss over φ0 × φ1 (line, gabor, toy) or over a plane through trained mlp weights, "
        "with its critical points. Saves landscape.npz, landscape.json, results.csv (the critical "
        "points), metadata.json and the figures. The mlp is trained with the optimizer options of "
        "fitjax sweep, with one value each.",
    )
    _add_model(land, "gabor")
    land.add_argument("--grid", type=_grid_size, default=256, help="points per axis (default 256)")
    land.add_argument(
        "--chunk-size",
        type=_positive_int,
        help="points evaluated per compiled call (default: about 1/50 of the grid, at least 256)",
    )
    land.add_argument("--format", choices=("png", "svg"), default="png", help="figure format (default png)")
    land.add_argument("--no-critical", action="store_true", help="skip the critical points")
    land.add_argument(
        "--directions",
        choices=("random", "pca"),
        help="mlp only: random filter-normalised directions around the trained weights "
        "(default) or the top two principal directions of the training trajectory",
    )
    land.add_argument(
        "--extent",
        type=_positive_float,
        help="mlp with random directions: coordinates in ±extent (default 1)",
    )
    _add_optimizer(land, None, lists=False)
    land.add_argument("--steps", type=_positive_int, help="mlp only: training steps (default 300)")
    _add_common(land, "fitjax-landscape")
    land.set_defaults(func=_landscape)


def _add_compare(sub: Any) -> None:
    from fitjax.cli import compare as compare_cli  # the compare command lives with its study code

    compare_cli.add_parser(sub)


# each subcommand: its name and the function adding its parser
COMMANDS: tuple[tuple[str, Callable[[Any], None]], ...] = (
    ("demo", _add_demo),
    ("sweep", _add_sweep),
    ("landscape", _add_landscape),
    ("compare", _add_compare),
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fitjax", description=(fitjax.__doc__ or "fitjax").splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fitjax {fitjax.__version__}")
    names = ",".join(name for name, _ in COMMANDS)
    sub = parser.add_subparsers(dest="command", required=True, metavar=f"{{{names}}}")
    for _, add in COMMANDS:
        add(sub)
    return parser


_NUMBERS = re.compile(r"^-(\d|\.\d|inf\b|nan\b)", re.IGNORECASE)


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings, in the parser and its subcommands, that take a value."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= _value_options(child)
        elif (
            action.option_strings and action.nargs is None and not isinstance(action, argparse._VersionAction)
        ):
            found.update(action.option_strings)
    return found


def join_negative_values(argv: Sequence[str], options: set[str]) -> list[str]:
    """``--box -1,3,-2,2`` as ``--box=-1,3,-2,2``: a value starting with a minus sign and a
    digit is kept with its option (argparse would take it for an option)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in options and i + 1 < len(argv) and _NUMBERS.match(argv[i + 1]):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
        else:
            out.append(token)
            i += 1
    return out


def _work_running() -> bool:
    return any(t.name == _WORKER and t.is_alive() for t in threading.enumerate())


def _interrupted(args: argparse.Namespace | None, command: str, *, process: bool = False) -> int:
    """Ctrl-C: keep the finished work, say so in one line, exit 130 (ending a running program).

    Run as the process's command line (``process``), it leaves at once with ``os._exit``:
    threads of a compiled program that is still being built or run would otherwise abort
    the interpreter's shutdown (``terminate called without an active exception``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the saving short
    message = "nothing was written"
    keep = getattr(args, "keep", None)
    if keep is not None:
        try:
            message = keep()
        except Exception as err:  # noqa: BLE001 - the line must still be printed
            message = f"the finished work could not be saved ({' '.join(str(err).split())})"
    sys.stdout.flush()
    print(f"{command}: interrupted; {message}", file=sys.stderr, flush=True)
    if process or _work_running():  # a compiled program may still run in the background: end it too
        sys.stderr.flush()
        os._exit(130)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0; 2 for a usage or input error; 130 on Ctrl-C)."""
    parser = build_parser()
    command = "fitjax"
    args = None
    given = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(join_negative_values(given, _value_options(parser)))
        args.argv = given
        command = f"fitjax {args.command}"
        return args.func(args)
    except SystemExit as done:  # --help and --version
        return int(done.code or 0) if not isinstance(done.code, str) else 2
    except KeyboardInterrupt:
        return _interrupted(args, command, process=argv is None)
    except (CLIError, ValueError, TypeError, ImportError, OSError) as err:
        message = " ".join(str(err).split())  # one line
        print(f"{getattr(err, 'prog', None) or command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
