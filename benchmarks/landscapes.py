"""Loss landscapes: ``fitjax.loss_grid`` against a plain ``jax.jit(jax.vmap(loss))``.

Both evaluate the contenders' Gabor loss (``contenders.loss_jax``; fitjax's
``least_squares(Gabor(8.0))``, the same function) over an ``n × n`` grid of
φ0 ∈ [−10, 10] × φ1 ∈ [2.5, 22.5] and return it as a host (NumPy) array:

* ``fitjax``: ``fitjax.loss_grid(loss, (x, y), phi0, phi1)``, which evaluates
  ``chunk_size`` points (65,536 by default) per call of one compiled program and
  fills a host array chunk by chunk;
* ``plain_vmap``: ``jax.jit(jax.vmap(jax.vmap(loss)))`` over the two axes (the
  points are never materialised: the inner vmap pairs one φ0 with every φ1), then
  ``np.asarray``. With ``rows`` set, the grid is instead evaluated ``rows`` rows
  of φ0 at a time by the same jitted function and copied into a host array, which
  bounds the device memory to ``rows × n`` values plus the program's temporaries.

Compile time is what JAX reports spending on tracing, lowering and compiling during
the first call (the grid program is compiled on first use in both cases), or the first
call minus the best later call where it reports nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import fitjax
from benchmarks import contenders as c


def axes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` values of φ0 and of φ1 spanning the contenders' start ranges, float32."""
    return (
        np.linspace(*c.PHI0_RANGE, n, dtype=np.float32),
        np.linspace(*c.PHI1_RANGE, n, dtype=np.float32),
    )


def _grid_program() -> Callable:
    def rows(phi0, phi1, x, y):
        def one(p0, p1):
            return c.loss_jax(jnp.stack([p0, p1]), x, y)

        return jax.vmap(lambda p0: jax.vmap(lambda p1: one(p0, p1))(phi1))(phi0)

    return jax.jit(rows)


def plain_grid(n: int, x: np.ndarray, y: np.ndarray, rows: int | None = None) -> Callable[[], np.ndarray]:
    """A call that evaluates the grid with plain ``jax.jit(jax.vmap(...))``, on the host at the end.

    ``rows``: evaluate that many rows of φ0 per call (None: the whole grid in one call).
    """
    program = _grid_program()
    phi0, phi1 = axes(n)
    phi1_d, x_d, y_d = jax.device_put((phi1, x, y))
    if rows is None or rows >= n:
        phi0_d = jax.device_put(phi0)
        return lambda: np.asarray(program(phi0_d, phi1_d, x_d, y_d))
    pad = -n % rows
    blocks = jax.device_put(np.concatenate([phi0, np.repeat(phi0[-1:], pad)]).reshape(-1, rows))

    def call() -> np.ndarray:
        out = np.empty((blocks.shape[0] * rows, n), np.float32)
        for b in range(blocks.shape[0]):
            out[b * rows : (b + 1) * rows] = np.asarray(program(blocks[b], phi1_d, x_d, y_d))
        return out[:n]

    return call


def fitjax_grid(n: int, x: np.ndarray, y: np.ndarray) -> Callable[[], np.ndarray]:
    """A call that evaluates the grid with ``fitjax.loss_grid`` (its default chunking)."""
    phi0, phi1 = axes(n)
    data = jax.device_put((x, y))
    return lambda: fitjax.loss_grid(c.FITJAX_LOSS, data, phi0, phi1).loss


def timed(name: str, call: Callable[[], np.ndarray], repeat: int, note: str = "") -> c.ContenderResult:
    """First call (compile + run) apart from the best of ``repeat`` more; a ContenderResult
    whose ``losses`` hold the grid, flattened."""
    _, first_s, compile_s = c._timed_first_call(call)
    grid, times = c._timed_repeats(call, repeat)
    run_s = c.best(times.wall)
    return c.ContenderResult(
        name,
        None,
        np.asarray(grid).ravel(),
        max(first_s - run_s, 0.0) if compile_s is None else compile_s,
        run_s,
        run_times=times.wall,
        run_cpu_s=c.best(times.cpu),
        run_cpu_times=times.cpu,
        note=note,
    )
