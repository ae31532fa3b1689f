// The long-context memory switches as a user asks for them (lemo-train's
// flags, a job's spec.model), with "auto" resolved the same way for both:
// offload of checkpointed inputs, token tiles, attention head groups.
//
//   MemorySwitches asked;             // everything automatic
//   asked.offload = "uniform";
//   LEMO_ASSIGN_OR_RETURN(std::string chose,
//       ApplyMemorySwitches(asked, seq_len, model_dir, &options.model));
//   // chose: "gradient checkpointing on, offload uniform (GPU budget auto),
//   //         tiles 16384 tokens (MLP tiled), attention head groups 4"
#ifndef LEMO_WORKER_ENGINE_TRAIN_MEMORY_SWITCHES_H_
#define LEMO_WORKER_ENGINE_TRAIN_MEMORY_SWITCHES_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/plan/step_plan.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine {

struct MemorySwitches {
  // auto | none | uniform | sparsity; auto is sparsity under gradient
  // checkpointing, none otherwise.
  std::string offload = "auto";
  // GiB of checkpointed inputs kept on the GPU; < 0: automatic (what is free
  // at each forward minus one layer's backward, offload.h).
  double offload_gpu_budget_gib = -1;
  // Tokens per tile of the token-wise steps (MLP, RMSNorms, LoRA's fp32
  // steps); < 0: automatic (plan::AutoTileTokens: plan::kAutoTileTokens from
  // plan::kAutoTileFromTokens tokens on); 0: off.
  int64_t tile_tokens = -1;
  // Groups of heads each layer's attention runs in; < 0: automatic
  // (AutoHeadGroups: plan::kAutoHeadGroups where a whole attention's backward
  // would crowd the device); 0 or 1: off.
  int64_t attention_head_groups = -1;
};

// The automatic head-group count: 0 (off) with LoRA dropout, which the
// grouped attention refuses; else the planner's rule (plan::AutoHeadGroups,
// common/plan/step_plan.h, where the measured constants live) for this
// model's heads and hidden size and activations in the base dtype:
// plan::kAutoHeadGroups where gradient checkpointing is on (without
// checkpoint_keep_attention), the heads split, and one layer's
// whole-attention backward would take more than
// plan::kAutoHeadGroupsDeviceShare of the device's `device_memory_bytes`
// (< 0: unknown, e.g. the CPU: no groups); else 0.
int64_t AutoHeadGroups(int64_t seq_len, const ModelConfig& config,
                       const TrainingModelOptions& model,
                       int64_t device_memory_bytes);

// Writes the switches into `model` (its gradient_checkpointing,
// checkpoint_keep_attention, lemo and lora settings already set) for
// sequences of `seq_len` tokens; the model's config.json in `model_dir` says
// whether its heads split and how big a layer input is (unreadable: no
// automatic head groups; the load reports the error), and the model's device
// how much memory there is, unless `device_memory_bytes` is given (>= 0): a
// plan for a device this process does not have (lemo-train plan --gpu)
// resolves "auto" as a run on that device would. Returns what was chosen, in
// one line, for the user. Errors name the switch: an unknown offload policy,
// offload without checkpointing. (Group counts that do not split the heads
// fail when the model is created, naming the counts.)
absl::StatusOr<std::string> ApplyMemorySwitches(
    const MemorySwitches& asked, int64_t seq_len, const std::string& model_dir,
    TrainingModelOptions* model, int64_t device_memory_bytes = -1);
// The same for a model whose config is at hand rather than in a directory (a
// preset, a config.json read elsewhere).
absl::StatusOr<std::string> ApplyMemorySwitches(
    const MemorySwitches& asked, int64_t seq_len, const ModelConfig& config,
    TrainingModelOptions* model, int64_t device_memory_bytes = -1);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_MEMORY_SWITCHES_H_
