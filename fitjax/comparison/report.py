"""A study's outputs: ``results.csv``, ``runs.npz``, ECDF and sensitivity figures, and one
self-contained report, as Markdown (``report.md``, figures beside it) and as a single HTML
file with the figures embedded (``report.html``).

A report is a list of blocks (headings, paragraphs, tables, figures) rendered both ways,
so the two say the same thing.
"""

from __future__ import annotations

import base64
import html
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fitjax.comparison import measures as m
from fitjax.comparison.study import Cell, Study

Block = tuple[str, Any]  # ("h1"|"h2"|"p"|"table"|"img"|"code", content)


def machine() -> str:
    """One line naming the machine: CPU or device, cores, Python and JAX versions."""
    import os

    import jax

    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", dev.platform)
    return (
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, "
        f"JAX {jax.__version__} on {dev.platform} ({kind}), Python {platform.python_version()}"
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        v = float(v)
        if np.isnan(v):
            return "–"
        if np.isinf(v):
            return "∞"
        return f"{v:.3g}"
    return str(v)


# ----------------------------------------------------------------------------- figures


def _best_cells(study: Study, problem: str, delta: float | None = None) -> list[Cell]:
    best = {b["optimizer"]: b for b in study.best_settings(delta) if b["problem"] == problem}
    out = []
    for c in study.cells:
        b = best.get(c.optimizer)
        if c.problem == problem and b is not None and c.label == b["best"]:
            out.append(c)
            best.pop(c.optimizer)
    return out


def ecdf_figure(study: Study, problems: Sequence[str], path: Path, unit: str = "steps") -> Path:
    """ECDF of runtimes over starts × targets, one line per optimizer at its best setting,
    pooled over ``problems`` (one problem: that problem's figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    pooled: dict[str, list[np.ndarray]] = {}
    top = 1.0
    for prob in problems:
        for c in _best_cells(study, prob):
            pooled.setdefault(c.label if len(problems) == 1 else c.optimizer, []).append(
                study.runtimes(c, unit)
            )
            top = max(top, float(c.steps[-1] * (c.evals_per_step.max() if unit == "evaluations" else 1)))
    budgets = np.unique(np.concatenate([[0.0], np.geomspace(1, top, 200)]))
    for label, rts in sorted(pooled.items()):
        rt = np.concatenate([r.ravel() for r in rts])
        ax.step(np.maximum(budgets, 1), m.ecdf(rt, budgets), where="post", label=label)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"budget ({unit})")
    ax.set_ylabel("share of (start, target) pairs reached")
    title = problems[0] if len(problems) == 1 else f"{len(problems)} problems pooled"
    ax.set_title(f"ECDF of runtimes, {len(study.deltas)} targets: {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sensitivity_figure(
    study: Study, problem: str, path: Path, delta: float, hyperparam: str = "learning_rate"
) -> Path | None:
    """Every measure of :meth:`Study.profile` against ``hyperparam``, one line per optimizer
    whose grid varies it (others at their best values): success rate to the target of gap
    ``delta`` with Wilson 95% intervals, aRT and the median final gap; None if none varies it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = {
        opt: study.profile(prob, opt, hyperparam, delta)
        for prob, opt in study.pairs()
        if prob == problem and hyperparam in study.swept(prob, opt)
    }
    if not profiles:
        return None
    j = int(np.argmin(np.abs(np.log10(study.deltas) - np.log10(delta))))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, prof in sorted(profiles.items()):
        x = prof["values"]
        axes[0].plot(x, prof["success"], marker="o", label=name)
        axes[0].fill_between(x, prof["success_lo"], prof["success_hi"], alpha=0.15)
        axes[1].plot(x, np.where(np.isfinite(prof["aRT"]), prof["aRT"], np.nan), marker="o", label=name)
        axes[2].plot(x, np.where(np.isfinite(prof["median_gap"]), prof["median_gap"], np.nan), marker="o")
    log_x = all(np.all(p["values"] > 0) for p in profiles.values())
    labels = (f"success rate (gap ≤ {study.deltas[j]:.0e})", "aRT (steps)", "median final gap")
    for ax, label in zip(axes, labels, strict=True):
        ax.set_xscale("log" if log_x else "linear")
        ax.set_xlabel(hyperparam.replace("_", " "))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-0.02, 1.02)
    if any(np.isfinite(p["aRT"]).any() for p in profiles.values()):
        axes[1].set_yscale("log")
    if any(np.isfinite(p["median_gap"]).any() for p in profiles.values()):
        axes[2].set_yscale("symlog", linthresh=1e-8)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Sensitivity to {hyperparam.replace('_', ' ')}: {problem} (other settings at their best)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- rendering


def render_markdown(blocks: list[Block]) -> str:
    """Markdown text of the blocks; figures are linked by their file names."""
    out = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + content)
        elif kind == "p":
            out.append(content)
        elif kind == "code":
            out.append("```\n" + content + "\n```")
        elif kind == "table":
            header, rows = content
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "---|" * len(header))
            out += ["| " + " | ".join(_fmt(v).replace("|", "/") for v in r) + " |" for r in rows]
        elif kind == "img":
            path, alt = content
            out.append(f"![{alt}]({Path(path).name})")
        out.append("")
    return "\n".join(out)


def render_html(blocks: list[Block], title: str) -> str:
    """One HTML page of the blocks, every figure embedded as a base64 PNG."""
    body = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(content)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(content)}</p>")
        elif kind == "code":
            body.append(f"<pre>{html.escape(content)}</pre>")
        elif kind == "table":
            header, rows = content
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            trs = "".join(
                "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
        elif kind == "img":
            path, alt = content
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>')
    style = (
        "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}pre{background:#f4f4f4;padding:0.5em;overflow-x:auto}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# ----------------------------------------------------------------------------- the study report


def study_blocks(study: Study, out: Path, delta: float = 1e-6) -> list[Block]:
    """The report's sections for a study: setup, references, best settings, sensitivity,
    the per-cell summary table and the figures (written into ``out``)."""
    j = int(np.argmin(np.abs(np.log10(study.deltas) - np.log10(delta))))
    d = float(study.deltas[j])
    return (
        _setup_blocks(study)
        + _best_blocks(study)
        + _cell_blocks(study, d)
        + _sensitivity_blocks(study, d)
        + _figure_blocks(study, out, d)
    )


def _setup_blocks(study: Study) -> list[Block]:
    cfg = study.config
    return [
        ("h2", "Setup"),
        (
            "p",
            f"{len(study.problems)} problem(s), {len({c.optimizer for c in study.cells})} optimizer(s), "
            f"{len(study.cells)} (problem, optimizer, setting) cells, {cfg['starts']} starts each, "
            f"{cfg['steps']} steps, loss recorded every {cfg['record_every']} steps (runtimes are resolved "
            "to that interval). Targets: reference + Δ for Δ in "
            + ", ".join(f"{d:.0e}" for d in study.deltas)
            + ".",
        ),
        ("h2", "Problems and references"),
        (
            "table",
            (
                ["problem", "reference", "source", "description"],
                [[p, *study.reference(p), study.problems[p].description] for p in study.problems],
            ),
        ),
        (
            "p",
            "Where a problem's minimum is not known, targets are measured from the best loss any run "
            "of this study reached on it ('best found'), so success there means 'as good as the best run'.",
        ),
    ]


def _best_blocks(study: Study) -> list[Block]:
    header = ["problem", "optimizer", "best setting", "target gap", "aRT (steps)", "success", "tuning budget"]
    rows = [
        [
            b["problem"],
            b["optimizer"],
            b["best"],
            f"{b['delta']:.0e}",
            b["aRT"],
            b["success"],
            b["tuning_budget"],
        ]
        for b in study.best_settings()
    ]
    return [
        ("h2", "Best setting per optimizer"),
        (
            "p",
            "Least aRT (COCO's average runtime with restarts: steps spent by all runs per success) to the "
            "smallest target gap any of its settings reached; ties by success rate. The tuning budget is "
            "what the whole grid spent.",
        ),
        ("table", (header, rows)),
    ]


def _cell_blocks(study: Study, d: float) -> list[Block]:
    t = f"{d:.0e}"
    rows = [
        [
            r["problem"],
            r["setting"],
            f"{r[f'success_{t}']:.3f} [{r[f'success_{t}_lo']:.3f}, {r[f'success_{t}_hi']:.3f}]",
            r[f"aRT_steps_{t}"],
            f"{_fmt(r['gap_median'])} [{_fmt(r['gap_median_lo'])}, {_fmt(r['gap_median_hi'])}]",
            r["gap_q90"],
            r["share_diverged"],
        ]
        for r in study.table()
    ]
    return [
        ("h2", f"Every cell at the target gap {t}"),
        (
            "p",
            "Success rate with its Wilson 95% interval; aRT in steps; the median final gap (final loss minus "
            "reference, diverged runs counted as ∞) with a bootstrap 95% interval (1000 resamples, seed 0); "
            "the 90% quantile of the gap; the share of runs that diverged. results.csv has every target.",
        ),
        ("table", (["problem", "setting", "success", "aRT", "median gap", "q90 gap", "diverged"], rows)),
    ]


def sensitivity_rows(study: Study, delta: float, factor: float = 2.0) -> list[list[Any]]:
    """One row per (problem, optimizer, swept hyperparameter): the values tried, and at each
    value (others at the pair's best setting) the success rate to the target of gap ``delta``,
    the aRT and the median final gap, then the width in decades of the range whose success
    rate is within ``factor`` of the best (– where a value is not positive)."""
    rows: list[list[Any]] = []
    for prob, opt in study.pairs():
        for hp in study.swept(prob, opt):
            prof = study.profile(prob, opt, hp, delta)
            width = study.sensitivity(prob, opt, delta, hp, factor)[0]
            rows.append(
                [
                    prob,
                    opt,
                    hp,
                    " / ".join(f"{v:.3g}" for v in prof["values"]),
                    " / ".join(f"{v:.2f}" for v in prof["success"]),
                    " / ".join(_fmt(v) for v in prof["aRT"]),
                    " / ".join(_fmt(v) for v in prof["median_gap"]),
                    width,
                ]
            )
    return rows


def _sensitivity_blocks(study: Study, d: float) -> list[Block]:
    header = ["problem", "optimizer", "hyperparameter", "values", "success", "aRT", "median gap", "width"]
    return [
        ("h2", "Sensitivity to each hyperparameter"),
        (
            "p",
            f"For each hyperparameter a grid varies, its values in increasing order with, at each, the "
            f"success rate (gap ≤ {d:.0e}), the aRT in steps and the median final gap, the other "
            "hyperparameters held at the pair's best setting. Width: in decades, of the range around the "
            "best value whose success rate is within a factor 2 of the best rate (for the learning rate, "
            "how far it can be off and still work).",
        ),
        ("table", (header, sensitivity_rows(study, d))),
    ]


def _figure_blocks(study: Study, out: Path, d: float) -> list[Block]:
    blocks: list[Block] = [("h2", "Figures")]
    names = list(study.problems)
    for prob in names:
        blocks.append(("img", (ecdf_figure(study, [prob], out / f"ecdf_{prob}.png"), f"ECDF {prob}")))
        swept = {hp for (p, o) in study.pairs() if p == prob for hp in study.swept(p, o)}
        for hp in sorted(swept, key=lambda h: (h != "learning_rate", h)):
            suffix = "" if hp == "learning_rate" else f"_{hp}"
            sens = sensitivity_figure(study, prob, out / f"sensitivity_{prob}{suffix}.png", d, hp)
            if sens is not None:
                blocks.append(("img", (sens, f"sensitivity {prob} {hp}")))
    if len(names) > 1:
        blocks.append(("img", (ecdf_figure(study, names, out / "ecdf_all.png"), "ECDF, all problems")))
    return blocks


def write_outputs(
    study: Study,
    out: str | Path,
    *,
    title: str = "fitjax compare: optimizer study",
    command: str | None = None,
    extra: list[Block] | None = None,
    delta: float = 1e-6,
) -> dict[str, Path]:
    """Write ``results.csv``, ``runs.npz``, the figures, ``report.md`` and ``report.html`` into ``out``.

    ``extra`` blocks (e.g. the lecture's claims table) come first after the title."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": study.to_csv(out / "results.csv"), "npz": study.save(out / "runs.npz")}
    head: list[Block] = [("h1", title)]
    if command:
        head.append(("p", f"Command: {command}"))
    head.append(("p", f"Machine: {machine()}"))
    blocks = head + (extra or []) + study_blocks(study, out, delta=delta)
    blocks.append(
        (
            "p",
            "Files: results.csv (one row per problem × optimizer × setting, every measure at every target), "
            "runs.npz (every run's recorded loss curve, divergence step and evaluations per step; "
            "read it with fitjax.comparison.load), the ECDF and sensitivity figures (PNG), this report.",
        )
    )
    (out / "report.md").write_text(render_markdown(blocks))
    (out / "report.html").write_text(render_html(blocks, title))
    paths["md"], paths["html"] = out / "report.md", out / "report.html"
    return paths
