#!/usr/bin/env python3
"""Passkey retrieval for the accuracy study (docs/accuracy.md): can the small model find a 5-digit
key hidden anywhere in an 8K-token window of filler text, and does LeMo's token elimination during
fine-tuning cost that ability?

Usage:
  python3 bench/accuracy/passkey.py make --filler finetune.jsonl --out passkey-train.jsonl \
      --samples 800 --seq-len 8192 --seed 0
  python3 bench/accuracy/passkey.py eval --model DIR [--adapter DIR] --data passkey-test.jsonl \
      [--device cuda] [--json OUT]

`make` writes JSONL documents ({"text": ...}) of exactly seq_len - 2 ASCII characters, so that
lemo-train's byte tokenizer (one token per byte, framed as <s> doc </s>) packs each one into
exactly one training window. Each document is filler taken from a random place in the --filler
book, with the needle "The pass key is NNNNN. Remember it. NNNNN is the pass key." at a uniformly
random depth, and ends with the question "What is the pass key? The pass key is NNNNN".

`eval` loads the HF model (and the PEFT adapter lemo-train wrote, as it is) and scores the last
five characters of every document teacher-forced: the fraction of digits whose argmax is right,
the fraction of keys with all five right, and the mean loss on the digits. Chance is 10% per digit
(2.30 nats).
"""
import argparse
import json
import random
import sys

QUESTION = " What is the pass key? The pass key is "


def needle(key):
    return f" The pass key is {key}. Remember it. {key} is the pass key. "


def ascii_filler(path):
    chunks = []
    with open(path) as f:
        for line in f:
            text = json.loads(line)["text"]
            chunks.append("".join(c if 32 <= ord(c) < 127 else " " for c in text.replace("\n", " ")))
    filler = " ".join(chunks)
    if not filler:
        sys.exit(f"passkey: {path} has no text")
    return filler


def make(args):
    rng = random.Random(args.seed)
    filler = ascii_filler(args.filler)
    length = args.seq_len - 2  # <s> and </s> take the other two tokens of the window
    with open(args.out, "w") as out:
        for _ in range(args.samples):
            key = f"{rng.randrange(10000, 100000)}"
            tail = QUESTION + key
            body = length - len(tail) - len(needle(key))
            if body < 1 or body > len(filler):
                sys.exit(f"passkey: --seq-len {args.seq_len} leaves no room for filler from {args.filler}")
            start = rng.randrange(0, len(filler) - body + 1)
            text = filler[start:start + body]
            depth = rng.randrange(0, body + 1)
            doc = text[:depth] + needle(key) + text[depth:] + tail
            assert len(doc) == length
            out.write(json.dumps({"text": doc}) + "\n")
    print(f"passkey: wrote {args.samples} documents of {length} characters to {args.out}")


def evaluate(args):
    import torch
    from transformers import LlamaForCausalLM

    device = torch.device(args.device)
    model = LlamaForCausalLM.from_pretrained(args.model, torch_dtype=torch.bfloat16)
    if args.adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, args.adapter)
    model.to(device).eval()
    digits_right = keys_right = n = 0
    loss_sum = 0.0
    with open(args.data) as f:
        docs = [json.loads(line)["text"] for line in f if line.strip()][:args.samples]
    with torch.no_grad():
        for text in docs:
            ids = torch.tensor([[1] + [b + 3 for b in text.encode("ascii")]], device=device)
            logits = model(input_ids=ids).logits[0, -6:-1].float()  # the positions predicting the 5 digits
            target = ids[0, -5:]
            right = (logits.argmax(-1) == target)
            digits_right += int(right.sum())
            keys_right += int(bool(right.all()))
            loss_sum += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            n += 1
    if n == 0:
        sys.exit(f"passkey: {args.data} has no documents")
    result = {"samples": n, "digit_accuracy": digits_right / (5 * n), "key_accuracy": keys_right / n,
              "digit_loss": loss_sum / (5 * n), "adapter": args.adapter or None}
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write passkey documents")
    m.add_argument("--filler", required=True, help="JSONL book with a text field")
    m.add_argument("--out", required=True)
    m.add_argument("--samples", type=int, default=800)
    m.add_argument("--seq-len", type=int, default=8192)
    m.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("eval", help="score passkey retrieval")
    e.add_argument("--model", required=True)
    e.add_argument("--adapter", default="")
    e.add_argument("--data", required=True)
    e.add_argument("--samples", type=int, default=200)
    e.add_argument("--device", default="cuda")
    e.add_argument("--json", default="")
    args = p.parse_args(argv)
    return make(args) if args.cmd == "make" else evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
