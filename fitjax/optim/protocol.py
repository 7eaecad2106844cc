r"""The optimizer protocol: every fitjax optimizer is a rule plus its declared hyperparameters.

An optimizer is an :class:`optax.GradientTransformationExtraArgs`, a pair of pure
functions ``init(params) -> state`` and ``update(updates, state, params=None, **extra)
-> (updates, state)``. fitjax builds every one of its optimizers the same way, from a
:class:`Rule`:

* ``step(grads, inner, hp, lr, t) -> (updates, inner)``, a small pure function that
  reads like the lecture's equation: ``inner`` is the rule's own NamedTuple state,
  ``hp`` the hyperparameters' values at this step, ``lr(s)`` the learning rate at step
  ``s`` (for rules that look one step ahead) and ``t`` the steps already taken;
* ``init(params) -> inner``;
* the declared hyperparameters (:class:`Hyperparam`), each with the check of its values
  next to it.

:func:`build` turns a rule and values into the optimizer. Its state is optax's own
``InjectStatefulHyperparamsState(count, hyperparams, hyperparams_states, inner_state)``,
the form :func:`optax.inject_hyperparams` gives: the hyperparameters are arrays in
``state.hyperparams``, so ``optax.tree.get``/``optax.tree.set`` read and change them, a
new value reuses the compiled program, and :func:`fitjax.fit` can hold one value per run.
Any hyperparameter may be a schedule ``count -> value``; its current value is in
``state.hyperparams`` after each step, as optax's injection keeps it.

The engine sees every optimizer, fitjax's or optax's, through one interface,
:class:`Stepper` (:func:`stepper`), built once per call.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fitjax import _checks
from fitjax.optim.construction import construction_key

PyTree = Any
Schedule = Callable[[jax.Array], jax.Array]
LearningRate = float | jax.Array | Schedule

OptState = optax.InjectStatefulHyperparamsState
"""The state of every fitjax optimizer: optax's ``InjectStatefulHyperparamsState``
(``count``, ``hyperparams``, ``hyperparams_states``, ``inner_state``)."""

# optax ships no type information, so the runtime alias above cannot be used in annotations.
OptStateType: TypeAlias = Any


class EmptyState(NamedTuple):
    """Inner state of a rule that keeps nothing between steps."""


class PrecisionWarning(UserWarning):
    """A hyperparameter changes meaning when held in the parameters' low-precision dtype."""


# ----------------------------------------------------------------------------- declarations


@dataclasses.dataclass(frozen=True)
class Hyperparam:
    """One hyperparameter a rule declares.

    Attributes:
      name: the constructor's argument name, the key in ``state.hyperparams``.
      check: ``check(name, values)`` raises, naming the argument, for a value out of range.
      integer: held as int32 (an iteration cap) instead of a float.
      lost_at_zero: a nonzero value must not flush to 0 in a low precision (ε, a step size).
    """

    name: str
    check: Callable[[str, Any], None]
    integer: bool = False
    lost_at_zero: bool = False


LEARNING_RATE = Hyperparam("learning_rate", _checks.non_negative, lost_at_zero=True)
"""The step size α: finite and ≥ 0 (a schedule may start at 0)."""


def coefficient(name: str) -> Hyperparam:
    """A moving-average or momentum coefficient in [0, 1)."""
    return Hyperparam(name, _checks.unit_interval)


def epsilon(name: str = "eps") -> Hyperparam:
    """A small constant ≥ 0 that guards a division."""
    return Hyperparam(name, _checks.non_negative, lost_at_zero=True)


@dataclasses.dataclass(frozen=True)
class Rule:
    """An update rule and what it declares; hashable, so compiled programs are reused.

    Attributes:
      name: the optimizer's name (used in messages and by the fused kernel).
      step: ``step(grads, inner, hp, lr, t) -> (updates, inner)``; with ``uses_loss``,
        also ``params`` and the loss (``value``, ``grad``, ``value_fn``) as keywords.
      init: ``init(params) -> inner``, the rule's own state at step 0.
      hyperparams: the declared hyperparameters, in the constructor's order.
      report: ``report(params, inner, lr_now) -> params`` for a rule that steps from a
        look-ahead point (the lecture's Nesterov momentum); None reports ``params``.
      uses_loss: the rule reads the loss (the line searches).
    """

    name: str
    step: Callable[..., tuple[PyTree, Any]]
    init: Callable[[PyTree], Any]
    hyperparams: tuple[Hyperparam, ...]
    report: Callable[..., PyTree] | None = None
    uses_loss: bool = False

    def declared(self, name: str) -> Hyperparam:
        for h in self.hyperparams:
            if h.name == name:
                return h
        raise ValueError(
            f"unknown hyperparameter {name!r}; {self.name} has {[h.name for h in self.hyperparams]}"
        )


# ----------------------------------------------------------------------------- dtypes and values


def _float_dtype(params: PyTree) -> jnp.dtype:
    """The widest floating dtype among ``params``' leaves (the default float if none)."""
    floats = [
        jnp.dtype(x.dtype) for x in jax.tree.leaves(params) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
    ]
    if not floats:
        return jnp.dtype(jnp.result_type(float))
    real = [jnp.finfo(d).dtype if jnp.issubdtype(d, jnp.complexfloating) else d for d in floats]
    return jnp.dtype(functools.reduce(_wider, real))


def _wider(a: jnp.dtype, b: jnp.dtype) -> jnp.dtype:
    """The wider of two real float dtypes, chosen explicitly (so strict promotion allows it):
    the larger, and float32 for two different 16-bit floats (bfloat16 and float16)."""
    a, b = jnp.dtype(a), jnp.dtype(b)
    if a == b or a.itemsize > b.itemsize:
        return a
    return b if b.itemsize > a.itemsize else jnp.dtype(jnp.float32)


def held_dtype(params: PyTree) -> jnp.dtype:
    """Where hyperparameters are held: the parameters' widest float, and at least float32.

    A 16-bit parameter would round Adam's γ = 0.999 to 1; the value is kept exact here
    and each leaf's update casts it to the leaf's own dtype (with a
    :class:`PrecisionWarning` where that changes its meaning).
    """
    return _wider(_float_dtype(params), jnp.dtype(jnp.float32))


def _is_traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def check_value(rule: Rule, name: str, value: Any, *, per_run: bool = False) -> None:
    """Check a hyperparameter value given to a constructor (one value) or to ``fit`` per run."""
    h = rule.declared(name)
    if callable(value):
        if per_run:
            raise TypeError(f"hyperparams[{name!r}] must be numbers, one per run, got the function {value!r}")
        _checks.schedule(name, value, h.check)
        return
    if not per_run and not _is_traced(value) and np.ndim(value) != 0:
        raise ValueError(
            f"{name} must be one value, got an array of shape {np.shape(value)}; for one value per run "
            f"pass it to fitjax.fit(..., hyperparams={{{name!r}: values}}) or grid it with fitjax.sweep"
        )
    h.check(name, value)
    if h.integer:
        _checks.integer_at_least(name, value, 0)


def check_precision(rule: Rule, values: Mapping[str, Any], params: PyTree) -> None:
    """Refuse a value the run cannot hold; warn where a 16-bit leaf changes its meaning.

    Values are held in :func:`held_dtype` (float32 or wider): one that overflows there,
    or that a declaration forbids to vanish and that flushes to 0, is refused. Each
    leaf's update is computed in the leaf's own dtype, as optax computes it: where a
    bfloat16 or float16 leaf rounds a value to another meaning (Adam's γ = 0.999 to 1,
    ε = 1e-8 to 0) a :class:`PrecisionWarning` says so; an overflow there is refused.
    """
    held = held_dtype(params)
    dtypes = [held] + [np.dtype(d) for d in _checks.float_dtypes(params) if jnp.finfo(d).bits <= 16]
    for name, value in values.items():
        h = rule.declared(name)
        if h.integer or callable(value) or _is_traced(value):
            continue
        for dtype in dict.fromkeys(dtypes):
            message = _checks.rounding(name, value, dtype, h.check, lost_at_zero=h.lost_at_zero)
            if message is None:
                continue
            with np.errstate(over="ignore"):
                overflow = not np.all(np.isfinite(np.asarray(value, np.float64).astype(dtype)))
            if dtype == held or overflow:
                raise ValueError(f"{message}; use a value that {np.dtype(dtype).name} holds")
            warnings.warn(
                f"{message}; updates of {np.dtype(dtype).name} leaves are computed in that dtype, as "
                "optax's are. Keep the parameters in float32 for the exact value.",
                PrecisionWarning,
                stacklevel=4,
            )


def _as_held(h: Hyperparam, value: Any, dtype: Any) -> jax.Array:
    return jnp.asarray(value, jnp.int32 if h.integer else dtype)


# ----------------------------------------------------------------------------- applying a rule


def _lr(
    hp: Mapping[str, jax.Array], schedules: Mapping[str, Schedule]
) -> Callable[[jax.Array], jax.Array] | None:
    if "learning_rate" in schedules:
        fn = schedules["learning_rate"]
        return lambda s: jnp.asarray(fn(s))
    if "learning_rate" in hp:
        fixed = hp["learning_rate"]
        return lambda _s: fixed
    return None


def _values_at(count: jax.Array, hp: Mapping[str, jax.Array], schedules: Mapping[str, Schedule]) -> dict:
    """The hyperparameters' values at step ``count``: scheduled ones evaluated there."""
    now = dict(hp)
    for name, fn in schedules.items():
        now[name] = jnp.asarray(fn(count), jnp.result_type(hp[name]))
    return now


def _apply(
    rule: Rule,
    schedules: Mapping[str, Schedule],
    hp: Mapping[str, jax.Array],
    grads: PyTree,
    state: OptStateType,
    params: PyTree,
    extra: Mapping[str, Any],
) -> tuple[PyTree, OptStateType]:
    """One step of ``rule`` with hyperparameters ``hp`` (fixed ones; schedules evaluated here)."""
    now = _values_at(state.count, hp, schedules)
    context = {}
    if rule.uses_loss:  # the rule sees the params and the loss, as optax's line searches do
        value_fn = extra.get("value_fn")
        rest = {k: v for k, v in extra.items() if k not in ("value", "grad", "value_fn")}
        context = {
            "params": params,
            "value": extra.get("value"),
            "grad": extra.get("grad"),
            "value_fn": functools.partial(value_fn, **rest) if rest and callable(value_fn) else value_fn,
        }
    updates, inner = rule.step(grads, state.inner_state, now, _lr(now, schedules), state.count, **context)
    updates = jax.tree.map(lambda u, g: jnp.asarray(u).astype(jnp.result_type(g)), updates, grads)
    new = OptState(optax.safe_increment(state.count), now, state.hyperparams_states, inner)
    return updates, new


def _report(rule: Rule, schedules: Mapping[str, Schedule], params: PyTree, state: OptStateType) -> PyTree:
    if rule.report is None:
        return params
    lr = _lr(state.hyperparams, schedules)
    if lr is None:  # report(params, inner, lr_now) needs the learning rate
        raise TypeError(f"{rule.name}: a rule with report must declare a learning_rate hyperparameter")
    return rule.report(params, state.inner_state, lr(state.count))


def _initial_state(rule: Rule, schedules: Mapping[str, Schedule], params: PyTree, hp: dict) -> OptStateType:
    count = jnp.zeros((), jnp.int32)
    return OptState(count, _values_at(count, hp, schedules), {}, rule.init(params))


# ----------------------------------------------------------------------------- the optimizer


@dataclasses.dataclass(frozen=True, eq=False)
class _Public:
    """The ``init`` and ``update`` a user calls: optax's conventions.

    The values given to the constructor are used unless the state's value was changed
    since ``init`` (``state.hyperparams[name] = x`` or ``optax.tree.set``): that is how
    both an edit of a fitjax optimizer's own state and an enclosing
    ``optax.inject_hyperparams`` (which builds the optimizer anew with its values at
    every step, over the state ``init`` made) take effect.
    """

    rule: Rule
    given: Mapping[str, Any]

    @property
    def fixed(self) -> dict[str, Any]:
        return {k: v for k, v in self.given.items() if not callable(v)}

    @property
    def schedules(self) -> dict[str, Schedule]:
        return {k: v for k, v in self.given.items() if callable(v)}

    def init(self, params: PyTree) -> OptStateType:
        check_precision(self.rule, self.given, params)
        dtype = held_dtype(params)
        hp = {}
        for h in self.rule.hyperparams:
            value = self.given[h.name]
            hp[h.name] = _as_held(h, value(jnp.zeros((), jnp.int32)) if callable(value) else value, dtype)
        state = _initial_state(self.rule, self.schedules, params, hp)
        # What init put in the state, to tell a later edit of it from the constructor's value.
        return state._replace(hyperparams_states={"initial": tuple(state.hyperparams[k] for k in hp)})

    def update(
        self, updates: PyTree, state: OptStateType, params: PyTree = None, **extra: Any
    ) -> tuple[PyTree, OptStateType]:
        _check_state(self.rule, updates, state, params)
        record = state.hyperparams_states.get("initial")
        hp, kept = {}, {}
        for i, name in enumerate(self.given):
            held = state.hyperparams[name]
            if name in self.schedules:
                hp[name] = held
                continue
            if record is None:  # a state built elsewhere (by fitjax.fit): its values are the truth
                hp[name] = held
                continue
            edited = held != record[i]
            hp[name] = jnp.where(edited, held, jnp.asarray(self.given[name], jnp.result_type(held)))
            # An edit stays an edit at the next step; an unedited value follows the constructor's.
            kept[name] = jnp.where(edited, record[i], hp[name])
        new_updates, new = _apply(self.rule, self.schedules, hp, updates, state, params, extra)
        if record is not None:
            record = tuple(kept.get(name, new.hyperparams[name]) for name in self.given)
            new = new._replace(hyperparams_states={"initial": record})
        return new_updates, new


def _check_state(rule: Rule, grads: PyTree, state: Any, params: PyTree) -> None:
    """Refuse a state built for other parameters: type, pytree structure and shapes.

    Known while tracing, so under ``jit`` the error comes before anything is compiled.
    """
    fix = "the state must come from this optimizer's init(params), for parameters like the gradients"
    if not isinstance(state, OptState):
        raise TypeError(f"state must be the state returned by this optimizer's init, got {state!r}")
    expected = _expected_inner(rule.init, *_abstract(grads))
    _checks.same_tree("state.inner_state", state.inner_state, expected, "these gradients", fix)
    if params is not None:
        _checks.same_tree("params", params, grads, "the gradients", "pass params and grads alike")


def _abstract(tree: PyTree) -> tuple[Any, tuple]:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)


@functools.lru_cache(maxsize=256)
def _expected_inner(init: Callable[[PyTree], Any], treedef: Any, avals: tuple) -> Any:
    structs = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in avals]
    return jax.eval_shape(init, jax.tree.unflatten(treedef, structs))


class Optimizer(optax.GradientTransformationExtraArgs):
    """An optax ``GradientTransformationExtraArgs`` built by fitjax from a :class:`Rule`.

    It chains, injects and applies like any optax transformation.
    ``report(params, state)`` gives the parameters the optimizer reports; it differs
    from ``params`` only for a rule that steps from a look-ahead point (the lecture's
    Nesterov momentum).
    """

    def report(self, params: PyTree, state: Any) -> PyTree:
        return reported_params(self, params, state)


def build(rule: Rule, **values: Any) -> Optimizer:
    """The optimizer of ``rule`` with these hyperparameter values (numbers or schedules).

    Every value is checked by its declaration before anything is traced.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> from fitjax.optim.rules import GD
      >>> opt = fitjax.build(GD, learning_rate=0.1)
      >>> opt.update(jnp.array([1.0]), opt.init(jnp.zeros(1)))[0]
      Array([-0.1], dtype=float32)
    """
    names = [h.name for h in rule.hyperparams]
    if sorted(values) != sorted(names):
        raise TypeError(f"{rule.name} takes the hyperparameters {names}, got {sorted(values)}")
    for name, value in values.items():
        check_value(rule, name, value)
    public = _Public(rule, {name: values[name] for name in names})
    return Optimizer(public.init, public.update)


def rule_of(optimizer: Any) -> tuple[Rule, dict[str, Any]] | None:
    """The rule and constructor values of a fitjax optimizer, or None for any other."""
    public = getattr(getattr(optimizer, "update", None), "__self__", None)
    if isinstance(public, _Public):
        return public.rule, dict(public.given)
    return None


def reported_params(optimizer: optax.GradientTransformation, params: PyTree, state: Any) -> PyTree:
    """The parameters an optimizer reports at ``state``.

    For every optax transformation and most fitjax optimizers these are ``params``
    themselves; the lecture's Nesterov momentum steps from the look-ahead point
    ``ψ = φ − α·m`` and reports ``φ``.
    """
    found = rule_of(optimizer)
    if found is None:
        return params
    rule, given = found
    return _report(rule, {k: v for k, v in given.items() if callable(v)}, params, state)


def tree_scale(scale: jax.Array, tree: PyTree) -> PyTree:
    """``scale · tree`` leaf by leaf, keeping each leaf's dtype."""
    return jax.tree.map(lambda x: jnp.asarray(scale).astype(jnp.result_type(x)) * x, tree)


# ----------------------------------------------------------------------------- the engine's view


@dataclasses.dataclass(frozen=True, eq=False)
class Stepper:
    """What the engine needs of an optimizer; hashable, the key of its compiled programs.

    For a fitjax optimizer only the rule and its schedules are part of the key: the
    fixed hyperparameters are arguments of the program (:meth:`defaults`), so new
    values reuse it. Any other optax transformation is part of the key as it was built
    (:func:`~fitjax.optim.construction.construction_key`): ``optax.adam(0.01)`` made
    anew for each call reuses the program, as does a schedule made anew. If its state is
    optax's ``InjectStatefulHyperparamsState`` (``optax.inject_hyperparams``), its
    numeric hyperparameters can be given per run as well.
    """

    rule: Rule | None = None
    schedules: tuple[tuple[str, Schedule], ...] = ()
    transform: Any = None
    key: Any = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        key = (self.rule, construction_key(self.schedules), construction_key(self.transform))
        object.__setattr__(self, "key", (key, hash(key)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stepper) and self.key[0] == other.key[0]

    def __hash__(self) -> int:
        return self.key[1]

    # -- what the optimizer is
    @property
    def uses_loss(self) -> bool:
        """Whether ``update`` may read the loss (fitjax rules say so; any other
        ``GradientTransformationExtraArgs`` may)."""
        if self.rule is not None:
            return self.rule.uses_loss
        return isinstance(self.transform, optax.GradientTransformationExtraArgs)

    @property
    def reports(self) -> bool:
        """Whether the reported parameters differ from the loop's own."""
        return self.rule is not None and self.rule.report is not None

    @property
    def report_moves(self) -> bool:
        """Whether a frozen run's reported parameters change with the count (a scheduled look-ahead)."""
        return self.reports and "learning_rate" in dict(self.schedules)

    def schedule(self, name: str) -> Schedule | None:
        return dict(self.schedules).get(name)

    # -- building states
    def swept(self, one: PyTree) -> dict[str, Any]:
        """Name -> dtype of each hyperparameter that can be given one value per run."""
        if self.rule is not None:
            scheduled = dict(self.schedules)
            dtype = held_dtype(one)
            return {
                h.name: (jnp.int32 if h.integer else dtype)
                for h in self.rule.hyperparams
                if h.name not in scheduled
            }
        state = jax.eval_shape(self.transform.init, one)
        if not isinstance(state, optax.InjectStatefulHyperparamsState):
            return {}
        held = state.hyperparams_states
        return {k: v.dtype for k, v in state.hyperparams.items() if k not in held}

    def check(self, name: str, values: Any, one: PyTree) -> None:
        """Check per-run values of hyperparameter ``name`` for runs with parameters like ``one``."""
        if self.rule is not None:
            check_value(self.rule, name, values, per_run=True)
            check_precision(self.rule, {name: values}, one)
        else:
            _checks.finite(f"hyperparams[{name!r}]", jnp.asarray(values), "pass finite values")

    def init(self, params: PyTree, hp: Mapping[str, jax.Array]) -> Any:
        """One run's state at step 0, with hyperparameters ``hp``."""
        if self.rule is not None:
            return _initial_state(self.rule, dict(self.schedules), params, dict(hp))
        state = self.transform.init(params)
        if hp:
            state = state._replace(hyperparams={**state.hyperparams, **hp})
        return state

    # -- stepping
    def update(self, grads: PyTree, state: Any, params: PyTree = None, **extra: Any) -> tuple[PyTree, Any]:
        if self.rule is not None:
            return _apply(self.rule, dict(self.schedules), state.hyperparams, grads, state, params, extra)
        return self.transform.update(grads, state, params, **extra)

    def report(self, params: PyTree, state: Any) -> PyTree:
        if self.rule is None:
            return params
        return _report(self.rule, dict(self.schedules), params, state)

    def freeze(self, keep: jax.Array, new: Any, old: Any) -> Any:
        """A diverged run keeps its old state: for a fitjax rule only its inner state (the
        count and hyperparameters are shared by the batch and stay unbatched)."""
        if self.rule is not None:
            return new._replace(inner_state=_select(keep, new.inner_state, old.inner_state))
        return _select(keep, new, old)

    def at_count(self, state: Any, count: jax.Array) -> Any:
        """``state`` as at step ``count`` (for a fitjax rule, whose frozen inner state was
        saved at that step); any other state was saved whole."""
        if self.rule is None:
            return state
        hp = _values_at(count, state.hyperparams, dict(self.schedules))
        return state._replace(count=count, hyperparams=hp)

    def keep_batching(self, state: Any, replayed: Any) -> Any:
        """The replayed state with the count and hyperparameters of ``state`` (their batching)."""
        if self.rule is None:
            return replayed
        return state._replace(inner_state=replayed.inner_state)


def _select(pred: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def stepper(optimizer: Any, params0: PyTree) -> tuple[Stepper, dict[str, jax.Array]]:
    """The engine's view of ``optimizer``, and its fixed hyperparameter values as arrays
    held like ``params0``'s runs (arguments of the compiled program, not part of its key).

    The same optimizer with runs of the same structure, shapes and dtypes gives the same
    view and the same arrays (kept, so a repeated ``fit`` makes none anew), unless a
    16-bit parameter can make :func:`check_precision` warn: that check runs every call.
    """
    one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a)[1:], jnp.result_type(a)), params0)
    leaves, treedef = jax.tree.flatten(one)
    if all(jnp.dtype(x.dtype).itemsize >= 4 for x in leaves):
        try:
            kept, defaults = _kept_stepper(
                optimizer, treedef, tuple((x.shape, jnp.dtype(x.dtype)) for x in leaves)
            )
            return kept, dict(defaults)  # the caller's own dict; the arrays are immutable
        except TypeError:  # an unhashable optimizer: no cache
            pass
    return _stepper(optimizer, one)


@functools.lru_cache(maxsize=256)
def _kept_stepper(optimizer: Any, treedef: Any, leaves: tuple) -> tuple[Stepper, dict[str, jax.Array]]:
    one = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])
    return _stepper(optimizer, one)


def _stepper(optimizer: Any, one: PyTree) -> tuple[Stepper, dict[str, jax.Array]]:
    found = rule_of(optimizer)
    if found is None:
        return Stepper(transform=optimizer), {}
    rule, given = found
    schedules = tuple((k, v) for k, v in given.items() if callable(v))
    check_precision(rule, given, one)
    dtype = held_dtype(one)
    defaults = {}
    for h in rule.hyperparams:  # a scheduled one at its step-0 value: it sets the dtype
        value = given[h.name]
        defaults[h.name] = _as_held(h, value(jnp.zeros((), jnp.int32)) if callable(value) else value, dtype)
    return Stepper(rule=rule, schedules=schedules), defaults
