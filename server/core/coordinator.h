// The coordinator's brain, free of gRPC: a thin facade that wires its units
// together and owns the lock and the order of effects. The units: the job
// table and state machine (job_table.h), placement (placement.h over the
// policy in scheduler.h), worker sessions and fencing (worker_sessions.h over
// worker_registry.h), the SQLite store (store.h), event fan-out
// (event_hub.h) and checkpoint bytes (checkpoint_store.h). What it does
// itself: restarts after a worker loss and the order commit -> memory ->
// publish -> send. The gRPC adapters in server/service/ only convert
// requests into the core's types (job_queries.h), call these methods and
// convert the status.
//
// Every state change is one Store transaction, committed before anything is
// published or sent to a worker, so a coordinator killed at any moment restarts
// consistent: jobs and events come back from SQLite, workers re-register
// (listing the task they still run) and are adopted; a worker that does not
// come back within the worker timeout is lost and its job restarts.
//
//   LEMO_ASSIGN_OR_RETURN(auto coord, Coordinator::Create({.data_dir = dir}));
//   LEMO_ASSIGN_OR_RETURN(v1::Job job, coord->Submit(caller, spec));
//   LEMO_ASSIGN_OR_RETURN(auto session, coord->Connect(caller, register_msg));
//   // a worker LEMO_RETURN_IF_ERROR(coord->OnWorkerMessage(session, message));
#ifndef LEMO_SERVER_CORE_COORDINATOR_H_
#define LEMO_SERVER_CORE_COORDINATOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/wire_limits.h"
#include "lemo/v1/job_service.pb.h"
#include "lemo/v1/worker_service.pb.h"
#include "server/core/checkpoint_store.h"
#include "server/core/event_hub.h"
#include "server/core/job_fit.h"
#include "server/core/job_queries.h"
#include "server/core/job_table.h"
#include "server/core/principal.h"
#include "server/core/scheduler.h"
#include "server/core/store.h"
#include "server/core/worker_sessions.h"

namespace lemo::server {

// True for the failure reasons that restart a job's gang (WORKER_LOST,
// NCCL_TIMEOUT) rather than fail it.
bool RestartsTheGang(v1::FailureReason reason);

class Coordinator {
 public:
  struct Options {
    // Holds coordinator.db and checkpoints/ (created if missing).
    std::string data_dir;
    // A worker silent for longer is lost and its job restarts.
    absl::Duration worker_timeout = absl::Seconds(10);
    // How often workers are told to heartbeat (Welcome.heartbeat_interval).
    absl::Duration heartbeat_interval = absl::Seconds(1);
    // Period of the background loop that expires lost workers and schedules;
    // zero = no background thread (tests call Tick()).
    absl::Duration tick_interval = absl::Milliseconds(200);
    // Live events buffered per watcher before it falls back to reading the
    // store.
    size_t watcher_buffer_events = 1024;
    // Live WatchJob streams one job may have (--max-watchers-per-job); 0 = no
    // limit. More is RESOURCE_EXHAUSTED.
    int max_watchers_per_job = 100;
    // Called with the seconds from submit to first placement (a histogram in
    // server/metrics).
    std::function<void(double)> on_queue_wait;
    // Largest submitted spec, in serialized bytes (--max-spec-bytes). A spec
    // travels to workers inside an Assign, which a worker refuses above
    // kWorkerMaxMessageBytes (common/wire_limits.h): a larger one would be
    // placed, dropped by the worker's channel and placed again for ever.
    int64_t max_spec_bytes = kDefaultMaxSpecBytes;
    // Checkpoints the store keeps per job (--max-checkpoints-per-job); 0 = no
    // limit. A spec asking for more (checkpoint.keep_last) is refused at
    // submit; one asking for all (keep_last 0) keeps this many, the newest,
    // and its stored spec says so.
    int max_checkpoints_per_job = 20;
    // Largest checkpoint upload, in bytes; 0 picks 64 GiB or the checkpoint
    // disk's free space, whichever is less (CheckpointStore::Options).
    int64_t max_checkpoint_bytes = 0;
    // Finished (SUCCEEDED, FAILED, CANCELLED) jobs kept
    // (--retain-finished-jobs); must be >= 1. Beyond it the oldest by end
    // time are pruned with their events and checkpoints, from memory and the
    // data dir, on every job end and at start.
    int retain_finished_jobs = 10000;
    // Stored events per job (--max-events-per-job); 0 = no limit. Beyond it
    // the oldest metric and log events are dropped; state changes and
    // checkpoint events never are.
    int64_t max_events_per_job = 100000;
    // Free bytes an upload must leave on the data dir's disk, for the SQLite
    // store's commits (CheckpointStore::Options::min_free_bytes).
    int64_t min_free_bytes = int64_t{256} << 20;
  };

  // A worker's Connect stream as the core sees it.
  struct Session {
    std::string worker_id;
    uint64_t id = 0;
    // Messages for the worker, in order; closed when the session is replaced or
    // lost.
    std::shared_ptr<Outbox> outbox;
    // WorkerRecord::waiting of this session.
    std::shared_ptr<std::atomic<int>> waiting;
  };

  // What /metrics shows, read in one lock.
  struct Snapshot {
    // Jobs per state. Terminal states also count the jobs pruned since this
    // process started (--retain-finished-jobs), so the count of FAILED jobs
    // still rises with every failure once old ones are pruned (the
    // delta(lemo_jobs{state="failed"}) alert).
    std::map<v1::JobState, int> jobs_by_state;
    int connected_workers = 0;
    // Non-terminal jobs with a metric sample: id -> newest rank-0 sample.
    std::map<std::string, v1::MetricSample> active_job_metrics;
    // Non-terminal jobs: id -> restarts used so far.
    std::map<std::string, int> active_job_restarts;
    // Non-terminal jobs with a stored checkpoint: id -> when the newest one was
    // committed.
    std::map<std::string, absl::Time> active_job_checkpoint_time;
  };

  static absl::StatusOr<std::unique_ptr<Coordinator>> Create(
      const Options& options);
  ~Coordinator();

  // --- JobService ---
  // Every query acts as `caller` (principal.h): a client sees and changes only
  // the jobs it owns, an admin all; another's job is NOT_FOUND, exactly as a
  // job that does not exist, so its existence does not leak either.
  // The job's owner is the caller.
  absl::StatusOr<v1::Job> Submit(const Principal& caller,
                                 const v1::JobSpec& spec);
  absl::StatusOr<v1::Job> GetJob(const Principal& caller,
                                 const std::string& job_id);
  // Only the caller's jobs (all for an admin); page tokens stay valid.
  absl::StatusOr<ListJobsPage> ListJobs(const Principal& caller,
                                        const ListJobsQuery& query);
  absl::StatusOr<v1::Job> Cancel(const Principal& caller,
                                 const std::string& job_id,
                                 const std::string& reason);
  absl::StatusOr<std::unique_ptr<JobWatcher>> Watch(const Principal& caller,
                                                    const WatchQuery& query);
  // True once the job is terminal and a watcher at `next_sequence` has seen
  // every event. Asked only after Watch checked the caller.
  bool WatchDone(const std::string& job_id, int64_t next_sequence);
  absl::StatusOr<std::vector<v1::CheckpointInfo>> ListCheckpoints(
      const Principal& caller, const std::string& job_id);
  // Empty checkpoint_id = the newest. `sink` returns false to stop. A worker
  // caller may download only checkpoints of a job it is assigned to (the
  // checkpoint it resumes from).
  absl::Status DownloadCheckpoint(
      const Principal& caller, const std::string& job_id,
      const std::string& checkpoint_id,
      const std::function<bool(const v1::CheckpointChunk&)>& sink);
  // Every worker; for a client, the job fields of workers that run another
  // tenant's job are cleared.
  absl::StatusOr<std::vector<v1::WorkerInfo>> ListWorkers(
      const Principal& caller);

  // --- WorkerService ---
  // Opens the worker's session (WorkerSessions::Open: a bound worker
  // principal registers only as its own worker_id; Welcome; the task it still
  // runs adopted or fenced); a rank it held and no longer runs is lost.
  absl::StatusOr<Session> Connect(const Principal& caller,
                                  const v1::Register& registration);
  // Heartbeats, metrics, task status, logs. An error means the stream should
  // end (stale session, lost worker, protocol violation); fenced messages of
  // old epochs are dropped silently with OK.
  absl::Status OnWorkerMessage(const Session& session,
                               const v1::WorkerMessage& message);
  void Disconnect(const Session& session);
  // Checks the upload's job and epoch (and, for a bound worker principal,
  // that the caller holds a rank of that epoch), then opens it. The first
  // chunk is the upload's header (CheckpointStore's unit), not a query.
  absl::StatusOr<std::unique_ptr<CheckpointStore::Upload>> BeginUpload(
      const Principal& caller, const v1::UploadCheckpointRequest& first);
  // Moves the upload into place, records it (event + job) and applies
  // keep_last.
  absl::StatusOr<v1::CheckpointInfo> CommitUpload(
      CheckpointStore::Upload& upload);

  // Expires lost workers and places waiting jobs (the background loop calls
  // it).
  void Tick();
  Snapshot GetSnapshot();
  const Options& options() const { return options_; }
  // The checkpoint store: its resolved limits and what it repaired at start.
  const CheckpointStore& checkpoint_store() const { return *checkpoints_; }

 private:
  explicit Coordinator(const Options& options);
  absl::Status Recover() ABSL_LOCKS_EXCLUDED(mu_);
  void Loop();

  // Numbers and stamps the events, commits job + events (+ extra) in one
  // transaction, then updates the job table and publishes.
  absl::Status Persist(v1::Job job, std::vector<v1::JobEvent> events,
                       Store::Mutation extra = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves `job` to `to` (JobTable::Transition) and persists it.
  absl::Status Move(v1::Job job, v1::JobState to, const std::string& message,
                    const v1::Failure* failure = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The committed job, or null; never waits for mu_ (the table's view).
  std::shared_ptr<const v1::Job> ViewJob(const std::string& job_id)
      ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // NOT_FOUND for a job the caller cannot see; it says the job was pruned
  // (--retain-finished-jobs) when the table remembers that and the caller
  // owned it.
  absl::Status JobNotFound(const Principal& caller, const std::string& job_id)
      ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Prunes the oldest finished jobs beyond options_.retain_finished_jobs,
  // never `keep` (the job the caller just ended and still reads).
  absl::Status PruneFinished(const std::string& keep = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job when the caller may see it, else NOT_FOUND.
  absl::StatusOr<const v1::Job*> FindFor(const Principal& caller,
                                         const std::string& job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Place(const Placement& placement)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnRankLost(const std::string& worker_id, const Assignment& assignment)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A worker registered without the task of a placement this coordinator
  // only recovered from the store, of a job still SCHEDULED: the previous
  // coordinator died before sending the Assign, so it is sent now (the
  // coordinator's crash is no rank loss and costs no restart). False when
  // that does not apply.
  bool ResendRecoveredAssign(const std::string& worker_id,
                             const Assignment& held)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The stored record of job.latest_checkpoint_id(); nullopt when the job has
  // none (or its record is gone).
  absl::StatusOr<std::optional<v1::CheckpointInfo>> LatestCheckpoint(
      const v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A rank of `job`'s current epoch failed with a fault of the fleet: the
  // whole gang goes RESTARTING (the other ranks are cancelled) and is placed
  // again with a new epoch, resuming from the newest checkpoint; past
  // spec.max_restarts the job FAILs with RESTART_BUDGET_EXHAUSTED.
  absl::Status RestartGang(v1::Job job, const v1::Failure& failure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OnTaskStatus(const std::string& worker_id,
                            const v1::TaskStatus& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OnMetric(const std::string& worker_id,
                        const v1::MetricReport& report)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OnLog(const std::string& worker_id, const v1::WorkerLog& log)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a CANCELLING job once none of its ranks holds a worker.
  absl::Status MaybeFinishCancel(const std::string& job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Succeed(const std::string& job_id, int64_t step)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Fail(const std::string& job_id, v1::FailureReason reason,
                    const std::string& message, int32_t rank)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Options options_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<CheckpointStore> checkpoints_;
  EventHub hub_;

  absl::Mutex mu_;
  WorkerSessions sessions_ ABSL_GUARDED_BY(mu_);
  // Written under mu_; its View() is read without it (JobTable's own lock,
  // taken after mu_): mu_ is held across the store's fsync, and on a busy
  // disk readers queued behind it for seconds (bench/control_plane.sh;
  // docs/benchmarks.md).
  JobTable jobs_ ABSL_GUARDED_BY(mu_);
  // Each live job's model shape, for planning it on workers' devices.
  JobShapes shapes_ ABSL_GUARDED_BY(mu_);
  // Jobs pruned since start, by their (terminal) state, for Snapshot.
  std::map<v1::JobState, int> pruned_by_state_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread loop_;
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_COORDINATOR_H_
