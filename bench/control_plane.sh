#!/usr/bin/env bash
# Control-plane benchmark (issues 3 and 18): for each worker count, starts a fresh
# lemo-coordinator on loopback (temp --data-dir, any free port), runs lemo-cp-bench against it
# (simulated workers on real Connect streams heartbeating at 1 Hz, WatchJob streams, a steady
# stream of SubmitJob with GetJob between), stops the coordinator; then the retention phase: a
# fresh coordinator (with --retain-finished-jobs when it has that flag) takes
# LEMO_CP_RETENTION_JOBS jobs submitted and cancelled as fast as it answers while its RSS is
# sampled. By default with TLS and tokens on: a throwaway CA/certificate (openssl) and a token
# file with one client principal and one worker principal per simulated worker (sim-N), so each
# worker presents its own token, as the coordinator's per-worker identities require. Writes
# results.jsonl, meta.json and the Markdown tables (bench/control_plane_report.py). Loopback
# only; every phase is bounded in time.
#
#   bash bench/control_plane.sh     # W=1000, 200 watchers, 50 submits/s, 60 s; 100,000 jobs
#   LEMO_CP_WORKERS=5 LEMO_CP_WATCHERS=3 LEMO_CP_DURATION=5s LEMO_CP_RETENTION_JOBS=200 \
#     LEMO_CP_CHECK=1 bash bench/control_plane.sh
#
# Knobs (env; defaults in brackets):
#   LEMO_CP_WORKERS ["1000"] (one run per count)  LEMO_CP_WATCHERS [200]  LEMO_CP_RATE [50]
#   LEMO_CP_DURATION [60s] (submits)  LEMO_CP_IDLE [5s] (heartbeats only, before)  LEMO_CP_DRAIN [5s]
#   LEMO_CP_TLS [1] (0: plaintext and no tokens, as issue 3's runs)
#   LEMO_CP_RETENTION_JOBS [100000] (0 skips the retention phase)  LEMO_CP_RETAIN [1000]
#     (--retain-finished-jobs, passed only when `lemo-coordinator --help` lists the flag)
#   LEMO_CP_RETENTION_DATA_ROOT [/dev/shm when writable with 1 GiB free, else LEMO_CP_DATA_ROOT]: the phase
#     measures memory, not the disk; 200,000 fsyncs on a shared disk take many minutes
#   LEMO_CP_ARGS [] (more lemo-cp-bench flags for the load runs, e.g. --gets_per_submit=4)
#   LEMO_CP_CHECK [0] (1: fail unless every run is clean; see bench/control_plane_report.py)
#   LEMO_CP_DATA_ROOT [/tmp] (the load runs' temp data dir; /dev/shm takes the disk's fsync out)
#   LEMO_BIN_DIR [build/bin]  LEMO_PYTHON [python3]  OUT [bench-out/control_plane]
# Results in $OUT: results.jsonl (one object per run: phase, date, load average before/after,
# the coordinator's flags, and the lemo-cp-bench JSON line), meta.json (git commit, machine,
# command, what else ran), table.md, logs/.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
BIN=${LEMO_BIN_DIR:-build/bin}
PY=${LEMO_PYTHON:-python3}
OUT=${OUT:-bench-out/control_plane}
WORKERS=${LEMO_CP_WORKERS:-1000}
WATCHERS=${LEMO_CP_WATCHERS:-200}
TLS=${LEMO_CP_TLS:-1}
RETENTION_JOBS=${LEMO_CP_RETENTION_JOBS:-100000}
RETAIN=${LEMO_CP_RETAIN:-1000}
# The phase's database is about 1.2 KiB per job (120 MB for 100,000): /dev/shm only when it has
# 1 GiB free (containers often give it 64 MB).
if [ -z "${LEMO_CP_RETENTION_DATA_ROOT:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] &&
  [ "$(df --output=avail -k /dev/shm 2>/dev/null | tail -1)" -ge $((1 << 20)) ] 2>/dev/null; then
  LEMO_CP_RETENTION_DATA_ROOT=/dev/shm
fi
RETENTION_DATA_ROOT=${LEMO_CP_RETENTION_DATA_ROOT:-${LEMO_CP_DATA_ROOT:-/tmp}}
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
secrets=
cleanup() {
  if [ -n "$coord_pid" ]; then
    kill -TERM "$coord_pid" 2>/dev/null
    wait "$coord_pid" 2>/dev/null
    coord_pid=
  fi
  [ -n "$data" ] && rm -rf "$data"
  data=
}
trap 'cleanup; [ -n "$secrets" ] && rm -rf "$secrets"' EXIT
trap 'exit 130' INT TERM

# TLS and tokens: a self-signed certificate for 127.0.0.1 (the bench trusts it as its CA) and a
# token file, thrown away at exit. Tokens are random so nothing real can ever match them.
security_coord=()
security_bench=()
if [ "$TLS" = 1 ]; then
  command -v openssl >/dev/null || { echo "control_plane.sh: openssl missing (LEMO_CP_TLS=0 runs without TLS)" >&2; exit 2; }
  secrets=$(mktemp -d "${TMPDIR:-/tmp}/lemo-cp-secrets.XXXXXX")
  chmod 700 "$secrets"
  if ! openssl req -x509 -newkey rsa:2048 -nodes -keyout "$secrets/tls.key" \
      -out "$secrets/tls.pem" -days 1 -subj /CN=localhost \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$secrets/openssl.log" 2>&1; then
    cat "$secrets/openssl.log" >&2
    echo "control_plane.sh: openssl could not make a certificate" >&2
    exit 2
  fi
  salt=$(openssl rand -hex 12)
  {
    echo "# <token> <principal-name> <role>: the bench's client, then one per simulated worker"
    echo "client-$salt cp-bench client"
    # The watchers: an operator's dashboards. 200 streams of one client would pass its
    # --max-streams-per-principal (64); an admin has 4x and reads every tenant's jobs.
    echo "admin-$salt cp-dashboards admin"
    for ((i = 0; i < max_workers; i++)); do echo "worker-$salt-$i sim-$i worker"; done
  } >"$secrets/principals"
  chmod 600 "$secrets/principals" "$secrets/tls.key"
  security_coord=(--tls-cert="$secrets/tls.pem" --tls-key="$secrets/tls.key"
    --token-file="$secrets/principals")
  security_bench=(--tls_ca="$secrets/tls.pem" --token_file="$secrets/principals")
fi

# start_coordinator LOG DATA_ROOT [flags...]: sets coord_pid, data and port (empty on failure).
start_coordinator() {
  local log=$1 root=$2
  shift 2
  data=$(mktemp -d "$root/lemo-cp-bench.XXXXXX")
  # Emptied here, not by the background job's redirection: that may run after the first look
  # below, which would then read an earlier run's port from the old log.
  : >"$log"
  "$BIN/lemo-coordinator" --listen=127.0.0.1:0 --metrics-listen=127.0.0.1:0 \
    --data-dir="$data/coordinator" "${security_coord[@]}" "$@" >>"$log" 2>&1 &
  coord_pid=$!
  port=
  for _ in $(seq 200); do  # the coordinator prints its port once it listens
    port=$(sed -n 's/^lemo-coordinator listening on port \([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && break
    kill -0 "$coord_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$port" ] || echo "control_plane.sh: the coordinator did not start; see $log" >&2
}

# After a failed lemo-cp-bench: whether the coordinator was still up, and its last words.
coordinator_postmortem() {
  if kill -0 "$coord_pid" 2>/dev/null; then
    echo "control_plane.sh: the coordinator (pid $coord_pid) was still running" >&2
  else
    echo "control_plane.sh: the coordinator (pid $coord_pid) had exited; its log ends:" >&2
    tail -5 "$1" >&2
  fi
}

# record PHASE LOAD_BEFORE LOAD_AFTER RESULT COORDINATOR_FLAGS_JSON
record() {
  printf '{"phase":"%s","date":"%s","loadavg_before":"%s","loadavg_after":"%s","coordinator_flags":%s,"result":%s}\n' \
    "$1" "$(date -u +%FT%TZ)" "$2" "$3" "$5" "$4" >>"$OUT/results.jsonl"
}

# The coordinator's flags as a JSON list, secrets' paths shortened (they are thrown away).
flags_json() {
  # shellcheck disable=SC2016  # "$SECRETS" is literal text in the record
  "$PY" -c 'import json, sys; print(json.dumps([a.replace(sys.argv[1], "$SECRETS") if sys.argv[1] else a for a in sys.argv[2:]]))' \
    "$secrets" "$@"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# What else uses the CPU now (top's second frame: %CPU over one second, not since each start).
busy() {
  top -b -n 2 -d 1 -o %CPU 2>/dev/null | awk '/^top -/ {f++} f == 2 && $1 ~ /^[0-9]+$/ && n < 8 {
    printf "%s%s %s%%", (n++ ? ", " : ""), $12, $9 }'
}
busy_start=$(busy)

status=0
for w in $WORKERS; do
  start_coordinator "$OUT/logs/coordinator-w$w.log" "${LEMO_CP_DATA_ROOT:-/tmp}"
  if [ -z "$port" ]; then
    cleanup
    status=1
    continue
  fi
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "control_plane.sh: W=$w on port $port, TLS+tokens $TLS (load average $load_before)" >&2
  # shellcheck disable=SC2086  # LEMO_CP_ARGS is a list of flags
  result=$("$BIN/lemo-cp-bench" --target="127.0.0.1:$port" --coordinator_pid="$coord_pid" \
    --workers="$w" --watchers="$WATCHERS" --submit_rate="${LEMO_CP_RATE:-50}" \
    --duration="${LEMO_CP_DURATION:-60s}" --idle="${LEMO_CP_IDLE:-5s}" \
    --drain="${LEMO_CP_DRAIN:-5s}" "${security_bench[@]}" ${LEMO_CP_ARGS:-} \
    2>"$OUT/logs/bench-w$w.log")
  rc=$?
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  [ $rc -ne 0 ] && coordinator_postmortem "$OUT/logs/coordinator-w$w.log"
  cleanup
  if [ $rc -ne 0 ] || [ -z "$result" ]; then
    echo "control_plane.sh: lemo-cp-bench failed (rc $rc); see $OUT/logs/bench-w$w.log" >&2
    status=1
    continue
  fi
  record load "$load_before" "$load_after" "$result" "$(flags_json "${security_coord[@]}")"
done

if [ "$RETENTION_JOBS" -gt 0 ]; then
  # The flag is being added to the coordinator; a build without it still runs the phase (and
  # the report says the coordinator kept every job).
  retain_flags=()
  # --help exits non-zero (absl's way), so under pipefail a pipe into grep would always fail.
  coordinator_help=$("$BIN/lemo-coordinator" --help 2>&1 || true)
  if grep -q -- '--retain[-_]finished[-_]jobs' <<<"$coordinator_help"; then
    retain_flags=(--retain-finished-jobs="$RETAIN")
  else
    echo "control_plane.sh: lemo-coordinator has no --retain-finished-jobs; retention phase without it" >&2
  fi
  start_coordinator "$OUT/logs/coordinator-retention.log" "$RETENTION_DATA_ROOT" "${retain_flags[@]}"
  if [ -z "$port" ]; then
    cleanup
    status=1
  else
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "control_plane.sh: retention phase, $RETENTION_JOBS jobs on port $port ${retain_flags[*]} (load average $load_before)" >&2
    result=$("$BIN/lemo-cp-bench" --mode=retention --target="127.0.0.1:$port" \
      --coordinator_pid="$coord_pid" --retention_jobs="$RETENTION_JOBS" \
      "${security_bench[@]}" 2>"$OUT/logs/bench-retention.log")
    rc=$?
    load_after=$(cut -d' ' -f1-3 /proc/loadavg)
    [ $rc -ne 0 ] && coordinator_postmortem "$OUT/logs/coordinator-retention.log"
    cleanup
    if [ $rc -ne 0 ] || [ -z "$result" ]; then
      echo "control_plane.sh: lemo-cp-bench --mode=retention failed (rc $rc); see $OUT/logs/bench-retention.log" >&2
      status=1
    else
      record retention "$load_before" "$load_after" "$result" \
        "$(flags_json "${security_coord[@]}" "${retain_flags[@]}")"
    fi
  fi
fi

# meta.json: what ran where, for bench/results/.
"$PY" - "$OUT/meta.json" "$BIN" "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)" "$busy_start" \
  "$(busy)" <<'EOF'
import json, os, platform, subprocess, sys
out, bin_dir, load_start, load_end, busy, busy_end = sys.argv[1:7]
def run(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""
def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""
def mem_gib():
    with open("/proc/meminfo") as f:
        return round(int(f.readline().split()[1]) / 2**20, 1)
cache = os.path.join(bin_dir, "..", "CMakeCache.txt")
build_type = ""
if os.path.exists(cache):
    for line in open(cache):
        if line.startswith("CMAKE_BUILD_TYPE:"):
            # Empty means the project's default (CMakeLists.txt): RelWithDebInfo.
            build_type = line.split("=", 1)[1].strip() or "RelWithDebInfo"
knobs = {k: v for k, v in sorted(os.environ.items())
         if k.startswith("LEMO_CP_") or k in ("LEMO_BIN_DIR", "OUT")}
meta = {
    "git_commit": run("git", "rev-parse", "HEAD"),
    "git_dirty": bool(run("git", "status", "--porcelain", "--untracked-files=no")),
    "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
    "cpu_model": cpu_model(), "mem_gib": mem_gib(), "build_type": build_type,
    "coordinator_version": run(os.path.join(bin_dir, "lemo-coordinator"), "--version"),
    "command": " ".join([f"{k}={v}" for k, v in knobs.items()] + ["bash bench/control_plane.sh"]),
    "loadavg_start": load_start, "loadavg_end": load_end,
    "busiest_processes_at_start": busy, "busiest_processes_at_end": busy_end,
}
with open(out, "w") as f:
    json.dump(meta, f, indent=1)
    f.write("\n")
EOF

check=()
[ "${LEMO_CP_CHECK:-0}" = 1 ] && check=(--check)
[ "${LEMO_CP_CHECK:-0}" = 1 ] && [ "$TLS" = 1 ] && check+=(--require-tls)
"$PY" bench/control_plane_report.py "$OUT/results.jsonl" --out "$OUT/table.md" "${check[@]}" || status=1
cat "$OUT/table.md" 2>/dev/null
exit $status
