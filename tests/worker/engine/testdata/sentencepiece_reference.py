#!/usr/bin/env python3
"""Trains small SentencePiece models with Python's sentencepiece and records what it encodes.

tokenizer_test.cc runs this (through $LEMO_PYTHON) and checks that the C++ SentencePieceTokenizer,
over Debian's libsentencepiece, gives exactly the same ids for the same model.

    sentencepiece_reference.py CORPUS_JSONL OUT_DIR STRINGS_JSON

Writes OUT_DIR/<kind>.model for kind in unigram, bpe (BPE with byte fallback, as Llama's
tokenizer is) and OUT_DIR/expected.json:
    {"<kind>": {"vocab_size", "bos_id", "eos_id", "cases": [{"text", "ids", "decoded"}]}}
"""
import json
import os
import sys

import sentencepiece as spm

MAX_DOCS = 12  # about 170 KB of the corpus: plenty for 800 pieces, trains in about a second


def main():
    corpus, out_dir, strings_path = sys.argv[1:4]
    with open(strings_path, encoding="utf-8") as f:
        strings = json.load(f)
    train_txt = os.path.join(out_dir, "train.txt")
    with open(corpus, encoding="utf-8") as src, open(train_txt, "w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i == MAX_DOCS:
                break
            for para in json.loads(line)["text"].split("\n\n"):
                dst.write(para.strip() + "\n")
    kinds = {
        "unigram": dict(model_type="unigram"),
        "bpe": dict(model_type="bpe", byte_fallback=True),
    }
    expected = {}
    for kind, extra in kinds.items():
        prefix = os.path.join(out_dir, kind)
        spm.SentencePieceTrainer.train(
            input=train_txt, model_prefix=prefix, vocab_size=800, num_threads=1,
            character_coverage=1.0, seed_sentencepiece_size=100000, minloglevel=2, **extra)
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        cases = []
        for text in strings:
            ids = sp.encode(text)
            cases.append({"text": text, "ids": ids, "decoded": sp.decode(ids)})
        expected[kind] = {"vocab_size": sp.get_piece_size(), "bos_id": sp.bos_id(),
                          "eos_id": sp.eos_id(), "cases": cases}
    with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
