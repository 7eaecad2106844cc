"""The command line's built-in problems (the lecture's line, Gabor and toy loss, a small MLP)
and optimizers, with their defaults and starting points."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

import fitjax
from fitjax.cli.options import CLIError, Starts, _flag
from fitjax.lecture import problems as lecture_problems
from fitjax.lecture.problems import Problem

MODELS = ("line", "gabor", "mlp", "toy")


MATHS = ("auto", "platform", "polynomial")


def problem(name: str, *, seed: int = 0, hidden: int = 16, n_data: int = 64, maths: str = "auto") -> Problem:
    """The built-in problems: the lecture's line and Gabor fits, its Adam toy loss, a small MLP.

    ``maths`` chooses the float32 ``sin``, ``cos`` and ``exp``: ``"auto"`` leaves the choice
    to fitjax (its polynomials on a CPU, the platform's elsewhere), ``"platform"`` marks the
    loss with :func:`fitjax.platform_math`, ``"polynomial"`` wraps it in
    :func:`fitjax.polynomial_math` on every platform.
    """
    prob = _problem(name, seed=seed, hidden=hidden, n_data=n_data)
    if maths == "polynomial":
        return dataclasses.replace(prob, loss=fitjax.polynomial_math(prob.loss))
    if maths == "platform":
        return dataclasses.replace(prob, loss=fitjax.platform_math(prob.loss))
    return prob


def _problem(name: str, *, seed: int, hidden: int, n_data: int) -> Problem:
    """The lecture's problem ``name`` (:mod:`fitjax.lecture.problems`), or the MLP on synthetic data."""
    if name in lecture_problems.NAMES:
        return lecture_problems.problem(name)
    if name == "mlp":
        data = fitjax.datasets.synthetic_regression(jax.random.key(seed), n_data)
        sizes = (1, hidden, 1)
        about = {
            "data": f"fitjax.datasets.synthetic_regression(jax.random.key({seed}), {n_data})",
            "points": n_data,
            "layer_sizes": list(sizes),
        }
        return Problem(
            "mlp",
            fitjax.least_squares(fitjax.mlp),
            data,
            None,
            init=lambda key: fitjax.init_mlp(key, sizes),
            description=about,
        )
    raise CLIError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


# name -> (constructor, the hyperparameters it takes)
OPTIMIZERS: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "gd": (fitjax.gd, ("learning_rate",)),
    "sgd": (fitjax.sgd, ("learning_rate",)),
    "momentum": (fitjax.momentum, ("learning_rate", "beta")),
    "nesterov": (fitjax.nesterov, ("learning_rate", "beta")),
    "nesterov-classical": (fitjax.nesterov_classical, ("learning_rate", "momentum")),
    "normalized": (fitjax.normalized, ("learning_rate", "eps")),
    "adam": (fitjax.adam, ("learning_rate", "beta", "gamma", "eps")),
}
HYPERPARAMS = ("learning_rate", "beta", "gamma", "eps", "momentum")
SGD_BATCH = 5


def default_learning_rate(model: str, optimizer: str) -> float:
    """The learning rate used when ``--learning-rate`` is not given: one that converges
    without divergence from the default starts of every built-in model.

    The MLP's loss is a sum over 64 points, so its steps are smaller (0.003; 0.001
    for nesterov-classical, whose effective step is α/(1 − μ); 0.01 for adam).
    """
    if model == "mlp":
        return {"adam": 0.01, "nesterov-classical": 0.001}.get(optimizer, 0.003)
    return 0.05 if optimizer == "adam" else 0.01


def _hyperparams(args: argparse.Namespace) -> dict[str, tuple[float, ...]]:
    """The hyperparameters given on the command line, checked against the optimizer."""
    _, takes = OPTIMIZERS[args.optimizer]
    given = {name: getattr(args, name) for name in HYPERPARAMS if getattr(args, name) is not None}
    for name in given:
        if name not in takes:
            raise CLIError(
                f"{_flag(name)} does not apply to --optimizer {args.optimizer}; "
                f"it takes {', '.join(_flag(t) for t in takes)}"
            )
    given.setdefault("learning_rate", (default_learning_rate(args.model, args.optimizer),))
    make, _ = OPTIMIZERS[args.optimizer]
    firsts = {k: v[0] for k, v in given.items()}
    for name, values in given.items():  # every value checked up front, one at a time
        for i, value in enumerate(values):
            try:
                make(**{**firsts, name: value}).init(np.zeros(1, np.float32))
            except ValueError as err:
                raise CLIError(f"{err} ({_flag(name)}: value {i + 1} of {len(values)})") from None
    return given


def _optimizer(name: str, values: dict[str, tuple[float, ...]]) -> Any:
    make, _ = OPTIMIZERS[name]
    return make(**{k: v[0] for k, v in values.items()})


def _flat(params: Any) -> np.ndarray:
    """Each run's parameters as one row: leaves with leading run axes flattened together."""
    leaves = jax.tree.leaves(params)
    lead = np.shape(leaves[0])[:1]
    return np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(params)).reshape(lead + (-1,))


def _make_starts(
    prob: Problem, starts: Starts, box: Any, key: jax.Array
) -> tuple[Any, tuple[np.ndarray, np.ndarray] | None]:
    """Starting points, and for grid starts the two axes of values."""
    if prob.init is not None:
        if starts.kind == "grid":
            raise CLIError(
                f"--starts grid: needs a model with two parameters (line, gabor, toy); "
                f"for --model {prob.name} use --starts uniform:N (N random initialisations)"
            )
        return jax.vmap(prob.init)(jax.random.split(key, starts.runs)), None
    (lo0, hi0), (lo1, hi1) = box
    if starts.kind == "grid":
        v0, v1 = np.linspace(lo0, hi0, starts.shape[0]), np.linspace(lo1, hi1, starts.shape[1])
        return fitjax.inits.grid(v0, v1), (v0, v1)
    return fitjax.inits.uniform(key, starts.runs, [lo0, lo1], [hi0, hi1]), None


def _default_starts(prob: Problem) -> Starts:
    return Starts("uniform", (16,)) if prob.init else Starts("grid", (32, 32))
