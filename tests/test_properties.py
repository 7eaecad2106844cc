"""Properties that hold for every input, checked on random ones with hypothesis.

* an optimizer keeps the pytree structure, shapes and dtypes of the parameters, in its updates
  and its state;
* a zero gradient moves nothing where the rule says so (gradient descent and normalized gradients
  from any state, the momentum methods and Adam from their initial state);
* a batch of runs equals the same runs fitted one at a time, for random pytree shapes;
* permuting the runs permutes the results, bit for bit;
* the mini-batch sampler uses each example exactly once per epoch when the batch size divides the
  data, and otherwise ``n // B · B`` distinct examples (``fitjax.engine.sampler``).

Examples are few and shapes come from small fixed sets, so that compiled programs are reused
across examples and the file runs in seconds.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fitjax
from fitjax.engine import sampler as _sampler

FAST = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FEW = settings(FAST, max_examples=3)

LAYOUTS = [  # pytree layouts (leaf shapes); few, so that compiled kernels are reused across examples
    {"w": (3,)},
    [{"b": (), "w": (2, 2)}],
    {"b": (3,), "s": (), "w": (2, 2)},
]
DTYPES = [jnp.float32, jnp.bfloat16, jnp.float16]

# settings every dtype above can hold (bfloat16 rounds γ = 0.999 to 1; float16 flushes ε = 1e-8)
OPTIMIZERS = {
    "gd": lambda: fitjax.gd(0.05),
    "momentum": lambda: fitjax.momentum(0.05, beta=0.9),
    "nesterov": lambda: fitjax.nesterov(0.05, beta=0.9),
    "nesterov_classical": lambda: fitjax.nesterov_classical(0.05, momentum=0.5),
    "normalized": lambda: fitjax.normalized(0.05, eps=0.0),
    "adam": lambda: fitjax.adam(0.05, beta=0.9, gamma=0.99, eps=1e-3),
}


@st.composite
def pytrees(draw, dtypes=DTYPES, layouts=LAYOUTS):
    """One of ``layouts`` in one of ``dtypes``, filled with random values."""
    dtype, layout = draw(st.sampled_from(dtypes)), draw(st.sampled_from(layouts))
    leaves, treedef = jax.tree.flatten(layout, is_leaf=lambda x: isinstance(x, tuple))
    values = st.floats(-4.0, 4.0, allow_nan=False, width=16)
    filled = []
    for shape in leaves:
        flat = draw(st.lists(values, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        filled.append(jnp.asarray(np.reshape(np.asarray(flat, np.float32), shape), dtype))
    return treedef.unflatten(filled)


def _layout(tree):
    return jax.tree.structure(tree), [(jnp.shape(a), jnp.asarray(a).dtype) for a in jax.tree.leaves(tree)]


def _like(tree, seed: int, scale: float = 1.0):
    """Nonzero values shaped and typed like ``tree``."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten(
        [
            (scale * (1.0 + jax.random.uniform(k, jnp.shape(a)))).astype(a.dtype)
            for k, a in zip(keys, leaves, strict=True)
        ]
    )


# ----------------------------------------------------------------------------- structure and dtype


@FAST
@given(params=pytrees(), seed=st.integers(0, 2**16))
def test_updates_and_states_keep_the_structure_shapes_and_dtypes(params, seed):
    for name, make in OPTIMIZERS.items():
        opt = make()
        state = opt.init(params)
        before = _layout(state)
        for step in range(2):
            updates, state = opt.update(_like(params, seed + step), state, params)
            assert _layout(updates) == _layout(params), name
            assert _layout(state) == before, name
            params = optax.apply_updates(params, updates)
            assert _layout(params) == _layout(updates), name
        assert _layout(opt.report(params, state)) == _layout(params), name


# ----------------------------------------------------------------------------- zero gradients


def _zero(tree):
    return jax.tree.map(jnp.zeros_like, tree)


def _assert_unmoved(opt, params, state, steps: int) -> None:
    for _ in range(steps):
        updates, state = opt.update(_zero(params), state, params)
        assert not any(np.asarray(u, np.float32).any() for u in jax.tree.leaves(updates))
        moved = optax.apply_updates(params, updates)
        for a, b in zip(jax.tree.leaves(moved), jax.tree.leaves(params), strict=True):
            np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
        assert _layout(moved) == _layout(params)


hyper = dict(
    lr=st.floats(1e-4, 10.0),
    beta=st.floats(0.0, 0.99),
    eps=st.sampled_from([0.0, 1e-8, 1e-3, 1.0]),
)


@FAST
@given(params=pytrees([jnp.float32]), seed=st.integers(0, 2**16), **hyper)
def test_a_zero_gradient_moves_nothing_where_the_rule_says_so(params, seed, lr, beta, eps):
    # memoryless rules: after any earlier steps
    for opt in (fitjax.gd(lr), fitjax.normalized(lr, eps=eps)):
        state = opt.init(params)
        _, state = opt.update(_like(params, seed, scale=3.0), state, params)
        _assert_unmoved(opt, params, state, steps=2)
    # rules with a memory: from their initial state (m = 0, and v = 0 for Adam; ε = 0 gives 0/0 = 0)
    for opt in (
        fitjax.momentum(lr, beta=beta),
        fitjax.nesterov(lr, beta=beta),
        fitjax.nesterov_classical(lr, momentum=beta),
        fitjax.adam(lr, beta=beta, eps=eps),
    ):
        state = opt.init(params)
        _assert_unmoved(opt, params, state, steps=3)
        for a, b in zip(jax.tree.leaves(opt.report(params, state)), jax.tree.leaves(params), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_zero_gradient_does_move_momentum_with_a_memory():
    """The property above is not vacuous: with m ≠ 0 the momentum methods keep moving."""
    params = jnp.zeros(2)
    for opt in (fitjax.momentum(0.1), fitjax.nesterov(0.1), fitjax.nesterov_classical(0.1), fitjax.adam(0.1)):
        _, state = opt.update(jnp.ones(2), opt.init(params), params)
        updates, _ = opt.update(jnp.zeros(2), state, params)
        assert np.asarray(updates).all()


# ----------------------------------------------------------------------------- batches


def _bumpy(params, batch=None):
    del batch
    return sum(jnp.sum(jnp.cos(2 * a) + 0.1 * a * a) for a in jax.tree.leaves(params))


@FEW
@given(one=pytrees([jnp.float32], LAYOUTS[1:]), seed=st.integers(0, 2**16))
def test_a_batch_of_runs_equals_the_runs_one_at_a_time(one, seed):
    runs = 3
    starts = jax.tree.map(lambda a: jnp.stack([a + 0.3 * k for k in range(runs)]), _like(one, seed))
    opt = OPTIMIZERS["adam"]()
    batched = fitjax.fit(_bumpy, opt, starts, None, steps=8, record_every=4, keep_state=True)
    assert not np.allclose(batched.loss, batched.history.loss[:, 0]), "the runs moved"
    for i in range(runs):
        one_start = jax.tree.map(lambda a, i=i: a[i : i + 1], starts)
        single = fitjax.fit(_bumpy, opt, one_start, None, steps=8, record_every=4, keep_state=True)
        for a, b in zip(
            jax.tree.leaves((single.params, single.loss, single.history.loss)),
            jax.tree.leaves((batched.params, batched.loss, batched.history.loss)),
            strict=True,
        ):
            np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b)[i], rtol=1e-6, atol=1e-6)


RUNS = 6


def _outputs(res: fitjax.FitResult) -> list:
    return jax.tree.leaves(
        (res.params, res.loss, res.diverged_step, res.history[1:], res.opt_state.inner_state)
    )


@FAST
@given(
    starts=st.lists(st.floats(-2.0, 2.0, width=32), min_size=2 * RUNS, max_size=2 * RUNS),
    order=st.permutations(range(RUNS)),
    lrs=st.lists(st.sampled_from([0.001, 0.01, 0.05, 5.0]), min_size=RUNS, max_size=RUNS),
)
def test_permuting_the_runs_permutes_the_results_bit_for_bit(starts, order, lrs):
    """Full batch and shared mini-batch orders (with one order per run, run i's order is tied to
    position i, by design). Some learning rates diverge: the flags permute too."""
    loss = fitjax.least_squares(fitjax.line)
    data = fitjax.datasets.line()
    starts = jnp.asarray(np.reshape(starts, (RUNS, 2)), jnp.float32)
    lrs, order = jnp.asarray(lrs), np.asarray(order)
    for kw in (dict(), dict(batch_size=5, key=jax.random.key(1), shared_order=True)):
        a = fitjax.fit(
            loss,
            fitjax.momentum(0.01),
            starts,
            data,
            steps=12,
            record_every=3,
            hyperparams={"learning_rate": lrs},
            keep_state=True,
            **kw,
        )
        b = fitjax.fit(
            loss,
            fitjax.momentum(0.01),
            starts[order],
            data,
            steps=12,
            record_every=3,
            hyperparams={"learning_rate": lrs[order]},
            keep_state=True,
            **kw,
        )
        for x, y in zip(_outputs(a), _outputs(b), strict=True):
            np.testing.assert_array_equal(np.asarray(x)[order], np.asarray(y))


# ----------------------------------------------------------------------------- the mini-batch sampler


@functools.partial(jax.jit, static_argnums=(1, 2))
def _two_epochs(key: jax.Array, n: int, batch: int) -> jax.Array:
    steps = jnp.arange(2 * _sampler.steps_per_epoch(n, batch))
    return jax.vmap(lambda s: _sampler.indices_at(key, s, n, batch))(steps)


@settings(FAST, max_examples=10)
@given(n=st.integers(1, 40), data=st.data(), seed=st.integers(0, 2**16))
def test_each_epoch_uses_each_example_at_most_once_and_all_of_them_when_the_batch_divides(n, data, seed):
    batch = data.draw(st.integers(1, n), label="batch_size")
    per_epoch = _sampler.steps_per_epoch(n, batch)
    assert per_epoch == n // batch
    key = jax.random.key(seed)
    idx = np.asarray(_two_epochs(key, n, batch))
    assert idx.shape == (2 * per_epoch, batch)
    for epoch in range(2):
        used = idx[epoch * per_epoch : (epoch + 1) * per_epoch].ravel()
        assert len(used) == n // batch * batch
        assert len(set(used.tolist())) == len(used) and used.min() >= 0 and used.max() < n
        if n % batch == 0:
            np.testing.assert_array_equal(np.sort(used), np.arange(n))
        perm = np.asarray(_sampler.epoch_permutation(key, jnp.asarray(epoch), n))
        np.testing.assert_array_equal(used, perm[: len(used)])


def _picks(params, batch):
    """∂/∂φ_j of this loss is how often example j is in the batch."""
    (ids,) = batch
    return jnp.sum(params[ids])


@FEW
@given(n=st.sampled_from([6, 7, 12]), batch=st.sampled_from([2, 3, 5]), seed=st.integers(0, 2**16))
def test_the_engine_draws_its_mini_batches_from_the_sampler(n, batch, seed):
    """Gradient descent with α = 1 on Σ_{i∈B} φ_i subtracts from φ_j the times example j was drawn:
    over two epochs, 2 for every example when B divides n, else at most 2 and 2·(n//B)·B in all,
    exactly the examples ``_sampler.indices_at`` lists for each run's key."""
    batch = min(batch, n)
    per_epoch = n // batch
    key = jax.random.key(seed)
    res = fitjax.fit(
        _picks,
        fitjax.gd(1.0),
        jnp.zeros((2, n)),
        (jnp.arange(n),),
        steps=2 * per_epoch,
        batch_size=batch,
        key=key,
    )
    used = -np.asarray(res.params)
    assert used.sum(axis=1).tolist() == [2 * per_epoch * batch] * 2 and used.max() <= 2
    if n % batch == 0:
        np.testing.assert_array_equal(used, 2.0)
    for run in range(2):
        run_key = jax.random.fold_in(key, jnp.uint32(run))
        drawn = np.concatenate(
            [np.asarray(_sampler.indices_at(run_key, jnp.asarray(s), n, batch)) for s in range(2 * per_epoch)]
        )
        np.testing.assert_array_equal(used[run], np.bincount(drawn, minlength=n))
