// Coordinator: the WorkerService side (sessions, task status, metrics, logs,
// checkpoints).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/core/coordinator.h"
#include "server/core/job_state.h"
#include "server/core/proto_time.h"

namespace lemo::server {
namespace {

// Longer log lines are cut: one chatty rank must not bloat every watcher and
// the store.
constexpr size_t kMaxLogLine = 4096;

}  // namespace

absl::StatusOr<Coordinator::Session> Coordinator::Connect(
    const Principal& caller, const v1::Register& reg) {
  absl::MutexLock lock(&mu_);
  LEMO_ASSIGN_OR_RETURN(WorkerSessions::Opened opened,
                        sessions_.Open(caller, reg, absl::Now()));
  if (opened.lost.has_value()) {
    // A worker that runs nothing may never have received an Assign that the
    // previous coordinator stored before it died: sent again, same epoch,
    // no restart spent. Otherwise the worker restarted and the rank is lost.
    const bool resent = !reg.has_running_task() &&
                        ResendRecoveredAssign(reg.worker_id(), *opened.lost);
    if (!resent) OnRankLost(reg.worker_id(), *opened.lost);
  }
  ScheduleLocked();
  return Session{reg.worker_id(), opened.session, opened.outbox,
                 opened.waiting};
}

void Coordinator::Disconnect(const Session& session) {
  absl::MutexLock lock(&mu_);
  sessions_.Disconnect(session.worker_id, session.id);
}

absl::Status Coordinator::OnWorkerMessage(const Session& session,
                                          const v1::WorkerMessage& message) {
  // Raised before waiting for mu_ and lowered only after Touch, under mu_:
  // Tick never sees this worker as silent while its message waits.
  if (session.waiting) session.waiting->fetch_add(1);
  absl::MutexLock lock(&mu_);
  absl::Status touched =
      sessions_.Touch(session.worker_id, session.id, absl::Now());
  if (session.waiting) session.waiting->fetch_sub(1);
  LEMO_RETURN_IF_ERROR(touched);
  switch (message.kind_case()) {
    case v1::WorkerMessage::kHeartbeat:
      sessions_.Heartbeat(session.worker_id, message.heartbeat());
      return absl::OkStatus();
    case v1::WorkerMessage::kMetrics:
      return OnMetric(session.worker_id, message.metrics());
    case v1::WorkerMessage::kTaskStatus:
      return OnTaskStatus(session.worker_id, message.task_status());
    case v1::WorkerMessage::kLog:
      return OnLog(session.worker_id, message.log());
    case v1::WorkerMessage::kRegister:
      return absl::InvalidArgumentError("register: sent twice on one stream");
    default:
      return absl::InvalidArgumentError("worker message: empty");
  }
}

absl::Status Coordinator::OnMetric(const std::string& worker_id,
                                   const v1::MetricReport& report) {
  const v1::Job* found = jobs_.Find(report.job_id());
  const std::optional<int32_t> rank =
      sessions_.RankFor(worker_id, report.job_id(), report.epoch());
  if (found == nullptr || found->epoch() != report.epoch() || !rank) {
    sessions_.Fence(worker_id, report.job_id(), report.epoch());
    return absl::OkStatus();  // Fenced: an older epoch.
  }
  // A rank still finishing a step of a gang that is restarting: its cancel
  // is on the way, and the restart resumes from a checkpoint before it.
  if (found->state() == v1::RESTARTING) return absl::OkStatus();
  v1::Job job = *found;
  v1::JobEvent e;
  *e.mutable_metric() = report.sample();
  v1::MetricSample* sample = e.mutable_metric();
  sample->set_rank(*rank);
  // Watchers draw progress and ETA from every sample; fill what a terse worker
  // left out.
  if (sample->total_steps() == 0) sample->set_total_steps(job.spec().steps());
  if (!sample->has_time()) *sample->mutable_time() = ToProtoTime(absl::Now());
  if (*rank == 0) {
    job.set_current_step(report.sample().step());
    *job.mutable_latest_metrics() = e.metric();
  }
  if (*rank >= 0 && *rank < job.ranks_size()) {
    job.mutable_ranks(*rank)->set_step(report.sample().step());
  }
  return Persist(std::move(job), {std::move(e)});
}

absl::Status Coordinator::OnLog(const std::string& worker_id,
                                const v1::WorkerLog& log) {
  const v1::Job* found = jobs_.Find(log.job_id());
  const std::optional<int32_t> rank =
      sessions_.RankFor(worker_id, log.job_id(), log.epoch());
  if (found == nullptr || !rank) return absl::OkStatus();
  v1::JobEvent e;
  *e.mutable_log() = log.line();
  e.mutable_log()->set_worker_id(worker_id);
  e.mutable_log()->set_rank(*rank);
  if (e.log().text().size() > kMaxLogLine)
    e.mutable_log()->mutable_text()->resize(kMaxLogLine);
  return Persist(*found, {std::move(e)});
}

absl::Status Coordinator::OnTaskStatus(const std::string& worker_id,
                                       const v1::TaskStatus& st) {
  const std::optional<int32_t> held =
      sessions_.RankFor(worker_id, st.job_id(), st.epoch());
  if (!held) {
    if (st.state() == v1::RUNNING) {
      sessions_.Fence(worker_id, st.job_id(), st.epoch());
    }
    return absl::OkStatus();  // Fenced: an older epoch.
  }
  const int32_t rank = *held;
  const v1::Job* found = jobs_.Find(st.job_id());
  bool current = found != nullptr && found->epoch() == st.epoch();
  if (current && rank >= 0 && rank < found->ranks_size()) {
    // The per-rank view (lemoctl get): committed with whatever follows.
    v1::Job job = *found;
    job.mutable_ranks(rank)->set_state(st.state());
    job.mutable_ranks(rank)->set_step(
        std::max(job.ranks(rank).step(), st.step()));
    jobs_.Set(std::move(job)).IgnoreError();
    found = jobs_.Find(st.job_id());
  }
  if (st.state() == v1::RUNNING) {
    sessions_.MarkRunning(worker_id);
    if (!current) return absl::OkStatus();
    if (found->state() != v1::SCHEDULED ||
        !sessions_.AllRunning(
            {found->worker_ids().begin(), found->worker_ids().end()})) {
      return Persist(*found, {});
    }
    return Move(*found, v1::RUNNING, "every rank started");
  }
  if (!IsTerminal(st.state())) {
    return absl::InvalidArgumentError(
        "task_status.state: RUNNING, SUCCEEDED, FAILED or CANCELLED");
  }
  // The worker is done with this rank either way.
  sessions_.Release(worker_id, st.job_id(), st.epoch());
  absl::Status s = absl::OkStatus();
  if (current && HoldsWorkers(found->state())) {
    if (st.state() == v1::SUCCEEDED && rank == 0) {
      s = Succeed(st.job_id(), st.step());
    } else if (found->state() == v1::CANCELLING) {
      // Whatever a rank says while stopping, it stopped.
      s = MaybeFinishCancel(st.job_id());
    } else if (st.state() == v1::FAILED) {
      v1::Failure failure;
      failure.set_reason(st.failure().reason() == v1::FAILURE_REASON_UNSPECIFIED
                             ? v1::INTERNAL
                             : st.failure().reason());
      failure.set_message(absl::StrCat("rank ", rank, " on worker ", worker_id,
                                       ": ", st.failure().message()));
      failure.set_rank(rank);
      if (RestartsTheGang(failure.reason())) {
        s = RestartGang(*found, failure);
      } else {
        s = Fail(st.job_id(), failure.reason(), failure.message(), rank);
      }
    } else if (st.state() == v1::SUCCEEDED) {
      // A rank other than 0 finished: rank 0 (which writes the final
      // checkpoint) decides; the per-rank view above keeps it.
      s = Persist(*found, {});
    } else if (st.state() == v1::CANCELLED) {
      s = Fail(st.job_id(), v1::INTERNAL,
               absl::StrCat("rank ", rank, " stopped without being cancelled"),
               rank);
    }
  } else if (current) {
    // The job ended or is restarting; keep this rank's last word in its view.
    s = Persist(*found, {});
  }
  ScheduleLocked();
  return s;
}

absl::Status Coordinator::Succeed(const std::string& job_id, int64_t step) {
  // Rank 0 owns the final checkpoint, so its success is the job's.
  v1::Job job = *jobs_.Find(job_id);
  job.set_current_step(std::max(job.current_step(), step));
  std::vector<v1::JobEvent> events;
  if (job.state() == v1::SCHEDULED) {
    LEMO_RETURN_IF_ERROR(JobTable::Transition(
        &job, v1::RUNNING, "every rank started", nullptr, &events));
  }
  LEMO_RETURN_IF_ERROR(
      JobTable::Transition(&job, v1::SUCCEEDED, "finished", nullptr, &events));
  return Persist(std::move(job), std::move(events));
}

absl::StatusOr<std::unique_ptr<CheckpointStore::Upload>>
Coordinator::BeginUpload(const Principal& caller,
                         const v1::UploadCheckpointRequest& first) {
  LEMO_RETURN_IF_ERROR(RequireRole(caller, Role::kWorker, /*admin_too=*/false,
                                   "upload checkpoints"));
  {
    absl::MutexLock lock(&mu_);
    LEMO_ASSIGN_OR_RETURN(const v1::Job* job, FindFor(caller, first.job_id()));
    if (job->epoch() != first.epoch() || IsTerminal(job->state())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", first.job_id(), " epoch ", first.epoch(), " is not current (",
          StateName(job->state()), ", epoch ", job->epoch(), ")"));
    }
    if (!caller.any_worker_id &&
        !sessions_.RankFor(caller.name, first.job_id(), first.epoch())) {
      return absl::PermissionDeniedError(
          absl::StrCat("worker ", caller.name, " holds no rank of job ",
                       first.job_id(), " epoch ", first.epoch()));
    }
  }
  return checkpoints_->BeginUpload(first);
}

absl::StatusOr<v1::CheckpointInfo> Coordinator::CommitUpload(
    CheckpointStore::Upload& upload) {
  absl::MutexLock lock(&mu_);
  // Checked before the rename, and under the lock so that an epoch change
  // cannot slip between the check and the rename: a stale rank's commit
  // would otherwise replace, then delete, the directory of the same
  // checkpoint id that the current epoch already stored (its record kept,
  // its bytes gone). Dropping the upload deletes only its staging copy.
  const v1::UploadCheckpointRequest& header = upload.header();
  const v1::Job* found = jobs_.Find(header.job_id());
  if (found == nullptr || found->epoch() != header.epoch() ||
      IsTerminal(found->state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", header.checkpoint_id(), " of job ", header.job_id(),
        " epoch ", header.epoch(), ": a stale epoch (the job moved on)"));
  }
  LEMO_ASSIGN_OR_RETURN(v1::CheckpointInfo info, upload.Commit());
  *info.mutable_create_time() = ToProtoTime(absl::Now());
  LEMO_ASSIGN_OR_RETURN(std::vector<v1::CheckpointInfo> all,
                        store_->ListCheckpoints(info.job_id()));
  all.erase(std::remove_if(all.begin(), all.end(),
                           [&](const v1::CheckpointInfo& c) {
                             return c.checkpoint_id() == info.checkpoint_id();
                           }),
            all.end());
  Store::Mutation m;
  m.add_checkpoints.push_back(info);
  v1::Job job = *found;
  job.set_latest_checkpoint_id(info.checkpoint_id());
  for (const v1::CheckpointInfo& c : all) {
    if (c.step() > info.step()) job.set_latest_checkpoint_id(c.checkpoint_id());
  }
  // keep_last: the oldest go, never the newest.
  int keep = job.spec().checkpoint().keep_last();
  int excess = keep > 0 ? static_cast<int>(all.size()) + 1 - keep : 0;
  for (int i = 0; i < excess && i < static_cast<int>(all.size()); ++i) {
    m.remove_checkpoints.emplace_back(info.job_id(), all[i].checkpoint_id());
  }
  v1::JobEvent e;
  *e.mutable_checkpoint() = info;
  LEMO_RETURN_IF_ERROR(Persist(std::move(job), {std::move(e)}, m));
  for (const auto& [job_id, id] : m.remove_checkpoints) {
    checkpoints_->Remove(job_id, id).IgnoreError();
  }
  return info;
}

}  // namespace lemo::server
