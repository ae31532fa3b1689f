#!/usr/bin/env bash
# The accuracy study of docs/accuracy.md, in one device call (repo root, .device carried):
#   bash bench/accuracy/run.sh
# 1. pretrain a small Llama from scratch on four of the six Austen novels (bench/accuracy/pretrain.py),
#    at seq 1024, stopping early on unseen text; a fifth book is for fine-tuning, the sixth held out;
# 2. calibrate LeMo's pattern predictors on it (lemo-train calibrate);
# 3. fine-tune LoRA on long sequences three ways, same data, steps and seed: dense, LeMo oracle,
#    LeMo predictor;
# 4. evaluate every adapter (and the base model) on the held-out book under DENSE evaluation
#    (lemo-train eval), and print the table (bench/accuracy/summary.py).
# Knobs (env): ACC_MINUTES=3 (pretraining budget)  ACC_SEQ=8192 (fine-tune/eval seq_len)
#   ACC_STEPS=200 (fine-tune steps)  ACC_CAL_STEPS=300  ACC_LR=1e-3  ACC_BUILD=1  OUT=./acc-out
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
source .device/env.sh || { echo "accuracy: .device/env.sh missing (carry .device)" >&2; exit 2; }
OUT=${OUT:-$PWD/acc-out}
W=/tmp/lemo-acc
MIN=${ACC_MINUTES:-3} SEQ=${ACC_SEQ:-8192} STEPS=${ACC_STEPS:-200} CAL=${ACC_CAL_STEPS:-300}
LR=${ACC_LR:-1e-3}
TRAIN=${LEMO_TRAIN:-$PWD/build-gpu/bin/lemo-train}
mkdir -p "$OUT/logs" "$W"
say() { printf '[accuracy %4ds] %s\n' "$SECONDS" "$*" >&2; }

if [ "${ACC_BUILD:-1}" = 1 ]; then
  cmake -S . -B build-gpu -G Ninja -DLEMO_ENABLE_CUDA=ON -DLEMO_PYTHON=python3 \
    $LEMO_DEVICE_CMAKE_FLAGS -DCMAKE_BUILD_TYPE=Release >"$OUT/logs/configure.log" 2>&1 &&
    cmake --build build-gpu -j "$(nproc)" --target lemo-train >"$OUT/logs/build.log" 2>&1 ||
    { tail -n 30 "$OUT/logs/build.log"; exit 1; }
  say "built lemo-train"
fi
COMMON=(--device cuda:0 --dtype bf16 --tokenizer byte)

if [ ! -f "$W/model/config.json" ]; then
  python3 bench/accuracy/pretrain.py --out "$W" --minutes "$MIN" >"$OUT/logs/pretrain.log" 2>&1 ||
    { tail -n 20 "$OUT/logs/pretrain.log"; exit 1; }
fi
cp "$W/pretrain.json" "$OUT/"
say "pretrained: $(tail -n 1 "$OUT/logs/pretrain.log" 2>/dev/null | cut -c1-200)"

"$TRAIN" calibrate --model "$W/model" --data "$W/finetune.jsonl" --out "$W/predictors" "${COMMON[@]}" \
  --seq-len "$SEQ" --steps "$CAL" --report-json "$OUT/calibrate.json" >"$OUT/logs/calibrate.log" 2>&1 ||
  say "calibrate FAILED (logs/calibrate.log): the predictor run will fail too"
say "calibrated predictors"

for mode in dense oracle predictor; do
  extra=(--lemo-mode "$mode")
  [ "$mode" = predictor ] && extra+=(--lemo-predictors "$W/predictors" --predictor-recall-every 25)
  rm -rf "$W/ft-$mode"
  "$TRAIN" finetune --model "$W/model" --data "$W/finetune.jsonl" --out "$W/ft-$mode" "${COMMON[@]}" \
    --seq-len "$SEQ" --steps "$STEPS" --lr "$LR" --warmup-steps 20 --seed 0 "${extra[@]}" \
    --metrics-jsonl "$OUT/finetune-$mode.jsonl" >"$OUT/logs/finetune-$mode.log" 2>&1 ||
    say "finetune $mode FAILED (logs/finetune-$mode.log)"
  say "fine-tuned $mode"
done

"$TRAIN" eval --model "$W/model" --data "$W/heldout.jsonl" "${COMMON[@]}" --seq-len "$SEQ" \
  >"$OUT/eval-base.json" 2>"$OUT/logs/eval-base.log" || say "eval base FAILED"
for mode in dense oracle predictor; do
  adapter=$(ls -d "$W/ft-$mode"/checkpoint-* 2>/dev/null | tail -n 1)
  [ -n "$adapter" ] || { say "no checkpoint from the $mode fine-tune"; continue; }
  "$TRAIN" eval --model "$W/model" --adapter "$adapter" --data "$W/heldout.jsonl" "${COMMON[@]}" \
    --seq-len "$SEQ" >"$OUT/eval-$mode.json" 2>"$OUT/logs/eval-$mode.log" || say "eval $mode FAILED"
done
python3 bench/accuracy/summary.py "$OUT" | tee "$OUT/accuracy.md"
