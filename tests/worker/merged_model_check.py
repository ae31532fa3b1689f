"""Checks a `lemo-train export --merge` directory against PEFT: the merged model, loaded alone
with AutoModelForCausalLM (sharded index, config.json and all), must give the logits of the
base model with the adapter applied by peft.PeftModel (max relative error <= 1e-4), and differ
from the base model's (so an unmerged copy cannot pass).

Usage: merged_model_check.py --merged DIR --model BASE_DIR --adapter ADAPTER_DIR
Exit code 0 when they match; 1 with a message otherwise. Run by lemo_train_cli_test.cc.
"""
import argparse
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--merged", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter", required=True)
    args = parser.parse_args()

    merged, info = AutoModelForCausalLM.from_pretrained(
        args.merged, dtype=torch.float32, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        print(f"merged dir: from_pretrained reported {problems}", file=sys.stderr)
        return 1
    base = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    peft = PeftModel.from_pretrained(base, args.adapter)
    ids = (torch.arange(40) * 37 % merged.config.vocab_size).view(2, 20)
    merged.eval()
    peft.eval()
    with torch.no_grad():
        got = merged(input_ids=ids).logits
        want = peft(input_ids=ids).logits
        with peft.disable_adapter():
            plain = peft(input_ids=ids).logits
    err = ((got - want).abs().max() / want.abs().max()).item()
    print(f"merged vs PEFT logits max relative error: {err:.3e}")
    if not err <= 1e-4:
        print("merged logits differ from base + adapter in PEFT", file=sys.stderr)
        return 1
    if torch.equal(got, plain):
        print("merged model equals the base model: nothing was merged", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
