#!/usr/bin/env bash
# The GPU checks and benchmarks in one run, under five minutes on one H100 or H200.
#
#   bash benchmarks/gpu.sh [RESULTS_DIR]
#
# Run from the repository root on a machine whose python3 already has jax with CUDA,
# optax, chex, torch, matplotlib and pytest (nothing is installed; no network needed).
# RESULTS_DIR (default: $OUT if set, else benchmarks/gpu-results) receives every JSON
# file, the log of each step and a copy of docs/benchmarks.md with the GPU tables
# (sections gpu-n28, gpu-n1024, gpu-chunked, gpu-landscape, gpu-headline-extra), which is copied
# over docs/benchmarks.md at the end (not in a tiny run).
#
# Steps, each under its own `timeout` so that one hung step cannot eat the budget:
#   a. the device;
#   b. the GPU-relevant tests (divergence checks by span, the fused kernel, optax equivalence;
#      the 100 s limit may cut the last file short);
#   c. the benchmark suite: Adam contenders at I = 1 .. 1e6, N = 28 (the workload of the
#      plain-JAX ceiling measurements) with the other optimizers, written to JSON and
#      into the page;
#   d. benchmarks/fused_bench.py: each precision mode at several launch settings;
#   e. benchmarks/step_profile.py: kernels per step and the divergence check's cost;
#   e2. the same for recording every 10th step: the engine's loop against the record
#      blocks unrolled (a loop of their own each, or none);
#   e3. benchmarks/call_profile.py: what a call of fit costs beyond its program (I = 1e4, 1e5);
#   e4. the same at I = 1 and 1e4 with the status polled for on the GPU too (`--poll gpu`);
#   f. I = 1 .. 1e5 at N = 1024;
#   g. a chunked sweep of 1e7 runs (fitjax.fit_chunked): time and device memory;
#   h. the landscape grids, 1024², 4096² and 16384² (the plain grid's residuals at 16384²: 30 GB);
#   i. if time is left: torch.compile and NumPy at the headline case I = 1e6, N = 28.
# Everything written to RESULTS_DIR is also packed into RESULTS_DIR/results.tar.gz.
#
# FITJAX_BENCH_TINY=1 runs every Python step at tiny sizes (works on a CPU: it checks
# the script, not the speed); FITJAX_GPU_SKIP_TESTS=1 skips step b; FITJAX_GPU_STEPS="device
# bench-n28 ..." runs only the steps named (default: all).

set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # device peaks then reflect what each step used
PY=${PYTHON:-python3}
RESULTS=${1:-${OUT:-benchmarks/gpu-results}}
mkdir -p "$RESULTS"
TINY=${FITJAX_BENCH_TINY:-0}
BUDGET=${FITJAX_GPU_BUDGET:-330}  # seconds for the whole script
START=$(date +%s)

elapsed() { echo $(($(date +%s) - START)); }

# step NAME SECONDS COMMAND...: run COMMAND under a time limit, log it, never stop the script.
step() {
    local name=$1 limit=$2
    shift 2
    if [ -n "${FITJAX_GPU_STEPS:-}" ] && [[ " $FITJAX_GPU_STEPS " != *" $name "* ]]; then
        return 0
    fi
    local left=$((BUDGET - $(elapsed)))
    if [ "$left" -lt 10 ]; then
        echo "=== $name: SKIPPED (only ${left} s of the ${BUDGET} s budget left)"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name (limit ${limit} s, at $(elapsed) s)"
    local t0
    t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee "$RESULTS/$name.log"
    local rc=${PIPESTATUS[0]}
    local status="ok"
    [ "$rc" -ne 0 ] && status="FAILED (exit $rc)"
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status="TIMED OUT after ${limit} s"
    echo "=== $name: $status in $(($(date +%s) - t0)) s"
    echo "$name: $status" >>"$RESULTS/summary.txt"
}

PAGE="$RESULTS/benchmarks.md"  # a copy of docs/benchmarks.md that the steps write their tables into
cp docs/benchmarks.md "$PAGE"
RUNNER=(-m benchmarks.run_contenders --markdown "$PAGE" --repeat 2 --loop-starts 2)
FUSED=(-m benchmarks.fused_bench --runs 1000000 --points 28 --steps 1000 --repeat 2 --configs 64x2,128x4,256x8,64x4
    --ref-runs 20000)  # fewer configurations and float64 reference runs than its defaults, to fit the budget
PROFILE_RUNS=(10000 1000000)
RECORD_RUNS=(100 10000 1000000)
CALL_RUNS=(10000 100000)
CALLS=50
POLL_RUNS=(1 10000)
POLL_CALLS=500
PROFILE_STEPS=1000
CHUNKED_RUNS=10000000
RUNS_28=(1000000 10000 100000 100 1)  # the headline case first, in case time runs short
RUNS_1024=(1 100 10000 100000)
OPT_RUNS=100000
BIG=1000000
if [ "$TINY" = "1" ]; then
    RUNS_28=(64 16 1)
    RUNS_1024=(1 64)
    OPT_RUNS=32
    BIG=64
    RUNNER+=(--tiny)
    FUSED=(-m benchmarks.fused_bench --runs 64 --points 28 --steps 20 --repeat 1 --ref-runs 64
        --cpu-runs 16 --cpu-steps 10 --configs 16x4)
    PROFILE_RUNS=(64)
    RECORD_RUNS=(64)
    CALL_RUNS=(64)
    CALLS=10
    POLL_RUNS=(1)
    POLL_CALLS=20
    PROFILE_STEPS=20
    CHUNKED_RUNS=10000
fi
: >"$RESULTS/summary.txt"

# a. the device
step device 20 "$PY" -c '
import jax, jaxlib
d = jax.devices()
print("jax", jax.__version__, "jaxlib", jaxlib.__version__, "backend", jax.default_backend())
print("devices:", d, "kind:", d[0].device_kind)
print("memory:", (d[0].memory_stats() or {}).get("bytes_limit"))
'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

# b. the GPU-relevant tests
if [ "${FITJAX_GPU_SKIP_TESTS:-0}" != "1" ]; then
    step tests 100 "$PY" -m pytest tests/test_span_checks.py tests/test_fused.py tests/test_optax_equivalence.py -k "not span1 and not span3" -q -x -p no:cacheprovider
fi

# c. the benchmark suite at N = 28 (the headline I = 1e6 first)
step bench-n28 100 "$PY" "${RUNNER[@]}" --points 28 --runs "${RUNS_28[@]}" --suites adam optimizers \
    --optimizer-runs "$OPT_RUNS" --contenders expert_optax fitjax fitjax_record10 fitjax_auto fitjax_fast \
    fitjax_polynomial torch_batched_eager optax_loop --budget-s 80 --section gpu-n28 --json "$RESULTS/bench-n28.json"

# d. the fused kernel's own benchmark
step fused 60 "$PY" "${FUSED[@]}" --json "$RESULTS/fused.json"

# e. where the XLA path's step time goes
step step-profile 45 "$PY" -m benchmarks.step_profile --runs "${PROFILE_RUNS[@]}" --steps "$PROFILE_STEPS" \
    --repeat 2 --unroll --json "$RESULTS/step-profile.json"

# e2. what recording costs in the step loop, and without a loop per record block
step record-profile 45 "$PY" -m benchmarks.step_profile --runs "${RECORD_RUNS[@]}" --steps "$PROFILE_STEPS" \
    --repeat 2 --record 10 --engine-only --json "$RESULTS/record-profile.json"

# e3. what a call of fit costs beyond its program
step call-profile 30 "$PY" -m benchmarks.call_profile --runs "${CALL_RUNS[@]}" --steps "$PROFILE_STEPS" \
    --calls "$CALLS" --json "$RESULTS/call-profile.json"

# f. N = 1024
step bench-n1024 45 "$PY" "${RUNNER[@]}" --points 1024 --runs "${RUNS_1024[@]}" --suites adam \
    --contenders expert_optax fitjax fitjax_record10 fitjax_auto fitjax_polynomial torch_batched_eager \
    --budget-s 35 --section gpu-n1024 --json "$RESULTS/bench-n1024.json"

# g. a chunked sweep of 1e7 runs
step chunked 20 "$PY" "${RUNNER[@]}" --suites chunked --chunked-runs "$CHUNKED_RUNS" --chunked-points 28 \
    --section gpu-chunked --json "$RESULTS/chunked.json"

# h. the landscape grids
step landscape 60 "$PY" "${RUNNER[@]}" --points 28 --suites landscape --grids 1024 4096 16384 \
    --section gpu-landscape --json "$RESULTS/landscape.json"

# e4 (after h: lower priority). polling for the status on the GPU too, at I = 1 and 1e4 (NOTES 25's prediction)
step call-profile-poll 25 "$PY" -m benchmarks.call_profile --runs "${POLL_RUNS[@]}" --steps "$PROFILE_STEPS" \
    --calls "$POLL_CALLS" --gap 50 --poll gpu --json "$RESULTS/call-profile-poll.json"

# i. if time is left: torch.compile and NumPy at the headline case I = 1e6, N = 28
step headline-extra 40 "$PY" "${RUNNER[@]}" --suites adam --runs "$BIG" --points 28 \
    --contenders expert_optax torch_batched_compiled numpy_vectorised --numpy-elements 200000 \
    --section gpu-headline-extra --json "$RESULTS/headline-extra.json"

if [ "$TINY" != "1" ] && [ -z "${FITJAX_GPU_STEPS:-}" ]; then
    cp "$PAGE" docs/benchmarks.md  # the GPU sections into the docs page itself
fi
echo "=== summary (total $(elapsed) s of ${BUDGET} s)"
cat "$RESULTS/summary.txt"
grep -h "^PASS\|^FAIL" "$RESULTS"/bench-*.log "$RESULTS"/headline-extra.log 2>/dev/null
tar czf /tmp/fitjax-gpu-results.tar.gz -C "$RESULTS" . && mv /tmp/fitjax-gpu-results.tar.gz "$RESULTS/results.tar.gz"
