"""``fitjax landscape``: the loss landscape of a built-in model and its critical points."""

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
from fitjax.cli.options import CLIError, _check_model_options, _flag, _refuse
from fitjax.cli.outputs import _metadata, _out_dir, _write_json
from fitjax.cli.problems import (
    HYPERPARAMS,
    SGD_BATCH,
    Problem,
    _hyperparams,
    _optimizer,
    default_learning_rate,
    problem,
)
from fitjax.cli.progress import _counted, _in_background, _NoBar, _progress, _Ticks

_MLP_ONLY = ("directions", "extent", "steps", "optimizer", "batch_size", *HYPERPARAMS)


def landscape_chunk(points: int) -> int:
    """The default ``--chunk-size`` of ``fitjax landscape``: about 50 chunks per grid
    (at least 256 points each), so progress moves while the grid is evaluated."""
    return max(256, math.ceil(points / 50))


def _check_landscape_options(args: argparse.Namespace, prob: Problem) -> None:
    """Refuse the landscape options that do not apply to this model."""
    if prob.init is None:
        for name in _MLP_ONLY:
            _refuse(
                args,
                name,
                False,
                f"applies to --model mlp only (it sets how the network is trained before its plane "
                f"is drawn); --model {prob.name} is drawn over φ0 × φ1 with no training",
            )
        _check_model_options(args, prob)
        return
    args.optimizer = args.optimizer or "adam"
    _check_model_options(args, prob)
    if (args.directions or "random") != "random":
        _refuse(args, "extent", False, "applies to --directions random only (PCA planes span the trajectory)")
    for name in HYPERPARAMS:
        given = getattr(args, name)
        if given is not None and len(given) > 1:
            raise CLIError(
                f"{_flag(name)} {','.join(f'{v:g}' for v in given)}: landscape trains one network, "
                f"so it takes one value; sweep several with fitjax sweep --model mlp"
            )


def _landscape(args: argparse.Namespace) -> int:
    """``fitjax landscape``: the loss on a grid, its critical points, figures and files;
    returns the exit code."""
    prob = problem(args.model, seed=args.seed, hidden=args.hidden or 16, maths=args.math)
    _check_landscape_options(args, prob)
    out = _out_dir(args.out, "landscape", args.force)
    n = args.grid
    chunk = args.chunk_size or landscape_chunk(n * n)
    bar = _progress(n * n, f"landscape {prob.name}", unit="pt", quiet=args.quiet)
    done = [0]

    def callback(points: int, total: int) -> None:
        done[0] = points

    def poll() -> None:
        bar.update(max(0, done[0] - bar.n))

    args.keep = lambda: f"nothing was written to {out}/ (a landscape is saved whole); rerun the command"
    start_time = time.perf_counter()
    if prob.init is None:
        land, trajectory, plane = _parameter_plane(args, prob, callback, poll, chunk)
        labels = ("φ0", "φ1")
    else:
        land, trajectory, plane = _mlp_plane(args, prob, callback, poll, chunk)
        labels = ("direction 1", "direction 2")
    poll()
    seconds = time.perf_counter() - start_time
    bar.close()

    cps = None if args.no_critical else fitjax.critical_points(prob.loss, prob.data, land)
    files = _save_landscape(out, args, prob, land, cps, trajectory, labels)
    summary = {
        "command": "landscape",
        "model": prob.name,
        "hidden": (args.hidden or 16) if prob.name == "mlp" else None,
        "data": prob.description,
        "math": args.math,
        "seed": args.seed,
        "grid": [n, n],
        "chunk_size": chunk,
        "plane": plane,
        "seconds": seconds,
        "loss_min": float(np.nanmin(land.loss)),
        "loss_max": float(np.nanmax(land.loss)),
        "critical_points": None if cps is None else _critical_list(cps),
    }
    files.append(_write_json(out / "landscape.json", summary))
    if cps is not None and cps.loss.size:
        files.append(sweep_report.write_csv(out / "results.csv", _critical_rows(cps)))
    files.append(_write_json(out / "metadata.json", _metadata(args, prob, seconds=seconds)))
    _print_landscape(prob, n, seconds, summary, cps, files)
    return 0


def _parameter_plane(args, prob, callback, poll, chunk) -> tuple[Any, None, dict[str, Any]]:
    """The landscape of a two-parameter model over ``--box`` (default its own box):
    the loss grid, no trajectory, and what the plane is."""
    n = args.grid
    box = args.box or prob.box
    assert box is not None  # every built-in problem without init has a box (problem())
    (lo0, hi0), (lo1, hi1) = box

    def work() -> Any:
        return fitjax.loss_grid(
            prob.loss,
            prob.data,
            np.linspace(lo0, hi0, n),
            np.linspace(lo1, hi1, n),
            chunk_size=chunk,
            callback=callback,
        )

    land = _in_background(work, poll)
    return land, None, {"kind": "parameters", "index": [0, 1], "box": [[lo0, hi0], [lo1, hi1]]}


def _save_landscape(out, args, prob, land, cps, trajectory, labels) -> list[Path]:
    """Writes landscape.npz and the two figures (landscape and surface); returns their paths."""
    from fitjax.analysis import plots

    extra = (
        {}
        if cps is None
        else {
            "critical_coords": cps.coords,
            "critical_loss": cps.loss,
            "critical_kind": cps.kind.astype(str),
            "critical_eigenvalues": cps.eigenvalues,
        }
    )
    if trajectory is not None:
        extra["trajectory"] = trajectory
    npz = out / "landscape.npz"
    np.savez_compressed(
        npz, values0=land.coords[0], values1=land.coords[1], loss=land.loss, allow_pickle=True, **extra
    )  # allow_pickle: numpy's default, named so that no array can be taken for it
    fig = out / f"landscape.{args.format}"
    plots.plot_landscape(
        fig,
        land.coords[0],
        land.coords[1],
        land.loss,
        trajectories=None if trajectory is None else [trajectory],
        labels=None if trajectory is None else [f"{args.optimizer} trajectory"],
        points=None if cps is None else cps.coords,
        point_kinds=None if cps is None else list(cps.kind),
        log=bool(np.nanmin(land.loss) > 0),
        xlabel=labels[0],
        ylabel=labels[1],
        title=f"{prob.name} loss landscape",
    )
    surface = plots.plot_surface(
        out / f"landscape_surface.{args.format}",
        land.coords[0],
        land.coords[1],
        land.loss,
        xlabel=labels[0],
        ylabel=labels[1],
        title=f"{prob.name} loss surface",
    )
    return [npz, fig, surface]


def _critical_list(cps: Any) -> list[dict[str, Any]]:
    """landscape.json's critical points: coordinates, loss, kind and Hessian eigenvalues of each."""
    return [
        {"coords": c, "loss": v, "kind": k, "eigenvalues": e}
        for c, v, k, e in zip(cps.coords, cps.loss, cps.kind, cps.eigenvalues, strict=True)
    ]


def _critical_rows(cps: Any) -> list[dict[str, Any]]:
    """results.csv's rows: one per critical point, lowest loss first."""
    rows: list[dict[str, Any]] = [
        {
            "kind": str(k),
            "loss": float(v),
            **{f"coord{i}": float(x) for i, x in enumerate(c)},
            **{f"eigenvalue{i}": float(x) for i, x in enumerate(e)},
        }
        for c, v, k, e in zip(cps.coords, cps.loss, cps.kind, cps.eigenvalues, strict=True)
    ]
    return sorted(rows, key=lambda r: r["loss"])


def _print_landscape(prob, n, seconds, summary, cps, files) -> None:
    """The lines ``fitjax landscape`` prints: grid, time, loss range, critical points, files."""
    print(
        f"fitjax landscape: {prob.name}: {n} x {n} grid in {seconds:.2f} s; "
        f"loss from {summary['loss_min']:.6g} to {summary['loss_max']:.6g}"
    )
    if cps is not None:
        kinds = {k: int(np.sum(cps.kind == k)) for k in ("minimum", "saddle", "maximum")}
        print(
            "  critical points: "
            + ", ".join(f"{v} {k}{'' if v == 1 else 's'}" for k, v in kinds.items())
            .replace("minimums", "minima")
            .replace("maximums", "maxima")
        )
    print(f"  wrote {', '.join(str(f) for f in files)}")


def _mlp_plane(args, prob, callback, poll, chunk):
    """The MLP's landscape around trained weights: random filter-normalised or PCA directions.

    The network is trained as ``fitjax sweep`` would train one run (the same optimizer
    options, mini-batches of ``--batch-size`` for sgd); a diverged training is refused."""
    key = jax.random.key(args.seed)
    params0 = prob.init(jax.random.fold_in(key, 1))
    values = _hyperparams(args)
    opt = _optimizer(args.optimizer, values)
    steps = args.steps or 300
    batch_size = SGD_BATCH if args.optimizer == "sgd" and args.batch_size is None else args.batch_size
    single = jax.tree.map(lambda a: a[None], params0)
    ticks = _Ticks()
    bar = _progress(steps + 1, f"training mlp ({args.optimizer})", "step", args.quiet)
    loss = prob.loss if isinstance(bar, _NoBar) else _counted(prob.loss, ticks)

    def train() -> Any:
        return fitjax.fit(
            loss,
            opt,
            single,
            prob.data,
            steps=steps,
            key=key,
            batch_size=batch_size,
            record_every=1,
            record_params=True,
        )

    res = _in_background(train, lambda: bar.update(max(0, min(ticks.n, steps + 1) - bar.n)))
    bar.close()
    if bool(res.diverged[0]):
        hp = ", ".join(f"{_flag(k)} {v[0]:g}" for k, v in values.items())
        raise CLIError(
            f"training the mlp diverged at step {int(res.diverged_step[0])} of {steps} "
            f"(--optimizer {args.optimizer}, {hp}): its loss or weights stopped being finite; "
            f"lower --learning-rate (the default for {args.optimizer} is "
            f"{default_learning_rate('mlp', args.optimizer):g})"
        )
    final = jax.tree.map(lambda a: a[0], res.params)
    n = args.grid
    if (args.directions or "random") == "random":
        directions = fitjax.random_directions(jax.random.fold_in(key, 2), final)
        ext = args.extent or 1.0
        axes = (np.linspace(-ext, ext, n), np.linspace(-ext, ext, n))
        plane = {"kind": "random filter-normalised directions", "center": "trained weights", "extent": ext}
        trajectory = None
    else:
        path = jax.tree.map(lambda h, p: jnp.concatenate([h[0], p[None]]), res.history.params, final)
        pca = fitjax.pca_directions(path, center=final)
        directions = pca.directions
        lo, hi = pca.coords.min(axis=0), pca.coords.max(axis=0)
        pad = 0.2 * np.maximum(hi - lo, 1e-3)
        axes = (
            np.linspace(lo[0] - pad[0], hi[0] + pad[0], n),
            np.linspace(lo[1] - pad[1], hi[1] + pad[1], n),
        )
        plane = {
            "kind": "PCA of the trajectory",
            "explained_variance": pca.explained,
            "center": "final weights",
        }
        trajectory = pca.coords
    land = _in_background(
        lambda: fitjax.loss_plane(
            prob.loss, prob.data, final, directions, axes, chunk_size=chunk, callback=callback
        ),
        poll,
    )
    plane.update(
        {
            "optimizer": args.optimizer,
            "hyperparams": {k: v[0] for k, v in values.items()},
            "batch_size": batch_size,
            "steps": steps,
            "training_seed": args.seed,
            "final_loss": float(res.loss[0]),
        }
    )
    return land, trajectory, plane
