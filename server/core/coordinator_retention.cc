// Coordinator: retention of finished jobs (--retain-finished-jobs), and the
// NOT_FOUND that says a job was pruned. The per-job event bound
// (--max-events-per-job) is applied where events are committed, in Persist
// (coordinator.cc).
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/core/coordinator.h"

namespace lemo::server {

absl::Status Coordinator::PruneFinished(const std::string& keep) {
  for (const std::string& id : jobs_.FinishedBeyond(
           static_cast<size_t>(options_.retain_finished_jobs))) {
    if (id == keep) continue;
    // Files first: a crash after it leaves a row that the next start prunes
    // again, never files no row points to.
    LEMO_RETURN_IF_ERROR(checkpoints_->RemoveJob(id),
                         absl::StrCat("pruning job ", id));
    Store::Mutation m;
    m.remove_jobs.push_back(id);
    LEMO_RETURN_IF_ERROR(store_->Commit(m), absl::StrCat("pruning job ", id));
    ++pruned_by_state_[jobs_.Find(id)->state()];
    jobs_.Remove(id);
  }
  return absl::OkStatus();
}

absl::Status Coordinator::JobNotFound(const Principal& caller,
                                      const std::string& job_id) {
  if (std::optional<std::string> owner = jobs_.PrunedOwner(job_id)) {
    v1::Job pruned;
    pruned.set_id(job_id);
    pruned.set_owner(*owner);
    // Only its owner (or an admin) learns it existed.
    if (caller.role != Role::kWorker && MayAccessJob(caller, pruned)) {
      return absl::NotFoundError(
          absl::StrCat("job ", job_id,
                       " not found: it finished and was pruned (the "
                       "coordinator keeps the newest ",
                       options_.retain_finished_jobs,
                       " finished jobs, --retain-finished-jobs)"));
    }
  }
  return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
}

}  // namespace lemo::server
