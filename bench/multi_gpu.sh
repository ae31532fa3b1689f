#!/usr/bin/env bash
# Issues 20 and 21: data-parallel fine-tuning through the coordinator on one host, one lemo-worker
# per device, real processes end to end (lemo-coordinator, lemo-worker, lemoctl): LeMo with
# calibrated predictors, LoRA r=8 on q/k/v/o, one job at a time.
#   1 parity    W ranks of batch 1 against 1 rank of batch W (the same global batch, the same
#               data), every step's loss compared (bench/multi_gpu_report.py states the tolerance)
#   2 scaling   weak scaling: per length in SEQS, 1 rank and W ranks of batch 1 each (the same
#               per-device batch); efficiency = 1-rank step time / W-rank step time (medians of
#               the steps after the first)
#   3 fault     W ranks with a checkpoint every 2 steps; after the first checkpoint the last
#               rank's worker is killed with SIGKILL and started again (as a pod restarts): the gang
#               must restart from the checkpoint and end SUCCEEDED at exactly STEPS steps
#   4 contention gangs of W/2, W/4 and 1 ranks (W < 4: W, 1, 1) submitted at once, twice over: every
#               job must succeed (all-or-nothing placement, none starved, no deadlock); each job's
#               queue wait (start minus create time) is reported
# Each job's events (`lemoctl watch -o json`) land in $OUT/<run>.events.jsonl; then
# bench/multi_gpu_report.py writes $OUT/results.jsonl and $OUT/table.md, and meta.json names the
# commit, devices and command. Exit 1 when a job failed or a check missed.
#
# On the GPU machine (repo root, carry .device): bash bench/multi_gpu.sh   (W = every GPU; the
#   llama2-7b preset, bf16, gradient checkpointing, SEQS "16384 65536")
# Checked on CPUs with Gloo and the tiny preset, as the ctest bench_multi_gpu_cpu does:
#   LEMO_MG_DEVICE=cpu LEMO_MG_RANKS=2 LEMO_BIN_DIR=build/bin bash bench/multi_gpu.sh
# Knobs: LEMO_MG_RANKS (W), LEMO_MG_SEQS, LEMO_MG_STEPS, LEMO_MG_RUNS ("parity scaling fault
# contention").
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD
DEVICE=${LEMO_MG_DEVICE:-cuda}
OUT=${OUT:-bench-out/multi-gpu}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/lemo-mg.XXXXXX)
if [ "$DEVICE" = cuda ]; then
  source bench/device_env.sh
  RANKS=${LEMO_MG_RANKS:-$(nvidia-smi -L | wc -l)}
  PRESET=llama2-7b DTYPE=BF16 KIND=CUDA CKPT=true
  SEQS=${LEMO_MG_SEQS:-16384 65536} PARITY_SEQ=4096 STEPS=${LEMO_MG_STEPS:-6} CAL_STEPS=20
  FAULT_SEQ=4096 FAULT_STEPS=10 KEEP=
  BIN=$ROOT/build-gpu/bin
  if ! { cmake -S . -B build-gpu -G Ninja -DLEMO_ENABLE_CUDA=ON -DLEMO_PYTHON=python3 \
           $LEMO_DEVICE_CMAKE_FLAGS -DCMAKE_BUILD_TYPE=Release >"$OUT/configure.log" 2>&1 &&
         cmake --build build-gpu -j "$(nproc)" --target lemo-train lemo-coordinator lemo-worker \
           lemoctl >"$OUT/build.log" 2>&1; }; then
    echo "multi_gpu: build FAILED (see $OUT/build.log)" >&2
    exit 1
  fi
else
  RANKS=${LEMO_MG_RANKS:-2}
  PRESET=tiny DTYPE=FP32 KIND=CPU CKPT=false
  SEQS=${LEMO_MG_SEQS:-128} PARITY_SEQ=64 STEPS=${LEMO_MG_STEPS:-4} CAL_STEPS=3
  # long enough steps that the kill lands mid-job on a fast CPU
  FAULT_SEQ=1024 FAULT_STEPS=40
  # the tiny preset's 2 layers are both dense under the default schedule: make them sparse
  KEEP=0.5,0.5
  BIN=${LEMO_BIN_DIR:-$ROOT/build/bin}
fi
RUNS=${LEMO_MG_RUNS:-parity scaling fault contention}
PY=${LEMO_PYTHON:-python3}
DATA=$ROOT/bench/data/corpus.jsonl
pids=()
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

device_of() { [ "$KIND" = CUDA ] && echo "cuda:$1" || echo cpu; }
"$BIN/lemo-train" init-model --preset "$PRESET" --out "$WORK/model" >"$OUT/init-model.log" 2>&1 ||
  { echo "multi_gpu: init-model failed (see $OUT/init-model.log)" >&2; exit 1; }
"$BIN/lemo-train" calibrate --model "$WORK/model" --data "$DATA" --out "$WORK/predictors" \
  --device "$(device_of 0)" --seq-len "$PARITY_SEQ" --steps "$CAL_STEPS" ${KEEP:+--keep-ratios $KEEP} \
  >"$OUT/calibrate.log" 2>&1 ||
  { echo "multi_gpu: calibrate failed (see $OUT/calibrate.log)" >&2; exit 1; }

"$BIN/lemo-coordinator" --listen=127.0.0.1:0 --port_file="$WORK/coordinator.ports" \
  --data-dir="$WORK/coordinator" >"$OUT/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -s "$WORK/coordinator.ports" ] && break; sleep 0.1; done
PORT=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["grpc"])' "$WORK/coordinator.ports") ||
  { echo "multi_gpu: the coordinator did not start (see $OUT/coordinator.log)" >&2; exit 1; }
export LEMO_SERVER=127.0.0.1:$PORT
declare -A worker_pid
start_worker() {  # start_worker I: worker wI on device I
  "$BIN/lemo-worker" --coordinator "$LEMO_SERVER" --device "$(device_of "$1")" --worker-id "w$1" \
    --work-dir "$WORK/worker-$1" --model-root "$WORK" --data-root "$ROOT/bench/data" \
    >>"$OUT/worker-$1.log" 2>&1 &
  worker_pid[$1]=$!
  pids+=($!)
}
for ((i = 0; i < RANKS; i++)); do start_worker "$i"; done

KEEP_JSON=""
[ -n "$KEEP" ] && KEEP_JSON=", \"keepRatio\": {\"perLayer\": [$KEEP]}"
spec() {  # spec RANKS BATCH SEQ STEPS: a job spec (JSON) on stdout
  cat <<EOF
{"displayName": "multi-gpu", "model": {"path": "$WORK/model", "dtype": "$DTYPE",
  "gradientCheckpointing": $CKPT},
 "data": {"path": "$DATA", "format": "JSONL", "tokenizer": "byte"},
 "lora": {"r": 8, "alpha": 16, "targetModules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
 "lemo": {"mode": "PREDICTOR", "predictorPath": "$WORK/predictors", "lossSegmentTokens": 2048$KEEP_JSON},
 "optimizer": {"lr": 1e-3, "warmupSteps": 1},
 "seqLen": $3, "steps": $4, "batchSize": $2, "seed": 0,
 "resources": {"worldSize": $1, "deviceKind": "$KIND"},
 "checkpoint": {"everyNSteps": 2, "keepLast": 2}, "maxRestarts": 2}
EOF
}
failed=0
run() {  # run NAME RANKS BATCH SEQ STEPS [fault]: one job to its end, its events in NAME.events.jsonl
  local name=$1 ranks=$2 batch=$3 seq=$4 steps=$5 fault=${6:-}
  spec "$ranks" "$batch" "$seq" "$steps" >"$WORK/$name.json"
  local job
  job=$("$BIN/lemoctl" submit -q "$WORK/$name.json") || { echo "$name: submit failed" >&2; failed=1; return; }
  echo "$name: $job ($ranks ranks, batch $batch, $seq tokens, $steps steps)"
  "$BIN/lemoctl" watch "$job" -o json >"$OUT/$name.events.jsonl" 2>"$OUT/$name.watch.err" &
  local watcher=$!
  if [ -n "$fault" ]; then
    # The last rank's worker dies once the first checkpoint exists, and comes back.
    local victim=$((ranks - 1))
    for _ in $(seq 6000); do grep -q '"checkpoint"' "$OUT/$name.events.jsonl" && break; sleep 0.1; done
    kill -KILL "${worker_pid[$victim]}" 2>/dev/null
    wait "${worker_pid[$victim]}" 2>/dev/null
    echo "$name: killed worker w$victim (SIGKILL) after the first checkpoint; starting it again"
    start_worker "$victim"
  fi
  wait "$watcher" || { echo "$name: the job did not succeed (see $OUT/$name.events.jsonl)" >&2; failed=1; }
}
contention() {  # gangs of several sizes submitted at once, twice over: all must run, none starve
  local sizes ids=() names=() i=0
  if [ "$RANKS" -ge 4 ]; then sizes="$((RANKS / 2)) $((RANKS / 4)) 1"; else sizes="$RANKS 1 1"; fi
  for pass in 1 2; do
    for r in $sizes; do
      i=$((i + 1))
      spec "$r" 1 "$PARITY_SEQ" "$STEPS" >"$WORK/contention-$i.json"
      ids+=("$("$BIN/lemoctl" submit -q "$WORK/contention-$i.json")") || failed=1
      names+=("contention-$i-${r}ranks")
    done
  done
  echo "contention: ${#ids[@]} jobs of sizes $sizes (twice) submitted at once on $RANKS devices"
  for j in "${!ids[@]}"; do
    "$BIN/lemoctl" watch "${ids[j]}" -o json >"$OUT/${names[j]}.events.jsonl" 2>/dev/null || failed=1
    "$BIN/lemoctl" get "${ids[j]}" -o json >"$OUT/${names[j]}.job.json" || failed=1
  done
}
for r in $RUNS; do
  case $r in
    parity) run parity-1rank 1 "$RANKS" "$PARITY_SEQ" "$STEPS"
            run parity-${RANKS}ranks "$RANKS" 1 "$PARITY_SEQ" "$STEPS" ;;
    scaling) for s in $SEQS; do
               run scaling-$s-1rank 1 1 "$s" "$STEPS"
               run scaling-$s-${RANKS}ranks "$RANKS" 1 "$s" "$STEPS"
             done ;;
    fault) run fault-${RANKS}ranks "$RANKS" 1 "$FAULT_SEQ" "$FAULT_STEPS" fault ;;
    contention) contention ;;
    *) echo "multi_gpu: unknown run $r" >&2; exit 2 ;;
  esac
done
"$PY" - "$OUT/meta.json" "$RANKS" "$KIND" <<'EOF'
import json, subprocess, sys, datetime
def sh(*a):
    try: return subprocess.run(a, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError): return ""
gpus = sh("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader").splitlines()
json.dump({"git_commit": sh("git", "rev-parse", "HEAD"), "git_tree": sh("git", "write-tree"),
           "ranks": int(sys.argv[2]), "device_kind": sys.argv[3], "gpus": gpus,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": "bash bench/multi_gpu.sh"}, open(sys.argv[1], "w"), indent=1)
EOF
python3 bench/multi_gpu_report.py "$OUT" || failed=1
cat "$OUT/table.md"
exit $failed
