// Whether a job fits a worker's device, by the planner (common/plan/): the
// coordinator places a job only on workers whose device holds its predicted
// peak, and refuses at submit a job that fits no registered worker. Each
// job's model shape comes from its config.json, read once (at submit, where
// validation reads the file anyway; lazily for jobs restored after a
// restart) and kept in a JobShapes cache; the planning itself is arithmetic.
// A job whose config.json the coordinator cannot read (a path only workers
// mount) has no shape and is placed as before, unplanned.
//
//   JobShapes shapes;
//   shapes.Set(job.id(), ShapeFromConfigText(check.config_json));
//   LEMO_RETURN_IF_ERROR(CheckFitsFleet(spec, *shape,
//   registry.Registrations())); for (const WorkerFit& f : PlanOnWorkers(spec,
//   *shapes.For(job),
//                                           PlannableWorkers(fleet))) ...
#ifndef LEMO_SERVER_CORE_JOB_FIT_H_
#define LEMO_SERVER_CORE_JOB_FIT_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/plan/model_shape.h"
#include "common/plan/step_plan.h"
#include "lemo/v1/job.pb.h"
#include "lemo/v1/worker_service.pb.h"

namespace lemo::server {

// The shape in a config.json's text; nullopt when the text is empty (not
// read) or not a model the planner understands (the worker reports that).
std::optional<plan::ModelShape> ShapeFromConfigText(absl::string_view text);

// Each live job's model shape, by job id.
class JobShapes {
 public:
  // Records what submit read (nullopt: unknown, plan nothing).
  void Set(const std::string& job_id, std::optional<plan::ModelShape> shape);
  // The recorded shape; a job not recorded (restored from the store after a
  // restart) has its config.json read now, once.
  const std::optional<plan::ModelShape>& For(const v1::Job& job);
  // Drops an ended job's entry.
  void Forget(const std::string& job_id);
  size_t size() const { return shapes_.size(); }

 private:
  std::map<std::string, std::optional<plan::ModelShape>> shapes_;
};

// One worker's verdict for a job.
struct WorkerFit {
  // Register.worker_id.
  std::string worker_id;
  // The device the plan was made for (proto::DeviceOfWorker).
  plan::DeviceDescription device;
  // The settings and the plan (plan.fits says whether it fits).
  plan::StepSettings settings;
  plan::StepPlan plan;
};

// A registered worker the planner can describe.
struct PlannableWorker {
  // Register.worker_id.
  std::string worker_id;
  // Register.devices[0].kind.
  v1::DeviceKind kind = v1::CPU;
  // proto::DeviceOfWorker's description.
  plan::DeviceDescription device;
};

// The workers of `fleet` whose device memory is known, described once (a
// scheduling pass plans every waiting job against the same list).
std::vector<PlannableWorker> PlannableWorkers(
    const std::vector<v1::Register>& fleet);

// The plan of `spec` on each worker of the spec's device kind; plans the
// planner refuses (the worker would refuse the spec too, and says why) are
// left out.
std::vector<WorkerFit> PlanOnWorkers(
    const v1::JobSpec& spec, const plan::ModelShape& model,
    const std::vector<PlannableWorker>& workers);

// OK when at least resources.world_size of the planned workers fit, when no
// worker of the spec's kind with known memory is registered (nothing to judge
// by: the job queues), or when every planned worker fits and there are only
// too few of them (the job waits for more to register). Otherwise
// FAILED_PRECONDITION naming the need, how many fit, and the shortfall on the
// closest worker, followed by that worker's breakdown table
// (plan::FormatPlanTable).
absl::Status CheckFitsFleet(const v1::JobSpec& spec,
                            const plan::ModelShape& model,
                            const std::vector<v1::Register>& fleet);

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_JOB_FIT_H_
