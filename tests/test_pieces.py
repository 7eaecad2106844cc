"""A least-squares loss summed in pieces: the lecture's loss to float32 rounding, and the
engine's choice of pieces where XLA's CPU compiler would split a small step across threads."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _problems import GABOR, LINE, gabor_grad_numpy, gabor_numpy

import fitjax
from fitjax import internal
from fitjax.engine import pieces
from fitjax.numerics.fastmath import choose_math

several_cores = pytest.mark.skipif(pieces.cores() < 2, reason="XLA splits nothing on one core")


def gabor_data(points: int, key: int = 0) -> tuple[jax.Array, jax.Array]:
    x = jnp.linspace(-15.0, 15.0, points, dtype=jnp.float32)
    noise = 0.05 * jax.random.normal(jax.random.key(key), (points,), jnp.float32)
    return x, GABOR.model(jnp.array([0.3, 12.0]), x) + noise


@pytest.mark.parametrize("n_pieces", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_a_sum_in_pieces_is_the_lecture_loss_and_gradient(n_pieces, reduction):
    x, y = gabor_data(1000)  # 1000 points: pieces of unequal size when 3 or 7
    loss = dataclasses.replace(GABOR, reduction=reduction, pieces=n_pieces)
    scale = 1.0 / 1000 if reduction == "mean" else 1.0
    for phi in ([0.5, 10.0], [-1.0, 14.0], [0.3, 12.0]):
        value, grad = jax.value_and_grad(loss)(jnp.array(phi, jnp.float32), (x, y))
        np.testing.assert_allclose(float(value), scale * gabor_numpy(phi, x, y), rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(grad, scale * gabor_grad_numpy(phi, x, y), rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("bad", [0, -2, True, 2.0, "2"])
def test_pieces_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match=f"pieces must be a positive int, got {bad!r}"):
        fitjax.LeastSquares(fitjax.line, pieces=bad)


def test_pieces_are_seen_through_the_maths_wrappers_and_only_in_least_squares():
    pieced = pieces.with_pieces(fitjax.polynomial_math(GABOR), 2)
    assert pieces.additive(pieced) == dataclasses.replace(GABOR, pieces=2)
    assert pieced is fitjax.polynomial_math(dataclasses.replace(GABOR, pieces=2))  # one compiled program
    assert pieces.additive(fitjax.platform_math(LINE)) == LINE

    def mine(params, batch):
        return GABOR(params, batch)

    assert pieces.additive(mine) is None and pieces.with_pieces(mine, 2) is mine


def _plan(loss, runs: int, points: int, **kw) -> internal.Plan:
    starts = jnp.tile(jnp.array([[0.5, 10.0]], jnp.float32), (runs, 1))
    internal.forget_checked()
    return internal.prepare(loss, fitjax.adam(0.05), starts, gabor_data(points), steps=10, **kw).plan


@several_cores
def test_the_engine_takes_pieces_only_where_xla_would_split_a_small_step():
    assert _plan(GABOR, 1, 1024).loss_pieces == 2
    assert _plan(GABOR, 4, 1024).loss_pieces == 4
    assert _plan(GABOR, 1, 2048, batch_size=1024, key=jax.random.key(0)).loss_pieces == 2  # one batch a step
    assert _plan(GABOR, 8, 1024).loss_pieces == 1  # 8192 pairs: the split pays
    assert _plan(GABOR, 1, 512).loss_pieces == 1  # too small to be split
    assert _plan(fitjax.platform_math(GABOR), 1, 1024).loss_pieces == 1  # one transcendental is cheap
    assert _plan(lambda p, b: GABOR(p, b), 1, 1024).loss_pieces == 1  # a loss fitjax cannot see into
    assert _plan(dataclasses.replace(GABOR, pieces=3), 1, 1024).loss_pieces == 1  # the user's own choice

    def centred(params, x):  # not per example: each prediction reads the whole batch's mean
        return GABOR.model(params, x - jnp.mean(x))

    assert _plan(fitjax.least_squares(centred), 1, 1024).loss_pieces == 1


@several_cores
def test_pieces_turn_off(monkeypatch):
    monkeypatch.setattr(pieces, "PIECES_UP_TO", 0)
    assert _plan(GABOR, 1, 1024).loss_pieces == 1


def _split_fusions(loss, runs: int, points: int, loss_pieces: int | None = None, **kw) -> int:
    """Fusions of the step loop of ``fit``'s compiled program that XLA splits across threads,
    with the pieces the engine chose (or ``loss_pieces``); not the epoch's shuffle, which
    is not the loss."""
    starts = jnp.tile(jnp.array([[0.5, 10.0]], jnp.float32), (runs, 1))
    internal.forget_checked()
    problem = internal.prepare(loss, fitjax.adam(0.05), starts, gabor_data(points), steps=50, **kw)
    plan = problem.plan if loss_pieces is None else dataclasses.replace(problem.plan, loss_pieces=loss_pieces)
    pieced = choose_math(pieces.with_pieces(loss, plan.loss_pieces), "cpu")
    _, jitted = internal.program(pieced, problem.update, plan)
    args = (starts, problem.hp_shared, problem.hp_run, problem.key, problem.run_ids, problem.data)
    hlo = jitted.lower(*args).compile().as_text()
    step = [line for line in hlo.splitlines() if "while/body" in line and "_shuffle" not in line]
    return sum("outer_dimension_partitions" in line for line in step)


@several_cores
@pytest.mark.parametrize("runs", [1, 2])
def test_the_fit_program_in_pieces_keeps_its_step_on_one_thread(runs):
    assert _plan(GABOR, runs, 1024).loss_pieces > 1
    assert _split_fusions(GABOR, runs, 1024, 1) > 0  # what the pieces are for
    assert _split_fusions(GABOR, runs, 1024) == 0


@several_cores
@pytest.mark.parametrize("runs", [1, 2])
def test_mini_batches_in_pieces_keep_their_step_on_one_thread(runs):
    """Each run draws its own mini-batch inside the loop: the pieces are chosen for that step
    (at 2 runs, whose gathered batches no count up to 4 keeps whole, none are taken)."""
    kw = dict(batch_size=1024, key=jax.random.key(0))
    chosen = _plan(GABOR, runs, 2048, **kw).loss_pieces
    assert _split_fusions(GABOR, runs, 2048, 1, **kw) > 0
    assert chosen == {1: 2, 2: 1}[runs]
    if chosen == 1:  # none taken because none helps: 4 pieces are still split
        assert _split_fusions(GABOR, runs, 2048, 4, **kw) > 0
    else:
        assert _split_fusions(GABOR, runs, 2048, **kw) == 0


@several_cores
def test_a_fit_in_pieces_is_the_whole_fit_to_float32_rounding():
    x, y = gabor_data(1024)
    starts = jnp.array([[0.5, 10.0], [-1.0, 14.0], [0.2, 11.0]], jnp.float32)
    rates = jnp.array([0.05, 0.01, 1e30], jnp.float32)  # the last run diverges

    def whole(params, batch):  # the same loss, which the engine cannot see into
        return GABOR(params, batch)

    kw = dict(params0=starts, data=(x, y), steps=60, record_every=10, hyperparams={"learning_rate": rates})
    cut = internal.prepare(GABOR, fitjax.adam(0.05), starts, (x, y), steps=60, record_every=10)
    assert cut.plan.loss_pieces == 4  # 3 runs of 1024 points
    a = fitjax.fit(GABOR, fitjax.adam(0.05), **kw)
    b = fitjax.fit(whole, fitjax.adam(0.05), **kw)
    np.testing.assert_array_equal(a.diverged_step, b.diverged_step)
    assert int(a.diverged_step[2]) >= 0 and bool((a.diverged_step[:2] < 0).all())
    np.testing.assert_allclose(a.params, b.params, rtol=2e-5)
    np.testing.assert_allclose(a.loss, b.loss, rtol=2e-5)
    np.testing.assert_allclose(a.history.loss, b.history.loss, rtol=2e-5)
    for phi, value in zip(np.asarray(a.params[:2], np.float64), a.loss[:2], strict=True):
        np.testing.assert_allclose(float(value), gabor_numpy(phi, x, y), rtol=2e-5)


@several_cores
def test_a_chunked_sweep_takes_the_pieces_of_its_blocks_and_the_numbers_of_fit(tmp_path):
    x, y = gabor_data(1024)
    starts = jnp.array([[0.5, 10.0], [-1.0, 14.0]], jnp.float32)
    kw = dict(steps=40, record_every=10)
    run = fitjax.fit_chunked(GABOR, fitjax.adam(0.05), starts, (x, y), chunk_size=1, out_dir=tmp_path,
                             block=2, progress=False, **kw)  # fmt: skip
    got = fitjax.load_chunked(run.path)
    internal.forget_checked()
    want = fitjax.fit(GABOR, fitjax.adam(0.05), starts, (x, y), **kw)
    assert internal.prepare(GABOR, fitjax.adam(0.05), starts, (x, y), **kw).plan.loss_pieces == 2
    np.testing.assert_array_equal(got.params, want.params)
    np.testing.assert_array_equal(got.loss, want.loss)
    np.testing.assert_array_equal(got.history.loss, want.history.loss)
