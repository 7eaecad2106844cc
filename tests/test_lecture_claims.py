"""The lecture's qualitative claims, measured.

Each test states the claim, the settings and the numbers it measured (also printed in
its assertion messages). The numbers come from CPU runs of the settings below.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import fitjax
from fitjax.lecture import problems

GABOR = problems.gabor().loss  # the lecture's Gabor fit (w = 32), as in fitjax demo
TOY = fitjax.datasets.notebook()["adam_toy"]
TOY_MIN = np.asarray(TOY["minimum"])  # (0.7, 0)


def test_sgd_escapes_local_minima_that_gd_stays_in():
    """ "SGD can escape from local minima." Measured on the Gabor landscape (30 points, w = 32).

    225 starts on a 15 × 15 grid over φ0 ∈ [−10, 10], φ1 ∈ [2.5, 22.5]; full-batch GD and
    SGD with B = 5 (one fixed key), both α = 0.25 and 2000 steps. Where a run ended up is
    judged by its *basin*: the loss that plain GD (α = 0.01, 3000 steps) reaches from
    the run's last point. A start counts as an escape when GD converged to a local
    minimum (final loss > global + 0.5 and equal to its basin's, so not merely bouncing)
    and SGD's last point lies in the global minimum's basin.

    Measured: GD converges to a local minimum from 165 of 225 starts; SGD escapes from
    2 of them (0.9 %); the other way round, SGD leaves the global basin from 1 start
    that GD brought to the global minimum. Keys 1–3 give 2, 4, 2 escapes. The effect is
    real but small at a step size where GD is still stable: SGD's noise is a way out of
    some local minima, not a cure (and it can also knock a run out of the right valley).
    """
    data = problems.gabor().data
    (lo0, hi0), (lo1, hi1) = problems.gabor().box
    starts = fitjax.inits.grid(jnp.linspace(lo0, hi0, 15), jnp.linspace(lo1, hi1, 15))
    alpha, steps = 0.25, 2000
    gd = fitjax.fit(GABOR, fitjax.gd(alpha), starts, data, steps=steps)
    sgd = fitjax.fit(GABOR, fitjax.sgd(alpha), starts, data, steps=steps, batch_size=5, key=jax.random.key(0))
    assert not bool(gd.diverged.any() | sgd.diverged.any())

    def basin(params: jax.Array) -> np.ndarray:
        return np.asarray(fitjax.fit(GABOR, fitjax.gd(0.01), params, data, steps=3000).loss)

    gd_basin, sgd_basin = basin(gd.params), basin(sgd.params)
    best = min(gd_basin.min(), sgd_basin.min())
    assert abs(best - 0.6457) < 1e-3, f"global minimum {best:.4f}"
    gd_loss = np.asarray(gd.loss)
    gd_stuck = (gd_loss > best + 0.5) & (np.abs(gd_loss - gd_basin) < 1e-3)
    sgd_global = sgd_basin < best + 1e-3
    escaped = gd_stuck & sgd_global
    knocked_out = (gd_basin < best + 1e-3) & ~sgd_global
    msg = (
        f"GD stuck in a local minimum from {gd_stuck.sum()}/225 starts; SGD escaped from {escaped.sum()} "
        f"({escaped.mean():.1%} of starts); SGD left the global basin from {knocked_out.sum()}"
    )
    print(msg)
    assert gd_stuck.sum() > 100, msg  # the landscape has many local minima
    assert escaped.sum() > 0, msg
    # an escape is a real move between basins: GD's final loss there is at least 2 above the global
    assert (gd_loss[escaped] > best + 2.0).all(), f"{msg}; GD losses there {gd_loss[escaped]}"


def test_normalized_gradients_bounce_around_the_minimum():
    """Normalized gradients move exactly α along every coordinate, so they "will not converge
    unless [they happen] to land exactly at the minimum".

    The notebook's run: toy loss from (−0.7, −0.9), α = 0.08, ε = 1e-20, 40 steps. Measured
    (float64): from step 17 on (of 40) the iterates alternate between (0.66, −0.02) and
    (0.74, 0.06), both within α of the minimum (0.7, 0) in each coordinate; every step
    moves 0.08 in both coordinates.
    """
    run = TOY["runs"]["normalized_gradients"]
    with jax.enable_x64(True):
        res = fitjax.fit(
            fitjax.toy_loss,
            fitjax.normalized(run["alpha"], eps=run["epsilon"]),
            jnp.asarray([TOY["phi_init"]]),
            None,
            steps=run["n_steps"],
            record_every=1,
            record_params=True,
        )
        path = np.concatenate([np.asarray(res.history.params[0]), np.asarray(res.params)])
    last = path[-6:]
    msg = f"last iterates {last.round(4).tolist()}"
    print(msg)
    np.testing.assert_allclose(np.abs(np.diff(path, axis=0)), run["alpha"], rtol=1e-9, err_msg="step ≠ α")
    np.testing.assert_allclose(last[2:], last[:-2], atol=1e-12, err_msg=f"not a two-point cycle: {msg}")
    assert not np.allclose(last[-1], last[-2]), msg
    assert (np.abs(last - TOY_MIN) <= run["alpha"]).all(), msg
    # the two points straddle the minimum in each coordinate
    assert ((last[-1] - TOY_MIN) * (last[-2] - TOY_MIN) < 0).all(), msg


def test_adam_converges_where_fixed_step_gd_crawls():
    """Adam "makes good progress in both directions"; a fixed step is too small in one.

    The notebook's runs from (−0.7, −0.9) on the toy loss: Adam with α = 0.05, β = 0.9,
    γ = 0.99, ε = 1e-20, and GD with α = 0.08, both for Adam's 60 steps. Measured (float64):
    after 60 steps Adam is at (0.667, 0.030), 0.044 from (0.7, 0), loss 0.0019; GD is at
    (0.175, 0.000), 0.525 away, loss 0.034: it has settled the steep φ1 but crawls along
    the shallow φ0. With 200 steps (the notebook's GD run) Adam is 2.1e-5 from the
    minimum and GD still 0.032 away.
    """
    adam_run, gd_run = TOY["runs"]["adam"], TOY["runs"]["gd_small_lr"]
    adam = fitjax.adam(adam_run["alpha"], adam_run["beta"], adam_run["gamma"], adam_run["epsilon"])
    gd = fitjax.gd(gd_run["alpha"])
    start = jnp.asarray([TOY["phi_init"]])
    with jax.enable_x64(True):
        dist = {}
        for steps in (adam_run["n_steps"], gd_run["n_steps"]):
            for name, opt in (("adam", adam), ("gd", gd)):
                res = fitjax.fit(fitjax.toy_loss, opt, start, None, steps=steps)
                dist[name, steps] = float(np.linalg.norm(np.asarray(res.params[0]) - TOY_MIN))
                if (name, steps) == ("gd", 60):
                    gd_phi = np.asarray(res.params[0])
    msg = ", ".join(f"{n} after {s} steps: {d:.3g} from (0.7, 0)" for (n, s), d in dist.items())
    print(msg)
    assert dist["adam", 60] < 0.05, msg
    assert dist["gd", 60] > 10 * dist["adam", 60], msg
    assert abs(gd_phi[1]) < 1e-6 and abs(gd_phi[0] - 0.7) > 0.5, f"GD at {gd_phi}: {msg}"
    assert dist["adam", 200] < 1e-4 and dist["gd", 200] > 0.01, msg
