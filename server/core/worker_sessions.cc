#include "server/core/worker_sessions.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/core/proto_time.h"

namespace lemo::server {
namespace {

v1::CoordinatorMessage CancelMessage(const std::string& job_id, int64_t epoch,
                                     const std::string& reason) {
  v1::CoordinatorMessage msg;
  msg.mutable_cancel()->set_job_id(job_id);
  msg.mutable_cancel()->set_epoch(epoch);
  msg.mutable_cancel()->set_reason(reason);
  return msg;
}

}  // namespace

absl::StatusOr<WorkerSessions::Opened> WorkerSessions::Open(
    const Principal& caller, const v1::Register& reg, absl::Time now) {
  LEMO_RETURN_IF_ERROR(RequireRole(caller, Role::kWorker, /*admin_too=*/false,
                                   "connect as a worker"));
  if (!caller.any_worker_id && reg.worker_id() != caller.name) {
    // Otherwise one worker's token could replace another's session and be
    // sent its assignments.
    return absl::PermissionDeniedError(
        absl::StrCat("register.worker_id: worker principal \"", caller.name,
                     "\" may register only as worker_id \"", caller.name,
                     "\", not \"", reg.worker_id(), "\""));
  }
  std::optional<Assignment> held;
  if (const WorkerRecord* old = registry_.Find(reg.worker_id())) {
    held = old->assignment;
  }
  LEMO_ASSIGN_OR_RETURN(uint64_t session, registry_.Register(reg, now));
  WorkerRecord* w = registry_.Find(reg.worker_id());
  v1::CoordinatorMessage welcome;
  welcome.mutable_welcome()->set_worker_id(reg.worker_id());
  *welcome.mutable_welcome()->mutable_heartbeat_interval() =
      ToProtoDuration(options_.heartbeat_interval);
  w->outbox->Push(std::move(welcome));
  const v1::RunningTask& task = reg.running_task();
  const bool adopted = held.has_value() && reg.has_running_task() &&
                       held->job_id == task.job_id() &&
                       held->epoch == task.epoch();
  if (reg.has_running_task() && !adopted) {
    // A task from an assignment the coordinator has moved past: fence it off.
    w->outbox->Push(
        CancelMessage(task.job_id(), task.epoch(), "stale assignment"));
  }
  Opened opened{session, w->outbox, w->waiting, std::nullopt};
  if (held.has_value() && !adopted) {
    // The worker no longer runs what it held (it restarted): that rank is
    // lost.
    w->assignment.reset();
    opened.lost = held;
  }
  return opened;
}

void WorkerSessions::Heartbeat(const std::string& worker_id,
                               const v1::Heartbeat& heartbeat) {
  WorkerRecord* w = registry_.Find(worker_id);
  if (w != nullptr && heartbeat.devices_size() > 0) {
    *w->registration.mutable_devices() = heartbeat.devices();
  }
}

std::optional<int32_t> WorkerSessions::RankFor(const std::string& worker_id,
                                               const std::string& job_id,
                                               int64_t epoch) const {
  if (!registry_.IsCurrent(worker_id, job_id, epoch)) return std::nullopt;
  return registry_.Find(worker_id)->assignment->rank;
}

void WorkerSessions::Fence(const std::string& worker_id,
                           const std::string& job_id, int64_t epoch) {
  // A task of an epoch the job has left is still training (a rank that was
  // frozen past the timeouts and came back): its messages are dropped, and
  // it is told to stop, so it frees its worker for the next placement.
  registry_.Send(worker_id,
                 CancelMessage(job_id, epoch, "stale epoch: fenced"));
}

void WorkerSessions::MarkRunning(const std::string& worker_id) {
  WorkerRecord* w = registry_.Find(worker_id);
  if (w != nullptr && w->assignment.has_value()) w->assignment->running = true;
}

bool WorkerSessions::AllRunning(
    const std::vector<std::string>& worker_ids) const {
  for (const std::string& id : worker_ids) {
    const WorkerRecord* r = registry_.Find(id);
    if (r == nullptr || !r->assignment || !r->assignment->running) {
      return false;
    }
  }
  return true;
}

bool WorkerSessions::AnyHolds(const std::string& job_id, int64_t epoch) const {
  for (const v1::WorkerInfo& w : registry_.List()) {
    if (registry_.IsCurrent(w.worker_id(), job_id, epoch)) return true;
  }
  return false;
}

int WorkerSessions::CancelTask(const std::string& job_id, int64_t epoch,
                               const std::string& reason) {
  int sent = 0;
  for (const v1::WorkerInfo& w : registry_.List()) {
    if (!registry_.IsCurrent(w.worker_id(), job_id, epoch)) continue;
    registry_.Send(w.worker_id(), CancelMessage(job_id, epoch, reason));
    ++sent;
  }
  return sent;
}

bool WorkerSessions::Assign(const std::string& worker_id,
                            const Assignment& assignment,
                            v1::CoordinatorMessage assign) {
  if (!registry_.Assign(worker_id, assignment).ok()) return false;
  registry_.Send(worker_id, std::move(assign));
  return true;
}

std::string WorkerSessions::RendezvousOf(const std::string& worker_id) const {
  const WorkerRecord* w = registry_.Find(worker_id);
  return w == nullptr ? "" : w->registration.rendezvous_address();
}

void WorkerSessions::CloseAll() {
  for (const v1::WorkerInfo& w : registry_.List()) {
    WorkerRecord* r = registry_.Find(w.worker_id());
    if (r != nullptr && r->outbox) r->outbox->Close();
  }
}

}  // namespace lemo::server
