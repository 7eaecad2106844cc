"""Where the XLA path's time per step goes, against the expert baseline, on this device.

Usage (from the repository root)::

    python -m benchmarks.step_profile                       # I = 1e4 and 1e6 on a GPU
    python -m benchmarks.step_profile --runs 1000 --steps 200   # small, on a CPU

For the Adam workload of ``benchmarks/contenders.py`` it compiles the expert optax
program and fitjax's XLA program with several divergence-check settings, and prints
for each: the kernels (fusions and other device calls) inside the compiled step loops
(the loop of spans, and the unchecked steps inside a span), the buffer copies XLA put
in them, compile time, run time (best of ``--repeat`` after a warm-up,
``block_until_ready``) and the ratio to the expert baseline measured in the same run.

The engine checks for divergence once per span of ``fitjax.engine.prepare.CHECK_EVERY`` steps (and
replays a failed span step by step). The variants:

* ``every N``: spans of N steps; ``every 1`` is a per-step check with a freezing select
  at every step, as the engine did before checking by spans;
* ``sliced, every 1``: the same with small leaves checked element by element;
* ``none, no freeze``: no check and no freezing of a diverged run's parameters and
  optimizer state. Not a valid engine (a diverged run would not be flagged); it
  bounds what divergence handling as a whole costs.

The engine rows use ``fit``'s default ``unroll`` on this device (``internal.default_unroll``);
``--unroll`` also times the others of 1, 2, 4 and 8. ``--record K`` times the engine
recording every K steps, at the default unroll and unrolled K times, and without
records unrolled K times: each record block runs its K - 1 unrecorded steps in a loop
of its own, which costs a fixed time to start on a GPU, and unrolled K times that loop
disappears. What recording costs is the ratio of a final-values row to the record row
at the same unroll.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import time
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import contenders as c
from benchmarks import fused_bench as fb
from fitjax import internal


def _sliced_check(tree: Any) -> jax.Array:
    def leaf(x):
        flat = jnp.ravel(x)
        if flat.shape[0] > internal.SLICE_MAX:
            return jnp.all(jnp.isfinite(x))
        return functools.reduce(jnp.logical_and, [jnp.isfinite(flat[i]) for i in range(flat.shape[0])])

    return functools.reduce(jnp.logical_and, map(leaf, jax.tree.leaves(tree)), jnp.asarray(True))


def _no_check(tree: Any) -> jax.Array:
    return jnp.asarray(True)


def _new(pred: Any, new: Any, old: Any) -> Any:
    return new


def _new_state(self: Any, keep: Any, new: Any, old: Any) -> Any:
    return new


VARIANTS: dict[str, dict[str, Any]] = {
    f"every {internal.prepare_module.CHECK_EVERY} (engine)": {},
    "every 1": {"prepare.CHECK_EVERY": 1},
    "sliced, every 1": {"prepare.CHECK_EVERY": 1, "loop.all_finite": _sliced_check},
    "every 8": {"prepare.CHECK_EVERY": 8},
    "every 128": {"prepare.CHECK_EVERY": 128},
    "none, no freeze": {"loop.all_finite": _no_check, "loop.select": _new, "loop.Stepper.freeze": _new_state},
}
"""Each variant: the attributes of the engine's modules (``prepare.``, ``loop.``;
``loop.Stepper.freeze``: an attribute of one of them) it replaces while its program is traced."""

_MODULES = {"prepare": internal.prepare_module, "loop": internal.loop}


def _owner(path: str) -> tuple[Any, str]:
    """The object holding the engine attribute ``path`` and its last name; an error if it is
    gone (a variant that patched a removed name would silently time the engine itself)."""
    *outer, name = path.split(".")
    owner: Any = _MODULES[outer.pop(0)]
    for part in outer:
        owner = getattr(owner, part)
    if not hasattr(owner, name):
        raise AttributeError(f"fitjax.engine has no {path}: update step_profile.VARIANTS")
    return owner, name


_KERNEL = re.compile(r"\b(fusion|custom-call|reduce|dot|convolution|sort|scatter|gather)\(")
_COPY = re.compile(r"\bcopy(-start)?\(")


def loop_kernels(hlo: str, pattern: re.Pattern = _KERNEL) -> dict[str, int]:
    """Per compiled while loop body: how many instructions match ``pattern`` (by
    default those that launch device work; ``_COPY``: the buffer copies XLA inserted)."""
    comps: dict[str, list[str]] = {}
    name = None
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if head:
            name = head.group(1)
            comps[name] = []
        elif name is not None and line.strip() and line.strip() != "}":
            comps[name].append(line)
    out = {}
    for lines in comps.values():
        for line in lines:
            m = re.search(r"\bwhile\(.*body=%?([\w.\-]+)", line)
            if m and m.group(1) in comps:
                out[m.group(1)] = sum(1 for ln in comps[m.group(1)] if pattern.search(ln))
    return out


def timed(jitted, args, repeat: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - t0)
    hlo = compiled.as_text()
    return {
        "compile_s": compile_s,
        "run_s": min(runs),
        "kernels_per_loop": loop_kernels(hlo),
        "copies_per_loop": loop_kernels(hlo, _COPY),
    }


def expert_program(steps: int):
    """The expert baseline's program (``benchmarks/contenders.py``) for ``steps`` steps."""
    one = functools.partial(c._scan_fit, c._adam_optax(), False, steps=steps)
    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


def profile(
    runs: int,
    points: int,
    steps: int,
    repeat: int,
    unroll: bool,
    record: int | None = None,
    variants: bool = True,
) -> dict[str, Any]:
    work = c.make_workload(runs, points, steps)
    starts, x, y = jax.device_put((work.starts, work.x, work.y))
    rows: dict[str, dict[str, Any]] = {}
    rows["expert_optax"] = timed(expert_program(steps), (starts, x, y), repeat)
    for name, patches in VARIANTS.items() if variants else list(VARIANTS.items())[:1]:
        owners = {path: _owner(path) for path in patches}
        original = {path: getattr(*owners[path]) for path in patches}
        try:
            for path, fn in patches.items():
                setattr(*owners[path], fn)
            internal.program.cache_clear()
            rows[f"fitjax[{name}]"] = timed(*fb.xla_program(starts, (x, y), steps), repeat)
        finally:
            for path, fn in original.items():
                setattr(*owners[path], fn)
            internal.program.cache_clear()
    if unroll:
        for k in sorted({1, 2, 4, 8} - {internal.default_unroll()}):
            rows[f"fitjax[unroll={k}]"] = timed(*fb.xla_program(starts, (x, y), steps, unroll=k), repeat)
    if record:
        flat = f"fitjax[unroll={record}]"
        if flat not in rows and record != internal.default_unroll():
            rows[flat] = timed(*fb.xla_program(starts, (x, y), steps, unroll=record), repeat)
        for k in sorted({internal.default_unroll(), record}):
            name = f"fitjax[record {record}, unroll={k}]"
            rows[name] = timed(*fb.xla_program(starts, (x, y), steps, record_every=record, unroll=k), repeat)
    ref = rows["expert_optax"]["run_s"]
    print(f"\nAdam I={runs} N={points} T={steps} on {jax.devices()[0].device_kind}")
    head = f"{'compile s':>10} {'run s':>9} {'vs expert':>10}"
    print(f"{'program':<30} {'kernels/loop':>14} {'copies':>7} {head}")
    for name, row in rows.items():
        kernels = ",".join(str(v) for v in row["kernels_per_loop"].values()) or "-"
        copies = ",".join(str(v) for v in row["copies_per_loop"].values()) or "-"
        row["vs_expert"] = ref / row["run_s"]
        times = f"{row['compile_s']:>10.3f} {row['run_s']:>9.4f} {row['vs_expert']:>10.3f}"
        print(f"{name:<30} {kernels:>14} {copies:>7} {times}")
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    on_gpu = jax.default_backend() == "gpu"
    p.add_argument("--runs", type=int, nargs="+", default=[10_000, 1_000_000] if on_gpu else [1000])
    p.add_argument("--points", type=int, default=28)
    p.add_argument("--steps", type=int, default=1000 if on_gpu else 200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--unroll", action="store_true", help="also time the step loop unrolled 1, 2, 4 and 8 times"
    )
    p.add_argument(
        "--record",
        type=int,
        metavar="K",
        help="also time the engine recording every K steps, at the default unroll and unrolled K times "
        "(a record block's steps then run without a loop of their own)",
    )
    p.add_argument(
        "--engine-only", action="store_true", help="of the check variants, time only the engine's own"
    )
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    settings = (args.points, args.steps, args.repeat, args.unroll, args.record, not args.engine_only)
    out = {str(r): profile(r, *settings) for r in args.runs}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(jax.devices()[0]), "jax": jax.__version__, "cases": out}, f, indent=2)


if __name__ == "__main__":
    main()
