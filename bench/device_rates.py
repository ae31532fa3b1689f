#!/usr/bin/env python3
"""The GPU's measured rates, for the memory/time planner's device table (common/plan/devices.json).

Measures, on one CUDA device, each as the median of several timed repetitions after a warm-up:
- matmul_flops_per_s: a bf16 [size x size] @ [size x size] GEMM (2 size^3 FLOPs);
- attention_flops_per_s: causal flash attention (torch SDPA, bf16, 32 heads of 128, batch 1)
  forward + backward at --attention-seq tokens, counted as the planner and bench/flops.py count
  it: forward 2 x 2 x (N^2 / 2) x H x d, backward 2x the forward (the recomputed scores of a
  flash backward are not counted);
- host_to_device_bytes_per_s / device_to_host_bytes_per_s: pinned host <-> device copies of
  --copy-gib GiB;
- device_copy_bytes_per_s: a device-to-device copy (read + write counted once each);
- memory_bytes (what torch can allocate: total_memory) and host_memory_bytes (MemTotal).

  python3 bench/device_rates.py --out rates.json      # prints the JSON too
"""
import argparse
import json
import statistics
import sys
import time


def timed(fn, reps, sync):
    fn()
    sync()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--attention-seq", type=int, default=16384)
    p.add_argument("--copy-gib", type=float, default=2.0)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--out")
    args = p.parse_args()
    import torch
    import torch.nn.functional as F

    dev = torch.device(args.device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        print("device_rates: needs a CUDA device", file=sys.stderr)
        return 2
    sync = lambda: torch.cuda.synchronize(dev)  # noqa: E731
    rates = {"device_name": torch.cuda.get_device_name(dev),
             "memory_bytes": torch.cuda.get_device_properties(dev).total_memory}
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                rates["host_memory_bytes"] = int(line.split()[1]) * 1024

    n = args.size
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    t = timed(lambda: a @ b, args.reps, sync)
    rates["matmul_flops_per_s"] = 2 * n**3 / statistics.median(t)
    rates["matmul_seconds"] = t
    del a, b

    seq, heads, hd = args.attention_seq, 32, 128
    q, k, v = (torch.randn(1, heads, seq, hd, device=dev, dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    go = torch.randn(1, heads, seq, hd, device=dev, dtype=torch.bfloat16)

    def attention():
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        o.backward(go)
        q.grad = k.grad = v.grad = None

    t = timed(attention, args.reps, sync)
    fwd = 2 * 2 * (seq * seq / 2) * heads * hd
    rates["attention_flops_per_s"] = 3 * fwd / statistics.median(t)
    rates["attention_seconds"] = t
    rates["attention_seq"] = seq
    del q, k, v, go

    elems = int(args.copy_gib * (1 << 30)) // 2
    host = torch.empty(elems, dtype=torch.bfloat16, pin_memory=True)
    gpu = torch.empty(elems, dtype=torch.bfloat16, device=dev)
    gpu2 = torch.empty_like(gpu)
    nbytes = elems * 2
    t = timed(lambda: gpu.copy_(host, non_blocking=True), args.reps, sync)
    rates["host_to_device_bytes_per_s"] = nbytes / statistics.median(t)
    t = timed(lambda: host.copy_(gpu, non_blocking=True), args.reps, sync)
    rates["device_to_host_bytes_per_s"] = nbytes / statistics.median(t)
    t = timed(lambda: gpu2.copy_(gpu), args.reps, sync)
    rates["device_copy_bytes_per_s"] = 2 * nbytes / statistics.median(t)
    rates["torch"] = torch.__version__
    rates["command"] = " ".join(["python3", "bench/device_rates.py"] + sys.argv[1:])

    text = json.dumps(rates, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
