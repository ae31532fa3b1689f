#!/usr/bin/env python3
"""LeMo's configurations against the HF + PEFT peers (issue 14's peer columns, issue 15's 8K and
64K targets): one row per length, mode and configuration, each ratio taken against the peer rows of
the SAME run folder (a bench/gpu_suite.sh run: one process per system, one after the other on one
GPU), never across folders.

    bench/peer_rows.py bench/results/RUN/peers-8k bench/results/RUN/peers-64k ...
    bench/peer_rows.py --peers FOLDER ...   # each peer's runs over the folders, and their spread

Two peers: HF transformers + PEFT with HF's own loss ("HF+PEFT", `peer`) and the strong peer with
Liger Kernel's fused linear cross-entropy ("strong", `peer-strong`). When the same configuration
and its strong peer ran in several folders (a repeat, as issue 14 asks of headline ratios), the
row pools them: memory is the largest peak of any run, the step median is over every timed step of
every run, and the worst case is the largest of the runs' worst cases (the configuration's slowest
timed step over its strong peer's fastest in the same run); "runs" counts them. A target counts
only in its worst case. Needs only the standard library (scripts/check-tables runs it).
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (load_results, step_stats, status_cell, gib)

CONFIGS = ("lemo", "dense-selective", "dense-savers", "dense-2d", "lemo-sparse", "lemo-selective",
           "lemo-savers", "lemo-2d")
NAMES = {"lemo": "dense engine", "dense-selective": "dense + selective", "dense-savers": "dense + MLP savers",
         "dense-2d": "dense + 2D", "lemo-sparse": "LeMo", "lemo-selective": "LeMo + selective",
         "lemo-savers": "LeMo + MLP savers", "lemo-2d": "LeMo + 2D"}
HEADER = ("| seq | checkpointing | configuration | GiB | HF+PEFT GiB | strong GiB | memory / strong "
          "(worst) | step s | HF+PEFT step s | strong step s | step / HF+PEFT | step / strong "
          "(worst) | runs |")


def collect(folders):
    """{(seq, mode, config): [(config row, peer row or None, strong row or None)]}, one entry
    per folder in which the configuration ran."""
    out = {}
    for folder in folders:
        results = report.load_results(os.path.join(folder, "results.jsonl"))
        for (system, seq_len, mode), r in results.items():
            if system not in CONFIGS:
                continue
            out.setdefault((seq_len, mode, system), []).append(
                (r, results.get(("peer", seq_len, mode)), results.get(("peer-strong", seq_len, mode))))
    return out


def times(rows):
    return [t for r in rows if report.ok(r) for t in (r.get("step_times_s") or [])
            if isinstance(t, (int, float))]


def alloc(rows):
    """The largest peak of the ok rows, or None."""
    peaks = [r.get("peak_allocated_bytes") for r in rows if report.ok(r)]
    peaks = [p for p in peaks if isinstance(p, (int, float))]
    return max(peaks) if peaks else None


def cell_gib(rows):
    """A memory cell: the largest peak, else the first row's status ("OOM", "killed", ...)."""
    peak = alloc(rows)
    if peak is not None:
        return report.gib(peak)
    present = [r for r in rows if r is not None]
    return report.status_cell(present[0] if present else None)


def cell_step(rows):
    t = times(rows)
    return f"{statistics.median(t):.2f}" if t else "-"


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "-"


def worst(entries, mem):
    """The largest per-run ratio against the strong peer of the same run (memory or step)."""
    ratios = []
    for r, _, strong in entries:
        if not (report.ok(r) and report.ok(strong)):
            continue
        if mem:
            a, b = r.get("peak_allocated_bytes"), strong.get("peak_allocated_bytes")
        else:
            a, b = max(times([r]) or [None]), min(times([strong]) or [None])
        if a is not None and b:
            ratios.append(a / b)
    return max(ratios) if ratios else None


def row(key, entries):
    seq_len, mode, config = key
    mine = [e[0] for e in entries]
    peers = [e[1] for e in entries]
    strongs = [e[2] for e in entries]
    t_mine, t_peer, t_strong = times(mine), times(peers), times(strongs)
    med = lambda t: statistics.median(t) if t else None  # noqa: E731
    mem_worst, step_worst = worst(entries, mem=True), worst(entries, mem=False)
    runs = sum(1 for r, _, s in entries if report.ok(r) and report.ok(s))
    return "| " + " | ".join([
        report.seq_cell(seq_len),
        {"ckpt": "yes", "no-ckpt": "no"}.get(mode, mode or "-"),
        NAMES[config],
        cell_gib(mine), cell_gib(peers), cell_gib(strongs),
        ratio(alloc(mine), alloc(strongs)) + (f" ({mem_worst:.2f})" if mem_worst is not None else ""),
        cell_step(mine), cell_step(peers), cell_step(strongs),
        ratio(med(t_mine), med(t_peer)),
        ratio(med(t_mine), med(t_strong)) + (f" ({step_worst:.2f})" if step_worst is not None else ""),
        str(runs) if runs else "-",
    ]) + " |"


def rows(collected):
    order = {c: i for i, c in enumerate(CONFIGS)}
    keys = sorted(collected, key=lambda k: (k[1] != "no-ckpt", k[0], order[k[2]]))
    return [row(k, collected[k]) for k in keys]


PEERS = {"peer": "HF+PEFT", "peer-strong": "strong"}
PEER_HEADER = ("| seq | checkpointing | peer | runs | GiB (each run) | step s, median (each run) | "
               "spread of the run medians |")


def peer_spread(folders):
    """--peers: each peer's rows over every folder it ran in, so the spread between processes (not
    only within one) is shown: one line per (seq, mode, peer), the runs in the folders' order."""
    found = {}
    for folder in folders:
        results = report.load_results(os.path.join(folder, "results.jsonl"))
        for (system, seq_len, mode), r in results.items():
            if system in PEERS and report.ok(r) and times([r]):
                found.setdefault((seq_len, mode, system), []).append(r)
    out = []
    for key in sorted(found, key=lambda k: (k[1] != "no-ckpt", k[0], k[2])):
        seq_len, mode, system = key
        runs = found[key]
        medians = [statistics.median(times([r])) for r in runs]
        spread = (max(medians) - min(medians)) / statistics.median(medians) if len(runs) > 1 else None
        out.append("| " + " | ".join([
            report.seq_cell(seq_len), {"ckpt": "yes", "no-ckpt": "no"}.get(mode, mode or "-"),
            PEERS[system], str(len(runs)), ", ".join(cell_gib([r]) for r in runs),
            ", ".join(f"{m:.2f}" for m in medians),
            f"{100 * spread:.1f}%" if spread is not None else "-"]) + " |")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="gpu_suite run folders (results.jsonl)")
    p.add_argument("--peers", action="store_true",
                   help="instead: each peer's runs over the folders, with their spread")
    args = p.parse_args(argv)
    for folder in args.folders:
        if not os.path.exists(os.path.join(folder, "results.jsonl")):
            p.error(f"no {folder}/results.jsonl")
    header = PEER_HEADER if args.peers else HEADER
    body = peer_spread(args.folders) if args.peers else rows(collect(args.folders))
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"] + body
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
