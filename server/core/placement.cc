#include "server/core/placement.h"

#include <algorithm>

#include "server/core/fleet_paths.h"

namespace lemo::server {

PlacementPlan PlanPlacements(const JobTable& jobs,
                             const WorkerRegistry& workers, JobShapes* shapes) {
  PlacementPlan plan;
  std::vector<v1::Register> fleet;
  // Described once per pass, when a waiting job has a plan.
  std::optional<std::vector<PlannableWorker>> planned;
  for (const v1::Job* job : jobs.Waiting()) {
    const v1::ResourceSpec& r = job->spec().resources();
    plan.pending.push_back(PendingJob{
        job->id(), job->spec().priority(), jobs.Position(job->id()),
        r.device_kind(), r.world_size(), r.min_device_memory_bytes()});
    // A rank never goes to a worker whose roots would make it refuse the job
    // (in a fleet with different roots per worker, another one may hold it).
    if (fleet.empty()) fleet = workers.Registrations();
    for (const v1::Register& w : fleet) {
      if (!CheckSpecPathsAgainstFleet(job->spec(), {w}).ok()) {
        plan.pending.back().excluded_workers.insert(w.worker_id());
      }
    }
    // Nor to a worker whose device the job's plan does not fit: it would
    // run out of memory there.
    const std::optional<plan::ModelShape>* shape =
        shapes != nullptr ? &shapes->For(*job) : nullptr;
    if (shape == nullptr || !shape->has_value()) continue;
    if (!planned.has_value()) planned = PlannableWorkers(fleet);
    for (const WorkerFit& f : PlanOnWorkers(job->spec(), **shape, *planned)) {
      if (!f.plan.fits) {
        plan.pending.back().too_small_workers.insert(f.worker_id);
      }
    }
  }
  if (plan.pending.empty()) return plan;
  plan.placements =
      Schedule(plan.pending, workers.FreeSlots(), workers.ConnectedSlots());
  for (Placement& p : plan.placements) {
    if (p.worker_ids.size() < 2) continue;
    // Rank 0 hosts the group's store: a worker that advertises none (an
    // older build) must not get it while another one can.
    auto hosts_store = [&workers](const std::string& id) {
      const WorkerRecord* w = workers.Find(id);
      return w != nullptr && !w->registration.rendezvous_address().empty();
    };
    auto first =
        std::find_if(p.worker_ids.begin(), p.worker_ids.end(), hosts_store);
    if (first != p.worker_ids.end())
      std::iter_swap(p.worker_ids.begin(), first);
  }
  return plan;
}

std::vector<WaitNote> WaitNotes(const std::vector<PendingJob>& pending,
                                const JobTable& jobs,
                                const WorkerRegistry& workers) {
  std::vector<WaitNote> notes;
  const std::vector<WorkerSlot> free = workers.FreeSlots();
  const std::vector<WorkerSlot> connected = workers.ConnectedSlots();
  for (const PendingJob& p : pending) {
    const v1::Job* job = jobs.Find(p.job_id);
    if (job == nullptr ||
        (job->state() != v1::QUEUED && job->state() != v1::RESTARTING)) {
      continue;
    }
    // With no worker connected at all (a coordinator that just started, its
    // workers still registering) there is no fleet to judge the job by.
    notes.push_back(WaitNote{p.job_id, WaitReason(p, free, connected),
                             !connected.empty() && NeverFits(p, connected)});
  }
  return notes;
}

v1::CoordinatorMessage MakeAssign(
    const v1::Job& job, int rank, int world_size,
    const std::string& rendezvous_address,
    const std::optional<v1::CheckpointInfo>& resume) {
  v1::CoordinatorMessage msg;
  v1::Assign* assign = msg.mutable_assign();
  assign->set_job_id(job.id());
  assign->set_epoch(job.epoch());
  *assign->mutable_spec() = job.spec();
  assign->set_rank(rank);
  assign->set_world_size(world_size);
  assign->set_rendezvous_address(rendezvous_address);
  if (resume.has_value()) {
    v1::ResumeFrom* r = assign->mutable_resume();
    r->set_checkpoint_id(resume->checkpoint_id());
    r->set_step(resume->step());
    *r->mutable_checkpoint() = *resume;
  }
  return msg;
}

}  // namespace lemo::server
