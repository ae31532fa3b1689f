#!/usr/bin/env bash
# Issue 14's shares and issue 19's grid on one GPU: the dense engine and LeMo with the SAME exact
# switches, side by side in one suite run, 2 warm-up + 5 timed steps per row (128K: 1 + 5, so
# that both rows fit one 10-minute call), in phases that each fit a device call (run them back
# to back on one warm machine; the build and the model dir are reused):
#   1  build, write the llama2-7b preset, the device's rates (bench/device_rates.py), then
#      without checkpointing: 4K, 8K, 16K; then 8K again with --recompute-mlp for both systems
#   2  with checkpointing (offload, tiles and head groups automatic): 64K, then 4K, 8K, 16K, 32K
#      (as many as the call's deadline allows)
#   3  with checkpointing: 128K
# and, for the peer columns (issue 14's Done-when 1, issue 15's 8K and 64K targets), LeMo beside HF
# transformers + PEFT (HF's own loss) and the strong peer (+ Liger Kernel's fused loss), peers with
# 2 warm-up + 5 timed steps too:
#   4  build, preset; without checkpointing 8K: dense, LeMo, LeMo + selective (--recompute-mlp),
#      peer, strong peer; with checkpointing 32K: LeMo, LeMo + selective, peer, strong peer
#   5  with checkpointing 64K: LeMo + selective (--checkpoint-keep-attention) and the strong peer,
#      then LeMo and the plain peer
#   6  the accuracy-changing savers, on the dense engine and with LeMo: --mlp-prune-ratio 0.8
#      --recompute-norm without checkpointing at 8K and 32K (with lemo-kernel-bench first: block
#      scoring 4K-32K), 2D sparsity with checkpointing at 32K and 64K; then a second process for
#      the 64K headline ratio (LeMo + selective, strong peer) and dense + selective at 64K
#   7  64K with checkpointing in predictor mode (a short calibration first): LeMo + selective,
#      LeMo and the strong peer
#   8  256K with checkpointing, one step per row: LeMo in predictor mode and the strong peer
#   9  the attention kernel at 64K with checkpointing (oracle mode): LeMo + selective and the
#      strong peer with flash attention first (--attention-kernel flash, hf_peer.py --sdpa-kernel
#      flash), then both with torch's own order (cuDNN first on the H100 and H200 with torch 2.11:
#      bench/results/2026-12-07-h100-attention-kernel/), so each system's gain from cuDNN is
#      measured in one run. Run it warm (after another phase on the same machine: the build and
#      the model are reused)
# Phases 1-6 run LeMo in oracle mode (no calibration); every lemo-train run has
# --loss-segment-tokens 2048. Each suite run lands in $OUT/<phase>-<part>.tar.gz with its
# table beside it.
#
# Device run (repo root, carry .device):  bash bench/device_grid.sh 1
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PHASE=${1:?phase 1-9}
source bench/device_env.sh
FINAL_OUT=${OUT:-bench-out}
mkdir -p "$FINAL_OUT"
export LEMO_BENCH_SYSTEMS=${LEMO_GRID_SYSTEMS:-lemo lemo-sparse} LEMO_BENCH_CTEST=0 LEMO_BENCH_KERNELS=0
export LEMO_BENCH_CALIBRATE=0 LEMO_BENCH_STEPS=7 LEMO_BENCH_WARMUP=2 LEMO_BENCH_TIMEOUT=300
START=$SECONDS
rc=0
# The call's limit (s): a session with less device time left than a full call gets a shorter one,
# and every suite's deadline stays 30 s inside it, so each still tars its results into $OUT.
CALL_S=${LEMO_GRID_CALL_S:-600}
# suite PART DEADLINE_S [env assignments...]: one gpu_suite run into its own folder.
suite() {
  local part=$1 deadline=$2
  shift 2
  [ "$deadline" -gt $((CALL_S - 30)) ] && deadline=$((CALL_S - 30))
  local out=/tmp/lemo-grid-$PHASE-$part
  rm -rf "$out"
  env OUT="$out" LEMO_BENCH_DEADLINE=$((deadline - (SECONDS - START))) "$@" bash bench/gpu_suite.sh || rc=1
  tar -czf "$FINAL_OUT/$PHASE-$part.tar.gz" -C "$out" . 2>/dev/null
  cp "$out/table.md" "$FINAL_OUT/$PHASE-$part-table.md" 2>/dev/null
}
case $PHASE in
  1) suite no-ckpt 330 LEMO_BENCH_MODES=off LEMO_BENCH_SEQS="4096 8192 16384"
     python3 bench/device_rates.py --out "$FINAL_OUT/rates.json" >/dev/null || rc=1
     suite no-ckpt-recompute-mlp 560 LEMO_BENCH_MODES=off LEMO_BENCH_SEQS=8192 LEMO_BENCH_BUILD=0 \
       LEMO_TRAIN=build-gpu/bin/lemo-train LEMO_BENCH_LEMO_ARGS="--loss-segment-tokens 2048 --recompute-mlp" ;;
  2) suite ckpt-64k 330 LEMO_BENCH_MODES=on LEMO_BENCH_SEQS=65536
     suite ckpt-short 570 LEMO_BENCH_MODES=on LEMO_BENCH_SEQS="4096 8192 16384 32768" LEMO_BENCH_BUILD=0 \
       LEMO_TRAIN=build-gpu/bin/lemo-train ;;
  3) suite ckpt-128k 575 LEMO_BENCH_MODES=on LEMO_BENCH_SEQS=131072 LEMO_BENCH_STEPS=6 LEMO_BENCH_WARMUP=1 \
       LEMO_BENCH_TIMEOUT=400 ;;
  4) export LEMO_BENCH_PEER_WARMUP=2
     suite peers-8k 330 LEMO_BENCH_MODES=off LEMO_BENCH_SEQS=8192 \
       LEMO_BENCH_SYSTEMS="lemo lemo-sparse lemo-selective peer peer-strong"
     suite peers-32k 570 LEMO_BENCH_MODES=on LEMO_BENCH_SEQS=32768 LEMO_BENCH_BUILD=0 \
       LEMO_TRAIN=build-gpu/bin/lemo-train LEMO_BENCH_SYSTEMS="lemo-sparse lemo-selective peer peer-strong" ;;
  5) export LEMO_BENCH_PEER_WARMUP=2
     # the headline pair first (our fastest exact configuration and the strong peer), so that a
     # call cut short still has it; then LeMo and the plain peer
     suite peers-64k-strong 300 LEMO_BENCH_MODES=on LEMO_BENCH_SEQS=65536 \
       LEMO_BENCH_SYSTEMS="lemo-selective peer-strong"
     suite peers-64k-plain 575 LEMO_BENCH_MODES=on LEMO_BENCH_SEQS=65536 LEMO_BENCH_BUILD=0 \
       LEMO_TRAIN=build-gpu/bin/lemo-train LEMO_BENCH_SYSTEMS="lemo-sparse peer" ;;
  6) export LEMO_BENCH_PEER_WARMUP=2
     # the accuracy-changing savers (docs/lemo.md), with block scoring's rate against this run's
     # matmul (lemo-kernel-bench, 4K-32K, before the rows)
     suite savers-no-ckpt 270 LEMO_BENCH_MODES=off LEMO_BENCH_SEQS="8192 32768" LEMO_BENCH_SYSTEMS="dense-savers lemo-savers" \
       LEMO_BENCH_KERNELS=1 LEMO_BENCH_KERNEL_ARGS=
     suite 2d-ckpt 400 LEMO_BENCH_MODES=on LEMO_BENCH_SEQS="32768 65536" LEMO_BENCH_SYSTEMS="dense-2d lemo-2d" \
       LEMO_BENCH_BUILD=0 LEMO_TRAIN=build-gpu/bin/lemo-train
     # a second process for the 64K headline ratio, and the dense engine with the same switches
     suite repeat-64k 575 LEMO_BENCH_MODES=on LEMO_BENCH_SEQS=65536 \
       LEMO_BENCH_SYSTEMS="lemo-selective peer-strong dense-selective" \
       LEMO_BENCH_BUILD=0 LEMO_TRAIN=build-gpu/bin/lemo-train ;;
  7) export LEMO_BENCH_PEER_WARMUP=2
     # the 64K headline in predictor mode (a short calibration first, ~15 s), after the
     # checkpoint re-run stopped re-scoring the tokens; a second process of the strong peer
     suite predictor-64k 575 LEMO_BENCH_MODES=on LEMO_BENCH_SEQS=65536 LEMO_BENCH_CALIBRATE=1 \
       LEMO_BENCH_SYSTEMS="lemo-selective lemo-sparse peer-strong" ;;
  8) # 256K, one step per row (a step is 2-3 minutes): LeMo in predictor mode and the strong peer
     # (offloaded checkpointing), for issue 15's 0.55x target after the re-scoring fix
     suite predictor-256k 575 LEMO_BENCH_MODES=on LEMO_BENCH_SEQS=262144 LEMO_BENCH_CALIBRATE=1 \
       LEMO_BENCH_STEPS=1 LEMO_BENCH_WARMUP=0 LEMO_BENCH_PEER_WARMUP=0 LEMO_BENCH_TIMEOUT=400 \
       LEMO_BENCH_SYSTEMS="lemo-sparse peer-strong" ;;
  9) export LEMO_BENCH_PEER_WARMUP=2
     # Alone, cuDNN's attention takes 0.53-0.60x flash's time on the H100, and torch 2.11 already
     # puts it first there; this measures what it gives each whole step. Same mode, same process
     # order, so that each pair differs only in the kernel.
     suite kernel-flash-64k 330 LEMO_BENCH_MODES=on LEMO_BENCH_SEQS=65536 \
       LEMO_BENCH_SYSTEMS="lemo-selective peer-strong" \
       LEMO_BENCH_SELECTIVE_ARGS="--recompute-mlp --checkpoint-keep-attention --attention-kernel flash" \
       LEMO_BENCH_STRONG_ARGS="--sdpa-kernel flash"
     suite kernel-auto-64k 575 LEMO_BENCH_MODES=on LEMO_BENCH_SEQS=65536 LEMO_BENCH_BUILD=0 \
       LEMO_TRAIN=build-gpu/bin/lemo-train LEMO_BENCH_SYSTEMS="lemo-selective peer-strong" ;;
  *) echo "phase must be 1-9" >&2; exit 2 ;;
esac
cat "$FINAL_OUT"/"$PHASE"-*-table.md 2>/dev/null | grep -E '^\|' | tail -n 20
[ -f "$FINAL_OUT/rates.json" ] && cat "$FINAL_OUT/rates.json"
exit $rc
