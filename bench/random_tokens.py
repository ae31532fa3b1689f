"""Writes random uint16 token ids to a file, for the device scripts' training runs.

    python3 bench/random_tokens.py OUT.u16 COUNT [--vocab V] [--seed S]

Ids are drawn uniformly from [3, V) (0-2 are the special ids of the presets' tokenizers) with a
fixed seed, so every run trains on the same tokens. V is capped at 65536 (uint16).
"""
import argparse
import array
import random


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the .u16 file to write")
    parser.add_argument("count", type=int, help="how many ids")
    parser.add_argument("--vocab", type=int, default=32000, help="ids are < this (default 32000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    vocab = min(args.vocab, 65536)
    r = random.Random(args.seed)
    with open(args.out, "wb") as f:
        array.array("H", (r.randrange(3, vocab) for _ in range(args.count))).tofile(f)


if __name__ == "__main__":
    main()
