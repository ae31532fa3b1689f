#!/usr/bin/env bash
# The long-context rows of issue 15 on one GPU, in phases that each fit a 10-minute device call
# (run them back to back on the same warm machine; the build and the model dir are reused):
#   1  build, write the llama2-7b preset, LeMo (oracle, checkpointing, offload auto) at 256K,
#      then bench/gpu_working_set.sh at 64K (one layer's backward, attention whole and in groups)
#   2  LeMo at 384K
#   3  the strong peer (HF+PEFT+Liger, auto checkpointing) at 256K and 384K
#   4  bench/gpu_offload_check.sh (offload exact on the GPU, at 16K)
#   5  build, write the preset, LeMo at 256K and 384K (80 GB GPU) or 384K and 512K (H200)
#   0  build, write the preset, a 4K LeMo row, then bench/gpu_working_set.sh at 64K (where a
#      step's memory goes: per layer after its forward, the forward's peak, the backward's)
#   6  build the CUDA tests and run `ctest -L gpu` (with a 4K LeMo row, which the suite needs)
# Environment: LEMO_PHASE_SEQS (phases 3 and 5: the lengths), LEMO_PHASE_DEADLINE (phase 5),
# LEMO_PHASE_TIMEOUT (one row's limit, default 480 s), LEMO_PHASE_STEPS (steps per row, default 1),
# LEMO_PHASE_SPARSE_ARGS (the LeMo rows' flags, e.g. "--lemo-mode oracle --attention-head-groups
# 1"), LEMO_PHASE_TAG (names the outputs phase-N-TAG.*, so two runs of one phase in one call keep
# both).
# One step per row (a step takes minutes): the peer times its first step too
# (LEMO_BENCH_PEER_WARMUP=0). Each LeMo row's metrics (logs/*.metrics.jsonl) carry every layer's
# measured backward working set (backward_peak_bytes); working-sets.txt sums them up. Everything
# lands in $OUT/phase-N.tar.gz, with the table and the raw results.jsonl beside it.
#
# Device run (repo root, carry .device and .whl):  bash bench/device_long_context.sh 1
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PHASE=${1:?phase 0-6}
# The build environment, with gloo, PCRE2 and ICU (bench/device_env.sh).
source bench/device_env.sh
FINAL_OUT=${OUT:-bench-out}
NAME=phase-$PHASE${LEMO_PHASE_TAG:+-$LEMO_PHASE_TAG}
export OUT=/tmp/lemo-$NAME
rm -rf "$OUT"; mkdir -p "$OUT" "$FINAL_OUT"
export LEMO_BENCH_MODES=on LEMO_BENCH_STEPS=${LEMO_PHASE_STEPS:-1} LEMO_BENCH_PEER_WARMUP=0 LEMO_BENCH_CTEST=0
# LEMO_PHASE_TIMEOUT (s per row, default 480): a 512K step on an H200 takes about 500 s.
export LEMO_BENCH_KERNELS=0 LEMO_BENCH_CALIBRATE=0 LEMO_BENCH_TIMEOUT=${LEMO_PHASE_TIMEOUT:-480}
[ -n "${LEMO_PHASE_SPARSE_ARGS:-}" ] && export LEMO_BENCH_SPARSE_ARGS=$LEMO_PHASE_SPARSE_ARGS
rc=0
case $PHASE in
  1) LEMO_BENCH_SYSTEMS=lemo-sparse LEMO_BENCH_SEQS=262144 LEMO_BENCH_DEADLINE=400 \
       bash bench/gpu_suite.sh || rc=1
     LEMO_WS_SEQ=65536 bash bench/gpu_working_set.sh || rc=1 ;;
  5) # The longest contexts the GPU should take: 256K and 384K on an 80 GB card, 384K and 512K
     # on a larger one (H200).
     seqs="262144 393216"
     mem=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -n1)
     [ "${mem:-0}" -gt 100000 ] && seqs="393216 524288"
     seqs=${LEMO_PHASE_SEQS:-$seqs}
     LEMO_BENCH_SYSTEMS=lemo-sparse LEMO_BENCH_SEQS="$seqs" LEMO_BENCH_DEADLINE=${LEMO_PHASE_DEADLINE:-570} \
       bash bench/gpu_suite.sh || rc=1 ;;
  0) LEMO_BENCH_SYSTEMS=lemo-sparse LEMO_BENCH_SEQS=4096 LEMO_BENCH_DEADLINE=300 \
       bash bench/gpu_suite.sh || rc=1
     LEMO_WS_SEQ=65536 bash bench/gpu_working_set.sh || rc=1 ;;
  2) LEMO_BENCH_SYSTEMS=lemo-sparse LEMO_BENCH_SEQS=393216 LEMO_BENCH_DEADLINE=570 \
       bash bench/gpu_suite.sh || rc=1 ;;
  3) LEMO_BENCH_SYSTEMS=peer-strong LEMO_BENCH_SEQS=${LEMO_PHASE_SEQS:-"262144 393216"} \
       LEMO_BENCH_PEER_ONEPROC=0 \
       LEMO_BENCH_DEADLINE=570 bash bench/gpu_suite.sh || rc=1 ;;
  4) LEMO_CHECK_SEQ=16384 bash bench/gpu_offload_check.sh || rc=1 ;;
  6) LEMO_BENCH_CTEST=1 LEMO_BENCH_SYSTEMS=lemo-sparse LEMO_BENCH_SEQS=4096 \
       LEMO_BENCH_DEADLINE=570 bash bench/gpu_suite.sh || rc=1 ;;
  *) echo "phase must be 0-6" >&2; exit 2 ;;
esac
# Each layer's backward working set (the offload plan's reserve), from the metrics.
python3 - "$OUT"/logs/*.metrics.jsonl >"$OUT/working-sets.txt" 2>&1 <<'PY' || true
import json, sys
for path in sys.argv[1:]:
    for line in open(path):
        m = json.loads(line)
        peaks = m.get("backward_peak_bytes")
        if not peaks:
            continue
        gib = [round(p / 2**30, 2) for p in peaks]
        print(f"{path.split('/')[-1]} step {m.get('step')}: max {max(gib)} GiB "
              f"(layer {gib.index(max(gib))}); per layer {gib}")
PY
free -g >"$OUT/logs/free.txt" 2>&1
tar -czf "$FINAL_OUT/$NAME.tar.gz" -C "$OUT" . 2>/dev/null
for f in results.jsonl table.md notes.txt offload_check.md working-sets.txt working_set.md ctest-gpu.json; do
  [ -f "$OUT/$f" ] && cp "$OUT/$f" "$FINAL_OUT/$NAME-$f"
done
cat "$OUT/table.md" "$OUT/offload_check.md" "$OUT/working_set.md" 2>/dev/null | tail -n 30
cat "$OUT/working-sets.txt" 2>/dev/null
exit $rc
