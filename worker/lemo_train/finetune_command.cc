#include "worker/lemo_train/finetune_command.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/progress.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/engine/data/examples.h"
#include "worker/engine/data/token_file.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/runtime/attention_kernel.h"
#include "worker/engine/train/memory_budget.h"
#include "worker/engine/train/trainer.h"
#include "worker/lemo_train/device_flags.h"
#include "worker/lemo_train/memory_flags.h"

namespace lemo::worker::lemo_train {
namespace {

// Set from the signal handler, which may only touch a lock-free atomic; the
// trainer polls it between steps.
std::atomic<bool> g_cancel{false};

void OnSignal(int) { g_cancel.store(true); }

struct FinetuneFlags {
  lemo::engine::TrainerOptions options;
  // LoRA, checkpointing, LeMo and the memory switches (shared with plan).
  MemoryFlags memory;
  std::string device = "cpu";
  std::string dtype;  // empty: bf16 on CUDA, fp32 on CPU
  std::string metrics_jsonl;
  std::string data_format = "auto";
  std::string on_bad_sample = "error";
  double comm_timeout_seconds = 300;
  // auto | flash | cudnn: the fused attention kernel sdpa tries first on CUDA
  // (auto: torch's choice, cuDNN on Hopper and Blackwell).
  std::string attention_kernel = "auto";
  // --memory-budget-gib, --memory-budget-allow-inexact.
  MemoryBudgetFlags budget;
};

// --memory-budget-gib: the planner chooses the memory switches that the flags
// would (lemo::engine::ApplyMemoryBudget, as a job's resources.memory_budget
// does), so those flags must not be given too; it prints its choice.
absl::Status ApplyMemoryBudgetFlag(const FinetuneFlags& flags,
                                   lemo::engine::TrainerOptions* o) {
  LEMO_RETURN_IF_ERROR(
      CheckMemoryBudgetFlags(flags.budget, flags.memory, o->model));
  // The LoRA targets and the LeMo options, as without a budget; the switches
  // it resolves are then replaced by the budget's choice.
  absl::StatusOr<std::string> defaults =
      ApplyMemoryFlags(flags.memory, o->data.seq_len, o->model_dir, &o->model);
  if (!defaults.ok()) return defaults.status();
  lemo::engine::MemoryBudgetOptions budget;
  budget.budget_bytes = flags.budget.bytes();
  budget.allow_inexact = flags.budget.allow_inexact;
  budget.device = lemo::engine::PlanDeviceFor(o->model.device);
  absl::StatusOr<lemo::engine::MemoryBudgetResult> chose =
      lemo::engine::ApplyMemoryBudget(
          budget, o->data.seq_len, o->data.batch_size, o->model_dir, &o->model);
  if (!chose.ok()) {
    return absl::Status(
        chose.status().code(),
        absl::StrCat("--memory-budget-gib: ", chose.status().message()));
  }
  std::fprintf(stderr, "%s\n", chose->choice.summary.c_str());
  for (const std::string& c : chose->choice.considered) {
    std::fprintf(stderr, "  considered: %s\n", c.c_str());
  }
  std::fprintf(stderr, "memory: %s\n", chose->switches.c_str());
  return absl::OkStatus();
}

// Resolves the memory switches' "auto" values (the same rules as a job's,
// worker/engine/train/memory_switches.h), and says what was chosen: it decides
// whether a long context fits, so it is printed, and the metrics JSONL carries
// the offload it did.
absl::Status ResolveMemoryFlags(const FinetuneFlags& flags,
                                lemo::engine::TrainerOptions* o) {
  absl::StatusOr<std::string> chose =
      ApplyMemoryFlags(flags.memory, o->data.seq_len, o->model_dir, &o->model);
  if (!chose.ok()) return chose.status();
  std::fprintf(stderr, "memory: %s\n", chose->c_str());
  return absl::OkStatus();
}

nlohmann::json MetricsJson(const lemo::engine::StepMetrics& m) {
  return {{"step", m.step},
          {"loss", m.loss},
          {"rank_loss", m.rank_loss},
          {"lr", m.lr},
          {"grad_norm", m.grad_norm},
          {"tokens_per_second", m.tokens_per_second},
          {"global_tokens_per_second", m.global_tokens_per_second},
          {"rank", m.rank},
          {"world_size", m.world_size},
          {"step_time_seconds", m.step_time_seconds},
          {"peak_allocated_bytes", m.peak_allocated_bytes},
          {"peak_reserved_bytes", m.peak_reserved_bytes},
          {"offload_host_bytes", m.offload_host_bytes},
          {"offloaded_layers", m.offloaded_layers},
          {"forward_peak_allocated_bytes", m.forward_peak_allocated_bytes},
          {"after_forward_allocated_bytes", m.after_forward_allocated_bytes}};
}

// Per-layer LeMo numbers, layer 0 first: kept_token_fraction always,
// saved_bytes when measured, predictor_recall when a predictor ran,
// backward_peak_bytes under gradient checkpointing.
void AddLemoMetrics(const lemo::engine::StepMetrics& m, nlohmann::json* out) {
  nlohmann::json kept = nlohmann::json::array();
  nlohmann::json saved = nlohmann::json::array();
  nlohmann::json recall = nlohmann::json::array();
  nlohmann::json backward_peak = nlohmann::json::array();
  bool any_saved = false;
  bool any_backward_peak = false;
  nlohmann::json after_forward = nlohmann::json::array();
  bool any_after_forward = false;
  bool any_recall = false;
  for (const lemo::engine::LemoLayerStats& s : m.lemo_layers) {
    kept.push_back(s.total_tokens > 0 ? static_cast<double>(s.kept_tokens) /
                                            static_cast<double>(s.total_tokens)
                                      : 1.0);
    saved.push_back(s.saved_bytes);
    recall.push_back(s.predictor_recall);
    backward_peak.push_back(s.backward_peak_bytes);
    after_forward.push_back(s.allocated_after_forward_bytes);
    any_after_forward =
        any_after_forward || s.allocated_after_forward_bytes >= 0;
    any_backward_peak = any_backward_peak || s.backward_peak_bytes >= 0;
    any_saved = any_saved || s.saved_bytes >= 0;
    any_recall = any_recall || s.predictor_recall >= 0;
  }
  (*out)["kept_token_fraction"] = kept;
  if (any_saved) (*out)["saved_bytes"] = saved;
  if (any_recall) (*out)["predictor_recall"] = recall;
  if (any_backward_peak) (*out)["backward_peak_bytes"] = backward_peak;
  if (any_after_forward) {
    (*out)["allocated_after_forward_bytes"] = after_forward;
  }
}

int RunFinetune(FinetuneFlags& flags) {
  auto& o = flags.options;
  auto dd = ParseDeviceAndDtype(flags.device, flags.dtype);
  if (!dd.ok()) return Fail(dd.status());
  o.model.device = dd->device;
  o.model.base_dtype = dd->dtype;
  absl::StatusOr<lemo::engine::AttentionKernel> kernel =
      lemo::engine::ParseAttentionKernel(flags.attention_kernel);
  if (!kernel.ok()) return Fail(kernel.status());
  if (absl::Status s =
          lemo::engine::PreferAttentionKernel(*kernel, o.model.device);
      !s.ok()) {
    return Fail(absl::Status(
        s.code(), absl::StrCat("--attention-kernel: ", s.message())));
  }
  // Which kernel sdpa tries first is the largest single factor in a long
  // step's time, and torch's own choice differs by GPU: say it.
  if (o.model.device.is_cuda()) {
    std::fprintf(stderr, "attention kernel: %s (sdpa tries %s first)\n",
                 lemo::engine::AttentionKernelName(*kernel).c_str(),
                 lemo::engine::FirstAttentionBackend().c_str());
  }
  auto format = lemo::engine::ParseDataFormat(flags.data_format);
  if (!format.ok()) return Fail(format.status());
  o.data.format = *format;
  auto on_bad = lemo::engine::ParseBadSamplePolicy(flags.on_bad_sample);
  if (!on_bad.ok()) return Fail(on_bad.status());
  o.data.on_bad_sample = *on_bad;
  if (absl::Status memory = !flags.budget.given()
                                ? ResolveMemoryFlags(flags, &o)
                                : ApplyMemoryBudgetFlag(flags, &o);
      !memory.ok()) {
    return Fail(memory);
  }

  // Opened before the model loads so a bad path fails in seconds.
  std::ofstream metrics;
  if (!flags.metrics_jsonl.empty()) {
    metrics.open(flags.metrics_jsonl, std::ios::out | std::ios::trunc);
    if (!metrics) {
      return Fail(absl::InvalidArgumentError("metrics-jsonl: cannot open " +
                                             flags.metrics_jsonl));
    }
  }

  o.comm.timeout = std::chrono::milliseconds(
      static_cast<int64_t>(flags.comm_timeout_seconds * 1000));
  if (auto config =
          lemo::engine::LoadModelConfig(o.model_dir, o.rope_scaling_json);
      config.ok()) {
    std::string context =
        lemo::engine::ContextLengthWarning(*config, o.data.seq_len);
    if (!context.empty()) {
      std::fprintf(stderr, "warning: --seq-len: %s\n", context.c_str());
    }
  }
  auto trainer = lemo::engine::Trainer::Create(o);
  if (!trainer.ok()) return Fail(trainer.status());
  if (const auto& data = (*trainer)->data_stats();
      data.examples > 0 || data.skipped() > 0) {
    std::fprintf(stderr, "data %s: %s\n", o.data.path.c_str(),
                 data.Summary(o.data.seq_len).c_str());
    for (const std::string& skip : data.first_skips) {
      std::fprintf(stderr, "skipped %s\n", skip.c_str());
    }
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  lemo::client::ProgressPrinter progress(stderr);
  lemo::engine::TrainerCallbacks callbacks;
  callbacks.cancel = &g_cancel;
  callbacks.on_step = [&](const lemo::engine::StepMetrics& m) {
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
      // Flushed per step so a crash or SIGKILL leaves every finished step.
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

}  // namespace

Command AddFinetuneCommand(CLI::App* app) {
  auto ft = std::make_shared<FinetuneFlags>();
  auto& o = ft->options;
  CLI::App* cmd = app->add_subcommand("finetune", "Fine-tune LoRA adapters");
  cmd->add_option("--model", o.model_dir, "HF model directory")->required();
  cmd->add_option("--rope-scaling", o.rope_scaling_json,
                  "JSON object replacing config.json's rope_scaling, read the "
                  "same way, e.g. '{\"rope_type\": \"yarn\", \"factor\": "
                  "4}' (types linear, dynamic, yarn, llama3); default: the "
                  "file's");
  cmd->add_option("--data", o.data.path,
                  "JSONL (text, instruction, chat or tokens_jsonl examples; "
                  "docs/data.md), or a .u16/.u32 token file")
      ->required();
  cmd->add_option(
         "--data-format", ft->data_format,
         "auto | jsonl | u16 | u32 | instruction | chat | tokens_jsonl "
         "(auto reads a .jsonl file's first line)")
      ->capture_default_str();
  cmd->add_option("--chat-template", o.data.chat_template,
                  "Chat data: llama3 | chatml | mistral (default: detected "
                  "from the tokenizer's chat template)");
  cmd->add_option("--on-bad-sample", ft->on_bad_sample,
                  "Example formats: error | skip, for an example with no "
                  "trained token, longer than --seq-len, or an unknown role")
      ->capture_default_str();
  cmd->add_option("--tokenizer", o.data.tokenizer,
                  "byte, a tokenizer.json or tokenizer.model, or a directory "
                  "holding one. Default: the --model directory's own (a "
                  "random-weight init-model directory: byte)");
  cmd->add_option("--seq-len", o.data.seq_len, "Tokens per sample")->required();
  cmd->add_option("--steps", o.steps, "Optimizer steps")->required();
  cmd->add_option("--out", o.out_dir, "Checkpoint directory")->required();
  cmd->add_option("--resume", o.resume_dir, "Resume from this checkpoint");
  cmd->add_option("--device", ft->device, "cpu | cuda:N")
      ->capture_default_str();
  cmd->add_option(
      "--dtype", ft->dtype,
      "Base weights dtype: fp32 | bf16 (default: bf16 on CUDA, fp32 on CPU)");
  cmd->add_option("--batch-size", o.data.batch_size)->capture_default_str();
  cmd->add_option("--grad-accum", o.grad_accum)->capture_default_str();
  cmd->add_option("--lr", o.optimizer.lr)->capture_default_str();
  cmd->add_option("--weight-decay", o.optimizer.weight_decay)
      ->capture_default_str();
  cmd->add_option("--warmup-steps", o.optimizer.warmup_steps)
      ->capture_default_str();
  cmd->add_option("--max-grad-norm", o.optimizer.max_grad_norm)
      ->capture_default_str();
  AddMemoryFlags(cmd, &ft->memory, &o.model);
  cmd->add_option("--save-every", o.save_every,
                  "Checkpoint every N steps (0: only at the end)")
      ->capture_default_str();
  cmd->add_option("--seed", o.seed)->capture_default_str();
  cmd->add_option("--data-seed", o.data.seed, "Shuffle seed")
      ->capture_default_str();
  cmd->add_option("--rank", o.rank, "Data-parallel rank of this process")
      ->capture_default_str();
  cmd->add_option("--world-size", o.world_size,
                  "Data-parallel processes; --batch-size is per rank")
      ->capture_default_str();
  cmd->add_option("--master-addr", o.comm.store_host,
                  "Host of rank 0, which hosts the c10d TCPStore")
      ->capture_default_str();
  cmd->add_option("--master-port", o.comm.store_port,
                  "Port of rank 0's c10d TCPStore (world size > 1)");
  cmd->add_flag("--force-process-group", o.comm.backend_for_one_rank,
                "Join a process group (NCCL on cuda, Gloo on cpu) even at "
                "--world-size 1, so one rank runs the collectives a larger job "
                "would");
  cmd->add_option("--comm-timeout", ft->comm_timeout_seconds,
                  "Seconds to wait for the rendezvous and each collective")
      ->capture_default_str();
  cmd->add_option("--attention-kernel", ft->attention_kernel,
                  "auto | flash | cudnn: the fused attention kernel tried "
                  "first on CUDA (auto: torch's choice, cuDNN on Hopper and "
                  "Blackwell, else flash; a shape the first cannot serve "
                  "falls back to the next)")
      ->capture_default_str();
  cmd->add_option("--metrics-jsonl", ft->metrics_jsonl,
                  "Write one JSON object per step here");
  // A trainer option, not a LeMo one: the trainer picks the steps on which
  // the model measures recall.
  cmd->add_option("--predictor-recall-every", o.predictor_recall_every,
                  "Measure the predictors' recall against the oracle every N "
                  "steps (0: never; costs an oracle pass)")
      ->capture_default_str();
  AddMemoryBudgetFlags(cmd, &ft->budget);
  return {cmd, [ft] { return RunFinetune(*ft); }};
}

}  // namespace lemo::worker::lemo_train
