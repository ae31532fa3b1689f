// The one place that knows both the wire and the engine: a JobSpec from an
// Assign becomes engine::TrainerOptions, engine step numbers become
// MetricSamples, and engine errors become typed Failures.
//
//   std::vector<std::string> warnings;
//   LEMO_ASSIGN_OR_RETURN(
//       engine::TrainerOptions options,
//       TrainerOptionsFromAssign(assign, torch::kCPU, out_dir, resume_dir,
//       &warnings));
//   v1::Failure failure = FailureFromStatus(status, assign.rank());
#ifndef LEMO_WORKER_AGENT_SPEC_TRANSLATION_H_
#define LEMO_WORKER_AGENT_SPEC_TRANSLATION_H_

#include <torch/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/plan/budget.h"
#include "lemo/v1/job.pb.h"
#include "lemo/v1/worker_service.pb.h"
#include "worker/agent/worker_metrics.h"
#include "worker/engine/train/trainer.h"

namespace lemo::worker {

// What spec.resources.memory_budget chose, for the job's log, metric samples
// and the worker's /metrics.
struct BudgetReport {
  // False when the spec gives no budget (the switches are the spec's).
  bool applied = false;
  // The budget, bytes.
  int64_t budget_bytes = 0;
  // The planner's choice on this worker's device (engine::PlanDeviceFor).
  plan::BudgetChoice choice;
};

// The choice in the plain values WorkerMetrics::SetMemoryPlan takes.
MemoryPlanSample MemoryPlanSampleFrom(const BudgetReport& report);

// INVALID_ARGUMENT naming the spec field when this worker cannot run the spec
// (another device kind, more per-layer keep ratios than layers) or the Assign
// is malformed (rank outside world_size, no HOST:PORT rendezvous address for
// several ranks). Several ranks join a Gloo/NCCL group at
// Assign.rendezvous_address, a store rank 0's worker hosts for its lifetime,
// under the key prefix "lemo/<job_id>/epoch-<epoch>/"; the caller sets the
// collective timeout and Gloo's hostname.
// LeMo ORACLE maps to the engine's token elimination, with the spec's keep
// schedule (per_layer, else default_ratio) expanded over the model's layers
// (read from its config.json) and the adaptive bounds turned into blocks.
// Settings a worker warns about (a sequence past the model's context) are
// appended to `warnings`. Zeros mean the spec's documented defaults; an unset
// keep schedule is the paper's default (engine::DefaultKeepSchedule, as in
// lemo-train). A JSONL corpus is tokenized with spec.data.tokenizer, else the
// model directory's own tokenizer ("byte" for init-model's random weights);
// INVALID_ARGUMENT naming spec.data.tokenizer when there is none, it cannot
// be loaded, or its ids do not fit the model's vocab_size. The memory switches
// (spec.model.offload, tile_tokens, ...) resolve as lemo-train's do
// (worker/engine/train/memory_switches.h). With spec.resources.memory_budget
// the budget chooses them instead (engine::ApplyMemoryBudget, planned on
// `device` as this worker registers it), and `budget` (may be null) gets the
// choice; a budget nothing fits is INVALID_ARGUMENT naming
// spec.resources.memory_budget and the smallest shortfall. `notes` (may be
// null) gets what the job will run with, for the log: the tokenizer, the LeMo
// mode with its keep schedule, the budget's choice and the memory switches.
absl::StatusOr<engine::TrainerOptions> TrainerOptionsFromAssign(
    const v1::Assign& assign, const torch::Device& device,
    const std::string& out_dir, const std::string& resume_dir,
    std::vector<std::string>* warnings,
    std::vector<std::string>* notes = nullptr, BudgetReport* budget = nullptr);

// What went wrong, typed: RESOURCE_EXHAUSTED -> OUT_OF_MEMORY, except for a
// "checkpoint ..." upload the coordinator has no room for -> CHECKPOINT; errors
// the trainer reports with its "model ..." / "building the model" context, and
// a NOT_FOUND spec.model.path (SpecPathPolicy) -> MODEL_LOAD; "data ..." and a
// NOT_FOUND spec.data.path -> DATA_LOAD; "resuming from ..." / "writing
// checkpoint ..." -> CHECKPOINT; other INVALID_ARGUMENT, or NOT_FOUND of
// another "spec." field -> INVALID_SPEC;
// UNAVAILABLE (a rendezvous or collective that timed out or lost a peer) ->
// NCCL_TIMEOUT; anything else INTERNAL. The message keeps the whole status
// text.
v1::Failure FailureFromStatus(const absl::Status& status, int rank);

// Per-layer LeMo numbers included: kept_token_fraction always,
// saved_activation_bytes when measured, predictor_recall when a predictor ran.
v1::MetricSample SampleFromStepMetrics(const engine::StepMetrics& metrics,
                                       int rank);

// The step's per-layer LeMo numbers for WorkerMetrics::OnLayerStats.
std::vector<LayerSample> LayerSamplesFromStepMetrics(
    const engine::StepMetrics& metrics);

}  // namespace lemo::worker

#endif  // LEMO_WORKER_AGENT_SPEC_TRANSLATION_H_
