r"""Problems: models, losses, data, starts, and a catalogue of test problems built from them.

The pieces (``models``, ``losses``, ``datasets``, ``inits``) are pure functions over pytrees;
the catalogue below names problems that the command line, the studies and the tests share.

A catalogue of test problems for optimizer studies, each a pure loss ``loss(params, data)``.

A :class:`Problem` is a loss that :func:`fitjax.fit` accepts, its data, where its starts
are drawn (a box ``[low, high]`` or an ``init(key)`` function), its minimum value where
it is known, the minimisers where they are known, and a one-line description.

The catalogue holds the lecture's problems (``line``, ``gabor8``, ``gabor32``, ``toy``),
classical test functions in d dimensions with known minima (``rosenbrock``,
``himmelblau``, ``beale``, ``camel``, ``rastrigin``, ``ackley``, ``styblinski_tang``),
machine-learning problems (``gabor_mlp``, ``gabor_mlp_deep``) and, with scikit-learn
installed, classifiers on its digits (``digits_logistic``, ``digits_mlp``).

Example:
  >>> import jax, fitjax
  >>> prob = fitjax.problems.get("rosenbrock", dim=3)
  >>> prob.minimum, prob.starts(jax.random.key(0), 5).shape
  (0.0, (5, 3))
  >>> my = fitjax.problems.Problem("bowl", lambda p, data: (p**2).sum(), low=[-1.0, -1.0],
  ...                              high=[1.0, 1.0], minimum=0.0, minimisers=([0.0, 0.0],))
  >>> fitjax.problems.register(my) is my
  True
"""

from __future__ import annotations

from fitjax.problems._catalogue import (
    Problem,
    available,
    get,
    register,
    unregister,
)
from fitjax.problems.functions import (
    ackley,
    beale,
    camel,
    himmelblau,
    rastrigin,
    rosenbrock,
    styblinski_tang,
)
from fitjax.problems.ml import cross_entropy, digits_data, mlp_classifier

__all__ = [
    "Problem",
    "ackley",
    "available",
    "beale",
    "camel",
    "cross_entropy",
    "digits_data",
    "get",
    "himmelblau",
    "mlp_classifier",
    "rastrigin",
    "register",
    "rosenbrock",
    "styblinski_tang",
    "unregister",
]
