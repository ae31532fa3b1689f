// lemo-train: the training engine without the service, for development,
// benchmarks and single-GPU users.
//
//   lemo-train init-model --preset tiny --out /tmp/tiny
//   lemo-train finetune --model /tmp/tiny --data bench/data/corpus.jsonl
//   --seq-len 256 \
//       --steps 50 --out /tmp/run
//   lemo-train calibrate --model /tmp/tiny --data bench/data/corpus.jsonl \
//       --out /tmp/tiny/predictors   # LeMo pattern predictors
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
#include "absl/strings/str_split.h"
#include "client/progress.h"
#include "nlohmann/json.hpp"
#include "worker/engine/calibrate.h"
#include "worker/engine/device_memory.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/init_model.h"
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

struct FinetuneFlags {
  lemo::engine::TrainerOptions options;
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
      metrics << MetricsJson(m).dump() << "\n";
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
  if (*cal_cmd) return RunCalibrate(cal);
  return RunFinetune(ft);
}
