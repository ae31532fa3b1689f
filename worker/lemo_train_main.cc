// lemo-train: the training engine without the service, for development,
// benchmarks and single-GPU users.
//
//   lemo-train init-model --preset tiny --out /tmp/tiny
//   lemo-train finetune --model /tmp/tiny --data bench/data/corpus.jsonl
//   --seq-len 256 \
//       --steps 50 --out /tmp/run [--lemo-mode oracle --mlp-prune-ratio 0.8]
//   lemo-train calibrate --model /tmp/tiny --data bench/data/corpus.jsonl \
//       --out /tmp/tiny/predictors   # LeMo pattern predictors
//   lemo-train eval --model /tmp/tiny --adapter /tmp/run/checkpoint-000050 \
//       --data heldout.jsonl --seq-len 256   # prints {"loss", "perplexity",..}
//
// Exit codes: 0 success, 1 the job failed (bad data, out of memory, ...), 2
// usage error, 130 cancelled by SIGINT/SIGTERM.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/progress.h"
#include "nlohmann/json.hpp"
#include "worker/engine/calibrate.h"
#include "worker/engine/device_memory.h"
#include "worker/engine/evaluate.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/init_model.h"
#include "worker/engine/lemo_options.h"
#include "worker/engine/token_file.h"
#include "worker/engine/trainer.h"

namespace {

using lemo::engine::StepMetrics;

std::atomic<bool> g_cancel{false};

void OnSignal(int) { g_cancel.store(true); }

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
  if (absl::IsCancelled(status)) return 130;
  return absl::IsInvalidArgument(status) || absl::IsNotFound(status) ? 2 : 1;
}

absl::StatusOr<torch::ScalarType> ParseDtype(const std::string& name) {
  if (name == "fp32" || name == "float32") return torch::kFloat32;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "fp16" || name == "float16") return torch::kFloat16;
  return absl::InvalidArgumentError(
      "dtype: expected fp32, bf16 or fp16, got \"" + name + "\"");
}

struct InitModelFlags {
  std::string preset = "tiny";
  std::string out;
  std::string dtype = "fp32";
  uint64_t seed = 0;
};

int RunInitModel(const InitModelFlags& flags) {
  auto config = lemo::engine::PresetConfig(flags.preset);
  if (!config.ok()) return Fail(config.status());
  auto dtype = ParseDtype(flags.dtype);
  if (!dtype.ok()) return Fail(dtype.status());
  absl::Status s =
      lemo::engine::WriteRandomModel(*config, flags.out, *dtype, flags.seed);
  if (!s.ok()) return Fail(s);
  std::fprintf(stderr, "wrote %s model (%s) to %s\n", flags.preset.c_str(),
               flags.dtype.c_str(), flags.out.c_str());
  return 0;
}

// LeMo flags as given; ApplyLemoFlags checks them and fills LemoOptions.
struct LemoFlags {
  std::string mode = "dense";
  std::string keep_ratios = "default";
  double adaptive_tau = 0;
  int64_t min_keep_blocks = 1;
  int64_t max_keep_blocks = -1;
  std::string predictors;
  double mlp_prune_ratio = 0;
  bool recompute_norm = false;
  bool measure_saved_bytes = false;
};

absl::Status ApplyLemoFlags(const LemoFlags& f,
                            lemo::engine::LemoOptions* out) {
  auto mode = lemo::engine::ParseLemoMode(f.mode);
  if (!mode.ok()) {
    return absl::Status(mode.status().code(),
                        absl::StrCat("--lemo-mode: ", mode.status().message()));
  }
  out->mode = *mode;
  out->keep_ratios.clear();
  if (f.keep_ratios != "default") {
    int i = 0;
    for (absl::string_view part : absl::StrSplit(f.keep_ratios, ',')) {
      double r = 0;
      if (!absl::SimpleAtod(part, &r)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--lemo-keep-ratios: entry ", i, " \"", part,
            "\" is not a number (give R1,R2,... one per layer, or default)"));
      }
      if (!(r > 0 && r <= 1)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--lemo-keep-ratios: entry ", i, " is ", r, ", not in (0, 1]"));
      }
      out->keep_ratios.push_back(r);
      ++i;
    }
  }
  if (!(f.adaptive_tau >= 0 && f.adaptive_tau <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--lemo-adaptive-tau must be in [0, 1] (0 = fixed keep "
                     "ratios), got ",
                     f.adaptive_tau));
  }
  out->adaptive_tau = f.adaptive_tau;
  if (f.min_keep_blocks < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--lemo-min-keep-blocks must be >= 0, got ", f.min_keep_blocks));
  }
  if (f.max_keep_blocks >= 0 && f.max_keep_blocks < f.min_keep_blocks) {
    return absl::InvalidArgumentError(
        absl::StrCat("--lemo-max-keep-blocks (", f.max_keep_blocks,
                     ") must be >= --lemo-min-keep-blocks (", f.min_keep_blocks,
                     "), or < 0 for no bound"));
  }
  out->min_keep_blocks = f.min_keep_blocks;
  out->max_keep_blocks = f.max_keep_blocks;
  if (out->mode == lemo::engine::LemoMode::kPredictor && f.predictors.empty()) {
    return absl::InvalidArgumentError(
        "--lemo-mode predictor needs --lemo-predictors DIR");
  }
  if (out->mode != lemo::engine::LemoMode::kPredictor &&
      !f.predictors.empty()) {
    return absl::InvalidArgumentError(
        "--lemo-predictors is used only with --lemo-mode predictor");
  }
  out->predictor_dir = f.predictors;
  if (!(f.mlp_prune_ratio >= 0 && f.mlp_prune_ratio < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--mlp-prune-ratio must be in [0, 1) (0 = off), got ",
                     f.mlp_prune_ratio));
  }
  out->mlp_prune_ratio = f.mlp_prune_ratio;
  out->recompute_norm = f.recompute_norm;
  out->measure_saved_bytes = f.measure_saved_bytes;
  return absl::OkStatus();
}

struct FinetuneFlags {
  lemo::engine::TrainerOptions options;
  LemoFlags lemo;
  std::string device = "cpu";
  std::string dtype;  // empty: bf16 on CUDA, fp32 on CPU
  std::string targets = "q_proj,k_proj,v_proj,o_proj";
  std::string metrics_jsonl;
  std::string data_format = "auto";
};

nlohmann::json MetricsJson(const StepMetrics& m) {
  return {{"step", m.step},
          {"loss", m.loss},
          {"lr", m.lr},
          {"grad_norm", m.grad_norm},
          {"tokens_per_second", m.tokens_per_second},
          {"step_time_seconds", m.step_time_seconds},
          {"peak_allocated_bytes", m.peak_allocated_bytes},
          {"peak_reserved_bytes", m.peak_reserved_bytes}};
}

// Per-layer LeMo numbers, layer 0 first: kept_token_fraction always,
// saved_bytes when measured, predictor_recall when a predictor ran.
void AddLemoMetrics(const StepMetrics& m, nlohmann::json* out) {
  nlohmann::json kept = nlohmann::json::array();
  nlohmann::json saved = nlohmann::json::array();
  nlohmann::json recall = nlohmann::json::array();
  bool any_saved = false;
  bool any_recall = false;
  for (const lemo::engine::LemoLayerStats& s : m.lemo_layers) {
    kept.push_back(s.total_tokens > 0 ? static_cast<double>(s.kept_tokens) /
                                            static_cast<double>(s.total_tokens)
                                      : 1.0);
    saved.push_back(s.saved_bytes);
    recall.push_back(s.predictor_recall);
    any_saved = any_saved || s.saved_bytes >= 0;
    any_recall = any_recall || s.predictor_recall >= 0;
  }
  (*out)["kept_token_fraction"] = kept;
  if (any_saved) (*out)["saved_bytes"] = saved;
  if (any_recall) (*out)["predictor_recall"] = recall;
}

int RunFinetune(FinetuneFlags& flags) {
  auto& o = flags.options;
  auto device = lemo::engine::ParseDevice(flags.device);
  if (!device.ok()) return Fail(device.status());
  o.model.device = *device;
  auto dtype =
      ParseDtype(flags.dtype.empty() ? (device->is_cuda() ? "bf16" : "fp32")
                                     : flags.dtype);
  if (!dtype.ok()) return Fail(dtype.status());
  o.model.base_dtype = *dtype;
  auto format = lemo::engine::ParseDataFormat(flags.data_format);
  if (!format.ok()) return Fail(format.status());
  o.data.format = *format;
  o.model.lora.target_modules =
      absl::StrSplit(flags.targets, ',', absl::SkipEmpty());
  if (absl::Status lemo = ApplyLemoFlags(flags.lemo, &o.model.lemo);
      !lemo.ok()) {
    return Fail(lemo);
  }

  std::ofstream metrics;
  if (!flags.metrics_jsonl.empty()) {
    metrics.open(flags.metrics_jsonl, std::ios::out | std::ios::trunc);
    if (!metrics) {
      return Fail(absl::InvalidArgumentError("metrics-jsonl: cannot open " +
                                             flags.metrics_jsonl));
    }
  }

  auto trainer = lemo::engine::Trainer::Create(o);
  if (!trainer.ok()) return Fail(trainer.status());
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  lemo::client::ProgressPrinter progress(stderr);
  lemo::engine::TrainerCallbacks callbacks;
  callbacks.cancel = &g_cancel;
  callbacks.on_step = [&](const StepMetrics& m) {
    lemo::client::ProgressInfo info;
    info.step = m.step;
    info.total_steps = m.total_steps;
    info.loss = m.loss;
    info.tokens_per_second = m.tokens_per_second;
    info.step_time_seconds = m.step_time_seconds;
    info.peak_memory_bytes = m.peak_allocated_bytes;
    info.eta_seconds = m.step_time_seconds * (m.total_steps - m.step);
    progress.Update(info);
    if (metrics.is_open()) {
      nlohmann::json line = MetricsJson(m);
      AddLemoMetrics(m, &line);
      metrics << line.dump() << "\n";
      metrics.flush();
    }
  };
  callbacks.on_checkpoint = [&](const std::string& dir, int64_t step) {
    progress.Finish();
    std::fprintf(stderr, "checkpoint at step %lld: %s\n",
                 static_cast<long long>(step), dir.c_str());
  };
  absl::Status s = (*trainer)->Run(callbacks);
  progress.Finish();
  if (!s.ok()) return Fail(s);
  return 0;
}

struct EvalFlags {
  lemo::engine::EvalOptions options;
  std::string device = "cpu";
  std::string dtype;  // empty: bf16 on CUDA, fp32 on CPU
  std::string data_format = "auto";
};

int RunEval(EvalFlags& flags) {
  auto& o = flags.options;
  auto device = lemo::engine::ParseDevice(flags.device);
  if (!device.ok()) return Fail(device.status());
  o.device = *device;
  auto dtype =
      ParseDtype(flags.dtype.empty() ? (device->is_cuda() ? "bf16" : "fp32")
                                     : flags.dtype);
  if (!dtype.ok()) return Fail(dtype.status());
  o.base_dtype = *dtype;
  auto format = lemo::engine::ParseDataFormat(flags.data_format);
  if (!format.ok()) return Fail(format.status());
  o.data.format = *format;
  absl::StatusOr<lemo::engine::EvalResult> r = lemo::engine::Evaluate(o);
  if (!r.ok()) return Fail(r.status());
  const nlohmann::json out = {
      {"loss", r->loss},           {"perplexity", r->perplexity},
      {"samples", r->samples},     {"tokens", r->tokens},
      {"seq_len", o.data.seq_len}, {"skip_samples", o.skip_samples},
      {"model", o.model_dir},      {"adapter", o.adapter_dir},
      {"data", o.data.path},       {"lemo_mode", "dense"}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

struct CalibrateFlags {
  lemo::engine::CalibrateJobOptions job;
  std::string device = "cpu";
  std::string dtype;  // empty: bf16 on CUDA, fp32 on CPU
  std::string data_format = "auto";
  std::string keep_ratios;  // comma-separated; empty: the default schedule
  std::string report_json;
};

int RunCalibrate(CalibrateFlags& flags) {
  auto& job = flags.job;
  auto device = lemo::engine::ParseDevice(flags.device);
  if (!device.ok()) return Fail(device.status());
  job.device = *device;
  auto dtype =
      ParseDtype(flags.dtype.empty() ? (device->is_cuda() ? "bf16" : "fp32")
                                     : flags.dtype);
  if (!dtype.ok()) return Fail(dtype.status());
  job.dtype = *dtype;
  auto format = lemo::engine::ParseDataFormat(flags.data_format);
  if (!format.ok()) return Fail(format.status());
  job.data.format = *format;
  for (absl::string_view r :
       absl::StrSplit(flags.keep_ratios, ',', absl::SkipEmpty())) {
    double v = 0;
    if (!absl::SimpleAtod(r, &v)) {
      return Fail(absl::InvalidArgumentError(
          "keep-ratios: \"" + std::string(r) + "\" is not a number"));
    }
    job.calibration.keep_ratios.push_back(v);
  }
  std::ofstream report_file;
  if (!flags.report_json.empty()) {
    report_file.open(flags.report_json, std::ios::out | std::ios::trunc);
    if (!report_file) {
      return Fail(absl::InvalidArgumentError("report-json: cannot open " +
                                             flags.report_json));
    }
  }
  const int64_t steps = job.calibration.steps;
  auto report =
      lemo::engine::RunCalibrateJob(job, [steps](int64_t step, double loss) {
        if (step == steps || step % 10 == 0) {
          std::fprintf(stderr, "calibration step %lld/%lld loss %.4f\n",
                       static_cast<long long>(step),
                       static_cast<long long>(steps), loss);
        }
      });
  if (!report.ok()) return Fail(report.status());
  std::printf("%5s %6s %14s %8s %13s %12s %10s\n", "layer", "keep",
              "recall_before", "recall", "params_before", "params_after",
              "loss");
  for (const auto& l : report->layers) {
    std::printf("%5lld %6.3f %14.3f %8.3f %13lld %12lld %10.4f\n",
                static_cast<long long>(l.layer), l.keep_ratio, l.recall_before,
                l.recall, static_cast<long long>(l.params_before),
                static_cast<long long>(l.params_after), l.final_loss);
  }
  std::printf("wrote predictors to %s (%.1f s)\n", job.out_dir.c_str(),
              report->seconds);
  if (report_file.is_open()) {
    report_file << report->ToJson().dump(2) << "\n";
    report_file.flush();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "lemo-train: fine-tune HF Llama-family models with LoRA (and LeMo)"};
  app.require_subcommand(1);

  InitModelFlags init;
  auto* init_cmd = app.add_subcommand(
      "init-model", "Write a random-initialised HF-format model directory");
  init_cmd
      ->add_option("--preset", init.preset,
                   "tiny | small | llama2-7b | llama3-8b | mistral-7b")
      ->capture_default_str();
  init_cmd->add_option("--out", init.out, "Output directory")->required();
  init_cmd->add_option("--dtype", init.dtype, "fp32 | bf16 | fp16")
      ->capture_default_str();
  init_cmd->add_option("--seed", init.seed, "Random seed")
      ->capture_default_str();

  FinetuneFlags ft;
  auto& o = ft.options;
  o.data.tokenizer = "byte";
  auto* ft_cmd = app.add_subcommand("finetune", "Fine-tune LoRA adapters");
  ft_cmd->add_option("--model", o.model_dir, "HF model directory")->required();
  ft_cmd
      ->add_option("--data", o.data.path,
                   "JSONL with a \"text\" field, or a .u16/.u32 token file")
      ->required();
  ft_cmd
      ->add_option("--data-format", ft.data_format, "auto | jsonl | u16 | u32")
      ->capture_default_str();
  ft_cmd
      ->add_option("--tokenizer", o.data.tokenizer,
                   "byte, or a SentencePiece tokenizer.model")
      ->capture_default_str();
  ft_cmd->add_option("--seq-len", o.data.seq_len, "Tokens per sample")
      ->required();
  ft_cmd->add_option("--steps", o.steps, "Optimizer steps")->required();
  ft_cmd->add_option("--out", o.out_dir, "Checkpoint directory")->required();
  ft_cmd->add_option("--resume", o.resume_dir, "Resume from this checkpoint");
  ft_cmd->add_option("--device", ft.device, "cpu | cuda:N")
      ->capture_default_str();
  ft_cmd->add_option(
      "--dtype", ft.dtype,
      "Base weights dtype: fp32 | bf16 (default: bf16 on CUDA, fp32 on CPU)");
  ft_cmd->add_option("--batch-size", o.data.batch_size)->capture_default_str();
  ft_cmd->add_option("--grad-accum", o.grad_accum)->capture_default_str();
  ft_cmd->add_option("--lr", o.optimizer.lr)->capture_default_str();
  ft_cmd->add_option("--weight-decay", o.optimizer.weight_decay)
      ->capture_default_str();
  ft_cmd->add_option("--warmup-steps", o.optimizer.warmup_steps)
      ->capture_default_str();
  ft_cmd->add_option("--max-grad-norm", o.optimizer.max_grad_norm)
      ->capture_default_str();
  ft_cmd->add_option("--lora-r", o.model.lora.rank)->capture_default_str();
  ft_cmd->add_option("--lora-alpha", o.model.lora.alpha)->capture_default_str();
  ft_cmd->add_option("--lora-dropout", o.model.lora.dropout)
      ->capture_default_str();
  ft_cmd
      ->add_option("--lora-targets", ft.targets, "Comma-separated module names")
      ->capture_default_str();
  ft_cmd->add_flag("--gradient-checkpointing", o.model.gradient_checkpointing,
                   "Recompute each decoder layer in backward");
  ft_cmd
      ->add_option(
          "--loss-segment-tokens", o.model.loss_segment_tokens,
          "LM head + loss in chunks of this many tokens (0: one chunk)")
      ->capture_default_str();
  ft_cmd
      ->add_option("--save-every", o.save_every,
                   "Checkpoint every N steps (0: only at the end)")
      ->capture_default_str();
  ft_cmd->add_option("--seed", o.seed)->capture_default_str();
  ft_cmd->add_option("--data-seed", o.data.seed, "Shuffle seed")
      ->capture_default_str();
  ft_cmd->add_option("--metrics-jsonl", ft.metrics_jsonl,
                     "Write one JSON object per step here");
  LemoFlags& lf = ft.lemo;
  ft_cmd->add_option("--lemo-mode", lf.mode, "dense | oracle | predictor")
      ->capture_default_str();
  ft_cmd
      ->add_option("--lemo-keep-ratios", lf.keep_ratios,
                   "Keep ratio per layer R1,R2,... in (0, 1], or default (the "
                   "artifact's schedule scaled to the depth)")
      ->capture_default_str();
  ft_cmd
      ->add_option("--lemo-adaptive-tau", lf.adaptive_tau,
                   "Sparse layers keep the fewest blocks holding this score "
                   "mass, in [0, 1] (0: fixed ratios)")
      ->capture_default_str();
  ft_cmd
      ->add_option("--lemo-min-keep-blocks", lf.min_keep_blocks,
                   "Fewest 64-token blocks a sparse layer keeps")
      ->capture_default_str();
  ft_cmd
      ->add_option("--lemo-max-keep-blocks", lf.max_keep_blocks,
                   "Most blocks a sparse layer keeps (< 0: no bound)")
      ->capture_default_str();
  ft_cmd->add_option("--lemo-predictors", lf.predictors,
                     "Trained predictor directory (--lemo-mode predictor)");
  ft_cmd
      ->add_option("--predictor-recall-every", o.predictor_recall_every,
                   "Measure the predictors' recall against the oracle every N "
                   "steps (0: never; costs an oracle pass)")
      ->capture_default_str();
  ft_cmd
      ->add_option("--mlp-prune-ratio", lf.mlp_prune_ratio,
                   "MLP channel-sparse backward: fraction of channels whose "
                   "backward is dropped, in [0, 1) (0: off; paper 0.8)")
      ->capture_default_str();
  ft_cmd->add_flag("--recompute-norm", lf.recompute_norm,
                   "Recompute the post-attention norm output in backward");
  ft_cmd->add_flag("--measure-saved-bytes", lf.measure_saved_bytes,
                   "Measure each layer's saved-for-backward bytes (metrics "
                   "JSONL saved_bytes)");

  EvalFlags ev;
  auto& eo = ev.options;
  eo.data.tokenizer = "byte";
  auto* eval_cmd = app.add_subcommand(
      "eval",
      "Held-out mean loss and perplexity of a model (+ adapter) under dense "
      "evaluation, as JSON on stdout");
  eval_cmd->add_option("--model", eo.model_dir, "HF model directory")
      ->required();
  eval_cmd->add_option("--adapter", eo.adapter_dir,
                       "lemo-train checkpoint or PEFT adapter directory");
  eval_cmd
      ->add_option("--data", eo.data.path,
                   "Held-out JSONL or token file (one the fine-tune never saw)")
      ->required();
  eval_cmd
      ->add_option("--data-format", ev.data_format, "auto | jsonl | u16 | u32")
      ->capture_default_str();
  eval_cmd
      ->add_option("--tokenizer", eo.data.tokenizer,
                   "byte, or a SentencePiece tokenizer.model")
      ->capture_default_str();
  eval_cmd->add_option("--seq-len", eo.data.seq_len, "Tokens per sample")
      ->required();
  eval_cmd->add_option("--batch-size", eo.data.batch_size)
      ->capture_default_str();
  eval_cmd
      ->add_option("--batches", eo.batches,
                   "Batches to evaluate (0: every sample after the skipped)")
      ->capture_default_str();
  eval_cmd
      ->add_option("--skip-samples", eo.skip_samples,
                   "Samples (in file order) skipped before the evaluated range")
      ->capture_default_str();
  eval_cmd->add_option("--device", ev.device, "cpu | cuda:N")
      ->capture_default_str();
  eval_cmd->add_option(
      "--dtype", ev.dtype,
      "Base weights dtype: fp32 | bf16 (default: bf16 on CUDA, fp32 on CPU)");

  CalibrateFlags cal;
  auto& job = cal.job;
  job.data.tokenizer = "byte";
  job.data.seq_len = 4096;
  auto* cal_cmd = app.add_subcommand(
      "calibrate",
      "Train LeMo pattern predictors against the oracle (model frozen)");
  cal_cmd->add_option("--model", job.model_dir, "HF model directory")
      ->required();
  cal_cmd
      ->add_option("--data", job.data.path,
                   "JSONL with a \"text\" field, or a .u16/.u32 token file")
      ->required();
  cal_cmd->add_option("--out", job.out_dir, "Predictor directory to write")
      ->required();
  cal_cmd
      ->add_option("--data-format", cal.data_format, "auto | jsonl | u16 | u32")
      ->capture_default_str();
  cal_cmd
      ->add_option("--tokenizer", job.data.tokenizer,
                   "byte, or a SentencePiece tokenizer.model")
      ->capture_default_str();
  cal_cmd->add_option("--seq-len", job.data.seq_len, "Tokens per sample")
      ->capture_default_str();
  cal_cmd->add_option("--batch-size", job.data.batch_size)
      ->capture_default_str();
  cal_cmd->add_option("--steps", job.calibration.steps, "Optimizer steps")
      ->capture_default_str();
  cal_cmd->add_option("--device", cal.device, "cpu | cuda:N")
      ->capture_default_str();
  cal_cmd->add_option(
      "--dtype", cal.dtype,
      "Model dtype: fp32 | bf16 (default: bf16 on CUDA, fp32 on CPU)");
  cal_cmd->add_option("--lr", job.calibration.lr, "AdamW learning rate")
      ->capture_default_str();
  cal_cmd
      ->add_option("--prune-every", job.calibration.prune_every,
                   "Prune dead neurons every N steps (0: never)")
      ->capture_default_str();
  cal_cmd
      ->add_option("--hidden1", job.calibration.predictor.hidden1,
                   "First hidden width")
      ->capture_default_str();
  cal_cmd
      ->add_option("--hidden2", job.calibration.predictor.hidden2,
                   "Second hidden width (0: 64 x head_dim, the artifact's)")
      ->capture_default_str();
  cal_cmd->add_option("--keep-ratios", cal.keep_ratios,
                      "Comma-separated keep ratio per layer, as the fine-tune "
                      "uses (default: the artifact's schedule)");
  cal_cmd
      ->add_option("--heldout-samples", job.heldout_samples,
                   "Samples held out to measure recall")
      ->capture_default_str();
  cal_cmd->add_option("--seed", job.calibration.seed)->capture_default_str();
  cal_cmd->add_option("--data-seed", job.data.seed, "Shuffle seed")
      ->capture_default_str();
  cal_cmd->add_option("--report-json", cal.report_json,
                      "Write the per-layer report here");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (*init_cmd) return RunInitModel(init);
  if (*eval_cmd) return RunEval(ev);
  if (*cal_cmd) return RunCalibrate(cal);
  return RunFinetune(ft);
}
