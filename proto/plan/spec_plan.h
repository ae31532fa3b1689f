// A JobSpec as the planner's inputs (common/plan/step_plan.h), without torch:
// the same defaults and the same "auto" memory switches the worker agent
// applies when it turns a spec into engine options
// (worker/agent/spec_translation.cc, worker/engine/train/memory_switches.cc),
// so that the coordinator (placement, submit-time rejection) and
// `lemoctl plan` predict the step the worker will run. A test in
// tests/worker/agent/ checks the two translations agree.
//
//   LEMO_ASSIGN_OR_RETURN(plan::ModelShape shape,
//                         plan::ModelShapeFromConfigJson(config_text));
//   LEMO_ASSIGN_OR_RETURN(proto::SpecPlanInputs in,
//                         proto::PlanInputsFromSpec(spec, shape, device));
//   LEMO_ASSIGN_OR_RETURN(plan::StepPlan p,
//                         plan::PlanStep(in.model, in.settings, device));
#ifndef LEMO_PROTO_PLAN_SPEC_PLAN_H_
#define LEMO_PROTO_PLAN_SPEC_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/plan/model_shape.h"
#include "common/plan/step_plan.h"
#include "lemo/v1/job_spec.pb.h"
#include "lemo/v1/worker_service.pb.h"

namespace lemo::proto {

// The step the worker runs for `spec` (its defaults applied or not: zeros
// mean the documented defaults here too) on a model of shape `model`.
// `device_memory_bytes` is the memory of the device it runs on, which the
// automatic attention head groups read (memory_switches.h AutoHeadGroups);
// < 0 when unknown, and for the CPU, where the engine uses none either.
// INVALID_ARGUMENT naming the spec field the worker would refuse too: more
// per-layer keep ratios than layers, an unknown offload policy, offload
// without gradient checkpointing, an unknown dtype.
absl::StatusOr<plan::StepSettings> StepSettingsFromSpec(
    const v1::JobSpec& spec, const plan::ModelShape& model,
    int64_t device_memory_bytes = -1);

// Bytes per element of the frozen weights and activations for spec.model.dtype
// (unset: bf16 on CUDA, fp32 on the CPU, as the worker loads them).
absl::StatusOr<int64_t> SpecDtypeBytes(const v1::JobSpec& spec);

// What the planner takes for one spec on one device.
struct SpecPlanInputs {
  // The model's shape with weight_bytes of the spec's dtype: the engine loads
  // the frozen weights in spec.model.dtype whatever config.json's torch_dtype
  // says.
  plan::ModelShape model;
  // StepSettingsFromSpec's.
  plan::StepSettings settings;
};

// StepSettingsFromSpec for `device` (its memory_bytes when the spec runs on
// CUDA; a CPU job's automatic switches see unknown memory, as the engine's
// CPU reports none), with the shape's weight_bytes set from the spec's dtype.
absl::StatusOr<SpecPlanInputs> PlanInputsFromSpec(
    const v1::JobSpec& spec, const plan::ModelShape& model,
    const plan::DeviceDescription& device);

// The device a worker registered (Register.devices[0], host_memory_bytes),
// as the planner describes it (plan::DeviceFromRegistration): the device
// table's entry when its name matches, else its memory with the nearest
// entry's rates. A host memory of 0 (an older worker) means unknown: no limit
// on pinned host memory. NOT_FOUND when the registration lists no device or
// its memory is unknown (0): such a worker is not planned against.
absl::StatusOr<plan::DeviceDescription> DeviceOfWorker(
    const v1::Register& registration);

// The step the worker will run for a spec on one device, and its plan.
struct SpecStepPlan {
  // The settings the worker runs: the spec's own or, with
  // resources.memory_budget, the budget's choice when one fits.
  plan::StepSettings settings;
  // Their plan. With a budget it is planned on a copy of the device whose
  // memory is min(device, budget), so that "fits" means "fits the budget";
  // when no choice fits, it is the spec's own settings judged so, and its
  // verdict names the shortfall against the budget.
  plan::StepPlan plan;
  // With a budget, one line for a person: the budget's choice
  // (plan::BudgetChoice::summary), or why nothing fits it. Empty without one.
  std::string budget_summary;
};

// What the worker will run for `spec` on `device`
// (worker/agent/spec_translation.cc, worker/engine/train/memory_budget.cc):
// PlanInputsFromSpec and plan::PlanStep or, with spec.resources.memory_budget,
// plan::ChooseWithinBudget with the engine's options
// (plan::BudgetOptions::ForEngine). The coordinator's fit check and `lemoctl
// plan` both use it, so they agree with each other and with the worker.
// Errors are PlanInputsFromSpec's and the planner's.
absl::StatusOr<SpecStepPlan> PlanSpecOnDevice(
    const v1::JobSpec& spec, const plan::ModelShape& model,
    const plan::DeviceDescription& device);

}  // namespace lemo::proto

#endif  // LEMO_PROTO_PLAN_SPEC_PLAN_H_
