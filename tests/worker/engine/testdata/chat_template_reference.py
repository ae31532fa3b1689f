#!/usr/bin/env python3
"""Records what transformers' apply_chat_template gives for LeMo's chat template fixtures.

chat_template_test.cc runs this (through $LEMO_PYTHON) and checks that the C++ renderers give
the same text, token ids and assistant-token masks.

    chat_template_reference.py CORPUS_JSONL CONVERSATIONS_JSON TEMPLATE_DIR OUT_DIR

Trains small tokenizers with `tokenizers` (hf_tokenizer_reference.py's layouts, plus each
template's special tokens as added tokens) and writes, for each kind,
  OUT_DIR/<kind>/tokenizer.json, tokenizer_config.json (with the fixture's chat_template)
and OUT_DIR/expected.json: {"<kind>": [{"text", "ids", "mask"}, ...]}, one entry per
conversation, from apply_chat_template(conversation, tokenize=False) and
apply_chat_template(conversation, tokenize=True, return_dict=True,
return_assistant_tokens_mask=True). Kinds:
  llama3       Llama-3's byte-level layout, templates/llama3.jinja
  qwen2        Qwen2's byte-level layout (NFC), templates/qwen2.jinja (default system prompt)
  chatml       the same tokenizer, templates/chatml.jinja (no default system prompt)
  mistral      Llama-2's Metaspace layout (Prepend + Replace normalizers), mistral.jinja
  mistral_pre  Mistral's Metaspace pre-tokenizer layout (prepend_scheme first), mistral.jinja
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_tokenizer_reference as ref  # noqa: E402
from tokenizers import AddedToken  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402


def special(tok, names):
    tok.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in names])


def main():
    corpus, conversations_path, template_dir, out_dir = sys.argv[1:5]
    with open(corpus, encoding="utf-8") as f:
        docs = [json.loads(line)["text"] for line in f]
    lines = [p for d in docs[:ref.TRAIN_DOCS] for p in d.split("\n\n")]
    with open(conversations_path, encoding="utf-8") as f:
        conversations = json.load(f)

    kinds = {}
    tok, _ = ref.train_bytelevel(lines, use_llama3_split=True)
    special(tok, ["<|start_header_id|>", "<|end_header_id|>"])
    kinds["llama3"] = (tok, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
                       "llama3.jinja")
    tok, _ = ref.train_bytelevel(lines, use_llama3_split=True, pattern=ref.QWEN2_PATTERN,
                                 nfc=True)
    special(tok, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    qwen_config = {"bos_token": None, "eos_token": "<|im_end|>"}
    kinds["qwen2"] = (tok, qwen_config, "qwen2.jinja")
    kinds["chatml"] = (tok, qwen_config, "chatml.jinja")
    for layout, kind in (("metaspace", "mistral"), ("metaspace_pre", "mistral_pre")):
        tok, config = ref.train_metaspace(lines, layout)
        kinds[kind] = (tok, config, "mistral.jinja")

    expected = {}
    for kind, (tok, config, template) in kinds.items():
        with open(os.path.join(template_dir, template), encoding="utf-8") as f:
            jinja = f.read()
        config = dict(config, chat_template=jinja,
                      tokenizer_class="PreTrainedTokenizerFast")
        ref.save(tok, config, out_dir, kind)
        d = os.path.join(out_dir, kind)
        hf = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"),
                                     bos_token=config.get("bos_token"),
                                     eos_token=config.get("eos_token"))
        hf.chat_template = jinja
        cases = []
        for conversation in conversations:
            text = hf.apply_chat_template(conversation, tokenize=False)
            out = hf.apply_chat_template(conversation, tokenize=True, return_dict=True,
                                         return_assistant_tokens_mask=True)
            ids = list(out["input_ids"])
            mask = list(out["assistant_masks"])
            assert len(ids) == len(mask)
            assert ids == hf(text, add_special_tokens=False)["input_ids"]
            assert sum(mask) > 0, (kind, conversation)
            cases.append({"text": text, "ids": ids, "mask": mask})
        expected[kind] = cases
    with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
