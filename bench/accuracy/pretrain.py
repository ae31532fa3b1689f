#!/usr/bin/env python3
"""Step 1 of the accuracy study (docs/accuracy.md): train a small Llama from scratch on real text.

Usage (GPU machine; the image's python has torch + transformers):
  python3 bench/accuracy/pretrain.py --corpus bench/data/corpus.jsonl --out /tmp/acc \
      [--minutes 3] [--seq-len 1024] [--batch 32] [--device cuda]

Writes to --out:
  train.jsonl      the pretraining books (all but the two below)
  finetune.jsonl   --finetune-book: unseen in pretraining, used for the long-context fine-tunes
                   (its first --val-tokens also pick the pretraining checkpoint: early stopping)
  heldout.jsonl    --heldout-book: seen by nothing before evaluation
  model/                      the HF model (config.json + model.safetensors), loadable by lemo-train
  pretrain.json               held-out loss at --seq-len, the unigram baseline, steps, tokens

Tokens are lemo-train's byte tokenizer ("--tokenizer byte"): <s> = 1, </s> = 2, byte b -> b + 3,
each chapter wrapped in <s> ... </s> as lemo-train's packing does. The unigram baseline is the
cross-entropy of the held-out tokens under the training set's token frequencies: a model "far below
the unigram level" has learned more than letter frequencies.
"""
import argparse
import collections
import json
import math
import os
import sys
import time

import torch


def split_corpus(path, finetune_book, heldout_book, out_dir):
    parts = {"train": [], "finetune": [], "heldout": []}
    with open(path) as f:
        for line in f:
            doc = json.loads(line)
            book = doc.get("book")
            parts["heldout" if book == heldout_book else "finetune" if book == finetune_book else "train"].append(doc)
    for name, docs in parts.items():
        if not docs:
            sys.exit(f"pretrain: the {name} split of {path} is empty (books {finetune_book!r}, {heldout_book!r})")
        with open(os.path.join(out_dir, f"{name}.jsonl"), "w") as f:
            for d in docs:
                f.write(json.dumps({"text": d["text"]}) + "\n")
    return parts["train"], parts["finetune"], parts["heldout"]


def encode(docs):
    ids = []
    for d in docs:
        ids.append(1)
        ids.extend(b + 3 for b in d["text"].encode("utf-8"))
        ids.append(2)
    return torch.tensor(ids, dtype=torch.long)


def unigram_loss(train_ids, heldout_ids, vocab):
    counts = collections.Counter(train_ids.tolist())
    total = sum(counts.values()) + vocab  # add-one smoothing
    nll = sum(-math.log((counts.get(t, 0) + 1) / total) for t in heldout_ids.tolist())
    return nll / len(heldout_ids)


def batches(ids, seq_len, batch, generator):
    starts = torch.randint(0, len(ids) - seq_len - 1, (batch,), generator=generator)
    return torch.stack([ids[s:s + seq_len] for s in starts.tolist()])


@torch.no_grad()
def heldout_loss(model, ids, seq_len, device):
    model.eval()
    losses = []
    for s in range(0, len(ids) - seq_len, seq_len):
        x = ids[s:s + seq_len].unsqueeze(0).to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            losses.append(model(input_ids=x, labels=x).loss.float().item())
    model.train()
    return sum(losses) / len(losses)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="bench/data/corpus.jsonl")
    p.add_argument("--heldout-book", default="Persuasion")
    p.add_argument("--finetune-book", default="Emma")
    p.add_argument("--val-tokens", type=int, default=65536, help="early-stopping slice of the fine-tune book")
    p.add_argument("--eval-every", type=int, default=100, help="steps between early-stopping checks")
    p.add_argument("--patience", type=int, default=3, help="checks without improvement before stopping")
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=3.0, help="training time budget")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--max-positions", type=int, default=16384)
    p.add_argument("--device", default="cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-tokens", type=int, default=0, help="held-out tokens evaluated; 0 = all")
    args = p.parse_args(argv)
    from transformers import LlamaConfig, LlamaForCausalLM

    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    train_docs, finetune_docs, heldout_docs = split_corpus(args.corpus, args.finetune_book, args.heldout_book,
                                                           args.out)
    train_ids, heldout_ids = encode(train_docs), encode(heldout_docs)
    val_ids = encode(finetune_docs)[:args.val_tokens]
    vocab = 320  # the tiny preset's vocabulary: covers the byte tokenizer's 259
    config = LlamaConfig(vocab_size=vocab, hidden_size=args.hidden, intermediate_size=int(args.hidden * 8 / 3 // 8 * 8),
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.kv_heads, max_position_embeddings=args.max_positions,
                         rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config).to(device)
    model.config._attn_implementation = "sdpa"
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    budget = args.minutes * 60
    warmup, step, t0, log = 100, 0, time.time(), []
    # Early stopping: a byte-level model this size memorises 3.5 MB of text within a few epochs,
    # and its loss on unseen books then climbs; keep the weights that did best on unseen text.
    best, best_state, since_best = float("inf"), None, 0
    while time.time() - t0 < budget and since_best < args.patience:
        frac = min(1.0, (time.time() - t0) / budget)
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        x = batches(train_ids, args.seq_len, args.batch, gen).to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % args.eval_every == 0:
            val = heldout_loss(model, val_ids, args.seq_len, device)
            if val < best:
                best, since_best = val, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
            log.append({"step": step, "seconds": round(time.time() - t0, 1), "train_loss": round(loss.item(), 4),
                        "val_loss": round(val, 4)})
            print(json.dumps(log[-1]), flush=True)
    if best_state is not None:
        model.load_state_dict(best_state)
    result = {
        "steps": step, "seconds": round(time.time() - t0, 1), "tokens": step * args.batch * args.seq_len,
        "params": sum(p.numel() for p in model.parameters()), "seq_len": args.seq_len,
        "train_tokens": len(train_ids), "heldout_tokens": len(heldout_ids),
        "val_loss": round(best, 4), "stopped_early": since_best >= args.patience,
        "heldout_loss": round(heldout_loss(model, heldout_ids[:args.eval_tokens or None], args.seq_len, device), 4),
        "unigram_loss": round(unigram_loss(train_ids, heldout_ids, vocab), 4),
        "config": {"hidden": args.hidden, "layers": args.layers, "heads": args.heads, "kv_heads": args.kv_heads},
        "log": log,
    }
    model.save_pretrained(os.path.join(args.out, "model"), safe_serialization=True)
    with open(os.path.join(args.out, "pretrain.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "log"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
