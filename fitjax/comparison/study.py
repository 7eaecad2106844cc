r"""An optimizer study: every (problem, optimizer, setting) × starts, run through :func:`fitjax.fit`.

:func:`compare` runs the study and returns a :class:`Study`, which holds every run's
recorded loss curve, final loss and divergence step, and computes the measures of
:mod:`fitjax.comparison.measures` from them: :meth:`Study.table` (one row per problem ×
optimizer × setting, the rows of ``results.csv``), :meth:`Study.runtimes`,
:meth:`Study.best_settings` and :meth:`Study.sensitivity`.

How the runs are grouped: for a fitjax optimizer the settings of its grid are handed
to :func:`fitjax.sweep`, which passes them per run through ``fit(..., hyperparams=...)``,
so each (problem, optimizer) pair is one compiled program and every setting sees the
same starts (and, for mini-batches, the same batch order per start). Any other optax
transformation is either run as it is (one setting) or built by a function of the
grid's values, one program per setting.

**Budgets.** A step spends one gradient evaluation (one ``value_and_grad`` of the batch
loss). A line search spends more loss evaluations: its per-step mean over the whole
run (:func:`fitjax.loss_evaluations`) is added, so evaluation budgets of line-search
runs are their step budgets × (1 + that mean), an approximation where the number of
evaluations per step varies. Seconds are the wall time of each pair's program,
compilation included, shared equally by its settings.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import itertools
import json
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fitjax import problems as _problems
from fitjax.comparison import measures as m
from fitjax.engine import fit, sweep
from fitjax.optim import linesearch, rmsprop
from fitjax.optim import rules as optimizers
from fitjax.optim.protocol import Optimizer

OPTIMIZERS: dict[str, Callable[..., Any]] = {
    "gd": optimizers.gd,
    "sgd": optimizers.sgd,
    "momentum": optimizers.momentum,
    "nesterov": optimizers.nesterov,
    "nesterov_classical": optimizers.nesterov_classical,
    "normalized": optimizers.normalized,
    "adam": optimizers.adam,
    "rmsprop": rmsprop.rmsprop,
    "gd_line_search": linesearch.gd_line_search,
    "backtracking_armijo": linesearch.backtracking_armijo,
}
"""The fitjax optimizers a study (or a study file) can name, by name."""

_LINE_SEARCHES = ("gd_line_search", "backtracking_armijo")


@dataclasses.dataclass
class Cell:
    """The runs of one (problem, optimizer, setting).

    Attributes:
      problem, optimizer: names.
      setting: the hyperparameter values of this cell (empty: the optimizer's own).
      batch_size: mini-batch size, or None for the full batch.
      steps: the step of each recorded point, ``(K,)``; the last is the final step.
      curves: the loss of each run at each recorded point, ``(runs, K)``.
      diverged_step: per run, the step it diverged at, or -1.
      evals_per_step: per run, evaluations per step (1, plus a line search's mean).
      seconds: wall time of this cell's share of its program.
      metrics: per-run values of user metrics, name -> ``(runs,)``.
    """

    problem: str
    optimizer: str
    setting: dict[str, float]
    batch_size: int | None
    steps: np.ndarray
    curves: np.ndarray
    diverged_step: np.ndarray
    evals_per_step: np.ndarray
    seconds: float
    metrics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def final(self) -> np.ndarray:
        """Each run's final loss."""
        return self.curves[:, -1]

    @property
    def runs(self) -> int:
        return int(self.curves.shape[0])

    @property
    def label(self) -> str:
        """``optimizer`` with its setting, e.g. ``adam(learning_rate=0.01)``."""
        inner = ", ".join(f"{k}={v:g}" for k, v in self.setting.items())
        bs = f", batch_size={self.batch_size}" if self.batch_size else ""
        return f"{self.optimizer}({inner}{bs})"


_PROFILE = ("values", "success", "success_lo", "success_hi", "aRT", "median_gap", "share_diverged")


def _fmt_delta(d: float) -> str:
    return f"{d:.0e}"


@dataclasses.dataclass
class Study:
    """The outcome of :func:`compare`: every cell's runs, and the measures computed from them.

    Attributes:
      cells: one :class:`Cell` per problem × optimizer × setting.
      problems: name -> :class:`fitjax.problems.Problem`.
      deltas: the ladder of target gaps Δ.
      config: the study's settings (JSON-ready).
    """

    cells: list[Cell]
    problems: dict[str, _problems.Problem]
    deltas: np.ndarray
    config: dict[str, Any]

    # ------------------------------------------------------------------ references and runtimes

    def reference(self, problem: str) -> tuple[float, str]:
        """The value targets are measured from, and where it comes from: the problem's
        known minimum (``"known minimum"``), or the best loss any run of the study reached
        on it (``"best found"``)."""
        prob = self.problems[problem]
        if prob.minimum is not None:
            return prob.minimum, "known minimum"
        best = np.inf
        for c in self.cells:
            if c.problem == problem:
                ok = np.where(c.diverged_step[:, None] < 0, c.curves, np.inf)
                best = min(best, float(np.nanmin(np.where(np.isnan(ok), np.inf, ok))))
        return best, "best found"

    def targets(self, problem: str) -> np.ndarray:
        """The target values :math:`f_\\text{ref} + \\Delta` of ``problem``."""
        return m.targets(self.reference(problem)[0], self.deltas)

    def runtimes(self, cell: Cell, unit: str = "steps") -> np.ndarray:
        """Each run's runtime to each target, ``(runs, T)``, in ``steps`` or ``evaluations``."""
        if unit not in ("steps", "evaluations"):
            raise ValueError(f"unit must be 'steps' or 'evaluations', got {unit!r}")
        budgets = cell.steps.astype(np.float64)
        if unit == "evaluations":
            budgets = cell.evals_per_step[:, None] * budgets[None, :]
        return m.runtimes(
            budgets,
            cell.curves,
            self.targets(cell.problem),
            diverged_step=cell.diverged_step,
            steps=cell.steps,
        )

    def budget(self, cell: Cell, unit: str = "steps") -> np.ndarray:
        """What each run spent in all (its steps, or evaluations), per run."""
        total = float(cell.steps[-1])
        return total * (cell.evals_per_step if unit == "evaluations" else np.ones(cell.runs))

    # ------------------------------------------------------------------ the table

    def row(self, cell: Cell, seed: int = 0) -> dict[str, Any]:
        """Every measure of one cell, as a flat dict (a row of ``results.csv``)."""
        ref, source = self.reference(cell.problem)
        rt = self.runtimes(cell)
        rate = m.success_rate(rt)
        n_ok = np.isfinite(rt).sum(axis=0)
        ci = m.wilson(n_ok, cell.runs)
        art = m.average_runtime(rt, self.budget(cell))
        art_e = m.average_runtime(self.runtimes(cell, "evaluations"), self.budget(cell, "evaluations"))
        diverged = cell.diverged_step >= 0
        q = m.quantiles(cell.final - ref, (0.1, 0.5, 0.9), diverged=diverged)
        lo, hi = m.bootstrap_median(np.where(diverged, np.inf, cell.final - ref), seed=seed)
        row: dict[str, Any] = {
            "problem": cell.problem,
            "optimizer": cell.optimizer,
            "setting": cell.label,
            **{k: v for k, v in cell.setting.items()},
            "batch_size": cell.batch_size or "",
            "runs": cell.runs,
            "steps": int(cell.steps[-1]),
            "reference": ref,
            "reference_source": source,
            "gap_q10": q[0],
            "gap_median": q[1],
            "gap_median_lo": lo,
            "gap_median_hi": hi,
            "gap_q90": q[2],
            "share_diverged": m.share_diverged(cell.diverged_step),
            "evals_per_step": float(np.mean(cell.evals_per_step)),
            "seconds": cell.seconds,
        }
        for j, d in enumerate(self.deltas):
            t = _fmt_delta(d)
            med = m.median(rt[:, j])
            row[f"success_{t}"] = rate[j]
            row[f"success_{t}_lo"] = ci[j, 0]
            row[f"success_{t}_hi"] = ci[j, 1]
            row[f"aRT_steps_{t}"] = art[j]
            row[f"aRT_evals_{t}"] = art_e[j]
            row[f"median_runtime_{t}"] = med
        for name, values in cell.metrics.items():
            row[f"metric_{name}_median"] = m.median(values)
        return row

    def table(self, seed: int = 0) -> list[dict[str, Any]]:
        """One row per cell (:meth:`row`); ``seed`` seeds the bootstrap intervals."""
        return [self.row(c, seed=seed) for c in self.cells]

    def to_csv(self, path: str | Path, seed: int = 0) -> Path:
        """Write :meth:`table` as CSV (every row has every column; missing values empty)."""
        rows = self.table(seed=seed)
        columns: list[str] = []
        for r in rows:
            columns += [k for k in r if k not in columns]
        path = Path(path)
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, restval="")
            w.writeheader()
            for r in rows:
                w.writerow({k: (_csv_value(v)) for k, v in r.items()})
        return path

    # ------------------------------------------------------------------ summaries

    def best_settings(self, delta: float | None = None, unit: str = "steps") -> list[dict[str, Any]]:
        r"""The best cell per (problem, optimizer): least aRT to the target of gap ``delta``
        (default: the smallest Δ of the ladder that any cell of the pair reaches), ties
        broken by success rate, then median final loss. ``tuning_budget`` is what the
        whole grid spent: settings × runs × steps (or evaluations)."""
        out = []
        for (prob, opt), cells in self.pairs().items():
            j = self._delta_index(cells, delta)
            scored = []
            for c in cells:
                rt = self.runtimes(c, unit)
                art = m.average_runtime(rt, self.budget(c, unit))[j]
                scored.append((art, -m.success_rate(rt)[j], m.median(c.final), c))
            art, neg_rate, _, best = min(scored, key=lambda s: s[:3])
            out.append(
                {
                    "problem": prob,
                    "optimizer": opt,
                    "best": best.label,
                    "setting": best.setting,
                    "delta": float(self.deltas[j]),
                    "aRT": float(art),
                    "success": float(-neg_rate),
                    "tuning_budget": float(sum(self.budget(c, unit).sum() for c in cells)),
                    "settings_tried": len(cells),
                }
            )
        return out

    def swept(self, problem: str, optimizer: str) -> list[str]:
        """The hyperparameters the grid of ``problem`` × ``optimizer`` varies (more than one value)."""
        cells = self.pairs().get((problem, optimizer), [])
        names = [k for k in (cells[0].setting if cells else {}) if all(k in c.setting for c in cells)]
        return [k for k in names if len({c.setting[k] for c in cells}) > 1]

    def profile(
        self, problem: str, optimizer: str, hyperparam: str, delta: float, unit: str = "steps"
    ) -> dict[str, np.ndarray]:
        """Every measure of ``problem`` × ``optimizer`` against the values of one swept
        hyperparameter, the others held at the pair's best setting (:meth:`best_settings`
        at the target of gap ``delta``).

        Returns:
          a dict of arrays, one entry per value of ``hyperparam`` in increasing order:
          ``values``; ``success`` (the success rate to the target) with ``success_lo`` and
          ``success_hi`` (Wilson 95%); ``aRT`` (in ``unit``); ``median_gap`` (the median final
          loss minus the reference, diverged runs counted as ∞); ``share_diverged``.
        """
        cells = [c for c in self.pairs().get((problem, optimizer), []) if hyperparam in c.setting]
        if not cells:
            raise ValueError(f"no cells of {problem!r} × {optimizer!r} vary {hyperparam!r}")
        j = self._delta_index(cells, delta)
        best = next(
            b["setting"]
            for b in self.best_settings(float(self.deltas[j]), unit)
            if (b["problem"], b["optimizer"]) == (problem, optimizer)
        )
        held = [c for c in cells if all(v == best[k] for k, v in c.setting.items() if k != hyperparam)]
        held.sort(key=lambda c: c.setting[hyperparam])
        ref = self.reference(problem)[0]
        out: dict[str, list[float]] = {k: [] for k in _PROFILE}
        for c in held:
            rt = self.runtimes(c, unit)[:, j]
            k = int(np.isfinite(rt).sum())
            lo, hi = m.wilson(k, c.runs)
            gap = np.where(c.diverged_step >= 0, np.inf, c.final - ref)
            for name, v in zip(
                _PROFILE,
                (
                    c.setting[hyperparam],
                    k / c.runs,
                    lo,
                    hi,
                    m.average_runtime(rt[:, None], self.budget(c, unit))[0],
                    m.median(gap),
                    m.share_diverged(c.diverged_step),
                ),
                strict=True,
            ):
                out[name].append(float(v))
        return {k: np.asarray(v) for k, v in out.items()}

    def sensitivity(
        self,
        problem: str,
        optimizer: str,
        delta: float,
        hyperparam: str = "learning_rate",
        factor: float = 2.0,
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """The sensitivity width (decades of ``hyperparam`` whose success rate to the target
        of gap ``delta`` is within ``factor`` of the best; see
        :func:`~fitjax.comparison.measures.sensitivity_width`), with the values and rates
        it was computed from (:meth:`profile`: other hyperparameters held at their best
        values). NaN when a value is not positive (no width in decades)."""
        prof = self.profile(problem, optimizer, hyperparam, delta)
        values, rates = prof["values"], prof["success"]
        if not np.all(values > 0):
            return float("nan"), values, rates
        return m.sensitivity_width(values, rates, factor=factor), values, rates

    def pairs(self) -> dict[tuple[str, str], list[Cell]]:
        """The cells of each (problem, optimizer), in the study's order."""
        pairs: dict[tuple[str, str], list[Cell]] = {}
        for c in self.cells:
            pairs.setdefault((c.problem, c.optimizer), []).append(c)
        return pairs

    def _delta_index(self, cells: list[Cell], delta: float | None) -> int:
        if delta is not None:
            return int(np.argmin(np.abs(np.log10(self.deltas) - np.log10(delta))))
        reached = np.zeros(len(self.deltas), bool)
        for c in cells:
            reached |= np.isfinite(self.runtimes(c)).any(axis=0)
        idx = np.flatnonzero(reached)
        return int(idx[-1]) if idx.size else 0

    # ------------------------------------------------------------------ saving

    def save(self, path: str | Path) -> Path:
        """Write every cell's per-run arrays to one ``.npz`` (``cell0_curves``, ``cell1_curves``, ...) with
        a JSON index (``index``) of the cells and the study's configuration."""
        arrays: dict[str, np.ndarray] = {}
        index = []
        for i, c in enumerate(self.cells):
            arrays[f"cell{i}_steps"] = c.steps
            arrays[f"cell{i}_curves"] = c.curves
            arrays[f"cell{i}_diverged_step"] = c.diverged_step
            arrays[f"cell{i}_evals_per_step"] = c.evals_per_step
            for name, v in c.metrics.items():
                arrays[f"cell{i}_metric_{name}"] = v
            index.append(
                {
                    "problem": c.problem,
                    "optimizer": c.optimizer,
                    "setting": c.setting,
                    "batch_size": c.batch_size,
                    "seconds": c.seconds,
                    "metrics": sorted(c.metrics),
                }
            )
        meta = {"cells": index, "deltas": self.deltas.tolist(), "config": self.config}
        arrays["index"] = np.array(json.dumps(meta))
        path = Path(path)
        np.savez_compressed(path, allow_pickle=True, **arrays)  # numpy's default, named: no array takes it
        return path


def _csv_value(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return repr(float(v))
    if isinstance(v, np.integer):
        return int(v)
    return v


def load(path: str | Path, problems: Sequence[Any] | None = None) -> Study:
    """Read a study written by :meth:`Study.save`; ``problems`` (names or
    :class:`~fitjax.problems.Problem`) default to the catalogue's by name."""
    with np.load(path) as z:
        meta = json.loads(str(z["index"]))
        cells = []
        for i, c in enumerate(meta["cells"]):
            cells.append(
                Cell(
                    c["problem"],
                    c["optimizer"],
                    c["setting"],
                    c["batch_size"],
                    z[f"cell{i}_steps"],
                    z[f"cell{i}_curves"],
                    z[f"cell{i}_diverged_step"],
                    z[f"cell{i}_evals_per_step"],
                    c["seconds"],
                    {n: z[f"cell{i}_metric_{n}"] for n in c["metrics"]},
                )
            )
    given = {p.name: p for p in map(_problems.get, problems or [])}
    probs = {c.problem: given.get(c.problem) or _problems.get(c.problem) for c in cells}
    return Study(cells, probs, np.asarray(meta["deltas"]), meta["config"])


# ----------------------------------------------------------------------------- running the study


def _settings(grid: Mapping[str, Sequence[float]]) -> list[dict[str, float]]:
    """The Cartesian product of a grid, in ``itertools.product`` order (last name fastest)."""
    names = list(grid)
    return [dict(zip(names, map(float, vals), strict=True)) for vals in itertools.product(*grid.values())]


def _check_grids(optimizers: Mapping[str, Any], grids: Mapping[str, Any]) -> dict[str, dict[str, list]]:
    unknown = set(grids) - set(optimizers)
    if unknown:
        raise ValueError(
            f"grids names optimizer(s) {sorted(unknown)} not in optimizers ({sorted(optimizers)})"
        )
    out = {}
    for name, grid in grids.items():
        if not isinstance(grid, Mapping):
            raise TypeError(f"grids[{name!r}] must map hyperparameter names to lists of values, got {grid!r}")
        g = {}
        for hp, values in grid.items():
            vals = np.atleast_1d(np.asarray(values, dtype=np.float64))
            if vals.ndim != 1 or vals.size == 0 or not np.all(np.isfinite(vals)):
                raise ValueError(
                    f"grids[{name!r}][{hp!r}] must be a non-empty list of finite numbers, got {values!r}"
                )
            g[hp] = vals.tolist()
        out[name] = g
    return out


def _resolve_optimizers(optimizers: Any, grids: Mapping[str, Mapping[str, list]]) -> dict[str, Any]:
    """Names of fitjax optimizers become optimizers built with their grid's first values."""
    if isinstance(optimizers, str) or not isinstance(optimizers, Mapping | Sequence):
        raise TypeError(f"optimizers must be a dict name -> optimizer or a list of names, got {optimizers!r}")
    if not isinstance(optimizers, Mapping):
        optimizers = {name: name for name in optimizers}
    out = {}
    for name, opt in optimizers.items():
        if isinstance(opt, str):
            if opt not in OPTIMIZERS:
                raise ValueError(f"unknown optimizer {opt!r}; fitjax's are {', '.join(OPTIMIZERS)}")
            grid = grids.get(name, {})
            first = {hp: v[0] for hp, v in grid.items()}
            if opt not in _LINE_SEARCHES:
                first.setdefault("learning_rate", 0.01)
            try:
                opt = OPTIMIZERS[opt](**first)
            except TypeError as err:
                raise ValueError(f"grids[{name!r}]: {err}") from None
        out[name] = opt
    return out


def seed_of(*names: str) -> int:
    """A stable 31-bit number from names (the same in every process and Python version)."""
    return zlib.crc32("/".join(names).encode()) & 0x7FFFFFFF


def _evals(name: str, opt: Any, res: Any, n: int) -> np.ndarray:
    try:
        ev = linesearch.loss_evaluations(res)
    except TypeError:
        return np.ones(n)
    return 1.0 + np.asarray(ev.per_step, np.float64).reshape(n)


class _FitOptions(TypedDict):
    """The keywords every fit and sweep of a study is given."""

    steps: int
    record_every: int
    batch_size: int | None
    key: jax.Array | None
    record_params: bool
    keep_state: bool  # a line search's evaluation counts are read from it


class _Runs(NamedTuple):
    """What one setting's program returned, as host arrays (``params`` only with metrics)."""

    steps: np.ndarray
    loss: np.ndarray
    final: np.ndarray
    diverged_step: np.ndarray
    evals: np.ndarray
    params: Any


def _run_pair(
    prob: _problems.Problem,
    name: str,
    opt: Any,
    grid: dict[str, list],
    starts: Any,
    *,
    steps: int,
    record_every: int,
    batch_size: int | None,
    key: jax.Array,
    metrics: Mapping[str, Callable] | None,
) -> list[Cell]:
    """Run one (problem, optimizer) pair over its grid; one :class:`Cell` per setting."""
    settings = _settings(grid) if grid else [{}]
    n = jax.tree.leaves(starts)[0].shape[0]
    if prob.data is None:  # a plain function: no examples to draw mini-batches from
        batch_size = None
    kw: _FitOptions = {
        "steps": steps,
        "record_every": record_every,
        "batch_size": batch_size,
        "key": key if batch_size else None,
        "record_params": bool(metrics),
        "keep_state": True,
    }
    t0 = time.perf_counter()
    results = _pair_runs(prob, name, opt, grid, settings, starts, kw, n)
    seconds = (time.perf_counter() - t0) / len(settings)
    return [
        _cell(prob.name, name, setting, batch_size, steps, runs, seconds, metrics, n)
        for setting, runs in zip(settings, results, strict=True)
    ]


def _pair_runs(
    prob: _problems.Problem,
    name: str,
    opt: Any,
    grid: dict[str, list],
    settings: list[dict[str, float]],
    starts: Any,
    kw: _FitOptions,
    n: int,
) -> list[_Runs]:
    """The runs of every setting of a pair: one sweep, one fit, or one fit per setting."""
    if isinstance(opt, Optimizer):
        if grid:
            return _sweep_runs(prob, name, opt, grid, len(settings), starts, kw, n)
        return [_one(prob, opt, name, starts, kw, n)]
    if isinstance(opt, optax.GradientTransformation):
        if grid:
            raise ValueError(
                f"optimizer {name!r} is an optax transformation with fixed settings, so grids[{name!r}] "
                "cannot vary them; pass a function of the hyperparameters (e.g. "
                "lambda learning_rate: optax.sgd(learning_rate)) instead"
            )
        return [_one(prob, opt, name, starts, kw, n)]
    if callable(opt):
        return [_one(prob, opt(**setting), name, starts, kw, n) for setting in settings]
    raise TypeError(
        f"optimizer {name!r} must be a fitjax optimizer, an optax GradientTransformation or a function "
        f"of hyperparameters returning one, got {opt!r}"
    )


def _sweep_runs(
    prob: _problems.Problem,
    name: str,
    opt: Optimizer,
    grid: dict[str, list],
    n_settings: int,
    starts: Any,
    kw: _FitOptions,
    n: int,
) -> list[_Runs]:
    """A fitjax optimizer's grid in one program (:func:`fitjax.sweep`), split per setting."""
    sw = sweep(prob.loss, opt, starts, prob.data, grid={k: jnp.asarray(v) for k, v in grid.items()}, **kw)
    g = len(grid)

    def per_setting(a: Any) -> np.ndarray:
        a = np.asarray(a)
        return a.reshape((n_settings, n) + a.shape[g + 1 :])

    res = sw.result
    assert res.history is not None  # the sweep records a history: record_every is given
    hist_loss, final, dstep = map(per_setting, (res.history.loss, res.loss, res.diverged_step))
    evals = _evals(name, opt, sw, n_settings * n).reshape(n_settings, n)
    params = jax.tree.map(per_setting, res.history.params) if kw["record_params"] else None
    rec = np.asarray(res.history.step)
    return [
        _Runs(
            rec,
            hist_loss[i],
            final[i],
            dstep[i],
            evals[i],
            None if params is None else jax.tree.map(lambda a, i=i: a[i], params),
        )
        for i in range(n_settings)
    ]


def _cell(
    problem: str,
    name: str,
    setting: dict[str, float],
    batch_size: int | None,
    steps: int,
    runs: _Runs,
    seconds: float,
    metrics: Mapping[str, Callable] | None,
    n: int,
) -> Cell:
    """A :class:`Cell` of one setting's runs: the final loss appended to the recorded curve."""
    curves = np.concatenate(
        [np.asarray(runs.loss, np.float64), np.asarray(runs.final, np.float64)[:, None]], 1
    )
    metric_values = {
        mname: np.asarray(jax.vmap(fn)(runs.params), np.float64).reshape(n)
        for mname, fn in (metrics or {}).items()
    }
    return Cell(
        problem,
        name,
        setting,
        batch_size,
        np.concatenate([np.asarray(runs.steps), [steps]]).astype(np.int64),
        curves,
        np.asarray(runs.diverged_step, np.int64),
        np.asarray(runs.evals, np.float64),
        seconds,
        metric_values,
    )


def _one(prob: _problems.Problem, opt: Any, name: str, starts: Any, kw: _FitOptions, n: int) -> _Runs:
    res = fit(prob.loss, opt, starts, prob.data, **kw)
    hist = res.history
    assert hist is not None  # record_every is given
    return _Runs(
        np.asarray(hist.step),
        np.asarray(hist.loss),
        np.asarray(res.loss),
        np.asarray(res.diverged_step),
        _evals(name, opt, res, n),
        hist.params,
    )


def compare(
    problems: Sequence[str | _problems.Problem],
    optimizers: Mapping[str, Any] | Sequence[str],
    grids: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    *,
    starts: int = 100,
    steps: int = 1000,
    key: jax.Array,
    record_every: int | None = None,
    batch_sizes: Mapping[str, int] | None = None,
    deltas: Sequence[float] | np.ndarray = m.DELTAS,
    metrics: Mapping[str, Callable[[Any], jax.Array]] | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Study:
    """Run every problem × optimizer × setting from ``starts`` starting points.

    Args:
      problems: catalogue names (``"rosenbrock"``, ``"rastrigin:10"``) or
        :class:`fitjax.problems.Problem` s.
      optimizers: name -> a fitjax optimizer (its grid is swept in one program), an
        optax ``GradientTransformation`` (run as it is), a function of hyperparameters
        returning either (one program per setting), or the name of a fitjax optimizer
        (:data:`OPTIMIZERS`). A list of fitjax names is also accepted.
      grids: optimizer name -> {hyperparameter: values}; the Cartesian product is run.
        Hyperparameter names are the constructors' (``learning_rate``, ``beta``, ...).
      starts: starting points per problem, drawn from the problem's domain with a key
        derived from ``key`` and the problem's name; every optimizer and setting of a
        problem starts from the same points.
      steps: steps per run.
      key: ``jax.random.key``; every random choice of the study derives from it.
      record_every: record the loss every k steps (default: ``steps // 100``, at least 1);
        runtimes are resolved to this interval.
      batch_sizes: optimizer name -> mini-batch size (e.g. ``{"sgd": 5}``); others use
        the full batch, as do problems without data (the test functions).
      deltas: the ladder of target gaps Δ (default 10¹ ... 10⁻⁸).
      metrics: name -> ``fn(params_path) -> scalar``, a custom per-run measure of the
        recorded parameters (leaves ``(R, ...)``, one run); turns on parameter recording.
      cache_dir: a folder where each (problem, optimizer) pair is saved when it is done;
        a rerun with the same study reads the pairs found there instead of running
        them (an interrupted study resumes; results are identical, the runs being
        deterministic given ``key``).
      progress: called with a line of text before each pair runs.

    Returns:
      a :class:`Study`.

    Example:
      >>> import jax, fitjax
      >>> grids = {"gd": {"learning_rate": [1e-3, 1e-2]}, "adam": {"learning_rate": [0.01, 0.1]}}
      >>> study = fitjax.compare(["rosenbrock"], ["gd", "adam"], grids,
      ...                        starts=20, steps=200, key=jax.random.key(0))
      >>> [row["setting"] for row in study.table()]   # doctest: +NORMALIZE_WHITESPACE
      ['gd(learning_rate=0.001)', 'gd(learning_rate=0.01)',
       'adam(learning_rate=0.01)', 'adam(learning_rate=0.1)']
    """
    key = _check_key(key)
    probs = _check_problems(problems)
    grids = _check_grids(
        optimizers if isinstance(optimizers, Mapping) else dict.fromkeys(optimizers), grids or {}
    )
    opts = _resolve_optimizers(optimizers, grids)
    record_every = _check_budget(starts, steps, record_every)
    batch_sizes = dict(batch_sizes or {})
    bad = set(batch_sizes) - set(opts)
    if bad:
        raise ValueError(f"batch_sizes names optimizer(s) {sorted(bad)} not in optimizers ({sorted(opts)})")
    deltas = np.asarray(deltas, dtype=np.float64)
    m.targets(0.0, deltas)  # checks the ladder
    config = {
        "problems": [p.name for p in probs],
        "optimizers": {
            k: (v if isinstance(v, str) else type(v).__name__)
            for k, v in (
                optimizers.items() if isinstance(optimizers, Mapping) else zip(opts, opts, strict=True)
            )
        },
        "grids": grids,
        "starts": starts,
        "steps": steps,
        "record_every": record_every,
        "batch_sizes": batch_sizes,
        "key": np.asarray(jax.random.key_data(key)).tolist(),
        "deltas": deltas.tolist(),
        "metrics": sorted(metrics or {}),
    }
    cache = _open_cache(cache_dir, config)
    cells: list[Cell] = []
    for prob in probs:
        x0 = prob.starts(jax.random.fold_in(key, seed_of("starts", prob.name)), starts)
        for name, opt in opts.items():
            grid = grids.get(name, {})
            if progress is not None and not _is_cached(cache, prob, name):
                progress(f"{prob.name} × {name}: {len(_settings(grid))} setting(s) × {starts} starts")
            run = functools.partial(
                _run_pair,
                prob,
                name,
                opt,
                grid,
                x0,
                steps=steps,
                record_every=record_every,
                batch_size=batch_sizes.get(name),
                key=jax.random.fold_in(key, seed_of("batches", prob.name, name)),
                metrics=metrics,
            )
            cells += _cached_pair(cache, prob, name, run, deltas, config)
    return Study(cells, {p.name: p for p in probs}, deltas, config)


def _is_cached(cache: Path | None, prob: _problems.Problem, name: str) -> bool:
    return cache is not None and (cache / f"{prob.name}__{name}.npz").exists()


def _check_problems(problems: Any) -> list[_problems.Problem]:
    if isinstance(problems, str | _problems.Problem):
        problems = [problems]
    probs = [_problems.get(p) for p in problems]
    names = [p.name for p in probs]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"problems must be a non-empty list of distinct problems, got {names}")
    return probs


def _check_budget(starts: Any, steps: Any, record_every: Any) -> int:
    """Checks starts, steps and record_every; returns record_every (default ``steps // 100``)."""
    if not (isinstance(starts, int) and starts >= 1):
        raise ValueError(f"starts must be a whole number >= 1 (starting points per problem), got {starts!r}")
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    record_every = max(1, steps // 100) if record_every is None else record_every
    if not (isinstance(record_every, int) and 1 <= record_every <= steps):
        raise ValueError(f"record_every must be a whole number in [1, steps={steps}], got {record_every!r}")
    return record_every


def _cached_pair(
    cache: Path | None,
    prob: _problems.Problem,
    name: str,
    run: Callable[[], list[Cell]],
    deltas: np.ndarray,
    config: dict[str, Any],
) -> list[Cell]:
    """A pair's cells: read from ``cache`` when saved there, else run (and saved, atomically:
    written beside and renamed, so a study killed while saving leaves no partial pair)."""
    saved = None if cache is None else cache / f"{prob.name}__{name}.npz"
    if saved is not None and _is_cached(cache, prob, name):
        return load(saved, [prob]).cells
    pair = run()
    if saved is not None:
        tmp = saved.with_name(saved.stem + ".tmp.npz")
        Study(pair, {prob.name: prob}, deltas, config).save(tmp)
        tmp.replace(saved)
    return pair


def _check_key(key: Any) -> jax.Array:
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise TypeError(f"key must be a jax.random.key(...), got {key!r}; e.g. key=jax.random.key(0)")
    return key


def _open_cache(cache_dir: str | Path | None, config: dict[str, Any]) -> Path | None:
    if cache_dir is None:
        return None
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    stamp = cache / "study.json"
    if stamp.exists():
        stored = json.loads(stamp.read_text())
        if stored != json.loads(json.dumps(config)):
            diff = sorted(
                k for k in set(stored) | set(config) if stored.get(k) != json.loads(json.dumps(config)).get(k)
            )
            raise ValueError(
                f"cache_dir {str(cache)!r} holds a different study (differs in {diff}); "
                "use a new folder or delete this one"
            )
    else:
        stamp.write_text(json.dumps(config, indent=1))
    return cache
