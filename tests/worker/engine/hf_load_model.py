"""Loads a model directory with transformers and exports what it sees.

usage: hf_load_model.py MODEL_DIR OUT.safetensors
Fails if from_pretrained reports missing/unexpected/mismatched keys or the
forward pass is not finite; otherwise writes the loaded state_dict to OUT with
the config values transformers derived as metadata, for the C++ test to compare.
"""
import json
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM


def main(model_dir, out):
    model, info = AutoModelForCausalLM.from_pretrained(
        model_dir, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        sys.exit(f"from_pretrained reported problems: {problems}")
    config = model.config
    ids = (torch.arange(12) * 37 % config.vocab_size).unsqueeze(0)
    with torch.no_grad():
        logits = model(ids).logits
    if not torch.isfinite(logits).all():
        sys.exit("non-finite logits")
    metadata = {
        "class": type(model).__name__,
        "rope_parameters": json.dumps(config.rope_parameters, sort_keys=True),
        "num_key_value_heads": str(config.num_key_value_heads),
        "head_dim": str(config.head_dim),
        "tie_word_embeddings": str(config.tie_word_embeddings),
    }
    state = {k: v.detach().clone().contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, out, metadata=metadata)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
