"""``fitjax sweep``: a built-in model and optimizer from many starts over a grid of hyperparameters."""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import fitjax
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
from fitjax.cli.sweep_outputs import _setting, _sweep_outputs


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


@dataclasses.dataclass(frozen=True)
class _Setup:
    """What both sweep paths build from the command line before fitting."""

    out: Path
    values: dict[str, tuple[float, ...]]  # every hyperparameter, one or more values
    grid: dict[str, np.ndarray]  # the swept ones (more than one value), built once
    box: Any
    key: jax.Array
    batch_size: int | None
    header: dict[str, Any]  # what sweep.json records of the request

    @property
    def start_key(self) -> jax.Array:
        """The key the random starts are drawn from."""
        return jax.random.fold_in(self.key, 1)


def _setup(args: argparse.Namespace, prob: Problem, starts: Starts) -> _Setup:
    """The output folder, hyperparameters (checked), swept grid, box, key and batch size of a sweep."""
    out = _out_dir(args.out, "sweep", args.force)
    values = _hyperparams(args)
    box = args.box or prob.box
    batch_size = SGD_BATCH if args.optimizer == "sgd" and args.batch_size is None else args.batch_size
    grid = {k: np.asarray(v) for k, v in values.items() if len(v) > 1}
    header = _sweep_header(args, prob, starts, box, batch_size, values, grid)
    return _Setup(out, values, grid, box, jax.random.key(args.seed), batch_size, header)


def _sweep(args: argparse.Namespace) -> int:
    """``fitjax sweep``: checks the options, then sweeps in memory or in chunks; returns the exit code."""
    prob = problem(args.model, seed=args.seed, hidden=args.hidden or 16, maths=args.math)
    starts = args.starts or _default_starts(prob)
    _check_sweep_options(args, prob, starts)
    setup = _setup(args, prob, starts)
    if args.chunk_size is not None:
        return _sweep_chunked(args, prob, starts, setup)
    return _sweep_in_memory(args, prob, starts, setup)


def _sweep_in_memory(args: argparse.Namespace, prob: Problem, starts: Starts, setup: _Setup) -> int:
    """The sweep one block of settings at a time, each block one compiled call; returns the exit code."""
    out, values, grid, header = setup.out, setup.values, setup.grid, setup.header
    params0, axes = _make_starts(prob, starts, setup.box, setup.start_key)
    record_every = args.record_every or max(1, args.steps // 100)  # steps to target; basin convergence
    kwargs = dict(steps=args.steps, key=setup.key, batch_size=setup.batch_size, record_every=record_every)
    if args.devices is not None:
        kwargs["mesh"] = fitjax.run_mesh(_devices(args))

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


def _devices(args: argparse.Namespace) -> list[Any] | None:
    """The first ``--devices`` devices, or None for all."""
    if args.devices is None:
        return None
    devices = jax.devices()
    if args.devices > len(devices):
        here = f"{len(devices)} {jax.default_backend()} device(s)"
        raise CLIError(f"--devices {args.devices}: only {here} here; pass --devices {len(devices)} or fewer")
    return devices[: args.devices]


def _chunked_starts(prob: Problem, starts: Starts, setup: _Setup) -> Any:
    """The starts of a chunked sweep: a grid, or random starts drawn chunk by chunk."""
    if starts.kind == "grid":
        return _make_starts(prob, starts, setup.box, setup.start_key)[0]
    if prob.init is not None:
        return fitjax.engine.chunked.generated_starts(prob.init, setup.start_key, starts.runs)
    assert setup.box is not None  # every built-in problem without init has a box (problem())
    (lo0, hi0), (lo1, hi1) = setup.box
    return fitjax.engine.chunked.uniform_starts(setup.start_key, starts.runs, [lo0, lo1], [hi0, hi1])


def _sweep_chunked(args: argparse.Namespace, prob: Problem, starts: Starts, setup: _Setup) -> int:
    """``fitjax sweep --chunk-size N``: chunks of N runs streamed to OUT/chunks, resumable, then a summary."""
    out, values, grid, batch_size, key = setup.out, setup.values, setup.grid, setup.batch_size, setup.key
    opt = _optimizer(args.optimizer, values)
    params0 = _chunked_starts(prob, starts, setup)
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
        grid={k: jnp.asarray(v) for k, v in grid.items()} or None,
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
    best_hp = _setting(values, grid, best_run // starts.runs) if best_run is not None else None
    summary = {
        **setup.header,
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
