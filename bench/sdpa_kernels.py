#!/usr/bin/env python3
"""torch's attention kernels head to head on the model's attention shape: which one should
`lemo-train finetune --attention-kernel` (and `bench/hf_peer.py --sdpa-kernel`) put first?

Times scaled_dot_product_attention forward + backward, causal, bf16, batch 1, on Llama-2-7B's
attention shape (32 query heads, 32 KV heads, head dim 128; --kv-heads for GQA), once per kernel
(flash, cudnn, efficient, and "default": torch's own choice; --kernels) and sequence length, with
each named kernel alone allowed
(torch.nn.attention.sdpa_kernel), and checks each output and input gradient against the first
kernel's (the largest absolute difference, reported; bf16 kernels differ in summation order). A
kernel that refuses a shape is reported as such, not as a time.

Usage (GPU machine):  python3 bench/sdpa_kernels.py --out DIR [--seqs 8192,32768,65536]
Writes DIR/results.jsonl (one row per kernel and length: median and min-max of --steps timed
passes after --warmup, peak allocated memory), DIR/meta.json (bench/report.py's: commit, device,
versions, command) and prints a table (--table-only DIR: the table of a committed run).
CPU smoke: --device cpu --kernels math --seqs 64 --heads 2 --kv-heads 2 --dim 16 --dtype fp32.
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# backends()' names, and "default": torch's own order, nothing excluded (torch 2.11 decides it at
# the first attention: cuDNN first on Hopper and Blackwell, flash elsewhere), which is what
# lemo-train --attention-kernel auto and the peers' default run.
KERNELS = ("flash", "cudnn", "efficient", "math", "default")


def backends():
    from torch.nn.attention import SDPBackend
    return {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


def one_pass(q, k, v, grad, gqa):
    import torch.nn.functional as F
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    out.backward(grad)
    return out


def measure(kernel, seq, args, device, dtype):
    """{"kernel", "seq", "ms_median", "ms_min", "ms_max", "peak_gib", "out", "grads"} or
    {"kernel", "seq", "error"} when the kernel refuses the shape."""
    import contextlib

    import torch
    from torch.nn.attention import sdpa_kernel

    gen = torch.Generator(device=device).manual_seed(seq)
    shape_q, shape_kv = (1, args.heads, seq, args.dim), (1, args.kv_heads, seq, args.dim)
    q = torch.randn(shape_q, device=device, dtype=dtype, generator=gen).requires_grad_()
    k = torch.randn(shape_kv, device=device, dtype=dtype, generator=gen).requires_grad_()
    v = torch.randn(shape_kv, device=device, dtype=dtype, generator=gen).requires_grad_()
    grad = torch.randn(shape_q, device=device, dtype=dtype, generator=gen)
    gqa = args.heads != args.kv_heads
    cuda = device.type == "cuda"
    times = []
    try:
        with contextlib.nullcontext() if kernel == "default" else sdpa_kernel([backends()[kernel]]):
            for i in range(args.warmup + args.steps):
                for t in (q, k, v):
                    t.grad = None
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                out = one_pass(q, k, v, grad, gqa)
                if cuda:
                    torch.cuda.synchronize()
                if i >= args.warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
    except RuntimeError as e:  # "No available kernel", or the kernel's own refusal
        return {"kernel": kernel, "seq": seq, "error": str(e).splitlines()[0][:300]}
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    row = {"kernel": kernel, "seq": seq, "ms_median": round(statistics.median(times), 3),
           "ms_min": round(min(times), 3), "ms_max": round(max(times), 3),
           "peak_gib": round(peak, 3) if peak is not None else None,
           "out": out.detach(), "grads": [t.grad.detach() for t in (q, k, v)]}
    if kernel == "default":  # the backend torch's order puts first, now that it has decided
        first = int(torch._C._get_sdp_priority_order()[0])
        row["first_backend"] = next((name for name, b in backends().items() if int(b.value) == first),
                                    "overrideable")
    return row


def compare(row, ref):
    """The largest absolute difference of the output and of each input gradient from ref's."""
    if "error" in row or "error" in ref or row is ref:
        return row
    diffs = [(a.float() - b.float()).abs().max().item()
             for a, b in zip([row["out"], *row["grads"]], [ref["out"], *ref["grads"]])]
    row["max_abs_diff_vs_" + ref["kernel"]] = {"out": diffs[0], "dq": diffs[1], "dk": diffs[2], "dv": diffs[3]}
    return row


def table(rows):
    lines = ["| seq | kernel | fwd+bwd ms, median | min .. max | vs the first kernel | peak GiB | note |",
             "|---|---|---|---|---|---|---|"]
    first = {}
    for r in rows:
        base = first.setdefault(r["seq"], r)
        if "error" in r:
            lines.append(f"| {r['seq']:,} | {r['kernel']} | - | - | - | - | refused: {r['error'][:80]} |")
            continue
        ratio = ("1.00x" if base is r else "-" if "error" in base else
                 f"{r['ms_median'] / base['ms_median']:.2f}x")
        diff = next((v for k, v in r.items() if k.startswith("max_abs_diff_vs_")), None)
        note = f"max abs diff vs {base['kernel']}: out {diff['out']:.3g}, dq {diff['dq']:.3g}" if diff else ""
        if r.get("first_backend"):
            note = f"torch tries {r['first_backend']} first; " + note
        peak = f"{r['peak_gib']:.2f}" if r.get("peak_gib") is not None else "-"
        lines.append(f"| {r['seq']:,} | {r['kernel']} | {r['ms_median']:.1f} | {r['ms_min']:.1f} .. "
                     f"{r['ms_max']:.1f} | {ratio} | {peak} | {note} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="folder for results.jsonl and meta.json")
    p.add_argument("--table-only", metavar="DIR", help="print the table of DIR/results.jsonl and exit")
    p.add_argument("--seqs", default="8192,32768,65536")
    p.add_argument("--kernels", default="flash,cudnn,efficient,default", help="the first is the reference")
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=32)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args(argv)
    if args.table_only:
        with open(os.path.join(args.table_only, "results.jsonl")) as f:
            print(table([json.loads(line) for line in f if line.strip()]))
        return 0
    if not args.out:
        p.error("--out is required (or --table-only DIR)")
    kernels = [k for k in args.kernels.split(",") if k]
    unknown = [k for k in kernels if k not in KERNELS]
    if unknown or not kernels:
        p.error(f"--kernels: unknown kernel(s) {unknown}; choose from {', '.join(KERNELS)}")
    if args.heads % args.kv_heads:
        p.error(f"--heads {args.heads} must be a multiple of --kv-heads {args.kv_heads}")
    import torch
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("sdpa_kernels: --device cuda but torch sees no GPU")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    os.makedirs(args.out, exist_ok=True)
    sys.path.insert(0, HERE)
    import report
    report.write_meta(os.path.join(args.out, "meta.json"), " ".join(["python3", "bench/sdpa_kernels.py", *(
        argv if argv is not None else sys.argv[1:])]), args.device)
    rows = []
    with open(os.path.join(args.out, "results.jsonl"), "w") as f:
        for seq in [int(s) for s in args.seqs.split(",") if s]:
            ref = None
            for kernel in kernels:
                row = measure(kernel, seq, args, device, dtype)
                ref = ref or row
                row = compare(row, ref)
                kept = {k: v for k, v in row.items() if k not in ("out", "grads")}
                kept.update(heads=args.heads, kv_heads=args.kv_heads, dim=args.dim, dtype=args.dtype)
                f.write(json.dumps(kept) + "\n")
                f.flush()
                rows.append(kept)
            del ref
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
