"""The command line's sweeps and contract: rankings, tables, metadata, figures that keep every
setting, negative numbers, refusals, output folders, progress and Ctrl-C (a real subprocess)."""

import csv
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fitjax.analysis import sweep_report
from fitjax.cli import build_parser, main

pytestmark = pytest.mark.needs_matplotlib

ROOT = Path(__file__).resolve().parents[1]
GABOR = ["sweep", "--model", "gabor", "--optimizer", "momentum"]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_sweep_ranks_by_share_reaching_the_best_minimum_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "s"
    argv = [
        *GABOR,
        "--learning-rate",
        "0.03,0.3",
        "--beta",
        "0,0.9",
        "--starts",
        "uniform:40",
        "--steps",
        "150",
    ]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "ranked by share of starts reaching the best minimum found (--rank-by reach)" in printed
    saved = np.load(out / "sweep.npz")
    loss = saved["loss"].reshape(4, 40).astype(float)
    loss[saved["diverged_step"].reshape(4, 40) >= 0] = np.inf
    best = loss.min()
    share = np.mean(loss <= best + 0.01 * abs(best), axis=1)  # the stated default tolerance
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {
        "rank",
        "setting",
        "learning_rate",
        "beta",
        "share_reaching_best",
        "loss_median",
        "loss_q10",
        "loss_q90",
        "share_diverged",
        "median_steps_to_target",
    } <= set(rows[0])
    got = [float(r["share_reaching_best"]) for r in rows]
    assert got == sorted(got, reverse=True)
    for r in rows:
        s = int(r["setting"])
        assert float(r["share_reaching_best"]) == pytest.approx(share[s])
        assert float(r["loss_median"]) == pytest.approx(np.median(loss[s]))
        lr, beta = [0.03, 0.03, 0.3, 0.3][s], [0.0, 0.9, 0.0, 0.9][s]
        assert (float(r["learning_rate"]), float(r["beta"])) == pytest.approx((lr, beta))
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["ranking"]["by"] == "reach" and summary["complete"] is True
    assert summary["ranking"]["order"] == [int(r["setting"]) for r in rows]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["argv"][1:] == [*argv, "--out", str(out), "--quiet"]
    assert set(meta["versions"]) >= {"fitjax", "jax", "jaxlib", "optax"}
    assert meta["devices"]["count"] >= 1 and meta["devices"]["kind"]
    assert meta["utc_time"].endswith("+00:00") and meta["seeds"]["seed"] == 0
    assert meta["options"]["learning_rate"] == [0.03, 0.3] and meta["data"]["points"] == 30

    assert main([*argv, "--out", str(out), "--quiet", "--rank-by", "median", "--top", "2"]) == 0
    table = capsys.readouterr().out
    assert "top 2 of 4 settings, ranked by median final loss" in table
    with (out / "results.csv").open() as f:
        medians = [float(r["loss_median"]) for r in csv.DictReader(f)]
    assert medians == sorted(medians)


def test_every_setting_gets_a_basin_panel_with_shared_minima(tmp_path, capsys):
    out = tmp_path / "b"
    rates = ",".join(f"{0.01 * (k + 1):g}" for k in range(18))
    assert (
        main(
            [
                *GABOR,
                "--learning-rate",
                rates,
                "--starts",
                "grid:3",
                "--steps",
                "5",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("basins*.png")) == ["basins.png", "basins_2.png"]
    basins = np.load(out / "basins.npz")
    assert basins["shared_label"].shape == (18, 3, 3)
    shared = basins["shared_minima"]
    for s in range(18):  # each setting's minima map to shared ones at the same place
        for local, glob in zip(basins["label"][s].ravel(), basins["shared_label"][s].ravel(), strict=True):
            if local >= 0:
                np.testing.assert_allclose(basins["minima"][s, local], shared[glob], atol=0.011)


def test_negative_numbers_work_in_the_box_and_every_list(tmp_path):
    out = tmp_path / "n"
    assert (
        main(
            [
                "landscape",
                "--model",
                "line",
                "--box",
                "-1,3,-2,2",
                "--grid",
                "5",
                "--no-critical",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    saved = np.load(out / "landscape.npz")
    assert (saved["values0"][0], saved["values1"][0]) == (-1.0, -2.0)
    assert json.loads((out / "landscape.json").read_text())["plane"]["box"] == [[-1.0, 3.0], [-2.0, 2.0]]
    argv = [
        "sweep",
        "--model",
        "gabor",
        "--optimizer",
        "gd",
        "--box",
        "-5,5,5,20",
        "--starts",
        "grid:3",
        "--steps",
        "3",
        "--seed",
        "-3",
        "--out",
        str(tmp_path / "s"),
        "--quiet",
    ]
    assert main(argv) == 0
    starts = np.load(tmp_path / "s" / "sweep.npz")["starts"]
    assert starts[:, 0].min() == -5.0 and starts[:, 1].max() == 20.0


@pytest.mark.parametrize(
    "argv, words",
    [
        (["landscape", "--model", "gabor", "--optimizer", "sgd"], "--optimizer applies to --model mlp only"),
        (["landscape", "--model", "gabor", "--steps", "50"], "--steps applies to --model mlp only"),
        (["landscape", "--model", "toy", "--extent", "2"], "--extent applies to --model mlp only"),
        (
            ["landscape", "--model", "line", "--learning-rate", "0.1"],
            "--learning-rate applies to --model mlp",
        ),
        (
            ["landscape", "--model", "mlp", "--box", "-1,1,-1,1"],
            "--box applies to models with two parameters",
        ),
        (["landscape", "--model", "mlp", "--learning-rate", "0.01,0.1"], "takes one value"),
        (["landscape", "--model", "mlp", "--directions", "pca", "--extent", "2"], "--directions random only"),
        (
            ["sweep", "--model", "line", "--optimizer", "gd", "--hidden", "4"],
            "--hidden applies to --model mlp",
        ),
        (["sweep", "--model", "mlp", "--optimizer", "gd", "--box", "0,1,0,1"], "--box applies"),
        (
            ["sweep", "--model", "line", "--optimizer", "gd", "--no-resume"],
            "--resume applies with --chunk-size",
        ),
        (
            [
                "sweep",
                "--model",
                "line",
                "--optimizer",
                "gd",
                "--starts",
                "uniform:4",
                "--cluster-tol",
                "0.1",
            ],
            "--cluster-tol applies to grid starts",
        ),
        (["sweep", "--model", "toy", "--optimizer", "sgd"], "--model toy has none"),
        (
            ["sweep", "--model", "line", "--optimizer", "gd", "--batch-size", "3"],
            "does not apply to --optimizer gd",
        ),
        (
            ["sweep", "--model", "line", "--optimizer", "gd", "--chunk-size", "4", "--rank-by", "median"],
            "--rank-by does not apply with --chunk-size",
        ),
    ],
)
def test_options_that_do_not_apply_are_refused(argv, words, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert not (tmp_path / "o").exists()


def test_each_command_has_its_own_folder_and_keeps_off_another_commands(tmp_path, capsys):
    parser = build_parser()
    outs = {
        c: parser.parse_args([c, *extra]).out
        for c, extra in (("demo", []), ("sweep", ["--model", "line", "--optimizer", "gd"]), ("landscape", []))
    }
    assert outs == {"demo": "fitjax-demo", "sweep": "fitjax-sweep", "landscape": "fitjax-landscape"}
    out = tmp_path / "shared"
    land = ["landscape", "--model", "line", "--grid", "4", "--no-critical", "--out", str(out), "--quiet"]
    assert main(land) == 0
    sweep = [
        "sweep",
        "--model",
        "line",
        "--optimizer",
        "gd",
        "--starts",
        "uniform:2",
        "--steps",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(sweep) == 2
    err = capsys.readouterr().err
    assert "holds the results of `fitjax landscape` (landscape.json)" in err and "--force" in err
    assert not (out / "sweep.json").exists()
    assert main([*sweep, "--force"]) == 0 and (out / "sweep.json").exists()


def test_landscape_trains_the_mlp_like_sweep_and_reports_divergence(tmp_path, capsys):
    out = tmp_path / "m"
    base = ["landscape", "--model", "mlp", "--hidden", "2", "--grid", "4", "--no-critical", "--steps", "20"]
    assert main([*base, "--optimizer", "sgd", "--learning-rate", "0.002", "--out", str(out), "--quiet"]) == 0
    plane = json.loads((out / "landscape.json").read_text())["plane"]
    assert plane["batch_size"] == 5 and plane["hyperparams"] == {"learning_rate": 0.002}
    assert main([*base, "--optimizer", "gd", "--learning-rate", "5", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "training the mlp diverged at step" in err and "lower --learning-rate" in err


def test_the_default_learning_rates_converge_on_the_mlp(tmp_path):
    for opt in ("gd", "nesterov-classical"):
        out = tmp_path / opt
        argv = ["sweep", "--model", "mlp", "--optimizer", opt, "--steps", "300", "--out", str(out), "--quiet"]
        assert main(argv) == 0
        summary = json.loads((out / "sweep.json").read_text())
        assert summary["settings"][0]["diverged"] == 0, opt


def _read_pty(fd, until, timeout):
    """Read a pseudo-terminal until ``until(text)`` or the time runs out; the text read."""
    text, end = "", time.monotonic() + timeout
    while time.monotonic() < end and not until(text):
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                text += os.read(fd, 65536).decode(errors="replace")
            except OSError:
                break
    return text


def test_progress_moves_during_a_fit_and_ctrl_c_keeps_the_finished_settings(tmp_path):
    out = tmp_path / "int"
    argv = [
        sys.executable,
        "-m",
        "fitjax",
        *GABOR,
        "--learning-rate",
        "0.05,0.1,0.2,0.3,0.4,0.5",
        "--starts",
        "uniform:1000",
        "--steps",
        "6000",
        "--out",
        str(out),
    ]
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=follower, stderr=follower, env=_env(), cwd=tmp_path)
    os.close(follower)
    try:
        text = _read_pty(leader, lambda t: "block 3/6" in t, timeout=90)
        assert "block 3/6" in text, text[-2000:]
        first = text[: text.index("block 2/6")]
        counts = {int(m) for m in re.findall(r"(\d+)/36006 step", first)}
        assert len({c for c in counts if 0 < c < 6001}) >= 2, first[-2000:]  # moved within the first fit
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        rest = _read_pty(leader, lambda t: proc.poll() is not None, timeout=20)
        proc.wait(timeout=20)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert proc.returncode == 130
    assert took < 5, took
    assert "Traceback" not in rest
    lines = [ln for ln in re.sub(r"\x1b\[[0-9;]*[A-Za-z]|\r", "\n", rest).splitlines() if "interrupted" in ln]
    assert len(lines) == 1 and "kept the" in lines[0] and "rerun" in lines[0], rest
    saved = np.load(out / "sweep.npz")
    done = saved["loss"].shape[0]
    assert 2 <= done < 6 and saved["loss"].shape[1] == 1000
    assert json.loads((out / "sweep.json").read_text())["complete"] is False
    with (out / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == done


def test_ctrl_c_during_the_demo_writes_the_report_of_the_finished_experiments(tmp_path):
    out = tmp_path / "demo"
    argv = [
        sys.executable,
        "-m",
        "fitjax",
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
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True)
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end and not (out / "gabor_landscape.png").exists() and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert "line" in summary["experiments"] and summary["complete"] is False
    assert "normalized_vs_adam" in summary["not_finished"]
    assert "Interrupted" in (out / "report.md").read_text()


def test_sweep_report_is_its_own_module():
    assert sweep_report.DEFAULT_RANK_BY == "reach"
