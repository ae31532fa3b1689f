#!/usr/bin/env bash
# Control-plane benchmark (issue 3): for each worker count, starts a fresh lemo-coordinator on
# loopback (temp --data-dir, any free port), runs lemo-cp-bench against it (simulated workers on
# real Connect streams heartbeating at 1 Hz, WatchJob streams, a steady stream of SubmitJob with
# GetJob between), stops the coordinator, and writes the Markdown table
# (bench/control_plane_report.py). Loopback only; every run is bounded in time.
#
#   bash bench/control_plane.sh                      # W=100 and W=1000, 60 s each
#   LEMO_CP_WORKERS=5 LEMO_CP_WATCHERS=3 LEMO_CP_DURATION=5s LEMO_CP_CHECK=1 bash bench/control_plane.sh
#
# Knobs (env; defaults in brackets):
#   LEMO_CP_WORKERS ["100 1000"]  LEMO_CP_WATCHERS [100]  LEMO_CP_RATE [20] (submits/s)
#   LEMO_CP_DURATION [60s] (submits)  LEMO_CP_IDLE [5s] (heartbeats only, before)  LEMO_CP_DRAIN [5s]
#   LEMO_CP_ARGS [] (more lemo-cp-bench flags, e.g. --gets_per_submit=4)
#   LEMO_CP_CHECK [0] (1: fail unless every run has submits, gets, completed assignments, no errors)
#   LEMO_CP_DATA_ROOT [/tmp] (where the coordinator's temp data dir goes; /dev/shm takes the
#     disk's fsync out of the picture)
#   LEMO_BIN_DIR [build/bin]  LEMO_PYTHON [python3]  OUT [bench-out/control_plane]
# Results in $OUT: results.jsonl (one object per run: date, load average before/after, and the
# lemo-cp-bench JSON line), table.md, logs/.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
BIN=${LEMO_BIN_DIR:-build/bin}
PY=${LEMO_PYTHON:-python3}
OUT=${OUT:-bench-out/control_plane}
WORKERS=${LEMO_CP_WORKERS:-100 1000}
WATCHERS=${LEMO_CP_WATCHERS:-100}
mkdir -p "$OUT/logs"
: >"$OUT/results.jsonl"

for b in lemo-coordinator lemo-cp-bench; do
  [ -x "$BIN/$b" ] || { echo "control_plane.sh: $BIN/$b missing; build it first" >&2; exit 2; }
done

# Each stream is a connection, so a file descriptor on both sides; one process holds them all.
max_workers=$(tr ' ' '\n' <<<"$WORKERS" | sort -n | tail -1)
need=$((max_workers + WATCHERS + 256))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  echo "control_plane.sh: ulimit -n is $(ulimit -n) (hard $(ulimit -Hn)); $need needed" >&2
  exit 2
fi

coord_pid=
data=
cleanup() {
  if [ -n "$coord_pid" ]; then
    kill -TERM "$coord_pid" 2>/dev/null
    wait "$coord_pid" 2>/dev/null
    coord_pid=
  fi
  [ -n "$data" ] && rm -rf "$data"
  data=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

status=0
for w in $WORKERS; do
  data=$(mktemp -d "${LEMO_CP_DATA_ROOT:-/tmp}/lemo-cp-bench.XXXXXX")
  log=$OUT/logs/coordinator-w$w.log
  "$BIN/lemo-coordinator" --listen=127.0.0.1:0 --metrics-listen=127.0.0.1:0 \
    --data-dir="$data/coordinator" >"$log" 2>&1 &
  coord_pid=$!
  port=
  for _ in $(seq 200); do  # the coordinator prints its port once it listens
    port=$(sed -n 's/^lemo-coordinator listening on port \([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && break
    kill -0 "$coord_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "control_plane.sh: the coordinator did not start; see $log" >&2
    cleanup
    status=1
    continue
  fi
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "control_plane.sh: W=$w on port $port (load average $load_before)" >&2
  # shellcheck disable=SC2086  # LEMO_CP_ARGS is a list of flags
  result=$("$BIN/lemo-cp-bench" --target="127.0.0.1:$port" --coordinator_pid="$coord_pid" \
    --workers="$w" --watchers="$WATCHERS" --submit_rate="${LEMO_CP_RATE:-20}" \
    --duration="${LEMO_CP_DURATION:-60s}" --idle="${LEMO_CP_IDLE:-5s}" \
    --drain="${LEMO_CP_DRAIN:-5s}" ${LEMO_CP_ARGS:-} 2>"$OUT/logs/bench-w$w.log")
  rc=$?
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  cleanup
  if [ $rc -ne 0 ] || [ -z "$result" ]; then
    echo "control_plane.sh: lemo-cp-bench failed (rc $rc); see $OUT/logs/bench-w$w.log" >&2
    status=1
    continue
  fi
  printf '{"date":"%s","loadavg_before":"%s","loadavg_after":"%s","result":%s}\n' \
    "$(date -u +%FT%TZ)" "$load_before" "$load_after" "$result" >>"$OUT/results.jsonl"
done

check=()
[ "${LEMO_CP_CHECK:-0}" = 1 ] && check=(--check)
"$PY" bench/control_plane_report.py "$OUT/results.jsonl" --out "$OUT/table.md" "${check[@]}" || status=1
cat "$OUT/table.md" 2>/dev/null
exit $status
