"""The sweep metrics and ranking against a plain NumPy computation."""

import csv
import math

import numpy as np
import pytest

from fitjax.analysis import sweep_report


def _data():
    rng = np.random.default_rng(0)
    loss = rng.choice([0.5, 0.502, 0.9, 3.0], size=(4, 50)) + rng.uniform(0, 1e-3, size=(4, 50))
    diverged = rng.uniform(size=(4, 50)) < np.array([[0.0], [0.1], [0.5], [0.0]])
    loss[diverged] = np.nan
    return loss, diverged


def test_metrics_match_numpy():
    loss, diverged = _data()
    best = sweep_report.best_loss(loss, diverged)
    assert best == np.nanmin(np.where(diverged, np.nan, loss))
    threshold = sweep_report.reach_threshold(best, rtol=0.01)
    assert threshold == pytest.approx(best * 1.01)
    for s in range(4):
        m = sweep_report.setting_metrics(loss[s], diverged[s], threshold=threshold)
        as_inf = np.where(diverged[s], np.inf, loss[s])
        assert m["share_reaching_best"] == np.mean(as_inf <= best * 1.01)
        assert m["share_diverged"] == np.mean(diverged[s])
        capped = np.where(np.isinf(as_inf), 1e300, as_inf)  # NumPy's quantiles with inf as a huge loss
        for name, q in (("loss_q10", 10), ("loss_q25", 25), ("loss_median", 50), ("loss_q90", 90)):
            want = np.percentile(capped, q)
            assert m[name] == (math.inf if want > 1e299 else pytest.approx(want, rel=1e-12)), name
        assert math.isnan(m["median_steps_to_target"])
    # half of setting 2's runs diverged or more: its median counts them as +inf
    assert sweep_report.setting_metrics(loss[2], diverged[2], threshold=threshold)["loss_q90"] == math.inf


def test_steps_to_target_reads_the_history():
    hist = np.array([[5.0, 3.0, 1.0, 0.9], [5.0, 4.0, 3.0, 2.0], [5.0, 0.5, 2.0, 2.0]])
    final = np.array([0.8, 1.0, 2.0])
    got = sweep_report.steps_to_target(np.array([0, 10, 20, 30]), hist, final, 40, target=1.0)
    np.testing.assert_array_equal(got, [20, 40, 10])  # run 1 reaches it only at the end
    m = sweep_report.setting_metrics(final, np.zeros(3, bool), threshold=1.0, steps_to=got)
    assert m["median_steps_to_target"] == 20 and m["share_reaching_target"] == 1.0
    never = sweep_report.steps_to_target(np.array([0]), np.array([[5.0]]), np.array([4.0]), 10, 1.0)
    assert np.isnan(never).all()


def test_rank_orders_by_the_chosen_metric_with_ties_broken():
    loss, diverged = _data()
    threshold = sweep_report.reach_threshold(sweep_report.best_loss(loss, diverged))
    metrics = [sweep_report.setting_metrics(loss[s], diverged[s], threshold=threshold) for s in range(4)]
    reach = [m["share_reaching_best"] for m in metrics]
    order = sweep_report.rank(metrics)
    assert [reach[i] for i in order] == sorted(reach, reverse=True)
    med = [m["loss_median"] for m in metrics]
    assert [med[i] for i in sweep_report.rank(metrics, "median")] == sorted(med)
    div = [m["share_diverged"] for m in metrics]
    assert [div[i] for i in sweep_report.rank(metrics, "diverged")] == sorted(div)
    tied = [
        {"share_reaching_best": 0.5, "loss_median": 2.0},
        {"share_reaching_best": 0.5, "loss_median": 1.0},
    ]
    assert sweep_report.rank(tied) == [1, 0]
    nan_last = [
        {"share_reaching_best": 0.1, "loss_median": math.nan},
        {"share_reaching_best": 0.1, "loss_median": 3.0},
    ]
    assert sweep_report.rank(nan_last, "median") == [1, 0]
    with pytest.raises(ValueError, match="by must be one of"):
        sweep_report.rank(metrics, "fastest")


def test_table_csv_and_text(tmp_path):
    hps = [{"learning_rate": 0.1}, {"learning_rate": 0.3}]
    metrics = [
        sweep_report.setting_metrics(np.array([1.0, 2.0]), np.zeros(2, bool), threshold=1.0),
        sweep_report.setting_metrics(np.array([1.0, 1.0]), np.array([False, True]), threshold=1.0),
    ]
    order = sweep_report.rank(metrics, "median")
    rows = sweep_report.table_rows(hps, metrics, order)
    assert [r["setting"] for r in rows] == [0, 1] and rows[0]["rank"] == 1
    with (sweep_report.write_csv(tmp_path / "r.csv", rows)).open() as f:
        read = list(csv.DictReader(f))
    assert read[1]["learning_rate"] == "0.3" and read[1]["loss_q90"] == "inf"
    assert read[0]["median_steps_to_target"] == ""  # nan: no history
    text = sweep_report.format_table(rows, ["learning_rate"], "median", top=1)
    assert text.splitlines()[0].startswith("top 1 of 2 settings, ranked by median final loss")
    assert len(text.splitlines()) == 3


def test_match_minima_numbers_minima_across_settings():
    a = np.array([[0.0, 0.0], [5.0, 5.0]])
    b = np.array([[5.0, 5.004], [9.0, 9.0]])
    shared, loss, maps = sweep_report.match_minima(
        [a, b, np.zeros((0, 2))], [np.array([1.0, 0.5]), np.array([0.49, 2.0]), np.zeros(0)], tol=0.01
    )
    np.testing.assert_array_equal(loss, [0.49, 1.0, 2.0])
    assert [m.tolist() for m in maps] == [[1, 0], [0, 2], []]
    np.testing.assert_array_equal(shared[0], [5.0, 5.004])
    labels = np.array([[0, 1], [-1, -2]])
    np.testing.assert_array_equal(sweep_report.relabel(labels, maps[0]), [[1, 0], [-1, -2]])
    np.testing.assert_array_equal(sweep_report.relabel(np.array([-2]), maps[2]), [-2])
