#!/usr/bin/env python3
"""Markdown table of a control-plane benchmark run (bench/control_plane.sh).

Usage:
  python3 bench/control_plane_report.py OUT/results.jsonl [--out OUT/table.md] [--check]

results.jsonl holds one object per run: {"date", "loadavg_before", "loadavg_after", "result"},
where result is lemo-cp-bench's JSON line. With --check the exit code is 1 unless there is at
least one run and every run is well-formed with submits > 0, gets > 0, completed assignments > 0
and errors == 0: the smoke test's guard against the benchmark rotting. Latency is never checked.
"""
import argparse
import json
import sys

# Fields the table and the check read; a missing one means lemo-cp-bench changed its output.
REQUIRED = ("workers", "welcomed", "watchers", "submit_rate", "duration_s", "load_wall_s",
            "submits", "gets", "submit_ms", "get_ms", "errors", "errors_by_kind", "coordinator",
            "heartbeats_sent", "assignments_completed", "watch")


def load(path):
    runs = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    runs.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SystemExit(f"{path}:{n}: not JSON: {e}")
    return runs


def problems(run):
    r = run.get("result", {})
    out = [f"missing {k}" for k in REQUIRED if k not in r]
    if out:
        return out
    if r["submits"] <= 0:
        out.append("no successful SubmitJob")
    if r["gets"] <= 0:
        out.append("no successful GetJob")
    if r["assignments_completed"] <= 0:
        out.append("no simulated worker completed an assignment")
    if r["errors"] != 0:
        out.append(f"errors {r['errors']}: {r['errors_by_kind']}")
    return out


def table(runs):
    head = ("| workers | watchers | submits/s (achieved) | Submit p50 / p99 / max ms "
            "| Get p50 / p99 / max ms | errors | coord CPU % idle → load "
            "| coord RSS MiB start / registered / peak / end | coord threads "
            "| heartbeats | jobs done | load avg before → after |")
    rows = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for run in runs:
        r = run["result"]
        c = r["coordinator"]
        s, g = r["submit_ms"], r["get_ms"]
        achieved = r["submits"] / r["load_wall_s"] if r["load_wall_s"] else 0
        rows.append(
            f"| {r['workers']} ({r['welcomed']} up) | {r['watchers']} "
            f"| {r['submit_rate']:g} ({achieved:.1f}) "
            f"| {s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.1f} "
            f"| {g['p50']:.2f} / {g['p99']:.2f} / {g['max']:.1f} | {r['errors']} "
            f"| {c['idle_cpu_pct']:.1f} → {c['cpu_pct']:.1f} "
            f"| {c['rss_mib_start']:.0f} / {c['rss_mib_registered']:.0f} / "
            f"{c['rss_mib_peak']:.0f} / {c['rss_mib_end']:.0f} | {c['threads_peak']} "
            f"| {r['heartbeats_sent']} | {r['assignments_completed']} "
            f"| {run.get('loadavg_before', '?')} → {run.get('loadavg_after', '?')} |")
    return "\n".join(rows) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--out")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    runs = load(a.results)
    bad = {i: problems(run) for i, run in enumerate(runs)}
    bad = {i: p for i, p in bad.items() if p}
    good = [run for i, run in enumerate(runs) if i not in bad or not any(
        p.startswith("missing") for p in bad[i])]
    text = table(good) if good else "(no runs)\n"
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if a.check:
        if not runs:
            print("control_plane_report: no runs", file=sys.stderr)
            return 1
        for i, p in bad.items():
            print(f"control_plane_report: run {i + 1}: {'; '.join(p)}", file=sys.stderr)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
