"""Basins of attraction: labels against single fits and closed forms, convergence steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _problems import GABOR
from scipy.cluster.hierarchy import fcluster, linkage

import fitjax


def _double_well(p, _):  # minima (±1, 0), saddle (0, 0)
    return (p[0] ** 2 - 1) ** 2 + p[1] ** 2


def _same_partition(a, b):
    """True if the labellings a and b group the runs identically (up to renaming)."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_labels_agree_with_fits_run_one_by_one(x64):
    data = fitjax.datasets.gabor()
    v0, v1 = np.linspace(-8, 8, 6), np.linspace(6, 20, 6)
    bm = fitjax.basin_map(GABOR, fitjax.gd(0.05), data, v0, v1, steps=1500, tol=0.1, settle=False)
    starts = fitjax.inits.grid(v0, v1)
    singles = [fitjax.fit(GABOR, fitjax.gd(0.05), starts[i : i + 1], data, steps=1500) for i in range(36)]
    ends = np.stack([np.asarray(r.params[0]) for r in singles])
    losses = np.array([float(r.loss[0]) for r in singles])
    # an independent clustering of the single fits' end points (single linkage, SciPy)
    reference = fcluster(linkage(ends, "single"), t=0.1, criterion="distance")
    labels = bm.label.ravel()
    assert bm.minima.shape[0] > 3 and np.all(labels >= 0)
    assert _same_partition(labels, reference)
    np.testing.assert_allclose(bm.loss.ravel(), losses, rtol=1e-10)
    for k in range(bm.minima.shape[0]):  # label k's minimum is its lowest run, in order of loss
        members = labels == k
        i = np.flatnonzero(members)[np.argmin(losses[members])]
        np.testing.assert_allclose(bm.minima[k], ends[i], atol=1e-10)
        np.testing.assert_allclose(bm.minima_loss[k], losses[members].min(), rtol=1e-10)
    assert np.all(np.diff(bm.minima_loss) > 0)


def test_labels_on_the_double_well_with_divergence(x64):
    v0, v1 = np.linspace(-4, 4, 9), np.linspace(-1, 1, 5)  # includes x = 0: GD stays on the saddle's line
    bm = fitjax.basin_map(_double_well, fitjax.gd(0.1), None, v0, v1, steps=400, tol=1e-3)
    starts = fitjax.inits.grid(v0, v1)
    critical = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    for i in range(starts.shape[0]):
        single = fitjax.fit(_double_well, fitjax.gd(0.1), starts[i : i + 1], None, steps=400)
        label = bm.label.ravel()[i]
        if bool(single.diverged[0]):
            assert label == fitjax.DIVERGED
            assert bm.converged_step.ravel()[i] == -1
            continue
        nearest = np.argmin(np.linalg.norm(critical - np.asarray(single.params[0]), axis=1))
        np.testing.assert_allclose(single.params[0], critical[nearest], atol=1e-6)
        if nearest == 2:  # stopped on the saddle: not a minimum
            assert label == fitjax.UNSETTLED
        else:
            np.testing.assert_allclose(bm.minima[label], critical[nearest], atol=1e-6)
    assert np.sum(bm.label == fitjax.DIVERGED) > 0  # |x| = 4 and 3 overshoot and blow up
    assert np.all(bm.label[4] == fitjax.UNSETTLED)  # x = 0: GD stays on the saddle's line
    assert bm.minima.shape[0] == 2  # only the two minima found clusters
    raw = fitjax.basin_map(_double_well, fitjax.gd(0.1), None, v0, v1, steps=400, tol=1e-3, settle=False)
    assert np.all(raw.label[4] == 2)  # without the test the saddle is a third "minimum"
    np.testing.assert_array_equal(bm.label == fitjax.DIVERGED, np.asarray(bm.result.diverged).reshape(9, 5))


def test_unsettled_runs_are_the_ones_still_moving(x64):
    # Gabor, GD for a few hundred steps: some runs are still crawling. Continue every run
    # for many more steps: the settled ones end within tol/2 of where they were, the
    # unsettled ones (not on a saddle) move further or end elsewhere.
    data, tol = fitjax.datasets.gabor(), 0.1
    v0, v1 = np.linspace(-8, 8, 7), np.linspace(6, 20, 7)
    bm = fitjax.basin_map(GABOR, fitjax.gd(0.05), data, v0, v1, steps=300, tol=tol)
    label = bm.label.ravel()
    ends = np.asarray(bm.result.params)
    later = np.asarray(fitjax.fit(GABOR, fitjax.gd(0.05), ends, data, steps=20000).params)
    moved = np.linalg.norm(later - ends, axis=1)
    settled = label >= 0
    assert settled.sum() > 10 and (label == fitjax.UNSETTLED).sum() > 3
    assert np.all(moved[settled] <= tol / 2)
    assert np.all(moved[label == fitjax.UNSETTLED] > tol / 2)
    # settled is the Newton test itself
    np.testing.assert_array_equal(fitjax.settled(GABOR, ends, data, tol=tol), settled)
    # the clusters of the settled runs are the minima the long runs reach
    for k in range(bm.minima.shape[0]):
        assert np.linalg.norm(later[label == k] - bm.minima[k], axis=1).max() <= tol


def test_settled_on_a_flat_valley_and_at_a_saddle():
    # L = (φ0 − 1)²: every point of the line φ0 = 1 is a minimum (the Hessian is singular)
    def valley(p, _):
        return (p[0] - 1.0) ** 2

    ends = np.array([[1.0, 5.0], [1.0, -3.0], [1.02, 0.0], [1.3, 0.0]])
    np.testing.assert_array_equal(fitjax.settled(valley, ends, None, tol=0.1), [True, True, True, False])
    # a saddle is never settled, even exactly on it; a maximum neither
    ends = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1e-3]])
    np.testing.assert_array_equal(fitjax.settled(_double_well, ends, None, tol=0.1), [False, True, True])
    hill = fitjax.settled(lambda p, _: -jnp.sum(p**2), ends[:1], None, tol=0.1)
    np.testing.assert_array_equal(hill, [False])


def test_convergence_step_matches_the_closed_form(x64):
    # GD on L = |φ|²/2 with step α: L_t = (1 − α)^{2t} · |φ_0|²/2
    alpha, steps, rtol, atol = 0.1, 200, 1e-3, 1e-6
    v0, v1 = np.array([0.5, 2.0, 7.0]), np.array([-3.0, 0.25])

    def basins(record_every):
        return fitjax.basin_map(
            lambda p, _: 0.5 * jnp.sum(p**2),
            fitjax.gd(alpha),
            None,
            v0,
            v1,
            steps=steps,
            record_every=record_every,
            rtol=rtol,
            atol=atol,
            tol=1e-3,
        )

    bm = basins(1)
    r0 = 0.5 * (v0[:, None] ** 2 + v1[None, :] ** 2)
    t = np.arange(steps + 1)
    curve = r0[..., None] * (1 - alpha) ** (2 * t)  # closed-form loss at every step
    final = curve[..., -1]
    within = np.abs(curve[..., :-1] - final[..., None]) <= atol + rtol * final[..., None]
    expected = np.array([[np.flatnonzero(~w).max() + 1 if (~w).any() else 0 for w in row] for row in within])
    np.testing.assert_array_equal(bm.converged_step, expected)
    assert np.all((expected > 0) & (expected < steps))
    # recorded every 10 steps: the first recorded step at or after the every-step answer
    coarse = basins(10)
    np.testing.assert_array_equal(coarse.converged_step, 10 * np.ceil(expected / 10))


def test_convergence_step_definition_on_hand_made_histories():
    step = np.array([0, 5, 10, 15, 20])
    history = np.array(
        [
            [9.0, 2.0, 1.0, 1.0, 1.0],  # settles at 10
            [9.0, 1.0, 3.0, 1.0, 1.0],  # leaves and comes back: settles at 15
            [9.0, 8.0, 7.0, 6.0, 5.0],  # still moving at the last record: the end
            [1.0, 1.0, 1.0, 1.0, 1.0],  # settled from the start
            [1.0, 1.0, 1.0, 1.0, 1.0],  # diverged
        ]
    )
    final = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    diverged = np.array([False, False, False, False, True])
    out = fitjax.convergence_step(step, history, final, diverged, 25, rtol=0.0, atol=0.01)
    np.testing.assert_array_equal(out, [10, 15, 25, 0, -1])
    with pytest.raises(ValueError, match="history_loss"):
        fitjax.convergence_step(step, history[:, :3], final, diverged, 25)


def test_label_minima_orders_by_loss_and_flags_bad_runs():
    params = np.array([[0.0, 0.0], [5.0, 5.0], [0.05, 0.0], [5.0, 5.02], [np.nan, 0.0], [1.0, 1.0]])
    loss = np.array([2.0, 1.0, 1.5, 1.2, 0.0, 3.0])
    diverged = np.array([False, False, False, False, False, True])
    labels, minima, values = fitjax.label_minima(params, loss, diverged, tol=0.1)
    np.testing.assert_array_equal(labels, [1, 0, 1, 0, -1, -1])
    moving = np.array([False, True, False, False, True, False])  # run 1 founded cluster 0
    again, _, _ = fitjax.label_minima(params, loss, diverged, tol=0.1, unsettled=moving)
    np.testing.assert_array_equal(again, [1, fitjax.UNSETTLED, 1, 0, fitjax.DIVERGED, fitjax.DIVERGED])
    with pytest.raises(ValueError, match="unsettled must have one value per run"):
        fitjax.label_minima(params, loss, unsettled=moving[:2])
    np.testing.assert_array_equal(minima, [[5.0, 5.0], [0.05, 0.0]])
    np.testing.assert_array_equal(values, [1.0, 1.5])
    tree = {"a": params[:, :1], "b": params[:, 1]}  # a pytree with a leading run axis
    np.testing.assert_array_equal(fitjax.label_minima(tree, loss, diverged, tol=0.1)[0], labels)
    with pytest.raises(ValueError, match="tol"):
        fitjax.label_minima(params, loss, tol=0.0)
    with pytest.raises(ValueError, match="one value per run"):
        fitjax.label_minima(params, loss[:3])


def test_any_optimizer_and_hyperparameters_pass_through_to_fit():
    data = fitjax.datasets.gabor()
    v0, v1 = np.linspace(-5, 5, 4), np.linspace(5, 20, 3)
    kw = dict(steps=60, batch_size=5, hyperparams={"beta": 0.5})
    bm = fitjax.basin_map(GABOR, fitjax.momentum(0.1, 0.9), data, v0, v1, key=jax.random.key(1), **kw)
    direct = fitjax.fit(
        GABOR,
        fitjax.momentum(0.1, 0.9),
        fitjax.inits.grid(v0, v1),
        data,
        key=jax.random.key(1),
        record_every=int(bm.result.history.step[1]),
        **kw,
    )
    np.testing.assert_allclose(bm.result.params, direct.params, rtol=1e-6)
    np.testing.assert_allclose(bm.loss, np.asarray(direct.loss).reshape(4, 3), rtol=1e-6)
