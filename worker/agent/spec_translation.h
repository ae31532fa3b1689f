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
#include "lemo/v1/job.pb.h"
#include "lemo/v1/worker_service.pb.h"
#include "worker/engine/trainer.h"

namespace lemo::worker {

// INVALID_ARGUMENT naming the spec field when this worker cannot run the spec
// (several ranks, another device kind). Spec settings the engine does not
// implement yet (LeMo token elimination, MLP sparsity, offload) are appended to
// `warnings` and trained densely, so the user sees it in the job's log instead
// of a silent difference. Zeros mean the spec's documented defaults, in case a
// spec arrives without them filled.
absl::StatusOr<engine::TrainerOptions> TrainerOptionsFromAssign(
    const v1::Assign& assign, const torch::Device& device,
    const std::string& out_dir, const std::string& resume_dir,
    std::vector<std::string>* warnings);

// What went wrong, typed: RESOURCE_EXHAUSTED -> OUT_OF_MEMORY; errors the
// trainer reports with its "model ..." / "building the model" context ->
// MODEL_LOAD, "data ..." -> DATA_LOAD, "resuming from ..." / "writing
// checkpoint ..." -> CHECKPOINT; other INVALID_ARGUMENT -> INVALID_SPEC;
// anything else INTERNAL. The message keeps the whole status text.
v1::Failure FailureFromStatus(const absl::Status& status, int rank);

v1::MetricSample SampleFromStepMetrics(const engine::StepMetrics& metrics,
                                       int rank);

}  // namespace lemo::worker

#endif  // LEMO_WORKER_AGENT_SPEC_TRANSLATION_H_
