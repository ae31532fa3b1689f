// Coordinator: the JobService side (submit, get, list, cancel, watch,
// checkpoints, workers).
#include <algorithm>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "proto/validation/spec_validation.h"
#include "server/core/coordinator.h"
#include "server/core/fleet_paths.h"
#include "server/core/job_state.h"
#include "server/core/proto_time.h"

namespace lemo::server {
namespace {

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 500;

absl::Status JobNotFound(const std::string& job_id) {
  return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
}

bool Matches(const v1::Job& job, const v1::ListJobsRequest& r) {
  if (r.states_size() > 0 && std::find(r.states().begin(), r.states().end(),
                                       job.state()) == r.states().end()) {
    return false;
  }
  for (const auto& [key, value] : r.labels()) {
    auto it = job.spec().labels().find(key);
    if (it == job.spec().labels().end() || it->second != value) return false;
  }
  return absl::StrContains(job.spec().display_name(),
                           r.display_name_contains());
}

}  // namespace

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
        CheckSpecPathsAgainstFleet(spec, registry_.Registrations()));
  }
  LEMO_ASSIGN_OR_RETURN(v1::JobSpec normalized, proto::NormalizeJobSpec(spec));
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
  absl::BitGen gen;
  std::string id;
  do {
    id = absl::StrFormat("job-%012x", absl::Uniform<uint64_t>(gen) >> 16);
  } while (jobs_.contains(id));
  v1::Job job;
  job.set_id(id);
  job.set_owner(caller.name);
  *job.mutable_spec() = std::move(normalized);
  *job.mutable_create_time() = ToProtoTime(absl::Now());
  std::vector<v1::JobEvent> events;
  LEMO_RETURN_IF_ERROR(
      AddStateChange(&job, v1::QUEUED, "submitted", nullptr, &events));
  LEMO_RETURN_IF_ERROR(Persist(job, std::move(events)));
  position_[id] = static_cast<int64_t>(order_.size());
  order_.push_back(id);
  ScheduleLocked();
  return *FindJob(id);
}

absl::StatusOr<v1::Job> Coordinator::GetJob(const Principal& caller,
                                            const std::string& job_id) {
  std::shared_ptr<const v1::Job> job = ViewJob(job_id);
  if (job == nullptr || !MayAccessJob(caller, *job)) return JobNotFound(job_id);
  return *job;
}

absl::StatusOr<v1::ListJobsResponse> Coordinator::ListJobs(
    const Principal& caller, const v1::ListJobsRequest& request) {
  LEMO_RETURN_IF_ERROR(
      RequireRole(caller, Role::kClient, /*admin_too=*/true, "list jobs"));
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError("page_size: must be >= 0");
  }
  int page_size = request.page_size() == 0
                      ? kDefaultPageSize
                      : std::min(request.page_size(), kMaxPageSize);
  absl::MutexLock lock(&mu_);
  // The token is the submission index of the next (older) job to look at:
  // newest first, and stable while new jobs arrive.
  int64_t next = static_cast<int64_t>(order_.size()) - 1;
  if (!request.page_token().empty()) {
    if (!absl::SimpleAtoi(request.page_token(), &next) || next < 0 ||
        next >= static_cast<int64_t>(order_.size())) {
      return absl::InvalidArgumentError(
          "page_token: not a token ListJobs returned");
    }
  }
  v1::ListJobsResponse out;
  for (; next >= 0 && out.jobs_size() < page_size; --next) {
    const v1::Job& job = jobs_[order_[next]];
    if (MayAccessJob(caller, job) && Matches(job, request)) {
      *out.add_jobs() = job;
    }
  }
  if (next >= 0) out.set_next_page_token(absl::StrCat(next));
  return out;
}

absl::StatusOr<v1::Job> Coordinator::Cancel(const Principal& caller,
                                            const std::string& job_id,
                                            const std::string& reason) {
  LEMO_RETURN_IF_ERROR(
      RequireRole(caller, Role::kClient, /*admin_too=*/true, "cancel jobs"));
  absl::MutexLock lock(&mu_);
  v1::Job* found = FindJob(job_id);
  if (found == nullptr || !MayAccessJob(caller, *found)) {
    return JobNotFound(job_id);
  }
  if (IsTerminal(found->state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " is already ", StateName(found->state())));
  }
  if (found->state() == v1::CANCELLING) return *found;
  std::string message = reason.empty() ? "cancelled by client" : reason;
  v1::Job job = *found;
  std::vector<v1::JobEvent> events;
  bool has_ranks = HoldsWorkers(job.state());
  LEMO_RETURN_IF_ERROR(
      AddStateChange(&job, has_ranks ? v1::CANCELLING : v1::CANCELLED, message,
                     nullptr, &events));
  LEMO_RETURN_IF_ERROR(Persist(job, std::move(events)));
  if (has_ranks && CancelRanks(job, message) == 0) {
    LEMO_RETURN_IF_ERROR(MaybeFinishCancel(job_id));
  }
  return *FindJob(job_id);
}

absl::StatusOr<std::unique_ptr<JobWatcher>> Coordinator::Watch(
    const Principal& caller, const v1::WatchJobRequest& request) {
  LEMO_RETURN_IF_ERROR(
      RequireRole(caller, Role::kClient, /*admin_too=*/true, "watch jobs"));
  if (request.from_sequence() < 0) {
    return absl::InvalidArgumentError("from_sequence: must be >= 0");
  }
  absl::MutexLock lock(&mu_);
  v1::Job* job = FindJob(request.job_id());
  if (job == nullptr || !MayAccessJob(caller, *job)) {
    return JobNotFound(request.job_id());
  }
  int64_t next = 1;
  if (request.from_sequence() > 0) {
    next = request.from_sequence();
  } else if (request.history() == v1::WatchJobRequest::NONE) {
    next = job->last_event_sequence() + 1;
  }
  Store* store = store_.get();
  std::string id = request.job_id();
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
    const v1::Job* job = FindJob(job_id);
    if (job == nullptr || !MayAccessJob(caller, *job)) {
      return JobNotFound(job_id);
    }
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
  std::vector<v1::WorkerInfo> workers = registry_.List();
  // The fleet is shared, but which job a worker runs is its owner's business:
  // another tenant's job id must not leak through the worker list.
  for (v1::WorkerInfo& w : workers) {
    if (w.job_id().empty()) continue;
    const v1::Job* job = FindJob(w.job_id());
    if (job == nullptr || !MayAccessJob(caller, *job)) {
      w.clear_job_id();
      w.clear_rank();
      w.clear_epoch();
    }
  }
  return workers;
}

}  // namespace lemo::server
