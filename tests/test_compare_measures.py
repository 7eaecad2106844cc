"""The study measures on hand-made runs with known runtimes, each checked against a
plain loop written here (no shared code with fitjax.comparison.measures)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fitjax.comparison import measures as m

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
