// Coordinator: construction, recovery, persistence, scheduling and worker loss.
// The client API is in coordinator_jobs.cc, the worker API in
// coordinator_workers.cc.
#include "server/core/coordinator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fault_point.h"
#include "common/status_macros.h"
#include "server/core/fleet_paths.h"
#include "server/core/job_state.h"
#include "server/core/proto_time.h"
#include "server/core/scheduler.h"

namespace lemo::server {

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

// The Assign of `rank` of `job` at its current epoch.
v1::CoordinatorMessage AssignMessage(
    const v1::Job& job, int rank, const std::string& rendezvous,
    const std::optional<v1::CheckpointInfo>& resume) {
  v1::CoordinatorMessage msg;
  v1::Assign* assign = msg.mutable_assign();
  assign->set_job_id(job.id());
  assign->set_epoch(job.epoch());
  *assign->mutable_spec() = job.spec();
  assign->set_rank(rank);
  assign->set_world_size(static_cast<int32_t>(job.worker_ids_size()));
  assign->set_rendezvous_address(rendezvous);
  if (resume.has_value()) {
    v1::ResumeFrom* r = assign->mutable_resume();
    r->set_checkpoint_id(resume->checkpoint_id());
    r->set_step(resume->step());
    *r->mutable_checkpoint() = *resume;
  }
  return msg;
}

}  // namespace

Coordinator::Coordinator(const Options& options)
    : options_(options),
      hub_(EventHub::Options{options.watcher_buffer_events,
                             options.max_watchers_per_job}),
      registry_(options.worker_timeout) {}

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(
    const Options& options) {
  if (options.data_dir.empty()) {
    return absl::InvalidArgumentError("data_dir: required");
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
  for (const v1::WorkerInfo& w : registry_.List()) {
    WorkerRecord* r = registry_.Find(w.worker_id());
    if (r != nullptr && r->outbox) r->outbox->Close();
  }
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
        registry_.ExpectWorker(
            job.worker_ids(rank),
            Assignment{job.id(), job.epoch(), rank, job.state() == v1::RUNNING,
                       /*recovered=*/true},
            now);
      }
    }
    position_[job.id()] = static_cast<int64_t>(order_.size());
    order_.push_back(job.id());
    SetJob(std::move(job));
  }
  return absl::OkStatus();
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
  for (const WorkerRecord& lost : registry_.ExpireLost(absl::Now())) {
    if (lost.assignment.has_value()) {
      OnRankLost(lost.registration.worker_id(), *lost.assignment);
    }
  }
  ScheduleLocked();
}

v1::Job* Coordinator::FindJob(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : &it->second;
}

void Coordinator::SetJob(v1::Job job) {
  auto view = std::make_shared<const v1::Job>(job);
  std::string id = job.id();
  jobs_[id] = std::move(job);
  absl::MutexLock lock(&view_mu_);
  view_[id] = std::move(view);
}

std::shared_ptr<const v1::Job> Coordinator::ViewJob(const std::string& job_id) {
  absl::ReaderMutexLock lock(&view_mu_);
  auto it = view_.find(job_id);
  return it == view_.end() ? nullptr : it->second;
}

absl::Status Coordinator::AddStateChange(v1::Job* job, v1::JobState to,
                                         const std::string& message,
                                         const v1::Failure* failure,
                                         std::vector<v1::JobEvent>* events) {
  if (job->state() != v1::JOB_STATE_UNSPECIFIED) {
    LEMO_RETURN_IF_ERROR(CheckTransition(job->state(), to),
                         absl::StrCat("job ", job->id()));
  }
  v1::JobEvent e;
  v1::StateChange* sc = e.mutable_state_change();
  sc->set_from(job->state());
  sc->set_to(to);
  sc->set_message(message);
  if (failure != nullptr) *sc->mutable_failure() = *failure;
  job->set_state(to);
  if (to == v1::FAILED && failure != nullptr)
    *job->mutable_failure() = *failure;
  if (to == v1::RUNNING && !job->has_start_time()) {
    *job->mutable_start_time() = ToProtoTime(absl::Now());
  }
  if (IsTerminal(to)) *job->mutable_end_time() = ToProtoTime(absl::Now());
  if (IsTerminal(to) || to == v1::RESTARTING) job->clear_worker_ids();
  sc->set_restart_count(job->restart_count());
  sc->set_epoch(job->epoch());
  events->push_back(std::move(e));
  return absl::OkStatus();
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
  extra.job = job;
  extra.events = events;
  JobFaultPoints("job.before_persist.", events);
  LEMO_RETURN_IF_ERROR(store_->Commit(extra),
                       absl::StrCat("storing job ", job.id()));
  JobFaultPoints("job.persisted.", events);
  SetJob(std::move(job));
  for (const v1::JobEvent& e : events) hub_.Publish(e);
  return absl::OkStatus();
}

void Coordinator::ScheduleLocked() {
  std::vector<PendingJob> pending;
  std::vector<v1::Register> fleet;
  for (const auto& [id, job] : jobs_) {
    if (job.state() != v1::QUEUED && job.state() != v1::RESTARTING) continue;
    const v1::ResourceSpec& r = job.spec().resources();
    pending.push_back(PendingJob{id, job.spec().priority(), position_[id],
                                 r.device_kind(), r.world_size(),
                                 r.min_device_memory_bytes()});
    // A rank never goes to a worker whose roots would make it refuse the job
    // (in a fleet with different roots per worker, another one may hold it).
    if (fleet.empty()) fleet = registry_.Registrations();
    for (const v1::Register& w : fleet) {
      if (!CheckSpecPathsAgainstFleet(job.spec(), {w}).ok()) {
        pending.back().excluded_workers.insert(w.worker_id());
      }
    }
  }
  if (pending.empty()) return;
  const std::vector<WorkerSlot> connected = registry_.ConnectedSlots();
  for (const Placement& p :
       Schedule(pending, registry_.FreeSlots(), connected)) {
    absl::Status s = Place(p.job_id, p.worker_ids);
    if (!s.ok()) {
      // The job stays waiting; a store failure here is retried on the next
      // tick.
      continue;
    }
  }
  // Jobs still waiting say why, once per change of reason: a job the fleet
  // can never hold says so (with a warning in its log) instead of waiting
  // silently, like a Kubernetes pod's "0/3 nodes are available" event.
  const std::vector<WorkerSlot> free = registry_.FreeSlots();
  for (const PendingJob& p : pending) {
    v1::Job* found = FindJob(p.job_id);
    if (found == nullptr ||
        (found->state() != v1::QUEUED && found->state() != v1::RESTARTING)) {
      continue;
    }
    std::string why = WaitReason(p, free, connected);
    if (found->state_message() == why) continue;
    v1::Job job = *found;
    job.set_state_message(why);
    // With no worker connected at all (a coordinator that just started, its
    // workers still registering) there is no fleet to judge the job by: shown
    // only, no warning in the job's log.
    if (!NeverFits(p, connected) || connected.empty()) {
      // Derived from the fleet and recomputed on every pass (also after a
      // coordinator restart), so it is shown, not committed: a long queue
      // would otherwise cost one fsync per waiting job whenever a worker
      // frees up. The next committed change of the job stores it anyway.
      SetJob(std::move(job));
      continue;
    }
    v1::JobEvent e;
    e.mutable_log()->set_level(v1::LogLine::LEVEL_WARNING);
    e.mutable_log()->set_rank(-1);
    e.mutable_log()->set_text(why);
    Persist(std::move(job), {std::move(e)}).IgnoreError();
  }
}

absl::Status Coordinator::Place(const std::string& job_id,
                                std::vector<std::string> worker_ids) {
  if (worker_ids.size() > 1) {
    // Rank 0 hosts the group's store: a worker that advertises none (an
    // older build) must not get it while another one can.
    auto hosts_store =
        [this](const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          const WorkerRecord* w = registry_.Find(id);
          return w != nullptr && !w->registration.rendezvous_address().empty();
        };
    auto first =
        std::find_if(worker_ids.begin(), worker_ids.end(), hosts_store);
    if (first != worker_ids.end()) std::iter_swap(worker_ids.begin(), first);
  }
  v1::Job job = *FindJob(job_id);
  bool first_placement = job.state() == v1::QUEUED;
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
  LEMO_RETURN_IF_ERROR(AddStateChange(
      &job, v1::SCHEDULED, "placed on " + absl::StrJoin(worker_ids, ", "),
      nullptr, &events));
  // Resume from the newest checkpoint, if any: ranks restart at its step + 1.
  std::optional<v1::CheckpointInfo> resume;
  if (!job.latest_checkpoint_id().empty()) {
    LEMO_ASSIGN_OR_RETURN(std::vector<v1::CheckpointInfo> all,
                          store_->ListCheckpoints(job_id));
    for (const v1::CheckpointInfo& c : all) {
      if (c.checkpoint_id() == job.latest_checkpoint_id()) resume = c;
    }
  }
  if (resume.has_value()) {
    for (v1::RankStatus& r : *job.mutable_ranks()) r.set_step(resume->step());
  }
  LEMO_RETURN_IF_ERROR(Persist(job, std::move(events)));
  if (first_placement && options_.on_queue_wait) {
    options_.on_queue_wait(
        absl::ToDoubleSeconds(absl::Now() - FromProtoTime(job.create_time())));
  }
  std::string rendezvous =
      registry_.Find(worker_ids[0])->registration.rendezvous_address();
  for (int rank = 0; rank < static_cast<int>(worker_ids.size()); ++rank) {
    Assignment a{job_id, job.epoch(), rank, false};
    if (!registry_.Assign(worker_ids[rank], a).ok()) continue;
    registry_.Send(worker_ids[rank],
                   AssignMessage(job, rank, rendezvous, resume));
  }
  return absl::OkStatus();
}

bool Coordinator::ResendRecoveredAssign(const std::string& worker_id,
                                        const Assignment& held) {
  const v1::Job* job = FindJob(held.job_id);
  if (!held.recovered || held.running || job == nullptr ||
      job->state() != v1::SCHEDULED || job->epoch() != held.epoch) {
    return false;
  }
  // A gang's rank needs rank 0's rendezvous address, known only once rank 0
  // registered with this coordinator.
  const WorkerRecord* first =
      job->worker_ids_size() > 0 ? registry_.Find(job->worker_ids(0)) : nullptr;
  const std::string rendezvous =
      first != nullptr ? first->registration.rendezvous_address() : "";
  if (job->worker_ids_size() > 1 && rendezvous.empty()) return false;
  std::optional<v1::CheckpointInfo> resume;
  if (!job->latest_checkpoint_id().empty()) {
    absl::StatusOr<std::vector<v1::CheckpointInfo>> all =
        store_->ListCheckpoints(job->id());
    if (!all.ok()) return false;
    for (const v1::CheckpointInfo& c : *all) {
      if (c.checkpoint_id() == job->latest_checkpoint_id()) resume = c;
    }
  }
  WorkerRecord* w = registry_.Find(worker_id);
  if (w == nullptr) return false;
  // The worker keeps the rank it held; from now on it is one this process
  // sent.
  w->assignment = held;
  w->assignment->recovered = false;
  return registry_.Send(worker_id,
                        AssignMessage(*job, held.rank, rendezvous, resume));
}

int Coordinator::CancelRanks(const v1::Job& job, const std::string& reason) {
  int sent = 0;
  for (const v1::WorkerInfo& w : registry_.List()) {
    if (!registry_.IsCurrent(w.worker_id(), job.id(), job.epoch())) continue;
    v1::CoordinatorMessage msg;
    msg.mutable_cancel()->set_job_id(job.id());
    msg.mutable_cancel()->set_epoch(job.epoch());
    msg.mutable_cancel()->set_reason(reason);
    registry_.Send(w.worker_id(), std::move(msg));
    ++sent;
  }
  return sent;
}

absl::Status Coordinator::MaybeFinishCancel(const std::string& job_id) {
  v1::Job* job = FindJob(job_id);
  if (job == nullptr || job->state() != v1::CANCELLING) return absl::OkStatus();
  for (const v1::WorkerInfo& w : registry_.List()) {
    if (registry_.IsCurrent(w.worker_id(), job_id, job->epoch())) {
      return absl::OkStatus();
    }
  }
  v1::Job next = *job;
  std::vector<v1::JobEvent> events;
  LEMO_RETURN_IF_ERROR(AddStateChange(&next, v1::CANCELLED,
                                      "every rank stopped", nullptr, &events));
  return Persist(next, std::move(events));
}

absl::Status Coordinator::Fail(const std::string& job_id,
                               v1::FailureReason reason,
                               const std::string& message, int32_t rank) {
  v1::Job job = *FindJob(job_id);
  v1::Failure failure;
  failure.set_reason(reason);
  failure.set_message(message);
  failure.set_rank(rank);
  std::vector<v1::JobEvent> events;
  LEMO_RETURN_IF_ERROR(
      AddStateChange(&job, v1::FAILED, message, &failure, &events));
  LEMO_RETURN_IF_ERROR(Persist(job, std::move(events)));
  CancelRanks(job, "job failed: " + message);
  return absl::OkStatus();
}

void Coordinator::OnRankLost(const std::string& worker_id,
                             const Assignment& a) {
  v1::Job* found = FindJob(a.job_id);
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
    SetJob(job);
    return Fail(job.id(), v1::RESTART_BUDGET_EXHAUSTED,
                absl::StrCat(failure.message(), "; all ",
                             job.spec().max_restarts(), " restarts used"),
                failure.rank());
  }
  job.set_restart_count(job.restart_count() + 1);
  const std::string what = failure.message();
  std::vector<v1::JobEvent> events;
  LEMO_RETURN_IF_ERROR(
      AddStateChange(&job, v1::RESTARTING, what, &failure, &events));
  LEMO_RETURN_IF_ERROR(Persist(job, std::move(events)));
  // Every other rank of the old epoch stops (a gang restarts whole, from the
  // newest checkpoint, like torchrun's elastic agent); each keeps its worker
  // until it reports, so the next placement never shares a device with it.
  CancelRanks(job, what + "; restarting");
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
  for (const auto& [id, job] : jobs_) {
    ++s.jobs_by_state[job.state()];
    if (IsTerminal(job.state())) continue;
    s.active_job_restarts[id] = job.restart_count();
    if (job.has_latest_metrics())
      s.active_job_metrics[id] = job.latest_metrics();
    if (job.latest_checkpoint_id().empty()) continue;
    // One indexed SQLite read per active job and scrape (a few per minute):
    // cheaper than keeping a second copy of the checkpoint times in memory.
    absl::StatusOr<std::vector<v1::CheckpointInfo>> all =
        store_->ListCheckpoints(id);
    if (!all.ok()) continue;
    for (const v1::CheckpointInfo& c : *all) {
      if (c.checkpoint_id() == job.latest_checkpoint_id()) {
        s.active_job_checkpoint_time[id] = FromProtoTime(c.create_time());
      }
    }
  }
  s.connected_workers = registry_.ConnectedCount();
  return s;
}

}  // namespace lemo::server
