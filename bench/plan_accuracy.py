#!/usr/bin/env python3
"""The planner's accuracy on every committed GPU benchmark row of the engine (issue 19).

For each lemo-train row under bench/results/ (systems lemo, lemo-sparse, lemo-selective, ...;
status ok with a peak and a step time, or status oom), this derives the settings the row ran
with, from committed files only:
  - the model: meta.json's "config" (the folder's, or the nearest one above or beside it), else
    the llama2-7b preset every GPU row so far used;
  - the device: meta.json's device_name (H100 -> h100-80gb, H200 -> h200-141gb), else the
    folder's path (h100 / h200 in a folder name);
  - the flags: gradient checkpointing from the row's mode, meta.json's LEMO_BENCH_LEMO_ARGS,
    notes.txt's "LeMo flags:" (LEMO_BENCH_SPARSE_ARGS as the suite resolved it) and
    "lemo-selective adds:" lines, and the switches the engine chose as its log says
    ("memory: gradient checkpointing on, offload sparsity (GPU budget auto), tiles 16384 ...",
    in <system>-<seq>-<mode>.log.tail) where the folder kept the log;
runs `lemo-plan` (bench/plan/, torch-free) with them, and keeps one line per row in
bench/plan/plan.jsonl: the row's key, the flags, the predicted peak, time and verdict.

    bench/plan_accuracy.py --write --lemo-plan build/bin/lemo-plan   # re-plan every row
    bench/plan_accuracy.py --check --lemo-plan build/bin/lemo-plan   # exit 1 if plan.jsonl is stale
    bench/plan_accuracy.py                                           # the markdown table

The table (the default) reads only committed files (results and plan.jsonl), so
scripts/check-tables rebuilds it in CI without a build; the ctest `plan_accuracy_current`
runs --check, so a planner change that moves a prediction, or a new results folder, fails
until plan.jsonl is rewritten. New folders under bench/results/ are picked up by themselves.
Needs only the standard library.
"""
import argparse
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (step_median: the suite's own median of the timed steps)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
PLAN = os.path.join(ROOT, "bench", "plan", "plan.jsonl")
GIB = 1024 ** 3
# The suite's defaults when a folder's notes do not say (bench/gpu_suite.sh).
DEFAULT_SELECTIVE = "--recompute-mlp --checkpoint-keep-attention"
# Flags of lemo-train finetune that lemo-plan takes, with whether each takes a value; any other
# flag in a row's command (paths, --lemo-predictors DIR, ...) does not change the plan.
PLAN_FLAGS = {
    "--gradient-checkpointing": False, "--checkpoint-keep-attention": False,
    "--recompute-mlp": False, "--recompute-norm": False, "--lemo-2d": False,
    "--offload": True, "--offload-gpu-budget-gib": True, "--tile-tokens": True,
    "--attention-head-groups": True, "--loss-segment-tokens": True, "--lemo-mode": True,
    "--lemo-keep-ratios": True, "--mlp-prune-ratio": True, "--lora-r": True,
    "--lora-targets": True, "--batch-size": True, "--dtype": True,
}


def rel(path):
    return os.path.relpath(path, RESULTS)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def rows_of(folder):
    out = []
    path = os.path.join(folder, "results.jsonl")
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def nearest_meta(folder):
    """The folder's meta.json, else the nearest one above it (inside bench/results), else one
    beside it (the same device call's sibling folders)."""
    d = folder
    while os.path.abspath(d).startswith(os.path.abspath(RESULTS)) and d != RESULTS:
        meta = read_json(os.path.join(d, "meta.json"))
        if meta:
            return meta
        d = os.path.dirname(d)
    for sibling in sorted(glob.glob(os.path.join(os.path.dirname(folder), "*", "meta.json"))):
        meta = read_json(sibling)
        if meta:
            return meta
    return {}


def notes_line(folder, prefix):
    path = os.path.join(folder, "notes.txt")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            if line.startswith(prefix):
                # Hand-written notes may add a parenthesis about other rows: not flags.
                return line[len(prefix):].split("(")[0].strip()
    return None


def env_of(command, name):
    """A VAR='value' assignment's value in a meta.json command, or None."""
    for word in shlex.split(command or ""):
        if word.startswith(name + "="):
            return word[len(name) + 1:]
    return None


def keep_plan_flags(words):
    out, i = [], 0
    while i < len(words):
        w = words[i]
        if w in PLAN_FLAGS:
            if PLAN_FLAGS[w] and i + 1 < len(words):
                out += [w, words[i + 1]]
                i += 2
                continue
            if not PLAN_FLAGS[w]:
                out.append(w)
        i += 1
    return out


def memory_line_flags(line):
    """The engine's own account of its switches ("memory: ..." in a row's log) as flags."""
    out = []
    m = re.search(r"offload (\w+) \(GPU budget ([^)]+)\)", line)
    if m:
        out += ["--offload", m.group(1)]
        budget = m.group(2).replace("GiB", "").strip()
        out += ["--offload-gpu-budget-gib", "-1" if budget == "auto" else budget]
    m = re.search(r"(?:MLP )?tiles (\d+) tokens", line)
    if m:
        out += ["--tile-tokens", m.group(1)]
    elif re.search(r"tiles off", line):
        out += ["--tile-tokens", "0"]
    m = re.search(r"attention head groups (\d+)", line)
    if m:
        out += ["--attention-head-groups", m.group(1)]
    elif "tiles" in line:
        # Logs from before head groups existed: attention ran whole.
        out += ["--attention-head-groups", "0"]
    return out


def recorded_budget(folder, row, config, words):
    """Where the engine chose the offload budget itself (GPU budget auto) and the row's metrics
    record the plan it made (offload_host_bytes of the last step), the budget that plan implies,
    as --offload-gpu-budget-gib: the automatic reserve changed between runs (16 layer inputs in
    the 2026-12-06 H100 runs, 18 since; worker/engine/train/offload.h), and the planner models
    the current engine. Rows without metrics plan with the automatic budget."""
    budget = None
    for i, w in enumerate(words):
        if w == "--offload-gpu-budget-gib" and i + 1 < len(words):
            budget = float(words[i + 1])
    if row.get("mode") != "ckpt" or (budget is not None and budget >= 0):
        return []
    path = row_file(folder, row, (".metrics.jsonl",))
    if path is None:
        return []
    host = None
    with open(path) as f:
        for line in f:
            if line.strip():
                m = json.loads(line)
                if "offload_host_bytes" in m:
                    host = m["offload_host_bytes"]
    if host is None:
        return []
    layers = config.get("num_hidden_layers", 32)
    hidden = config.get("hidden_size", 4096)
    total = layers * row["seq_len"] * hidden * 2  # bf16 layer inputs, batch 1 (the suite's)
    return ["--offload-gpu-budget-gib", f"{(total - host) / GIB:.6f}"]


def device_of(meta, folder):
    name = (meta.get("device_name") or "").upper()
    if "H200" in name or (not name and "h200" in rel(folder)):
        return "h200-141gb"
    if "H100" in name or (not name and "h100" in rel(folder)):
        return "h100-80gb"
    return None


def derive(folder, row):
    """(lemo-plan arguments, the model config or None, the device name) for one row."""
    meta = nearest_meta(folder)
    system, seq, mode = row["system"], row["seq_len"], row.get("mode")
    words = []
    if mode == "ckpt":
        words.append("--gradient-checkpointing")
    words += shlex.split(env_of(meta.get("command"), "LEMO_BENCH_LEMO_ARGS") or "")
    if system != "lemo":
        sparse = notes_line(folder, "LeMo flags:")
        if sparse is None:
            sparse = env_of(meta.get("command"), "LEMO_BENCH_SPARSE_ARGS") or "--lemo-mode oracle"
        words += shlex.split(sparse)
        if row.get("lemo_mode"):
            words += ["--lemo-mode", row["lemo_mode"]]
    if system == "lemo-selective":
        words += shlex.split(notes_line(folder, "lemo-selective adds:") or DEFAULT_SELECTIVE)
    log = row_file(folder, row, (".log.tail", ".log"))
    if log:
        with open(log, errors="replace") as f:
            for line in f:
                if line.startswith("memory: "):
                    words += memory_line_flags(line)
                    break
    words += recorded_budget(folder, row, meta.get("config") or {}, words)
    flags = keep_plan_flags(words)
    # The last of a repeated flag wins, as in lemo-train's parser.
    merged, seen = [], {}
    i = 0
    while i < len(flags):
        w = flags[i]
        value = flags[i + 1] if PLAN_FLAGS[w] else None
        seen[w] = value
        i += 2 if PLAN_FLAGS[w] else 1
    for w, value in seen.items():
        merged += [w] if value is None else [w, value]
    return ["--seq-len", str(seq)] + merged, meta.get("config"), device_of(meta, folder)


def row_file(folder, row, suffixes):
    """The row's own log or metrics file (<system>-<seq>-<mode><suffix>, in the folder or in its
    logs/ as gpu_suite.sh leaves them), or None."""
    name = f"{row['system']}-{row['seq_len']}-{row['mode']}"
    for where in (folder, os.path.join(folder, "logs")):
        for suffix in suffixes:
            path = os.path.join(where, name + suffix)
            if os.path.exists(path):
                return path
    return None


def has_logs(folder, row):
    return row_file(folder, row, (".metrics.jsonl", ".log.tail", ".log")) is not None


def planned_rows():
    """[(key, folder, row)] for every engine row under bench/results/, duplicates left out (a
    folder such as grid/ that collects rows of its siblings repeats their numbers; the copy whose
    folder kept the row's log and metrics is the one planned)."""
    out, seen = [], {}
    for path in sorted(glob.glob(os.path.join(RESULTS, "**", "results.jsonl"), recursive=True)):
        folder = os.path.dirname(path)
        for row in rows_of(folder):
            system = str(row.get("system") or "")
            if not system.startswith("lemo") or not row.get("seq_len") or not row.get("mode"):
                continue
            status = row.get("status")
            if status == "ok" and not (row.get("peak_allocated_bytes") and row.get("step_s")):
                continue
            if status not in ("ok", "oom"):
                continue
            key = {"folder": rel(folder), "system": system, "seq": row["seq_len"],
                   "mode": row["mode"]}
            same = (system, row["seq_len"], row["mode"], status, row.get("peak_allocated_bytes"),
                    row.get("step_s"))
            if status == "ok" and same in seen:
                i = seen[same]
                if not has_logs(out[i][1], out[i][2]) and has_logs(folder, row):
                    out[i] = (key, folder, row)
                continue
            seen[same] = len(out)
            out.append((key, folder, row))
    return out


def plan_all(lemo_plan):
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for key, folder, row in planned_rows():
            args, config, device = derive(folder, row)
            line = dict(key)
            line["args"] = args
            if device is None:
                line["error"] = "no device named in meta.json or the folder's path"
                lines.append(line)
                continue
            model = ["--preset", "llama2-7b"]
            if config:
                cfg = os.path.join(tmp, "config.json")
                with open(cfg, "w") as f:
                    json.dump(config, f)
                model = ["--config", cfg]
            res = subprocess.run([lemo_plan, *model, "--gpu", device, *args],
                                 capture_output=True, text=True, timeout=60)
            line["device"] = device
            line["model"] = "config" if config else "llama2-7b"
            if res.returncode != 0:
                line["error"] = res.stderr.strip()
            else:
                plan = json.loads(res.stdout)
                line.update({"peak_gpu_bytes": plan["peak_gpu_bytes"],
                             "step_seconds": round(plan["step_seconds"], 3),
                             "pinned_host_bytes": plan["pinned_host_bytes"],
                             "offloaded_layers": plan["offloaded_layers"],
                             "fits": plan["fits"], "verdict": plan["verdict"]})
            lines.append(line)
    return "".join(json.dumps(l, sort_keys=True) + "\n" for l in lines)


def committed_plan():
    out = {}
    if os.path.exists(PLAN):
        with open(PLAN) as f:
            for line in f:
                if line.strip():
                    p = json.loads(line)
                    out[(p["folder"], p["system"], p["seq"], p["mode"])] = p
    return out


def pct(pred, meas):
    return 100.0 * (pred - meas) / meas


# The planner predicts a steady step. A row whose only timed step was its process's first one
# (record_result.py's "warm-up not skipped" warning) also holds one-time start-up, which the
# H100 grid measured at 0.1-1.9 s per process (its first step minus the median of the steps
# after the 2 warm-ups: bench/results/2026-12-06-h100-grid/*/*.metrics.jsonl). Where that could
# be more than the 25% tolerance of the predicted step, the row cannot test the time
# prediction: it is shown, marked, and not counted.
FIRST_STEP_STARTUP_MAX_S = 1.9


def first_step_only(row):
    return "warm-up not skipped" in str(row.get("warning") or "")


def table():
    plans = committed_plan()
    ooms = []
    lines = ["| folder | system | seq | mode | device | measured GiB | predicted GiB | error "
             "| within 10% | measured step s | predicted s | error | within 25% |",
             "|---|---|---:|---|---|---:|---:|---:|---|---:|---:|---:|---|"]
    n_mem = n_mem_ok = n_time = n_time_ok = n_uncomparable = 0
    for key, folder, row in planned_rows():
        p = plans.get((key["folder"], key["system"], key["seq"], key["mode"]))
        head = f"| {key['folder']} | {key['system']} | {report.seq_cell(key['seq'])} | {key['mode']} "
        if p is None or "error" in p:
            why = "not planned: run bench/plan_accuracy.py --write" if p is None else p["error"]
            lines.append(head + f"| - | {why} | | | | | | | |")
            continue
        if row.get("status") == "oom":
            verdict = "fits" if p["fits"] else "does not fit"
            ooms.append(f"| {key['folder']} | {key['system']} | {report.seq_cell(key['seq'])} "
                        f"| {key['mode']} | {p['device']} | {p['peak_gpu_bytes'] / GIB:.1f} "
                        f"| {verdict} |")
            continue
        meas_mem, meas_t = row["peak_allocated_bytes"], report.step_median(row)
        em, et = pct(p["peak_gpu_bytes"], meas_mem), pct(p["step_seconds"], meas_t)
        n_mem += 1
        n_mem_ok += abs(em) <= 10
        comparable = not (first_step_only(row) and
                          FIRST_STEP_STARTUP_MAX_S > 0.25 * p["step_seconds"])
        if comparable:
            n_time += 1
            n_time_ok += abs(et) <= 25
            verdict_t = "yes" if abs(et) <= 25 else "**no**"
        else:
            n_uncomparable += 1
            verdict_t = "not comparable: first step only"
        lines.append(head + f"| {p['device']} | {meas_mem / GIB:.1f} | "
                     f"{p['peak_gpu_bytes'] / GIB:.1f} | {em:+.1f}% | "
                     f"{'yes' if abs(em) <= 10 else '**no**'} | {meas_t:.2f} | "
                     f"{p['step_seconds']:.2f} | {et:+.1f}% | {verdict_t} |")
    lines.append("")
    lines.append(f"Peak memory within 10%: {n_mem_ok} of {n_mem} rows; step time within 25%: "
                 f"{n_time_ok} of {n_time} rows"
                 + (f" ({n_uncomparable} more whose only timed step was a process's first, "
                    f"where start-up of up to {FIRST_STEP_STARTUP_MAX_S} s is more than 25% "
                    "of the predicted step: not counted)" if n_uncomparable else "") + ".")
    if ooms:
        lines += ["", "Rows that ran out of memory, and what the planner says of the same "
                  "settings on today's engine:", "",
                  "| folder | system | seq | mode | device | predicted GiB | verdict |",
                  "|---|---|---:|---|---|---:|---|"] + ooms
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="re-plan every row into plan.jsonl")
    p.add_argument("--check", action="store_true", help="exit 1 if plan.jsonl is stale")
    p.add_argument("--lemo-plan", help="the lemo-plan binary (for --write and --check)")
    args = p.parse_args(argv)
    if args.write or args.check:
        if not args.lemo_plan:
            p.error("--write and --check need --lemo-plan PATH")
        fresh = plan_all(args.lemo_plan)
        if args.write:
            with open(PLAN, "w") as f:
                f.write(fresh)
            print(f"wrote {os.path.relpath(PLAN, ROOT)} ({fresh.count(chr(10))} rows)")
            return 0
        old = ""
        if os.path.exists(PLAN):
            with open(PLAN) as f:
                old = f.read()
        if old != fresh:
            import difflib
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(True), fresh.splitlines(True), "committed plan.jsonl",
                "lemo-plan now"))
            print("bench/plan/plan.jsonl is stale: run bench/plan_accuracy.py --write "
                  "--lemo-plan BUILD/bin/lemo-plan and commit it (and scripts/check-tables "
                  "--write for docs/benchmarks.md)", file=sys.stderr)
            return 1
        print(f"plan.jsonl is current ({fresh.count(chr(10))} rows)")
        return 0
    sys.stdout.write(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
