"""Helpers shared by the chunked-sweep tests, which build each problem from a source
string so that a subprocess can build it alike."""

import jax
import numpy as np


def build(setup: str):
    """Run ``setup`` and return its ``loss, optimizer, starts, data, kwargs``."""
    ns: dict = {}
    exec(setup, ns)
    return ns["loss"], ns["optimizer"], ns["starts"], ns["data"], ns["kwargs"]


def assert_same(a, b):
    """Every array of two results equal bit for bit (the same pytree structure)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
