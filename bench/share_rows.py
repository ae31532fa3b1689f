#!/usr/bin/env python3
"""What token elimination alone adds over the dense engine with the same switches (issue 14's
shares): one table row per length, mode and flags, the dense engine's row beside LeMo's, from
bench/gpu_suite.sh run folders whose two systems ran with the same lemo-train flags
(LEMO_BENCH_LEMO_ARGS, in meta.json's command) and the same automatic memory switches (the
`memory:` line each row's log tail begins its run with). The pairs: `lemo` and `lemo-sparse`;
`dense-selective` and `lemo-selective`, `dense-savers` and `lemo-savers`, `dense-2d` and `lemo-2d`
(the same extra flags on both sides, named in the flags column).

    bench/share_rows.py bench/results/RUN/no-ckpt bench/results/RUN/ckpt-64k ...

A (length, mode, flags) pair may come from two folders (a row cut by one call's deadline and
rerun in the next); a later folder's ok row replaces an earlier one's failed row, and the
"folders" column names where each row came from. Step ratios are given at the medians and at the
worst case (LeMo's slowest timed step against dense's fastest), as a target counts only in its
worst run. Needs only the standard library (scripts/check-tables runs it).
"""
import argparse
import glob
import json
import os
import re
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (load_results, step_stats, spread_cell, gib: the suite's own cells)

HEADER = ("| seq | mode | flags (both systems) | memory switches (both) | dense alloc GiB "
          "| LeMo alloc GiB | LeMo / dense alloc | dense step s | dense min-max (n) | LeMo step s "
          "| LeMo min-max (n) | LeMo / dense step | worst case | folders |")


def lemo_args(folder):
    """The lemo-train flags every row of the folder's run had (LEMO_BENCH_LEMO_ARGS), or "-"."""
    return command_var(folder, "LEMO_BENCH_LEMO_ARGS", "-")


def memory_line(folder, system, seq_len, mode):
    """The switches the run chose (its log's `memory:` line, without the prefix), or "-"."""
    for path in glob.glob(os.path.join(folder, f"{system}-{seq_len}-{mode}.log.tail")):
        with open(path) as f:
            for line in f:
                if line.startswith("memory: "):
                    # The mode column says whether checkpointing was on.
                    return re.sub(r"^gradient checkpointing (on|off), ", "",
                                  line[len("memory: "):].strip())
    return "-"


# system -> (its side, the suite's variable holding the pair's extra flags, their default).
PAIRS = {
    "lemo": ("dense", None, ""), "lemo-sparse": ("lemo", None, ""),
    "dense-selective": ("dense", "LEMO_BENCH_SELECTIVE_ARGS", "--recompute-mlp --checkpoint-keep-attention"),
    "lemo-selective": ("lemo", "LEMO_BENCH_SELECTIVE_ARGS", "--recompute-mlp --checkpoint-keep-attention"),
    "dense-savers": ("dense", "LEMO_BENCH_SAVERS_ARGS", "--mlp-prune-ratio 0.8 --recompute-norm"),
    "lemo-savers": ("lemo", "LEMO_BENCH_SAVERS_ARGS", "--mlp-prune-ratio 0.8 --recompute-norm"),
    "dense-2d": ("dense", None, "--lemo-2d"), "lemo-2d": ("lemo", None, "--lemo-2d"),
}


def command_var(folder, name, default, empty_is_default=False):
    """An environment assignment of the run's command (meta.json), else `default`; an empty one
    too where the suite reads the variable with ${VAR:-default}."""
    with open(os.path.join(folder, "meta.json")) as f:
        command = json.load(f).get("command", "")
    for word in shlex.split(command):
        if name and word.startswith(name + "="):
            value = word.split("=", 1)[1]
            return default if empty_is_default and not value else value
    return default


def collect(folders):
    """{(seq, mode, flags): {side: (row, folder, memory line)}}, side "dense" or "lemo"; ok rows
    win over failed ones."""
    pairs = {}
    for folder in folders:
        base = lemo_args(folder)
        results = report.load_results(os.path.join(folder, "results.jsonl"))
        for (system, seq_len, mode), r in results.items():
            if system not in PAIRS:
                continue
            side, var, default = PAIRS[system]
            flags = " ".join(f for f in (base if base != "-" else "", command_var(folder, var, default, empty_is_default=True)) if f)
            slot = pairs.setdefault((seq_len, mode, flags or "-"), {})
            if side in slot and report.ok(slot[side][0]) and not report.ok(r):
                continue
            slot[side] = (r, os.path.basename(os.path.normpath(folder)),
                          memory_line(folder, system, seq_len, mode))
    return pairs


def ratio_cell(a, b, fmt=".2f"):
    return format(a / b, fmt) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "-"


BRIEF_HEADER = ("| seq | checkpointing | flags | dense GiB | LeMo GiB | memory ratio | dense step s "
                "| LeMo step s | step ratio (worst) |")


def brief(line):
    """The README's columns of a full row: no switches, spreads or folders."""
    c = [x.strip() for x in line.strip().strip("|").split(" | ")]
    flags = c[2].replace("--loss-segment-tokens 2048", "").strip() or "-"
    mode = {"ckpt": "yes", "no-ckpt": "no"}.get(c[1], c[1])
    return f"| {c[0]} | {mode} | {flags} | {c[4]} | {c[5]} | {c[6]} | {c[7]} | {c[9]} | {c[11]} ({c[12]}) |"


def rows(pairs):
    out = []
    for (seq_len, mode, flags), slot in sorted(pairs.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
        dense, lemo = slot.get("dense"), slot.get("lemo")
        d, l = (dense or (None,))[0], (lemo or (None,))[0]
        memories = {s[2] for s in (dense, lemo) if s is not None}
        memory = memories.pop() if len(memories) == 1 else " / ".join(sorted(memories))
        d_med, d_lo, _, _ = report.step_stats(d) if report.ok(d) else (None,) * 4
        l_med, _, l_hi, _ = report.step_stats(l) if report.ok(l) else (None,) * 4
        d_alloc = d.get("peak_allocated_bytes") if report.ok(d) else None
        l_alloc = l.get("peak_allocated_bytes") if report.ok(l) else None
        folders = sorted({s[1] for s in (dense, lemo) if s is not None})
        out.append("| " + " | ".join([
            report.seq_cell(seq_len),
            mode or "-",
            flags.replace("|", "\\|") or "-",
            memory.replace("|", "\\|"),
            report.gib(d_alloc) if d_alloc is not None else report.status_cell(d),
            report.gib(l_alloc) if l_alloc is not None else report.status_cell(l),
            ratio_cell(l_alloc, d_alloc),
            f"{d_med:.2f}" if d_med is not None else report.status_cell(d),
            report.spread_cell(d) if d_med is not None else "-",
            f"{l_med:.2f}" if l_med is not None else report.status_cell(l),
            report.spread_cell(l) if l_med is not None else "-",
            ratio_cell(l_med, d_med),
            ratio_cell(l_hi, d_lo),
            ", ".join(folders),
        ]) + " |")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="gpu_suite run folders (results.jsonl, meta.json)")
    p.add_argument("--brief", action="store_true",
                   help="the README's columns: no memory switches, spreads or folders, and the "
                        "suite's default --loss-segment-tokens 2048 left out of the flags")
    args = p.parse_args(argv)
    for folder in args.folders:
        for name in ("results.jsonl", "meta.json"):
            if not os.path.exists(os.path.join(folder, name)):
                p.error(f"no {folder}/{name}")
    header = BRIEF_HEADER if args.brief else HEADER
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    body = rows(collect(args.folders))
    lines += [brief(line) for line in body] if args.brief else body
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
