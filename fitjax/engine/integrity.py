"""On-disk integrity of chunked sweeps: checksums, file verification, the writer lock, code fingerprints.

Pure helpers used by :mod:`fitjax.engine.chunked`. A chunk file is checked against the
record the manifest keeps for it (size, SHA-256, run range) and against the sweep's
plan (which arrays a chunk holds, their dtypes and shapes per run); a check returns
the reason it fails, in words, or None.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import socket
import time
import types
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # no advisory locks on this platform
    fcntl = None

LOCK = "writer.lock"
"""The lock file a writer holds (``fcntl.flock``) for as long as it writes a sweep's folder."""


class DamagedSweepError(ValueError):
    """A chunked sweep's folder holds a missing, damaged, duplicated or foreign file."""


class SweepBusyError(ValueError):
    """Another live process holds a chunked sweep's folder for writing."""


class RepairWarning(UserWarning):
    """A file of a chunked sweep failed verification and is recomputed or rebuilt."""


# ----------------------------------------------------------------------------- checksums


def sha256_bytes(data: bytes) -> str:
    """The SHA-256 of ``data`` as hex."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """The SHA-256 of the file at ``path`` as hex, read in blocks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no spaces (the text its checksum is taken of)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def json_checksum(value: Any) -> str:
    """The SHA-256 of ``value`` written as canonical JSON."""
    return sha256_bytes(canonical_json(value).encode())


def sealed(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with a ``checksum`` of all its other fields, so that an edit of any is seen."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    return {**body, "checksum": json_checksum(body)}


def sealed_text(record: Mapping[str, Any], cache: dict[str, str] | None = None) -> str:
    """``record`` sealed (:func:`sealed`) as JSON text, each field encoded once if ``cache`` keeps it.

    ``cache`` maps field names to their canonical JSON; fields found there are not
    encoded again (the caller puts there the fields that do not change). The text
    is the canonical JSON of the record with ``checksum`` first.

    Example:
      >>> json.loads(sealed_text({"b": [1, 2], "a": 3})) == sealed({"a": 3, "b": [1, 2]})
      True
    """
    cache = {} if cache is None else cache
    fields = {k: cache[k] if k in cache else canonical_json(v) for k, v in record.items() if k != "checksum"}
    body = "{" + ",".join(f"{canonical_json(k)}:{fields[k]}" for k in sorted(fields)) + "}"
    checksum = sha256_bytes(body.encode())
    return f'{{"checksum":"{checksum}"' + ("," + body[1:] if fields else "}")


def seal_problem(record: Mapping[str, Any]) -> str | None:
    """Why ``record``'s ``checksum`` does not vouch for its other fields, or None."""
    if "checksum" not in record:
        return "it has no checksum"
    body = {k: v for k, v in record.items() if k != "checksum"}
    if json_checksum(body) != record["checksum"]:
        return "its checksum does not match its contents (it was edited or damaged)"
    return None


# ----------------------------------------------------------------------------- array files


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """``arrays`` written as an uncompressed ``.npz``, in memory."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=True, **arrays)  # numpy's default, named so no array can be taken for it
    return buffer.getvalue()


def _header(f: Any) -> tuple[np.dtype, tuple[int, ...]]:
    """The dtype and shape of the ``.npy`` array whose file ``f`` is positioned at its start."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return dtype, tuple(shape)


def read_npz(
    data: bytes, names: Collection[str] | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The layout of the ``.npz`` held in ``data`` and its arrays ``names`` (default: all), in one pass.

    The layout maps every array's name to its dtype (``dtype.str``) and shape; only
    the headers of the arrays not in ``names`` are read. Raises ``ValueError`` (with
    the reason) when ``data`` is not a readable ``.npz``.
    """
    layout, arrays = {}, {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                name = member.removesuffix(".npy")
                with archive.open(member) as f:
                    if names is None or name in names:
                        arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
                        layout[name] = (arrays[name].dtype.str, arrays[name].shape)
                    else:
                        dtype, shape = _header(f)
                        layout[name] = (dtype.str, shape)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as err:
        raise ValueError(f"it cannot be read as a .npz file ({type(err).__name__}: {err})") from None
    return layout, arrays


def npz_layout(data: bytes) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The name, dtype (``dtype.str``) and shape of every array in the ``.npz`` held in ``data``."""
    return read_npz(data, ())[0]


def layout_plan(layout: Mapping[str, tuple[str, tuple[int, ...]]]) -> dict[str, dict[str, Any]]:
    """The plan of a sweep's arrays from one chunk's layout: dtype and shape per run, by name."""
    return {
        name: {"dtype": dtype, "shape": list(shape[1:])}
        for name, (dtype, shape) in layout.items()
        if name != "runs"
    }


def layout_problem(
    layout: Mapping[str, tuple[str, tuple[int, ...]]], plan: Mapping[str, Mapping[str, Any]], rows: int
) -> str | None:
    """Why arrays of ``layout`` are not the plan's arrays for ``rows`` runs, or None."""
    names, planned = sorted(layout), sorted(plan)
    if names != planned:
        return f"it holds the arrays {names}, where the sweep's plan has {planned}"
    for name in names:
        dtype, shape = layout[name]
        want = (plan[name]["dtype"], (rows, *plan[name]["shape"]))
        if (dtype, shape) != want:
            return (
                f"its array {name!r} has dtype {dtype} and shape {shape}, "
                f"where the sweep's plan has dtype {want[0]} and shape {want[1]}"
            )
    return None


class ChunkMismatch(ValueError):
    """A chunk file is not the chunk its record and the plan describe; the message says why."""


def chunk_arrays(
    data: bytes,
    record: Mapping[str, Any],
    runs: tuple[int, int],
    plan: Mapping[str, Mapping[str, Any]],
    recorded: Mapping[str, str],
    full: bool = True,
) -> dict[str, np.ndarray]:
    """The arrays of a chunk file's bytes ``data``, once they are shown to be the recorded chunk.

    Checked in order: the record's run range against the plan's, the size and the
    SHA-256 against the record, the run range the file holds, and its arrays (names,
    dtypes, shapes) against the plan.

    Args:
      data: the file's contents.
      record: the manifest's record of the chunk: ``size``, ``sha256`` and ``runs``.
      runs: the run range ``[lo, hi)`` the sweep's plan gives this chunk.
      plan: the sweep's arrays (dtype and shape per run, by name).
      recorded: every recorded chunk's SHA-256 -> its file name, to name a copy.
      full: read every array (else only ``runs``, and the other arrays' headers).

    Raises:
      ChunkMismatch: the reason, in words.
    """
    lo, hi = runs
    if list(record.get("runs", ())) != [lo, hi]:
        raise ChunkMismatch(
            f"manifest.json records runs {record.get('runs')} for it, where the plan gives [{lo}, {hi}]"
        )
    if len(data) != record["size"]:
        raise ChunkMismatch(
            f"it is {len(data)} bytes long where {record['size']} were written (truncated or overwritten)"
        )
    digest = sha256_bytes(data)
    if digest != record["sha256"]:
        twin = recorded.get(digest)
        if twin is not None:
            raise ChunkMismatch(
                f"it holds the contents of {twin} (a copy or a move), not its own runs [{lo}, {hi})"
            )
        raise ChunkMismatch(
            "its SHA-256 differs from the one written (damaged: bytes flipped, zeroed or replaced)"
        )
    try:
        layout, arrays = read_npz(data, None if full else ("runs",))
    except ValueError as err:
        raise ChunkMismatch(str(err)) from None
    if layout.pop("runs", None) != (np.dtype(np.int64).str, (2,)):
        raise ChunkMismatch("it holds no run range ('runs': two int64 numbers)")
    held = arrays["runs"].tolist()
    if held != [lo, hi]:
        raise ChunkMismatch(f"it holds runs {held}, where its place in the plan is runs [{lo}, {hi}]")
    problem = layout_problem(layout, plan, hi - lo)
    if problem is not None:
        raise ChunkMismatch(problem)
    return arrays


def chunk_problem(
    data: bytes,
    record: Mapping[str, Any],
    runs: tuple[int, int],
    plan: Mapping[str, Mapping[str, Any]],
    recorded: Mapping[str, str],
) -> str | None:
    """Why the bytes ``data`` of a chunk file are not the chunk the manifest records, or None.

    The checks of :func:`chunk_arrays`, reading only the headers of the arrays.
    """
    try:
        chunk_arrays(data, record, runs, plan, recorded, full=False)
    except ChunkMismatch as err:
        return str(err)
    return None


def npy_problem(path: Path, record: Mapping[str, Any], dtype: str, shape: tuple[int, ...]) -> str | None:
    """Why the ``.npy`` file at ``path`` is not the array ``record`` describes, of ``dtype`` and ``shape``."""
    if not path.exists():
        return "it is missing"
    size = path.stat().st_size
    if size != record.get("size"):
        return f"it is {size} bytes long where {record.get('size')} were written (truncated or overwritten)"
    if sha256_file(path) != record.get("sha256"):
        return "its SHA-256 differs from the one written (damaged: bytes flipped, zeroed or replaced)"
    try:
        with open(path, "rb") as f:
            got = _header(f)
    except ValueError as err:
        return f"it cannot be read as a .npy file ({err})"
    if (got[0].str, got[1]) != (dtype, shape):
        return f"it holds dtype {got[0].str} and shape {got[1]}, where the plan has {dtype} and {shape}"
    return None


# ----------------------------------------------------------------------------- writing


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to disk."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def temporary_name(path: Path) -> Path:
    """The name ``path`` is written under before it is renamed into place: hidden, with this PID."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OverflowError:
        return False
    return True


def stale_temporaries(folder: Path) -> list[Path]:
    """Temporary files in ``folder`` left by writers that are no longer alive (never this process's)."""
    out = []
    for path in sorted(folder.glob(".*.tmp-*")):
        pid_text = path.name.rsplit(".tmp-", 1)[1]
        pid = int(pid_text) if pid_text.isdigit() else -1
        if pid != os.getpid() and not pid_alive(pid):
            out.append(path)
    return out


# ----------------------------------------------------------------------------- the writer lock


def acquire_lock(folder: Path, what: str) -> int | None:
    """Take ``folder``'s writer lock for this process, or refuse at once naming the holder.

    The lock is an advisory ``fcntl.flock`` on ``folder/writer.lock``, which also
    records the holder's PID and host. The operating system releases it when the
    returned descriptor is closed (:func:`release_lock`) or the process dies.
    Returns None where the platform has no ``flock``.

    Raises:
      SweepBusyError: another process holds the lock.
    """
    if fcntl is None:
        return None
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = ""
        for _ in range(50):  # the holder writes its PID just after taking the lock
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            if holder:
                break
            time.sleep(0.01)
        os.close(fd)
        holder = holder or "a process that has not written its PID"
        raise SweepBusyError(
            f"out_dir {str(folder)!r} is being written by {holder}, which holds {str(path)!r}; "
            f"only one process may {what} at a time: wait for it to finish (or stop it) and call again"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
    return fd


def release_lock(fd: int | None) -> None:
    """Release a lock taken by :func:`acquire_lock`."""
    if fd is not None:
        os.close(fd)


# ----------------------------------------------------------------------------- code fingerprints


def _constant(value: Any, depth: int) -> Any:
    """A JSON-ready description of one constant of a code object."""
    if isinstance(value, types.CodeType):
        return {"code": code_summary(value, depth + 1)}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, complex):
        return {"complex": [_constant(value.real, depth), _constant(value.imag, depth)]}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, tuple):
        return [_constant(v, depth) for v in value]
    if isinstance(value, frozenset):  # ordered by content: set order varies with the hash seed
        items = [_constant(v, depth) for v in value]
        return {"frozenset": sorted(items, key=lambda v: json.dumps(v, sort_keys=True))}
    return {"repr": repr(value)}


def code_summary(code: types.CodeType, depth: int = 0, doc: str | None = None) -> dict[str, Any]:
    """What decides what ``code`` computes: its bytecode, constants and the names it uses.

    Nested code objects (inner functions, lambdas, comprehensions) are described the
    same way, recursively. Line numbers and the file name are left out, so moving a
    function does not change it; ``doc``, the function's docstring, is left out of
    the constants, so editing it does not either.

    Example:
      >>> a, b = (lambda x: x * 2.0), (lambda x: x * 3.0)
      >>> code_summary(a.__code__)["constants"][-1], code_summary(b.__code__)["constants"][-1]
      (2.0, 3.0)
    """
    consts = list(code.co_consts)
    if doc is not None and consts and consts[0] == doc:
        consts = consts[1:]
    return {
        "name": code.co_name,
        "bytecode": sha256_bytes(code.co_code),
        "constants": [_constant(c, depth) for c in consts] if depth < 16 else "...",
        "names": list(code.co_names),
        "locals": list(code.co_varnames),
        "free": list(code.co_freevars),
        "arguments": [code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags],
    }


def differences(stored: Any, given: Any, path: str = "", limit: int = 3) -> list[tuple[str, Any, Any]]:
    """Where two JSON values differ: ``(path, stored part, given part)``, at most ``limit``, deepest first.

    Example:
      >>> differences({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 1, "c": [1, 3]}})
      [('a.c[1]', 2, 3)]
    """
    if stored == given:
        return []
    if isinstance(stored, dict) and isinstance(given, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(set(stored) | set(given)):
            sub = f"{path}.{key}" if path else str(key)
            out += differences(stored.get(key), given.get(key), sub, limit - len(out))
            if len(out) >= limit:
                break
        return out
    if isinstance(stored, list) and isinstance(given, list) and len(stored) == len(given):
        out = []
        for i, (a, b) in enumerate(zip(stored, given, strict=True)):
            out += differences(a, b, f"{path}[{i}]", limit - len(out))
            if len(out) >= limit:
                break
        return out
    return [(path, stored, given)]


def function_at(description: Any, path: str) -> str | None:
    """The function whose code ``path`` (from :func:`differences`) points into, or None.

    Example:
      >>> fingerprint = {"loss": {"function": "m.<lambda>", "code": {"constants": [2.0]}}}
      >>> function_at(fingerprint, "loss.code.constants[0]")
      'm.<lambda>'
    """
    parts = path.replace("[", ".[").split(".")
    if "code" not in parts:
        return None
    node, name = description, None
    for part in parts[: parts.index("code")]:
        if part.startswith("["):
            node = node[int(part[1:-1])] if isinstance(node, list) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and "function" in node:
            name = node["function"]
    return name
