"""Chunked sweeps on disk never give back garbage: damaged files are repaired or refused; one writer.

Each damage case is applied to a finished and to an unfinished sweep. It is either
repaired by resuming (a warning names the file; the result is bit-identical to an
uninterrupted sweep) or refused by ``load_chunked`` with a message naming the file;
no case returns data that differs. The reference is the uninterrupted sweep.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from _problems import assert_same, build

import fitjax
from fitjax.engine import chunked, integrity

SETUP = """
import jax, fitjax
loss = fitjax.least_squares(fitjax.line)
data = fitjax.datasets.line()
optimizer = fitjax.gd(0.01)
starts = fitjax.engine.chunked.uniform_starts(jax.random.key(0), 12, [-1.0, -1.0], [1.0, 1.0])
kwargs = dict(steps=3, chunk_size=4, block=4, progress=False)
"""
LOSS, OPT, STARTS, DATA, KW = build(SETUP)
CHUNKS = ["chunk-000000.npz", "chunk-000001.npz", "chunk-000002.npz"]


def sweep(out, **changed):
    """The problem's sweep into ``out`` (resumed if there is one); warnings raised by it are returned."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = fitjax.fit_chunked(LOSS, OPT, STARTS, DATA, out_dir=out, **{**KW, **changed})
    return run, [str(w.message) for w in caught if issubclass(w.category, chunked.RepairWarning)]


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """A finished sweep (with its merged arrays) and one stopped after two of its three chunks."""
    root = tmp_path_factory.mktemp("sweeps")
    sweep(root / "finished")
    reference = fitjax.load_chunked(root / "finished")
    fitjax.load_chunked(root / "finished", mmap=True)
    commit = chunked.commit

    def stopping(tmp, final):
        if final.name == CHUNKS[2]:
            os.unlink(tmp)
            raise Stop
        commit(tmp, final)

    chunked.commit = stopping
    try:
        with pytest.raises(Stop):
            sweep(root / "unfinished")
    finally:
        chunked.commit = commit
    assert sorted(json.loads((root / "unfinished" / "manifest.json").read_text())["chunks"]) == CHUNKS[:2]
    return root, reference


# ----------------------------------------------------------------------------- damage


def truncate(path, size=None):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2 if size is None else size)


def flip(path, at=0.6):
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def edit_manifest(out, change):
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest, indent=1))


def swap_records(manifest):
    chunks = manifest["chunks"]
    chunks[CHUNKS[0]], chunks[CHUNKS[1]] = chunks[CHUNKS[1]], chunks[CHUNKS[0]]


def reverse_keys(value):
    if isinstance(value, dict):
        return {k: reverse_keys(value[k]) for k in reversed(list(value))}
    return value


def swap_files(out):
    a, b = out / CHUNKS[0], out / CHUNKS[1]
    a.rename(out / "tmp")
    b.rename(a)
    (out / "tmp").rename(b)


# name -> (damage(out), the file a refusal and a repair must name, what happens)
# "repair": load_chunked refuses naming the file; resuming warns naming it and recomputes.
# "harmless": nothing to repair (a sweep that reads back unchanged).
# "refuse": neither load_chunked nor resuming touch it, both naming the file.
CASES = {
    "truncate chunk": (lambda out: truncate(out / CHUNKS[0]), CHUNKS[0], "repair"),
    "empty chunk": (lambda out: truncate(out / CHUNKS[0], 0), CHUNKS[0], "repair"),
    "zero chunk": (
        lambda out: (out / CHUNKS[1]).write_bytes(bytes((out / CHUNKS[1]).stat().st_size)),
        CHUNKS[1],
        "repair",
    ),
    "flip a byte in the header": (lambda out: flip(out / CHUNKS[0], 0.05), CHUNKS[0], "repair"),
    "flip a byte in the data": (lambda out: flip(out / CHUNKS[1], 0.6), CHUNKS[1], "repair"),
    "copy chunk 0 over chunk 1": (
        lambda out: shutil.copyfile(out / CHUNKS[0], out / CHUNKS[1]),
        CHUNKS[1],
        "repair",
    ),
    "delete chunk": (lambda out: (out / CHUNKS[1]).unlink(), CHUNKS[1], "repair"),
    "swap two chunks": (swap_files, CHUNKS[0], "repair"),
    "chunk outside the plan": (
        lambda out: shutil.copyfile(out / CHUNKS[0], out / "chunk-000007.npz"),
        "chunk-000007.npz",
        "repair",
    ),
    "n_chunks edited down": (
        lambda out: edit_manifest(out, lambda m: m.update(n_chunks=2)),
        "manifest.json",
        "repair",
    ),
    "n_chunks edited up": (
        lambda out: edit_manifest(out, lambda m: m.update(n_chunks=4)),
        "manifest.json",
        "repair",
    ),
    "n_runs edited": (
        lambda out: edit_manifest(out, lambda m: m.update(n_runs=8, n_chunks=2)),
        "manifest.json",
        "repair",
    ),
    "manifest records swapped": (lambda out: edit_manifest(out, swap_records), "manifest.json", "repair"),
    "manifest checksum edited": (
        lambda out: edit_manifest(out, lambda m: m.update(checksum="0" * 64)),
        "manifest.json",
        "repair",
    ),
    "manifest keys reordered": (
        lambda out: (out / "manifest.json").write_text(
            json.dumps(reverse_keys(json.loads((out / "manifest.json").read_text())))
        ),
        None,
        "harmless",
    ),
    "manifest truncated": (lambda out: truncate(out / "manifest.json"), "manifest.json", "refuse"),
    "manifest deleted": (lambda out: (out / "manifest.json").unlink(), "manifest.json", "refuse"),
}


@pytest.mark.parametrize("state", ["finished", "unfinished"])
@pytest.mark.parametrize("case", list(CASES))
def test_damage_is_repaired_by_resuming_or_refused_naming_the_file(case, state, sweeps, tmp_path):
    root, reference = sweeps
    out = tmp_path / state
    shutil.copytree(root / state, out, ignore=shutil.ignore_patterns("merged"))
    damage, named, outcome = CASES[case]
    damage(out)

    # reading never returns data that differs: it is refused, naming the file
    if outcome == "harmless" and state == "finished":
        assert_same(fitjax.load_chunked(out), reference)
    else:
        with pytest.raises(ValueError) as refused:
            fitjax.load_chunked(out)
        if named is not None:
            assert named in str(refused.value)
        if outcome == "repair":
            assert "fit_chunked" in str(refused.value)  # the call that repairs it

    if outcome == "refuse":
        with pytest.raises(ValueError, match=named):
            sweep(out)
        return
    run, warned = sweep(out)
    if outcome == "repair":
        assert any(named in w for w in warned), warned
    else:
        assert warned == []
    if state == "finished" and outcome == "harmless":
        assert run.computed == ()
    assert_same(fitjax.load_chunked(out), reference)
    assert sweep(out)[0].computed == ()  # repaired for good: nothing left to recompute
    assert not list(out.glob(".*tmp*"))


def test_iter_chunks_skips_unfinished_chunks_and_refuses_damaged_ones(sweeps, tmp_path):
    root, reference = sweeps
    out = tmp_path / "unfinished"
    shutil.copytree(root / "unfinished", out)
    shutil.copyfile(out / CHUNKS[0], out / CHUNKS[2])  # a copy where the chunk not yet done belongs
    got = list(fitjax.iter_chunks(out))
    assert [runs for runs, _ in got] == [slice(0, 4), slice(4, 8)]
    np.testing.assert_array_equal(got[1][1]["loss"], reference.loss[4:8])
    flip(out / CHUNKS[1])
    with pytest.raises(chunked.DamagedSweepError, match=rf"{CHUNKS[1]}'?: its SHA-256 differs"):
        list(fitjax.iter_chunks(out))


@pytest.mark.parametrize(
    "damage",
    [
        lambda merged: truncate(merged / "loss.npy"),
        lambda merged: flip(merged / "params.0.npy", 0.9),
        lambda merged: (merged / "diverged_step.npy").unlink(),
        lambda merged: (merged / "complete.json").write_text("{}"),
    ],
    ids=["truncated", "flipped", "deleted", "record emptied"],
)
def test_damaged_merged_arrays_are_built_again(damage, sweeps, tmp_path):
    root, reference = sweeps
    out = tmp_path / "finished"
    shutil.copytree(root / "finished", out)
    damage(out / "merged")
    with pytest.warns(chunked.RepairWarning, match="merged.*built again from the chunks"):
        got = fitjax.load_chunked(out, mmap=True)
    assert isinstance(got.loss, np.memmap)
    assert_same(got, reference)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(fitjax.load_chunked(out, mmap=True), reference)  # verified, not built again


def test_a_merged_array_of_a_damaged_chunk_is_never_built(sweeps, tmp_path):
    root, _ = sweeps
    out = tmp_path / "finished"
    shutil.copytree(root / "finished", out, ignore=shutil.ignore_patterns("merged"))
    flip(out / CHUNKS[2])
    with pytest.raises(chunked.DamagedSweepError, match=CHUNKS[2]):
        fitjax.load_chunked(out, mmap=True)
    assert not (out / "merged" / "complete.json").exists()


def test_chunks_are_checked_against_the_plan_of_arrays(sweeps, tmp_path):
    """A chunk file rewritten with a consistent record but another dtype is refused all the same."""
    root, reference = sweeps
    out = tmp_path / "finished"
    shutil.copytree(root / "finished", out, ignore=shutil.ignore_patterns("merged"))
    path = out / CHUNKS[1]
    with np.load(path) as f:
        arrays = {name: f[name] for name in f.files}
    arrays["loss"] = arrays["loss"].astype(np.float64)
    data = integrity.npz_bytes(arrays)
    path.write_bytes(data)
    record = {"runs": [4, 8], "size": len(data), "sha256": integrity.sha256_bytes(data)}
    edit_manifest(out, lambda m: m["chunks"].update({CHUNKS[1]: record}))
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(integrity.sealed(manifest)))
    with pytest.raises(chunked.DamagedSweepError, match=r"array 'loss' has dtype <f8 .* plan has dtype <f4"):
        fitjax.load_chunked(out)
    run, warned = sweep(out)
    assert run.computed == (1,) and CHUNKS[1] in warned[0]
    assert_same(fitjax.load_chunked(out), reference)


def test_temporary_files_of_live_writers_are_kept(sweeps, tmp_path):
    root, _ = sweeps
    out = tmp_path / "finished"
    shutil.copytree(root / "finished", out)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = out / f".chunk-000001.npz.tmp-{os.getppid()}"
    gone = out / f".chunk-000001.npz.tmp-{dead.pid}"
    live.write_bytes(b"half")
    gone.write_bytes(b"half")
    sweep(out)
    assert live.exists() and not gone.exists()


# ----------------------------------------------------------------------------- one writer at a time

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from fitjax.engine import chunked
    out = Path(sys.argv[1])
    commit = chunked.commit

    def pausing_commit(tmp, final):
        commit(tmp, final)
        if final.name == "chunk-000000.npz":  # hold the lock, one chunk written, until told to go on
            (out.parent / "paused").write_text(str(os.getpid()))
            deadline = time.time() + 120
            while not (out.parent / "go").exists() and time.time() < deadline:
                time.sleep(0.02)

    chunked.commit = pausing_commit
    try:
        fitjax.fit_chunked(loss, optimizer, starts, data, out_dir=out, **kwargs)
    except chunked.SweepBusyError as err:
        print(err, file=sys.stderr)
        sys.exit(3)
    """
)


def test_two_writers_on_one_folder_one_runs_the_other_is_refused_naming_its_pid(sweeps, tmp_path):
    root, reference = sweeps
    out = tmp_path / "sweep"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SETUP + WRITER, str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        deadline = time.time() + 240
        while not ((tmp_path / "paused").exists() and any(p.poll() is not None for p in procs)):
            assert time.time() < deadline and all(p.poll() in (None, 3) for p in procs)
            time.sleep(0.05)
        winner = int((tmp_path / "paused").read_text())
        (loser,) = [p for p in procs if p.pid != winner]
        assert loser.wait() == 3
        assert f"is being written by process {winner} on host" in loser.stderr.read()
        # a third writer, started while the first holds the lock in the middle of the sweep
        with pytest.raises(chunked.SweepBusyError, match=rf"process {winner} on host .*writer\.lock"):
            sweep(out)
        assert not (out / CHUNKS[1]).exists()
    finally:
        (tmp_path / "go").write_text("")
        for p in procs:
            p.wait(timeout=240)
    (ran,) = [p for p in procs if p.pid == winner]
    assert ran.returncode == 0, ran.stderr.read()[-3000:]
    assert_same(fitjax.load_chunked(out), reference)
    run, warned = sweep(out)  # the lock went with its holder
    assert run.computed == () and warned == []


def test_the_lock_goes_with_a_writer_killed_while_it_writes(sweeps, tmp_path):
    root, reference = sweeps
    out = tmp_path / "sweep"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-c", SETUP + WRITER, str(out)], env=env)
    try:
        deadline = time.time() + 240
        while not (tmp_path / "paused").exists():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
        with pytest.raises(chunked.SweepBusyError, match=f"process {proc.pid} "):
            sweep(out)
    finally:
        proc.kill()
        proc.wait()
    run, warned = sweep(out)  # chunk 0 was renamed into place, but its writer died before recording it
    assert run.computed == (0, 1, 2) and f"{CHUNKS[0]}: not recorded in manifest.json" in warned[0]
    assert_same(fitjax.load_chunked(out), reference)


# ----------------------------------------------------------------------------- the fingerprint covers code


def lambda_from(source):
    """``loss`` defined by ``source`` in a module named ``user_losses``: always qualname ``<lambda>``."""
    namespace = {"__name__": "user_losses", "jnp": jnp}
    exec(source, namespace)
    return namespace["loss"]


LINE = "loss = lambda p, batch: jnp.sum((p[0] + p[1] * batch[0] - batch[1]) ** 2)"
NESTED = "loss = lambda p, batch: jnp.sum((lambda r: r**2)(p[0] + p[1] * batch[0] - batch[1]))"


@pytest.mark.parametrize(
    ("first", "edited", "said"),
    [
        (LINE, LINE.replace("** 2", "** 3"), r"code\.constants\[\d\]: stored 2, given 3"),
        (LINE, LINE.replace("jnp.sum", "jnp.mean"), r"code\.names\[\d\]: stored \"sum\", given \"mean\""),
        (LINE, LINE.replace("p[0] +", "p[0] -"), r"code\.bytecode: stored \"[0-9a-f]+\", given"),
        (
            NESTED,
            NESTED.replace("r**2", "r**4"),
            r"code\.constants\[\d\]\.code\.constants\[\d\]: stored 2, given 4",
        ),
    ],
    ids=["constant", "function called", "operator", "nested function"],
)
def test_an_edited_function_with_the_same_name_is_refused_saying_what_changed(first, edited, said, tmp_path):
    assert lambda_from(first).__qualname__ == lambda_from(edited).__qualname__ == "<lambda>"
    fitjax.fit_chunked(lambda_from(first), OPT, STARTS, DATA, out_dir=tmp_path, **KW)
    again = fitjax.fit_chunked(lambda_from(first), OPT, STARTS, DATA, out_dir=tmp_path, **KW)
    assert again.computed == ()  # the same code, made again: resumed
    with pytest.raises(ValueError, match=rf"other arguments.*\bloss, at {said}") as refused:
        fitjax.fit_chunked(lambda_from(edited), OPT, STARTS, DATA, out_dir=tmp_path, **KW)
    assert "the code of function user_losses.<lambda> differs" in str(refused.value)


def test_a_closure_value_changed_in_place_is_refused(tmp_path):
    def make(scale):
        return lambda p, batch: scale * jnp.sum((p[0] + p[1] * batch[0] - batch[1]) ** 2)

    fitjax.fit_chunked(make(1.0), OPT, STARTS, DATA, out_dir=tmp_path, **KW)
    with pytest.raises(ValueError, match=r"loss, at closure\.scale: stored 1\.0, given 2\.0"):
        fitjax.fit_chunked(make(2.0), OPT, STARTS, DATA, out_dir=tmp_path, **KW)
