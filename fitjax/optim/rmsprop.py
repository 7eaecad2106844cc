r"""RMSProp: Adam's second-moment average alone, without momentum or bias correction.

.. math::
    v_{t+1} \leftarrow \gamma\, v_t + (1-\gamma)\, |g_t|^2, \qquad
    \phi_{t+1} \leftarrow \phi_t - \alpha\, \frac{g_t}{\sqrt{v_{t+1}} + \epsilon}, \qquad v_0 = 0.

Equals ``optax.rmsprop(α, decay=γ, eps=ε, eps_in_sqrt=False)`` (its ``nu`` is ``v``).
Not in the lecture: it is here to show what adding an optimizer takes, one rule in one
file (and one row in the shared test table).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fitjax.optim.protocol import (
    LEARNING_RATE,
    LearningRate,
    Optimizer,
    PyTree,
    Rule,
    build,
    coefficient,
    epsilon,
    tree_scale,
)
from fitjax.optim.rules import abs_sq, moving_average


class RMSPropState(NamedTuple):
    """The moving average ``nu`` of the gradient's squared magnitude (zero at the start)."""

    nu: PyTree


def _init(params: PyTree) -> RMSPropState:
    return RMSPropState(jax.tree.map(jnp.zeros_like, params))


def _step(g, state, hp, lr, t):
    # v ← γ·v + (1−γ)·|g|²
    v = moving_average(state.nu, jax.tree.map(lambda g: abs_sq(g).astype(g.dtype), g), hp["gamma"])
    # φ ← φ − α·g / (√v + ε)
    step = jax.tree.map(lambda g, v: g / (jnp.sqrt(v) + jnp.asarray(hp["eps"]).astype(v.real.dtype)), g, v)
    return tree_scale(-lr(t), step), RMSPropState(v)


RMSPROP = Rule("rmsprop", _step, _init, (LEARNING_RATE, coefficient("gamma"), epsilon()))


def rmsprop(learning_rate: LearningRate, gamma: float = 0.9, eps: float = 1e-8) -> Optimizer:
    r"""RMSProp (Tieleman & Hinton, 2012) in Adam's notation; see the module for the update.

    Args:
      learning_rate: α ≥ 0, a number or a schedule ``step -> α``.
      gamma: γ in [0, 1), the decay of the squared-gradient average.
      eps: ε ≥ 0, added to the root.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> opt = fitjax.rmsprop(0.1, gamma=0.75)
      >>> opt.update(jnp.array([2.0]), opt.init(jnp.zeros(1)))[0]   # −α·g/√((1−γ)·g²) = −0.1·2/1
      Array([-0.2], dtype=float32)
    """
    return build(RMSPROP, learning_rate=learning_rate, gamma=gamma, eps=eps)
