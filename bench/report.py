#!/usr/bin/env python3
"""Markdown table of a benchmark run: lemo-train vs the HF transformers + PEFT peer.

Usage:
  python3 bench/report.py OUT/results.jsonl [--meta OUT/meta.json] [--notes OUT/notes.txt] [--out OUT/table.md]
  python3 bench/report.py --write-meta OUT/meta.json --command "bash bench/gpu_suite.sh" [--device cuda:0]

results.jsonl holds one object per (system, seq_len, mode), as bench/hf_peer.py and
bench/record_result.py write them; a later line for the same key wins. The table has, per seq
and mode, each system's peak allocated and reserved GiB, best step time and tokens/s, the
lemo/peer ratios, and parity as issue 2 defines it: lemo's peak allocated and reserved memory
<= the peer's and its step time <= 1.05x the peer's. A failed run shows its status (OOM, timeout).
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

GIB = 1024 ** 3
STEP_SLACK = 1.05  # issue 2: step time <= 1.05x the peer's
MODES = {"no-ckpt": 0, "ckpt": 1}


def write_meta(path, command, device):
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
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    meta = {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "device": device, "device_name": name, "host": platform.node(),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": version("transformers"), "peft": version("peft"),
            "git_commit": commit, "command": command}
    with open(path, "w") as f:
        json.dump(meta, f, indent=1)
    return meta


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


def system_cells(r):
    if not ok(r):
        return [status_cell(r), "-", "-", "-"]
    return [gib(r.get("peak_allocated_bytes")), gib(r.get("peak_reserved_bytes")),
            num(r.get("step_s"), ".2f"), num(r.get("tokens_per_s"), ",.0f")]


def parity(lemo, peer):
    if lemo is None or lemo.get("status") == "skipped":
        return "-"
    if not ok(lemo):
        return "no" if ok(peer) else "-"
    if not ok(peer):
        return f"yes (peer {status_cell(peer)})" if peer is not None else "-"
    keys = ("peak_allocated_bytes", "peak_reserved_bytes")
    if any(not isinstance(r.get(k), (int, float)) for r in (lemo, peer) for k in keys):
        return "n/a (no GPU memory)"
    fine = (all(lemo[k] <= peer[k] for k in keys) and lemo["step_s"] <= STEP_SLACK * peer["step_s"])
    return "yes" if fine else "no"


def render(results, meta, notes):
    out = ["# lemo-train vs HF transformers + PEFT", ""]
    if meta:
        out.append(f"- device: {meta.get('device_name')} ({meta.get('device')}), host {meta.get('host')}")
        out.append(f"- torch {meta.get('torch')} (CUDA {meta.get('cuda')}), transformers "
                   f"{meta.get('transformers')}, peft {meta.get('peft')}; git {meta.get('git_commit')}")
        out.append(f"- date: {meta.get('date_utc')}")
        out.append(f"- command: `{meta.get('command')}`")
    peer_any = next((r for r in results.values() if r.get("system") == "peer" and r.get("steps")), None)
    if peer_any:
        out.append(f"- peer: warm-up {peer_any['warmup']} step(s), then best of {peer_any['steps']}; "
                   f"{peer_any.get('dtype')}, attention {peer_any.get('attn_implementation')}, "
                   f"LoRA r={peer_any.get('lora_r')} alpha={peer_any.get('lora_alpha')}")
    out.append("- lemo: best step after step 1 (warm-up); peak = max over all steps")
    for n in notes:
        out.append(f"- {n}")
    if meta and meta.get("device") == "cpu":
        out.append("- on CPU both memory columns hold the process's peak RSS (the peer's includes "
                   "Python, torch and transformers)")
    out += ["", "GiB = 2^30 bytes. Ratios are lemo / peer (below 1 is better for lemo).", ""]
    head = ["seq", "mode", "lemo alloc GiB", "lemo resv GiB", "lemo step s", "lemo tok/s",
            "peer alloc GiB", "peer resv GiB", "peer step s", "peer tok/s",
            "alloc ratio", "resv ratio", "step ratio", "parity"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    settings = sorted({(k[1], k[2]) for k in results if k[1] is not None},
                      key=lambda s: (s[0], MODES.get(s[1], 9)))
    errors = []
    for seq, mode in settings:
        lemo, peer = results.get(("lemo", seq, mode)), results.get(("peer", seq, mode))
        row = [str(seq), mode] + system_cells(lemo) + system_cells(peer)
        both = ok(lemo) and ok(peer)
        for k in ("peak_allocated_bytes", "peak_reserved_bytes", "step_s"):
            row.append(ratio(lemo.get(k), peer.get(k)) if both else "-")
        row.append(parity(lemo, peer))
        out.append("| " + " | ".join(row) + " |")
        for r in (lemo, peer):
            if r is not None and not ok(r) and r.get("error"):
                errors.append(f"- {r['system']} {seq} {mode}: {r['status']}: {r['error']}")
    if errors:
        out += ["", "Failures:"] + errors
    return "\n".join(out) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="?", help="results.jsonl")
    p.add_argument("--meta", help="meta.json written by --write-meta")
    p.add_argument("--notes", help="text file; each line goes into the header")
    p.add_argument("--out", help="write the table here too")
    p.add_argument("--write-meta", metavar="PATH", help="record device, versions, date and command")
    p.add_argument("--command", default="", help="with --write-meta: the command that ran the suite")
    p.add_argument("--device", default="cuda:0", help="with --write-meta: cuda:N or cpu")
    args = p.parse_args(argv)
    if args.write_meta:
        print(json.dumps(write_meta(args.write_meta, args.command, args.device)))
        return 0
    if not args.results:
        p.error("give results.jsonl (or --write-meta)")
    results = load_results(args.results) if os.path.exists(args.results) else {}
    meta = None
    if args.meta and os.path.exists(args.meta):
        with open(args.meta) as f:
            meta = json.load(f)
    notes = []
    if args.notes and os.path.exists(args.notes):
        with open(args.notes) as f:
            notes = [ln.strip() for ln in f if ln.strip()]
    table = render(results, meta, notes)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
