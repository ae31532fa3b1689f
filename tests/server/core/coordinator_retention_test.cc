// Retention and event bounds of the coordinator core: finished jobs beyond
// --retain-finished-jobs are pruned from memory, the store and the checkpoint
// directory (and stay gone after a restart on the same data dir); a job's
// metric and log events beyond --max-events-per-job are dropped while its
// state changes and checkpoints stay, and watchers skip the gap. To add a
// case: Open() a coordinator with the options under test, RunToSuccess()
// jobs on the fake worker, and check GetJob, the Store and the disk.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "server/core/coordinator.h"
#include "server/core/store.h"
#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeRegister;
using ::lemo::server::testing::MakeTempDir;
using ::lemo::server::testing::ValidSpec;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

const Principal kAdmin{"admin", Role::kAdmin};
const Principal kAlice{"alice", Role::kClient};
const Principal kBob{"bob", Role::kClient};

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir("retention"); }

  void Open(int retain, int64_t max_events = 0) {
    coord_.reset();
    Coordinator::Options o;
    o.data_dir = dir_;
    o.tick_interval = absl::ZeroDuration();
    o.retain_finished_jobs = retain;
    o.max_events_per_job = max_events;
    LEMO_ASSERT_OK_AND_ASSIGN(coord_, Coordinator::Create(o));
    LEMO_ASSERT_OK_AND_ASSIGN(
        session_,
        coord_->Connect(Principal{"w0", Role::kWorker}, MakeRegister("w0")));
    ASSERT_TRUE(Next().has_welcome());
  }

  v1::CoordinatorMessage Next() {
    auto m = session_.outbox->Pop(absl::Seconds(2));
    EXPECT_TRUE(m.has_value()) << "no message for w0";
    return m.value_or(v1::CoordinatorMessage());
  }

  absl::Status Send(v1::WorkerMessage m) {
    return coord_->OnWorkerMessage(session_, m);
  }
  absl::Status Status(const v1::Assign& a, v1::JobState state) {
    v1::WorkerMessage m;
    m.mutable_task_status()->set_job_id(a.job_id());
    m.mutable_task_status()->set_epoch(a.epoch());
    m.mutable_task_status()->set_state(state);
    return Send(m);
  }
  absl::Status Metric(const v1::Assign& a, int64_t step) {
    v1::WorkerMessage m;
    m.mutable_metrics()->set_job_id(a.job_id());
    m.mutable_metrics()->set_epoch(a.epoch());
    m.mutable_metrics()->mutable_sample()->set_step(step);
    return Send(m);
  }
  absl::Status Upload(const v1::Assign& a, int64_t step) {
    v1::UploadCheckpointRequest c;
    c.set_job_id(a.job_id());
    c.set_epoch(a.epoch());
    c.set_step(step);
    c.set_checkpoint_id(absl::StrCat("step-", step));
    c.set_file_name("adapter_model.safetensors");
    c.set_data(absl::StrCat("weights@", step));
    c.set_sha256(Sha256Hex(c.data()));
    const Principal any{"any", Role::kWorker, true};
    LEMO_ASSIGN_OR_RETURN(auto up, coord_->BeginUpload(any, c));
    LEMO_RETURN_IF_ERROR(up->Add(c));
    return coord_->CommitUpload(*up).status();
  }

  // Submits as `owner` and runs the job to SUCCEEDED on w0, with two metric
  // events and one checkpoint.
  std::string RunToSuccess(const Principal& owner = kAlice) {
    auto job = coord_->Submit(owner, ValidSpec());
    EXPECT_THAT(job.status(), IsOk());
    v1::CoordinatorMessage m = Next();
    EXPECT_TRUE(m.has_assign()) << m.DebugString();
    const v1::Assign a = m.assign();
    EXPECT_THAT(Status(a, v1::RUNNING), IsOk());
    EXPECT_THAT(Metric(a, 1), IsOk());
    EXPECT_THAT(Metric(a, 2), IsOk());
    EXPECT_THAT(Upload(a, 2), IsOk());
    EXPECT_THAT(Status(a, v1::SUCCEEDED), IsOk());
    return a.job_id();
  }

  bool HasCheckpointDir(const std::string& job_id) {
    return std::filesystem::exists(dir_ + "/checkpoints/" + job_id);
  }

  std::string dir_;
  std::unique_ptr<Coordinator> coord_;
  Coordinator::Session session_;
};

TEST_F(RetentionTest, OldestFinishedJobsArePrunedFromMemoryStoreAndDisk) {
  Open(/*retain=*/3);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(RunToSuccess());
  for (int i = 0; i < 2; ++i) {
    // The owner learns why it is gone; another tenant only that it is not
    // there (as for a job that never existed).
    EXPECT_THAT(coord_->GetJob(kAlice, ids[i]),
                StatusIs(absl::StatusCode::kNotFound,
                         HasSubstr("was pruned (the coordinator keeps the "
                                   "newest 3 finished jobs, "
                                   "--retain-finished-jobs)")));
    EXPECT_THAT(
        coord_->GetJob(kBob, ids[i]),
        StatusIs(absl::StatusCode::kNotFound, Not(HasSubstr("pruned"))));
    EXPECT_THAT(coord_->ListCheckpoints(kAlice, ids[i]),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("pruned")));
    EXPECT_THAT(coord_->Watch(kAdmin, WatchQuery{ids[i]}),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("pruned")));
    EXPECT_FALSE(HasCheckpointDir(ids[i])) << ids[i];
  }
  for (int i = 2; i < 5; ++i) {
    EXPECT_THAT(coord_->GetJob(kAlice, ids[i]), IsOk());
    EXPECT_TRUE(HasCheckpointDir(ids[i])) << ids[i];
    LEMO_ASSERT_OK_AND_ASSIGN(auto checkpoints,
                              coord_->ListCheckpoints(kAlice, ids[i]));
    EXPECT_EQ(checkpoints.size(), 1u);
  }
  LEMO_ASSERT_OK_AND_ASSIGN(ListJobsPage all, coord_->ListJobs(kAdmin, {}));
  EXPECT_EQ(all.jobs.size(), 3u);
  // /metrics still counts every job that succeeded since start, so a rise in
  // a terminal state's count is not hidden by pruning.
  EXPECT_EQ(coord_->GetSnapshot().jobs_by_state[v1::SUCCEEDED], 5);

  // A restart on the same data dir: the pruned jobs are gone from the store
  // too (a plain NOT_FOUND: the pruned ids lived in memory only).
  Open(/*retain=*/3);
  for (int i = 0; i < 2; ++i) {
    EXPECT_THAT(coord_->GetJob(kAlice, ids[i]),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("not found")));
  }
  for (int i = 2; i < 5; ++i)
    EXPECT_THAT(coord_->GetJob(kAlice, ids[i]), IsOk());
  coord_.reset();
  LEMO_ASSERT_OK_AND_ASSIGN(auto store, Store::Create({dir_}));
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::Job> stored, store->LoadJobs());
  EXPECT_EQ(stored.size(), 3u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_THAT(store->GetJob(ids[i]),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr(ids[i])));
    LEMO_ASSERT_OK_AND_ASSIGN(auto events, store->ReadEvents(ids[i], 1, 100));
    EXPECT_TRUE(events.empty());
    LEMO_ASSERT_OK_AND_ASSIGN(auto checkpoints, store->ListCheckpoints(ids[i]));
    EXPECT_TRUE(checkpoints.empty());
  }
  LEMO_ASSERT_OK_AND_ASSIGN(auto kept, store->ReadEvents(ids[4], 1, 100));
  EXPECT_EQ(kept.size(), 7u);  // 4 state changes, 2 metrics, 1 checkpoint.
}

TEST_F(RetentionTest, ALowerBoundPrunesAtStartAndRunningJobsStay) {
  Open(/*retain=*/10);
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(RunToSuccess());
  // A running job is never pruned, however low the bound.
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job running,
                            coord_->Submit(kAlice, ValidSpec()));
  v1::CoordinatorMessage m = Next();
  ASSERT_TRUE(m.has_assign());
  LEMO_ASSERT_OK(Status(m.assign(), v1::RUNNING));
  Open(/*retain=*/1);
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(coord_->GetJob(kAdmin, ids[i]),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("pruned")));
    EXPECT_FALSE(HasCheckpointDir(ids[i]));
  }
  EXPECT_THAT(coord_->GetJob(kAdmin, ids[3]), IsOk());
  EXPECT_THAT(coord_->GetJob(kAdmin, running.id()), IsOk());
}

TEST_F(RetentionTest, BadBoundsAreRefusedNamingTheFlag) {
  Coordinator::Options o;
  o.data_dir = dir_;
  o.retain_finished_jobs = 0;
  EXPECT_THAT(Coordinator::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must be >= 1 (--retain-finished-jobs)")));
  o.retain_finished_jobs = 1;
  o.max_events_per_job = -1;
  EXPECT_THAT(Coordinator::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("(0: no limit; --max-events-per-job)")));
}

TEST_F(RetentionTest, OldMetricEventsAreDroppedStateAndCheckpointsKept) {
  Open(/*retain=*/10, /*max_events=*/10);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, coord_->Submit(kAlice, ValidSpec()));
  v1::CoordinatorMessage m = Next();
  ASSERT_TRUE(m.has_assign());
  const v1::Assign a = m.assign();
  LEMO_ASSERT_OK(Status(a, v1::RUNNING));  // Events 1-3: state changes.
  LEMO_ASSERT_OK(Upload(a, 1));            // Event 4: a checkpoint.
  for (int step = 1; step <= 50; ++step) LEMO_ASSERT_OK(Metric(a, step));
  LEMO_ASSERT_OK(Status(a, v1::SUCCEEDED));  // Event 55.

  // A watcher replaying history skips the dropped sequence numbers.
  LEMO_ASSERT_OK_AND_ASSIGN(auto watcher, coord_->Watch(kAlice, {job.id()}));
  std::vector<v1::JobEvent> seen;
  while (true) {
    LEMO_ASSERT_OK_AND_ASSIGN(auto e, watcher->Next(absl::Milliseconds(50)));
    if (!e.has_value()) break;
    seen.push_back(*e);
  }
  int states = 0, checkpoints = 0;
  std::vector<int64_t> metric_steps;
  for (const v1::JobEvent& e : seen) {
    states += e.has_state_change();
    checkpoints += e.has_checkpoint();
    if (e.has_metric()) metric_steps.push_back(e.metric().step());
  }
  EXPECT_EQ(states, 4);
  EXPECT_EQ(checkpoints, 1);
  // Metric step s is event s + 4. The last one (54) kept the newest 10
  // sequence numbers, 45-54: steps 41-50.
  ASSERT_FALSE(metric_steps.empty());
  EXPECT_EQ(metric_steps.front(), 41);
  EXPECT_EQ(metric_steps.back(), 50);
  EXPECT_EQ(metric_steps.size(), 10u);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().sequence(), 55);
  EXPECT_TRUE(coord_->WatchDone(job.id(), watcher->next_sequence()));
}

}  // namespace
}  // namespace lemo::server
