#include "server/core/job_fit.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/plan/plan_format.h"
#include "proto/plan/spec_plan.h"
#include "proto/validation/spec_validation.h"

namespace lemo::server {

std::optional<plan::ModelShape> ShapeFromConfigText(absl::string_view text) {
  if (text.empty()) return std::nullopt;
  absl::StatusOr<plan::ModelShape> shape = plan::ModelShapeFromConfigJson(text);
  if (!shape.ok()) return std::nullopt;
  return *shape;
}

void JobShapes::Set(const std::string& job_id,
                    std::optional<plan::ModelShape> shape) {
  shapes_[job_id] = std::move(shape);
}

const std::optional<plan::ModelShape>& JobShapes::For(const v1::Job& job) {
  auto it = shapes_.find(job.id());
  if (it != shapes_.end()) return it->second;
  std::optional<plan::ModelShape> shape;
  absl::StatusOr<proto::ModelConfigCheck> check =
      proto::CheckModelConfig(job.spec());
  if (check.ok() && check->read)
    shape = ShapeFromConfigText(check->config_json);
  return shapes_.emplace(job.id(), std::move(shape)).first->second;
}

void JobShapes::Forget(const std::string& job_id) { shapes_.erase(job_id); }

std::vector<PlannableWorker> PlannableWorkers(
    const std::vector<v1::Register>& fleet) {
  std::vector<PlannableWorker> out;
  for (const v1::Register& w : fleet) {
    absl::StatusOr<plan::DeviceDescription> device = proto::DeviceOfWorker(w);
    if (!device.ok()) continue;  // no device memory reported: unplanned
    out.push_back(PlannableWorker{w.worker_id(), w.devices(0).kind(),
                                  *std::move(device)});
  }
  return out;
}

std::vector<WorkerFit> PlanOnWorkers(
    const v1::JobSpec& spec, const plan::ModelShape& model,
    const std::vector<PlannableWorker>& workers) {
  // A budgeted job runs the switches the worker will choose within its
  // budget, not the spec's defaults: proto::PlanSpecOnDevice plans that.
  std::vector<WorkerFit> out;
  for (const PlannableWorker& w : workers) {
    if (w.kind != spec.resources().device_kind()) continue;
    absl::StatusOr<proto::SpecStepPlan> p =
        proto::PlanSpecOnDevice(spec, model, w.device);
    if (!p.ok()) continue;
    out.push_back(WorkerFit{w.worker_id, w.device, std::move(p->settings),
                            std::move(p->plan)});
  }
  return out;
}

absl::Status CheckFitsFleet(const v1::JobSpec& spec,
                            const plan::ModelShape& model,
                            const std::vector<v1::Register>& fleet) {
  const std::vector<WorkerFit> planned =
      PlanOnWorkers(spec, model, PlannableWorkers(fleet));
  if (planned.empty()) return absl::OkStatus();
  const int need = std::max(spec.resources().world_size(), 1);
  const int fitting = static_cast<int>(
      std::count_if(planned.begin(), planned.end(),
                    [](const WorkerFit& f) { return f.plan.fits; }));
  if (fitting >= need) return absl::OkStatus();
  // The breakdown shown is the closest miss: the worker short by least.
  const WorkerFit* closest = nullptr;
  for (const WorkerFit& f : planned) {
    if (f.plan.fits) continue;
    if (closest == nullptr ||
        f.plan.shortfall_bytes < closest->plan.shortfall_bytes) {
      closest = &f;
    }
  }
  // Every planned worker fits, there are only too few of them: the job
  // waits for more to register, as an unplanned one does.
  if (closest == nullptr) return absl::OkStatus();
  const std::string kind =
      v1::DeviceKind_IsValid(spec.resources().device_kind())
          ? v1::DeviceKind_Name(spec.resources().device_kind())
          : "device";
  return absl::FailedPreconditionError(absl::StrCat(
      "spec does not fit the registered workers: it needs ", need, " ", kind,
      need == 1 ? " worker" : " workers", " whose device holds its plan, and ",
      fitting, " of the ", planned.size(), " planned ", kind, " workers do; ",
      "closest: worker ", closest->worker_id, " (", closest->device.name, ", ",
      plan::FormatGiB(closest->device.memory_bytes), " GiB) is ",
      plan::FormatGiB(closest->plan.shortfall_bytes),
      " GiB short: ", closest->plan.verdict,
      " (lower seq_len or batch, or turn on gradient checkpointing, offload "
      "or LeMo; `lemoctl plan` shows the same breakdown)\n",
      plan::FormatPlanTable(closest->plan, closest->device,
                            closest->settings)));
}

}  // namespace lemo::server
