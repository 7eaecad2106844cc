"""Accuracy of fitjax's float32 polynomials against the platform's functions, both against float64.

``python -m benchmarks.fastmath_accuracy`` prints two Markdown tables:

* per function and range: the largest and the median relative error of the polynomial
  and of the platform's float32 function (XLA's, on this machine's backend), each
  against NumPy's float64 value at the same float32 argument, over ``--points``
  evenly spaced arguments (for ``sin`` and ``cos`` the largest absolute error too: next
  to a zero of the function the relative error of any float32 evaluation grows);
* a fit: the contenders' Gabor fit (Adam, ``--runs`` starts, ``--steps`` steps, 30 points)
  with the default maths (polynomials on a CPU), with ``fitjax.platform_math`` and in
  float64; the median and largest difference of each float32 final loss from the
  float64 one, relative to it, and how many runs end more than 1e-3 apart (another
  minimum).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

RANGES = {
    "sin": [(-np.pi, np.pi), (-100.0, 100.0)],
    "cos": [(-np.pi, np.pi), (-100.0, 100.0)],
    "exp": [(-10.0, 10.0), (-80.0, 80.0)],
}


def _errors(got: np.ndarray, want: np.ndarray) -> tuple[float, float, float]:
    diff = np.abs(got.astype(np.float64) - want)
    rel = diff / np.maximum(np.abs(want), np.finfo(np.float64).tiny)
    return float(rel.max()), float(np.median(rel)), float(diff.max())


def functions_table(points: int) -> list[str]:
    from fitjax.numerics.polynomials import polynomial

    poly = polynomial()
    platform = {"sin": jnp.sin, "cos": jnp.cos, "exp": jnp.exp}
    rows = [
        "| function | range | polynomial: max rel | median rel | max abs "
        "| platform: max rel | median rel | max abs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, ranges in RANGES.items():
        for lo, hi in ranges:
            x = np.linspace(lo, hi, points, dtype=np.float32)
            want = getattr(np, name)(x.astype(np.float64))
            p = _errors(np.asarray(jax.jit(poly[name])(x)), want)
            q = _errors(np.asarray(jax.jit(platform[name])(x)), want)
            rows.append(
                f"| {name} | [{lo:.4g}, {hi:.4g}] | {p[0]:.2e} | {p[1]:.2e} | {p[2]:.2e} "
                f"| {q[0]:.2e} | {q[1]:.2e} | {q[2]:.2e} |"
            )
    return rows


def fit_table(runs: int, steps: int) -> list[str]:
    import fitjax
    from benchmarks import contenders as c

    w = c.make_workload(runs, 30, steps)
    loss = fitjax.least_squares(fitjax.Gabor(8.0))
    opt = fitjax.adam(c.ADAM.lr, c.ADAM.b1, c.ADAM.b2, c.ADAM.eps)
    data32 = (jnp.asarray(w.x, jnp.float32), jnp.asarray(w.y, jnp.float32))
    starts32 = jnp.asarray(w.starts, jnp.float32)
    default = np.asarray(fitjax.fit(loss, opt, starts32, data32, steps=steps).loss, np.float64)
    platform = np.asarray(fitjax.fit(fitjax.platform_math(loss), opt, starts32, data32, steps=steps).loss)
    with jax.enable_x64(True):
        data64 = (jnp.asarray(w.x, jnp.float64), jnp.asarray(w.y, jnp.float64))
        starts64 = jnp.asarray(w.starts, jnp.float64)
        exact = np.asarray(fitjax.fit(loss, opt, starts64, data64, steps=steps).loss, np.float64)
    rows = [
        f"| Gabor, Adam, I = {runs}, N = 30, T = {steps} "
        "| median rel. to float64 | max rel. | runs > 1e-3 apart |",
        "|---|---|---|---|",
    ]
    for name, got in (("default (polynomials)", default), ("`platform_math`", platform)):
        rel = np.abs(got.astype(np.float64) - exact) / np.abs(exact)
        rows.append(f"| {name} | {np.median(rel):.2e} | {rel.max():.2e} | {int((rel > 1e-3).sum())} |")
    rel = np.abs(default - platform) / np.abs(platform)
    rows.append(
        f"| default against `platform_math` | {np.median(rel):.2e} | {rel.max():.2e} "
        f"| {int((rel > 1e-3).sum())} |"
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_001, help="arguments per function and range")
    parser.add_argument("--runs", type=int, default=1000, help="starts of the fit")
    parser.add_argument("--steps", type=int, default=200, help="Adam steps of the fit")
    args = parser.parse_args(argv)
    print(f"backend: {jax.default_backend()}, jax {jax.__version__}\n")
    print("\n".join(functions_table(args.points)))
    print()
    print("\n".join(fit_table(args.runs, args.steps)))


if __name__ == "__main__":
    main()
