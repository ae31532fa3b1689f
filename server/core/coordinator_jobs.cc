// Coordinator: the JobService side (submit, get, list, cancel, watch,
// checkpoints, workers).
#include <optional>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "proto/validation/spec_validation.h"
#include "server/core/coordinator.h"
#include "server/core/fleet_paths.h"
#include "server/core/job_fit.h"
#include "server/core/job_state.h"
#include "server/core/proto_time.h"

namespace lemo::server {

absl::StatusOr<v1::Job> Coordinator::Submit(const Principal& caller,
                                            const v1::JobSpec& spec) {
  LEMO_RETURN_IF_ERROR(
      RequireRole(caller, Role::kClient, /*admin_too=*/true, "submit jobs"));
  const size_t spec_bytes = spec.ByteSizeLong();
  if (static_cast<int64_t>(spec_bytes) > options_.max_spec_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec: ", spec_bytes, " bytes, more than the coordinator's limit of ",
        options_.max_spec_bytes, " (--max-spec-bytes)"));
  }
  {
    // Before normalizing, which reads model.path's config.json when the
    // coordinator can: a path under no worker's roots is never opened here.
    absl::MutexLock lock(&mu_);
    LEMO_RETURN_IF_ERROR(
        CheckSpecPathsAgainstFleet(spec, sessions_.registry().Registrations()));
  }
  // NormalizeJobSpec's checks, the config.json read done apart so that its
  // text gives the job's model shape for the planner without a second read.
  proto::SpecCheckOptions no_files;
  no_files.check_model_config = false;
  LEMO_ASSIGN_OR_RETURN(v1::JobSpec normalized,
                        proto::NormalizeJobSpec(spec, no_files));
  LEMO_ASSIGN_OR_RETURN(proto::ModelConfigCheck model,
                        proto::CheckModelConfig(normalized));
  std::optional<plan::ModelShape> shape =
      ShapeFromConfigText(model.config_json);
  if (const int cap = options_.max_checkpoints_per_job; cap > 0) {
    v1::CheckpointPolicy* policy = normalized.mutable_checkpoint();
    if (policy->keep_last() > cap) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.checkpoint.keep_last: ", policy->keep_last(),
                       ", more than the coordinator keeps per job (", cap,
                       ", --max-checkpoints-per-job)"));
    }
    // "Keep all" is bounded too: every checkpoint is a full adapter plus
    // optimizer state on the coordinator's disk.
    if (policy->keep_last() == 0) policy->set_keep_last(cap);
  }
  // New work is refused while the data dir's disk is below the reserve the
  // running jobs' events and checkpoints need: a clear error now, rather than
  // a job stored on the last bytes that then cannot record its progress.
  LEMO_ASSIGN_OR_RETURN(int64_t free, FreeBytes(options_.data_dir));
  if (free < options_.min_free_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the coordinator's disk is full: ", free, " bytes free on --data-dir ",
        options_.data_dir, ", below the ", options_.min_free_bytes,
        " it keeps (--min-free-bytes); no job is accepted until space is "
        "freed"));
  }
  absl::MutexLock lock(&mu_);
  // A job no registered worker's device can hold is refused now, with the
  // breakdown, rather than queued forever (docs/coordinator.md).
  if (shape.has_value()) {
    LEMO_RETURN_IF_ERROR(CheckFitsFleet(normalized, *shape,
                                        sessions_.registry().Registrations()));
  }
  absl::BitGen gen;
  std::string id;
  do {
    id = absl::StrFormat("job-%012x", absl::Uniform<uint64_t>(gen) >> 16);
  } while (jobs_.Contains(id));
  v1::Job job;
  job.set_id(id);
  job.set_owner(caller.name);
  *job.mutable_spec() = std::move(normalized);
  *job.mutable_create_time() = ToProtoTime(absl::Now());
  std::vector<v1::JobEvent> events;
  LEMO_RETURN_IF_ERROR(
      JobTable::Transition(&job, v1::QUEUED, "submitted", nullptr, &events));
  // Persist adds it to the table, last in FIFO order, once committed.
  LEMO_RETURN_IF_ERROR(Persist(job, std::move(events)));
  shapes_.Set(id, std::move(shape));
  ScheduleLocked();
  return *jobs_.Find(id);
}

absl::StatusOr<v1::Job> Coordinator::GetJob(const Principal& caller,
                                            const std::string& job_id) {
  std::shared_ptr<const v1::Job> job = ViewJob(job_id);
  if (job == nullptr || !MayAccessJob(caller, *job)) {
    return JobNotFound(caller, job_id);
  }
  return *job;
}

absl::StatusOr<ListJobsPage> Coordinator::ListJobs(const Principal& caller,
                                                   const ListJobsQuery& query) {
  LEMO_RETURN_IF_ERROR(
      RequireRole(caller, Role::kClient, /*admin_too=*/true, "list jobs"));
  absl::MutexLock lock(&mu_);
  return jobs_.List(query, [&caller](const v1::Job& job) {
    return MayAccessJob(caller, job);
  });
}

absl::StatusOr<v1::Job> Coordinator::Cancel(const Principal& caller,
                                            const std::string& job_id,
                                            const std::string& reason) {
  LEMO_RETURN_IF_ERROR(
      RequireRole(caller, Role::kClient, /*admin_too=*/true, "cancel jobs"));
  absl::MutexLock lock(&mu_);
  LEMO_ASSIGN_OR_RETURN(const v1::Job* found, FindFor(caller, job_id));
  if (IsTerminal(found->state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " is already ", StateName(found->state())));
  }
  if (found->state() == v1::CANCELLING) return *found;
  std::string message = reason.empty() ? "cancelled by client" : reason;
  const bool has_ranks = HoldsWorkers(found->state());
  const int64_t epoch = found->epoch();
  LEMO_RETURN_IF_ERROR(
      Move(*found, has_ranks ? v1::CANCELLING : v1::CANCELLED, message));
  if (has_ranks && sessions_.CancelTask(job_id, epoch, message) == 0) {
    LEMO_RETURN_IF_ERROR(MaybeFinishCancel(job_id));
  }
  return *jobs_.Find(job_id);
}

absl::StatusOr<std::unique_ptr<JobWatcher>> Coordinator::Watch(
    const Principal& caller, const WatchQuery& query) {
  LEMO_RETURN_IF_ERROR(
      RequireRole(caller, Role::kClient, /*admin_too=*/true, "watch jobs"));
  if (query.from_sequence < 0) {
    return absl::InvalidArgumentError("from_sequence: must be >= 0");
  }
  absl::MutexLock lock(&mu_);
  LEMO_ASSIGN_OR_RETURN(const v1::Job* job, FindFor(caller, query.job_id));
  int64_t next = 1;
  if (query.from_sequence > 0) {
    next = query.from_sequence;
  } else if (query.only_new_events) {
    next = job->last_event_sequence() + 1;
  }
  Store* store = store_.get();
  std::string id = query.job_id;
  // A watcher delivers only what GetJob already shows. Persist commits an
  // event to the store before it updates the view GetJob reads, so a watcher
  // reading the store in between could end on SUCCEEDED while GetJob still
  // said RUNNING (the ServiceTest flake). Live events are published after the
  // view, so they never need the cap.
  LEMO_ASSIGN_OR_RETURN(std::shared_ptr<Subscription> subscription,
                        hub_.Subscribe(id));
  return std::make_unique<JobWatcher>(
      std::move(subscription),
      [this, store, id](int64_t from, int limit)
          -> absl::StatusOr<std::vector<v1::JobEvent>> {
        std::shared_ptr<const v1::Job> view = ViewJob(id);
        const int64_t visible =
            view == nullptr ? 0 : view->last_event_sequence();
        if (from > visible) return std::vector<v1::JobEvent>();
        LEMO_ASSIGN_OR_RETURN(std::vector<v1::JobEvent> events,
                              store->ReadEvents(id, from, limit));
        while (!events.empty() && events.back().sequence() > visible) {
          events.pop_back();
        }
        return events;
      },
      next);
}

bool Coordinator::WatchDone(const std::string& job_id, int64_t next_sequence) {
  // Every watcher asks this 4 times a second: it must not queue behind mu_.
  std::shared_ptr<const v1::Job> job = ViewJob(job_id);
  return job == nullptr || (IsTerminal(job->state()) &&
                            next_sequence > job->last_event_sequence());
}

absl::StatusOr<std::vector<v1::CheckpointInfo>> Coordinator::ListCheckpoints(
    const Principal& caller, const std::string& job_id) {
  {
    absl::MutexLock lock(&mu_);
    LEMO_RETURN_IF_ERROR(FindFor(caller, job_id).status());
  }
  return store_->ListCheckpoints(job_id);
}

absl::Status Coordinator::DownloadCheckpoint(
    const Principal& caller, const std::string& job_id,
    const std::string& checkpoint_id,
    const std::function<bool(const v1::CheckpointChunk&)>& sink) {
  LEMO_ASSIGN_OR_RETURN(std::vector<v1::CheckpointInfo> all,
                        ListCheckpoints(caller, job_id));
  if (all.empty()) {
    return absl::NotFoundError(
        absl::StrCat("job ", job_id, " has no checkpoint"));
  }
  const v1::CheckpointInfo* info =
      checkpoint_id.empty() ? &all.back() : nullptr;
  for (const v1::CheckpointInfo& c : all) {
    if (c.checkpoint_id() == checkpoint_id) info = &c;
  }
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", checkpoint_id,
                                            " of job ", job_id, " not found"));
  }
  return checkpoints_->Download(*info, sink);
}

absl::StatusOr<std::vector<v1::WorkerInfo>> Coordinator::ListWorkers(
    const Principal& caller) {
  LEMO_RETURN_IF_ERROR(
      RequireRole(caller, Role::kClient, /*admin_too=*/true, "list workers"));
  absl::MutexLock lock(&mu_);
  std::vector<v1::WorkerInfo> workers = sessions_.registry().List();
  // The fleet is shared, but which job a worker runs is its owner's business:
  // another tenant's job id must not leak through the worker list.
  for (v1::WorkerInfo& w : workers) {
    if (w.job_id().empty()) continue;
    const v1::Job* job = jobs_.Find(w.job_id());
    if (job == nullptr || !MayAccessJob(caller, *job)) {
      w.clear_job_id();
      w.clear_rank();
      w.clear_epoch();
    }
  }
  return workers;
}

}  // namespace lemo::server
