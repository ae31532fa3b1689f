#include "worker/engine/train/memory_switches.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/plan/model_shape.h"
#include "common/plan/step_plan.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/runtime/device_memory.h"

namespace lemo::engine {
int64_t AutoHeadGroups(int64_t seq_len, const ModelConfig& config,
                       const TrainingModelOptions& model,
                       int64_t device_memory_bytes) {
  // The planner leaves LoRA dropout to its callers (its StepSettings has no
  // dropout; proto/plan/spec_plan.cc checks the spec's the same way).
  if (model.lora.dropout != 0) return 0;
  // Only what plan::AutoHeadGroups reads; the rest of the shape and step is
  // not needed to decide, and a hand-built config need not be a valid shape.
  plan::ModelShape shape;
  shape.hidden_size = config.hidden_size;
  shape.num_heads = config.num_attention_heads;
  shape.num_kv_heads = config.num_key_value_heads;
  plan::StepSettings step;
  step.seq_len = seq_len;
  step.activation_bytes =
      static_cast<int64_t>(c10::elementSize(model.base_dtype));
  step.gradient_checkpointing = model.gradient_checkpointing;
  step.checkpoint_keep_attention = model.checkpoint_keep_attention;
  return plan::AutoHeadGroups(shape, step, device_memory_bytes);
}

namespace {

// `config` null: unreadable (no automatic head groups; the load reports it).
absl::StatusOr<std::string> Apply(const MemorySwitches& asked, int64_t seq_len,
                                  const ModelConfig* config,
                                  TrainingModelOptions* model,
                                  int64_t device_memory_bytes) {
  if (asked.tile_tokens >= 0) {
    model->tile_tokens = asked.tile_tokens;
    // The pruned MLP ranks channels over the whole sequence: it stays
    // untiled (LemoOptions refuses the pair when asked for by name).
    if (model->lemo.mlp_prune_ratio == 0 || asked.tile_tokens == 0) {
      model->lemo.mlp_tile_tokens = asked.tile_tokens;
    }
  } else if (const int64_t tile = plan::AutoTileTokens(seq_len); tile > 0) {
    // Below plan::kAutoTileFromTokens the options keep what they hold.
    model->tile_tokens = tile;
    if (model->lemo.mlp_prune_ratio == 0) {
      model->lemo.mlp_tile_tokens = tile;
    }
  }

  if (asked.attention_head_groups >= 0) {
    model->attention_head_groups = asked.attention_head_groups;
  } else if (model->gradient_checkpointing) {
    if (config != nullptr) {
      model->attention_head_groups = AutoHeadGroups(
          seq_len, *config, *model,
          device_memory_bytes >= 0 ? device_memory_bytes
                                   : TotalDeviceMemoryBytes(model->device));
    }
  }

  if (asked.offload == "auto" || asked.offload.empty()) {
    model->offload.policy = model->gradient_checkpointing
                                ? OffloadPolicy::kSparsity
                                : OffloadPolicy::kNone;
  } else {
    absl::StatusOr<OffloadPolicy> policy = ParseOffloadPolicy(asked.offload);
    if (!policy.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("offload: ", policy.status().message()));
    }
    if (*policy != OffloadPolicy::kNone && !model->gradient_checkpointing) {
      return absl::InvalidArgumentError(absl::StrCat(
          "offload ", asked.offload,
          " moves checkpointed layer inputs: turn on gradient checkpointing"));
    }
    model->offload.policy = *policy;
  }
  model->offload.device_budget_bytes =
      asked.offload_gpu_budget_gib < 0
          ? -1
          : static_cast<int64_t>(asked.offload_gpu_budget_gib * (1LL << 30));

  return absl::StrCat(
      "gradient checkpointing ", model->gradient_checkpointing ? "on" : "off",
      model->checkpoint_keep_attention ? " keeping attention" : "",
      ", offload ", OffloadPolicyName(model->offload.policy), " (GPU budget ",
      asked.offload_gpu_budget_gib < 0
          ? std::string("auto")
          : absl::StrCat(asked.offload_gpu_budget_gib, " GiB"),
      "), tiles ",
      model->tile_tokens > 0 ? absl::StrCat(model->tile_tokens, " tokens")
                             : std::string("off"),
      " (MLP ", model->lemo.mlp_tile_tokens > 0 ? "tiled" : "untiled",
      "), attention head groups ",
      std::max<int64_t>(model->attention_head_groups, 1));
}

}  // namespace

absl::StatusOr<std::string> ApplyMemorySwitches(const MemorySwitches& asked,
                                                int64_t seq_len,
                                                const std::string& model_dir,
                                                TrainingModelOptions* model,
                                                int64_t device_memory_bytes) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(model_dir);
  return Apply(asked, seq_len, config.ok() ? &*config : nullptr, model,
               device_memory_bytes);
}

absl::StatusOr<std::string> ApplyMemorySwitches(const MemorySwitches& asked,
                                                int64_t seq_len,
                                                const ModelConfig& config,
                                                TrainingModelOptions* model,
                                                int64_t device_memory_bytes) {
  return Apply(asked, seq_len, &config, model, device_memory_bytes);
}

}  // namespace lemo::engine
