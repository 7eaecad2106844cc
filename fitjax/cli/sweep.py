"""``fitjax sweep``: a built-in model and optimizer from many starts over a grid of hyperparameters."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import fitjax
from fitjax.analysis import sweep_report
from fitjax.cli.options import CLIError, Starts, _check_model_options, _refuse
from fitjax.cli.outputs import _metadata, _out_dir, _write_json
from fitjax.cli.problems import (
    OPTIMIZERS,
    SGD_BATCH,
    Problem,
    _default_starts,
    _flat,
    _hyperparams,
    _make_starts,
    _optimizer,
    problem,
)
from fitjax.cli.progress import _counted, _in_background, _NoBar, _progress, _Ticks


def _sweep_header(args, prob, starts, box, batch_size, values, grid) -> dict:
    """What a sweep was asked to do: the part of sweep.json both sweep paths share."""
    return {
        "command": "sweep",
        "model": prob.name,
        "hidden": (args.hidden or 16) if prob.name == "mlp" else None,
        "data": prob.description,
        "math": args.math,
        "optimizer": args.optimizer,
        "steps": args.steps,
        "batch_size": batch_size,
        "seed": args.seed,
        "starts": {"kind": starts.kind, "shape": list(starts.shape), "box": box},
        "hyperparams": {k: list(v) for k, v in values.items()},
        "grid": list(grid),
    }


def _check_sweep_options(args: argparse.Namespace, prob: Problem, starts: Starts) -> None:
    """Refuse the sweep options that do not apply to this model, these starts or this mode."""
    _check_model_options(args, prob)
    chunked = args.chunk_size is not None
    _refuse(
        args, "resume", chunked, "applies with --chunk-size only (a chunked sweep resumes from OUT/chunks)"
    )
    _refuse(
        args,
        "cluster_tol",
        starts.kind == "grid" and not chunked,
        "applies to grid starts without --chunk-size (it clusters the end points of the basin map)",
    )
    for name in ("rank_by", "top", "reach_tol", "target_loss"):
        _refuse(
            args,
            name,
            not chunked,
            "does not apply with --chunk-size (a chunked sweep is summarised by its best run; "
            "load it with fitjax.load_chunked and rank it with fitjax.analysis.sweep_report)",
        )


def _sweep(args: argparse.Namespace) -> int:
    prob = problem(args.model, seed=args.seed, hidden=args.hidden or 16, maths=args.math)
    starts = args.starts or _default_starts(prob)
    _check_sweep_options(args, prob, starts)
    if args.chunk_size is not None:
        return _sweep_chunked(args, prob, starts)
    out = _out_dir(args.out, "sweep", args.force)
    values = _hyperparams(args)
    box = args.box or prob.box
    key = jax.random.key(args.seed)
    params0, axes = _make_starts(prob, starts, box, jax.random.fold_in(key, 1))
    batch_size = args.batch_size
    if args.optimizer == "sgd" and batch_size is None:
        batch_size = SGD_BATCH
    grid = {k: np.asarray(v) for k, v in values.items() if len(v) > 1}
    record_every = args.record_every or max(1, args.steps // 100)  # steps to target; basin convergence
    kwargs = dict(steps=args.steps, key=key, batch_size=batch_size, record_every=record_every)
    if args.devices is not None:
        kwargs["mesh"] = fitjax.run_mesh(_devices(args))
    header = _sweep_header(args, prob, starts, box, batch_size, values, grid)

    blocks = _blocks(values, grid)
    n_settings = max(1, math.prod(len(v) for v in grid.values()))
    ticks = _Ticks()
    per_block = args.steps + 1  # loss evaluations of one fit: one per step and the final loss
    bar = _progress(len(blocks) * per_block, f"sweep {prob.name}/{args.optimizer}", "step", args.quiet)
    loss = prob.loss if isinstance(bar, _NoBar) else _counted(prob.loss, ticks)
    done: list[dict[str, np.ndarray]] = []
    start_time = time.perf_counter()

    def work() -> None:
        for fixed, block_grid in blocks:
            ticks.n = 0
            done.append(_fit_block(loss, args.optimizer, fixed, block_grid, params0, prob.data, kwargs))

    def poll() -> None:
        k = len(done)
        bar.set_description_str(
            f"sweep {prob.name}/{args.optimizer}, block {min(k + 1, len(blocks))}/{len(blocks)}"
        )
        now = k * per_block + (min(ticks.n, per_block) if k < len(blocks) else 0)
        bar.update(max(0, now - bar.n))

    def keep() -> str:
        bar.close()
        if not done:
            return f"no setting had finished, nothing was written to {out}/; rerun the command to start again"
        part_values, part_grid = _finished_values(values, grid, len(done))
        arrays = _stack_blocks(done, bool(grid))
        files = _sweep_outputs(
            out,
            args,
            prob,
            header,
            arrays,
            part_values,
            part_grid,
            None,
            params0,
            time.perf_counter() - start_time,
        )
        n_done = max(1, math.prod(len(v) for v in part_grid.values()))
        return (
            f"kept the {n_done} of {n_settings} settings that finished in {', '.join(f.name for f in files)} "
            f"in {out}/; rerun the command to compute them all (with --chunk-size N a sweep resumes)"
        )

    args.keep = keep
    _in_background(work, poll)
    seconds = time.perf_counter() - start_time
    bar.close()
    arrays = _stack_blocks(done, bool(grid))
    _sweep_outputs(out, args, prob, header, arrays, values, grid, axes, params0, seconds, complete=True)
    return 0


def _blocks(values: dict[str, tuple[float, ...]], grid: dict[str, Any]) -> list[tuple[dict, dict]]:
    """The sweep split along its first swept hyperparameter: (fixed values, grid of the rest) per block.

    Each block is one compiled call (the same program for every block), so progress
    moves and an interrupted sweep keeps the blocks that finished. Start ``i`` keeps
    its mini-batch order under every setting, as in one :func:`fitjax.sweep` call.
    """
    fixed = {k: v[0] for k, v in values.items()}
    if not grid:
        return [(fixed, {})]
    first, *rest = grid
    return [({**fixed, first: float(x)}, {k: grid[k] for k in rest}) for x in values[first]]


def _finished_values(
    values: dict[str, tuple[float, ...]], grid: dict[str, Any], blocks_done: int
) -> tuple[dict[str, tuple[float, ...]], dict[str, Any]]:
    """The values and grid of the blocks that finished (a prefix of the first swept hyperparameter)."""
    if not grid:
        return values, grid
    first = next(iter(grid))
    part = {**values, first: values[first][:blocks_done]}
    return part, {k: np.asarray(part[k]) for k in grid if len(part[k]) > 1 or k == first}


def _fit_block(loss, optimizer, fixed, block_grid, params0, data, kwargs) -> dict[str, np.ndarray]:
    """One block of a sweep as NumPy arrays with axes ``block grid + (runs,)``."""
    opt = OPTIMIZERS[optimizer][0](**fixed)
    if block_grid:
        grid = {k: jnp.asarray(v) for k, v in block_grid.items()}
        res = fitjax.sweep(loss, opt, params0, data, grid=grid, **kwargs).result
    else:
        res = fitjax.fit(loss, opt, params0, data, **kwargs)
    lead = tuple(res.loss.shape)
    n = math.prod(lead)
    flat = _flat(jax.tree.map(lambda a: a.reshape((n,) + a.shape[len(lead) :]), res.params))
    arrays = {
        "loss": np.asarray(res.loss),
        "diverged_step": np.asarray(res.diverged_step),
        "params": flat.reshape(lead + (-1,)),
    }
    if res.history is not None:
        arrays["history_step"] = np.asarray(res.history.step)
        arrays["history_loss"] = np.asarray(res.history.loss)
    return arrays


def _stack_blocks(done: list[dict[str, np.ndarray]], has_grid: bool) -> dict[str, np.ndarray]:
    """The finished blocks as one set of arrays with the sweep's axes."""
    if not has_grid:
        return dict(done[0])
    return {k: (v if k == "history_step" else np.stack([b[k] for b in done])) for k, v in done[0].items()}


def _sweep_outputs(
    out, args, prob, header, arrays, values, grid, axes, params0, seconds, complete=False
) -> list[Path]:
    """Rank the settings and write sweep.npz, results.csv (and .parquet), sweep.json and metadata.json;
    with ``complete`` and grid starts also the basin map, and print the summary and the table."""
    settings = tuple(len(v) for v in grid.values())
    n_settings = math.prod(settings)
    loss, diverged_step = arrays["loss"], arrays["diverged_step"]
    n_runs = loss.shape[-1]
    loss2 = loss.reshape(n_settings, n_runs)
    div2 = diverged_step.reshape(n_settings, n_runs) >= 0
    params = arrays["params"].reshape(n_settings, n_runs, -1)
    setting_values = _settings(values, grid)

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

    npz_arrays = {
        "loss": loss,
        "diverged_step": diverged_step,
        "params": arrays["params"],
        "starts": _flat(params0),
    }
    npz_arrays.update({f"hp_{k}": np.asarray(v, dtype=np.float32) for k, v in grid.items()})
    if "history_loss" in arrays:
        npz_arrays["history_step"] = arrays["history_step"]
        npz_arrays["history_loss"] = arrays["history_loss"]
    files = [out / "sweep.npz"]
    np.savez_compressed(files[0], **npz_arrays)

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

    per_setting = []
    for s in range(n_settings):
        one = fitjax.FitResult(
            params[s], loss2[s], diverged_step.reshape(n_settings, n_runs)[s], None, None, 0
        )
        row = {"hyperparams": setting_values[s], **one.summary(), **metrics[s]}
        row["steps"] = args.steps
        if row["best_run"] is not None and params.shape[-1] <= 16:
            row["best_params"] = params[s, row["best_run"]]
        per_setting.append(row)
    ranking = {
        "by": by,
        "means": sweep_report.RANK_BY[by][2],
        "best_loss": best,
        "reach_rtol": args.reach_tol or 0.01,
        "reach_threshold": threshold,
        "target_loss": target,
        "order": order,
    }
    summary = {
        **header,
        "complete": complete,
        "settings_done": n_settings,
        "seconds": seconds,
        "record_every": args.record_every or max(1, args.steps // 100),
        "ranking": ranking,
        "settings": per_setting,
        "basins": basin_info,
    }
    files.append(_write_json(out / "sweep.json", summary))
    files.append(
        _write_json(out / "metadata.json", _metadata(args, prob, complete=complete, seconds=seconds))
    )
    if not complete:
        return files

    n_div = int(div2.sum())
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
    return files


def _devices(args: argparse.Namespace) -> list[Any] | None:
    """The first ``--devices`` devices, or None for all."""
    if args.devices is None:
        return None
    devices = jax.devices()
    if args.devices > len(devices):
        here = f"{len(devices)} {jax.default_backend()} device(s)"
        raise CLIError(f"--devices {args.devices}: only {here} here; pass --devices {len(devices)} or fewer")
    return devices[: args.devices]


def _sweep_chunked(args: argparse.Namespace, prob: Problem, starts: Starts) -> int:
    """``fitjax sweep --chunk-size N``: chunks of N runs streamed to OUT/chunks, resumable, then a summary."""
    out = _out_dir(args.out, "sweep", args.force)
    values = _hyperparams(args)
    opt = _optimizer(args.optimizer, values)
    box = args.box or prob.box
    key = jax.random.key(args.seed)
    start_key = jax.random.fold_in(key, 1)
    if starts.kind == "grid":
        params0, _ = _make_starts(prob, starts, box, start_key)
    elif prob.init is not None:
        params0 = fitjax.engine.chunked.generated_starts(prob.init, start_key, starts.runs)
    else:
        assert box is not None  # every built-in problem without init has a box (problem())
        (lo0, hi0), (lo1, hi1) = box
        params0 = fitjax.engine.chunked.uniform_starts(start_key, starts.runs, [lo0, lo1], [hi0, hi1])
    batch_size = SGD_BATCH if args.optimizer == "sgd" and args.batch_size is None else args.batch_size
    grid = {k: jnp.asarray(v) for k, v in values.items() if len(v) > 1}
    start_time = time.perf_counter()
    chunks = out / "chunks"
    args.keep = lambda: (
        f"the chunks that finished are in {chunks}/; rerun the same command to resume from them"
    )
    run = fitjax.fit_chunked(
        prob.loss,
        opt,
        params0,
        prob.data,
        steps=args.steps,
        key=key,
        batch_size=batch_size,
        record_every=args.record_every,
        grid=grid or None,
        chunk_size=args.chunk_size,
        out_dir=out / "chunks",
        resume=True if args.resume is None else args.resume,
        devices=_devices(args),
        progress=False if args.quiet else None,
    )
    seconds = time.perf_counter() - start_time
    best, best_run, diverged = math.inf, None, 0  # one pass over the chunks, one in memory at a time
    for runs, chunk in fitjax.iter_chunks(run.path):
        loss = np.where(chunk["diverged_step"] >= 0, np.inf, chunk["loss"])
        diverged += int((chunk["diverged_step"] >= 0).sum())
        if loss.size and np.min(loss) < best:
            best, best_run = float(np.min(loss)), runs.start + int(np.argmin(loss))
    best_hp = _settings(values, grid)[best_run // starts.runs] if best_run is not None else None
    summary = {
        **_sweep_header(args, prob, starts, box, batch_size, values, grid),
        "chunks": {
            "path": str(run.path),
            "chunk_size": args.chunk_size,
            "n_chunks": run.n_chunks,
            "computed": len(run.computed),
        },
        "seconds": seconds,
        "runs": run.n_runs,
        "diverged": diverged,
        "best": {"run": best_run, "start": best_run % starts.runs, "hyperparams": best_hp, "loss": best}
        if best_run is not None
        else None,
    }
    _write_json(out / "sweep.json", summary)
    _write_json(out / "metadata.json", _metadata(args, prob, complete=True, seconds=seconds))
    print(
        f"fitjax sweep: {prob.name} / {args.optimizer}: {run.n_runs} runs x {args.steps} steps in "
        f"{run.n_chunks} chunks ({len(run.computed)} computed now, the rest found in {run.path}) "
        f"in {seconds:.2f} s"
    )
    if best_hp is not None:  # set exactly when some run finished (best_run is not None)
        hp = ", ".join(f"{k}={v:g}" for k, v in best_hp.items())
        print(f"  best loss {best:.6g} (run {best_run}: {hp}); diverged runs: {diverged}")
    print(f"  wrote {out / 'sweep.json'}; read every run with fitjax.load_chunked({str(run.path)!r})")
    return 0


def _settings(values: dict[str, tuple[float, ...]], grid: dict[str, Any]) -> list[dict[str, float]]:
    """The hyperparameters of each setting of a sweep, in the order of its flattened grid axes."""
    mesh = np.meshgrid(*[np.asarray(values[k], dtype=float) for k in grid], indexing="ij") if grid else []
    by_name = {k: m.ravel() for k, m in zip(grid, mesh, strict=True)}
    n = math.prod(len(v) for v in grid.values())
    return [{k: float(by_name[k][s]) if k in by_name else v[0] for k, v in values.items()} for s in range(n)]


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
