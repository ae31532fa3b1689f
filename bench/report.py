#!/usr/bin/env python3
"""Markdown table of a benchmark run: lemo-train (dense and LeMo) vs the HF transformers + PEFT peer.

Usage:
  python3 bench/report.py OUT/results.jsonl [--meta OUT/meta.json] [--notes OUT/notes.txt] [--out OUT/table.md]
  python3 bench/report.py --results bench/results/RUN [--table-only]   (a committed run's folder)
  python3 bench/report.py --write-meta OUT/meta.json --command "bash bench/gpu_suite.sh" [--device cuda:0] \
      [--config MODEL/config.json] [--matmul-rate]

results.jsonl holds one object per (system, seq_len, mode), as bench/hf_peer.py and
bench/record_result.py write them; a later line for the same key wins. Systems: peer (HF+PEFT),
peer-strong (HF+PEFT+Liger Kernel, GPU or offloaded checkpointing), lemo (the dense engine) and
the LeMo configurations. The table has a row per seq, mode and system: peak allocated and reserved
GiB, the median step time with the min-max and count of the timed steps (from the raw step_times_s;
rows of older files with only step_s show it with "n ?"), tokens/s at the median, achieved TFLOP/s and its share of the matmul rate measured in the
same run, the ratios to the plain peer, the ratios to the strong peer (only where the results hold
strong-peer rows, so older results files keep their shape), and, for the dense engine, parity as
issue 2 defines it (memory <= the peer's, step <= 1.05x). A failed run shows its status (OOM,
timeout). Issue 5's targets are checked below the table.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import tempfile
import sys

import flops

GIB = 1024 ** 3
STEP_SLACK = 1.05  # issue 2: step time <= 1.05x the peer's
MODES = {"no-ckpt": 0, "ckpt": 1}


def write_meta(path, command, device, config=None, matmul_rate=False):
    from importlib import metadata

    import torch

    def version(pkg):
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    dev = torch.device(device)
    name = "cpu"
    if dev.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(dev)
    commit, tree, dirty = git_identity()
    meta = {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "device": device, "device_name": name, "host": platform.node(),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": version("transformers"), "peft": version("peft"),
            "git_commit": commit, "git_tree": tree, "git_dirty": dirty, "command": command}
    if config:
        with open(config) as f:
            meta["config"] = json.load(f)
    if matmul_rate and dev.type == "cuda" and torch.cuda.is_available():
        meta["matmul_size"] = 8192
        meta["matmul_tflops"] = round(flops.matmul_tflops(device, meta["matmul_size"]), 1)
    with open(path, "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def git_identity():
    """(HEAD commit, tree hash of the files as they are, whether they differ from HEAD).

    The tree hash is computed from the working files through a scratch index, so it names the
    code that ran even where .git is stale (the GPU machine gets the session's working tree with
    the git metadata of an earlier commit): `git rev-parse COMMIT^{tree}` equals it for the
    commit that holds exactly these files."""
    def git(*args, env=None):
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=60,
                              env=env).stdout.strip() or None
    try:
        commit = git("rev-parse", "--short", "HEAD")
        with tempfile.TemporaryDirectory() as scratch:
            env = dict(os.environ, GIT_INDEX_FILE=os.path.join(scratch, "index"))
            git("read-tree", "HEAD", env=env)
            git("add", "-A", ".", env=env)
            tree = git("write-tree", env=env)
        head_tree = git("rev-parse", "HEAD^{tree}")
        return commit, tree, (tree != head_tree) if tree and head_tree else None
    except (OSError, subprocess.SubprocessError):
        return None, None, None


def load_results(path):
    results = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            results[(r.get("system"), r.get("seq_len"), r.get("mode"))] = r
    return results


def ok(r):
    return r is not None and r.get("status") == "ok"


def step_stats(r):
    """(median, min, max, n) of a row's timed steps, from its raw step_times_s. Rows that hold only
    step_s (older files) give it for all three, with n None (unknown)."""
    times = [t for t in (r or {}).get("step_times_s") or [] if isinstance(t, (int, float))]
    if times:
        return statistics.median(times), min(times), max(times), len(times)
    step = (r or {}).get("step_s")
    if isinstance(step, (int, float)):
        return step, step, step, None
    return None, None, None, None


def step_median(r):
    return step_stats(r)[0]


def tokens_per_s(r):
    """tokens/s at the median step: the recorded rate (at step_s) scaled to the median."""
    median, rate, step = step_median(r), r.get("tokens_per_s"), r.get("step_s")
    if not all(isinstance(v, (int, float)) and v > 0 for v in (median, rate, step)):
        return None
    return rate * step / median


def spread_cell(r):
    """min-max of the timed steps and their count: "0.40-0.42 (n=5)"; "(n=1)" for a single
    step; "n ?" where only the best step was recorded."""
    _, lo, hi, n = step_stats(r)
    if lo is None:
        return "-"
    if n is None:
        return "n ?"
    return "(n=1)" if n == 1 else f"{lo:.2f}-{hi:.2f} (n={n})"


def seq_cell(seq_len):
    """A length as the docs write it: 8K for 8192, the plain number below 1K or off the grid."""
    if not isinstance(seq_len, int):
        return "-"
    return f"{seq_len // 1024}K" if seq_len >= 1024 and seq_len % 1024 == 0 else str(seq_len)


def status_cell(r):
    if r is None:
        return "not run"
    return "OOM" if r["status"] == "oom" else r["status"]


def gib(v):
    return f"{v / GIB:.1f}" if isinstance(v, (int, float)) else "-"


def num(v, fmt):
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
        return f"{a / b:.2f}"
    return "-"


SYSTEMS = ("peer", "peer-strong", "lemo", "dense-selective", "dense-savers", "dense-2d", "lemo-sparse",
           "lemo-selective", "lemo-savers", "lemo-2d")
SYSTEM_NAMES = {"peer": "HF+PEFT", "peer-strong": "HF+PEFT+Liger", "lemo": "lemo dense", "lemo-sparse": "lemo LeMo",
                "lemo-selective": "lemo LeMo + selective recompute",
                "lemo-savers": "lemo LeMo + MLP savers", "lemo-2d": "lemo LeMo + S2-Attn (2D)",
                "dense-selective": "lemo dense + selective recompute", "dense-savers": "lemo dense + MLP savers",
                "dense-2d": "lemo dense + S2-Attn (2D)"}
# The LeMo configurations; issue 5's targets are checked for each one that ran.
LEMO_SYSTEMS = ("lemo-sparse", "lemo-selective", "lemo-savers", "lemo-2d")
# Systems whose rows appear only when they ran (older results files keep their shape).
# The dense engine with a LeMo configuration's extra flags (each switch's share without token
# elimination).
DENSE_VARIANTS = ("dense-selective", "dense-savers", "dense-2d")
OPTIONAL_SYSTEMS = LEMO_SYSTEMS + DENSE_VARIANTS + ("peer-strong",)
CKPT_NAMES = {"gpu": "GPU ckpt", "offload": "offloaded ckpt"}


def system_cell(system, r):
    """The row's system name; the strong peer's says which checkpointing ran (auto picks per seq),
    a LeMo row which mode it ran in (predictor, oracle) where the results say, and that it ran the
    oracle because calibrating the predictors failed."""
    name = SYSTEM_NAMES[system]
    if system == "peer-strong" and r is not None and r.get("checkpointing") in CKPT_NAMES:
        name += f" ({CKPT_NAMES[r['checkpointing']]})"
    if system in LEMO_SYSTEMS and r is not None and r.get("lemo_mode"):
        if r.get("calibration") == "failed":
            name += f" ({r['lemo_mode']}: predictor calibration FAILED)"
        else:
            name += f" ({r['lemo_mode']})"
    return name


def flops_cells(r, meta):
    """Achieved model TFLOP/s (bench/flops.py's counting) and its share of the matmul rate."""
    config = (meta or {}).get("config")
    if not ok(r) or not config or not step_median(r):
        return ["-", "-"]
    tflops = flops.step_flops(config, r["seq_len"]) / step_median(r) / 1e12
    rate = (meta or {}).get("matmul_tflops")
    return [f"{tflops:.0f}", f"{100 * tflops / rate:.0f}%" if rate else "-"]


def parity(lemo, peer):
    """Issue 2's bar for the dense engine: memory <= the peer's, step <= 1.05x."""
    if lemo is None or lemo.get("status") == "skipped":
        return "-"
    if not ok(lemo):
        return "no" if ok(peer) else "-"
    if not ok(peer):
        return f"yes (peer {status_cell(peer)})" if peer is not None else "-"
    keys = ("peak_allocated_bytes", "peak_reserved_bytes")
    if any(not isinstance(r.get(k), (int, float)) for r in (lemo, peer) for k in keys):
        return "n/a (no GPU memory)"
    fine = (all(lemo[k] <= peer[k] for k in keys) and step_median(lemo) <= STEP_SLACK * step_median(peer))
    return "yes" if fine else "no"


def row_cells(r, peers, meta):
    """The row's measurements, then allocated and step ratios against each of `peers` in turn."""
    if not ok(r):
        cells = [status_cell(r), "-", "-", "-", "-", "-", "-"]
    else:
        cells = [gib(r.get("peak_allocated_bytes")), gib(r.get("peak_reserved_bytes")),
                 num(step_median(r), ".2f"), spread_cell(r), num(tokens_per_s(r), ",.0f")]
        cells += flops_cells(r, meta)
    for peer in peers:
        both = ok(r) and ok(peer) and r is not peer
        cells.append(ratio(r.get("peak_allocated_bytes"), peer.get("peak_allocated_bytes")) if both else "-")
        cells.append(ratio(step_median(r), step_median(peer)) if both else "-")
    return cells


def longest_ok(results, system, mode):
    seqs = [k[1] for k, r in results.items() if k[0] == system and k[2] == mode and ok(r)]
    return max(seqs) if seqs else None


def targets(results):
    """Issue 5's targets for the LeMo runs, each with what was measured."""
    def r(system, seq, mode):
        return results.get((system, seq, mode))

    def check(label, system, seq, mode, key, bound, peer_system="peer"):
        mine, peer = r(system, seq, mode), r(peer_system, seq, mode)
        if not ok(mine):
            return f"- {label}: not measured (lemo {status_cell(mine)})"
        if not ok(peer):
            return f"- {label}: {peer_system} {status_cell(peer)}; lemo ran ({num(mine.get(key), '.3g')})"
        value = (step_median(mine) / step_median(peer) if key == "step_s" else mine[key] / peer[key])
        return f"- {label}: {value:.2f}x, target <= {bound}x: {'met' if value <= bound else 'MISSED'}"

    out = []
    ran = [s for s in LEMO_SYSTEMS if any(k[0] == s for k in results)]
    strong = any(k[0] == "peer-strong" for k in results)
    peers = [("peer", "peer")] + ([("peer-strong", "strong peer")] if strong else [])
    for system in ran:
        rows = [r for k, r in results.items() if k[0] == system]
        modes = sorted({r["lemo_mode"] for r in rows if r.get("lemo_mode")})
        name = SYSTEM_NAMES[system]
        if any(r.get("calibration") == "failed" for r in rows):
            name += f" ({'/'.join(modes)}: predictor calibration FAILED)"
        elif modes:
            name += f" ({'/'.join(modes)})"
        for peer_system, label in peers:
            out += [check(f"{name}: 8K no-ckpt peak allocated / {label}", system, 8192, "no-ckpt",
                          "peak_allocated_bytes", 0.5, peer_system),
                    check(f"{name}: 32K ckpt step / {label}", system, 32768, "ckpt", "step_s", 0.75,
                          peer_system),
                    check(f"{name}: 64K ckpt step / {label}", system, 65536, "ckpt", "step_s", 0.65,
                          peer_system)]
    for system in ran + ["lemo", "peer"] + (["peer-strong"] if strong else []):
        seq = longest_ok(results, system, "no-ckpt")
        out.append(f"- longest no-ckpt context, {SYSTEM_NAMES[system]}: {seq if seq else 'none'}")
    return out


def table_lines(results, meta):
    """The table's lines (header, separator, a row per seq, mode and system) and the failures'
    messages."""
    strong = any(k[0] == "peer-strong" for k in results)
    out = []
    head = ["seq", "mode", "system", "alloc GiB", "resv GiB", "step s", "step min-max (n)", "tok/s", "TFLOP/s",
            "% matmul", "alloc / peer", "step / peer"]
    if strong:
        head += ["alloc / strong", "step / strong"]
    head.append("issue-2 parity")
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    settings = sorted({(k[1], k[2]) for k in results if k[1] is not None},
                      key=lambda s: (s[0], MODES.get(s[1], 9)))
    errors = []
    for seq, mode in settings:
        peers = [results.get(("peer", seq, mode))]
        if strong:
            peers.append(results.get(("peer-strong", seq, mode)))
        for system in SYSTEMS:
            r = results.get((system, seq, mode))
            if r is None and system in OPTIONAL_SYSTEMS:
                continue  # suites without LeMo or strong-peer runs keep their old shape
            row = [str(seq), mode, system_cell(system, r)] + row_cells(r, peers, meta)
            peer = peers[0]
            row.append(parity(r, peer) if system == "lemo" else "")
            out.append("| " + " | ".join(row) + " |")
            if r is not None and not ok(r) and r.get("error"):
                errors.append(f"- {system} {seq} {mode}: {r['status']}: {r['error']}")
    return out, errors


def render(results, meta, notes):
    out = ["# lemo-train vs HF transformers + PEFT", ""]
    if meta:
        out.append(f"- device: {meta.get('device_name')} ({meta.get('device')}), host {meta.get('host')}")
        out.append(f"- torch {meta.get('torch')} (CUDA {meta.get('cuda')}), transformers "
                   f"{meta.get('transformers')}, peft {meta.get('peft')}; git {meta.get('git_commit')}"
                   f" (tree {meta.get('git_tree')}{', uncommitted changes' if meta.get('git_dirty') else ''})")
        out.append(f"- date: {meta.get('date_utc')}")
        out.append(f"- command: `{meta.get('command')}`")
        if meta.get("matmul_tflops"):
            out.append(f"- measured bf16 matmul rate ({meta.get('matmul_size')}^3, same run): "
                       f"{meta['matmul_tflops']} TFLOP/s")
    peer_any = next((r for r in results.values() if r.get("system") == "peer" and r.get("steps")), None)
    if peer_any:
        out.append(f"- peer: warm-up {peer_any['warmup']} step(s), then {peer_any['steps']} timed; "
                   f"{peer_any.get('dtype')}, attention {peer_any.get('attn_implementation')}, "
                   f"LoRA r={peer_any.get('lora_r')} alpha={peer_any.get('lora_alpha')}")
    strong_any = next((r for r in results.values() if r.get("system") == "peer-strong" and r.get("steps")), None)
    if strong_any:
        out.append(f"- strong peer (HF+PEFT+Liger): Liger Kernel {strong_any.get('liger_kernel')} (RoPE, "
                   "RMSNorm, SwiGLU, fused linear cross-entropy); ckpt mode: per seq GPU checkpointing "
                   "if it fits, else offloaded checkpointing (layer inputs in pinned host memory); "
                   f"same warm-up and timed steps as the peer; allocator {strong_any.get('alloc_conf')}")
    out.append("- step s: the median of the timed steps (lemo: every step after step 1, the warm-up), "
               "with their min-max and count n; tok/s and the ratios use the median; peak = max over all "
               "steps")
    for n in notes:
        out.append(f"- {n}")
    if meta and meta.get("device") == "cpu":
        out.append("- on CPU both memory columns hold the process's peak RSS (the peer's includes "
                   "Python, torch and transformers)")
    strong = any(k[0] == "peer-strong" for k in results)
    against = "the peer (HF+PEFT)" + (" and the strong peer (HF+PEFT+Liger)" if strong else "")
    out += ["", f"GiB = 2^30 bytes. Ratios are against {against} in the same setting (below 1 is "
            "better). TFLOP/s counts model FLOPs as bench/flops.py says (LeMo credited with the dense FLOPs).", ""]
    table, errors = table_lines(results, meta)
    out += table
    if any(k[0] in LEMO_SYSTEMS for k in results):
        out += ["", "Issue 5 targets (LeMo runs against the peers, same run):"] + targets(results)
    if errors:
        out += ["", "Failures:"] + errors
    return "\n".join(out) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="?", help="results.jsonl")
    p.add_argument("--results", dest="results_dir", metavar="DIR",
                   help="a run's folder (bench/results/RUN): its results.jsonl, meta.json and notes.txt")
    p.add_argument("--table-only", action="store_true",
                   help="print only the table (for the docs' generated regions, scripts/check-tables)")
    p.add_argument("--meta", help="meta.json written by --write-meta")
    p.add_argument("--notes", help="text file; each line goes into the header")
    p.add_argument("--out", help="write the table here too")
    p.add_argument("--write-meta", metavar="PATH", help="record device, versions, date and command")
    p.add_argument("--command", default="", help="with --write-meta: the command that ran the suite")
    p.add_argument("--device", default="cuda:0", help="with --write-meta: cuda:N or cpu")
    p.add_argument("--config", help="with --write-meta: the model's config.json (for TFLOP/s)")
    p.add_argument("--matmul-rate", action="store_true",
                   help="with --write-meta: measure the bf16 matmul rate on --device")
    args = p.parse_args(argv)
    if args.write_meta:
        print(json.dumps(write_meta(args.write_meta, args.command, args.device, args.config,
                                    args.matmul_rate)))
        return 0
    if args.results_dir:
        if args.results:
            p.error("give results.jsonl or --results DIR, not both")
        args.results = os.path.join(args.results_dir, "results.jsonl")
        args.meta = args.meta or os.path.join(args.results_dir, "meta.json")
        args.notes = args.notes or os.path.join(args.results_dir, "notes.txt")
        if not os.path.exists(args.results):
            p.error(f"no {args.results}")
    if not args.results:
        p.error("give results.jsonl, --results DIR or --write-meta")
    results = load_results(args.results) if os.path.exists(args.results) else {}
    meta = None
    if args.meta and os.path.exists(args.meta):
        with open(args.meta) as f:
            meta = json.load(f)
    notes = []
    if args.notes and os.path.exists(args.notes):
        with open(args.notes) as f:
            notes = [ln.strip() for ln in f if ln.strip()]
    if args.table_only:
        table = "\n".join(table_lines(results, meta)[0]) + "\n"
    else:
        table = render(results, meta, notes)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
