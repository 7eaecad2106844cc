"""fitjax.compare and ``fitjax compare``: the study runs what it says, its measures agree with
plain NumPy on its own per-run arrays, it resumes bit for bit, and the command writes its
report."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fitjax
from fitjax import problems
from fitjax.cli import main
from fitjax.cli.compare import read_study, study_arguments
from fitjax.comparison import load
from fitjax.comparison.study import seed_of

BOWL = problems.Problem(
    "bowl", lambda p, data: jnp.sum((p - 1.0) ** 2), low=[-2.0, -2.0], high=[2.0, 2.0], minimum=0.0
)
KW = {"starts": 8, "steps": 40, "record_every": 2, "key": jax.random.key(3)}


def path_length(path):
    return jnp.sum(jnp.linalg.norm(jnp.diff(path, axis=0), axis=-1))


@pytest.fixture(scope="module")
def study():
    """One small study shared by the tests below: a sweep, a single setting, an optax
    function of the learning rate, a line search, and a metric of the recorded paths."""
    return fitjax.compare(
        [BOWL],
        {
            "gd": fitjax.gd(0.01),
            "adam": "adam",
            "osgd": lambda learning_rate: optax.sgd(learning_rate),
            "armijo": "backtracking_armijo",
        },
        {
            "gd": {"learning_rate": [0.001, 0.01]},
            "adam": {"learning_rate": [0.1]},
            "osgd": {"learning_rate": [0.01]},
        },
        metrics={"path": path_length},
        **KW,
    )


def test_study_runs_every_cell_from_the_same_starts_as_fit(study):
    settings = [("gd", {"learning_rate": 0.001}), ("gd", {"learning_rate": 0.01})]
    settings += [("adam", {"learning_rate": 0.1}), ("osgd", {"learning_rate": 0.01}), ("armijo", {})]
    assert [(c.problem, c.optimizer, c.setting) for c in study.cells] == [("bowl", o, s) for o, s in settings]
    starts = BOWL.starts(jax.random.fold_in(KW["key"], seed_of("starts", "bowl")), 8)
    direct = fitjax.fit(BOWL.loss, fitjax.gd(0.01), starts, BOWL.data, steps=40, record_every=2)
    cell = study.cells[1]
    np.testing.assert_allclose(cell.curves[:, :-1], np.asarray(direct.history.loss), rtol=1e-6)
    np.testing.assert_allclose(cell.final, np.asarray(direct.loss), rtol=1e-6)
    np.testing.assert_array_equal(cell.steps, np.r_[np.arange(0, 40, 2), 40])
    # the optax sgd at the same rate is the same gradient descent
    np.testing.assert_allclose(study.cells[3].final, cell.final, rtol=1e-5, atol=1e-6)


def test_table_against_plain_numpy_on_the_per_run_arrays(study):
    rows = study.table()
    for cell, row in zip(study.cells, rows, strict=True):
        ref = 0.0  # the bowl's known minimum
        assert row["reference"] == ref and row["reference_source"] == "known minimum"
        for d in study.deltas:
            tau = ref + d
            rts = []
            for r in range(cell.runs):
                hits = [s for s, v in zip(cell.steps, cell.curves[r], strict=True) if v <= tau]
                rts.append(hits[0] if hits and cell.diverged_step[r] < 0 else np.inf)
            rts = np.array(rts, float)
            t = f"{d:.0e}"
            assert row[f"success_{t}"] == pytest.approx(np.isfinite(rts).mean())
            ok = np.isfinite(rts)
            art = (np.where(ok, rts, 40.0).sum() / ok.sum()) if ok.any() else np.inf
            assert row[f"aRT_steps_{t}"] == pytest.approx(art)
        assert row["gap_median"] == pytest.approx(np.sort(cell.final)[3])  # inverted-CDF median of 8


def test_best_settings_and_sensitivity(study):
    best = {(b["problem"], b["optimizer"]): b for b in study.best_settings()}
    assert best[("bowl", "gd")]["best"] == "gd(learning_rate=0.01)"  # 0.001 is far too slow in 40 steps
    assert best[("bowl", "gd")]["tuning_budget"] == 2 * 8 * 40
    width, values, rates = study.sensitivity("bowl", "gd", 1.0)
    np.testing.assert_array_equal(values, [0.001, 0.01])
    gd = [c for c in study.cells if c.optimizer == "gd"]
    np.testing.assert_array_equal(rates, [np.mean(np.any(c.curves <= 1.0, axis=1)) for c in gd])
    assert rates[1] > rates[0] and width == (1.0 if rates[0] >= rates[1] / 2 else 0.0)


def test_save_load_and_csv_round_trip(study, tmp_path):
    again = load(study.save(tmp_path / "runs.npz"), [BOWL])
    for a, b in zip(study.cells, again.cells, strict=True):
        np.testing.assert_array_equal(a.curves, b.curves)
        assert a.setting == b.setting
    study.to_csv(tmp_path / "results.csv")
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert (
        len(rows) == len(study.cells) and float(rows[0]["success_1e-01"]) == study.table()[0]["success_1e-01"]
    )


def test_metrics_and_line_search_evaluations(study):
    armijo = next(c for c in study.cells if c.problem == "bowl" and c.optimizer == "armijo")
    gd = next(c for c in study.cells if c.problem == "bowl" and c.label == "gd(learning_rate=0.01)")
    assert np.all(armijo.evals_per_step > 1.0) and np.all(gd.evals_per_step == 1.0)
    assert np.all(study.runtimes(armijo, "evaluations") >= study.runtimes(armijo, "steps"))
    assert gd.metrics["path"].shape == (8,) and np.all(gd.metrics["path"] > 0)


def test_compare_errors_name_the_argument():
    with pytest.raises(ValueError, match="grids names optimizer"):
        fitjax.compare(["beale"], ["gd"], {"adam": {"learning_rate": [0.1]}}, key=jax.random.key(0))
    with pytest.raises(TypeError, match="key must be a jax.random.key"):
        fitjax.compare(["beale"], ["gd"], key=0)
    with pytest.raises(ValueError, match="unknown optimizer 'nope'"):
        fitjax.compare(["beale"], ["nope"], key=jax.random.key(0))
    with pytest.raises(ValueError, match="cannot vary them"):
        fitjax.compare(
            ["beale"], {"o": optax.sgd(0.1)}, {"o": {"learning_rate": [0.1]}}, key=jax.random.key(0), steps=5
        )


STUDY = """
problems = ["beale", "camel"]
starts = 6
steps = 30
record_every = 3
seed = 2

[optimizers.momentum]
learning_rate = [1e-3, 1e-2]
beta = [0.5, 0.9]

[optimizers.osgd]
optimizer = "optax:sgd"
learning_rate = 0.01
"""


@pytest.fixture(scope="module")
def cli_out(tmp_path_factory):
    """``fitjax compare study.toml`` run once, uninterrupted."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "study.toml").write_text(STUDY)
    assert main(["compare", str(folder / "study.toml"), "--out", str(folder / "out"), "--quiet"]) == 0
    return folder


@pytest.mark.needs_matplotlib
def test_cli_end_to_end(cli_out):
    out = cli_out / "out"
    for name in ("results.csv", "runs.npz", "report.md", "report.html", "ecdf_beale.png", "ecdf_all.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "sensitivity_beale.png").exists() and (out / "sensitivity_beale_beta.png").exists()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5 and "<img" in html
    md = (out / "report.md").read_text()
    assert "known minimum" in md and "| beale | momentum | beta | 0.5 / 0.9 |" in md
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 5 and {r["setting"] for r in rows} >= {"osgd(learning_rate=0.01)"}
    assert json.loads((out / "pairs" / "study.json").read_text())["starts"] == 6


def _without_seconds(path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def test_kill_9_then_resume_is_bit_identical(cli_out, tmp_path, capsys):
    """A study killed with SIGKILL after its first pair is saved, then resumed from its folder,
    gives the same per-run arrays and results.csv (bar the wall times) as the uninterrupted
    run. (The resumed run writes no figures: the files compared are all it needs.)"""
    out = tmp_path / "out"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "fitjax", "compare", str(cli_out / "study.toml"), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first, deadline = out / "pairs" / "beale__momentum.npz", time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    saved = {p.name for p in (out / "pairs").glob("*__*.npz")} - {p.name for p in out.glob("pairs/*.tmp.npz")}
    assert first.name in saved and len(saved) < 4 and not (out / "results.csv").exists()  # killed part-way
    spec = study_arguments(read_study(cli_out / "study.toml"), cli_out)  # resumed as the command does
    resumed = fitjax.compare(key=jax.random.key(spec.pop("seed")), cache_dir=out / "pairs", **spec)
    resumed.save(out / "runs.npz")
    resumed.to_csv(out / "results.csv")
    with np.load(cli_out / "out" / "runs.npz") as a, np.load(out / "runs.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            if name != "index":
                np.testing.assert_array_equal(a[name], b[name], err_msg=name, strict=True)
        index_a, index_b = (json.loads(str(z["index"])) for z in (a, b))
    for cells in (index_a["cells"], index_b["cells"]):
        for c in cells:
            c.pop("seconds")
    assert index_a == index_b
    assert _without_seconds(cli_out / "out" / "results.csv") == _without_seconds(out / "results.csv")
    # the same folder with another study is refused, not mixed
    assert main(["compare", str(cli_out / "study.toml"), "--out", str(out), "--steps", "20"]) == 2
    assert "holds a different study" in capsys.readouterr().err


def test_cli_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('problems = ["beale"]\n[optimizers.x]\noptimizer = "nope"\n')
    assert main(["compare", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "unknown optimizer 'nope'" in capsys.readouterr().err
    assert main(["compare", "--out", str(tmp_path / "o")]) == 2
    assert "give a study file" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing.toml")]) == 2
