#!/usr/bin/env bash
# The accuracy study of docs/accuracy.md, in one device call (repo root, .device carried):
#   bash bench/accuracy/run.sh
# 1. pretrain a small Llama from scratch on four of the six Austen novels (bench/accuracy/pretrain.py),
#    at seq 1024, stopping early on unseen text; a fifth book is for fine-tuning, the sixth held out;
# 2. calibrate LeMo's pattern predictors on it (lemo-train calibrate);
# 3. fine-tune LoRA on long sequences three ways, same data, steps and seed: dense, LeMo oracle,
#    LeMo predictor (ACC_SET=sweep adds the variants listed at the end, and passkey retrieval:
#    bench/accuracy/passkey.py);
# 4. evaluate every adapter (and the base model) on the held-out book under DENSE evaluation
#    (lemo-train eval), and print the table (bench/accuracy/summary.py).
# Knobs (env): ACC_MINUTES=3 (pretraining budget)  ACC_SEQ=8192 (fine-tune/eval seq_len)
#   ACC_STEPS=200 (fine-tune steps)  ACC_CAL_STEPS=300  ACC_LR=1e-3  ACC_BUILD=1  OUT=./acc-out
#   ACC_SET=main|sweep (sweep adds keep 0.5, the MLP savers, S2-Attn if built, ACC_LONG_STEPS=600-step
#   runs and passkey retrieval; 2d: the main runs plus S2-Attn with and without LeMo, and
#   ACC_LONG_STEPS=500-step dense / LeMo / LeMo + S2-Attn runs; 2d-pi: the same with linear position
#   interpolation to ACC_SEQ, LongLoRA's setting)  ACC_DEVICE=cuda:0 ACC_DTYPE=bf16 (lemo-train)  ACC_PY_DEVICE=cuda (python)
#   ACC_PRETRAIN_ARGS (extra pretrain.py flags)  ACC_EVAL_ARGS (extra eval flags)  ACC_WORK=/tmp/lemo-acc
# CPU smoke (no GPU, seconds): ACC_BUILD=0 LEMO_TRAIN=build/bin/lemo-train ACC_DEVICE=cpu ACC_DTYPE=fp32
#   ACC_PY_DEVICE=cpu ACC_SEQ=256 ACC_STEPS=4 ACC_CAL_STEPS=4 ACC_LONG_STEPS=6 ACC_SET=sweep ACC_MINUTES=0.05 ACC_EVAL_ARGS="--batches 4"
#   ACC_PRETRAIN_ARGS="--seq-len 128 --batch 2 --hidden 64 --eval-tokens 4096 --val-tokens 4096" PATH=$LEMO_VENV/bin:$PATH
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
if [ "${ACC_BUILD:-1}" = 1 ]; then
  source .device/env.sh || { echo "accuracy: .device/env.sh missing (carry .device)" >&2; exit 2; }
fi
PYDEV=${ACC_PY_DEVICE:-cuda}
OUT=${OUT:-$PWD/acc-out}
W=${ACC_WORK:-/tmp/lemo-acc}
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
COMMON=(--device "${ACC_DEVICE:-cuda:0}" --dtype "${ACC_DTYPE:-bf16}" --tokenizer byte)

if [ ! -f "$W/model/config.json" ]; then
  python3 bench/accuracy/pretrain.py --out "$W" --minutes "$MIN" --device "$PYDEV" ${ACC_PRETRAIN_ARGS:-} >"$OUT/logs/pretrain.log" 2>&1 ||
    { tail -n 20 "$OUT/logs/pretrain.log"; exit 1; }
fi
cp "$W/pretrain.json" "$OUT/"
say "pretrained: $(tail -n 1 "$OUT/logs/pretrain.log" 2>/dev/null | cut -c1-200)"

"$TRAIN" calibrate --model "$W/model" --data "$W/finetune.jsonl" --out "$W/predictors" "${COMMON[@]}" \
  --seq-len "$SEQ" --steps "$CAL" --report-json "$OUT/calibrate.json" >"$OUT/logs/calibrate.log" 2>&1 ||
  say "calibrate FAILED (logs/calibrate.log): the predictor run will fail too"
say "calibrated predictors"

# One fine-tune + its evaluation. Appends "name steps data baseline description" to runs.tsv, which
# summary.py turns into the table; each run is compared with its baseline (a dense run of the same
# data and steps).
run() {
  local name=$1 steps=$2 data=$3 baseline=$4 desc=$5
  shift 5
  rm -rf "$W/ft-$name"
  "$TRAIN" finetune --model "${RUN_MODEL:-$W/model}" --data "$W/$data.jsonl" --out "$W/ft-$name" "${COMMON[@]}" \
    --seq-len "$SEQ" --steps "$steps" --lr "$LR" --warmup-steps 20 --seed 0 "$@" \
    --metrics-jsonl "$OUT/finetune-$name.jsonl" >"$OUT/logs/finetune-$name.log" 2>&1 ||
    { say "finetune $name FAILED (logs/finetune-$name.log)"; return; }
  local adapter
  adapter=$(ls -d "$W/ft-$name"/checkpoint-* 2>/dev/null | tail -n 1)
  [ -n "$adapter" ] || { say "no checkpoint from the $name fine-tune"; return; }
  if [ "$data" = passkey-train ]; then
    python3 bench/accuracy/passkey.py eval --model "$W/model" --adapter "$adapter" --device "$PYDEV" \
      --data "$W/passkey-test.jsonl" --json "$OUT/eval-$name.json" >"$OUT/logs/eval-$name.log" 2>&1
  else
    "$TRAIN" eval --model "${RUN_MODEL:-$W/model}" --adapter "$adapter" --data "$W/heldout.jsonl" "${COMMON[@]}" \
      --seq-len "$SEQ" ${ACC_EVAL_ARGS:-} >"$OUT/eval-$name.json" 2>"$OUT/logs/eval-$name.log"
  fi || say "eval $name FAILED (logs/eval-$name.log)"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$steps" "$data" "$baseline" "$desc" >>"$OUT/runs.tsv"
  say "fine-tuned and evaluated $name"
}
PRED=(--lemo-mode predictor --lemo-predictors "$W/predictors" --predictor-recall-every 25)
# The default schedule scaled to 8 layers is 1,1,1,1,0.4,0.4,0.4,1; K50 keeps half instead.
K50=(--lemo-keep-ratios 1,1,1,1,0.5,0.5,0.5,1)
MLP=(--mlp-prune-ratio 0.8 --recompute-norm)
: >"$OUT/runs.tsv"
"$TRAIN" eval --model "$W/model" --data "$W/heldout.jsonl" "${COMMON[@]}" --seq-len "$SEQ" ${ACC_EVAL_ARGS:-} \
  >"$OUT/eval-base.json" 2>"$OUT/logs/eval-base.log" || say "eval base FAILED"
run dense "$STEPS" finetune - "dense LoRA" --lemo-mode dense
run oracle "$STEPS" finetune dense "LeMo, oracle selection" --lemo-mode oracle
run predictor "$STEPS" finetune dense "LeMo, calibrated predictors" "${PRED[@]}"
if [ "${ACC_SET:-main}" = sweep ]; then
  LONG=${ACC_LONG_STEPS:-600}
  run oracle-k50 "$STEPS" finetune dense "LeMo oracle, keep 0.5" --lemo-mode oracle "${K50[@]}"
  run predictor-k50 "$STEPS" finetune dense "LeMo predictors, keep 0.5" "${PRED[@]}" "${K50[@]}"
  run dense-mlp "$STEPS" finetune dense "dense + MLP channel-sparse backward 0.8 + norm recompute" \
    --lemo-mode dense "${MLP[@]}"
  run predictor-mlp "$STEPS" finetune dense "LeMo predictors + MLP 0.8 + norm recompute" \
    "${PRED[@]}" "${MLP[@]}"
  if "$TRAIN" finetune --help 2>&1 | grep -q -- --lemo-2d; then
    run dense-2d "$STEPS" finetune dense "dense + shifted group attention (S2-Attn)" --lemo-mode dense --lemo-2d
    run predictor-2d "$STEPS" finetune dense "LeMo predictors + S2-Attn (2D sparsity)" "${PRED[@]}" --lemo-2d
  fi
  run "dense-$LONG" "$LONG" finetune - "dense LoRA, $LONG steps" --lemo-mode dense
  run "predictor-$LONG" "$LONG" finetune "dense-$LONG" "LeMo predictors, $LONG steps" "${PRED[@]}"
  run "predictor-k50-$LONG" "$LONG" finetune "dense-$LONG" "LeMo predictors, keep 0.5, $LONG steps" \
    "${PRED[@]}" "${K50[@]}"
  # Passkey retrieval: filler from the fine-tune book for training, from the held-out book for testing.
  python3 bench/accuracy/passkey.py make --filler "$W/finetune.jsonl" --out "$W/passkey-train.jsonl" \
    --samples $((STEPS + 50)) --seq-len "$SEQ" --seed 1 >/dev/null &&
    python3 bench/accuracy/passkey.py make --filler "$W/heldout.jsonl" --out "$W/passkey-test.jsonl" \
      --samples 200 --seq-len "$SEQ" --seed 2 >/dev/null || say "passkey data FAILED"
  python3 bench/accuracy/passkey.py eval --model "$W/model" --data "$W/passkey-test.jsonl" --device "$PYDEV" \
    --json "$OUT/eval-passkey-base.json" >"$OUT/logs/eval-passkey-base.log" 2>&1 || say "passkey base eval FAILED"
  run passkey-dense "$STEPS" passkey-train - "passkey: dense LoRA" --lemo-mode dense
  run passkey-predictor "$STEPS" passkey-train passkey-dense "passkey: LeMo predictors" "${PRED[@]}"
elif [ "${ACC_SET:-main}" = 2d-pi ]; then
  # LongLoRA's setting: the context is extended with linear position interpolation (factor
  # SEQ / pretraining length), so full attention at evaluation sees relative distances that the
  # base model knows; S2-Attn's groups alone never show the fine-tune the long ones.
  python3 - "$W/model" "$W/model-pi" "$SEQ" "$W/pretrain.json" <<'PY' || say "model-pi FAILED"
import json, os, sys
src, dst, seq = sys.argv[1], sys.argv[2], int(sys.argv[3])
pretrain_seq = json.load(open(sys.argv[4]))["seq_len"]
os.makedirs(dst, exist_ok=True)
config = json.load(open(os.path.join(src, "config.json")))
config["rope_scaling"] = {"rope_type": "linear", "factor": seq / pretrain_seq}
json.dump(config, open(os.path.join(dst, "config.json"), "w"), indent=1)
for name in os.listdir(src):
    if name != "config.json" and not os.path.exists(os.path.join(dst, name)):
        os.symlink(os.path.join(src, name), os.path.join(dst, name))
PY
  "$TRAIN" calibrate --model "$W/model-pi" --data "$W/finetune.jsonl" --out "$W/predictors-pi" "${COMMON[@]}" \
    --seq-len "$SEQ" --steps "$CAL" >"$OUT/logs/calibrate-pi.log" 2>&1 || say "calibrate-pi FAILED"
  PRED_PI=(--lemo-mode predictor --lemo-predictors "$W/predictors-pi" --predictor-recall-every 25)
  LONG=${ACC_LONG_STEPS:-500}
  export RUN_MODEL=$W/model-pi
  run dense-pi "$STEPS" finetune - "position interpolation: dense LoRA" --lemo-mode dense
  run predictor-pi "$STEPS" finetune dense-pi "position interpolation: LeMo predictors" "${PRED_PI[@]}"
  run dense-2d-pi "$STEPS" finetune dense-pi "position interpolation: dense + S2-Attn" --lemo-mode dense --lemo-2d
  run predictor-2d-pi "$STEPS" finetune dense-pi "position interpolation: LeMo predictors + S2-Attn" \
    "${PRED_PI[@]}" --lemo-2d
  run "dense-pi-$LONG" "$LONG" finetune - "position interpolation: dense LoRA, $LONG steps" --lemo-mode dense
  run "predictor-2d-pi-$LONG" "$LONG" finetune "dense-pi-$LONG" \
    "position interpolation: LeMo predictors + S2-Attn, $LONG steps" "${PRED_PI[@]}" --lemo-2d
  unset RUN_MODEL
elif [ "${ACC_SET:-main}" = 2d ]; then
  LONG=${ACC_LONG_STEPS:-500}
  run dense-2d "$STEPS" finetune dense "dense + shifted group attention (S2-Attn)" --lemo-mode dense --lemo-2d
  run predictor-2d "$STEPS" finetune dense "LeMo predictors + S2-Attn (2D sparsity)" "${PRED[@]}" --lemo-2d
  run "dense-$LONG" "$LONG" finetune - "dense LoRA, $LONG steps" --lemo-mode dense
  run "predictor-$LONG" "$LONG" finetune "dense-$LONG" "LeMo predictors, $LONG steps" "${PRED[@]}"
  run "predictor-2d-$LONG" "$LONG" finetune "dense-$LONG" "LeMo predictors + S2-Attn, $LONG steps" \
    "${PRED[@]}" --lemo-2d
fi
python3 bench/accuracy/summary.py "$OUT" | tee "$OUT/accuracy.md"
