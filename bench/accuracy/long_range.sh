#!/usr/bin/env bash
# Issue 14's long-range task, two ways at once on one GPU, in back-to-back device calls on one
# warm machine (every call the same command, repo root, .device and .whl carried):
#   bash bench/accuracy/long_range.sh
# - "copy": the large model (16 layers, SentencePiece) with the span copy instead of the passkey
#   (ACC_LONG_TASK=copy) in its pretraining rows and its 8K fine-tunes;
# - "small": the 8-layer byte model with passkey rows and 256-token windows first
#   (ACC_SMALL_PASSKEY_ROWS, ACC_SMALL_WINDOW_WARMUP), the GPU's version of the CPU run that learned
#   the passkey at depth 8 (bench/results/2026-12-07-cpu-long-range/ p13), and its 8K passkey
#   fine-tunes.
# Each is bench/accuracy/study.sh with its own queue (/tmp/lemo-acc-copy, /tmp/lemo-acc-small) and
# its own $OUT folder; they share the GPU, so their seconds are not timings. The first call also
# builds and runs `ctest -L gpu` (the engine's and the kernels' CUDA tests) while they pretrain.
# Everything comes back in $OUT/long_range.tar.gz, with each study's summary.md beside it.
# Knobs: LR_STUDIES=copy,small (which to run), LR_CALL_SECONDS=560 (the call's budget, the build
# included), LR_COPY_MINUTES=6 and LR_SMALL_MINUTES=3.5 (pretraining budgets, over calls),
# LR_CTEST=1; study.sh's own knobs pass through to both (e.g. ACC_STEPS_8K=500
# ACC_PASSKEY_CONFIGS=dense-pi,lemo-pi,dense,lemo for longer fine-tunes with position interpolation).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
OUT=${OUT:-$PWD/acc-out}
mkdir -p "$OUT/copy" "$OUT/small" "$OUT/ctest"
source bench/device_env.sh
budget=${LR_CALL_SECONDS:-560}
targets=lemo-train
[ "${LR_CTEST:-1}" = 1 ] && [ ! -f /tmp/lemo-lr-ctest.done ] &&
  targets="lemo-train lemo_kernels_cuda_test lemo_worker_engine_cuda_test"
cmake -S . -B build-gpu -G Ninja -DLEMO_ENABLE_CUDA=ON -DLEMO_PYTHON=python3 \
  $LEMO_DEVICE_CMAKE_FLAGS -DCMAKE_BUILD_TYPE=Release >"$OUT/ctest/configure.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target $targets >"$OUT/ctest/build.log" 2>&1 ||
  { tail -n 30 "$OUT/ctest/build.log"; exit 1; }
echo "[long_range] built $targets by ${SECONDS}s"
left=$((budget - SECONDS))
studies=${LR_STUDIES:-copy,small}
copy_pid= small_pid=
if [[ ,$studies, == *,copy,* ]]; then
  ACC_WORK=/tmp/lemo-acc-copy OUT=$OUT/copy ACC_CALL_SECONDS=$left ACC_LONG_TASK=copy \
    ACC_BIG_MINUTES=${LR_COPY_MINUTES:-6} ACC_ONLY=passkey-data-big-8k,passkey-ft-big-8k \
    bash bench/accuracy/study.sh >"$OUT/copy.out" 2>&1 &
  copy_pid=$!
fi
if [[ ,$studies, == *,small,* ]]; then
  ACC_WORK=/tmp/lemo-acc-small OUT=$OUT/small ACC_CALL_SECONDS=$left ACC_SMALL_PASSKEY_ROWS=24 \
    ACC_SMALL_WINDOW_WARMUP=256:400 ACC_SMALL_MINUTES=${LR_SMALL_MINUTES:-3.5} \
    ACC_PRETRAIN_ARGS_SMALL="--eval-every 50" ACC_ONLY=passkey-data-small-8k,passkey-ft-small-8k \
    bash bench/accuracy/study.sh >"$OUT/small.out" 2>&1 &
  small_pid=$!
fi
ctest_rc=0
if [[ $targets == *cuda_test* ]]; then
  LEMO_PYTHON=python3 LEMO_SOURCE_DIR=$PWD LEMO_BIN_DIR=$PWD/build-gpu/bin \
    ctest --test-dir build-gpu -L gpu --output-on-failure --timeout 120 \
    --output-junit "$OUT/ctest/ctest-gpu.xml" >"$OUT/ctest/ctest-gpu.log" 2>&1
  ctest_rc=$?
  touch /tmp/lemo-lr-ctest.done
  tail -n 6 "$OUT/ctest/ctest-gpu.log"
  grep -E "Failed|\*\*\*" "$OUT/ctest/ctest-gpu.log" | head -20
fi
copy_rc=0 small_rc=0
[ -n "$copy_pid" ] && { wait "$copy_pid"; copy_rc=$?; }
[ -n "$small_pid" ] && { wait "$small_pid"; small_rc=$?; }
for s in copy small; do
  [ -f "$OUT/$s.out" ] || continue
  echo "== $s"; tail -n 4 "$OUT/$s.out"; tail -n 12 "$OUT/$s/summary.md" 2>/dev/null
done
echo "[long_range] copy exit $copy_rc, small exit $small_rc, ctest exit $ctest_rc, ${SECONDS}s"
tar -czf /tmp/long_range.tar.gz -C "$OUT" --ignore-failed-read copy small ctest copy.out small.out &&
  rm -rf "$OUT/ctest" "$OUT"/*/study.tar.gz "$OUT"/*.out && mv /tmp/long_range.tar.gz "$OUT/long_range.tar.gz"
exit $((copy_rc || small_rc || ctest_rc))
