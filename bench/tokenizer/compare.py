#!/usr/bin/env python3
"""tokenizer.json encoding speed: lemo's C++ HfTokenizer against Python's `tokenizers`, one thread
each, on the same corpus and the same files, with a check that both give the same ids.

    python3 bench/tokenizer/compare.py --bin build/bin/lemo-tokenizer-bench \
        [--corpus bench/data/corpus.jsonl] [--repeats 5] [--out results.jsonl] [TOKENIZER_JSON...]
    python3 bench/tokenizer/compare.py --report results.jsonl   (the docs' Markdown table)

Without TOKENIZER_JSON it benchmarks the layouts hf_tokenizer_test.cc checks: a Llama-3-style
byte-level BPE and a Llama-2-style Metaspace BPE with byte fallback, both trained on the corpus
(tests/worker/engine/testdata/hf_tokenizer_reference.py), and the tokenizer.json shipped in the
anthropic==0.30.0 wheel (tests/worker/engine/testdata/shipped/). Python runs with
RAYON_NUM_THREADS=1 and encodes document by document, as the C++ side does; both report the best
of --repeats passes (warm caches, as over a long training corpus) and the first pass (cold).
"""
import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

# Must be set before `tokenizers` starts its thread pool.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTDATA = os.path.join(ROOT, "tests", "worker", "engine", "testdata")


def python_run(path, docs, repeats):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(path)
    seconds, ids = [], None
    for r in range(repeats):
        start = time.perf_counter()
        out = [tok.encode(d, add_special_tokens=False).ids for d in docs]
        seconds.append(time.perf_counter() - start)
        if r == 0:
            ids = out
    return seconds, ids


def default_tokenizers(corpus, work):
    sys.path.insert(0, TESTDATA)
    import hf_tokenizer_reference as ref  # noqa: E402 (the test's own training code)
    with open(corpus, encoding="utf-8") as f:
        docs = [json.loads(line)["text"] for line in f]
    lines = [p for d in docs[:ref.TRAIN_DOCS] for p in d.split("\n\n")]
    out = {}
    tok, config = ref.train_bytelevel(lines, use_llama3_split=True)
    ref.save(tok, config, work, "llama3-style-bytelevel")
    out["llama3-style-bytelevel"] = os.path.join(work, "llama3-style-bytelevel", "tokenizer.json")
    tok, config = ref.train_metaspace(lines, "metaspace")
    ref.save(tok, config, work, "llama2-style-metaspace")
    out["llama2-style-metaspace"] = os.path.join(work, "llama2-style-metaspace", "tokenizer.json")
    shipped = os.path.join(work, "anthropic-0.30.0")
    os.makedirs(shipped)
    with gzip.open(os.path.join(TESTDATA, "shipped", "anthropic_claude_v1_tokenizer.json.gz"),
                   "rb") as src, open(os.path.join(shipped, "tokenizer.json"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    out["anthropic-0.30.0"] = os.path.join(shipped, "tokenizer.json")
    return out


# The names the docs' table gives the default tokenizers (others keep their folder's name).
DISPLAY_NAMES = {
    "llama3-style-bytelevel": "Llama-3-style byte-level BPE",
    "llama2-style-metaspace": "Llama-2-style Metaspace BPE, byte fallback",
    "anthropic-0.30.0": "anthropic==0.30.0 tokenizer.json (NFKC, 65k)",
}


def markdown_table(results_path):
    """The docs' table of a committed results file: MB/s of each system (3 significant digits,
    best of the passes) and the ratio; a later line for the same tokenizer and system wins."""
    rows = {}
    with open(results_path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows[(r["tokenizer"], r["system"])] = r
    out = ["| tokenizer | Python MB/s | lemo MB/s | lemo / Python |", "|---|---|---|---|"]
    for name in dict.fromkeys(k[0] for k in rows):
        py, lemo = rows.get((name, "python-tokenizers")), rows.get((name, "lemo"))
        cells = [DISPLAY_NAMES.get(name, name)]
        cells += [f"{r['mb_per_s']:.3g}" if r else "-" for r in (py, lemo)]
        cells.append(f"{lemo['mb_per_s'] / py['mb_per_s']:.2g}x" if py and lemo else "-")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="lemo-tokenizer-bench (required unless --report)")
    ap.add_argument("--report", metavar="RESULTS",
                    help="print the Markdown table of a results.jsonl and exit (scripts/check-tables)")
    ap.add_argument("--corpus", default=os.path.join(ROOT, "bench", "data", "corpus.jsonl"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", help="append one JSON line per system and tokenizer")
    ap.add_argument("tokenizer_json", nargs="*")
    args = ap.parse_args()
    if args.report:
        sys.stdout.write(markdown_table(args.report))
        return
    if not args.bin:
        ap.error("--bin is required")

    import tokenizers
    with open(args.corpus, encoding="utf-8") as f:
        docs = [json.loads(line)["text"] for line in f]
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    work = tempfile.mkdtemp(prefix="lemo_tok_bench_")
    try:
        files = ({os.path.basename(os.path.dirname(p)) or p: p for p in args.tokenizer_json}
                 if args.tokenizer_json else default_tokenizers(args.corpus, work))
        rows = []
        print(f"corpus {os.path.relpath(args.corpus, ROOT)}: {len(docs)} docs, {nbytes / 1e6:.2f} MB; "
              f"tokenizers {tokenizers.__version__}, one thread, best of {args.repeats}")
        print(f"{'tokenizer':<26} {'system':<18} {'cold s':>8} {'best s':>8} {'MB/s':>8} "
              f"{'Mtok/s':>8} {'ids equal':>10}")
        for name, path in files.items():
            py_seconds, py_ids = python_run(path, docs, args.repeats)
            ids_path = os.path.join(work, name + ".ids.json")
            res = subprocess.run([args.bin, "--tokenizer", path, "--corpus", args.corpus,
                                  "--repeats", str(args.repeats), "--ids-out", ids_path],
                                 capture_output=True, text=True, check=True)
            lemo = json.loads(res.stdout.strip().splitlines()[-1])
            with open(ids_path) as f:
                same = json.load(f) == py_ids
            ntokens = sum(len(i) for i in py_ids)
            for system, seconds in (("python-tokenizers", py_seconds),
                                    ("lemo", lemo["seconds"])):
                best = min(seconds)
                row = {"tokenizer": name, "system": system, "docs": len(docs), "bytes": nbytes,
                       "tokens": ntokens, "cold_s": seconds[0], "best_s": best,
                       "mb_per_s": nbytes / best / 1e6, "tokens_per_s": ntokens / best,
                       "ids_equal": same, "tokenizers_version": tokenizers.__version__,
                       "cpu": platform.processor() or platform.machine()}
                rows.append(row)
                print(f"{name:<26} {system:<18} {seconds[0]:>8.3f} {best:>8.3f} "
                      f"{row['mb_per_s']:>8.2f} {row['tokens_per_s'] / 1e6:>8.2f} "
                      f"{str(same):>10}")
        if args.out:
            with open(args.out, "a") as f:
                for row in rows:
                    f.write(json.dumps(row) + "\n")
        if not all(r["ids_equal"] for r in rows):
            sys.exit("ids differ between lemo and Python")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
