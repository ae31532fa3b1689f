#!/usr/bin/env python3
"""HF transformers + PEFT peers that lemo-train is compared with (docs/benchmarks.md).

Usage:
  python3 bench/hf_peer.py --model-dir /tmp/llama2-7b --seq-lens 4096,8192 [--gradient-checkpointing] \
      [--steps 5] [--warmup 1] [--device cuda] [--dtype bf16] --out results.jsonl
  python3 bench/hf_peer.py --model-dir /tmp/llama2-7b --seq-lens 65536,131072 --liger --checkpointing auto ...
  python3 bench/hf_peer.py --preset-config bench/configs/tiny.json --seq-lens 128 --device cpu --dtype fp32

Two peers (the "system" field of each row):
  peer         plain HF + PEFT (no --liger); --checkpointing none or gpu.
  peer-strong  --liger: Liger Kernel applied to the HF Llama model before PEFT wraps it (RoPE,
               RMSNorm, SwiGLU and the fused linear cross-entropy, so the loss never holds the
               N x vocab logits), with --checkpointing auto in the checkpointing mode.
--checkpointing: none; gpu (HF gradient checkpointing, use_reentrant=False; --gradient-checkpointing
is its alias); offload (bench/offload_ckpt.py: each decoder layer's input in pinned host memory,
the layer recomputed in backward); auto (per seq_len the faster of gpu and offload that fits: gpu
first, offload only if gpu runs out of memory, and offload straight away for longer seq_lens after
that; --auto-try-both also times offload where gpu fits and keeps the faster).

Setup (the device README's baseline): the model is built from config.json with random weights,
directly on the device in the target dtype (weight values change neither time nor memory, and
reading 13 GB from disk would cost more than the benchmark); PEFT LoRA r=8, alpha=16 on
q/k/v/o; attn_implementation "sdpa"; batch 1; random token ids with labels = input_ids;
AdamW (lr 2e-4) over the LoRA parameters. Per seq_len: empty the cache, reset the peak stats,
run warmup + timed steps (forward, backward, optimizer step, zero_grad, synchronize) and
append one JSON object to --out: best step time, tokens/s, peak allocated and reserved bytes.
An out-of-memory error is a result ("status": "oom"), not a failure. For the cleanest
reserved-memory numbers run one seq_len per process (bench/gpu_suite.sh does).
"""
import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # offload_ckpt beside it

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-dir", help="HF model dir; only its config.json is read")
    src.add_argument("--preset-config", help="path to an HF config.json")
    p.add_argument("--seq-lens", required=True, help="comma-separated, e.g. 4096,8192")
    p.add_argument("--checkpointing", choices=["none", "gpu", "offload", "auto"], default=None,
                   help="gradient checkpointing: none (default), gpu, offload or auto (see above)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="alias of --checkpointing gpu")
    p.add_argument("--auto-try-both", action="store_true",
                   help="with --checkpointing auto: where gpu fits, also time offload and keep the faster")
    p.add_argument("--liger", action="store_true",
                   help="apply Liger Kernel (RoPE, RMSNorm, SwiGLU, fused linear cross-entropy); needs CUDA")
    p.add_argument("--system", help="the rows' system name (default: peer-strong with --liger, else peer)")
    p.add_argument("--steps", type=int, default=5,
                   help="timed steps: each one's time is kept (step_times_s), with the median and the best")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-after-oom", action="store_true",
                   help="after an OOM, record longer seq_lens as skipped instead of running them")
    p.add_argument("--sdpa-kernel", choices=["default", "flash", "cudnn"], default="default",
                   help="flash or cudnn: put that fused attention kernel first in sdpa's order, as lemo-train "
                        "--attention-kernel does, to compare like with like (default: torch's own order, which "
                        "torch 2.11 makes cuDNN-first on Hopper and Blackwell and flash-first elsewhere)")
    p.add_argument("--out", help="JSONL file to append results to (also printed to stdout)")
    args = p.parse_args(argv)
    args.seq_lens = [int(s) for s in args.seq_lens.split(",") if s]
    if args.steps < 1 or args.warmup < 0 or not args.seq_lens:
        p.error("need --steps >= 1, --warmup >= 0 and at least one seq_len")
    if args.gradient_checkpointing and args.checkpointing not in (None, "gpu"):
        p.error(f"--gradient-checkpointing is --checkpointing gpu; it contradicts --checkpointing {args.checkpointing}")
    args.checkpointing = args.checkpointing or ("gpu" if args.gradient_checkpointing else "none")
    args.gradient_checkpointing = args.checkpointing != "none"
    if args.auto_try_both and args.checkpointing != "auto":
        p.error("--auto-try-both goes with --checkpointing auto")
    if args.liger and not args.device.startswith("cuda"):
        p.error(f"--liger needs CUDA: Liger Kernel's ops are Triton GPU kernels (got --device {args.device})")
    args.system = args.system or ("peer-strong" if args.liger else "peer")
    return args


def load_config(args):
    from transformers import AutoConfig

    path = args.preset_config or os.path.join(args.model_dir, "config.json")
    with open(path) as f:
        d = json.load(f)
    for k in ("architectures", "transformers_version", "torch_dtype", "dtype", "auto_map"):
        d.pop(k, None)
    config = AutoConfig.for_model(d.pop("model_type", "llama"), **d)
    config.use_cache = False  # training: no KV cache
    return config, path


def build_model(config, args, dtype, device):
    """Random-weight model built on the device in `dtype`, wrapped with LoRA."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(args.seed)
    old_default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters are born in bf16: no fp32 copy of 7B on the GPU
    try:
        with torch.device(device):
            try:
                model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=dtype)
            except TypeError:  # transformers < 4.56 names it torch_dtype
                model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", torch_dtype=dtype)
    finally:
        torch.set_default_dtype(old_default)
    if args.liger:
        apply_liger(model, config)
    if args.gradient_checkpointing:
        # gpu checkpointing, and the hooks offload and auto build on: transformers' own switch
        # (it also makes the embeddings' output require grad, which PEFT's frozen base needs).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0,
                      target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)  # adapters are upcast to fp32, as lemo-train keeps them
    model.train()
    return model


def apply_liger(model, config):
    """Liger Kernel on this HF Llama instance, before PEFT wraps it: liger_rotary_pos_emb,
    LigerRMSNorm (every layer's two norms and the final one), LigerSwiGLUMLP, and the fused
    linear cross-entropy forward (loss computed chunk by chunk from the last hidden states and
    lm_head when labels are passed in training: the logits are never materialized)."""
    if getattr(config, "model_type", None) != "llama":
        raise SystemExit(f"--liger supports Llama models here, not {config.model_type}")
    try:
        from liger_kernel.transformers import apply_liger_kernel_to_llama
    except ImportError as e:
        raise SystemExit(f"--liger: cannot import liger_kernel ({e}); install the liger-kernel wheel "
                         "(bench/gpu_suite.sh installs .whl/liger_kernel-*.whl into /tmp/lemo-site)")
    apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                fused_linear_cross_entropy=True, model=model)


def liger_version():
    from importlib import metadata
    try:
        return metadata.version("liger-kernel")
    except metadata.PackageNotFoundError:
        return None


_GPU_CKPT = None


def set_checkpointing(model, setting, offloader):
    """Switches the checkpoint function that transformers' decoder layers call: torch's
    non-reentrant checkpoint (gpu) or the offloaded one (bench/offload_ckpt.py)."""
    import functools

    from torch.utils.checkpoint import checkpoint

    global _GPU_CKPT
    if setting == "offload":
        offloader.install(model)
        return
    if _GPU_CKPT is None:  # the function gradient_checkpointing_enable installs
        _GPU_CKPT = functools.partial(checkpoint, use_reentrant=False)
    for module in model.modules():
        if getattr(module, "_gradient_checkpointing_func", None) is offloader:
            module._gradient_checkpointing_func = _GPU_CKPT


def is_oom(e):
    if isinstance(e, torch.OutOfMemoryError):
        return True
    msg = str(e).lower()
    return "out of memory" in msg or "cublas_status_alloc_failed" in msg


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_steps(model, opt, ids, n, device):
    """Runs n steps; returns (step times in s, last loss)."""
    times, loss_val = [], None
    for _ in range(n):
        sync(device)
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - t0)
        loss_val = loss.item()
        del loss
    return times, loss_val


def run_seq(model, opt, seq, vocab, args, device):
    gen = torch.Generator(device="cpu").manual_seed(args.seed + seq)
    ids = torch.randint(3, vocab, (1, seq), generator=gen).to(device)
    train_steps(model, opt, ids, args.warmup, device)
    times, loss = train_steps(model, opt, ids, args.steps, device)
    return times, loss


def host_available_bytes():
    """MemAvailable from /proc/meminfo (None where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def offload_host_shortfall(model, seq, device):
    """Offloaded checkpointing pins every decoder layer's input (seq x hidden x dtype bytes each),
    through torch's caching host allocator, which rounds every request up to a power of two: at
    384K tokens of a 7B model each 3 GiB input pins 4 GiB, 128 GiB in all. Where that is more than
    90% of the host's available memory (the bound lemo-train's offload plan uses too), the peer
    does not try: at 384K on a 128 GiB host it was killed by the kernel's out-of-memory killer,
    which can take the whole benchmark with it. Returns the reason, or None when it fits."""
    if device.type != "cuda":
        return None
    cfg = model.base_model.model.config
    elem = torch.finfo(model.base_model.model.dtype).bits // 8
    per_layer = seq * cfg.hidden_size * elem
    pinned = 1 << (per_layer - 1).bit_length()  # the caching host allocator's block size
    need = cfg.num_hidden_layers * pinned
    avail = host_available_bytes()
    if avail is None or need <= 0.9 * avail:
        return None
    return (f"host: offloading all {cfg.num_hidden_layers} layer inputs pins {need / 2**30:.1f} GiB "
            f"({per_layer / 2**30:.2f} GiB each, rounded up to {pinned / 2**30:.2f} GiB by torch's "
            f"caching host allocator), more than 90% of the {avail / 2**30:.1f} GiB available")


def host_memory():
    """The process's peak RSS so far (ru_maxrss, never goes down) and torch's pinned host allocator
    byte counters (CUDA builds; empty elsewhere)."""
    out = {"peak_host_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    try:
        stats = torch.cuda.host_memory_stats() if torch.cuda.is_available() else {}
    except (AttributeError, RuntimeError):
        stats = {}
    out["host_alloc_stats"] = {k: v for k, v in stats.items() if "bytes" in k} or None
    return out


def attempt(model, opt, seq, vocab, args, device, setting, offloader):
    """One seq_len under one checkpointing setting: a dict of the fields a row takes from it."""
    if args.gradient_checkpointing:
        set_checkpointing(model, setting, offloader)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    offloader.reset_peak()
    rec = {"checkpointing": setting, "status": "ok", "step_s": None, "step_times_s": None,
           "step_median_s": None, "tokens_per_s": None, "peak_allocated_bytes": None,
           "peak_reserved_bytes": None, "loss": None, "error": None}
    failure = None
    shortfall = offload_host_shortfall(model, seq, device) if setting == "offload" else None
    if shortfall:
        failure = ("oom", shortfall)
    else:
        try:
            times, loss = run_seq(model, opt, seq, vocab, args, device)
            best = min(times)
            rec.update(step_s=round(best, 4), step_times_s=[round(t, 4) for t in times],
                       step_median_s=round(statistics.median(times), 4),
                       tokens_per_s=round(seq / best, 1), loss=loss)
        except Exception as e:  # noqa: BLE001 - every failure becomes a recorded result
            failure = ("oom" if is_oom(e) else "error", f"{type(e).__name__}: {str(e)[:300]}")
    # Outside the except block the traceback (and the activations its frames hold) is gone.
    if failure:
        rec.update(status=failure[0], error=failure[1])
        opt.zero_grad(set_to_none=True)
        offloader.reset()
        gc.collect()
    rec["pinned_host_bytes"] = offloader.pinned_peak_bytes if setting == "offload" else 0
    if device.type == "cuda":
        rec["peak_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        rec["peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
        torch.cuda.empty_cache()
    else:  # CPU: the process's peak RSS (never goes down), as lemo-train reports on CPU
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        rec.update(peak_rss_bytes=rss, peak_allocated_bytes=rss, peak_reserved_bytes=rss)
    rec.update(host_memory())
    return rec


def main(argv=None):
    args = parse_args(argv)
    import peft
    import transformers

    from offload_ckpt import OffloadCheckpointer

    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    config, config_path = load_config(args)
    t0 = time.perf_counter()
    model = build_model(config, args, dtype, device)
    build_s = time.perf_counter() - t0
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr)
    offloader = OffloadCheckpointer()
    mode = "ckpt" if args.gradient_checkpointing else "no-ckpt"
    base = {
        "system": args.system, "mode": mode, "dtype": args.dtype, "batch": 1,
        "steps": args.steps, "warmup": args.warmup, "lora_r": args.lora_r,
        "lora_alpha": args.lora_alpha, "lora_params": sum(p.numel() for p in params),
        "config": config_path, "device": str(device),
        "attn_implementation": model.base_model.model.config._attn_implementation,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "build_s": round(build_s, 3),
        "liger": args.liger, "liger_kernel": liger_version() if args.liger else None,
        "checkpointing_requested": args.checkpointing,
        "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", os.environ.get("PYTORCH_ALLOC_CONF")),
    }
    print(f"[hf_peer] {args.system} built in {build_s:.1f}s on {base['device_name']}", file=sys.stderr)
    base["sdpa_kernel"] = args.sdpa_kernel
    if args.sdpa_kernel != "default":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        first = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}[args.sdpa_kernel]
        rest = [b for b in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                            SDPBackend.MATH) if b != first]
        # torch decides its own order lazily, at the first attention, and that decision overwrites
        # an order set before it: one tiny attention first, so torch has decided.
        tiny = torch.zeros(1, 1, 16, 64, device=args.device, dtype=torch.bfloat16)
        torch.nn.functional.scaled_dot_product_attention(tiny, tiny, tiny, is_causal=True)
        # Entered for the rest of the process: every step's attention tries `first` first.
        sdpa_kernel([first, *rest], set_priority=True).__enter__()

    oom_at = None
    gpu_oom_at = None  # auto: the shortest seq at which gpu checkpointing ran out of memory
    for seq in sorted(args.seq_lens) if args.checkpointing == "auto" else args.seq_lens:
        if args.skip_after_oom and oom_at is not None and seq > oom_at:
            rec = dict(base, seq_len=seq, status="skipped", checkpointing=None, step_s=None,
                       step_times_s=None, tokens_per_s=None, peak_allocated_bytes=None,
                       peak_reserved_bytes=None, loss=None,
                       error=f"OOM at {oom_at}; longer seq_lens not run")
            emit(rec, args.out)
            continue
        if args.checkpointing != "auto":
            settings = [args.checkpointing]
        elif gpu_oom_at is not None and seq >= gpu_oom_at:
            settings = ["offload"]  # gpu ran out of memory at a shorter seq: it cannot fit here
        else:
            settings = ["gpu", "offload"]
        tried = []
        for setting in settings:
            r = attempt(model, opt, seq, config.vocab_size, args, device, setting, offloader)
            tried.append(r)
            print(f"[hf_peer] seq {seq} {mode} ({setting}): {r['status']} step {r['step_s']} s",
                  file=sys.stderr)
            if setting == "gpu" and r["status"] == "oom":
                gpu_oom_at = seq if gpu_oom_at is None else min(gpu_oom_at, seq)
                continue  # auto: offloaded checkpointing next
            # GPU checkpointing is at least as fast as offloaded checkpointing whenever it fits:
            # both recompute the same layers, and offload adds the copies to and from the host
            # (overlapped, but never negative). So auto stops at the first setting that fits,
            # unless --auto-try-both asks to time offload as well.
            if not (r["status"] == "ok" and setting == "gpu" and args.auto_try_both):
                break
        oks = [r for r in tried if r["status"] == "ok"]
        chosen = min(oks, key=lambda r: r["step_s"]) if oks else tried[-1]
        rec = dict(base, seq_len=seq, **chosen)
        if args.checkpointing == "auto":
            rec["auto_tried"] = [{k: r.get(k) for k in ("checkpointing", "status", "step_s", "step_times_s",
                                                        "peak_allocated_bytes", "peak_reserved_bytes",
                                                        "pinned_host_bytes", "error")} for r in tried]
        if rec["status"] == "oom" and (oom_at is None or seq < oom_at):
            oom_at = seq
        emit(rec, args.out)
        print(f"[hf_peer] seq {seq} {mode}: {rec['status']} ({rec['checkpointing']}) step {rec['step_s']} s",
              file=sys.stderr)
    return 0


def emit(rec, out):
    line = json.dumps(rec)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main())
