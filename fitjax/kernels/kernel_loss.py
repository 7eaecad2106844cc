r"""A per-run loss rewritten for the fused kernel.

The fused kernel (:mod:`fitjax.fused`) evaluates the user's own ``loss(params, batch)``
inside a Triton program, where two things differ from plain JAX:

* a tensor's sizes must be powers of two, so the data's :math:`n` points are held in
  :math:`n_{pad} \ge n` lanes (the extra lanes repeat the last point);
* there is no slicing of small vectors, so the parameter vector :math:`\phi \in
  \mathbb{R}^P` is held as :math:`P` separate values :math:`\phi_0, \dots, \phi_{P-1}`.

:func:`rewrite` traces the loss once for one run (true shapes) and
:class:`KernelLoss` re-evaluates that trace equation by equation with those two
representations: ``phi[j]`` picks the :math:`j`-th value, elementwise operations act on
the padded lanes, and every reduction over the points (``sum``, ``max``, ``min``,
``prod``, a dot product) first replaces the padding lanes by the reduction's identity,

.. math::
    \textstyle\sum_{i<n} r_i = \sum_{i<n_{pad}} \mathbb{1}[i<n]\, r_i,

so the value is the loss of the :math:`n` real points. Constants such as the ``n`` of a
mean were fixed when the loss was traced, at the true size. ``jax.grad`` of the
rewritten function is then the gradient of the user's loss (the padding lanes get a
zero cotangent, and hold finite values since they repeat a real point).

Anything the rewrite cannot represent exactly raises :class:`Unsupported` with the
reason, when the problem is planned, so the engine runs the XLA path instead: a
loss that slices or reshapes the data, contracts it with a matrix, holds a
parameter array of more than one axis, uses a custom derivative rule on the data, and
so on. The supported class is what the fused kernel is for: models made of
elementwise operations on the data and reductions over it (the lecture's line and
Gabor model, least squares, small models of that kind).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex_core

from fitjax.numerics.fastmath import CALL_PRIMITIVES as _CALLS  # evaluated inline


class Unsupported(Exception):
    """The fused kernel cannot take this problem; ``str(err)`` says why."""


_ELEMENTWISE = frozenset(
    """abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil clamp
    convert_element_type copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2
    expm1 floor ge gt igamma integer_pow is_finite le lgamma log log1p logistic lt max
    min mul ne neg nextafter not or pow reduce_precision rem round rsqrt select_n sign
    sin sinh sqrt square stop_gradient sub tan tanh xor""".split()
)
_REDUCTIONS = {
    "reduce_sum": (lax.add, 0),
    "reduce_prod": (lax.mul, 1),
    "reduce_max": (lax.max, -np.inf),
    "reduce_min": (lax.min, np.inf),
}
_SCALAR_CUSTOM = frozenset({"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"})


@dataclasses.dataclass(frozen=True)
class _Points:
    """An ``(n,)`` array over the data's points, held in ``(n_pad,)`` lanes."""

    value: jax.Array


@dataclasses.dataclass(frozen=True)
class _Parts:
    """A ``(k,)`` array held as ``k`` separate values (the parameter vector and its slices)."""

    parts: tuple


@dataclasses.dataclass(frozen=True)
class _Splat:
    """A scalar broadcast to ``(size,)``; it takes the form of whatever it is combined with."""

    value: Any
    size: int


@dataclasses.dataclass(frozen=True)
class _Const:
    """A closed-over array of one axis; ``points`` is its padded copy when it spans the data."""

    array: np.ndarray
    points: jax.Array | None


@dataclasses.dataclass
class _Env:
    n: int
    n_pad: int
    substitutes: Mapping[str, Callable[[jax.Array], jax.Array]]
    mask: jax.Array | None = None

    def valid(self) -> jax.Array | None:
        """``i < n`` over the lanes, or None when there is no padding."""
        if self.n_pad == self.n:
            return None
        if self.mask is None:
            self.mask = lax.iota(jnp.int32, self.n_pad) < self.n
        return self.mask


def _ndim(value: Any) -> int:
    return np.ndim(value) if not isinstance(value, (_Points, _Parts, _Splat, _Const)) else 1


def _where_valid(env: _Env, value: jax.Array, fill: Any) -> jax.Array:
    valid = env.valid()
    if valid is None:
        return value
    return lax.select(valid, value, lax.full_like(value, fill))


def _as_points(env: _Env, value: Any, what: str) -> Any:
    if isinstance(value, _Points):
        return value.value
    if isinstance(value, _Splat) and value.size == env.n:
        return lax.broadcast_in_dim(value.value, (env.n_pad,), ())
    if isinstance(value, _Const) and value.points is not None:
        return value.points
    if _ndim(value) == 0 and not isinstance(value, (_Parts, _Splat, _Const)):
        return value
    raise Unsupported(f"the loss combines the data with {_describe(value)} in `{what}`")


def _part(value: Any, i: int, k: int, what: str) -> Any:
    if isinstance(value, _Parts) and len(value.parts) == k:
        return value.parts[i]
    if isinstance(value, _Splat) and value.size == k:
        return value.value
    if isinstance(value, _Const) and value.array.shape == (k,):
        return value.array[i]
    if _ndim(value) == 0 and not isinstance(value, (_Parts, _Splat, _Const)):
        return value
    raise Unsupported(f"the loss combines its parameter vector with {_describe(value)} in `{what}`")


def _describe(value: Any) -> str:
    if isinstance(value, _Points):
        return "the data"
    if isinstance(value, _Parts):
        return f"a vector of {len(value.parts)} parameters"
    if isinstance(value, (_Splat, _Const)):
        size = value.size if isinstance(value, _Splat) else value.array.shape[0]
        return f"an array of {size} values"
    return f"an array of shape {np.shape(value)}"


def _bind(eqn: Any, args: Sequence[Any], env: _Env) -> Any:
    if not any(isinstance(a, jax.core.Tracer) for a in args):
        # Constants only (``1.0 - 2.0`` in the trace): folded here, as Triton takes no
        # constant operand in some of its lowering rules.
        with jax.ensure_compile_time_eval():
            return eqn.primitive.bind(*args, **eqn.params)
    fast = env.substitutes.get(eqn.primitive.name)
    if fast is not None and all(jnp.result_type(a) == jnp.float32 for a in args):
        return fast(*args)
    return eqn.primitive.bind(*args, **eqn.params)


def _elementwise(eqn: Any, vals: Sequence[Any], env: _Env) -> Any:
    what = eqn.primitive.name
    if any(isinstance(v, _Points) for v in vals) or (
        any(isinstance(v, _Const) for v in vals) and any(isinstance(v, _Splat) for v in vals)
    ):
        return _Points(_bind(eqn, [_as_points(env, v, what) for v in vals], env))
    parts = [v for v in vals if isinstance(v, _Parts)]
    if parts:
        k = len(parts[0].parts)
        return _Parts(tuple(_bind(eqn, [_part(v, i, k, what) for v in vals], env) for i in range(k)))
    splats = [v for v in vals if isinstance(v, _Splat)]
    if splats:
        if len({s.size for s in splats}) > 1:
            raise Unsupported(f"the loss broadcasts values to different sizes in `{what}`")
        return _Splat(
            _bind(eqn, [v.value if isinstance(v, _Splat) else v for v in vals], env), splats[0].size
        )
    consts = [v for v in vals if isinstance(v, _Const)]
    if consts:
        return _on_consts(eqn, vals, consts, env)
    return _bind(eqn, vals, env)


def _on_consts(eqn: Any, vals: Sequence[Any], consts: Sequence[_Const], env: _Env) -> Any:
    """An elementwise operation on closed-over arrays (and scalars), e.g. a dtype cast."""
    what = eqn.primitive.name
    if len({c.array.shape for c in consts}) > 1:
        raise Unsupported(f"the loss combines closed-over arrays of different sizes in `{what}`")
    points = None
    if all(c.points is not None for c in consts):
        points = _bind(eqn, [v.points if isinstance(v, _Const) else v for v in vals], env)
    if any(isinstance(v, jax.core.Tracer) for v in vals):
        if points is None:
            raise Unsupported(f"the loss combines a closed-over array with a traced value in `{what}`")
        return _Points(points)
    with jax.ensure_compile_time_eval():
        array = eqn.primitive.bind(*[v.array if isinstance(v, _Const) else v for v in vals], **eqn.params)
    return _Const(np.asarray(array), points)


def _reduce(eqn: Any, vals: Sequence[Any], env: _Env) -> Any:
    name = eqn.primitive.name
    combine, identity = _REDUCTIONS[name]
    [x] = vals
    if tuple(eqn.params["axes"]) != (0,):
        raise Unsupported(f"the loss reduces over axes {eqn.params['axes']} in `{name}`")
    if isinstance(x, _Parts):
        out = x.parts[0]
        for p in x.parts[1:]:
            out = combine(out, p)
        return out
    if isinstance(x, _Splat) and x.size != env.n:
        raise Unsupported(f"the loss reduces a broadcast array of {x.size} values in `{name}`")
    lanes = _as_points(env, x, name)
    if np.ndim(lanes) != 1:
        raise Unsupported(f"the loss reduces {_describe(x)} in `{name}`")
    if jnp.issubdtype(lanes.dtype, jnp.integer) and not math.isfinite(identity):
        info = jnp.iinfo(lanes.dtype)
        identity = info.min if identity < 0 else info.max
    return eqn.primitive.bind(_where_valid(env, lanes, identity), **eqn.params)


def _dot(eqn: Any, vals: Sequence[Any], env: _Env) -> Any:
    a, b = vals
    (ca, cb), (ba, bb) = eqn.params["dimension_numbers"]
    if tuple(ca) != (0,) or tuple(cb) != (0,) or ba or bb or _ndim(a) != 1 or _ndim(b) != 1:
        raise Unsupported(
            "the loss uses a matrix product (`dot_general`) other than a dot product of vectors"
        )
    dtype = eqn.params.get("preferred_element_type") or eqn.outvars[0].aval.dtype
    if isinstance(a, _Parts) or isinstance(b, _Parts):
        k = len((a if isinstance(a, _Parts) else b).parts)
        terms = [lax.mul(_part(a, i, k, "dot"), _part(b, i, k, "dot")) for i in range(k)]
        out = terms[0]
        for term in terms[1:]:
            out = lax.add(out, term)
        return lax.convert_element_type(out, dtype)
    product = lax.mul(_as_points(env, a, "dot"), _as_points(env, b, "dot"))
    if np.ndim(product) != 1:
        raise Unsupported("the loss takes a dot product that does not run over the data's points")
    return lax.convert_element_type(jnp.sum(_where_valid(env, product, 0)), dtype)


def _structural(eqn: Any, vals: Sequence[Any], env: _Env) -> Any:
    name, params = eqn.primitive.name, eqn.params
    x = vals[0]
    out_shape = tuple(eqn.outvars[0].aval.shape)
    if name == "slice" and isinstance(x, (_Parts, _Splat)):
        (start,), (limit,) = params["start_indices"], params["limit_indices"]
        stride = (params["strides"] or (1,))[0]
        if isinstance(x, _Splat):
            return _Splat(x.value, len(range(start, limit, stride)))
        return _Parts(x.parts[start:limit:stride])
    if name in ("squeeze", "reshape"):
        if out_shape == () and isinstance(x, _Parts) and len(x.parts) == 1:
            return x.parts[0]
        if out_shape == () and isinstance(x, _Splat) and x.size == 1:
            return x.value
        if out_shape == tuple(eqn.invars[0].aval.shape):
            return x
    if name == "broadcast_in_dim":
        if _ndim(x) == 0 and len(out_shape) == 1:
            return _Splat(x, out_shape[0])
        if out_shape == tuple(eqn.invars[0].aval.shape):
            return x
    if name == "concatenate":
        pieces = []
        for v, var in zip(vals, eqn.invars, strict=True):
            size = var.aval.shape[0]
            pieces += [_part(v, i, size, "concatenate") for i in range(size)]
        return _Parts(tuple(pieces))
    raise Unsupported(f"the loss applies `{name}` to {_describe(x)}")


def _call(eqn: Any, vals: Sequence[Any], env: _Env) -> list[Any]:
    closed = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    jaxpr, consts = (closed.jaxpr, closed.consts) if hasattr(closed, "consts") else (closed, ())
    return _eval(jaxpr, [_const(c, None) for c in consts], vals, env)


def _name(eqn: Any) -> str:
    """The function a custom-derivative equation wraps (``relu``), else the primitive's name."""
    closed = eqn.params.get("call_jaxpr")
    info = getattr(getattr(closed, "jaxpr", closed), "debug_info", None)
    return getattr(info, "func_name", None) or eqn.primitive.name


def _custom(eqn: Any, vals: Sequence[Any], env: _Env) -> list[Any]:
    if any(isinstance(v, (_Points, _Parts, _Splat, _Const)) or np.ndim(v) for v in vals):
        raise Unsupported(
            f"the loss applies a function with its own derivative rule (`{_name(eqn)}`) to arrays; "
            "only scalar arguments keep that rule exact in the kernel"
        )
    params = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(params, tuple):  # older jax: (subfuns, params)
        subfuns, params = params
        return eqn.primitive.bind(*subfuns, *vals, **params)
    return eqn.primitive.bind(*vals, **params)


_STRUCTURAL = frozenset({"slice", "squeeze", "reshape", "broadcast_in_dim", "concatenate"})


def _apply(eqn: Any, vals: list[Any], env: _Env) -> list[Any]:
    name = eqn.primitive.name
    if name in _CALLS:
        return _call(eqn, vals, env)
    if name in _SCALAR_CUSTOM:
        out = _custom(eqn, vals, env)
        return list(out) if eqn.primitive.multiple_results else [out]
    if eqn.primitive.multiple_results:
        raise Unsupported(f"the loss uses `{name}`, which the fused kernel does not handle")
    if name in _ELEMENTWISE:
        out = _elementwise(eqn, vals, env)
    elif name in _REDUCTIONS:
        out = _reduce(eqn, vals, env)
    elif name == "dot_general":
        out = _dot(eqn, vals, env)
    elif name in _STRUCTURAL:
        out = _structural(eqn, vals, env)
    else:
        raise Unsupported(f"the loss uses `{name}`, which the fused kernel does not handle")
    if np.ndim(out) > 0 and not isinstance(out, (_Points, _Parts, _Splat, _Const)):
        raise Unsupported(f"the loss makes an array of shape {np.shape(out)} in `{name}`")
    return [out]


def _eval(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any], env: _Env) -> list[Any]:
    values: dict[Any, Any] = {}

    def read(var):
        return var.val if isinstance(var, jex_core.Literal) else values[var]

    for var, value in zip(jaxpr.constvars, consts, strict=True):
        values[var] = value
    for var, value in zip(jaxpr.invars, args, strict=True):
        values[var] = value
    for eqn in jaxpr.eqns:
        for var, value in zip(eqn.outvars, _apply(eqn, [read(v) for v in eqn.invars], env), strict=True):
            values[var] = value
    return [read(v) for v in jaxpr.outvars]


def _const(value: Any, points: jax.Array | None) -> Any:
    if np.ndim(value) == 0:
        return value
    array = np.asarray(value)
    if array.ndim != 1:
        raise Unsupported(f"the loss closes over an array of shape {array.shape}")
    return _Const(array, points)


@dataclasses.dataclass(frozen=True, eq=False)
class KernelLoss:
    """The loss of one run at ``n`` points, evaluated with ``n_pad`` lanes and split parameters.

    Call it as ``kernel_loss(params, lanes, const_lanes)``: ``params`` one run's parameter
    values (a tuple of ``P`` scalars, or one scalar for a scalar parameter), ``lanes`` the
    data leaves padded to ``(n_pad,)`` (:meth:`pad`), ``const_lanes`` the padded copies of
    the closed-over arrays that span the data (:meth:`padded_consts`).
    """

    closed: Any  # ClosedJaxpr of loss(params, *data_leaves)
    n: int
    n_pad: int
    n_params: int | None  # None for a scalar parameter
    point_consts: tuple[int, ...]

    def pad(self, leaves: Sequence[jax.Array]) -> tuple[jax.Array, ...]:
        """Each leaf (leading axis of ``n`` points) padded to ``n_pad`` by repeating its last point."""
        return tuple(_pad_points(leaf, self.n_pad) for leaf in leaves)

    def padded_consts(self) -> tuple[jax.Array, ...]:
        return tuple(_pad_points(jnp.asarray(self.closed.consts[i]), self.n_pad) for i in self.point_consts)

    def __call__(
        self,
        params: Any,
        lanes: Sequence[jax.Array],
        const_lanes: Sequence[jax.Array] = (),
        substitutes: Mapping[str, Callable[[jax.Array], jax.Array]] | None = None,
    ) -> jax.Array:
        env = _Env(self.n, self.n_pad, substitutes or {})
        by_index = dict(zip(self.point_consts, const_lanes, strict=True))
        consts = [_const(c, by_index.get(i)) for i, c in enumerate(self.closed.consts)]
        phi = params if self.n_params is None else _Parts(tuple(params))
        [out] = _eval(self.closed.jaxpr, consts, [phi, *(_Points(x) for x in lanes)], env)
        if isinstance(out, (_Points, _Parts, _Splat, _Const)):
            raise Unsupported("the loss does not reduce to a scalar")
        return out


def _pad_points(leaf: jax.Array, n_pad: int) -> jax.Array:
    leaf = jnp.asarray(leaf)
    extra = n_pad - leaf.shape[-1]
    if extra == 0:
        return leaf
    widths = [(0, 0)] * (leaf.ndim - 1) + [(0, extra)]
    return jnp.pad(leaf, widths, mode="edge")


def pad_size(n: int) -> int:
    """The lanes that hold ``n`` points: the next power of two (at least 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def rewrite(loss: Callable, param: jax.ShapeDtypeStruct, batch: Any) -> KernelLoss:
    """Trace ``loss(param, batch)`` for one run and check that the kernel can evaluate it.

    ``param`` is one run's parameter (shape ``()`` or ``(P,)``); ``batch`` the data
    structure (shapes and dtypes) one evaluation sees. Raises :class:`Unsupported`
    with the reason when the loss falls outside what the kernel represents.

    Example:
      >>> import jax, jax.numpy as jnp, fitjax
      >>> x, y = fitjax.datasets.line()
      >>> loss = fitjax.least_squares(fitjax.line)
      >>> k = rewrite(loss, jax.ShapeDtypeStruct((2,), jnp.float32), (x, y))
      >>> k.n, k.n_pad
      (12, 16)
      >>> phi = jnp.array([0.6, -0.2])
      >>> bool(jnp.allclose(k((phi[0], phi[1]), k.pad([x, y])), loss(phi, (x, y))))
      True
    """
    if param.ndim > 1:
        raise Unsupported(f"each run's parameters have shape {param.shape}; the kernel takes a vector (P,)")
    leaves = jax.tree.leaves(batch)
    if any(np.ndim(leaf) != 1 for leaf in leaves):
        shapes = [tuple(np.shape(leaf)) for leaf in leaves]
        raise Unsupported(
            f"the data arrays have shapes {shapes}; the kernel takes one-dimensional arrays (n,)"
        )
    sizes = {np.shape(leaf)[0] for leaf in leaves}
    n = sizes.pop() if leaves else 0
    treedef = jax.tree.structure(batch)

    def flat(phi, *data):
        return loss(phi, jax.tree.unflatten(treedef, data))

    closed = jax.make_jaxpr(flat)(
        param, *(jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)) for x in leaves)
    )
    point_consts = tuple(
        i for i, c in enumerate(closed.consts) if np.ndim(c) == 1 and leaves and np.shape(c)[0] == n
    )
    kloss = KernelLoss(
        closed, n, pad_size(n) if leaves else 0, param.shape[0] if param.ndim else None, point_consts
    )
    _check(kloss, param, [jax.ShapeDtypeStruct((kloss.n_pad,), jnp.result_type(x)) for x in leaves])
    return kloss


def _check(kloss: KernelLoss, param: jax.ShapeDtypeStruct, lanes: Sequence[jax.ShapeDtypeStruct]) -> None:
    """Evaluate the rewritten loss and its gradient abstractly, so that anything it cannot
    represent is found now rather than inside the kernel."""
    scalar = jax.ShapeDtypeStruct((), param.dtype)
    parts = scalar if kloss.n_params is None else (scalar,) * kloss.n_params
    consts = [
        jax.ShapeDtypeStruct((kloss.n_pad,), jnp.result_type(kloss.closed.consts[i]))
        for i in kloss.point_consts
    ]
    out = jax.eval_shape(lambda p, x, c: jax.value_and_grad(kloss)(p, x, c), parts, lanes, consts)
    if out[0].shape != ():
        raise Unsupported(f"the loss returns shape {out[0].shape}")
