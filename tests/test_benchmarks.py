"""The benchmark harness runs: each main script at tiny sizes, as ``benchmarks/gpu.sh`` runs it
with ``FITJAX_BENCH_TINY=1`` (smaller still, so that the four take about 30 s on two CPU cores).

They check the scripts, not the speed: every script is run as ``python -m benchmarks.NAME``
in its own process on the CPU, must exit with 0 and must write the results it promises,
with fitjax's numbers agreeing with the references the scripts compare them to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_module(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"python -m benchmarks.{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    return proc


def test_benchmarks_is_a_package():
    assert (ROOT / "benchmarks" / "__init__.py").is_file()
    for path in (ROOT / "benchmarks").glob("*.py"):
        assert "except ImportError" not in path.read_text(), f"{path.name}: import it as a package module"


def test_run_contenders_tiny(tmp_path):
    out, page = tmp_path / "bench.json", tmp_path / "page.md"
    run_module(
        "run_contenders",
        "--tiny",
        "--suites", "adam", "optimizers", "landscape", "chunked",
        "--runs", "8", "--points", "28",
        "--contenders", "expert_optax", "fitjax",
        "--optimizers", "gd",
        "--optimizer-runs", "8",
        "--chunked-runs", "512",
        "--json", str(out),
        "--markdown", str(page),
        "--section", "tiny-test",
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert result["complete"] and not result["not_run"]
    assert {case["suite"] for case in result["cases"]} == {"adam", "optimizers", "landscape", "chunked"}
    for case in result["cases"]:
        for row in case.get("rows", []):
            assert row.get("skip_reason") is None, (case["suite"], row["contender"], row["skip_reason"])
            assert row["agreement"]["frac_within"] == 1.0, (case["suite"], row["contender"], row["agreement"])
    chunked = next(case for case in result["cases"] if case["suite"] == "chunked")
    assert chunked["finite"] == 512
    assert "tiny-test" in page.read_text()


def test_fused_bench_tiny(tmp_path):
    out = tmp_path / "fused.json"
    run_module(
        "fused_bench",
        "--runs", "16", "--points", "28", "--steps", "5", "--repeat", "1", "--ref-runs", "16",
        "--cpu-runs", "8", "--cpu-steps", "5", "--configs", "16x4", "--json", str(out),
    )  # fmt: skip
    result = json.loads(out.read_text())
    for precision in ("platform", "full", "fast"):
        diff = result[f"fused_{precision}_vs_xla"]
        assert diff["same_divergence"], precision
        assert diff["params_max_abs"] < 1e-3, (precision, diff)


def test_step_profile_tiny(tmp_path):
    from benchmarks import step_profile

    out = tmp_path / "profile.json"
    run_module("step_profile", "--runs", "8", "--steps", "8", "--repeat", "1", "--json", str(out))
    rows = json.loads(out.read_text())["cases"]["8"]
    assert set(rows) == {"expert_optax"} | {f"fitjax[{name}]" for name in step_profile.VARIANTS}
    for name, row in rows.items():
        assert row["run_s"] > 0 and row["kernels_per_loop"], name


def test_call_profile_tiny(tmp_path):
    out = tmp_path / "calls.json"
    run_module("call_profile", "--runs", "16", "--steps", "8", "--calls", "4", "--json", str(out))
    times = json.loads(out.read_text())["cases"]["16"]["times"]
    assert {"expert", "fit", "fit, every check run"} <= set(times)
    assert all(t["min_us"] > 0 for t in times.values())


def test_compare_bench_tiny(tmp_path):
    out = tmp_path / "compare.json"
    run_module("compare_bench", "--tiny", "--json", str(out))
    result = json.loads(out.read_text())
    for name in ("hand_written_run", "loop_run", "hand_written_with_compiling", "loop_with_compiling"):
        assert result[f"ratio_fitjax_over_{name}"] > 0, name
    assert result["agreement_with_hand_written"]["runs_compared"] > 0
    assert result["agreement_with_hand_written"]["frac_within"] == 1.0


def test_run_blocks_tiny():
    proc = run_module(
        "run_blocks", "--sizes", "12x8", "--steps", "4", "--points-per-block", "0", "32", "--repeat", "1"
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("I=12 N=8")]
    assert len(lines) == 2 and "all runs" in lines[0] and "4 runs" in lines[1], proc.stdout
    assert all("results identical" in line for line in lines), proc.stdout


def test_task_split_tiny():
    """The table of split fusions: one row per size, the sizes as given; a program of 2 × 8
    pairs is far below XLA's threshold for splitting, so none of its fusions is split."""
    proc = run_module("task_split", "--sizes", "2x8", "--steps", "4", "--rounds", "1")
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:3] == ["2", "8", "16"]]
    assert len(rows) == 1 and rows[0][3] == "0", proc.stdout
    assert float(rows[0][-1].rstrip("x")) > 0, proc.stdout
