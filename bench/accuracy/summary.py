#!/usr/bin/env python3
"""Markdown summary of bench/accuracy/run.sh's results directory.

Usage: python3 bench/accuracy/summary.py OUT

Reads OUT/pretrain.json, OUT/calibrate.json, OUT/eval-{base,dense,oracle,predictor}.json (lemo-train
eval's JSON: "loss" is the held-out mean token loss) and OUT/finetune-*.jsonl (per-step metrics),
and prints the held-out losses under dense evaluation with each LeMo fine-tune's gap to the dense
one (the goal: within 2%).
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
    lines += ["", "| fine-tune | held-out loss (dense eval) | perplexity | vs dense | last train loss | "
              "mean kept fraction |", "|---|---|---|---|---|---|"]
    dense = load(os.path.join(out, "eval-dense.json"))
    for name in ("base", "dense", "oracle", "predictor"):
        ev = load(os.path.join(out, f"eval-{name}.json"))
        if not ev:
            lines.append(f"| {name} | failed | - | - | - | - |")
            continue
        loss = ev["loss"]
        gap = "-"
        if dense and name in ("oracle", "predictor"):
            gap = f"{100 * (loss / dense['loss'] - 1):+.2f}%"
        m = last_metrics(os.path.join(out, f"finetune-{name}.jsonl")) or {}
        kept = m.get("kept_token_fraction")
        if isinstance(kept, list) and kept:
            kept = sum(kept) / len(kept)
        lines.append(f"| {name if name != 'base' else 'none (base model)'} | {loss:.4f} | "
                     f"{math.exp(loss):.3f} | {gap} | {m.get('loss', '-')} | "
                     f"{f'{kept:.3f}' if isinstance(kept, (int, float)) else '-'} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
