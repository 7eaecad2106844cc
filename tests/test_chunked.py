"""Chunked sweeps: streamed to disk, resumable after a kill, bit-identical whatever the chunk size.

The reference for every number is the unchunked engine (``fitjax.fit`` / ``fitjax.sweep``
on the whole sweep), whose own numbers are checked against optax and NumPy elsewhere.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _problems import assert_same, build

import fitjax
from fitjax.engine import chunked

# One problem, built alike here and in the subprocess that is killed.
SETUP = """
import jax, fitjax
loss = fitjax.least_squares(fitjax.Gabor(fitjax.GABOR_W_NOTEBOOK))
data = fitjax.datasets.gabor()
optimizer = fitjax.adam(0.05)
starts = fitjax.engine.chunked.uniform_starts(jax.random.key(0), 40, [-10.0, 2.5], [10.0, 22.5])
kwargs = dict(steps=30, key=jax.random.key(1), batch_size=5, record_every=10, block=8, progress=False)
"""


def test_chunk_sizes_one_seven_and_whole_give_identical_results(tmp_path):
    loss, opt, starts, data, kw = build(SETUP)
    results = {}
    for size in (1, 7, 40):
        run = fitjax.fit_chunked(loss, opt, starts, data, chunk_size=size, out_dir=tmp_path / str(size), **kw)
        assert run.n_chunks == -(-40 // size) and run.computed == tuple(range(run.n_chunks))
        assert len(list((tmp_path / str(size)).glob("chunk-*.npz"))) == run.n_chunks
        results[size] = fitjax.load_chunked(run.path)
    assert_same(results[1], results[7])
    assert_same(results[1], results[40])
    res = results[7]
    assert res.loss.shape == (40,) and res.params.shape == (40, 2) and res.history.loss.shape == (40, 3)
    np.testing.assert_array_equal(res.history.step, [0, 10, 20])
    # memory-mapped reading gives the same arrays
    mapped = fitjax.load_chunked(tmp_path / "7", mmap=True)
    assert isinstance(mapped.loss, np.memmap)
    assert_same(mapped, res)


def test_one_block_of_the_whole_sweep_equals_fit(tmp_path):
    """With block = N every run goes through fit's own program at fit's own shape."""
    loss, opt, starts, data, kw = build(SETUP)
    kw = {**kw, "block": 40}
    fitjax.fit_chunked(loss, opt, starts, data, chunk_size=7, out_dir=tmp_path, **kw)
    got = fitjax.load_chunked(tmp_path)
    kw = {k: v for k, v in kw.items() if k not in ("block", "progress")}
    ref = fitjax.fit(loss, opt, starts.take(np.arange(40)), data, **kw)
    assert_same(
        (got.params, got.loss, got.diverged_step, got.history.loss, got.history.grad_norm),
        (ref.params, ref.loss, ref.diverged_step, ref.history.loss, ref.history.grad_norm),
    )


@pytest.mark.loose_promotion  # a loss written loosely: bfloat16 parameters meet float32 data
def test_bfloat16_starts_are_saved_and_read_back_as_bfloat16(tmp_path):
    """``.npz`` files keep bfloat16 only as raw bytes; the sweep reads them back in their dtype."""
    loss, data = fitjax.least_squares(fitjax.line), fitjax.datasets.line()
    starts = jnp.array([[1.0, -0.5], [0.25, 2.0], [-1.5, 0.75]], jnp.bfloat16)
    fitjax.fit_chunked(
        loss, fitjax.gd(0.01), starts, data, steps=5, chunk_size=2, block=3, out_dir=tmp_path, progress=False
    )
    ref = fitjax.fit(loss, fitjax.gd(0.01), starts, data, steps=5)
    for got in (fitjax.load_chunked(tmp_path), fitjax.load_chunked(tmp_path, mmap=True)):
        assert got.params.dtype == jnp.bfloat16
        assert_same((got.params, got.loss), (ref.params, ref.loss))
    assert all(a["params.0"].dtype == jnp.bfloat16 for _, a in chunked.iter_chunks(tmp_path))


def test_grid_sweep_from_memory_mapped_starts_equals_sweep(tmp_path):
    loss, opt, _, data, _ = build(SETUP)
    starts = fitjax.inits.uniform(jax.random.key(3), 10, [-10.0, 2.5], [10.0, 22.5])
    np.save(tmp_path / "starts.npy", np.asarray(starts))
    mapped = np.load(tmp_path / "starts.npy", mmap_mode="r")
    grid = {"learning_rate": jnp.array([0.01, 0.1]), "beta": jnp.array([0.5, 0.9])}
    kw = dict(steps=20, key=jax.random.key(1), batch_size=5)
    out = fitjax.fit_chunked(
        loss,
        fitjax.momentum(0.01, 0.5),
        mapped,
        data,
        grid=grid,
        chunk_size=6,
        block=40,
        out_dir=tmp_path / "sweep",
        progress=False,
        **kw,
    )
    assert out.n_runs == 40
    got = fitjax.load_chunked(out.path)
    ref = fitjax.sweep(loss, fitjax.momentum(0.01, 0.5), starts, data, grid=grid, **kw)
    assert isinstance(got, fitjax.SweepResult) and got.result.loss.shape == (2, 2, 10)
    np.testing.assert_array_equal(got.grid["beta"], np.asarray(grid["beta"]))
    assert_same((got.result.params, got.result.loss), (ref.result.params, ref.result.loss))


def test_generated_starts_depend_on_the_run_index_alone():
    key, low, high = jax.random.key(5), [-10.0, 2.5], [10.0, 22.5]
    starts = chunked.uniform_starts(key, 10**9, low, high)
    some = starts.take(np.array([3, 999_999_999, 7]))
    np.testing.assert_array_equal(some[[0, 2]], starts.take(np.array([3, 7])))
    # run i: one uniform draw from fold_in(key, i)
    for row, i in zip(some, (3, 999_999_999, 7), strict=True):
        ref = fitjax.inits.uniform(jax.random.fold_in(key, i), 1, low, high)[0]
        np.testing.assert_array_equal(row, ref)
    assert np.all((some >= low) & (some <= high))
    gen = chunked.generated_starts(lambda k: {"w": jax.random.normal(k, (3,))}, key, 5)
    np.testing.assert_array_equal(
        gen.take(np.array([4]))["w"][0], jax.random.normal(jax.random.fold_in(key, 4), (3,))
    )


def test_resume_skips_finished_chunks_and_refuses_other_arguments(tmp_path, monkeypatch):
    loss, opt, starts, data, kw = build(SETUP)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # no tqdm: no bar, and no complaint
    first = fitjax.fit_chunked(
        loss, opt, starts, data, chunk_size=16, out_dir=tmp_path, **{**kw, "progress": True}
    )
    assert first.computed == (0, 1, 2)
    again = fitjax.fit_chunked(loss, opt, starts, data, chunk_size=16, out_dir=tmp_path, **kw)
    assert again.computed == ()  # nothing recomputed, nothing duplicated
    other = {
        "steps": dict(kw, steps=31),
        "optimizer": dict(kw, optimizer=fitjax.adam(0.06)),
        "chunk_size": dict(kw, chunk_size=8),
        "key": dict(kw, key=jax.random.key(2)),
        "starts": dict(kw, starts=chunked.uniform_starts(jax.random.key(0), 40, [-9.0, 2.5], [10.0, 22.5])),
        "data": dict(kw, data=(data[0], data[1] + 1.0)),
    }
    for name, changed in other.items():
        args = {"optimizer": opt, "starts": starts, "data": data, "chunk_size": 16, **changed}
        with pytest.raises(ValueError, match=rf"other arguments.*\b{name}\b[^;]*: stored"):
            fitjax.fit_chunked(
                loss, args.pop("optimizer"), args.pop("starts"), args.pop("data"), out_dir=tmp_path, **args
            )
    with pytest.raises(ValueError, match="already holds a sweep.*resume=True"):
        fitjax.fit_chunked(loss, opt, starts, data, chunk_size=16, out_dir=tmp_path, resume=False, **kw)


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path):
    loss, opt, starts, data, kw = build(SETUP)
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        fitjax.fit_chunked(loss, opt, starts, data, chunk_size=0, out_dir=out, **kw)
    with pytest.raises(TypeError, match=r"starts must be a floating-point array.*int"):
        fitjax.fit_chunked(loss, opt, np.zeros((4, 2), int), data, chunk_size=2, out_dir=out, **kw)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        fitjax.fit_chunked(loss, opt, starts, data, chunk_size=2, out_dir=out, grid={"momentum": [0.5]}, **kw)
    with pytest.raises(TypeError, match="devices must be a non-empty list"):
        fitjax.fit_chunked(loss, opt, starts, data, chunk_size=2, out_dir=out, devices=[], **kw)
    assert not out.exists()
    with pytest.raises(ValueError, match="holds no manifest.json"):
        fitjax.load_chunked(tmp_path)


KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from fitjax.engine import chunked
    commit = chunked.commit

    def dying_commit(tmp, final):
        if final.name.startswith("chunk-") and int(final.stem.split("-")[1]) == 2:
            # half of chunk 2 is on disk under its temporary name when the process dies
            with open(tmp, "r+b") as f:
                f.truncate(os.path.getsize(tmp) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        commit(tmp, final)

    chunked.commit = dying_commit
    fitjax.fit_chunked(loss, optimizer, starts, data, chunk_size=8, out_dir=sys.argv[1], **kwargs)
    """
)


def test_sweep_killed_while_writing_a_chunk_resumes_to_identical_results(tmp_path):
    loss, opt, starts, data, kw = build(SETUP)
    out = tmp_path / "killed"
    script = SETUP + KILLED
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", script, str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("chunk-*.npz")) == ["chunk-000000.npz", "chunk-000001.npz"]
    assert len(list(out.glob(".chunk-000002.npz.tmp-*"))) == 1  # the half-written chunk, never read
    assert [runs for runs, _ in fitjax.iter_chunks(out)] == [slice(0, 8), slice(8, 16)]
    with pytest.raises(ValueError, match="3 of 5 chunks are missing"):
        fitjax.load_chunked(out)

    resumed = fitjax.fit_chunked(loss, opt, starts, data, chunk_size=8, out_dir=out, **kw)
    assert resumed.computed == (2, 3, 4)
    assert not list(out.glob(".*.tmp-*"))
    whole = fitjax.fit_chunked(loss, opt, starts, data, chunk_size=8, out_dir=tmp_path / "whole", **kw)
    assert_same(fitjax.load_chunked(out), fitjax.load_chunked(whole.path))


def test_cli_sweep_with_chunk_size_equals_sweep_and_resumes(tmp_path, capsys):
    from fitjax.cli import main, problem

    argv = [
        "sweep",
        "--model",
        "gabor",
        "--optimizer",
        "adam",
        "--learning-rate",
        "0.01,0.05",
        "--starts",
        "uniform:20",
        "--steps",
        "10",
        "--chunk-size",
        "8",
        "--devices",
        "1",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert main(argv) == 0
    assert "5 chunks (5 computed now" in capsys.readouterr().out
    got = fitjax.load_chunked(tmp_path / "chunks")
    (lo0, hi0), (lo1, hi1) = problem("gabor").box
    starts = chunked.uniform_starts(jax.random.fold_in(jax.random.key(0), 1), 20, [lo0, lo1], [hi0, hi1])
    grid = {"learning_rate": jnp.array([0.01, 0.05])}
    ref = fitjax.sweep(
        problem("gabor").loss,
        fitjax.adam(0.01),
        starts.take(np.arange(20)),
        fitjax.datasets.gabor(),
        grid=grid,
        steps=10,
        key=jax.random.key(0),
    )  # 40 runs: one block, sweep's own shape
    assert_same((got.result.params, got.result.loss), (ref.result.params, ref.result.loss))
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert summary["runs"] == 40 and summary["best"]["loss"] == float(np.min(ref.result.loss))

    assert main(argv) == 0  # again: everything is on disk already
    assert "(0 computed now" in capsys.readouterr().out
    assert main([*argv, "--no-resume"]) == 2
    assert "already holds a sweep" in capsys.readouterr().err
    steps = argv.index("--steps") + 1
    assert main([*argv[:steps], "11", *argv[steps + 1 :]]) == 2
    assert "steps: stored 10, given 11" in capsys.readouterr().err
