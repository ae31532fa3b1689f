// The coordinator's jobs in memory: every job by id with its state, owner,
// restart count and epoch; submission order (FIFO position and ListJobs page
// tokens); the state machine that moves a job (DESIGN.md "Job states", the
// table in job_state.h) and records each move as a StateChange event; and
// which finished jobs fall outside the retention bound
// (--retain-finished-jobs).
//
// It holds no lock of its own for writes: the Coordinator calls every
// non-const method under its lock. View() alone is safe from any thread: it
// reads a copy published after each change, so GetJob and WatchDone never
// queue behind a store commit.
//
//   JobTable table;
//   v1::Job job = ...;
//   std::vector<v1::JobEvent> events;
//   LEMO_RETURN_IF_ERROR(JobTable::Transition(&job, v1::SCHEDULED, "placed",
//                                             nullptr, &events));
//   table.Set(job);  // after the store committed job + events
#ifndef LEMO_SERVER_CORE_JOB_TABLE_H_
#define LEMO_SERVER_CORE_JOB_TABLE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lemo/v1/job.pb.h"
#include "server/core/job_queries.h"

namespace lemo::server {

class JobTable {
 public:
  // `remember_pruned`: how many pruned job ids (with their owner) are kept
  // so that asking for one says it was pruned rather than plainly not found;
  // older ones are forgotten, keeping memory bounded.
  explicit JobTable(size_t remember_pruned = 10000)
      : remember_pruned_(remember_pruned) {}

  // Moves `job` to `to` when the state machine allows it, appending the
  // StateChange event to `events` and updating the job's state fields (start,
  // end time, failure; workers released on an end or a restart).
  // FAILED_PRECONDITION naming the job and both states otherwise; a job with
  // no state yet (a new submission) may only become QUEUED.
  static absl::Status Transition(v1::Job* job, v1::JobState to,
                                 const std::string& message,
                                 const v1::Failure* failure,
                                 std::vector<v1::JobEvent>* events);

  // A new job (submitted or recovered), placed last in submission order.
  // INVALID_ARGUMENT without an id, ALREADY_EXISTS for a known id.
  absl::Status Add(v1::Job job);
  // Replaces a known job; NOT_FOUND for an id Add never saw (or removed).
  absl::Status Set(v1::Job job);
  // Drops a job (retention), remembering its id and owner as pruned.
  void Remove(const std::string& job_id);

  // Null when unknown.
  const v1::Job* Find(const std::string& job_id) const;
  bool Contains(const std::string& job_id) const;
  // Submission position (smaller = earlier); -1 when unknown.
  int64_t Position(const std::string& job_id) const;
  // The committed job for readers on other threads, or null.
  std::shared_ptr<const v1::Job> View(const std::string& job_id) const
      ABSL_LOCKS_EXCLUDED(view_mu_);
  // The owner of a pruned job still remembered, or nullopt. Safe from any
  // thread, like View.
  std::optional<std::string> PrunedOwner(const std::string& job_id) const
      ABSL_LOCKS_EXCLUDED(view_mu_);

  // Every job (unordered).
  const absl::flat_hash_map<std::string, v1::Job>& jobs() const {
    return jobs_;
  }
  // QUEUED and RESTARTING jobs, in submission order.
  std::vector<const v1::Job*> Waiting() const;
  // One page of the jobs `visible` accepts that match `query`, newest first.
  // INVALID_ARGUMENT for a negative page size or a token List never made.
  // Tokens stay valid while jobs are added or pruned.
  absl::StatusOr<ListJobsPage> List(
      const ListJobsQuery& query,
      const std::function<bool(const v1::Job&)>& visible) const;

  // Terminal jobs, oldest end time first, beyond the newest `keep`: the ones
  // retention prunes.
  std::vector<std::string> FinishedBeyond(size_t keep) const;
  size_t finished_count() const { return finished_.size(); }

 private:
  // Terminal jobs ordered by (end time, submission position).
  using FinishedKey = std::pair<absl::Time, int64_t>;
  void Index(const v1::Job& job);
  void Publish(const v1::Job& job) ABSL_LOCKS_EXCLUDED(view_mu_);

  size_t remember_pruned_;
  absl::flat_hash_map<std::string, v1::Job> jobs_;
  // Submission position -> id; positions are never reused, so a page token
  // (a position) still means the same place after jobs before it are pruned.
  std::map<int64_t, std::string> order_;
  absl::flat_hash_map<std::string, int64_t> position_;
  int64_t next_position_ = 0;
  std::map<FinishedKey, std::string> finished_;
  absl::flat_hash_map<std::string, FinishedKey> finished_key_;
  // The committed jobs again, for View: written after jobs_, under view_mu_
  // (taken after the coordinator's lock, never before it).
  mutable absl::Mutex view_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const v1::Job>> view_
      ABSL_GUARDED_BY(view_mu_);
  // Pruned ids, oldest first, and their owners (bounded by remember_pruned_);
  // read by GetJob without the coordinator's lock, hence view_mu_.
  std::deque<std::string> pruned_order_ ABSL_GUARDED_BY(view_mu_);
  absl::flat_hash_map<std::string, std::string> pruned_owner_
      ABSL_GUARDED_BY(view_mu_);
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_JOB_TABLE_H_
