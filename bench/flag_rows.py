#!/usr/bin/env python3
"""One table row per LeMo run folder, with the flags that run used: for comparisons that differ
only in a switch (offload policy, GPU budget, head groups), which bench/report.py's table cannot
tell apart (its rows are keyed by system, length and mode only).

Each folder is one `bench/device_long_context.sh` phase (or `bench/gpu_suite.sh` run) of LeMo rows:
its results.jsonl, notes.txt (the line "LeMo flags: ...") and, where the run kept them, the
rows' logs/metrics (*.metrics.jsonl: offloaded layers, pinned host bytes).

    bench/flag_rows.py bench/results/RUN/offload-sparsity-64k bench/results/RUN/offload-uniform-64k

Needs only the standard library (scripts/check-tables runs it).
"""
import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (step_stats, spread_cell, status_cell, gib: the suite's own cells)

HEADER = ("| run | seq | LeMo flags | status | step s | step min-max (n) | alloc GiB "
          "| offloaded layers | pinned GiB |")


def lemo_flags(folder, system=""):
    """The run's LeMo flags (notes.txt "LeMo flags: ..."), and for a system that adds its own
    ("lemo-selective and dense-selective add: ..."), those too."""
    flags, added = "-", ""
    path = os.path.join(folder, "notes.txt")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.startswith("LeMo flags:"):
                    flags = line.split(":", 1)[1].strip()
                elif " add: " in line and system in line.split(" add: ", 1)[0].replace(" and ", " ").split():
                    added = line.split(" add: ", 1)[1].strip()
    return f"{flags} {added}" if added else flags


def last_metrics(folder, seq_len):
    """The last step's metrics of the row at seq_len, or {} where the run kept none."""
    found = {}
    for path in sorted(glob.glob(os.path.join(folder, f"*-{seq_len}-*.metrics.jsonl"))):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    found = json.loads(line)
    return found


def rows(folder):
    out = []
    results = report.load_results(os.path.join(folder, "results.jsonl"))
    for (system, seq_len, mode), r in sorted(results.items(), key=lambda kv: kv[0][1] or 0):
        if not str(system).startswith("lemo"):
            continue
        median = report.step_stats(r)[0]
        metrics = last_metrics(folder, seq_len) if report.ok(r) else {}
        layers = metrics.get("offloaded_layers")
        out.append("| " + " | ".join([
            os.path.basename(os.path.normpath(folder)),
            report.seq_cell(seq_len),
            lemo_flags(folder, str(system)).replace("|", "\\|"),
            report.status_cell(r),
            report.num(median, ".2f"),
            report.spread_cell(r) if report.ok(r) else "-",
            report.gib(r.get("peak_allocated_bytes")) if report.ok(r) else "-",
            str(layers) if isinstance(layers, int) else "-",
            report.gib(metrics.get("offload_host_bytes")),
        ]) + " |")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="run folders (each with results.jsonl, notes.txt)")
    args = p.parse_args(argv)
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for folder in args.folders:
        if not os.path.exists(os.path.join(folder, "results.jsonl")):
            p.error(f"no {folder}/results.jsonl")
        lines += rows(folder)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
