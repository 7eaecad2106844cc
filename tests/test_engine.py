"""The fit engine: batching, jit, recompilation, history, divergence, sweeps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _problems import GABOR, LINE

import fitjax
from fitjax import internal
from fitjax.internal import pack, unpack
from fitjax.optim.protocol import stepper


def test_gd_on_the_line_matches_optax_sgd_step_by_step(x64):
    data = fitjax.datasets.line()
    phi = jnp.array([1.6, -0.5])
    ours, ref = fitjax.gd(0.01), optax.sgd(0.01)
    s_ours, s_ref, p_ours, p_ref = ours.init(phi), ref.init(phi), phi, phi
    for _ in range(100):
        u, s_ours = ours.update(jax.grad(LINE)(p_ours, data), s_ours, p_ours)
        p_ours = optax.apply_updates(p_ours, u)
        u, s_ref = ref.update(jax.grad(LINE)(p_ref, data), s_ref, p_ref)
        p_ref = optax.apply_updates(p_ref, u)
        np.testing.assert_allclose(p_ours, p_ref, rtol=1e-12, atol=0)
    # and the engine gives the same trajectory
    res = fitjax.fit(LINE, ours, phi[None], data, steps=100, record_every=1, record_params=True)
    np.testing.assert_allclose(res.params[0], p_ref, rtol=1e-12)


def test_gd_reaches_the_least_squares_solution(x64):
    x, y = fitjax.datasets.line()
    A = np.stack([np.ones(12), np.asarray(x)], 1)
    expected = np.linalg.lstsq(A, np.asarray(y), rcond=None)[0]
    starts = fitjax.inits.uniform(jax.random.key(0), 50, [-2.0, -2.0], [2.0, 2.0])
    res = fitjax.fit(LINE, fitjax.gd(0.02), starts, (x, y), steps=3000)
    np.testing.assert_allclose(res.params, np.broadcast_to(expected, (50, 2)), rtol=1e-8)
    assert res.params.dtype == jnp.float64


def test_vmapped_fit_equals_single_fits():
    data = fitjax.datasets.gabor()
    starts = fitjax.inits.uniform(jax.random.key(1), 1000, [-10.0, 2.5], [10.0, 22.5])
    batched = fitjax.fit(GABOR, fitjax.adam(0.05), starts, data, steps=50)
    for i in range(0, 1000, 1):
        if i % 50:  # 20 single fits keep the test fast; every run is compared below
            continue
        single = fitjax.fit(GABOR, fitjax.adam(0.05), starts[i : i + 1], data, steps=50)
        np.testing.assert_allclose(single.params[0], batched.params[i], rtol=1e-5, atol=1e-6)
    # All 1000 runs against a plain Python loop of the same optimizer, unbatched.
    opt = fitjax.adam(0.05)

    @jax.jit
    def one(phi):
        def body(carry, _):
            p, s = carry
            u, s = opt.update(jax.grad(GABOR)(p, data), s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(body, (phi, opt.init(phi)), None, length=50)[0][0]

    looped = jnp.stack([one(starts[i]) for i in range(1000)])
    np.testing.assert_allclose(looped, batched.params, rtol=1e-5, atol=1e-5)


def test_jit_equals_no_jit():
    data = fitjax.datasets.gabor()
    starts = fitjax.inits.uniform(jax.random.key(2), 8, [-10.0, 2.5], [10.0, 22.5])
    kw = dict(steps=12, record_every=4, batch_size=5, key=jax.random.key(3))  # 12 steps: 3 epochs
    a = fitjax.fit(GABOR, fitjax.momentum(0.1, 0.8), starts, data, **kw)
    b = fitjax.fit(GABOR, fitjax.momentum(0.1, 0.8), starts, data, jit=False, **kw)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.history.loss, b.history.loss, rtol=1e-5)


def test_no_recompile_for_new_starts_or_hyperparameters():
    data = fitjax.datasets.gabor()
    starts = fitjax.inits.uniform(jax.random.key(4), 64, [-10.0, 2.5], [10.0, 22.5])
    fitjax.fit(GABOR, fitjax.gd(0.01), starts, data, steps=20)
    before = fitjax.trace_count()
    fitjax.fit(GABOR, fitjax.gd(0.01), starts + 0.5, data, steps=20)
    fitjax.fit(GABOR, fitjax.gd(0.03), starts, data, steps=20)
    assert fitjax.trace_count() == before
    # Per-run values are a different program (the run axis moves onto the
    # hyperparameter), compiled once and reused for any new values.
    fitjax.fit(
        GABOR,
        fitjax.gd(0.01),
        starts,
        data,
        steps=20,
        hyperparams={"learning_rate": jnp.linspace(0.01, 0.02, 64)},
    )
    fitjax.fit(
        GABOR,
        fitjax.gd(0.01),
        starts,
        data,
        steps=20,
        hyperparams={"learning_rate": jnp.linspace(0.02, 0.05, 64)},
    )
    assert fitjax.trace_count() == before + 1
    fitjax.fit(GABOR, fitjax.gd(0.01), starts, data, steps=21)  # a new step count is a new program
    assert fitjax.trace_count() == before + 2


def test_history_every_k_steps():
    data = fitjax.datasets.line()
    starts = fitjax.inits.uniform(jax.random.key(5), 3, [-1.0, -1.0], [1.0, 1.0])
    res = fitjax.fit(LINE, fitjax.gd(0.01), starts, data, steps=25, record_every=10, record_params=True)
    np.testing.assert_array_equal(res.history.step, [0, 10])
    assert res.history.loss.shape == (3, 2) and res.history.params.shape == (3, 2, 2)
    np.testing.assert_allclose(res.history.params[:, 0], starts)
    np.testing.assert_allclose(
        res.history.loss[:, 1], jax.vmap(LINE, (0, None))(res.history.params[:, 1], data), rtol=1e-6
    )
    full = fitjax.fit(LINE, fitjax.gd(0.01), starts, data, steps=25, record_every=1, record_params=True)
    np.testing.assert_allclose(full.history.params[:, 10], res.history.params[:, 1], rtol=1e-6)
    g = jax.vmap(jax.grad(LINE), (0, None))(starts, data)
    np.testing.assert_allclose(res.history.grad_norm[:, 0], jnp.linalg.norm(g, axis=1), rtol=1e-5)
    none = fitjax.fit(LINE, fitjax.gd(0.01), starts, data, steps=25)
    assert none.history is None
    np.testing.assert_allclose(none.params, res.params)


def test_gabor_grid_ends_in_different_minima():
    """The lecture: GD reaches the global minimum from the right valley, a local one elsewhere."""
    data = fitjax.datasets.gabor()
    starts = fitjax.inits.grid(jnp.linspace(-10, 10, 21), jnp.linspace(2.5, 22.5, 21))
    res = fitjax.fit(GABOR, fitjax.gd(0.01), starts, data, steps=3000)
    loss = np.asarray(res.loss)
    best = loss.min()
    assert best == pytest.approx(0.6457, abs=2e-3)
    global_phi = np.asarray(res.params[int(loss.argmin())])
    # The global minimum (phi0 ~ 0, phi1 ~ 16) from a start in its valley ...
    in_valley = fitjax.fit(GABOR, fitjax.gd(0.01), jnp.array([[0.0, 15.0]]), data, steps=3000)
    assert float(in_valley.loss[0]) == pytest.approx(best, abs=1e-4)
    np.testing.assert_allclose(in_valley.params[0], global_phi, atol=0.05)
    # (the notebooks' start (-1.5, 8.5) lies in that valley too) ...
    notebook = fitjax.fit(GABOR, fitjax.gd(0.01), jnp.array([[-1.5, 8.5]]), data, steps=3000)
    assert float(notebook.loss[0]) == pytest.approx(best, abs=1e-4)
    # ... while the SGD notebook's start (3.5, 6.5) and (-5, 10) end in local minima,
    # phi0 shifted by about one period of the sine, with a much higher loss.
    local = fitjax.fit(GABOR, fitjax.gd(0.01), jnp.array([[3.5, 6.5], [-5.0, 10.0]]), data, steps=3000)
    assert (np.asarray(local.loss) > best + 2.0).all()
    np.testing.assert_allclose(local.params[:, 0], [6.17, -5.82], atol=0.05)
    # Several distinct minima are reached across the grid.
    finals = np.unique(np.round(loss, 2))
    assert len(finals) >= 5


def test_one_diverging_run_is_flagged_and_others_unchanged():
    data = fitjax.datasets.line()
    starts = fitjax.inits.uniform(jax.random.key(6), 16, [-1.0, -1.0], [1.0, 1.0])
    lrs = jnp.full(16, 0.01).at[5].set(1.0)  # far past 2/λ_max of the line's quadratic loss
    base = fitjax.fit(LINE, fitjax.gd(0.01), starts, data, steps=200, record_every=10)
    mixed = fitjax.fit(
        LINE, fitjax.gd(0.01), starts, data, steps=200, record_every=10, hyperparams={"learning_rate": lrs}
    )
    div = np.asarray(mixed.diverged_step)
    assert 10 < div[5] < 200 and (np.delete(div, 5) == -1).all()
    assert bool(mixed.diverged[5])
    others = np.arange(16) != 5
    np.testing.assert_array_equal(np.asarray(mixed.params)[others], np.asarray(base.params)[others])
    np.testing.assert_array_equal(np.asarray(mixed.loss)[others], np.asarray(base.loss)[others])
    np.testing.assert_array_equal(
        np.asarray(mixed.history.loss)[others], np.asarray(base.history.loss)[others]
    )
    # The diverged run keeps its last finite parameters and stops changing.
    assert np.isfinite(np.asarray(mixed.params)[5]).all()
    assert np.asarray(mixed.history.loss)[5, -1] == np.asarray(mixed.history.loss)[5, -2]
    assert mixed.summary()["diverged"] == 1


@pytest.mark.loose_promotion  # optax's adamw mixes ints and floats
def test_optax_transformations_run_unchanged():
    data = fitjax.datasets.gabor()
    starts = fitjax.inits.uniform(jax.random.key(7), 4, [-10.0, 2.5], [10.0, 22.5])
    res = fitjax.fit(GABOR, optax.adamw(0.05, weight_decay=1e-4), starts, data, steps=20)
    tx = optax.adamw(0.05, weight_decay=1e-4)
    p = starts[2]
    s = tx.init(p)
    for _ in range(20):
        u, s = tx.update(jax.grad(GABOR)(p, data), s, p)
        p = optax.apply_updates(p, u)
    np.testing.assert_allclose(res.params[2], p, rtol=1e-5)


def test_mlp_pytree_fit():
    data = fitjax.datasets.synthetic_regression(jax.random.key(0), 64)
    params = fitjax.init_mlp(jax.random.key(1), [1, 16, 1])
    starts = fitjax.inits.normal(jax.random.key(2), 8, params, std=0.3)
    loss = fitjax.least_squares(fitjax.mlp, "mean")
    res = fitjax.fit(loss, fitjax.adam(0.01), starts, data, steps=300)
    first = jax.vmap(loss, (0, None))(starts, data)
    assert (np.asarray(res.loss) < 0.5 * np.asarray(first)).all()
    assert jax.tree.structure(res.params) == jax.tree.structure(starts)


def test_sweep_grid_matches_individual_fits():
    data = fitjax.datasets.gabor()
    starts = fitjax.inits.uniform(jax.random.key(8), 5, [-10.0, 2.5], [10.0, 22.5])
    lrs, betas = jnp.array([0.01, 0.05, 0.1]), jnp.array([0.0, 0.9])
    out = fitjax.sweep(
        GABOR, fitjax.momentum(0.01), starts, data, steps=30, grid={"learning_rate": lrs, "beta": betas}
    )
    assert out.result.loss.shape == (3, 2, 5)
    for i, lr in enumerate(lrs):
        for j, b in enumerate(betas):
            single = fitjax.fit(GABOR, fitjax.momentum(float(lr), float(b)), starts, data, steps=30)
            np.testing.assert_allclose(out.result.params[i, j], single.params, rtol=2e-5, atol=1e-6)
    before = fitjax.trace_count()
    fitjax.sweep(
        GABOR,
        fitjax.momentum(0.01),
        starts,
        data,
        steps=30,
        grid={"learning_rate": lrs * 2, "beta": betas / 2},
    )
    assert fitjax.trace_count() == before


class _Series:
    """An array-like that is neither a NumPy nor a JAX array (as a pandas Series or a torch tensor)."""

    def __init__(self, values):
        self.values = np.asarray(values, np.float32)
        self.dtype, self.shape, self.ndim = self.values.dtype, self.values.shape, self.values.ndim

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def test_a_sweep_takes_a_grid_of_any_array_type_as_numpy_would():
    starts = fitjax.inits.uniform(jax.random.key(8), 3, [-1.0, -1.0], [1.0, 1.0])
    kw = dict(steps=10, grid=None)
    rates = [0.01, 0.05]
    want = fitjax.sweep(
        LINE,
        fitjax.gd(0.01),
        starts,
        fitjax.datasets.line(),
        **kw | {"grid": {"learning_rate": np.float32(rates)}},
    )
    for grid in (_Series(rates), np.float64(rates), jnp.float32(rates)):
        got = fitjax.sweep(
            LINE, fitjax.gd(0.01), starts, fitjax.datasets.line(), **kw | {"grid": {"learning_rate": grid}}
        )
        assert got.grid["learning_rate"].dtype == jnp.float32
        np.testing.assert_array_equal(got.result.params, want.result.params)


def test_same_key_same_result_for_minibatches():
    data = fitjax.datasets.gabor()
    starts = fitjax.inits.uniform(jax.random.key(9), 6, [-10.0, 2.5], [10.0, 22.5])
    kw = dict(steps=40, batch_size=5)
    a = fitjax.fit(GABOR, fitjax.gd(0.1), starts, data, key=jax.random.key(1), **kw)
    b = fitjax.fit(GABOR, fitjax.gd(0.1), starts, data, key=jax.random.key(1), **kw)
    c = fitjax.fit(GABOR, fitjax.gd(0.1), starts, data, key=jax.random.key(2), **kw)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)


@pytest.mark.parametrize(
    "build",
    [fitjax.gd, fitjax.momentum, fitjax.nesterov, fitjax.nesterov_classical, fitjax.normalized, fitjax.adam],
)
def test_new_hyperparameter_values_share_one_update_function(build):
    """The compiled program is keyed on the engine's view of the optimizer: it must not depend
    on the values, which are arguments of the program."""
    starts = jnp.zeros((2, 2))
    a, b = stepper(build(0.1), starts)[0], stepper(build(0.2), starts)[0]
    assert a == b and hash(a) == hash(b)


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_finiteness_check_is_the_same_on_every_backend(monkeypatch, backend):
    # On a GPU small leaves are checked element by element, elsewhere by a reduction.
    from fitjax import internal

    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    rng = np.random.default_rng(0)
    for shape in [(), (2,), (3, 2), (9,), (4, 4)]:
        for bad in (None, np.nan, np.inf, -np.inf):
            x = rng.normal(size=shape).astype(np.float32)
            if bad is not None:
                x.reshape(-1)[rng.integers(x.size)] = bad
            tree = {"a": jnp.asarray(x), "b": jnp.ones(2)}
            want = bad is None
            assert bool(internal.all_finite(tree)) == want
            batched = jax.vmap(internal.all_finite)(
                {"a": jnp.stack([jnp.ones(shape), x]), "b": jnp.ones((2, 2))}
            )
            np.testing.assert_array_equal(batched, [True, want])


def _rising(p, batch):  # a step along the gradient overflows exp at once from p ≈ 88
    del batch
    return -jnp.sum(jnp.exp(p))


ADAM_LRS = {"learning_rate": jnp.asarray([0.01, 1e38, 0.01, 3e38])}  # runs 1 and 3 overflow
RISING_STARTS = jnp.asarray([[-30.0, -40.0], [88.0, 0.0], [-35.0, -30.0], [80.0, 88.5]])


@pytest.mark.parametrize(
    ("optimizer", "loss", "starts", "data", "hyperparams"),
    [
        (fitjax.adam(0.01), LINE, jnp.zeros((4, 2)), fitjax.datasets.line(), ADAM_LRS),
        pytest.param(
            optax.inject_hyperparams(optax.adam)(learning_rate=0.01),
            LINE,
            jnp.zeros((4, 2)),
            fitjax.datasets.line(),
            ADAM_LRS,
            marks=pytest.mark.loose_promotion,  # optax's own code
        ),
        pytest.param(
            optax.sgd(0.01, momentum=0.9),
            _rising,
            RISING_STARTS,
            None,
            None,
            marks=pytest.mark.loose_promotion,
        ),
    ],
    ids=["adam", "optax-injected-adam", "optax-sgd"],
)
def test_the_state_kept_or_not_the_runs_are_the_same(optimizer, loss, starts, data, hyperparams):
    """Without ``keep_state`` the program hands its state to a replay packed one array per
    dtype; the runs that diverged are replayed from it to the same values, bit for bit."""
    kw = dict(steps=70, record_every=5, hyperparams=hyperparams)
    kept = fitjax.fit(loss, optimizer, starts, data, keep_state=True, **kw)
    plain = fitjax.fit(loss, optimizer, starts, data, **kw)
    assert plain.opt_state is None and kept.opt_state is not None
    np.testing.assert_array_equal(kept.diverged, [False, True, False, True])
    assert 0 < int(kept.diverged_step[1]) < 69  # inside the run: a replayed span
    for a, b in zip(jax.tree.leaves(plain[:4]), jax.tree.leaves(kept[:4]), strict=True):
        np.testing.assert_array_equal(a, b)
    alone = {k: v[1:2] for k, v in hyperparams.items()} if hyperparams else None
    one = fitjax.fit(loss, optimizer, starts[1:2], data, keep_state=True, **kw | {"hyperparams": alone})
    for a, b in zip(jax.tree.leaves(one.opt_state), jax.tree.leaves(kept.opt_state), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[0], np.asarray(b)[1])


def test_pack_and_unpack_give_the_tree_back():

    tree = {
        "count": jnp.arange(3, dtype=jnp.int32),
        "mu": (jnp.ones((3, 2, 2)), jnp.zeros((3, 0))),
        "nu": jnp.full((3, 4), 2.0, jnp.bfloat16),
        "lr": jnp.asarray([0.1, 0.2, 0.3]),
        "key": jax.random.split(jax.random.key(0), 3),  # a typed key: an array of its own
    }
    packed = pack(tree)
    # the 32-bit numbers share one array of their bits (1 + 4 + 0 + 1 columns); bfloat16 has its own
    assert sorted(packed) == ["bfloat16", "bits32", "key<fry>"] and packed["bits32"].shape == (3, 6)
    assert packed["bits32"].dtype == jnp.uint32
    back = unpack(packed, jax.eval_shape(lambda: tree))
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(tree), strict=True):
        assert a.dtype == b.dtype
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.extended):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)


@pytest.mark.loose_promotion  # optax's add_noise mixes a Python float with its int32 count
def test_an_optimizer_whose_state_holds_a_typed_key_fits_and_replays_a_diverged_run():
    """optax's ``add_noise`` keeps a typed key in its state: the state a replay reads is
    packed beside it, and a diverged run is replayed from it with the other runs kept."""
    opt = optax.chain(optax.add_noise(0.01, 0.55, key=jax.random.key(0)), optax.sgd(0.01))
    starts = np.float32([[1.6, -0.5], [0.3, 0.8], [3e37, 3e37]])  # the last overflows at once
    kept = fitjax.fit(LINE, opt, starts, fitjax.datasets.line(), steps=20, keep_state=True)
    res = fitjax.fit(LINE, opt, starts, fitjax.datasets.line(), steps=20)
    np.testing.assert_array_equal(res.diverged_step, [-1, -1, 0])
    np.testing.assert_array_equal(res.params, kept.params)
    np.testing.assert_array_equal(res.loss, kept.loss)


def test_in_blocks_equals_one_vmap_with_shared_arguments_and_keys():
    """Runs taken a block at a time (padded with copies of the last run, then trimmed) give
    what one vmap over all runs gives, whatever the remainder."""

    def one(x, shared, k):
        return {"y": x * shared + jax.random.uniform(k), "i": jnp.sum(x)}, jax.random.key_data(k)

    xs = jnp.arange(20.0).reshape(10, 2)
    keys = jax.random.split(jax.random.key(3), 10)
    whole = jax.vmap(one, (0, None, 0))(xs, 2.0, keys)
    for block in (1, 3, 4, 9, 10, 11, None):
        got = internal.program_module.in_blocks(one, (xs, 2.0, keys), (0, None, 0), block)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(whole), strict=True):
            assert a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_the_block_size_follows_the_l2_cache_linux_reports(tmp_path):
    """The run block on a CPU: as many run × point pairs as one core's L2 cache has bytes,
    read from a sysfs tree like Linux's (the instruction cache and other levels skipped),
    kept within [2¹⁸, 2²²], and 2¹⁹ where the size is missing or unreadable."""
    prep = internal.prepare_module
    cache = tmp_path / "cpu0" / "cache"
    for index, (level, kind, size) in enumerate(
        [
            ("1", "Data", "48K"),
            ("1", "Instruction", "64K"),
            ("2", "Unified", "2048K"),
            ("3", "Unified", "480M"),
        ]
    ):
        folder = cache / f"index{index}"
        folder.mkdir(parents=True)
        for name, text in (("level", level), ("type", kind), ("size", size)):
            (folder / name).write_text(text + "\n")
    assert prep.l2_cache_bytes(str(tmp_path / "cpu0")) == 2048 * 1024
    (cache / "index2" / "size").write_text("1280K\n")  # 1.25 MiB, as on some Xeons
    assert prep.points_per_block(prep.l2_cache_bytes(str(tmp_path / "cpu0"))) == 1280 * 1024
    (cache / "index2" / "size").write_text("1M\n")
    assert prep.l2_cache_bytes(str(tmp_path / "cpu0")) == 2**20
    (cache / "index2" / "size").write_text("garbled\n")
    assert prep.l2_cache_bytes(str(tmp_path / "cpu0")) is None
    assert prep.l2_cache_bytes(str(tmp_path / "missing")) is None
    assert [prep.points_per_block(b) for b in (None, 0, 2**16, 2**19, 2**21, 2**25)] == [
        2**19,
        2**19,
        2**18,
        2**19,
        2**21,
        2**22,
    ]


@pytest.mark.parametrize(
    ("optimizer", "kw"),
    [
        (fitjax.adam(0.01), dict(hyperparams={"learning_rate": jnp.asarray([0.01, 1e38] * 3 + [0.02] * 4)})),
        (fitjax.momentum(0.02, 0.9), dict(batch_size=4, key=jax.random.key(5))),
    ],
    ids=["adam-diverging", "momentum-minibatches"],
)
def test_runs_stepped_in_blocks_equal_one_batch(monkeypatch, optimizer, kw):
    """On a CPU many runs are stepped a block at a time (``default_run_block``); the
    results are those of one batch: params, losses, divergence steps, the recorded losses
    and parameters and the final state bit for bit (with a replay of diverged runs and
    with mini-batches), the recorded gradient norms to float32 rounding (a sum of squares
    whose rounding already depends on where a run sits in the batch)."""
    data = fitjax.datasets.line()
    n_points = jax.tree.leaves(data)[0].shape[0]
    starts = jnp.linspace(-1.0, 1.0, 20, dtype=jnp.float32).reshape(10, 2)
    kw = dict(steps=40, record_every=6, record_params=True, keep_state=True, **kw)
    whole = fitjax.fit(LINE, optimizer, starts, data, **kw)
    seen = []
    spy = internal.program_module.in_blocks

    def in_blocks(fun, args, in_axes, block):
        seen.append(block)
        return spy(fun, args, in_axes, block)

    monkeypatch.setattr(internal.program_module, "in_blocks", in_blocks)
    points = kw.get("batch_size") or n_points
    monkeypatch.setattr(internal.prepare_module, "RUN_BLOCK_POINTS", 3 * points)
    blocked = fitjax.fit(LINE, optimizer, starts, data, **kw)
    assert seen == [3]  # ten runs in four blocks of three, two of them padding
    if "hyperparams" in kw:
        assert np.asarray(whole.diverged).sum() == 3
    for name in ("params", "loss", "diverged_step"):
        np.testing.assert_array_equal(getattr(blocked, name), getattr(whole, name))
    for name in ("step", "loss", "params"):
        np.testing.assert_array_equal(getattr(blocked.history, name), getattr(whole.history, name))
    np.testing.assert_allclose(blocked.history.grad_norm, whole.history.grad_norm, rtol=3e-7)
    for a, b in zip(jax.tree.leaves(blocked.opt_state), jax.tree.leaves(whole.opt_state), strict=True):
        np.testing.assert_array_equal(a, b)
