#!/usr/bin/env bash
# Device run: builds the engine's CUDA tests (lemo_worker_engine_cuda_test, label gpu) and runs
# them (exit 1 if one fails, after the benchmark), then repeats the checkpointed 4K/8K rows of the benchmark with more timed steps.
#   bash bench/gpu_checks.sh          (repo root on the GPU machine, .device carried)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
source .device/env.sh
OUT=${OUT:-$PWD/bench-out}
mkdir -p "$OUT"
cmake -S . -B build-gpu -G Ninja -DLEMO_ENABLE_CUDA=ON -DLEMO_PYTHON=python3 \
  $LEMO_DEVICE_CMAKE_FLAGS -DCMAKE_BUILD_TYPE=Release >"$OUT/configure.log" 2>&1
cmake --build build-gpu -j 16 --target lemo-train lemo_worker_engine_cuda_test \
  >"$OUT/build.log" 2>&1 || { grep -m5 error "$OUT/build.log"; exit 1; }
export LEMO_PYTHON=python3 LEMO_SOURCE_DIR=$PWD LEMO_BIN_DIR=$PWD/build-gpu/bin
build-gpu/bin/lemo_worker_engine_cuda_test >"$OUT/gpu_tests.log" 2>&1
tests_rc=$?
tail -15 "$OUT/gpu_tests.log"
echo "lemo_worker_engine_cuda_test: exit $tests_rc" | tee -a "$OUT/gpu_tests.log"
LEMO_BENCH_BUILD=0 LEMO_BENCH_CTEST=0 LEMO_BENCH_SEQS="4096 8192" LEMO_BENCH_MODES="on" \
  LEMO_BENCH_STEPS=6 LEMO_BENCH_DEADLINE=400 LEMO_BENCH_LEMO_ARGS="--loss-segment-tokens 2048" \
  bash bench/gpu_suite.sh 2>&1 | tail -20
exit "$tests_rc"
