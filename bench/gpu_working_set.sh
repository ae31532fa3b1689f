#!/usr/bin/env bash
# Measures one layer's backward working set on the GPU (what the offload plan must reserve beside
# the checkpoints it keeps there), with attention whole and in head groups: LeMo (oracle, the
# default schedule), gradient checkpointing, every checkpointed input offloaded (so nothing else
# grows with the layer count), token tiles of 16384, 2 steps. Prints, per setting, the largest
# backward_peak_bytes over the layers in GiB and in layer inputs (N x hidden x 2 bytes), the
# dense and the sparse layers' largest apart, the step time and the peak; writes
# $OUT/working_set.md. Run after bench/gpu_suite.sh has built lemo-train and written the model.
#
#   LEMO_WS_SEQ=65536 LEMO_WS_GROUPS="1 4" bash bench/gpu_working_set.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
LEMO_TRAIN=${LEMO_TRAIN:-build-gpu/bin/lemo-train}
MODEL_DIR=${LEMO_BENCH_MODEL_DIR:-/tmp/llama2-7b}
SEQ=${LEMO_WS_SEQ:-65536}
GROUPS_LIST=${LEMO_WS_GROUPS:-1 4}
OUT=${OUT:-bench-out}
WORK=/tmp/lemo-working-set
PY=${LEMO_PYTHON:-python3}
mkdir -p "$OUT/logs" "$WORK"
DATA=$WORK/tokens-$SEQ.u16
"$PY" bench/random_tokens.py "$DATA" $((SEQ * 3)) || exit 2
rc=0
for g in $GROUPS_LIST; do
  name=ws-$SEQ-groups$g
  rm -rf "$WORK/ckpt"
  "$LEMO_TRAIN" finetune --model "$MODEL_DIR" --data "$DATA" --seq-len "$SEQ" --steps 2 \
    --out "$WORK/ckpt" --device cuda:0 --dtype bf16 --batch-size 1 --lora-r 8 --lora-alpha 16 \
    --gradient-checkpointing --lemo-mode oracle --loss-segment-tokens 2048 --tile-tokens 16384 \
    --offload uniform --offload-gpu-budget-gib 0 --attention-head-groups "$g" \
    --metrics-jsonl "$OUT/logs/$name.jsonl" >"$OUT/logs/$name.log" 2>&1 ||
    { rc=1; echo "lemo-train $name failed: $(tail -n 3 "$OUT/logs/$name.log")" >&2; }
done
"$PY" - "$OUT" "$SEQ" $GROUPS_LIST <<'PYEOF' | tee "$OUT/working_set.md"
import json, os, sys
out, seq, groups = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
input_bytes = seq * 4096 * 2  # llama2-7b hidden size, bf16
print(f"| head groups | largest layer backward GiB | in layer inputs | dense layers | sparse layers | step 2 s | peak GiB |")
print("|---|---|---|---|---|---|---|")
for g in groups:
    path = os.path.join(out, "logs", f"ws-{seq}-groups{g}.jsonl")
    rows = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    if not rows or "backward_peak_bytes" not in rows[-1]:
        print(f"| {g} | failed | | | | | |")
        continue
    m = rows[-1]
    peaks, kept = m["backward_peak_bytes"], m["kept_token_fraction"]
    dense = [p for p, k in zip(peaks, kept) if k >= 0.999]
    sparse = [p for p, k in zip(peaks, kept) if k < 0.999]
    gib = lambda b: f"{b / 2**30:.2f}"
    ins = lambda b: f"{b / input_bytes:.1f}"
    print(f"| {g} | {gib(max(peaks))} | {ins(max(peaks))} | {ins(max(dense)) if dense else '-'} | "
          f"{ins(max(sparse)) if sparse else '-'} | {m.get('step_time_seconds', 0):.2f} | "
          f"{gib(m.get('peak_allocated_bytes', 0))} |")
print()
print("Where the step's memory goes (GiB allocated; weights are what is live before layer 0):")
for g in groups:
    path = os.path.join(out, "logs", f"ws-{seq}-groups{g}.jsonl")
    rows = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    if not rows or "allocated_after_forward_bytes" not in rows[-1]:
        continue
    m = rows[-1]
    after = [b / 2**30 for b in m["allocated_after_forward_bytes"]]
    print(f"- groups {g}: after each layer's forward {[round(a, 2) for a in after]}; "
          f"forward+loss peak {m['forward_peak_allocated_bytes'] / 2**30:.2f}, live after "
          f"forward {m['after_forward_allocated_bytes'] / 2**30:.2f}, step peak "
          f"{m['peak_allocated_bytes'] / 2**30:.2f}, host {m.get('offload_host_bytes', 0) / 2**30:.2f}")
PYEOF
exit $rc
