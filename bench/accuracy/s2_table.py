#!/usr/bin/env python3
"""docs/accuracy.md's table of `s2_check.py check` (is lemo-train's S2-Attn LongLoRA's?), from the
JSON that `s2_check.py check --json FILE` wrote. Standard library only (scripts/check-tables runs
it).

    python3 bench/accuracy/s2_table.py bench/results/RUN/s2-check.json
"""
import argparse
import json
import sys

# The losses in the order the table shows them, each with the row's words.
ROWS = (("lemo-train dense", "lemo-train, dense"),
        ("HF full causal", "HF, full causal"),
        ("lemo-train --lemo-2d", "lemo-train, `--lemo-2d`"),
        ("HF reference no-wrap", "HF, reference mask, no wrap"),
        ("HF reference roll (wrap)", "HF, reference mask, rolled (wrap-around)"))


def table(result):
    losses = result["losses"]
    missing = [k for k, _ in ROWS if k not in losses]
    if missing:
        raise ValueError(f"no loss for {', '.join(missing)}")
    lines = ["| attention | loss |", "|---|---|"]
    for key, words in ROWS:
        value = f"{losses[key]:.6f}"
        # The two rows that must agree, in bold.
        if key in ("lemo-train --lemo-2d", "HF reference no-wrap"):
            value = f"**{value}**"
        lines.append(f"| {words} | {value} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", help="s2_check.py check --json's file")
    args = p.parse_args(argv)
    try:
        with open(args.json) as f:
            result = json.load(f)
        sys.stdout.write(table(result))
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"s2_table: {args.json}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
