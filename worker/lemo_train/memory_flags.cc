#include "worker/lemo_train/memory_flags.h"

#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "worker/engine/train/memory_switches.h"

namespace lemo::worker::lemo_train {
namespace {

using SwitchesFn = std::function<absl::StatusOr<std::string>(
    const lemo::engine::MemorySwitches&, lemo::engine::TrainingModelOptions*)>;

absl::StatusOr<std::string> Apply(const MemoryFlags& flags,
                                  const SwitchesFn& apply_switches,
                                  lemo::engine::TrainingModelOptions* model) {
  model->lora.target_modules =
      absl::StrSplit(flags.targets, ',', absl::SkipEmpty());
  LEMO_RETURN_IF_ERROR(ApplyLemoFlags(flags.lemo, &model->lemo));
  lemo::engine::MemorySwitches asked;
  asked.offload = flags.offload;
  asked.offload_gpu_budget_gib = flags.offload_budget_gib;
  asked.tile_tokens = flags.lemo.mlp_tile_tokens;
  asked.attention_head_groups = flags.attention_head_groups;
  absl::StatusOr<std::string> chose = apply_switches(asked, model);
  if (!chose.ok()) {
    // The engine names the switch ("offload: ..."); the user typed a flag.
    return absl::InvalidArgumentError(
        absl::StrCat("--", chose.status().message()));
  }
  return chose;
}

}  // namespace

void AddMemoryFlags(CLI::App* cmd, MemoryFlags* flags,
                    lemo::engine::TrainingModelOptions* model) {
  cmd->add_option("--lora-r", model->lora.rank)->capture_default_str();
  cmd->add_option("--lora-alpha", model->lora.alpha)->capture_default_str();
  cmd->add_option("--lora-dropout", model->lora.dropout)->capture_default_str();
  cmd->add_option("--lora-targets", flags->targets,
                  "Comma-separated module names (q_proj ... down_proj), or "
                  "all-linear: every linear of the decoder layers")
      ->capture_default_str();
  cmd->add_flag("--gradient-checkpointing", model->gradient_checkpointing,
                "Recompute each decoder layer in backward");
  cmd->add_flag("--checkpoint-keep-attention", model->checkpoint_keep_attention,
                "With --gradient-checkpointing: keep each layer's attention "
                "output so the recompute skips the attention forward (exact; "
                "one [seq, hidden] activation per layer)");
  cmd->add_option("--loss-segment-tokens", model->loss_segment_tokens,
                  "LM head + loss in chunks of this many tokens (0: one chunk)")
      ->capture_default_str();
  LemoFlags& lf = flags->lemo;
  cmd->add_option("--lemo-mode", lf.mode, "dense | oracle | predictor")
      ->capture_default_str();
  cmd->add_option("--lemo-keep-ratios", lf.keep_ratios,
                  "Keep ratio per layer R1,R2,... in (0, 1], or default (the "
                  "artifact's schedule scaled to the depth)")
      ->capture_default_str();
  cmd->add_option("--lemo-adaptive-tau", lf.adaptive_tau,
                  "Sparse layers keep the fewest blocks holding this score "
                  "mass, in [0, 1] (0: fixed ratios)")
      ->capture_default_str();
  cmd->add_option("--lemo-min-keep-blocks", lf.min_keep_blocks,
                  "Fewest 64-token blocks a sparse layer keeps")
      ->capture_default_str();
  cmd->add_option("--lemo-max-keep-blocks", lf.max_keep_blocks,
                  "Most blocks a sparse layer keeps (< 0: no bound)")
      ->capture_default_str();
  cmd->add_option("--lemo-predictors", lf.predictors,
                  "Trained predictor directory (--lemo-mode predictor)");
  cmd->add_option("--mlp-prune-ratio", lf.mlp_prune_ratio,
                  "MLP channel-sparse backward: fraction of channels whose "
                  "backward is dropped, in [0, 1) (0: off; paper 0.8)")
      ->capture_default_str();
  cmd->add_flag("--lemo-2d", lf.two_d_sparsity,
                "LeMo 2D sparsity: in training, every layer's attention is "
                "shifted group attention (groups of 1/8 of its tokens, half of "
                "the heads shifted by half a group); eval stays dense");
  cmd->add_flag("--recompute-norm", lf.recompute_norm,
                "Recompute the post-attention norm output in backward");
  cmd->add_flag("--recompute-mlp", lf.recompute_mlp,
                "Recompute the MLP's gate/up and the post-attention norm in "
                "backward instead of saving them (exact; ignored with "
                "--gradient-checkpointing)");
  cmd->add_option("--tile-tokens", lf.mlp_tile_tokens,
                  "Run the token-wise steps (MLP, RMSNorms, LoRA's fp32 steps) "
                  "over tiles of this many tokens, forward and backward, so "
                  "no full-length intermediate is alive (0: off; default: "
                  "16384 from 128K-token sequences on)");
  cmd->add_option("--offload", flags->offload,
                  "With --gradient-checkpointing, checkpointed layer inputs "
                  "that exceed the GPU budget go to pinned host memory: auto "
                  "| none | uniform | sparsity (densest layers first)")
      ->capture_default_str();
  cmd->add_option("--attention-head-groups", flags->attention_head_groups,
                  "Run each layer's attention in this many groups of heads, "
                  "each re-run on its own in backward, so that backward holds "
                  "one group's activations and gradients at a time (equal up "
                  "to rounding; one more attention forward per layer; 0 or 1: "
                  "off; default under --gradient-checkpointing: 4 where one "
                  "layer's whole-attention backward would take more than 40% "
                  "of the device, e.g. from 384K tokens of a 7B model on an "
                  "80 GB GPU)");
  cmd->add_option("--offload-gpu-budget-gib", flags->offload_budget_gib,
                  "GiB of checkpointed inputs kept on the GPU (< 0: what is "
                  "free minus one layer's working set)")
      ->capture_default_str();
  cmd->add_flag("--measure-saved-bytes", lf.measure_saved_bytes,
                "Measure each layer's saved-for-backward bytes (metrics "
                "JSONL saved_bytes)");
}

absl::StatusOr<std::string> ApplyMemoryFlags(
    const MemoryFlags& flags, int64_t seq_len, const std::string& model_dir,
    lemo::engine::TrainingModelOptions* model) {
  return Apply(
      flags,
      [&](const lemo::engine::MemorySwitches& asked,
          lemo::engine::TrainingModelOptions* m) {
        return lemo::engine::ApplyMemorySwitches(asked, seq_len, model_dir, m);
      },
      model);
}

absl::StatusOr<std::string> ApplyMemoryFlags(
    const MemoryFlags& flags, int64_t seq_len,
    const lemo::engine::ModelConfig& config, int64_t device_memory_bytes,
    lemo::engine::TrainingModelOptions* model) {
  return Apply(
      flags,
      [&](const lemo::engine::MemorySwitches& asked,
          lemo::engine::TrainingModelOptions* m) {
        return lemo::engine::ApplyMemorySwitches(asked, seq_len, config, m,
                                                 device_memory_bytes);
      },
      model);
}

void AddMemoryBudgetFlags(CLI::App* cmd, MemoryBudgetFlags* flags) {
  flags->option = cmd->add_option(
      "--memory-budget-gib", flags->gib,
      "Peak device memory the step may use, GiB: the fastest "
      "checkpointing / offload / recompute / tile / head-group "
      "setting the planner predicts to fit is chosen and printed "
      "(do not give those flags too)");
  cmd->add_flag("--memory-budget-allow-inexact", flags->allow_inexact,
                "With --memory-budget-gib: when no exact setting fits, MLP "
                "pruning and LeMo 2D (accuracy-changing) may be turned on");
}

absl::Status CheckMemoryBudgetFlags(
    const MemoryBudgetFlags& budget, const MemoryFlags& memory,
    const lemo::engine::TrainingModelOptions& model) {
  if (!(budget.gib > 0) || budget.gib > 8e9) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--memory-budget-gib: must be > 0 (and < 8e9), got ", budget.gib));
  }
  const char* set =
      model.gradient_checkpointing        ? "gradient-checkpointing"
      : model.checkpoint_keep_attention   ? "checkpoint-keep-attention"
      : model.lemo.recompute_mlp          ? "recompute-mlp"
      : model.lemo.recompute_norm         ? "recompute-norm"
      : memory.offload != "auto"          ? "offload"
      : memory.offload_budget_gib >= 0    ? "offload-gpu-budget-gib"
      : memory.attention_head_groups >= 0 ? "attention-head-groups"
      : memory.lemo.mlp_tile_tokens >= 0  ? "tile-tokens"
                                          : nullptr;
  if (set != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--memory-budget-gib chooses --", set, ": give one or the other"));
  }
  return absl::OkStatus();
}

}  // namespace lemo::worker::lemo_train
