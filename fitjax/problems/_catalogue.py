"""The :class:`Problem` type and the catalogue's registry of named problems."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from fitjax.problems import datasets, inits, ml
from fitjax.problems import functions as fn
from fitjax.problems.losses import least_squares, toy_loss
from fitjax.problems.models import GABOR_W_LECTURE, GABOR_W_NOTEBOOK, Gabor, init_mlp, line, mlp

PyTree = Any


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A loss to minimise, with where to start and what its minimum is.

    Attributes:
      name: a short name (used in tables, file names and study files).
      loss: ``loss(params, data) -> scalar``, as :func:`fitjax.fit` takes it. A module
        function or a frozen dataclass reuses compiled programs across calls.
      data: the data handed to ``loss`` (``None`` for a plain function).
      low, high: the box starts are drawn uniformly from (pytrees of the parameters'
        structure, or lists of numbers for a vector); or
      init: ``init(key) -> params``, one start from a key (for pytree models).
      minimum: the minimum value of ``loss`` where it is known, else ``None`` (a study
        then measures against the best value found in it, and says so).
      minimisers: points where ``loss`` equals ``minimum`` (may be empty).
      description: one line on what the problem is.
    """

    name: str
    loss: Callable[[PyTree, Any], jax.Array]
    data: Any = None
    low: Any = None
    high: Any = None
    init: Callable[[jax.Array], PyTree] | None = None
    minimum: float | None = None
    minimisers: tuple = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and self.name and self.name.replace("_", "").isalnum()):
            raise ValueError(
                "name must be a non-empty word of letters, digits and '_' (it names files), "
                f"got {self.name!r}"
            )
        if not callable(self.loss):
            raise TypeError(
                f"loss of problem {self.name!r} must be a function loss(params, data), got {self.loss!r}"
            )
        box = self.low is not None or self.high is not None
        if box == (self.init is not None) or (box and (self.low is None or self.high is None)):
            raise ValueError(
                f"problem {self.name!r} needs either a start box (low= and high=) or init=, "
                "not both or neither"
            )
        if self.init is not None and not callable(self.init):
            raise TypeError(f"init of problem {self.name!r} must be a function init(key) -> params")
        if self.minimum is not None:
            m = float(self.minimum)
            if not np.isfinite(m):
                raise ValueError(
                    f"minimum of problem {self.name!r} must be finite or None, got {self.minimum!r}"
                )
            object.__setattr__(self, "minimum", m)
        object.__setattr__(self, "minimisers", tuple(self.minimisers))

    def starts(self, key: jax.Array, n: int) -> PyTree:
        """``n`` starting points with a leading run axis, from ``key``."""
        if self.init is not None:
            if not (isinstance(n, int) and n >= 1):
                raise ValueError(f"n must be a whole number >= 1, got {n!r}")
            return jax.vmap(self.init)(jax.random.split(key, n))
        return inits.uniform(key, n, self.low, self.high)

    def value(self, params: PyTree) -> float:
        """The loss at one set of parameters, as a Python float."""
        return float(self.loss(params, self.data))


# ----------------------------------------------------------------------------- the registry

_BUILDERS: dict[str, Callable[..., Problem]] = {}
_BUILTIN: set[str] = set()


def register(problem: Problem | Callable[..., Problem], *, name: str | None = None, replace: bool = False):
    """Add a problem to the catalogue, under its name, so that :func:`get` and study files find it.

    ``problem`` is a :class:`Problem`, or a function of keyword options that builds one
    (then ``name`` is required). Returns ``problem``, so it can decorate a builder.
    Registering a name that is taken raises ``ValueError`` unless ``replace=True``.
    """
    if isinstance(problem, Problem):
        key, builder = name or problem.name, _fixed(problem)
    elif callable(problem):
        if name is None:
            raise ValueError("register(builder) needs name=: the name the builder is found by")
        key, builder = name, problem
    else:
        raise TypeError(
            f"register takes a fitjax.problems.Problem or a function returning one, got {problem!r}"
        )
    if key in _BUILDERS and not replace:
        raise ValueError(f"a problem named {key!r} is already registered; pass replace=True to replace it")
    _BUILDERS[key] = builder
    return problem


def _fixed(problem: Problem) -> Callable[..., Problem]:
    def build() -> Problem:
        return problem

    return build


def unregister(name: str) -> None:
    """Remove a user-registered problem (the built-in ones stay)."""
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in problem and cannot be removed")
    _BUILDERS.pop(name, None)


def available() -> tuple[str, ...]:
    """The names :func:`get` knows, built-in first."""
    return tuple(sorted(_BUILTIN)) + tuple(sorted(set(_BUILDERS) - _BUILTIN))


def get(name: str | Problem, **options: Any) -> Problem:
    """The problem called ``name``, built with ``options`` (e.g. ``dim=10``).

    ``"rastrigin:10"`` is short for ``get("rastrigin", dim=10)``. A :class:`Problem`
    is returned as it is.
    """
    if isinstance(name, Problem):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a problem is a name or a fitjax.problems.Problem, got {name!r}")
    base, _, dim = name.partition(":")
    if dim:
        try:
            options = {**options, "dim": int(dim)}
        except ValueError:
            raise ValueError(f"{name!r}: the part after ':' is the dimension, a whole number") from None
    if base not in _BUILDERS:
        raise ValueError(f"unknown problem {base!r}; the catalogue has {', '.join(available())}")
    builder = _BUILDERS[base]
    accepted = inspect.signature(builder).parameters
    bad = sorted(set(options) - set(accepted))
    if bad:
        raise ValueError(f"problem {base!r} takes no option(s) {bad}; it takes {sorted(accepted) or 'none'}")
    prob = builder(**options)
    if dim and prob.name == base:
        prob = dataclasses.replace(prob, name=f"{base}{int(dim)}d")
    return prob


def _builtin(name: str):
    def deco(builder: Callable[..., Problem]) -> Callable[..., Problem]:
        _BUILDERS[name] = builder
        _BUILTIN.add(name)
        return builder

    return deco


def _dim(name: str, dim: int, least: int = 1) -> int:
    if not (isinstance(dim, int) and dim >= least):
        raise ValueError(f"dim of {name} must be a whole number >= {least}, got {dim!r}")
    return dim


def _box(lo: float, hi: float, dim: int) -> tuple[list[float], list[float]]:
    return [float(lo)] * dim, [float(hi)] * dim


# ----------------------------------------------------------------------------- the lecture's problems


def _notebook_box(section: str) -> tuple[list[float], list[float]]:
    grid = datasets.notebook()[section]["loss_plot_grid"]
    return [grid["phi0"][0], grid["phi1"][0]], [grid["phi0"][1], grid["phi1"][1]]


@_builtin("line")
def _line() -> Problem:
    x, y = datasets.line()
    xs, ys = np.asarray(x, np.float64), np.asarray(y, np.float64)
    design = np.stack([np.ones_like(xs), xs], axis=1)
    phi, *_ = np.linalg.lstsq(design, ys, rcond=None)
    minimum = float(np.sum((design @ phi - ys) ** 2))
    low, high = _notebook_box("linear_regression")
    return Problem(
        "line",
        least_squares(line),
        (x, y),
        low=low,
        high=high,
        minimum=minimum,
        minimisers=(phi,),
        description="the lecture's straight line on its 12 points; convex, "
        "minimum by least squares (float64)",
    )


def _gabor(w: float, name: str) -> Problem:
    low, high = _notebook_box("gabor")
    return Problem(
        name,
        least_squares(Gabor(w)),
        datasets.gabor(),
        low=low,
        high=high,
        description=f"the lecture's Gabor model (envelope w = {w:g}) on its 30 points; "
        "non-convex, minimum not known in closed form",
    )


@_builtin("gabor8")
def _gabor8() -> Problem:
    return _gabor(GABOR_W_LECTURE, "gabor8")


@_builtin("gabor32")
def _gabor32() -> Problem:
    return _gabor(GABOR_W_NOTEBOOK, "gabor32")


@_builtin("toy")
def _toy() -> Problem:
    lo, hi, _ = datasets.notebook()["adam_toy"]["plot_grid"]
    return Problem(
        "toy",
        toy_loss,
        None,
        low=[lo, lo],
        high=[hi, hi],
        minimum=0.0,
        minimisers=([0.7, 0.0],),
        description="the lecture's Adam toy loss 1 - exp(-2 φ1²) exp(-(φ0 - 0.7)²/8): "
        "steep in φ1, flat in φ0",
    )


# ----------------------------------------------------------------------------- classical functions


@_builtin("rosenbrock")
def _rosenbrock(dim: int = 2) -> Problem:
    dim = _dim("rosenbrock", dim, 2)
    return Problem(
        "rosenbrock",
        fn.rosenbrock,
        None,
        *_box(-2.0, 2.0, dim),
        minimum=0.0,
        minimisers=([1.0] * dim,),
        description=f"Rosenbrock's curved valley in {dim} dimensions; minimum 0 at (1, ..., 1)",
    )


@_builtin("himmelblau")
def _himmelblau() -> Problem:
    return Problem(
        "himmelblau",
        fn.himmelblau,
        None,
        *_box(-5.0, 5.0, 2),
        minimum=0.0,
        minimisers=tuple(list(p) for p in fn.HIMMELBLAU_X),
        description="Himmelblau's function: four global minima, all 0",
    )


@_builtin("beale")
def _beale() -> Problem:
    return Problem(
        "beale",
        fn.beale,
        None,
        *_box(-4.5, 4.5, 2),
        minimum=0.0,
        minimisers=([3.0, 0.5],),
        description="Beale's function: flat plateaus and steep ridges; minimum 0 at (3, 0.5)",
    )


@_builtin("camel")
def _camel() -> Problem:
    x = list(fn.CAMEL_X)
    return Problem(
        "camel",
        fn.camel,
        None,
        low=[-3.0, -2.0],
        high=[3.0, 2.0],
        minimum=fn.CAMEL_F,
        minimisers=(x, [-x[0], -x[1]]),
        description="the six-hump camel: six minima, two global at ±(0.0898, -0.7127), value -1.0316",
    )


@_builtin("rastrigin")
def _rastrigin(dim: int = 2) -> Problem:
    dim = _dim("rastrigin", dim)
    return Problem(
        "rastrigin",
        fn.rastrigin,
        None,
        *_box(-5.12, 5.12, dim),
        minimum=0.0,
        minimisers=([0.0] * dim,),
        description=f"Rastrigin's function in {dim} dimensions: a local minimum near every integer point",
    )


@_builtin("ackley")
def _ackley(dim: int = 2) -> Problem:
    dim = _dim("ackley", dim)
    return Problem(
        "ackley",
        fn.ackley,
        None,
        *_box(-32.768, 32.768, dim),
        minimum=0.0,
        minimisers=([0.0] * dim,),
        description=f"Ackley's function in {dim} dimensions: a nearly flat outer region, many small minima",
    )


@_builtin("styblinski_tang")
def _styblinski_tang(dim: int = 2) -> Problem:
    dim = _dim("styblinski_tang", dim)
    return Problem(
        "styblinski_tang",
        fn.styblinski_tang,
        None,
        *_box(-5.0, 5.0, dim),
        minimum=fn.STYBLINSKI_TANG_F * dim,
        minimisers=([fn.STYBLINSKI_TANG_X] * dim,),
        description=f"Styblinski-Tang in {dim} dimensions: 2^{dim} minima, the global one at x_i = -2.9035",
    )


# ----------------------------------------------------------------------------- machine-learning problems


def _scaled_gabor() -> tuple[jax.Array, jax.Array]:
    x, y = datasets.gabor()
    return x / 15.0, y


@dataclasses.dataclass(frozen=True)
class _MLPInit:
    sizes: tuple[int, ...]

    def __call__(self, key: jax.Array) -> PyTree:
        return init_mlp(key, self.sizes)


@_builtin("gabor_mlp")
def _gabor_mlp(hidden: int = 16) -> Problem:
    _dim("gabor_mlp hidden", hidden)
    return Problem(
        "gabor_mlp",
        least_squares(mlp),
        _scaled_gabor(),
        init=_MLPInit((1, hidden, 1)),
        description=f"a tanh MLP 1-{hidden}-1 fitted to the lecture's 30 Gabor points (x scaled by 1/15); "
        "minimum not known",
    )


@_builtin("gabor_mlp_deep")
def _gabor_mlp_deep(depth: int = 6, width: int = 8) -> Problem:
    _dim("gabor_mlp_deep depth", depth)
    _dim("gabor_mlp_deep width", width)
    sizes = (1, *([width] * depth), 1)
    return Problem(
        "gabor_mlp_deep",
        least_squares(mlp),
        _scaled_gabor(),
        init=_MLPInit(sizes),
        description=f"a deep tanh MLP ({depth} hidden layers of {width}) on the 30 Gabor points; "
        "minimum not known",
    )


@_builtin("digits_logistic")
def _digits_logistic(n: int = 500) -> Problem:
    return Problem(
        "digits_logistic",
        ml.mlp_classifier,
        ml.digits_data(n),
        init=_MLPInit((64, 10)),
        description=f"logistic regression on the first {n} of scikit-learn's digits (needs scikit-learn)",
    )


@_builtin("digits_mlp")
def _digits_mlp(n: int = 500, hidden: int = 32) -> Problem:
    return Problem(
        "digits_mlp",
        ml.mlp_classifier,
        ml.digits_data(n),
        init=_MLPInit((64, hidden, 10)),
        description=f"a 64-{hidden}-10 tanh MLP on the first {n} of scikit-learn's digits "
        "(needs scikit-learn)",
    )
