"""Chunked sweeps on several devices and several processes equal the sweep on one device, bit for bit.

Each case runs in fresh processes with forced CPU devices; the reference is the same
sweep on one device. The problem (a small MLP fitted by Adam) is one
where an SPMD-partitioned program and a one-device program round differently, so these
tests fail if the chunked sweep ever computes a run with a program that depends on the
number of devices.
"""

import os
import shutil
import socket
import subprocess
import sys
import textwrap

import jax
from _problems import assert_same, build

import fitjax

SETUP = """
import functools, jax, fitjax
loss = fitjax.least_squares(fitjax.mlp)
data = fitjax.datasets.synthetic_regression(jax.random.key(1), 16)
optimizer = fitjax.adam(0.01)
init = functools.partial(fitjax.init_mlp, sizes=(1, 4, 1))
starts = fitjax.engine.chunked.generated_starts(init, jax.random.key(0), 30)
kwargs = dict(steps=20, block=4, progress=False)
"""


def _env(devices: int) -> dict:
    return dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}"
    )


MANY_DEVICES = SETUP + textwrap.dedent(
    """
    import sys, numpy as np
    n = int(sys.argv[1])
    assert len(jax.devices()) == n, jax.devices()
    one = fitjax.fit_chunked(loss, optimizer, starts, data, chunk_size=7, out_dir=sys.argv[2] + "/one",
                             devices=jax.devices()[:1], **kwargs)
    many = fitjax.fit_chunked(loss, optimizer, starts, data, chunk_size=5, out_dir=sys.argv[2] + "/many",
                              **kwargs)
    a, b = fitjax.load_chunked(one.path), fitjax.load_chunked(many.path)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    print("ok")
    """
)


def test_chunked_sweep_on_eight_devices_equals_one_device(tmp_path):
    for n in (8,):  # more devices than a block's 4 runs
        out = subprocess.run(
            [sys.executable, "-c", MANY_DEVICES, str(n), str(tmp_path / str(n))],
            env=_env(n),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip().endswith("ok")


TWO_PROCESSES = (
    textwrap.dedent(
        """
    import sys, jax
    pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    """
    )
    + SETUP
    + textwrap.dedent(
        """
    assert jax.process_count() == 2 and len(jax.devices()) == 4 and len(jax.local_devices()) == 2
    run = fitjax.fit_chunked(loss, optimizer, starts, data, chunk_size=8, out_dir=out, **kwargs)
    print("computed", list(run.computed))
    """
    )
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_resume_a_one_device_sweep_to_identical_results(tmp_path):
    loss, opt, starts, data, kw = build(SETUP)
    ref = fitjax.fit_chunked(
        loss, opt, starts, data, chunk_size=8, out_dir=tmp_path / "ref", devices=jax.devices()[:1], **kw
    )
    # the multi-process sweep starts from the one-device sweep's manifest and first chunk
    shared = tmp_path / "shared"
    shared.mkdir()
    for name in ("manifest.json", "chunk-000000.npz"):
        shutil.copy(ref.path / name, shared / name)
    port = _free_port()
    outs = [str(shared), str(tmp_path / "process1")]  # only process 0 writes
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_PROCESSES, str(i), str(port), outs[i]],
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (stdout, stderr) in zip(procs, results, strict=True):
        assert p.returncode == 0, stderr[-3000:]
        assert "computed [1, 2, 3]" in stdout
    assert not (tmp_path / "process1").exists()
    assert_same(fitjax.load_chunked(shared), fitjax.load_chunked(ref.path))
