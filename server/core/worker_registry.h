// The workers the coordinator knows: their devices, their Connect session,
// their heartbeats and the task each one runs. Not thread-safe: the Coordinator
// calls it under its lock.
//
// Sessions: every Register opens a new session id; a second Register with the
// same worker id replaces the first (its outbox closes, so the old stream
// ends). Messages of an old session are refused. A worker silent past `timeout`
// is LOST: ExpireLost returns it with the assignment it held, which the
// coordinator turns into a restart. Assignments carry the job's epoch, so a
// message about an older epoch (a stale worker that came back) is recognised
// and fenced.
//
//   WorkerRegistry reg(absl::Seconds(10));
//   LEMO_ASSIGN_OR_RETURN(uint64_t session, reg.Register(msg.register_(),
//   Now())); for (WorkerRecord& lost : reg.ExpireLost(Now())) ...
#ifndef LEMO_SERVER_CORE_WORKER_REGISTRY_H_
#define LEMO_SERVER_CORE_WORKER_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lemo/v1/job_service.pb.h"
#include "lemo/v1/worker_service.pb.h"
#include "server/core/message_queue.h"
#include "server/core/scheduler.h"

namespace lemo::server {

using Outbox = MessageQueue<v1::CoordinatorMessage>;

// One rank of one job on one worker.
struct Assignment {
  std::string job_id;
  int64_t epoch = 0;
  int32_t rank = 0;
  // The worker reported RUNNING for this (job, epoch).
  bool running = false;
  // Rebuilt from the store when the coordinator started, not sent by this
  // process: a worker may never have received it (the previous coordinator
  // died between storing the placement and sending the Assign).
  bool recovered = false;
};

struct WorkerRecord {
  v1::Register registration;
  v1::WorkerInfo::State state = v1::WorkerInfo::CONNECTED;
  absl::Time connect_time;
  absl::Time last_heartbeat;
  // Id of the live Connect stream; 0 when none (placeholder, or the stream
  // ended).
  uint64_t session = 0;
  std::shared_ptr<Outbox> outbox;
  std::optional<Assignment> assignment;
  // Messages of the live session read off the stream but still waiting for
  // the coordinator's lock. Raised without that lock, so a worker whose
  // heartbeat queues behind a slow commit is not taken for silent.
  std::shared_ptr<std::atomic<int>> waiting;
};

class WorkerRegistry {
 public:
  // A worker silent for longer than `timeout` is lost.
  explicit WorkerRegistry(absl::Duration timeout) : timeout_(timeout) {}

  // INVALID_ARGUMENT without a worker_id or device. Returns the new session's
  // id; the worker's assignment (if any) is kept, the caller decides whether
  // its running_task matches.
  absl::StatusOr<uint64_t> Register(const v1::Register& reg, absl::Time now);
  // FAILED_PRECONDITION when `session` is not the worker's live session or the
  // worker is LOST (the stream should end so the worker re-registers).
  absl::Status Touch(const std::string& worker_id, uint64_t session,
                     absl::Time now);
  // The stream of `session` ended. The worker stays until the timeout: it may
  // reconnect.
  void Disconnect(const std::string& worker_id, uint64_t session);
  // Workers whose heartbeat is older than the timeout, and with no message
  // waiting, become LOST; returned as they were (with their assignment), and
  // their assignment is cleared.
  std::vector<WorkerRecord> ExpireLost(absl::Time now);
  // A worker known only from the store (after a coordinator restart) that
  // should re-register within the timeout, else it is lost with `assignment`.
  void ExpectWorker(const std::string& worker_id, const Assignment& assignment,
                    absl::Time now);

  absl::Status Assign(const std::string& worker_id,
                      const Assignment& assignment);
  // Clears the assignment if it is (job_id, epoch).
  void Release(const std::string& worker_id, const std::string& job_id,
               int64_t epoch);
  // True when the worker's current assignment is (job_id, epoch).
  bool IsCurrent(const std::string& worker_id, const std::string& job_id,
                 int64_t epoch) const;
  // False when the worker has no live session.
  bool Send(const std::string& worker_id, v1::CoordinatorMessage message);

  WorkerRecord* Find(const std::string& worker_id);
  const WorkerRecord* Find(const std::string& worker_id) const;
  // Connected workers with a live session and no assignment.
  std::vector<WorkerSlot> FreeSlots() const;
  // Connected workers with a live session.
  std::vector<WorkerSlot> ConnectedSlots() const;
  int ConnectedCount() const;
  std::vector<v1::WorkerInfo> List() const;
  // The last Register of every worker that ever registered, lost ones
  // included (they may come back), placeholders from ExpectWorker excluded:
  // the fleet whose roots a submitted spec is checked against.
  std::vector<v1::Register> Registrations() const;

 private:
  absl::Duration timeout_;
  uint64_t next_session_ = 1;
  std::map<std::string, WorkerRecord> workers_;
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_WORKER_REGISTRY_H_
