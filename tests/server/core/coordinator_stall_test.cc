// The coordinator while a state change's store commit is stuck on the disk
// (it holds the coordinator's lock across the fsync): read-only calls
// (GetJob, WatchDone) answer from the committed view, and a worker whose
// heartbeat waits for the lock is not declared lost. To add a case: hold the
// database's write lock from a second SQLite connection (WriteLock), start
// the writing call on a thread, and check what must still work meanwhile.
#include <sqlite3.h>

#include <atomic>
#include <thread>

#include "server/core/coordinator.h"
#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeRegister;
using ::lemo::server::testing::MakeTempDir;
using ::lemo::server::testing::ValidSpec;
using ::lemo::testing::IsOk;

// Job queries as an admin (sees every job).
const Principal kAdmin{"admin", Role::kAdmin};

// Holds SQLite's write lock on the coordinator's database until destroyed.
class WriteLock {
 public:
  explicit WriteLock(const std::string& data_dir) {
    EXPECT_EQ(sqlite3_open((data_dir + "/coordinator.db").c_str(), &db_),
              SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db_, "BEGIN IMMEDIATE;", nullptr, nullptr, nullptr),
              SQLITE_OK);
  }
  ~WriteLock() {
    sqlite3_exec(db_, "ROLLBACK;", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
  }

 private:
  sqlite3* db_ = nullptr;
};

TEST(CoordinatorStall, GetJobAnswersWhileACommitIsStuck) {
  Coordinator::Options o;
  o.data_dir = MakeTempDir("reads");
  o.tick_interval = absl::ZeroDuration();
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Coordinator> coord,
                            Coordinator::Create(o));
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job first, coord->Submit(kAdmin, ValidSpec()));

  std::atomic<bool> second_done{false};
  absl::StatusOr<v1::Job> second;
  std::thread writer;
  {
    WriteLock lock(o.data_dir);
    // This Submit holds the coordinator's lock while its commit waits for the
    // write lock (the store's busy timeout is 5 s).
    writer = std::thread([&] {
      second = coord->Submit(kAdmin, ValidSpec());
      second_done = true;
    });
    // Let the writer reach the commit; were it late, the reads below would
    // pass without proving anything, never fail wrongly.
    absl::SleepFor(absl::Milliseconds(300));
    absl::StatusOr<v1::Job> got = coord->GetJob(kAdmin, first.id());
    EXPECT_THAT(got.status(), IsOk());
    if (got.ok()) EXPECT_EQ(got->state(), v1::QUEUED);
    EXPECT_FALSE(coord->WatchDone(first.id(), 1));
    // Answered while the Submit is still stuck: reads did not queue behind it.
    EXPECT_FALSE(second_done.load());
  }
  writer.join();
  ASSERT_THAT(second.status(), IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job again, coord->GetJob(kAdmin, second->id()));
  EXPECT_EQ(again.state(), v1::QUEUED);
}

TEST(CoordinatorStall, WorkerWaitingBehindACommitIsNotLost) {
  Coordinator::Options o;
  o.data_dir = MakeTempDir("stall");
  o.tick_interval = absl::ZeroDuration();  // The test calls Tick().
  o.worker_timeout = absl::Milliseconds(500);
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Coordinator> coord,
                            Coordinator::Create(o));
  LEMO_ASSERT_OK_AND_ASSIGN(
      Coordinator::Session session,
      coord->Connect(Principal{"w0", Role::kWorker}, MakeRegister("w0")));
  absl::Status submitted, heartbeat;
  std::thread writer, worker, ticker;
  {
    WriteLock lock(o.data_dir);
    writer = std::thread(
        [&] { submitted = coord->Submit(kAdmin, ValidSpec()).status(); });
    absl::SleepFor(absl::Milliseconds(100));
    // The expiry tick queues for the lock the stuck Submit holds, then the
    // worker's heartbeat arrives and queues behind it, longer than the worker
    // timeout. absl::Mutex hands the lock over roughly in arrival order, so
    // the tick usually runs first, while the heartbeat still waits.
    ticker = std::thread([&] { coord->Tick(); });
    absl::SleepFor(absl::Milliseconds(100));
    worker = std::thread([&] {
      v1::WorkerMessage m;
      m.mutable_heartbeat();
      heartbeat = coord->OnWorkerMessage(session, m);
    });
    absl::SleepFor(absl::Milliseconds(800));
  }
  writer.join();
  worker.join();
  ticker.join();
  EXPECT_THAT(submitted, IsOk());
  // The worker spoke within the timeout (its message was waiting), so it
  // stays connected whichever of the two got the lock first.
  EXPECT_THAT(heartbeat, IsOk());
  std::vector<v1::WorkerInfo> workers = coord->ListWorkers(kAdmin).value();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].state(), v1::WorkerInfo::CONNECTED);
}

}  // namespace
}  // namespace lemo::server
