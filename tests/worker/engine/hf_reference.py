#!/usr/bin/env python3
"""HF transformers + PEFT reference for hf_parity_test.cc.

For each variant, writes OUT/<variant>/model (a tiny random LlamaForCausalLM, Qwen2ForCausalLM or
Qwen3ForCausalLM, save_pretrained, safetensors) and OUT/<variant>/reference.safetensors holding input_ids, labels, logits, loss,
the LoRA weights under PEFT's adapter names ("lora.<name>") and their gradients
("grad.<name>"), and OUT/<variant>/lora.json (r, alpha, target_modules). Everything in fp32 on
the CPU with the sdpa attention path, as the C++ engine runs it.

Usage: hf_reference.py --out DIR [--variant NAME ...]   (default: all variants)
To add a variant: add an entry to VARIANTS (config overrides + LoRA settings + input length;
"arch" picks the model class, default llama; targets "all-linear" is passed to PEFT as that
string, its shorthand, and written to lora.json as ["all-linear"]).
"""
import argparse
import json
import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)

QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL = QKVO + ["gate_proj", "up_proj", "down_proj"]
ARCHS = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
         "qwen3": (Qwen3Config, Qwen3ForCausalLM)}

BASE = dict(vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
            rms_norm_eps=1e-5, initializer_range=0.08, bos_token_id=1, eos_token_id=2)

VARIANTS = {
    # Llama-2: MHA, default RoPE.
    "llama2_mha": dict(config=dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
                       r=8, alpha=16, targets=QKVO, seq=40),
    # Llama-3: GQA, rope_theta 5e5, llama3 scaling with a short original context so all
    # three frequency bands occur; adapters on the MLP too.
    "llama3_gqa": dict(config=dict(num_key_value_heads=2, head_dim=16,
                                   rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0,
                                                    "factor": 8.0, "low_freq_factor": 1.0,
                                                    "high_freq_factor": 4.0,
                                                    "original_max_position_embeddings": 32}),
                       r=4, alpha=8, targets=ALL, seq=48),
    # Tied embeddings, attention biases, linear RoPE scaling.
    "tied_bias_linear": dict(config=dict(tie_word_embeddings=True, attention_bias=True,
                                         num_key_value_heads=1,
                                         rope_parameters={"rope_type": "linear",
                                                          "rope_theta": 10000.0, "factor": 2.0}),
                             r=8, alpha=32, targets=QKVO, seq=33),
    # Dynamic NTK RoPE, exercised past max_position_embeddings; MLP biases.
    "dynamic_mlp_bias": dict(config=dict(max_position_embeddings=24, mlp_bias=True,
                                         num_key_value_heads=2,
                                         rope_parameters={"rope_type": "dynamic",
                                                          "rope_theta": 10000.0, "factor": 2.0}),
                             r=4, alpha=4, targets=QKVO + ["down_proj"], seq=40),
    # Qwen2: q/k/v biases without an o_proj bias, GQA, tied embeddings, rope_theta 1e6.
    "qwen2_gqa": dict(arch="qwen2",
                      config=dict(num_key_value_heads=2, tie_word_embeddings=True,
                                  use_sliding_window=False, sliding_window=16,
                                  rope_parameters={"rope_type": "default",
                                                   "rope_theta": 1000000.0}),
                      r=8, alpha=16, targets=ALL, seq=40),
    # Qwen3: per-head q/k RMSNorm, an explicit head_dim (24) unlike hidden / heads (16), GQA,
    # and PEFT's "all-linear" targets.
    "qwen3_gqa": dict(arch="qwen3",
                      config=dict(num_key_value_heads=2, head_dim=24, use_sliding_window=False,
                                  rope_parameters={"rope_type": "default",
                                                   "rope_theta": 1000000.0}),
                      r=4, alpha=8, targets="all-linear", seq=44),
    # Qwen3 with attention_bias (o_proj too) and YaRN (factor 4 over a 32-token original
    # context, so the attention factor is 0.1 ln 4 + 1 and all three bands occur).
    "qwen3_yarn_bias": dict(arch="qwen3",
                            config=dict(num_key_value_heads=1, head_dim=16, attention_bias=True,
                                        rope_parameters={"rope_type": "yarn",
                                                         "rope_theta": 10000.0, "factor": 4.0,
                                                         "original_max_position_embeddings": 32}),
                            r=8, alpha=16, targets=QKVO, seq=48),
}


def build(name, spec, out_dir):
    torch.manual_seed(1234)
    config_class, model_class = ARCHS[spec.get("arch", "llama")]
    config = config_class(**{**BASE, **spec["config"]})
    config._attn_implementation = "sdpa"
    model = model_class(config).to(torch.float32)
    with torch.no_grad():
        # Norm weights away from 1 and non-zero biases, so a mix-up cannot hide.
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif pname.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    model_dir = os.path.join(out_dir, "model")
    model.save_pretrained(model_dir, safe_serialization=True)

    lora = LoraConfig(r=spec["r"], lora_alpha=spec["alpha"], lora_dropout=0.0,
                      target_modules=spec["targets"], bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    peft_model.train()
    named = {}
    with torch.no_grad():
        for pname, p in peft_model.named_parameters():
            if "lora_" in pname:
                p.copy_(0.3 * torch.randn_like(p))
                named[pname.replace(".default.", ".")] = p

    seq = spec["seq"]
    g = torch.Generator().manual_seed(99)
    input_ids = torch.randint(0, config.vocab_size, (2, seq), generator=g)
    labels = input_ids.clone()
    labels[0, 5:9] = -100
    labels[1, -3:] = -100
    out = peft_model(input_ids=input_ids, labels=labels)
    out.loss.backward()

    tensors = {"input_ids": input_ids, "labels": labels,
               "logits": out.logits.detach().float().contiguous(),
               "loss": out.loss.detach().reshape(1)}
    for pname, p in named.items():
        tensors["lora." + pname] = p.detach().contiguous()
        tensors["grad." + pname] = p.grad.detach().contiguous()
    save_file(tensors, os.path.join(out_dir, "reference.safetensors"))
    with open(os.path.join(out_dir, "lora.json"), "w") as f:
        targets = spec["targets"]
        json.dump({"r": spec["r"], "alpha": spec["alpha"],
                   "targets": [targets] if isinstance(targets, str) else targets}, f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.variant or sorted(VARIANTS):
        out_dir = os.path.join(args.out, name)
        os.makedirs(out_dir, exist_ok=True)
        build(name, VARIANTS[name], out_dir)
        print(f"wrote {out_dir}")


if __name__ == "__main__":
    main()
