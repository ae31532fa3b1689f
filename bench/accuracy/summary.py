#!/usr/bin/env python3
"""Markdown summary of bench/accuracy/run.sh's results directory.

Usage: python3 bench/accuracy/summary.py OUT

Reads OUT/pretrain.json, OUT/calibrate.json, OUT/runs.tsv (one row per fine-tune: name, steps,
data, baseline, description), OUT/eval-NAME.json (lemo-train eval's JSON: "loss" is the held-out
mean token loss; passkey.py eval's JSON for passkey runs) and OUT/finetune-NAME.jsonl (per-step
metrics), and prints the held-out losses under dense evaluation with each run's gap to its dense
baseline (the goal: within 2%), then the passkey table.
"""
import json
import math
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def last_metrics(path):
    try:
        with open(path) as f:
            rows = [json.loads(ln) for ln in f if ln.strip()]
    except (OSError, json.JSONDecodeError):
        return None
    return rows[-1] if rows else None


def read_runs(path):
    """runs.tsv rows: name, steps, data, baseline name ("-" for none), description."""
    try:
        with open(path) as f:
            return [ln.rstrip("\n").split("\t") for ln in f if ln.strip()]
    except OSError:
        return []


def mean_kept(metrics):
    kept = metrics.get("kept_token_fraction")
    if isinstance(kept, list) and kept:
        kept = sum(kept) / len(kept)
    return f"{kept:.3f}" if isinstance(kept, (int, float)) else "-"


def main(argv):
    out = argv[1] if len(argv) > 1 else "acc-out"
    lines = ["# Accuracy study", ""]
    pre = load(os.path.join(out, "pretrain.json"))
    if pre:
        lines.append(f"- pretraining: {pre['params'] / 1e6:.1f}M parameters, {pre['steps']} steps, "
                     f"{pre['tokens'] / 1e6:.0f}M tokens in {pre['seconds']} s at seq {pre['seq_len']}; "
                     f"held-out loss {pre['heldout_loss']} nats/token against the unigram level "
                     f"{pre['unigram_loss']}")
    cal = load(os.path.join(out, "calibrate.json"))
    if cal:
        lines.append(f"- predictors: {json.dumps(cal)[:600]}")
    runs = read_runs(os.path.join(out, "runs.tsv"))
    lines += ["", "| fine-tune | steps | held-out loss (dense eval) | perplexity | vs its dense baseline | "
              "last train loss | mean kept fraction |", "|---|---|---|---|---|---|---|"]
    base = load(os.path.join(out, "eval-base.json"))
    if base:
        lines.append(f"| none (base model) | 0 | {base['loss']:.4f} | {math.exp(base['loss']):.3f} | - | - | - |")
    for name, steps, data, baseline, desc in runs:
        if data == "passkey-train":
            continue
        ev = load(os.path.join(out, f"eval-{name}.json"))
        ref = load(os.path.join(out, f"eval-{baseline}.json")) if baseline != "-" else None
        m = last_metrics(os.path.join(out, f"finetune-{name}.jsonl")) or {}
        if not ev:
            lines.append(f"| {desc} (`{name}`) | {steps} | failed | - | - | - | - |")
            continue
        gap = f"{100 * (ev['loss'] / ref['loss'] - 1):+.2f}%" if ref else "-"
        lines.append(f"| {desc} (`{name}`) | {steps} | {ev['loss']:.4f} | {math.exp(ev['loss']):.3f} | {gap} | "
                     f"{m.get('loss', '-')} | {mean_kept(m)} |")
    passkey = [r for r in runs if r[2] == "passkey-train"]
    if passkey:
        lines += ["", "| passkey retrieval (held-out filler) | steps | digit accuracy | all 5 digits | "
                  "loss on the digits |", "|---|---|---|---|---|"]
        rows = [("-", "0", "passkey-train", "-", "none (base model)")] + passkey
        for name, steps, _, _, desc in rows:
            ev = load(os.path.join(out, "eval-passkey-base.json" if name == "-" else f"eval-{name}.json"))
            if not ev:
                lines.append(f"| {desc} | {steps} | failed | - | - |")
                continue
            lines.append(f"| {desc} | {steps} | {100 * ev['digit_accuracy']:.1f}% | "
                         f"{100 * ev['key_accuracy']:.1f}% | {ev['digit_loss']:.3f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
