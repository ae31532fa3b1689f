#!/usr/bin/env python3
"""Tests of the accuracy study's scripts (no GPU, no lemo-train): summary.py's statistics and
verdict, passkey.py's examples, s2_check.py's reference masks, pretrain.py's window warmup and
pause/resume, study.py's queue status.

Run: python3 -m unittest discover -s bench -p 'test_*.py'   (ctest: bench_scripts; the venv python)
Add a case: a test_* method that writes inputs under self.tmp and checks the parsed result.
The end-to-end checks: `python3 bench/accuracy/s2_check.py check` (ctest accuracy_s2_check) and the
CPU smoke of bench/accuracy/study.sh (its header).
"""
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import passkey  # noqa: E402
import s2_table  # noqa: E402
import summary  # noqa: E402


class SummaryStatsTest(unittest.TestCase):
    def test_stats_are_mean_sample_std_min_max(self):
        mean, std, lo, hi = summary.stats([1.0, 2.0, 3.0])
        self.assertAlmostEqual(mean, 2.0)
        self.assertAlmostEqual(std, 1.0)  # sample std (n - 1)
        self.assertEqual((lo, hi), (1.0, 3.0))
        self.assertEqual(summary.stats([5.0])[1], 0.0)

    def test_dense_spread_is_range_over_mean(self):
        self.assertIsNone(summary.dense_spread([1.2]))
        self.assertAlmostEqual(summary.dense_spread([1.0, 1.02, 0.98]), 4.0)

    def test_verdict(self):
        self.assertIn("one seed only", summary.verdict([1.0], None))
        self.assertIn("within 2% on every seed", summary.verdict([1.0, 1.5, 1.9], 0.5))
        self.assertIn("not on every seed", summary.verdict([1.0, 1.5, 2.5], 0.5))
        self.assertIn("not within 2%", summary.verdict([2.5, 3.0], 0.5))
        self.assertIn("not resolved", summary.verdict([0.2, 0.4], 1.0))

    def test_v2_table_pairs_seeds_and_reports_the_spread(self):
        tmp = tempfile.mkdtemp()
        rows = [{"model": "big", "seq": 8192, "config": "base", "seed": 0, "kind": "lm", "loss": 3.0}]
        for seed, (d, lemo) in enumerate([(2.00, 2.02), (2.02, 2.04), (1.98, 2.00)]):
            rows.append({"model": "big", "seq": 8192, "config": "dense", "seed": seed, "kind": "lm", "loss": d})
            rows.append({"model": "big", "seq": 8192, "config": "lemo", "seed": seed, "kind": "lm", "loss": lemo,
                         "kept": 0.7})
        rows.append({"model": "big", "seq": 8192, "config": "base", "seed": 0, "kind": "passkey", "samples": 4,
                     "digit_accuracy": 0.1, "key_accuracy": 0.0, "digit_loss": 2.3, "far_keys": 2,
                     "far_digit_accuracy": 0.1, "far_key_accuracy": 0.0})
        with open(os.path.join(tmp, "results.jsonl"), "w") as f:
            f.write("\n".join(json.dumps(r) for r in rows) + "\n")
        text = "\n".join(summary.v2(tmp, rows))
        self.assertIn("dense-vs-dense spread over seeds [0, 1, 2]: 2.00%", text)
        self.assertIn("within 2% on every seed (3 seeds", text)
        lemo = next(ln for ln in text.splitlines() if "(`lemo`)" in ln)
        self.assertIn("| 0,1,2 | 2.0200 ± 0.0200 | 2.0000 .. 2.0400 |", lemo)
        self.assertIn("Passkey retrieval", text)
        self.assertTrue(text.startswith("# Accuracy study v2"))
        self.assertIn("\n## `big` model, 8,192 tokens", text)
        # As a section of docs/accuracy.md: no title, headings at the level asked for.
        section = "\n".join(summary.v2(tmp, rows, level=4))
        self.assertNotIn("# Accuracy study v2", section)
        self.assertIn("\n#### `big` model, 8,192 tokens", section)
        self.assertIn("\n#### Passkey retrieval", section)


class PasskeyMakeTest(unittest.TestCase):
    TEXT = "It is a truth universally acknowledged. "

    def make(self, *flags):
        """The examples `passkey.py make` writes with these flags, from a filler book of TEXT."""
        tmp = tempfile.mkdtemp()
        filler, out = os.path.join(tmp, "book.jsonl"), os.path.join(tmp, "examples.jsonl")
        with open(filler, "w") as f:
            f.write(json.dumps({"text": self.TEXT * 200}) + "\n")
        passkey.main(["make", "--filler", filler, "--out", out, *flags])
        with open(out) as f:
            return [json.loads(line) for line in f]

    def test_byte_examples_fill_one_window_and_mask_the_key(self):
        examples = self.make("--samples", "5", "--seq-len", "512", "--min-distance", "200")
        tok = passkey.ByteTokens()
        self.assertEqual(len(examples), 5)
        for ex in examples:
            ids, mask = ex["input_ids"], ex["loss_mask"]
            self.assertEqual(len(ids), 512)
            self.assertEqual(ids[0], 1)
            self.assertEqual(sum(mask), 5)
            self.assertEqual(mask[-5:], [1] * 5)
            key = tok.decode(ids[-5:])
            self.assertTrue(key.isdigit())
            text = tok.decode(ids)
            needle_end = text.index(passkey.needle(key)) + len(passkey.needle(key))
            self.assertGreaterEqual(ex["distance"], 200)
            # 1 token of <s>, one token per byte: the distance counts the tokens in between.
            self.assertEqual(ex["distance"], len(ids) - 5 - (needle_end + 1))

    def test_copy_examples_plant_the_span_and_ask_for_its_tail(self):
        examples = self.make("--task", "copy", "--samples", "5", "--seq-len", "512", "--min-distance", "200")
        span, answer = passkey.COPY_SPAN, passkey.COPY_SPAN - passkey.COPY_CUE
        for ex in examples:
            ids, mask = ex["input_ids"], ex["loss_mask"]
            self.assertEqual(len(ids), 512)
            self.assertEqual(ids[0], 1)
            self.assertEqual(mask[-answer:], [1] * answer)
            self.assertEqual(sum(mask), answer)
            planted = len(ids) - answer - ex["distance"] - span  # where the first copy starts
            self.assertEqual(ids[planted:planted + span], ids[-span:])
            self.assertGreaterEqual(ex["distance"], 200)
        # drawn from the filler's distinct ids, not its frequencies: a span is not text
        self.assertTrue(all(set(ex["input_ids"][-span:]) <= set(passkey.ByteTokens().encode(self.TEXT))
                            for ex in examples))

    def test_max_distance_keeps_the_needle_near_the_question(self):
        import random
        tok = passkey.ByteTokens()
        filler = tok.encode(self.TEXT * 100)
        rng = random.Random(3)
        for task in ("passkey", "copy"):
            distances = [passkey.make_task_example(task, rng, tok, filler, 1024, max_distance=80)["distance"]
                         for _ in range(50)]
            self.assertLessEqual(max(distances), 80, task)
            far = [passkey.make_task_example(task, rng, tok, filler, 1024)["distance"] for _ in range(50)]
            self.assertGreater(max(far), 400, task)

    def test_make_example_names_what_does_not_fit(self):
        import random
        tok = passkey.ByteTokens()
        with self.assertRaisesRegex(ValueError, "no room for filler"):
            passkey.make_example(random.Random(0), tok, tok.encode("short filler"), 64)
        with self.assertRaisesRegex(ValueError, "exceeds the filler"):
            passkey.make_example(random.Random(0), tok, tok.encode("x" * 4096), 256, min_distance=500)


class PasskeyNearTest(unittest.TestCase):
    def test_near_keys_are_reported_or_derived_from_all_less_far(self):
        own = {"near_keys": 3, "near_digit_accuracy": 0.4, "near_key_accuracy": 0.0}
        self.assertEqual(summary.near_bucket(own), (3, 0.4, 0.0))
        # 10 keys, 4 far: 40% of all tokens right, 25% of the far ones -> (0.4*10 - 0.25*4) / 6 = 0.5
        old = {"keys": 10, "digit_accuracy": 0.4, "key_accuracy": 0.2, "far_keys": 4,
               "far_digit_accuracy": 0.25, "far_key_accuracy": 0.0}
        keys, digit, key = summary.near_bucket(old)
        self.assertEqual(keys, 6)
        self.assertAlmostEqual(digit, 0.5)
        self.assertAlmostEqual(key, 2 / 6)
        self.assertEqual(summary.near_bucket({"keys": 4, "far_keys": 4, "digit_accuracy": 0.1,
                                              "key_accuracy": 0.0}), (0, None, None))


class S2TableTest(unittest.TestCase):
    LOSSES = {"lemo-train dense": 5.7189341, "HF full causal": 5.7189332, "lemo-train --lemo-2d": 5.72472,
              "HF reference no-wrap": 5.724729, "HF reference roll (wrap)": 5.724814}

    def test_rows_in_order_with_the_pair_that_must_agree_in_bold(self):
        lines = s2_table.table({"losses": self.LOSSES}).splitlines()
        self.assertEqual(lines[0], "| attention | loss |")
        self.assertEqual(lines[2], "| lemo-train, dense | 5.718934 |")
        self.assertEqual(lines[4], "| lemo-train, `--lemo-2d` | **5.724720** |")
        self.assertEqual(len(lines), 7)

    def test_a_missing_loss_is_named(self):
        losses = dict(self.LOSSES)
        del losses["HF full causal"]
        with self.assertRaisesRegex(ValueError, "HF full causal"):
            s2_table.table({"losses": losses})


class WindowWarmupTest(unittest.TestCase):
    """pretrain.py --window-warmup: parsing, and a tiny CPU pretraining that switches window length."""

    def setUp(self):
        try:
            import pretrain
        except ImportError as e:  # torch missing: the venv python runs this suite in ctest
            self.skipTest(str(e))
        self.pretrain = pretrain

    def test_parse(self):
        self.assertEqual(self.pretrain.parse_window_warmup("", 1024), (1024, 0))
        self.assertEqual(self.pretrain.parse_window_warmup("256:400", 1024), (256, 400))
        for bad, why in (("256", "LEN:STEPS"), ("a:3", "LEN:STEPS"), ("300:10", "divide --seq-len 1024"),
                         ("0:10", "positive"), ("256:-1", "negative")):
            with self.assertRaises(SystemExit) as e:
                self.pretrain.parse_window_warmup(bad, 1024)
            self.assertIn(why, str(e.exception.code))

    def test_too_few_evaluation_tokens_are_named_before_training(self):
        for flag in ("--val-tokens", "--eval-tokens"):
            with self.assertRaises(SystemExit) as e:
                self.pretrain.main(["--corpus", "unused.jsonl", "--out", tempfile.mkdtemp(), "--seq-len", "2048",
                                    flag, "2048"])
            self.assertIn(f"{flag} 2048 must be above --seq-len 2048", str(e.exception.code))

    def test_held_out_text_shorter_than_a_window_is_named(self):
        import torch
        with self.assertRaisesRegex(ValueError, "100 held-out tokens hold no window of 128 tokens"):
            self.pretrain.heldout_loss(None, torch.zeros(100, dtype=torch.long), 128, torch.device("cpu"))

    def test_short_windows_then_full(self):
        out = tempfile.mkdtemp()
        corpus = os.path.join(HERE, "..", "data", "corpus.jsonl")
        rc = self.pretrain.main(["--corpus", corpus, "--device", "cpu", "--out", out, "--layers", "1",
                                 "--hidden", "32", "--heads", "2", "--kv-heads", "1", "--seq-len", "256",
                                 "--batch", "4", "--passkey-rows", "2", "--window-warmup", "128:3",
                                 "--minutes", "0.12", "--eval-every", "2", "--val-tokens", "512",
                                 "--eval-tokens", "512", "--max-positions", "256"])
        self.assertEqual(rc, 0)
        with open(os.path.join(out, "pretrain.json")) as f:
            result = json.load(f)
        self.assertEqual(result["window_warmup"], "128:3")
        self.assertGreater(result["steps"], 3)  # past the warmup, onto full windows (7 s: also under load)
        self.assertIn("passkey_token_accuracy", result)


class PauseResumeTest(unittest.TestCase):
    """pretrain.py --call-minutes: a pretraining paused at its call's end resumes from state.pt and
    finishes, the generator's state restored (on the GPU a resume once died restoring it)."""

    def test_pause_then_resume(self):
        try:
            import pretrain
        except ImportError as e:
            self.skipTest(str(e))
        out = tempfile.mkdtemp()
        corpus = os.path.join(HERE, "..", "data", "corpus.jsonl")
        flags = ["--corpus", corpus, "--device", "cpu", "--out", out, "--layers", "1", "--hidden", "32",
                 "--heads", "2", "--kv-heads", "1", "--seq-len", "128", "--batch", "2", "--minutes", "0.15",
                 "--eval-every", "2", "--val-tokens", "256", "--eval-tokens", "256", "--max-positions", "128",
                 "--call-minutes", "0.03", "--save-seconds", "1", "--patience", "1000"]  # no early stop
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            self.assertEqual(pretrain.main(flags), 0)
            self.assertFalse(os.path.exists(os.path.join(out, "pretrain.json")))  # paused, not done
            self.assertTrue(os.path.exists(os.path.join(out, "state.pt")))
            for _ in range(10):  # each call trains 0.03 of the 0.15 minutes
                if os.path.exists(os.path.join(out, "pretrain.json")):
                    break
                self.assertEqual(pretrain.main(flags), 0)
        self.assertIn('"resumed"', log.getvalue())
        with open(os.path.join(out, "pretrain.json")) as f:
            self.assertGreater(json.load(f)["steps"], 0)


class StudyQueueTest(unittest.TestCase):
    """study.py's queue as a process: what its status says when a job fails."""

    def study(self, *args, **env):
        work, out = tempfile.mkdtemp(), tempfile.mkdtemp()
        env = dict(os.environ, ACC_SMOKE="1", ACC_WORK=work, OUT=out, ACC_PY_DEVICE="cpu",
                   ACC_DEVICE="cpu", ACC_DTYPE="fp32", **env)
        r = subprocess.run([sys.executable, os.path.join(HERE, "study.py"), *args], env=env,
                           capture_output=True, text=True, timeout=120)
        path = os.path.join(out, "status.json")
        if not os.path.exists(path):
            return r, None
        with open(path) as f:
            return r, json.load(f)

    def test_a_crashed_pretraining_is_failed_not_paused(self):
        # an argument pretrain.py refuses: it exits 1 before any work, as a crash would
        r, status = self.study(ACC_ONLY="big-8k", ACC_PRETRAIN_ARGS_BIG="--window-warmup bogus")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("pretrain-big", status["failed"])
        self.assertFalse([name for name, _ in status["ran"] if "paused" in name])
        self.assertIn("pretrain-big", status["pending"])

    def test_help_and_unknown_arguments_run_nothing(self):
        r, status = self.study("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("Usage:", r.stdout)
        self.assertIsNone(status)
        r, status = self.study("--lsit")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown argument --lsit", r.stderr)
        self.assertIsNone(status)


class ReferenceMaskTest(unittest.TestCase):
    def test_no_wrap_is_causal_and_roll_is_not(self):
        try:
            import s2_check
        except ImportError as e:  # torch missing: the venv python runs this suite in ctest
            self.skipTest(str(e))
        n, heads = 64, 4
        nw, roll = s2_check.mask_no_wrap(heads, n), s2_check.mask_roll(heads, n)
        future = ~__import__("torch").tril(__import__("torch").ones(n, n, dtype=bool))
        self.assertFalse(bool((nw & future).any()))
        # The rolled half puts tokens 0..3 (g/2 = 4) after tokens 60..63 in one group: they see the future.
        self.assertTrue(bool(roll[2, 0, 63]))
        self.assertFalse(bool(roll[:2].logical_and(future).any()))
        # The unshifted halves agree; the shifted halves agree except on the wrapped group.
        self.assertTrue(bool((nw[:2] == roll[:2]).all()))
        self.assertTrue(bool((nw[2:, 4:60, :] == roll[2:, 4:60, :]).all()))


if __name__ == "__main__":
    unittest.main()
