#!/usr/bin/env bash
# The one benchmark command for the GPU machine: builds with CUDA, runs `ctest -L gpu`, measures
# the bf16 matmul rate, then fine-tunes the llama2-7b preset with lemo-train (dense, and with LeMo
# token elimination) and with the HF transformers + PEFT peers (bench/hf_peer.py: plain, and the
# strong peer with Liger Kernel and GPU or offloaded checkpointing) at each seq_len, with and
# without gradient checkpointing, and prints the table (bench/report.py) last. OOM, a timeout or a
# failed build is a recorded result.
#
# Device run (repo root, carry .device and .whl):   bash bench/gpu_suite.sh
# CPU smoke (tiny preset, seq 128, no build, uses ./build/bin/lemo-train if it exists):
#   LEMO_BENCH_DEVICE=cpu bash bench/gpu_suite.sh
#
# Results in $OUT (default ./bench-out): results.jsonl, table.md, meta.json, notes.txt, logs/.
# The table is rewritten after every setting, so a run cut short still leaves one.
# Knobs (env):
#   LEMO_BENCH_SEQS="4096 ... 262144" (doubling; each system and mode stops at its first OOM)
#   LEMO_BENCH_MODES="off on" (gradient checkpointing)
#   LEMO_BENCH_SYSTEMS="lemo lemo-sparse lemo-selective peer peer-strong"  LEMO_BENCH_STEPS=6 (lemo
#     steps: LEMO_BENCH_WARMUP=1 warm-up + the rest timed; peers: PEER_WARMUP + the rest timed. Every timed step is kept in
#     results.jsonl; the table shows their median and min-max)
#     systems: lemo (dense engine), lemo-sparse (LeMo, flags from LEMO_BENCH_SPARSE_ARGS),
#     lemo-selective (lemo-sparse + LEMO_BENCH_SELECTIVE_ARGS, default "--recompute-mlp
#     --checkpoint-keep-attention": exact selective recompute, each flag used in its own mode),
#     lemo-savers (lemo-sparse + LEMO_BENCH_SAVERS_ARGS, default "--mlp-prune-ratio 0.8
#     --recompute-norm": LEMO.md section 3's other savers), lemo-2d (lemo-sparse + --lemo-2d:
#     shifted group attention over the kept tokens, LEMO.md section 5), dense-selective,
#     dense-savers, dense-2d (the dense engine with the same extra flags as lemo-selective,
#     lemo-savers, lemo-2d: each switch's share without token elimination), peer (HF + PEFT),
#     peer-strong (HF + PEFT + Liger Kernel from the carried .whl/liger_kernel-*.whl; mode off: no
#     checkpointing, mode on: --checkpointing auto, per seq GPU checkpointing if it fits, else
#     offloaded checkpointing; GPU only; no wheel: a note, and its settings recorded as skipped)
#   LEMO_BENCH_STRONG_ARGS="" (extra hf_peer.py flags for peer-strong, e.g. --auto-try-both)
#   LEMO_BENCH_CALIBRATE=1 (GPU; 0 on the CPU): first run `lemo-train calibrate` on the benchmark
#     model (LEMO_BENCH_CALIBRATE_ARGS, default a short fit); the LeMo systems then use those
#     predictors ("LeMo (predictor)"); 0: the oracle ("LeMo (oracle)"); a failed calibration: the
#     oracle, each LeMo row saying so in results.jsonl (lemo_mode oracle, calibration failed) and
#     the table, and the suite exits 1
#   LEMO_BENCH_SPARSE_ARGS (every LeMo system's finetune flags; default: predictor or oracle mode,
#     as above)
#   LEMO_BENCH_TIMEOUT=300 (s per run)
#   LEMO_BENCH_DEADLINE=0 (s after start: no run goes past it; 0 = none. On the 10-minute device
#     calls use ~30 s under the call's limit, e.g. 570)
#   LEMO_BENCH_PEER_WARMUP=1 (untimed peer steps; 0 with STEPS=1 times one first step, as lemo-train's
#                             single step is: the long-context rows)
#   LEMO_BENCH_PEER_ONEPROC=1 (one process per peer and mode for all seqs, saves ~10 s of setup per seq;
#                              0: a fresh process per setting)
#   LEMO_BENCH_SKIP_AFTER_OOM=1 (a seq longer than one that ran out of memory, same system and
#                                mode, is recorded as skipped instead of run)
#   LEMO_BENCH_BUILD=1 (0: use $LEMO_TRAIN)   LEMO_BENCH_CTEST=1 (build the test binaries and run
#     ctest -L gpu, every CUDA test: its exit code goes to notes.txt and ctest-gpu.json, and a
#     failure makes the suite exit 1)
#   LEMO_BENCH_KERNELS=1 (GPU: lemo-kernel-bench ${LEMO_BENCH_KERNEL_ARGS}, e.g. --quick, into
#     kernel_bench.md; 0: skip)
#   LEMO_BENCH_PRESET=llama2-7b               LEMO_BENCH_MODEL_DIR=/tmp/llama2-7b
#   LEMO_BENCH_LEMO_ARGS="--loss-segment-tokens 2048" (GPU; "" on the CPU: every lemo-train run's
#     extra finetune flags; set it to "" for HF's unsegmented loss)
#   LEMO_TRAIN=build-gpu/bin/lemo-train       LEMO_PYTHON=python3 (torch, transformers, peft)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD

DEVICE_KIND=${LEMO_BENCH_DEVICE:-cuda}
if [ "$DEVICE_KIND" = cpu ]; then
  DEV=cpu DTYPE=fp32
  PRESET=${LEMO_BENCH_PRESET:-tiny}
  SEQS=${LEMO_BENCH_SEQS:-128}
  BUILD=${LEMO_BENCH_BUILD:-0} CTEST=${LEMO_BENCH_CTEST:-0}
  LEMO_TRAIN=${LEMO_TRAIN:-$ROOT/build/bin/lemo-train}
  if [ -z "${LEMO_PYTHON:-}" ]; then  # the project's venv, as the CPU tests use
    source scripts/common.sh
    LEMO_PYTHON=$LEMO_VENV/bin/python
  fi
else
  source .device/env.sh || { echo "gpu_suite: .device/env.sh missing (carry .device)" >&2; exit 2; }
  DEV=cuda:0 DTYPE=bf16
  PRESET=${LEMO_BENCH_PRESET:-llama2-7b}
  SEQS=${LEMO_BENCH_SEQS:-4096 8192 16384 32768 65536 131072 262144}
  BUILD=${LEMO_BENCH_BUILD:-1} CTEST=${LEMO_BENCH_CTEST:-1}
  LEMO_TRAIN=${LEMO_TRAIN:-$ROOT/build-gpu/bin/lemo-train}
fi
PY=${LEMO_PYTHON:-python3}
# The allocator setting lemo-train picks for itself when none is set (worker/engine/
# allocator_config.h), exported so that the peer runs with the same one: same-settings ratios.
if [ -z "${PYTORCH_ALLOC_CONF+x}" ] && [ -z "${PYTORCH_CUDA_ALLOC_CONF+x}" ]; then
  export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
fi
for seq in $SEQS; do
  [[ $seq =~ ^[0-9]+$ ]] || { echo "gpu_suite: LEMO_BENCH_SEQS must hold integers, got '$seq'" >&2; exit 2; }
done
# shellcheck disable=SC2086  # word lists, on purpose
SORTED_SEQS=$(printf '%s\n' $SEQS | sort -n | tr '\n' ' ' | sed 's/ $//')  # ascending, for OOM skipping
[ -n "$SORTED_SEQS" ] || { echo "gpu_suite: LEMO_BENCH_SEQS is empty" >&2; exit 2; }
MODES=${LEMO_BENCH_MODES:-off on}
DEFAULT_SYSTEMS="lemo lemo-sparse lemo-selective peer peer-strong" CALIBRATE=${LEMO_BENCH_CALIBRATE:-1}
[ "$DEVICE_KIND" = cpu ] && DEFAULT_SYSTEMS="lemo peer" CALIBRATE=${LEMO_BENCH_CALIBRATE:-0}
SYSTEMS=${LEMO_BENCH_SYSTEMS:-$DEFAULT_SYSTEMS}
# 1 warm-up + 5 timed steps: a median and a spread, not the best of 2.
STEPS=${LEMO_BENCH_STEPS:-6}
# Leading lemo-train steps left out of the step time (issue 14's spread rows use 2 of 7).
WARMUP=${LEMO_BENCH_WARMUP:-1}
if ! [[ $WARMUP =~ ^[0-9]+$ ]] || [ "$WARMUP" -ge "$STEPS" ]; then
  echo "gpu_suite: LEMO_BENCH_WARMUP must be an integer < LEMO_BENCH_STEPS, got '$WARMUP'" >&2
  exit 2
fi
TIMEOUT=${LEMO_BENCH_TIMEOUT:-300}
# Every lemo-train run's extra flags. GPU default: the loss in 2048-token segments (LEMO.md
# section 3; exact, it only never holds all N x vocab logits at once).
LEMO_ARGS=${LEMO_BENCH_LEMO_ARGS---loss-segment-tokens 2048}
[ "$DEVICE_KIND" = cpu ] && LEMO_ARGS=${LEMO_BENCH_LEMO_ARGS:-}
PEER_ONEPROC=${LEMO_BENCH_PEER_ONEPROC:-1}
# Untimed peer steps before its STEPS - PEER_WARMUP timed ones. 0 with STEPS=1 times the first
# step, as a single lemo-train step is (the long-context rows, where a step takes minutes).
PEER_WARMUP=${LEMO_BENCH_PEER_WARMUP:-1}
[ "$PEER_WARMUP" -lt "$STEPS" ] || { echo "gpu_suite: LEMO_BENCH_PEER_WARMUP must be < LEMO_BENCH_STEPS" >&2; exit 2; }
SKIP_AFTER_OOM=${LEMO_BENCH_SKIP_AFTER_OOM:-1}
DEADLINE=${LEMO_BENCH_DEADLINE:-0}
MODEL_DIR=${LEMO_BENCH_MODEL_DIR:-/tmp/lemo-bench/$PRESET}
[ "$PRESET" = llama2-7b ] && MODEL_DIR=${LEMO_BENCH_MODEL_DIR:-/tmp/llama2-7b}
OUT=${OUT:-$ROOT/bench-out}
WORK=/tmp/lemo-bench
mkdir -p "$OUT/logs" "$WORK"
RESULTS=$OUT/results.jsonl NOTES=$OUT/notes.txt
: >"$RESULTS"; : >"$NOTES"
FAILED=0

say() { printf '[gpu_suite %4ds] %s\n' "$SECONDS" "$*" >&2; }
note() { say "$*"; echo "$*" >>"$NOTES"; }
report() {
  "$PY" bench/report.py "$RESULTS" --meta "$OUT/meta.json" --notes "$NOTES" --out "$OUT/table.md" >/dev/null
}
# Seconds a run of N settings (default 1) may take: N per-run timeouts, capped by what is left
# before the deadline (0 once under 20 s are left: too little for a run).
budget() {
  local left=$((DEADLINE - SECONDS - 15)) cap=$((TIMEOUT * ${1:-1}))
  [ "$DEADLINE" = 0 ] && { echo "$cap"; return; }
  if [ "$left" -lt 20 ]; then echo 0; else echo $((left < cap ? left : cap)); fi
}

CMD="PYTORCH_CUDA_ALLOC_CONF='${PYTORCH_CUDA_ALLOC_CONF:-}' LEMO_BENCH_DEVICE=$DEVICE_KIND LEMO_BENCH_SEQS='$SEQS' LEMO_BENCH_MODES='$MODES' LEMO_BENCH_SYSTEMS='$SYSTEMS'"
CMD+=" LEMO_BENCH_STEPS=$STEPS LEMO_BENCH_WARMUP=$WARMUP LEMO_BENCH_PEER_WARMUP=$PEER_WARMUP LEMO_BENCH_PEER_ONEPROC=$PEER_ONEPROC"
CMD+=" LEMO_BENCH_LEMO_ARGS='$LEMO_ARGS'"
CMD+=" LEMO_BENCH_SPARSE_ARGS='${LEMO_BENCH_SPARSE_ARGS:-}' LEMO_BENCH_CALIBRATE=$CALIBRATE"
CMD+=" LEMO_BENCH_SAVERS_ARGS='${LEMO_BENCH_SAVERS_ARGS:-}' LEMO_BENCH_STRONG_ARGS='${LEMO_BENCH_STRONG_ARGS:-}'"
CMD+=" bash bench/gpu_suite.sh"
META_CONFIG=bench/configs/$PRESET.json
[ -f "$META_CONFIG" ] || META_CONFIG=
MATMUL=()
[ "$DEVICE_KIND" = cuda ] && MATMUL=(--matmul-rate)
"$PY" bench/report.py --write-meta "$OUT/meta.json" --command "$CMD" --device "$DEV" \
  ${META_CONFIG:+--config "$META_CONFIG"} "${MATMUL[@]}" >"$OUT/logs/meta.log" 2>&1 ||
  note "could not write meta.json (see logs/meta.log)"
command -v nvidia-smi >/dev/null && nvidia-smi >"$OUT/logs/nvidia-smi.txt" 2>&1
say "device $DEV, preset $PRESET, seqs [$SEQS], modes [$MODES], systems [$SYSTEMS], out $OUT"

# --- build and GPU tests ---------------------------------------------------------------------
BUILD_OK=1
if [ "$BUILD" = 1 ]; then
  gen=(-G Ninja)
  command -v ninja >/dev/null || { gen=(); note "ninja not found: default CMake generator"; }
  t0=$SECONDS
  # shellcheck disable=SC2086  # LEMO_DEVICE_CMAKE_FLAGS is a list of flags
  if cmake -S . -B build-gpu "${gen[@]}" -DLEMO_ENABLE_CUDA=ON -DLEMO_PYTHON=python3 \
      ${LEMO_DEVICE_CMAKE_FLAGS:-} -DCMAKE_BUILD_TYPE=Release >"$OUT/logs/configure.log" 2>&1 &&
     cmake --build build-gpu -j "$(nproc)" --target lemo-train >"$OUT/logs/build.log" 2>&1; then
    note "build (CUDA, Release, lemo-train): ok in $((SECONDS - t0)) s"
  else
    note "build of lemo-train FAILED after $((SECONDS - t0)) s: see logs/configure.log, logs/build.log"
    tail -n 30 "$OUT/logs/build.log" "$OUT/logs/configure.log" 2>/dev/null >&2
    FAILED=1 BUILD_OK=0
  fi
fi
HAVE_LEMO=0
[ -x "$LEMO_TRAIN" ] && HAVE_LEMO=1
[ "$HAVE_LEMO" = 0 ] && note "lemo-train not found at $LEMO_TRAIN: lemo runs are skipped"

# The model dir is written in the background while the tests build (both are CPU-bound, but the
# writer is mostly disk and the build mostly compiles).
INIT_PID=
if [ "$HAVE_LEMO" = 1 ] && [ ! -f "$MODEL_DIR/config.json" ]; then
  say "writing the $PRESET preset to $MODEL_DIR (background)"
  ( t0=$SECONDS; "$LEMO_TRAIN" init-model --preset "$PRESET" --dtype "$DTYPE" --out "$MODEL_DIR" \
      >"$OUT/logs/init-model.log" 2>&1; rc=$?; echo "$rc $((SECONDS - t0))" >"$WORK/init-model.rc" ) &
  INIT_PID=$!
fi

if [ "$CTEST" = 1 ] && [ "$BUILD_OK" = 1 ] && [ -d build-gpu ]; then
  t0=$SECONDS
  # Every CUDA test is labelled gpu: the kernels' (lemo_kernels_cuda_test) and the engine's
  # (lemo_worker_engine_cuda_test). They fail without a CUDA device, so a pass means they ran.
  # The service's tests need no GPU and stay out of this build.
  targets="lemo_kernels_cuda_test lemo_worker_engine_cuda_test"
  # shellcheck disable=SC2086  # a list of targets
  if cmake --build build-gpu -j "$(nproc)" --target $targets >"$OUT/logs/build-all.log" 2>&1; then
    export LEMO_PYTHON=$PY LEMO_SOURCE_DIR=$ROOT LEMO_BIN_DIR=$ROOT/build-gpu/bin
    n=$(ctest --test-dir build-gpu -N -L gpu 2>/dev/null | sed -n 's/^Total Tests: //p')
    timeout 300 ctest --test-dir build-gpu -L gpu --output-on-failure --timeout 120 \
      >"$OUT/logs/ctest-gpu.log" 2>&1
    rc=$?
    summary=$(grep -E 'tests passed|tests failed' "$OUT/logs/ctest-gpu.log" | tail -n 1)
    if [ "${n:-0}" = 0 ]; then
      note "ctest -L gpu FAILED: no GPU tests registered (logs/ctest-gpu.log)"
      FAILED=1
    elif [ "$rc" = 0 ]; then
      note "ctest -L gpu: ${summary:-exit 0} ($((SECONDS - t0)) s with the build)"
    else
      note "ctest -L gpu FAILED (exit $rc${summary:+: $summary}) (logs/ctest-gpu.log)"
      grep -E '^ *[0-9]+ - .*\(Failed|Timeout|Not Run\)' "$OUT/logs/ctest-gpu.log" | head -n 10 >&2
      FAILED=1
    fi
    "$PY" -c 'import json, sys
json.dump({"rc": int(sys.argv[1]), "registered": int(sys.argv[2] or 0), "summary": sys.argv[3]},
          open(sys.argv[4], "w"))' "$rc" "${n:-0}" "$summary" "$OUT/ctest-gpu.json"
  else
    note "build of the GPU test targets FAILED: logs/build-all.log (benchmark goes on)"
    FAILED=1
  fi
fi

# Kernel microbenchmarks against their roofline (lemo-kernel-bench, bench/kernels/), while the
# model is still being written: kernel_bench.md, printed after the table.
KERNELS=${LEMO_BENCH_KERNELS:-1}
[ "$DEVICE_KIND" = cpu ] && KERNELS=0
if [ "$KERNELS" = 1 ] && [ "$BUILD_OK" = 1 ] && [ -d build-gpu ]; then
  t0=$SECONDS
  # shellcheck disable=SC2086  # LEMO_BENCH_KERNEL_ARGS is a list of flags
  if cmake --build build-gpu -j "$(nproc)" --target lemo-kernel-bench >"$OUT/logs/build-kernel-bench.log" 2>&1 &&
     timeout -k 10 "$(budget)" build-gpu/bin/lemo-kernel-bench ${LEMO_BENCH_KERNEL_ARGS:-} \
       >"$OUT/kernel_bench.md" 2>"$OUT/logs/kernel-bench.log"; then
    note "lemo-kernel-bench ${LEMO_BENCH_KERNEL_ARGS:-}: ok in $((SECONDS - t0)) s (kernel_bench.md)"
  else
    note "lemo-kernel-bench FAILED after $((SECONDS - t0)) s: logs/build-kernel-bench.log, logs/kernel-bench.log"
    FAILED=1
  fi
fi

if [ -n "$INIT_PID" ]; then
  wait "$INIT_PID"
  read -r rc secs <"$WORK/init-model.rc"
  if [ "$rc" = 0 ]; then
    note "init-model $PRESET ($DTYPE): ok in $secs s"
  else
    note "init-model $PRESET FAILED (rc $rc): logs/init-model.log; lemo runs are skipped"
    HAVE_LEMO=0 FAILED=1
  fi
fi

# --- data and the peer's config ---------------------------------------------------------------
CONFIG=$MODEL_DIR/config.json
[ -f "$CONFIG" ] || CONFIG=bench/configs/$PRESET.json
PEER_SRC=(--preset-config "$CONFIG")
[ -f "$MODEL_DIR/config.json" ] && PEER_SRC=(--model-dir "$MODEL_DIR")
MAX_SEQ=${SORTED_SEQS##* }
DATA=$WORK/tokens-$PRESET-$MAX_SEQ.u16
# Random uint16 token ids in [3, vocab): enough for every step at the largest seq_len, twice over.
VOCAB=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$CONFIG")
"$PY" bench/random_tokens.py "$DATA" $((MAX_SEQ * (STEPS + 1) * 2)) --vocab "${VOCAB:-32000}" --seed 0 ||
  { note "could not write $DATA"; HAVE_LEMO=0; FAILED=1; }
report

# --- LeMo predictors (optional) ---------------------------------------------------------------
SPARSE_ARGS=${LEMO_BENCH_SPARSE_ARGS:-"--lemo-mode oracle"}
# Every LeMo row records this (record_result.py --calibration), and the table names the mode each
# row ran in: a failed calibration is never a row labelled predictor.
CALIBRATION=not-run
if [ "$CALIBRATE" = 1 ] && [ "$HAVE_LEMO" = 1 ] && [[ " $SYSTEMS " =~ " lemo-"(sparse|selective|savers|2d)" " ]]; then
  t0=$SECONDS
  PRED_DIR=$WORK/predictors-$PRESET
  CAL_SEQ=${SORTED_SEQS%% *}
  [ "$CAL_SEQ" -gt 4096 ] && CAL_SEQ=4096
  CAL_ARGS=${LEMO_BENCH_CALIBRATE_ARGS:---seq-len $CAL_SEQ --steps 20 --heldout-samples 1}
  # shellcheck disable=SC2086
  if [ -f "$PRED_DIR/predictor_config.json" ] || timeout -k 10 "$(budget)" "$LEMO_TRAIN" calibrate \
      --model "$MODEL_DIR" --data "$DATA" --out "$PRED_DIR" --device "$DEV" --dtype "$DTYPE" \
      $CAL_ARGS >"$OUT/logs/calibrate.log" 2>&1; then
    note "calibrate ($CAL_ARGS): ok in $((SECONDS - t0)) s"
    SPARSE_ARGS=${LEMO_BENCH_SPARSE_ARGS:-"--lemo-mode predictor --lemo-predictors $PRED_DIR"}
    CALIBRATION=ok
  else
    note "calibrate FAILED after $((SECONDS - t0)) s (logs/calibrate.log): the LeMo rows run the oracle and say so (mode oracle, calibration failed); the suite exits 1"
    CALIBRATION=failed
    FAILED=1
  fi
fi
SAVERS_ARGS=${LEMO_BENCH_SAVERS_ARGS:-"--mlp-prune-ratio 0.8 --recompute-norm"}
SELECTIVE_ARGS=${LEMO_BENCH_SELECTIVE_ARGS:-"--recompute-mlp --checkpoint-keep-attention"}
[[ " $SYSTEMS " =~ " lemo-"(sparse|selective|savers|2d)" " ]] && note "LeMo flags: $SPARSE_ARGS"
[[ " $SYSTEMS " =~ " "(lemo|dense)"-savers " ]] && note "lemo-savers and dense-savers add: $SAVERS_ARGS"
[[ " $SYSTEMS " =~ " "(lemo|dense)"-selective " ]] && note "lemo-selective and dense-selective add: $SELECTIVE_ARGS"

# --- the benchmark -----------------------------------------------------------------------------
declare -A OOM_AT  # "system mode" -> shortest seq that ran out of memory
skip() {  # system seq mode why
  "$PY" bench/record_result.py --system "$1" --seq-len "$2" --mode "$3" --status skipped --error "$4" \
    --out "$RESULTS" >/dev/null
}
oom_skip() {  # system seq mode: true (and recorded) when a shorter seq already ran out of memory
  local at=${OOM_AT["$1 $3"]:-}
  [ "$SKIP_AFTER_OOM" = 1 ] && [ -n "$at" ] && [ "$2" -gt "$at" ] || return 1
  skip "$1" "$2" "$3" "OOM at $at; longer seq_lens not run"
}

run_lemo() {  # system seq mode flag
  local sys=$1 seq=$2 mode=$3 flag=$4 name=$1-$2-$3 t rc extra=
  case $sys in
    lemo-sparse) extra=$SPARSE_ARGS ;;
    lemo-selective) extra="$SPARSE_ARGS $SELECTIVE_ARGS" ;;
    lemo-savers) extra="$SPARSE_ARGS $SAVERS_ARGS" ;;
    lemo-2d) extra="$SPARSE_ARGS --lemo-2d" ;;
    dense-selective) extra=$SELECTIVE_ARGS ;;
    dense-savers) extra=$SAVERS_ARGS ;;
    dense-2d) extra=--lemo-2d ;;
  esac
  [ "$HAVE_LEMO" = 0 ] && { skip "$sys" "$seq" "$mode" "lemo-train unavailable (see notes)"; return; }
  oom_skip "$sys" "$seq" "$mode" && return
  t=$(budget)
  [ "$t" = 0 ] && { skip "$sys" "$seq" "$mode" "deadline reached"; return; }
  rm -rf "$WORK/ckpt-$name" "$OUT/logs/$name.metrics.jsonl"
  # shellcheck disable=SC2086  # $flag and LEMO_BENCH_LEMO_ARGS are word lists
  timeout -k 10 "$t" "$LEMO_TRAIN" finetune --model "$MODEL_DIR" --data "$DATA" --seq-len "$seq" \
    --steps "$STEPS" --out "$WORK/ckpt-$name" --device "$DEV" --dtype "$DTYPE" --batch-size 1 \
    --lr 2e-4 --lora-r 8 --lora-alpha 16 --metrics-jsonl "$OUT/logs/$name.metrics.jsonl" \
    $flag $LEMO_ARGS $extra >"$OUT/logs/$name.log" 2>&1
  rc=$?
  local lemo_mode=() last= w
  if [[ $sys == lemo-* ]]; then  # the mode the flags give (the last --lemo-mode among them)
    for w in $extra; do [ "$last" = --lemo-mode ] && lemo_mode=(--lemo-mode "$w" --calibration "$CALIBRATION"); last=$w; done
  fi
  "$PY" bench/record_result.py --system "$sys" --seq-len "$seq" --mode "$mode" --rc "$rc" \
    --metrics "$OUT/logs/$name.metrics.jsonl" --log "$OUT/logs/$name.log" "${lemo_mode[@]}" --warmup "$WARMUP" \
    --out "$RESULTS" >/dev/null
  rm -rf "$WORK/ckpt-$name"
}

# The strong peer needs liger-kernel, which the GPU machine's image lacks: the wheel travels in the
# ignored .whl/ folder (docs/benchmarks.md) and is installed into a private folder on PYTHONPATH.
STRONG_SKIP=
if [[ " $SYSTEMS " == *" peer-strong "* ]]; then
  WHEEL=
  for w in .whl/liger_kernel-*.whl; do [ -f "$w" ] && WHEEL=$w; done  # the last in glob order
  if [ "$DEVICE_KIND" = cpu ]; then
    STRONG_SKIP="Liger Kernel needs CUDA (CPU run)"
  elif [ -z "$WHEEL" ]; then
    STRONG_SKIP="no .whl/liger_kernel-*.whl in the repo root (download it and carry .whl: docs/benchmarks.md)"
  elif "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/lemo-site "$WHEEL" \
      >"$OUT/logs/liger-install.log" 2>&1; then
    export PYTHONPATH=/tmp/lemo-site${PYTHONPATH:+:$PYTHONPATH}
    note "peer-strong: installed $(basename "$WHEEL") into /tmp/lemo-site"
  else
    STRONG_SKIP="installing $WHEEL failed (logs/liger-install.log)"
    FAILED=1
  fi
  [ -n "$STRONG_SKIP" ] && note "peer-strong SKIPPED: $STRONG_SKIP"
fi
STRONG_ARGS=${LEMO_BENCH_STRONG_ARGS:-}

peer_flags() {  # system mode: hf_peer.py's flags
  case "$1 $2" in
    "peer no-ckpt") echo "" ;;
    "peer ckpt") echo "--gradient-checkpointing" ;;
    "peer-strong no-ckpt") echo "--liger $STRONG_ARGS" ;;
    "peer-strong ckpt") echo "--liger --checkpointing auto $STRONG_ARGS" ;;
  esac
}

run_peer() {  # system "seqs" mode: one process for all the seqs given
  local sys=$1 seqs=$2 mode=$3 name t rc seq todo=() per=1
  if [ "$sys" = peer-strong ] && [ -n "$STRONG_SKIP" ]; then
    for seq in $seqs; do skip "$sys" "$seq" "$mode" "$STRONG_SKIP"; done; return
  fi
  for seq in $seqs; do oom_skip "$sys" "$seq" "$mode" || todo+=("$seq"); done
  [ "${#todo[@]}" = 0 ] && return
  name=$sys-$(IFS=_; echo "${todo[*]}")-$mode
  # auto checkpointing may run a seq twice (GPU checkpointing, then offloaded after an OOM)
  [ "$sys $mode" = "peer-strong ckpt" ] && per=2
  t=$(budget $((per * ${#todo[@]})))
  if [ "$t" = 0 ]; then
    for seq in "${todo[@]}"; do skip "$sys" "$seq" "$mode" "deadline reached"; done; return
  fi
  rm -f "$OUT/logs/$name.jsonl"
  # shellcheck disable=SC2046  # the flags are a word list
  timeout -k 10 "$t" "$PY" bench/hf_peer.py "${PEER_SRC[@]}" --seq-lens "$(IFS=,; echo "${todo[*]}")" \
    $(peer_flags "$sys" "$mode") --system "$sys" \
    --steps $((STEPS - PEER_WARMUP)) --warmup "$PEER_WARMUP" --device "${DEV%%:*}" --dtype "$DTYPE" --skip-after-oom \
    --out "$OUT/logs/$name.jsonl" >"$OUT/logs/$name.log" 2>&1
  rc=$?
  [ -f "$OUT/logs/$name.jsonl" ] && cat "$OUT/logs/$name.jsonl" >>"$RESULTS"
  for seq in "${todo[@]}"; do  # a seq the process never reached (timeout, crash) still gets a line
    grep -q "\"seq_len\": $seq," "$OUT/logs/$name.jsonl" 2>/dev/null ||
      "$PY" bench/record_result.py --system "$sys" --seq-len "$seq" --mode "$mode" --rc "$rc" \
        --log "$OUT/logs/$name.log" --error "hf_peer.py wrote no result" --out "$RESULTS" >/dev/null
  done
}

track() {  # system seq mode t0: log the newest result of that run and remember OOMs
  local line status
  line=$(grep "\"system\": \"$1\"" "$RESULTS" | grep "\"seq_len\": $2," | grep "\"mode\": \"$3\"" | tail -n 1)
  status=$(sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p' <<<"$line")
  [ "$status" = oom ] && [ -z "${OOM_AT["$1 $3"]:-}" ] && OOM_AT["$1 $3"]=$2
  say "$1 seq $2 $3: ${status:-no result}$(sed -n 's/.*"step_median_s": \([0-9.]*\).*/, median step \1 s/p' <<<"$line") ($((SECONDS - $4)) s)"
}

for m in $MODES; do
  case $m in off | on) ;; *) note "unknown mode '$m' in LEMO_BENCH_MODES (use off, on): ignored" ;; esac
done
for sys in $SYSTEMS; do
  case $sys in
    lemo | lemo-sparse | lemo-selective | lemo-savers | lemo-2d | dense-selective | dense-savers | dense-2d | peer | peer-strong) ;;
    *) note "unknown system '$sys' in LEMO_BENCH_SYSTEMS (use lemo, lemo-sparse, lemo-selective, lemo-savers, lemo-2d, dense-selective, dense-savers, dense-2d, peer, peer-strong): ignored" ;;
  esac
done
for m in $MODES; do
  case $m in
    off) mode=no-ckpt flag= ;;
    on) mode=ckpt flag=--gradient-checkpointing ;;
    *) continue ;;
  esac
  for sys in peer peer-strong; do
    if [[ " $SYSTEMS " == *" $sys "* ]] && [ "$PEER_ONEPROC" = 1 ]; then
      t0=$SECONDS
      run_peer "$sys" "$SORTED_SEQS" "$mode"
      for seq in $SORTED_SEQS; do track "$sys" "$seq" "$mode" "$t0"; done
      report
    fi
  done
  for seq in $SORTED_SEQS; do
    for sys in $SYSTEMS; do
      t0=$SECONDS
      case $sys in
        lemo | lemo-sparse | lemo-selective | lemo-savers | lemo-2d | dense-selective | dense-savers | dense-2d)
          run_lemo "$sys" "$seq" "$mode" "$flag" ;;
        peer | peer-strong) [ "$PEER_ONEPROC" = 1 ] && continue; run_peer "$sys" "$seq" "$mode" ;;
        *) continue ;;
      esac
      track "$sys" "$seq" "$mode" "$t0"
      report
    done
  done
done

note "suite finished in $SECONDS s"
report
echo
cat "$OUT/table.md"
[ -s "$OUT/kernel_bench.md" ] && { echo; cat "$OUT/kernel_bench.md"; }
exit "$FAILED"
