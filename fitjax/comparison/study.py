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
import itertools
import json
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

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
        for (prob, opt), cells in self._pairs().items():
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
        it was computed from. Other hyperparameters are held at their best values."""
        cells = self._pairs().get((problem, optimizer), [])
        cells = [c for c in cells if hyperparam in c.setting]
        if not cells:
            raise ValueError(f"no cells of {problem!r} × {optimizer!r} vary {hyperparam!r}")
        j = int(np.argmin(np.abs(np.log10(self.deltas) - np.log10(delta))))
        by_value: dict[float, float] = {}
        for c in cells:
            rate = float(m.success_rate(self.runtimes(c))[j])
            v = c.setting[hyperparam]
            by_value[v] = max(by_value.get(v, -1.0), rate)
        values = np.array(sorted(by_value))
        rates = np.array([by_value[v] for v in values])
        return m.sensitivity_width(values, rates, factor=factor), values, rates

    def _pairs(self) -> dict[tuple[str, str], list[Cell]]:
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
    }
    t0 = time.perf_counter()
    results = []
    if isinstance(opt, Optimizer):
        if grid:
            sw = sweep(
                prob.loss, opt, starts, prob.data, grid={k: jnp.asarray(v) for k, v in grid.items()}, **kw
            )
            g = len(grid)

            def per_setting(a: Any) -> np.ndarray:
                a = np.asarray(a)
                return a.reshape((len(settings), n) + a.shape[g + 1 :])

            res = sw.result
            assert res.history is not None  # the sweep records a history: record_every is given
            hist_loss, final, dstep = map(per_setting, (res.history.loss, res.loss, res.diverged_step))
            evals = _evals(name, opt, sw, len(settings) * n).reshape(len(settings), n)
            params_hist = jax.tree.map(per_setting, res.history.params) if metrics else None
            for i in range(len(settings)):
                results.append(
                    (
                        np.asarray(res.history.step),
                        hist_loss[i],
                        final[i],
                        dstep[i],
                        evals[i],
                        None if params_hist is None else jax.tree.map(lambda a, i=i: a[i], params_hist),
                    )
                )
        else:
            results.append(_one(prob, opt, name, starts, kw, n))
    elif isinstance(opt, optax.GradientTransformation):
        if grid:
            raise ValueError(
                f"optimizer {name!r} is an optax transformation with fixed settings, so grids[{name!r}] "
                "cannot vary them; pass a function of the hyperparameters (e.g. "
                "lambda learning_rate: optax.sgd(learning_rate)) instead"
            )
        results.append(_one(prob, opt, name, starts, kw, n))
    elif callable(opt):
        for setting in settings:
            results.append(_one(prob, opt(**setting), name, starts, kw, n))
    else:
        raise TypeError(
            f"optimizer {name!r} must be a fitjax optimizer, an optax GradientTransformation or a function "
            f"of hyperparameters returning one, got {opt!r}"
        )
    seconds = (time.perf_counter() - t0) / len(settings)
    cells = []
    for setting, (rec_steps, hist_loss, final, dstep, evals, params_hist) in zip(
        settings, results, strict=True
    ):
        curves = np.concatenate(
            [np.asarray(hist_loss, np.float64), np.asarray(final, np.float64)[:, None]], 1
        )
        metric_values = {}
        for mname, fn in (metrics or {}).items():
            metric_values[mname] = np.asarray(jax.vmap(fn)(params_hist), np.float64).reshape(n)
        cells.append(
            Cell(
                prob.name,
                name,
                setting,
                batch_size,
                np.concatenate([np.asarray(rec_steps), [steps]]).astype(np.int64),
                curves,
                np.asarray(dstep, np.int64),
                np.asarray(evals, np.float64),
                seconds,
                metric_values,
            )
        )
    return cells


class _FitOptions(TypedDict):
    """The keywords every fit and sweep of a study is given."""

    steps: int
    record_every: int
    batch_size: int | None
    key: jax.Array | None
    record_params: bool


def _one(prob, opt, name, starts, kw, n):
    res = fit(prob.loss, opt, starts, prob.data, **kw)
    hist = res.history
    return (
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
    if isinstance(problems, str | _problems.Problem):
        problems = [problems]
    probs = [_problems.get(p) for p in problems]
    names = [p.name for p in probs]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"problems must be a non-empty list of distinct problems, got {names}")
    grids = _check_grids(
        optimizers if isinstance(optimizers, Mapping) else dict.fromkeys(optimizers), grids or {}
    )
    opts = _resolve_optimizers(optimizers, grids)
    if not (isinstance(starts, int) and starts >= 1):
        raise ValueError(f"starts must be a whole number >= 1 (starting points per problem), got {starts!r}")
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    record_every = max(1, steps // 100) if record_every is None else record_every
    if not (isinstance(record_every, int) and 1 <= record_every <= steps):
        raise ValueError(f"record_every must be a whole number in [1, steps={steps}], got {record_every!r}")
    batch_sizes = dict(batch_sizes or {})
    bad = set(batch_sizes) - set(opts)
    if bad:
        raise ValueError(f"batch_sizes names optimizer(s) {sorted(bad)} not in optimizers ({sorted(opts)})")
    deltas = np.asarray(deltas, dtype=np.float64)
    m.targets(0.0, deltas)  # checks the ladder
    config = {
        "problems": names,
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
            saved = None if cache is None else cache / f"{prob.name}__{name}.npz"
            if saved is not None and saved.exists():
                cells += load(saved, [prob]).cells
                continue
            if progress is not None:
                progress(
                    f"{prob.name} × {name}: {len(_settings(grids.get(name, {})))} setting(s)"
                    f" × {starts} starts"
                )
            pair = _run_pair(
                prob,
                name,
                opt,
                grids.get(name, {}),
                x0,
                steps=steps,
                record_every=record_every,
                batch_size=batch_sizes.get(name),
                key=jax.random.fold_in(key, seed_of("batches", prob.name, name)),
                metrics=metrics,
            )
            if saved is not None:
                tmp = saved.with_name(saved.stem + ".tmp.npz")
                Study(pair, {prob.name: prob}, deltas, config).save(tmp)
                tmp.replace(saved)
            cells += pair
    return Study(cells, {p.name: p for p in probs}, deltas, config)


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
