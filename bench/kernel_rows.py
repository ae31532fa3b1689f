#!/usr/bin/env python3
"""The LeMo kernels' table (block scoring, gather/scatter) from a committed lemo-kernel-bench run:
its kernel_bench.json (bench/kernels/kernel_bench.cc writes it into $OUT), for the docs' generated
regions. Each kernel's rate is shown against the matmul and copy rates measured in the same run.

    bench/kernel_rows.py bench/results/RUN/kernel_bench.json

Needs only the standard library (scripts/check-tables runs it).
"""
import argparse
import json
import sys

HEADER = ("| kernel | shape | ms | TFLOP/s | % of matmul | TB/s | % of copy | unfused torch ms "
          "| speedup |")


def rows(bench):
    """The table's rows; FLOP columns only for compute-bound kernels (flops > 0), the unfused
    reference only where it was timed (ref_ms > 0)."""
    matmul, copy = bench["matmul_tflops"], bench["copy_tbps"]
    out = []
    for r in bench["rows"]:
        s = r["ms"] * 1e-3
        tflops = r["flops"] / s / 1e12 if r["flops"] > 0 else None
        tbps = r["bytes"] / s / 1e12
        out.append("| " + " | ".join([
            r["kernel"], r["shape"], f"{r['ms']:.3f}",
            f"{tflops:.0f}" if tflops is not None else "-",
            f"{100 * tflops / matmul:.0f}%" if tflops is not None and matmul > 0 else "-",
            f"{tbps:.2f}", f"{100 * tbps / copy:.0f}%" if copy > 0 else "-",
            f"{r['ref_ms']:.3f}" if r["ref_ms"] > 0 else "-",
            f"{r['ref_ms'] / r['ms']:.1f}x" if r["ref_ms"] > 0 else "-",
        ]) + " |")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", help="a run's kernel_bench.json")
    args = p.parse_args(argv)
    try:
        with open(args.json) as f:
            bench = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        p.error(f"{args.json}: {e}")
    for key in ("matmul_tflops", "copy_tbps", "rows"):
        if key not in bench:
            p.error(f"{args.json}: no '{key}' (not a lemo-kernel-bench result)")
    lines = [f"Measured in the same run on {bench.get('device', '?')}: bf16 matmul "
             f"{bench['matmul_tflops']:.0f} TFLOP/s, device copy {bench['copy_tbps']:.2f} TB/s.", "",
             HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"] + rows(bench)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
