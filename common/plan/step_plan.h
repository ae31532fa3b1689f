// The memory/time planner: pure arithmetic over a model's shape, a training
// step's settings and a device description (no GPU, no torch, no proto), so
// the coordinator, lemoctl and the engine all run the same numbers. It
// predicts the peak allocated GPU memory of one training step, broken down
// into the parts a user can act on, the pinned host memory of offloaded
// checkpoints, and the step time from FLOP and byte counts against the
// device's measured rates.
//
//   LEMO_ASSIGN_OR_RETURN(plan::ModelShape model,
//   plan::ModelShapeForPreset("llama2-7b")); plan::StepSettings s; s.seq_len =
//   262144; s.gradient_checkpointing = true; s.keep_fractions =
//   plan::DefaultKeepFractions(model.num_layers);
//   LEMO_ASSIGN_OR_RETURN(plan::DeviceDescription gpu,
//   plan::FindDevice("h100-80gb")); LEMO_ASSIGN_OR_RETURN(plan::StepPlan p,
//   plan::PlanStep(model, s, gpu)); std::cout << p.verdict << "\n";   //
//   "fits: 67.3 of 79.2 GiB"
//
// What the prediction covers and how accurate it is against measured runs:
// docs/lemo.md "How to read a plan" and the table in docs/benchmarks.md.
#ifndef LEMO_COMMON_PLAN_STEP_PLAN_H_
#define LEMO_COMMON_PLAN_STEP_PLAN_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/plan/model_shape.h"

namespace lemo::plan {

enum class OffloadPolicy { kNone, kUniform, kSparsity };

// "none", "uniform", "sparsity" (as the engine's --offload-checkpoints).
absl::StatusOr<OffloadPolicy> ParseOffloadPolicy(absl::string_view name);
std::string OffloadPolicyName(OffloadPolicy policy);

struct StepSettings {
  int64_t seq_len = 0;  // tokens per sequence
  int64_t batch = 1;    // sequences per micro-batch
  int64_t activation_bytes =
      2;                  // bytes per activation element (bf16 2, fp32 4)
  int64_t lora_rank = 8;  // LoRA rank r of every adapter
  // Projections that carry an adapter (q_proj, k_proj, v_proj, o_proj,
  // gate_proj, up_proj, down_proj).
  std::vector<std::string> lora_targets = {"q_proj", "k_proj", "v_proj",
                                           "o_proj"};
  bool gradient_checkpointing =
      false;  // keep only each layer's input, recompute the rest
  bool checkpoint_keep_attention =
      false;  // exact: keep attention's output across recompute
  bool recompute_mlp = false;   // exact: recompute the MLP's inner activations
  bool recompute_norm = false;  // exact: recompute the RMSNorm outputs
  OffloadPolicy offload =
      OffloadPolicy::kNone;  // checkpointed inputs to pinned host memory
  // GiB of checkpoints on the GPU; -1: automatic (offload.h); other
  // negatives are refused as nonsense.
  double offload_gpu_budget_gib = -1;
  int64_t tile_tokens = 0;  // token tiles of the MLP/projections; 0: off
  int64_t attention_head_groups =
      0;  // attention backward in head groups; 0/1: off
  int64_t loss_segment_tokens = 0;  // tokens per loss segment; 0: one chunk
  // LeMo: empty = dense. Else one keep fraction per layer (1.0 = dense layer),
  // the schedule the engine would use (the default schedule when the spec gives
  // none).
  std::vector<double> keep_fractions;
  bool lemo_oracle = false;  // oracle mode costs an extra scoring pass
  double mlp_prune_ratio =
      0;  // accuracy-changing: share of MLP channels pruned, [0, 1)
  // accuracy-changing: 2-D sparsity, shifted group attention (each token
  // attends within 1/8 of the sequence).
  bool lemo_2d = false;
};

struct DeviceDescription {
  std::string name;               // "h100-80gb"
  std::string description;        // "NVIDIA H100 80GB HBM3"
  int64_t memory_bytes = 0;       // what torch can allocate
  int64_t host_memory_bytes = 0;  // the host's RAM, for the pinned-memory check
  double matmul_flops_per_s = 0;  // measured bf16 GEMM rate
  double attention_flops_per_s =
      0;  // measured flash-attention rate (or 0: use matmul)
  double host_copy_bytes_per_s = 0;  // measured pinned H2D/D2H rate
  std::string measured;  // where the numbers come from (a bench/results folder)
};

struct PlanItem {
  std::string name;   // "frozen weights", "adapters", "optimizer state",
                      // "checkpoints (GPU)",...
  std::string where;  // "gpu" or "host"
  int64_t bytes = 0;
  std::string detail;  // how it was computed, one line ("32 layers x 1.0 GiB")
};

// The breakdown's item names, stable for renderers and tests (docs/lemo.md
// "How to read a plan" says what each holds): "frozen weights", "adapters",
// "adapter gradients", "optimizer state"; without checkpointing
// "activations" and "layer backward"; with it "checkpoints (GPU)",
// "checkpoints (host)" (only when something is offloaded), "kept attention
// outputs" (checkpoint_keep_attention), "layer backward working set",
// "backward in flight"; then "loss", "RoPE tables", "workspace". The time
// items: "projections and MLP", "attention forward (with re-runs)",
// "attention backward", "per-step overhead", "LeMo oracle scoring" (oracle
// mode), "exposed offload copies" (when something is offloaded).
struct StepPlan {
  std::vector<PlanItem> items;  // the breakdown, in the order a user reads it
  int64_t peak_gpu_bytes = 0;   // predicted peak allocated
  int64_t pinned_host_bytes = 0;
  int64_t offloaded_layers = 0;
  double step_seconds = 0;                                 // predicted
  std::vector<std::pair<std::string, double>> time_items;  // seconds per part
  bool fits = false;  // peak <= device memory and pinned <= host budget
  int64_t shortfall_bytes =
      0;  // > 0 when it does not fit: by how much (GPU or host)
  std::string
      verdict;  // one line: "fits: 67.3 of 79.1 GiB" / "does not fit: ..."
};

// INVALID_ARGUMENT naming the field for nonsense input (seq_len <= 0,
// keep_fractions size != num_layers, a fraction outside (0, 1], a negative
// budget other than "automatic", an unknown LoRA target, ...). Never crashes.
absl::StatusOr<StepPlan> PlanStep(const ModelShape& model,
                                  const StepSettings& settings,
                                  const DeviceDescription& device);

// The checks PlanStep makes on its inputs, on their own.
absl::Status ValidateStepSettings(const ModelShape& model,
                                  const StepSettings& settings);
absl::Status ValidateDevice(const DeviceDescription& device);

// The engine's default LeMo keep schedule (worker/engine/lemo/lemo_options.cc
// DefaultKeepSchedule, which a test checks against this): the first 15/32 of
// the layers and the last one dense (1.0), the rest keep 0.4.
std::vector<double> DefaultKeepFractions(int64_t num_layers);

// The engine's automatic memory switches, defined here once: the engine
// (worker/engine/train/memory_switches.cc) resolves its "auto" values with
// these functions, and callers that resolve a spec's "auto" before planning
// (proto/plan/spec_plan.cc, lemo-plan) use them too:
// - token tiles of kAutoTileTokens from kAutoTileFromTokens tokens on (else 0).
//   Below this length the [N, intermediate] tensors fit, and tiling would
//   only re-run gate/up once more under checkpointing.
inline constexpr int64_t kAutoTileFromTokens = 131072;
inline constexpr int64_t kAutoTileTokens = 16384;
int64_t AutoTileTokens(int64_t seq_len);
// - kAutoHeadGroups head groups under gradient checkpointing (without
//   checkpoint_keep_attention, heads that split) where one layer's
//   whole-attention backward (kWholeAttentionWorkingSetInputs layer inputs of
//   seq_len x hidden x activation bytes) would take more than
//   kAutoHeadGroupsDeviceShare of the device's memory (<= 0: unknown, no
//   groups); else 0. LoRA dropout, which the engine's grouped attention
//   refuses, is not in StepSettings: callers that have it check it first.
//
// Head groups are automatic where one layer's whole-attention backward would
// take more than this share of the device: what is left must hold the
// weights and the checkpoints kept on the GPU. Measured on an H100 80GB with
// Llama-2-7B (bench/results/2026-12-06-h100-384k/): at 256K the whole-
// attention working set is 28 GiB (35%) and the step fits at 76.9 GiB, 25%
// faster than in 4 groups; at 384K it would be 42 GiB (53%), and 4 groups
// (9.3 inputs, 27.8 GiB) are what lets the step fit. Below the share, groups
// only cost one more attention forward per layer.
inline constexpr double kAutoHeadGroupsDeviceShare = 0.4;
// A layer's backward working set with attention whole, in layer inputs
// (N x hidden x dtype bytes): its q/k/v, output, their gradients and flash
// attention's fp32 dq accumulator; 14 measured at 64K and at 256K
// (backward_peak_bytes), with 4 groups 9.3 to 9.9.
inline constexpr double kWholeAttentionWorkingSetInputs = 14;
inline constexpr int64_t kAutoHeadGroups = 4;
int64_t AutoHeadGroups(const ModelShape& model, const StepSettings& settings,
                       int64_t device_memory_bytes);

// The share of the pinned host memory a plan may use (offload.h's
// max_host_fraction default): a plan needing more does not fit.
inline constexpr double kMaxHostFraction = 0.9;

}  // namespace lemo::plan

#endif  // LEMO_COMMON_PLAN_STEP_PLAN_H_
