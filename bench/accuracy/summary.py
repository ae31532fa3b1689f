#!/usr/bin/env python3
"""Markdown summary of an accuracy study's results directory: study v2's (bench/accuracy/study.sh,
OUT/results.jsonl) or study v1's (bench/accuracy/run.sh, OUT/runs.tsv).

Usage: python3 bench/accuracy/summary.py OUT [--heading-level N]
  (N > 1: no title, sections at that heading level, as docs/accuracy.md embeds it)

Study v2: OUT/results.jsonl has one row per fine-tune (study.py's docstring), plus OUT/pretrain-*.json
and OUT/calibrate-*.json. For each model and sequence length, one table: per configuration the
held-out loss under dense evaluation over its seeds (mean, sample std, min-max), its gap to the
dense mean, and the per-seed gap to the dense run of the same seed (mean, std, min-max); then the
dense-vs-dense spread (how far dense runs that differ only in seed land from each other, the noise
any gap must be read against) and a plain verdict on "LeMo within 2% of dense". Then passkey
retrieval (HF + PEFT, study.py's passkey jobs).

Study v1:
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


def stats(values):
    """(mean, sample std (0 for one value), min, max) of a non-empty list."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std, min(values), max(values)


def fmt_stats(values, pct=False, digits=4):
    if not values:
        return "-", "-"
    mean, std, lo, hi = stats(values)
    unit = "%" if pct else ""
    sign = "+" if pct else ""
    if len(values) == 1:
        return f"{mean:{sign}.{2 if pct else digits}f}{unit}", "-"
    return (f"{mean:{sign}.{2 if pct else digits}f}{unit} ± {std:.{2 if pct else digits}f}",
            f"{lo:{sign}.{2 if pct else digits}f} .. {hi:{sign}.{2 if pct else digits}f}{unit}")


def dense_spread(losses):
    """The dense-vs-dense spread in percent: (max - min) / mean of the dense runs' losses, which
    differ only in seed; None for fewer than two runs."""
    if len(losses) < 2:
        return None
    mean, _, lo, hi = stats(losses)
    return 100 * (hi - lo) / mean


def verdict(paired_gaps, spread):
    """One sentence on "within 2% of dense" from the per-seed gaps (percent) and the dense spread."""
    if not paired_gaps:
        return "no paired runs"
    mean = sum(paired_gaps) / len(paired_gaps)
    n = len(paired_gaps)
    if n < 2:
        head = f"one seed only ({mean:+.2f}%): no claim"
    elif max(paired_gaps) < 2:
        head = f"within 2% on every seed ({n} seeds, worst {max(paired_gaps):+.2f}%)"
    elif mean < 2:
        head = f"within 2% on average ({mean:+.2f}%) but not on every seed (worst {max(paired_gaps):+.2f}%)"
    else:
        head = f"not within 2% ({mean:+.2f}% on average over {n} seeds)"
    if spread is not None and abs(mean) < spread:
        head += (f"; the mean gap is smaller than the dense-vs-dense spread ({spread:.2f}%): LeMo's cost is not "
                 f"resolved from seed noise")
    return head


def near_bucket(r):
    """(keys, token accuracy, key accuracy) of a passkey row's near keys: its own near_* fields, or,
    for rows written before passkey.py reported them, what all keys less the far ones leave (every
    key has the same number of answer tokens)."""
    if "near_keys" in r:
        return r["near_keys"], r.get("near_digit_accuracy"), r.get("near_key_accuracy")
    n, far = r.get("keys", r.get("samples", 0)), r.get("far_keys", 0)
    if n - far <= 0:
        return 0, None, None
    f_digit = (r.get("far_digit_accuracy") or 0.0) * far
    f_key = (r.get("far_key_accuracy") or 0.0) * far
    return n - far, (r["digit_accuracy"] * n - f_digit) / (n - far), (r["key_accuracy"] * n - f_key) / (n - far)


def v2(out, rows, level=1):
    """The summary's lines; with level > 1 (a document's section), no title and level-deep headings."""
    h = "#" * max(level, 2)
    lines = ["# Accuracy study v2 (issue 14)", ""] if level <= 1 else []
    for model in ("big", "small"):
        pre = load(os.path.join(out, f"pretrain-{model}.json"))
        if pre:
            c = pre.get("config", {})
            lines.append(
                f"- `{model}` model: {pre['params'] / 1e6:.1f}M parameters, {c.get('layers')} layers, hidden "
                f"{c.get('hidden')}, {pre.get('tokenizer', 'byte')} tokens; pretrained {pre['steps']} steps "
                f"({pre['tokens'] / 1e6:.0f}M tokens, {pre.get('epochs', '?')} epochs of {pre['train_tokens']:,} "
                f"tokens) in {pre['seconds']} s at seq {pre['seq_len']}"
                f"{', stopped early' if pre.get('stopped_early') else ''}; held-out loss {pre['heldout_loss']} "
                f"against the unigram level {pre['unigram_loss']}" +
                (f"; {pre['passkey_rows']} passkey rows per batch, after which it retrieved "
                 f"{100 * pre['passkey_token_accuracy']:.1f}% of the answer tokens and "
                 f"{100 * pre['passkey_key_accuracy']:.1f}% of the keys within its context"
                 + (f" (the checkpoint of step {pre['kept_step']}, best at text and retrieval together)"
                    if pre.get("kept_step") else "")
                 if pre.get("passkey_rows") else ""))
        cal = load(os.path.join(out, f"calibrate-{model}.json"))
        if cal and cal.get("layers"):
            layers = cal["layers"]
            recall = [la["recall"] for la in layers]
            before = [la["recall_before"] for la in layers if "recall_before" in la]
            lines.append(
                f"- `{model}` predictors: layers {layers[0]['layer']}-{layers[-1]['layer']}, keep ratio "
                f"{layers[0]['keep_ratio']}, calibrated {cal.get('steps', '?')} steps on "
                f"{cal.get('train_samples', '?')} samples of {cal.get('seq_len', 0):,} tokens in "
                f"{cal.get('seconds', 0):.0f} s; recall of the oracle's kept tokens on "
                f"{cal.get('heldout_samples', '?')} held-out samples {stats(recall)[0]:.3f} on average "
                f"(min {min(recall):.3f})" + (f", {stats(before)[0]:.3f} before calibration" if before else ""))
    lm = [r for r in rows if r.get("kind") == "lm"]
    for model, seq in sorted({(r["model"], r["seq"]) for r in lm}):
        group = [r for r in lm if r["model"] == model and r["seq"] == seq]
        dense = {r["seed"]: r["loss"] for r in group if r["config"] == "dense"}
        dense_pi = {r["seed"]: r["loss"] for r in group if r["config"] == "dense-pi"}
        spread = dense_spread(list(dense.values()))
        lines += ["", f"{h} `{model}` model, {seq:,} tokens", "",
                  "| configuration | seeds | held-out loss, mean ± std | min .. max | vs dense mean | "
                  "vs dense of the same seed, mean ± std | min .. max | last train loss | mean kept | s/step |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        configs = []
        for r in group:
            if r["config"] not in configs:
                configs.append(r["config"])
        configs.sort(key=lambda c: (c != "base", c != "dense", c))
        dense_mean = stats(list(dense.values()))[0] if dense else None
        for config in configs:
            runs = [r for r in group if r["config"] == config]
            losses = [r["loss"] for r in runs]
            # -pi configurations compare with dense LoRA under the same interpolation.
            ref = dense_pi if config.endswith("-pi") and config != "dense-pi" else dense
            ref_mean = stats(list(ref.values()))[0] if ref else None
            paired = [100 * (r["loss"] / ref[r["seed"]] - 1) for r in runs if r["seed"] in ref]
            mean_s, range_s = fmt_stats(losses)
            vs_mean = f"{100 * (stats(losses)[0] / ref_mean - 1):+.2f}%" if ref_mean and config not in (
                "dense", "base") and config != "dense-pi" else "-"
            if ref is dense_pi and vs_mean != "-":
                vs_mean += " (vs dense-pi)"
            if config == "dense-pi" and dense_mean:
                vs_mean = f"{100 * (stats(losses)[0] / dense_mean - 1):+.2f}% (vs dense)"
            pm, pr = fmt_stats(paired, pct=True) if config not in ("dense", "base", "dense-pi") else ("-", "-")
            train = [r["train_loss"] for r in runs if r.get("train_loss") is not None]
            kept = [r["kept"] for r in runs if isinstance(r.get("kept"), (int, float))]
            step_s = [r["step_seconds"] for r in runs if r.get("step_seconds")]
            lines.append(
                f"| {runs[0].get('description', config)} (`{config}`) | "
                f"{','.join(str(r['seed']) for r in runs) if config != 'base' else '-'} | {mean_s} | {range_s} | "
                f"{vs_mean} | {pm} | {pr} | {f'{stats(train)[0]:.3f}' if train else '-'} | "
                f"{f'{stats(kept)[0]:.3f}' if kept else '-'} | {f'{stats(step_s)[0]:.3f}' if step_s else '-'} |")
        lines.append("")
        if spread is not None:
            lines.append(f"- dense-vs-dense spread over seeds {sorted(dense)}: {spread:.2f}% of the mean loss "
                         f"(max - min), std {100 * stats(list(dense.values()))[1] / dense_mean:.2f}%")
        lemo = [r for r in group if r["config"] == "lemo"]
        if lemo:
            paired = [100 * (r["loss"] / dense[r["seed"]] - 1) for r in lemo if r["seed"] in dense]
            lines.append(f"- LeMo vs dense: {verdict(paired, spread)}")
    s2 = [r for r in rows if r.get("kind") == "s2eval"]
    if s2:
        lines += ["", f"{h} 2D sparsity: the same adapters under full attention and under S2-Attn (HF reference)", "",
                  "| model | tokens | fine-tune | windows | loss, full attention | loss, S2-Attn | full - S2 |",
                  "|---|---|---|---|---|---|---|"]
        for r in s2:
            lines.append(f"| {r['model']} | {r['seq']:,} | {r['config']} | {r['windows']} | "
                         f"{r['loss_full_attention']:.4f} | {r['loss_s2_attention']:.4f} | "
                         f"{r['loss_full_attention'] - r['loss_s2_attention']:+.4f} |")
    # passkey.py's two long-range tasks (study.py's ACC_LONG_TASK; rows before it are passkey's)
    titles = {"passkey": ("Passkey retrieval", "all digits right", "keys"),
              "copy": ("Span copy (24 random tokens planted, the last 20 scored)", "whole span right", "spans")}
    for task, (title, whole, unit) in titles.items():
        passkey = [r for r in rows if r.get("kind") == "passkey" and r.get("task", "passkey") == task]
        if not passkey:
            continue
        lines += ["", f"{h} {title} (HF transformers + PEFT loading our adapters, teacher-forced)", "",
                  "| model | tokens | fine-tune | seed | steps | adapter tensors loaded | answer-token accuracy | "
                  f"{whole} | loss on the answer | near {unit} (within pretraining length) | "
                  f"near: token accuracy | near: all right | far {unit} (beyond it) | far: token accuracy | "
                  "far: all right |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

        def pc(v):
            return f"{100 * v:.1f}%" if isinstance(v, (int, float)) else "-"

        for r in sorted(passkey, key=lambda r: (r["model"], r["seq"], r["config"] != "base", r["config"], r["seed"])):
            near = near_bucket(r)
            lines.append(f"| {r['model']} | {r['seq']:,} | {r['config']} | {r['seed']} | {r.get('steps', 0)} | "
                         f"{r.get('adapter_tensors', 0)} | {pc(r.get('digit_accuracy'))} | "
                         f"{pc(r.get('key_accuracy'))} | {r['digit_loss']:.3f} | {near[0]} | {pc(near[1])} | "
                         f"{pc(near[2])} | {r.get('far_keys', 0)} | "
                         f"{pc(r.get('far_digit_accuracy'))} | {pc(r.get('far_key_accuracy'))} |")
    return lines


def main(argv):
    level = 1
    if "--heading-level" in argv:  # a section of docs/accuracy.md (scripts/check-tables)
        i = argv.index("--heading-level")
        level = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    out = argv[1] if len(argv) > 1 else "acc-out"
    results = os.path.join(out, "results.jsonl")
    if os.path.exists(results):
        with open(results) as f:
            rows = [json.loads(ln) for ln in f if ln.strip()]
        print("\n".join(v2(out, rows, level)).strip("\n"))
        return 0
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
