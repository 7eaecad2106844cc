"""Contenders for the multi-start Gabor fitting benchmark.

Each contender fits the same workload -- ``I`` independent Adam runs of the
Gabor model over ``N`` points for ``T`` steps -- and is what ``fitjax`` is
measured against:

* ``expert_optax``: hand-written optax + ``jax.vmap`` + ``lax.scan`` in one
  ``jax.jit`` (the expert baseline).
* ``fitjax``: ``fitjax.fit`` with ``fitjax.adam``; ``fitjax_record10`` the same
  with ``record_every=10``; ``fitjax_auto`` with ``backend="auto"`` (the fused
  GPU kernel where it applies; run only on a GPU).
* ``optax_loop``: a Python loop over starts, one jitted optax step per call.
* ``torch_batched_eager`` / ``torch_batched_compiled``: PyTorch with the
  starts as a batch dimension and ``torch.optim.Adam``.
* ``numpy_vectorised``: NumPy Adam over all starts with the analytic gradient.

Model and loss::

    u = phi0 + 0.06 * phi1 * x
    f(phi, x) = sin(u) * exp(-u**2 / 8)
    loss(phi) = sum_n (f(phi, x_n) - y_n) ** 2

Every contender takes ``starts`` (float32, shape ``(I, 2)``), ``x`` and ``y``
(float32, shape ``(N,)``) and ``steps`` and returns a ``ContenderResult``
holding the final parameters ``(I, 2)``, the loss at those parameters ``(I,)``
and the compile / warm-up time separately from the run time. Nothing here
assumes a CPU: JAX uses its default device and PyTorch uses CUDA when it is
available.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fitjax

# --- Workload definition -----------------------------------------------------

U_SCALE = 0.06
"""Scale of ``phi1 * x`` inside the Gabor argument."""

X_RANGE = (-15.0, 15.0)
PHI0_RANGE = (-10.0, 10.0)
PHI1_RANGE = (2.5, 22.5)
PHI_TRUE = (1.0, 12.0)
NOISE_STD = 0.01


@dataclass(frozen=True)
class AdamConfig:
    """Adam hyper-parameters shared by every contender."""

    lr: float = 0.05
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8


ADAM = AdamConfig()


@dataclass(frozen=True)
class Workload:
    """One benchmark workload: data, starting points and step count."""

    starts: np.ndarray  # (I, 2) float32
    x: np.ndarray  # (N,) float32
    y: np.ndarray  # (N,) float32
    steps: int

    @property
    def runs(self) -> int:
        return int(self.starts.shape[0])

    @property
    def points(self) -> int:
        return int(self.x.shape[0])


def gabor_numpy(phi: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gabor model for parameters ``phi`` of shape ``(..., 2)``; broadcasts over ``x``."""
    u = phi[..., 0:1] + np.float32(U_SCALE) * phi[..., 1:2] * x
    return np.sin(u) * np.exp(-u * u / np.float32(8.0))


def make_workload(runs: int, points: int, steps: int, seed: int = 0) -> Workload:
    """Synthetic data and uniformly drawn starts, all float32 and seeded."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(*X_RANGE, size=points).astype(np.float32)
    phi_true = np.asarray(PHI_TRUE, dtype=np.float32)
    noise = rng.normal(0.0, NOISE_STD, size=points).astype(np.float32)
    y = (gabor_numpy(phi_true, x) + noise).astype(np.float32)
    starts = np.stack(
        [rng.uniform(*PHI0_RANGE, size=runs), rng.uniform(*PHI1_RANGE, size=runs)],
        axis=1,
    ).astype(np.float32)
    return Workload(starts=starts, x=x, y=y, steps=steps)


def floor_seconds(
    runs: int, points: int, steps: int, flops_per_point: float = 70, tflops: float = 50
) -> float:
    """Compute floor: seconds for ``runs * points * steps`` model+gradient
    evaluations of ``flops_per_point`` FLOPs each at ``tflops`` TFLOP/s."""
    return runs * points * steps * flops_per_point / (tflops * 1e12)


# --- Results -------------------------------------------------------------------


@dataclass(frozen=True)
class ContenderResult:
    """Outcome of one contender on one workload.

    ``params`` / ``losses`` cover the first ``starts_run`` starts; they are
    ``None`` (as are the timings) when the contender was skipped, with the
    reason in ``skip_reason``. ``run_times`` are the measured wall-clock
    seconds of each repetition of the run phase on ``starts_run`` starts;
    ``run_s`` is the :func:`best` of them scaled to all starts (``note`` says when it
    was extrapolated from a subset). ``run_cpu_times`` / ``run_cpu_s`` are the
    same for the process CPU time (all threads), which is far less sensitive
    than wall time to other load on a shared machine but counts only host
    work.
    """

    name: str
    params: np.ndarray | None
    losses: np.ndarray | None
    compile_s: float | None
    run_s: float | None
    run_times: tuple[float, ...] = ()
    run_cpu_s: float | None = None
    run_cpu_times: tuple[float, ...] = ()
    starts_run: int | None = None
    note: str = ""
    skip_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.skip_reason is None

    @staticmethod
    def skipped(name: str, reason: str) -> ContenderResult:
        return ContenderResult(name, None, None, None, None, skip_reason=reason)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``fn`` and return its result and the wall-clock seconds it took.

    ``fn`` must block on its own results (``block_until_ready`` / device sync).
    """
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
"""The ``jax.monitoring`` events whose durations make up a program's compile time:
tracing, lowering to MLIR and XLA's compilation (the parts the expert's
``lower().compile()`` times)."""

_COMPILE_SECONDS: list[float] = []


def _on_duration(event: str, seconds: float, **_: Any) -> None:
    if event in COMPILE_EVENTS:
        _COMPILE_SECONDS.append(seconds)


jax.monitoring.register_event_duration_secs_listener(_on_duration)


def _timed_first_call(fn: Callable[[], Any]) -> tuple[Any, float, float | None]:
    """Run ``fn`` once: its result, its wall seconds, and the seconds JAX spent tracing,
    lowering and compiling during it (``None`` if JAX reported none of these events,
    e.g. because every program was already compiled)."""
    seen = len(_COMPILE_SECONDS)
    out, seconds = _timed(fn)
    compiling = _COMPILE_SECONDS[seen:]
    return out, seconds, (sum(compiling) if compiling else None)


@dataclass(frozen=True)
class RunTimes:
    """Wall-clock and process CPU seconds of each repetition of a run."""

    wall: tuple[float, ...]
    cpu: tuple[float, ...]


SHORT_CALLS_S = 0.25
"""Calls are repeated until they have taken this long in all (at most ``MAX_CALLS``):
the best of 3 calls of half a millisecond says more about the machine than the code."""

MAX_CALLS = 200

MANY_CALLS = 10
"""From this many timed calls on, a run's time is their 10th percentile, not their
minimum: at a tenth of a millisecond the fastest of 200 calls is a lucky draw of the
machine, and comparing two such draws gives ratios that wander by 20–40%."""


def best(times: tuple[float, ...] | list[float]) -> float:
    """The time kept from repeated calls: the minimum of fewer than :data:`MANY_CALLS`,
    else the 10th percentile."""
    if len(times) < MANY_CALLS:
        return min(times)
    return float(np.percentile(times, 10))


def _timed_repeats(fn: Callable[[], Any], repeat: int) -> tuple[Any, RunTimes]:
    """Run ``fn`` ``repeat`` times (at least once), and more while all the calls together
    have taken less than :data:`SHORT_CALLS_S` (at most :data:`MAX_CALLS`); the last
    result and the times.

    ``fn`` must start from the same state on every call.
    """
    wall, cpu = [], []
    while len(wall) < max(repeat, 1) or (sum(wall) < SHORT_CALLS_S and len(wall) < MAX_CALLS):
        cpu_start = time.process_time()
        out, seconds = _timed(fn)
        cpu.append(time.process_time() - cpu_start)
        wall.append(seconds)
    return out, RunTimes(tuple(wall), tuple(cpu))


def _result(
    name: str,
    params: Any,
    losses: Any,
    compile_s: float,
    run_times: RunTimes,
    total_starts: int,
    note: str = "",
) -> ContenderResult:
    """Build a result; run times are the :func:`best` of the repetitions, scaled to
    ``total_starts``."""
    params, losses = np.asarray(params), np.asarray(losses)
    starts_run = len(losses)
    scale = total_starts / starts_run
    notes = [note] if note else []
    if starts_run < total_starts:
        notes.append(f"run_s extrapolated from {starts_run} of {total_starts} starts")
    return ContenderResult(
        name,
        params,
        losses,
        compile_s,
        best(run_times.wall) * scale,
        run_times=run_times.wall,
        run_cpu_s=best(run_times.cpu) * scale,
        run_cpu_times=run_times.cpu,
        starts_run=starts_run,
        note="; ".join(notes),
    )


# --- JAX contenders ----------------------------------------------------------


def gabor_jax(phi: jax.Array, x: jax.Array) -> jax.Array:
    """Gabor model for one parameter vector ``phi`` of shape ``(2,)``."""
    u = phi[0] + U_SCALE * phi[1] * x
    return jnp.sin(u) * jnp.exp(-u * u / 8.0)


def loss_jax(phi: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """Sum-of-squares loss of one run."""
    r = gabor_jax(phi, x) - y
    return jnp.sum(r * r)


def _adam_optax() -> optax.GradientTransformation:
    return optax.adam(ADAM.lr, b1=ADAM.b1, b2=ADAM.b2, eps=ADAM.eps)


def _optax_step(
    phi: jax.Array, opt_state: optax.OptState, x: jax.Array, y: jax.Array
) -> tuple[jax.Array, optax.OptState]:
    """One Adam step on one run."""
    grad = jax.grad(loss_jax)(phi, x, y)
    updates, opt_state = _adam_optax().update(grad, opt_state, phi)
    return optax.apply_updates(phi, updates), opt_state


def _scan_fit(
    optimizer: optax.GradientTransformation,
    extra_args: bool,
    phi: jax.Array,
    x: jax.Array,
    y: jax.Array,
    steps: int,
    with_state: bool = False,
) -> tuple[jax.Array, ...]:
    """``steps`` steps of ``optimizer`` on one run with ``lax.scan``; returns (phi, loss),
    and the final optimizer state after them ``with_state``.

    With ``extra_args`` the update also gets ``value``, ``grad`` and ``value_fn``, as
    optax's line searches take them.
    """

    def body(carry, _):
        phi, state = carry
        if extra_args:
            value, grad = jax.value_and_grad(loss_jax)(phi, x, y)
            extra = {"value": value, "grad": grad, "value_fn": lambda p: loss_jax(p, x, y)}
        else:
            grad, extra = jax.grad(loss_jax)(phi, x, y), {}
        updates, state = optimizer.update(grad, state, phi, **extra)
        return (optax.apply_updates(phi, updates), state), None

    (phi, state), _ = jax.lax.scan(body, (phi, optimizer.init(phi)), None, length=steps)
    return (phi, loss_jax(phi, x, y), state) if with_state else (phi, loss_jax(phi, x, y))


def expert_scan(
    name: str,
    optimizer: optax.GradientTransformation,
    starts: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    repeat: int = 1,
    extra_args: bool = False,
) -> ContenderResult:
    """The expert's program for any optax transformation: vmap over starts of a
    scanned loop, one jit.

    ``compile_s`` is lower + compile; the first call of the compiled function is an
    untimed warm-up and the following ``repeat`` calls are timed.
    """
    one = functools.partial(_scan_fit, optimizer, extra_args)
    fit = jax.jit(jax.vmap(one, in_axes=(0, None, None, None)), static_argnums=3)
    args = jax.device_put((starts, x, y))
    compiled, compile_s = _timed(lambda: fit.lower(*args, steps).compile())
    jax.block_until_ready(compiled(*args))
    (params, losses), run_times = _timed_repeats(lambda: jax.block_until_ready(compiled(*args)), repeat)
    return _result(name, params, losses, compile_s, run_times, len(starts))


def expert_optax(
    starts: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int, repeat: int = 1
) -> ContenderResult:
    """Expert baseline: vmap over starts of a scanned ``optax.adam`` loop, one jit."""
    return expert_scan("expert_optax", _adam_optax(), starts, x, y, steps, repeat)


# --- fitjax contenders -------------------------------------------------------

FITJAX_LOSS = fitjax.least_squares(fitjax.Gabor(8.0))
"""The workload's loss in fitjax: ``Gabor(8.0)`` is ``gabor_jax`` (u = phi0 + 0.06 phi1 x,
envelope exp(-u**2 / 8)) and ``least_squares`` sums the squared residuals."""


def fitjax_adam() -> optax.GradientTransformation:
    return fitjax.adam(ADAM.lr, ADAM.b1, ADAM.b2, ADAM.eps)


def fitjax_fit(
    name: str,
    optimizer: optax.GradientTransformation,
    starts: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    repeat: int = 1,
    loss: Callable[..., Any] | None = None,
    **fit_kwargs: Any,
) -> ContenderResult:
    """``fitjax.fit`` end to end, as a user calls it (argument checks included).

    The first call traces, compiles and runs; the next ``repeat`` calls are timed.
    ``compile_s`` is the time JAX reports spending on tracing, lowering and compiling
    during the first call (:func:`_timed_first_call`), so that it does not take in the
    run time's noise, which at 10⁵ runs on a CPU is larger than the compile itself. If
    the first call compiled nothing (the engine had already built this program: its
    ``trace_count`` did not move) the note says so.
    """
    starts_d, data = jax.device_put((starts, (x, y)))

    def call() -> fitjax.FitResult:
        res = fitjax.fit(loss or FITJAX_LOSS, optimizer, starts_d, data, steps=steps, **fit_kwargs)
        return jax.block_until_ready(res)

    def traces() -> int:
        return fitjax.trace_count() + fitjax.fused.trace_count()

    before = traces()
    _, first_s, compile_s = _timed_first_call(call)
    res, run_times = _timed_repeats(call, repeat)
    note = "" if traces() > before else "program already compiled before the first call"
    if compile_s is None:  # nothing compiled, or no compile events from this jax
        compile_s = max(first_s - best(run_times.wall), 0.0)
    return _result(name, res.params, res.loss, compile_s, run_times, len(starts), note=note)


def fitjax_final(
    starts: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int, repeat: int = 1
) -> ContenderResult:
    """``fitjax.fit(least_squares(Gabor(8.0)), adam(0.05, 0.9, 0.999, 1e-8), starts, (x, y), steps=T)``."""
    return fitjax_fit("fitjax", fitjax_adam(), starts, x, y, steps, repeat)


def fitjax_record10(
    starts: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int, repeat: int = 1
) -> ContenderResult:
    """As ``fitjax`` with ``record_every=10``: loss and gradient norm every 10 steps."""
    return fitjax_fit("fitjax_record10", fitjax_adam(), starts, x, y, steps, repeat, record_every=10)


def fitjax_polynomial(
    starts: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int, repeat: int = 1
) -> ContenderResult:
    """As ``fitjax`` with the loss wrapped in ``fitjax.polynomial_math``: float32 ``sin``,
    ``cos`` and ``exp`` from fitjax's polynomials (within 1.6 ulp), which XLA's CPU
    backend vectorises, instead of the platform's functions."""
    loss = fitjax.polynomial_math(FITJAX_LOSS)
    return fitjax_fit("fitjax_polynomial", fitjax_adam(), starts, x, y, steps, repeat, loss=loss)


def fitjax_platform(
    starts: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int, repeat: int = 1
) -> ContenderResult:
    """As ``fitjax`` with the loss marked by ``fitjax.platform_math``: the platform's float32
    ``sin``, ``cos`` and ``exp``, as the expert's program evaluates them (on a CPU ``fit``
    otherwise uses fitjax's polynomials, and ``fitjax`` is ``fitjax_polynomial``)."""
    loss = fitjax.platform_math(FITJAX_LOSS)
    return fitjax_fit("fitjax_platform", fitjax_adam(), starts, x, y, steps, repeat, loss=loss)


def _fitjax_fused(name: str, backend: Any, kernel: str, *args: Any) -> ContenderResult:
    """``fitjax_fit`` with a fused ``backend``; the note says whether the kernel or the
    XLA path ran (a fallback's warning is silenced: the note carries it)."""
    fused_traces = fitjax.fused.trace_count()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fitjax.fused.FallbackWarning)
        res = fitjax_fit(name, fitjax_adam(), *args, backend=backend)
    path = kernel if fitjax.fused.trace_count() > fused_traces else "XLA path"
    return dataclasses.replace(res, note="; ".join(filter(None, [path, res.note])))


def fitjax_auto(
    starts: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int, repeat: int = 1
) -> ContenderResult:
    """As ``fitjax`` with ``backend="auto"``: the fused GPU kernel where it takes the
    problem, else the XLA path (the note says which ran)."""
    return _fitjax_fused("fitjax_auto", "auto", "fused kernel", starts, x, y, steps, repeat)


def fitjax_fast(
    starts: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int, repeat: int = 1
) -> ContenderResult:
    """As ``fitjax`` with ``backend=fitjax.fused.Fused(precision="fast")``: the fused GPU
    kernel with the GPU's approximate ``sin``/``cos``/``exp`` (GPU runs only)."""
    backend = fitjax.fused.Fused(precision="fast")
    return _fitjax_fused("fitjax_fast", backend, "fused kernel, fast functions", starts, x, y, steps, repeat)


def optax_loop(
    starts: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    repeat: int = 1,
    max_starts: int = 4,
) -> ContenderResult:
    """Python loop over starts; each start calls a jitted optax step ``steps`` times.

    Only the first ``max_starts`` starts are run; ``run_s`` is the measured
    time per start times the total number of starts. ``compile_s`` is the
    first (tracing and compiling) call of the step and loss functions.
    """
    step = jax.jit(_optax_step)
    loss = jax.jit(loss_jax)
    opt = _adam_optax()
    x_d, y_d = jax.device_put((x, y))

    def fit_one(phi0: np.ndarray) -> tuple[jax.Array, jax.Array]:
        phi = jax.device_put(phi0)
        opt_state = opt.init(phi)
        for _ in range(steps):
            phi, opt_state = step(phi, opt_state, x_d, y_d)
        return jax.block_until_ready((phi, loss(phi, x_d, y_d)))

    def warm_up() -> None:
        phi = jax.device_put(starts[0])
        jax.block_until_ready(loss(step(phi, opt.init(phi), x_d, y_d)[0], x_d, y_d))

    _, compile_s = _timed(warm_up)
    subset = starts[:max_starts]
    fitted, run_times = _timed_repeats(lambda: [fit_one(phi0) for phi0 in subset], repeat)
    params = np.stack([np.asarray(p) for p, _ in fitted])
    losses = np.stack([np.asarray(v) for _, v in fitted])
    return _result("optax_loop", params, losses, compile_s, run_times, len(starts))


# --- PyTorch contenders ------------------------------------------------------


def import_torch() -> tuple[Any, str | None]:
    """Return ``(torch, None)``, or ``(None, reason)`` when it is not importable."""
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install
        return None, f"torch not importable: {type(exc).__name__}: {exc}"
    return torch, None


def _torch_fit(
    name: str,
    starts: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    repeat: int,
    compile_model: bool,
    warmup_steps: int = 3,
    max_starts: int | None = None,
) -> ContenderResult:
    """Batched PyTorch Adam over all starts; the parameter tensor is ``(I, 2)``.

    The total loss is the sum of the per-run losses, so each run's gradient
    and Adam update are exactly those of an independent per-run Adam. A few
    warm-up steps (which trigger ``torch.compile`` when ``compile_model``) are
    timed as ``compile_s``; before each timed run of ``steps`` steps the
    parameters and the Adam state are reset in place, so compiled code is
    reused. With ``max_starts`` only that many starts are run and ``run_s`` is
    scaled to all of them.
    """
    torch, reason = import_torch()
    if torch is None:
        return ContenderResult.skipped(name, reason)
    total = len(starts)
    starts = starts[:max_starts]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    x_t = torch.as_tensor(x, device=device)
    y_t = torch.as_tensor(y, device=device)
    start_t = torch.as_tensor(starts, device=device)
    params = start_t.clone().requires_grad_(True)
    opt = torch.optim.Adam([params], lr=ADAM.lr, betas=(ADAM.b1, ADAM.b2), eps=ADAM.eps)

    def per_run_loss(phi):
        u = phi[:, 0:1] + U_SCALE * phi[:, 1:2] * x_t
        r = torch.sin(u) * torch.exp(-u * u / 8.0) - y_t
        return (r * r).sum(dim=1)

    def opt_step() -> None:
        opt.step()

    loss_fn, step_fn = per_run_loss, opt_step
    if compile_model:
        torch.compiler.reset()  # compile for this workload's shapes only
        loss_fn, step_fn = torch.compile(per_run_loss), torch.compile(opt_step)

    def train(n: int) -> None:
        for _ in range(n):
            opt.zero_grad(set_to_none=False)
            loss_fn(params).sum().backward()
            step_fn()
        sync()

    def reset_and_train() -> None:
        with torch.no_grad():
            params.copy_(start_t)
            if params.grad is not None:
                params.grad.zero_()
            for state in opt.state.values():
                for value in state.values():
                    value.zero_()  # step counter and both moments
        train(steps)

    try:
        _, compile_s = _timed(lambda: train(warmup_steps))
        _, run_times = _timed_repeats(reset_and_train, repeat)
        with torch.no_grad():
            losses = per_run_loss(params)
    except Exception as exc:  # torch.compile / inductor failures surface here
        return ContenderResult.skipped(name, f"{type(exc).__name__}: {exc}".splitlines()[0])
    note = f"torch {device.type}, {torch.get_num_threads()} threads"
    return _result(
        name,
        params.detach().cpu().numpy(),
        losses.cpu().numpy(),
        compile_s,
        run_times,
        total,
        note=note,
    )


def torch_batched_eager(
    starts: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    repeat: int = 1,
    max_starts: int | None = None,
) -> ContenderResult:
    """PyTorch eager, starts as a batch dimension, ``torch.optim.Adam``."""
    return _torch_fit(
        "torch_batched_eager", starts, x, y, steps, repeat, compile_model=False, max_starts=max_starts
    )


def torch_batched_compiled(
    starts: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    repeat: int = 1,
    max_starts: int | None = None,
) -> ContenderResult:
    """As ``torch_batched_eager`` with the loss and the Adam step ``torch.compile``d."""
    return _torch_fit(
        "torch_batched_compiled", starts, x, y, steps, repeat, compile_model=True, max_starts=max_starts
    )


# --- NumPy contender ---------------------------------------------------------


def gabor_loss_and_grad_numpy(phi: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-run loss ``(I,)`` and analytic gradient ``(I, 2)`` for ``phi`` ``(I, 2)``.

    ``df/du = exp(-u**2/8) * (cos(u) - u/4 * sin(u))``, ``du/dphi0 = 1`` and
    ``du/dphi1 = 0.06 * x``.
    """
    u = phi[:, 0:1] + np.float32(U_SCALE) * phi[:, 1:2] * x
    envelope = np.exp(-u * u / np.float32(8.0))
    sin_u = np.sin(u)
    r = sin_u * envelope - y
    dl_du = np.float32(2.0) * r * envelope * (np.cos(u) - np.float32(0.25) * u * sin_u)
    grad = np.stack([dl_du.sum(axis=1), np.float32(U_SCALE) * (dl_du @ x)], axis=1)
    return (r * r).sum(axis=1), grad


def numpy_vectorised(
    starts: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    repeat: int = 1,
    max_starts: int | None = None,
) -> ContenderResult:
    """Vectorised float32 NumPy Adam over all starts (optax's update order).

    There is nothing to compile; ``compile_s`` is one loss-and-gradient
    evaluation as a warm-up. With ``max_starts`` only that many starts are run
    and ``run_s`` is scaled to all of them.
    """
    total = len(starts)
    starts = starts[:max_starts]
    lr, b1, b2, eps = (np.float32(v) for v in (ADAM.lr, ADAM.b1, ADAM.b2, ADAM.eps))
    one = np.float32(1.0)

    def fit() -> tuple[np.ndarray, np.ndarray]:
        phi = starts.astype(np.float32, copy=True)
        mu = np.zeros_like(phi)
        nu = np.zeros_like(phi)
        for t in range(1, steps + 1):
            _, g = gabor_loss_and_grad_numpy(phi, x, y)
            mu = b1 * mu + (one - b1) * g
            nu = b2 * nu + (one - b2) * g * g
            mu_hat = mu / (one - b1 ** np.float32(t))
            nu_hat = nu / (one - b2 ** np.float32(t))
            phi = phi - lr * mu_hat / (np.sqrt(nu_hat) + eps)
        return phi, gabor_loss_and_grad_numpy(phi, x, y)[0]

    _, compile_s = _timed(lambda: gabor_loss_and_grad_numpy(starts, x, y))
    (params, losses), run_times = _timed_repeats(fit, repeat)
    return _result("numpy_vectorised", params, losses, compile_s, run_times, total)


CONTENDERS: dict[str, Callable[..., ContenderResult]] = {
    "expert_optax": expert_optax,
    "fitjax": fitjax_final,
    "fitjax_record10": fitjax_record10,
    "fitjax_polynomial": fitjax_polynomial,
    "fitjax_platform": fitjax_platform,
    "fitjax_auto": fitjax_auto,
    "fitjax_fast": fitjax_fast,
    "optax_loop": optax_loop,
    "torch_batched_eager": torch_batched_eager,
    "torch_batched_compiled": torch_batched_compiled,
    "numpy_vectorised": numpy_vectorised,
}
"""All contenders by name; ``expert_optax`` is the reference."""

SUBSET_CONTENDERS = frozenset(
    {"optax_loop", "torch_batched_eager", "torch_batched_compiled", "numpy_vectorised"}
)
"""Contenders that take ``max_starts``: they may run a subset of the starts, their
run time scaled linearly to all of them (and so noted)."""
