// Placement: which waiting jobs go to which workers on one scheduling pass,
// and what each rank is told. It joins the job table (the QUEUED and
// RESTARTING jobs, in FIFO order, with the workers whose roots cannot hold
// their paths excluded) to the gang policy of scheduler.h over the registry's
// free and connected workers (without the workers whose device the job's
// plan does not fit, job_fit.h), puts a rank that can host the group's store at
// rank 0, says why each job left waiting waits, and builds the Assign a rank
// receives. It reads only; the Coordinator commits what it decides.
//
//   PlacementPlan plan = PlanPlacements(jobs, sessions.registry());
//   for (const Placement& p : plan.placements) ... commit, then
//   sessions.Assign(p.worker_ids[rank], ..., MakeAssign(job, rank, ...));
#ifndef LEMO_SERVER_CORE_PLACEMENT_H_
#define LEMO_SERVER_CORE_PLACEMENT_H_

#include <optional>
#include <string>
#include <vector>

#include "lemo/v1/worker_service.pb.h"
#include "server/core/job_fit.h"
#include "server/core/job_table.h"
#include "server/core/scheduler.h"
#include "server/core/worker_registry.h"

namespace lemo::server {

// What one scheduling pass decides.
struct PlacementPlan {
  // Every waiting job considered, in submission order.
  std::vector<PendingJob> pending;
  // Jobs to place now; worker_ids in rank order.
  std::vector<Placement> placements;
};

// Why a job that stays waiting waits.
struct WaitNote {
  // The waiting job.
  std::string job_id;
  // For its state message (scheduler.h WaitReason).
  std::string reason;
  // True when no set of connected workers can ever hold it (and some are
  // connected): worth a warning in the job's log, not just its state message.
  bool never_fits = false;
};

// `shapes` (may be null: nothing is planned) gives each job's model shape;
// a worker whose device the job's plan does not fit gets none of its ranks
// (job_fit.h). A job without a shape is placed unplanned.
PlacementPlan PlanPlacements(const JobTable& jobs,
                             const WorkerRegistry& workers,
                             JobShapes* shapes = nullptr);

// Wait notes for the jobs of `pending` that `jobs` still shows waiting,
// judged against the workers as they are now (after the placements).
std::vector<WaitNote> WaitNotes(const std::vector<PendingJob>& pending,
                                const JobTable& jobs,
                                const WorkerRegistry& workers);

// The Assign for one rank of `job` (its current epoch), resuming from `resume`
// when set.
v1::CoordinatorMessage MakeAssign(
    const v1::Job& job, int rank, int world_size,
    const std::string& rendezvous_address,
    const std::optional<v1::CheckpointInfo>& resume);

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_PLACEMENT_H_
