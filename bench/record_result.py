#!/usr/bin/env python3
"""Turns one `lemo-train finetune --metrics-jsonl` run into a results.jsonl line (same fields as
bench/hf_peer.py writes), so report.py can put lemo and the peer side by side. Also records a run
of either system that left no result of its own (killed by the timeout, crashed, skipped).

Usage:
  python3 bench/record_result.py --system lemo --seq-len 4096 --mode ckpt --rc 0 \
      --metrics m.jsonl --log run.log [--warmup 1] --out results.jsonl
  python3 bench/record_result.py --system peer --seq-len 4096 --mode ckpt --rc 124 --log peer.log --out results.jsonl
  python3 bench/record_result.py --system lemo ... --status skipped --error "lemo-train not built" --out results.jsonl

LeMo rows carry the mode they ran in (--lemo-mode) and, where the suite calibrated predictors, how
that went (--calibration): a row whose calibration failed says so and that it ran the oracle.

Status: rc 124 -> "timeout"; 137 -> "killed"; non-zero rc with "out of memory" in the log -> "oom"; other
non-zero rc -> "error" (last log line kept); rc 0 -> "ok". Every step after the warm-up steps is
kept raw (step_times_s), with their median (step_median_s; bench/report.py reports the median and
the min-max) and, as before, the best (step_s, with tokens_per_s at it); peak memory is the maximum
over all steps (the peer resets its peak before warm-up), and each step's own peaks are kept too
(peak_allocated_bytes_steps, peak_reserved_bytes_steps).
"""
import argparse
import json
import os
import re
import statistics
import sys

OOM_PATTERNS = re.compile(r"out of memory|out_of_memory|outofmemory|cublas_status_alloc_failed", re.I)


def read_metrics(path):
    rows = []
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line cut short by a kill
    return rows


def log_text(path):
    if not path or not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return f.read()


def last_line(text):
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    return lines[-1][:300] if lines else ""


def max_of(rows, key):
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return max(vals) if vals else None


def make_record(args):
    rows = read_metrics(args.metrics)
    text = log_text(args.log)
    rec = {"system": args.system, "seq_len": args.seq_len, "mode": args.mode, "status": "ok",
           "step_s": None, "step_times_s": None, "step_median_s": None, "tokens_per_s": None,
           "peak_allocated_bytes": max_of(rows, "peak_allocated_bytes"),
           "peak_reserved_bytes": max_of(rows, "peak_reserved_bytes"),
           "peak_allocated_bytes_steps": [r.get("peak_allocated_bytes") for r in rows] or None,
           "peak_reserved_bytes_steps": [r.get("peak_reserved_bytes") for r in rows] or None,
           "loss": None, "error": None, "steps_logged": len(rows), "rc": args.rc}
    if args.lemo_mode:
        rec["lemo_mode"] = args.lemo_mode
    if args.calibration:
        rec["calibration"] = args.calibration
    if args.status:
        rec.update(status=args.status, error=args.error)
        return rec
    if args.rc == 124:
        rec.update(status="timeout", error="stopped by the per-setting timeout")
    elif args.rc == 137:
        rec.update(status="killed", error="SIGKILL: past the timeout's grace, or the host's OOM killer")
    elif args.rc != 0:
        rec.update(status="oom" if OOM_PATTERNS.search(text) else "error",
                   error=args.error or last_line(text) or f"exit code {args.rc}")
    if rec["status"] != "ok":
        return rec
    timed = rows[args.warmup:]
    if not timed and rows:  # too few steps to skip a warm-up: use what there is, and say so
        timed = rows
        rec["warning"] = f"only {len(rows)} steps logged; warm-up not skipped"
    times = [r["step_time_seconds"] for r in timed if isinstance(r.get("step_time_seconds"), (int, float))]
    if not times:
        rec.update(status="error", error=args.error or f"no step_time_seconds in {args.metrics}")
        return rec
    best = min(times)
    rec.update(step_s=round(best, 4), step_times_s=[round(t, 4) for t in times],
               step_median_s=round(statistics.median(times), 4),
               tokens_per_s=round(args.seq_len * args.batch / best, 1), loss=timed[-1].get("loss"))
    return rec


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", choices=["lemo", "lemo-sparse", "lemo-selective", "lemo-savers", "lemo-2d", "dense-selective",
                                              "dense-savers", "dense-2d", "peer", "peer-strong"], default="lemo")
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--mode", choices=["no-ckpt", "ckpt"], required=True)
    p.add_argument("--rc", type=int, default=0, help="lemo-train's exit code")
    p.add_argument("--metrics", help="the --metrics-jsonl file")
    p.add_argument("--log", help="lemo-train's stdout + stderr")
    p.add_argument("--warmup", type=int, default=1, help="leading steps left out of the step time")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--status", help="force a status (e.g. skipped) without looking at the run")
    p.add_argument("--error", help="message to record with --status or a failure")
    p.add_argument("--lemo-mode", help="the LeMo mode the run was given (--lemo-mode of lemo-train): "
                   "predictor, oracle, ...; bench/report.py names it in the row")
    p.add_argument("--calibration", choices=["ok", "failed", "not-run"],
                   help="how the suite's predictor calibration went (failed: the run used the oracle)")
    p.add_argument("--out", required=True, help="results.jsonl to append to")
    args = p.parse_args(argv)
    rec = make_record(args)
    line = json.dumps(rec)
    with open(args.out, "a") as f:
        f.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
