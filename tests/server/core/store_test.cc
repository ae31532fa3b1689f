// Store: commits are atomic, survive reopening, and the schema migrates. To add
// a case: a TEST that commits Mutations and reads them back, possibly after
// reopening the store.
#include "server/core/store.h"

#include <sqlite3.h>

#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeTempDir;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

v1::Job MakeJob(const std::string& id, v1::JobState state) {
  v1::Job job;
  job.set_id(id);
  job.set_state(state);
  return job;
}

v1::JobEvent MakeEvent(const std::string& job_id, int64_t seq) {
  v1::JobEvent e;
  e.set_job_id(job_id);
  e.set_sequence(seq);
  e.mutable_metric()->set_step(seq);
  return e;
}

TEST(Store, CommitsSurviveReopen) {
  std::string dir = MakeTempDir("store");
  {
    LEMO_ASSERT_OK_AND_ASSIGN(auto store, Store::Create({dir}));
    Store::Mutation m;
    m.job = MakeJob("job-a", v1::QUEUED);
    m.events = {MakeEvent("job-a", 1), MakeEvent("job-a", 2)};
    LEMO_ASSERT_OK(store->Commit(m));
    Store::Mutation m2;
    m2.job = MakeJob("job-b", v1::RUNNING);
    LEMO_ASSERT_OK(store->Commit(m2));
  }
  LEMO_ASSERT_OK_AND_ASSIGN(auto store, Store::Create({dir}));
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> jobs, store->LoadJobs());
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].id(), "job-a");  // Submission order.
  EXPECT_EQ(jobs[1].state(), v1::RUNNING);
  LEMO_ASSERT_OK_AND_ASSIGN(auto events, store->ReadEvents("job-a", 2, 10));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].metric().step(), 2);
}

TEST(Store, UpdateReplacesTheJobAndKeepsItsPosition) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto store, Store::Create({MakeTempDir("store")}));
  for (const char* id : {"job-a", "job-b"}) {
    Store::Mutation m;
    m.job = MakeJob(id, v1::QUEUED);
    LEMO_ASSERT_OK(store->Commit(m));
  }
  Store::Mutation m;
  m.job = MakeJob("job-a", v1::SUCCEEDED);
  LEMO_ASSERT_OK(store->Commit(m));
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> jobs, store->LoadJobs());
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].id(), "job-a");
  EXPECT_EQ(jobs[0].state(), v1::SUCCEEDED);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job a, store->GetJob("job-a"));
  EXPECT_EQ(a.state(), v1::SUCCEEDED);
  EXPECT_THAT(store->GetJob("job-x"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-x")));
}

TEST(Store, AFailedCommitChangesNothing) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto store, Store::Create({MakeTempDir("store")}));
  Store::Mutation m;
  m.job = MakeJob("job-a", v1::QUEUED);
  m.events = {MakeEvent("job-a", 1)};
  LEMO_ASSERT_OK(store->Commit(m));
  // A duplicate sequence number fails the whole transaction, job update
  // included.
  Store::Mutation bad;
  bad.job = MakeJob("job-a", v1::RUNNING);
  bad.events = {MakeEvent("job-a", 2), MakeEvent("job-a", 1)};
  EXPECT_FALSE(store->Commit(bad).ok());
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job a, store->GetJob("job-a"));
  EXPECT_EQ(a.state(), v1::QUEUED);
  LEMO_ASSERT_OK_AND_ASSIGN(auto events, store->ReadEvents("job-a", 1, 10));
  EXPECT_EQ(events.size(), 1u);
}

TEST(Store, CheckpointsAreListedByStepAndRemovable) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto store, Store::Create({MakeTempDir("store")}));
  Store::Mutation m;
  for (int step : {20, 10, 30}) {
    v1::CheckpointInfo c;
    c.set_job_id("job-a");
    c.set_checkpoint_id(absl::StrCat("step-", step));
    c.set_step(step);
    m.add_checkpoints.push_back(c);
  }
  LEMO_ASSERT_OK(store->Commit(m));
  Store::Mutation rm;
  rm.remove_checkpoints.emplace_back("job-a", "step-20");
  LEMO_ASSERT_OK(store->Commit(rm));
  LEMO_ASSERT_OK_AND_ASSIGN(auto list, store->ListCheckpoints("job-a"));
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].step(), 10);
  EXPECT_EQ(list[1].step(), 30);
}

TEST(Store, UsesWalAndTheCurrentSchema) {
  std::string dir = MakeTempDir("store");
  LEMO_ASSERT_OK_AND_ASSIGN(auto store, Store::Create({dir}));
  EXPECT_EQ(store->SchemaVersion().value_or(-1), Store::kSchemaVersion);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/coordinator.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode;", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(
      std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))),
      "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

// The tables of schema version 1 (version 2 added an index, 3 the owner).
constexpr char kVersion1Tables[] =
    "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT "
    "NULL UNIQUE, state INTEGER NOT NULL, job BLOB NOT NULL);"
    "CREATE TABLE events (job_id TEXT NOT NULL, sequence INTEGER NOT NULL, "
    "event BLOB NOT NULL, PRIMARY KEY (job_id, sequence)) WITHOUT ROWID;"
    "CREATE TABLE checkpoints (job_id TEXT NOT NULL, checkpoint_id TEXT NOT "
    "NULL, step INTEGER NOT NULL, info BLOB NOT NULL, PRIMARY KEY (job_id, "
    "checkpoint_id)) WITHOUT ROWID;";

TEST(Store, MigratesAnOlderDatabase) {
  std::string dir = MakeTempDir("store");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/coordinator.db").c_str(), &db), SQLITE_OK);
  // A version-1 database: the tables, no index.
  ASSERT_EQ(
      sqlite3_exec(
          db, absl::StrCat(kVersion1Tables, "PRAGMA user_version=1;").c_str(),
          nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  LEMO_ASSERT_OK_AND_ASSIGN(auto store, Store::Create({dir}));
  EXPECT_EQ(store->SchemaVersion().value_or(-1), Store::kSchemaVersion);
}

// A job written before owners were recorded (schema v2) stays readable and
// has owner '' (admin-only) after the migration, even if its blob claimed one.
TEST(Store, JobsFromBeforeOwnersLoadWithoutOwner) {
  std::string dir = MakeTempDir("store");
  v1::Job old = MakeJob("job-old", v1::SUCCEEDED);
  old.set_owner("mallory");
  const std::string blob = old.SerializeAsString();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/coordinator.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db,
                   absl::StrCat(kVersion1Tables,
                                "CREATE INDEX jobs_by_state ON jobs (state); "
                                "PRAGMA user_version=2;")
                       .c_str(),
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(
                db, "INSERT INTO jobs (id, state, job) VALUES (?1, ?2, ?3);",
                -1, &st, nullptr),
            SQLITE_OK);
  sqlite3_bind_text(st, 1, "job-old", -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(st, 2, v1::SUCCEEDED);
  sqlite3_bind_blob(st, 3, blob.data(), static_cast<int>(blob.size()),
                    SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(db);

  LEMO_ASSERT_OK_AND_ASSIGN(auto store, Store::Create({dir}));
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> jobs, store->LoadJobs());
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id(), "job-old");
  EXPECT_EQ(jobs[0].owner(), "");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job got, store->GetJob("job-old"));
  EXPECT_EQ(got.owner(), "");

  // A new job keeps the owner it was committed with.
  Store::Mutation m;
  m.job = MakeJob("job-new", v1::QUEUED);
  m.job->set_owner("alice");
  LEMO_ASSERT_OK(store->Commit(m));
  LEMO_ASSERT_OK_AND_ASSIGN(got, store->GetJob("job-new"));
  EXPECT_EQ(got.owner(), "alice");
}

TEST(Store, RefusesANewerSchema) {
  std::string dir = MakeTempDir("store");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/coordinator.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "PRAGMA user_version=99;", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  EXPECT_THAT(
      Store::Create({dir}),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("v99")));
}

// Retention deletes a job whole; the event bound drops only metric and log
// events at or below the cut, never state changes or checkpoints.
TEST(Store, RemoveJobsAndTrimEvents) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto store, Store::Create({MakeTempDir("store")}));
  for (const char* id : {"job-a", "job-b"}) {
    Store::Mutation m;
    m.job = MakeJob(id, v1::RUNNING);
    m.events = {MakeEvent(id, 1), MakeEvent(id, 2), MakeEvent(id, 3),
                MakeEvent(id, 4)};
    m.events[1].mutable_state_change()->set_to(v1::RUNNING);
    m.events[2].mutable_checkpoint()->set_checkpoint_id("c1");
    v1::CheckpointInfo c;
    c.set_job_id(id);
    c.set_checkpoint_id("c1");
    m.add_checkpoints.push_back(c);
    LEMO_ASSERT_OK(store->Commit(m));
  }
  Store::Mutation trim;
  trim.trim_events.emplace("job-a", 3);
  LEMO_ASSERT_OK(store->Commit(trim));
  LEMO_ASSERT_OK_AND_ASSIGN(auto events, store->ReadEvents("job-a", 1, 10));
  std::vector<int64_t> left;
  for (const v1::JobEvent& e : events) left.push_back(e.sequence());
  // 1 (a metric) went; 2 (a state change) and 3 (a checkpoint) stay; 4 is
  // past the cut.
  EXPECT_EQ(left, (std::vector<int64_t>{2, 3, 4}));
  LEMO_ASSERT_OK_AND_ASSIGN(events, store->ReadEvents("job-b", 1, 10));
  EXPECT_EQ(events.size(), 4u);  // Another job's events are untouched.

  Store::Mutation remove;
  remove.remove_jobs.push_back("job-a");
  LEMO_ASSERT_OK(store->Commit(remove));
  EXPECT_THAT(store->GetJob("job-a"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-a")));
  LEMO_ASSERT_OK_AND_ASSIGN(events, store->ReadEvents("job-a", 1, 10));
  EXPECT_TRUE(events.empty());
  LEMO_ASSERT_OK_AND_ASSIGN(auto checkpoints, store->ListCheckpoints("job-a"));
  EXPECT_TRUE(checkpoints.empty());
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> jobs, store->LoadJobs());
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id(), "job-b");
  LEMO_ASSERT_OK_AND_ASSIGN(checkpoints, store->ListCheckpoints("job-b"));
  EXPECT_EQ(checkpoints.size(), 1u);
}

}  // namespace
}  // namespace lemo::server
