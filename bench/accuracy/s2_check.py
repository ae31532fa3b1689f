#!/usr/bin/env python3
"""2D sparsity (S2-Attn) on the CPU: is lemo-train's shifted group attention LongLoRA's, and why do
S2-Attn fine-tunes fail under full attention in docs/accuracy.md? (issue 14)

Usage (the venv python: torch + transformers; LEMO_TRAIN = a lemo-train binary):
  python3 bench/accuracy/s2_check.py check   [--lemo-train PATH]   # equivalence, ~20 s
  python3 bench/accuracy/s2_check.py ablation [--lemo-train PATH] [--work DIR] [--steps 60]

`check`: one random-weight Llama (GQA, 4 heads over 2 KV heads) and one window of text. The loss of
lemo-train's first fine-tune step (taken before any update, so the base model's loss) with
--lemo-2d must equal the loss of the same HF model whose attention is replaced by reference masks
written from LongLoRA's rule, in fp32:
  - "no-wrap": 8 groups of g = n/8; the first half of the heads causal within [i*g, (i+1)*g), the
    other half within [0, g/2), [g/2, 3g/2), ..., [n - g/2, n). This is what LongLoRA's training
    path (llama_attn_replace.py, forward_flashattn: cu_seqlens offset by group_size // 2, so the
    shifted half's first and last segments are half groups) computes;
  - "roll": LongLoRA's non-flash path (forward_noflashattn): the shifted half's tokens rolled by
    -g/2, causal within groups, rolled back, so the first g/2 tokens share a group with the last
    g/2 and, causally after them, see the future.
and without --lemo-2d it must equal full causal attention. Prints the four losses and exits 1 when
lemo-train differs from the no-wrap reference (or dense from full attention) by more than 1e-4.

`ablation`: the cause of the S2-Attn result, at CPU scale. Pretrains a 4-layer byte model at 128
tokens (pretrain.py), then fine-tunes LoRA with lemo-train at 8x that (1,024 tokens, a context
extension, as the GPU study's 1K -> 8K) and, as a control, at the pretraining length (128 tokens):
dense and --lemo-2d, same data, steps and seed; also both under linear position interpolation at
1,024. Evaluates every adapter with full attention (lemo-train eval) and, through the HF
reference, the base model under S2-Attn. Writes DIR/ablation.json and prints a table.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def group_of(t, g, shifted):
    if not shifted:
        return t // g
    return -1 if t < g // 2 else (t - g // 2) // g


def mask_no_wrap(heads, n):
    """[heads, n, n] bool: query r of head h may attend key c (the rule above, no wrap)."""
    g = max(1, -(-n // 8))
    first = heads - heads // 2
    idx = torch.arange(n)
    causal = idx[None, :] <= idx[:, None]
    masks = []
    for h in range(heads):
        grp = torch.tensor([group_of(t, g, h >= first) for t in range(n)])
        masks.append(causal & (grp[:, None] == grp[None, :]))
    return torch.stack(masks)


def mask_roll(heads, n):
    """LongLoRA's forward_noflashattn: shifted heads see tokens rolled by -g/2 (wrap-around)."""
    g = max(1, n // 8)
    s = g // 2
    first = heads - heads // 2
    idx = torch.arange(n)
    causal = idx[None, :] <= idx[:, None]
    masks = []
    for h in range(heads):
        if h < first:
            grp = idx // g
            masks.append(causal & (grp[:, None] == grp[None, :]))
            continue
        # Position p of the rolled sequence holds token (p + s) mod n; groups and causality are over p.
        rolled = (idx - s) % n  # the rolled position of token t
        grp = rolled // g
        masks.append((rolled[None, :] <= rolled[:, None]) & (grp[:, None] == grp[None, :]))
    return torch.stack(masks)


def install_reference(kind):
    """Registers attention `kind` (full | no-wrap | roll) with transformers; returns its name."""
    from transformers import AttentionInterface

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        b, h, n, d = query.shape
        rep = h // key.shape[1]
        k = key.repeat_interleave(rep, 1)
        v = value.repeat_interleave(rep, 1)
        if kind == "full":
            allowed = torch.tril(torch.ones(n, n, dtype=torch.bool))[None]
        elif kind == "no-wrap":
            allowed = mask_no_wrap(h, n)
        else:
            allowed = mask_roll(h, n)
        scores = torch.matmul(query, k.transpose(-1, -2)) * (scaling or 1 / math.sqrt(d))
        scores = scores.masked_fill(~allowed[None].to(scores.device), float("-inf"))
        out = torch.matmul(torch.softmax(scores.float(), -1).to(v.dtype), v)
        return out.transpose(1, 2).contiguous(), None

    name = f"lemo_ref_{kind.replace('-', '_')}"
    AttentionInterface.register(name, attention)
    return name


def hf_loss(model_dir, ids, kind, adapter=None):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter)
    model.set_attn_implementation(install_reference(kind))
    model.eval()
    with torch.no_grad():
        x = torch.tensor([ids])
        return float(model(input_ids=x, labels=x).loss)


def train_loss(lemo_train, model_dir, data, seq, work, extra):
    out = os.path.join(work, "ft")
    metrics = os.path.join(work, "m.jsonl")
    for p in (metrics,):
        if os.path.exists(p):
            os.remove(p)
    subprocess.run([lemo_train, "finetune", "--model", model_dir, "--data", data, "--out", out, "--tokenizer",
                    "byte", "--seq-len", str(seq), "--steps", "1", "--device", "cpu", "--dtype", "fp32",
                    "--metrics-jsonl", metrics, *extra], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    with open(metrics) as f:
        return json.loads(f.readline())["loss"]


def check(args):
    from transformers import LlamaConfig, LlamaForCausalLM

    work = args.work
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(0)
    seq = 256  # g = 32, shift 16
    config = LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config)
    # Larger q/k weights than the init's, so that attention is far from uniform and a wrong mask
    # shows in the loss.
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8)
            layer.self_attn.k_proj.weight.mul_(8)
    model_dir = os.path.join(work, "model")
    model.save_pretrained(model_dir, safe_serialization=True)
    rng = random.Random(0)
    text = "".join(rng.choice("abcdefgh ") for _ in range(seq - 2))
    data = os.path.join(work, "data.jsonl")
    with open(data, "w") as f:
        f.write(json.dumps({"text": text}) + "\n")
    ids = [1] + [b + 3 for b in text.encode()] + [2]
    got = {
        "lemo-train dense": train_loss(args.lemo_train, model_dir, data, seq, work, []),
        "lemo-train --lemo-2d": train_loss(args.lemo_train, model_dir, data, seq, work, ["--lemo-2d"]),
        "HF full causal": hf_loss(model_dir, ids, "full"),
        "HF reference no-wrap": hf_loss(model_dir, ids, "no-wrap"),
        "HF reference roll (wrap)": hf_loss(model_dir, ids, "roll"),
    }
    for k, v in got.items():
        print(f"{k:28s} {v:.6f}")
    ok = (abs(got["lemo-train dense"] - got["HF full causal"]) < 1e-4 and
          abs(got["lemo-train --lemo-2d"] - got["HF reference no-wrap"]) < 1e-4 and
          abs(got["HF reference no-wrap"] - got["HF full causal"]) > 1e-3)
    print("s2_check: " + ("lemo-train's S2-Attn equals the no-wrap reference" if ok else "MISMATCH"))
    return 0 if ok else 1


def run(cmd, log):
    with open(log, "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=f)


def ablation(args):
    w = args.work
    os.makedirs(w, exist_ok=True)
    log = os.path.join(w, "ablation.log")
    pre = os.path.join(w, "pre")
    if not os.path.exists(os.path.join(pre, "pretrain.json")):
        run([sys.executable, os.path.join(HERE, "pretrain.py"), "--out", pre, "--device", "cpu", "--layers", "4",
             "--hidden", "128", "--heads", "4", "--kv-heads", "2", "--seq-len", "128", "--batch", "16",
             "--minutes", str(args.pretrain_minutes), "--eval-every", "50", "--val-tokens", "16384",
             "--eval-tokens", "65536", "--max-positions", "2048", "--corpus", args.corpus], log)
    pretrain = json.load(open(os.path.join(pre, "pretrain.json")))
    model = os.path.join(pre, "model")
    pi = os.path.join(w, "model-pi")
    if not os.path.exists(os.path.join(pi, "config.json")):
        os.makedirs(pi, exist_ok=True)
        cfg = json.load(open(os.path.join(model, "config.json")))
        cfg["rope_scaling"] = {"rope_type": "linear", "factor": 8.0}
        for name in os.listdir(model):
            if name != "config.json":
                os.symlink(os.path.join(model, name), os.path.join(pi, name))
        json.dump(cfg, open(os.path.join(pi, "config.json"), "w"))
    common = ["--tokenizer", "byte", "--device", "cpu", "--dtype", "fp32"]

    def evaluate(model_dir, seq, adapter=None):
        cmd = [args.lemo_train, "eval", "--model", model_dir, "--data", os.path.join(pre, "heldout.jsonl"),
               "--seq-len", str(seq), "--batches", str(args.eval_batches), *common]
        if adapter:
            cmd += ["--adapter", adapter]
        r = subprocess.run(cmd, check=True, capture_output=True, text=True)
        return json.loads(r.stdout)["loss"]

    def finetune(name, model_dir, seq, extra):
        out = os.path.join(w, f"ft-{name}")
        metrics = os.path.join(w, f"m-{name}.jsonl")
        if os.path.exists(metrics):
            os.remove(metrics)
        run([args.lemo_train, "finetune", "--model", model_dir, "--data", os.path.join(pre, "finetune.jsonl"),
             "--out", out, "--seq-len", str(seq), "--steps", str(args.steps), "--lr", "1e-3", "--warmup-steps",
             "5", "--seed", "0", "--metrics-jsonl", metrics, *common, *extra], log)
        ckpt = sorted(p for p in os.listdir(out) if p.startswith("checkpoint-"))[-1]
        rows = [json.loads(ln) for ln in open(metrics)]
        return os.path.join(out, ckpt), sum(r["loss"] for r in rows[-5:]) / min(5, len(rows))

    rows = []
    ids = None
    for seq, model_dir, tag in ((1024, model, "extension 128 -> 1024"), (128, model, "no extension (128)"),
                                (1024, pi, "extension with position interpolation x8")):
        base = evaluate(model_dir, seq)
        if ids is None:  # the base model under S2-Attn vs full attention, HF reference, first windows
            import pretrain as pt  # noqa: E402  (bench/accuracy on sys.path)
            held = [json.loads(ln) for ln in open(os.path.join(pre, "heldout.jsonl"))]
            stream = pt.encode(held)
            wins = [stream[i * seq:(i + 1) * seq].tolist() for i in range(args.eval_batches)]
            ids = {
                kind: sum(hf_loss(model_dir, win, kind) for win in wins) / len(wins)
                for kind in ("full", "no-wrap")
            }
        for mode, extra in (("dense", []), ("S2-Attn", ["--lemo-2d"])):
            adapter, train = finetune(f"{seq}-{mode}-{os.path.basename(model_dir)}", model_dir, seq, extra)
            rows.append({"setting": tag, "seq": seq, "fine-tune": mode, "base_full_attention": base,
                         "heldout_full_attention": evaluate(model_dir, seq, adapter), "train_loss_last5": train})
            print(json.dumps(rows[-1]), flush=True)
    result = {"pretrain": {k: pretrain[k] for k in ("steps", "seconds", "params", "seq_len", "heldout_loss",
                                                    "unigram_loss")},
              "base_at_1024_hf": {"full attention": ids["full"], "S2-Attn no-wrap": ids["no-wrap"]},
              "steps": args.steps, "rows": rows}
    json.dump(result, open(os.path.join(w, "ablation.json"), "w"), indent=1)
    print(json.dumps(result["base_at_1024_hf"]))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", choices=["check", "ablation"])
    p.add_argument("--lemo-train", default=os.environ.get("LEMO_TRAIN", "build/bin/lemo-train"))
    p.add_argument("--work", default="/tmp/lemo-s2")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--pretrain-minutes", type=float, default=3.0)
    p.add_argument("--corpus", default=os.path.join(HERE, "..", "data", "corpus.jsonl"))
    args = p.parse_args(argv)
    sys.path.insert(0, HERE)
    return check(args) if args.cmd == "check" else ablation(args)


if __name__ == "__main__":
    sys.exit(main())
