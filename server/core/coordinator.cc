// Coordinator: construction, recovery, persistence, the scheduling pass and
// what a lost or failed rank does to its job. The client API is in
// coordinator_jobs.cc, the worker API in coordinator_workers.cc, retention in
// coordinator_retention.cc.
#include "server/core/coordinator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fault_point.h"
#include "common/status_macros.h"
#include "server/core/job_state.h"
#include "server/core/placement.h"
#include "server/core/proto_time.h"

namespace lemo::server {
namespace {

// Pruned job ids remembered even under a small --retain-finished-jobs.
constexpr int kMinRememberedPruned = 1000;

}  // namespace

namespace {

// Test-only crash points (common/fault_point.h) on both sides of a job's store
// commit: "<when><NEW STATE>" for a state change, "<when>checkpoint" for a
// recorded checkpoint, e.g. "job.persisted.RUNNING".
void JobFaultPoints(absl::string_view when,
                    const std::vector<v1::JobEvent>& events) {
  for (const v1::JobEvent& e : events) {
    if (e.has_state_change()) {
      FaultPoint(when, v1::JobState_Name(e.state_change().to()));
    }
    if (e.has_checkpoint()) FaultPoint(when, "checkpoint");
  }
}

}  // namespace

Coordinator::Coordinator(const Options& options)
    : options_(options),
      hub_(EventHub::Options{options.watcher_buffer_events,
                             options.max_watchers_per_job}),
      sessions_(WorkerSessions::Options{options.worker_timeout,
                                        options.heartbeat_interval}),
      // As many pruned ids as retained jobs, at least 1000 (a few dozen KB):
      // asking for a recently pruned job says why it is gone, and memory
      // stays bounded.
      jobs_(static_cast<size_t>(
          std::max(options.retain_finished_jobs, kMinRememberedPruned))) {}

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(
    const Options& options) {
  if (options.data_dir.empty()) {
    return absl::InvalidArgumentError("data_dir: required");
  }
  if (options.retain_finished_jobs < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "retain_finished_jobs: must be >= 1 (--retain-finished-jobs), got ",
        options.retain_finished_jobs,
        "; 0 would delete every job the moment it ends"));
  }
  if (options.max_events_per_job < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_events_per_job: must be >= 0 (0: no limit; "
                     "--max-events-per-job), got ",
                     options.max_events_per_job));
  }
  std::unique_ptr<Coordinator> c(new Coordinator(options));
  LEMO_ASSIGN_OR_RETURN(c->store_, Store::Create({options.data_dir}));
  CheckpointStore::Options checkpoints;
  checkpoints.root = options.data_dir + "/checkpoints";
  checkpoints.max_checkpoint_bytes = options.max_checkpoint_bytes;
  checkpoints.min_free_bytes = options.min_free_bytes;
  LEMO_ASSIGN_OR_RETURN(c->checkpoints_, CheckpointStore::Create(checkpoints));
  LEMO_RETURN_IF_ERROR(c->Recover(), "recovering from " + options.data_dir);
  if (options.tick_interval > absl::ZeroDuration()) {
    c->loop_ = std::thread([p = c.get()] { p->Loop(); });
  }
  return c;
}

Coordinator::~Coordinator() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (loop_.joinable()) loop_.join();
  hub_.Shutdown();
  absl::MutexLock lock(&mu_);
  sessions_.CloseAll();
}

absl::Status Coordinator::Recover() {
  LEMO_ASSIGN_OR_RETURN(std::vector<v1::Job> jobs, store_->LoadJobs());
  absl::MutexLock lock(&mu_);
  absl::Time now = absl::Now();
  for (v1::Job& job : jobs) {
    // Ranks of jobs that held workers get until the worker timeout to
    // re-register.
    if (HoldsWorkers(job.state())) {
      for (int rank = 0; rank < job.worker_ids_size(); ++rank) {
        sessions_.registry().ExpectWorker(
            job.worker_ids(rank),
            Assignment{job.id(), job.epoch(), rank, job.state() == v1::RUNNING,
                       /*recovered=*/true},
            now);
      }
    }
    LEMO_RETURN_IF_ERROR(jobs_.Add(std::move(job)));
  }
  // A lower --retain-finished-jobs than the last run, or a crash between a
  // job's end and its pruning: the store is brought within the bound now.
  return PruneFinished();
}

void Coordinator::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto stopping = [this]()
                          ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping),
                               options_.tick_interval)) {
        return;
      }
    }
    Tick();
  }
}

void Coordinator::Tick() {
  absl::MutexLock lock(&mu_);
  for (const WorkerRecord& lost :
       sessions_.registry().ExpireLost(absl::Now())) {
    if (lost.assignment.has_value()) {
      OnRankLost(lost.registration.worker_id(), *lost.assignment);
    }
  }
  ScheduleLocked();
}

std::shared_ptr<const v1::Job> Coordinator::ViewJob(const std::string& job_id) {
  // JobTable::View takes only the table's view lock, never mu_.
  return jobs_.View(job_id);
}

absl::StatusOr<const v1::Job*> Coordinator::FindFor(const Principal& caller,
                                                    const std::string& job_id) {
  const v1::Job* job = jobs_.Find(job_id);
  if (job == nullptr || !MayAccessJob(caller, *job)) {
    return JobNotFound(caller, job_id);
  }
  return job;
}

absl::Status Coordinator::Move(v1::Job job, v1::JobState to,
                               const std::string& message,
                               const v1::Failure* failure) {
  std::vector<v1::JobEvent> events;
  LEMO_RETURN_IF_ERROR(
      JobTable::Transition(&job, to, message, failure, &events));
  return Persist(std::move(job), std::move(events));
}

absl::Status Coordinator::Persist(v1::Job job, std::vector<v1::JobEvent> events,
                                  Store::Mutation extra) {
  google::protobuf::Timestamp now = ToProtoTime(absl::Now());
  for (v1::JobEvent& e : events) {
    e.set_job_id(job.id());
    e.set_sequence(job.last_event_sequence() + 1);
    *e.mutable_time() = now;
    job.set_last_event_sequence(e.sequence());
  }
  *job.mutable_update_time() = now;
  bool ended = false;
  bool droppable = false;
  for (const v1::JobEvent& e : events) {
    ended |= e.has_state_change() && IsTerminal(e.state_change().to());
    droppable |= e.has_metric() || e.has_log();
  }
  // Past the bound, each new metric or log event drops the old ones that
  // fell out of the newest max_events_per_job sequence numbers (in the same
  // transaction), so a 1M-step job's event log stays bounded.
  const int64_t max_events = options_.max_events_per_job;
  if (droppable && max_events > 0 && job.last_event_sequence() > max_events) {
    extra.trim_events.emplace(job.id(), job.last_event_sequence() - max_events);
  }
  const std::string id = job.id();
  extra.job = job;
  extra.events = events;
  JobFaultPoints("job.before_persist.", events);
  LEMO_RETURN_IF_ERROR(store_->Commit(extra),
                       absl::StrCat("storing job ", job.id()));
  JobFaultPoints("job.persisted.", events);
  // A new job (Submit) joins the table, last in FIFO order, only once
  // committed.
  if (jobs_.Contains(job.id())) {
    jobs_.Set(std::move(job)).IgnoreError();
  } else {
    LEMO_RETURN_IF_ERROR(jobs_.Add(std::move(job)));
  }
  for (const v1::JobEvent& e : events) hub_.Publish(e);
  // The job that just ended is never pruned here: its caller still reads it.
  // The state change is committed whatever pruning does: a failed prune is
  // retried at the next job end and at start.
  if (ended) {
    shapes_.Forget(id);
    PruneFinished(/*keep=*/id).IgnoreError();
  }
  return absl::OkStatus();
}

void Coordinator::ScheduleLocked() {
  PlacementPlan plan = PlanPlacements(jobs_, sessions_.registry(), &shapes_);
  if (plan.pending.empty()) return;
  for (const Placement& p : plan.placements) {
    // On failure the job stays waiting; a store failure here is retried on
    // the next tick.
    Place(p).IgnoreError();
  }
  // Jobs still waiting say why, once per change of reason: a job the fleet
  // can never hold says so (with a warning in its log) instead of waiting
  // silently, like a Kubernetes pod's "0/3 nodes are available" event.
  for (const WaitNote& note :
       WaitNotes(plan.pending, jobs_, sessions_.registry())) {
    const v1::Job* found = jobs_.Find(note.job_id);
    if (found->state_message() == note.reason) continue;
    v1::Job job = *found;
    job.set_state_message(note.reason);
    if (!note.never_fits) {
      // Derived from the fleet and recomputed on every pass (also after a
      // coordinator restart), so it is shown, not committed: a long queue
      // would otherwise cost one fsync per waiting job whenever a worker
      // frees up. The next committed change of the job stores it anyway.
      jobs_.Set(std::move(job)).IgnoreError();
      continue;
    }
    v1::JobEvent e;
    e.mutable_log()->set_level(v1::LogLine::LEVEL_WARNING);
    e.mutable_log()->set_rank(-1);
    e.mutable_log()->set_text(note.reason);
    Persist(std::move(job), {std::move(e)}).IgnoreError();
  }
}

absl::Status Coordinator::Place(const Placement& placement) {
  const std::vector<std::string>& worker_ids = placement.worker_ids;
  v1::Job job = *jobs_.Find(placement.job_id);
  const bool first_placement = job.state() == v1::QUEUED;
  job.set_epoch(job.epoch() + 1);
  job.clear_worker_ids();
  job.clear_ranks();
  job.clear_state_message();
  for (const std::string& w : worker_ids) {
    v1::RankStatus* r = job.add_ranks();
    r->set_rank(job.worker_ids_size());
    r->set_worker_id(w);
    r->set_state(v1::SCHEDULED);
    job.add_worker_ids(w);
  }
  std::vector<v1::JobEvent> events;
  LEMO_RETURN_IF_ERROR(JobTable::Transition(
      &job, v1::SCHEDULED, "placed on " + absl::StrJoin(worker_ids, ", "),
      nullptr, &events));
  // Resume from the newest checkpoint, if any: ranks restart at its step + 1.
  LEMO_ASSIGN_OR_RETURN(std::optional<v1::CheckpointInfo> resume,
                        LatestCheckpoint(job));
  if (resume.has_value()) {
    for (v1::RankStatus& r : *job.mutable_ranks()) r.set_step(resume->step());
  }
  LEMO_RETURN_IF_ERROR(Persist(job, std::move(events)));
  if (first_placement && options_.on_queue_wait) {
    options_.on_queue_wait(
        absl::ToDoubleSeconds(absl::Now() - FromProtoTime(job.create_time())));
  }
  const std::string rendezvous = sessions_.RendezvousOf(worker_ids[0]);
  const int world = static_cast<int>(worker_ids.size());
  for (int rank = 0; rank < world; ++rank) {
    sessions_.Assign(worker_ids[rank],
                     Assignment{job.id(), job.epoch(), rank, false},
                     MakeAssign(job, rank, world, rendezvous, resume));
  }
  return absl::OkStatus();
}

bool Coordinator::ResendRecoveredAssign(const std::string& worker_id,
                                        const Assignment& held) {
  const v1::Job* job = jobs_.Find(held.job_id);
  if (!held.recovered || held.running || job == nullptr ||
      job->state() != v1::SCHEDULED || job->epoch() != held.epoch) {
    return false;
  }
  // A gang's rank needs rank 0's rendezvous address, known only once rank 0
  // registered with this coordinator.
  const std::string rendezvous =
      job->worker_ids_size() > 0 ? sessions_.RendezvousOf(job->worker_ids(0))
                                 : "";
  if (job->worker_ids_size() > 1 && rendezvous.empty()) return false;
  absl::StatusOr<std::optional<v1::CheckpointInfo>> resume =
      LatestCheckpoint(*job);
  if (!resume.ok()) return false;
  // The worker keeps the rank it held; from now on it is one this process
  // sent.
  return sessions_.Assign(
      worker_id, Assignment{held.job_id, held.epoch, held.rank, false, false},
      MakeAssign(*job, held.rank, job->worker_ids_size(), rendezvous, *resume));
}

absl::StatusOr<std::optional<v1::CheckpointInfo>> Coordinator::LatestCheckpoint(
    const v1::Job& job) {
  std::optional<v1::CheckpointInfo> latest;
  if (job.latest_checkpoint_id().empty()) return latest;
  LEMO_ASSIGN_OR_RETURN(std::vector<v1::CheckpointInfo> all,
                        store_->ListCheckpoints(job.id()));
  for (const v1::CheckpointInfo& c : all) {
    if (c.checkpoint_id() == job.latest_checkpoint_id()) latest = c;
  }
  return latest;
}

absl::Status Coordinator::MaybeFinishCancel(const std::string& job_id) {
  const v1::Job* job = jobs_.Find(job_id);
  if (job == nullptr || job->state() != v1::CANCELLING) return absl::OkStatus();
  if (sessions_.AnyHolds(job_id, job->epoch())) return absl::OkStatus();
  return Move(*job, v1::CANCELLED, "every rank stopped");
}

absl::Status Coordinator::Fail(const std::string& job_id,
                               v1::FailureReason reason,
                               const std::string& message, int32_t rank) {
  const v1::Job& job = *jobs_.Find(job_id);
  // The epoch whose ranks must stop: Move does not change it.
  const int64_t epoch = job.epoch();
  v1::Failure failure;
  failure.set_reason(reason);
  failure.set_message(message);
  failure.set_rank(rank);
  LEMO_RETURN_IF_ERROR(Move(job, v1::FAILED, message, &failure));
  sessions_.CancelTask(job_id, epoch, "job failed: " + message);
  return absl::OkStatus();
}

void Coordinator::OnRankLost(const std::string& worker_id,
                             const Assignment& a) {
  const v1::Job* found = jobs_.Find(a.job_id);
  if (found == nullptr || found->epoch() != a.epoch ||
      !HoldsWorkers(found->state())) {
    return;  // A rank of an older epoch: the job already moved on.
  }
  if (found->state() == v1::CANCELLING) {
    MaybeFinishCancel(a.job_id).IgnoreError();
    return;
  }
  v1::Job job = *found;
  if (a.rank >= 0 && a.rank < job.ranks_size()) {
    job.mutable_ranks(a.rank)->set_state(v1::FAILED);
  }
  v1::Failure failure;
  failure.set_reason(v1::WORKER_LOST);
  failure.set_message(
      absl::StrCat("worker ", worker_id, " (rank ", a.rank, ") lost"));
  failure.set_rank(a.rank);
  RestartGang(std::move(job), failure).IgnoreError();
}

absl::Status Coordinator::RestartGang(v1::Job job, const v1::Failure& failure) {
  if (job.restart_count() >= job.spec().max_restarts()) {
    // Fail() starts from the stored job; keep the rank states shown.
    jobs_.Set(job).IgnoreError();
    return Fail(job.id(), v1::RESTART_BUDGET_EXHAUSTED,
                absl::StrCat(failure.message(), "; all ",
                             job.spec().max_restarts(), " restarts used"),
                failure.rank());
  }
  job.set_restart_count(job.restart_count() + 1);
  const std::string what = failure.message();
  const std::string id = job.id();
  const int64_t epoch = job.epoch();
  LEMO_RETURN_IF_ERROR(Move(std::move(job), v1::RESTARTING, what, &failure));
  // Every other rank of the old epoch stops (a gang restarts whole, from the
  // newest checkpoint, like torchrun's elastic agent); each keeps its worker
  // until it reports, so the next placement never shares a device with it.
  sessions_.CancelTask(id, epoch, what + "; restarting");
  return absl::OkStatus();
}

bool RestartsTheGang(v1::FailureReason reason) {
  // The fleet's faults, not the job's: a lost worker or a collective that
  // timed out or lost its peer. The rest (bad spec, model or data, out of
  // memory, a bug) would fail the same way again, so the job fails at once
  // (as a Kubernetes podFailurePolicy with FailJob for config errors).
  return reason == v1::WORKER_LOST || reason == v1::NCCL_TIMEOUT;
}

Coordinator::Snapshot Coordinator::GetSnapshot() {
  absl::MutexLock lock(&mu_);
  Snapshot s;
  for (const auto& [id, job] : jobs_.jobs()) {
    ++s.jobs_by_state[job.state()];
    if (IsTerminal(job.state())) continue;
    s.active_job_restarts[id] = job.restart_count();
    if (job.has_latest_metrics())
      s.active_job_metrics[id] = job.latest_metrics();
    // One indexed SQLite read per active job with a checkpoint and scrape (a
    // few per minute): cheaper than keeping a second copy of the checkpoint
    // times in memory.
    absl::StatusOr<std::optional<v1::CheckpointInfo>> latest =
        LatestCheckpoint(job);
    if (latest.ok() && latest->has_value()) {
      s.active_job_checkpoint_time[id] =
          FromProtoTime((*latest)->create_time());
    }
  }
  for (const auto& [state, count] : pruned_by_state_) {
    s.jobs_by_state[state] += count;
  }
  s.connected_workers = sessions_.registry().ConnectedCount();
  return s;
}

}  // namespace lemo::server
