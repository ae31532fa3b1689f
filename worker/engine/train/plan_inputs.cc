#include "worker/engine/train/plan_inputs.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/lemo/lemo_options.h"
#include "worker/engine/model/llama_model.h"

namespace lemo::engine {
namespace {

plan::OffloadPolicy PlanOffloadPolicy(OffloadPolicy policy) {
  switch (policy) {
    case OffloadPolicy::kUniform:
      return plan::OffloadPolicy::kUniform;
    case OffloadPolicy::kSparsity:
      return plan::OffloadPolicy::kSparsity;
    case OffloadPolicy::kNone:
      break;
  }
  return plan::OffloadPolicy::kNone;
}

}  // namespace

absl::StatusOr<plan::ModelShape> ModelShapeFromConfig(const ModelConfig& config,
                                                      torch::ScalarType dtype) {
  plan::ModelShape shape;
  shape.hidden_size = config.hidden_size;
  shape.intermediate_size = config.intermediate_size;
  shape.num_layers = config.num_hidden_layers;
  shape.num_heads = config.num_attention_heads;
  shape.num_kv_heads = config.num_key_value_heads;
  // ParseModelConfig fills the default; a config built by hand may not.
  shape.head_dim = config.head_dim > 0 || config.num_attention_heads <= 0
                       ? config.head_dim
                       : config.hidden_size / config.num_attention_heads;
  shape.vocab_size = config.vocab_size;
  shape.tie_word_embeddings = config.tie_word_embeddings;
  shape.weight_bytes = static_cast<int64_t>(c10::elementSize(dtype));
  shape.attention_bias = config.attention_bias;
  // Qwen2 has q/k/v biases but none on o_proj (model_config.h).
  shape.no_o_proj_bias = config.attention_bias && config.model_type == "qwen2";
  shape.mlp_bias = config.mlp_bias;
  shape.qk_norm = config.qk_norm;
  LEMO_RETURN_IF_ERROR(plan::ValidateModelShape(shape));
  return shape;
}

absl::StatusOr<plan::StepSettings> WorkloadSettingsFor(
    const TrainingModelOptions& options, int64_t seq_len, int64_t batch,
    int64_t num_layers) {
  plan::StepSettings s;
  s.seq_len = seq_len;
  s.batch = batch;
  // The engine keeps activations in the base dtype (fp32 on the CPU).
  s.activation_bytes =
      static_cast<int64_t>(c10::elementSize(options.base_dtype));
  s.lora_rank = options.lora.rank;
  LEMO_ASSIGN_OR_RETURN(s.lora_targets, LlamaModel::ResolveTargetModules(
                                            options.lora.target_modules));
  s.loss_segment_tokens = options.loss_segment_tokens;
  const LemoOptions& lemo = options.lemo;
  if (lemo.mode != LemoMode::kDense) {
    s.keep_fractions = lemo.keep_ratios.empty()
                           ? DefaultKeepSchedule(num_layers)
                           : lemo.keep_ratios;
  }
  s.lemo_oracle = lemo.mode == LemoMode::kOracle;
  s.mlp_prune_ratio = lemo.mlp_prune_ratio;
  s.lemo_2d = lemo.two_d_sparsity;
  return s;
}

absl::StatusOr<plan::StepSettings> StepSettingsFor(
    const TrainingModelOptions& options, int64_t seq_len, int64_t batch,
    const ModelConfig& config) {
  if (seq_len <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len must be > 0, got ", seq_len));
  }
  if (batch <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch must be > 0, got ", batch));
  }
  LEMO_ASSIGN_OR_RETURN(
      plan::StepSettings s,
      WorkloadSettingsFor(options, seq_len, batch, config.num_hidden_layers));
  if (options.lemo.mode != LemoMode::kDense) {
    // The LeMo options as the model checks them (block size, bounds, a
    // schedule of the model's depth, ratios in (0, 1]); for options that
    // pass, the schedule it resolves is the one WorkloadSettingsFor took.
    LEMO_RETURN_IF_ERROR(
        ResolveKeepSchedule(options.lemo, config.num_hidden_layers).status());
  }
  // As TrainingModel::Create adjusts them: checkpointing recomputes the
  // whole layer (recompute_mlp would only cost time), and keeping attention
  // runs the MLP as the fused node, which recomputes the norm.
  s.gradient_checkpointing = options.gradient_checkpointing;
  s.checkpoint_keep_attention =
      options.gradient_checkpointing && options.checkpoint_keep_attention;
  s.recompute_mlp =
      !options.gradient_checkpointing &&
      (options.lemo.recompute_mlp || options.lemo.mlp_tile_tokens > 0);
  s.recompute_norm = options.lemo.recompute_norm || s.recompute_mlp ||
                     s.checkpoint_keep_attention;
  s.offload = PlanOffloadPolicy(options.offload.policy);
  s.offload_gpu_budget_gib =
      options.offload.device_budget_bytes < 0
          ? -1
          : static_cast<double>(options.offload.device_budget_bytes) /
                static_cast<double>(1LL << 30);
  s.tile_tokens = std::max<int64_t>(options.tile_tokens, 0);
  s.attention_head_groups = options.attention_head_groups;
  return s;
}

}  // namespace lemo::engine
