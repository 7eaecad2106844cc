"""The test problems and their independent references, defined once for every test file.

- The lecture's problems as fitjax losses: ``LINE`` (the 12-point line fit) and ``GABOR``
  (the Gabor model with the notebook's envelope width, on its 30 points).
- Float64 NumPy references written from the lecture's formulas, not from fitjax: the
  Gabor model f(x; φ) = sin(z)·exp(−z²/w) with z = φ0 + 0.06·φ1·x, its least-squares loss
  and its gradient; the line's least-squares solution.
- For the chunked-sweep tests: a problem built from a source string, so that a subprocess
  builds it alike, and a bit-for-bit comparison of two results.
"""

import jax
import numpy as np

import fitjax

LINE = fitjax.least_squares(fitjax.line)
GABOR = fitjax.least_squares(fitjax.Gabor(fitjax.GABOR_W_NOTEBOOK))


def gabor_numpy(phi, x, y, w: float = fitjax.GABOR_W_NOTEBOOK) -> float:
    """L(φ) = Σᵢ (sin(zᵢ)·exp(−zᵢ²/w) − yᵢ)², zᵢ = φ0 + 0.06·φ1·xᵢ, in float64."""
    z = phi[0] + 0.06 * phi[1] * np.asarray(x, np.float64)
    return float(np.sum((np.sin(z) * np.exp(-z * z / w) - np.asarray(y, np.float64)) ** 2))


def gabor_grad_numpy(phi, x, y, w: float = fitjax.GABOR_W_NOTEBOOK) -> np.ndarray:
    """∂L/∂φ of :func:`gabor_numpy`, by the chain rule written out: ∂f/∂z = (cos z − 2z/w·sin z)·e^{−z²/w}."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    z = phi[0] + 0.06 * phi[1] * x
    envelope = np.exp(-z * z / w)
    r = np.sin(z) * envelope - y
    df_dz = (np.cos(z) - 2.0 * z / w * np.sin(z)) * envelope
    return np.array([np.sum(2 * r * df_dz), np.sum(2 * r * df_dz * 0.06 * x)])


def line_minimum() -> np.ndarray:
    """The line's least-squares solution (φ0, φ1) by NumPy's ``lstsq`` in float64."""
    x, y = (np.asarray(a, np.float64) for a in fitjax.datasets.line())
    return np.linalg.lstsq(np.stack([np.ones_like(x), x], 1), y, rcond=None)[0]


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
