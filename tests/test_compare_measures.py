"""The study measures on hand-made runs with known runtimes, each checked against a
plain loop written here (no shared code with fitjax.comparison.measures)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fitjax import problems
from fitjax.comparison import Cell, Study
from fitjax.comparison import measures as m
from fitjax.comparison.report import sensitivity_figure, sensitivity_rows

STEPS = np.array([0, 10, 20, 30, 40])
# four runs; the loss each run has at each recorded step
CURVES = np.array(
    [
        [10.0, 1.0, 0.1, 0.01, 0.001],  # reaches everything
        [10.0, 5.0, 2.0, 0.5, 0.5],  # stalls at 0.5
        [10.0, np.nan, np.nan, np.nan, np.nan],  # NaN from step 10
        [0.05, 0.04, 0.03, 0.02, 0.0],  # starts below most targets
    ]
)
TARGETS = np.array([1.0, 0.1, 0.001])
# the runtimes worked out by hand from the table above
KNOWN = np.array(
    [
        [10.0, 20.0, 40.0],
        [30.0, np.inf, np.inf],
        [np.inf, np.inf, np.inf],
        [0.0, 0.0, 40.0],
    ]
)


def loop_runtimes(budgets, curves, targets):
    out = np.full((curves.shape[0], len(targets)), np.inf)
    for r in range(curves.shape[0]):
        for t, tau in enumerate(targets):
            for k in range(curves.shape[1]):
                if curves[r, k] <= tau:  # NaN compares False
                    out[r, t] = budgets[k]
                    break
    return out


def test_runtimes_hand_made():
    np.testing.assert_array_equal(m.runtimes(STEPS, CURVES, TARGETS), KNOWN)
    np.testing.assert_array_equal(loop_runtimes(STEPS, CURVES, TARGETS), KNOWN)


def test_runtimes_random_against_loop():
    rng = np.random.default_rng(0)
    curves = np.minimum.accumulate(rng.lognormal(0, 2, size=(50, 30)), axis=1)
    curves[rng.random(curves.shape) < 0.05] = np.nan
    budgets = np.arange(30) * 7.0
    tau = 10.0 ** np.arange(1, -4, -1.0)
    np.testing.assert_array_equal(m.runtimes(budgets, curves, tau), loop_runtimes(budgets, curves, tau))


def test_runtimes_ignore_points_after_divergence():
    got = m.runtimes(STEPS, CURVES, TARGETS, diverged_step=np.array([15, -1, 5, -1]), steps=STEPS)
    want = KNOWN.copy()
    want[0] = [10.0, np.inf, np.inf]  # run 0 diverged at step 15: only steps 0 and 10 count
    np.testing.assert_array_equal(got, want)


def test_runtimes_per_run_budgets():
    budgets = np.stack([STEPS * 2, STEPS * 3, STEPS, STEPS + 1])  # e.g. line searches
    got = m.runtimes(budgets, CURVES, TARGETS)
    assert got[0, 0] == 20.0 and got[0, 2] == 80.0 and got[3, 0] == 1.0


def test_success_rate_and_wilson():
    rate = m.success_rate(KNOWN)
    np.testing.assert_array_equal(rate, [0.75, 0.5, 0.5])
    for k, n in [(0, 10), (5, 10), (10, 10), (37, 1000), (1, 3)]:
        lo, hi = m.wilson(k, n)
        p, z = k / n, 1.959963984540054
        c = (p + z * z / (2 * n)) / (1 + z * z / n)
        h = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        assert lo == pytest.approx(max(0.0, c - h), abs=1e-12) and hi == pytest.approx(min(1.0, c + h))
    # a value from Wilson (1927)-style tables: 0 of 10 gives [0, 0.2775]
    assert m.wilson(0, 10)[1] == pytest.approx(0.27753, abs=1e-5)
    assert np.isnan(m.wilson(0, 0)).all()


def test_ecdf_counts_pairs():
    budgets = [0, 5, 10, 20, 39, 40, 1000]
    got = m.ecdf(KNOWN, budgets)
    want = [np.mean([[rt <= b for rt in row] for row in KNOWN]) for b in budgets]
    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(got, [2 / 12, 2 / 12, 3 / 12, 4 / 12, 5 / 12, 7 / 12, 7 / 12])


def test_average_runtime_coco_definition():
    budget = 40.0
    got = m.average_runtime(KNOWN, budget)
    for t in range(3):
        spent = sum(rt if np.isfinite(rt) else budget for rt in KNOWN[:, t])
        succ = sum(np.isfinite(KNOWN[:, t]))
        assert got[t] == pytest.approx(spent / succ)
    assert got[0] == pytest.approx((10 + 30 + 40 + 0) / 3)
    assert np.isinf(m.average_runtime(np.full((3, 1), np.inf), 5.0)[0])
    # one budget per run
    per_run = np.array([40.0, 100.0, 7.0, 40.0])
    assert m.average_runtime(KNOWN, per_run)[1] == pytest.approx((20 + 100 + 7 + 0) / 2)


def test_quantiles_and_share_diverged():
    final = np.array([3.0, 1.0, np.nan, 2.0, 5.0])
    diverged = np.array([-1, -1, 4, -1, 2])
    got = m.quantiles(final, (0.2, 0.4, 0.6, 0.8, 1.0), diverged=diverged >= 0)
    v = sorted([3.0, 1.0, np.inf, 2.0, np.inf])
    want = [v[math.ceil(q * 5) - 1] for q in (0.2, 0.4, 0.6, 0.8, 1.0)]
    np.testing.assert_array_equal(got, want)
    assert m.share_diverged(diverged) == pytest.approx(0.4)


def test_sensitivity_width():
    lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert m.sensitivity_width(lrs, [0.0, 0.6, 1.0, 0.5, 0.2], factor=2.0) == pytest.approx(2.0)
    assert m.sensitivity_width(lrs, [0.0, 0.6, 1.0, 0.4, 0.9], factor=2.0) == pytest.approx(1.0)
    assert m.sensitivity_width(lrs[::-1], [0.2, 0.5, 1.0, 0.6, 0.0], factor=2.0) == pytest.approx(2.0)
    assert m.sensitivity_width(lrs, [5.0, 1.0, 1.5, 3.0, 9.0], factor=2.0, higher_is_better=False) == (
        pytest.approx(1.0)
    )
    assert np.isnan(m.sensitivity_width(lrs, [0.0] * 5))
    with pytest.raises(ValueError, match="values must be positive"):
        m.sensitivity_width([0.0, 1.0], [1.0, 1.0])


def test_medians_and_bootstrap_with_explicit_seed():
    x = np.array([1.0, 2.0, np.inf, 4.0])
    assert m.median(x) == pytest.approx(3.0) and m.median([1.0, np.inf, np.inf, 2.0]) == np.inf
    rng = np.random.default_rng(1)
    v = rng.normal(5.0, 1.0, 201)
    a = m.bootstrap_median(v, seed=3, n_boot=500)
    assert a == m.bootstrap_median(v, seed=3, n_boot=500)
    assert a != m.bootstrap_median(v, seed=4, n_boot=500)
    # independent: the same resampling written as a loop
    gen = np.random.default_rng(3)
    idx = gen.integers(0, v.size, size=(500, v.size))
    meds = np.array([np.median(v[i]) for i in idx])
    want = np.quantile(meds, [0.025, 0.975], method="inverted_cdf")
    np.testing.assert_allclose(a, want)
    assert a[0] < np.median(v) < a[1]


def test_targets_ladder():
    np.testing.assert_allclose(m.targets(2.0, [1.0, 1e-8]), [3.0, 2.00000001])
    assert m.DELTAS[0] == 10.0 and m.DELTAS[-1] == pytest.approx(1e-8) and len(m.DELTAS) == 10
    with pytest.raises(ValueError, match="deltas"):
        m.targets(0.0, [-1.0])


# ----------------------------------------------------------------------------- sensitivity, hand-made study

GRID_STEPS = np.array([0, 10, 20])
HIT_10, HIT_20, MISS = [5.0, 1e-3, 1e-3], [5.0, 0.5, 1e-3], [5.0, 2.0, 1.0]
# (learning_rate, beta) -> the four runs' curves; success to the gap 0.01 is reaching 1e-3
HAND = {
    (0.01, 0.5): [HIT_10, MISS, MISS, MISS],
    (0.01, 0.9): [HIT_20] * 4,
    (0.1, 0.5): [HIT_10] * 4,  # the best: every run, soonest
    (0.1, 0.9): [HIT_10, HIT_10, HIT_10, MISS],
    (1.0, 0.5): [HIT_10, HIT_10, MISS, MISS],
    (1.0, 0.9): [HIT_20] * 4,
}


@pytest.fixture(scope="module")
def hand_study():
    prob = problems.Problem("p", lambda x, data: x @ x, low=[-1.0], high=[1.0], minimum=0.0)
    cells = [
        Cell("p", "mom", {"learning_rate": lr, "beta": b}, None, GRID_STEPS, np.array(c), np.full(4, -1),
             np.ones(4), 0.0)
        for (lr, b), c in HAND.items()
    ]  # fmt: skip
    return Study(cells, {"p": prob}, np.array([1.0, 0.01]), {"starts": 4, "steps": 20, "record_every": 10})


def loop_measures(curves, target=0.01, budget=20.0):
    """Success rate, aRT and median final gap of hand-made runs, written as plain loops."""
    rts = []
    for curve in curves:
        hits = [s for s, v in zip(GRID_STEPS, curve, strict=True) if v <= target]
        rts.append(hits[0] if hits else None)
    ok = [r for r in rts if r is not None]
    art = (sum(ok) + budget * (len(rts) - len(ok))) / len(ok) if ok else math.inf
    finals = sorted(c[-1] for c in curves)
    return len(ok) / len(rts), art, (finals[1] + finals[2]) / 2


def test_every_measure_against_every_swept_hyperparameter(hand_study):
    assert hand_study.swept("p", "mom") == ["learning_rate", "beta"]
    best = hand_study.best_settings(0.01)[0]
    assert best["setting"] == {"learning_rate": 0.1, "beta": 0.5} and best["aRT"] == 10.0
    for hp, other, held in (("learning_rate", "beta", 0.5), ("beta", "learning_rate", 0.1)):
        prof = hand_study.profile("p", "mom", hp, 0.01)
        keys = sorted(k for k in HAND if k[1 if other == "beta" else 0] == held)
        want = np.array([loop_measures(HAND[k]) for k in keys])
        np.testing.assert_array_equal(prof["values"], [k[0 if hp == "learning_rate" else 1] for k in keys])
        np.testing.assert_allclose(prof["success"], want[:, 0])
        np.testing.assert_allclose(prof["aRT"], want[:, 1])
        np.testing.assert_allclose(prof["median_gap"], want[:, 2])
        np.testing.assert_array_equal(prof["share_diverged"], 0.0)
    # the learning rate at beta = 0.5: rates 1/4, 1, 1/2; within a factor 2 of 1: 0.1 and 1.0 (the
    # best rate over beta at each learning rate, 1, 1, 1, would give 2 decades: beta is held, not maximised)
    assert hand_study.sensitivity("p", "mom", 0.01)[0] == pytest.approx(1.0)
    # beta at learning_rate = 0.1: rates 1, 3/4, both good: log10(0.9 / 0.5)
    assert hand_study.sensitivity("p", "mom", 0.01, "beta")[0] == pytest.approx(math.log10(0.9 / 0.5))
    rows = sensitivity_rows(hand_study, 0.01)
    assert [r[2] for r in rows] == ["learning_rate", "beta"]
    assert rows[0][3:5] == ["0.01 / 0.1 / 1", "0.25 / 1.00 / 0.50"] and rows[0][7] == pytest.approx(1.0)


@pytest.mark.needs_matplotlib
def test_a_sensitivity_figure_per_hyperparameter(hand_study, tmp_path):
    """(The command-line study of tests/test_compare.py draws the learning rate's as well.)"""
    path = sensitivity_figure(hand_study, "p", tmp_path / "beta.png", 0.01, "beta")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    assert sensitivity_figure(hand_study, "p", tmp_path / "x.png", 0.01, "eps") is None
