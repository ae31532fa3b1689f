// The coordinator's durable state: jobs, their events and their checkpoints, in
// one SQLite database (WAL mode) under the data dir. Every state change is one
// Commit, i.e. one transaction, so a coordinator killed at any moment restarts
// with every job and event intact. The schema is versioned; Open applies the
// migrations a database lacks.
//
//   LEMO_ASSIGN_OR_RETURN(auto store, Store::Create({.data_dir =
//   "/var/lib/lemo"})); Store::Mutation m; m.job = job;
//   m.events.push_back(event); LEMO_RETURN_IF_ERROR(store->Commit(m));
#ifndef LEMO_SERVER_CORE_STORE_H_
#define LEMO_SERVER_CORE_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "lemo/v1/job.pb.h"

struct sqlite3;

namespace lemo::server {

class Store {
 public:
  struct Options {
    // Directory that holds coordinator.db (created if missing).
    std::string data_dir;
  };

  // Everything one state change writes, applied atomically.
  struct Mutation {
    // Inserted or replaced whole.
    std::optional<v1::Job> job;
    // Appended; (job_id, sequence) must be new.
    std::vector<v1::JobEvent> events;
    // Inserted or replaced.
    std::vector<v1::CheckpointInfo> add_checkpoints;
    // (job_id, checkpoint_id) rows to delete.
    std::vector<std::pair<std::string, std::string>> remove_checkpoints;
    // Jobs deleted whole: their row, every event and every checkpoint row
    // (retention of finished jobs, --retain-finished-jobs).
    std::vector<std::string> remove_jobs;
    // When set: deletes the job's metric and log events with sequence <=
    // trim_events->second (the bound on events per job). State changes and
    // checkpoint events are never deleted.
    std::optional<std::pair<std::string, int64_t>> trim_events;
  };

  // The schema version this build writes; Create migrates older databases up to
  // it.
  static constexpr int kSchemaVersion = 4;

  static absl::StatusOr<std::unique_ptr<Store>> Create(const Options& options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  absl::Status Commit(const Mutation& mutation);

  // Every job, in submission order.
  absl::StatusOr<std::vector<v1::Job>> LoadJobs();
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id);
  // Events of a job with from_sequence <= sequence, oldest first, at most
  // `limit`. Sequence numbers have gaps where trim_events dropped events.
  absl::StatusOr<std::vector<v1::JobEvent>> ReadEvents(
      const std::string& job_id, int64_t from_sequence, int limit);
  // Oldest (lowest step) first.
  absl::StatusOr<std::vector<v1::CheckpointInfo>> ListCheckpoints(
      const std::string& job_id);
  absl::StatusOr<int> SchemaVersion();

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  absl::Status Exec(const std::string& sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Apply(const Mutation& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_STORE_H_
