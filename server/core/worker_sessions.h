// Worker sessions as the coordinator sees them: who may register as which
// worker, the Welcome, adopting or fencing the task a (re-)registering worker
// says it runs, heartbeats, and the rule that a worker acts only on its own
// session and on the (job, epoch) it is assigned: anything else is fenced
// (told to stop) and dropped. The bookkeeping per worker (sessions, last
// heartbeat, assignment) is the WorkerRegistry it owns.
//
// Not thread-safe: the Coordinator calls it under its lock (a Session's
// `waiting` counter is the one thing touched without it).
//
//   WorkerSessions sessions({.worker_timeout = absl::Seconds(10)});
//   LEMO_ASSIGN_OR_RETURN(WorkerSessions::Opened opened,
//                         sessions.Open(caller, registration, absl::Now()));
//   if (opened.lost) ...  // the rank it held is lost
//   std::optional<int32_t> rank = sessions.RankFor(worker, job, epoch);
#ifndef LEMO_SERVER_CORE_WORKER_SESSIONS_H_
#define LEMO_SERVER_CORE_WORKER_SESSIONS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lemo/v1/worker_service.pb.h"
#include "server/core/principal.h"
#include "server/core/worker_registry.h"

namespace lemo::server {

class WorkerSessions {
 public:
  struct Options {
    // A worker silent for longer is lost and its job restarts.
    absl::Duration worker_timeout = absl::Seconds(10);
    // How often workers are told to heartbeat (Welcome.heartbeat_interval).
    absl::Duration heartbeat_interval = absl::Seconds(1);
  };

  // A freshly opened session.
  struct Opened {
    // The session's id (WorkerRegistry::Register).
    uint64_t session = 0;
    // Messages for the worker; the Welcome (and a fencing Cancel) are queued.
    std::shared_ptr<Outbox> outbox;
    // WorkerRecord::waiting of this session.
    std::shared_ptr<std::atomic<int>> waiting;
    // The assignment the worker held before and no longer runs (it
    // restarted): that rank is lost.
    std::optional<Assignment> lost;
  };

  explicit WorkerSessions(const Options& options)
      : options_(options), registry_(options.worker_timeout) {}

  // Checks the caller may register as reg.worker_id (a worker principal bound
  // to one id may register only as that id: PERMISSION_DENIED naming both),
  // registers it (replacing an older session of the same id), queues the
  // Welcome, adopts the task it says it still runs when that is its current
  // assignment, and fences (cancels) it otherwise.
  absl::StatusOr<Opened> Open(const Principal& caller,
                              const v1::Register& registration, absl::Time now);
  // FAILED_PRECONDITION unless `session` is the worker's live one.
  absl::Status Touch(const std::string& worker_id, uint64_t session,
                     absl::Time now) {
    return registry_.Touch(worker_id, session, now);
  }
  // A heartbeat may refresh the device list (free memory).
  void Heartbeat(const std::string& worker_id, const v1::Heartbeat& heartbeat);
  void Disconnect(const std::string& worker_id, uint64_t session) {
    registry_.Disconnect(worker_id, session);
  }

  // The rank the worker holds of (job_id, epoch), or nullopt when that is not
  // its current assignment (a message of an old epoch or another job).
  std::optional<int32_t> RankFor(const std::string& worker_id,
                                 const std::string& job_id,
                                 int64_t epoch) const;
  // Tells the worker to stop a task of (job_id, epoch) it should no longer
  // run: its messages are dropped, and the stop frees it for the next job.
  void Fence(const std::string& worker_id, const std::string& job_id,
             int64_t epoch);
  // The worker reported RUNNING for its current assignment.
  void MarkRunning(const std::string& worker_id);
  // True when every one of `worker_ids` runs its assignment.
  bool AllRunning(const std::vector<std::string>& worker_ids) const;
  // The worker is done with (job_id, epoch).
  void Release(const std::string& worker_id, const std::string& job_id,
               int64_t epoch) {
    registry_.Release(worker_id, job_id, epoch);
  }
  // True while some worker still holds (job_id, epoch).
  bool AnyHolds(const std::string& job_id, int64_t epoch) const;
  // Sends Cancel for (job_id, epoch) to every worker still holding it;
  // returns how many.
  int CancelTask(const std::string& job_id, int64_t epoch,
                 const std::string& reason);
  // Gives the worker rank `assignment` and sends it `assign`; false when it
  // cannot take it (unknown, or busy with another task).
  bool Assign(const std::string& worker_id, const Assignment& assignment,
              v1::CoordinatorMessage assign);
  // Where rank 0 on this worker hosts the group's store ("" if unknown).
  std::string RendezvousOf(const std::string& worker_id) const;
  // Closes every outbox (coordinator shutdown), ending the streams.
  void CloseAll();

  // The per-worker records, for placement, recovery and listing.
  WorkerRegistry& registry() { return registry_; }
  const WorkerRegistry& registry() const { return registry_; }

 private:
  Options options_;
  WorkerRegistry registry_;
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_WORKER_SESSIONS_H_
