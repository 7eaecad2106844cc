"""The step loop checks for divergence once per span of steps and replays a failed span.

The reference is the definition, written as a plain Python loop over one run: every step
is checked, a run whose gradient or new parameters are not finite is flagged at that step
and keeps its parameters and rule state from then on (its step count goes on), and what
is recorded after that step is recorded at the frozen parameters. The engine must give
the same ``diverged_step`` exactly and the same numbers up to float32 rounding, for
spans shorter, equal to and longer than the record interval, with and without
mini-batches, and for fitjax and optax optimizers.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _problems import LINE

import fitjax
from fitjax import internal
from fitjax.engine import sampler as _sampler
from fitjax.optim.protocol import stepper

GABOR = fitjax.least_squares(fitjax.gabor)


def _finite(tree) -> bool:
    return all(bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree.leaves(tree))


@functools.cache
def _jitted(loss, optimizer):
    grad = jax.jit(jax.grad(loss))
    update = jax.jit(optimizer.update)
    return grad, update, jax.jit(loss)


_indices_at = jax.jit(_sampler.indices_at, static_argnums=(2, 3))


def _reference(loss, optimizer, p0, data, steps, record_every, batch_size=None, key=None):
    """One run, every step checked: ``(reported params, loss, diverged_step, records)``."""
    grad, update, value = _jitted(loss, optimizer)
    params, state = jnp.asarray(p0), optimizer.init(jnp.asarray(p0))
    n = jax.tree.leaves(data)[0].shape[0]
    diverged, records = -1, []
    for t in range(steps):
        if batch_size is None:
            batch = data
        else:
            batch = _sampler.take(data, _indices_at(key, jnp.int32(t), n, batch_size))
        g = grad(params, batch)
        if record_every and t % record_every == 0 and t < steps // record_every * record_every:
            shown = fitjax.reported_params(optimizer, params, state)
            records.append((float(value(shown, data)), float(optax.tree.norm(g)), np.asarray(shown)))
        updates, new_state = update(g, state, params)
        new = optax.apply_updates(params, updates)
        if diverged < 0 and _finite(g) and _finite(new):
            params, state = new, new_state
        else:
            diverged = t if diverged < 0 else diverged
            if isinstance(state, fitjax.OptState):  # the count goes on, the rule's state stays
                state = new_state._replace(inner_state=state.inner_state)
    shown = fitjax.reported_params(optimizer, params, state)
    final = float(value(shown, data))
    if diverged < 0 and not np.isfinite(final):
        diverged = steps
    return np.asarray(shown), final, diverged, records


def _close(got, want, what: str, series: bool = False) -> None:
    """Equal up to float32 rounding: relative, with an absolute floor at 1e-5 of the scale
    (a gradient near a minimum is a sum that cancels). The scale of a recorded series is
    its first value, so that a run that later overflows keeps its early records checked;
    otherwise the largest value. Non-finite values must match."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    finite = np.abs(want[np.isfinite(want)])
    first = np.abs(want.reshape(len(want), -1)[0]) if series else finite
    scale = float(first.max()) if first.size and np.isfinite(first).all() else float(finite.max(initial=0.0))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5 * scale, err_msg=what)


def _check(result, loss, optimizers, starts, data, steps, record_every, batch_size=None, key=None):
    for i, optimizer in enumerate(optimizers):
        run_key = None if key is None else jax.random.fold_in(key, jnp.uint32(i))
        params, final, diverged, records = _reference(
            loss, optimizer, starts[i], data, steps, record_every, batch_size, run_key
        )
        assert int(result.diverged_step[i]) == diverged, f"run {i}"
        _close(result.params[i], params, f"params of run {i}")
        _close(result.loss[i], final, f"loss of run {i}")
        if record_every:
            want_loss, want_norm, want_shown = (np.array(v) for v in zip(*records, strict=True))
            _close(result.history.loss[i], want_loss, f"recorded loss of run {i}", series=True)
            _close(result.history.grad_norm[i], want_norm, f"recorded gradient norm of run {i}", series=True)
            if result.history.params is not None:
                _close(result.history.params[i], want_shown, f"recorded params of run {i}", series=True)


@pytest.fixture(params=[1, 3, 32], ids=lambda k: f"span{k}")
def span(request, monkeypatch):
    monkeypatch.setattr(internal.prepare_module, "CHECK_EVERY", request.param)
    internal.program.cache_clear()
    yield request.param
    internal.program.cache_clear()


LRS = np.array([0.01, 0.03, 0.045, 0.06, 0.2, 1.0])  # stable, stable, slow, overflow, fast, very fast


@pytest.mark.parametrize("record_every", [None, 1, 5, 50], ids=lambda k: f"record{k}")
def test_gd_divergence_and_records_match_the_step_by_step_reference(span, record_every):
    starts = np.tile(np.float32([1.6, -0.5]), (len(LRS), 1))
    data = fitjax.datasets.line()
    res = fitjax.fit(
        LINE,
        fitjax.gd(0.01),
        starts,
        data,
        steps=103,
        record_every=record_every,
        record_params=True,
        hyperparams={"learning_rate": LRS},
    )
    assert res.diverged[3:].all() and not res.diverged[:2].any()
    _check(res, LINE, [fitjax.gd(float(a)) for a in LRS], starts, data, 103, record_every)


def test_minibatch_divergence_and_records_match_the_reference(span):
    starts = np.tile(np.float32([1.6, -0.5]), (len(LRS), 1))
    data, key = fitjax.datasets.line(), jax.random.key(3)
    res = fitjax.fit(
        LINE,
        fitjax.gd(0.01),
        starts,
        data,
        steps=61,
        record_every=7,
        batch_size=5,
        key=key,
        hyperparams={"learning_rate": LRS * 2},
    )
    assert res.diverged.any() and not res.diverged.all()
    _check(res, LINE, [fitjax.gd(float(a)) for a in LRS * 2], starts, data, 61, 7, batch_size=5, key=key)


def test_nesterov_with_a_schedule_reports_the_frozen_point_at_each_count(span):
    # Nesterov reports φ from the look-ahead point with α(count): after a run is frozen,
    # each record shows it at that record's count.
    schedules = [optax.exponential_decay(a, 10, 2.0) for a in (0.01, 0.3)]
    optimizers = [fitjax.nesterov(s, 0.9) for s in schedules]
    starts = np.tile(np.float32([1.6, -0.5]), (2, 1))
    data = fitjax.datasets.line()
    results = [
        fitjax.fit(LINE, opt, starts[i : i + 1], data, steps=45, record_every=5, record_params=True)
        for i, opt in enumerate(optimizers)
    ]
    assert not results[0].diverged[0] and results[1].diverged[0]
    for i, res in enumerate(results):
        _check(res, LINE, [optimizers[i]], starts[i : i + 1], data, 45, 5)


@pytest.mark.loose_promotion  # optax's own code mixes Python floats, ints and floats
def test_adam_and_an_optax_chain_match_the_reference(span):
    data = fitjax.datasets.gabor()
    starts = fitjax.inits.uniform(jax.random.key(1), 4, [-10.0, 2.5], [10.0, 22.5])
    lrs = np.array([0.05, 1e3, 0.5, 1e5], np.float32)
    res = fitjax.fit(
        GABOR, fitjax.adam(0.05), starts, data, steps=40, record_every=4, hyperparams={"learning_rate": lrs}
    )
    _check(res, GABOR, [fitjax.adam(float(a)) for a in lrs], np.asarray(starts), data, 40, 4)
    # An optax state is saved and restored whole (its own count included).
    chain = optax.chain(optax.scale_by_adam(), optax.scale(-1.5))
    line_starts = np.float32([[1.6, -0.5], [1e18, 1e18]])
    res = fitjax.fit(LINE, chain, line_starts, fitjax.datasets.line(), steps=50, record_every=10)
    _check(res, LINE, [chain, chain], line_starts, fitjax.datasets.line(), 50, 10)


def test_the_replay_is_compiled_only_for_a_batch_with_a_failed_run_and_only_once():
    internal.program.cache_clear()
    internal.replay_program.cache_clear()
    starts = np.tile(np.float32([1.6, -0.5]), (2, 1))

    def run(lrs):
        before = internal.TRACES["replay"]
        res = fitjax.fit(
            LINE,
            fitjax.gd(0.01),
            starts,
            fitjax.datasets.line(),
            steps=40,
            hyperparams={"learning_rate": lrs},
        )
        return res, internal.TRACES["replay"] - before

    res, traced = run([0.01, 0.02])
    assert traced == 0 and not res.diverged.any()
    res, traced = run([0.01, 1.0])
    assert traced == 1 and res.diverged_step[0] == -1 and 0 < res.diverged_step[1] < 40
    res, traced = run([2.0, 0.01])  # other values, same shapes: no new trace
    assert traced == 0 and 0 < res.diverged_step[0] < 40 and res.diverged_step[1] == -1


@pytest.mark.parametrize(("backend", "unroll"), [("cpu", 1), ("gpu", 2)])
def test_fit_unrolls_its_step_loop_twice_on_a_gpu_by_default(monkeypatch, backend, unroll):
    plans = []
    original = internal.program

    def spy(loss, update, plan):
        plans.append(plan)
        return original(loss, update, plan)

    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    monkeypatch.setattr(internal.program_module, "program", spy)
    starts = np.float32([[1.6, -0.5]])
    fitjax.fit(LINE, fitjax.gd(0.01), starts, fitjax.datasets.line(), steps=5)
    fitjax.fit(LINE, fitjax.gd(0.01), starts, fitjax.datasets.line(), steps=5, unroll=3)
    assert [p.unroll for p in plans] == [unroll, 3]
    assert plans[0].check_every == internal.prepare_module.CHECK_EVERY


def test_a_span_that_fails_in_the_loop_but_not_on_replay_is_flagged_at_its_last_step():
    """Rounding at the edge of overflow could fail a span in the loop and not on replay.

    Such a run is flagged at the span's last step and keeps the replay's state; the other
    runs keep the loop's results bit for bit. No real input triggers it on purpose, so the
    replay program is given a healthy run marked as failed over its one span."""
    opt, data, span = optax.sgd(0.01), fitjax.datasets.line(), 6
    p0 = jnp.float32([[1.6, -0.5], [0.3, 0.8]])
    healthy = fitjax.fit(LINE, opt, p0, data, steps=span)
    plan = internal.Plan(
        steps=span,
        record_every=None,
        record_params=False,
        batch_size=None,
        n_data=data[0].shape[0],
        shared_order=False,
        extra_args=stepper(opt, p0)[0].uses_loss,
        check_every=span,
        keep_state=True,
    )
    update, defaults = stepper(opt, p0)
    _, replay = internal.replay_program(LINE, update, plan)
    marked = jnp.int32([[-1, -1], [0, span]])  # run 1 failed its span [0, 6)
    kept = (healthy.params.at[1].set(jnp.nan), healthy.loss.at[1].set(jnp.nan), healthy.diverged_step)
    spare = internal.pack((marked, None, None))  # the state is kept; sgd reports its own params
    params, loss, diverged_step, history, _ = replay(
        p0, jax.vmap(opt.init)(p0), spare, defaults, {}, None, internal.unused_key(), None, data, kept
    )
    assert history is None
    np.testing.assert_array_equal(diverged_step, [-1, span - 1])
    np.testing.assert_array_equal(params[0], healthy.params[0])  # untouched, bit for bit
    np.testing.assert_array_equal(loss[0], healthy.loss[0])
    np.testing.assert_allclose(params[1], healthy.params[1], rtol=1e-6)  # the replay's six steps
    np.testing.assert_allclose(loss[1], healthy.loss[1], rtol=1e-6)


def test_a_diverging_batch_gives_the_same_results_without_jit():
    """The replay runs op by op too (``jit=False``), with the same exact step."""
    starts = np.tile(np.float32([1.6, -0.5]), (3, 1))
    kw = dict(steps=40, record_every=10, hyperparams={"learning_rate": [0.01, 1.0, 0.5]})
    jitted = fitjax.fit(LINE, fitjax.gd(0.01), starts, fitjax.datasets.line(), **kw)
    eager = fitjax.fit(LINE, fitjax.gd(0.01), starts, fitjax.datasets.line(), jit=False, **kw)
    assert jitted.diverged_step[0] == -1 and 0 < jitted.diverged_step[1] < 40
    np.testing.assert_array_equal(eager.diverged_step, jitted.diverged_step)
    np.testing.assert_allclose(eager.params, jitted.params, rtol=1e-5)
    np.testing.assert_allclose(eager.history.loss, jitted.history.loss, rtol=1e-5)


def test_a_diverging_float64_batch_is_replayed_from_its_packed_words(x64):
    """In float64 what a replay reads back is packed as 64-bit words (the momentum, the
    hyperparameters) beside 32-bit ones (the step count, the failed spans): the replay
    must unpack each and find the reference's exact steps."""
    starts = np.tile(np.float64([1.6, -0.5]), (len(LRS), 1))
    data = jax.tree.map(lambda a: np.asarray(a, np.float64), fitjax.datasets.line())
    problem = internal.prepare(LINE, fitjax.momentum(0.01, 0.9), starts, data, steps=2)
    like = internal.program_module.spare_like(
        problem.update, problem.plan, starts, problem.hp_shared, problem.hp_run
    )
    assert sorted(jax.eval_shape(internal.pack, like)) == ["bits32", "bits64"]
    lrs = np.array([0.01, 0.03, 1.0, 3.0, 10.0])  # the last two overflow float64 (at steps 276, 183)
    starts = starts[: len(lrs)]
    res = fitjax.fit(
        LINE, fitjax.momentum(0.01, 0.9), starts, data, steps=300, hyperparams={"learning_rate": lrs}
    )
    assert res.params.dtype == np.float64 and res.diverged[3:].all() and not res.diverged[:3].any()
    _check(res, LINE, [fitjax.momentum(float(a), 0.9) for a in lrs], starts, data, 300, None)
