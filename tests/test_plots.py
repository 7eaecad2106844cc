"""Figures: every function writes the format its path names, at the size asked for."""

import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib.image  # noqa: E402

from fitjax import plots  # noqa: E402

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
        image = matplotlib.image.imread(out)
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
    code = "import sys, fitjax, fitjax.plots, fitjax.cli\n"
    code += "print(sorted({'matplotlib', 'tqdm'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
