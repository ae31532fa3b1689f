#!/usr/bin/env bash
# bench/control_plane.sh's retention phase passes --retain-finished-jobs to its coordinator
# exactly when `lemo-coordinator --help` lists the flag, and records which it did in
# results.jsonl. The flag is being added to the coordinator separately, so a stand-in plays a
# coordinator that has it: a wrapper that adds the flag to the real one's --help, notes the flag
# when it is passed and drops it before exec'ing the real coordinator. (A pipe from --help into
# grep under pipefail once made the detection always fail: absl's --help exits non-zero.)
#
#   control_plane_retain_flag_test.sh BIN_DIR PYTHON
# To add a case: another run_driver call with its own bin dir and a check on its results.jsonl.
set -euo pipefail
bin=$1 py=$2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir "$tmp/with-flag"
ln -s "$bin/lemo-cp-bench" "$tmp/with-flag/lemo-cp-bench"
cat >"$tmp/with-flag/lemo-coordinator" <<WRAPPER
#!/usr/bin/env bash
args=()
for a in "\$@"; do
  case "\$a" in
    --help) "$bin/lemo-coordinator" --help; echo "    --retain_finished_jobs (stand-in)"; exit 1 ;;
    --retain-finished-jobs=*) echo "\$a" >>"$tmp/passed" ;;
    *) args+=("\$a") ;;
  esac
done
exec "$bin/lemo-coordinator" "\${args[@]}"
WRAPPER
chmod +x "$tmp/with-flag/lemo-coordinator"

# run_driver BIN_DIR OUT: a tiny run of the driver, retention phase of 120 jobs, retain 10.
run_driver() {
  LEMO_BIN_DIR=$1 OUT=$2 LEMO_PYTHON=$py LEMO_CP_WORKERS=2 LEMO_CP_WATCHERS=1 LEMO_CP_RATE=10 \
    LEMO_CP_DURATION=2s LEMO_CP_IDLE=0s LEMO_CP_DRAIN=1s LEMO_CP_RETENTION_JOBS=120 \
    LEMO_CP_RETAIN=10 LEMO_CP_CHECK=1 bash "$root/bench/control_plane.sh" >"$2.log" 2>&1 ||
    { cat "$2.log" >&2; echo "FAIL: the driver failed with $1" >&2; exit 1; }
}

# The retention record's coordinator flags, one per line.
retention_flags() {
  "$py" -c 'import json, sys
for line in open(sys.argv[1]):
    run = json.loads(line)
    if run.get("phase") == "retention":
        print("\n".join(run["coordinator_flags"]))' "$1/results.jsonl"
}

run_driver "$tmp/with-flag" "$tmp/out-with"
grep -qx -- '--retain-finished-jobs=10' "$tmp/passed" ||
  { echo "FAIL: the stand-in listed the flag but was not given it" >&2; exit 1; }
retention_flags "$tmp/out-with" | grep -qx -- '--retain-finished-jobs=10' ||
  { echo "FAIL: results.jsonl does not record the flag it passed" >&2; exit 1; }

if grep -q 'retain_finished_jobs' <<<"$("$bin/lemo-coordinator" --help 2>&1 || true)"; then
  echo "the real coordinator has the flag now: the without-flag case is covered by the stand-in only"
else
  run_driver "$bin" "$tmp/out-without"
  if retention_flags "$tmp/out-without" | grep -q -- '--retain-finished-jobs'; then
    echo "FAIL: the flag was passed to a coordinator whose --help does not list it" >&2
    exit 1
  fi
fi
echo "ok"
