"""``fitjax demo``: run the lecture's experiments (:mod:`fitjax.lecture.experiments`) and write
their figures, ``summary.json``, ``report.md`` and ``metadata.json``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import jax

from fitjax.cli.outputs import _metadata, _out_dir, _write_json
from fitjax.cli.progress import _in_background, _progress
from fitjax.lecture import experiments, recorded


def settings(args: argparse.Namespace) -> experiments.Settings:
    """The experiments' settings from the command line."""
    return experiments.Settings(
        grid=args.grid,
        basin_grid=args.basin_grid,
        basin_steps=args.basin_steps,
        runs=args.runs,
        seed=args.seed,
        figure_format=args.format,
    )


def report_markdown(sections: list[str], seconds: float, left: list[str], has_search: bool) -> str:
    """``report.md``: a header, the experiments' sections and the lecture's claims (recorded)."""
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
    return report + "\n" + recorded.claims_markdown()


def write_demo(
    out: Path, args: argparse.Namespace, summary: dict, sections: list[str], seconds: float, left: list[str]
) -> None:
    """Writes summary.json, report.md and metadata.json for the experiments in ``summary``;
    ``left`` names those that did not finish (an interrupted demo)."""
    has_search = experiments.line_search_optimizer() is not None
    meta = {
        "seconds": seconds,
        "jax_backend": jax.default_backend(),
        "line_search": has_search,
        "seed": args.seed,
        "complete": not left,
        "not_finished": left,
    }
    _write_json(out / "summary.json", {"experiments": summary, **meta})
    (out / "report.md").write_text(report_markdown(sections, seconds, left, has_search))
    _write_json(out / "metadata.json", _metadata(args, None, complete=not left, seconds=seconds))


def console_lines(summary: dict[str, Any], n_sections: int, seconds: float, out: Path) -> list[str]:
    """The lines ``fitjax demo`` prints: the main numbers of each experiment."""
    g = summary["gabor"]
    mn = summary["momentum_vs_nesterov"]
    lines = [
        f"fitjax demo: {n_sections} experiments in {seconds:.1f} s, written to {out}/",
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
    return lines


def _demo(args: argparse.Namespace) -> int:
    """``fitjax demo``: every experiment in turn, its figures drawn as it finishes; returns the exit code."""
    out = _out_dir(args.out, "demo", args.force)
    s = settings(args)
    names = [name for name, _ in experiments.EXPERIMENTS]
    start_time = time.perf_counter()
    summary: dict[str, Any] = {}
    sections: list[str] = []
    finished: list[str] = []
    bar = _progress(len(names), "demo", unit="experiment", quiet=args.quiet)

    def work() -> None:
        for name, run in experiments.EXPERIMENTS:
            got = run(s)
            if got is not None:
                for figure in got.figures:
                    figure.draw(out, s.figure_format)
                sections.append(got.markdown)  # before the summary: an interrupt keeps both or neither
                summary[name] = got.numbers
            finished.append(name)

    def poll() -> None:
        k = len(finished)
        if k < len(names):
            bar.set_description_str(f"demo: {names[k]}")
        bar.update(max(0, k - bar.n))

    def keep() -> str:
        bar.close()
        done = dict(summary)  # what had finished when Ctrl-C came
        left = [name for name in names if name not in finished]
        write_demo(out, args, done, list(sections[: len(done)]), time.perf_counter() - start_time, left)
        return (
            f"kept the {len(done)} experiments that finished ({', '.join(done) or 'none'}) in "
            f"{out}/summary.json and report.md; rerun the command for the rest"
        )

    args.keep = keep
    _in_background(work, poll)
    bar.close()
    seconds = time.perf_counter() - start_time
    write_demo(out, args, summary, sections, seconds, [])
    print("\n".join(console_lines(summary, len(sections), seconds, out)))
    return 0
