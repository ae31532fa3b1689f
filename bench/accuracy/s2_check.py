#!/usr/bin/env python3
"""2D sparsity (S2-Attn) on the CPU: is lemo-train's shifted group attention LongLoRA's, and why do
S2-Attn fine-tunes fail under full attention in docs/accuracy.md? (issue 14)

Usage (the venv python: torch + transformers; LEMO_TRAIN = a lemo-train binary):
  python3 bench/accuracy/s2_check.py check [--lemo-train PATH] [--work DIR] [--json OUT]   # equivalence, ~20 s
  python3 bench/accuracy/s2_check.py eval (--model DIR [--adapter DIR] | --case NAME=DIR[,ADAPTER] ...) \
      --data heldout.jsonl --seq-len 8192 [--tokenizer byte|tokenizer.model] [--windows 8] [--device cuda] \
      [--json OUT]

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

`eval`: held-out loss of a model (+ adapter) at --seq-len under full causal attention and under
S2-Attn (the no-wrap reference), on the first --windows windows of --data (packed as lemo-train
packs text: <s> doc </s>, concatenated, cut into windows). The study (study.py) runs it on the base
model and on the dense + S2-Attn adapter: a model fine-tuned under S2-Attn and scored under S2-Attn
against full attention separates "S2-Attn trains badly" from "what S2-Attn trains does not carry
over to full attention".
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


_MASKS = {}


def mask_no_wrap(heads, n):
    """[heads, n, n] bool: query r of head h may attend key c (the rule above, no wrap)."""
    if ("no-wrap", heads, n) not in _MASKS:
        g = max(1, -(-n // 8))
        s = g // 2
        first = heads - heads // 2
        idx = torch.arange(n)
        causal = idx[None, :] <= idx[:, None]
        plain = idx // g
        shifted = torch.where(idx < s, torch.full_like(idx, -1), (idx - s) // g)
        masks = [causal & (grp[:, None] == grp[None, :]) for grp in [plain] * first + [shifted] * (heads - first)]
        _MASKS[("no-wrap", heads, n)] = torch.stack(masks)
    return _MASKS[("no-wrap", heads, n)]


def mask_roll(heads, n):
    """LongLoRA's forward_noflashattn: shifted heads see tokens rolled by -g/2 (wrap-around)."""
    g = max(1, n // 8)
    s = g // 2
    first = heads - heads // 2
    idx = torch.arange(n)
    causal = idx[None, :] <= idx[:, None]
    plain = idx // g
    masks = [causal & (plain[:, None] == plain[None, :])] * first
    # Position p of the rolled sequence holds token (p + s) mod n; groups and causality are over p.
    rolled = (idx - s) % n  # the rolled position of token t
    grp = rolled // g
    masks += [(rolled[None, :] <= rolled[:, None]) & (grp[:, None] == grp[None, :])] * (heads - first)
    return torch.stack(masks)


def install_reference(kind):
    """Registers attention `kind` (full | no-wrap | roll) with transformers; returns its name."""
    from transformers import AttentionInterface

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        b, h, n, d = query.shape
        rep = h // key.shape[1]
        k = key.repeat_interleave(rep, 1)
        v = value.repeat_interleave(rep, 1)
        key_ = (kind, h, n, str(query.device))
        if key_ not in _MASKS:  # one mask per shape and device, built once (every layer uses it)
            _MASKS[key_] = (torch.tril(torch.ones(n, n, dtype=torch.bool))[None] if kind == "full" else
                            mask_no_wrap(h, n) if kind == "no-wrap" else mask_roll(h, n)).to(query.device)
        allowed = _MASKS[key_]
        scores = torch.matmul(query, k.transpose(-1, -2)) * (scaling or 1 / math.sqrt(d))
        scores = scores.masked_fill(~allowed[None], float("-inf"))
        out = torch.matmul(torch.softmax(scores.float(), -1).to(v.dtype), v)
        return out.transpose(1, 2).contiguous(), None

    name = f"lemo_ref_{kind.replace('-', '_')}"
    AttentionInterface.register(name, attention)
    return name


def load_model(model_dir, adapter=None, device="cpu"):
    from transformers import LlamaForCausalLM

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=dtype)
    if adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter)
    return model.to(device).eval()


def hf_loss(model_dir, ids, kind, adapter=None, device="cpu", model=None):
    """Mean loss of the windows `ids` (a list of token lists) under attention `kind`."""
    model = model or load_model(model_dir, adapter, device)
    model.set_attn_implementation(install_reference(kind))
    losses = []
    with torch.no_grad():
        for win in ids:
            x = torch.tensor([win], device=device)
            losses.append(float(model(input_ids=x, labels=x).loss))
    return sum(losses) / len(losses)


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
        "HF full causal": hf_loss(model_dir, [ids], "full"),
        "HF reference no-wrap": hf_loss(model_dir, [ids], "no-wrap"),
        "HF reference roll (wrap)": hf_loss(model_dir, [ids], "roll"),
    }
    for k, v in got.items():
        print(f"{k:28s} {v:.6f}")
    ok = (abs(got["lemo-train dense"] - got["HF full causal"]) < 1e-4 and
          abs(got["lemo-train --lemo-2d"] - got["HF reference no-wrap"]) < 1e-4 and
          abs(got["HF reference no-wrap"] - got["HF full causal"]) > 1e-3)
    print("s2_check: " + ("lemo-train's S2-Attn equals the no-wrap reference" if ok else "MISMATCH"))
    if args.json:
        # The raw result bench/accuracy/s2_table.py makes docs/accuracy.md's table of.
        with open(args.json, "w") as f:
            json.dump({"check": "s2_check", "seq_len": seq, "groups": 8, "dtype": "fp32", "ok": ok,
                       "losses": got, "torch": torch.__version__}, f, indent=1)
    return 0 if ok else 1


def evaluate(args):
    """Every --case NAME=MODEL_DIR[,ADAPTER] (or --model/--adapter as one case "model") scored under
    full attention and S2-Attn on the same windows, in one process (one torch import)."""
    import pretrain as pt

    cases = [c.split("=", 1) for c in args.case] or [["model", f"{args.model},{args.adapter}"]]
    with open(args.data) as f:
        docs = [json.loads(ln) for ln in f if ln.strip()]
    stream = pt.encode(docs, pt.make_encoder("" if args.tokenizer == "byte" else args.tokenizer))
    windows = [stream[i * args.seq_len:(i + 1) * args.seq_len].tolist()
               for i in range(min(args.windows, len(stream) // args.seq_len))]
    if not windows:
        sys.exit(f"s2_check: {args.data} has fewer than {args.seq_len} tokens")
    results = []
    for name, spec in cases:
        model_dir, _, adapter = spec.partition(",")
        model = load_model(model_dir, adapter or None, args.device)
        results.append({"case": name, "model_dir": model_dir, "adapter": adapter or None, "seq_len": args.seq_len,
                        "windows": len(windows),
                        "loss_full_attention": hf_loss(None, windows, "full", device=args.device, model=model),
                        "loss_s2_attention": hf_loss(None, windows, "no-wrap", device=args.device, model=model)})
        print(json.dumps(results[-1]), flush=True)
        del model
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", choices=["check", "eval"])
    p.add_argument("--lemo-train", default=os.environ.get("LEMO_TRAIN", "build/bin/lemo-train"))
    p.add_argument("--work", default="/tmp/lemo-s2")
    p.add_argument("--case", action="append", default=[], help="eval: NAME=MODEL_DIR[,ADAPTER], repeatable")
    p.add_argument("--model", help="eval: HF model directory")
    p.add_argument("--adapter", default="", help="eval: PEFT adapter directory")
    p.add_argument("--data", help="eval: held-out JSONL (text)")
    p.add_argument("--seq-len", type=int, default=8192)
    p.add_argument("--tokenizer", default="byte", help="eval: byte, or a SentencePiece tokenizer.model")
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default="", help="check: the losses as JSON; eval: the results as JSON")
    args = p.parse_args(argv)
    sys.path.insert(0, HERE)
    return check(args) if args.cmd == "check" else evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
