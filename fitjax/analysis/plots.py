"""Figures: landscapes with trajectories, surfaces, basin maps and loss curves.

Every function takes arrays and a path, writes one figure and returns the path as a
:class:`pathlib.Path`. The format follows the extension: ``.png`` or ``.svg``. A
figure's size in pixels is ``size × dpi`` (default 6.4 × 4.8 inches at 100 dpi, so
640 × 480 pixels).

matplotlib is an optional dependency (``pip install fitjax[plot]``): it is imported
when a figure is drawn, never when ``fitjax`` is imported, and only through its
object-oriented API with the Agg canvas, so drawing is headless and leaves
matplotlib's global state (pyplot, the backend) alone.

Grids follow :func:`fitjax.loss_grid`: ``loss[i, j]`` is the value at
``(x[i], y[j])``, with ``x`` drawn horizontally.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

__all__ = [
    "FORMATS",
    "PATH_COLORS",
    "plot_basin_pages",
    "plot_basin_panels",
    "plot_basins",
    "plot_fits",
    "plot_landscape",
    "plot_landscape_panels",
    "plot_loss_curves",
    "plot_surface",
]  # draw_paths and draw_surface are the figures' parts, shared by them

FORMATS = (".png", ".svg")


class _Style(TypedDict):
    marker: str
    color: str
    edgecolor: str
    s: float


_KIND_STYLE: dict[str, _Style] = {
    "minimum": {"marker": "*", "color": "white", "edgecolor": "black", "s": 140},
    "saddle": {"marker": "X", "color": "orange", "edgecolor": "black", "s": 70},
    "maximum": {"marker": "^", "color": "red", "edgecolor": "black", "s": 60},
    "degenerate": {"marker": "o", "color": "grey", "edgecolor": "black", "s": 40},
}


def _figure(size: tuple[float, float], dpi: int, path: Any) -> tuple[Any, Path]:
    out = Path(os.fspath(path))
    if out.suffix.lower() not in FORMATS:
        raise ValueError(f"path must end in one of {FORMATS} (the format follows it), got {str(out)!r}")
    if not out.parent.is_dir():
        raise ValueError(f"the folder of path {str(out)!r} does not exist; create it first")
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"size must be (width, height) in inches, both > 0, got {size}")
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError('plotting needs matplotlib: pip install "fitjax[plot]"') from err
    return Figure(figsize=size, dpi=dpi, layout="constrained"), out


def _save(fig: Any, out: Path, dpi: int) -> Path:
    fig.savefig(out, dpi=dpi, format=out.suffix[1:].lower())
    return out


def _grid(x: Any, y: Any, z: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, z = (
        np.asarray(x, dtype=float).ravel(),
        np.asarray(y, dtype=float).ravel(),
        np.asarray(z, dtype=float),
    )
    if z.shape != (x.size, y.size):
        raise ValueError(f"the grid must have shape (len(x), len(y)) = {(x.size, y.size)}, got {z.shape}")
    return x, y, z


def _stride(n: int, most: int) -> int:
    return max(1, -(-n // most))


def _levels(z: np.ndarray, n: int, log: bool) -> np.ndarray:
    finite = z[np.isfinite(z)]
    if finite.size == 0 or finite.min() == finite.max():
        return np.array([])
    if log and finite.min() > 0:
        return np.geomspace(finite.min(), finite.max(), n)
    return np.linspace(finite.min(), finite.max(), n)


PATH_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
"""The colours of trajectories, in order, and of loss curves in the same order: the k-th
run of a landscape figure and the k-th curve of its loss figure share a colour."""


def draw_paths(
    ax: Any,
    trajectories: Sequence[Any] | None,
    labels: Sequence[str] | None,
    box: tuple[float, float, float, float] | None = None,
    colors: Sequence[str] = PATH_COLORS,
) -> bool:
    """Draw the paths (start: circle, end: square); True when some path ends outside ``box``.

    An end outside ``box`` = ``(x0, x1, y0, y1)`` is drawn as a hollow square on the
    box's edge, where the path leaves it, and its label says so."""
    if not trajectories:
        return False
    names: list[str | None] = list(labels) if labels is not None else [None] * len(trajectories)
    if len(names) != len(trajectories):
        raise ValueError(
            f"labels must name each trajectory: {len(trajectories)} trajectories, {len(names)} labels"
        )
    outside = False
    for k, (path, label) in enumerate(zip(trajectories, names, strict=True)):
        p = np.asarray(path, dtype=float)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"trajectories[{k}] must have shape (steps, 2), got {p.shape}")
        color = colors[k % len(colors)]
        end = p[-1]
        leaves = box is not None and not (box[0] <= end[0] <= box[1] and box[2] <= end[1] <= box[3])
        if leaves and label is not None:
            label = f"{label}, ends outside"
        ax.plot(p[:, 0], p[:, 1], "-", color=color, lw=1.5, marker="o", ms=2.5, label=label)
        ax.plot(p[:1, 0], p[:1, 1], "o", color=color, ms=6, mec="black", zorder=6)
        if leaves:
            assert box is not None  # a path leaves only a given box
            outside = True
            edge = (np.clip(end[0], box[0], box[1]), np.clip(end[1], box[2], box[3]))
            ax.plot(*edge, "s", mfc="white", mec=color, mew=2, ms=8, clip_on=False, zorder=6)
        else:
            ax.plot(end[:1], end[1:], "s", color=color, ms=6, mec="black", zorder=6)
    return outside


def _marker_key(kinds: Sequence[str], paths: bool, outside: bool) -> list[Any]:
    """Legend entries for the markers drawn: start and end of a path, each kind of critical point."""
    from matplotlib.lines import Line2D

    handles = []
    if paths:
        handles.append(Line2D([], [], ls="", marker="o", mfc="lightgrey", mec="black", ms=6, label="start"))
        handles.append(Line2D([], [], ls="", marker="s", mfc="lightgrey", mec="black", ms=6, label="end"))
        if outside:
            handles.append(
                Line2D(
                    [],
                    [],
                    ls="",
                    marker="s",
                    mfc="white",
                    mec="grey",
                    mew=2,
                    ms=7,
                    label="end outside (drawn at the edge)",
                )
            )
    for kind in dict.fromkeys(kinds):
        style = _KIND_STYLE.get(kind, _KIND_STYLE["degenerate"])
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker=style["marker"],
                mfc=style["color"],
                mec=style["edgecolor"],
                ms=np.sqrt(style["s"]),
                label=kind,
            )
        )
    return handles


def _legend_below(fig: Any, ax: Any, handles: list[Any]) -> None:
    """One legend under the plot (it hides no data): the paths' labels, then the marker key."""
    entries = list(ax.get_legend_handles_labels()[0]) + handles
    if entries:
        ncols = min(3, len(entries))
        fig.legend(handles=entries, loc="outside lower center", ncols=ncols, fontsize="x-small")


def _draw_points(ax: Any, points: Any, kinds: Sequence[str] | None) -> list[str]:
    """Mark ``points`` by kind; returns the kinds drawn, in order."""
    if points is None:
        return []
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    kinds = ["minimum"] * len(pts) if kinds is None else list(kinds)
    for kind in dict.fromkeys(kinds):
        sel = np.array([k == kind for k in kinds], dtype=bool)
        style = _KIND_STYLE.get(kind, _KIND_STYLE["degenerate"])
        ax.scatter(
            pts[sel, 0],
            pts[sel, 1],
            marker=style["marker"],
            c=style["color"],
            edgecolors=style["edgecolor"],
            s=style["s"],
            zorder=5,
            label=None,
        )
    return list(dict.fromkeys(kinds))


def plot_landscape(
    path: Any,
    x: Any,
    y: Any,
    loss: Any,
    *,
    trajectories: Sequence[Any] | None = None,
    labels: Sequence[str] | None = None,
    points: Any = None,
    point_kinds: Sequence[str] | None = None,
    log: bool = False,
    levels: int = 20,
    title: str | None = None,
    xlabel: str = "φ0",
    ylabel: str = "φ1",
    size: tuple[float, float] = (6.4, 4.8),
    dpi: int = 100,
) -> Path:
    """A heatmap of ``loss`` over ``x × y`` with contours, trajectories and critical points.

    Args:
      path: the file to write (``.png`` or ``.svg``).
      x, y, loss: the grid, ``loss[i, j]`` at ``(x[i], y[j])``.
      trajectories: paths to draw, each of shape ``(steps, 2)`` (start: circle, end: square).
      labels: a legend entry per trajectory.
      points, point_kinds: points ``(K, 2)`` to mark, and their kinds (``"minimum"``,
        ``"saddle"``, ``"maximum"``), e.g. from :func:`fitjax.critical_points`.
      log: colour and contour on a logarithmic scale (for losses spanning decades).

    Example:
      >>> import tempfile, pathlib, numpy as np
      >>> from fitjax.analysis import plots
      >>> x, y = np.linspace(-1, 1, 30), np.linspace(-1, 1, 20)
      >>> z = x[:, None] ** 2 + 3 * y[None, :] ** 2
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     out = plots.plot_landscape(pathlib.Path(tmp) / "bowl.png", x, y, z,
      ...                                trajectories=[np.array([[0.9, 0.9], [0.5, 0.1], [0.0, 0.0]])])
      ...     out.name, out.stat().st_size > 0
      ('bowl.png', True)
    """
    fig, out = _figure(size, dpi, path)
    x, y, z = _grid(x, y, loss)
    ax = fig.add_subplot()
    image = _draw_landscape(ax, x, y, z, log, levels)
    _colorbar(fig, image, ax)
    outside = draw_paths(ax, trajectories, labels, box=(x[0], x[-1], y[0], y[-1]))
    kinds = _draw_points(ax, points, point_kinds)
    _legend_below(fig, ax, _marker_key(kinds, bool(trajectories), outside))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return _save(fig, out, dpi)


def _colorbar(fig: Any, image: Any, ax: Any) -> None:
    bar = fig.colorbar(image, ax=ax, label="loss")
    if image.norm.__class__.__name__ == "LogNorm":
        _readable_log_ticks(bar.ax.yaxis, image.norm.vmin, image.norm.vmax)


def _draw_landscape(ax: Any, x: np.ndarray, y: np.ndarray, z: np.ndarray, log: bool, levels: int) -> Any:
    """The heatmap and contours of ``z`` on ``ax``, limited to the grid; returns the image."""
    norm = None
    finite = z[np.isfinite(z)]
    if log and finite.size and finite.min() > 0:
        from matplotlib.colors import LogNorm

        norm = LogNorm(finite.min(), finite.max())
    image = ax.imshow(
        z.T,
        origin="lower",
        extent=(x[0], x[-1], y[0], y[-1]),
        aspect="auto",
        cmap="viridis",
        norm=norm,
        interpolation="nearest",
    )
    lv = _levels(z, levels, log)
    if lv.size > 1 and min(z.shape) > 1:
        s0, s1 = _stride(x.size, 400), _stride(y.size, 400)
        ax.contour(x[::s0], y[::s1], z[::s0, ::s1].T, levels=lv, colors="white", linewidths=0.4, alpha=0.6)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y[0], y[-1])
    return image


def plot_landscape_panels(
    path: Any,
    x: Any,
    y: Any,
    loss: Any,
    trajectories: Sequence[Any],
    labels: Sequence[str],
    *,
    log: bool = False,
    levels: int = 20,
    title: str | None = None,
    xlabel: str = "φ0",
    ylabel: str = "φ1",
    size: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """The landscape of :func:`plot_landscape` once per trajectory, side by side, so that no
    path hides another; the k-th panel's path takes the k-th of :data:`PATH_COLORS` and is
    titled by ``labels[k]``.

    Example:
      >>> import tempfile, pathlib, numpy as np
      >>> from fitjax.analysis import plots
      >>> x, y = np.linspace(-1, 1, 30), np.linspace(-1, 1, 20)
      >>> z = x[:, None] ** 2 + 3 * y[None, :] ** 2
      >>> paths = [np.array([[0.9, 0.9], [0.0, 0.0]]), np.array([[0.9, 0.9], [0.1, 0.0]])]
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     out = plots.plot_landscape_panels(pathlib.Path(tmp) / "two.png", x, y, z, paths, ["a", "b"])
      ...     out.name, out.stat().st_size > 0
      ('two.png', True)
    """
    trajectories, labels = list(trajectories), list(labels)
    if not trajectories or len(labels) != len(trajectories):
        raise ValueError(
            f"give one label per trajectory and at least one: {len(trajectories)} trajectories, "
            f"{len(labels)} labels"
        )
    n = len(trajectories)
    fig, out = _figure(size or (3.6 * n + 0.8, 4.2), dpi, path)
    x, y, z = _grid(x, y, loss)
    axes = fig.subplots(1, n, sharex=True, sharey=True, squeeze=False)[0]
    outside = False
    for k, ax in enumerate(axes):
        image = _draw_landscape(ax, x, y, z, log, levels)
        color = PATH_COLORS[k % len(PATH_COLORS)]
        leaves = draw_paths(ax, [trajectories[k]], None, box=(x[0], x[-1], y[0], y[-1]), colors=[color])
        outside |= leaves
        ax.set_title(labels[k] + (" (ends outside)" if leaves else ""), color=color, fontsize="medium")
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel(ylabel)
    _colorbar(fig, image, list(axes))
    _legend_below(fig, axes[0], _marker_key([], True, outside))
    if title:
        fig.suptitle(title)
    return _save(fig, out, dpi)


def plot_surface(
    path: Any,
    x: Any,
    y: Any,
    loss: Any,
    *,
    title: str | None = None,
    xlabel: str = "φ0",
    ylabel: str = "φ1",
    zlabel: str = "loss",
    max_points: int = 150,
    size: tuple[float, float] = (6.4, 4.8),
    dpi: int = 100,
) -> Path:
    """A 3-D surface of ``loss`` over ``x × y`` (grids larger than ``max_points`` per axis are strided)."""
    fig, out = _figure(size, dpi, path)
    x, y, z = _grid(x, y, loss)
    draw_surface(fig, x, y, z, max_points, xlabel, ylabel, zlabel)
    if title:
        fig.axes[0].set_title(title)
    return _save(fig, out, dpi)


def draw_surface(
    fig: Any,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    max_points: int,
    xlabel: str,
    ylabel: str,
    zlabel: str,
) -> Any:
    from matplotlib.ticker import MaxNLocator

    s0, s1 = _stride(x.size, max_points), _stride(y.size, max_points)
    xs, ys, zs = x[::s0], y[::s1], z[::s0, ::s1]
    ax = fig.add_subplot(projection="3d")
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    ax.plot_surface(
        gx, gy, np.where(np.isfinite(zs), zs, np.nan), cmap="viridis", linewidth=0, antialiased=True
    )
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):  # few enough ticks that their labels do not touch
        axis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_zlabel(zlabel, labelpad=12)  # clear of the tick labels
    ax.set_box_aspect(None, zoom=0.88)  # room for the labels inside the figure
    return ax


_LABEL_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
    "#9edae5",
)


def _draw_labels(
    ax: Any, x: np.ndarray, y: np.ndarray, lab: np.ndarray, minima: Any, title: str | None
) -> None:
    from matplotlib.colors import BoundaryNorm, ListedColormap

    lab = lab.astype(int)
    k = max(int(lab.max()) + 1, 1)
    # -2 (unsettled) light grey, -1 (diverged) black, then one colour per minimum
    cmap = ListedColormap(["lightgrey", "black"] + [_LABEL_COLORS[i % len(_LABEL_COLORS)] for i in range(k)])
    norm = BoundaryNorm(np.arange(-2.5, k), cmap.N)
    ax.imshow(
        lab.T,
        origin="lower",
        extent=(x[0], x[-1], y[0], y[-1]),
        aspect="auto",
        cmap=cmap,
        norm=norm,
        interpolation="nearest",
    )
    minima_count = len(np.unique(lab[lab >= 0]))
    default = (
        f"basins ({minima_count} minima, {int(np.sum(lab == -1))} starts diverged, "
        f"{int(np.sum(lab == -2))} unsettled)"
    )
    ax.set_title(title or default, fontsize="medium")
    if minima is not None:
        m = np.asarray(minima, dtype=float).reshape(-1, 2)
        ax.scatter(m[:, 0], m[:, 1], marker="*", c="white", edgecolors="black", s=120, zorder=5)
        ax.set_xlim(x[0], x[-1])
        ax.set_ylim(y[0], y[-1])


def _label_color(label: int) -> str:
    return _LABEL_COLORS[label % len(_LABEL_COLORS)]


def _basin_key(fig: Any, present: Any, key: Sequence[str] | None, most: int = 24) -> None:
    """A legend of the basin colours on the figure: one entry per minimum present
    (``key[i]`` names minimum ``i``), then the unsettled grey and the diverged black."""
    from matplotlib.patches import Patch

    present = sorted(int(v) for v in np.unique(np.asarray(present)))
    minima = [v for v in present if v >= 0]
    handles = []
    for v in minima[:most]:
        text = key[v] if key is not None and v < len(key) else ""
        handles.append(
            Patch(facecolor=_label_color(v), edgecolor="black", label=f"minimum {v} {text}".strip())
        )
    if len(minima) > most:
        handles.append(
            Patch(facecolor="white", edgecolor="white", label=f"… {len(minima) - most} more minima")
        )
    handles.append(Patch(facecolor="lightgrey", edgecolor="black", label="unsettled (not at a minimum)"))
    handles.append(Patch(facecolor="black", edgecolor="black", label="diverged"))
    fig.legend(
        handles=handles,
        loc="outside right center",
        fontsize="x-small",
        title="basin of",
        title_fontsize="small",
        frameon=False,
    )


def plot_basins(
    path: Any,
    x: Any,
    y: Any,
    labels: Any,
    *,
    minima: Any = None,
    converged_step: Any = None,
    key: Sequence[str] | None = None,
    title: str | None = None,
    xlabel: str = "φ0",
    ylabel: str = "φ1",
    size: tuple[float, float] = (6.4, 4.8),
    dpi: int = 100,
) -> Path:
    """A map of the minimum each start reached (one colour per label, diverged runs black,
    unsettled runs light grey).

    Args:
      labels: ``labels[i, j]`` for the start ``(x[i], y[j])``, as in :class:`fitjax.BasinMap`.
      minima: points ``(K, 2)`` to mark (the minima, in the same coordinates).
      converged_step: if given, a second panel maps the step at which each run
        converged (diverged runs, marked −1, left blank).
      key: if given, a legend of the colours, ``key[i]`` describing minimum ``i``
        (with the unsettled grey and the diverged black).
    """
    fig, out = _figure(size, dpi, path)
    x, y, lab = _grid(x, y, labels)
    axes = fig.subplots(1, 1 if converged_step is None else 2, squeeze=False)[0]
    _draw_labels(axes[0], x, y, lab, minima, title)
    if key is not None:
        _basin_key(fig, lab, key)
    if converged_step is not None:
        _, _, steps = _grid(x, y, converged_step)
        shown = np.where(steps < 0, np.nan, steps)
        image = axes[1].imshow(
            shown.T,
            origin="lower",
            extent=(x[0], x[-1], y[0], y[-1]),
            aspect="auto",
            cmap="magma",
            interpolation="nearest",
        )
        fig.colorbar(image, ax=axes[1], label="step converged")
        axes[1].set_title("convergence step", fontsize="medium")
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    return _save(fig, out, dpi)


def plot_basin_panels(
    path: Any,
    x: Any,
    y: Any,
    labels: Any,
    *,
    titles: Sequence[str] | None = None,
    key: Sequence[str] | None = None,
    suptitle: str | None = None,
    xlabel: str = "φ0",
    ylabel: str = "φ1",
    size: tuple[float, float] = (9.6, 7.2),
    dpi: int = 100,
    most: int = 16,
) -> Path:
    """Basin maps side by side, one per setting: ``labels`` of shape ``(S, len(x), len(y))``.

    A label has the same colour in every panel, so labels numbered in one list for all
    settings (e.g. by :func:`fitjax.analysis.sweep_report.match_minima`) show the same minimum
    in the same colour. At most ``most`` panels fit on one figure: more raise
    ``ValueError`` (:func:`plot_basin_pages` spreads any number over several).

    Args:
      key: if given, a legend of the colours, ``key[i]`` describing minimum ``i``.
      suptitle: a title over all panels.
    """
    fig, out = _figure(size, dpi, path)
    stack = np.asarray(labels)
    if stack.ndim != 3:
        raise ValueError(f"labels must have shape (settings, len(x), len(y)), got {stack.shape}")
    n = stack.shape[0]
    if n > most:
        raise ValueError(
            f"labels holds {n} settings but at most most={most} panels fit on one figure; "
            "use plot_basin_pages to draw them all"
        )
    titles = list(titles) if titles is not None else [f"setting {s}" for s in range(n)]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for s, ax in enumerate(axes):
        if s >= n:
            ax.set_axis_off()
            continue
        xs, ys, lab = _grid(x, y, stack[s])
        _draw_labels(ax, xs, ys, lab, None, titles[s] if s < len(titles) else None)
        ax.title.set_fontsize("small")
        ax.set_xlabel(xlabel, fontsize="small")
        ax.set_ylabel(ylabel, fontsize="small")
    if key is not None:
        _basin_key(fig, stack, key)
    if suptitle:
        fig.suptitle(suptitle, fontsize="medium")
    return _save(fig, out, dpi)


def plot_basin_pages(
    path: Any,
    x: Any,
    y: Any,
    labels: Any,
    *,
    titles: Sequence[str] | None = None,
    key: Sequence[str] | None = None,
    per_page: int = 16,
    **kwargs: Any,
) -> list[Path]:
    """Every setting's basin map, ``per_page`` panels a figure: ``path`` for the first
    page, then ``<stem>_2<suffix>``, ``<stem>_3<suffix>``... Each page says which
    settings it shows (``settings 17–30 of 30, page 2 of 2``), so none is left out.

    Returns:
      The paths written, in page order.
    """
    stack = np.asarray(labels)
    if stack.ndim != 3:
        raise ValueError(f"labels must have shape (settings, len(x), len(y)), got {stack.shape}")
    if per_page < 1:
        raise ValueError(f"per_page must be >= 1, got {per_page}")
    first = Path(os.fspath(path))
    n = stack.shape[0]
    titles = list(titles) if titles is not None else [f"setting {s}" for s in range(n)]
    pages = max(1, math.ceil(n / per_page))
    written = []
    for page in range(pages):
        lo, hi = page * per_page, min(n, (page + 1) * per_page)
        target = first if page == 0 else first.with_name(f"{first.stem}_{page + 1}{first.suffix}")
        note = f"settings {lo + 1}–{hi} of {n}" + (f", page {page + 1} of {pages}" if pages > 1 else "")
        written.append(
            plot_basin_panels(
                target,
                x,
                y,
                stack[lo:hi],
                titles=titles[lo:hi],
                key=key,
                suptitle=note,
                most=per_page,
                **kwargs,
            )
        )
    return written


def _readable_log_ticks(axis: Any, lo: float, hi: float) -> None:
    """Plain-number labels at 1-2-5 steps (every integer step within one decade) on a log
    ``axis`` from ``lo`` to ``hi`` spanning at most three decades, where matplotlib would
    label only one or two ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = np.log10(hi / lo) if lo > 0 and hi > lo else np.inf
    if decades > 3:
        return
    subs = tuple(range(1, 10)) if decades <= 1 else (1.0, 2.0, 5.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_loss_curves(
    path: Any,
    curves: Mapping[str, tuple[Any, Any]],
    *,
    log: bool = True,
    title: str | None = None,
    xlabel: str = "step",
    ylabel: str = "loss",
    colors: Mapping[str, str] | None = None,
    size: tuple[float, float] = (6.4, 4.8),
    dpi: int = 100,
) -> Path:
    """Loss curves of several optimizers on one axis: ``curves[name] = (steps, loss)``.

    The k-th curve takes the k-th of :data:`PATH_COLORS` (the colour of the k-th
    trajectory of :func:`plot_landscape`) unless ``colors[name]`` says otherwise."""
    fig, out = _figure(size, dpi, path)
    if not curves:
        raise ValueError("curves must hold at least one (steps, loss) pair")
    ax = fig.add_subplot()
    positive = True
    for k, (name, (steps, values)) in enumerate(curves.items()):
        s, v = np.asarray(steps, dtype=float).ravel(), np.asarray(values, dtype=float).ravel()
        if s.shape != v.shape:
            raise ValueError(f"curves[{name!r}]: steps and loss differ in length ({s.size} and {v.size})")
        positive &= bool(np.all(v[np.isfinite(v)] > 0))
        color = (colors or {}).get(name, PATH_COLORS[k % len(PATH_COLORS)])
        ax.plot(s, v, label=name, lw=1.5, color=color)
    if log and positive:
        ax.set_yscale("log")
        _readable_log_ticks(ax.yaxis, *ax.get_ylim())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize="small")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    return _save(fig, out, dpi)


def plot_fits(
    path: Any,
    x: Any,
    y: Any,
    curves: Mapping[str, tuple[Any, Any]],
    *,
    title: str | None = None,
    xlabel: str = "x",
    ylabel: str = "y",
    size: tuple[float, float] = (6.4, 4.8),
    dpi: int = 100,
) -> Path:
    """Data points ``(x, y)`` and fitted model curves ``curves[name] = (xs, f(xs))``."""
    fig, out = _figure(size, dpi, path)
    ax = fig.add_subplot()
    ax.scatter(
        np.asarray(x, dtype=float), np.asarray(y, dtype=float), c="black", s=18, zorder=3, label="data"
    )
    for name, (xs, ys) in curves.items():
        ax.plot(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float), lw=1.5, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize="small")
    if title:
        ax.set_title(title)
    return _save(fig, out, dpi)
