#!/usr/bin/env python3
"""Tests of the benchmark scripts' bookkeeping (no GPU needed).

Run: python3 -m unittest discover -s bench -p 'test_*.py'   (the venv python for the peer test)
Add a case: a test_* method that writes inputs under self.tmp and checks the parsed result.
The end-to-end check is the CPU smoke run: LEMO_BENCH_DEVICE=cpu bash bench/gpu_suite.sh
"""
import glob
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import control_plane_report  # noqa: E402
import flag_rows  # noqa: E402
import flops  # noqa: E402
import kernel_rows  # noqa: E402
import multi_gpu_report  # noqa: E402
import peer_rows  # noqa: E402
import record_result  # noqa: E402
import report  # noqa: E402
import share_rows  # noqa: E402

GIB = 1024 ** 3


class RecordResultTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.out = os.path.join(self.tmp, "results.jsonl")

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def record(self, *args):
        record_result.main(["--out", self.out, *args])
        with open(self.out) as f:
            return json.loads(f.readlines()[-1])

    def test_best_step_after_warmup_and_peak_over_all_steps(self):
        rows = [{"step": 1, "step_time_seconds": 0.5, "peak_allocated_bytes": 9, "peak_reserved_bytes": 10, "loss": 3},
                {"step": 2, "step_time_seconds": 2.0, "peak_allocated_bytes": 5, "peak_reserved_bytes": 6, "loss": 2},
                {"step": 3, "step_time_seconds": 1.0, "peak_allocated_bytes": 7, "peak_reserved_bytes": 8, "loss": 1}]
        m = self.write("m.jsonl", "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "lo')
        r = self.record("--seq-len", "100", "--mode", "ckpt", "--metrics", m)
        self.assertEqual(r["status"], "ok")
        self.assertEqual(r["step_s"], 1.0)  # step 1 (0.5 s) is the warm-up
        self.assertEqual((r["step_times_s"], r["step_median_s"]), ([2.0, 1.0], 1.5))
        self.assertEqual(r["peak_allocated_bytes_steps"], [9, 5, 7])
        self.assertEqual(r["tokens_per_s"], 100.0)
        self.assertEqual((r["peak_allocated_bytes"], r["peak_reserved_bytes"]), (9, 10))
        self.assertEqual(r["loss"], 1)

    def test_failures(self):
        log = self.write("run.log", "step 1\rERROR: RESOURCE_EXHAUSTED: training step: CUDA out of memory.\n")
        self.assertEqual(self.record("--seq-len", "8", "--mode", "ckpt", "--rc", "1", "--log", log)["status"], "oom")
        other = self.write("other.log", "loading\nINVALID_ARGUMENT: bad config\n")
        r = self.record("--seq-len", "8", "--mode", "ckpt", "--rc", "1", "--log", other)
        self.assertEqual((r["status"], r["error"]), ("error", "INVALID_ARGUMENT: bad config"))
        self.assertEqual(self.record("--seq-len", "8", "--mode", "ckpt", "--rc", "124")["status"], "timeout")
        self.assertEqual(self.record("--seq-len", "8", "--mode", "ckpt", "--rc", "137")["status"], "killed")
        r = self.record("--system", "peer", "--seq-len", "8", "--mode", "ckpt", "--status", "skipped",
                        "--error", "deadline reached")
        self.assertEqual((r["system"], r["status"], r["error"]), ("peer", "skipped", "deadline reached"))

    def test_success_without_metrics_is_an_error(self):
        r = self.record("--seq-len", "8", "--mode", "no-ckpt", "--metrics", os.path.join(self.tmp, "none"))
        self.assertEqual(r["status"], "error")


class ReportTest(unittest.TestCase):
    def render(self, rows, meta=None):
        path = os.path.join(tempfile.mkdtemp(), "results.jsonl")
        with open(path, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
        return report.render(report.load_results(path), meta, [])

    @staticmethod
    def run_row(system, seq, mode, alloc, resv, step):
        return {"system": system, "seq_len": seq, "mode": mode, "status": "ok", "step_s": step,
                "tokens_per_s": seq / step, "peak_allocated_bytes": alloc * GIB, "peak_reserved_bytes": resv * GIB}

    def row_of(self, table, seq, mode, system):
        return next(ln for ln in table.splitlines() if ln.startswith(f"| {seq} | {mode} | {system} |"))

    def test_ratios_and_parity(self):
        table = self.render([
            self.run_row("peer", 4096, "no-ckpt", 40, 41, 0.40),
            self.run_row("lemo", 4096, "no-ckpt", 30, 32, 0.41),  # 1.025x: within 1.05
            self.run_row("peer", 4096, "ckpt", 15, 16, 0.50),
            self.run_row("lemo", 4096, "ckpt", 14, 17, 0.45),  # reserved above the peer's
        ])
        cells = self.row_of(table, 4096, "no-ckpt", "lemo dense").split(" | ")
        self.assertEqual(cells[3:8], ["30.0", "32.0", "0.41", "n ?", "9,990"])  # step_s only: n unknown
        self.assertEqual(cells[10:12], ["0.75", "1.02"])
        self.assertTrue(self.row_of(table, 4096, "no-ckpt", "lemo dense").endswith("| yes |"))
        self.assertTrue(self.row_of(table, 4096, "ckpt", "lemo dense").endswith("| no |"))
        self.assertNotIn("lemo LeMo", table)  # no LeMo runs: no rows, no targets
        self.assertNotIn("Issue 5 targets", table)
        self.assertNotIn("strong", table)  # results without the strong peer keep the old columns

    def test_median_and_spread_of_the_raw_steps(self):
        peer = dict(self.run_row("peer", 4096, "ckpt", 15, 16, 0.40), step_times_s=[0.40, 0.60, 0.50, 0.55, 0.45])
        lemo = dict(self.run_row("lemo", 4096, "ckpt", 14, 15, 0.30), step_times_s=[0.30, 0.50, 0.40, 0.90])
        one = dict(self.run_row("lemo", 8192, "ckpt", 20, 21, 2.0), step_times_s=[2.0])
        table = self.render([peer, lemo, one])
        cells = self.row_of(table, 4096, "ckpt", "HF+PEFT").split(" | ")
        self.assertEqual(cells[5:8], ["0.50", "0.40-0.60 (n=5)", "8,192"])  # not the best step (0.40)
        cells = self.row_of(table, 4096, "ckpt", "lemo dense").split(" | ")
        # median of 4 steps: 0.45; tokens/s and the step ratio use it (0.45 / 0.50)
        self.assertEqual(cells[5:8], ["0.45", "0.30-0.90 (n=4)", "9,102"])
        self.assertEqual(cells[10:12], ["0.93", "0.90"])
        self.assertEqual(self.row_of(table, 8192, "ckpt", "lemo dense").split(" | ")[5:7], ["2.00", "(n=1)"])
        self.assertIn("step s: the median of the timed steps", table)

    def test_lemo_rows_name_their_mode_and_a_failed_calibration(self):
        predictor = dict(self.run_row("lemo-sparse", 8192, "no-ckpt", 30, 31, 0.7), lemo_mode="predictor",
                         calibration="ok")
        oracle = dict(self.run_row("lemo-selective", 8192, "no-ckpt", 25, 26, 0.8), lemo_mode="oracle",
                      calibration="failed")
        table = self.render([self.run_row("peer", 8192, "no-ckpt", 60, 62, 0.8), predictor, oracle])
        self.assertIn("| 8192 | no-ckpt | lemo LeMo (predictor) |", table)
        self.assertIn("| 8192 | no-ckpt | lemo LeMo + selective recompute (oracle: predictor calibration FAILED) |",
                      table)
        self.assertIn("- lemo LeMo (predictor): 8K no-ckpt peak allocated / peer: 0.50x", table)
        self.assertIn("- lemo LeMo + selective recompute (oracle: predictor calibration FAILED): 8K", table)
        self.assertNotIn("selective recompute (predictor)", table)

    def test_record_keeps_the_lemo_mode_and_calibration(self):
        out = os.path.join(tempfile.mkdtemp(), "results.jsonl")
        record_result.main(["--system", "lemo-sparse", "--seq-len", "8", "--mode", "ckpt", "--status", "skipped",
                            "--lemo-mode", "oracle", "--calibration", "failed", "--out", out])
        with open(out) as f:
            r = json.loads(f.read())
        self.assertEqual((r["lemo_mode"], r["calibration"]), ("oracle", "failed"))

    def test_committed_results_still_render(self):
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
        for results in glob.glob(os.path.join(root, "*", "*", "results.jsonl")):
            if "control-plane" in results:
                continue  # bench/control_plane_report.py's format: ControlPlaneReportTest.
            with self.subTest(results=os.path.relpath(results, root)):
                table = report.render(report.load_results(results), None, [])
                self.assertIn("| seq | mode | system |", table)

    def test_failed_runs_and_later_lines_win(self):
        table = self.render([
            self.run_row("lemo", 16384, "no-ckpt", 70, 72, 1.9),
            {"system": "peer", "seq_len": 16384, "mode": "no-ckpt", "status": "error", "error": "first try"},
            {"system": "peer", "seq_len": 16384, "mode": "no-ckpt", "status": "oom", "error": "CUDA out of memory"},
            {"system": "lemo", "seq_len": 32768, "mode": "no-ckpt", "status": "skipped", "error": "deadline"},
        ])
        self.assertIn("| OOM | - |", self.row_of(table, 16384, "no-ckpt", "HF+PEFT"))
        self.assertTrue(self.row_of(table, 16384, "no-ckpt", "lemo dense").endswith("| yes (peer OOM) |"))
        self.assertIn("| skipped |", self.row_of(table, 32768, "no-ckpt", "lemo dense"))
        self.assertIn("| not run |", self.row_of(table, 32768, "no-ckpt", "HF+PEFT"))
        self.assertNotIn("first try", table)

    def test_tflops_and_issue5_targets(self):
        config = {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                  "num_hidden_layers": 2, "intermediate_size": 172, "vocab_size": 320}
        meta = {"config": config, "matmul_tflops": 2e-6}
        table = self.render([
            self.run_row("peer", 8192, "no-ckpt", 60, 62, 1.0),
            self.run_row("lemo-sparse", 8192, "no-ckpt", 27, 30, 0.5),  # 0.45x: met
            self.run_row("lemo-sparse", 32768, "no-ckpt", 70, 72, 3.0),
            self.run_row("peer", 32768, "ckpt", 30, 31, 6.0),
            self.run_row("lemo-sparse", 32768, "ckpt", 20, 21, 4.8),  # 0.80x: missed
            self.run_row("lemo-savers", 32768, "ckpt", 15, 16, 4.2),  # 0.70x: met
        ], meta)
        cells = self.row_of(table, 8192, "no-ckpt", "lemo LeMo").split(" | ")
        tflops = flops.step_flops(config, 8192) / 0.5 / 1e12
        self.assertEqual(cells[8:10], [f"{tflops:.0f}", f"{100 * tflops / 2e-6:.0f}%"])
        self.assertIn("lemo LeMo: 8K no-ckpt peak allocated / peer: 0.45x, target <= 0.5x: met", table)
        self.assertIn("lemo LeMo: 32K ckpt step / peer: 0.80x, target <= 0.75x: MISSED", table)
        self.assertIn("lemo LeMo: 64K ckpt step / peer: not measured (lemo not run)", table)
        self.assertIn("lemo LeMo + MLP savers: 32K ckpt step / peer: 0.70x, target <= 0.75x: met", table)
        self.assertIn("| 32768 | ckpt | lemo LeMo + MLP savers |", table)
        self.assertNotIn("S2-Attn", table)  # a configuration that did not run has no rows
        self.assertIn("longest no-ckpt context, lemo LeMo: 32768", table)
        self.assertIn("longest no-ckpt context, HF+PEFT: 8192", table)

    def test_strong_peer_rows_and_ratios(self):
        strong_ckpt = dict(self.run_row("peer-strong", 65536, "ckpt", 40, 42, 15.0), checkpointing="gpu",
                           liger_kernel="0.8.5", steps=2, warmup=1)
        table = self.render([
            self.run_row("peer", 65536, "ckpt", 55, 57, 16.0),
            strong_ckpt,
            self.run_row("lemo-sparse", 65536, "ckpt", 30, 31, 9.0),
            dict(self.run_row("peer-strong", 131072, "ckpt", 39, 41, 58.0), checkpointing="offload"),
            {"system": "peer", "seq_len": 131072, "mode": "ckpt", "status": "oom", "error": "CUDA out of memory"},
            self.run_row("lemo-sparse", 131072, "ckpt", 45, 46, 29.0),
        ])
        self.assertIn("| alloc / peer | step / peer | alloc / strong | step / strong | issue-2 parity |", table)
        cells = self.row_of(table, 65536, "ckpt", "lemo LeMo").split(" | ")
        self.assertEqual(cells[10:14], ["0.55", "0.56", "0.75", "0.60"])  # vs peer 55/16, vs strong 40/15
        strong = self.row_of(table, 65536, "ckpt", "HF+PEFT+Liger (GPU ckpt)").split(" | ")
        self.assertEqual(strong[10:14], ["0.73", "0.94", "-", "-"])
        cells = self.row_of(table, 131072, "ckpt", "lemo LeMo").split(" | ")
        self.assertEqual(cells[10:14], ["-", "-", "1.15", "0.50"])  # the plain peer ran out of memory
        self.assertIn("| 131072 | ckpt | HF+PEFT+Liger (offloaded ckpt) | 39.0 |", table)
        self.assertIn("lemo LeMo: 64K ckpt step / strong peer: 0.60x, target <= 0.65x: met", table)
        self.assertIn("lemo LeMo: 64K ckpt step / peer: 0.56x, target <= 0.65x: met", table)
        self.assertIn("strong peer (HF+PEFT+Liger): Liger Kernel 0.8.5", table)

    def test_step_flops_counts_projections_and_causal_attention(self):
        config = {"hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
                  "num_hidden_layers": 1, "intermediate_size": 16, "vocab_size": 10}
        proj = 8 * 8 * 2 + 8 * 4 * 2 + 3 * 8 * 16  # q, o; k, v; gate, up, down
        linear_fwd = 2 * 100 * (proj + 8 * 10)
        attn_fwd = 2 * 100 * 100 * 2 * 4
        self.assertEqual(flops.step_flops(config, 100), 2 * linear_fwd + 3 * attn_fwd)


class FlagRowsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def folder(self, name, flags, rows, metrics=None):
        path = os.path.join(self.tmp, name)
        os.makedirs(path)
        with open(os.path.join(path, "notes.txt"), "w") as f:
            f.write(f"build: ok\nLeMo flags: {flags}\n")
        with open(os.path.join(path, "results.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        if metrics:
            with open(os.path.join(path, "lemo-sparse-65536-ckpt.metrics.jsonl"), "w") as f:
                for m in metrics:
                    f.write(json.dumps(m) + "\n")
        return path

    def test_each_folder_is_a_row_with_its_flags_and_the_last_steps_offload(self):
        row = {"system": "lemo-sparse", "seq_len": 65536, "mode": "ckpt", "status": "ok",
               "step_times_s": [12.9, 12.8, 12.85], "peak_allocated_bytes": 30 * GIB}
        a = self.folder("sparsity", "--offload sparsity", [row],
                        [{"step": 1, "offloaded_layers": 20, "offload_host_bytes": 10 * GIB},
                         {"step": 2, "offloaded_layers": 24, "offload_host_bytes": 12 * GIB}])
        b = self.folder("oom", "--offload uniform", [dict(row, status="oom", step_times_s=[])])
        lines = flag_rows.rows(a) + flag_rows.rows(b)
        self.assertEqual(lines[0], "| sparsity | 64K | --offload sparsity | ok | 12.85 | "
                                   "12.80-12.90 (n=3) | 30.0 | 24 | 12.0 |")
        self.assertEqual(lines[1], "| oom | 64K | --offload uniform | OOM | - | - | - | - | - |")

    def test_committed_h200_rows_still_render(self):
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                            "2026-12-06-h200-512k", "lemo-512k-budget-40gib")
        if not os.path.isdir(root):
            self.skipTest("no committed H200 run")
        (line,) = flag_rows.rows(root)
        self.assertIn("| 512K |", line)
        self.assertIn("| ok | 500.58 |", line)


class ShareRowsTest(unittest.TestCase):
    """share_rows.py pairs the dense row with LeMo's of the same flags, across folders."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def folder(self, name, lemo_args, rows, memory="gradient checkpointing on, offload none"):
        path = os.path.join(self.tmp, name)
        os.makedirs(path)
        with open(os.path.join(path, "meta.json"), "w") as f:
            json.dump({"command": f"LEMO_BENCH_SEQS='65536' LEMO_BENCH_LEMO_ARGS='{lemo_args}' "
                                  "bash bench/gpu_suite.sh"}, f)
        with open(os.path.join(path, "results.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
                with open(os.path.join(path, f"{r['system']}-{r['seq_len']}-{r['mode']}.log.tail"),
                          "w") as t:
                    t.write(f"memory: {memory}\nstep 1 ...\n")
        return path

    def row(self, system, times, alloc, status="ok"):
        return {"system": system, "seq_len": 65536, "mode": "ckpt", "status": status,
                "step_times_s": times, "peak_allocated_bytes": alloc * GIB}

    def test_a_rerun_lemo_row_replaces_the_killed_one_and_ratios_use_the_worst_case(self):
        a = self.folder("dense", "--loss-segment-tokens 2048",
                        [self.row("lemo", [10.0, 10.2, 10.4], 40),
                         self.row("lemo-sparse", [], 40, status="killed")])
        b = self.folder("lemo", "--loss-segment-tokens 2048",
                        [self.row("lemo-sparse", [7.9, 8.0, 8.2], 36)])
        (line,) = share_rows.rows(share_rows.collect([a, b]))
        self.assertEqual(line, "| 64K | ckpt | --loss-segment-tokens 2048 | offload none | 40.0 | "
                               "36.0 | 0.90 | 10.20 | 10.00-10.40 (n=3) | 8.00 | "
                               "7.90-8.20 (n=3) | 0.78 | 0.82 | dense, lemo |")
        self.assertEqual(share_rows.brief(line),
                         "| 64K | yes | - | 40.0 | 36.0 | 0.90 | 10.20 | 8.00 | 0.78 (0.82) |")

    def test_different_flags_are_different_rows(self):
        a = self.folder("plain", "--loss-segment-tokens 2048", [self.row("lemo", [1.0], 30)])
        b = self.folder("mlp", "--loss-segment-tokens 2048 --recompute-mlp",
                        [self.row("lemo", [1.1], 20)])
        lines = share_rows.rows(share_rows.collect([a, b]))
        self.assertEqual(len(lines), 2)
        self.assertIn("| not run |", lines[0])  # no LeMo row for these flags

    def test_dense_and_lemo_variants_pair_with_their_extra_flags(self):
        a = self.folder("selective", "--loss-segment-tokens 2048",
                        [self.row("dense-selective", [12.0], 53),
                         self.row("lemo-selective", [9.0], 53),
                         self.row("lemo", [16.0], 41)])
        lines = share_rows.rows(share_rows.collect([a]))
        self.assertEqual(len(lines), 2)  # lemo alone (no LeMo row), and the selective pair
        pair = [line for line in lines if "--checkpoint-keep-attention" in line]
        self.assertEqual(len(pair), 1)
        self.assertIn("| --loss-segment-tokens 2048 --recompute-mlp --checkpoint-keep-attention |", pair[0])
        self.assertIn("| 53.0 | 53.0 | 1.00 | 12.00 |", pair[0])

    def test_committed_h100_grid_renders(self):
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                            "2026-12-06-h100-grid")
        if not os.path.isdir(root):
            self.skipTest("no committed grid")
        lines = share_rows.rows(share_rows.collect(
            [os.path.join(root, d) for d in ("ckpt-128k-dense", "ckpt-128k-lemo")]))
        self.assertEqual(len(lines), 1)
        self.assertIn("| 58.8 | 58.8 | 1.00 | 53.30 |", lines[0])


class PeerRowsTest(unittest.TestCase):
    """peer_rows.py takes every ratio against the peers of the same folder, pooling repeats."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def folder(self, name, rows):
        path = os.path.join(self.tmp, name)
        os.makedirs(path)
        with open(os.path.join(path, "results.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        return path

    def row(self, system, times, alloc, status="ok", seq_len=65536, mode="ckpt"):
        return {"system": system, "seq_len": seq_len, "mode": mode, "status": status,
                "step_times_s": times, "peak_allocated_bytes": alloc * GIB}

    def test_two_runs_pool_steps_and_take_the_worst_ratio(self):
        a = self.folder("run1", [self.row("lemo-selective", [10.0, 10.2], 50),
                                 self.row("peer", [16.0, 16.4], 53),
                                 self.row("peer-strong", [14.0, 14.4], 40)])
        b = self.folder("run2", [self.row("lemo-selective", [10.4, 10.6], 52),
                                 self.row("peer-strong", [13.0, 13.2], 40)])
        (line,) = peer_rows.rows(peer_rows.collect([a, b]))
        # memory: largest peak 52 / strong 40 = 1.30, worst run 52/40; step: median of
        # 10.0-10.6 = 10.3 over the strong's pooled median 13.6 = 0.76; worst: run 2's
        # 10.6 / 13.0 = 0.82 (run 1's is 10.2 / 14.0 = 0.73)
        self.assertEqual(line, "| 64K | yes | LeMo + selective | 52.0 | 53.0 | 40.0 | 1.30 (1.30) | "
                               "10.30 | 16.20 | 13.60 | 0.64 | 0.76 (0.82) | 2 |")

    def test_a_peer_that_ran_out_of_memory_gives_no_ratio(self):
        a = self.folder("run", [self.row("lemo-sparse", [4.0], 58, seq_len=16384, mode="no-ckpt"),
                                self.row("peer", [], 0, status="oom", seq_len=16384, mode="no-ckpt")])
        (line,) = peer_rows.rows(peer_rows.collect([a]))
        self.assertEqual(line, "| 16K | no | LeMo | 58.0 | OOM | not run | - | 4.00 | - | - | - | "
                               "- | - |")

    def test_peers_mode_lists_each_peers_runs_and_their_spread(self):
        a = self.folder("run1", [self.row("peer", [16.0, 16.4, 16.2], 53),
                                 self.row("lemo-sparse", [13.0], 41)])
        b = self.folder("run2", [self.row("peer", [16.6, 16.8], 54),
                                 self.row("peer-strong", [14.0], 40)])
        lines = peer_rows.peer_spread([a, b])
        # run medians 16.20 and 16.70: spread 0.50 over their median 16.45 = 3.0%
        self.assertEqual(lines, ["| 64K | yes | HF+PEFT | 2 | 53.0, 54.0 | 16.20, 16.70 | 3.0% |",
                                 "| 64K | yes | strong | 1 | 40.0 | 14.00 | - |"])

    def test_no_ratio_crosses_folders(self):
        a = self.folder("lemo", [self.row("lemo-2d", [7.0], 40)])
        b = self.folder("peers", [self.row("peer-strong", [14.0], 40)])
        (line,) = peer_rows.rows(peer_rows.collect([a, b]))
        self.assertIn("| not run | - |", line)


class KernelRowsTest(unittest.TestCase):
    """kernel_rows.py turns lemo-kernel-bench's JSON into the docs' table."""

    BENCH = {"device": "NVIDIA H100 80GB HBM3", "matmul_tflops": 800.0, "copy_tbps": 3.0,
             "rows": [{"kernel": "block_scores (op)", "shape": "N=32K", "ms": 8.0,
                       "flops": 4.0e12, "bytes": 3.0e9, "ref_ms": 320.0},
                      {"kernel": "gather", "shape": "N=32K", "ms": 0.5, "flops": 0,
                       "bytes": 7.5e8, "ref_ms": 0}]}

    def test_rates_are_against_the_same_runs_ceilings(self):
        lines = kernel_rows.rows(self.BENCH)
        # 4e12 FLOP in 8 ms = 500 TFLOP/s = 62% of 800; 3e9 B in 8 ms = 0.375 TB/s = 12% of 3
        self.assertEqual(lines[0], "| block_scores (op) | N=32K | 8.000 | 500 | 62% | 0.38 | 12% | "
                                   "320.000 | 40.0x |")
        self.assertEqual(lines[1], "| gather | N=32K | 0.500 | - | - | 1.50 | 50% | - | - |")

    def test_a_file_that_is_not_a_bench_result_is_named(self):
        path = os.path.join(tempfile.mkdtemp(), "kernel_bench.json")
        with open(path, "w") as f:
            json.dump({"rows": []}, f)
        with self.assertRaises(SystemExit), open(os.devnull, "w") as null:
            stderr, sys.stderr = sys.stderr, null
            try:
                kernel_rows.main([path])
            finally:
                sys.stderr = stderr


class PeerTest(unittest.TestCase):
    """hf_peer.py on the tiny config on CPU; an OOM is injected, since a CPU cannot raise one."""

    def test_oom_is_recorded_and_longer_seqs_skipped(self):
        try:
            import torch
            import hf_peer
        except ImportError as e:
            self.skipTest(f"needs torch, transformers and peft: {e}")
        real = hf_peer.run_seq

        def run_seq(model, opt, seq, vocab, args, device):
            if seq == 48:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4 GiB")
            return real(model, opt, seq, vocab, args, device)

        out = os.path.join(tempfile.mkdtemp(), "peer.jsonl")
        config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "tiny.json")
        hf_peer.run_seq = run_seq
        try:
            hf_peer.main(["--preset-config", config, "--seq-lens", "32,48,64", "--device", "cpu",
                          "--dtype", "fp32", "--skip-after-oom", "--out", out])
        finally:
            hf_peer.run_seq = real
        with open(out) as f:
            rows = [json.loads(ln) for ln in f]
        self.assertEqual([(r["seq_len"], r["status"]) for r in rows], [(32, "ok"), (48, "oom"), (64, "skipped")])
        self.assertEqual(rows[0]["attn_implementation"], "sdpa")
        # 2 layers x r 8 x (in + out): q and o are 64 -> 64, k and v 64 -> 32 (2 KV heads of 16)
        self.assertEqual(rows[0]["lora_params"], 2 * 8 * (2 * (64 + 64) + 2 * (64 + 32)))
        self.assertGreater(rows[0]["step_s"], 0)


class SdpaKernelsTest(unittest.TestCase):
    """sdpa_kernels.py on CPU: a refused kernel is a row saying so, the others are compared with the
    first, and --table-only prints the committed rows."""

    def test_rows_compare_and_refusals(self):
        try:
            import torch  # noqa: F401
            import sdpa_kernels
        except ImportError as e:
            self.skipTest(f"needs torch: {e}")
        out = tempfile.mkdtemp()
        sdpa_kernels.main(["--out", out, "--device", "cpu", "--kernels", "math,efficient,flash,default", "--seqs",
                           "64", "--heads", "4", "--kv-heads", "2", "--dim", "16", "--dtype", "fp32", "--steps", "2"])
        with open(os.path.join(out, "results.jsonl")) as f:
            rows = [json.loads(ln) for ln in f]
        self.assertEqual([r["kernel"] for r in rows], ["math", "efficient", "flash", "default"])
        self.assertIn("error", rows[1])  # the memory-efficient kernel is CUDA-only
        self.assertLess(rows[2]["max_abs_diff_vs_math"]["dq"], 1e-4)
        # torch's own choice, nothing excluded: it names the backend its order puts first
        self.assertLess(rows[3]["max_abs_diff_vs_math"]["dq"], 1e-4)
        self.assertIn(rows[3]["first_backend"], ("flash", "cudnn", "efficient", "math", "overrideable"))
        self.assertIn(f"torch tries {rows[3]['first_backend']} first", sdpa_kernels.table(rows))
        self.assertTrue(os.path.exists(os.path.join(out, "meta.json")))
        with self.assertRaises(SystemExit):
            sdpa_kernels.main(["--out", out, "--kernels", "flashy"])
        self.assertIn("refused", sdpa_kernels.table(rows))


class StrongPeerTest(unittest.TestCase):
    """The strong peer's pieces on CPU: offloaded checkpointing is exact, auto, --liger's error."""

    CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "tiny.json")

    def setUp(self):
        try:
            import torch  # noqa: F401
            import hf_peer  # noqa: F401
        except ImportError as e:
            self.skipTest(f"needs torch, transformers and peft: {e}")

    def loss_and_grads(self, checkpointing, seq=48, steps=2):
        """Losses of `steps` training steps and the LoRA grads of the last one (same seed, same ids)."""
        import torch
        import hf_peer
        from offload_ckpt import OffloadCheckpointer

        args = hf_peer.parse_args(["--preset-config", self.CONFIG, "--seq-lens", str(seq), "--device", "cpu",
                                   "--dtype", "fp32", "--checkpointing", checkpointing])
        config, _ = hf_peer.load_config(args)
        model = hf_peer.build_model(config, args, torch.float32, torch.device("cpu"))
        offloader = OffloadCheckpointer()
        if checkpointing != "none":
            hf_peer.set_checkpointing(model, checkpointing, offloader)
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        opt = torch.optim.AdamW(params.values(), lr=1e-2)
        ids = torch.randint(3, config.vocab_size, (1, seq), generator=torch.Generator().manual_seed(7))
        losses = []
        for step in range(steps):
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            losses.append(loss.item())
            if step < steps - 1:
                opt.step()
                opt.zero_grad(set_to_none=True)
        grads = {n: p.grad.clone() for n, p in params.items()}
        return losses, grads, offloader, config

    def test_offload_matches_gpu_checkpointing_and_none(self):
        import torch

        ref_losses, ref_grads, _, _ = self.loss_and_grads("none")
        for mode in ("gpu", "offload"):
            losses, grads, offloader, config = self.loss_and_grads(mode)
            self.assertEqual(losses, ref_losses, mode)
            self.assertEqual(grads.keys(), ref_grads.keys())
            for name, g in grads.items():
                self.assertTrue(torch.allclose(g, ref_grads[name], rtol=1e-5, atol=1e-7), f"{mode} {name}")
                self.assertGreater(g.abs().sum().item(), 0, f"{mode} {name}: no gradient")
        # offload held every layer's input (2 layers x 48 tokens x 64 floats) and freed them all
        self.assertEqual(offloader.pinned_peak_bytes, 2 * 48 * 64 * 4)
        self.assertEqual(offloader.live_bytes, 0)
        self.assertIsNone(offloader.last)

    def test_offload_equals_gpu_checkpointing_exactly(self):
        import torch

        gpu_losses, gpu_grads, _, _ = self.loss_and_grads("gpu")
        off_losses, off_grads, _, _ = self.loss_and_grads("offload")
        self.assertEqual(off_losses, gpu_losses)
        for name, g in off_grads.items():
            self.assertTrue(torch.equal(g, gpu_grads[name]), name)

    def test_offload_refused_when_host_memory_cannot_hold_every_layer_input(self):
        """At 384K the peer's pinned inputs outgrow the host: it must say so, not get OOM-killed."""
        import torch
        import hf_peer

        _, _, _, config = self.loss_and_grads("none", steps=1)
        args = hf_peer.parse_args(["--preset-config", self.CONFIG, "--seq-lens", "48", "--device", "cpu",
                                   "--dtype", "fp32"])
        model = hf_peer.build_model(config, args, torch.float32, torch.device("cpu"))
        cuda = torch.device("cuda")  # only its type is read: the check needs no GPU
        # 1000 x 64 floats = 256000 bytes per layer input, pinned as 262144 (a power of two)
        need = config.num_hidden_layers * 262144
        real = hf_peer.host_available_bytes
        try:
            hf_peer.host_available_bytes = lambda: int(need / 0.9) + 1
            self.assertIsNone(hf_peer.offload_host_shortfall(model, 1000, cuda))
            hf_peer.host_available_bytes = lambda: need
            reason = hf_peer.offload_host_shortfall(model, 1000, cuda)
        finally:
            hf_peer.host_available_bytes = real
        self.assertIn(f"all {config.num_hidden_layers} layer inputs", reason)
        self.assertIn("rounded up", reason)
        self.assertIn("more than 90%", reason)
        self.assertIsNone(hf_peer.offload_host_shortfall(model, 1000, torch.device("cpu")))

    def test_offload_function_positional_args_and_tuple_outputs(self):
        """The older transformers calling convention: extra inputs positional, (hidden, None) out."""
        import torch
        from offload_ckpt import OffloadCheckpointer

        torch.manual_seed(0)
        layers = [torch.nn.Linear(8, 8) for _ in range(3)]
        scale = torch.full((8,), 0.5)

        def run(ckpt):
            for p in (p for layer in layers for p in layer.parameters()):
                p.grad = None
            h = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
            for layer in layers:
                fn = (lambda x, s, layer=layer: (torch.tanh(layer(x)) * s + x, None))
                h = ckpt(fn, h, scale)[0] if ckpt else fn(h, scale)[0]
            h.square().sum().backward()
            return [p.grad.clone() for layer in layers for p in layer.parameters()]

        ckpt = OffloadCheckpointer()
        for got, want in zip(run(ckpt), run(None)):
            self.assertTrue(torch.equal(got, want))
        self.assertEqual((ckpt.pinned_peak_bytes, ckpt.live_bytes), (3 * 4 * 8 * 4, 0))

    def run_peer(self, *extra):
        import hf_peer

        out = os.path.join(tempfile.mkdtemp(), "peer.jsonl")
        hf_peer.main(["--preset-config", self.CONFIG, "--seq-lens", "32", "--device", "cpu", "--dtype", "fp32",
                      "--steps", "2", "--out", out, *extra])
        with open(out) as f:
            return [json.loads(ln) for ln in f]

    def test_auto_picks_gpu_when_it_fits_and_offload_after_an_oom(self):
        import torch
        import hf_peer

        [row] = self.run_peer("--checkpointing", "auto")
        self.assertEqual((row["system"], row["mode"], row["status"]), ("peer", "ckpt", "ok"))
        self.assertEqual((row["checkpointing"], row["checkpointing_requested"], row["liger"]), ("gpu", "auto", False))
        self.assertEqual([t["checkpointing"] for t in row["auto_tried"]], ["gpu"])
        self.assertEqual(len(row["step_times_s"]), 2)
        self.assertGreater(row["peak_host_rss_bytes"], 0)
        self.assertEqual(row["pinned_host_bytes"], 0)

        real = hf_peer.run_seq

        def run_seq(model, opt, seq, vocab, args, device):  # gpu checkpointing "runs out of memory"
            funcs = {type(m._gradient_checkpointing_func).__name__ for m in model.modules()
                     if getattr(m, "gradient_checkpointing", False)}
            if funcs != {"OffloadCheckpointer"}:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8 GiB")
            return real(model, opt, seq, vocab, args, device)

        hf_peer.run_seq = run_seq
        try:
            rows = self.run_peer("--checkpointing", "auto", "--seq-lens", "32,48", "--system", "peer-strong")
        finally:
            hf_peer.run_seq = real
        self.assertEqual([(r["seq_len"], r["status"], r["checkpointing"]) for r in rows],
                         [(32, "ok", "offload"), (48, "ok", "offload")])
        self.assertEqual([t["status"] for t in rows[0]["auto_tried"]], ["oom", "ok"])
        self.assertEqual([t["checkpointing"] for t in rows[1]["auto_tried"]], ["offload"])  # no gpu retry
        self.assertEqual(rows[0]["system"], "peer-strong")
        self.assertEqual(rows[0]["pinned_host_bytes"], 2 * 32 * 64 * 4)

    def test_alias_and_no_checkpointing_rows(self):
        import hf_peer

        args = hf_peer.parse_args(["--preset-config", self.CONFIG, "--seq-lens", "8", "--gradient-checkpointing"])
        self.assertEqual(args.checkpointing, "gpu")
        [row] = self.run_peer()
        self.assertEqual((row["mode"], row["checkpointing"], row["system"]), ("no-ckpt", "none", "peer"))

    def test_liger_on_cpu_is_a_clear_error(self):
        import contextlib
        import io

        import hf_peer

        err = io.StringIO()
        with self.assertRaises(SystemExit) as cm, contextlib.redirect_stderr(err):
            hf_peer.main(["--preset-config", self.CONFIG, "--seq-lens", "32", "--device", "cpu", "--liger"])
        self.assertEqual(cm.exception.code, 2)
        self.assertIn("--liger needs CUDA", err.getvalue())


class CheckTablesTest(unittest.TestCase):
    """scripts/check-tables: a generated region is rebuilt from the raw file; a stale one fails with
    a diff, and --write fixes it."""

    def setUp(self):
        import contextlib
        import importlib.machinery
        import importlib.util
        import io

        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "check-tables")
        loader = importlib.machinery.SourceFileLoader("check_tables", path)
        spec = importlib.util.spec_from_loader("check_tables", loader)
        self.tool = importlib.util.module_from_spec(spec)
        loader.exec_module(self.tool)
        self.tmp = tempfile.mkdtemp()
        self.quiet = lambda: contextlib.redirect_stdout(io.StringIO())
        self.quiet_err = lambda: contextlib.redirect_stderr(io.StringIO())

    def doc(self, body):
        path = os.path.join(self.tmp, "doc.md")
        with open(path, "w") as f:
            f.write(body)
        return path

    def test_stale_region_fails_and_write_rebuilds_it(self):
        results = os.path.join(self.tmp, "results.jsonl")
        with open(results, "w") as f:
            for system, mbs in (("python-tokenizers", 2.0), ("lemo", 10.0)):
                f.write(json.dumps({"tokenizer": "t", "system": system, "mb_per_s": mbs}) + "\n")
        marker = f"<!-- generated: bench/tokenizer/compare.py --report {results} -->\n"
        path = self.doc("# Doc\n\n" + marker + "| old | table |\n<!-- end generated -->\ntail\n")
        with self.quiet(), self.quiet_err():
            self.assertEqual(self.tool.main([path]), 1)
            self.assertEqual(self.tool.main(["--write", path]), 0)
            self.assertEqual(self.tool.main([path]), 0)
        with open(path) as f:
            text = f.read()
        self.assertIn(marker + "| tokenizer | Python MB/s | lemo MB/s | lemo / Python |\n", text)
        self.assertIn("| t | 2 | 10 | 5x |\n<!-- end generated -->\ntail\n", text)

    def test_only_bench_scripts_run_and_regions_must_end(self):
        with self.quiet_err():
            self.assertEqual(self.tool.main([self.doc("<!-- generated: rm -rf x -->\n<!-- end generated -->\n")]), 1)
            self.assertEqual(self.tool.main([self.doc("<!-- generated: bench/report.py --results x -->\n")]), 1)


class ControlPlaneReportTest(unittest.TestCase):
    """bench/control_plane_report.py: the retention verdict (RSS from half of the jobs to all of
    them) and which runs --check fails."""

    def retention(self, rss_half, rss_full, retain=1000, jobs=100000, finished=None, errors=0):
        flags = ["--tls-cert=$SECRETS/tls.pem"]
        if retain is not None:
            flags.append(f"--retain-finished-jobs={retain}")
        return {"phase": "retention", "coordinator_flags": flags, "result": {
            "tls": True, "tokens": True, "jobs": jobs,
            "finished": jobs if finished is None else finished,
            "wall_s": 100, "jobs_per_s": 1000, "errors": errors, "errors_by_kind": {},
            "coordinator": {"rss_mib_start": 20, "rss_mib_peak": rss_full, "cpu_pct": 90},
            "rss_at": [{"finished": jobs // 10, "rss_mib": 30},
                       {"finished": jobs // 2, "rss_mib": rss_half},
                       {"finished": jobs, "rss_mib": rss_full}],
            "rss_samples": []}}

    def test_bounded_within_the_slack_and_not_beyond(self):
        self.assertEqual(control_plane_report.bounded(self.retention(100, 105)["result"]), (True, 5))
        self.assertEqual(control_plane_report.bounded(self.retention(200, 219)["result"]), (True, 19))
        self.assertEqual(control_plane_report.bounded(self.retention(100, 150)["result"]), (False, 50))

    def test_check_fails_growth_only_when_the_coordinator_had_the_flag(self):
        grows = control_plane_report.problems(self.retention(100, 150))
        self.assertTrue(any("not bounded" in p for p in grows), grows)
        # Without --retain-finished-jobs the growth is reported, not failed: the build lacks it.
        self.assertEqual(control_plane_report.problems(self.retention(100, 150, retain=None)), [])
        # Too few jobs to see a plateau: not judged.
        self.assertEqual(control_plane_report.problems(self.retention(100, 150, jobs=5000)), [])

    def test_unfinished_jobs_and_errors_fail(self):
        p = control_plane_report.problems(self.retention(100, 100, finished=99999, errors=2))
        self.assertTrue(any("finished 99999 of 100000" in x for x in p), p)
        self.assertTrue(any("errors 2" in x for x in p), p)

    def test_curve_picks_the_sample_nearest_each_tenth(self):
        run = self.retention(100, 150, jobs=1000)
        run["result"]["rss_samples"] = [{"finished": f, "t_s": f / 100, "rss_mib": 20 + f / 10}
                                        for f in range(0, 1001, 50)]
        text = control_plane_report.curve_table([run])
        self.assertIn("| finished jobs | 100 | 200 |", text)
        self.assertIn("| coord RSS MiB (--retain-finished-jobs 1000) | 30 |", text)
        self.assertTrue(text.rstrip().endswith("| 10 |"), text)

    def test_committed_results_still_render_and_pass_the_check(self):
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
        found = glob.glob(os.path.join(root, "*control-plane*", "**", "results.jsonl"), recursive=True)
        self.assertTrue(found)
        for results in found:
            with self.subTest(results=os.path.relpath(results, root)):
                runs = control_plane_report.load(results)
                self.assertTrue(runs)
                for run in runs:
                    problems = control_plane_report.problems(run)
                    # The committed retention run predates the coordinator's flag: its only
                    # verdict is the reported growth, never an error.
                    self.assertEqual(problems, [], run.get("phase"))
                loads = [r for r in runs if control_plane_report.phase(r) == "load"]
                self.assertIn("| workers | watchers |", control_plane_report.table(loads))

    def test_table_names_the_missing_flag(self):
        text = control_plane_report.retention_table([self.retention(100, 150, retain=None)])
        self.assertIn("not in this build (keeps every job)", text)
        self.assertIn("| +50.0 MiB | no |", text)


class MultiGpuReportTest(unittest.TestCase):
    """multi_gpu_report.py judges bench/multi_gpu.sh's runs from the saved watch streams."""

    def setUp(self):
        self.out = tempfile.mkdtemp()

    def stream(self, name, events):
        # Written as `lemoctl watch -o json` does: objects back to back, no separator needed.
        with open(os.path.join(self.out, f"{name}.events.jsonl"), "w") as f:
            f.write("".join(json.dumps(e) for e in events))

    @staticmethod
    def metric(step, loss, seconds=1.0, rank=0, total=4):
        m = {"step": str(step), "loss": loss, "stepTimeSeconds": seconds, "totalSteps": str(total)}
        if rank:
            m["rank"] = rank
        return {"metric": m}

    @staticmethod
    def state(to):
        return {"stateChange": {"to": to}}

    def rows(self):
        rc = multi_gpu_report.main(["report", self.out])
        with open(os.path.join(self.out, "results.jsonl")) as f:
            return rc, {r["check"]: r for r in map(json.loads, f)}

    def test_parity_scaling_and_a_fault_that_resumed_from_its_checkpoint(self):
        self.stream("parity-1rank", [self.metric(1, 2.0), self.metric(2, 1.5), self.state("SUCCEEDED")])
        self.stream("parity-2ranks", [self.metric(1, 2.000002), self.metric(1, 9.0, rank=1),
                                      self.metric(2, 1.500004), self.state("SUCCEEDED")])
        self.stream("scaling-128-1rank", [self.metric(s, 1, 1.0) for s in (1, 2, 3)] + [self.state("SUCCEEDED")])
        self.stream("scaling-128-2ranks", [self.metric(s, 1, 1.25) for s in (1, 2, 3)] + [self.state("SUCCEEDED")])
        self.stream("fault-2ranks", [self.metric(1, 1), self.metric(2, 1), {"checkpoint": {"step": "2"}},
                                     self.metric(3, 1), self.state("RESTARTING"), self.metric(3, 1),
                                     self.metric(4, 1), self.state("SUCCEEDED")])
        rc, rows = self.rows()
        self.assertEqual(rc, 0)
        # rank 1's report is not rank 0's loss; fp32: absolute difference
        self.assertAlmostEqual(rows["parity"]["max_difference"], 4e-6)
        self.assertTrue(rows["parity"]["ok"])
        self.assertAlmostEqual(rows["weak scaling"]["efficiency"], 0.8)
        self.assertEqual(rows["fault"]["resumed_at"], [3])
        self.assertTrue(rows["fault"]["ok"])

    def test_contention_reports_each_jobs_queue_wait(self):
        for i, (size, start) in enumerate([(2, "06:00:01.5Z"), (1, "06:00:03Z")], 1):
            self.stream(f"contention-{i}-{size}ranks", [self.state("RUNNING"), self.state("SUCCEEDED")])
            with open(os.path.join(self.out, f"contention-{i}-{size}ranks.job.json"), "w") as f:
                json.dump({"createTime": "2026-12-07T06:00:00.250Z", "startTime": "2026-12-07T" + start}, f)
        rc, rows = self.rows()
        self.assertEqual(rc, 0)
        self.assertEqual(rows["contention"]["queue_wait_s"], [1.25, 2.75])
        self.assertEqual(rows["contention"]["jobs"], ["2ranks", "1ranks"])

    def test_a_gang_that_lost_its_steps_or_drifted_fails(self):
        self.stream("parity-1rank", [self.metric(1, 2.0), self.state("SUCCEEDED")])
        self.stream("parity-2ranks", [self.metric(1, 2.001), self.state("SUCCEEDED")])
        # resumed at step 2 with no checkpoint at step 1, and never reached its last step
        self.stream("fault-2ranks", [self.metric(1, 1), self.metric(2, 1), self.state("RESTARTING"),
                                     self.metric(2, 1), self.state("SUCCEEDED")])
        rc, rows = self.rows()
        self.assertEqual(rc, 1)
        self.assertFalse(rows["parity"]["ok"])
        self.assertFalse(rows["fault"]["ok"])
        with open(os.path.join(self.out, "table.md")) as f:
            self.assertIn("| NO |", f.read())


if __name__ == "__main__":
    unittest.main()
