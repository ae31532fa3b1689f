#!/usr/bin/env python3
"""Step 1 of the accuracy study (docs/accuracy.md): train a small Llama from scratch on real text.

Usage (GPU machine; the image's python has torch + transformers + sentencepiece):
  python3 bench/accuracy/pretrain.py --corpus bench/data/corpus.jsonl --out /tmp/acc \
      [--minutes 3] [--seq-len 1024] [--batch 32] [--device cuda]
  # study v2's larger model: a SentencePiece tokenizer trained on the pretraining books, 16 layers,
  # a 20-minute budget spent over several device calls (each call resumes the saved state):
  python3 bench/accuracy/pretrain.py --out /tmp/acc-big --spm-vocab 8000 --layers 16 --hidden 768 \
      --heads 12 --kv-heads 4 --seq-len 2048 --batch 16 --minutes 20 --call-minutes 7

Writes to --out:
  train.jsonl      the pretraining books (all but the two below)
  finetune.jsonl   --finetune-book: unseen in pretraining, used for the long-context fine-tunes
                   (its first --val-tokens also pick the pretraining checkpoint: early stopping)
  heldout.jsonl    --heldout-book: seen by nothing before evaluation
  model/                      the HF model (config.json + model.safetensors), loadable by lemo-train
  pretrain.json               held-out loss at --seq-len, the unigram baseline, steps, tokens
  tokenizer.model  (--spm-vocab) the SentencePiece model, also copied into model/ so that
                   lemo-train's default tokenizer (the model directory's own) is this one
  state.pt         (--call-minutes) the resumable training state, saved every --save-seconds and at
                   the end of the call; model/ and pretrain.json appear only once training is done
                   (budget spent or stopped early). Exit status 0 either way; pretrain.json's
                   presence says done.

Byte tokens (the default) are lemo-train's byte tokenizer ("--tokenizer byte"): <s> = 1, </s> = 2, byte b -> b + 3,
each chapter wrapped in <s> ... </s> as lemo-train's packing does. The unigram baseline is the
cross-entropy of the held-out tokens under the training set's token frequencies: a model "far below
the unigram level" has learned more than letter frequencies.

With --spm-vocab N, a SentencePiece unigram model of N pieces is trained on the pretraining books
only (unk 0, <s> 1, </s> 2 as lemo-train's byte tokenizer; digits split into single pieces so that a
5-digit pass key is 5 tokens; byte fallback so any text encodes; no normalisation, so that
lemo-train's libsentencepiece and this script's Python sentencepiece give the same ids), and every
split is encoded with it, each chapter framed <s> ... </s> as lemo-train packs text.
"""
import argparse
import collections
import json
import math
import os
import shutil
import sys
import time

import torch

import passkey  # bench/accuracy/passkey.py, beside this script


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


def train_spm(train_docs, vocab, out_dir, seed):
    """SentencePiece model of `vocab` pieces trained on `train_docs`; returns its path."""
    import sentencepiece as spm

    path = os.path.join(out_dir, "tokenizer.model")
    if os.path.exists(path):
        return path
    text = os.path.join(out_dir, "spm-train.txt")
    with open(text, "w") as f:
        for d in train_docs:
            for para in d["text"].split("\n"):
                if para.strip():
                    f.write(para + "\n")
    spm.SentencePieceTrainer.train(
        input=text, model_prefix=os.path.join(out_dir, "tokenizer"), vocab_size=vocab, model_type="unigram",
        character_coverage=1.0, byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, max_sentence_length=1 << 16,
        num_threads=os.cpu_count() or 1, minloglevel=2)
    os.remove(text)
    return path


class ByteEncoder:
    vocab_size = 259

    def encode(self, text):
        return [b + 3 for b in text.encode("utf-8")]


def make_encoder(spm_path):
    if not spm_path:
        return ByteEncoder()
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=spm_path)


def encode(docs, encoder=None):
    encoder = encoder or ByteEncoder()
    ids = []
    for d in docs:
        ids.append(1)
        ids.extend(encoder.encode(d["text"]))
        ids.append(2)
    return torch.tensor(ids, dtype=torch.long)


def unigram_loss(train_ids, heldout_ids, vocab):
    counts = collections.Counter(train_ids.tolist())
    total = sum(counts.values()) + vocab  # add-one smoothing
    nll = sum(-math.log((counts.get(t, 0) + 1) / total) for t in heldout_ids.tolist())
    return nll / len(heldout_ids)


class PasskeyRows:
    """Passkey windows of the pretraining length (passkey.py's), mixed into every batch so that the
    base model learns to retrieve within its own context; the long-context fine-tunes then show
    whether dense LoRA and LeMo carry that beyond it. Training windows are made from the training
    books, the accuracy check's from the early-stopping book (unseen)."""

    CHECK = 64  # windows in the accuracy check

    def __init__(self, encoder, train_docs, check_docs, seq_len, seed, task="passkey"):
        import random

        self.task = task
        self.tok = encoder if hasattr(encoder, "decode") else passkey.ByteTokens()
        self.rng = random.Random(seed)
        self.filler = self.tok.encode(passkey.ascii_text(d["text"] for d in train_docs))
        check_filler = self.tok.encode(passkey.ascii_text(d["text"] for d in check_docs))
        check_rng = random.Random(seed + 1)
        self.check = [passkey.make_task_example(task, check_rng, self.tok, check_filler, seq_len)
                      for _ in range(self.CHECK)]

    def loss(self, model, book_rows, rows, device, seq_len, max_distance=None):
        """The mean token loss of every row, the passkey rows' included (their filler is book text,
        and the needle repeats its key: a short-range copy to learn from), plus the passkey rows'
        mean loss on their answers (the long-range copy, 5 tokens a row, weighted up). seq_len:
        the windows' length: the check windows' (--seq-len), or shorter under --window-warmup."""
        examples = [passkey.make_task_example(self.task, self.rng, self.tok, self.filler, seq_len,
                                                   max_distance=max_distance) for _ in range(rows)]
        x = torch.cat([book_rows, torch.tensor([e["input_ids"] for e in examples])]).to(device)
        logits = model(input_ids=x).logits[:, :-1].float()
        targets = x[:, 1:]
        lm = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        n_book = len(book_rows)
        mask = torch.tensor([e["loss_mask"][1:] for e in examples], device=device, dtype=torch.bool)
        answer = torch.nn.functional.cross_entropy(logits[n_book:][mask], targets[n_book:][mask])
        return lm + answer

    @torch.no_grad()
    def accuracy(self, model, device):
        """{"passkey_token_accuracy": the fraction of the check windows' answer tokens that are the
        argmax (chance: about 0.1), "passkey_key_accuracy": of the windows with all of them right,
        "passkey_answer_loss": the mean loss on their answer tokens}."""
        model.eval()
        tokens = keys = total = 0
        loss = 0.0
        for e in self.check:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                right, summed = passkey.score_answer(model, e, device)
            tokens += int(right.sum())
            total += len(right)
            keys += int(bool(right.all()))
            loss += summed
        model.train()
        return {"passkey_token_accuracy": round(tokens / total, 4),
                "passkey_key_accuracy": round(keys / len(self.check), 4),
                "passkey_answer_loss": round(loss / total, 4)}


def batches(ids, seq_len, batch, generator):
    starts = torch.randint(0, len(ids) - seq_len - 1, (batch,), generator=generator)
    return torch.stack([ids[s:s + seq_len] for s in starts.tolist()])


@torch.no_grad()
def heldout_loss(model, ids, seq_len, device):
    """The mean loss of the whole seq_len windows of ids (a window needs seq_len + 1 tokens: the
    last one only as the final target). ValueError when there is none, instead of a division by
    zero after the training (pretrain.py checks its flags for this up front)."""
    if len(ids) <= seq_len:
        raise ValueError(f"{len(ids)} held-out tokens hold no window of {seq_len} tokens")
    model.eval()
    losses = []
    for s in range(0, len(ids) - seq_len, seq_len):
        x = ids[s:s + seq_len].unsqueeze(0).to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            losses.append(model(input_ids=x, labels=x).loss.float().item())
    model.train()
    return sum(losses) / len(losses)


def parse_window_warmup(text, seq_len):
    """--window-warmup LEN:STEPS as (LEN, STEPS); (seq_len, 0) when not given. LEN must divide seq_len
    so that the warmup's steps hold the same tokens as the rest."""
    if not text:
        return seq_len, 0
    try:
        length, steps = (int(v) for v in text.split(":"))
    except ValueError:
        sys.exit(f"pretrain: --window-warmup {text!r} must be LEN:STEPS, two whole numbers")
    if length <= 0 or steps < 0 or seq_len % length:
        sys.exit(f"pretrain: --window-warmup {text!r}: LEN must be positive and divide --seq-len {seq_len}, "
                 "and STEPS must not be negative")
    return length, steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="bench/data/corpus.jsonl")
    p.add_argument("--heldout-book", default="Persuasion")
    p.add_argument("--finetune-book", default="Emma")
    p.add_argument("--val-tokens", type=int, default=65536, help="early-stopping slice of the fine-tune book")
    p.add_argument("--eval-every", type=int, default=100, help="steps between early-stopping checks")
    p.add_argument("--patience", type=int, default=3, help="checks without improvement before stopping")
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=3.0, help="training time budget (over all calls)")
    p.add_argument("--call-minutes", type=float, default=0.0,
                   help="train at most this long in this invocation, saving state.pt to resume from (0: no limit, "
                        "no state file)")
    p.add_argument("--save-seconds", type=float, default=120.0, help="state.pt save interval with --call-minutes")
    p.add_argument("--spm-vocab", type=int, default=0, help="train a SentencePiece tokenizer of this size (0: bytes)")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=100, help="linear LR warmup")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--intermediate", type=int, default=0, help="MLP width (0: 8/3 hidden, a multiple of 8)")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--max-positions", type=int, default=16384)
    p.add_argument("--device", default="cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-tokens", type=int, default=0, help="held-out tokens evaluated; 0 = all")
    p.add_argument("--passkey-rows", type=int, default=0,
                   help="rows of each batch that are passkey windows (passkey.py) made from the training books, "
                        "trained like book text plus their answer's loss, so that the base model can retrieve "
                        "within its context")
    p.add_argument("--passkey-curriculum", type=int, default=0, metavar="STEPS",
                   help="place the rows' needles at most 128 tokens before the question at first, doubling that "
                        "reach every STEPS steps (0: anywhere from the start)")
    p.add_argument("--window-warmup", default="", metavar="LEN:STEPS",
                   help="train on windows of LEN tokens for the first STEPS steps, with seq-len/LEN times the "
                        "rows (the same tokens a step), then on --seq-len windows; the checks stay at --seq-len")
    p.add_argument("--passkey-task", default="passkey", choices=passkey.TASKS,
                   help="what those rows hold: passkey.py's passkey windows, or its span-copy task (make --task copy)")
    args = p.parse_args(argv)
    # Bad flags end the run here, before the tokenizer and the model cost anything.
    warm_len, warm_steps = parse_window_warmup(args.window_warmup, args.seq_len)
    # heldout_loss needs more than one window's tokens; say so now, not after the whole budget
    # (2026-12-07: --eval-tokens 2048 at --seq-len 2048 crashed at the final evaluation).
    for flag, tokens in (("--val-tokens", args.val_tokens), ("--eval-tokens", args.eval_tokens)):
        if tokens and tokens <= args.seq_len:
            sys.exit(f"pretrain: {flag} {tokens} must be above --seq-len {args.seq_len} (or 0 for --eval-tokens: all)")
    if not 0 <= args.passkey_rows < args.batch:
        sys.exit(f"pretrain: --passkey-rows {args.passkey_rows} must be at least 0 and below --batch {args.batch}")
    from transformers import LlamaConfig, LlamaForCausalLM

    os.makedirs(args.out, exist_ok=True)
    if os.path.exists(os.path.join(args.out, "pretrain.json")) and os.path.exists(
            os.path.join(args.out, "model", "config.json")):
        print(f"pretrain: {args.out} already holds a finished model; nothing to do")
        return 0
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    train_docs, finetune_docs, heldout_docs = split_corpus(args.corpus, args.finetune_book, args.heldout_book,
                                                           args.out)
    spm_path = train_spm(train_docs, args.spm_vocab, args.out, args.seed) if args.spm_vocab else ""
    encoder = make_encoder(spm_path)
    train_ids, heldout_ids = encode(train_docs, encoder), encode(heldout_docs, encoder)
    val_ids = encode(finetune_docs, encoder)[:args.val_tokens]
    # Byte ids: the tiny preset's vocabulary of 320 covers the byte tokenizer's 259. SentencePiece:
    # its own size, rounded up to a multiple of 64.
    vocab = 320 if not spm_path else (encoder.vocab_size() + 63) // 64 * 64
    intermediate = args.intermediate or int(args.hidden * 8 / 3 // 8 * 8)
    config = LlamaConfig(vocab_size=vocab, hidden_size=args.hidden, intermediate_size=intermediate,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.kv_heads, max_position_embeddings=args.max_positions,
                         rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2)
    passkeys = (PasskeyRows(encoder, train_docs, finetune_docs, args.seq_len, args.seed, args.passkey_task)
                if args.passkey_rows else None)
    model = LlamaForCausalLM(config).to(device)
    model.config._attn_implementation = "sdpa"
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    budget = args.minutes * 60
    warmup, step, elapsed, log = args.warmup_steps, 0, 0.0, []
    # Early stopping: a model this size memorises the few MB of text within a few epochs, and its
    # loss on unseen books then climbs; keep the weights that did best on unseen text.
    best, best_state, since_best, best_step = float("inf"), None, 0, 0
    state_path = os.path.join(args.out, "state.pt")
    if args.call_minutes and os.path.exists(state_path):
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        # map_location moved the generator's state onto the GPU too, and a CPU generator takes
        # only a CPU ByteTensor (the first resumed GPU pretraining, 2026-12-07, died on it)
        gen.set_state(state["gen"].cpu())
        step, elapsed, log = state["step"], state["elapsed"], state["log"]
        best, best_state, since_best = state["best"], state["best_state"], state["since_best"]
        best_step = state.get("best_step", 0)
        print(json.dumps({"resumed": state_path, "step": step, "elapsed": round(elapsed, 1)}), flush=True)

    def save_state():
        tmp = state_path + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(), "step": step,
                    "elapsed": elapsed, "log": log, "best": best, "best_state": best_state,
                    "since_best": since_best, "best_step": best_step}, tmp)
        os.replace(tmp, state_path)

    call_start = time.time()
    call_budget = args.call_minutes * 60 if args.call_minutes else float("inf")
    last_save = call_start
    t0 = time.time() - elapsed  # elapsed training time over all calls so far
    # With passkey rows the whole budget is trained: retrieval tends to come in a sudden step after
    # a long plateau at chance, while the book's loss is already climbing, so patience would stop
    # before it; the best-scoring checkpoint is still the one kept.
    patience = args.patience if not passkeys else float("inf")
    while elapsed < budget and since_best < patience and time.time() - call_start < call_budget:
        frac = min(1.0, elapsed / budget)
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        # --window-warmup: short windows first, as many more rows as keep the tokens a step
        seq_len, scale = (warm_len, args.seq_len // warm_len) if step < warm_steps else (args.seq_len, 1)
        x = batches(train_ids, seq_len, (args.batch - args.passkey_rows) * scale, gen)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            if passkeys:
                # the curriculum: needles within 128 tokens of the question first, the reach
                # doubling every --passkey-curriculum steps until it spans the window
                reach = (None if not args.passkey_curriculum else
                         int(128 * 2 ** (step / args.passkey_curriculum)))
                loss = passkeys.loss(model, x, args.passkey_rows * scale, device, seq_len,
                                     max_distance=reach)
            else:
                x = x.to(device)
                loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        elapsed = time.time() - t0
        if step % args.eval_every == 0:
            val = heldout_loss(model, val_ids, args.seq_len, device)
            log.append({"step": step, "seconds": round(elapsed, 1), "train_loss": round(loss.item(), 4),
                        "val_loss": round(val, 4)})
            score = val
            if passkeys:
                # The model learns two things: text, whose unseen-book loss turns up within a few
                # epochs, and retrieval, which takes far longer (2026-12-07: stopping on the book
                # alone ended pretraining after 260 steps, before any key was learned). The kept
                # checkpoint is the one best at both: the unseen book's loss plus the check
                # windows' answer loss, both per token.
                log[-1].update(passkeys.accuracy(model, device))
                score = val + log[-1]["passkey_answer_loss"]
            log[-1]["score"] = round(score, 4)
            if score < best:
                best, since_best, best_step = score, 0, step
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
            print(json.dumps(log[-1]), flush=True)
        if args.call_minutes and time.time() - last_save > args.save_seconds:
            save_state()
            last_save = time.time()
    done = elapsed >= budget or since_best >= patience
    if not done:
        save_state()
        print(json.dumps({"paused": state_path, "step": step, "elapsed": round(elapsed, 1),
                          "budget": budget}), flush=True)
        return 0
    if best_state is not None:  # else too short to reach one check: keep the last weights
        model.load_state_dict(best_state)
    val = heldout_loss(model, val_ids, args.seq_len, device)
    result = {
        "steps": step, "seconds": round(elapsed, 1), "tokens": step * args.batch * args.seq_len,
        "params": sum(p.numel() for p in model.parameters()), "seq_len": args.seq_len,
        "tokenizer": f"sentencepiece unigram {encoder.vocab_size()}" if spm_path else "byte",
        "train_tokens": len(train_ids), "heldout_tokens": len(heldout_ids),
        "epochs": round(step * args.batch * args.seq_len / len(train_ids), 2),
        "val_loss": round(val, 4), "stopped_early": since_best >= patience, "kept_step": best_step or step,
        "heldout_loss": round(heldout_loss(model, heldout_ids[:args.eval_tokens or None], args.seq_len, device), 4),
        "unigram_loss": round(unigram_loss(train_ids, heldout_ids, vocab), 4),
        "passkey_rows": args.passkey_rows, "passkey_task": args.passkey_task,
        "passkey_curriculum": args.passkey_curriculum, "window_warmup": args.window_warmup,
        **(passkeys.accuracy(model, device) if passkeys else {}),
        "config": {"hidden": args.hidden, "intermediate": intermediate, "layers": args.layers, "heads": args.heads,
                   "kv_heads": args.kv_heads, "vocab": vocab},
        "log": log,
    }
    model_dir = os.path.join(args.out, "model")
    model.save_pretrained(model_dir, safe_serialization=True)
    if spm_path:
        shutil.copy(spm_path, os.path.join(model_dir, "tokenizer.model"))
    with open(os.path.join(args.out, "pretrain.json"), "w") as f:
        json.dump(result, f, indent=1)
    if os.path.exists(state_path):
        os.remove(state_path)
    print(json.dumps({k: v for k, v in result.items() if k != "log"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
