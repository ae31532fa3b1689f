// The lemo-train flags that shape a training step's memory, shared by
// `finetune` (which runs the step) and `plan` (which predicts it), so both
// accept the same names with the same help, and resolve "auto" the same way
// (worker/engine/train/memory_switches.h): a plan is only worth reading if it
// describes the step finetune would run with those flags.
//
//   MemoryFlags flags;
//   AddMemoryFlags(cmd, &flags, &options.model);  // --lora-r, --offload, ...
//   app.parse(argc, argv);
//   LEMO_ASSIGN_OR_RETURN(std::string chose,
//       ApplyMemoryFlags(flags, seq_len, model_dir, &options.model));
//
// The header includes the engine's TrainingModelOptions (LibTorch); the
// command headers that use it keep it in their .cc files.
#ifndef LEMO_WORKER_LEMO_TRAIN_MEMORY_FLAGS_H_
#define LEMO_WORKER_LEMO_TRAIN_MEMORY_FLAGS_H_

#include <cstdint>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "worker/engine/train/training_model.h"
#include "worker/lemo_train/lemo_flags.h"

namespace lemo::worker::lemo_train {

// The flags as given that have no field of their own in
// TrainingModelOptions (the others bind to it directly). Defaults are the
// flags' defaults.
struct MemoryFlags {
  // --lemo-mode, --lemo-keep-ratios, --recompute-mlp, --tile-tokens, ...
  LemoFlags lemo;
  // --lora-targets: comma-separated projection names, or all-linear.
  std::string targets = "q_proj,k_proj,v_proj,o_proj";
  // --offload: auto | none | uniform | sparsity (auto: sparsity under
  // gradient checkpointing, none otherwise).
  std::string offload = "auto";
  // --offload-gpu-budget-gib: checkpointed-input bytes that may stay on the
  // GPU, GiB; < 0 = what is free at the start of each forward minus one
  // layer's working set.
  double offload_budget_gib = -1;
  // --attention-head-groups; -1: auto (engine::AutoHeadGroups).
  int64_t attention_head_groups = -1;
};

// Registers on `cmd` the LoRA flags (--lora-r, --lora-alpha, --lora-dropout,
// --lora-targets), --gradient-checkpointing, --checkpoint-keep-attention,
// --loss-segment-tokens, the LeMo flags (--lemo-mode ... --measure-saved-bytes)
// and the memory switches (--offload, --offload-gpu-budget-gib,
// --attention-head-groups, --tile-tokens), bound to `flags` and `model`; both
// must outlive the parse.
void AddMemoryFlags(CLI::App* cmd, MemoryFlags* flags,
                    lemo::engine::TrainingModelOptions* model);

// Writes `flags` into `model` (its device and base dtype already set, since
// the automatic head groups depend on the device): the LoRA targets, the LeMo
// options (ApplyLemoFlags) and the memory switches for sequences of
// `seq_len` tokens of the model in `model_dir` (ApplyMemorySwitches). Returns
// the switches chosen, in one line. INVALID_ARGUMENT naming the flag.
absl::StatusOr<std::string> ApplyMemoryFlags(
    const MemoryFlags& flags, int64_t seq_len, const std::string& model_dir,
    lemo::engine::TrainingModelOptions* model);
// The same for a model whose config is at hand (a preset), planned for a
// device of `device_memory_bytes` (< 0: the model's device), which decides
// the automatic head groups.
absl::StatusOr<std::string> ApplyMemoryFlags(
    const MemoryFlags& flags, int64_t seq_len,
    const lemo::engine::ModelConfig& config, int64_t device_memory_bytes,
    lemo::engine::TrainingModelOptions* model);

// --memory-budget-gib and --memory-budget-allow-inexact: the planner chooses
// the memory switches within a budget (common/plan/budget.h), as a job's
// resources.memory_budget does. finetune runs the choice; plan predicts it.
struct MemoryBudgetFlags {
  // --memory-budget-gib: peak device memory the step may use.
  double gib = 0;
  // The option, to tell whether it was given at all (any value given, even 0
  // or nan, is checked rather than taken for "off").
  CLI::Option* option = nullptr;
  // --memory-budget-allow-inexact: it may also turn on MLP pruning / LeMo 2D.
  bool allow_inexact = false;

  bool given() const { return option != nullptr && option->count() > 0; }
  // The budget in bytes.
  int64_t bytes() const {
    return static_cast<int64_t>(gib * (int64_t{1} << 30));
  }
};

// Registers the two budget flags on `cmd`, bound to `flags`.
void AddMemoryBudgetFlags(CLI::App* cmd, MemoryBudgetFlags* flags);

// With the budget given: INVALID_ARGUMENT for a budget that is not > 0, or
// naming a switch the budget chooses that was given beside it (a flag set in
// `memory` or in `model`).
absl::Status CheckMemoryBudgetFlags(
    const MemoryBudgetFlags& budget, const MemoryFlags& memory,
    const lemo::engine::TrainingModelOptions& model);

}  // namespace lemo::worker::lemo_train

#endif  // LEMO_WORKER_LEMO_TRAIN_MEMORY_FLAGS_H_
