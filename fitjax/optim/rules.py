r"""The lecture's optimizers, each an update rule next to its equation.

Every function here returns an :class:`~fitjax.Optimizer`, which is an optax
``GradientTransformationExtraArgs``: it runs in :func:`fitjax.fit` for a batch of
starting points and in plain optax code. Gradients ``g`` are whatever the caller
passes: the full-batch gradient ``∂L/∂φ = Σ_i ∂ℓ_i/∂φ``, or the mini-batch sum
``Σ_{i∈B_t} ∂ℓ_i/∂φ`` when :func:`fitjax.fit` is given a ``batch_size`` (that is
stochastic gradient descent: the same rules, on mini-batches).

How each relates to optax (derivations in the docstrings, each checked by a test in
``tests/test_optax_equivalence.py``):

================================  =====================================================
fitjax                            optax
================================  =====================================================
``gd(α)``                         ``optax.sgd(α)``
``sgd(α, momentum=μ, nesterov)``  ``optax.sgd(α, momentum=μ, nesterov)`` (same signature)
``momentum(α, β)``                ``optax.sgd(α·(1−β), momentum=β)``
``nesterov(α, β)``                no single optax optimizer; see :func:`nesterov`
``nesterov_classical(α, μ)``      ``optax.sgd(α, momentum=μ, nesterov=True)``
``normalized(α, ε)``              ``optax.adam(α, b1=0, b2=0, eps=ε)``
``adam(α, β, γ, ε)``              ``optax.adam(α, b1=β, b2=γ, eps=ε)``
``rmsprop(α, γ, ε)``              ``optax.rmsprop(α, decay=γ, eps=ε, eps_in_sqrt=False)``
================================  =====================================================

Each optimizer is one :class:`~fitjax.Rule` (the update next to its equation and its
declared hyperparameters) turned into an optimizer by :func:`fitjax.build`; its state
is optax's ``InjectStatefulHyperparamsState``, with the rule's own state (``mu``,
``nu``, ...) in ``inner_state``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fitjax.optim.protocol import (
    LEARNING_RATE,
    EmptyState,
    LearningRate,
    Optimizer,
    PyTree,
    Rule,
    build,
    coefficient,
    epsilon,
    tree_scale,
)

# ----------------------------------------------------------------------------- states


class MomentumState(NamedTuple):
    """The moving average ``mu`` of the gradient (``m`` in the lecture; zero at the start)."""

    mu: PyTree


class TraceState(NamedTuple):
    """optax's momentum trace ``trace`` (``b`` in Sutskever's form; zero at the start)."""

    trace: PyTree


class AdamState(NamedTuple):
    """Moving averages ``mu`` of the gradient and ``nu`` of its squared magnitude
    (the lecture's ``m`` and ``v``; optax's names)."""

    mu: PyTree
    nu: PyTree


def _zeros(params: PyTree) -> PyTree:
    return jax.tree.map(jnp.zeros_like, params)


def _real(x: jax.Array, like: jax.Array) -> jax.Array:
    """A real scalar in a leaf's dtype (a complex leaf's: the scalar with zero imaginary part).

    Scalars are computed where the hyperparameters are held (float32 or wider) and cast
    to the leaf's dtype only to meet it, as optax's Python-float coefficients are: in
    bfloat16, ``1 − γ`` for γ = 0.999 stays 0.001 even though γ itself rounds to 1. A
    complex leaf meets the scalar as a complex number, as a Python float meets it in optax.
    """
    return jnp.asarray(x).astype(jnp.result_type(like))


def abs_sq(g: jax.Array) -> jax.Array:
    """``|g|²`` elementwise: ``g²`` for real ``g``, ``g·conj(g)`` (real) for complex ``g``."""
    return jnp.real(g * jnp.conj(g)) if jnp.iscomplexobj(g) else g * g


def moving_average(avg: PyTree, new: PyTree, decay: jax.Array) -> PyTree:
    """``decay·avg + (1 − decay)·new``, leaf by leaf, in each leaf's dtype."""
    return jax.tree.map(lambda a, x: _real(decay, x) * a + _real(1 - decay, x) * x, avg, new)


def _divide(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den``, with ``0 / 0`` taken as 0.

    Only ε = 0 and a gradient component that is exactly 0 (for Adam: at every step so
    far) give ``0 / 0``; 0 is the value of ``m / (√v + ε)`` there for every ε > 0, so
    that component stays put instead of turning the run into NaN. Every other
    quotient, ``x / 0 = ±inf`` included, is the plain division.
    """
    indeterminate = (num == 0) & (den == 0)
    safe = jnp.where(indeterminate, jnp.ones_like(den), den)
    return jnp.where(indeterminate, jnp.zeros_like(num), num / safe)


def _momentum_init(params: PyTree) -> MomentumState:
    return MomentumState(_zeros(params))


def _trace_init(params: PyTree) -> TraceState:
    return TraceState(_zeros(params))


def _empty(params: PyTree) -> EmptyState:
    del params
    return EmptyState()


def _adam_init(params: PyTree) -> AdamState:
    return AdamState(_zeros(params), _zeros(params))


# ----------------------------------------------------------------------------- rules
# Each rule: (grads g, inner state, hyperparameters hp at step t, lr(step), t) -> (updates, inner).


def _gd_step(g, inner, hp, lr, t):
    # φ ← φ − α·g
    return tree_scale(-lr(t), g), inner


def _momentum_step(g, state, hp, lr, t):
    # m ← β·m + (1−β)·g
    m = moving_average(state.mu, g, hp["beta"])
    # φ ← φ − α·m
    return tree_scale(-lr(t), m), MomentumState(m)


def _nesterov_step(g, state, hp, lr, t):
    # Run in look-ahead coordinates ψ_t = φ_t − α_t·m_t, where g = ∂L/∂φ at ψ_t.
    # m_{t+1} ← β·m_t + (1−β)·g(φ_t − α_t·m_t)
    m = moving_average(state.mu, g, hp["beta"])
    # φ_{t+1} ← φ_t − α_t·m_{t+1}, so ψ_{t+1} − ψ_t = α_t·m_t − (α_t + α_{t+1})·m_{t+1}
    a_now, a_next = lr(t), lr(t + 1)

    def step(m_old, m_new):
        # α_t, α_{t+1} in the parameters' dtype before adding: a schedule may return a lower
        # precision, and the report adds α_{t+1}·m_{t+1} back in the parameters' dtype.
        now, nxt = _real(a_now, m_new), _real(a_next, m_new)
        return now * m_old - (now + nxt) * m_new

    return jax.tree.map(step, state.mu, m), MomentumState(m)


def _nesterov_report(psi, state, lr_now):
    # φ_t = ψ_t + α_t·m_t
    return jax.tree.map(lambda p, m: p + _real(lr_now, p) * m, psi, state.mu)


def _trace_step(g, state, hp, lr, t):
    mu = hp["momentum"]
    # b ← μ·b + g ;  φ ← φ − α·b
    b = jax.tree.map(lambda b, g: _real(mu, g) * b + g, state.trace, g)
    return tree_scale(-lr(t), b), TraceState(b)


def _nesterov_classical_step(g, state, hp, lr, t):
    mu = hp["momentum"]
    # b ← μ·b + g ;  φ ← φ − α·(g + μ·b)
    b = jax.tree.map(lambda b, g: _real(mu, g) * b + g, state.trace, g)
    step = jax.tree.map(lambda g, b: g + _real(mu, g) * b, g, b)
    return tree_scale(-lr(t), step), TraceState(b)


def _normalized_step(g, inner, hp, lr, t):
    # m ← g ;  v ← |g|² ;  φ ← φ − α·m / (√v + ε)
    step = jax.tree.map(lambda g: _divide(g, jnp.sqrt(abs_sq(g)).astype(g.dtype) + _real(hp["eps"], g)), g)
    return tree_scale(-lr(t), step), inner


def _adam_step(g, state, hp, lr, t):
    beta, gamma, eps = hp["beta"], hp["gamma"], hp["eps"]
    # m ← β·m + (1−β)·g ;  v ← γ·v + (1−γ)·|g|²
    m = moving_average(state.mu, g, beta)
    v = moving_average(state.nu, jax.tree.map(lambda g: abs_sq(g).astype(g.dtype), g), gamma)

    tp1 = (t + 1).astype(jnp.result_type(beta))

    def step(m, v):
        m_hat = m / _real(1 - beta**tp1, m)  # m̃ ← m / (1 − β^{t+1})
        v_hat = v / _real(1 - gamma**tp1, v)  # ṽ ← v / (1 − γ^{t+1})
        return _divide(m_hat, jnp.sqrt(v_hat) + _real(eps, m))  # φ ← φ − α·m̃ / (√ṽ + ε)

    return tree_scale(-lr(t), jax.tree.map(step, m, v)), AdamState(m, v)


GD = Rule("gd", _gd_step, _empty, (LEARNING_RATE,))
MOMENTUM = Rule("momentum", _momentum_step, _momentum_init, (LEARNING_RATE, coefficient("beta")))
NESTEROV = Rule(
    "nesterov", _nesterov_step, _momentum_init, (LEARNING_RATE, coefficient("beta")), report=_nesterov_report
)
SGD_MOMENTUM = Rule("sgd_momentum", _trace_step, _trace_init, (LEARNING_RATE, coefficient("momentum")))
NESTEROV_CLASSICAL = Rule(
    "nesterov_classical", _nesterov_classical_step, _trace_init, (LEARNING_RATE, coefficient("momentum"))
)
NORMALIZED = Rule("normalized", _normalized_step, _empty, (LEARNING_RATE, epsilon()))
ADAM = Rule(
    "adam", _adam_step, _adam_init, (LEARNING_RATE, coefficient("beta"), coefficient("gamma"), epsilon())
)


# ----------------------------------------------------------------------------- constructors


def gd(learning_rate: LearningRate) -> Optimizer:
    r"""Gradient descent: :math:`\phi \leftarrow \phi - \alpha \, \partial L/\partial\phi`.

    Given mini-batch gradients (``fit(..., batch_size=B)``) this is the lecture's
    stochastic gradient descent :math:`\phi_{t+1} \leftarrow \phi_t - \alpha
    \sum_{i\in\mathcal{B}_t} \partial\ell_i[\phi_t]/\partial\phi`. Equals
    ``optax.sgd(learning_rate)``.

    Args:
      learning_rate: α ≥ 0, a number or a schedule ``step -> α`` (for one value per run, see
        :func:`fitjax.fit`'s ``hyperparams``).

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> opt = fitjax.gd(0.1)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = opt.init(params)
      >>> updates, state = opt.update(jnp.array([2.0, 4.0]), state, params)
      >>> updates
      Array([-0.2, -0.4], dtype=float32)
    """
    return build(GD, learning_rate=learning_rate)


def sgd(learning_rate: LearningRate, momentum: float | None = None, nesterov: bool = False) -> Optimizer:
    r"""optax's ``sgd``, with its signature and meaning.

    Without ``momentum`` this is :func:`gd` (stochastic when :func:`fitjax.fit` is given a
    ``batch_size``). With ``momentum=μ`` it keeps optax's trace
    :math:`b_{t+1} = \mu b_t + g_t` and steps :math:`\phi \leftarrow \phi - \alpha b_{t+1}`;
    with ``nesterov=True`` it is :func:`nesterov_classical`. Equals
    ``optax.sgd(learning_rate, momentum, nesterov)`` step for step.

    The lecture's momentum is a moving average instead, :func:`momentum`; to port
    ``optax.sgd(η, momentum=β)`` to it, use ``fitjax.momentum(η / (1 − β), β)``.

    Args:
      learning_rate: α ≥ 0, a number or a schedule ``step -> α``.
      momentum: μ in [0, 1), or None for plain gradient descent.
      nesterov: use Nesterov's momentum (Sutskever's form, as optax).

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> opt = fitjax.sgd(0.1, momentum=0.9)
      >>> state = opt.init(jnp.zeros(1))
      >>> u, state = opt.update(jnp.ones(1), state)
      >>> u, opt.update(jnp.ones(1), state)[0]   # −α·b with b = 1, then 1.9
      (Array([-0.1], dtype=float32), Array([-0.19], dtype=float32))
    """
    if momentum is None:
        if nesterov:
            raise ValueError(
                "nesterov=True needs a momentum, e.g. fitjax.sgd(0.01, momentum=0.9, nesterov=True)"
            )
        return gd(learning_rate)
    rule = NESTEROV_CLASSICAL if nesterov else SGD_MOMENTUM
    return build(rule, learning_rate=learning_rate, momentum=momentum)


def momentum(learning_rate: LearningRate, beta: float = 0.9) -> Optimizer:
    r"""Momentum as the lecture writes it, a moving average of the gradients:

    .. math::
        m_{t+1} \leftarrow \beta\, m_t + (1-\beta)\, g_t, \qquad
        \phi_{t+1} \leftarrow \phi_t - \alpha\, m_{t+1}, \qquad m_0 = 0.

    **Relation to optax.** optax keeps a trace :math:`b_{t+1} = \beta b_t + g_t` and
    steps :math:`-\eta\, b_{t+1}`. By induction :math:`m_t = (1-\beta)\, b_t`, so this
    optimizer equals ``optax.sgd(learning_rate=α·(1−β), momentum=β)`` with states
    related by ``mu = (1−β)·trace``.

    **Porting from optax.** ``optax.sgd(η, momentum=β)`` is ``fitjax.sgd(η, momentum=β)``
    (optax's form, the same numbers), or in the lecture's form
    ``fitjax.momentum(η / (1 − β), β)``: the same α gives steps ``1/(1−β)`` times
    smaller here than in ``optax.sgd``.

    Args:
      learning_rate: α ≥ 0, a number or a schedule ``step -> α``.
      beta: β in [0, 1).

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> opt = fitjax.momentum(0.5, beta=0.5)
      >>> state = opt.init(jnp.zeros(2))
      >>> updates, state = opt.update(jnp.array([1.0, -1.0]), state)
      >>> updates   # m = 0.5·g, step −α·m
      Array([-0.25,  0.25], dtype=float32)
    """
    return build(MOMENTUM, learning_rate=learning_rate, beta=beta)


def nesterov(learning_rate: LearningRate, beta: float = 0.9) -> Optimizer:
    r"""Nesterov momentum as the lecture writes it, the gradient taken at the look-ahead:

    .. math::
        m_{t+1} \leftarrow \beta\, m_t + (1-\beta)\, \frac{\partial L[\phi_t - \alpha\, m_t]}{\partial\phi},
        \qquad \phi_{t+1} \leftarrow \phi_t - \alpha\, m_{t+1}.

    **How it runs.** The optimizer works in look-ahead coordinates
    :math:`\psi_t = \phi_t - \alpha m_t` (with :math:`m_0 = 0`, so :math:`\psi_0 = \phi_0`):
    the parameters it is handed, and at which every gradient is taken, are ψ, which
    makes it an ordinary optax transformation. Its update is
    :math:`\psi_{t+1} - \psi_t = \alpha_t m_t - (\alpha_t + \alpha_{t+1})\, m_{t+1}`
    (:math:`= -\alpha(2m_{t+1} - m_t)` for a fixed α), and :meth:`Optimizer.report`
    (used by :func:`fitjax.fit` for every reported parameter and loss) returns
    :math:`\phi_t = \psi_t + \alpha_t m_t`.

    **Relation to optax.** With the trace :math:`b_{t+1} = \beta b_t + g_t`
    (``optax.trace(decay=β)``), :math:`m = (1-\beta) b` and, for a fixed α,

    .. math::
        \psi_{t+1} - \psi_t = -\frac{\alpha(1-\beta)}{\beta}\,\bigl(g_t + (2\beta - 1)\, b_{t+1}\bigr).

    optax's ``sgd(η, momentum=μ, nesterov=True)`` steps :math:`-\eta (g_t + \mu b_{t+1})`
    with :math:`b` decaying at the *same* μ; matching both needs :math:`2\beta-1 = \beta`,
    i.e. β = 1, so no optax ``sgd`` setting equals the lecture's form. The lecture's
    look-ahead moves by the whole of :math:`\alpha m_t`; Sutskever's form, which
    optax implements, by :math:`\beta\,\alpha m_t` (see :func:`nesterov_classical`).

    Use it on its own rather than inside ``optax.chain``: a chain hides the
    look-ahead from :func:`fitjax.reported_params`, so ψ would be reported instead
    of φ, and a transformation chained after it would scale the ψ-steps rather than
    α. To vary α, give ``learning_rate`` a schedule.

    Args:
      learning_rate: α ≥ 0, a number or a schedule ``step -> α``.
      beta: β in [0, 1).

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> opt = fitjax.nesterov(0.1, beta=0.5)
      >>> psi = jnp.array([1.0])
      >>> state = opt.init(psi)
      >>> updates, state = opt.update(jnp.array([2.0]), state, psi)   # g at ψ_0 = φ_0
      >>> phi1 = opt.report(psi + updates, state)   # φ_1 = φ_0 − α·m_1 = 1 − 0.1·1
      >>> round(float(phi1[0]), 6)
      0.9
    """
    return build(NESTEROV, learning_rate=learning_rate, beta=beta)


def nesterov_classical(learning_rate: LearningRate, momentum: float = 0.9) -> Optimizer:
    r"""Nesterov momentum in the form optax implements (Sutskever et al., 2013):

    .. math::
        b_{t+1} \leftarrow \mu\, b_t + g_t, \qquad
        \phi_{t+1} \leftarrow \phi_t - \alpha\,(g_t + \mu\, b_{t+1}).

    Equals ``optax.sgd(α, momentum=μ, nesterov=True)``. It is the look-ahead method
    written in the shifted coordinates, with a look-ahead of μ times the last step.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> opt = fitjax.nesterov_classical(0.1, momentum=0.5)
      >>> state = opt.init(jnp.zeros(1))
      >>> opt.update(jnp.array([1.0]), state)[0]   # −α·(g + μ·g)
      Array([-0.15], dtype=float32)
    """
    return build(NESTEROV_CLASSICAL, learning_rate=learning_rate, momentum=momentum)


def normalized(learning_rate: LearningRate, eps: float = 1e-20) -> Optimizer:
    r"""Normalized gradients, step by the sign of each gradient component:

    .. math::
        m_{t+1} \leftarrow g_t, \quad v_{t+1} \leftarrow g_t^2, \quad
        \phi_{t+1} \leftarrow \phi_t - \alpha\, \frac{m_{t+1}}{\sqrt{v_{t+1}} + \epsilon}

    (square, root and division pointwise). Equals ``optax.adam(α, b1=0, b2=0, eps=ε)``:
    with both decays zero Adam's averages are the last gradient and its square, and
    its bias corrections are 1.

    With ε = 0 a component whose gradient is exactly 0 does not move: ``0/0`` is taken
    as 0, the step's value for every ε > 0 (optax gives NaN there).

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> opt = fitjax.normalized(1.0, eps=0.0)
      >>> state = opt.init(jnp.zeros(3))
      >>> opt.update(jnp.array([3.0, -2.0, 5.0]), state)[0]   # the lecture's example
      Array([-1.,  1., -1.], dtype=float32)
    """
    return build(NORMALIZED, learning_rate=learning_rate, eps=eps)


def adam(
    learning_rate: LearningRate, beta: float = 0.9, gamma: float = 0.999, eps: float = 1e-8
) -> Optimizer:
    r"""Adam as the lecture writes it:

    .. math::
        m_{t+1} &\leftarrow \beta\, m_t + (1-\beta)\, g_t, &
        v_{t+1} &\leftarrow \gamma\, v_t + (1-\gamma)\, g_t^2, \\
        \tilde m_{t+1} &\leftarrow \frac{m_{t+1}}{1-\beta^{t+1}}, &
        \tilde v_{t+1} &\leftarrow \frac{v_{t+1}}{1-\gamma^{t+1}}, \\
        \phi_{t+1} &\leftarrow \phi_t - \alpha\, \frac{\tilde m_{t+1}}{\sqrt{\tilde v_{t+1}} + \epsilon},
        & m_0 &= v_0 = 0.

    Equals ``optax.adam(α, b1=β, b2=γ, eps=ε)`` (same states ``mu = m``, ``nu = v``).
    With ε = 0 a component whose gradient has been exactly 0 at every step so far
    (so :math:`\tilde m = \tilde v = 0`) does not move: ``0/0`` is taken as 0, the
    step's value for every ε > 0 (optax gives NaN there).

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> opt = fitjax.adam(0.1)
      >>> state = opt.init(jnp.zeros(2))
      >>> opt.update(jnp.array([4.0, -0.5]), state)[0]   # first step: −α·sign(g)
      Array([-0.1,  0.1], dtype=float32)
    """
    return build(ADAM, learning_rate=learning_rate, beta=beta, gamma=gamma, eps=eps)
