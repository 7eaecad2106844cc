"""Mini-batches drawn without replacement, a fresh permutation each epoch.

Epoch ``e`` uses the permutation ``permutation(fold_in(key, e), n)`` and step ``j`` of
the epoch takes its entries ``[j·B, (j+1)·B)``. An epoch is ``n // B`` steps: when
``B`` does not divide ``n`` the last ``n mod B`` entries of each epoch's permutation
(different examples each epoch) are not used in that epoch, so every step sees a
full batch of ``B`` and the loss is always a sum over ``B`` terms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def steps_per_epoch(n: int, batch_size: int) -> int:
    return n // batch_size


def epoch_permutation(key: jax.Array, epoch: jax.Array, n: int) -> jax.Array:
    """The order of the ``n`` examples in ``epoch``: a function of the key and epoch only."""
    return jax.random.permutation(jax.random.fold_in(key, epoch), n).astype(jnp.int32)


def batch_indices(perm: jax.Array, step_in_epoch: jax.Array, batch_size: int) -> jax.Array:
    return lax.dynamic_slice(perm, (step_in_epoch * batch_size,), (batch_size,))


def permutation_at(key: jax.Array, step: jax.Array, n: int, batch_size: int) -> jax.Array:
    """The permutation in use at ``step``: that of its epoch."""
    return epoch_permutation(key, step // steps_per_epoch(n, batch_size), n)


def indices_at(key: jax.Array, step: jax.Array, n: int, batch_size: int) -> jax.Array:
    """The example indices of mini-batch ``step`` (a step's batch without the loop's carry)."""
    perm = permutation_at(key, step, n, batch_size)
    return batch_indices(perm, step % steps_per_epoch(n, batch_size), batch_size)


def next_permutation(key: jax.Array, step: jax.Array, perm: jax.Array, n: int, batch_size: int) -> jax.Array:
    """The permutation in use at ``step``: a new one at each epoch's first step, else ``perm``.

    ``step`` is the same for every run, so under ``vmap`` this stays a real branch and
    the permutation is drawn once per epoch, not once per step.
    """
    spe = steps_per_epoch(n, batch_size)
    return lax.cond(
        step % spe == 0,
        lambda: epoch_permutation(key, step // spe, n),
        lambda: perm,
    )


def take(data, idx: jax.Array):
    return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)
