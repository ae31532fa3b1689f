#!/usr/bin/env python3
"""Model FLOPs of one LoRA training step, and the GPU's measured bf16 matmul rate.

Usage:
  python3 bench/flops.py --matmul-rate [--device cuda:0] [--size 8192]   # prints {"matmul_tflops": ...}
  python3 bench/flops.py --config bench/configs/llama2-7b.json --seq-len 32768   # FLOPs of one step

Counting (the same for every system, so "achieved TFLOP/s" compares like with like):
- forward: 2 FLOPs per multiply-add of every projection and the LM head, per token; attention
  2 x 2 x (N^2 / 2) x Hq x d per layer (QK^T and PV over the causal half);
- backward with frozen base weights: the projections need only their input gradients, i.e. 1x
  their forward; attention backward is 2x its forward (dQ, dK, dV; the recomputed scores of a
  flash backward are not counted);
- LoRA's own FLOPs (r = 8) and the recompute of gradient checkpointing are not counted: with
  checkpointing the figure is model FLOPs utilisation, not the hardware's rate.
LeMo runs are credited with the dense model's FLOPs (what the step achieves, not what it
executes), so their "TFLOP/s" is an effective rate.
"""
import argparse
import json
import sys


def step_flops(config, seq_len, batch=1):
    d_model = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or d_model // heads
    layers = config["num_hidden_layers"]
    proj = (d_model * heads * head_dim * 2 + d_model * kv_heads * head_dim * 2
            + 3 * d_model * config["intermediate_size"])
    tokens = batch * seq_len
    linear_fwd = 2 * tokens * (layers * proj + d_model * config["vocab_size"])
    attn_fwd = layers * batch * 2 * seq_len * seq_len * heads * head_dim
    return 2 * linear_fwd + 3 * attn_fwd


def matmul_tflops(device="cuda:0", size=8192, repeats=10):
    """Best-of-`repeats` bf16 [size x size] @ [size x size] rate, in TFLOP/s."""
    import torch

    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    best = float("inf")
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(repeats):
        start.record()
        for _ in range(5):
            a @ b
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 5 / 1e3)
    return 2 * size ** 3 / best / 1e12


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--matmul-rate", action="store_true", help="measure the bf16 matmul rate")
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--config", help="HF config.json")
    p.add_argument("--seq-len", type=int)
    args = p.parse_args(argv)
    if args.matmul_rate:
        print(json.dumps({"matmul_tflops": round(matmul_tflops(args.device, args.size), 1),
                          "matmul_size": args.size}))
        return 0
    if not args.config or not args.seq_len:
        p.error("give --matmul-rate, or --config and --seq-len")
    with open(args.config) as f:
        print(json.dumps({"step_flops": step_flops(json.load(f), args.seq_len)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
