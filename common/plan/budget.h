// Memory-budgeted jobs (issue 19): of the switches that trade step time for
// memory, the fastest combination whose predicted plan (step_plan.h) fits a
// budget. A job that gives resources.memory_budget, or `lemo-train finetune
// --memory-budget-gib`, runs this instead of the user choosing the switches.
//
// The candidates are every combination of the exact switches:
//   - gradient checkpointing off, with no recompute, recompute_norm or
//     recompute_mlp;
//   - gradient checkpointing on, keeping attention or not, offload none or
//     sparsity (automatic GPU budget), attention head groups off or
//     kBudgetHeadGroups (not with keep-attention);
//   - token tiles off or kBudgetTileTokens (where the sequence is longer);
// each planned on a copy of the device whose memory is min(device, budget),
// and the fastest predicted one that fits wins. Only when no exact one fits,
// and only with allow_inexact, are the accuracy-changing savers (MLP channel
// pruning, LeMo 2D sparsity) added to each, and the fastest fitting one of
// those wins. Savers the base settings turn on stay on in every candidate.
//
//   BudgetOptions budget;
//   budget.budget_bytes = int64_t{70} << 30;
//   LEMO_ASSIGN_OR_RETURN(BudgetChoice choice,
//                         ChooseWithinBudget(model, base, device, budget));
//   LOG(choice.summary);  // "memory budget 70.0 GiB on h100-80gb: chose ..."
#ifndef LEMO_COMMON_PLAN_BUDGET_H_
#define LEMO_COMMON_PLAN_BUDGET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/plan/step_plan.h"

namespace lemo::plan {

// The tile size the budget tries: the engine's automatic one
// (step_plan.h kAutoTileTokens), measured to cost little time at long
// contexts.
inline constexpr int64_t kBudgetTileTokens = kAutoTileTokens;
// The head-group count the budget tries: the engine's automatic one
// (step_plan.h kAutoHeadGroups).
inline constexpr int64_t kBudgetHeadGroups = kAutoHeadGroups;
// The MLP prune ratio of an inexact candidate when the base settings give
// none: the paper's (and the spec's default) 0.8.
inline constexpr double kBudgetMlpPruneRatio = 0.8;

struct BudgetOptions {
  // Peak device memory the step may use, in bytes; must be > 0.
  int64_t budget_bytes = 0;
  // When no exact setting fits, also try the accuracy-changing savers (MLP
  // channel pruning at the base's ratio or kBudgetMlpPruneRatio, LeMo 2D).
  bool allow_inexact = false;
  // Whether attention head groups may be chosen: the engine runs them only
  // with LoRA dropout 0, which the plan's settings do not carry.
  bool allow_head_groups = true;
  // Whether offload may be chosen: not on the CPU, whose host memory is the
  // device's (there is nowhere to offload to).
  bool allow_offload = true;

  // The options for a job the engine will run, so that the worker
  // (worker/engine/train/memory_budget.cc) and the coordinator's fit check
  // (server/core/job_fit.cc) allow the same switches: head groups only with
  // LoRA dropout 0, offload only on a GPU.
  static BudgetOptions ForEngine(int64_t budget_bytes, bool allow_inexact,
                                 double lora_dropout, bool on_gpu) {
    BudgetOptions o;
    o.budget_bytes = budget_bytes;
    o.allow_inexact = allow_inexact;
    o.allow_head_groups = lora_dropout == 0;
    o.allow_offload = on_gpu;
    return o;
  }
};

struct BudgetChoice {
  // The base settings with the chosen switches.
  StepSettings settings;
  // Its plan on the budget-sized device.
  StepPlan plan;
  // One line for a job's log: the budget, the switches chosen, the predicted
  // peak and step time, how many candidates fit.
  std::string summary;
  // Each candidate in the order tried (fastest predicted first, exact ones
  // before inexact ones), with its predicted peak, step time and verdict.
  std::vector<std::string> considered;
};

// The fastest candidate that fits options.budget_bytes on `device` (see the
// top of this file). INVALID_ARGUMENT naming budget_bytes for a budget <= 0,
// and the planner's own errors for nonsense model or base settings;
// FAILED_PRECONDITION when nothing fits, naming the candidate with the
// smallest shortfall and by how much it is short.
absl::StatusOr<BudgetChoice> ChooseWithinBudget(const ModelShape& model,
                                                const StepSettings& base,
                                                const DeviceDescription& device,
                                                const BudgetOptions& options);

// The memory switches of `settings` in words, for logs and metrics:
// "gradient checkpointing keeping attention, offload sparsity, tiles 16384
// tokens" or "no gradient checkpointing, recompute MLP".
std::string DescribeSwitches(const StepSettings& settings);

// Bytes for a person: "61.2 GiB", "12.0 MiB", "512 B".
std::string HumanBytes(int64_t bytes);

}  // namespace lemo::plan

#endif  // LEMO_COMMON_PLAN_BUDGET_H_
