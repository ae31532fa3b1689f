#!/usr/bin/env bash
# Device run for the LeMo CUDA kernels: builds with CUDA, runs the GPU kernel tests
# (lemo_kernels_cuda_test, label gpu), then lemo-kernel-bench (Markdown table; JSON and logs
# under $OUT), then the engine's CUDA tests (lemo_worker_engine_cuda_test). Exits 1 if a test
# failed.
#   bash bench/gpu_kernels.sh            (repo root on the GPU machine, .device carried)
#   LEMO_KERNEL_BENCH_ARGS=--quick bash bench/gpu_kernels.sh
# LEMO_KERNEL_PREP_SUITE=1 also builds lemo-train and writes the llama2-7b preset to /tmp/llama2-7b
# in the background, so that gpu_suite.sh calls right after (machine still warm) start measuring at
# once. LEMO_KERNEL_DEADLINE=480 (s): the engine's CUDA tests are skipped when less is left.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
source .device/env.sh
OUT=${OUT:-$PWD/bench-out}
export OUT
mkdir -p "$OUT"
cmake -S . -B build-gpu -G Ninja -DLEMO_ENABLE_CUDA=ON -DLEMO_PYTHON=python3 \
  $LEMO_DEVICE_CMAKE_FLAGS -DCMAKE_BUILD_TYPE=Release -DLEMO_CUDA_RESOURCE_USAGE=ON \
  >"$OUT/configure.log" 2>&1 || { tail -20 "$OUT/configure.log"; exit 1; }
start=$(date +%s)
cmake --build build-gpu -j 16 --target lemo_kernels_cuda >"$OUT/build_cuda.log" 2>&1 ||
  { grep -m10 -B2 -A5 error "$OUT/build_cuda.log"; exit 1; }
echo "nvcc build of lemo_kernels_cuda (kernels/*/*.cu): $(( $(date +%s) - start )) s (16 jobs)"
PREP_TARGETS=
[ "${LEMO_KERNEL_PREP_SUITE:-0}" = 1 ] && PREP_TARGETS=lemo-train
# The engine test (many LibTorch translation units) is built last, so a short device call still
# gets the kernel tests and the bench. One build at a time in build-gpu: two concurrent ones race on the shared PCH (gcc crashed).
start=$(date +%s)
cmake --build build-gpu -j 16 --target lemo_kernels_cuda_test lemo-kernel-bench $PREP_TARGETS \
  >"$OUT/build.log" 2>&1 || { grep -m10 -B2 -A5 error "$OUT/build.log"; exit 1; }
echo "build of the kernel test and bench ${PREP_TARGETS:+and $PREP_TARGETS }: $(( $(date +%s) - start )) s"
PREP_PID=
if [ -n "$PREP_TARGETS" ] && [ ! -f /tmp/llama2-7b/config.json ]; then
  # The 13 GB model is written on the CPU while the GPU runs the kernel tests.
  ( t0=$(date +%s)
    build-gpu/bin/lemo-train init-model --preset llama2-7b --dtype bf16 --out /tmp/llama2-7b \
      >"$OUT/init_model.log" 2>&1 || { echo "prep: init-model FAILED (init_model.log)"; exit 1; }
    echo "prep: llama2-7b written in $(( $(date +%s) - t0 )) s" ) &
  PREP_PID=$!
fi
export LEMO_PYTHON=python3 LEMO_SOURCE_DIR=$PWD LEMO_BIN_DIR=$PWD/build-gpu/bin
# The sm_90a wgmma block-scoring test in a process of its own: a device fault there is sticky and
# must not fail the other kernels' tests.
# The tests' exit codes (not grep's) decide this script's: TESTS_RC.
TESTS_RC=0
build-gpu/bin/lemo_kernels_cuda_test --gtest_filter='-*Wgmma*' 2>&1 | tee "$OUT/kernels_cuda_test.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|error|Expected|Which is|max abs" | head -40
[ "${PIPESTATUS[0]}" = 0 ] || TESTS_RC=1
timeout 300 build-gpu/bin/lemo_kernels_cuda_test --gtest_filter='*Wgmma*' 2>&1 | tee "$OUT/kernels_cuda_wgmma_test.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|error|Expected|Which is|max abs|tiles off" | head -40
[ "${PIPESTATUS[0]}" = 0 ] || TESTS_RC=1
echo "lemo_kernels_cuda_test: $([ "$TESTS_RC" = 0 ] && echo passed || echo FAILED)"
# Optional: compute-sanitizer memcheck over a few small cases (every kernel and block-scoring
# variants): LEMO_KERNEL_SANITIZE=1.
if [ "${LEMO_KERNEL_SANITIZE:-0}" = 1 ]; then
  compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/bin/lemo_kernels_cuda_test \
    --gtest_filter="${LEMO_KERNEL_SANITIZE_FILTER:-*Variant*:*Strided*:*AutogradReaches*}" \
    >"$OUT/memcheck.log" 2>&1
  echo "compute-sanitizer memcheck: exit $? (log: memcheck.log)"; tail -3 "$OUT/memcheck.log"
fi
build-gpu/bin/lemo-kernel-bench ${LEMO_KERNEL_BENCH_ARGS:-} 2>&1 | tee "$OUT/kernel_bench.md" | tail -40
[ -n "$PREP_PID" ] && wait "$PREP_PID"
if [ "$SECONDS" -gt "${LEMO_KERNEL_DEADLINE:-480}" ]; then
  echo "engine CUDA tests NOT RUN: ${SECONDS} s used (LEMO_KERNEL_DEADLINE=${LEMO_KERNEL_DEADLINE:-480})"
  exit "$TESTS_RC"
fi
cmake --build build-gpu -j 16 --target lemo_worker_engine_cuda_test >>"$OUT/build.log" 2>&1 ||
  { grep -m10 -B2 -A5 error "$OUT/build.log"; exit 1; }
build-gpu/bin/lemo_worker_engine_cuda_test >"$OUT/engine_cuda_test.log" 2>&1
rc=$?
tail -8 "$OUT/engine_cuda_test.log"
echo "lemo_worker_engine_cuda_test: exit $rc"
[ "$TESTS_RC" = 0 ] && [ "$rc" = 0 ]
