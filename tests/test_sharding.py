"""The run axis split over several (forced CPU) devices equals the unsharded fit, run by run."""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, fitjax
    assert len(jax.devices()) == {n}, jax.devices()
    data = fitjax.datasets.gabor()
    loss = fitjax.least_squares(fitjax.Gabor(32.0))
    starts = fitjax.inits.uniform(jax.random.key(0), 37, [-10.0, 2.5], [10.0, 22.5])  # 37 does not divide {n}
    kw = dict(steps=50, record_every=10, batch_size=5, key=jax.random.key(1))
    one = fitjax.fit(loss, fitjax.adam(0.05), starts, data, mesh=fitjax.run_mesh(jax.devices()[:1]), **kw)
    many = fitjax.fit(loss, fitjax.adam(0.05), starts, data, **kw)  # default: all devices
    np.testing.assert_array_equal(np.asarray(one.params), np.asarray(many.params))
    np.testing.assert_array_equal(np.asarray(one.history.loss), np.asarray(many.history.loss))
    assert many.params.shape == (37, 2)
    left = fitjax.fit(loss, fitjax.adam(0.05), starts[:32], data, gather=False, **kw)
    assert len(left.params.sharding.device_set) == {n}, left.params.sharding
    assert left.params.sharding.spec[0] == "runs", left.params.sharding
    np.testing.assert_array_equal(np.asarray(left.params), np.asarray(one.params)[:32])
    grid = {{"learning_rate": jnp.array([0.01, 0.1])}}
    sw = fitjax.sweep(loss, fitjax.momentum(0.01), starts, data, steps=20, grid=grid)
    ref = fitjax.sweep(loss, fitjax.momentum(0.01), starts, data, steps=20, grid=grid,
                       mesh=fitjax.run_mesh(jax.devices()[:1]))
    # On a CPU the loss's float32 sin/cos/exp are fitjax's polynomials, which XLA vectorises:
    # a run whose shard has another size may round differently by a unit in the last place
    # (measured with 8 devices: 11 of 148 values, at most 4.8e-7), so equal to float32 rounding.
    np.testing.assert_allclose(np.asarray(sw.result.params), np.asarray(ref.result.params), rtol=1e-6)
    # a grid on one device beside starts on all of them
    on_one = {{"learning_rate": jax.device_put(jnp.array([0.01, 0.1]), jax.devices()[0])}}
    runs = jax.sharding.NamedSharding(fitjax.run_mesh(), jax.sharding.PartitionSpec("runs"))
    across = fitjax.sweep(loss, fitjax.momentum(0.01), jax.device_put(starts[:32], runs), data, steps=20,
                          grid=on_one)
    np.testing.assert_allclose(np.asarray(across.result.params), np.asarray(ref.result.params)[:, :32],
                               rtol=1e-6)
    # Runs that fail a span check are replayed by a second program, on the same shards.
    line = fitjax.least_squares(fitjax.line)
    lrs = np.float32([0.01, 1.0, 0.03, 0.2, 5.0, 0.01, 0.06, 0.045])
    line_starts = np.tile(np.float32([1.6, -0.5]), (8, 1))
    kw = dict(steps=45, record_every=5, hyperparams={{"learning_rate": lrs}})
    div_one = fitjax.fit(line, fitjax.gd(0.01), line_starts, fitjax.datasets.line(),
                         mesh=fitjax.run_mesh(jax.devices()[:1]), **kw)
    div_left = fitjax.fit(line, fitjax.gd(0.01), line_starts, fitjax.datasets.line(), gather=False, **kw)
    flagged = np.asarray(div_one.diverged)
    assert flagged[[1, 4]].all() and not flagged[[0, 2, 5]].any()
    assert div_left.diverged_step.sharding.spec[0] == "runs", div_left.diverged_step.sharding
    np.testing.assert_array_equal(np.asarray(div_one.diverged_step), np.asarray(div_left.diverged_step))
    for x, y in zip(jax.tree.leaves((div_one.params, div_one.history)),
                    jax.tree.leaves((div_left.params, div_left.history))):  # to rounding, as below
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)
    # A pytree model: XLA may simplify a division by a per-step scalar differently once the
    # program is partitioned (m / c versus m * (1/c)), so the sharded fit equals the
    # one-device fit to float32 rounding, not bit for bit (fitjax.fit_chunked is bit-exact).
    mlp = fitjax.least_squares(fitjax.mlp, "mean")
    mdata = fitjax.datasets.synthetic_regression(jax.random.key(2), 32)
    center = fitjax.init_mlp(jax.random.key(4), [1, 8, 1])
    mstarts = fitjax.inits.normal(jax.random.key(3), 13, center, std=0.3)
    a = fitjax.fit(mlp, fitjax.adam(0.01), mstarts, mdata, steps=20, mesh=fitjax.run_mesh(jax.devices()[:1]))
    b = fitjax.fit(mlp, fitjax.adam(0.01), mstarts, mdata, steps=20)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(a.loss), np.asarray(b.loss), rtol=1e-5)
    # The calls of one signature run the program kept with it, over the mesh too (whose
    # plan is made again at each call), and time it for the next wait.
    from fitjax import internal
    made, programs = [], internal.program_module.programs
    def spy(problem, plan):
        made.append(programs(problem, plan))
        return made[-1]
    internal.program_module.programs = spy
    opt = fitjax.adam(0.05)
    for _ in range(3):
        fitjax.fit(loss, opt, starts, data, steps=5)
    assert len({{id(found) for found in made}}) == 1, made
    assert made[-1].last_run.seconds is not None
    print("ok")
    """
)


@pytest.mark.parametrize("n", [8])  # 37 runs over 8 devices: padded to 40, as over 4
def test_sharded_fit_equals_unsharded(n):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(n=n)], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
