#!/usr/bin/env python3
"""Trains small tokenizer.json files with Python's `tokenizers` and records what it encodes.

hf_tokenizer_test.cc runs this (through $LEMO_PYTHON) and checks that the C++ HfTokenizer gives
exactly the same ids, and the same decoded text, for every case.

    hf_tokenizer_reference.py CORPUS_JSONL OUT_DIR [N_GENERATED] [EXTRA_TOKENIZER_JSON...]

Writes:
  OUT_DIR/cases.json          [{"text", "added"}]: the corpus's documents, then N_GENERATED
                              (default 10000) random strings; "added" marks strings holding an
                              added or special token (their decoding does not round-trip).
  OUT_DIR/<kind>/tokenizer.json (+ tokenizer_config.json where the kind has one), for kinds
      bytelevel      Llama-3's layout: Split(Llama-3 regex, Isolated) + ByteLevel(use_regex
                     false), ignore_merges, ByteLevel decoder, merges as pairs
      qwen2          Qwen2's layout: NFC normalizer, Qwen2's regex (single digits), else as
                     bytelevel; tokenizer_config.json without a bos
      gpt2           GPT-2's layout: ByteLevel(use_regex true), merges as "a b" strings
      metaspace      Llama-2's layout: Prepend("▁") + Replace(" ", "▁") normalizers, no
                     pre-tokenizer, byte fallback (<0xXX>), Replace/ByteFallback/Fuse/Strip
                     decoder, merges as "a b" strings
      metaspace_pre  Mistral's layout: Metaspace(prepend_scheme first, split false)
                     pre-tokenizer, the same model and decoder
    and a copy of each EXTRA_TOKENIZER_JSON (gunzipped when it ends in .gz) as extra<i>.
  OUT_DIR/expected.json       {"<kind>": {"vocab_size", "bos_id", "eos_id", "ids": [[...]],
                               "decoded": [...], "round_trip": [...]}}: Python's encode(text,
                              add_special_tokens=False) and decode(ids, skip_special_tokens=True);
                              round_trip marks the cases whose decoding must give the text back
                              (checked here for Python too).
"""
import gzip
import json
import os
import random
import shutil
import sys
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, trainers

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen2's: single digits, and an NFC normalizer in front.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TRAIN_DOCS = 40  # about 600 KB of the corpus: enough for a few thousand merges in seconds
SEED = 17

# Fragments the generated strings are built from: every script the regexes treat differently,
# digits of several kinds, whitespace runs (including NEL, which Oniguruma's \s matches and
# PCRE2's does not), emoji sequences, the characters the byte-level and Metaspace tokenizers
# use internally, and contractions in both cases.
SCRIPTS = [
    "naïve café", "nai\u0308ve cafe\u0301", "A\u030angstro\u0308m", "Ærøskøbing", "Straße", "ĳ ŉ", "Ελληνικά κείμενα", "Русский текст",
    "日本語のテキスト", "中文文本", "한국어 텍스트", "العربية", "עברית", "हिन्दी",
    "ภาษาไทย", "ქართული", "Ⅻ ⅷ", "ﬁ ﬂ", "Ｆｕｌｌｗｉｄｔｈ", "ǅ", "ß",
]
EMOJI = ["🙂", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🧪", "\u200d", "\ufe0f", "😀😀😀"]
DIGITS = ["0", "7", "42", "123", "1234", "98765", "3.14159", "1,000,000", "٣٤٥", "１２３", "²"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "\u0085",
          "\u2028", " \t ", "\u2003"]
PUNCT = [".", ",", "!?", "...", "--", "—", "“", "”", "(", ")", "[", "]", "{", "}", "#", "@",
         "$", "%", "&", "*", "/", "\\", "'", "\"", "`", "~", "^", "_", "|", "<", ">", "=", "+"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ll", "'D"]
INTERNAL = ["▁", "▁▁", "Ġ", "Ċ", "ĉ", "<0x41>", "<unk>", "<s", "s>"]


def added_fragments(kind):
    if kind in ("bytelevel", "gpt2"):
        return ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<tag>", "[MASK]",
                "Mr. Darcy"]
    return ["<s>", "</s>", "<unk>", "<tag>", "[MASK]", "Mr. Darcy"]


def generate(rng, words, n):
    """n random strings; about one in five holds an added or special token."""
    cases = []
    pools = [SCRIPTS, EMOJI, DIGITS, SPACES, PUNCT, CONTRACTIONS, INTERNAL]
    for _ in range(n):
        with_added = rng.random() < 0.2
        parts = []
        for _ in range(rng.randint(1, 24)):
            r = rng.random()
            if r < 0.45:
                parts.append(rng.choice(words))
            elif r < 0.6:
                parts.append(" ")
            else:
                parts.append(rng.choice(rng.choice(pools)))
            if rng.random() < 0.1:
                parts.append(rng.choice(words).upper())
        if with_added:
            for _ in range(rng.randint(1, 3)):
                tok = rng.choice(added_fragments("bytelevel") + added_fragments("metaspace"))
                pad_l = rng.choice(["", " ", "  ", "\n"])
                pad_r = rng.choice(["", " ", "  ", "\n"])
                parts.insert(rng.randint(0, len(parts)), pad_l + tok + pad_r)
        cases.append({"text": "".join(parts), "added": with_added})
    return cases


def train_bytelevel(lines, use_llama3_split, pattern=LLAMA3_PATTERN, nfc=False):
    tok = Tokenizer(models.BPE(ignore_merges=use_llama3_split))
    if nfc:
        tok.normalizer = normalizers.NFC()
    if use_llama3_split:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=3000, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|begin_of_text|>", "<|end_of_text|>"])
    tok.train_from_iterator(lines, trainer=trainer)
    tok.add_special_tokens([AddedToken("<|eot_id|>", special=True, normalized=False),
                            AddedToken("[MASK]", special=True, lstrip=True, rstrip=True,
                                       normalized=False)])
    tok.add_tokens([AddedToken("<tag>", rstrip=True, normalized=False),
                    AddedToken("Mr. Darcy", single_word=True, normalized=True)])
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
    return tok, config


def train_metaspace(lines, layout):
    # Trained with a Metaspace pre-tokenizer (so merges stay inside words, as SentencePiece's
    # do), then given the layout real checkpoints ship.
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=2000, min_frequency=2, show_progress=False,
                                  limit_alphabet=80, special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(lines, trainer=trainer)
    spec = json.loads(tok.to_str())
    # Llama-2's id layout: <unk> <s> </s>, the 256 byte tokens, then the learned pieces.
    learned = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for piece, _ in learned:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    spec["model"]["vocab"] = vocab
    spec["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                               for m in spec["model"]["merges"]]
    spec["added_tokens"] = [
        {"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for t in ("<unk>", "<s>", "</s>")]
    if layout == "metaspace":
        spec["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
        spec["pre_tokenizer"] = None
    else:
        spec["normalizer"] = None
        spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁",
                                 "prepend_scheme": "first", "split": False}
    spec["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.add_special_tokens([AddedToken("[MASK]", special=True, lstrip=True, normalized=False)])
    # A normalized added token: matched against normalized text, as "▁<tag>" under Prepend.
    tok.add_tokens([AddedToken("<tag>", normalized=True),
                    AddedToken("Mr. Darcy", normalized=False, rstrip=True)])
    config = {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True,
              "add_eos_token": False}
    return tok, config


def save(tok, config, out_dir, kind, strings_format=False):
    d = os.path.join(out_dir, kind)
    os.makedirs(d, exist_ok=True)
    spec = json.loads(tok.to_str())
    if strings_format:
        spec["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                                   for m in spec["model"]["merges"]]
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    if config is not None:
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)
    # What the C++ side loads is what Python re-reads, so both see the same file.
    return Tokenizer.from_file(os.path.join(d, "tokenizer.json"))


def token_id(tok, config, key):
    if config is None or config.get(key) is None:
        return -1
    if key == "bos_token" and config.get("add_bos_token") is False:
        return -1
    return tok.token_to_id(config[key])


def main():
    corpus, out_dir = sys.argv[1:3]
    n_generated = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    extras = sys.argv[4:]
    with open(corpus, encoding="utf-8") as f:
        docs = [json.loads(line)["text"] for line in f]
    train_lines = [p for d in docs[:TRAIN_DOCS] for p in d.split("\n\n")]
    words = sorted({w for d in docs[:TRAIN_DOCS] for w in d.split()})
    rng = random.Random(SEED)
    cases = [{"text": d, "added": False} for d in docs] + generate(rng, words, n_generated)
    with open(os.path.join(out_dir, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False)

    tokenizers = {}
    tok, config = train_bytelevel(train_lines, use_llama3_split=True)
    tokenizers["bytelevel"] = (save(tok, config, out_dir, "bytelevel"), config)
    tok, config = train_bytelevel(train_lines, use_llama3_split=True, pattern=QWEN2_PATTERN,
                                  nfc=True)
    config = {"bos_token": None, "eos_token": "<|end_of_text|>"}  # Qwen2 has no bos
    tokenizers["qwen2"] = (save(tok, config, out_dir, "qwen2"), config)
    tok, config = train_bytelevel(train_lines, use_llama3_split=False)
    tokenizers["gpt2"] = (save(tok, config, out_dir, "gpt2", strings_format=True), config)
    for layout in ("metaspace", "metaspace_pre"):
        tok, config = train_metaspace(train_lines, layout)
        tokenizers[layout] = (save(tok, config, out_dir, layout), config)
    for i, path in enumerate(extras):
        kind = "extra%d" % i
        os.makedirs(os.path.join(out_dir, kind), exist_ok=True)
        dst = os.path.join(out_dir, kind, "tokenizer.json")
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as src, \
                open(dst, "wb") as f:
            shutil.copyfileobj(src, f)
        tokenizers[kind] = (Tokenizer.from_file(dst), None)

    expected = {}
    texts = [c["text"] for c in cases]
    for kind, (tok, config) in tokenizers.items():
        encodings = tok.encode_batch(texts, add_special_tokens=False)
        ids = [e.ids for e in encodings]
        decoded = tok.decode_batch(ids, skip_special_tokens=True)
        # Decoding gives the text back unless the text holds an added token's content (special
        # ones are skipped; lstrip/rstrip ones eat spaces) or the Metaspace replacement "▁"
        # (it decodes as a space), or starts with a space under prepend_scheme "first" (no "▁"
        # is prepended, yet the Strip decoder drops one space), or the tokenizer normalizes
        # (the shipped NFKC one; qwen2's NFC changes only text not already in NFC).
        contents = [t.content for t in tok.get_added_tokens_decoder().values()]
        lossless = not kind.startswith("extra")
        round_trip = [lossless and not any(c in t for c in contents)
                      and not (kind == "qwen2" and unicodedata.normalize("NFC", t) != t)
                      and not (kind.startswith("metaspace") and "▁" in t)
                      and not (kind == "metaspace_pre" and t.startswith(" ")) for t in texts]
        broken = [t for t, d, r in zip(texts, decoded, round_trip) if r and d != t]
        if broken:
            sys.exit("%s: Python does not round-trip %d strings, e.g. %r"
                     % (kind, len(broken), broken[0][:200]))
        expected[kind] = {
            "vocab_size": max(tok.get_vocab(with_added_tokens=True).values()) + 1,
            "bos_id": token_id(tok, config, "bos_token"),
            "eos_id": token_id(tok, config, "eos_token"),
            "ids": ids, "decoded": decoded, "round_trip": round_trip}
    with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
