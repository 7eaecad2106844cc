"""Output folders and files shared by the commands: the folder check, JSON and ``metadata.json``."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import platform
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

import fitjax
from fitjax.cli.options import CLIError
from fitjax.lecture.problems import Problem

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
