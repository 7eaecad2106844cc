r"""Sweeps larger than memory: runs in chunks streamed to disk, resumable, on many devices and hosts.

:func:`fit_chunked` fits every start (times every setting of a hyperparameter
grid) like :func:`fitjax.fit` and :func:`fitjax.sweep`, but never holds the whole
sweep: the :math:`N` runs are cut into chunks of ``chunk_size`` consecutive runs, and
each finished chunk is saved in ``out_dir`` as ``chunk-<k>.npz``, written under a
temporary name and renamed into place (``os.replace``), so a chunk file either holds
the complete chunk or does not exist. ``manifest.json`` beside the chunks records a
fingerprint of every argument that decides the numbers. Started again with the same
arguments, the sweep computes only the chunks still missing; started with other
arguments, it refuses and names what differs.

Integrity. When a chunk is committed, its size, SHA-256 and run range are recorded
in the manifest (itself sealed by a checksum). Resuming verifies every chunk it
counts as done against that record and against the sweep's plan, and computes
again, with a :class:`RepairWarning` naming the file, any that fails;
:func:`load_chunked` and :func:`iter_chunks` verify the same and refuse, naming the
file and the repair, a folder with a missing, damaged, duplicated or foreign chunk.
One process writes a folder at a time: it holds ``writer.lock`` (``fcntl.flock``)
for the whole call, and another writer is refused at once with the holder's PID.

Runs are numbered setting-major, as in :func:`fitjax.sweep`: run :math:`g = s\,n + i`
is start :math:`i` (of :math:`n`) under grid setting :math:`s`, and it draws its
mini-batches from ``fold_in(key, i)``, so every setting sees the same batches.
Starts are made per run, from the run's index alone (:func:`uniform_starts`,
:func:`normal_starts`, :func:`generated_starts`), or sliced from an array (which may
be a ``numpy.memmap``), so host memory grows with ``chunk_size``, not with :math:`N`.

Determinism. XLA compiles one program per batch shape and per device layout, and
these may add up a reduction or a matrix product in another order, or rewrite
``m / s`` as ``m * (1/s)`` in one and not in another, so the same run fitted in a
batch of 1, 7 or 200 runs, or split by SPMD over several devices, can differ in the
last bits. Here each device always computes whole *blocks* of ``block`` runs aligned
at multiples of ``block`` (block :math:`b` holds runs :math:`[bB, (b+1)B)`; the
sweep's last block is filled up by repeating its last run) with the same one-device
program: every run is computed by the same program, at the same place in the same
inputs, whatever the chunk size and however many devices or hosts share the work,
so the results are bit-identical. With several devices each takes the next block;
under ``jax.distributed`` each process drives its own devices, the blocks' results
are gathered, and only process 0 reads and writes ``out_dir``.

Example:
  >>> import tempfile, jax, numpy as np, fitjax
  >>> starts = fitjax.engine.chunked.uniform_starts(jax.random.key(0), 1000, [-10.0, 2.5], [10.0, 22.5])
  >>> loss = fitjax.least_squares(fitjax.Gabor(fitjax.GABOR_W_NOTEBOOK))
  >>> with tempfile.TemporaryDirectory() as out:
  ...     run = fitjax.fit_chunked(loss, fitjax.adam(0.05), starts, fitjax.datasets.gabor(), steps=20,
  ...                              chunk_size=300, block=100, out_dir=out, progress=False)
  ...     res = fitjax.load_chunked(out)
  >>> run.n_chunks, run.computed, res.loss.shape
  (4, (0, 1, 2, 3), (1000,))
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fitjax import _checks
from fitjax._version import __version__
from fitjax.engine import integrity as _integrity
from fitjax.engine import prepare as _prepare
from fitjax.engine import sharding as _shard
from fitjax.engine.core import run
from fitjax.engine.integrity import DamagedSweepError, RepairWarning, SweepBusyError  # noqa: F401 (public here)
from fitjax.engine.results import FitResult, History, SweepResult
from fitjax.problems import inits

PyTree = Any
Loss = Callable[[PyTree, Any], jax.Array]

MANIFEST = "manifest.json"
FORMAT = "fitjax-chunked/2"
MERGED = "merged"
MERGED_RECORD = "complete.json"
DEFAULT_BLOCK = 8192
"""Runs per device in one compiled call, unless ``block`` says otherwise."""

# ----------------------------------------------------------------------------- starting points


@dataclasses.dataclass(frozen=True, eq=False)
class GeneratedStarts:
    r"""Starts made one run at a time: run :math:`i` starts at ``init(fold_in(key, i))``.

    Nothing is held in memory; any range of runs is made on demand, and run
    :math:`i`'s start does not depend on how many runs there are or which others
    are made with it. (The stream differs from :func:`fitjax.inits.uniform`, which
    draws all ``n`` starts from one key.)

    Attributes:
      init: ``init(key) -> params`` for one run.
      key: the sweep's start key.
      n: the number of starts.
      description: a JSON-ready description of ``init`` for the manifest (default:
        its qualified name and captured values).
    """

    init: Callable[[jax.Array], PyTree]
    key: jax.Array
    n: int
    description: Any = None

    @functools.cached_property
    def _make(self) -> Callable[[jax.Array], PyTree]:
        init, key = self.init, self.key
        return jax.jit(jax.vmap(lambda i: init(jax.random.fold_in(key, i))))

    def take(self, ids: np.ndarray) -> PyTree:
        """The starts of runs ``ids`` as host arrays with a leading axis ``len(ids)``."""
        return jax.tree.map(np.asarray, self._make(jnp.asarray(ids, jnp.uint32)))

    def example(self) -> PyTree:
        return jax.eval_shape(self.init, self.key)

    def describe(self) -> Any:
        return {
            "kind": "generated",
            "n": self.n,
            "key": _key_data(self.key),
            "init": self.description if self.description is not None else _describe(self.init),
        }


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayStarts:
    """Starts sliced from arrays with a leading run axis (numpy, jax, or ``numpy.memmap``)."""

    tree: PyTree
    n: int

    def take(self, ids: np.ndarray) -> PyTree:
        return jax.tree.map(lambda a: np.asarray(a[ids]), self.tree)

    def example(self) -> PyTree:
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), self.tree)

    def describe(self) -> Any:
        return {
            "kind": "array",
            "n": self.n,
            "leaves": [_array(a, rows=True) for a in jax.tree.leaves(self.tree)],
        }


Starts = GeneratedStarts | ArrayStarts


def generated_starts(init: Callable[[jax.Array], PyTree], key: jax.Array, n: int) -> GeneratedStarts:
    """``n`` starts, run ``i`` at ``init(jax.random.fold_in(key, i))``.

    Example:
      >>> import jax, fitjax
      >>> init = lambda k: fitjax.init_mlp(k, [1, 8, 1])
      >>> starts = fitjax.engine.chunked.generated_starts(init, jax.random.key(0), 10**7)
      >>> starts.take(range(3))["layers"][0]["w"].shape
      (3, 1, 8)
    """
    if not callable(init):
        raise TypeError(f"init must be a function key -> params for one run, got {init!r}")
    n = _checks.positive_int("n", n)
    return GeneratedStarts(init, _prepare.check_key(key), n)


def uniform_starts(key: jax.Array, n: int, low: PyTree, high: PyTree) -> GeneratedStarts:
    r"""``n`` starts uniform in the box ``[low, high]``, run :math:`i` from ``fold_in(key, i)``.

    Example:
      >>> import jax, fitjax
      >>> starts = fitjax.engine.chunked.uniform_starts(jax.random.key(0), 10**7, [-10.0, 2.5], [10.0, 22.5])
      >>> starts.take(range(5, 8)).shape      # made on demand: nothing of size 10**7 exists
      (3, 2)
    """
    n = _checks.positive_int("n", n)
    inits.uniform(key, 1, low, high)  # the same checks on the box
    low_t, high_t = inits.as_tree(low), inits.as_tree(high)
    init = functools.partial(_uniform_one, low=low_t, high=high_t)
    desc = {"uniform": {"low": _describe(low_t), "high": _describe(high_t)}}
    return GeneratedStarts(init, _prepare.check_key(key), n, desc)


def normal_starts(key: jax.Array, n: int, mean: PyTree, std: float | PyTree = 1.0) -> GeneratedStarts:
    """``n`` starts from a normal distribution around ``mean``, run ``i`` from ``fold_in(key, i)``."""
    n = _checks.positive_int("n", n)
    inits.normal(key, 1, mean, std)  # the same checks
    mean_t = inits.as_tree(mean)
    init = functools.partial(_normal_one, mean=mean_t, std=std)
    desc = {"normal": {"mean": _describe(mean_t), "std": _describe(std)}}
    return GeneratedStarts(init, _prepare.check_key(key), n, desc)


def _uniform_one(key: jax.Array, low: PyTree, high: PyTree) -> PyTree:
    """One start uniform in ``[low, high]`` (checked by :func:`uniform_starts`, so traceable)."""
    return jax.tree.map(
        lambda k, lo, hi: jax.random.uniform(k, lo.shape, lo.dtype, lo, hi),
        inits.leaf_keys(key, low),
        low,
        high,
    )


def _normal_one(key: jax.Array, mean: PyTree, std: Any) -> PyTree:
    """One start ``mean + std · z`` with ``z`` standard normal (checked by :func:`normal_starts`)."""
    std_t = (
        jax.tree.map(lambda _: std, mean)
        if np.ndim(std) == 0 and not isinstance(std, (dict, list, tuple))
        else std
    )
    return jax.tree.map(
        lambda k, m, s: m + jnp.asarray(s, m.dtype) * jax.random.normal(k, m.shape, m.dtype),
        inits.leaf_keys(key, mean),
        mean,
        std_t,
    )


def _as_starts(starts: Any) -> Starts:
    if isinstance(starts, (GeneratedStarts, ArrayStarts)):
        return starts
    leaves = jax.tree_util.tree_leaves_with_path(starts)
    if not leaves:
        raise ValueError(
            "starts is empty: pass arrays with a leading run axis, or fitjax.engine.chunked.uniform_starts"
        )
    tree = jax.tree.map(lambda a: a if isinstance(a, np.ndarray) else np.asarray(a), starts)
    counts = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        name = _checks.leaf_name("starts", path)
        if leaf.ndim < 1 or not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(
                f"{name} must be a floating-point array with a leading run axis, "
                f"got dtype {leaf.dtype} and shape {leaf.shape}"
            )
        counts[name] = leaf.shape[0]
    if len(set(counts.values())) > 1:
        raise ValueError(f"starts leaves have different run counts along their leading axis: {counts}")
    n = next(iter(counts.values()))
    if n < 1:
        raise ValueError("starts has 0 runs along its leading axis; pass at least one starting point")
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        step = _rows_per_read(leaf)
        for lo in range(0, n, step):  # in bounded memory, for large (memory-mapped) starts
            _checks.finite(
                _checks.leaf_name("starts", path),
                leaf[lo : lo + step],
                "every starting point must be finite",
                axis="run",
                offset=lo,
            )
    return ArrayStarts(tree, n)


def _rows_per_read(arr: np.ndarray) -> int:
    """How many rows of ``arr`` make about 4 MiB: the unit in which large starts are read."""
    return max(1, (1 << 22) // max(1, arr[:1].nbytes))


# ----------------------------------------------------------------------------- fingerprints


def _key_data(key: jax.Array) -> dict[str, Any]:
    return {"impl": str(jax.random.key_impl(key)), "data": np.asarray(jax.random.key_data(key)).tolist()}


def _array(a: Any, rows: bool = False) -> dict[str, Any]:
    """Dtype, shape and content of an array: its values when small, else a SHA-256 (streamed by rows)."""
    if isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
        return {"key": _key_data(a)}
    arr = a if isinstance(a, np.ndarray) else np.asarray(a)
    out: dict[str, Any] = {"dtype": str(arr.dtype), "shape": list(arr.shape)}
    if arr.size <= 16:
        out["values"] = (
            [v if math.isfinite(v) else repr(v) for v in arr.astype(np.float64).ravel().tolist()]
            if jnp.issubdtype(arr.dtype, jnp.number)
            else arr.ravel().tolist()
        )
        return out
    digest = hashlib.sha256()
    step = _rows_per_read(arr) if rows and arr.ndim else None
    if step is None:
        digest.update(np.ascontiguousarray(arr).tobytes())
    else:
        for lo in range(0, arr.shape[0], step):  # bounded memory for large (memory-mapped) starts
            digest.update(np.ascontiguousarray(arr[lo : lo + step]).tobytes())
    out["sha256"] = digest.hexdigest()
    return out


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None) or ''}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _describe(obj: Any, depth: int = 0) -> Any:
    """A JSON-ready description of a loss, model, optimizer or value: what decides its numbers.

    Functions are named by module and qualified name, with their code (bytecode,
    constants and the names it uses, nested functions included), the values their
    closure captured and their defaults; dataclasses and named tuples by type and
    fields; arrays by content. (Module globals a function reads are not followed.)
    """
    if depth > 8:
        return _name(obj)
    nxt = functools.partial(_describe, depth=depth + 1)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, np.generic):
        return nxt(obj.item())
    if isinstance(obj, (np.ndarray, jax.Array)):
        return _array(obj)
    if isinstance(obj, functools.partial):
        return {
            "partial": nxt(obj.func),
            "args": [nxt(a) for a in obj.args],
            "keywords": {k: nxt(v) for k, v in sorted(obj.keywords.items())},
        }
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            "type": _name(type(obj)),
            "fields": {f.name: nxt(getattr(obj, f.name)) for f in dataclasses.fields(obj)},
        }
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return {"type": _name(type(obj)), "fields": {f: nxt(getattr(obj, f)) for f in obj._fields}}
    if isinstance(obj, (list, tuple)):
        return [nxt(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): nxt(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if hasattr(obj, "__self__") and hasattr(obj, "__func__"):  # a bound method
        return {"method": nxt(obj.__func__), "self": nxt(obj.__self__)}
    code = getattr(obj, "__code__", None)
    if code is not None:
        closure = {}
        for name, cell in zip(code.co_freevars, getattr(obj, "__closure__", None) or (), strict=True):
            try:
                closure[name] = nxt(cell.cell_contents)
            except ValueError:  # an empty cell
                closure[name] = None
        out: dict[str, Any] = {
            "function": _name(obj),
            "code": _integrity.code_summary(code, doc=getattr(obj, "__doc__", None)),
        }
        if closure:
            out["closure"] = closure
        if getattr(obj, "__defaults__", None):
            out["defaults"] = [nxt(v) for v in obj.__defaults__]
        if getattr(obj, "__kwdefaults__", None):
            out["kwdefaults"] = {k: nxt(v) for k, v in sorted(obj.__kwdefaults__.items())}
        return out
    if hasattr(obj, "__wrapped__"):  # jax.jit and functools.wraps wrappers
        return {"wrapped": nxt(obj.__wrapped__)}
    if callable(obj) and isinstance(obj, type):
        return _name(obj)
    return {"type": _name(type(obj)), "repr": re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))}


def _fingerprint(**parts: Any) -> dict[str, Any]:
    return {
        "fitjax": __version__,
        "jax": jax.__version__,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "platform": jax.default_backend(),
        **{k: _describe(v) for k, v in parts.items()},
    }


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 160 else text[:157] + "..."


def _differences(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints, each as ``name: stored ..., given ...``.

    Where the difference lies inside an argument, the path to it is named
    (``loss, at closure.scale: ...``), shallowest first; where it lies in a function's
    code, the function is named.
    """
    found = _integrity.differences(dict(stored), dict(given), limit=8)
    found.sort(key=lambda d: d[0].replace("[", ".").count("."))
    out = []
    for path, a, b in found[:3]:
        match = re.fullmatch(r"([^.\[]*)\.?(.*)", path, flags=re.S)
        assert match is not None  # the pattern matches every string: its last group takes any rest
        name, inner = match.groups()
        where = f"{name}, at {inner}" if inner else name
        text = f"{where}: stored {_show(a)}, given {_show(b)}"
        function = _integrity.function_at(stored, path)
        if function is not None:
            text += f" (the code of function {function} differs from the stored sweep's)"
        out.append(text)
    return out


# ----------------------------------------------------------------------------- files


def _chunk_name(k: int, n_chunks: int) -> str:
    return f"chunk-{k:0{max(6, len(str(n_chunks - 1)))}d}.npz"


def commit(tmp: Path, final: Path) -> None:
    """Make a fully written temporary file visible under its final name, atomically."""
    os.replace(tmp, final)


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path``: a temporary name, flushed to disk, then renamed."""
    tmp = _integrity.temporary_name(path)
    _integrity.write_durably(tmp, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
    commit(tmp, path)


def _read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The manifest of the sweep in ``out_dir``, or None where there is none.

    Raises:
      DamagedSweepError: the manifest cannot be read, or is not one this fitjax writes.
    """
    path = out_dir / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DamagedSweepError(
            f"{str(path)!r} cannot be read as a fitjax chunked-sweep manifest ({err}): the record of what "
            "the sweep is and of its chunks is lost, so its chunks cannot be verified; restore the file, "
            "or delete the folder and run the sweep again"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        why = (
            f"it is a {found} manifest, written by an older fitjax without checksums"
            if isinstance(found, str) and found.startswith("fitjax-chunked/")
            else f"it is not a {FORMAT} manifest"
        )
        raise DamagedSweepError(f"{str(path)!r}: {why}; choose another out_dir, or delete this one")
    return manifest


def _chunk_runs(k: int, manifest: Mapping[str, Any]) -> tuple[int, int]:
    """The runs ``[lo, hi)`` chunk ``k`` holds in the plan of ``manifest``."""
    size = manifest["chunk_size"]
    return k * size, min((k + 1) * size, manifest["n_runs"])


def _manifest_problem(manifest: Mapping[str, Any]) -> str | None:
    """Why ``manifest`` (read from disk) cannot be trusted, or None.

    Its counts must agree with each other and with its fingerprint, every chunk
    record must be one of the plan's chunks with the plan's runs, and its checksum
    must match its contents.
    """
    try:
        fp, n_runs, size = manifest["fingerprint"], manifest["n_runs"], manifest["chunk_size"]
        grid_runs = math.prod(len(v) for v in manifest["grid"].values()) * manifest["n_starts"]
        if n_runs != grid_runs or n_runs != fp["n_runs"]:
            return (
                f"n_runs is {n_runs}, but its starts and grid make {grid_runs} (fingerprint: {fp['n_runs']})"
            )
        if size != fp["chunk_size"]:
            return f"chunk_size is {size}, but its fingerprint says {fp['chunk_size']}"
        want = -(-n_runs // size)
        if manifest["n_chunks"] != want:
            return f"n_chunks is {manifest['n_chunks']}, but {n_runs} runs in chunks of {size} make {want}"
        for key in ("steps", "block", "record_every"):
            if manifest[key] != fp[key]:
                return f"{key} is {manifest[key]}, but its fingerprint says {fp[key]}"
        names = {_chunk_name(k, want): k for k in range(want)}
        for name, record in manifest["chunks"].items():
            if name not in names:
                return f"it records {name!r}, which is not one of the plan's {want} chunks"
            planned = list(_chunk_runs(names[name], manifest))
            if list(record["runs"]) != planned:
                return f"it records runs {record['runs']} for {name}, where the plan gives {planned}"
        if manifest["chunks"] and not manifest["arrays"]:
            return "it records chunks but not the arrays they hold"
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        return f"it lacks a field or holds a field of the wrong kind ({type(err).__name__}: {err})"
    return _integrity.seal_problem(manifest)


def _write_manifest(out_dir: Path, manifest: dict[str, Any], cache: dict[str, str] | None = None) -> None:
    """Write ``manifest``, sealed with its checksum (fields in ``cache`` are not encoded again)."""
    path = out_dir / MANIFEST
    tmp = _integrity.temporary_name(path)
    _integrity.write_durably(tmp, (_integrity.sealed_text(manifest, cache) + "\n").encode())
    commit(tmp, path)


def _stray_chunks(out_dir: Path, names: Sequence[str]) -> list[Path]:
    """Chunk files in ``out_dir`` that are not among the plan's ``names``."""
    planned = set(names)
    return sorted(
        p
        for p in out_dir.glob("chunk-*.npz")
        if re.fullmatch(r"chunk-\d+\.npz", p.name) and p.name not in planned
    )


def _chunk_names(manifest: Mapping[str, Any]) -> list[str]:
    n_chunks = manifest["n_chunks"]
    return [_chunk_name(k, n_chunks) for k in range(n_chunks)]


def _warn(message: str) -> None:
    warnings.warn(message, RepairWarning, stacklevel=3)


def _structure(tree: PyTree) -> Any:
    """The container structure of ``tree`` as JSON (dicts with string keys, lists, tuples), or None."""
    counter = iter(range(1 << 62))

    def walk(node):
        if isinstance(node, dict) and all(isinstance(k, str) for k in node):
            return {"dict": {k: walk(node[k]) for k in sorted(node)}}
        if type(node) in (list, tuple):
            return {type(node).__name__: [walk(v) for v in node]}
        if node is None:
            return {"none": None}
        if jax.tree_util.all_leaves([node]):
            return {"leaf": next(counter)}
        raise TypeError

    try:
        return walk(tree)
    except TypeError:
        return None


def _rebuild(structure: Any, leaves: Sequence[Any], paths: Sequence[str]) -> PyTree:
    if structure is None:  # a custom pytree: leaves by their path
        return dict(zip(paths, leaves, strict=True))
    ((kind, body),) = structure.items()
    if kind == "dict":
        return {k: _rebuild(v, leaves, paths) for k, v in body.items()}
    if kind in ("list", "tuple"):
        items = [_rebuild(v, leaves, paths) for v in body]
        return items if kind == "list" else tuple(items)
    return None if kind == "none" else leaves[body]


# ----------------------------------------------------------------------------- the sweep


@dataclasses.dataclass(frozen=True)
class ChunkedSweep:
    """A chunked sweep on disk.

    Attributes:
      path: the folder holding ``manifest.json`` and the chunks.
      n_runs: runs in the sweep (grid settings × starts).
      n_chunks: chunks in the sweep.
      computed: the chunks this call computed (the others were on disk already).
    """

    path: Path
    n_runs: int
    n_chunks: int
    computed: tuple[int, ...]

    def load(self, mmap: bool = False) -> FitResult | SweepResult:
        """:func:`load_chunked` of this sweep."""
        return load_chunked(self.path, mmap=mmap)


@dataclasses.dataclass(frozen=True)
class _Layout:
    n_starts: int
    grid: dict[str, np.ndarray]
    chunk_size: int
    block: int

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.grid.values())

    @property
    def n_runs(self) -> int:
        return math.prod(self.grid_shape) * self.n_starts

    def block_ids(self, b: int) -> np.ndarray:
        """The runs of block ``b``, the sweep's last block filled up with its last run."""
        ids = np.arange(b * self.block, min((b + 1) * self.block, self.n_runs), dtype=np.int64)
        return np.concatenate([ids, np.full(self.block - ids.size, ids[-1])])


def _grid(grid: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    return {} if grid is None else {k: np.asarray(v) for k, v in _prepare.check_grid(grid).items()}


def _inputs(layout: _Layout, starts: Starts, b: int) -> tuple[PyTree, dict, np.ndarray]:
    """Starts, per-run hyperparameters and mini-batch run ids (the start index) of block ``b``."""
    ids = layout.block_ids(b)
    setting, start = np.divmod(ids, layout.n_starts)
    coords = np.unravel_index(setting, layout.grid_shape) if layout.grid else ()
    hp = {name: values[c] for (name, values), c in zip(layout.grid.items(), coords, strict=True)}
    return starts.take(start), hp, start.astype(np.uint32)


def _host(result: FitResult) -> dict[str, np.ndarray]:
    """The arrays saved per run, as host arrays keyed by their file names."""
    out = {f"params.{j}": np.asarray(a) for j, a in enumerate(jax.tree.leaves(result.params))}
    out["loss"] = np.asarray(result.loss)
    out["diverged_step"] = np.asarray(result.diverged_step)
    if result.history is not None:
        out["history.loss"] = np.asarray(result.history.loss)
        out["history.grad_norm"] = np.asarray(result.history.grad_norm)
        if result.history.params is not None:
            out.update(
                {
                    f"history.params.{j}": np.asarray(a)
                    for j, a in enumerate(jax.tree.leaves(result.history.params))
                }
            )
    return out


def _progress(total: int, initial: int, show: bool | None, desc: str) -> Any:
    if show is False or jax.process_index() != 0:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(
        total=total,
        initial=initial,
        unit="run",
        desc=desc,
        disable=None if show is None else False,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def _local_devices(devices: Sequence[jax.Device] | None) -> list[jax.Device]:
    """This process's share of ``devices`` (default: all); every process must hold as many."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise TypeError(
            f"devices must be a non-empty list of jax devices, e.g. jax.devices()[:2], got {devices!r}"
        )
    local = [d for d in devices if d.process_index == jax.process_index()]
    counts = {d.process_index: 0 for d in devices}
    for d in devices:
        counts[d.process_index] += 1
    if set(counts) != set(range(jax.process_count())) or len(set(counts.values())) > 1:
        raise ValueError(
            f"devices must hold the same number of devices of every process; got {counts} "
            f"(devices per process index) with {jax.process_count()} process(es)"
        )
    return local


def _allgather(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every process's rows, in process order, on every process."""
    if jax.process_count() == 1:
        return arrays
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(arrays, tiled=True)
    return {name: np.asarray(a) for name, a in gathered.items()}


def _agree(value: np.ndarray) -> np.ndarray:
    """Process 0's ``value`` on every process (itself on one process)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(value))


def fit_chunked(
    loss: Loss,
    optimizer: optax.GradientTransformation,
    starts: Starts | PyTree,
    data: Any,
    *,
    steps: int,
    chunk_size: int,
    out_dir: str | os.PathLike,
    key: jax.Array | None = None,
    grid: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    shared_order: bool = False,
    record_every: int | None = None,
    record_params: bool = False,
    unroll: int | None = None,
    block: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    resume: bool = True,
    progress: bool | None = None,
) -> ChunkedSweep:
    r"""Fit every start (under every grid setting) chunk by chunk, streaming results to ``out_dir``.

    The numbers are those of :func:`fitjax.fit` (``grid=None``) or :func:`fitjax.sweep`
    on the same starts; only how they are computed and kept differs. The sweep's
    :math:`N = \prod_j |\text{grid}_j| \cdot n` runs form
    :math:`\lceil N / C \rceil` chunks of :math:`C` = ``chunk_size`` runs, each saved as
    ``chunk-<k>.npz`` (final parameters ``params.<leaf>``, ``loss``, ``diverged_step``
    and, with ``record_every``, ``history.*``; optimizer states are not kept).

    Args:
      loss, optimizer, data, steps, key, batch_size, shared_order, record_every,
        record_params, unroll: as for :func:`fitjax.fit`.
      starts: a :class:`GeneratedStarts` (:func:`uniform_starts`, :func:`normal_starts`,
        :func:`generated_starts`: made per run, nothing held), or arrays with a leading
        run axis (sliced per block; a ``numpy.memmap`` is read a block at a time).
      chunk_size: runs per saved chunk (and per step of the progress bar).
      out_dir: folder for ``manifest.json`` and the chunks (created if needed).
      grid: hyperparameter name -> 1-D array of values, as for :func:`fitjax.sweep`.
      block: runs per device per compiled call (default ``min(8192, N)``). Results
        are bit-identical for a given ``block`` whatever ``chunk_size`` and the number
        of devices; a chunk size that is a multiple of ``block`` wastes nothing.
      devices: the devices to fit on (default ``jax.devices()``: all devices of all
        processes). Each device fits one block at a time with the same one-device
        program; under ``jax.distributed`` each process drives its own devices.
      resume: continue a sweep found in ``out_dir`` (its manifest must match these
        arguments, or a ValueError names what differs); False refuses to touch a
        folder that already holds a sweep. Every chunk already on disk is verified
        first (size, SHA-256, run range, arrays against the plan); those that fail
        are computed again, each with a :class:`RepairWarning`.
      progress: a tqdm bar on stderr: None shows it on a terminal only, True always,
        False never. Without tqdm installed there is no bar.

    Returns:
      A :class:`ChunkedSweep`; read the results with :func:`load_chunked` or
      :func:`iter_chunks`.

    Raises:
      SweepBusyError: another process is writing ``out_dir`` (it holds
        ``out_dir/writer.lock``); the message names its PID and host.
      DamagedSweepError: ``out_dir``'s manifest is missing (with chunk files
        present) or unreadable, so its chunks cannot be verified.

    Under ``jax.distributed`` every process calls this with the same arguments; every
    process computes its share of every block and only process 0 reads and writes
    ``out_dir``.
    """
    _prepare.check_loss_and_optimizer(loss, optimizer)
    source = _as_starts(starts)
    values = _grid(grid)
    chunk_size = _checks.positive_int("chunk_size", chunk_size)
    if source.n >= 1 << 32:
        raise ValueError(f"starts has {source.n} runs; at most 2**32 - 1 are supported (run ids are uint32)")
    n_runs = math.prod(len(v) for v in values.values()) * source.n
    block = min(DEFAULT_BLOCK, n_runs) if block is None else _checks.positive_int("block", block)
    layout = _Layout(source.n, values, chunk_size, block)
    example = source.example()
    one = jax.tree.map(lambda s: jnp.zeros((1, *s.shape), s.dtype), example)
    problem = _prepare.prepare(
        loss, optimizer, one, data, steps=steps, key=key, batch_size=batch_size, shared_order=shared_order,
        record_every=record_every, record_params=record_params, unroll=unroll,
        fitted_together=block,  # the loss's pieces suit a block's runs, not this one run
    )  # fmt: skip
    if not problem.values_checked:  # before anything is written: a folder is not made for bad data
        _prepare.check_values(problem)
    if values:
        _prepare.check_swept(problem.update, _prepare.one_run(one), values)
    local = _local_devices(devices)
    plan = problem.plan
    fingerprint = _fingerprint(
        loss=loss,
        optimizer=optimizer,
        data=data,
        starts=source.describe(),
        grid=values,
        steps=plan.steps,
        key=_key_data(problem.key),
        batch_size=plan.batch_size,
        shared_order=shared_order,
        record_every=plan.record_every,
        record_params=record_params,
        unroll=unroll,
        block=block,
        chunk_size=chunk_size,
        n_runs=n_runs,
        dtype=[str(s.dtype) for s in jax.tree.leaves(example)],
    )
    n_chunks = -(-n_runs // chunk_size)
    out = Path(out_dir)
    args = (out, fingerprint, n_chunks, layout, example, plan.steps, plan.record_every, resume)
    done, writer = _open_everywhere(*args)
    try:
        todo = _compute_chunks(writer, done, source, layout, local, problem, progress, out.name)
    finally:
        if writer is not None:
            writer.close()
    return ChunkedSweep(out, n_runs, n_chunks, tuple(todo))


def _compute_chunks(
    writer: _Writer | None,
    done: np.ndarray,
    source: Starts,
    layout: _Layout,
    local: list[jax.Device],
    problem: _prepare.Prepared,
    progress: bool | None,
    label: str,
) -> list[int]:
    """Compute the chunks not ``done`` and commit each through ``writer`` (process 0's); their numbers."""
    n_runs, chunk_size, block, n_chunks = layout.n_runs, layout.chunk_size, layout.block, done.size
    todo = [k for k in range(n_chunks) if not done[k]]
    n_done = sum(min((k + 1) * chunk_size, n_runs) - k * chunk_size for k in range(n_chunks) if done[k])
    bar = _progress(n_runs, n_done, progress, f"fit_chunked {label}")
    n_blocks = -(-n_runs // block)
    n_slots = len(local) * jax.process_count()
    cache: dict[int, dict[str, np.ndarray]] = {}

    def compute(first: int) -> None:
        """Blocks ``first, first + 1, ...``, one per device of every process (past the end: the last)."""
        blocks = [min(b, n_blocks - 1) for b in range(first, first + n_slots)]
        mine = blocks[jax.process_index() * len(local) :][: len(local)]
        inputs = [_inputs(layout, source, b) for b in mine]  # made before any device is busy
        pending = []
        for device, (params0, hp, run_ids) in zip(local, inputs, strict=True):
            # The same one-device program on every device; the argument checks run on that device
            # too, so that dispatching to the next device never waits for this one's work.
            with jax.default_device(device):
                runs = _prepare.for_runs(problem, params0, hp or None, jnp.asarray(run_ids))
                pending.append(run(runs, mesh=_shard.run_mesh([device]), gather=False))
        hosts = [_host(r) for r in pending]
        arrays = _allgather({name: np.concatenate([h[name] for h in hosts]) for name in hosts[0]})
        cache.clear()
        for j, b in enumerate(blocks):
            cache[b] = {name: a[j * block : (j + 1) * block] for name, a in arrays.items()}

    try:
        for k in todo:
            lo, hi = k * chunk_size, min((k + 1) * chunk_size, n_runs)
            parts = []
            for b in range(lo // block, (hi - 1) // block + 1):
                if b not in cache:
                    compute(b)
                a, z = max(lo, b * block) - b * block, min(hi, (b + 1) * block) - b * block
                parts.append({name: v[a:z] for name, v in cache[b].items()})
            chunk = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
            if writer is not None:
                writer.commit(k, {**chunk, "runs": np.array([lo, hi], np.int64)})
            if bar is not None:
                bar.update(hi - lo)
    finally:
        if bar is not None:
            bar.close()
    return todo


@dataclasses.dataclass
class _Writer:
    """Process 0's hold on a sweep's folder: its writer lock and its manifest, kept up to date."""

    out: Path
    manifest: dict[str, Any]
    lock: int | None
    encoded: dict[str, str] = dataclasses.field(default_factory=dict)
    records: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.records.update(
            {k: _integrity.canonical_json({k: v})[1:-1] for k, v in self.manifest["chunks"].items()}
        )

    def commit(self, k: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Save chunk ``k`` (a temporary name, flushed, renamed into place), then record it in the manifest.

        The record holds the file's size, SHA-256 and run range; the first chunk also
        sets the sweep's plan of arrays (names, dtypes and shapes per run).
        """
        name = _chunk_name(k, self.manifest["n_chunks"])
        data = _integrity.npz_bytes(arrays)
        if not self.manifest["arrays"]:
            self.manifest["arrays"] = _integrity.layout_plan(_integrity.npz_layout(data))
        final = self.out / name
        tmp = _integrity.temporary_name(final)
        _integrity.write_durably(tmp, data)
        commit(tmp, final)
        runs = [int(v) for v in arrays["runs"]]
        self.manifest["chunks"][name] = {
            "runs": runs,
            "size": len(data),
            "sha256": _integrity.sha256_bytes(data),
        }
        if not self.encoded:  # the fields that do not change, encoded once
            fixed = set(self.manifest) - {"chunks", "arrays"}
            self.encoded.update({k: _integrity.canonical_json(self.manifest[k]) for k in fixed})
        self.records[name] = _integrity.canonical_json({name: self.manifest["chunks"][name]})[1:-1]
        self.encoded["chunks"] = "{" + ",".join(self.records[k] for k in sorted(self.records)) + "}"
        _write_manifest(self.out, self.manifest, self.encoded)

    def close(self) -> None:
        """Release the writer lock."""
        _integrity.release_lock(self.lock)
        self.lock = None


def _open_everywhere(
    out: Path, fingerprint: dict, n_chunks: int, *args: Any
) -> tuple[np.ndarray, _Writer | None]:
    """:func:`_open` on process 0; every process gets its verdict and the chunks already done.

    Every process also checks that it was called with the same arguments as process 0,
    and all of them refuse together, so that none is left waiting for the others.
    Process 0 also gets the writer that holds the folder's lock; the others get None.
    """
    if jax.process_count() == 1:
        return _open(out, fingerprint, n_chunks, *args)
    from jax.experimental import multihost_utils

    done, writer, refusal = np.zeros(n_chunks, dtype=bool), None, None
    if jax.process_index() == 0:
        try:
            done, writer = _open(out, fingerprint, n_chunks, *args)
        except ValueError as err:
            refusal = err
    try:
        text = json.dumps(fingerprint, sort_keys=True).encode()
        digest = np.frombuffer(hashlib.sha256(text).digest(), np.uint8)
        same = np.array_equal(_agree(digest), digest)
        verdict = np.asarray(multihost_utils.process_allgather(np.array([refusal is None, same], np.int32)))
        if refusal is not None:
            raise refusal
        if not verdict[:, 0].all():
            raise ValueError(f"process 0 refused out_dir {str(out)!r}; its error says why")
        if not verdict[:, 1].all():
            raise ValueError(
                f"processes {np.flatnonzero(verdict[:, 1] == 0).tolist()} were called with other arguments "
                "than process 0 (their fingerprints differ); every process must call fit_chunked alike"
            )
        return _agree(done.astype(np.uint8)).astype(bool), writer
    except BaseException:
        if writer is not None:
            writer.close()
        raise


def _new_manifest(
    fingerprint: dict, n_chunks: int, layout: _Layout, example: PyTree, steps: int, record_every: int | None
) -> dict[str, Any]:
    """The manifest of a sweep with no chunk written yet."""
    return {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "n_runs": layout.n_runs,
        "n_starts": layout.n_starts,
        "grid": {k: v.tolist() for k, v in layout.grid.items()},
        "chunk_size": layout.chunk_size,
        "n_chunks": n_chunks,
        "block": layout.block,
        "steps": steps,
        "record_every": record_every,
        "params": {
            "structure": _structure(example),
            "paths": [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(example)],
        },
        "arrays": None,
        "chunks": {},
    }


def _open(
    out: Path,
    fingerprint: dict,
    n_chunks: int,
    layout: _Layout,
    example: PyTree,
    steps: int,
    record_every: int | None,
    resume: bool,
) -> tuple[np.ndarray, _Writer]:
    """Lock ``out``, check or create its manifest, verify its chunks: the chunks complete, and the writer."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"out_dir {str(out)!r} cannot be created: {err.strerror or err}") from None
    lock = _integrity.acquire_lock(out, "write a chunked sweep")
    try:
        new = _new_manifest(fingerprint, n_chunks, layout, example, steps, record_every)
        manifest, done = _resume(out, new, resume)
        for stale in _integrity.stale_temporaries(out):  # left by writers that died while writing
            stale.unlink(missing_ok=True)
        return done, _Writer(out, manifest, lock)
    except BaseException:
        _integrity.release_lock(lock)
        raise


def _resume(out: Path, new: dict[str, Any], resume: bool) -> tuple[dict[str, Any], np.ndarray]:
    """The manifest to continue with and the chunks done, after checking the folder (lock held).

    A folder without a manifest gets ``new``. A manifest that fails its checks
    (edited counts, a bad checksum) is replaced by ``new``, and every chunk is
    recomputed; chunks that fail verification are recomputed, files outside the plan
    removed, each with a :class:`RepairWarning` naming the file and the reason.
    """
    n_chunks = new["n_chunks"]
    manifest = _read_manifest(out)
    if manifest is None:
        if any(out.glob("chunk-*.npz")):
            raise DamagedSweepError(
                f"out_dir {str(out)!r} holds chunk files but no {MANIFEST}, so they cannot be verified; "
                "delete them (or the folder), or choose an empty folder"
            )
        _write_manifest(out, new)
        return new, np.zeros(n_chunks, dtype=bool)
    if not resume:
        recorded = len(manifest.get("chunks") or {})
        raise ValueError(
            f"out_dir {str(out)!r} already holds a sweep ({recorded} of {manifest.get('n_chunks')} chunks "
            "done); pass resume=True to continue it, or choose another folder"
        )
    diff = _differences(manifest.get("fingerprint") or {}, new["fingerprint"])
    if diff:
        raise ValueError(
            f"out_dir {str(out)!r} holds a sweep made with other arguments, so it cannot be resumed: "
            + "; ".join(diff)
            + ". Call again with the stored arguments to continue it, or choose another out_dir "
            "for a new sweep."
        )
    problem = _manifest_problem(manifest)
    if problem is not None:
        _warn(
            f"{out / MANIFEST}: {problem}; it is rewritten from this call's arguments (which match its "
            "fingerprint) and every chunk is computed again"
        )
        for name in _chunk_names(new):
            (out / name).unlink(missing_ok=True)
        manifest = new
    done = _verify_for_resume(out, manifest)
    _write_manifest(out, manifest)
    return manifest, done


def _verify_for_resume(out: Path, manifest: dict[str, Any]) -> np.ndarray:
    """Which of the plan's chunks verify; failed records are dropped from ``manifest`` and strays removed."""
    records, plan = manifest["chunks"], manifest["arrays"]
    recorded = {r["sha256"]: name for name, r in records.items()}
    names = _chunk_names(manifest)
    done = np.zeros(len(names), dtype=bool)
    for k, name in enumerate(names):
        path, record = out / name, records.get(name)
        if record is None:
            if path.exists():
                _warn(
                    f"{path}: not recorded in {MANIFEST} (its writer stopped before recording it, or it was "
                    "copied there); computing it again"
                )
            continue
        problem = _chunk_file_problem(path, record, _chunk_runs(k, manifest), plan, recorded)
        if problem is None:
            done[k] = True
        else:
            _warn(f"{path}: {problem}; computing it again")
            del records[name]
    for stray in _stray_chunks(out, names):
        _warn(f"{stray}: not one of this sweep's {len(names)} chunks; removed")
        stray.unlink(missing_ok=True)
    return done


def _chunk_file_problem(
    path: Path,
    record: Mapping[str, Any],
    runs: tuple[int, int],
    plan: Mapping[str, Any],
    recorded: Mapping[str, str],
) -> str | None:
    """Why the chunk file at ``path`` is not the chunk ``record`` describes (``chunk_arrays``), or None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return f"recorded in {MANIFEST} as written, but missing"
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    return _integrity.chunk_problem(data, record, runs, plan, recorded)


# ----------------------------------------------------------------------------- reading back


def _manifest_and_check(out_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The folder and its manifest, verified (see :func:`_manifest_problem`)."""
    out = Path(out_dir)
    manifest = _read_manifest(out)
    if manifest is None:
        if any(out.glob("chunk-*.npz")):
            raise DamagedSweepError(
                f"{str(out)!r} holds chunk files but no {MANIFEST}, so they cannot be verified; restore "
                f"{MANIFEST}, or delete the folder and run the sweep again"
            )
        raise ValueError(f"{str(out)!r} holds no {MANIFEST}: not a chunked sweep made by fitjax.fit_chunked")
    problem = _manifest_problem(manifest)
    if problem is not None:
        raise DamagedSweepError(
            f"{str(out / MANIFEST)!r}: {problem}. "
            + _repair(out, "rewrites the manifest from those arguments", "every chunk")
        )
    return out, manifest


def _repair(out: Path, what: str, recomputed: str = "every chunk that fails verification") -> str:
    """The sentence naming the call and the command that repair the sweep in ``out``."""
    return (
        f"To repair the sweep, call fitjax.fit_chunked again with the arguments that made it and "
        f"out_dir={str(out)!r} (resume=True, the default), or run the same `fitjax sweep ... --chunk-size` "
        f"command again: it {what} and computes again {recomputed}"
    )


def _survey(out: Path, manifest: Mapping[str, Any]) -> tuple[list[str], list[str], list[int]]:
    """A first look at the chunk files, without reading them.

    Returns the problems (recorded chunks missing or of the wrong size, chunk files
    the manifest does not record, files outside the plan), the chunks not yet
    computed (neither recorded nor on disk), and the recorded chunks to read.
    """
    problems, missing, recorded = [], [], []
    records = manifest["chunks"]
    names = _chunk_names(manifest)
    for k, name in enumerate(names):
        path, record = out / name, records.get(name)
        if record is None:
            if path.exists():
                problems.append(
                    f"{str(path)!r} is not recorded in {MANIFEST} (its writer stopped before recording "
                    "it, or it was copied there)"
                )
            else:
                missing.append(name)
        elif not path.exists():
            problems.append(f"{str(path)!r} is recorded in {MANIFEST} as written, but missing")
        elif path.stat().st_size != record["size"]:
            problems.append(
                f"{str(path)!r} is {path.stat().st_size} bytes long where {record['size']} were written "
                "(truncated or overwritten)"
            )
        else:
            recorded.append(k)
    problems += [
        f"{str(p)!r} is not one of this sweep's {len(names)} chunks" for p in _stray_chunks(out, names)
    ]
    return problems, missing, recorded


def _refusal(out: Path, manifest: Mapping[str, Any], problems: Sequence[str], missing: Sequence[str]) -> str:
    """The message refusing to load the sweep in ``out``, naming the files and the repair."""
    parts = list(problems[:3])
    if len(problems) > 3:
        parts.append(f"and {len(problems) - 3} more damaged or foreign chunk files")
    if missing:
        parts.append(
            f"{len(missing)} of {manifest['n_chunks']} chunks are missing (first: {missing[0]}; "
            "not computed yet)"
        )
    tail = "; fitjax.iter_chunks reads the chunks already done" if missing and not problems else ""
    return f"{str(out)!r} cannot be loaded: " + "; ".join(parts) + ". " + _repair(out, "verifies them") + tail


def _read_chunk(out: Path, manifest: Mapping[str, Any], k: int, recorded: Mapping[str, str]) -> dict:
    """The arrays of recorded chunk ``k``, read once and checked against its record and the plan.

    Raises:
      DamagedSweepError: naming the file, the reason and the repair.
    """
    name = _chunk_name(k, manifest["n_chunks"])
    path = out / name
    try:
        data = path.read_bytes()
        arrays = _integrity.chunk_arrays(
            data, manifest["chunks"][name], _chunk_runs(k, manifest), manifest["arrays"], recorded
        )
    except FileNotFoundError:
        problem = f"recorded in {MANIFEST} as written, but missing"
    except _integrity.ChunkMismatch as err:
        problem = str(err)
    except OSError as err:
        problem = f"it cannot be read ({err.strerror or err})"
    else:
        return {name: _as_saved(name, a, manifest) for name, a in arrays.items()}
    raise DamagedSweepError(f"{str(path)!r}: {problem}. " + _repair(out, "verifies every chunk"))


def _recorded(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Every recorded chunk's SHA-256 -> its file name."""
    return {r["sha256"]: name for name, r in manifest["chunks"].items()}


def iter_chunks(out_dir: str | os.PathLike) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
    """Each complete chunk of a sweep, in order: ``(runs, arrays)``, one chunk in memory at a time.

    ``runs`` is the slice of global run indices the chunk holds; ``arrays`` maps the
    saved names (``params.<leaf>``, ``loss``, ``diverged_step``, ``history.*``) to
    arrays with one row per run. Chunks not yet computed are skipped. Every chunk is
    verified before it is yielded (size, checksum, run range, arrays against the plan).

    Raises:
      DamagedSweepError: a recorded chunk is missing or damaged, or a chunk file lies
        outside the sweep's plan; the message names the file and the repair.
    """
    out, manifest = _manifest_and_check(out_dir)
    problems, _, _ = _survey(out, manifest)
    problems = [p for p in problems if "is not recorded" not in p]  # not yet done: skipped
    if problems:
        raise DamagedSweepError(_refusal(out, manifest, problems, []))
    recorded = _recorded(manifest)
    for k, name in enumerate(_chunk_names(manifest)):
        if name not in manifest["chunks"]:
            continue
        arrays = _read_chunk(out, manifest, k, recorded)
        lo, hi = arrays.pop("runs").tolist()
        yield slice(lo, hi), arrays


def _as_saved(name: str, a: np.ndarray, manifest: Mapping[str, Any]) -> np.ndarray:
    """A parameter array in its own dtype: ``.npy`` files keep bfloat16 only as raw bytes (``V2``)."""
    if a.dtype.kind != "V" or not name.startswith(("params.", "history.params.")):
        return a
    return a.view(jnp.dtype(manifest["fingerprint"]["dtype"][int(name.rsplit(".", 1)[1])]))


def load_chunked(out_dir: str | os.PathLike, *, mmap: bool = False) -> FitResult | SweepResult:
    """All runs of a finished chunked sweep, as :func:`fitjax.fit` or :func:`fitjax.sweep` returns them.

    Arrays are numpy arrays (``opt_state`` is None). For a grid sweep the result is a
    :class:`fitjax.SweepResult` with leading axes ``grid shape + (starts,)``.

    Args:
      out_dir: the sweep's folder.
      mmap: instead of reading everything into memory, gather each array once into
        ``out_dir/merged/<name>.npy`` (one chunk in memory at a time) and return
        read-only memory maps of those files.

    Every chunk is verified as it is read: its size, its SHA-256 and run range
    against the record the manifest took when the chunk was written, and its arrays
    (names, dtypes, shapes) against the sweep's plan; so are the merged files, which
    are built again (with a :class:`RepairWarning`) when they fail. No row is
    returned that a verified chunk did not fill.

    Raises:
      DamagedSweepError: when chunks are missing, damaged, duplicated, not recorded
        or outside the plan, or the manifest fails its checks; the message names the
        file and the repair: calling :func:`fit_chunked` again with the same
        arguments, which computes those chunks again.
    """
    out, manifest = _manifest_and_check(out_dir)
    problems, missing, to_read = _survey(out, manifest)
    if problems or missing:  # refused: name every damaged chunk, not only the first that was seen
        recorded = _recorded(manifest)
        for k in to_read:
            name = _chunk_name(k, manifest["n_chunks"])
            runs = _chunk_runs(k, manifest)
            problem = _chunk_file_problem(
                out / name, manifest["chunks"][name], runs, manifest["arrays"], recorded
            )
            if problem is not None:
                problems.append(f"{str(out / name)!r}: {problem}")
        raise DamagedSweepError(_refusal(out, manifest, problems, missing))
    arrays = _merged(out, manifest) if mmap else _concatenated(out, manifest)
    paths = manifest["params"]["paths"]
    structure = manifest["params"]["structure"]
    grid = {k: np.asarray(v) for k, v in manifest["grid"].items()}
    lead = tuple(len(v) for v in grid.values()) + (manifest["n_starts"],)

    def shaped(a):
        return a.reshape(lead + a.shape[1:])

    def leaves(prefix):
        names = [f"{prefix}{j}" for j in range(len(paths))]
        return [shaped(_as_saved(name, arrays[name], manifest)) for name in names]

    history = None
    if manifest["record_every"] is not None:
        k = manifest["record_every"]
        hist_params = (
            _rebuild(structure, leaves("history.params."), paths) if "history.params.0" in arrays else None
        )
        history = History(
            np.arange(manifest["steps"] // k) * k,
            shaped(arrays["history.loss"]),
            shaped(arrays["history.grad_norm"]),
            hist_params,
        )
    result = FitResult(
        _rebuild(structure, leaves("params."), paths),
        shaped(arrays["loss"]),
        shaped(arrays["diverged_step"]),
        history,
        None,
        manifest["steps"],
    )
    return SweepResult(grid, result) if grid else result


_Filled = TypeVar("_Filled", bound=np.ndarray)


def _fill(
    out: Path, manifest: Mapping[str, Any], allocate: Callable[[str, tuple[int, ...], np.dtype], _Filled]
) -> dict[str, _Filled]:
    """Every verified chunk's rows placed into arrays from ``allocate``; every row is filled, or it raises."""
    arrays: dict[str, _Filled] = {}
    filled = 0
    for runs, chunk in iter_chunks(out):
        for name, a in chunk.items():
            if name not in arrays:
                arrays[name] = allocate(name, a.shape[1:], a.dtype)
            arrays[name][runs] = a
        filled += runs.stop - runs.start
    if filled != manifest["n_runs"]:  # the survey and the plan rule this out; never return unfilled rows
        raise DamagedSweepError(
            f"{str(out)!r}: its chunks fill {filled} of {manifest['n_runs']} rows. "
            + _repair(out, "verifies them")
        )
    return arrays


def _concatenated(out: Path, manifest: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return _fill(out, manifest, lambda name, shape, dtype: np.empty((manifest["n_runs"], *shape), dtype))


def _merged_problem(merged: Path, manifest: Mapping[str, Any]) -> str | None:
    """Why ``merged`` does not hold this sweep's verified merged arrays, or None."""
    record_path = merged / MERGED_RECORD
    if not record_path.exists():
        return f"{MERGED_RECORD} is missing"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as err:
        return f"{MERGED_RECORD} cannot be read ({err})"
    problem = _integrity.seal_problem(record) if isinstance(record, dict) else "it is not a JSON object"
    if problem is not None:
        return f"{MERGED_RECORD}: {problem}"
    if record.get("chunks") != _integrity.json_checksum(manifest["chunks"]):
        return f"{MERGED_RECORD} was made from other chunks than the manifest records"
    files = record.get("arrays") or {}
    if sorted(files) != sorted(manifest["arrays"]):
        planned = sorted(manifest["arrays"])
        return f"{MERGED_RECORD} lists the arrays {sorted(files)}, where the plan has {planned}"
    for name, plan in sorted(manifest["arrays"].items()):
        shape = (manifest["n_runs"], *plan["shape"])
        problem = _integrity.npy_problem(merged / f"{name}.npy", files[name], plan["dtype"], shape)
        if problem is not None:
            return f"{name}.npy: {problem}"
    return None


def _merged(out: Path, manifest: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Memory maps of ``out/merged/<name>.npy``, verified; built (again) from verified chunks if needed."""
    merged = out / MERGED
    problem = _merged_problem(merged, manifest)
    if problem is not None:
        if problem != f"{MERGED_RECORD} is missing":
            _warn(f"{merged}: {problem}; built again from the chunks")
        _build_merged(out, manifest)
    return {name: np.load(merged / f"{name}.npy", mmap_mode="r") for name in sorted(manifest["arrays"])}


def _build_merged(out: Path, manifest: Mapping[str, Any]) -> None:
    """Gather every verified chunk into ``out/merged/<name>.npy`` and record their checksums (lock held)."""
    merged = out / MERGED
    merged.mkdir(exist_ok=True)
    lock = _integrity.acquire_lock(out, "write a chunked sweep or its merged arrays")
    try:
        (merged / MERGED_RECORD).unlink(missing_ok=True)
        for stale in _integrity.stale_temporaries(merged):
            stale.unlink(missing_ok=True)
        finals = {name: merged / f"{name}.npy" for name in manifest["arrays"]}
        tmps = {name: _integrity.temporary_name(path) for name, path in finals.items()}
        maps = _fill(
            out,
            manifest,
            lambda name, shape, dtype: np.lib.format.open_memmap(
                tmps[name], mode="w+", dtype=dtype, shape=(manifest["n_runs"], *shape)
            ),
        )
        for a in maps.values():
            a.flush()
        del maps
        files = {}
        for name, tmp in tmps.items():
            files[name] = {"size": tmp.stat().st_size, "sha256": _integrity.sha256_file(tmp)}
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            commit(tmp, finals[name])
        for stray in set(merged.glob("*.npy")) - set(finals.values()):
            stray.unlink(missing_ok=True)
        record = {
            "arrays": files,
            "chunks": _integrity.json_checksum(manifest["chunks"]),
            "n_runs": manifest["n_runs"],
        }
        _write_json(merged / MERGED_RECORD, _integrity.sealed(record))
    finally:
        _integrity.release_lock(lock)
