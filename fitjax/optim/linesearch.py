r"""Line searches: how far to step along the negative gradient.

The lecture's first answer to "how big a step" is to search along the line
:math:`h(s) = L[\phi - s\, g]`, :math:`g = \partial L/\partial\phi`, for the step
:math:`s \ge 0` that lowers the loss most, then take it: :math:`\phi \leftarrow \phi - s\, g`.

* :func:`bracket_search` is the lecture's four-point bracketing search (the
  companion notebooks' procedure, exactly), written for one line and safe under
  ``jit`` and ``vmap``.
* :func:`gd_line_search` is gradient descent that runs it at every step.
* :func:`backtracking_armijo` is gradient descent with the backtracking search
  that optax users know (``optax.scale_by_backtracking_linesearch``).

Both optimizers are :class:`~fitjax.Optimizer` s (optax
``GradientTransformationExtraArgs``): their ``update`` takes the loss through the
``value_fn`` keyword, as optax's own line searches do, and :func:`fitjax.fit`
passes it. Their settings live in the state as arrays, so :func:`fitjax.sweep`
can grid them without recompiling, and their state counts the loss evaluations
the search used (read them with :func:`loss_evaluations`).

**What a batch of searches costs.** A search is a ``lax.while_loop`` that stops
when its own bracket is small enough. Under ``jax.vmap`` (how :func:`fitjax.fit`
runs many starts) the loop's condition becomes one per run and the loop runs
until *every* run in the batch has finished; JAX keeps a finished run's values
unchanged by masking (a select of old and new values), so its step and its count
are exactly those of a single search. Masked runs are still computed, on CPU,
GPU and TPU alike (this is JAX's batching rule for ``while_loop``, the same on
every backend): the loop body runs for the whole batch, so a batch step costs
``4 × (most iterations any run needs) × runs`` loss evaluations, not the sum of
what each run needs. Nothing is saved by a run finishing early unless the runs
are not batched together (a Python loop or ``lax.map`` over single runs). The counts in the state (and
:func:`loss_evaluations`) are the evaluations each run *needed*, which is what a
loop of single runs would spend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from fitjax import _checks
from fitjax.optim.protocol import Hyperparam, Optimizer, OptState, PyTree, Rule, build, tree_scale

LineFn = Callable[[jax.Array], jax.Array]

# ----------------------------------------------------------------------------- the bracketing search


class SearchResult(NamedTuple):
    """Outcome of one line search.

    Attributes:
      step: the chosen step length ``s``.
      evaluations: how many times the search evaluated the loss (int32).
    """

    step: jax.Array
    evaluations: jax.Array


class _Bracket(NamedTuple):
    a: jax.Array
    b: jax.Array
    c: jax.Array
    d: jax.Array
    iterations: jax.Array


def _bracket_search(h: LineFn, max_dist: Any, tol: Any, max_iter: Any) -> SearchResult:
    dist = jnp.asarray(max_dist)
    if not jnp.issubdtype(dist.dtype, jnp.floating):
        dist = dist.astype(float)
    start = _Bracket(jnp.zeros_like(dist), 0.33 * dist, 0.66 * dist, dist, jnp.zeros((), jnp.int32))
    max_iter = jnp.asarray(max_iter).astype(jnp.int32)

    def unfinished(s: _Bracket) -> jax.Array:
        return (jnp.abs(s.b - s.c) > tol) & (s.iterations < max_iter)

    def iterate(s: _Bracket) -> _Bracket:
        a, b, c, d = s.a, s.b, s.c, s.d
        ha, hb, hc, hd = h(a), h(b), h(c), h(d)  # four fresh evaluations
        # Rule 1: h(a) is the lowest: pull b, c, d halfway towards a.
        rule1 = ha <= jnp.minimum(hb, jnp.minimum(hc, hd))
        pulled = (a, a + (b - a) / 2, a + (c - a) / 2, a + (d - a) / 2)
        # Rule 2: h(b) < h(c): the minimum lies in [a, c], so d <- c.
        # Rule 3: otherwise it lies in [b, d], so a <- b.
        rule2 = hb < hc
        a2, d2 = jnp.where(rule2, a, b), jnp.where(rule2, c, d)
        thirds = (a2, a2 + (d2 - a2) / 3, a2 + 2 * (d2 - a2) / 3, d2)
        na, nb, nc, nd = (jnp.where(rule1, p, t) for p, t in zip(pulled, thirds, strict=True))
        return _Bracket(na, nb, nc, nd, s.iterations + 1)

    end = lax.while_loop(unfinished, iterate, start)
    return SearchResult((end.b + end.c) / 2, 4 * end.iterations)


def bracket_search(h: LineFn, max_dist: Any, tol: Any, max_iter: Any) -> SearchResult:
    r"""The lecture's four-point bracketing line search for the minimum of ``h`` on ``[0, D]``.

    Start with :math:`a = 0,\ b = 0.33D,\ c = 0.66D,\ d = D` (``D = max_dist``).
    While :math:`|b - c| >` ``tol`` and fewer than ``max_iter`` iterations have run,
    evaluate :math:`h` at all four points and

    1. if :math:`h(a) \le \min(h(b), h(c), h(d))`: move :math:`b, c, d` halfway
       towards :math:`a`;
    2. else if :math:`h(b) < h(c)`: :math:`d \leftarrow c`, then
       :math:`b \leftarrow a + (d-a)/3,\ c \leftarrow a + 2(d-a)/3`;
    3. else :math:`a \leftarrow b`, then the same two thirds.

    Return :math:`s = (b + c)/2`. For an ``h`` that falls then rises on ``[0, D]``
    each rule keeps the minimiser in :math:`[a, d]`, so on leaving through the
    tolerance :math:`|s - s^\star| \le 0.505\,(d-a) \le 1.53\,` ``tol``. The bracket
    never grows past ``D``: if ``h`` still falls at ``D`` the search returns a
    step just short of ``D``.

    Every iteration evaluates ``h`` four times, ``h(a)`` and ``h(d)`` included
    (as the lecture's notebooks do). The function is pure: it runs under ``jit``
    and ``vmap``, and ``max_dist``, ``tol`` and ``max_iter`` may be traced arrays.
    Under ``vmap`` finished searches are masked, not skipped: see the module notes.

    Args:
      h: the loss along the line, ``s -> L[φ − s·g]``, a scalar for a scalar.
      max_dist: ``D > 0``, the length of the interval searched.
      tol: ``> 0``, stop once ``|b − c| ≤ tol``.
      max_iter: ``≥ 1``, the most iterations.

    Returns:
      A :class:`SearchResult` ``(step, evaluations)`` with ``evaluations = 4 ×
      iterations``.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> found = fitjax.bracket_search(lambda s: (s - 0.3) ** 2, max_dist=1.0, tol=1e-4, max_iter=50)
      >>> round(float(found.step), 4), int(found.evaluations)
      (0.3, 80)
    """
    _checks.positive("max_dist", max_dist)
    _checks.positive("tol", tol)
    _checks.integer_at_least("max_iter", max_iter, 1)
    if not callable(h):
        raise TypeError(f"h must be a function s -> loss along the line, got {h!r}")
    return _bracket_search(h, max_dist, tol, max_iter)


# ----------------------------------------------------------------------------- optimizer states


class LineSearchState(NamedTuple):
    """Inner state of :func:`gd_line_search`.

    Attributes:
      step: the step length ``s`` chosen at the last step.
      evaluations: loss evaluations the last step's search used.
      total_evaluations: loss evaluations of all steps so far.
    """

    step: jax.Array
    evaluations: jax.Array
    total_evaluations: jax.Array


class ArmijoState(NamedTuple):
    """Inner state of :func:`backtracking_armijo`.

    Attributes:
      learning_rate: the step length accepted at the last step (1 before the first
        step); the next search starts from it.
      evaluations: loss evaluations the last step's search used.
      total_evaluations: loss evaluations of all steps so far.
    """

    learning_rate: jax.Array
    evaluations: jax.Array
    total_evaluations: jax.Array


_COUNTED = (LineSearchState, ArmijoState)


def _no_count() -> jax.Array:
    return jnp.zeros((), jnp.int32)


def _step_dtype(params: PyTree) -> jnp.dtype:
    return optax.tree.dtype(params, "highest")


def _need_loss(name: str, params: PyTree, value_fn: Any) -> None:
    if params is None or not callable(value_fn):
        raise TypeError(
            f"{name}.update needs the loss as value_fn=lambda params: loss(params, batch) "
            f"and the params (got value_fn={value_fn!r}); fitjax.fit passes both, and in plain optax "
            "code pass them as optax's line searches take them"
        )


def _at_least(low: int) -> Callable[[str, Any], None]:
    return lambda name, value: _checks.integer_at_least(name, value, low)


# ----------------------------------------------------------------------------- gradient descent + bracketing


def _bracket_step(g, inner, hp, lr, t, *, params, value, grad, value_fn):
    del lr, t, value, grad  # the search evaluates h(0) itself, as the lecture's procedure does
    _need_loss("gd_line_search", params, value_fn)

    def h(s):  # h(s) = L[φ − s·g]
        return value_fn(jax.tree.map(lambda p, g: p - s.astype(p.dtype) * g, params, g))

    found = _bracket_search(h, hp["max_dist"], hp["tol"], hp["max_iter"])
    # φ ← φ − s·g
    step = found.step.astype(inner.step.dtype)
    inner = LineSearchState(step, found.evaluations, inner.total_evaluations + found.evaluations)
    return tree_scale(-step, g), inner


def _bracket_init(params: PyTree) -> LineSearchState:
    return LineSearchState(jnp.zeros((), _step_dtype(params)), _no_count(), _no_count())


BRACKET = Rule(
    "gd_line_search",
    _bracket_step,
    _bracket_init,
    (
        Hyperparam("max_dist", _checks.positive, lost_at_zero=True),
        Hyperparam("tol", _checks.positive, lost_at_zero=True),
        Hyperparam("max_iter", _at_least(1), integer=True),
    ),
    uses_loss=True,
)


def gd_line_search(max_dist: Any = 0.1, tol: Any = 1e-5, max_iter: Any = 15) -> Optimizer:
    r"""Gradient descent with the lecture's bracketing line search at every step.

    .. math::
        s_t = \operatorname{bracket\_search}\big(s \mapsto L[\phi_t - s\, g_t];\ D, \text{tol}\big),
        \qquad \phi_{t+1} \leftarrow \phi_t - s_t\, g_t,

    with :math:`g_t = \partial L[\phi_t]/\partial\phi` and the search of
    :func:`bracket_search`. Each search iteration costs four loss evaluations; the
    state counts them (:func:`loss_evaluations`). The defaults are the notebooks'
    line-search helper (``max_dist`` 0.1, threshold 1e-5, 15 iterations); the
    notebooks' Gabor fit uses ``max_dist=2.0``.

    ``update(grads, state, params, *, value_fn, **extra)`` needs the loss as
    ``value_fn(params, **extra)`` (``value`` and ``grad`` are accepted and unused);
    :func:`fitjax.fit` passes ``value_fn`` (on the current mini-batch, when there
    is one). Settings are held in the state as arrays, so ``fitjax.sweep(...,
    grid={"max_dist": ..., "max_iter": ...})`` runs a grid in one program.

    Args:
      max_dist: ``D > 0``, the longest step searched (in units of the gradient).
      tol: ``> 0``, the bracket width at which a search stops.
      max_iter: ``≥ 1``, the most search iterations per step.

    Example:
      >>> import jax, jax.numpy as jnp, fitjax
      >>> loss = fitjax.least_squares(fitjax.line)
      >>> res = fitjax.fit(loss, fitjax.gd_line_search(max_dist=0.1, tol=1e-5, max_iter=15),
      ...                  jnp.array([[1.6, -0.5]]), fitjax.datasets.line(), steps=20, keep_state=True)
      >>> round(float(res.loss[0]), 3)   # the least-squares minimum is 0.1999
      0.2
      >>> counts = fitjax.loss_evaluations(res)   # 15 iterations of 4 evaluations, every step
      >>> int(counts.last_step[0]), int(counts.total[0])
      (60, 1200)
    """
    return build(BRACKET, max_dist=max_dist, tol=tol, max_iter=max_iter)


# ----------------------------------------------------------------------------- backtracking (Armijo)


class _Backtrack(NamedTuple):
    learning_rate: jax.Array
    decrease_error: jax.Array
    iterations: jax.Array


def _armijo_step(g, inner, hp, lr, t, *, params, value, grad, value_fn):
    del lr, t
    _need_loss("backtracking_armijo", params, value_fn)
    loss = value_fn
    dtype = inner.learning_rate.dtype  # the settings meet the step length in its dtype
    hp = {k: v.astype(dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v for k, v in hp.items()}
    if value is None:
        raise TypeError("backtracking_armijo.update needs value=loss(params), the loss at params")
    c, shrink = hp["slope_rtol"], hp["decrease_factor"]
    u = tree_scale(-1.0, g)  # the direction, −g
    slope = optax.tree.vdot(u, g if grad is None else grad)  # ⟨u, ∇L⟩ = −‖g‖²

    def unfinished(s: _Backtrack) -> jax.Array:
        return (s.decrease_error > 0) & (s.iterations <= hp["max_backtracking_steps"])

    def iterate(s: _Backtrack) -> _Backtrack:
        eta = jnp.where(s.iterations > 0, shrink * s.learning_rate, s.learning_rate)
        new_value = loss(optax.tree.add_scale(params, eta, u))
        # Armijo: L[φ + η·u] ≤ L[φ] + c·η·⟨u, ∇L⟩; a NaN loss counts as failing.
        error = new_value - value - eta * c * slope
        error = jnp.maximum(jnp.where(jnp.isnan(error), jnp.inf, error), 0.0)
        return _Backtrack(
            eta.astype(s.learning_rate.dtype), error.astype(s.decrease_error.dtype), s.iterations + 1
        )

    guess = jnp.minimum(hp["increase_factor"] * inner.learning_rate, hp["max_learning_rate"])
    end = lax.while_loop(
        unfinished, iterate, _Backtrack(guess, jnp.asarray(jnp.inf, guess.dtype), _no_count())
    )
    # A search that only ever saw an infinite (or NaN) loss takes no step at all.
    eta = jnp.where(jnp.isinf(end.decrease_error), 0.0, end.learning_rate).astype(guess.dtype)
    # φ ← φ + η·u
    return tree_scale(eta, u), ArmijoState(eta, end.iterations, inner.total_evaluations + end.iterations)


def _armijo_init(params: PyTree) -> ArmijoState:
    return ArmijoState(jnp.ones((), _step_dtype(params)), _no_count(), _no_count())


ARMIJO = Rule(
    "backtracking_armijo",
    _armijo_step,
    _armijo_init,
    (
        Hyperparam("max_backtracking_steps", _at_least(0), integer=True),
        Hyperparam("slope_rtol", _checks.unit_interval),
        Hyperparam(
            "decrease_factor",
            lambda name, value: _checks.interval(name, value, 0, 1, low_open=True, high_open=True),
        ),
        Hyperparam("increase_factor", lambda name, value: _checks.interval(name, value, 1, float("inf"))),
        Hyperparam("max_learning_rate", _checks.positive, lost_at_zero=True),
    ),
    uses_loss=True,
)


def backtracking_armijo(
    max_backtracking_steps: Any = 15,
    slope_rtol: Any = 1e-4,
    decrease_factor: Any = 0.8,
    increase_factor: Any = 1.5,
    max_learning_rate: Any = 1.0,
) -> Optimizer:
    r"""Gradient descent with a backtracking line search and the Armijo condition.

    Each step starts from the guess :math:`\eta \leftarrow \min(\kappa\,
    \eta_{t-1},\ \eta_{\max})` (:math:`\eta_0 = 1`) and multiplies it by
    :math:`\rho` until the step :math:`u = -g` lowers the loss enough:

    .. math::
        L[\phi_t + \eta\, u] \le L[\phi_t] + c\, \eta\, \langle u, g\rangle
        = L[\phi_t] - c\, \eta\, \lVert g \rVert^2,
        \qquad \phi_{t+1} \leftarrow \phi_t + \eta\, u.

    At most ``max_backtracking_steps + 1`` step lengths are tried (one loss
    evaluation each, counted in the state). If none passes, the last one tried
    is taken anyway; if every loss seen was infinite or NaN, the step is 0 (and,
    as the next guess is then :math:`\kappa \cdot 0 = 0`, the run stays put).

    This equals ``optax.chain(optax.sgd(1.0),
    optax.scale_by_backtracking_linesearch(max_backtracking_steps, slope_rtol,
    decrease_factor, increase_factor, max_learning_rate))`` step for step (its
    ``atol = rtol = 0``; checked in float64 by ``tests/test_linesearch.py``). The
    ``update`` takes ``value`` (the loss at ``params``) and ``value_fn`` as optax's
    does, and :func:`fitjax.fit` passes both. Settings are arrays in the state, so
    :func:`fitjax.sweep` can grid them.

    Args:
      max_backtracking_steps: ``≥ 0``, the most times the step is shrunk.
      slope_rtol: ``c`` in ``[0, 1)``, the fraction of the linear decrease asked for.
      decrease_factor: ``ρ`` in ``(0, 1)``, the factor that shrinks the step.
      increase_factor: ``κ ≥ 1``: each search starts from ``κ`` times the last
        accepted step (1 keeps it; ``inf`` starts from ``max_learning_rate``).
      max_learning_rate: ``η_max > 0``, the largest step tried.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> loss = fitjax.least_squares(fitjax.line)
      >>> res = fitjax.fit(loss, fitjax.backtracking_armijo(max_learning_rate=0.1),
      ...                  jnp.array([[1.6, -0.5]]), fitjax.datasets.line(), steps=200)
      >>> round(float(res.loss[0]), 3)
      0.2

    References:
      L. Armijo, *Minimization of functions having Lipschitz continuous first
      partial derivatives*, Pacific J. Math. 16 (1966). Nocedal & Wright,
      *Numerical Optimization*, 2nd ed., section 3.1.
    """
    return build(
        ARMIJO,
        max_backtracking_steps=max_backtracking_steps,
        slope_rtol=slope_rtol,
        decrease_factor=decrease_factor,
        increase_factor=increase_factor,
        max_learning_rate=max_learning_rate,
    )


# ----------------------------------------------------------------------------- reading the counts


class LossEvaluations(NamedTuple):
    """Loss evaluations spent by line searches, per run.

    Attributes:
      last_step: evaluations of the last step taken.
      total: evaluations of all steps taken.
      per_step: ``total`` divided by the steps run (the mean per step; a diverged
        run stops counting when it diverges but is divided by all steps).
    """

    last_step: jax.Array
    total: jax.Array
    per_step: jax.Array


def loss_evaluations(result: Any) -> LossEvaluations:
    """The loss evaluations each run's line search used, read from its optimizer state.

    Counts only the evaluations made by the line search (through ``value_fn``),
    not the one ``value_and_grad`` per step that the engine spends on the
    gradient. These are the evaluations each run *needed*; under ``vmap`` a batch
    computes the slowest run's number for every run (see the module notes). A
    diverged run keeps the counts it had before the step that diverged.

    Args:
      result: a :class:`fitjax.FitResult` or :class:`fitjax.SweepResult` of
        :func:`gd_line_search` or :func:`backtracking_armijo` fitted with
        ``keep_state=True`` (or their optimizer state).

    Returns:
      :class:`LossEvaluations` with the runs' (and grid's) leading axes.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> res = fitjax.fit(fitjax.least_squares(fitjax.line), fitjax.backtracking_armijo(),
      ...                  jnp.array([[1.6, -0.5]]), fitjax.datasets.line(), steps=5, keep_state=True)
      >>> fitjax.loss_evaluations(res)   # one run: 3 evaluations at step 5, 27 in 5 steps
      LossEvaluations(last_step=Array([3], dtype=int32), total=Array([27], dtype=int32),
                      per_step=Array([5.4], dtype=float32))
    """
    state = getattr(getattr(result, "result", result), "opt_state", result)
    if state is None:
        raise ValueError(
            "loss_evaluations reads the counts kept in the optimizer state, and this result has none: "
            "fit or sweep with keep_state=True keeps each run's final state"
        )
    found = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, OptState))
        if isinstance(s, OptState) and isinstance(s.inner_state, _COUNTED)
    ]
    if not found:
        raise TypeError(
            "loss_evaluations reads the counts kept by fitjax.gd_line_search and fitjax.backtracking_armijo; "
            f"this result's optimizer state ({type(state).__name__}) holds none"
        )
    last = sum(s.inner_state.evaluations for s in found)
    total = sum(s.inner_state.total_evaluations for s in found)
    steps = found[0].count
    return LossEvaluations(last, total, total / jnp.maximum(steps, 1))
