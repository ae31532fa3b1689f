#!/usr/bin/env bash
# On the GPU machine: builds lemo-train with CUDA and shows that the NCCL path works on one GPU
# (issue 16: "the NCCL path builds and a world-size-1 NCCL job runs"). Fine-tunes the tiny preset
# for 3 steps on cuda:0 twice: with --force-process-group (an NCCL group of one rank, through
# which the LoRA gradients and the loss are all-reduced and rank 0's weights broadcast) and
# without (no group). Prints both runs' losses and writes $OUT/nccl_check.md; exits 1 if the
# NCCL run failed. Device run (repo root, carry .device):  bash bench/gpu_nccl_check.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
source bench/device_env.sh
OUT=${OUT:-bench-out}
WORK=/tmp/lemo-nccl-check
mkdir -p "$OUT" "$WORK"
cmake -S . -B build-gpu -G Ninja -DLEMO_ENABLE_CUDA=ON -DLEMO_PYTHON=python3 \
  $LEMO_DEVICE_CMAKE_FLAGS -DCMAKE_BUILD_TYPE=Release >"$OUT/configure.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target lemo-train >"$OUT/build.log" 2>&1 ||
  { echo "build FAILED"; grep -m 5 -E "error|Error" "$OUT/build.log" "$OUT/configure.log"; exit 1; }
echo "nccl.h: $(grep LEMO_NCCL_INCLUDE_DIR build-gpu/CMakeCache.txt | head -n 1)"
T=build-gpu/bin/lemo-train
$T init-model --preset tiny --out "$WORK/tiny" >"$OUT/init.log" 2>&1 || { echo "init-model failed"; exit 1; }
python3 bench/random_tokens.py "$WORK/d.u16" 20000 --vocab 250 --seed 0
rc=0
for mode in nccl none; do
  flag=; [ $mode = nccl ] && flag=--force-process-group
  rm -rf "$WORK/ckpt-$mode"
  NCCL_DEBUG=INFO $T finetune --model "$WORK/tiny" --data "$WORK/d.u16" --seq-len 512 --steps 3 \
    --out "$WORK/ckpt-$mode" --device cuda:0 --dtype fp32 $flag \
    --metrics-jsonl "$OUT/$mode.jsonl" >"$OUT/$mode.log" 2>&1 || { rc=1; echo "$mode run FAILED"; }
done
{
  echo "| run | losses | NCCL lines in the log |"
  echo "|---|---|---|"
  for mode in nccl none; do
    echo "| $mode | $(python3 -c "import json,sys; print(', '.join(repr(json.loads(l)['loss']) for l in open(sys.argv[1])))" "$OUT/$mode.jsonl" 2>/dev/null) | $(grep -c 'NCCL INFO' "$OUT/$mode.log") |"
  done
  grep -m 1 "NCCL version" "$OUT/nccl.log"
} | tee "$OUT/nccl_check.md"
exit $rc
