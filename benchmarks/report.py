"""What the benchmark runner prints and writes: the machine, tables, targets, the docs page.

A *record* is one case as the runner stores it (JSON-ready): ``suite`` ("adam",
"optimizers" or "landscape"), the sizes, and ``rows``, one per contender, each with
its times, throughput, memory, its ratio to the row it is compared with and the
agreement of its results with that row's.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks import contenders as c

Row = dict[str, Any]
Record = dict[str, Any]

# ----------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or what ``platform`` says elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - absent or broken: reported as None
        return None


def environment(torch_threads: int | None) -> dict[str, Any]:
    """Versions, devices and the date the figures were measured on."""
    torch, _ = c.import_torch()
    device = jax.devices()[0]
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpu_cores": cores,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "optax": _version("optax"),
        "torch": getattr(torch, "__version__", None),
        "jax_backend": jax.default_backend(),
        "jax_device": str(device),
        "device_kind": device.device_kind,
        "torch_device": None if torch is None else ("cuda" if torch.cuda.is_available() else "cpu"),
        "torch_threads": torch_threads if torch_threads else (torch.get_num_threads() if torch else None),
    }


def machine_line(env: dict[str, Any]) -> str:
    return (
        f"{env['cpu']}, {env['cpu_cores']} cores; JAX device {env['device_kind']} ({env['jax_backend']}); "
        f"jax {env['jax']}, jaxlib {env['jaxlib']}, optax {env['optax']}, torch {env['torch']} "
        f"({env['torch_device']}, {env['torch_threads']} threads), numpy {env['numpy']}, "
        f"python {env['python']}; {env['date']}"
    )


# ----------------------------------------------------------------------------- formatting


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def _memory(row: Row) -> str:
    mem = row.get("memory") or {}
    if mem.get("device_bytes") is not None:
        return _mib(mem["device_bytes"]) + ("" if mem.get("device_raised") else "≤")
    if mem.get("host_bytes") is None:
        return "-"
    return _mib(mem["host_bytes"]) + ("" if mem.get("host_exact") else "≤")


def _agree(row: Row, key: str, spec: str) -> str:
    return _fmt((row.get("agreement") or {}).get(key), spec)


# (header, width, value of a row as text); the plain-text and the markdown tables share them
Column = tuple[str, int, Callable[[Row], str]]
TIME_COLUMNS: list[Column] = [
    ("compile s", 9, lambda r: _fmt(r["compile_s"], ".3f")),
    ("run s", 9, lambda r: _fmt(r["run_s"], ".4g")),
    ("run cpu s", 9, lambda r: _fmt(r["run_cpu_s"], ".4g")),
]
RATIO_COLUMNS: list[Column] = [
    ("vs ref", 7, lambda r: _fmt(r["ratio"], ".3g")),
    ("cpu vs ref", 10, lambda r: _fmt(r["cpu_ratio"], ".3g")),
    ("peak MiB", 8, _memory),
]
AGREE_COLUMNS: list[Column] = [
    ("median rel", 10, lambda r: _agree(r, "median_rel", ".1e")),
    ("max rel", 8, lambda r: _agree(r, "max_rel", ".1e")),
    ("within", 8, lambda r: _agree(r, "frac_within", ".2%")),
]
FIT_COLUMNS: list[Column] = (
    TIME_COLUMNS
    + [
        ("init-steps/s", 12, lambda r: _fmt(r["init_steps_per_s"], ".3g")),
        ("pt-evals/s", 10, lambda r: _fmt(r["point_evals_per_s"], ".3g")),
    ]
    + RATIO_COLUMNS
    + AGREE_COLUMNS
)
GRID_COLUMNS: list[Column] = (
    TIME_COLUMNS
    + [
        ("grid pts/s", 10, lambda r: _fmt(r["grid_points_per_s"], ".3g")),
        ("pt-evals/s", 10, lambda r: _fmt(r["point_evals_per_s"], ".3g")),
    ]
    + RATIO_COLUMNS
    + AGREE_COLUMNS
)


def _columns(record: Record) -> list[Column]:
    return GRID_COLUMNS if record["suite"] == "landscape" else FIT_COLUMNS


def heading(record: Record) -> str:
    load = record.get("load_avg_1min")
    load_text = f"; load avg {load[0]:.1f} -> {load[1]:.1f}" if load else ""
    if record["suite"] == "landscape":
        return f"landscape {record['grid']}x{record['grid']} grid, N={record['points']}{load_text}"
    what = "Adam" if record["suite"] == "adam" else "other optimizers"
    head = f"{what}: I={record['runs']} N={record['points']} T={record['steps']}"
    if record["suite"] == "adam":
        head += f"; compute floor {record['floor_s']:.2e} s"
    return head + load_text


def _note(row: Row) -> str:
    return f"SKIPPED: {row['skip_reason']}" if row.get("skip_reason") else row.get("note", "")


def text_table(record: Record) -> str:
    """Plain-text table of one record, for the terminal."""
    cols = _columns(record)
    header = f"{'contender':<24}" + "".join(f" {h:>{w}}" for h, w, _ in cols) + "  ref / note"
    lines = [heading(record), header, "-" * len(header)]
    for row in record["rows"]:
        cells = "".join(f" {cell(row):>{w}}" for _, w, cell in cols)
        lines.append(f"{row['contender']:<24}{cells}  {row['reference']}  {_note(row)}")
    return "\n".join(lines)


def markdown_table(record: Record) -> str:
    """Markdown table of one record."""
    cols = _columns(record)
    lines = [
        "| contender | " + " | ".join(h for h, _, _ in cols) + " | compared with | note |",
        "|---|" + "---:|" * len(cols) + "---|---|",
    ]
    for row in record["rows"]:
        cells = " | ".join(cell(row) for _, _, cell in cols)
        note = _note(row).replace("|", "/")
        lines.append(f"| `{row['contender']}` | {cells} | `{row['reference']}` | {note} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- targets


def _row(record: Record, name: str) -> Row | None:
    row = next((r for r in record["rows"] if r["contender"] == name), None)
    return row if row is not None and not row.get("skip_reason") else None


def _spread(*rows: Row) -> float:
    """Relative spread (median/min − 1) of the repeated timings of these rows; a noise
    scale that does not grow with the number of calls, as max/min does. CPU times count
    only for runs of at least ``SHORT_S`` (below it they are not reliable)."""
    spreads = [
        float(np.median(times)) / min(times) - 1
        for row in rows
        for times in (row["run_times"], row["run_cpu_times"] if row["run_cpu_s"] >= SHORT_S else None)
        if times and min(times) > 0
    ]
    return max(spreads, default=0.0)


SHORT_S = 0.05
"""Below this many CPU seconds a run is timed by wall clock: the process CPU time of
the threads that XLA runs a short program on is not reliable at that scale."""


def _speed_ratio(ref: Row, row: Row, on_gpu: bool) -> tuple[float, str]:
    """``ref time / row time`` and which time: wall on a GPU or for short runs, else
    process CPU time (steadier than wall time on a shared CPU host)."""
    if on_gpu or min(ref["run_cpu_s"], row["run_cpu_s"]) < SHORT_S:
        return ref["run_s"] / row["run_s"], "wall"
    return ref["run_cpu_s"] / row["run_cpu_s"], "cpu"


def _both(ref: Row, row: Row) -> str:
    return f"wall {ref['run_s'] / row['run_s']:.3f}, cpu {ref['run_cpu_s'] / row['run_cpu_s']:.3f}"


def targets(records: list[Record], on_gpu: bool) -> list[dict[str, Any]]:
    """The suite's targets, each ``{"target", "status" (PASS/FAIL/SKIP), "detail"}``.

    Speed ratios compare process CPU times on a CPU host (other load on a shared
    machine inflates wall time, not CPU time) and wall times on a GPU and for runs
    shorter than ``SHORT_S``; the detail gives both. A FAIL names the spread of the
    repeated timings (median/min − 1), to set the shortfall against.
    """
    out: list[dict[str, Any]] = []

    def add(target: str, ok: bool | None, detail: str, noise: float | None = None) -> None:
        status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        if ok is False and noise is not None:
            detail += f" (repeat spread {noise:.0%})"
        out.append({"target": target, "status": status, "detail": detail})

    adam = [r for r in records if r["suite"] == "adam"]
    for rec in adam:
        size = f"I={rec['runs']} N={rec['points']}"
        expert, ours = _row(rec, "expert_optax"), _row(rec, "fitjax")
        if expert and ours:
            others = ("fitjax_auto", "fitjax_polynomial", "fitjax_fast")
            best = [ours] + [r for r in (_row(rec, name) for name in others) if r]
            fastest = max(best, key=lambda r: _speed_ratio(expert, r, on_gpu)[0])
            ratio, kind = _speed_ratio(expert, fastest, on_gpu)
            add(
                f"fitjax >= 1.0x expert at {size}",
                ratio >= 1.0,
                f"{fastest['contender']} {ratio:.3f}x expert_optax ({kind} time; {_both(expert, fastest)})",
                _spread(expert, fastest),
            )
        compiled = _row(rec, "torch_batched_compiled")
        if not on_gpu and rec["runs"] >= 10_000 and ours and compiled:
            for row in (r for r in (ours, _row(rec, "fitjax_polynomial")) if r):
                ratio, kind = _speed_ratio(compiled, row, on_gpu)
                add(
                    f"CPU, I>=1e4: {row['contender']} faster than torch compiled at {size}",
                    ratio > 1.0,
                    f"{row['contender']} {ratio:.3f}x torch_batched_compiled ({kind} time; "
                    f"{_both(compiled, row)}; XLA uses every core, {compiled['note']})",
                )
        if not on_gpu:
            for name in ("fitjax", "fitjax_record10"):
                row = _row(rec, name)
                if row and row["compile_s"] is not None:
                    add(
                        f"CPU: compile of a fit < 1 s ({name}, {size})",
                        row["compile_s"] < 1.0,
                        f"{row['compile_s']:.3f} s (trace, lowering and compile in the first call)",
                    )
        rec10 = _row(rec, "fitjax_record10")
        if ours and rec10:
            ratio, kind = _speed_ratio(rec10, ours, on_gpu)  # record time / final-only time
            cost = ratio - 1.0
            add(
                f"record_every=10 costs < 10% at {size}",
                cost < 0.10,
                f"{cost:+.1%} over final values only ({kind} time; {_both(rec10, ours)} = record / final)",
                _spread(ours, rec10),
            )
    for rec in (r for r in records if r["suite"] == "optimizers"):
        for row in rec["rows"]:
            ref = _row(rec, row["reference"])
            if row["contender"].endswith(":fitjax") and ref and not row.get("skip_reason"):
                ratio, kind = _speed_ratio(ref, row, on_gpu)
                add(
                    f"{row['contender']} >= 1.0x {row['reference']} at I={rec['runs']} N={rec['points']}",
                    ratio >= 1.0,
                    f"{ratio:.3f}x ({kind} time; {_both(ref, row)})",
                    _spread(ref, row),
                )
    headline = [r for r in adam if r["runs"] == 1_000_000 and r["points"] == 28]
    if on_gpu and headline:
        rec = headline[0]
        rows = [r for r in (_row(rec, name) for name in ("fitjax", "fitjax_auto", "fitjax_fast")) if r]
        if rows:
            best = min(rows, key=lambda r: r["run_s"])
            times_floor = best["run_s"] / rec["floor_s"]
            add(
                "GPU, I=1e6 N=28: within 2x of the compute floor",
                times_floor <= 2.0,
                f"{best['contender']} {best['run_s']:.4f} s = {times_floor:.2f}x the floor "
                f"({rec['floor_s']:.4f} s)",
            )
    else:
        why = "the case I=1e6 N=28 is not in this run" if on_gpu else "not measured here (needs a GPU)"
        add("GPU, I=1e6 N=28: within 2x of the compute floor", None, why)
    return out


def targets_text(results: list[dict[str, Any]]) -> str:
    return "\n".join(f"{t['status']}: {t['target']}: {t['detail']}" for t in results)


# ----------------------------------------------------------------------------- the docs page


def markdown_section(
    title: str,
    env: dict[str, Any],
    command: str,
    records: list[Record],
    results: list[dict[str, Any]],
    notes: list[str],
) -> str:
    """The results of one run of the suite, as Markdown (tables only, no code to run)."""
    lines = [
        f"### {title}",
        "",
        f"Measured on {machine_line(env)}, with",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    lines += [f"- {n}" for n in notes]
    lines.append("")
    suites = {
        "adam": "Adam on the Gabor fit (the workload)",
        "optimizers": "Other optimizers, fitjax against optax",
        "landscape": "Loss landscapes",
    }
    for suite, title in suites.items():
        chosen = [r for r in records if r["suite"] == suite]
        if not chosen:
            continue
        lines += [f"#### {title}", ""]
        for rec in chosen:
            lines += [f"**{heading(rec)}**", "", markdown_table(rec), ""]
    lines += ["#### Targets", "", "| status | target | measured |", "|---|---|---|"]
    lines += [f"| {t['status']} | {t['target']} | {t['detail']} |" for t in results]
    return "\n".join(lines) + "\n"


def update_page(path: str | os.PathLike, section: str, body: str) -> None:
    """Put ``body`` between the page's ``<!-- results: section -->`` markers (appended if absent)."""
    start, end = f"<!-- results: {section} -->", f"<!-- end results: {section} -->"
    page = Path(path)
    text = page.read_text() if page.exists() else "# Benchmarks\n"
    block = f"{start}\n\n{body}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    page.write_text(text)
