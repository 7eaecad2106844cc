"""The command line, end to end at tiny sizes, and its refusals."""

import json
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitjax
from fitjax.cli import main
from fitjax.lecture import experiments as lecture_experiments

pytestmark = pytest.mark.needs_matplotlib


def _numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _numbers(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _numbers(v)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


def _load_json(path):
    def refuse(name):
        raise AssertionError(f"{path} holds {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _png_size(path):
    return _imread(path).shape[:2]


def test_demo_writes_figures_summary_and_report(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(
        [
            "demo",
            "--out",
            str(out),
            "--grid",
            "15",
            "--basin-grid",
            "5",
            "--basin-steps",
            "40",
            "--runs",
            "2",
            "--quiet",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "fitjax demo" in printed and "line: GD loss" in printed
    summary = _load_json(out / "summary.json")
    experiments = summary["experiments"]
    expected = {name for name, _ in lecture_experiments.EXPERIMENTS}
    if not summary["line_search"]:
        expected.discard("line_search")
    assert set(experiments) == expected
    numbers = list(_numbers(experiments))
    assert len(numbers) > 50 and all(math.isfinite(v) for v in numbers)
    # the line fit reaches the least-squares loss (NumPy) and the notebook's Adam run its minimum's valley
    np.testing.assert_allclose(
        experiments["line"]["gd"]["final_loss"], experiments["line"]["least_squares"]["loss"], rtol=1e-4
    )
    assert experiments["normalized_vs_adam"]["Adam"]["final_loss"] < 0.01
    report = (out / "report.md").read_text()
    figures = [line.split("](")[1].split(")")[0] for line in report.split("![")[1:]]
    assert len(figures) >= 11
    for name in figures:
        if name == "momentum_nesterov.png":  # one map per optimizer, side by side
            height, width = _png_size(out / name)
            assert width >= 2.5 * height and height >= 400, (name, height, width)
        else:
            assert _png_size(out / name) == (480, 640), name
    # the SGD report says where the runs that beat GD ended, in numbers
    sgd = experiments["sgd_vs_gd"]["sgd"]
    assert {"below_gd", "near_zero_model", "at_global_minimum"} <= set(sgd)
    assert 0 <= sgd["near_zero_model"] <= sgd["runs"] and 0 <= sgd["at_global_minimum"] <= sgd["runs"]
    np.testing.assert_allclose(sgd["zero_model_loss"], 5.43, atol=0.01)  # Σy² of the Gabor data
    assert "can carry it out of the valley" not in report
    assert f"{sgd['near_zero_model']} of them end within 15% of Σy²" in " ".join(report.split())
    assert f"{sgd['at_global_minimum']} reached the global minimum" in " ".join(report.split())


def test_sweep_over_a_hyperparameter_grid_matches_the_library(tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = main(
        [
            "sweep",
            "--model",
            "gabor",
            "--optimizer",
            "momentum",
            "--learning-rate",
            "0.01,0.05",
            "--beta",
            "0.5,0.9,0.95",
            "--starts",
            "grid:5x4",
            "--steps",
            "30",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    assert "5 x 4" not in capsys.readouterr().err
    saved = np.load(out / "sweep.npz")
    assert saved["loss"].shape == (2, 3, 20) and saved["params"].shape == (2, 3, 20, 2)
    starts = fitjax.inits.grid(np.linspace(-10, 10, 5), np.linspace(2.5, 22.5, 4))
    direct = fitjax.sweep(
        fitjax.least_squares(fitjax.Gabor(32.0)),
        fitjax.momentum(0.01, 0.5),
        starts,
        fitjax.datasets.gabor(),
        steps=30,
        record_every=1,
        grid={"learning_rate": jnp.array([0.01, 0.05]), "beta": jnp.array([0.5, 0.9, 0.95])},
    )
    np.testing.assert_allclose(saved["loss"], direct.result.loss, rtol=1e-6)
    np.testing.assert_allclose(saved["hp_beta"], [0.5, 0.9, 0.95])
    summary = _load_json(out / "sweep.json")
    assert len(summary["settings"]) == 6
    assert summary["settings"][5]["hyperparams"] == {"learning_rate": 0.05, "beta": 0.95}
    np.testing.assert_allclose(
        summary["settings"][5]["best_loss"], float(np.min(direct.result.loss[1, 2])), rtol=1e-6
    )
    basins = np.load(out / "basins.npz")
    assert basins["label"].shape == (2, 3, 5, 4) and basins["converged_step"].shape == (2, 3, 5, 4)
    ends, data = direct.result.params[0, 1], fitjax.datasets.gabor()
    moving = ~fitjax.settled(fitjax.least_squares(fitjax.Gabor(32.0)), ends, data, tol=0.01)
    labels, _, _ = fitjax.label_minima(ends, direct.result.loss[0, 1], tol=0.01, unsettled=moving)
    np.testing.assert_array_equal(basins["label"][0, 1].ravel(), labels)
    assert summary["basins"][1]["unsettled"] == int(np.sum(labels == fitjax.UNSETTLED))
    assert _png_size(out / "basins.png") == (720, 960)


def test_sweep_with_random_starts_minibatches_and_the_mlp(tmp_path):
    out = tmp_path / "mlp"
    rc = main(
        [
            "sweep",
            "--model",
            "mlp",
            "--hidden",
            "2",
            "--optimizer",
            "sgd",
            "--starts",
            "uniform:3",
            "--steps",
            "20",
            "--seed",
            "3",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    summary = _load_json(out / "sweep.json")
    assert summary["batch_size"] == 5 and summary["basins"] is None
    assert np.load(out / "sweep.npz")["params"].shape == (3, 7)  # 1·2 + 2 + 2·1 + 1 weights per run
    assert not (out / "basins.npz").exists()
    rc = main(
        [
            "sweep",
            "--model",
            "toy",
            "--optimizer",
            "adam",
            "--starts",
            "uniform:7",
            "--steps",
            "20",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0 and np.load(out / "sweep.npz")["loss"].shape == (7,)


def test_sweep_with_polynomial_math_matches_the_library(tmp_path):
    out = tmp_path / "poly"
    argv = ["sweep", "--model", "gabor", "--optimizer", "adam", "--starts", "uniform:12", "--steps", "50"]
    assert main([*argv, "--math", "polynomial", "--out", str(out), "--quiet"]) == 0
    summary = _load_json(out / "sweep.json")
    assert summary["math"] == "polynomial"
    saved = np.load(out / "sweep.npz")
    loss = fitjax.polynomial_math(fitjax.least_squares(fitjax.Gabor(fitjax.GABOR_W_NOTEBOOK)))
    starts = jnp.asarray(saved["starts"])
    direct = fitjax.fit(loss, fitjax.adam(0.05), starts, fitjax.datasets.gabor(), steps=50)
    np.testing.assert_array_equal(saved["loss"], direct.loss)  # the same polynomial program
    platform = tmp_path / "platform"
    assert main([*argv, "--math", "platform", "--out", str(platform), "--quiet"]) == 0
    np.testing.assert_allclose(np.load(platform / "sweep.npz")["loss"], saved["loss"], rtol=1e-4)
    auto = tmp_path / "auto"  # the default leaves the choice to fit: the polynomials on a CPU
    assert main([*argv, "--out", str(auto), "--quiet"]) == 0
    assert _load_json(auto / "sweep.json")["math"] == "auto"
    if jax.default_backend() == "cpu":
        np.testing.assert_array_equal(np.load(auto / "sweep.npz")["loss"], saved["loss"])


def test_landscape_of_the_gabor_model_and_of_an_mlp_plane(tmp_path):
    out = tmp_path / "land"
    assert (
        main(
            [
                "landscape",
                "--model",
                "gabor",
                "--grid",
                "41",
                "--chunk-size",
                "300",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    saved = np.load(out / "landscape.npz")
    data = fitjax.datasets.gabor()
    loss = fitjax.least_squares(fitjax.Gabor(32.0))
    np.testing.assert_allclose(
        saved["loss"][7, 30], loss(jnp.array([saved["values0"][7], saved["values1"][30]]), data), rtol=1e-6
    )
    summary = _load_json(out / "landscape.json")
    assert {c["kind"] for c in summary["critical_points"]} >= {"minimum", "saddle"}
    assert _png_size(out / "landscape.png") == (480, 640)
    assert _png_size(out / "landscape_surface.png") == (480, 640)
    assert (
        main(
            [
                "landscape",
                "--model",
                "mlp",
                "--hidden",
                "3",
                "--directions",
                "pca",
                "--steps",
                "15",
                "--grid",
                "9",
                "--format",
                "svg",
                "--out",
                str(out),
                "--quiet",
                "--no-critical",
            ]
        )
        == 0
    )
    saved = np.load(out / "landscape.npz")
    assert saved["loss"].shape == (9, 9) and saved["trajectory"].shape == (16, 2)
    assert (out / "landscape.svg").read_text().lstrip().startswith("<?xml")


def test_help_on_every_command(capsys):
    for argv in ([], ["demo"], ["sweep"], ["landscape"]):
        assert main([*argv, "--help"]) == 0
        assert "usage: fitjax" in capsys.readouterr().out
    out = subprocess.run(
        [sys.executable, "-m", "fitjax", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "demo" in out.stdout and "sweep" in out.stdout


@pytest.mark.parametrize(
    "argv, words",
    [
        ([], "required"),
        (["fit"], "invalid choice"),
        (["demo", "--bogus"], "--bogus"),
        (["demo", "--format", "jpg"], "--format"),
        (["sweep", "--model", "resnet", "--optimizer", "gd"], "--model"),
        (["sweep", "--model", "gabor", "--optimizer", "lbfgs"], "--optimizer"),
        (["sweep", "--model", "gabor", "--optimizer", "gd", "--beta", "0.9"], "--beta"),
        (["sweep", "--model", "gabor", "--optimizer", "adam", "--learning-rate", "fast"], "--learning-rate"),
        (["sweep", "--model", "gabor", "--optimizer", "gd", "--learning-rate", "-0.1"], "learning_rate"),
        (["sweep", "--model", "gabor", "--optimizer", "momentum", "--beta", "1.5"], "beta"),
        (["sweep", "--model", "gabor", "--optimizer", "gd", "--starts", "sobol:8"], "--starts"),
        (["sweep", "--model", "gabor", "--optimizer", "gd", "--steps", "0"], "--steps"),
        (
            ["sweep", "--model", "gabor", "--optimizer", "sgd", "--batch-size", "31", "--steps", "2"],
            "batch_size",
        ),
        (["sweep", "--model", "mlp", "--optimizer", "gd", "--starts", "grid:4"], "grid"),
        (["landscape", "--model", "toy", "--directions", "pca"], "--directions"),
        (["landscape", "--grid", "2"], "--grid"),
        (["sweep", "--model", "line", "--optimizer", "gd", "--cluster-tol", "0"], "--cluster-tol"),
        (["sweep", "--model", "gabor", "--optimizer", "gd", "--math", "approx"], "--math"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_code_2(argv, words, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)] if argv and argv[0] in ("sweep", "landscape") else argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("fitjax") and "error:" in err and words in err and "Traceback" not in err


def test_an_unwritable_output_folder_gives_exit_code_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for argv in (["demo"], ["sweep", "--model", "line", "--optimizer", "gd"], ["landscape"]):
        assert main([*argv, "--out", str(blocker / "out"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "cannot write to output folder" in err


def test_the_seed_fixes_every_random_choice(tmp_path):
    def run(seed, name):
        argv = [
            "sweep",
            "--model",
            "line",
            "--optimizer",
            "sgd",
            "--batch-size",
            "3",
            "--starts",
            "uniform:4",
            "--steps",
            "10",
            "--seed",
            str(seed),
            "--out",
            str(tmp_path / name),
            "--quiet",
        ]
        assert main(argv) == 0
        return np.load(tmp_path / name / "sweep.npz")

    a, b, c = run(4, "a"), run(4, "b"), run(5, "c")
    np.testing.assert_array_equal(a["params"], b["params"])
    np.testing.assert_array_equal(a["starts"], b["starts"])
    assert not np.array_equal(a["starts"], c["starts"])


def _imread(path):
    import matplotlib.image  # only where matplotlib is installed: the module is marked

    return matplotlib.image.imread(path)
