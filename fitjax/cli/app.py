"""The ``fitjax`` command line.

``fitjax demo``
    The lecture's experiments on the built-in data: gradient descent on the line,
    gradient descent from several starts on the Gabor landscape (with its critical
    points and basins of attraction), gradient descent with line search, SGD against
    full-batch gradient descent, momentum against Nesterov momentum, normalized
    gradients against Adam on the toy loss. Writes the figures, ``summary.json`` and
    ``report.md`` into ``--out`` (default ``fitjax-demo``).
``fitjax sweep``
    Any built-in model and optimizer from a grid or box of starts, with
    hyperparameters given as single values or grids; ranks the settings
    (:mod:`fitjax.analysis.sweep_report`), prints the top ones and saves ``results.csv``,
    ``sweep.npz``, ``sweep.json``, ``metadata.json``, and the basin map
    (``basins.npz``, ``basins*.png``) for grid starts (default ``--out fitjax-sweep``).
``fitjax landscape``
    A loss landscape of a built-in model and its critical points (default
    ``--out fitjax-landscape``).

Every command takes ``--help``; ``docs/reference/outputs.md`` describes every file
written. A bad flag, an unknown model or optimizer, a bad value, an option that does
not apply to the model or command, or an output folder that cannot be written (or
holds another command's results, without ``--force``) gives one line on stderr and
exit code 2. Ctrl-C stops within a second or two, keeps the finished work, says so in
one line and exits with code 130. Progress is drawn on stderr when both stdout and
stderr are terminals (not with ``--quiet``). matplotlib (the ``plot`` extra) is
imported only when a command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import fitjax
from fitjax import _checks
from fitjax.analysis import sweep_report


class CLIError(Exception):
    """A problem with the command's arguments or output folder: one line, exit code 2."""

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


# ----------------------------------------------------------------------------- parsing helpers


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit code 2 (raised, not printed)."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see {self.prog} --help)", prog=self.prog)


def _float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or numbers separated by commas (e.g. 0.01,0.05,0.1), got {text!r}"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"values must be finite numbers, got {text!r}")
    return values


_positive_int = _checks.positive_int_arg


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _grid_size(text: str) -> int:
    value = _positive_int(text)
    if value < 3:
        raise argparse.ArgumentTypeError(f"a grid needs at least 3 points per axis, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class Starts:
    """How to make starting points: ``grid:N`` (or ``grid:N0xN1``) or ``uniform:N``."""

    kind: str
    shape: tuple[int, ...]

    @property
    def runs(self) -> int:
        return math.prod(self.shape)


def _starts(text: str) -> Starts:
    kind, _, size = text.partition(":")
    try:
        if kind == "grid":
            parts = tuple(int(v) for v in size.lower().split("x"))
            shape = parts * 2 if len(parts) == 1 else parts
            if len(shape) == 2 and min(shape) >= 2:
                return Starts("grid", shape)
        elif kind == "uniform":
            n = int(size)
            if n >= 1:
                return Starts("uniform", (n,))
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"expected grid:N (an N x N grid, N >= 2), grid:N0xN1 or uniform:N (N random starts), got {text!r}"
    )


def _box(text: str) -> tuple[tuple[float, float], tuple[float, float]]:
    values = _float_list(text)
    if len(values) != 4 or not (values[0] < values[1] and values[2] < values[3]):
        raise argparse.ArgumentTypeError(f"expected lo0,hi0,lo1,hi1 with lo < hi, got {text!r}")
    return (values[0], values[1]), (values[2], values[3])


# the files by which a folder is known to hold one command's results
RESULT_FILES = {
    "demo": ("summary.json", "report.md"),
    "sweep": ("sweep.json", "sweep.npz"),
    "landscape": ("landscape.json", "landscape.npz"),
}


def _owner(out: Path, command: str) -> tuple[str, str] | None:
    """(other command, one of its files) if ``out`` holds another command's results."""
    for other, names in RESULT_FILES.items():
        if other == command:
            continue
        for name in names:
            if (out / name).exists():
                return other, name
    return None


def _out_dir(path: str, command: str = "", force: bool = False) -> Path:
    """Create the output folder and check that it can be written, or raise :class:`CLIError`.

    A folder that holds another command's results (see :data:`RESULT_FILES`) is refused
    unless ``force``: the commands share ``metadata.json`` and ``results.csv``.
    """
    out = Path(path)
    if command and not force and out.is_dir():
        found = _owner(out, command)
        if found is not None:
            raise CLIError(
                f"--out {path}: the folder holds the results of `fitjax {found[0]}` ({found[1]}); "
                f"choose another --out, or pass --force to write beside them "
                f"(metadata.json and results.csv would be replaced)"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".fitjax-write-test-"):
            pass
    except OSError as err:
        raise CLIError(f"cannot write to output folder {str(out)!r}: {err.strerror or err}") from None
    return out


class _NoBar:
    n = 0

    def update(self, n: int = 1) -> None:
        del n

    def set_description_str(self, text: str) -> None:
        del text

    def close(self) -> None:
        pass


def _shows_progress(quiet: bool) -> bool:
    """Progress is drawn when not ``--quiet`` and both stdout and stderr are terminals."""
    if quiet:
        return False
    try:
        return sys.stdout.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return (
        f"{seconds // 60:d}:{seconds % 60:02d}"
        if seconds < 3600
        else f"{seconds // 3600:d}h{seconds % 3600 // 60:02d}"
    )


class _Bar:
    """One line of progress on stderr, redrawn in place at most every 0.2 s:
    ``desc: 42% 2520/6001 step [0:03 elapsed, 0:04 left]`` (the time left from the rate so far)."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit = max(1, total), desc, unit
        self.n = 0
        self.start = time.perf_counter()
        self.last = 0.0
        self.width = 0

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        elapsed = now - self.start
        left = "?" if self.n == 0 else _clock(elapsed * (self.total - self.n) / self.n)
        line = (
            f"{self.desc}: {100 * self.n / self.total:3.0f}% {self.n}/{self.total} {self.unit} "
            f"[{_clock(elapsed)} elapsed, {left} left]"
        )
        columns = shutil.get_terminal_size((100, 24)).columns
        line = line[: max(columns - 1, 40)]
        sys.stderr.write("\r" + line + " " * max(0, self.width - len(line)))
        sys.stderr.flush()
        self.width = len(line)

    def update(self, n: int = 1) -> None:
        self.n = min(self.total, self.n + n)
        self._draw()

    def set_description_str(self, text: str) -> None:
        self.desc = text

    def close(self) -> None:
        if self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def _progress(total: int, desc: str, unit: str = "it", quiet: bool = False) -> Any:
    """A progress line on stderr (see :func:`_shows_progress`), or a stand-in that draws nothing."""
    if not _shows_progress(quiet):
        return _NoBar()
    return _Bar(total, desc, unit)


class _Ticks:
    """A count of loss evaluations made by compiled programs, read by the thread that draws progress."""

    def __init__(self) -> None:
        self.n = 0

    def tick(self) -> None:
        self.n += 1


def _counted(loss: Callable[[Any, Any], jax.Array], ticks: _Ticks) -> Callable[[Any, Any], jax.Array]:
    """``loss`` that also counts its evaluations on the host.

    The callback takes no batched argument, so a program fitting every run at once
    calls it once per step (and once for the final loss), whatever the number of runs;
    it changes no value. Build it once per command: a new function compiles anew.
    """

    def loss_counted(params: Any, batch: Any) -> jax.Array:
        jax.debug.callback(ticks.tick)
        return loss(params, batch)

    return loss_counted


_WORKER = "fitjax-work"


def _in_background(work: Callable[[], Any], poll: Callable[[], None] | None = None) -> Any:
    """Run ``work`` in a daemon thread and return its result, calling ``poll`` every 0.2 s.

    The main thread only waits, so Ctrl-C reaches it at once (a compiled program would
    otherwise hold it until the program ends); :func:`main` then keeps what finished
    and ends the process, program and all.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as err:  # handed to the main thread
            box["error"] = err

    thread = threading.Thread(target=target, name=_WORKER, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
        if poll is not None:
            poll()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _finite(value: Any) -> Any:
    """JSON-ready values: numpy scalars and arrays to Python, non-finite numbers to None."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (np.ndarray, jax.Array)):
        return _finite(np.asarray(value).tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")
    return path


# ----------------------------------------------------------------------------- models and optimizers


@dataclasses.dataclass(frozen=True)
class Problem:
    """A built-in model with its loss, data and the box its parameters are explored in."""

    name: str
    loss: Callable[[Any, Any], jax.Array]
    data: Any
    box: tuple[tuple[float, float], tuple[float, float]] | None
    init: Callable[[jax.Array], Any] | None = None  # one set of parameters from a key (pytree models)
    description: dict[str, Any] = dataclasses.field(default_factory=dict)  # the data, for metadata.json


MODELS = ("line", "gabor", "mlp", "toy")


MATHS = ("platform", "polynomial")


def problem(
    name: str, *, seed: int = 0, hidden: int = 16, n_data: int = 64, maths: str = "platform"
) -> Problem:
    """The built-in problems: the lecture's line and Gabor fits, its Adam toy loss, a small MLP.

    ``maths="polynomial"`` evaluates the loss with :func:`fitjax.polynomial_math`.
    """
    prob = _problem(name, seed=seed, hidden=hidden, n_data=n_data)
    if maths == "polynomial":
        return dataclasses.replace(prob, loss=fitjax.polynomial_math(prob.loss))
    return prob


def _problem(name: str, *, seed: int, hidden: int, n_data: int) -> Problem:
    if name == "line":
        grid = fitjax.datasets.notebook()["linear_regression"]["loss_plot_grid"]
        box = ((grid["phi0"][0], grid["phi0"][1]), (grid["phi1"][0], grid["phi1"][1]))
        data = fitjax.datasets.line()
        about = {"data": "fitjax.datasets.line()", "points": int(data[0].shape[0])}
        return Problem("line", fitjax.least_squares(fitjax.line), data, box, description=about)
    if name == "gabor":
        grid = fitjax.datasets.notebook()["gabor"]["loss_plot_grid"]
        box = ((grid["phi0"][0], grid["phi0"][1]), (grid["phi1"][0], grid["phi1"][1]))
        loss = fitjax.least_squares(fitjax.Gabor(fitjax.GABOR_W_NOTEBOOK))
        data = fitjax.datasets.gabor()
        about = {
            "data": "fitjax.datasets.gabor()",
            "points": int(data[0].shape[0]),
            "gabor_w": fitjax.GABOR_W_NOTEBOOK,
        }
        return Problem("gabor", loss, data, box, description=about)
    if name == "toy":
        lo, hi, _ = fitjax.datasets.notebook()["adam_toy"]["plot_grid"]
        about = {"data": None, "loss": "fitjax.toy_loss (no data)"}
        return Problem("toy", fitjax.toy_loss, None, ((lo, hi), (lo, hi)), description=about)
    if name == "mlp":
        data = fitjax.datasets.synthetic_regression(jax.random.key(seed), n_data)
        sizes = (1, hidden, 1)
        about = {
            "data": f"fitjax.datasets.synthetic_regression(jax.random.key({seed}), {n_data})",
            "points": n_data,
            "layer_sizes": list(sizes),
        }
        return Problem(
            "mlp",
            fitjax.least_squares(fitjax.mlp),
            data,
            None,
            init=lambda key: fitjax.init_mlp(key, sizes),
            description=about,
        )
    raise CLIError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


# name -> (constructor, the hyperparameters it takes)
OPTIMIZERS: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "gd": (fitjax.gd, ("learning_rate",)),
    "sgd": (fitjax.sgd, ("learning_rate",)),
    "momentum": (fitjax.momentum, ("learning_rate", "beta")),
    "nesterov": (fitjax.nesterov, ("learning_rate", "beta")),
    "nesterov-classical": (fitjax.nesterov_classical, ("learning_rate", "momentum")),
    "normalized": (fitjax.normalized, ("learning_rate", "eps")),
    "adam": (fitjax.adam, ("learning_rate", "beta", "gamma", "eps")),
}
HYPERPARAMS = ("learning_rate", "beta", "gamma", "eps", "momentum")
SGD_BATCH = 5


def default_learning_rate(model: str, optimizer: str) -> float:
    """The learning rate used when ``--learning-rate`` is not given: one that converges
    without divergence from the default starts of every built-in model.

    The MLP's loss is a sum over 64 points, so its steps are smaller (0.003; 0.001
    for nesterov-classical, whose effective step is α/(1 − μ); 0.01 for adam).
    """
    if model == "mlp":
        return {"adam": 0.01, "nesterov-classical": 0.001}.get(optimizer, 0.003)
    return 0.05 if optimizer == "adam" else 0.01


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _hyperparams(args: argparse.Namespace) -> dict[str, tuple[float, ...]]:
    """The hyperparameters given on the command line, checked against the optimizer."""
    _, takes = OPTIMIZERS[args.optimizer]
    given = {name: getattr(args, name) for name in HYPERPARAMS if getattr(args, name) is not None}
    for name in given:
        if name not in takes:
            raise CLIError(
                f"{_flag(name)} does not apply to --optimizer {args.optimizer}; "
                f"it takes {', '.join(_flag(t) for t in takes)}"
            )
    given.setdefault("learning_rate", (default_learning_rate(args.model, args.optimizer),))
    make, _ = OPTIMIZERS[args.optimizer]
    firsts = {k: v[0] for k, v in given.items()}
    for name, values in given.items():  # every value checked up front, one at a time
        for i, value in enumerate(values):
            try:
                make(**{**firsts, name: value}).init(np.zeros(1, np.float32))
            except ValueError as err:
                raise CLIError(f"{err} ({_flag(name)}: value {i + 1} of {len(values)})") from None
    return given


def _optimizer(name: str, values: dict[str, tuple[float, ...]]) -> Any:
    make, _ = OPTIMIZERS[name]
    return make(**{k: v[0] for k, v in values.items()})


def _flat(params: Any) -> np.ndarray:
    """Each run's parameters as one row: leaves with leading run axes flattened together."""
    leaves = jax.tree.leaves(params)
    lead = np.shape(leaves[0])[:1]
    return np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(params)).reshape(lead + (-1,))


def _make_starts(
    prob: Problem, starts: Starts, box: Any, key: jax.Array
) -> tuple[Any, tuple[np.ndarray, np.ndarray] | None]:
    """Starting points, and for grid starts the two axes of values."""
    if prob.init is not None:
        if starts.kind == "grid":
            raise CLIError(
                f"--starts grid: needs a model with two parameters (line, gabor, toy); "
                f"for --model {prob.name} use --starts uniform:N (N random initialisations)"
            )
        return jax.vmap(prob.init)(jax.random.split(key, starts.runs)), None
    (lo0, hi0), (lo1, hi1) = box
    if starts.kind == "grid":
        v0, v1 = np.linspace(lo0, hi0, starts.shape[0]), np.linspace(lo1, hi1, starts.shape[1])
        return fitjax.inits.grid(v0, v1), (v0, v1)
    return fitjax.inits.uniform(key, starts.runs, [lo0, lo1], [hi0, hi1]), None


# ----------------------------------------------------------------------------- sweep


def _refuse(args: argparse.Namespace, name: str, applies: bool, why: str) -> None:
    """Refuse an option given on the command line that does not apply here (never ignore it)."""
    if getattr(args, name, None) is not None and not applies:
        raise CLIError(f"{_flag(name)} {why}")


def _check_model_options(args: argparse.Namespace, prob: Problem) -> None:
    """The options of ``sweep`` and ``landscape`` that depend on the model."""
    model = f"--model {prob.name}"
    _refuse(
        args,
        "hidden",
        prob.name == "mlp",
        f"applies to --model mlp only (its hidden units); {model} has none",
    )
    _refuse(
        args,
        "box",
        prob.init is None,
        f"applies to models with two parameters (line, gabor, toy); {model} starts from random "
        "initialisations (--starts uniform:N)",
    )
    if getattr(args, "optimizer", None) is None:
        return
    if args.optimizer == "sgd" and prob.data is None:
        raise CLIError(
            f"--optimizer sgd draws mini-batches from the data; {model} has none: use --optimizer gd"
        )
    _refuse(
        args, "batch_size", prob.data is not None, f"needs data to draw mini-batches from; {model} has none"
    )
    _refuse(
        args,
        "batch_size",
        args.optimizer != "gd",
        "does not apply to --optimizer gd (full-batch gradient descent); "
        "use --optimizer sgd for mini-batches",
    )


def _metadata(args: argparse.Namespace, prob: Problem | None, **extra: Any) -> dict[str, Any]:
    """What metadata.json records: the command line, versions, devices, time, seeds, options, data."""
    import optax

    try:
        import jaxlib

        jaxlib_version = jaxlib.__version__
    except (ImportError, AttributeError):  # pragma: no cover - jaxlib comes with jax
        jaxlib_version = None
    devices = jax.devices()
    options = {k: v for k, v in vars(args).items() if k not in ("func", "keep", "argv")}
    return {
        "command": args.command,
        "argv": ["fitjax", *getattr(args, "argv", [])],
        "command_line": " ".join(["fitjax", *getattr(args, "argv", [])]),
        "utc_time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": {
            "fitjax": fitjax.__version__,
            "jax": jax.__version__,
            "jaxlib": jaxlib_version,
            "optax": optax.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "devices": {
            "backend": jax.default_backend(),
            "kind": devices[0].device_kind,
            "count": len(devices),
            "used": args.devices if getattr(args, "devices", None) else len(devices),
        },
        "seeds": {"seed": args.seed, "start_key": f"jax.random.fold_in(jax.random.key({args.seed}), 1)"},
        "options": _finite(
            {
                k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v
                for k, v in options.items()
            }
        ),
        "data": None if prob is None else {"model": prob.name, **prob.description},
        **extra,
    }


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


def _default_starts(prob: Problem) -> Starts:
    return Starts("uniform", (16,)) if prob.init else Starts("grid", (32, 32))


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


# ----------------------------------------------------------------------------- landscape


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
    prob = problem(args.model, seed=args.seed, hidden=args.hidden or 16, maths=args.math)
    _check_landscape_options(args, prob)
    out = _out_dir(args.out, "landscape", args.force)
    from fitjax.analysis import plots

    n = args.grid
    chunk = args.chunk_size or landscape_chunk(n * n)
    trajectory = None
    bar = _progress(n * n, f"landscape {prob.name}", unit="pt", quiet=args.quiet)
    done = [0]

    def callback(points: int, total: int) -> None:
        done[0] = points

    def poll() -> None:
        bar.update(max(0, done[0] - bar.n))

    args.keep = lambda: f"nothing was written to {out}/ (a landscape is saved whole); rerun the command"
    start_time = time.perf_counter()
    if prob.init is None:
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
        labels = ("φ0", "φ1")
        plane = {"kind": "parameters", "index": [0, 1], "box": [[lo0, hi0], [lo1, hi1]]}
    else:
        land, trajectory, plane = _mlp_plane(args, prob, callback, poll, chunk)
        labels = ("direction 1", "direction 2")
    poll()
    seconds = time.perf_counter() - start_time
    bar.close()

    cps = None
    if not args.no_critical:
        cps = fitjax.critical_points(prob.loss, prob.data, land)
    files = []
    npz = out / "landscape.npz"
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
    np.savez_compressed(
        npz, values0=land.coords[0], values1=land.coords[1], loss=land.loss, allow_pickle=True, **extra
    )  # allow_pickle: numpy's default, named so that no array can be taken for it
    files.append(npz)
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
    files.append(fig)
    files.append(
        plots.plot_surface(
            out / f"landscape_surface.{args.format}",
            land.coords[0],
            land.coords[1],
            land.loss,
            xlabel=labels[0],
            ylabel=labels[1],
            title=f"{prob.name} loss surface",
        )
    )
    kinds = {} if cps is None else {k: int(np.sum(cps.kind == k)) for k in ("minimum", "saddle", "maximum")}
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
        "critical_points": None
        if cps is None
        else [
            {"coords": c, "loss": v, "kind": k, "eigenvalues": e}
            for c, v, k, e in zip(cps.coords, cps.loss, cps.kind, cps.eigenvalues, strict=True)
        ],
    }
    files.append(_write_json(out / "landscape.json", summary))
    if cps is not None:
        rows: list[dict[str, Any]] = [
            {
                "kind": str(k),
                "loss": float(v),
                **{f"coord{i}": float(x) for i, x in enumerate(c)},
                **{f"eigenvalue{i}": float(x) for i, x in enumerate(e)},
            }
            for c, v, k, e in zip(cps.coords, cps.loss, cps.kind, cps.eigenvalues, strict=True)
        ]
        rows.sort(key=lambda r: r["loss"])
        if rows:
            files.append(sweep_report.write_csv(out / "results.csv", rows))
    files.append(_write_json(out / "metadata.json", _metadata(args, prob, seconds=seconds)))
    print(
        f"fitjax landscape: {prob.name}: {n} x {n} grid in {seconds:.2f} s; "
        f"loss from {summary['loss_min']:.6g} to {summary['loss_max']:.6g}"
    )
    if cps is not None:
        print(
            "  critical points: "
            + ", ".join(f"{v} {k}{'' if v == 1 else 's'}" for k, v in kinds.items())
            .replace("minimums", "minima")
            .replace("maximums", "maxima")
        )
    print(f"  wrote {', '.join(str(f) for f in files)}")
    return 0


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


# ----------------------------------------------------------------------------- demo


@dataclasses.dataclass
class _Demo:
    out: Path
    fmt: str
    grid: int
    basin_grid: int
    basin_steps: int
    runs: int
    seed: int

    def fig(self, name: str) -> Path:
        return self.out / f"{name}.{self.fmt}"


def _path(res: fitjax.FitResult, i: int = 0) -> np.ndarray:
    """Run ``i``'s recorded parameters followed by its final parameters, shape ``(R + 1, 2)``."""
    assert res.history is not None and res.history.params is not None  # the demo records parameters
    return np.concatenate([np.asarray(res.history.params[i]), np.asarray(res.params[i])[None]])


def _curve(res: fitjax.FitResult, i: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """(steps, loss) of run ``i`` (or the median over runs) including the final loss."""
    assert res.history is not None  # the demo's fits record every step
    hist = np.asarray(res.history.loss)
    final = np.asarray(res.loss)
    values = (
        np.median(np.concatenate([hist, final[:, None]], 1), 0) if i is None else np.append(hist[i], final[i])
    )
    return np.append(np.asarray(res.history.step), res.steps), values


def _record(res: fitjax.FitResult, **settings: Any) -> dict[str, Any]:
    loss = np.asarray(res.loss, dtype=float)
    row = {**settings, "steps": res.steps}
    if loss.size == 1:
        row.update(final_loss=loss[0], final_params=np.asarray(res.params[0]))
    else:
        row.update(
            final_loss_run0=loss[0],
            final_loss_median=np.median(loss),
            final_loss_best=loss.min(),
            final_loss_worst=loss.max(),
            runs=loss.size,
        )
    row["diverged"] = int(np.asarray(res.diverged).sum())
    return row


def _grid_axes(box, n: int) -> tuple[np.ndarray, np.ndarray]:
    (lo0, hi0), (lo1, hi1) = box
    return np.linspace(lo0, hi0, n), np.linspace(lo1, hi1, n)


def _line_search_optimizer() -> Callable[..., Any] | None:
    """``fitjax.optim.linesearch.gd_line_search`` when this installation has it."""
    try:
        from fitjax.optim.linesearch import gd_line_search
    except ImportError:
        return None
    return gd_line_search


def _demo_line(d: _Demo) -> tuple[dict, str]:
    from fitjax.analysis import plots

    prob = problem("line")
    nb = fitjax.datasets.notebook()["linear_regression"]
    start = jnp.asarray([nb["gradient_descent_line_search"]["phi_init"]])
    x, y = (np.asarray(a, dtype=float) for a in prob.data)
    exact = np.linalg.lstsq(np.stack([np.ones_like(x), x], 1), y, rcond=None)[0]
    exact_loss = float(np.sum((exact[0] + exact[1] * x - y) ** 2))
    lr, steps = 0.03, 100
    gd = fitjax.fit(
        prob.loss, fitjax.gd(lr), start, prob.data, steps=steps, record_every=1, record_params=True
    )
    runs = {"GD α=0.03": gd}
    summary = {"gd": _record(gd, learning_rate=lr), "least_squares": {"params": exact, "loss": exact_loss}}
    search = _line_search_optimizer()
    if search is not None:
        ls = nb["gradient_descent_line_search"]
        cfg = ls["line_search"]
        res = fitjax.fit(
            prob.loss,
            search(cfg["max_dist_default"], cfg["thresh"], cfg["max_iter"]),
            start,
            prob.data,
            steps=ls["n_steps"],
            record_every=1,
            record_params=True,
        )
        runs["GD + line search"] = res
        summary["gd_line_search"] = _record(
            res, max_dist=cfg["max_dist_default"], tol=cfg["thresh"], max_iter=cfg["max_iter"]
        )
    land = fitjax.loss_grid(prob.loss, prob.data, *_grid_axes(prob.box, d.grid))
    f1 = plots.plot_landscape(
        d.fig("line_landscape"),
        land.coords[0],
        land.coords[1],
        land.loss,
        trajectories=[_path(r) for r in runs.values()],
        labels=[f"{k} ({r.steps} steps)" for k, r in runs.items()],
        points=exact[None],
        log=True,
        title="Line: L[φ] = Σ (φ0 + φ1 x − y)², from the notebook's start",
    )
    xs = np.linspace(0, 2, 50)
    curves = {"start": (xs, float(start[0, 0]) + float(start[0, 1]) * xs)}
    curves.update({f"{k}": (xs, float(r.params[0, 0]) + float(r.params[0, 1]) * xs) for k, r in runs.items()})
    f2 = plots.plot_fits(d.fig("line_fit"), x, y, curves, title="Line fits")
    rows = "\n".join(f"| {k} | {r.steps} | {float(r.loss[0]):.6g} |" for k, r in runs.items())
    text = f"""## Gradient descent on the line

The 12-point line fit from the notebook's start φ = (1.6, −0.5). Fixed-step gradient descent
uses α = {lr} (stable below 2/λ_max ≈ 0.04 for this loss); the least-squares solution
(NumPy) is φ = ({exact[0]:.4f}, {exact[1]:.4f}) with loss {exact_loss:.6g}.
{"" if search else "Gradient descent with line search is not in this installation."}

| run | steps | final loss |
|---|---|---|
{rows}
| least squares | — | {exact_loss:.6g} |

![line landscape]({f1.name}) ![line fits]({f2.name})
"""
    return summary, text


_BASIN_TOL = 0.1
_GABOR_STARTS = ((-1.5, 8.5), (3.5, 6.5), (5.0, 15.0), (-7.0, 10.0), (-6.0, 4.0), (0.0, 20.0))


def _demo_gabor(d: _Demo) -> tuple[dict, str]:
    from fitjax.analysis import plots

    prob = problem("gabor")
    lr, steps = 0.05, 500
    starts = jnp.asarray(_GABOR_STARTS)
    res = fitjax.fit(
        prob.loss, fitjax.gd(lr), starts, prob.data, steps=steps, record_every=1, record_params=True
    )
    land = fitjax.loss_grid(prob.loss, prob.data, *_grid_axes(prob.box, d.grid))
    cps = fitjax.critical_points(prob.loss, prob.data, land)
    f1 = plots.plot_landscape(
        d.fig("gabor_landscape"),
        land.coords[0],
        land.coords[1],
        land.loss,
        trajectories=[_path(res, i) for i in range(len(_GABOR_STARTS))],
        labels=[f"start ({a:g}, {b:g})" for a, b in _GABOR_STARTS],
        points=cps.coords,
        point_kinds=list(cps.kind),
        title=f"Gabor: GD α={lr}, {steps} steps",
    )
    f2 = plots.plot_surface(
        d.fig("gabor_surface"), land.coords[0], land.coords[1], land.loss, title="Gabor loss surface"
    )
    v0, v1 = _grid_axes(prob.box, d.basin_grid)
    bm = fitjax.basin_map(prob.loss, fitjax.gd(lr), prob.data, v0, v1, steps=d.basin_steps, tol=_BASIN_TOL)
    f3 = plots.plot_basins(
        d.fig("gabor_basins"),
        v0,
        v1,
        bm.label,
        minima=bm.minima,
        converged_step=bm.converged_step,
        title=f"Basins of GD α={lr} ({d.basin_grid}² starts)",
    )
    minima = cps.kind == "minimum"
    glob = cps.coords[minima][0] if minima.any() else None
    ok = bm.label >= 0
    summary: dict[str, Any] = {
        "gd_from_starts": [
            {"start": s, "final_params": np.asarray(res.params[i]), "final_loss": float(res.loss[i])}
            for i, s in enumerate(_GABOR_STARTS)
        ],
        "learning_rate": lr,
        "steps": steps,
        "critical_points": {k: int(np.sum(cps.kind == k)) for k in ("minimum", "saddle", "maximum")},
        "global_minimum": {"params": glob, "loss": float(cps.loss[minima][0]) if minima.any() else None},
        "basins": {
            "grid": [d.basin_grid, d.basin_grid],
            "steps": d.basin_steps,
            "minima": int(bm.minima.shape[0]),
            "share_reaching_lowest": float(np.mean(bm.label == 0)),
            "diverged": int(np.sum(bm.label == fitjax.DIVERGED)),
            "unsettled": int(np.sum(bm.label == fitjax.UNSETTLED)),
            "median_convergence_step": float(np.median(bm.converged_step[ok])) if ok.any() else None,
        },
    }
    rows = "\n".join(
        f"| ({s[0]:g}, {s[1]:g}) | ({float(res.params[i, 0]):.3f}, {float(res.params[i, 1]):.3f}) | "
        f"{float(res.loss[i]):.4g} |"
        for i, s in enumerate(_GABOR_STARTS)
    )
    glob_text = (
        ""
        if glob is None
        else (
            f"The lowest minimum on the grid is at φ = ({glob[0]:.4f}, {glob[1]:.4f}) with loss "
            f"{summary['global_minimum']['loss']:.6g}. "
        )
    )
    text = f"""## Gradient descent on the Gabor landscape

Gradient descent (α = {lr}, {steps} steps) from several starts on the 30-point Gabor data
(envelope w = 32) ends in different minima: the global one only from its valley.
The landscape ({d.grid}² grid) has {summary["critical_points"]["minimum"]} local minima,
{summary["critical_points"]["saddle"]} saddles and {summary["critical_points"]["maximum"]} maxima
inside the box (grid tests refined by Newton's method). {glob_text}
From a {d.basin_grid}² grid of starts ({d.basin_steps} steps) the runs reach
{summary["basins"]["minima"]} distinct minima (end points clustered within {_BASIN_TOL});
{100 * summary["basins"]["share_reaching_lowest"]:.0f}% reach the lowest, and
{summary["basins"]["unsettled"]} had not settled at a minimum (grey in the map).

| start | end | final loss |
|---|---|---|
{rows}

![Gabor landscape]({f1.name}) ![Gabor surface]({f2.name})
![Gabor basins]({f3.name})
"""
    return summary, text


def _demo_line_search(d: _Demo) -> tuple[dict, str] | None:
    from fitjax.analysis import plots

    search = _line_search_optimizer()
    if search is None:
        return None
    prob = problem("gabor")
    nb = fitjax.datasets.notebook()["gabor"]["runs"]
    ls, fixed = nb["gd_line_search"], nb["gd_fixed_lr"]
    cfg = ls["line_search"]
    a = fitjax.fit(
        prob.loss,
        search(cfg["max_dist"], cfg["thresh"], cfg["max_iter"]),
        jnp.asarray([ls["phi_init"]]),
        prob.data,
        steps=ls["n_steps"],
        record_every=1,
        record_params=True,
    )
    b = fitjax.fit(
        prob.loss,
        fitjax.gd(fixed["alpha"]),
        jnp.asarray([fixed["phi_init"]]),
        prob.data,
        steps=fixed["n_steps"],
        record_every=1,
        record_params=True,
    )
    land = fitjax.loss_grid(prob.loss, prob.data, *_grid_axes(prob.box, d.grid))
    f1 = plots.plot_landscape(
        d.fig("gabor_line_search"),
        land.coords[0],
        land.coords[1],
        land.loss,
        trajectories=[_path(a), _path(b)],
        labels=[f"GD + line search (max_dist {cfg['max_dist']:g})", f"GD α={fixed['alpha']:g}"],
        title=f"Gabor: line search against a fixed step, {ls['n_steps']} steps",
    )
    f2 = plots.plot_loss_curves(
        d.fig("gabor_line_search_loss"),
        {"GD + line search": _curve(a), f"GD α={fixed['alpha']:g}": _curve(b)},
    )
    evaluations = None
    try:
        evaluations = int(fitjax.loss_evaluations(a).total[0])
    except (AttributeError, TypeError):
        pass
    summary = {
        "gd_line_search": _record(
            a,
            max_dist=cfg["max_dist"],
            tol=cfg["thresh"],
            max_iter=cfg["max_iter"],
            loss_evaluations=evaluations,
        ),
        "gd_fixed": _record(b, learning_rate=fixed["alpha"]),
    }
    text = f"""## Gradient descent with line search

The notebook's comparison on the Gabor data from φ = ({ls["phi_init"][0]:g}, {ls["phi_init"][1]:g}),
{ls["n_steps"]} steps: the bracketing line search (max_dist {cfg["max_dist"]:g}, threshold
{cfg["thresh"]:g}, at most {cfg["max_iter"]} iterations) against a fixed α = {fixed["alpha"]:g}.

| run | final loss |
|---|---|
| GD + line search | {float(a.loss[0]):.4g} |
| GD α = {fixed["alpha"]:g} | {float(b.loss[0]):.4g} |

The line search spent {evaluations if evaluations is not None else "n/a"} loss evaluations.

![line search]({f1.name}) ![line search loss]({f2.name})
"""
    return summary, text


_FLAT_SHARE = 0.15  # "near" a loss in the SGD report: within 15% of it


def _demo_sgd(d: _Demo) -> tuple[dict, str]:
    from fitjax.analysis import plots

    prob = problem("gabor")
    nb = fitjax.datasets.notebook()["gabor"]["runs"]
    s, fixed = nb["sgd_6_3"], nb["gd_fixed_lr"]
    start = jnp.asarray([s["phi_init"]])
    kw = dict(steps=s["n_steps"], record_every=1, record_params=True)
    gd = fitjax.fit(prob.loss, fitjax.gd(fixed["alpha"]), start, prob.data, **kw)
    sgd = fitjax.fit(
        prob.loss,
        fitjax.sgd(s["alpha"]),
        jnp.tile(start, (d.runs, 1)),
        prob.data,
        batch_size=s["batch_size"],
        key=jax.random.key(d.seed),
        **kw,
    )
    land = fitjax.loss_grid(prob.loss, prob.data, *_grid_axes(prob.box, d.grid))
    shown = min(3, d.runs)
    f1 = plots.plot_landscape(
        d.fig("sgd_vs_gd"),
        land.coords[0],
        land.coords[1],
        land.loss,
        trajectories=[_path(gd)] + [_path(sgd, i) for i in range(shown)],
        labels=[f"GD α={fixed['alpha']:g}"]
        + [f"SGD α={s['alpha']:g}, B={s['batch_size']} (order {i + 1})" for i in range(shown)],
        title=f"Gabor: SGD against full-batch GD, {s['n_steps']} steps",
    )
    f2 = plots.plot_loss_curves(
        d.fig("sgd_vs_gd_loss"),
        {
            f"GD α={fixed['alpha']:g}": _curve(gd),
            f"SGD median of {d.runs} orders": _curve(sgd, None),
            "SGD order 1": _curve(sgd, 0),
        },
        colors={f"SGD median of {d.runs} orders": "black", "SGD order 1": plots.PATH_COLORS[1]},
    )
    summary = {
        "gd": _record(gd, learning_rate=fixed["alpha"]),
        "sgd": _record(sgd, learning_rate=s["alpha"], batch_size=s["batch_size"], seed=d.seed),
    }
    sgd_loss = np.asarray(sgd.loss)
    # Where the runs end: the loss of a model that is zero at every point is Σy² (the flat
    # region far from the data's bump); the global minimum is the Gabor experiment's.
    zero_model = float(np.sum(np.asarray(prob.data[1]) ** 2))
    cps = fitjax.critical_points(prob.loss, prob.data, land)
    best = float(np.min(cps.loss[cps.kind == "minimum"]))
    below_gd = int(np.sum(sgd_loss < float(gd.loss[0])))
    flat = int(np.sum(np.abs(sgd_loss - zero_model) <= _FLAT_SHARE * zero_model))
    at_best = int(np.sum(sgd_loss <= best * (1 + _FLAT_SHARE)))
    summary["sgd"].update(
        below_gd=below_gd,
        zero_model_loss=zero_model,
        near_zero_model=flat,
        global_minimum_loss=best,
        at_global_minimum=at_best,
    )
    text = f"""## Stochastic against full-batch gradient descent

From the SGD notebook's start φ = ({s["phi_init"][0]:g}, {s["phi_init"][1]:g}), {s["n_steps"]} steps:
full-batch GD (α = {fixed["alpha"]:g}) stops in the local minimum of its valley
(loss {float(gd.loss[0]):.4g});
SGD (α = {s["alpha"]:g}, batches of {s["batch_size"]}, {d.runs} runs with their own batch orders,
seed {d.seed}) ends with median loss {np.median(sgd_loss):.4g} (best {sgd_loss.min():.4g},
worst {sgd_loss.max():.4g}). {below_gd} of the {d.runs} SGD runs end below GD's loss, but
{flat} of them end within {_FLAT_SHARE:.0%} of Σy² = {zero_model:.3g}, the loss of a model that
is zero at every data point: the mini-batches' noise carried them out of GD's valley onto the
flat region where the model is ≈ 0, and {at_best} reached the global minimum (loss ≈ {best:.4g}).
The better median is that flat region, not a better fit.

![SGD vs GD]({f1.name}) ![SGD vs GD loss]({f2.name})
"""
    return summary, text


def _demo_momentum(d: _Demo) -> tuple[dict, str]:
    from fitjax.analysis import plots

    prob = problem("gabor")
    nb = fitjax.datasets.notebook()["gabor"]["runs"]
    stated = fitjax.datasets.notebook()["lecture_stated_values"]
    cfgs = {
        "SGD": (nb["sgd_6_4"], lambda c: fitjax.sgd(c["alpha"])),
        "momentum": (nb["momentum_6_4"], lambda c: fitjax.momentum(c["alpha"], c["beta"])),
        "Nesterov": (nb["nesterov_6_4"], lambda c: fitjax.nesterov(c["alpha"], c["beta"])),
    }
    results = {}
    for name, (c, make) in cfgs.items():
        # the same key and run ids: run i sees the same mini-batch order under every optimizer
        results[name] = fitjax.fit(
            prob.loss,
            make(c),
            jnp.tile(jnp.asarray([c["phi_init"]]), (d.runs, 1)),
            prob.data,
            steps=c["n_steps"],
            batch_size=c["batch_size"],
            key=jax.random.key(d.seed),
            record_every=1,
            record_params=True,
        )
    land = fitjax.loss_grid(prob.loss, prob.data, *_grid_axes(prob.box, d.grid))
    c0 = nb["momentum_6_4"]
    f1 = plots.plot_landscape_panels(  # side by side, as the lecture draws them: no path hides another
        d.fig("momentum_nesterov"),
        land.coords[0],
        land.coords[1],
        land.loss,
        [_path(r) for r in results.values()],
        list(results),
        title=f"Gabor: α={c0['alpha']:g}, β={c0['beta']:g}, B={c0['batch_size']}, "
        f"{c0['n_steps']} steps (order 1)",
    )
    f2 = plots.plot_loss_curves(
        d.fig("momentum_nesterov_loss"),
        {f"{k} (median of {d.runs})": _curve(r, None) for k, r in results.items()},
    )
    lecture = {
        "SGD": stated["gabor_final_loss_sgd_without_momentum"],
        "momentum": stated["gabor_final_loss_with_momentum"],
        "Nesterov": stated["gabor_final_loss_nesterov"],
    }
    summary = {
        k: {
            **_record(
                r, **{kk: vv for kk, vv in cfgs[k][0].items() if kk in ("alpha", "beta", "batch_size")}
            ),
            "lecture_stated_loss": lecture[k],
        }
        for k, r in results.items()
    }
    rows = "\n".join(
        f"| {k} | {float(r.loss[0]):.4g} | {float(np.median(np.asarray(r.loss))):.4g} | {lecture[k]:g} |"
        for k, r in results.items()
    )
    text = f"""## Momentum against Nesterov momentum

The momentum notebook's settings (start φ = ({c0["phi_init"][0]:g}, {c0["phi_init"][1]:g}),
α = {c0["alpha"]:g}, β = {c0["beta"]:g}, batches of {c0["batch_size"]}, {c0["n_steps"]} steps), each
optimizer run with the same {d.runs} mini-batch orders (seed {d.seed}). The lecture's slides quote
single runs whose batches are not given, so only the ordering is comparable.

| optimizer | final loss, order 1 | median over orders | lecture |
|---|---|---|---|
{rows}

![momentum and Nesterov]({f1.name}) ![loss curves]({f2.name})
"""
    return summary, text


def _demo_adam(d: _Demo) -> tuple[dict, str]:
    from fitjax.analysis import plots

    prob = problem("toy")
    nb = fitjax.datasets.notebook()["adam_toy"]
    start = jnp.asarray([nb["phi_init"]])
    r = nb["runs"]
    runs = {
        f"GD α={r['gd_small_lr']['alpha']:g}": (
            fitjax.gd(r["gd_small_lr"]["alpha"]),
            r["gd_small_lr"]["n_steps"],
        ),
        f"GD α={r['gd_large_lr']['alpha']:g}": (
            fitjax.gd(r["gd_large_lr"]["alpha"]),
            r["gd_large_lr"]["n_steps"],
        ),
        "normalized": (
            fitjax.normalized(r["normalized_gradients"]["alpha"], r["normalized_gradients"]["epsilon"]),
            r["normalized_gradients"]["n_steps"],
        ),
        "Adam": (
            fitjax.adam(r["adam"]["alpha"], r["adam"]["beta"], r["adam"]["gamma"], r["adam"]["epsilon"]),
            r["adam"]["n_steps"],
        ),
    }
    results = {
        k: fitjax.fit(prob.loss, opt, start, None, steps=n, record_every=1, record_params=True)
        for k, (opt, n) in runs.items()
    }
    land = fitjax.loss_grid(prob.loss, None, *_grid_axes(prob.box, d.grid))
    f1 = plots.plot_landscape(
        d.fig("toy_adam"),
        land.coords[0],
        land.coords[1],
        land.loss,
        trajectories=[_path(x) for x in results.values()],
        labels=list(results),
        points=np.asarray([nb["minimum"]]),
        title="Toy loss 1 − exp(−2φ1²)·exp(−(φ0 − 0.7)²/8)",
    )
    f2 = plots.plot_loss_curves(d.fig("toy_adam_loss"), {k: _curve(x) for k, x in results.items()})
    summary = {k: _record(x) for k, x in results.items()}
    rows = "\n".join(
        f"| {k} | {x.steps} | ({float(x.params[0, 0]):.4f}, {float(x.params[0, 1]):.4f}) | "
        f"{float(x.loss[0]):.3g} |"
        for k, x in results.items()
    )
    text = f"""## Normalized gradients against Adam

The Adam notebook's toy loss from φ = ({nb["phi_init"][0]:g}, {nb["phi_init"][1]:g}) (minimum at
(0.7, 0)), with its settings. A small fixed step crawls along φ0, a large one bounces across φ1;
normalized gradients move a fixed α along each coordinate and bounce near the minimum
without converging; Adam's moving averages damp the bouncing.

| optimizer | steps | end | final loss |
|---|---|---|---|
{rows}

![toy landscape]({f1.name}) ![toy loss curves]({f2.name})
"""
    return summary, text


_EXPERIMENTS: tuple[tuple[str, Callable[[_Demo], Any]], ...] = (
    ("line", _demo_line),
    ("gabor", _demo_gabor),
    ("line_search", _demo_line_search),
    ("sgd_vs_gd", _demo_sgd),
    ("momentum_vs_nesterov", _demo_momentum),
    ("normalized_vs_adam", _demo_adam),
)


def _write_demo(
    out: Path, args: argparse.Namespace, summary: dict, sections: list[str], seconds: float, left: list[str]
) -> None:
    """summary.json, report.md and metadata.json for the experiments in ``summary``;
    ``left`` names those that did not finish (an interrupted demo)."""
    has_search = _line_search_optimizer() is not None
    meta = {
        "seconds": seconds,
        "jax_backend": jax.default_backend(),
        "line_search": has_search,
        "seed": args.seed,
        "complete": not left,
        "not_finished": left,
    }
    _write_json(out / "summary.json", {"experiments": summary, **meta})
    report = (
        "# fitjax demo: the lecture's experiments\n\n"
        + (
            f"Made by `fitjax demo` in {seconds:.1f} s on {jax.default_backend()}. "
            "Losses are sums of squares over\n"
            "the data (the notebooks' convention); final losses of every run are in `summary.json`.\n\n"
        )
        + (
            f"**Interrupted**: {', '.join(left)} did not finish and are not in this report.\n\n"
            if left
            else ""
        )
        + "\n".join(sections)
    )
    if not has_search:
        report += (
            "\nGradient descent with line search was left out: fitjax.optim.linesearch is not installed.\n"
        )
    (out / "report.md").write_text(report)
    _write_json(out / "metadata.json", _metadata(args, None, complete=not left, seconds=seconds))


def _demo(args: argparse.Namespace) -> int:
    out = _out_dir(args.out, "demo", args.force)
    d = _Demo(out, args.format, args.grid, args.basin_grid, args.basin_steps, args.runs, args.seed)
    start_time = time.perf_counter()
    summary: dict[str, Any] = {}
    sections: list[str] = []
    finished: list[str] = []
    bar = _progress(len(_EXPERIMENTS), "demo", unit="experiment", quiet=args.quiet)

    def work() -> None:
        for name, run in _EXPERIMENTS:
            got = run(d)
            if got is not None:
                sections.append(got[1])  # before the summary: an interrupt keeps both or neither
                summary[name] = got[0]
            finished.append(name)

    def poll() -> None:
        k = len(finished)
        if k < len(_EXPERIMENTS):
            bar.set_description_str(f"demo: {_EXPERIMENTS[k][0]}")
        bar.update(max(0, k - bar.n))

    def keep() -> str:
        bar.close()
        done = dict(summary)  # what had finished when Ctrl-C came
        left = [name for name, _ in _EXPERIMENTS if name not in finished]
        _write_demo(out, args, done, list(sections[: len(done)]), time.perf_counter() - start_time, left)
        return (
            f"kept the {len(done)} experiments that finished ({', '.join(done) or 'none'}) in "
            f"{out}/summary.json and report.md; rerun the command for the rest"
        )

    args.keep = keep
    _in_background(work, poll)
    bar.close()
    seconds = time.perf_counter() - start_time
    _write_demo(out, args, summary, sections, seconds, [])

    g = summary["gabor"]
    mn = summary["momentum_vs_nesterov"]
    lines = [
        f"fitjax demo: {len(sections)} experiments in {seconds:.1f} s, written to {out}/",
        f"  line: GD loss {summary['line']['gd']['final_loss']:.4f} "
        f"(least squares {summary['line']['least_squares']['loss']:.4f})",
        f"  gabor: GD from {len(g['gd_from_starts'])} starts ends at losses "
        + ", ".join(f"{r['final_loss']:.3g}" for r in g["gd_from_starts"])
        + f"; {g['critical_points']['minimum']} minima, {g['critical_points']['saddle']} saddles; "
        f"{g['basins']['minima']} basins",
    ]
    if "line_search" in summary:
        ls = summary["line_search"]
        lines.append(
            f"  line search: loss {ls['gd_line_search']['final_loss']:.4g} "
            f"against {ls['gd_fixed']['final_loss']:.4g} for a fixed step"
        )
    sg = summary["sgd_vs_gd"]
    lines.append(
        f"  SGD median loss {sg['sgd']['final_loss_median']:.4g} against GD {sg['gd']['final_loss']:.4g}"
        f" ({sg['sgd']['near_zero_model']} of {sg['sgd']['runs']} SGD runs on the flat region where the"
        f" model is ≈ 0, {sg['sgd']['at_global_minimum']} at the global minimum)"
    )
    lines.append("  median loss: " + ", ".join(f"{k} {v['final_loss_median']:.3g}" for k, v in mn.items()))
    lines.append(
        "  toy loss: "
        + ", ".join(f"{k} {v['final_loss']:.2g}" for k, v in summary["normalized_vs_adam"].items())
    )
    print("\n".join(lines))
    return 0


# ----------------------------------------------------------------------------- parser


def _add_common(p: argparse.ArgumentParser, out_default: str) -> None:
    p.add_argument("--out", default=out_default, metavar="DIR", help=f"output folder (default {out_default})")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into --out even if it holds another command's results",
    )
    p.add_argument("--seed", type=_checks.seed_arg, default=0, help="seed of every random choice (default 0)")
    p.add_argument(
        "--quiet", action="store_true", help="no progress (also off when stdout is not a terminal)"
    )


def _add_model(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument(
        "--model",
        choices=MODELS,
        default=default,
        required=default is None,
        help="line, gabor (the lecture's data), toy (the Adam toy loss) or mlp (a small network)",
    )
    p.add_argument(
        "--box",
        type=_box,
        metavar="LO0,HI0,LO1,HI1",
        help="line, gabor, toy: the box of φ0 × φ1 explored (default: the notebooks' plotting ranges); "
        "negative values work as they are: --box -1,3,-2,2",
    )
    p.add_argument("--hidden", type=_positive_int, help="mlp only: hidden units (default 16)")
    p.add_argument(
        "--math",
        choices=MATHS,
        default="platform",
        help="float32 sin/cos/exp: the platform's (default) or fitjax's polynomials "
        "(fitjax.polynomial_math: several times faster on a CPU, equal up to float32 rounding)",
    )


def _add_optimizer(p: argparse.ArgumentParser, default: str | None, lists: bool = True) -> None:
    p.add_argument(
        "--optimizer",
        choices=tuple(OPTIMIZERS),
        default=default,
        required=default is None and lists,
        help="the update rule (sgd is gd on mini-batches of --batch-size, default 5)"
        + ("" if lists else "; mlp only (default adam)"),
    )
    several = "one value or several to sweep" if lists else "one value"
    p.add_argument(
        "--learning-rate",
        type=_float_list,
        metavar="A[,A...]" if lists else "A",
        help=f"α, {several} (default 0.01, 0.05 for adam; for mlp 0.003, 0.001 for nesterov-classical, "
        "0.01 for adam)",
    )
    p.add_argument("--beta", type=_float_list, metavar="B[,B...]", help="β of momentum, nesterov and adam")
    p.add_argument("--gamma", type=_float_list, metavar="G[,G...]", help="γ of adam")
    p.add_argument("--eps", type=_float_list, metavar="E[,E...]", help="ε of normalized and adam")
    p.add_argument("--momentum", type=_float_list, metavar="M[,M...]", help="μ of nesterov-classical")
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        help="mini-batch size (default: the full data; 5 for sgd); not with gd or the toy model",
    )


def _add_demo(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="reproduce the lecture's experiments: figures, summary.json and report.md",
        description="Reproduce the lecture's experiments on the built-in data and write the figures, "
        "summary.json (final losses) and report.md into --out.",
    )
    _add_common(demo, "fitjax-demo")
    demo.add_argument("--format", choices=("png", "svg"), default="png", help="figure format (default png)")
    demo.add_argument("--grid", type=_grid_size, default=201, help=argparse.SUPPRESS)
    demo.add_argument("--basin-grid", type=_grid_size, default=48, help=argparse.SUPPRESS)
    demo.add_argument("--basin-steps", type=_positive_int, default=1000, help=argparse.SUPPRESS)
    demo.add_argument("--runs", type=_positive_int, default=16, help=argparse.SUPPRESS)
    demo.set_defaults(func=_demo)


def _add_sweep(sub: Any) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="fit a built-in model from many starts over a grid of hyperparameters, and rank the settings",
        description="Fit a built-in model with one optimizer from a grid or box of starts, for every "
        "combination of the hyperparameter values given (e.g. --learning-rate 0.01,0.05 "
        "--beta 0.5,0.9), rank the settings (--rank-by) and print the top ones. Saves results.csv, "
        "sweep.npz, sweep.json and metadata.json; with grid starts also the basin map (basins.npz, "
        "basins*.png). See docs/reference/outputs.md.",
    )
    _add_model(sweep, None)
    _add_optimizer(sweep, None)
    sweep.add_argument(
        "--starts",
        type=_starts,
        metavar="SPEC",
        help="grid:N (N x N over the box), grid:N0xN1 or uniform:N "
        "(default grid:32; uniform:16 random initialisations for mlp)",
    )
    sweep.add_argument("--steps", type=_positive_int, default=500, help="steps per run (default 500)")
    sweep.add_argument(
        "--record-every",
        type=_positive_int,
        help="record the loss every k steps (default steps/100): steps to the target and basin convergence",
    )
    sweep.add_argument(
        "--rank-by",
        choices=tuple(sweep_report.RANK_BY),
        help="the metric the settings are ranked by: reach (default: share of starts reaching the best "
        "minimum found), median, q10, q90 (final loss quantiles), best, diverged, steps (median steps "
        "to the loss target)",
    )
    sweep.add_argument(
        "--top", type=_positive_int, metavar="K", help="settings shown in the table (default 10)"
    )
    sweep.add_argument(
        "--reach-tol",
        type=_positive_float,
        metavar="R",
        help="a start reaches the best minimum when its final loss is <= best + R·|best| (default 0.01)",
    )
    sweep.add_argument(
        "--target-loss",
        type=float,
        metavar="L",
        help="the loss target of the steps-to-target metric (default: the reach threshold)",
    )
    sweep.add_argument(
        "--cluster-tol",
        type=_positive_float,
        help="grid starts: distance within which end points count as one minimum (default 0.01)",
    )
    sweep.add_argument(
        "--chunk-size",
        type=_positive_int,
        metavar="N",
        help="fit N runs at a time and stream them to OUT/chunks (fitjax.fit_chunked): resumable, for "
        "sweeps larger than memory; no basin map or ranking; uniform and mlp starts are then drawn "
        "run by run",
    )
    sweep.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --chunk-size: continue the sweep found in OUT/chunks (default), or refuse to touch it",
    )
    sweep.add_argument(
        "--devices", type=_positive_int, metavar="N", help="fit on the first N devices (default all)"
    )
    _add_common(sweep, "fitjax-sweep")
    sweep.set_defaults(func=_sweep)


def _add_landscape(sub: Any) -> None:
    land = sub.add_parser(
        "landscape",
        help="compute and plot a loss landscape and its critical points",
        description="The loss over φ0 × φ1 (line, gabor, toy) or over a plane through trained mlp weights, "
        "with its critical points. Saves landscape.npz, landscape.json, results.csv (the critical "
        "points), metadata.json and the figures. The mlp is trained with the optimizer options of "
        "fitjax sweep, with one value each.",
    )
    _add_model(land, "gabor")
    land.add_argument("--grid", type=_grid_size, default=256, help="points per axis (default 256)")
    land.add_argument(
        "--chunk-size",
        type=_positive_int,
        help="points evaluated per compiled call (default: about 1/50 of the grid, at least 256)",
    )
    land.add_argument("--format", choices=("png", "svg"), default="png", help="figure format (default png)")
    land.add_argument("--no-critical", action="store_true", help="skip the critical points")
    land.add_argument(
        "--directions",
        choices=("random", "pca"),
        help="mlp only: random filter-normalised directions around the trained weights "
        "(default) or the top two principal directions of the training trajectory",
    )
    land.add_argument(
        "--extent",
        type=_positive_float,
        help="mlp with random directions: coordinates in ±extent (default 1)",
    )
    _add_optimizer(land, None, lists=False)
    land.add_argument("--steps", type=_positive_int, help="mlp only: training steps (default 300)")
    _add_common(land, "fitjax-landscape")
    land.set_defaults(func=_landscape)


def _add_compare(sub: Any) -> None:
    from fitjax.cli import compare as compare_cli  # the compare command lives with its study code

    compare_cli.add_parser(sub)


# each subcommand: its name and the function adding its parser
COMMANDS: tuple[tuple[str, Callable[[Any], None]], ...] = (
    ("demo", _add_demo),
    ("sweep", _add_sweep),
    ("landscape", _add_landscape),
    ("compare", _add_compare),
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fitjax", description=(fitjax.__doc__ or "fitjax").splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fitjax {fitjax.__version__}")
    names = ",".join(name for name, _ in COMMANDS)
    sub = parser.add_subparsers(dest="command", required=True, metavar=f"{{{names}}}")
    for _, add in COMMANDS:
        add(sub)
    return parser


_NUMBERS = re.compile(r"^-(\d|\.\d|inf\b|nan\b)", re.IGNORECASE)


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings, in the parser and its subcommands, that take a value."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= _value_options(child)
        elif (
            action.option_strings and action.nargs is None and not isinstance(action, argparse._VersionAction)
        ):
            found.update(action.option_strings)
    return found


def join_negative_values(argv: Sequence[str], options: set[str]) -> list[str]:
    """``--box -1,3,-2,2`` as ``--box=-1,3,-2,2``: a value starting with a minus sign and a
    digit is kept with its option (argparse would take it for an option)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in options and i + 1 < len(argv) and _NUMBERS.match(argv[i + 1]):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
        else:
            out.append(token)
            i += 1
    return out


def _work_running() -> bool:
    return any(t.name == _WORKER and t.is_alive() for t in threading.enumerate())


def _interrupted(args: argparse.Namespace | None, command: str, *, process: bool = False) -> int:
    """Ctrl-C: keep the finished work, say so in one line, exit 130 (ending a running program).

    Run as the process's command line (``process``), it leaves at once with ``os._exit``:
    threads of a compiled program that is still being built or run would otherwise abort
    the interpreter's shutdown (``terminate called without an active exception``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the saving short
    message = "nothing was written"
    keep = getattr(args, "keep", None)
    if keep is not None:
        try:
            message = keep()
        except Exception as err:  # noqa: BLE001 - the line must still be printed
            message = f"the finished work could not be saved ({' '.join(str(err).split())})"
    sys.stdout.flush()
    print(f"{command}: interrupted; {message}", file=sys.stderr, flush=True)
    if process or _work_running():  # a compiled program may still run in the background: end it too
        sys.stderr.flush()
        os._exit(130)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0; 2 for a usage or input error; 130 on Ctrl-C)."""
    parser = build_parser()
    command = "fitjax"
    args = None
    given = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(join_negative_values(given, _value_options(parser)))
        args.argv = given
        command = f"fitjax {args.command}"
        return args.func(args)
    except SystemExit as done:  # --help and --version
        return int(done.code or 0) if not isinstance(done.code, str) else 2
    except KeyboardInterrupt:
        return _interrupted(args, command, process=argv is None)
    except (CLIError, ValueError, TypeError, ImportError, OSError) as err:
        message = " ".join(str(err).split())  # one line
        print(f"{getattr(err, 'prog', None) or command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
