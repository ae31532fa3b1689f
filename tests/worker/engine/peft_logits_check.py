"""Loads a lemo-train checkpoint with peft.PeftModel.from_pretrained on the HF model and checks
that its logits equal the ones lemo computed (max relative error <= 1e-4, fp32).

Exit code 0 when they match; 1 with a message otherwise. Run by trainer_test.cc.
"""
import argparse
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--expected", required=True)
    args = parser.parse_args()

    expected = load_file(args.expected)
    base = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, args.adapter)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=expected["input_ids"]).logits
    want = expected["logits"]
    err = ((logits - want).abs().max() / want.abs().max()).item()
    print(f"peft logits max relative error: {err:.3e}")
    if not err <= 1e-4:
        print("logits differ from lemo's", file=sys.stderr)
        return 1
    # A checkpoint whose LoRA weights were silently dropped would still match at B = 0;
    # make sure the adapter is really applied.
    with model.disable_adapter(), torch.no_grad():
        plain = model(input_ids=expected["input_ids"]).logits
    if torch.equal(plain, logits):
        print("adapter had no effect: LoRA weights were not loaded", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
