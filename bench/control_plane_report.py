#!/usr/bin/env python3
"""Markdown tables of a control-plane benchmark run (bench/control_plane.sh).

Usage:
  python3 bench/control_plane_report.py OUT/results.jsonl [--out OUT/table.md] [--check]
      [--phase load|retention]

results.jsonl holds one object per run: {"phase", "date", "loadavg_before", "loadavg_after",
"coordinator_flags", "result"}, where result is lemo-cp-bench's JSON line (a line without
"phase" is a load run, as issue 3's files). Prints the load table, then the retention table
(only the one named with --phase).

With --check the exit code is 1 unless there is at least one run and every run is well-formed
and clean: a load run with submits > 0, gets > 0, completed assignments > 0 and errors == 0; a
retention run that finished every job it asked for with errors == 0, and, when the coordinator
ran with --retain-finished-jobs R and the run finished at least 10 R jobs, whose RSS stayed
bounded (see bounded()). That is the smoke test's guard against the benchmark rotting and the
full run's verdict. Latency is never checked. --require-tls adds: every run had TLS and tokens
on (lemo-cp-bench's "tls" and "tokens").
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


# Fields of a retention run.
REQUIRED_RETENTION = ("jobs", "finished", "wall_s", "jobs_per_s", "errors", "errors_by_kind",
                      "coordinator", "rss_at", "rss_samples")

# RSS may grow this much from half of the jobs to all of them and still count as bounded: the
# allocator and SQLite's page cache settle, but a coordinator that keeps every finished job
# grows by the size of the jobs it holds (about 1-2 KiB each).
BOUND_SLACK_MIB = 8
BOUND_SLACK_FRACTION = 0.10


def phase(run):
    return run.get("phase", "load")


def retain_flag(run):
    """The --retain-finished-jobs value the coordinator ran with, or None."""
    for f in run.get("coordinator_flags", []):
        if f.startswith("--retain-finished-jobs="):
            return int(f.split("=", 1)[1])
    return None


def bounded(r):
    """(bounded?, growth MiB) from the RSS at half of the jobs to the RSS at all of them."""
    at = {m["finished"]: m["rss_mib"] for m in r["rss_at"]}
    half, full = at.get(max(1, r["jobs"] // 2)), at.get(r["jobs"])
    if half is None or full is None:
        return None, None
    growth = full - half
    return growth <= max(BOUND_SLACK_MIB, BOUND_SLACK_FRACTION * half), growth


def retention_problems(run):
    r = run.get("result", {})
    out = [f"missing {k}" for k in REQUIRED_RETENTION if k not in r]
    if out:
        return out
    if r["finished"] != r["jobs"]:
        out.append(f"finished {r['finished']} of {r['jobs']} jobs")
    if r["errors"] != 0:
        out.append(f"errors {r['errors']}: {r['errors_by_kind']}")
    ok, growth = bounded(r)
    retain = retain_flag(run)
    if ok is None:
        out.append("no RSS at half and at all of the jobs")
    elif retain is not None and r["jobs"] >= 10 * retain and not ok:
        out.append(f"RSS grew {growth:.1f} MiB from {r['jobs'] // 2} to {r['jobs']} finished "
                   f"jobs with --retain-finished-jobs={retain}: not bounded")
    return out


def problems(run):
    if phase(run) == "retention":
        return retention_problems(run)
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


def security(r):
    if "tls" not in r:
        return "off"
    return "+".join([x for x, on in (("TLS", r["tls"]), ("tokens", r["tokens"])) if on]) or "off"


def peak_open(r):
    peak = r["watch"].get("peak_open")
    return "" if peak is None else f" ({peak} at once)"


def retention_table(runs):
    head = ("| jobs finished (asked) | jobs/s | TLS, tokens | --retain-finished-jobs "
            "| coord RSS MiB start / at 10% / 50% / 100% of the jobs / peak "
            "| RSS growth 50% → 100% | bounded | coord CPU % | errors | load avg before → after |")
    rows = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for run in runs:
        r = run["result"]
        c = r["coordinator"]
        at = {m["finished"]: m["rss_mib"] for m in r["rss_at"]}
        marks = [max(1, r["jobs"] // 10), max(1, r["jobs"] // 2), r["jobs"]]
        rss = " / ".join(f"{at[m]:.0f}" if m in at else "–" for m in marks)
        ok, growth = bounded(r)
        retain = retain_flag(run)
        verdict = "–" if ok is None else ("yes" if ok else "no")
        rows.append(
            f"| {r['finished']:,} ({r['jobs']:,}) | {r['jobs_per_s']:.0f} | {security(r)} "
            f"| {retain if retain is not None else 'not in this build (keeps every job)'} "
            f"| {c['rss_mib_start']:.0f} / {rss} / {c['rss_mib_peak']:.0f} "
            f"| {'–' if growth is None else f'{growth:+.1f} MiB'} | {verdict} "
            f"| {c['cpu_pct']:.0f} | {r['errors']} "
            f"| {run.get('loadavg_before', '?')} → {run.get('loadavg_after', '?')} |")
    return "\n".join(rows) + "\n"


def curve_table(runs):
    """RSS as the finished jobs pile up: the sample nearest each tenth of a retention run's jobs."""
    rows = []
    for run in runs:
        r = run["result"]
        samples = sorted(r["rss_samples"] + r["rss_at"], key=lambda x: x["finished"])
        if not samples:
            continue
        cols = []
        for k in range(1, 11):
            want = r["jobs"] * k // 10
            near = min(samples, key=lambda x: abs(x["finished"] - want))
            cols.append((near["finished"], near["t_s"], near["rss_mib"]))
        if not rows:
            rows = ["| finished jobs | " + " | ".join(f"{f:,}" for f, _, _ in cols) + " |",
                    "|---" * (len(cols) + 1) + "|"]
        rows.append(f"| coord RSS MiB (--retain-finished-jobs {retain_flag(run) or 'absent'}) | "
                    + " | ".join(f"{m:.0f}" for _, _, m in cols) + " |")
        rows.append("| seconds since the phase began | "
                    + " | ".join(f"{t:.0f}" for _, t, _ in cols) + " |")
    return "\n".join(rows) + "\n" if rows else ""


def table(runs):
    head = ("| workers | watchers | TLS, tokens | submits/s (achieved) | Submit p50 / p99 / max ms "
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
            f"| {r['workers']} ({r['welcomed']} up) | {r['watchers']}{peak_open(r)} | {security(r)} "
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
    ap.add_argument("--require-tls", action="store_true",
                    help="with --check: every run must have had TLS and tokens on")
    ap.add_argument("--phase", choices=("load", "retention", "retention-curve"),
                    help="print only this phase's table (retention-curve: RSS at each tenth of "
                         "the retention run's jobs, printed only when named)")
    a = ap.parse_args()
    runs = load(a.results)
    bad = {i: problems(run) for i, run in enumerate(runs)}
    if a.require_tls:
        for i, run in enumerate(runs):
            r = run.get("result", {})
            if not (r.get("tls") and r.get("tokens")):
                bad[i].append("TLS and tokens were not both on")
    bad = {i: p for i, p in bad.items() if p}
    good = [run for i, run in enumerate(runs) if i not in bad or not any(
        p.startswith("missing") for p in bad[i])]
    parts = []
    for name, make in (("load", table), ("retention", retention_table)):
        these = [run for run in good if phase(run) == name]
        if these and a.phase in (None, name):
            parts.append(make(these))
    if a.phase == "retention-curve":
        parts = [curve_table([run for run in good if phase(run) == "retention"])]
    text = "\n".join(parts) if parts else "(no runs)\n"
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
