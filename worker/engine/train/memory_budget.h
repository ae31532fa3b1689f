// Memory-budgeted training (issue 19), the engine's side: instead of the user
// choosing gradient checkpointing, offload, recompute, tiles and head groups,
// the planner's ChooseWithinBudget (common/plan/budget.h) picks the fastest
// combination predicted to fit the budget on this process's device, and this
// writes the choice into the model's options. The worker agent (a job's
// resources.memory_budget) and `lemo-train finetune --memory-budget-gib` both
// run it, so a budget means the same in either.
//
//   MemoryBudgetOptions budget;
//   budget.budget_bytes = int64_t{70} << 30;
//   budget.device = PlanDeviceFor(options.model.device);
//   LEMO_ASSIGN_OR_RETURN(MemoryBudgetResult chose,
//       ApplyMemoryBudget(budget, seq_len, batch, model_dir, &options.model));
//   log(chose.choice.summary);  // "memory budget 70.0 GiB ...: chose ..."
#ifndef LEMO_WORKER_ENGINE_TRAIN_MEMORY_BUDGET_H_
#define LEMO_WORKER_ENGINE_TRAIN_MEMORY_BUDGET_H_

#include <torch/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/plan/budget.h"
#include "common/plan/step_plan.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine {

struct MemoryBudgetOptions {
  // Peak device memory the step may use, bytes; > 0.
  int64_t budget_bytes = 0;
  // Also try the accuracy-changing savers (MLP pruning, LeMo 2D) when no
  // exact setting fits.
  bool allow_inexact = false;
  // The device the step runs on, as the planner sees it (PlanDeviceFor).
  plan::DeviceDescription device;
};

struct MemoryBudgetResult {
  // What the planner chose, with its plan, summary line and the candidates.
  plan::BudgetChoice choice;
  // The resolved switches in one line, as ApplyMemorySwitches says them.
  std::string switches;
};

// The planner's view of `device`: a CUDA device is the device table's entry
// for its name (plan::DeviceFromRegistration: else its memory with the rates
// of the nearest entry). The CPU has no entry: it is the host's RAM with the
// nearest entry's rates. Its predicted step times are then not the CPU's, but
// the choice only compares candidates with one another, and their ratios
// (FLOPs recomputed, bytes moved) hold on any device; the memory arithmetic
// is the same on every device.
plan::DeviceDescription PlanDeviceFor(const torch::Device& device);

// The planner's choice for micro-batches of `batch` sequences of `seq_len`
// tokens of the model `shape` under `model`'s workload settings (device,
// dtype, LoRA, LeMo; its memory switches are ignored: they are the budget's to
// choose), within options.budget_bytes on options.device; offload is a
// candidate only `on_gpu`. The core that ApplyMemoryBudget writes into the
// options and `lemo-train plan --memory-budget-gib` prints. Errors: as
// ApplyMemoryBudget's, without the config.json ones.
absl::StatusOr<plan::BudgetChoice> ChooseMemoryBudget(
    const MemoryBudgetOptions& options, const plan::ModelShape& shape,
    int64_t seq_len, int64_t batch, const TrainingModelOptions& model,
    bool on_gpu);

// Chooses the memory switches for micro-batches of `batch` sequences of
// `seq_len` tokens of the model in `model_dir` (its config.json) and writes
// them into `model`, whose device, base dtype, LoRA and LeMo settings are
// already set; the choice replaces its gradient_checkpointing,
// checkpoint_keep_attention, recompute_mlp / recompute_norm, offload, tiles and
// head groups, and, when allowed and needed, turns on mlp_prune_ratio or
// two_d_sparsity. On the CPU offload is never chosen: host memory is the
// device's, there is nowhere to offload to. Errors: INVALID_ARGUMENT from the
// planner's input checks, NOT_FOUND / INVALID_ARGUMENT for an unreadable
// config.json (prefixed "model <dir>"), FAILED_PRECONDITION when nothing fits
// (naming the smallest shortfall).
absl::StatusOr<MemoryBudgetResult> ApplyMemoryBudget(
    const MemoryBudgetOptions& options, int64_t seq_len, int64_t batch,
    const std::string& model_dir, TrainingModelOptions* model);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_MEMORY_BUDGET_H_
