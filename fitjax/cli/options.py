"""Argument types and checks shared by the commands: one line and exit code 2 for a bad value."""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import NoReturn

from fitjax import _checks
from fitjax.lecture.problems import Problem


class CLIError(Exception):
    """A problem with the command's arguments or output folder: one line, exit code 2."""

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit code 2 (raised, not printed)."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see {self.prog} --help)", prog=self.prog)


def _float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or numbers separated by commas (e.g. 0.01,0.05,0.1), got {text!r}"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"values must be finite numbers, got {text!r}")
    return values


_positive_int = _checks.positive_int_arg


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _grid_size(text: str) -> int:
    value = _positive_int(text)
    if value < 3:
        raise argparse.ArgumentTypeError(f"a grid needs at least 3 points per axis, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class Starts:
    """How to make starting points: ``grid:N`` (or ``grid:N0xN1``) or ``uniform:N``."""

    kind: str
    shape: tuple[int, ...]

    @property
    def runs(self) -> int:
        return math.prod(self.shape)


def _starts(text: str) -> Starts:
    kind, _, size = text.partition(":")
    try:
        if kind == "grid":
            parts = tuple(int(v) for v in size.lower().split("x"))
            shape = parts * 2 if len(parts) == 1 else parts
            if len(shape) == 2 and min(shape) >= 2:
                return Starts("grid", shape)
        elif kind == "uniform":
            n = int(size)
            if n >= 1:
                return Starts("uniform", (n,))
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"expected grid:N (an N x N grid, N >= 2), grid:N0xN1 or uniform:N (N random starts), got {text!r}"
    )


def _box(text: str) -> tuple[tuple[float, float], tuple[float, float]]:
    values = _float_list(text)
    if len(values) != 4 or not (values[0] < values[1] and values[2] < values[3]):
        raise argparse.ArgumentTypeError(f"expected lo0,hi0,lo1,hi1 with lo < hi, got {text!r}")
    return (values[0], values[1]), (values[2], values[3])


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _refuse(args: argparse.Namespace, name: str, applies: bool, why: str) -> None:
    """Refuse an option given on the command line that does not apply here (never ignore it)."""
    if getattr(args, name, None) is not None and not applies:
        raise CLIError(f"{_flag(name)} {why}")


def _check_model_options(args: argparse.Namespace, prob: Problem) -> None:
    """The options of ``sweep`` and ``landscape`` that depend on the model."""
    model = f"--model {prob.name}"
    _refuse(
        args,
        "hidden",
        prob.name == "mlp",
        f"applies to --model mlp only (its hidden units); {model} has none",
    )
    _refuse(
        args,
        "box",
        prob.init is None,
        f"applies to models with two parameters (line, gabor, toy); {model} starts from random "
        "initialisations (--starts uniform:N)",
    )
    if getattr(args, "optimizer", None) is None:
        return
    if args.optimizer == "sgd" and prob.data is None:
        raise CLIError(
            f"--optimizer sgd draws mini-batches from the data; {model} has none: use --optimizer gd"
        )
    _refuse(
        args, "batch_size", prob.data is not None, f"needs data to draw mini-batches from; {model} has none"
    )
    _refuse(
        args,
        "batch_size",
        args.optimizer != "gd",
        "does not apply to --optimizer gd (full-batch gradient descent); "
        "use --optimizer sgd for mini-batches",
    )
