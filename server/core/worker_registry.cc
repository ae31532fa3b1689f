#include "server/core/worker_registry.h"

#include "absl/strings/str_cat.h"
#include "common/safe_path.h"
#include "common/status_macros.h"
#include "server/core/proto_time.h"

namespace lemo::server {
namespace {

WorkerSlot SlotOf(const std::string& id, const WorkerRecord& w) {
  const v1::Device& d = w.registration.devices(0);
  return WorkerSlot{id, d.kind(), d.total_memory_bytes(),
                    w.registration.host()};
}

bool Live(const WorkerRecord& w) {
  return w.state == v1::WorkerInfo::CONNECTED && w.session != 0 &&
         w.registration.devices_size() > 0;
}

}  // namespace

namespace {

// A worker's roots decide which specs the coordinator accepts (fleet_paths.h):
// absolute, without "..", and few and short enough to keep in memory.
absl::Status ValidateRoots(
    absl::string_view field,
    const google::protobuf::RepeatedPtrField<std::string>& roots) {
  constexpr int kMaxRoots = 64;
  constexpr size_t kMaxRootBytes = 4096;
  if (roots.size() > kMaxRoots) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": more than ", kMaxRoots, " roots"));
  }
  for (const std::string& root : roots) {
    if (root.empty() || root.size() > kMaxRootBytes || root[0] != '/' ||
        root.find('\0') != std::string::npos || HasDotDotComponent(root)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field,
          ": each root must be an absolute path of at most 4096 bytes "
          "without \"..\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint64_t> WorkerRegistry::Register(const v1::Register& reg,
                                                  absl::Time now) {
  if (reg.worker_id().empty() || reg.worker_id().size() > 128) {
    return absl::InvalidArgumentError(
        "register.worker_id: must be 1-128 chars");
  }
  if (reg.devices_size() == 0) {
    return absl::InvalidArgumentError("register.devices: at least one device");
  }
  const v1::Device& d = reg.devices(0);
  if (d.kind() != v1::CPU && d.kind() != v1::CUDA) {
    return absl::InvalidArgumentError("register.devices[0].kind: CPU or CUDA");
  }
  LEMO_RETURN_IF_ERROR(
      ValidateRoots("register.model_roots", reg.model_roots()));
  LEMO_RETURN_IF_ERROR(ValidateRoots("register.data_roots", reg.data_roots()));
  WorkerRecord& w = workers_[reg.worker_id()];
  if (w.outbox) w.outbox->Close();
  w.registration = reg;
  w.state = v1::WorkerInfo::CONNECTED;
  w.connect_time = now;
  w.last_heartbeat = now;
  w.session = next_session_++;
  w.outbox = std::make_shared<Outbox>();
  w.waiting = std::make_shared<std::atomic<int>>(0);
  return w.session;
}

absl::Status WorkerRegistry::Touch(const std::string& worker_id,
                                   uint64_t session, absl::Time now) {
  WorkerRecord* w = Find(worker_id);
  if (w == nullptr || w->session != session) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", worker_id, ": stream replaced by a newer one"));
  }
  if (w->state == v1::WorkerInfo::LOST) {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker ", worker_id, " was declared lost; register again"));
  }
  w->last_heartbeat = now;
  return absl::OkStatus();
}

void WorkerRegistry::Disconnect(const std::string& worker_id,
                                uint64_t session) {
  WorkerRecord* w = Find(worker_id);
  if (w == nullptr || w->session != session) return;
  if (w->outbox) w->outbox->Close();
  w->session = 0;
}

std::vector<WorkerRecord> WorkerRegistry::ExpireLost(absl::Time now) {
  std::vector<WorkerRecord> lost;
  for (auto& [id, w] : workers_) {
    if (w.state == v1::WorkerInfo::LOST || now - w.last_heartbeat <= timeout_) {
      continue;
    }
    // The worker spoke; the coordinator has not got to it yet (its lock was
    // held across a slow commit). Silence is ours, not the worker's.
    if (w.session != 0 && w.waiting && w.waiting->load() > 0) continue;
    lost.push_back(w);
    w.state = v1::WorkerInfo::LOST;
    w.assignment.reset();
    if (w.outbox) w.outbox->Close();
  }
  return lost;
}

void WorkerRegistry::ExpectWorker(const std::string& worker_id,
                                  const Assignment& assignment,
                                  absl::Time now) {
  WorkerRecord& w = workers_[worker_id];
  w.registration.set_worker_id(worker_id);
  w.state = v1::WorkerInfo::CONNECTED;
  w.connect_time = now;
  w.last_heartbeat = now;
  w.session = 0;
  w.assignment = assignment;
}

absl::Status WorkerRegistry::Assign(const std::string& worker_id,
                                    const Assignment& assignment) {
  WorkerRecord* w = Find(worker_id);
  if (w == nullptr || !Live(*w)) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", worker_id, " is not connected"));
  }
  if (w->assignment.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker ", worker_id, " already runs ", w->assignment->job_id));
  }
  w->assignment = assignment;
  return absl::OkStatus();
}

void WorkerRegistry::Release(const std::string& worker_id,
                             const std::string& job_id, int64_t epoch) {
  WorkerRecord* w = Find(worker_id);
  if (w != nullptr && IsCurrent(worker_id, job_id, epoch))
    w->assignment.reset();
}

bool WorkerRegistry::IsCurrent(const std::string& worker_id,
                               const std::string& job_id, int64_t epoch) const {
  const WorkerRecord* w = Find(worker_id);
  return w != nullptr && w->assignment.has_value() &&
         w->assignment->job_id == job_id && w->assignment->epoch == epoch;
}

bool WorkerRegistry::Send(const std::string& worker_id,
                          v1::CoordinatorMessage message) {
  WorkerRecord* w = Find(worker_id);
  if (w == nullptr || w->session == 0 || !w->outbox) return false;
  return w->outbox->Push(std::move(message));
}

WorkerRecord* WorkerRegistry::Find(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? nullptr : &it->second;
}

const WorkerRecord* WorkerRegistry::Find(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? nullptr : &it->second;
}

std::vector<WorkerSlot> WorkerRegistry::FreeSlots() const {
  std::vector<WorkerSlot> out;
  for (const auto& [id, w] : workers_) {
    if (Live(w) && !w.assignment.has_value()) out.push_back(SlotOf(id, w));
  }
  return out;
}

std::vector<WorkerSlot> WorkerRegistry::ConnectedSlots() const {
  std::vector<WorkerSlot> out;
  for (const auto& [id, w] : workers_) {
    if (Live(w)) out.push_back(SlotOf(id, w));
  }
  return out;
}

int WorkerRegistry::ConnectedCount() const {
  int n = 0;
  for (const auto& [id, w] : workers_) n += Live(w) ? 1 : 0;
  return n;
}

std::vector<v1::Register> WorkerRegistry::Registrations() const {
  std::vector<v1::Register> out;
  for (const auto& [id, w] : workers_) {
    // A placeholder has no devices: Register refuses a worker without one.
    if (w.registration.devices_size() > 0) out.push_back(w.registration);
  }
  return out;
}

std::vector<v1::WorkerInfo> WorkerRegistry::List() const {
  std::vector<v1::WorkerInfo> out;
  for (const auto& [id, w] : workers_) {
    v1::WorkerInfo info;
    info.set_worker_id(id);
    info.set_host(w.registration.host());
    *info.mutable_devices() = w.registration.devices();
    info.set_state(w.state);
    *info.mutable_connect_time() = ToProtoTime(w.connect_time);
    *info.mutable_last_heartbeat_time() = ToProtoTime(w.last_heartbeat);
    if (w.assignment.has_value()) {
      info.set_job_id(w.assignment->job_id);
      info.set_rank(w.assignment->rank);
      info.set_epoch(w.assignment->epoch);
    }
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace lemo::server
