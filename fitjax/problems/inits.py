"""Starting points: a batch of initial parameters with a leading run axis.

Each helper returns a pytree shaped like one set of parameters, with a leading axis
of length ``n`` (the runs), ready for :func:`fitjax.fit`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fitjax import _checks

PyTree = Any

__all__ = ["grid", "normal", "uniform"]  # as_tree and leaf_keys serve other modules' starts


def as_tree(value: Any) -> PyTree:
    """A list or tuple of plain numbers is one array (``[-10.0, 2.5]`` is one 2-vector);
    anything else is a pytree whose leaves become float arrays."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in jax.tree.leaves(value)):
        try:
            return jnp.asarray(np.asarray(value, dtype=float), dtype=float)
        except ValueError:
            pass  # ragged: a genuine pytree
    return jax.tree.map(
        lambda a: jnp.asarray(a, dtype=float) if not hasattr(a, "dtype") else jnp.asarray(a), value
    )


def leaf_keys(key: jax.Array, tree: PyTree) -> PyTree:
    """One key per leaf of ``tree``, split from ``key``, in a tree of the same structure."""
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, list(jax.random.split(key, len(leaves))))


def uniform(key: jax.Array, n: int, low: PyTree, high: PyTree) -> PyTree:
    """``n`` starts drawn uniformly in the box ``[low, high]`` (pytrees of the same structure).

    Example:
      >>> import jax, fitjax
      >>> starts = fitjax.inits.uniform(jax.random.key(0), 1000, low=[-10.0, 2.5], high=[10.0, 22.5])
      >>> starts.shape
      (1000, 2)
    """
    key = _checks.prng_key("key", key)
    n = _checks.positive_int("n", n)
    low_t, high_t = as_tree(low), as_tree(high)
    _checks.finite("low", low_t, "the box must be finite")
    _checks.finite("high", high_t, "the box must be finite")
    # jaxlib ships no type stubs for PyTreeDef, so mypy cannot see its __ne__.
    if jax.tree.structure(low_t) != jax.tree.structure(high_t):  # type: ignore[operator]
        raise ValueError(
            f"low and high must have the same pytree structure, got {jax.tree.structure(low_t)} "
            f"and {jax.tree.structure(high_t)}"
        )
    for lo, hi in zip(jax.tree.leaves(low_t), jax.tree.leaves(high_t), strict=False):
        if lo.shape != hi.shape or not bool(jnp.all(lo < hi)):
            raise ValueError(f"low must be below high elementwise with equal shapes, got {lo} and {hi}")
    return jax.tree.map(
        lambda k, lo, hi: jax.random.uniform(k, (n, *lo.shape), lo.dtype, lo, hi),
        leaf_keys(key, low_t),
        low_t,
        high_t,
    )


def normal(key: jax.Array, n: int, mean: PyTree, std: float | PyTree = 1.0) -> PyTree:
    """``n`` starts drawn from a normal distribution around ``mean`` (``std`` scalar or pytree)."""
    key = _checks.prng_key("key", key)
    n = _checks.positive_int("n", n)
    mean_t = as_tree(mean)
    _checks.finite("mean", mean_t, "the mean must be finite")
    std_t = (
        jax.tree.map(lambda _: std, mean_t)
        if np.ndim(std) == 0 and not isinstance(std, (dict, list, tuple))
        else std
    )
    for s in jax.tree.leaves(std_t):
        _checks.non_negative("std", s)
    return jax.tree.map(
        lambda k, m, s: m[None] + jnp.asarray(s, m.dtype) * jax.random.normal(k, (n, *m.shape), m.dtype),
        leaf_keys(key, mean_t),
        mean_t,
        std_t,
    )


def grid(values0: Any, values1: Any, base: Any = None, index: tuple[int, int] = (0, 1)) -> jax.Array:
    """Every pair of two parameters' values: starts for a basin-of-attraction map.

    Returns an array of shape ``(len(values0) * len(values1), d)``, ordered so that
    ``reshape(len(values0), len(values1))`` gives the map (``values0`` along rows).
    Coordinates other than ``index`` come from ``base`` (default: zeros, ``d = 2``).

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> fitjax.inits.grid(jnp.array([0.0, 1.0]), jnp.array([5.0, 6.0, 7.0])).shape
      (6, 2)
    """
    v0 = jnp.asarray(values0, dtype=float).ravel()
    v1 = jnp.asarray(values1, dtype=float).ravel()
    if v0.size == 0 or v1.size == 0:
        raise ValueError(f"grid values must not be empty, got {v0.size} and {v1.size} values")
    _checks.finite("values0", v0, "every grid value must be finite")
    _checks.finite("values1", v1, "every grid value must be finite")
    base_arr = jnp.zeros(2, v0.dtype) if base is None else jnp.asarray(base, v0.dtype)
    _checks.finite("base", base_arr, "every coordinate must be finite")
    if base_arr.ndim != 1 or not all(0 <= i < base_arr.shape[0] for i in index) or index[0] == index[1]:
        raise ValueError(
            f"index must name two different coordinates of base (length {base_arr.shape}), got {index}"
        )
    g0, g1 = jnp.meshgrid(v0, v1, indexing="ij")
    starts = jnp.broadcast_to(base_arr, (g0.size, base_arr.shape[0]))
    return starts.at[:, index[0]].set(g0.ravel()).at[:, index[1]].set(g1.ravel())
