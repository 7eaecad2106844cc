"""The metrics a sweep's settings are compared by, their ranking and the results table.

Small pure functions on NumPy arrays, used by ``fitjax sweep`` and usable on any
sweep's arrays (``fitjax.sweep(...).result`` reshaped to ``(settings, runs)``):

* :func:`reach_threshold` — the loss a run must reach to count as having found the
  best minimum: ``best + max(rtol * |best|, atol)``, with ``best`` the lowest final
  loss of any run of any setting.
* :func:`setting_metrics` — per setting: the share of starts reaching it, quantiles of
  the final loss (diverged runs count as ``+inf``), the share diverged, and the median
  number of steps to reach a loss target (from the recorded history).
* :func:`match_minima`, :func:`relabel` — the minima of every setting matched to one
  shared list, so a minimum keeps its number (and colour) across settings.
* :func:`rank` — the order of the settings by one of :data:`RANK_BY`.
* :func:`table_rows`, :func:`write_csv`, :func:`format_table` — one row per setting.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
"""The quantiles of the final loss reported per setting (``loss_q10`` ... ``loss_q90``)."""

RANK_BY: dict[str, tuple[str, bool, str]] = {
    # name -> (metric column, higher is better, what the table says it ranks by)
    "reach": ("share_reaching_best", True, "share of starts reaching the best minimum found"),
    "median": ("loss_median", False, "median final loss"),
    "q10": ("loss_q10", False, "10th percentile of the final loss"),
    "q90": ("loss_q90", False, "90th percentile of the final loss"),
    "best": ("loss_best", False, "lowest final loss"),
    "diverged": ("share_diverged", False, "share of runs diverged"),
    "steps": ("median_steps_to_target", False, "median steps to reach the loss target"),
}
"""The ``--rank-by`` choices: ``reach`` (the default) ranks the settings by how often a
start finds the best minimum, the question a sweep of an optimizer usually asks."""

DEFAULT_RANK_BY = "reach"


def _losses(loss: Any, diverged: Any) -> np.ndarray:
    """Final losses as float64 with diverged or non-finite runs set to ``+inf``."""
    values = np.asarray(loss, dtype=np.float64)
    bad = np.asarray(diverged, dtype=bool) | ~np.isfinite(values)
    return np.where(bad, np.inf, values)


def best_loss(loss: Any, diverged: Any) -> float:
    """The lowest final loss of any run that did not diverge (``inf`` if every run did)."""
    values = _losses(loss, diverged)
    return float(values.min()) if values.size else math.inf


def reach_threshold(best: float, rtol: float = 0.01, atol: float = 1e-6) -> float:
    """The loss at or below which a run counts as having reached the best minimum.

    ``best + max(rtol * |best|, atol)``; ``inf`` when ``best`` is (every run diverged).

    Example:
      >>> round(reach_threshold(0.6457, rtol=0.01), 6)
      0.652157
    """
    if not math.isfinite(best):
        return math.inf
    return best + max(rtol * abs(best), atol)


def steps_to_target(history_step: Any, history_loss: Any, final_loss: Any, steps: int, target: float) -> Any:
    """For each run, the first recorded step whose loss is at or below ``target``.

    Args:
      history_step: the recorded steps, shape ``(R,)``.
      history_loss: the recorded losses, shape ``(..., runs, R)``.
      final_loss: the final losses, shape ``(..., runs)`` (counted as step ``steps``).
      steps: the number of steps run.
      target: the loss to reach.

    Returns:
      A float array of shape ``(..., runs)``: the step, or ``nan`` for runs that never
      reached ``target``.
    """
    hist = np.asarray(history_loss, dtype=np.float64)
    final = np.asarray(final_loss, dtype=np.float64)
    both = np.concatenate([hist, final[..., None]], axis=-1)
    at = np.append(np.asarray(history_step, dtype=np.float64), float(steps))
    hit = np.isfinite(both) & (both <= target)
    first = np.argmax(hit, axis=-1)
    return np.where(hit.any(axis=-1), at[first], np.nan)


def quantile(values: Any, q: float) -> float:
    """NumPy's default (linear) quantile, where ``+inf`` values count as larger than any other:
    a quantile that interpolates towards an infinite value is ``inf`` (NumPy gives ``nan``)."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    pos = q * (v.size - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    frac = pos - lo
    if math.isinf(v[hi]) and (frac > 0 or hi == lo):
        return math.inf
    if frac == 0:
        return float(v[lo])
    return float(v[lo] + frac * (v[hi] - v[lo]))


def setting_metrics(
    loss: Any,
    diverged: Any,
    *,
    threshold: float,
    steps_to: Any = None,
) -> dict[str, Any]:
    """The metrics of one setting from its runs' final losses.

    Args:
      loss: final losses of the setting's runs, shape ``(runs,)``.
      diverged: which runs diverged, shape ``(runs,)``.
      threshold: the loss a run must reach to count as reaching the best minimum
        (:func:`reach_threshold`).
      steps_to: optional, each run's step of reaching the target (:func:`steps_to_target`).

    Returns:
      ``runs``, ``share_reaching_best``, ``share_diverged``, ``loss_best``,
      ``loss_q10``, ``loss_q25``, ``loss_median``, ``loss_q75``, ``loss_q90`` (diverged
      runs count as ``+inf``, so a quantile above the share that converged is ``inf``),
      ``share_reaching_target`` and ``median_steps_to_target`` (over the runs that
      reached it; ``nan`` if none did or no history was recorded).
    """
    values = _losses(loss, diverged).ravel()
    n = values.size
    out: dict[str, Any] = {"runs": n}
    out["share_reaching_best"] = float(np.mean(values <= threshold)) if n else math.nan
    out["share_diverged"] = float(np.mean(np.asarray(diverged, dtype=bool))) if n else math.nan
    out["loss_best"] = float(values.min()) if n else math.nan
    for q in QUANTILES:
        name = "loss_median" if q == 0.5 else f"loss_q{round(100 * q)}"
        out[name] = quantile(values, q) if n else math.nan
    if steps_to is None:
        out["share_reaching_target"] = math.nan
        out["median_steps_to_target"] = math.nan
    else:
        st = np.asarray(steps_to, dtype=np.float64).ravel()
        reached = np.isfinite(st)
        out["share_reaching_target"] = float(np.mean(reached)) if n else math.nan
        out["median_steps_to_target"] = float(np.median(st[reached])) if reached.any() else math.nan
    return out


def _key(value: float, higher_is_better: bool) -> float:
    """A sort key with nan last whichever the direction."""
    if math.isnan(value):
        return math.inf
    return -value if higher_is_better else value


def rank(metrics: Sequence[Mapping[str, Any]], by: str = DEFAULT_RANK_BY) -> list[int]:
    """The settings' indices, best first, by the metric ``by`` (one of :data:`RANK_BY`).

    Ties are broken by the share reaching the best minimum (higher first), then the
    median final loss, then the setting's index. ``nan`` values rank last.

    Example:
      >>> rows = [{"share_reaching_best": 0.2, "loss_median": 1.0},
      ...         {"share_reaching_best": 0.5, "loss_median": 2.0}]
      >>> rank(rows), rank(rows, "median")
      ([1, 0], [0, 1])
    """
    if by not in RANK_BY:
        raise ValueError(f"by must be one of {', '.join(RANK_BY)}, got {by!r}")
    column, higher, _ = RANK_BY[by]

    def key(i: int) -> tuple:
        m = metrics[i]
        return (
            _key(float(m[column]), higher),
            _key(float(m["share_reaching_best"]), True),
            _key(float(m["loss_median"]), False),
            i,
        )

    return sorted(range(len(metrics)), key=key)


def table_rows(
    hyperparams: Sequence[Mapping[str, float]],
    metrics: Sequence[Mapping[str, Any]],
    order: Sequence[int],
) -> list[dict[str, Any]]:
    """One row per setting in ranking order: ``rank``, ``setting`` (its index in the
    sweep's flattened grid), every hyperparameter, then every metric."""
    return [{"rank": r + 1, "setting": s, **hyperparams[s], **metrics[s]} for r, s in enumerate(order)]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return str(value)


def write_csv(path: Any, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` as CSV with a header; ``nan`` as an empty cell, infinities as ``inf``."""
    out = Path(path)
    columns = list(rows[0]) if rows else []
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])
    return out


def write_parquet(path: Any, rows: Sequence[Mapping[str, Any]]) -> Path | None:
    """Write ``rows`` as Parquet when pandas and pyarrow are importable; None otherwise."""
    try:
        import pandas as pd
        import pyarrow  # noqa: F401
    except ImportError:
        return None
    out = Path(path)
    pd.DataFrame(list(rows)).to_parquet(out, index=False)
    return out


def _fmt(value: Any, percent: bool = False) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if percent:
            return f"{100 * value:.1f}%"
        return f"{value:.4g}"
    return str(value)


def format_table(
    rows: Sequence[Mapping[str, Any]], hyperparams: Sequence[str], by: str, top: int | None = None
) -> str:
    """The top ``top`` rows as a fixed-width text table, preceded by what they are ranked by."""
    shown = list(rows)[: top if top else None]
    columns = [
        ("rank", "rank", False),
        *((h, h, False) for h in hyperparams),
        ("share_reaching_best", "reach best", True),
        ("loss_median", "median loss", False),
        ("loss_q10", "q10", False),
        ("loss_q90", "q90", False),
        ("share_diverged", "diverged", True),
        ("median_steps_to_target", "steps to target", False),
    ]
    cells = [[title for _, title, _ in columns]]
    cells += [[_fmt(row[c], pct) for c, _, pct in columns] for row in shown]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    head = f"top {len(shown)} of {len(rows)} settings, ranked by {RANK_BY[by][2]} (--rank-by {by})"
    return "\n".join([head, *lines])


def match_minima(minima: Sequence[Any], losses: Sequence[Any], tol: float) -> tuple[Any, Any, list[Any]]:
    """Match the minima found by each setting to one shared list.

    Args:
      minima: per setting, the minima's coordinates, shape ``(K_s, P)``.
      losses: per setting, their losses, shape ``(K_s,)``.
      tol: two minima closer than ``tol`` (Euclidean distance) are the same minimum.

    Returns:
      ``(shared, shared_loss, maps)``: the shared minima ``(G, P)`` in ascending order
      of loss (each the lowest-loss member of its group), their losses ``(G,)``, and per
      setting an int array ``(K_s,)`` giving each of its minima's index in ``shared``.

    Example:
      >>> import numpy as np
      >>> shared, loss, maps = match_minima([np.array([[0.0, 0.0], [5.0, 5.0]]), np.array([[5.0, 5.001]])],
      ...                                   [np.array([1.0, 0.5]), np.array([0.4])], tol=0.01)
      >>> loss.tolist(), [m.tolist() for m in maps]
      ([0.4, 1.0], [[1, 0], [0]])
    """
    entries = [
        (float(v), s, i, np.asarray(c, dtype=np.float64))
        for s, (ms, vs) in enumerate(zip(minima, losses, strict=True))
        if len(vs)
        for i, (c, v) in enumerate(zip(np.asarray(ms).reshape(len(vs), -1), np.asarray(vs), strict=True))
    ]
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    heads: list[np.ndarray] = []
    head_loss: list[float] = []
    maps = [np.full(len(np.asarray(vs)), -1, dtype=np.int64) for vs in losses]
    for value, s, i, c in entries:
        near = [g for g, h in enumerate(heads) if np.linalg.norm(h - c) <= tol]
        if near:
            maps[s][i] = near[0]
        else:
            maps[s][i] = len(heads)
            heads.append(c)
            head_loss.append(value)
    size = next((np.asarray(m).shape[-1] for m, v in zip(minima, losses, strict=True) if len(v)), 0)
    shared = np.stack(heads) if heads else np.zeros((0, size))
    return shared, np.asarray(head_loss, dtype=np.float64), maps


def relabel(labels: Any, mapping: Any) -> np.ndarray:
    """A setting's basin labels in the shared numbering of :func:`match_minima`
    (negative labels, diverged or unsettled, kept as they are)."""
    lab = np.asarray(labels)
    m = np.asarray(mapping, dtype=np.int64)
    if m.size == 0:
        return lab.copy()
    return np.where(lab >= 0, m[np.clip(lab, 0, m.size - 1)], lab)
