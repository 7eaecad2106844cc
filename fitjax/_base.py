"""Types shared by every fitjax optimizer.

An optimizer is an :class:`optax.GradientTransformationExtraArgs`: a pair of pure
functions ``init(params) -> state`` and ``update(grads, state, params, **extra) ->
(updates, state)``. fitjax builds every one of its optimizers from a *rule*, a small
pure function that reads like the lecture's equation::

    rule(grads, inner, hp, lr, count) -> (updates, inner)

where ``inner`` is the rule's own NamedTuple state, ``hp`` the hyperparameters
(arrays), ``lr(step)`` the learning rate at a step (fixed or scheduled) and ``count``
the number of steps already taken (``t`` in the lecture).

Hyperparameters live in the state as arrays, never as Python floats captured in a
trace. That is what lets one compiled program run a grid of learning rates and
momenta, and lets a new value reuse the compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fitjax import _checks

PyTree = Any
Schedule = Callable[[jax.Array], jax.Array]
LearningRate = float | jax.Array | Schedule


class OptState(NamedTuple):
    """State of a fitjax optimizer.

    Attributes:
      count: steps taken so far (``t``), an int32 scalar.
      hyperparams: the hyperparameters as arrays, keyed by name.
      inner: the rule's own state (for example the moving averages ``m`` and ``v``).
    """

    count: jax.Array
    hyperparams: dict[str, jax.Array]
    inner: Any


class EmptyState(NamedTuple):
    """Inner state of a rule that keeps nothing between steps."""


def _abstract(tree: PyTree) -> tuple[Any, tuple]:
    """A hashable description of a pytree of arrays: its structure and leaf shapes/dtypes."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)


@functools.lru_cache(maxsize=256)
def _expected_inner(init_inner: Callable[[PyTree], Any], treedef: Any, avals: tuple) -> Any:
    """The shapes of ``init_inner``'s state for such gradients, traced once per kind."""
    structs = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in avals]
    return jax.eval_shape(init_inner, jax.tree.unflatten(treedef, structs))


def _float_dtype(params: PyTree) -> jnp.dtype:
    leaves = [x if hasattr(x, "dtype") else jnp.asarray(x) for x in jax.tree.leaves(params)]
    floats = [x for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.result_type(*floats) if floats else jnp.result_type(float)


@dataclasses.dataclass(frozen=True)
class _Update:
    """The update function of a rule; hashable by value so that compiled runs are reused."""

    rule: Callable[..., tuple[PyTree, Any]]
    schedule: Schedule | None
    report_rule: Callable[..., PyTree] | None = None
    init_inner: Callable[[PyTree], Any] | None = None

    #: Whether the rule reads the loss (``value``, ``value_fn``): the lecture's rules
    #: do not, so the engine need not compute the loss at every step for them.
    uses_loss = False

    def init(self, params: PyTree, hyperparams: dict[str, jax.Array]) -> OptState:
        """The state at step 0 for ``params`` with the given hyperparameter arrays."""
        return OptState(jnp.zeros((), jnp.int32), hyperparams, self.init_inner(params))

    def lr(self, state: OptState) -> Callable[[jax.Array], jax.Array]:
        if self.schedule is None:
            fixed = state.hyperparams["learning_rate"]
            return lambda _step: fixed
        return lambda step: jnp.asarray(self.schedule(step))

    def check(self, grads: PyTree, state: Any, params: PyTree = None) -> None:
        """Refuse a state built for other parameters: type, pytree structure and shapes.

        These are known while tracing, so under ``jit`` the error comes before anything
        is compiled; values are not inspected.
        """
        fix = "the state must come from this optimizer's init(params), for parameters like the gradients"
        if not isinstance(state, OptState):
            raise TypeError(f"state must be the OptState returned by this optimizer's init, got {state!r}")
        if self.init_inner is not None:
            expected = _expected_inner(self.init_inner, *_abstract(grads))
            _checks.same_tree("state.inner", state.inner, expected, "these gradients", fix)
        if params is not None:
            _checks.same_tree("params", params, grads, "the gradients", "pass params and grads alike")

    def __call__(self, grads: PyTree, state: OptState, params: PyTree = None, **extra: Any):
        self.check(grads, state, params)
        del params, extra  # the lecture's rules need only the gradient
        updates, inner = self.rule(grads, state.inner, state.hyperparams, self.lr(state), state.count)
        return updates, OptState(state.count + 1, state.hyperparams, inner)

    def report(self, params: PyTree, state: OptState) -> PyTree:
        """The parameters the optimizer reports (``params`` unless it steps from a look-ahead)."""
        if self.report_rule is None:
            return params
        return self.report_rule(params, state.inner, self.lr(state)(state.count))


class Optimizer(optax.GradientTransformationExtraArgs):
    """An optax ``GradientTransformationExtraArgs`` built by fitjax.

    It can be chained and applied with ``optax.apply_updates`` like any optax
    transformation. ``report(params, state)`` gives the parameters the optimizer
    reports; it differs from ``params`` only for optimizers that step from a
    look-ahead point (the lecture's Nesterov momentum).
    """

    def report(self, params: PyTree, state: Any) -> PyTree:
        return reported_params(self, params, state)


def make_optimizer(
    rule: Callable[..., tuple[PyTree, Any]],
    init_inner: Callable[[PyTree], Any],
    *,
    learning_rate: LearningRate,
    report: Callable[..., PyTree] | None = None,
    **hyperparams: Any,
) -> Optimizer:
    """Build an optimizer from a rule, checking every hyperparameter by name.

    ``learning_rate`` is a number (or array) held in the state, or a schedule
    ``step -> lr`` (any optax schedule) evaluated at the step count.
    """
    if callable(learning_rate):
        _checks.schedule("learning_rate", learning_rate)
        schedule, fixed = learning_rate, {}
    else:
        _checks.hyperparam("learning_rate", learning_rate)
        schedule, fixed = None, {"learning_rate": learning_rate}
    for name, value in hyperparams.items():
        _checks.hyperparam(name, value)
    values = {**fixed, **hyperparams}

    update = _Update(rule, schedule, report, init_inner)

    memo: dict[tuple, dict[str, jax.Array]] = {}
    by_leaf_dtypes: dict[tuple, dict[str, jax.Array]] = {}  # the same, found without dtype promotion

    def hyperparams_for(params: PyTree) -> dict[str, jax.Array]:
        """The hyperparameters as arrays in ``params``' float dtype (checked, then memoised)."""
        leaf_dtypes = tuple(getattr(x, "dtype", None) for x in jax.tree.leaves(params))
        if None not in leaf_dtypes and leaf_dtypes in by_leaf_dtypes:
            return by_leaf_dtypes[leaf_dtypes]
        dtype = _float_dtype(params)
        dtypes = frozenset({dtype, *_checks.float_dtypes(params)})
        key = (dtype, dtypes)
        if key not in memo:
            for name, value in values.items():
                _checks.held_in(name, value, set(dtypes))
            memo[key] = {k: jnp.asarray(v, dtype=dtype) for k, v in values.items()}
        if None not in leaf_dtypes:
            by_leaf_dtypes[leaf_dtypes] = memo[key]
        return memo[key]

    def init(params: PyTree) -> OptState:
        return update.init(params, hyperparams_for(params))

    init.hyperparams_for = hyperparams_for  # read by the engine without building a state
    return Optimizer(init, update)


def reported_params(optimizer: optax.GradientTransformation, params: PyTree, state: Any) -> PyTree:
    """The parameters an optimizer reports at ``state``.

    For every optax transformation and most fitjax optimizers these are ``params``
    themselves; the lecture's Nesterov momentum steps from the look-ahead point
    ``ψ = φ − α·m`` and reports ``φ``.
    """
    update = optimizer.update
    return update.report(params, state) if isinstance(update, _Update) else params


def set_hyperparams(state: Any, values: Mapping[str, jax.Array]) -> Any:
    """Return ``state`` with the named hyperparameters replaced (used by sweeps)."""
    if not isinstance(state, OptState):
        raise TypeError(
            "hyperparameters can only be swept for fitjax optimizers (their state holds them as "
            f"arrays); got a state of type {type(state).__name__}. Build the optimizer with fitjax, "
            "or wrap an optax one with optax.inject_hyperparams and sweep by building states yourself."
        )
    unknown = set(values) - set(state.hyperparams)
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {sorted(unknown)}; this optimizer has {sorted(state.hyperparams)}"
        )
    hp = dict(state.hyperparams)
    for name, value in values.items():
        hp[name] = jnp.asarray(value, dtype=hp[name].dtype)
    return state._replace(hyperparams=hp)


def tree_scale(scale: jax.Array, tree: PyTree) -> PyTree:
    """``scale · tree`` leaf by leaf, keeping each leaf's dtype."""
    return jax.tree.map(lambda x: jnp.asarray(scale, x.dtype) * x, tree)
