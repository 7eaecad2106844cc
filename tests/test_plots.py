"""Figures: every function writes the format its path names, at the size asked for."""

import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytestmark = pytest.mark.needs_matplotlib

from fitjax.analysis import plots  # noqa: E402

X, Y = np.linspace(-1, 1, 30), np.linspace(0, 2, 20)
Z = X[:, None] ** 2 + (Y[None, :] - 1) ** 2 + 0.1
SMALL = dict(size=(3.0, 2.0), dpi=50)  # 150 x 100 pixels


def _calls(tmp, ext):
    labels = (X[:, None] > 0).astype(int) + 2 * (Y[None, :] > 1) - 3 * (X[:, None] < -0.9)
    return {
        "landscape": lambda: plots.plot_landscape(
            tmp / f"l.{ext}",
            X,
            Y,
            Z,
            trajectories=[np.array([[0.9, 1.8], [0.2, 1.1], [0.0, 1.0]])],
            labels=["gd"],
            points=[[0.0, 1.0], [0.5, 0.5]],
            point_kinds=["minimum", "saddle"],
            log=True,
            **SMALL,
        ),
        "surface": lambda: plots.plot_surface(tmp / f"s.{ext}", X, Y, Z, **SMALL),
        "basins": lambda: plots.plot_basins(
            tmp / f"b.{ext}",
            X,
            Y,
            labels,
            minima=[[0.5, 0.5]],
            converged_step=np.where(labels < 0, -1, 7),
            **SMALL,
        ),
        "panels": lambda: plots.plot_basin_panels(
            tmp / f"p.{ext}", X, Y, np.stack([labels, labels[::-1]]), titles=["a", "b"], **SMALL
        ),
        "curves": lambda: plots.plot_loss_curves(
            tmp / f"c.{ext}",
            {"gd": (np.arange(5), np.exp(-np.arange(5))), "adam": (np.arange(3), [3.0, 2.0, 0.5])},
            **SMALL,
        ),
        "fits": lambda: plots.plot_fits(tmp / f"f.{ext}", X, X**2, {"model": (X, X**2)}, **SMALL),
    }


def test_png_figures_have_the_size_asked_for(tmp_path):
    for name, call in _calls(tmp_path, "png").items():
        out = call()
        assert out.exists() and out.suffix == ".png", name
        image = _imread(out)
        assert image.shape[:2] == (100, 150), name
        assert image[..., :3].std() > 0.01, name  # not blank


def test_svg_figures_are_svg_documents(tmp_path):
    for name, call in _calls(tmp_path, "svg").items():
        root = ET.parse(call()).getroot()
        assert root.tag.endswith("svg"), name
        assert root.get("width") == "216pt" and root.get("height") == "144pt", name  # 3 x 2 inches


def test_a_large_grid_is_drawn_without_trouble(tmp_path):
    x, y = np.linspace(0, 1, 1200), np.linspace(0, 1, 900)
    z = np.sin(8 * x)[:, None] * np.cos(6 * y)[None, :]
    assert plots.plot_landscape(tmp_path / "big.png", x, y, z, **SMALL).exists()
    assert plots.plot_surface(tmp_path / "big3d.png", x, y, z, **SMALL).exists()


def test_bad_paths_and_shapes_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\.png.*\.svg.*out\.jpg"):
        plots.plot_landscape(tmp_path / "out.jpg", X, Y, Z)
    with pytest.raises(ValueError, match="folder.*does not exist"):
        plots.plot_landscape(tmp_path / "missing" / "out.png", X, Y, Z)
    with pytest.raises(ValueError, match=r"\(30, 20\)"):
        plots.plot_landscape(tmp_path / "out.png", X, Y, Z.T)
    with pytest.raises(ValueError, match=r"trajectories\[0\]"):
        plots.plot_landscape(tmp_path / "out.png", X, Y, Z, trajectories=[np.zeros((4, 3))])
    with pytest.raises(ValueError, match="curves"):
        plots.plot_loss_curves(tmp_path / "out.png", {})


def test_importing_fitjax_imports_neither_matplotlib_nor_tqdm():
    code = "import sys, fitjax, fitjax.analysis.plots, fitjax.cli\n"
    code += "print(sorted({'matplotlib', 'tqdm'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _svg_texts(path):
    """The texts of a matplotlib SVG (it writes each one as a comment before its glyphs)."""
    text = path.read_text()
    return re.findall(r"<!-- (.*?) -->", text), re.findall(r'<g id="(axes_\d+)"', text)


def test_landscape_has_a_key_for_its_markers(tmp_path):
    out = plots.plot_landscape(
        tmp_path / "l.svg",
        X,
        Y,
        Z,
        trajectories=[np.array([[0.9, 1.8], [0.0, 1.0]])],
        labels=["gd"],
        points=[[0.0, 1.0], [0.5, 0.5], [0.2, 0.2]],
        point_kinds=["minimum", "saddle", "maximum"],
        **SMALL,
    )
    texts, _ = _svg_texts(out)
    assert {"gd", "start", "end", "minimum", "saddle", "maximum"} <= set(texts), texts
    assert not any("outside" in t for t in texts), texts


def test_a_path_that_leaves_the_box_ends_on_its_edge(tmp_path):
    """Its end marker would be outside the axes, invisible: it is drawn where the path
    leaves the box, hollow, and the legend and its label say so."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    ax.set_xlim(-1, 1)
    ax.set_ylim(0, 2)
    outside = plots.draw_paths(
        ax,
        [np.array([[0.0, 1.0], [3.0, 1.5]]), np.array([[0.0, 1.0], [0.5, 0.5]])],
        ["a", "b"],
        (-1, 1, 0, 2),
    )
    assert outside
    ends = [line for line in ax.lines if line.get_marker() == "s"]
    assert [tuple(np.ravel(e.get_xydata())) for e in ends] == [(1.0, 1.5), (0.5, 0.5)]
    assert ends[0].get_markerfacecolor() == "white" and not ends[0].get_clip_on()
    assert ax.get_legend_handles_labels()[1] == ["a, ends outside", "b"]
    out = plots.plot_landscape(
        tmp_path / "o.svg", X, Y, Z, trajectories=[[[0, 1], [3, 1.5]]], labels=["sgd"], **SMALL
    )
    texts, _ = _svg_texts(out)
    assert "sgd, ends outside" in texts and "end outside (drawn at the edge)" in texts, texts


def test_landscape_panels_draw_each_path_on_its_own_map(tmp_path):
    paths = [np.array([[0.9, 1.8], [0.0, 1.0]]), np.array([[0.9, 1.8], [0.1, 1.0]]), np.array([[-0.5, 0.5]])]
    out = plots.plot_landscape_panels(tmp_path / "p.svg", X, Y, Z, paths, ["SGD", "momentum", "Nesterov"])
    texts, axes = _svg_texts(out)
    assert {"SGD", "momentum", "Nesterov", "start", "end"} <= set(texts), texts
    assert len(axes) == 4, axes  # three maps and the colour bar
    with pytest.raises(ValueError, match="one label per trajectory"):
        plots.plot_landscape_panels(tmp_path / "q.png", X, Y, Z, paths, ["SGD"])


def test_log_axes_label_enough_ticks(tmp_path):
    """A log axis over less than a decade or two is labelled at 1-2-5 (or every integer) steps,
    not only at the one or two powers of ten inside it."""
    out = plots.plot_loss_curves(tmp_path / "c.svg", {"a": (np.arange(5), [16, 12, 9, 7, 6.0])}, **SMALL)
    texts, _ = _svg_texts(out)
    assert {"6", "7", "8", "9", "10"} <= set(texts), texts
    out = plots.plot_loss_curves(tmp_path / "d.svg", {"a": (np.arange(3), [90, 3, 0.5])}, **SMALL)
    texts, _ = _svg_texts(out)
    assert {"0.5", "1", "2", "5", "10", "20", "50"} <= set(texts), texts
    out = plots.plot_landscape(tmp_path / "l.svg", X, Y, Z, log=True, **SMALL)  # the colour bar too
    texts, _ = _svg_texts(out)
    assert {"0.2", "0.5", "1", "2"} <= set(texts), texts


def test_surface_labels_clear_their_ticks():
    """The z label is set off from the axis (at matplotlib's default pad it overlapped the
    tick labels), and each axis has at most 6 ticks, whose labels do not run together."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x, y = np.linspace(-10, 10, 60), np.linspace(2.5, 22.5, 60)
    z = 20 * np.abs(np.sin(x[:, None] / 2) * np.cos(y[None, :] / 3)) + 0.6
    fig = Figure(figsize=(6.4, 4.8), dpi=100, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    ax = plots.draw_surface(fig, x, y, z, 150, "φ0", "φ1", "loss")
    canvas.draw()
    assert ax.zaxis.labelpad >= 10
    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim()), (ax.zaxis, ax.get_zlim())):
        shown = [t for t in axis.get_majorticklocs() if lo <= t <= hi]
        assert 3 <= len(shown) <= 6, (axis.label.get_text(), shown)


def _imread(path):
    import matplotlib.image  # only where matplotlib is installed: the module is marked

    return matplotlib.image.imread(path)
