// Read-only calls (GetJob, WatchDone) answer from the committed view, never
// waiting behind a state change whose store commit is stuck on the disk. To
// add a case: hold the database's write lock from a second SQLite connection
// (as a slow fsync would stall the commit), start the writing call on a
// thread, and check the read answers while it is still blocked.
#include <sqlite3.h>

#include <atomic>
#include <thread>

#include "server/core/coordinator.h"
#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeTempDir;
using ::lemo::server::testing::ValidSpec;
using ::lemo::testing::IsOk;

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

TEST(CoordinatorReads, GetJobAnswersWhileACommitIsStuck) {
  Coordinator::Options o;
  o.data_dir = MakeTempDir("reads");
  o.tick_interval = absl::ZeroDuration();
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Coordinator> coord,
                            Coordinator::Create(o));
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job first, coord->Submit(ValidSpec()));

  std::atomic<bool> second_done{false};
  absl::StatusOr<v1::Job> second;
  std::thread writer;
  {
    WriteLock lock(o.data_dir);
    // This Submit holds the coordinator's lock while its commit waits for the
    // write lock (the store's busy timeout is 5 s).
    writer = std::thread([&] {
      second = coord->Submit(ValidSpec());
      second_done = true;
    });
    // Let the writer reach the commit; were it late, the reads below would
    // pass without proving anything, never fail wrongly.
    absl::SleepFor(absl::Milliseconds(300));
    absl::StatusOr<v1::Job> got = coord->GetJob(first.id());
    EXPECT_THAT(got.status(), IsOk());
    if (got.ok()) EXPECT_EQ(got->state(), v1::QUEUED);
    EXPECT_FALSE(coord->WatchDone(first.id(), 1));
    // Answered while the Submit is still stuck: reads did not queue behind it.
    EXPECT_FALSE(second_done.load());
  }
  writer.join();
  ASSERT_THAT(second.status(), IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job again, coord->GetJob(second->id()));
  EXPECT_EQ(again.state(), v1::QUEUED);
}

}  // namespace
}  // namespace lemo::server
