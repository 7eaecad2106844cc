"""Loss landscapes: ``fitjax.loss_grid`` against a plain ``jax.jit(jax.vmap(loss))``.

Both evaluate the contenders' Gabor loss (``contenders.loss_jax``; fitjax's
``least_squares(Gabor(8.0))``, the same function) over an ``n × n`` grid of
φ0 ∈ [−10, 10] × φ1 ∈ [2.5, 22.5] and return it as a host (NumPy) array:

* ``fitjax``: ``fitjax.loss_grid(loss, (x, y), phi0, phi1)``, which evaluates
  ``chunk_size`` points (65,536 by default on a CPU, 2²² on a GPU) per call of one compiled program and
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


def fitjax_grid(
    n: int, x: np.ndarray, y: np.ndarray, loss: Callable = c.FITJAX_LOSS
) -> Callable[[], np.ndarray]:
    """A call that evaluates the grid with ``fitjax.loss_grid`` (its default chunking)."""
    phi0, phi1 = axes(n)
    data = jax.device_put((x, y))
    return lambda: fitjax.loss_grid(loss, data, phi0, phi1).loss


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


# --- python -m benchmarks.landscapes: loss_grid, loss_plane, loss_line against plain programs

PLANE_CENTER = np.array([0.5, 12.5], np.float32)
PLANE_DIRECTIONS = (np.array([1.0, 0.2], np.float32), np.array([-0.2, 1.0], np.float32))


def _plain_plane(n: int, x: np.ndarray, y: np.ndarray) -> Callable[[], np.ndarray]:
    """``jax.jit(jax.vmap(jax.vmap(...)))`` over the plane ``centre + a d0 + b d1``."""
    a, b = (np.linspace(-1.0, 1.0, n, dtype=np.float32),) * 2
    c0, (d0, d1) = PLANE_CENTER, PLANE_DIRECTIONS

    @jax.jit
    def plane(a, b, x, y):
        def one(s, t):
            return c.loss_jax(c0 + s * d0 + t * d1, x, y)

        return jax.vmap(lambda s: jax.vmap(lambda t: one(s, t))(b))(a)

    args = jax.device_put((a, b, x, y))
    return lambda: np.asarray(plane(*args))


def _fitjax_plane(n: int, x: np.ndarray, y: np.ndarray, loss: Callable) -> Callable[[], np.ndarray]:
    a = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    data = jax.device_put((x, y))
    center, dirs = jax.device_put((PLANE_CENTER, PLANE_DIRECTIONS))
    return lambda: fitjax.loss_plane(loss, data, center, dirs, (a, a)).loss


def _plain_line(n: int, x: np.ndarray, y: np.ndarray) -> Callable[[], np.ndarray]:
    """``jax.jit(jax.vmap(...))`` along φ0 (φ1 = 16) at ``n`` points."""
    phi0 = np.linspace(*c.PHI0_RANGE, n, dtype=np.float32)

    @jax.jit
    def line(phi0, x, y):
        return jax.vmap(lambda p: c.loss_jax(jnp.stack([p, jnp.float32(16.0)]), x, y))(phi0)

    args = jax.device_put((phi0, x, y))
    return lambda: np.asarray(line(*args))


def _fitjax_line(n: int, x: np.ndarray, y: np.ndarray, loss: Callable) -> Callable[[], np.ndarray]:
    phi0 = np.linspace(*c.PHI0_RANGE, n, dtype=np.float32)
    data = jax.device_put((x, y))
    base = jnp.array([0.0, 16.0])
    return lambda: fitjax.loss_line(loss, data, phi0, base=base).loss


def _float64_grid(n: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The Gabor grid in float64 NumPy at the float32 axes' values, row block by row block."""
    phi0, phi1 = (a.astype(np.float64) for a in axes(n))
    xs, ys = x.astype(np.float64), y.astype(np.float64)
    out = np.empty((n, n))
    rows = max(1, 2**22 // (n * xs.size))
    for r in range(0, n, rows):
        u = phi0[r : r + rows, None, None] + c.U_SCALE * phi1[None, :, None] * xs
        out[r : r + rows] = ((np.sin(u) * np.exp(-u * u / 8.0) - ys) ** 2).sum(-1)
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="fitjax's landscapes against plain jitted vmaps")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024], help="grid sides n (n² points)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls after the first (best kept)")
    parser.add_argument("--points", type=int, default=30, help="data points N")
    parser.add_argument("--accuracy", action="store_true", help="also the grids' error against float64")
    args = parser.parse_args(argv)
    w = c.make_workload(1, args.points, 1)
    x, y = w.x, w.y
    platform_loss = fitjax.platform_math(c.FITJAX_LOSS)
    print(
        f"backend: {jax.default_backend()}, jax {jax.__version__}, N = {args.points}, best of {args.repeat}"
    )
    print(
        "| n | what | plain run s | fitjax run s | ratio (plain/fitjax) "
        "| `platform_math` run s | ratio | compile s (plain, fitjax) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        cases = {
            "loss_grid": (
                plain_grid(n, x, y),
                fitjax_grid(n, x, y),
                fitjax_grid(n, x, y, platform_loss),
            ),
            "loss_plane": (
                _plain_plane(n, x, y),
                _fitjax_plane(n, x, y, c.FITJAX_LOSS),
                _fitjax_plane(n, x, y, platform_loss),
            ),
            "loss_line (n² points)": (
                _plain_line(n * n, x, y),
                _fitjax_line(n * n, x, y, c.FITJAX_LOSS),
                _fitjax_line(n * n, x, y, platform_loss),
            ),
        }
        for what, (plain, fast, same) in cases.items():
            rp, rf, rs = (
                timed(k, f, args.repeat) for k, f in (("plain", plain), ("fitjax", fast), ("platform", same))
            )
            print(
                f"| {n} | {what} | {rp.run_s:.4f} | {rf.run_s:.4f} | {rp.run_s / rf.run_s:.2f}× "
                f"| {rs.run_s:.4f} | {rp.run_s / rs.run_s:.2f}× | {rp.compile_s:.2f}, {rf.compile_s:.2f} |"
            )
            if args.accuracy and what == "loss_grid":
                exact = _float64_grid(n, x, y).ravel()
                for name, r in (("plain", rp), ("fitjax", rf), ("fitjax platform_math", rs)):
                    rel = np.abs(r.losses.astype(np.float64) - exact) / np.abs(exact)
                    print(
                        f"|   | {name} vs float64 | median rel {np.median(rel):.2e} "
                        f"| max rel {rel.max():.2e} | | | | |"
                    )
                rel = np.abs(rf.losses.astype(np.float64) - rp.losses) / np.abs(rp.losses)
                print(
                    f"|   | fitjax vs plain | median rel {np.median(rel):.2e} | max rel {rel.max():.2e} "
                    "| | | | |"
                )


if __name__ == "__main__":
    main()
