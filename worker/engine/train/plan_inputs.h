// The engine's side of the memory/time planner (common/plan/step_plan.h): the
// planner's inputs from what the engine runs, a ModelConfig and the
// TrainingModelOptions of a step, so a plan describes exactly the step the
// engine would take (the keep schedule it would resolve, the switches
// TrainingModel::Create would adjust). The planner itself is torch-free and
// shared with the coordinator and lemoctl; this adapter is the one place that
// reads engine types into it.
//
//   LEMO_ASSIGN_OR_RETURN(plan::ModelShape shape,
//                         ModelShapeFromConfig(config, torch::kBFloat16));
//   LEMO_ASSIGN_OR_RETURN(plan::StepSettings step,
//                         StepSettingsFor(options, /*seq_len=*/65536,
//                                         /*batch=*/1, config));
//   LEMO_ASSIGN_OR_RETURN(plan::StepPlan p, plan::PlanStep(shape, step, gpu));
#ifndef LEMO_WORKER_ENGINE_TRAIN_PLAN_INPUTS_H_
#define LEMO_WORKER_ENGINE_TRAIN_PLAN_INPUTS_H_

#include <torch/types.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/plan/model_shape.h"
#include "common/plan/step_plan.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine {

// The model's sizes with its frozen weights in `dtype` (the base dtype the
// engine converts them to, not the file's). INVALID_ARGUMENT naming the field
// when the config has no usable size (plan::ValidateModelShape).
absl::StatusOr<plan::ModelShape> ModelShapeFromConfig(const ModelConfig& config,
                                                      torch::ScalarType dtype);

// The workload of the step `options` would train on micro-batches of `batch`
// sequences of `seq_len` tokens of a model of `num_layers` layers, without
// its memory switches: activations in the base dtype, the LoRA rank and
// resolved targets, loss segments, and under LeMo the keep schedule
// (options.lemo.keep_ratios, or DefaultKeepSchedule when empty), oracle
// scoring, MLP pruning and 2-D sparsity. Checkpointing, keep-attention,
// recompute, offload, tiles and head groups keep StepSettings' defaults
// (off), for a caller that chooses them (ApplyMemoryBudget) or reads them
// (StepSettingsFor). Only the LoRA targets are checked (INVALID_ARGUMENT
// naming an unknown one); the planner checks the rest.
absl::StatusOr<plan::StepSettings> WorkloadSettingsFor(
    const TrainingModelOptions& options, int64_t seq_len, int64_t batch,
    int64_t num_layers);

// The step `options` would train on micro-batches of `batch` sequences of
// `seq_len` tokens of the model `config`: its workload (WorkloadSettingsFor,
// the LeMo options checked as the model checks them) and its memory
// switches: checkpointing as TrainingModel::Create adjusts it (recompute_mlp
// off under checkpointing, the norm recomputed with keep-attention), the
// offload policy and budget, tiles, head groups, loss segments, and under LeMo
// the keep schedule the model would run (options.lemo.keep_ratios, or
// DefaultKeepSchedule when empty). Resolve the switches' "auto" values first
// (ApplyMemorySwitches); this reads what is set. INVALID_ARGUMENT naming what
// is wrong (seq_len or batch <= 0, an unknown LoRA target, a keep schedule that
// does not match the depth).
absl::StatusOr<plan::StepSettings> StepSettingsFor(
    const TrainingModelOptions& options, int64_t seq_len, int64_t batch,
    const ModelConfig& config);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_PLAN_INPUTS_H_
