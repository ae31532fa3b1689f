"""Shares a safetensors fixture between the C++ test and Python's package.

usage: safetensors_interop.py write PATH   # Python writes, C++ checks
       safetensors_interop.py check PATH   # C++ wrote, Python checks
Keep expected() in sync with ExpectedTensors() in safetensors_test.cc.
"""
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

METADATA = {"format": "pt", "writer": "lemo-test"}


def expected():
    base = torch.arange(2 * 3 * 5, dtype=torch.float64).reshape(2, 3, 5)
    vals = (base % 251) * 0.25 - 31  # exact in bf16, fp16 and fp32
    return {
        "w.bf16": vals.to(torch.bfloat16),
        "w.f16": vals.to(torch.float16),
        "w.f32": vals.to(torch.float32),
        "ids.i64": torch.arange(7, dtype=torch.int64) * 7 - 1000,
        "mask.bool": torch.tensor([True, False, True]),
        "scalar.f32": torch.tensor(2.5),
    }


def check(path):
    got = load_file(path)
    want = expected()
    if sorted(got) != sorted(want):
        sys.exit(f"names differ: {sorted(got)} vs {sorted(want)}")
    for name, w in want.items():
        g = got[name]
        if g.dtype != w.dtype or g.shape != w.shape or not torch.equal(g, w):
            sys.exit(f"tensor {name} differs: {g} vs {w}")
    with safe_open(path, framework="pt") as f:
        if f.metadata() != METADATA:
            sys.exit(f"metadata differs: {f.metadata()}")


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "write":
        save_file(expected(), path, metadata=METADATA)
    else:
        check(path)
