"""``fitjax compare``: run an optimizer study from a study file or flags and write its report.

A study file (TOML, or JSON with the same keys)::

    problems = ["rosenbrock", "himmelblau", "rastrigin:5"]
    starts = 1000
    steps = 1000
    seed = 0
    record_every = 10            # optional, default steps // 100
    imports = ["my_problems"]    # optional: modules that register problems (beside the file)

    [optimizers.gd]
    learning_rate = [1e-3, 1e-2, 1e-1]

    [optimizers.sgd5]
    optimizer = "sgd"            # a fitjax optimizer; the table's name by default
    batch_size = 5
    learning_rate = [0.01, 0.1]

    [optimizers.optax_sgd]
    optimizer = "optax:sgd"      # an optax constructor, called with each setting
    learning_rate = [0.01, 0.1]

Every other key of an optimizer's table is a hyperparameter and its values (one value or
a list). Outputs, in ``--out``: ``results.csv``, ``runs.npz``, ``ecdf_*.png``,
``sensitivity_*.png``, ``report.md`` and ``report.html``; ``pairs/`` keeps each finished
(problem, optimizer) pair, so an interrupted study run again with the same settings
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import jax
import optax

from fitjax import _checks
from fitjax import problems as _problems
from fitjax.comparison import report
from fitjax.comparison.study import OPTIMIZERS, compare


class StudyFileError(ValueError):
    """A study file that cannot be read or has a bad entry (its message names the entry)."""


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


_pos_int = _checks.positive_int_arg


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``compare`` command to a ``fitjax`` sub-parser set."""
    p = subparsers.add_parser(
        "compare",
        help="an optimizer study over many starts: ECDFs, aRT, success rates with intervals, a report",
        description="Run every problem × optimizer × setting from many starts and write results.csv, "
        "runs.npz, ECDF and sensitivity figures, report.md and report.html into --out. The study "
        "comes from a TOML/JSON file, from flags, or is the lecture's claims (--lecture).",
    )
    p.add_argument("study", nargs="?", help="a study file (.toml or .json)")
    p.add_argument("--lecture", action="store_true", help="run the shipped study of the lecture's claims")
    p.add_argument(
        "--problems", type=_list, metavar="P[,P...]", help="catalogue problems (e.g. rosenbrock,beale)"
    )
    p.add_argument(
        "--optimizers", type=_list, metavar="O[,O...]", help=f"fitjax optimizers ({', '.join(OPTIMIZERS)})"
    )
    p.add_argument(
        "--learning-rate", type=_floats, metavar="A[,A...]", help="learning rates swept for every optimizer"
    )
    p.add_argument("--batch-size", type=_pos_int, help="mini-batch size of the sgd optimizer (default 5)")
    p.add_argument("--starts", type=_pos_int, help="starting points per problem (default 100)")
    p.add_argument("--steps", type=_pos_int, help="steps per run (default 1000)")
    p.add_argument("--record-every", type=_pos_int, help="record the loss every k steps (default steps/100)")
    p.add_argument("--seed", type=_checks.seed_arg, help="seed of every random choice (default 0)")
    p.add_argument(
        "--out", default="fitjax-compare", metavar="DIR", help="output folder (default fitjax-compare)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--list-problems", action="store_true", help="list the problem catalogue and exit")
    p.set_defaults(func=run)
    return p


def read_study(path: str | Path) -> dict[str, Any]:
    """A study file's contents as a dict (TOML by default, JSON for ``.json``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise StudyFileError(f"cannot read the study file {str(path)!r}: {err.strerror}") from None
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise StudyFileError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {err}"
        ) from None


def _optax_factory(name: str) -> Any:
    fn = getattr(optax, name, None)
    if not callable(fn):
        raise StudyFileError(f"optimizer 'optax:{name}': optax has no constructor {name!r}")
    return fn


def study_arguments(spec: dict[str, Any], base: Path | None = None) -> dict[str, Any]:
    """The :func:`fitjax.compare` arguments a study file's dict describes."""
    known = {"problems", "optimizers", "starts", "steps", "seed", "record_every", "imports", "deltas"}
    bad = sorted(set(spec) - known)
    if bad:
        raise StudyFileError(f"unknown study key(s) {bad}; a study has {sorted(known)}")
    for mod in spec.get("imports", []):
        if base is not None and str(base) not in sys.path:
            sys.path.insert(0, str(base))
        try:
            importlib.import_module(mod)
        except ImportError as err:
            raise StudyFileError(f"imports: cannot import {mod!r} ({err})") from None
    probs = spec.get("problems")
    if not probs or not isinstance(probs, list):
        raise StudyFileError('problems: give a list of problem names, e.g. problems = ["rosenbrock"]')
    opt_specs = spec.get("optimizers")
    if not opt_specs or not isinstance(opt_specs, dict):
        raise StudyFileError("optimizers: give one table per optimizer, e.g. [optimizers.adam]")
    optimizers, grids, batch_sizes = {}, {}, {}
    for name, table in opt_specs.items():
        if not isinstance(table, dict):
            raise StudyFileError(f"optimizers.{name}: expected a table of settings, got {table!r}")
        table = dict(table)
        kind = table.pop("optimizer", name)
        if "batch_size" in table:
            batch_sizes[name] = int(table.pop("batch_size"))
        if kind.startswith("optax:"):
            optimizers[name] = _optax_factory(kind.removeprefix("optax:"))
        elif kind in OPTIMIZERS:
            optimizers[name] = kind
        else:
            raise StudyFileError(
                f"optimizers.{name}: unknown optimizer {kind!r}; use one of {', '.join(OPTIMIZERS)} "
                "or optax:<constructor>"
            )
        grids[name] = {hp: v if isinstance(v, list) else [v] for hp, v in table.items()}
        if kind.startswith("optax:") and not grids[name]:
            grids[name] = {}
    out: dict[str, Any] = {
        "problems": probs,
        "optimizers": optimizers,
        "grids": {k: v for k, v in grids.items() if v},
        "batch_sizes": batch_sizes,
        "starts": int(spec.get("starts", 100)),
        "steps": int(spec.get("steps", 1000)),
        "seed": int(spec.get("seed", 0)),
    }
    if "record_every" in spec:
        out["record_every"] = int(spec["record_every"])
    if "deltas" in spec:
        out["deltas"] = [float(d) for d in spec["deltas"]]
    # an optax factory with no grid is called once with no arguments
    for name, opt in list(out["optimizers"].items()):
        if callable(opt) and name not in out["grids"]:
            out["optimizers"][name] = opt()
    return out


def _from_flags(args: argparse.Namespace) -> dict[str, Any]:
    if not args.problems or not args.optimizers:
        raise StudyFileError("give a study file, --lecture, or both --problems and --optimizers")
    grid = {"learning_rate": args.learning_rate} if args.learning_rate else {}
    return {
        "problems": args.problems,
        "optimizers": {o: o for o in args.optimizers},
        "grids": {
            o: grid for o in args.optimizers if grid and o not in ("gd_line_search", "backtracking_armijo")
        },
        "batch_sizes": {"sgd": args.batch_size or 5} if "sgd" in args.optimizers else {},
        "starts": 100,
        "steps": 1000,
        "seed": 0,
    }


def run(args: argparse.Namespace) -> int:
    """Run ``fitjax compare`` with parsed arguments; returns the exit code."""
    if args.list_problems:
        for name in _problems.available():
            try:
                desc = _problems.get(name).description
            except ImportError as err:
                desc = f"(unavailable: {err})"
            print(f"{name:18s} {desc}")
        return 0
    out = Path(args.out)
    say = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    command = (
        "fitjax compare " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if sys.argv[1:2] == ["compare"]
        else None
    )
    if args.lecture:
        from fitjax.lecture import claims as lecture

        lecture.run(
            out,
            starts=args.starts,
            steps=args.steps,
            seed=0 if args.seed is None else args.seed,
            progress=say,
            command=command or "fitjax compare --lecture",
        )
        say(f"wrote {out / 'report.md'} and {out / 'report.html'}")
        return 0
    if args.study:
        spec = study_arguments(read_study(args.study), Path(args.study).resolve().parent)
    else:
        spec = _from_flags(args)
    for flag in ("starts", "steps", "seed", "record_every"):
        if getattr(args, flag) is not None:
            spec[flag] = getattr(args, flag)
    seed = spec.pop("seed")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StudyFileError(f"cannot create the output folder {str(out)!r}: {err.strerror}") from None
    study = compare(key=jax.random.key(seed), cache_dir=out / "pairs", progress=say, **spec)
    report.write_outputs(study, out, command=command)
    say(f"wrote {out / 'results.csv'}, {out / 'report.md'} and {out / 'report.html'}")
    return 0
