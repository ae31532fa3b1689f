#!/usr/bin/env python3
"""Tests of bench/plan_accuracy.py: how a committed row's settings are derived, which rows are
planned, the stale check and the table (no GPU, no build: a stand-in lemo-plan prints a plan).

Run: python3 -m unittest discover -s bench -p 'test_*.py'
Add a case: build a results folder under self.results with self.folder(...) (meta.json command,
notes.txt lines, the row's log and metrics as gpu_suite.sh leaves them), then check derive()'s
flags, planned_rows() or table().
"""
import json
import os
import shutil
import stat
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plan_accuracy  # noqa: E402

GIB = 1024 ** 3
COMMAND = ("PYTORCH_CUDA_ALLOC_CONF='expandable_segments:True' LEMO_BENCH_SEQS='262144' "
           "LEMO_BENCH_LEMO_ARGS='--loss-segment-tokens 2048' LEMO_BENCH_SPARSE_ARGS='' "
           "bash bench/gpu_suite.sh")
# A stand-in lemo-plan: the peak is 1 GiB per 4K tokens, the time 1 s per 4K tokens; it echoes
# its arguments so a test can see what it was given.
FAKE_PLAN = r'''#!/usr/bin/env python3
import json, sys
a = sys.argv[1:]
seq = int(a[a.index("--seq-len") + 1])
print(json.dumps({"peak_gpu_bytes": seq // 4096 * 2**30, "step_seconds": seq / 4096,
                  "pinned_host_bytes": 0, "offloaded_layers": 0, "fits": seq < 300000,
                  "verdict": "fits" if seq < 300000 else "does not fit", "argv": a}))
'''


class PlanAccuracyTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.results = os.path.join(self.tmp, "results")
        os.makedirs(self.results)
        self.saved = plan_accuracy.RESULTS, plan_accuracy.PLAN
        plan_accuracy.RESULTS = self.results
        plan_accuracy.PLAN = os.path.join(self.tmp, "plan.jsonl")
        self.fake = os.path.join(self.tmp, "lemo-plan")
        with open(self.fake, "w") as f:
            f.write(FAKE_PLAN.replace("#!/usr/bin/env python3", "#!" + sys.executable, 1))
        os.chmod(self.fake, os.stat(self.fake).st_mode | stat.S_IEXEC)

    def tearDown(self):
        plan_accuracy.RESULTS, plan_accuracy.PLAN = self.saved
        shutil.rmtree(self.tmp)

    def folder(self, name, rows, command=COMMAND, notes=(), device="NVIDIA H100 80GB HBM3",
               files=None):
        path = os.path.join(self.results, name)
        os.makedirs(path, exist_ok=True)
        if command is not None:
            with open(os.path.join(path, "meta.json"), "w") as f:
                json.dump({"command": command, "device_name": device,
                           "config": {"num_hidden_layers": 32, "hidden_size": 4096}}, f)
        with open(os.path.join(path, "notes.txt"), "w") as f:
            f.write("".join(line + "\n" for line in notes))
        with open(os.path.join(path, "results.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        for rel, text in (files or {}).items():
            os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
            with open(os.path.join(path, rel), "w") as f:
                f.write(text)
        return path

    @staticmethod
    def row(system="lemo-sparse", seq=262144, mode="ckpt", status="ok", peak=70 * GIB, step=140.0):
        r = {"system": system, "seq_len": seq, "mode": mode, "status": status}
        if status == "ok":
            r.update({"peak_allocated_bytes": peak, "step_s": step, "step_times_s": [step]})
        return r

    def test_memory_line_flags_reads_each_log_generation(self):
        f = plan_accuracy.memory_line_flags
        self.assertEqual(
            f("memory: gradient checkpointing on, offload sparsity (GPU budget auto), tiles 16384 "
              "tokens (MLP tiled), attention head groups 4\n"),
            ["--offload", "sparsity", "--offload-gpu-budget-gib", "-1", "--tile-tokens", "16384",
             "--attention-head-groups", "4"])
        # Before head groups existed: attention whole.
        self.assertEqual(
            f("memory: gradient checkpointing on, offload none (GPU budget auto), MLP tiles off\n"),
            ["--offload", "none", "--offload-gpu-budget-gib", "-1", "--tile-tokens", "0",
             "--attention-head-groups", "0"])
        self.assertIn("2", f("memory: gradient checkpointing on, offload sparsity (GPU budget 2 "
                             "GiB), MLP tiles off\n"))

    def test_derive_takes_command_notes_log_and_recorded_budget(self):
        layer_input = 262144 * 4096 * 2
        path = self.folder(
            "run/a", [self.row()],
            notes=["LeMo flags: --lemo-mode oracle --lemo-predictors /tmp/p (256K: ignored)"],
            files={"logs/lemo-sparse-262144-ckpt.log":
                   "memory: gradient checkpointing on, offload sparsity (GPU budget auto), "
                   "tiles 16384 tokens (MLP tiled), attention head groups 1\n",
                   "logs/lemo-sparse-262144-ckpt.metrics.jsonl":
                   json.dumps({"step": 1, "offload_host_bytes": 16 * layer_input}) + "\n"})
        args, config, device = plan_accuracy.derive(path, self.row())
        self.assertEqual(device, "h100-80gb")
        self.assertEqual(config["hidden_size"], 4096)
        joined = " ".join(args)
        self.assertIn("--seq-len 262144", joined)
        self.assertIn("--gradient-checkpointing", joined)
        self.assertIn("--loss-segment-tokens 2048", joined)
        self.assertIn("--lemo-mode oracle", joined)
        self.assertNotIn("--lemo-predictors", joined)  # a path, not a plan setting
        self.assertIn("--attention-head-groups 1", joined)
        self.assertIn("--tile-tokens 16384", joined)
        # The automatic budget the run used: 16 of 32 inputs stayed on the GPU.
        budget = float(args[args.index("--offload-gpu-budget-gib") + 1])
        self.assertAlmostEqual(budget, 16 * layer_input / GIB, places=4)

    def test_derive_for_selective_rows_without_logs(self):
        path = self.folder("run/b", [], command=COMMAND.replace("262144", "8192"),
                           notes=["LeMo flags: --lemo-mode predictor --lemo-predictors /x",
                                  "lemo-selective adds: --recompute-mlp --checkpoint-keep-attention"],
                           device="NVIDIA H200")
        row = self.row("lemo-selective", 8192, "no-ckpt")
        args, _, device = plan_accuracy.derive(path, row)
        self.assertEqual(device, "h200-141gb")
        self.assertNotIn("--gradient-checkpointing", args)
        self.assertIn("--recompute-mlp", args)
        self.assertIn("--checkpoint-keep-attention", args)
        self.assertEqual(args[args.index("--lemo-mode") + 1], "predictor")
        # The dense system gets no LeMo flags.
        args, _, _ = plan_accuracy.derive(path, self.row("lemo", 8192, "no-ckpt"))
        self.assertNotIn("--lemo-mode", args)

    def test_planned_rows_skip_peers_and_prefer_the_copy_with_logs(self):
        self.folder("run/grid", [self.row(), self.row("peer-strong"),
                                 self.row(seq=393216, status="skipped")])
        self.folder("run/z-own", [self.row()],
                    files={"lemo-sparse-262144-ckpt.log.tail": "memory: tiles off\n"})
        self.folder("run/oom", [self.row(status="oom")])
        rows = plan_accuracy.planned_rows()
        self.assertEqual([(k["folder"], k["system"], r["status"]) for k, _, r in rows],
                         [("run/z-own", "lemo-sparse", "ok"), ("run/oom", "lemo-sparse", "oom")])

    def test_write_then_check_then_a_new_folder_is_stale(self):
        self.folder("run/a", [self.row(seq=262144, peak=70 * GIB, step=100.0)])
        self.assertEqual(plan_accuracy.main(["--write", "--lemo-plan", self.fake]), 0)
        self.assertEqual(plan_accuracy.main(["--check", "--lemo-plan", self.fake]), 0)
        self.folder("run/new", [self.row(seq=8192)])
        self.assertEqual(plan_accuracy.main(["--check", "--lemo-plan", self.fake]), 1)

    def test_table_marks_misses_and_lists_oom_rows(self):
        # The stand-in predicts 64 GiB and 64 s at 256K: 70 GiB is within 10%, 100 s is not
        # within 25%; the 384K OOM row is planned as "does not fit".
        self.folder("run/a", [self.row(seq=262144, peak=70 * GIB, step=100.0),
                              self.row(seq=393216, status="oom")])
        plan_accuracy.main(["--write", "--lemo-plan", self.fake])
        table = plan_accuracy.table()
        ok_line = [l for l in table.splitlines() if "| 256K |" in l][0]
        self.assertIn("| -8.6% | yes |", ok_line)
        self.assertIn("| -36.0% | **no** |", ok_line)
        self.assertIn("Peak memory within 10%: 1 of 1 rows; step time within 25%: 0 of 1 rows",
                      table)
        oom_line = [l for l in table.splitlines() if "| 384K |" in l][0]
        self.assertIn("does not fit", oom_line)
        # A row without a plan says so instead of vanishing.
        self.folder("run/new", [self.row(seq=8192)])
        self.assertIn("not planned", plan_accuracy.table())


if __name__ == "__main__":
    unittest.main()
