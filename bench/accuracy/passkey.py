#!/usr/bin/env python3
"""Passkey retrieval for the accuracy study (docs/accuracy.md): can the model find a 5-digit key
planted far back in a long window of filler text, and does LeMo's token elimination during
fine-tuning cost that ability? Scored in HF transformers, with our adapter loaded by
peft.PeftModel.from_pretrained exactly as lemo-train wrote it.

Usage:
  python3 bench/accuracy/passkey.py make --filler finetune.jsonl --out passkey-train.jsonl \
      --samples 800 --seq-len 8192 --seed 0 [--tokenizer byte|tokenizer.model] [--min-distance 0]
  python3 bench/accuracy/passkey.py eval --model DIR [--adapter DIR] --data passkey-test.jsonl \
      [--device cuda] [--json OUT] [--far 2048]

`make` writes lemo-train TOKENS_JSONL examples ({"input_ids": [...], "loss_mask": [...],
"distance": D}), each exactly --seq-len tokens, so that each one is one training window:
  <s> filler ... needle ... filler ... question answer
- filler: a random slice of the --filler book (ASCII, newlines as spaces);
- needle: " The pass key is NNNNN. Remember it. NNNNN is the pass key. " at a random depth that
  leaves at least --min-distance tokens between the needle's end and the answer;
- question + answer: " What is the pass key? The pass key is NNNNN"; the loss mask is 1 on the
  answer's tokens only (5 with the byte tokenizer or a SentencePiece model with split digits), so a
  fine-tune on these examples is trained on retrieval alone, not on the filler.
Token ids: the byte tokenizer's (<s> = 1, byte b -> b + 3) or the SentencePiece model's, the same
ids lemo-train reads.

`eval` loads the HF model (and the PEFT adapter, checking that every adapter tensor in the file was
loaded and that the adapter is not a no-op), scores the answer tokens teacher-forced: the fraction
of answer tokens whose argmax is right, the fraction of keys with all of them right, and the mean
loss on them; overall and for keys farther back than --far tokens (the pretraining context: a key
beyond it needs the context extension the fine-tune taught). Chance is about 10% per digit.

`make --task copy` writes the span-copy task instead (make_copy_example: a span of 24 random tokens
planted at a random depth, its first 4 repeated at the end, the other 20 the answer), which `eval`
scores the same way: its "digits" are the answer's tokens, its "keys" whole spans.
"""
import argparse
import json
import random
import sys

QUESTION = " What is the pass key? The pass key is "
TASKS = ("passkey", "copy")  # make_task_example's tasks


def needle(key):
    return f" The pass key is {key}. Remember it. {key} is the pass key. "


def ascii_text(texts):
    """The texts as one line of printable ASCII (other characters and newlines become spaces)."""
    return " ".join("".join(c if 32 <= ord(c) < 127 else " " for c in t.replace("\n", " ")) for t in texts)


def ascii_filler(path):
    with open(path) as f:
        filler = ascii_text(json.loads(line)["text"] for line in f)
    if not filler:
        sys.exit(f"passkey: {path} has no text")
    return filler


class ByteTokens:
    def encode(self, text):
        return [b + 3 for b in text.encode("utf-8")]

    def decode(self, ids):
        return bytes(i - 3 for i in ids if 3 <= i < 259).decode("utf-8", "replace")


def load_tokenizer(spec):
    if spec == "byte":
        return ByteTokens()
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=spec)
    return sp


def needle_depth(rng, body, min_distance, max_distance, after):
    """Where the needle goes among `body` filler tokens, uniformly: at least min_distance of them
    follow it, and (max_distance given) its distance to the answer, those filler tokens plus the
    `after` tokens of the question, is at most max_distance where the window allows."""
    high = body - min_distance
    low = 0 if max_distance is None else min(high, max(0, body + after - max_distance))
    return rng.randrange(low, high + 1)


def plant(rng, filler, seq_len, pin, tail, answer, min_distance, max_distance):
    """<s> filler ... pin ... filler tail, exactly seq_len tokens, the filler a random slice of the
    token list `filler` and pin at a random depth (needle_depth); the last `answer` tokens of tail
    are the answer: {"input_ids", "loss_mask" (1 on the answer only), "distance" (tokens between
    pin's end and the answer)}. Raises ValueError when it cannot be made."""
    body = seq_len - 1 - len(tail) - len(pin)  # <s> takes the first token
    if body < 1 or body > len(filler):
        raise ValueError(f"a window of {seq_len} tokens leaves no room for filler ({len(filler)} filler tokens)")
    if min_distance > body:
        raise ValueError(f"a distance of {min_distance} exceeds the filler ({body} tokens)")
    start = rng.randrange(0, len(filler) - body + 1)
    text = filler[start:start + body]
    depth = needle_depth(rng, body, min_distance, max_distance, len(tail) - answer)
    ids = [1] + text[:depth] + pin + text[depth:] + tail
    assert len(ids) == seq_len
    mask = [0] * (len(ids) - answer) + [1] * answer
    return {"input_ids": ids, "loss_mask": mask, "distance": len(ids) - answer - (1 + depth + len(pin))}


def make_example(rng, tok, filler, seq_len, min_distance=0, max_distance=None):
    """One passkey window: <s> filler ... needle ... filler question answer (plant's fields; the
    distance at most max_distance where the window allows)."""
    key = f"{rng.randrange(10000, 100000)}"
    tail = tok.encode(QUESTION + key)
    answer = next((k for k in range(1, len(tail)) if tok.decode(tail[-k:]).strip() == key), 0)
    if not answer:
        raise ValueError(f"the answer {key} is not a token suffix of the question")
    return plant(rng, filler, seq_len, tok.encode(needle(key)), tail, answer, min_distance, max_distance)


COPY_SPAN, COPY_CUE = 24, 4
_pools = {}  # id(filler) -> (filler, its distinct ids); holding filler keeps its id from reuse


def make_copy_example(rng, filler, seq_len, min_distance=0, max_distance=None):
    """The span-copy task: a span of COPY_SPAN tokens drawn uniformly from the filler's distinct
    ids (so no language prior helps: chance is one over their number) planted at a random depth,
    and at the window's end its first COPY_CUE tokens again, then the rest as the answer:
      <s> filler ... SPAN ... filler SPAN[:cue] SPAN[cue:]
    Copying it back is what an induction head does, over whatever distance the span lies. Same
    fields as make_example's."""
    if id(filler) not in _pools:
        _pools[id(filler)] = (filler, sorted(set(filler)))
    pool = _pools[id(filler)][1]
    span = [pool[rng.randrange(len(pool))] for _ in range(COPY_SPAN)]
    return plant(rng, filler, seq_len, span, span, COPY_SPAN - COPY_CUE, min_distance, max_distance)


def make_task_example(task, rng, tok, filler, seq_len, min_distance=0, max_distance=None):
    """make_example (task "passkey") or make_copy_example (task "copy")."""
    if task == "copy":
        return make_copy_example(rng, filler, seq_len, min_distance, max_distance)
    return make_example(rng, tok, filler, seq_len, min_distance, max_distance)


def make(args):
    rng = random.Random(args.seed)
    tok = load_tokenizer(args.tokenizer)
    filler = tok.encode(ascii_filler(args.filler))
    with open(args.out, "w") as out:
        for _ in range(args.samples):
            try:
                example = make_task_example(args.task, rng, tok, filler, args.seq_len, args.min_distance)
            except ValueError as e:
                sys.exit(f"passkey: {e} (--seq-len {args.seq_len}, --filler {args.filler})")
            out.write(json.dumps(example) + "\n")
    print(f"passkey: wrote {args.samples} examples of {args.seq_len} tokens to {args.out}")


def load_adapter(model, adapter):
    """PeftModel of `model` with `adapter`; exits when the file's tensors did not all load."""
    import os

    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    model = PeftModel.from_pretrained(model, adapter)
    saved = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    params = dict(model.named_parameters())
    loaded = 0
    for name, tensor in saved.items():
        # PEFT stores "base_model.model.X.lora_A.weight"; in the module it is "....lora_A.default.weight".
        live = name.replace(".lora_A.weight", ".lora_A.default.weight").replace(
            ".lora_B.weight", ".lora_B.default.weight")
        if live not in params:
            sys.exit(f"passkey: adapter tensor {name} of {adapter} has no parameter in the PEFT model")
        if not torch.equal(params[live].detach().cpu().to(tensor.dtype), tensor):
            sys.exit(f"passkey: adapter tensor {name} of {adapter} was not loaded")
        loaded += 1
    if not any(n.endswith("lora_B.weight") and t.abs().sum() > 0 for n, t in saved.items()):
        sys.exit(f"passkey: every lora_B of {adapter} is zero: the adapter is a no-op")
    return model, loaded


def score_answer(model, example, device):
    """(a bool tensor: is each answer token the argmax, the summed loss on them) of one example,
    teacher-forced; the caller sets eval mode, no_grad and any autocast."""
    import torch

    ids = torch.tensor([example["input_ids"]], device=device)
    answer = sum(example["loss_mask"])
    logits = model(input_ids=ids).logits[0, -answer - 1:-1].float()  # positions predicting the answer
    target = ids[0, -answer:]
    return logits.argmax(-1) == target, float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))


def evaluate(args):
    import torch
    from transformers import LlamaForCausalLM

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = LlamaForCausalLM.from_pretrained(args.model, dtype=dtype)
    loaded = 0
    if args.adapter:
        model, loaded = load_adapter(model, args.adapter)
    model.to(device).eval()
    with open(args.data) as f:
        docs = [json.loads(line) for line in f if line.strip()][:args.samples]
    if not docs:
        sys.exit(f"passkey: {args.data} has no examples")
    # right, total, keys right, loss, keys; "near": keys within --far tokens, which the pretraining
    # context covers, "far": beyond it
    buckets = {name: [0, 0, 0, 0.0, 0] for name in ("all", "near", "far")}
    with torch.no_grad():
        for doc in docs:
            right, loss = score_answer(model, doc, device)
            answer = len(right)
            for name in ("all", "far" if doc["distance"] > args.far else "near"):
                b = buckets[name]
                b[0] += int(right.sum())
                b[1] += answer
                b[2] += int(bool(right.all()))
                b[3] += loss
                b[4] += 1
    result = {"samples": len(docs), "adapter": args.adapter or None, "adapter_tensors": loaded, "far": args.far}
    for name, (right, total, keys, loss, n) in buckets.items():
        prefix = "" if name == "all" else name + "_"
        result[prefix + "keys"] = n
        result[prefix + "digit_accuracy"] = right / total if total else None
        result[prefix + "key_accuracy"] = keys / n if n else None
        result[prefix + "digit_loss"] = loss / total if total else None
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write passkey examples (TOKENS_JSONL)")
    m.add_argument("--filler", required=True, help="JSONL book with a text field")
    m.add_argument("--out", required=True)
    m.add_argument("--samples", type=int, default=800)
    m.add_argument("--seq-len", type=int, default=8192)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--tokenizer", default="byte", help="byte, or a SentencePiece tokenizer.model")
    m.add_argument("--min-distance", type=int, default=0, help="fewest tokens between needle and answer")
    m.add_argument("--task", default="passkey", choices=TASKS,
                   help="passkey: a 5-digit key to retrieve; copy: a span of random tokens to copy back")
    e = sub.add_parser("eval", help="score passkey retrieval")
    e.add_argument("--model", required=True)
    e.add_argument("--adapter", default="")
    e.add_argument("--data", required=True)
    e.add_argument("--samples", type=int, default=200)
    e.add_argument("--device", default="cuda")
    e.add_argument("--json", default="")
    e.add_argument("--far", type=int, default=1024, help="keys farther back than this count as far")
    args = p.parse_args(argv)
    return make(args) if args.cmd == "make" else evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
