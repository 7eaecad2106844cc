r"""A loss-dependent learning rate: shrink the steps when the loss stops improving.

The lecture lists three ways to set the learning rate: fixed, on a schedule, or
*loss dependent*. :func:`reduce_on_plateau` is the third. Chained after an optimizer
it multiplies that optimizer's updates by a scale :math:`s` that starts at 1 and is
cut by ``factor`` whenever the loss has not improved for ``patience`` steps::

    optax.chain(fitjax.gd(0.1), fitjax.reduce_on_plateau(factor=0.5, patience=20))

It reads the loss from the ``value`` extra argument, which :func:`fitjax.fit` passes
at every step (the loss at the point where the gradient was taken: the mini-batch
loss under SGD, the look-ahead loss for :func:`fitjax.nesterov`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fitjax import _checks
from fitjax.optim.protocol import Hyperparam, Optimizer, PyTree, Rule, build, tree_scale


class PlateauState(NamedTuple):
    """What :func:`reduce_on_plateau` remembers between steps.

    Attributes:
      scale: the factor :math:`s` applied to the updates (1 at the start).
      best_value: the best loss seen so far (``inf`` at the start).
      plateau_count: steps since the loss last improved.
      cooldown_count: steps of cooldown left, during which ``s`` is not cut.
    """

    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array


def _plateau_step(u, inner, hp, lr, t, *, params, value, grad, value_fn):
    del lr, t, params, grad, value_fn
    if value is None:
        raise TypeError(
            "reduce_on_plateau needs the loss: call update(grads, state, params, value=loss); "
            "fitjax.fit passes it at every step"
        )
    best, scale = inner.best_value, inner.scale
    value = jnp.asarray(value).astype(best.dtype)
    rtol, atol = hp["rtol"].astype(best.dtype), hp["atol"].astype(best.dtype)
    # improved ⇔ L_t < (1 − rtol)·best − atol
    improved = value < (1 - rtol) * best - atol
    best = jnp.where(improved, value, best)
    plateau = jnp.where(improved, 0, inner.plateau_count + 1)
    in_cooldown = inner.cooldown_count > 0
    cut = ~in_cooldown & (plateau == hp["patience"])
    factor, low = hp["factor"].astype(scale.dtype), hp["min_scale"].astype(scale.dtype)
    inner = PlateauState(
        scale=jnp.where(in_cooldown, scale, jnp.maximum(jnp.where(cut, scale * factor, scale), low)),
        best_value=best,
        plateau_count=jnp.where(in_cooldown | cut, 0, plateau).astype(jnp.int32),
        cooldown_count=jnp.where(
            in_cooldown, inner.cooldown_count - 1, jnp.where(cut, hp["cooldown"], 0)
        ).astype(jnp.int32),
    )
    # u ← s·u
    return tree_scale(inner.scale, u), inner


def _plateau_init(params: PyTree) -> PlateauState:
    low, high = optax.tree.dtype(params, "lowest"), optax.tree.dtype(params, "highest")
    zero = jnp.zeros((), jnp.int32)
    return PlateauState(jnp.ones((), low), jnp.asarray(jnp.inf, high), zero, zero)


def _between(low: float, high: float, **open_ends: bool):
    return lambda name, value: _checks.interval(name, value, low, high, **open_ends)


PLATEAU = Rule(
    "reduce_on_plateau",
    _plateau_step,
    _plateau_init,
    (
        Hyperparam("factor", _between(0.0, 1.0, low_open=True, high_open=True)),
        Hyperparam("patience", lambda name, value: _checks.integer_at_least(name, value, 1), integer=True),
        Hyperparam("rtol", _between(0.0, 1.0)),
        Hyperparam("atol", _checks.non_negative),
        Hyperparam("cooldown", lambda name, value: _checks.integer_at_least(name, value, 0), integer=True),
        Hyperparam("min_scale", _between(0.0, 1.0)),
    ),
    uses_loss=True,
)


def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    min_scale: float = 0.0,
) -> Optimizer:
    r"""Scale updates by a factor that drops when the loss plateaus.

    At step :math:`t`, with loss :math:`L_t` (the ``value`` extra argument), best loss
    so far :math:`L_{\text{best}}` (``inf`` at first), plateau count :math:`p`, cooldown count
    :math:`c` and scale :math:`s` (1 at first):

    .. math::
        \text{improved} &= L_t < (1 - r_{\text{tol}})\,L_{\text{best}} - a_{\text{tol}}, \qquad
        L_{\text{best}} \leftarrow L_t \text{ if improved}, \qquad
        p \leftarrow 0 \text{ if improved, else } p + 1, \\
        c > 0 &: \quad c \leftarrow c - 1, \quad p \leftarrow 0 \quad (s \text{ kept}), \\
        c = 0,\ p = \text{patience} &: \quad
            s \leftarrow \max(\text{factor}\cdot s,\ s_{\min}), \quad p \leftarrow 0, \quad
            c \leftarrow \text{cooldown},

    and the updates leave as :math:`s \cdot u` with the new :math:`s`. Chained after
    ``gd(α)`` the step is :math:`\phi \leftarrow \phi - s_t\,\alpha\,\partial L/\partial\phi`.

    Equals ``optax.contrib.reduce_on_plateau(factor, patience, rtol, atol, cooldown,
    accumulation_size=1, min_scale=min_scale)``, step by step (exactly in float64; in
    float32 the threshold :math:`(1 - r_{\text{tol}})\,L_{\text{best}}` may round one unit
    in the last place differently). The settings are held as arrays in the state
    (``state.hyperparams``), like every fitjax optimizer's.

    Under SGD ``value`` is the mini-batch loss, which is noisy: a larger ``patience`` or
    ``rtol`` keeps the noise from being read as a plateau.

    Args:
      factor: what the scale is multiplied by at a plateau, in (0, 1).
      patience: steps without improvement before the scale is cut, ≥ 1.
      rtol: relative improvement needed, in [0, 1].
      atol: absolute improvement needed, ≥ 0 (``rtol`` and ``atol`` not both 0).
      cooldown: steps after a cut during which the loss is not watched, ≥ 0.
      min_scale: the scale is never cut below this, in [0, 1].

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs
      ``value=loss`` (which :func:`fitjax.fit` passes).

    Example:
      >>> import jax.numpy as jnp, optax, fitjax
      >>> opt = optax.chain(fitjax.gd(1.0), fitjax.reduce_on_plateau(factor=0.5, patience=2))
      >>> params = jnp.zeros(1)
      >>> state = opt.init(params)
      >>> for loss in [3.0, 2.0, 2.0, 2.0, 2.0]:   # no progress after the second step
      ...     updates, state = opt.update(jnp.ones(1), state, params, value=jnp.asarray(loss))
      ...     print(float(updates[0]), end=" ")
      -1.0 -1.0 -1.0 -0.5 -0.5
    """
    if not callable(rtol) and not callable(atol) and float(rtol) == 0.0 and float(atol) == 0.0:
        raise ValueError(
            "rtol and atol are both 0, so any decrease, however small, counts as progress; "
            "set rtol > 0 (e.g. 1e-4) or atol > 0"
        )
    return build(
        PLATEAU,
        factor=factor,
        patience=patience,
        rtol=rtol,
        atol=atol,
        cooldown=cooldown,
        min_scale=min_scale,
    )
