#!/usr/bin/env bash
# Regenerates this folder's planner outputs (repo root, a build with lemo-plan):
#   bash bench/results/2026-12-07-plan-schedule-bound/make.sh build/bin/lemo-plan
set -euo pipefail
PLAN=${1:?path to lemo-plan}
D=$(dirname "${BASH_SOURCE[0]}")
keep() { python3 -c "import sys; d, s, v = map(float, sys.argv[1:]); print(','.join(['1.0'] * int(d) + [str(v)] * int(s) + ['1.0']))" "$@"; }
for seq in 65536 262144; do
  base=(--preset llama2-7b --gpu h100-80gb --seq-len "$seq" --gradient-checkpointing --loss-segment-tokens 2048)
  # 64K: the fastest exact configuration measured (LeMo + selective: attention kept across the
  # recompute); 256K: attention re-run, as measured (keeping it does not fit there).
  [ "$seq" = 65536 ] && base+=(--checkpoint-keep-attention)
  name=$((seq / 1024))k
  "$PLAN" "${base[@]}" --lemo-mode dense >"$D/$name-dense.json"
  "$PLAN" "${base[@]}" --lemo-mode predictor >"$D/$name-default-schedule.json"
  # The default schedule's 16 sparse layers keeping almost nothing (0.02): the most token
  # elimination can give without making more layers sparse.
  "$PLAN" "${base[@]}" --lemo-mode predictor --lemo-keep-ratios "$(keep 15 16 0.02)" >"$D/$name-sparse-layers-keep-0.02.json"
  # Layers 2-30 sparse at keep 0.4 (an accuracy-changing schedule, not measured for accuracy).
  "$PLAN" "${base[@]}" --lemo-mode predictor --lemo-keep-ratios "$(keep 2 29 0.4)" >"$D/$name-layers-2-30-keep-0.4.json"
done
