r"""Loss landscapes: the loss on a line or plane through parameter space, and its critical points.

A landscape is the loss evaluated on a grid of points

.. math::
    \phi(c) = \phi_c + \sum_k c_k\, d_k, \qquad c \in \text{axis}_0 \times \text{axis}_1,

through a centre :math:`\phi_c` along one or two directions :math:`d_k` (pytrees shaped
like the parameters). For a model with a parameter vector (the line, the Gabor model)
:func:`loss_grid` takes the directions to be two coordinate axes, so the grid is the
loss over two chosen parameters (φ0 × φ1 for the Gabor model); for a pytree model
(the MLP) :func:`loss_plane` takes any directions, typically :func:`random_directions`
(filter-normalised, Li et al., 2018) or :func:`pca_directions` of an optimizer's
trajectory.

**Memory.** Points are made and evaluated in chunks of ``chunk_size`` by one jitted,
vmapped program (compiled once per loss, chunk size and data shape: grids of any size
reuse it, the last chunk is padded); only the chunk's points and the output grid are
ever held. The output lives in host memory as a NumPy array: a 4096 × 4096 float32
grid is 64 MiB. The default chunk is 65,536 points on a CPU and 2²² on a GPU
(:func:`default_chunk`), where each call must be long enough to hide its launch and its
copy to the host.

:func:`critical_points` finds the local minima, saddles and maxima of a 2-D landscape:
candidates from discrete tests on the grid, refined by Newton's method on
:math:`\nabla L = 0` and classified by the signs of the Hessian's eigenvalues.

References:
  H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein. *Visualizing the Loss Landscape of
  Neural Nets*. NeurIPS 2018.
"""

from __future__ import annotations

import collections
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fitjax import _checks
from fitjax.engine.prepare import check_loss
from fitjax.numerics.fastmath import choose_math

PyTree = Any
Loss = Callable[[PyTree, Any], jax.Array]
Callback = Callable[[int, int], None]

DEFAULT_CHUNK = 65_536
"""Points per compiled call on a CPU: the chunk's arrays stay in the caches."""
ACCELERATOR_CHUNK = 2**22
"""Points per compiled call on a GPU or TPU: a call long enough to hide its dispatch and
its copy to the host (at 65,536 points a call of an H200 is mostly launch)."""


def default_chunk(backend: str | None = None) -> int:
    """The default ``chunk_size`` of the landscapes on ``backend`` (default: JAX's)."""
    return DEFAULT_CHUNK if (backend or jax.default_backend()) == "cpu" else ACCELERATOR_CHUNK


"""Points per chunk: small enough for any device, large enough to keep it busy."""

_TRACES: collections.Counter[str] = collections.Counter()


def trace_count() -> int:
    """How many times a landscape chunk program has been traced (and so compiled)."""
    return _TRACES["landscape"]


class Landscape(NamedTuple):
    r"""The loss on a grid of points :math:`\phi(c) = \phi_c + \sum_k c_k d_k`.

    Attributes:
      coords: the values along each axis, ``(values,)`` or ``(values0, values1)``.
      loss: the loss at every grid point, a NumPy array of shape
        ``tuple(len(v) for v in coords)`` (axis 0 along ``coords[0]``).
      center: the parameters at ``c = 0``.
      directions: one pytree per axis, shaped like ``center``.
    """

    coords: tuple[np.ndarray, ...]
    loss: np.ndarray
    center: PyTree
    directions: tuple[PyTree, ...]

    def params_at(self, c: Any) -> PyTree:
        """The parameters at coordinates ``c`` (shape ``(k,)``, or ``(n, k)`` for ``n`` points)."""
        c = jnp.asarray(c)
        stacked = _stack(self.directions)
        if c.ndim == 1:
            return _point(self.center, stacked, c)
        return jax.vmap(_point, (None, None, 0))(self.center, stacked, c)


class CriticalPoints(NamedTuple):
    """Critical points of a 2-D landscape, sorted by loss.

    Attributes:
      coords: their coordinates in the landscape's plane, shape ``(K, 2)``.
      loss: the loss at each, shape ``(K,)``.
      kind: ``"minimum"``, ``"saddle"``, ``"maximum"`` or ``"degenerate"`` (a zero
        Hessian eigenvalue), shape ``(K,)``.
      eigenvalues: the Hessian's eigenvalues in the plane, ascending, shape ``(K, 2)``.
      grad_norm: the norm of the gradient in the plane, shape ``(K,)``.
    """

    coords: np.ndarray
    loss: np.ndarray
    kind: np.ndarray
    eigenvalues: np.ndarray
    grad_norm: np.ndarray


# ----------------------------------------------------------------------------- evaluation


def _stack(directions: Sequence[PyTree]) -> PyTree:
    return jax.tree.map(lambda *d: jnp.stack(d), *directions)


def _point(center: PyTree, stacked: PyTree, c: jax.Array) -> PyTree:
    # φ(c) = φ_c + Σ_k c_k·d_k, leaf by leaf, as multiplies and adds: a dot product here would
    # run on a GPU's matrix units at reduced (TF32) precision and round the coordinates.
    def leaf(x0: jax.Array, d: jax.Array) -> jax.Array:
        ck = c.astype(d.dtype).reshape((-1,) + (1,) * (d.ndim - 1))
        return x0 + jnp.sum(ck * d, axis=0)

    return jax.tree.map(leaf, center, stacked)


_MIN_HELD = 1024
"""Axes are held on the device padded to a power of two, at least this long, so that grids
of other sizes reuse the compiled program."""


def _held_length(n: int) -> int:
    return max(_MIN_HELD, 1 << (n - 1).bit_length())


def _coords(start: jax.Array, dims: jax.Array, axes: tuple[jax.Array, ...], size: int) -> jax.Array:
    """The coordinates of grid points ``start, start + 1, ...`` (``size`` of them, the last
    point repeated past the end) of the row-major grid ``dims``, made on the device."""
    last = jnp.prod(dims, dtype=dims.dtype) - 1  # int32 throughout (jnp.prod widens to int64 under x64)
    k = jnp.minimum(start + jnp.arange(size, dtype=start.dtype), last)
    idx = []
    for n in dims[::-1]:  # the last axis varies fastest
        idx.append(k % n)
        k = k // n
    return jnp.stack([a[i] for a, i in zip(axes, idx[::-1], strict=True)], axis=1)


@functools.lru_cache(maxsize=64)
def _chunk_program(loss: Loss, size: int) -> Callable:
    def chunk(start, dims, axes, center, stacked, data):
        _TRACES["landscape"] += 1
        coords = _coords(start, dims, axes, size)
        return jax.vmap(lambda c: loss(_point(center, stacked, c), data))(coords)

    return jax.jit(chunk)


def _program(loss: Loss, size: int) -> Callable:
    try:
        return _chunk_program(loss, size)
    except TypeError:  # an unhashable loss: compile without the cache
        return _chunk_program.__wrapped__(loss, size)


def _float_dtype(tree: PyTree) -> np.dtype:
    return np.dtype(jnp.result_type(*jax.tree.leaves(tree)))


def _check_center(center: PyTree, directions: Sequence[PyTree]) -> None:
    leaves = jax.tree.leaves(center)
    if not leaves:
        raise ValueError("center is empty: pass the parameters (an array or pytree of arrays)")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating):
            raise TypeError(f"center must hold floating-point arrays, got dtype {jnp.asarray(leaf).dtype}")
    _checks.finite("center", center, "the plane's centre must be finite")
    if not 1 <= len(directions) <= 2:
        raise ValueError(f"directions must hold one or two pytrees, got {len(directions)}")
    shapes = jax.tree.map(jnp.shape, center)
    for k, d in enumerate(directions):
        # jaxlib ships no type stubs for PyTreeDef, so mypy cannot see its __ne__.
        other_structure = jax.tree.structure(d) != jax.tree.structure(center)  # type: ignore[operator]
        if other_structure or jax.tree.map(jnp.shape, d) != shapes:
            raise ValueError(
                f"directions[{k}] must have the structure and shapes of center {shapes}, "
                f"got {jax.tree.map(jnp.shape, d)}"
            )
        _checks.finite(f"directions[{k}]", d, "every direction must be finite")


def _axis(name: str, values: Any, dtype: np.dtype) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array of coordinates, got shape {arr.shape}")
    with np.errstate(over="ignore"):  # a coordinate past the dtype's range is refused as inf
        held = arr.astype(dtype)
    _checks.finite(name, held, f"every coordinate must be finite in {np.dtype(dtype).name}, not NaN or inf")
    return held


def loss_plane(
    loss: Loss,
    data: Any,
    center: PyTree,
    directions: Sequence[PyTree],
    axes: Sequence[Any],
    *,
    chunk_size: int | None = None,
    callback: Callback | None = None,
) -> Landscape:
    r"""The loss on the grid :math:`\phi_c + \sum_k c_k d_k`, :math:`c` in ``axes[0] × axes[1]``.

    Args:
      loss: ``loss(params, data) -> scalar``, as for :func:`fitjax.fit`.
      data: the data the loss sees (all of it), or None.
      center: the parameters at the origin of the plane (one run, no run axis).
      directions: one or two pytrees shaped like ``center``.
      axes: one array of coordinates per direction.
      chunk_size: points evaluated per compiled call (bounds memory); by default
        :func:`default_chunk`: 65,536 on a CPU, 2²² elsewhere.
      callback: called as ``callback(points_done, points_total)`` after each chunk
        (for a progress bar).

    Returns:
      A :class:`Landscape` whose ``loss`` has shape ``tuple(len(a) for a in axes)``.

    Example:
      >>> import jax, jax.numpy as jnp, fitjax
      >>> params = fitjax.init_mlp(jax.random.key(0), [1, 4, 1])
      >>> d0, d1 = fitjax.random_directions(jax.random.key(1), params)
      >>> data = fitjax.datasets.synthetic_regression(jax.random.key(2), 16)
      >>> loss = fitjax.least_squares(fitjax.mlp)
      >>> axes = (jnp.linspace(-1, 1, 5), jnp.linspace(-1, 1, 7))
      >>> land = fitjax.loss_plane(loss, data, params, (d0, d1), axes)
      >>> land.loss.shape
      (5, 7)
      >>> bool(jnp.allclose(land.loss[2, 3], loss(params, data)))   # the centre
      True
    """
    if not callable(loss):
        raise TypeError(f"loss must be a function loss(params, data) -> scalar, got {loss!r}")
    directions = tuple(directions)
    _check_center(center, directions)
    if len(axes) != len(directions):
        raise ValueError(
            f"axes must give one array of coordinates per direction ({len(directions)}), got {len(axes)}"
        )
    chunk_size = default_chunk() if chunk_size is None else _checks.positive_int("chunk_size", chunk_size)
    _checks.finite("data", data, "clean or drop those examples")
    dtype = _float_dtype(center)
    axes = tuple(_axis(f"axes[{k}]", a, dtype) for k, a in enumerate(axes))
    check_loss(loss, jax.tree.map(lambda a: jnp.asarray(a)[None], center), data)

    shape = tuple(a.size for a in axes)
    total = math.prod(shape)
    size = min(chunk_size, total)
    if total >= 2**31:
        raise ValueError(f"the grid has {total} points; at most 2**31 - 1 are indexed")
    stacked = _stack(directions)
    program = _program(choose_math(loss, jax.default_backend()), size)
    dims = np.array(shape, dtype=np.int32)
    held = jax.device_put(tuple(np.resize(a, _held_length(a.size)) for a in axes))
    out = np.empty(total, dtype=dtype)

    pending: tuple[int, jax.Array] | None = None
    for start in range(0, total, size):
        # dispatched, not yet waited for: the device computes this chunk while the last is copied
        values = program(np.int32(start), dims, held, center, stacked, data)
        if pending is not None:
            _store(out, *pending, total, callback)
        pending = (start, values)
    if pending is not None:
        _store(out, *pending, total, callback)
    return Landscape(axes, out.reshape(shape), center, directions)


def _store(out: np.ndarray, start: int, values: jax.Array, total: int, callback: Callback | None) -> None:
    stop = min(start + values.shape[0], total)
    out[start:stop] = np.asarray(values)[: stop - start]
    if callback is not None:
        callback(stop, total)


def _unit_directions(base: jax.Array, index: Sequence[int]) -> tuple[jax.Array, ...]:
    eye = np.eye(base.shape[0], dtype=base.dtype)
    return tuple(jax.device_put(eye[i]) for i in index)


def _flat_base(base: Any, index: Sequence[int], name: str) -> jax.Array:
    # made on the host: a few eager device operations would cost more than a small grid
    arr = np.zeros(max(2, max(index) + 1)) if base is None else np.array(base)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(float)
    arr = arr.astype(jax.dtypes.canonicalize_dtype(arr.dtype))
    if arr.ndim != 1:
        raise ValueError(f"base must be a 1-D parameter vector, got shape {arr.shape}")
    if len(set(index)) != len(index) or not all(0 <= i < arr.shape[0] for i in index):
        raise ValueError(
            f"{name} must name different coordinates of base (length {arr.shape[0]}), got {tuple(index)}"
        )
    # the chosen coordinates come from the grid alone
    arr[list(index)] = 0
    _checks.finite("base", arr, f"the coordinates other than {tuple(index)} must be finite")
    return jax.device_put(arr)


def loss_grid(
    loss: Loss,
    data: Any,
    values0: Any,
    values1: Any,
    *,
    base: Any = None,
    index: tuple[int, int] = (0, 1),
    chunk_size: int | None = None,
    callback: Callback | None = None,
) -> Landscape:
    r"""The loss over a grid of two parameters: ``L[i, j]`` at ``φ[index] = (values0[i], values1[j])``.

    The other parameters come from ``base`` (default: a zero 2-vector). The grid is
    ordered as :func:`fitjax.inits.grid` orders starts: ``values0`` along rows.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> loss = fitjax.least_squares(fitjax.Gabor(fitjax.GABOR_W_NOTEBOOK))
      >>> phi0, phi1 = jnp.arange(-100, 101) / 10, jnp.arange(25, 226) / 10   # steps of 0.1
      >>> land = fitjax.loss_grid(loss, fitjax.datasets.gabor(), phi0, phi1)
      >>> land.loss.shape
      (201, 201)
      >>> i, j = divmod(int(land.loss.argmin()), 201)
      >>> float(land.coords[0][i]), float(land.coords[1][j])   # the global minimum's valley
      (0.0, 16.0)
    """
    center = _flat_base(base, index, "index")
    return loss_plane(
        loss,
        data,
        center,
        _unit_directions(center, index),
        (values0, values1),
        chunk_size=chunk_size,
        callback=callback,
    )


def loss_line(
    loss: Loss,
    data: Any,
    values: Any,
    *,
    base: Any = None,
    index: int = 0,
    chunk_size: int | None = None,
    callback: Callback | None = None,
) -> Landscape:
    """The loss along one parameter, ``L[i]`` at ``φ[index] = values[i]`` (others from ``base``).

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> land = fitjax.loss_line(fitjax.least_squares(fitjax.line), fitjax.datasets.line(),
      ...                         jnp.linspace(0, 2, 5), base=jnp.array([0.0, 0.5]))
      >>> land.loss.shape
      (5,)
    """
    center = _flat_base(base, (index,), "index")
    return loss_plane(
        loss,
        data,
        center,
        _unit_directions(center, (index,)),
        (values,),
        chunk_size=chunk_size,
        callback=callback,
    )


# ----------------------------------------------------------------------------- directions


def filter_normalize(direction: PyTree, params: PyTree, *, bias: Literal["zero", "copy"] = "zero") -> PyTree:
    r"""Rescale each filter of ``direction`` to the norm of the same filter of ``params``.

    For every leaf with two or more axes, a *filter* is the slice at one index of its
    last axis (one output unit of a dense layer ``x @ w``, one output channel of an
    HWIO convolution kernel):

    .. math::
        d_{i,j} \leftarrow \frac{d_{i,j}}{\lVert d_{i,j}\rVert}\, \lVert \theta_{i,j} \rVert .

    Leaves with fewer than two axes (biases, normalisation scales) are set to zero
    (``bias="zero"``, the paper's choice of ignoring biases) or to the parameters
    themselves (``bias="copy"``), as in the paper's reference code. A zero filter of
    ``direction`` stays zero.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> w = jnp.array([[3.0, 0.0], [4.0, 1.0]])
      >>> d = fitjax.filter_normalize({"w": jnp.array([[1.0, 2.0], [0.0, 0.0]]), "b": jnp.ones(2)},
      ...                             {"w": w, "b": jnp.ones(2)})
      >>> d["w"], d["b"]   # column norms 5 and 1; biases zeroed
      (Array([[5., 1.],
             [0., 0.]], dtype=float32), Array([0., 0.], dtype=float32))
    """
    _check_bias(bias)
    _checks.same_tree("direction", direction, params, "params", "pass a direction shaped like the parameters")
    return _filter_normalize(direction, params, bias)


def _check_bias(bias: str) -> None:
    if bias not in ("zero", "copy"):
        raise ValueError(f"bias must be 'zero' or 'copy', got {bias!r}")


@functools.partial(jax.jit, static_argnums=2)
def _filter_normalize(direction: PyTree, params: PyTree, bias: str) -> PyTree:
    def one(d: jax.Array, w: jax.Array) -> jax.Array:
        if jnp.ndim(w) < 2:
            return jnp.zeros_like(w) if bias == "zero" else jnp.asarray(w)
        axes = tuple(range(w.ndim - 1))  # a filter: everything at one index of the last axis
        d_norm = jnp.sqrt(jnp.sum(d * d, axis=axes, keepdims=True))
        w_norm = jnp.sqrt(jnp.sum(w * w, axis=axes, keepdims=True))
        return jnp.where(d_norm > 0, d * (w_norm / jnp.where(d_norm > 0, d_norm, 1)), 0)

    return jax.tree.map(one, direction, params)


def random_directions(
    key: jax.Array, params: PyTree, n: int = 2, *, bias: Literal["zero", "copy"] = "zero"
) -> tuple[PyTree, ...]:
    """``n`` Gaussian random directions, each :func:`filter_normalize`-d to ``params``.

    Example:
      >>> import jax, fitjax
      >>> params = fitjax.init_mlp(jax.random.key(0), [1, 8, 1])
      >>> d0, d1 = fitjax.random_directions(jax.random.key(1), params)
      >>> d0["layers"][0]["w"].shape
      (1, 8)
    """
    key = _checks.prng_key("key", key)
    n = _checks.positive_int("n", n)
    _check_bias(bias)
    return _random_directions(key, params, n, bias)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _random_directions(key: jax.Array, params: PyTree, n: int, bias: str) -> tuple[PyTree, ...]:
    flat, unravel = ravel_pytree(params)
    noise = jax.random.normal(key, (n, flat.size), flat.dtype)  # one draw for all directions
    return tuple(_filter_normalize(unravel(z), params, bias) for z in noise)


class PCAPlane(NamedTuple):
    """The plane of a trajectory's top two principal directions.

    Attributes:
      center: the plane's origin (by default the trajectory's last point).
      directions: the two principal directions, orthonormal, pytrees like the parameters.
      coords: the trajectory projected onto the plane, shape ``(T, 2)``.
      explained: the fraction of the trajectory's variance along each direction.
    """

    center: PyTree
    directions: tuple[PyTree, PyTree]
    coords: np.ndarray
    explained: np.ndarray


def _ravel_steps(trajectory: PyTree) -> tuple[jax.Array, Callable]:
    first = jax.tree.map(lambda a: a[0], trajectory)
    _, unravel = ravel_pytree(first)
    n = jnp.shape(jax.tree.leaves(trajectory)[0])[0]
    flat = jnp.concatenate([jnp.reshape(a, (n, -1)) for a in jax.tree.leaves(trajectory)], axis=1)
    return flat, unravel


def pca_directions(trajectory: PyTree, center: PyTree | None = None) -> PCAPlane:
    r"""The top two principal directions of an optimizer's trajectory, and the trajectory in that plane.

    As in Li et al. (2018, §7): with :math:`\theta_n` the ``center`` (default: the last
    point), the directions are the top two right singular vectors of the matrix of
    :math:`\theta_t - \theta_n` centred over t (its principal components), and the
    trajectory's coordinates are the least-squares projections of
    :math:`\theta_t - \theta_n` onto them.

    Args:
      trajectory: parameters at T ≥ 3 steps, leaves with a leading step axis: one
        run's ``fitjax.fit(..., record_every=1, record_params=True).history.params``,
        e.g. ``jax.tree.map(lambda a: a[0], history.params)``.
      center: the plane's origin; pass the run's final ``params`` to centre it there.

    Example:
      >>> import jax, jax.numpy as jnp, fitjax
      >>> data = fitjax.datasets.line()
      >>> res = fitjax.fit(fitjax.least_squares(fitjax.line), fitjax.gd(0.03), jnp.array([[1.6, -0.5]]),
      ...                  data, steps=50, record_every=1, record_params=True)
      >>> plane = fitjax.pca_directions(res.history.params[0], center=res.params[0])
      >>> plane.coords.shape, round(float(plane.explained.sum()), 6)
      ((50, 2), 1.0)
    """
    fix = "pass the steps before the run diverged"
    _checks.finite("trajectory", trajectory, fix, axis="step")
    flat, unravel = _ravel_steps(trajectory)
    if flat.shape[0] < 3:
        raise ValueError(f"trajectory must hold at least 3 steps along its leading axis, got {flat.shape[0]}")
    if center is not None:
        _check_like_a_point("center", center, trajectory, "trajectory")
        _checks.finite("center", center, "the plane's centre must be finite")
    c = flat[-1] if center is None else ravel_pytree(center)[0]
    if flat.shape[1] < 2:
        raise ValueError("the trajectory has fewer than two parameters; a plane needs two")
    vt, explained = _principal_axes(flat, c)
    explained = np.asarray(explained)
    directions = (unravel(vt[0]), unravel(vt[1]))
    center_tree = unravel(c) if center is None else center
    return PCAPlane(center_tree, directions, project(trajectory, center_tree, directions), explained)


@jax.jit
def _principal_axes(flat: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    diffs = flat - c[None]
    _, s, vt = jnp.linalg.svd(diffs - diffs.mean(axis=0, keepdims=True), full_matrices=False)
    variance = s * s
    return vt[:2], variance[:2] / jnp.maximum(variance.sum(), jnp.finfo(variance.dtype).tiny)


def project(points: PyTree, center: PyTree, directions: Sequence[PyTree]) -> np.ndarray:
    r"""Each point's coordinates in a plane: least squares of :math:`p - \phi_c \approx \sum_k c_k d_k`.

    ``points`` has a leading axis over points; returns shape ``(n, len(directions))``.
    For orthonormal directions (:func:`pca_directions`) these are dot products.

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> points = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]])
      >>> directions = (jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 1.0, 1.0]))
      >>> fitjax.project(points, jnp.zeros(3), directions).round(4)   # (1, 2.5): 2.5 is the mean of 2 and 3
      array([[1. , 2.5],
             [0. , 0.5]], dtype=float32)
    """
    _check_like_a_point("center", center, points, "points")
    for k, d in enumerate(directions):
        _check_like_a_point(f"directions[{k}]", d, points, "points")
    flat, _ = _ravel_steps(points)
    c = ravel_pytree(center)[0]
    basis = jnp.stack([ravel_pytree(d)[0] for d in directions], axis=1)  # (P, k)
    return np.asarray(_least_squares(basis, flat - c[None]))


def _check_like_a_point(name: str, tree: PyTree, points: PyTree, points_name: str) -> None:
    """``tree`` holds as many parameters as one of ``points`` (each leaf without its leading axis)."""
    leaves = jax.tree.leaves(points)
    size = sum(int(np.size(a)) for a in jax.tree.leaves(tree))
    need = sum(math.prod(np.shape(a)[1:]) for a in leaves)
    if size != need:
        one = jax.tree.map(lambda a: np.shape(a)[1:], points)
        raise ValueError(
            f"{name} has {size} parameters (shape {jax.tree.map(np.shape, tree)}), but one point of "
            f"{points_name} has {need} (shape {one}, after the leading axis of {np.shape(leaves[0])[0]} "
            f"points); pass {name} shaped like one point"
        )


@jax.jit
def _least_squares(basis: jax.Array, diffs: jax.Array) -> jax.Array:
    return jnp.linalg.lstsq(basis, diffs.T)[0].T


# ----------------------------------------------------------------------------- critical points

# the 8 neighbours of a grid point, in order around it
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def grid_candidates(loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Interior grid points that look like minima, maxima or saddles of ``loss`` (2-D).

    With :math:`\Delta_k` = neighbour :math:`k` − point over the 8 neighbours, a point
    is a discrete minimum (maximum) when every :math:`\Delta_k > 0` (``< 0``), and a
    discrete saddle when the signs of :math:`\Delta_k` change at least 4 times going
    around it. Ties (:math:`\Delta_k = 0`, common on grids symmetric about a critical
    point) are broken as if the grid were raised by an infinitesimal amount growing in
    row-major order: a tied neighbour later in that order counts as higher. So of two
    tied grid points one is a candidate, and an exactly flat region yields none inside.

    Returns the candidates' ``(i, j)`` indices, shape ``(K, 2)``, and their kinds
    (``"minimum"``, ``"maximum"``, ``"saddle"``).
    """
    L = np.asarray(loss)
    if L.ndim != 2 or min(L.shape) < 3:
        raise ValueError(f"loss must be a 2-D grid of at least 3 x 3 points, got shape {L.shape}")
    mid = L[1:-1, 1:-1]
    n0, n1 = L.shape
    diffs = np.stack([L[1 + a : n0 - 1 + a, 1 + b : n1 - 1 + b] - mid for a, b in _RING])
    finite = np.isfinite(mid) & np.all(np.isfinite(diffs), axis=0)
    later = np.array([a > 0 or (a == 0 and b > 0) for a, b in _RING])[:, None, None]
    sign = np.where(diffs != 0, np.sign(diffs), np.where(later, 1.0, -1.0))
    changes = np.sum(sign != np.roll(sign, 1, axis=0), axis=0)
    is_min = finite & np.all(sign > 0, axis=0)
    is_max = finite & np.all(sign < 0, axis=0)
    is_saddle = finite & (changes >= 4)
    idx, kinds = [], []
    for mask, kind in ((is_min, "minimum"), (is_max, "maximum"), (is_saddle, "saddle")):
        ij = np.argwhere(mask) + 1
        idx.append(ij)
        kinds += [kind] * len(ij)
    return np.concatenate(idx).astype(np.int64), np.asarray(kinds, dtype=object)


@functools.lru_cache(maxsize=64)
def _newton_program(loss: Loss, steps: int) -> Callable:
    def refine(seeds, cell, center, stacked, data):
        def f(c):
            return loss(_point(center, stacked, c), data)

        def newton(c, _):
            # solve ∇f(c) = 0: c ← c − H⁻¹∇f, each step clipped to one grid cell per axis
            g, h = jax.grad(f)(c), jax.hessian(f)(c)
            w, q = jnp.linalg.eigh(h)
            floor = jnp.finfo(c.dtype).eps * jnp.maximum(jnp.max(jnp.abs(w)), 1)
            w = jnp.where(jnp.abs(w) < floor, jnp.where(w < 0, -floor, floor), w)
            step = -(q @ ((q.T @ g) / w))
            step = jnp.clip(step, -cell, cell)
            return c + step, jnp.max(jnp.abs(step) / cell)

        def one(seed):
            c, moves = jax.lax.scan(newton, seed, None, length=steps)
            g, h = jax.grad(f)(c), jax.hessian(f)(c)
            return c, f(c), jnp.linalg.eigvalsh(h), jnp.linalg.norm(g), moves[-1]

        return jax.vmap(one)(seeds)

    return jax.jit(refine)


def critical_points(
    loss: Loss,
    data: Any,
    landscape: Landscape,
    *,
    newton_steps: int = 30,
    radius: float = 2.0,
    xtol: float = 1e-3,
    merge: float = 0.5,
) -> CriticalPoints:
    r"""Local minima, saddles and maxima of a 2-D landscape, refined and classified.

    1. Candidates: interior grid points that pass the discrete tests of
       :func:`grid_candidates`.
    2. Refinement: ``newton_steps`` steps of Newton's method on :math:`\nabla L(c) = 0`
       in the plane's coordinates, :math:`c \leftarrow c - H^{-1} \nabla L`, with
       ``jax.grad`` and ``jax.hessian`` and each step clipped to one grid cell per axis.
       A candidate is kept if its last step moved less than ``xtol`` cells and it ended
       within ``radius`` cells of where it started and inside the grid.
    3. Classification by the signs of the Hessian's eigenvalues: all positive, a
       minimum; all negative, a maximum; mixed, a saddle; a zero, degenerate.
    4. Deduplication: points closer than ``merge`` cells on both axes are one point
       (the one with the smallest gradient norm is kept).

    Only interior points are found: a minimum on the grid's edge is not a critical
    point of the landscape shown. Precision follows the dtype: run under
    ``jax.enable_x64`` for float64 coordinates.

    Args:
      loss, data: the loss and data the landscape was computed from.
      landscape: a 2-D :class:`Landscape` (from :func:`loss_grid` or :func:`loss_plane`).

    Example:
      >>> import jax.numpy as jnp, fitjax
      >>> f = lambda p, _: (p[0] ** 2 - 1) ** 2 + p[1] ** 2
      >>> land = fitjax.loss_grid(f, None, jnp.linspace(-2, 2.1, 30), jnp.linspace(-1, 1.1, 20))
      >>> cp = fitjax.critical_points(f, None, land)
      >>> cp.kind.tolist(), cp.coords.round(4).tolist()
      (['minimum', 'minimum', 'saddle'], [[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    """
    if len(landscape.coords) != 2:
        raise ValueError(f"critical_points needs a 2-D landscape, got {len(landscape.coords)} axes")
    newton_steps = _checks.positive_int("newton_steps", newton_steps)
    for name, value in (("radius", radius), ("xtol", xtol), ("merge", merge)):
        _checks.positive(name, value)
    axes = landscape.coords
    dtype = landscape.loss.dtype
    cell = np.array([(a.max() - a.min()) / max(a.size - 1, 1) for a in axes], dtype=dtype)
    if np.any(cell <= 0):
        raise ValueError("every axis of the landscape needs at least two distinct coordinates")
    idx, _ = grid_candidates(landscape.loss)
    empty = CriticalPoints(
        np.zeros((0, 2), dtype),
        np.zeros(0, dtype),
        np.zeros(0, object),
        np.zeros((0, 2), dtype),
        np.zeros(0, dtype),
    )
    if idx.shape[0] == 0:
        return empty
    seeds = np.stack([axes[0][idx[:, 0]], axes[1][idx[:, 1]]], axis=1)
    try:
        program = _newton_program(loss, newton_steps)
    except TypeError:
        program = _newton_program.__wrapped__(loss, newton_steps)
    out = program(seeds, cell, landscape.center, _stack(landscape.directions), data)
    coords, values, eig, gnorm, last = (np.asarray(a) for a in out)

    lo = np.array([a.min() for a in axes]) - 0.5 * cell
    hi = np.array([a.max() for a in axes]) + 0.5 * cell
    ok = (
        np.all(np.isfinite(coords), axis=1)
        & np.isfinite(values)
        & np.all(np.isfinite(eig), axis=1)
        & (last <= xtol)
        & np.all(np.abs(coords - seeds) <= radius * cell, axis=1)
        & np.all((coords >= lo) & (coords <= hi), axis=1)
    )
    keep: list[int] = []
    for i in np.flatnonzero(ok)[np.argsort(gnorm[ok], kind="stable")]:
        if all(np.any(np.abs(coords[i] - coords[j]) > merge * cell) for j in keep):
            keep.append(i)
    if not keep:
        return empty
    keep_arr = np.asarray(keep)[np.argsort(values[keep], kind="stable")]
    e = eig[keep_arr]
    kind = np.where(
        np.any(e == 0, axis=1),
        "degenerate",
        np.where(np.all(e > 0, axis=1), "minimum", np.where(np.all(e < 0, axis=1), "maximum", "saddle")),
    ).astype(object)
    return CriticalPoints(coords[keep_arr], values[keep_arr], kind, e, gnorm[keep_arr])
