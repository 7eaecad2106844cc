"""What ``fitjax sweep`` writes after fitting in memory: the ranking, sweep.npz, results.csv,
sweep.json, metadata.json, the basin maps of grid starts, and the printed summary."""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

import fitjax
from fitjax.analysis import sweep_report
from fitjax.cli.outputs import _metadata, _write_json
from fitjax.cli.problems import _flat


def _metrics(args: argparse.Namespace, arrays: dict[str, np.ndarray], loss2, div2) -> tuple[dict, list[dict]]:
    """The best loss, the reach threshold and target, and every setting's metrics
    (:func:`fitjax.analysis.sweep_report.setting_metrics`) from ``(settings, runs)`` losses."""
    n_settings, n_runs = loss2.shape
    best = sweep_report.best_loss(loss2, div2)
    threshold = sweep_report.reach_threshold(best, args.reach_tol or 0.01)
    target = threshold if args.target_loss is None else args.target_loss
    steps_to = None
    if "history_loss" in arrays:
        hist = arrays["history_loss"].reshape(n_settings, n_runs, -1)
        steps_to = sweep_report.steps_to_target(arrays["history_step"], hist, loss2, args.steps, target)
        steps_to = np.where(div2, np.nan, steps_to)
    metrics = [
        sweep_report.setting_metrics(
            loss2[s], div2[s], threshold=threshold, steps_to=None if steps_to is None else steps_to[s]
        )
        for s in range(n_settings)
    ]
    return {"best_loss": best, "reach_threshold": threshold, "target_loss": target}, metrics


def _save_npz(out: Path, arrays: dict[str, np.ndarray], grid: dict[str, Any], params0: Any) -> Path:
    """Writes sweep.npz: losses, divergence steps, end points, starts, the swept values and histories."""
    npz_arrays: dict[str, Any] = {
        "loss": arrays["loss"],
        "diverged_step": arrays["diverged_step"],
        "params": arrays["params"],
        "starts": _flat(params0),
    }
    npz_arrays.update({f"hp_{k}": np.asarray(v, dtype=np.float32) for k, v in grid.items()})
    if "history_loss" in arrays:
        npz_arrays["history_step"] = arrays["history_step"]
        npz_arrays["history_loss"] = arrays["history_loss"]
    np.savez_compressed(out / "sweep.npz", **npz_arrays)
    return out / "sweep.npz"


def _per_setting(args, params, loss2, diverged_step, setting_values, metrics) -> list[dict[str, Any]]:
    """sweep.json's row for each setting: its hyperparameters, the fit summary and its metrics."""
    n_settings, n_runs = loss2.shape
    rows = []
    for s in range(n_settings):
        one = fitjax.FitResult(
            params[s], loss2[s], diverged_step.reshape(n_settings, n_runs)[s], None, None, 0
        )
        row = {"hyperparams": setting_values[s], **one.summary(), **metrics[s]}
        row["steps"] = args.steps
        if row["best_run"] is not None and params.shape[-1] <= 16:
            row["best_params"] = params[s, row["best_run"]]
        rows.append(row)
    return rows


def _print_sweep(args, prob, shape, seconds, reach, rows, grid, basin_info, n_div, files) -> None:
    """The summary ``fitjax sweep`` prints: sizes, the best minimum, the ranked table, basins, files."""
    n_settings, n_runs = shape
    best, threshold = reach["best_loss"], reach["reach_threshold"]
    by = args.rank_by or sweep_report.DEFAULT_RANK_BY
    print(
        f"fitjax sweep: {prob.name} / {args.optimizer}: {n_runs} starts x {n_settings} settings x "
        f"{args.steps} steps in {seconds:.2f} s"
    )
    if math.isfinite(best):
        print(
            f"  best minimum found: loss {best:.6g}; a start reaches it when its final loss is "
            f"<= {threshold:.6g} (best + {100 * (args.reach_tol or 0.01):g}%, --reach-tol)"
        )
    print("  " + sweep_report.format_table(rows, list(grid), by, args.top or 10).replace("\n", "\n  "))
    if basin_info is not None:
        print(f"  basins: {basin_info[0]['distinct_minima_all_settings']} distinct minima over all settings")
    print(f"  diverged runs: {n_div} of {n_runs * n_settings}")
    print(f"  wrote {', '.join(str(f) for f in files)}")


def _sweep_outputs(
    out, args, prob, header, arrays, values, grid, axes, params0, seconds, complete=False
) -> list[Path]:
    """Rank the settings and write sweep.npz, results.csv (and .parquet), sweep.json and metadata.json;
    with ``complete`` and grid starts also the basin map, and print the summary and the table.
    Returns the files written."""
    settings = tuple(len(v) for v in grid.values())
    n_settings = math.prod(settings)
    loss, diverged_step = arrays["loss"], arrays["diverged_step"]
    n_runs = loss.shape[-1]
    loss2 = loss.reshape(n_settings, n_runs)
    div2 = diverged_step.reshape(n_settings, n_runs) >= 0
    params = arrays["params"].reshape(n_settings, n_runs, -1)
    setting_values = _settings(values, grid)
    reach, metrics = _metrics(args, arrays, loss2, div2)
    files = [_save_npz(out, arrays, grid, params0)]

    basin_info = None
    if complete and axes is not None:
        titles = [", ".join(f"{k}={hp[k]:g}" for k in grid) or "the only setting" for hp in setting_values]
        basin_info, basin_files = _save_basins(
            out, args, axes, arrays, settings, titles, params, loss2, div2, prob
        )
        for m, info in zip(metrics, basin_info, strict=True):
            m["minima"] = info["minima"]
            m["unsettled"] = info["unsettled"]
        files += basin_files

    by = args.rank_by or sweep_report.DEFAULT_RANK_BY
    order = sweep_report.rank(metrics, by)
    rows = sweep_report.table_rows(setting_values, metrics, order)
    files.append(sweep_report.write_csv(out / "results.csv", rows))
    parquet = sweep_report.write_parquet(out / "results.parquet", rows)
    if parquet is not None:
        files.append(parquet)

    ranking = {
        "by": by,
        "means": sweep_report.RANK_BY[by][2],
        "best_loss": reach["best_loss"],
        "reach_rtol": args.reach_tol or 0.01,
        "reach_threshold": reach["reach_threshold"],
        "target_loss": reach["target_loss"],
        "order": order,
    }
    summary = {
        **header,
        "complete": complete,
        "settings_done": n_settings,
        "seconds": seconds,
        "record_every": args.record_every or max(1, args.steps // 100),
        "ranking": ranking,
        "settings": _per_setting(args, params, loss2, diverged_step, setting_values, metrics),
        "basins": basin_info,
    }
    files.append(_write_json(out / "sweep.json", summary))
    files.append(
        _write_json(out / "metadata.json", _metadata(args, prob, complete=complete, seconds=seconds))
    )
    if complete:
        shape = (n_settings, n_runs)
        _print_sweep(args, prob, shape, seconds, reach, rows, grid, basin_info, int(div2.sum()), files)
    return files


def _settings(values: dict[str, tuple[float, ...]], grid: dict[str, Any]) -> list[dict[str, float]]:
    """The hyperparameters of each setting of a sweep, in the order of its flattened grid axes:
    the swept ones read from ``grid`` (built once, by :func:`_setup`), the others their one value."""
    fixed = {k: float(v[0]) for k, v in values.items()}
    combos = itertools.product(*(np.asarray(v, dtype=float) for v in grid.values()))
    return [{**fixed, **{k: float(x) for k, x in zip(grid, combo, strict=True)}} for combo in combos]


def _setting(values: dict[str, tuple[float, ...]], grid: dict[str, Any], index: int) -> dict[str, float]:
    """The hyperparameters of setting ``index`` alone (see :func:`_settings`)."""
    at = np.unravel_index(index, tuple(len(v) for v in grid.values())) if grid else ()
    swept = {k: float(np.asarray(v, dtype=float)[i]) for (k, v), i in zip(grid.items(), at, strict=True)}
    return {**{k: float(v[0]) for k, v in values.items()}, **swept}


def _save_basins(out, args, axes, arrays, settings, titles, params, loss, diverged, prob):
    """Basin labels and convergence steps of every setting of a grid-start sweep
    (runs that had not settled at a minimum labelled ``fitjax.UNSETTLED``), and the
    figures: every setting's map, on as many pages of panels as it takes, with one
    colour per minimum across all panels (minima matched within ``--cluster-tol``)."""
    n_settings, n_runs = loss.shape
    shape = (len(axes[0]), len(axes[1]))
    tol = args.cluster_tol or 1e-2
    hist_loss = arrays["history_loss"].reshape(n_settings, n_runs, -1)
    labels, conv, info, minima, minima_loss = [], [], [], [], []
    for s in range(n_settings):
        div = diverged[s]
        moving = ~fitjax.settled(prob.loss, params[s], prob.data, tol=tol)
        lab, mins, mins_loss = fitjax.label_minima(params[s], loss[s], div, tol=tol, unsettled=moving)
        labels.append(lab.reshape(shape))
        conv.append(
            fitjax.convergence_step(arrays["history_step"], hist_loss[s], loss[s], div, args.steps).reshape(
                shape
            )
        )
        minima.append(np.asarray(mins))
        minima_loss.append(np.asarray(mins_loss))
        info.append(
            {
                "minima": int(mins.shape[0]),
                "minima_params": mins,
                "minima_loss": mins_loss,
                "runs_per_minimum": np.bincount(lab[lab >= 0], minlength=mins.shape[0]),
                "diverged": int(div.sum()),
                "unsettled": int(np.sum(lab == fitjax.UNSETTLED)),
                "median_convergence_step": float(np.median(conv[-1][~div.reshape(shape)]))
                if (~div).any()
                else None,
            }
        )
    shared, shared_loss, maps = sweep_report.match_minima(minima, minima_loss, tol)
    shared_labels = np.stack([sweep_report.relabel(lab, m) for lab, m in zip(labels, maps, strict=True)])
    for one, m in zip(info, maps, strict=True):
        one["shared_minimum"] = m
        one["distinct_minima_all_settings"] = int(shared.shape[0])
    k = max(m.shape[0] for m in minima)
    padded = np.full((n_settings, k, params.shape[-1]), np.nan)
    for s, m in enumerate(minima):
        padded[s, : m.shape[0]] = m
    npz = out / "basins.npz"
    np.savez_compressed(
        npz,
        values0=axes[0],
        values1=axes[1],
        label=np.stack(labels).reshape(settings + shape),
        shared_label=shared_labels.reshape(settings + shape),
        shared_minima=shared,
        shared_minima_loss=shared_loss,
        final_loss=loss.reshape(settings + shape),
        converged_step=np.stack(conv).reshape(settings + shape),
        minima=padded.reshape(settings + (k, params.shape[-1])),
    )
    from fitjax.analysis import plots

    key = [f"φ = ({c[0]:.3g}, {c[1]:.3g}), loss {v:.4g}" for c, v in zip(shared, shared_loss, strict=True)]
    for old in out.glob("basins*.png"):
        old.unlink()  # pages of an earlier, larger sweep
    if n_settings == 1:
        figures = [
            plots.plot_basins(
                out / "basins.png",
                axes[0],
                axes[1],
                shared_labels[0],
                minima=shared,
                converged_step=conv[0],
                key=key,
            )
        ]
    else:
        figures = plots.plot_basin_pages(
            out / "basins.png", axes[0], axes[1], shared_labels, titles=titles, key=key
        )
    return info, [npz, *figures]
