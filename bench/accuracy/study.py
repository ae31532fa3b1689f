#!/usr/bin/env python3
"""Accuracy study v2 (issue 14, docs/accuracy.md "Study v2"): the job queue behind study.sh.

Usage: python3 bench/accuracy/study.py [--list]   (study.sh sets the environment; see its header)

The study is one ordered list of jobs (jobs() below). Each device call runs the jobs not yet done,
in order, until the next one would not finish inside the call's budget (ACC_CALL_SECONDS); a job
that overruns anyway is killed and left pending. The work directory (ACC_WORK, /tmp) keeps the
models, adapters and done-markers between back-to-back calls on a warm machine; every call copies
the accumulated small results (results.jsonl, pretraining and calibration reports, summary.md,
status.json) into $OUT, so the last call's $OUT holds the whole study. If the machine went cold
between calls (/tmp empty), the study starts again from the first job.

Each fine-tune appends one row to results.jsonl:
  {"model", "seq", "config", "seed", "steps", "kind": "lm"|"passkey", "loss" (held-out, dense eval)
   or the passkey metrics, "train_loss", "kept", "step_seconds", "seconds", "flags"}
and summary.py turns them into the tables (mean, std, min-max over seeds; dense-vs-dense spread).
"""
import json
import os
import shutil
import subprocess
import sys
import time

import passkey  # bench/accuracy/passkey.py, beside this script

ENV = os.environ


def env(name, default):
    return type(default)(ENV.get(name, default))


SMOKE = env("ACC_SMOKE", 0) == 1
W = ENV.get("ACC_WORK", "/tmp/lemo-acc2")
OUT = ENV.get("OUT", os.path.join(os.getcwd(), "acc-out"))
TRAIN = ENV.get("LEMO_TRAIN", os.path.join(os.getcwd(), "build-gpu/bin/lemo-train"))
PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))
CALL_SECONDS = env("ACC_CALL_SECONDS", 540.0)  # the device call is 600 s; keep a margin
DEVICE = ENV.get("ACC_DEVICE", "cuda:0")
DTYPE = ENV.get("ACC_DTYPE", "bf16")
PYDEV = ENV.get("ACC_PY_DEVICE", "cuda")
SEEDS = [int(s) for s in ENV.get("ACC_SEEDS", "0,1,2").split(",")]
LR = ENV.get("ACC_LR", "1e-3")

# The two models. "big": issue 14's >= 100M parameters, >= 16 layers, SentencePiece tokens;
# "small": the 8-layer byte-level model of study v1.
if SMOKE:
    BIG = dict(layers=4, hidden=64, heads=4, kv_heads=2, spm=500, seq=128, batch=2, minutes=0.1,
               intermediate=0, passkey_rows=1)
    SMALL = dict(layers=4, hidden=64, heads=4, kv_heads=2, spm=0, seq=128, batch=2, minutes=0.1,
                 intermediate=0)
    SEQS = {"8k": 256, "16k": 512}
else:
    # passkey_rows: 8 of each batch's 16 rows are passkey windows of 2,048 tokens (pretrain.py
    # --passkey-rows), so that the base model can retrieve within its context and the long-context
    # fine-tunes show whether that survives beyond it; without them (2026-12-07) it never learned
    # retrieval at all, at any distance. With them, pretraining runs its whole budget and keeps the
    # checkpoint best at text and retrieval together (pretrain.py): the book's loss alone stopped
    # it at 260 steps. Retrieval comes in a sudden step whose wait grows with the window: on the
    # CPU after 300 steps at 256 tokens, not yet after 851 at 1,024; on the GPU not yet after 799
    # at 2,048 (bench/results/2026-12-07-cpu-long-range/, 2026-12-07-h100-passkey/). What sets
    # the wait is the window's length, and short windows first remove it: on the CPU, 400 steps
    # of 256-token windows and then 1,024-token ones learned the passkey at 1,024 within 50 steps
    # of the switch, where 1,150 steps of full windows had not (window_warmup: pretrain.py
    # --window-warmup LEN:STEPS, ACC_WINDOW_WARMUP; "" turns it off). On this model on the GPU it
    # did not repeat: about half the answer digits after 1,100 steps, no sudden step, hardly a
    # whole key (bench/results/2026-12-07-h100-passkey-warmup/).
    BIG = dict(layers=16, hidden=768, heads=12, kv_heads=4, spm=8000, seq=2048, batch=16,
               minutes=env("ACC_BIG_MINUTES", 12.0), intermediate=2048, eval_every=20,
               passkey_rows=env("ACC_PASSKEY_PRETRAIN_ROWS", 8),
               window_warmup=ENV.get("ACC_WINDOW_WARMUP", "256:500"))
    # The small model's passkey rows and short windows are off unless asked for, so that its seed
    # runs stay study v1's model. With them (ACC_SMALL_PASSKEY_ROWS=24, ACC_SMALL_WINDOW_WARMUP=
    # 256:400) it is the GPU's version of the CPU run that learned the passkey at depth 8 with bytes
    # (p13 in bench/results/2026-12-07-cpu-long-range/), for when the large model does not learn it.
    SMALL = dict(layers=8, hidden=512, heads=8, kv_heads=4, spm=0, seq=env("ACC_SMALL_SEQ", 1024), batch=32,
                 minutes=env("ACC_SMALL_MINUTES", 3.0), intermediate=0,
                 passkey_rows=env("ACC_SMALL_PASSKEY_ROWS", 0),
                 window_warmup=ENV.get("ACC_SMALL_WINDOW_WARMUP", ""))
    # ACC_SEQ_8K / ACC_SEQ_16K scale the study down for a CPU run (with ACC_SMALL_SEQ and
    # ACC_PRETRAIN_ARGS_SMALL for a narrower model); the names stay "8k" and "16k".
    SEQS = {"8k": env("ACC_SEQ_8K", 8192), "16k": env("ACC_SEQ_16K", 16384)}
STEPS = {"8k": env("ACC_STEPS_8K", 3 if SMOKE else 200), "16k": env("ACC_STEPS_16K", 3 if SMOKE else 150)}
CAL_STEPS = env("ACC_CAL_STEPS", 3 if SMOKE else 200)
PASSKEY_TRAIN = env("ACC_PASSKEY_SAMPLES", 8 if SMOKE else 250)
# The long-range task of the passkey jobs and of the large model's pretraining rows (passkey.py):
# "passkey" (a 5-digit key) or "copy" (a span of random tokens to copy back).
LONG_TASK = ENV.get("ACC_LONG_TASK", "passkey")
if LONG_TASK not in passkey.TASKS:
    sys.exit(f"study: ACC_LONG_TASK={LONG_TASK} must be one of {', '.join(passkey.TASKS)}")
PASSKEY_TEST = env("ACC_PASSKEY_TEST", 4 if SMOKE else 100)
EVAL_ARGS = ENV.get("ACC_EVAL_ARGS", "--batches 2" if SMOKE else "").split()

MLP = ["--mlp-prune-ratio", "0.8", "--recompute-norm"]


def say(msg):
    print(f"[study {time.time() - START:5.0f}s] {msg}", file=sys.stderr, flush=True)


def common(model):
    return ["--device", DEVICE, "--dtype", DTYPE] + tokenizer_flags(model)


def mdir(model):
    return os.path.join(W, model)


def pred_flags(model):
    return ["--lemo-mode", "predictor", "--lemo-predictors", os.path.join(mdir(model), "predictors"),
            "--predictor-recall-every", "50"]


def finetune_data(model):
    """The long-context fine-tunes' (and calibration's) text. The byte model: the fine-tune book
    (Emma), as study v1. The large model: every book but the held-out one (the pretraining books,
    seen only at 2,048 tokens, and Emma), because Emma alone is ~0.22M subword tokens: 27 windows of
    8K, so 200 steps would be 7 epochs of it (11 at 16K); all five books are ~0.82M tokens, 2
    epochs at 8K, 3 at 16K."""
    d = mdir(model)
    if model != "big":
        return os.path.join(d, "finetune.jsonl")
    path = os.path.join(d, "finetune-all.jsonl")
    if not os.path.exists(path):
        with open(path + ".tmp", "w") as out:
            for name in ("train.jsonl", "finetune.jsonl"):
                with open(os.path.join(d, name)) as f:
                    out.write(f.read())
        os.replace(path + ".tmp", path)
    return path


def pretrain_seq(model):
    return (BIG if model == "big" else SMALL)["seq"]


def tokenizer_flags(model):
    # The large model's directory holds its tokenizer.model (lemo-train's default); the byte model's
    # holds none.
    return [] if (BIG if model == "big" else SMALL)["spm"] else ["--tokenizer", "byte"]


def model_path(model, config, seq):
    """The HF model directory a configuration trains and evaluates: the pretrained one, or for the
    -pi configurations a copy (symlinks) whose config.json adds linear position interpolation to
    `seq` (LongLoRA's recipe): factor seq / pretraining length, so every distance up to `seq` maps
    into the pretrained range, for lemo-train and for HF alike."""
    src = os.path.join(mdir(model), "model")
    if not config.endswith("-pi"):
        return src
    dst = os.path.join(mdir(model), f"model-pi-{seq}")
    if not os.path.exists(os.path.join(dst, "config.json")):
        os.makedirs(dst, exist_ok=True)
        cfg = json.load(open(os.path.join(src, "config.json")))
        cfg["rope_scaling"] = {"rope_type": "linear", "factor": seq / pretrain_seq(model)}
        if "rope_parameters" in cfg:  # transformers 5 writes both; keep them in agreement
            cfg["rope_parameters"] = dict(cfg["rope_parameters"], **cfg["rope_scaling"])
        for name in os.listdir(src):
            if name != "config.json" and not os.path.exists(os.path.join(dst, name)):
                os.symlink(os.path.join(src, name), os.path.join(dst, name))
        json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=1)
    return dst


CONFIGS = {
    # name: (flags(model, seq), description)
    "dense": (lambda m, s: ["--lemo-mode", "dense"], "dense LoRA"),
    "lemo": (lambda m, s: pred_flags(m), "LeMo, calibrated predictors, default schedule"),
    "dense-mlp": (lambda m, s: ["--lemo-mode", "dense"] + MLP, "dense + MLP channel-sparse backward 0.8"),
    "lemo-mlp": (lambda m, s: pred_flags(m) + MLP, "LeMo + MLP channel-sparse backward 0.8"),
    "dense-2d": (lambda m, s: ["--lemo-mode", "dense", "--lemo-2d"], "dense + S2-Attn"),
    "lemo-2d": (lambda m, s: pred_flags(m) + ["--lemo-2d"], "LeMo + S2-Attn (2D sparsity)"),
    # -pi: the model directory adds linear position interpolation (model_path).
    "dense-pi": (lambda m, s: ["--lemo-mode", "dense"], "dense LoRA, position interpolation"),
    "dense-2d-pi": (lambda m, s: ["--lemo-mode", "dense", "--lemo-2d"], "dense + S2-Attn, position interpolation"),
    # Oracle selection: the predictors were calibrated without interpolation (v1: predictors and
    # oracle within 0.1 point of each other).
    "lemo-2d-pi": (lambda m, s: ["--lemo-mode", "oracle", "--lemo-2d"],
                   "LeMo (oracle selection) + S2-Attn, position interpolation"),
    "lemo-pi": (lambda m, s: ["--lemo-mode", "oracle"], "LeMo (oracle selection), position interpolation"),
}
# The passkey fine-tunes' configurations (ACC_PASSKEY_CONFIGS). The -pi pair is LongLoRA's recipe
# for context extension: on the 8-layer byte model on the H100 (2026-12-07) 200 steps of dense
# LoRA at 8K without it moved far-key retrieval only from 20% to 24% of the digits; scaled down on
# the CPU, 300 steps took far keys from 21% to 56-62% without it and 64-68%
# with it (bench/results/2026-12-07-cpu-long-range-pi/).
PASSKEY_CONFIGS = [c for c in ENV.get("ACC_PASSKEY_CONFIGS", "dense,lemo").split(",") if c]
for _c in PASSKEY_CONFIGS:
    if _c not in CONFIGS:
        sys.exit(f"study: ACC_PASSKEY_CONFIGS names {_c!r}, not a configuration ({', '.join(CONFIGS)})")


def logs_dir():
    """Where the jobs' logs and metrics go: the work directory, so that every call's OUT (which the
    GPU machine starts empty) gets all of them, the earlier calls' included."""
    d = os.path.join(W, "logs")
    os.makedirs(d, exist_ok=True)
    return d


def run_outcome(cmd, log, timeout, stdout=None):
    """Runs cmd with its output in logs_dir()/log: "ok" (exit 0 in time), "failed" (another exit
    status) or "killed" (still running at the timeout)."""
    with open(os.path.join(logs_dir(), log), "a") as err:
        err.write("$ " + " ".join(cmd) + "\n")
        err.flush()
        try:
            r = subprocess.run(cmd, stdout=stdout or err, stderr=err, timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            say(f"{log}: killed after {timeout:.0f} s (left pending)")
            return "killed"
    if r.returncode != 0:
        say(f"{log}: exit {r.returncode} (logs/{log})")
        return "failed"
    return "ok"


def run(cmd, log, timeout, stdout=None):
    """run_outcome(...) == "ok"."""
    return run_outcome(cmd, log, timeout, stdout) == "ok"


def append_result(row):
    with open(os.path.join(W, "results.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


def timing():
    path = os.path.join(W, "timing.json")
    return json.load(open(path)) if os.path.exists(path) else {}


def record_timing(key, step_seconds):
    t = timing()
    t[key] = max(step_seconds, t.get(key, 0.0) * 0.5)
    json.dump(t, open(os.path.join(W, "timing.json"), "w"))


# ---- the jobs ---------------------------------------------------------------------------------


# What a pretraining job's function returns when it stopped to be resumed by the next call.
PAUSED = "paused"


class Job:
    def __init__(self, name, estimate, fn, needs=()):
        self.name, self.estimate, self.fn, self.needs = name, estimate, fn, needs

    def done(self):
        return os.path.exists(os.path.join(W, "done", self.name))

    def mark(self):
        os.makedirs(os.path.join(W, "done"), exist_ok=True)
        open(os.path.join(W, "done", self.name), "w").close()


def corpus():
    """bench/data/corpus.jsonl; in the smoke, its first 4 chapters of each book, cut to 20,000
    characters each (the tokenizer's training and the encoding are then seconds)."""
    full = os.path.join(HERE, "..", "data", "corpus.jsonl")
    if not SMOKE:
        return full
    path = os.path.join(W, "corpus-smoke.jsonl")
    if not os.path.exists(path):
        seen = {}
        with open(full) as f, open(path, "w") as out:
            for line in f:
                doc = json.loads(line)
                seen[doc["book"]] = seen.get(doc["book"], 0) + 1
                if seen[doc["book"]] <= 4:
                    doc["text"] = doc["text"][:20000]
                    out.write(json.dumps(doc) + "\n")
    return path


def pretrain_job(model):
    spec = BIG if model == "big" else SMALL

    def fn(left):
        d = mdir(model)
        cmd = [PY, os.path.join(HERE, "pretrain.py"), "--out", d, "--device", PYDEV, "--corpus", corpus(),
               "--layers", str(spec["layers"]), "--hidden", str(spec["hidden"]), "--heads", str(spec["heads"]),
               "--kv-heads", str(spec["kv_heads"]), "--seq-len", str(spec["seq"]), "--batch", str(spec["batch"]),
               "--minutes", str(spec["minutes"]), "--max-positions", str(max(SEQS.values())),
               "--call-minutes", str(max(0.05, (left - 100) / 60)), "--save-seconds", "60"]
        if spec["intermediate"]:
            cmd += ["--intermediate", str(spec["intermediate"])]
        if spec["spm"]:
            cmd += ["--spm-vocab", str(spec["spm"])]
        if spec.get("passkey_rows"):
            cmd += ["--passkey-rows", str(spec["passkey_rows"]), "--passkey-task", LONG_TASK]
        if spec.get("window_warmup"):
            cmd += ["--window-warmup", spec["window_warmup"]]
        if spec.get("eval_every"):
            # The four books are ~0.7M subword tokens: 20 steps of 16 x 2048 are ~0.9 epochs, so
            # early stopping looks about once per epoch (the default 100 would be ~4.7 epochs), and
            # the warmup is as long (the default 100 steps would end after early stopping).
            cmd += ["--eval-every", str(spec["eval_every"]), "--warmup-steps", str(spec["eval_every"])]
        if SMOKE:
            cmd += ["--eval-every", "10", "--val-tokens", "2048", "--eval-tokens", "2048"]
        cmd += ENV.get(f"ACC_PRETRAIN_ARGS_{model.upper()}", "").split()
        outcome = run_outcome(cmd, f"pretrain-{model}.log", left)
        if outcome == "ok" and os.path.exists(os.path.join(d, "pretrain.json")):
            shutil.copy(os.path.join(d, "pretrain.json"), os.path.join(W, "results", f"pretrain-{model}.json"))
            return True
        # Paused (it exits 0 without pretrain.json when its call's minutes are up) or killed at
        # the deadline (its state of the last minute is saved): the next call resumes it. Any
        # other exit is a failure, which the status must say (2026-12-07: a resume that crashed
        # was reported as paused).
        return PAUSED if outcome != "failed" else False

    # A pretraining job runs whenever 2 minutes are left: it trains for what is left minus 100 s
    # (Python, torch and the tokenizer's training or encoding before, the state save after) and
    # pauses itself before the call ends; a kill at the deadline would lose at most a minute (the
    # state is saved every minute).
    return Job(f"pretrain-{model}", 120, fn)


def calibrate_job(model):
    def fn(left):
        return run([TRAIN, "calibrate", "--model", os.path.join(mdir(model), "model"),
                    "--data", finetune_data(model),
                    "--out", os.path.join(mdir(model), "predictors"), *common(model), "--seq-len", str(SEQS["8k"]),
                    "--steps", str(CAL_STEPS), "--prune-every", str(max(1, CAL_STEPS // 3)),
                    "--report-json", os.path.join(W, "results", f"calibrate-{model}.json")],
                   f"calibrate-{model}.log", left)
    return Job(f"calibrate-{model}", 60 if model == "big" else 30, fn, needs=(f"pretrain-{model}",))


def base_eval_job(model, seq_key):
    def fn(left):
        seq = SEQS[seq_key]
        path = os.path.join(W, "results", f"eval-base-{model}-{seq_key}.json")
        with open(path, "w") as f:
            ok = run([TRAIN, "eval", "--model", os.path.join(mdir(model), "model"),
                      "--data", os.path.join(mdir(model), "heldout.jsonl"), *common(model), "--seq-len", str(seq),
                      *EVAL_ARGS], f"eval-base-{model}-{seq_key}.log", left, stdout=f)
        if ok:
            ev = json.load(open(path))
            append_result({"model": model, "seq": seq, "config": "base", "seed": 0, "steps": 0, "kind": "lm",
                           "loss": ev["loss"]})
        return ok
    return Job(f"eval-base-{model}-{seq_key}", 30, fn, needs=(f"pretrain-{model}",))


def passkey_data_job(model, seq_key):
    def fn(left):
        d, seq = mdir(model), SEQS[seq_key]
        tok = os.path.join(d, "tokenizer.model") if (BIG if model == "big" else SMALL)["spm"] else "byte"
        # Keys at uniform depths, training and test; the test set reports far keys (beyond the
        # pretraining length) separately.
        base = [PY, os.path.join(HERE, "passkey.py"), "make", "--seq-len", str(seq), "--tokenizer", tok,
                "--task", LONG_TASK]
        return (run(base + ["--filler", os.path.join(d, "finetune.jsonl"), "--out",
                            os.path.join(d, f"passkey-train-{seq_key}.jsonl"), "--samples", str(PASSKEY_TRAIN),
                            "--seed", "1"], f"passkey-data-{model}.log", left) and
                run(base + ["--filler", os.path.join(d, "heldout.jsonl"), "--out",
                            os.path.join(d, f"passkey-test-{seq_key}.jsonl"), "--samples", str(PASSKEY_TEST),
                            "--seed", "2"], f"passkey-data-{model}.log", left) and
                passkey_eval(model, seq_key, "base", 0, "", left) and
                # The base model under interpolation, before any fine-tune: what the -pi fine-tunes start from.
                (not any(c.endswith("-pi") for c in PASSKEY_CONFIGS) or
                 passkey_eval(model, seq_key, "base-pi", 0, "", left)))
    return Job(f"passkey-data-{model}-{seq_key}", 60, fn, needs=(f"pretrain-{model}",))


def passkey_eval(model, seq_key, config, seed, adapter, left, extra=None):
    d = mdir(model)
    path = os.path.join(W, "results", f"passkey-{model}-{seq_key}-{config}-s{seed}.json")
    ok = run([PY, os.path.join(HERE, "passkey.py"), "eval", "--model", model_path(model, config, SEQS[seq_key]),
              *(["--adapter", adapter] if adapter else []), "--data",
              os.path.join(d, f"passkey-test-{seq_key}.jsonl"), "--device", PYDEV, "--json", path,
              "--far", str(pretrain_seq(model))], f"passkey-eval-{model}-{seq_key}-{config}-s{seed}.log", left)
    if ok:
        row = {"model": model, "seq": SEQS[seq_key], "config": config, "seed": seed, "kind": "passkey", "task": LONG_TASK,
               "steps": 0 if not adapter else STEPS[seq_key]}
        row.update(json.load(open(path)))
        row.update(extra or {})
        append_result(row)
    return ok


def finetune_job(model, seq_key, config, seed, passkey=False):
    seq, steps = SEQS[seq_key], STEPS[seq_key]
    flags_fn, desc = CONFIGS[config]
    name = f"{'passkey-' if passkey else ''}ft-{model}-{seq_key}-{config}-s{seed}"

    def fn(left):
        d = mdir(model)
        out = os.path.join(d, name)
        shutil.rmtree(out, ignore_errors=True)
        flags = flags_fn(model, seq)
        metrics = os.path.join(logs_dir(), f"{name}.metrics.jsonl")
        data = os.path.join(d, f"passkey-train-{seq_key}.jsonl") if passkey else finetune_data(model)
        t0 = time.time()
        model_dir = model_path(model, config, seq)
        if not run([TRAIN, "finetune", "--model", model_dir, "--data", data, "--out", out,
                    *common(model), "--seq-len", str(seq), "--steps", str(steps), "--lr", LR, "--warmup-steps",
                    str(min(20, steps)), "--seed", str(seed), "--data-seed", str(seed), *flags,
                    "--metrics-jsonl", metrics], f"{name}.log", left):
            return False
        rows = [json.loads(ln) for ln in open(metrics) if ln.strip()]
        step_s = sorted(r.get("step_time_seconds", 0) for r in rows)[len(rows) // 2] if rows else 0
        record_timing(f"{model}-{seq_key}", step_s)
        ckpts = sorted(p for p in os.listdir(out) if p.startswith("checkpoint-"))
        if not ckpts:
            say(f"{name}: no checkpoint")
            return False
        adapter = os.path.join(out, ckpts[-1])
        kept = rows[-1].get("kept_token_fraction") if rows else None
        extra = {"steps": steps, "train_loss": rows[-1]["loss"] if rows else None,
                 "kept": sum(kept) / len(kept) if isinstance(kept, list) and kept else kept,
                 "step_seconds": step_s, "flags": " ".join(flags), "description": desc}
        if passkey:
            ok = passkey_eval(model, seq_key, config, seed, adapter, left - (time.time() - t0), extra)
        else:
            path = os.path.join(W, "results", f"eval-{name}.json")
            with open(path, "w") as f:
                ok = run([TRAIN, "eval", "--model", model_dir, "--adapter", adapter,
                          "--data", os.path.join(d, "heldout.jsonl"), *common(model), "--seq-len", str(seq),
                          *EVAL_ARGS], f"{name}.log", left - (time.time() - t0), stdout=f)
            if ok:
                row = {"model": model, "seq": seq, "config": config, "seed": seed, "kind": "lm",
                       "loss": json.load(open(path))["loss"]}
                row.update(extra)
                append_result(row)
        return ok  # the adapter stays in /tmp (a few MB) for s2_eval_job

    def estimate():
        per_step = timing().get(f"{model}-{seq_key}")
        if per_step is None:
            return 90 if seq_key == "8k" else 150
        return per_step * steps * (1.3 if "mlp" in config or "2d" in config else 1.0) + 30

    needs = (f"pretrain-{model}",) + ((f"calibrate-{model}",) if "--lemo-predictors" in " ".join(
        flags_fn(model, seq)) else ()) + (
        (f"passkey-data-{model}-{seq_key}",) if passkey else ())
    job = Job(name, 0, fn, needs)
    job.estimate_fn = estimate
    return job


def s2_eval_job(model, seq_key):
    """Base model, dense LoRA and dense + S2-Attn adapters (and S2-Attn under interpolation) scored
    under full attention and under S2-Attn (s2_check.py eval, HF reference masks): whether the
    S2-Attn fine-tune learned (low loss under S2-Attn) but does not carry over to full attention."""
    seq = SEQS[seq_key]
    cases = [("base", "", "base"), ("dense", f"ft-{model}-{seq_key}-dense-s{SEEDS[0]}", "dense"),
             ("dense-2d", f"ft-{model}-{seq_key}-dense-2d-s{SEEDS[0]}", "dense-2d"),
             ("dense-pi", f"ft-{model}-{seq_key}-dense-pi-s{SEEDS[0]}", "dense-pi"),
             ("dense-2d-pi", f"ft-{model}-{seq_key}-dense-2d-pi-s{SEEDS[0]}", "dense-2d-pi")]

    def fn(left):
        d = mdir(model)
        tok = os.path.join(d, "tokenizer.model") if (BIG if model == "big" else SMALL)["spm"] else "byte"
        specs = []
        for name, job, config in cases:
            adapter = ""
            if job:
                out = os.path.join(d, job)
                ckpts = sorted(p for p in os.listdir(out) if p.startswith("checkpoint-")) if os.path.isdir(out) else []
                if not ckpts:
                    say(f"s2-eval: no adapter from {job}; skipped")
                    continue
                adapter = os.path.join(out, ckpts[-1])
            specs += ["--case", f"{name}={model_path(model, config, seq)}" + (f",{adapter}" if adapter else "")]
        path = os.path.join(W, "results", f"s2eval-{model}-{seq_key}.json")
        if not run([PY, os.path.join(HERE, "s2_check.py"), "eval", *specs, "--data", os.path.join(d, "heldout.jsonl"),
                    "--seq-len", str(seq), "--tokenizer", tok, "--windows", "2" if SMOKE else "6",
                    "--device", PYDEV, "--json", path], f"s2eval-{model}-{seq_key}.log", left):
            return False
        for r in json.load(open(path)):
            row = {"model": model, "seq": seq, "config": r.pop("case"), "seed": SEEDS[0], "kind": "s2eval"}
            row.update(r)
            append_result(row)
        return True
    needs = tuple(c[1] for c in cases if c[1])
    return Job(f"s2-eval-{model}-{seq_key}", 90, fn, needs=needs)


def jobs():
    """The study in priority order: the core claim first (dense vs LeMo, 3 seeds each, at 8K then
    16K, on the large model), then the savers, passkey retrieval, 2D sparsity, the 8-layer model."""
    j = [pretrain_job("big"), calibrate_job("big"), base_eval_job("big", "8k"), base_eval_job("big", "16k")]
    for seq_key in ("8k", "16k"):
        for seed in SEEDS:
            j += [finetune_job("big", seq_key, "dense", seed), finetune_job("big", seq_key, "lemo", seed)]
    j += [finetune_job("big", "8k", c, SEEDS[0]) for c in ("dense-mlp", "lemo-mlp")]
    j += [passkey_data_job("big", "8k")]
    j += [finetune_job("big", "8k", c, SEEDS[0], passkey=True) for c in PASSKEY_CONFIGS]
    j += [finetune_job("big", "8k", c, SEEDS[0]) for c in ("dense-2d", "dense-pi", "dense-2d-pi", "lemo-2d-pi")]
    j += [s2_eval_job("big", "8k")]
    j += [passkey_data_job("big", "16k")]
    j += [finetune_job("big", "16k", c, SEEDS[0], passkey=True) for c in PASSKEY_CONFIGS]
    j += [pretrain_job("small"), calibrate_job("small"), base_eval_job("small", "8k")]
    for seed in SEEDS:
        j += [finetune_job("small", "8k", "dense", seed), finetune_job("small", "8k", "lemo", seed)]
    if SMALL.get("passkey_rows"):
        j += [passkey_data_job("small", "8k")]
        j += [finetune_job("small", "8k", c, SEEDS[0], passkey=True) for c in PASSKEY_CONFIGS]
    skip = set(ENV.get("ACC_SKIP", "").split(","))
    only = [p for p in ENV.get("ACC_ONLY", "").split(",") if p]
    # ACC_ONLY=big-8k,...: the jobs whose names contain one of these (base evaluations and passkey
    # data included), and the named models' pretraining and calibration.
    prereq = ("pretrain-", "calibrate-")
    models = {m for m in ("big", "small") if any(m in p.split("-") for p in only)}
    return [x for x in j if x.name not in skip and (
        not only or any(p in x.name for p in only) or
        x.name.startswith(prereq) and any(x.name in (f"pretrain-{m}", f"calibrate-{m}") for m in models))]


def estimate(job):
    return job.estimate_fn() if hasattr(job, "estimate_fn") else job.estimate


def record_call(status):
    """Appends this call's identity (bench/report.py's meta: date, device, torch, transformers, peft,
    the git commit and the tree of the files that ran, the command) and what it ran to
    ACC_WORK/calls.jsonl, so the study's meta.json names every call that made its numbers."""
    sys.path.insert(0, os.path.dirname(HERE))
    import report
    command = " ".join([f"{k}={v}" for k, v in sorted(ENV.items()) if k.startswith("ACC_")] +
                       ["bash bench/accuracy/study.sh"])
    meta_path = os.path.join(W, "meta-call.json")
    meta = report.write_meta(meta_path, command, PYDEV)
    os.remove(meta_path)
    meta.update(ran=status["ran"], failed=status["failed"], seconds=status["seconds"])
    with open(os.path.join(W, "calls.jsonl"), "a") as f:
        f.write(json.dumps(meta) + "\n")
    with open(os.path.join(W, "calls.jsonl")) as f:
        calls = [json.loads(ln) for ln in f if ln.strip()]
    json.dump({"calls": calls}, open(os.path.join(OUT, "meta.json"), "w"), indent=1)


def publish(status):
    """Copies the accumulated small results and every job's log into OUT, records the call and
    writes the summary."""
    res = os.path.join(W, "results")
    for name in os.listdir(res):
        shutil.copy(os.path.join(res, name), os.path.join(OUT, name))
    if os.path.exists(os.path.join(W, "results.jsonl")):
        shutil.copy(os.path.join(W, "results.jsonl"), os.path.join(OUT, "results.jsonl"))
    shutil.copytree(logs_dir(), os.path.join(OUT, "logs"), dirs_exist_ok=True)
    record_call(status)
    json.dump(status, open(os.path.join(OUT, "status.json"), "w"), indent=1)
    with open(os.path.join(OUT, "summary.md"), "w") as f:
        subprocess.run([PY, os.path.join(HERE, "summary.py"), OUT], stdout=f)


def main(argv):
    global START
    START = time.time()
    if any(a in ("-h", "--help") for a in argv[1:]):
        print(__doc__)
        return 0
    unknown = [a for a in argv[1:] if a != "--list"]
    if unknown:
        print(f"study: unknown argument {unknown[0]} (study.py [--list | --help]; the knobs are "
              "environment variables: bench/accuracy/study.sh)", file=sys.stderr)
        return 2
    all_jobs = jobs()
    if "--list" in argv:
        for job in all_jobs:
            print(f"{'done   ' if job.done() else 'pending'} {job.name} (~{estimate(job):.0f} s)")
        return 0
    os.makedirs(os.path.join(W, "results"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "logs"), exist_ok=True)
    ran, failed = [], []
    for job in all_jobs:
        if job.done():
            continue
        if any(not os.path.exists(os.path.join(W, "done", n)) for n in job.needs if n in {x.name for x in all_jobs}):
            say(f"{job.name}: waits for {', '.join(job.needs)}")
            failed.append(job.name)
            continue
        left = CALL_SECONDS - (time.time() - START)
        if estimate(job) > left:
            say(f"{job.name}: ~{estimate(job):.0f} s does not fit the {left:.0f} s left; next call")
            break
        say(f"{job.name}: start (~{estimate(job):.0f} s)")
        t0 = time.time()
        ok = job.fn(left)
        if ok == PAUSED:
            ran.append([job.name + " (paused)", round(time.time() - t0, 1)])
            break
        if ok:
            job.mark()
            ran.append([job.name, round(time.time() - t0, 1)])
            say(f"{job.name}: done in {time.time() - t0:.0f} s")
        else:
            failed.append(job.name)
            if time.time() - START > CALL_SECONDS - 10:
                break
    pending = [j.name for j in all_jobs if not j.done()]
    status = {"ran": ran, "failed": failed, "pending": pending, "seconds": round(time.time() - START, 1),
              "timing": timing()}
    publish(status)
    say(f"ran {len(ran)}, failed {len(failed)}, pending {len(pending)}; summary in {OUT}/summary.md")
    return 0


START = time.time()
if __name__ == "__main__":
    sys.exit(main(sys.argv))
