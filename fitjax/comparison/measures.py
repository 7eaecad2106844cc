r"""The measures of an optimizer study, as small pure NumPy functions of per-run arrays.

The conventions follow COCO (Hansen et al., *COCO: performance assessment*, 2021):

* A **target** is a loss value :math:`f_\text{ref} + \Delta`; the ladder of Δ runs from
  :math:`10^{1}` to :math:`10^{-8}` by default. :math:`f_\text{ref}` is the problem's known
  minimum, or the best loss found anywhere in the study when none is known (the
  study states which).
* The **runtime** of a run to a target is the first recorded budget (step or
  evaluation count) at which its loss is at or below the target; ∞ when it never is.
  Budgets are only seen at the recorded steps, so a runtime is exact up to the
  recording interval.
* The **ECDF** at budget b is the share of (run, target) pairs whose runtime is ≤ b.
* The **aRT** (average runtime with restarts) to a target is
  :math:`\sum_r \min(\text{runtime}_r, \text{budget}_r) / \#\{\text{successes}\}`: the
  budget spent by all runs, successful or not, per success; ∞ without a success.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DELTAS = 10.0 ** np.arange(1, -9, -1, dtype=np.float64)
"""The default ladder of target gaps Δ: 10¹, 10⁰, ..., 10⁻⁸ (COCO's range)."""


def targets(reference: float, deltas: Sequence[float] | np.ndarray = DELTAS) -> np.ndarray:
    r"""The target loss values :math:`f_\text{ref} + \Delta` for each Δ of ``deltas``.

    Example:
      >>> targets(-1.0, [1.0, 0.1])
      array([ 0. , -0.9])
    """
    deltas = np.asarray(deltas, dtype=np.float64)
    if deltas.ndim != 1 or deltas.size == 0 or not np.all(np.isfinite(deltas)) or np.any(deltas < 0):
        raise ValueError(f"deltas must be a non-empty list of finite gaps >= 0, got {deltas!r}")
    if not math.isfinite(float(reference)):
        raise ValueError(f"reference must be a finite loss value, got {reference!r}")
    return float(reference) + deltas


def runtimes(
    budgets: np.ndarray,
    curves: np.ndarray,
    target_values: np.ndarray,
    diverged_step: np.ndarray | None = None,
    steps: np.ndarray | None = None,
) -> np.ndarray:
    r"""Each run's runtime to each target: :math:`\min\{b_k : L_{r,k} \le \tau\}`, ∞ if none.

    Args:
      budgets: the budget at each recorded point, shape ``(K,)`` nondecreasing (steps or
        evaluations), or ``(runs, K)`` when the runs spend budgets at different rates.
      curves: the loss of each run at each recorded point, shape ``(runs, K)``; NaN
        counts as not reached.
      target_values: the targets τ, shape ``(T,)``.
      diverged_step: optional, per run: recorded points at steps after a run's diverged
        step (≥ 0) do not count (the run stopped there).
      steps: the step of each recorded point, ``(K,)``; needed with ``diverged_step``.

    Returns:
      float array ``(runs, T)``.

    Example:
      >>> import numpy as np
      >>> runtimes(np.array([0, 10, 20]), np.array([[5.0, 1.0, 0.1]]), np.array([2.0, 0.5, 0.01]))
      array([[10., 20., inf]])
    """
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 2:
        raise ValueError(f"curves must have shape (runs, recorded points), got {curves.shape}")
    b = np.broadcast_to(np.asarray(budgets, dtype=np.float64), curves.shape)
    tau = np.asarray(target_values, dtype=np.float64)
    valid = np.isfinite(curves)
    if diverged_step is not None:
        if steps is None:
            raise ValueError("runtimes: diverged_step needs steps, the step of each recorded point")
        d = np.asarray(diverged_step).reshape(-1, 1)
        valid &= (d < 0) | (np.asarray(steps).reshape(1, -1) <= d)
    hit = valid[:, :, None] & (curves[:, :, None] <= tau[None, None, :])  # (runs, K, T)
    first = np.argmax(hit, axis=1)  # (runs, T)
    any_hit = hit.any(axis=1)
    out = np.take_along_axis(b, first, axis=1) if b.ndim == 2 else b[first]
    return np.where(any_hit, out, np.inf)


def success_rate(rt: np.ndarray) -> np.ndarray:
    """The share of runs with a finite runtime, per target (the last axis)."""
    rt = np.asarray(rt, dtype=np.float64)
    return np.isfinite(rt).mean(axis=0)


def ecdf(rt: np.ndarray, budgets: Sequence[float] | np.ndarray) -> np.ndarray:
    r"""The empirical CDF of runtimes over runs × targets,
    :math:`F(b) = \#\{(r,t): \text{rt}_{r,t} \le b\}/(R\,T)`.

    Example:
      >>> import numpy as np
      >>> ecdf(np.array([[1.0, np.inf], [3.0, 4.0]]), [0, 1, 3, 10])
      array([0.  , 0.25, 0.5 , 0.75])
    """
    flat = np.sort(np.asarray(rt, dtype=np.float64).ravel())
    b = np.asarray(budgets, dtype=np.float64)
    return np.searchsorted(flat, b, side="right") / flat.size


def average_runtime(rt: np.ndarray, budget: float | np.ndarray) -> np.ndarray:
    r"""COCO's aRT per target: :math:`\sum_r \min(\text{rt}_r, B_r) / \#\{r : \text{rt}_r < \infty\}`.

    ``budget`` is the budget each run spent in all (a scalar, or one per run): an
    unsuccessful run counts all of it. ∞ for a target no run reached.

    Example:
      >>> import numpy as np
      >>> average_runtime(np.array([[10.0], [np.inf], [30.0]]), 100.0)   # (10 + 100 + 30) / 2
      array([70.])
    """
    rt = np.asarray(rt, dtype=np.float64)
    spent = np.broadcast_to(np.asarray(budget, dtype=np.float64).reshape(-1, 1), rt.shape)
    ok = np.isfinite(rt)
    total = np.where(ok, rt, spent).sum(axis=0)
    n = ok.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.inf)


def quantiles(
    values: np.ndarray, qs: Sequence[float] = (0.1, 0.5, 0.9), diverged: np.ndarray | None = None
) -> np.ndarray:
    r"""Quantiles of per-run values, diverged (and NaN) runs counted as +∞.

    Uses the inverted-CDF definition :math:`Q(q) = x_{(\lceil q n \rceil)}` (a sample value,
    never an interpolation between a finite value and ∞).

    Example:
      >>> import numpy as np
      >>> quantiles(np.array([4.0, 1.0, 3.0, 2.0]), (0.25, 0.5, 1.0))
      array([1., 2., 4.])
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = np.where(np.isnan(v), np.inf, v)
    if diverged is not None:
        v = np.where(np.asarray(diverged).ravel(), np.inf, v)
    return np.quantile(v, np.asarray(qs, dtype=np.float64), method="inverted_cdf")


def share_diverged(diverged_step: np.ndarray) -> float:
    """The share of runs that diverged (``diverged_step >= 0``)."""
    return float(np.mean(np.asarray(diverged_step) >= 0))


def sensitivity_width(
    values: Sequence[float] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    factor: float = 2.0,
    higher_is_better: bool = True,
) -> float:
    r"""The width, in decades, of the hyperparameter range whose score is within ``factor`` of the best.

    With values :math:`v_1 < \dots < v_n` (e.g. learning rates) and scores :math:`s_i`,
    the best is :math:`s^* = \max_i s_i` (or the min when lower is better); a setting is
    *good* when :math:`s_i \ge s^*/c` (or :math:`s_i \le c\, s^*`). The width is
    :math:`\log_{10}(v_\text{hi}/v_\text{lo})` over the unbroken run of good settings
    around the best one. 0 when only the best is good; NaN when no score is positive
    (nothing to be within a factor of).

    Example:
      >>> sensitivity_width([1e-3, 1e-2, 1e-1, 1.0], [0.1, 0.9, 0.6, 0.0], factor=2.0)
      1.0
    """
    v = np.asarray(values, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if v.ndim != 1 or v.shape != s.shape or v.size == 0:
        raise ValueError(f"values and scores must be 1-D of one length, got {v.shape} and {s.shape}")
    if not np.all(v > 0):
        raise ValueError(f"values must be positive (a width in decades), got {v}")
    if not (factor >= 1.0):
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    order = np.argsort(v)
    v, s = v[order], np.where(np.isnan(s), -np.inf if higher_is_better else np.inf, s[order])
    best_i = int(np.argmax(s) if higher_is_better else np.argmin(s))
    best = s[best_i]
    if not (np.isfinite(best) and best > 0):
        return float("nan")
    good = s >= best / factor if higher_is_better else s <= best * factor
    lo = hi = best_i
    while lo > 0 and good[lo - 1]:
        lo -= 1
    while hi < v.size - 1 and good[hi + 1]:
        hi += 1
    return float(np.log10(v[hi] / v[lo]))


def wilson(successes: int | np.ndarray, n: int | np.ndarray, z: float = 1.959963984540054) -> np.ndarray:
    r"""Wilson's score interval for a rate :math:`\hat p = k/n`:

    .. math::
        \frac{\hat p + \frac{z^2}{2n}
              \pm z \sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}{1 + \frac{z^2}{n}}

    (z = 1.96: 95%). Returns ``[..., 2]`` (low, high); NaN for n = 0.

    Example:
      >>> wilson(0, 10).round(4)
      array([0.    , 0.2775])
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        den = 1.0 + z * z / n
        mid = (p + z * z / (2 * n)) / den
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
        out = np.stack([np.clip(mid - half, 0.0, 1.0), np.clip(mid + half, 0.0, 1.0)], axis=-1)
    return np.where((n > 0)[..., None], out, np.nan)


def bootstrap_median(
    values: np.ndarray, seed: int, n_boot: int = 1000, level: float = 0.95
) -> tuple[float, float]:
    r"""A percentile bootstrap interval for the median: resample the n values with
    replacement ``n_boot`` times (NumPy generator seeded with ``seed``), take each
    resample's median, and return the :math:`(1-\text{level})/2` and
    :math:`(1+\text{level})/2` quantiles of those medians (inverted-CDF, so ∞ values
    are kept, never interpolated). NaN counts as +∞.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return (float("nan"), float("nan"))
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    v = np.where(np.isnan(v), np.inf, v)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(int(n_boot), v.size))
    meds = np.sort(np.sort(v[idx], axis=1)[:, (v.size - 1) // 2 : v.size // 2 + 1], axis=1)
    # the median of each resample, as np.median computes it, without inf - inf = nan
    med = np.where(np.isinf(meds[:, -1]), meds[:, -1], meds.mean(axis=1))
    lo, hi = np.quantile(med, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return (float(lo), float(hi))


def median(values: np.ndarray) -> float:
    """The median of per-run values, NaN counted as +∞ (the median of a sample where
    more than half of the runs never got there is ∞)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = np.sort(np.where(np.isnan(v), np.inf, v))
    if v.size == 0:
        return float("nan")
    a, b = v[(v.size - 1) // 2], v[v.size // 2]
    return float(b if np.isinf(b) else (a + b) / 2)
