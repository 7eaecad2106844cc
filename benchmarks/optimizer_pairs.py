"""fitjax against its optax equivalent for the other optimizers, on the contenders' workload.

Each pair runs the same optimizer twice on the Gabor workload of ``contenders.py``
(same data, same starts, float32): as the expert writes it (an optax transformation
inside ``jax.vmap`` + ``lax.scan`` + ``jax.jit``, :func:`contenders.expert_scan`) and
as ``fitjax.fit`` runs it. The step sizes scale as 1/N, because the loss is a sum
over the N points:

* ``gd``: ``fitjax.gd(α)`` against ``optax.sgd(α)``, α = 3/N;
* ``momentum``: ``fitjax.momentum(α, β)`` against ``optax.sgd(α(1−β), momentum=β)``
  (optax keeps the trace b = m/(1−β)), α = 3/N, β = 0.9;
* ``armijo``: ``fitjax.backtracking_armijo(max_learning_rate=3/N)`` against
  ``optax.chain(optax.sgd(1.0), optax.scale_by_backtracking_linesearch(15,
  max_learning_rate=3/N))``, the update given ``value``, ``grad`` and ``value_fn``;
* ``bracket``: ``fitjax.gd_line_search(max_dist=3/N)`` (the lecture's four-point
  search, which optax does not have) against a hand-written optax transformation
  that calls :func:`fitjax.bracket_search` on the same line, so the pair measures
  what the engine adds around the same search.

Line searches cost many loss evaluations per step (and under ``vmap`` every run
pays for the slowest search of the batch), so they run ``steps // LINE_SEARCH_DIVISOR``
steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import optax

import fitjax
from benchmarks import contenders as c

STEP_SCALE = 3.0
"""α · N: the step size is STEP_SCALE / N for a sum over N points."""
BETA = 0.9
LINE_SEARCH_DIVISOR = 10
BRACKET_TOL, BRACKET_MAX_ITER = 1e-5, 15
ARMIJO_MAX_BACKTRACKING = 15


@dataclass(frozen=True)
class Pair:
    """One optimizer as fitjax builds it and as an optax user builds it, for N points."""

    name: str
    fitjax: Callable[[int], optax.GradientTransformation]
    optax: Callable[[int], optax.GradientTransformation]
    extra_args: bool = False
    line_search: bool = False

    def steps(self, steps: int) -> int:
        return max(1, steps // LINE_SEARCH_DIVISOR) if self.line_search else steps


def _alpha(points: int) -> float:
    return STEP_SCALE / points


def _bracket_optax(max_dist: float) -> optax.GradientTransformationExtraArgs:
    """GD with the lecture's bracketing search, written as an optax transformation."""

    def update(grads, state, params, *, value_fn, **_):
        def h(s):  # h(s) = L[φ − s·g]
            return value_fn(jax.tree.map(lambda p, g: p - s * g, params, grads))

        found = fitjax.bracket_search(h, max_dist, BRACKET_TOL, BRACKET_MAX_ITER)
        return jax.tree.map(lambda g: -found.step * g, grads), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


PAIRS: dict[str, Pair] = {
    "gd": Pair("gd", lambda n: fitjax.gd(_alpha(n)), lambda n: optax.sgd(_alpha(n))),
    "momentum": Pair(
        "momentum",
        lambda n: fitjax.momentum(_alpha(n), BETA),
        lambda n: optax.sgd(_alpha(n) * (1 - BETA), momentum=BETA),
    ),
    "armijo": Pair(
        "armijo",
        lambda n: fitjax.backtracking_armijo(ARMIJO_MAX_BACKTRACKING, max_learning_rate=_alpha(n)),
        lambda n: optax.chain(
            optax.sgd(1.0),
            optax.scale_by_backtracking_linesearch(ARMIJO_MAX_BACKTRACKING, max_learning_rate=_alpha(n)),
        ),
        extra_args=True,
        line_search=True,
    ),
    "bracket": Pair(
        "bracket",
        lambda n: fitjax.gd_line_search(_alpha(n), BRACKET_TOL, BRACKET_MAX_ITER),
        lambda n: _bracket_optax(_alpha(n)),
        extra_args=True,
        line_search=True,
    ),
}


def contenders(pair: Pair, work: c.Workload, repeat: int) -> dict[str, Callable[[], c.ContenderResult]]:
    """The expert's program and fitjax's on ``work``, as calls to run (expert first).

    Both run ``pair.steps(work.steps)`` steps from ``work.starts``.
    """
    steps = pair.steps(work.steps)
    args = (work.starts, work.x, work.y, steps, repeat)
    expert, ours = f"{pair.name}:optax", f"{pair.name}:fitjax"
    return {
        expert: lambda: c.expert_scan(expert, pair.optax(work.points), *args, extra_args=pair.extra_args),
        ours: lambda: c.fitjax_fit(ours, pair.fitjax(work.points), *args),
    }
