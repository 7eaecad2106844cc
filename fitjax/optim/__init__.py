"""Optimizers: the protocol every optimizer is built by, and the rules built on it.

- ``protocol``: :class:`~fitjax.Rule`, :class:`~fitjax.Hyperparam`, :func:`~fitjax.build` and the
  single view the engine takes of any optimizer (fitjax's or optax's);
- ``rules``: the lecture's update rules (gradient descent, momentum, Nesterov, normalized
  gradients, Adam) and :func:`~fitjax.sgd` with optax's meaning;
- ``rmsprop``, ``linesearch`` (bracketing and Armijo searches), ``plateau``.
"""
