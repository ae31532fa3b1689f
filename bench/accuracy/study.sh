#!/usr/bin/env bash
# Accuracy study v2 (issue 14; docs/accuracy.md "Study v2"), in back-to-back device calls on one
# warm machine. Every call is the same command (repo root, .device and .whl carried):
#   bash bench/accuracy/study.sh
# Each call runs the study's next jobs (bench/accuracy/study.py: an ordered queue, kept in
# ACC_WORK=/tmp/lemo-acc2) until the next job would not finish within ACC_CALL_SECONDS=540, and
# copies every result so far into $OUT (results.jsonl, pretrain-*.json, calibrate-*.json,
# eval-*.json, passkey-*.json, summary.md, status.json, logs/). `python3 bench/accuracy/study.py
# --list` shows what is done and pending. A cold machine (/tmp wiped) starts over from job 1.
#
# The plan. Minutes are estimates until the first calls measure them (status.json's "timing": the
# measured seconds per fine-tune step, which the queue then uses to decide what fits): a 113M-model
# fine-tune of 200 steps at 8K ~1-1.5 min with its evaluation, 150 steps at 16K ~2-3 min.
#   call 1 (~9.5 min): build lemo-train (~2-3), train the SentencePiece tokenizer (8,000 pieces, on
#     the four pretraining books, <1), pretrain the large model (16 layers, hidden 768, 12 heads,
#     4 KV heads, MLP 2048: 113M parameters; seq 2048, batch 16) until the call ends, saving its
#     state to /tmp every minute.
#   call 2 (~9.5 min): resume pretraining to its 12-minute budget (ACC_BIG_MINUTES) or early stop
#     (likely sooner: the four books are 0.60M subword tokens, which a 113M model memorises in a
#     few epochs), calibrate the predictors (200 steps at 8K), base evaluations, then dense/LeMo
#     pairs at 8K (200 steps each) ...
#   calls 3-6: the queue in order: the 8K pairs (seeds 0, 1, 2), the 16K pairs (150 steps: 2.5M
#     tokens per run, against 1.6M for 200 steps at 8K), MLP channel sparsity, passkey at 8K,
#     S2-Attn with and without position interpolation and the S2-Attn evaluation table, passkey
#     at 16K, the 8-layer byte model (pretrain ~1, calibrate, dense x3 and LeMo x3 at 8K).
# The whole queue is ~50-65 minutes of calls: more than one 30-minute device session, and /tmp
# does not outlive a session. So split it into sessions, each pretraining its own base model
# (GPU pretraining is not bit-reproducible: compare runs only within a session, which the tables
# do), with ACC_ONLY (job-name parts; the named models' pretraining and calibration come along):
#   session 1: ACC_ONLY=big-8k bash bench/accuracy/study.sh          (~3 calls: 8K seeds, savers,
#              passkey at 8K, S2-Attn)
#   session 2: ACC_ONLY=big-16k,small-8k bash bench/accuracy/study.sh (~3 calls: 16K seeds, passkey
#              at 16K, the 8-layer model)
# Within a session the queue is in priority order (the dense-vs-LeMo seeds first), so a session
# cut short still has its core table. ACC_SKIP=job,job drops jobs (names: study.py --list).
#
# Knobs (env): ACC_CALL_SECONDS=540  ACC_WORK=/tmp/lemo-acc2  OUT=./acc-out  ACC_BUILD=1
#   ACC_SEEDS=0,1,2  ACC_STEPS_8K=200  ACC_STEPS_16K=150  ACC_CAL_STEPS=200  ACC_LR=1e-3
#   ACC_BIG_MINUTES=12 (pretraining budget, over calls)  ACC_PASSKEY_PRETRAIN_ROWS=8 (of 16 per batch)
#   ACC_WINDOW_WARMUP=256:500 (the large model's first 500 steps on 256-token windows; "" for none)
#   ACC_PASSKEY_SAMPLES=250 (training examples)
#   ACC_PASSKEY_TEST=100  ACC_LONG_TASK=passkey (or copy: passkey.py make --task copy, for the pretraining
#   rows and the passkey jobs)  ACC_PASSKEY_CONFIGS=dense,lemo (the passkey fine-tunes; -pi ones under
#   position interpolation, with a base-pi evaluation)  ACC_SMALL_PASSKEY_ROWS=0 (of 32),
#   ACC_SMALL_WINDOW_WARMUP="" and ACC_SMALL_MINUTES=3 (the 8-layer model's passkey pretraining;
#   with rows it gets 8K passkey jobs too)  ACC_SMALL_SEQ=1024, ACC_SEQ_8K=8192, ACC_SEQ_16K=16384
#   (lengths, to scale the study down on a CPU)  ACC_DEVICE=cuda:0 ACC_DTYPE=bf16 (lemo-train)  ACC_PY_DEVICE=cuda (python)
#   ACC_PACK=1 (pack OUT into OUT/study.tar.gz)
#   ACC_EVAL_ARGS (extra lemo-train eval flags)  ACC_PRETRAIN_ARGS_BIG / _SMALL (extra pretrain.py
#   flags)  ACC_ONLY (job-name parts to run)  ACC_SKIP (job names to drop)  LEMO_TRAIN (the binary;
#   default build-gpu/bin)
# CPU smoke (tiny sizes: 4-layer models, seq 128 pretraining, "8K" = 256 and "16K" = 512 tokens,
# 3 steps, 1 seed; every job of the queue: 5-8 minutes on this 2-core machine under load, ~2.5 min
# of CPU, so not a ctest):
#   ACC_SMOKE=1 ACC_BUILD=0 LEMO_TRAIN=build/bin/lemo-train ACC_DEVICE=cpu ACC_DTYPE=fp32
#   ACC_PY_DEVICE=cpu ACC_SEEDS=0 ACC_WORK=/tmp/acc-smoke OUT=/tmp/acc-smoke-out PATH=$LEMO_VENV/bin:$PATH
#   bash bench/accuracy/study.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
OUT=${OUT:-$PWD/acc-out}
export OUT
mkdir -p "$OUT/logs"
# On the GPU machine (ACC_BUILD=1) every call needs the carried packages' environment, not only
# the one that builds: lemo-train loads gRPC, abseil and sentencepiece from /tmp/sysroot (without
# it, 2026-12-07, every job of a second call exited 127).
if [ "${ACC_BUILD:-1}" = 1 ]; then
  source bench/device_env.sh
  if [ ! -x build-gpu/bin/lemo-train ]; then
    cmake -S . -B build-gpu -G Ninja -DLEMO_ENABLE_CUDA=ON -DLEMO_PYTHON=python3 \
      $LEMO_DEVICE_CMAKE_FLAGS -DCMAKE_BUILD_TYPE=Release >"$OUT/logs/configure.log" 2>&1 &&
      cmake --build build-gpu -j "$(nproc)" --target lemo-train >"$OUT/logs/build.log" 2>&1 ||
      { tail -n 30 "$OUT/logs/build.log"; exit 1; }
    echo "[study] built lemo-train in ${SECONDS}s" >&2
  fi
fi
# pretrain.py trains the tokenizer with Python's sentencepiece. The GPU machine's image had it on
# 2026-12-07; should one lack it, the wheel carried in .whl/ (docs/accuracy.md says how to get it)
# goes into a private folder on PYTHONPATH, as gpu_suite.sh does for Liger Kernel.
if ! python3 -c 'import sentencepiece' 2>/dev/null; then
  wheel=$(ls .whl/sentencepiece-*.whl 2>/dev/null | tail -n 1)
  [ -n "$wheel" ] || { echo "accuracy: no Python sentencepiece and no .whl/sentencepiece-*.whl (carry .whl)" >&2; exit 2; }
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/lemo-site "$wheel" >&2 || exit 2
  export PYTHONPATH=/tmp/lemo-site${PYTHONPATH:+:$PYTHONPATH}
  echo "[study] installed $(basename "$wheel") into /tmp/lemo-site" >&2
fi
# The build's time counts against the call.
export ACC_CALL_SECONDS=$(( ${ACC_CALL_SECONDS:-540} - SECONDS ))
python3 bench/accuracy/study.py "$@"
rc=$?
# The device machine hands back only a few files per call (2026-12-07: 8 of 46; the first call's
# logs were lost), so with ACC_PACK=1 (the default) everything goes into one archive, with the
# summary and status beside it. Each call's archive holds the whole study so far: the logs are
# kept in ACC_WORK and copied out by every call.
if [ "${ACC_PACK:-1}" = 1 ] && [ -f "$OUT/status.json" ]; then
  # A private archive name: two studies may run side by side (bench/accuracy/long_range.sh).
  archive=$(mktemp /tmp/lemo-study.XXXXXX) &&
    tar -czf "$archive" -C "$OUT" . &&
    find "$OUT" -mindepth 1 -maxdepth 1 ! -name summary.md ! -name status.json -exec rm -rf {} + &&
    mv "$archive" "$OUT/study.tar.gz"
fi
exit $rc
