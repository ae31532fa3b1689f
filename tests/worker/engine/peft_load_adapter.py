"""Loads a C++-written checkpoint with PEFT, then saves it back with PEFT.

usage: peft_load_adapter.py MODEL_DIR CKPT_DIR OUT_DIR
Fails if adapter_config.json's keys differ from what PEFT itself writes, if the
adapter leaves the logits unchanged, or if PEFT's config disagrees; otherwise
PEFT re-saves the adapter to OUT_DIR (for the C++ side to compare tensor by
tensor) with report.json holding the LoRA scaling PEFT applies.
"""
import json
import os
import sys
import tempfile

import peft
import torch
from transformers import AutoModelForCausalLM


def main(model_dir, ckpt_dir, out_dir):
    with open(os.path.join(ckpt_dir, "adapter_config.json")) as f:
        ours = json.load(f)
    ref_dir = tempfile.mkdtemp()
    peft.LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"
                    ).save_pretrained(ref_dir)
    with open(os.path.join(ref_dir, "adapter_config.json")) as f:
        ref = json.load(f)
    if set(ours) != set(ref):
        sys.exit(f"adapter_config keys differ from PEFT's: "
                 f"extra {set(ours) - set(ref)}, missing {set(ref) - set(ours)}")

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = (torch.arange(16) * 13 % base.config.vocab_size).unsqueeze(0)
    with torch.no_grad():
        base_logits = base(ids).logits.clone()
    model = peft.PeftModel.from_pretrained(base, ckpt_dir)
    config = model.peft_config["default"]
    if config.r != ours["r"] or config.lora_alpha != ours["lora_alpha"]:
        sys.exit(f"PEFT read r={config.r} alpha={config.lora_alpha}")
    with torch.no_grad():
        lora_logits = model(ids).logits
    if torch.allclose(lora_logits, base_logits):
        sys.exit("the adapter did not change the logits")
    q = model.base_model.model.model.layers[0].self_attn.q_proj
    model.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump({"scaling": q.scaling["default"]}, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
