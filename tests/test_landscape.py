"""Landscapes: grid values, chunking, directions, PCA planes and critical points."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _problems import GABOR

import fitjax
from fitjax.analysis import landscape

PHI0 = np.linspace(-10.0, 10.0, 37)
PHI1 = np.linspace(2.5, 22.5, 23)


def _sample(key, n, *shape):
    keys = jax.random.split(key, len(shape))
    return [np.asarray(jax.random.randint(k, (n,), 0, s)) for k, s in zip(keys, shape, strict=True)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_grid_equals_direct_loss_at_sampled_points(dtype):
    with jax.enable_x64(dtype == "float64"):
        data = fitjax.datasets.gabor()
        land = fitjax.loss_grid(GABOR, data, PHI0, PHI1)
        assert land.loss.shape == (37, 23) and land.loss.dtype == np.dtype(dtype)
        rows, cols = _sample(jax.random.key(0), 25, 37, 23)
        one = jax.jit(GABOR)
        direct = [float(one(jnp.array([PHI0[i], PHI1[j]]), data)) for i, j in zip(rows, cols, strict=True)]
        rtol = 1e-12 if dtype == "float64" else 2e-6
        np.testing.assert_allclose(land.loss[rows, cols], direct, rtol=rtol)
        np.testing.assert_allclose(land.coords[0], PHI0, rtol=1e-7)


def test_grid_takes_other_coordinates_from_base(x64):
    def f(p, _):
        return p[0] ** 2 + 2.0 * p[1] + jnp.sin(p[2])

    base = jnp.array([0.3, -7.0, 0.0])
    a, c = np.linspace(-1, 1, 5), np.linspace(0, 3, 4)
    land = fitjax.loss_grid(f, None, a, c, base=base, index=(2, 0))  # rows: φ2, columns: φ0
    expected = np.sin(a)[:, None] + c[None, :] ** 2 + 2.0 * -7.0
    np.testing.assert_allclose(land.loss, expected, rtol=1e-13)
    line = fitjax.loss_line(f, None, a, base=base, index=1)
    np.testing.assert_allclose(line.loss, 0.3**2 + 2.0 * a, rtol=1e-13)


@pytest.mark.parametrize("chunk_size", [1, 7, 100, 851, 5000])
def test_chunked_equals_unchunked(chunk_size, x64):
    data = fitjax.datasets.gabor()
    whole = jax.vmap(lambda p: GABOR(p, data))(fitjax.inits.grid(PHI0, PHI1)).reshape(37, 23)
    land = fitjax.loss_grid(GABOR, data, PHI0, PHI1, chunk_size=chunk_size)  # 851 points in all
    # equal up to the order of the sum over examples, which vectorisation may change
    np.testing.assert_allclose(land.loss, whole, rtol=1e-13)


def test_the_default_chunk_is_the_platforms(monkeypatch):
    """65,536 points a call on a CPU, 2^22 on a GPU; a grid with the default equals the same
    grid in chunks of that size (the progress callback sees each chunk)."""
    assert landscape.default_chunk("cpu") == 65_536 and landscape.default_chunk("gpu") == 2**22
    monkeypatch.setattr(landscape, "DEFAULT_CHUNK", 100)
    data = fitjax.datasets.gabor()
    done: list[int] = []
    default = fitjax.loss_grid(GABOR, data, PHI0, PHI1, callback=lambda k, total: done.append(k))
    assert done == [*range(100, 851, 100), 851]  # 37 x 23 points
    given = fitjax.loss_grid(GABOR, data, PHI0, PHI1, chunk_size=100)
    np.testing.assert_array_equal(default.loss, given.loss)


def test_one_compilation_serves_grids_of_any_size():
    data = fitjax.datasets.gabor()

    def f(p, batch):  # a loss of its own, so that no other test has compiled it
        return GABOR(p, batch) + 1.0

    before = landscape.trace_count()
    fitjax.loss_grid(f, data, PHI0, PHI1, chunk_size=100)
    fitjax.loss_grid(f, data, np.linspace(-3, 3, 41), np.linspace(5, 9, 17), chunk_size=100)
    x, y = data
    fitjax.loss_grid(f, (x, y + 1.0), PHI0[:11], PHI1, chunk_size=100)  # new data values, same shapes
    assert landscape.trace_count() - before == 1


def test_progress_callback_reaches_the_total():
    seen = []
    fitjax.loss_grid(
        GABOR, fitjax.datasets.gabor(), PHI0, PHI1, chunk_size=200, callback=lambda d, t: seen.append((d, t))
    )
    assert seen == [(200, 851), (400, 851), (600, 851), (800, 851), (851, 851)]


def test_plane_of_a_pytree_model_equals_direct_loss(x64):
    key = jax.random.key(3)
    params = fitjax.init_mlp(key, [1, 6, 1])
    data = fitjax.datasets.synthetic_regression(jax.random.key(4), 20)
    loss = fitjax.least_squares(fitjax.mlp)
    d0, d1 = fitjax.random_directions(jax.random.key(5), params, bias="copy")
    a, b = np.linspace(-1, 1, 9), np.linspace(-0.5, 2, 6)
    land = fitjax.loss_plane(loss, data, params, (d0, d1), (a, b), chunk_size=10)
    rows, cols = _sample(jax.random.key(6), 12, 9, 6)
    direct = jax.jit(loss)
    for i, j in zip(rows, cols, strict=True):
        p = jax.tree.map(lambda w, u, v, s=a[i], t=b[j]: w + s * u + t * v, params, d0, d1)
        np.testing.assert_allclose(land.loss[i, j], direct(p, data), rtol=1e-12)
    one = fitjax.loss_plane(loss, data, params, (d0,), (a,))
    along = [direct(jax.tree.map(lambda w, u, s=s: w + s * u, params, d0), data) for s in a]
    np.testing.assert_allclose(one.loss, along, rtol=1e-12)


def test_filter_normalised_directions_have_the_weights_norms():
    w = np.asarray(jax.random.normal(jax.random.key(7), (15 + 20 + 8 + 72,)))  # one draw, cut into weights
    params = {
        "layers": [
            {"w": w[:15].reshape(3, 5), "b": np.arange(5.0) - 2.0},
            {"w": w[15:35].reshape(5, 4), "b": np.zeros(4)},
            {"w": w[35:43].reshape(4, 2), "b": np.ones(2)},
        ],
        "conv": w[43:].reshape(3, 3, 2, 4),  # an HWIO kernel: 4 filters
    }
    d0, d1 = fitjax.random_directions(jax.random.key(9), params)
    for d in (d0, d1):
        for layer, dl in zip(params["layers"], d["layers"], strict=True):
            np.testing.assert_allclose(
                np.linalg.norm(dl["w"], axis=0), np.linalg.norm(layer["w"], axis=0), rtol=1e-5
            )
            np.testing.assert_array_equal(dl["b"], np.zeros_like(layer["b"]))  # biases ignored
        conv_norms = np.sqrt(np.sum(np.asarray(d["conv"]) ** 2, axis=(0, 1, 2)))
        np.testing.assert_allclose(
            conv_norms, np.sqrt(np.sum(np.asarray(params["conv"]) ** 2, axis=(0, 1, 2))), rtol=1e-5
        )
    assert not np.allclose(d0["layers"][0]["w"], d1["layers"][0]["w"])
    copied = fitjax.random_directions(jax.random.key(9), params, n=1, bias="copy")[0]
    np.testing.assert_array_equal(copied["layers"][0]["b"], params["layers"][0]["b"])
    # each filter is a rescaled copy of the Gaussian draw: same direction, new length
    w, dw = np.asarray(params["layers"][1]["w"]), np.asarray(d0["layers"][1]["w"])
    cos = np.sum(dw * w, 0) / (np.linalg.norm(dw, axis=0) * np.linalg.norm(w, axis=0))
    assert np.all(np.abs(cos) < 1)  # random, not the weights themselves


def test_filter_normalize_keeps_zero_filters_zero():
    d = fitjax.filter_normalize(jnp.array([[0.0, 3.0], [0.0, 4.0]]), jnp.array([[1.0, 0.0], [1.0, 2.0]]))
    np.testing.assert_allclose(d, [[0.0, 1.2], [0.0, 1.6]], rtol=1e-6)


def test_pca_recovers_the_plane_of_a_planar_trajectory(x64):
    key = jax.random.key(10)
    q, _ = jnp.linalg.qr(jax.random.normal(key, (7, 2)))
    u, v = q[:, 0], q[:, 1]
    t = jnp.linspace(0, 1, 40)
    s, r = 3.0 * jnp.cos(4 * t) * (1 - t), jnp.sin(5 * t) * (1 - t)  # ends at the centre
    center_flat = jnp.arange(7.0)
    flat = center_flat[None] + s[:, None] * u[None] + r[:, None] * v[None]
    trajectory = {"a": flat[:, :3], "b": flat[:, 3:].reshape(40, 2, 2)}
    plane = fitjax.pca_directions(trajectory)
    basis = np.stack([np.concatenate([np.ravel(d["a"]), np.ravel(d["b"])]) for d in plane.directions], 1)
    np.testing.assert_allclose(basis.T @ basis, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(basis @ basis.T, np.outer(u, u) + np.outer(v, v), atol=1e-10)
    rebuilt = np.asarray(center_flat) + plane.coords @ basis.T
    np.testing.assert_allclose(rebuilt, flat, atol=1e-10)
    np.testing.assert_allclose(plane.explained.sum(), 1.0, rtol=1e-10)
    np.testing.assert_allclose(plane.center["a"], center_flat[:3], atol=1e-12)


def test_pca_plane_of_a_fit_trajectory_passes_through_it(x64):
    data = fitjax.datasets.line()
    loss = fitjax.least_squares(fitjax.line)
    res = fitjax.fit(
        loss,
        fitjax.momentum(0.02, 0.9),
        jnp.array([[1.6, -0.5]]),
        data,
        steps=30,
        record_every=1,
        record_params=True,
    )
    plane = fitjax.pca_directions(res.history.params[0], center=res.params[0])
    assert plane.coords.shape == (30, 2)
    land = fitjax.loss_plane(loss, data, res.params[0], plane.directions, [plane.coords[:, 0], [0.0]])
    np.testing.assert_allclose(
        land.params_at(np.stack([plane.coords[:, 0], 0 * plane.coords[:, 1]], 1))[5],
        res.params[0] + plane.coords[5, 0] * plane.directions[0],
        atol=1e-12,
    )
    # in two dimensions the plane is the whole space: the projected path is the path
    path = res.params[0][None] + plane.coords @ np.stack(plane.directions)
    np.testing.assert_allclose(path, res.history.params[0], atol=1e-12)
    on_plane = fitjax.loss_plane(loss, data, res.params[0], plane.directions, ([0.0], [0.0]))
    np.testing.assert_allclose(on_plane.loss[0, 0], res.loss[0], rtol=1e-12)  # the centre is the final point


def test_project_inverts_points_of_the_plane(x64):
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    d0 = {"w": jnp.arange(6.0).reshape(3, 2), "b": jnp.array([1.0, -1.0])}
    d1 = {"w": jnp.cos(jnp.arange(6.0)).reshape(3, 2), "b": jnp.array([0.5, 2.0])}  # not orthogonal to d0
    c = np.array([[0.0, 0.0], [1.0, -2.0], [0.3, 0.7], [-5.0, 4.0]])
    land = fitjax.Landscape((np.zeros(1), np.zeros(1)), np.zeros((1, 1)), params, (d0, d1))
    points = land.params_at(c)
    np.testing.assert_allclose(points["b"][1], [1.0 - 1.0, -1.0 - 4.0], atol=1e-12)
    np.testing.assert_allclose(fitjax.project(points, params, (d0, d1)), c, atol=1e-12)


def _found(cp):
    return {(k, tuple(np.round(c, 6))) for k, c in zip(cp.kind, cp.coords, strict=True)}


def test_critical_points_of_a_double_well(x64):
    def f(p, _):  # minima (±1, 0), saddle (0, 0)
        return (p[0] ** 2 - 1) ** 2 + p[1] ** 2

    land = fitjax.loss_grid(f, None, np.linspace(-1.93, 2.07, 37), np.linspace(-1.1, 0.9, 19))
    cp = fitjax.critical_points(f, None, land)
    assert _found(cp) == {("minimum", (-1.0, 0.0)), ("minimum", (1.0, 0.0)), ("saddle", (0.0, 0.0))}
    np.testing.assert_allclose(cp.coords[np.argsort(cp.coords[:, 0])], [[-1, 0], [0, 0], [1, 0]], atol=1e-10)
    hessian = {"minimum": [2.0, 8.0], "saddle": [-4.0, 2.0]}  # diag(12x² − 4, 2)
    for kind, eig in zip(cp.kind, cp.eigenvalues, strict=True):
        np.testing.assert_allclose(eig, hessian[kind], rtol=1e-8)
    assert np.all(cp.grad_norm < 1e-10)
    np.testing.assert_allclose(cp.loss, [0.0, 0.0, 1.0], atol=1e-20)


def test_critical_points_with_maxima_minima_and_saddles(x64):
    def f(p, _):  # cos x + cos y on (−4, 4)²: max at 0, minima at (±π, ±π), saddles between
        return jnp.cos(p[0]) + jnp.cos(p[1])

    land = fitjax.loss_grid(f, None, np.linspace(-3.97, 3.99, 41), np.linspace(-3.95, 3.96, 33))
    cp = fitjax.critical_points(f, None, land)
    pi = round(np.pi, 6)
    expected = {("maximum", (0.0, 0.0))}
    expected |= {("minimum", (a, b)) for a in (-pi, pi) for b in (-pi, pi)}
    expected |= {("saddle", (a, b)) for a, b in ((0.0, pi), (0.0, -pi), (pi, 0.0), (-pi, 0.0))}
    assert _found(cp) == expected
    signs = {"maximum": [-1, -1], "minimum": [1, 1], "saddle": [-1, 1]}
    for kind, eig in zip(cp.kind, cp.eigenvalues, strict=True):
        np.testing.assert_allclose(eig, signs[kind], rtol=1e-9)  # the Hessian is diag(−cos x, −cos y)


def test_ties_on_a_symmetric_grid_give_one_candidate(x64):
    def f(p, _):
        return p[0] ** 2 + 3.0 * p[1] ** 2

    axis = np.linspace(-1, 1, 10)  # four grid points tie around the minimum at 0
    land = fitjax.loss_grid(f, None, axis, axis)
    idx, kinds = landscape.grid_candidates(land.loss)
    assert idx.shape == (1, 2) and kinds.tolist() == ["minimum"]
    cp = fitjax.critical_points(f, None, land)
    assert cp.kind.tolist() == ["minimum"]
    np.testing.assert_allclose(cp.coords, [[0.0, 0.0]], atol=1e-12)
    flat = landscape.grid_candidates(np.ones((6, 7)))[0]  # an exactly flat grid has no candidates
    assert flat.shape == (0, 2)


def test_gabor_global_minimum_agrees_with_a_fit_from_its_valley(x64):
    data = fitjax.datasets.gabor()
    land = fitjax.loss_grid(GABOR, data, np.linspace(-10, 10, 81), np.linspace(2.5, 22.5, 81))
    cp = fitjax.critical_points(GABOR, data, land)
    minima = cp.coords[cp.kind == "minimum"]
    assert len(minima) >= 3  # the lecture's point: several valleys
    lowest = minima[0]
    assert cp.loss[cp.kind == "minimum"][0] <= land.loss.min()
    start = jnp.array([[-1.5, 8.5]])  # the notebook's start, in the global minimum's valley
    res = fitjax.fit(GABOR, fitjax.gd(0.05), start, data, steps=4000)
    np.testing.assert_allclose(res.params[0], lowest, atol=1e-7)
    np.testing.assert_allclose(res.loss[0], cp.loss[0], rtol=1e-12)
    # and no other minimum is lower: fits from each of the others end where they started
    others = jnp.asarray(minima[1:])
    res = fitjax.fit(GABOR, fitjax.gd(0.01), others, data, steps=50)
    np.testing.assert_allclose(res.params, others, atol=1e-7)


def test_no_candidates_gives_an_empty_result():
    land = fitjax.loss_grid(lambda p, _: p[0] + p[1], None, np.linspace(0, 1, 5), np.linspace(0, 1, 5))
    cp = fitjax.critical_points(lambda p, _: p[0] + p[1], None, land)
    assert cp.coords.shape == (0, 2) and cp.kind.shape == (0,)


def test_bad_arguments_are_named():
    data = fitjax.datasets.gabor()
    with pytest.raises(ValueError, match="chunk_size"):
        fitjax.loss_grid(GABOR, data, PHI0, PHI1, chunk_size=0)
    with pytest.raises(ValueError, match=r"axes\[1\]"):
        fitjax.loss_grid(GABOR, data, PHI0, [])
    with pytest.raises(ValueError, match=r"axes\[0\].*NaN"):
        fitjax.loss_grid(GABOR, data, [0.0, np.nan], PHI1)
    with pytest.raises(ValueError, match="index"):
        fitjax.loss_grid(GABOR, data, PHI0, PHI1, index=(0, 0))
    params = {"w": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match=r"directions\[1\]"):
        fitjax.loss_plane(GABOR, data, params, (params, {"w": jnp.ones(3)}), (PHI0, PHI1))
    with pytest.raises(ValueError, match="bias"):
        fitjax.filter_normalize(params, params, bias="keep")
    with pytest.raises(TypeError, match="loss"):
        fitjax.loss_grid(lambda p, batch: p @ jnp.ones(5), data, PHI0, PHI1)
    line = fitjax.loss_line(GABOR, data, PHI0, base=jnp.array([0.0, 10.0]))
    with pytest.raises(ValueError, match="2-D landscape"):
        fitjax.critical_points(GABOR, data, line)
    with pytest.raises(ValueError, match="at least 3 steps"):
        fitjax.pca_directions(jnp.zeros((2, 4)))
