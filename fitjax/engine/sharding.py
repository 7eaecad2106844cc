"""Spreading the run axis over devices: padding, placement and gathering.

Runs are independent, so a batch of runs is split along its leading axis over a
one-axis mesh named ``"runs"``; the data and the shared hyperparameters are
replicated. Inputs are built with ``jax.make_array_from_callback`` from arrays that
every process holds in full, which works alike on one host and under
``jax.distributed`` with several.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "runs"


def run_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``"runs"`` over ``devices`` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    return Mesh(np.array(devices), (AXIS,))


def default_mesh() -> Mesh | None:
    """All devices when there are several, else None (no sharding)."""
    return run_mesh() if len(jax.devices()) > 1 else None


def check_mesh(mesh: Any) -> Mesh:
    if not isinstance(mesh, Mesh) or mesh.axis_names != (AXIS,):
        raise TypeError(
            f"mesh must be a one-axis jax.sharding.Mesh named {AXIS!r}, e.g. fitjax.run_mesh(), got {mesh!r}"
        )
    return mesh


def padded_size(n: int, mesh: Mesh) -> int:
    return -(-n // mesh.size) * mesh.size


def pad_runs(tree: Any, n: int, size: int) -> Any:
    """Pad the leading run axis from ``n`` to ``size`` by repeating the last run."""
    if size == n:
        return tree

    def pad(a):
        a = np.asarray(a)
        return np.concatenate([a, np.repeat(a[-1:], size - n, axis=0)], axis=0)

    return jax.tree.map(pad, tree)


def _put(a: Any, sharding: NamedSharding) -> jax.Array:
    host = np.asarray(a)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_runs(tree: Any, mesh: Mesh) -> Any:
    """Place each leaf split along its leading (run) axis."""
    return jax.tree.map(lambda a: _put(a, NamedSharding(mesh, PartitionSpec(AXIS))), tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place each leaf in full on every device of the mesh."""
    return jax.tree.map(lambda a: _put(a, NamedSharding(mesh, PartitionSpec())), tree)


def gather(tree: Any, n: int) -> Any:
    """Bring sharded results to the host of every process, padding dropped, as jax arrays."""
    from jax.experimental import multihost_utils

    def one(a):
        if not isinstance(a, jax.Array) or a.ndim == 0:
            return a
        full = multihost_utils.process_allgather(a, tiled=True) if jax.process_count() > 1 else np.asarray(a)
        return jnp.asarray(full[:n])

    return jax.tree.map(one, tree)


def trim(tree: Any, n: int) -> Any:
    """Drop padding but leave results on their devices."""
    return jax.tree.map(lambda a: a[:n] if isinstance(a, jax.Array) and a.ndim else a, tree)
