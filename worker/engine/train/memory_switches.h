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
  // steps); < 0: automatic (kAutoTileTokens from kAutoTileFromTokens); 0: off.
  int64_t tile_tokens = -1;
  // Groups of heads each layer's attention runs in; < 0: automatic
  // (kAutoHeadGroups from kAutoHeadGroupsFromTokens under checkpointing,
  // where the heads split and LoRA has no dropout); 0 or 1: off.
  int64_t attention_head_groups = -1;
};

// Below this length the [N, intermediate] tensors fit, and tiling would only
// re-run gate/up once more under checkpointing.
inline constexpr int64_t kAutoTileFromTokens = 131072;
inline constexpr int64_t kAutoTileTokens = 16384;
// From 256K tokens a Llama-2-7B layer's attention backward (all heads' q/k/v,
// output, gradients and flash attention's fp32 dq accumulator) crowds out the
// checkpoints an H100 could keep; below that head groups only cost one more
// attention forward per layer (+27% step time at 64K).
inline constexpr int64_t kAutoHeadGroupsFromTokens = 262144;
inline constexpr int64_t kAutoHeadGroups = 4;

// Writes the switches into `model` (its gradient_checkpointing,
// checkpoint_keep_attention, lemo and lora settings already set) for
// sequences of `seq_len` tokens; the model's config.json in `model_dir` says
// whether its heads split (unreadable: no automatic head groups; the load
// reports the error). Returns what was chosen, in one line, for the user.
// Errors name the switch: an unknown offload policy, offload without
// checkpointing. (Group counts that do not split the heads fail when the
// model is created, naming the counts.)
absl::StatusOr<std::string> ApplyMemorySwitches(const MemorySwitches& asked,
                                                int64_t seq_len,
                                                const std::string& model_dir,
                                                TrainingModelOptions* model);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_MEMORY_SWITCHES_H_
