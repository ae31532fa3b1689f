// Coordinator end to end without gRPC: fake workers drive sessions through the
// core API. To add a case: a TEST_F that submits jobs, connects FakeWorkers,
// sends their messages and checks job states, events and the messages the
// workers received.
#include "server/core/coordinator.h"
#include "common/sha256.h"

#include <fstream>
#include <thread>

#include "absl/strings/match.h"

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

// Job queries as an admin (sees every job); the tenant tests use clients.
const Principal kAdmin{"admin", Role::kAdmin};
// A worker principal not bound to one worker id (legacy shared token).
const Principal kAnyWorker{"any-worker", Role::kWorker, true};

// A worker as the core sees it: a session plus the messages queued for it.
struct FakeWorker {
  Coordinator* coord;
  Coordinator::Session session;

  v1::CoordinatorMessage Next() {
    auto m = session.outbox->Pop(absl::Seconds(2));
    EXPECT_TRUE(m.has_value()) << session.worker_id << " got no message";
    return m.value_or(v1::CoordinatorMessage());
  }
  v1::Assign ExpectAssign() {
    v1::CoordinatorMessage m = Next();
    EXPECT_TRUE(m.has_assign()) << m.DebugString();
    return m.assign();
  }
  bool Idle() {
    return !session.outbox->Pop(absl::Milliseconds(20)).has_value();
  }
  absl::Status Status(
      const v1::Assign& a, v1::JobState state, int64_t step = 0,
      v1::FailureReason reason = v1::FAILURE_REASON_UNSPECIFIED) {
    v1::WorkerMessage m;
    m.mutable_task_status()->set_job_id(a.job_id());
    m.mutable_task_status()->set_epoch(a.epoch());
    m.mutable_task_status()->set_state(state);
    m.mutable_task_status()->set_step(step);
    m.mutable_task_status()->mutable_failure()->set_reason(reason);
    return coord->OnWorkerMessage(session, m);
  }
  absl::Status Metric(const v1::Assign& a, int64_t step, double loss) {
    v1::WorkerMessage m;
    m.mutable_metrics()->set_job_id(a.job_id());
    m.mutable_metrics()->set_epoch(a.epoch());
    m.mutable_metrics()->mutable_sample()->set_step(step);
    m.mutable_metrics()->mutable_sample()->set_loss(loss);
    return coord->OnWorkerMessage(session, m);
  }
  absl::Status Heartbeat() {
    v1::WorkerMessage m;
    m.mutable_heartbeat();
    return coord->OnWorkerMessage(session, m);
  }
};

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("coord");
    Open();
  }
  void Open(absl::Duration timeout = absl::Seconds(30)) {
    coord_.reset();
    Coordinator::Options o;
    o.data_dir = dir_;
    o.worker_timeout = timeout;
    o.tick_interval = absl::ZeroDuration();  // Tests call Tick().
    o.on_queue_wait = [this](double s) { queue_waits_.push_back(s); };
    auto c = Coordinator::Create(o);
    ASSERT_TRUE(c.ok()) << c.status();
    coord_ = std::move(*c);
  }
  FakeWorker Connect(const std::string& id, v1::Register reg = v1::Register()) {
    if (reg.worker_id().empty()) reg = MakeRegister(id);
    auto s = coord_->Connect(Principal{reg.worker_id(), Role::kWorker}, reg);
    EXPECT_TRUE(s.ok()) << s.status();
    FakeWorker w{coord_.get(), s.value_or(Coordinator::Session())};
    EXPECT_TRUE(w.Next().has_welcome());
    return w;
  }
  v1::Job Submit(v1::JobSpec spec = ValidSpec()) {
    auto job = coord_->Submit(kAdmin, spec);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.value_or(v1::Job());
  }
  v1::JobState State(const std::string& id) {
    return coord_->GetJob(kAdmin, id)->state();
  }
  std::vector<v1::JobEvent> Events(const std::string& id) {
    WatchQuery r;
    r.job_id = id;
    auto w = coord_->Watch(kAdmin, r);
    std::vector<v1::JobEvent> out;
    while (true) {
      auto e = (*w)->Next(absl::Milliseconds(10));
      if (!e.ok() || !e->has_value()) break;
      out.push_back(**e);
    }
    return out;
  }
  std::vector<v1::JobState> States(const std::string& id) {
    std::vector<v1::JobState> out;
    for (const auto& e : Events(id)) {
      if (e.has_state_change()) out.push_back(e.state_change().to());
    }
    return out;
  }
  // Uploads a one-file checkpoint for `a` at `step`.
  absl::StatusOr<v1::CheckpointInfo> Upload(
      const v1::Assign& a, int64_t step,
      const Principal& uploader = kAnyWorker) {
    v1::UploadCheckpointRequest c;
    c.set_job_id(a.job_id());
    c.set_epoch(a.epoch());
    c.set_step(step);
    c.set_checkpoint_id(absl::StrCat("step-", step));
    c.set_file_name("adapter_model.safetensors");
    c.set_data(absl::StrCat("weights@", step));
    c.set_sha256(Sha256Hex(c.data()));
    auto up = coord_->BeginUpload(uploader, c);
    if (!up.ok()) return up.status();
    absl::Status s = (*up)->Add(c);
    if (!s.ok()) return s;
    return coord_->CommitUpload(**up);
  }

  std::string dir_;
  std::unique_ptr<Coordinator> coord_;
  std::vector<double> queue_waits_;
};

TEST_F(CoordinatorTest, JobRunsToSuccessOnOneWorker) {
  FakeWorker w = Connect("w0");
  v1::Job job = Submit();
  EXPECT_EQ(job.state(), v1::SCHEDULED);
  v1::Assign a = w.ExpectAssign();
  EXPECT_EQ(a.job_id(), job.id());
  EXPECT_EQ(a.epoch(), 1);
  EXPECT_EQ(a.world_size(), 1);
  EXPECT_EQ(a.spec().lora().r(), 8);  // Defaults filled.
  EXPECT_EQ(a.rendezvous_address(), "127.0.0.1:29500");
  EXPECT_FALSE(a.has_resume());
  LEMO_ASSERT_OK(w.Status(a, v1::RUNNING));
  EXPECT_EQ(State(job.id()), v1::RUNNING);
  for (int step = 1; step <= 3; ++step)
    LEMO_ASSERT_OK(w.Metric(a, step, 3.0 / step));
  LEMO_ASSERT_OK(w.Status(a, v1::SUCCEEDED, 3));
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job done, coord_->GetJob(kAdmin, job.id()));
  EXPECT_EQ(done.state(), v1::SUCCEEDED);
  EXPECT_EQ(done.current_step(), 3);
  EXPECT_EQ(done.latest_metrics().loss(), 1.0);
  EXPECT_EQ(done.latest_metrics().total_steps(), 10);  // Filled from the spec.
  EXPECT_TRUE(done.latest_metrics().has_time());
  EXPECT_TRUE(done.has_end_time());
  EXPECT_EQ(States(job.id()),
            (std::vector<v1::JobState>{v1::QUEUED, v1::SCHEDULED, v1::RUNNING,
                                       v1::SUCCEEDED}));
  EXPECT_EQ(Events(job.id()).size(), 7u);  // 4 state changes + 3 metrics.
  EXPECT_EQ(queue_waits_.size(), 1u);
  EXPECT_TRUE(
      coord_->ListWorkers(kAdmin).value()[0].job_id().empty());  // Freed.
}

TEST_F(CoordinatorTest, SnapshotShowsActiveJobsRestartsAndCheckpointTime) {
  FakeWorker w = Connect("w0");
  v1::Job job = Submit();
  v1::Assign a = w.ExpectAssign();
  LEMO_ASSERT_OK(w.Status(a, v1::RUNNING));
  LEMO_ASSERT_OK(w.Metric(a, 1, 2.0));
  Coordinator::Snapshot before = coord_->GetSnapshot();
  EXPECT_EQ(before.active_job_restarts.at(job.id()), 0);
  EXPECT_EQ(before.active_job_checkpoint_time.count(job.id()), 0u);

  absl::Time t0 = absl::Now();
  LEMO_ASSERT_OK(Upload(a, 1).status());
  Coordinator::Snapshot after = coord_->GetSnapshot();
  ASSERT_EQ(after.active_job_checkpoint_time.count(job.id()), 1u);
  // Proto timestamps keep nanoseconds, so the commit time is not before t0.
  EXPECT_GE(after.active_job_checkpoint_time.at(job.id()), t0);
  EXPECT_LE(after.active_job_checkpoint_time.at(job.id()), absl::Now());

  LEMO_ASSERT_OK(w.Status(a, v1::SUCCEEDED, 1));
  Coordinator::Snapshot done = coord_->GetSnapshot();
  EXPECT_TRUE(done.active_job_restarts.empty());  // Terminal jobs drop out.
  EXPECT_TRUE(done.active_job_checkpoint_time.empty());
}

TEST_F(CoordinatorTest, JobsQueueOnOneWorkerAndRunInOrder) {
  FakeWorker w = Connect("w0");
  v1::Job first = Submit();
  v1::Job second = Submit();
  EXPECT_EQ(second.state(), v1::QUEUED);
  v1::Assign a = w.ExpectAssign();
  EXPECT_EQ(a.job_id(), first.id());
  LEMO_ASSERT_OK(w.Status(a, v1::RUNNING));
  LEMO_ASSERT_OK(w.Status(a, v1::SUCCEEDED, 10));
  v1::Assign b = w.ExpectAssign();
  EXPECT_EQ(b.job_id(), second.id());
}

TEST_F(CoordinatorTest, GangWaitsForEnoughWorkers) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_resources()->set_world_size(2);
  FakeWorker w0 = Connect("w0");
  v1::Job job = Submit(spec);
  EXPECT_EQ(job.state(), v1::QUEUED);
  EXPECT_TRUE(w0.Idle());  // No partial allocation.
  FakeWorker w1 = Connect("w1");
  v1::Assign a0 = w0.ExpectAssign();
  v1::Assign a1 = w1.ExpectAssign();
  EXPECT_EQ(a0.rank(), 0);
  EXPECT_EQ(a1.rank(), 1);
  EXPECT_EQ(a1.world_size(), 2);
  LEMO_ASSERT_OK(w0.Status(a0, v1::RUNNING));
  EXPECT_EQ(State(job.id()), v1::SCHEDULED);  // Until every rank runs.
  LEMO_ASSERT_OK(w1.Status(a1, v1::RUNNING));
  EXPECT_EQ(State(job.id()), v1::RUNNING);
}

TEST_F(CoordinatorTest, CancelQueuedJobIsImmediate) {
  v1::Job job = Submit();
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job c, coord_->Cancel(kAdmin, job.id(), ""));
  EXPECT_EQ(c.state(), v1::CANCELLED);
}

TEST_F(CoordinatorTest, CancelRunningJobReachesTheWorker) {
  FakeWorker w = Connect("w0");
  v1::Job job = Submit();
  v1::Assign a = w.ExpectAssign();
  LEMO_ASSERT_OK(w.Status(a, v1::RUNNING));
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job c,
                            coord_->Cancel(kAdmin, job.id(), "user said so"));
  EXPECT_EQ(c.state(), v1::CANCELLING);
  v1::CoordinatorMessage m = w.Next();
  ASSERT_TRUE(m.has_cancel());
  EXPECT_EQ(m.cancel().epoch(), a.epoch());
  LEMO_ASSERT_OK(coord_->Cancel(kAdmin, job.id(), "again")
                     .status());  // No-op while CANCELLING.
  LEMO_ASSERT_OK(w.Status(a, v1::CANCELLED, 2));
  EXPECT_EQ(State(job.id()), v1::CANCELLED);
}

TEST_F(CoordinatorTest, CancelFinishedJobIsFailedPrecondition) {
  v1::Job job = Submit();
  LEMO_ASSERT_OK(coord_->Cancel(kAdmin, job.id(), "").status());
  EXPECT_THAT(coord_->Cancel(kAdmin, job.id(), ""),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("already CANCELLED")));
}

TEST_F(CoordinatorTest, UnknownJobIsNotFound) {
  EXPECT_THAT(coord_->GetJob(kAdmin, "job-nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-nope")));
  EXPECT_THAT(coord_->Cancel(kAdmin, "job-nope", ""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("")));
  WatchQuery r;
  r.job_id = "job-nope";
  EXPECT_THAT(coord_->Watch(kAdmin, r),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("")));
  EXPECT_THAT(coord_->ListCheckpoints(kAdmin, "job-nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("")));
}

TEST_F(CoordinatorTest, InvalidSpecIsRejected) {
  v1::JobSpec spec = ValidSpec();
  spec.set_seq_len(0);
  EXPECT_THAT(coord_->Submit(kAdmin, spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.seq_len: must be > 0")));
}

TEST_F(CoordinatorTest, CheckpointsKeptPerJobAreBounded) {
  // The default coordinator keeps at most 20 per job: "keep all" becomes 20
  // (visible in the stored spec), more than 20 is refused naming the flag,
  // and fewer is kept as asked.
  v1::JobSpec spec = ValidSpec();
  spec.mutable_checkpoint()->set_keep_last(0);
  EXPECT_EQ(Submit(spec).spec().checkpoint().keep_last(), 20);
  spec.mutable_checkpoint()->set_keep_last(21);
  EXPECT_THAT(coord_->Submit(kAdmin, spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "spec.checkpoint.keep_last: 21, more than the "
                       "coordinator keeps per job (20, "
                       "--max-checkpoints-per-job)"));
  spec.mutable_checkpoint()->set_keep_last(3);
  EXPECT_EQ(Submit(spec).spec().checkpoint().keep_last(), 3);
}

// A spec between the worker's 8 MiB message limit and the server's 16 MiB
// one would be accepted, then dropped by every worker it was assigned to.
TEST_F(CoordinatorTest, SpecAboveMaxSpecBytesIsRefusedAtSubmit) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_lemo()->set_mode(v1::ORACLE);
  // 1.2 M doubles: about 9.6 MiB serialized.
  for (int i = 0; i < 1200000; ++i) {
    spec.mutable_lemo()->mutable_keep_ratio()->add_per_layer(0.5);
  }
  ASSERT_GT(spec.ByteSizeLong(), size_t{8} << 20);
  EXPECT_THAT(coord_->Submit(kAdmin, spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("more than the coordinator's limit of "
                                 "4194304 (--max-spec-bytes)")));
  EXPECT_TRUE(coord_->ListJobs(kAdmin, ListJobsQuery())->jobs.empty());
}

TEST_F(CoordinatorTest, SpecPathsOutsideEveryWorkersRootsAreRefused) {
  // Before any worker registered, nothing is known: the worker checks.
  v1::JobSpec hostile = ValidSpec();
  hostile.mutable_data()->set_path("/etc/shadow.jsonl");
  EXPECT_THAT(coord_->Submit(kAdmin, hostile), IsOk());
  v1::Register reg = MakeRegister("w1");
  reg.add_model_roots("/models");
  reg.add_data_roots("/data");
  FakeWorker w1 = Connect("w1", reg);
  EXPECT_THAT(coord_->Submit(kAdmin, hostile),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.data.path: \"/etc/shadow.jsonl\" is "
                                 "under no data root of the registered "
                                 "workers (/data)")));
  v1::JobSpec model = ValidSpec();
  model.mutable_model()->set_path("/models2/tiny");
  EXPECT_THAT(coord_->Submit(kAdmin, model),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.model.path")));
  EXPECT_THAT(coord_->Submit(kAdmin, ValidSpec()), IsOk());
  // A model outside the roots is refused before the coordinator reads its
  // config.json (which would say gpt2 is unsupported).
  const std::string outside = MakeTempDir("outside-model");
  std::ofstream(outside + "/config.json") << R"({"model_type": "gpt2"})";
  model.mutable_model()->set_path(outside);
  EXPECT_THAT(coord_->Submit(kAdmin, model),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is under no model root")));
  // An unconfined worker joins: it opens any path, so the spec may go there.
  Connect("w2");
  EXPECT_THAT(coord_->Submit(kAdmin, hostile), IsOk());
}

// In a fleet with different roots, a job goes to a worker that can open its
// paths, even when another one sorts first.
TEST_F(CoordinatorTest, JobsArePlacedOnlyOnWorkersWhoseRootsHoldThem) {
  v1::Register wrong = MakeRegister("a-wrong");
  wrong.add_model_roots("/other-models");
  wrong.add_data_roots("/other-data");
  v1::Register right = MakeRegister("b-right");
  right.add_model_roots("/models");
  right.add_data_roots("/data");
  FakeWorker a = Connect("a-wrong", wrong);
  FakeWorker b = Connect("b-right", right);
  v1::Job job = Submit();
  coord_->Tick();
  EXPECT_EQ(b.ExpectAssign().job_id(), job.id());
  EXPECT_TRUE(a.Idle());
}

TEST_F(CoordinatorTest, UnsupportedModelArchitectureIsRejectedAtSubmit) {
  // A model directory the coordinator can read: its config.json decides.
  const std::string model = MakeTempDir("gpt2-model");
  std::ofstream(model + "/config.json") << R"({"model_type": "gpt2"})";
  v1::JobSpec spec = ValidSpec();
  spec.mutable_model()->set_path(model);
  EXPECT_THAT(coord_->Submit(kAdmin, spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "spec.model.path: config.json model_type \"gpt2\" is "
                       "not supported; supported: llama, mistral, qwen2, "
                       "qwen3"));
  std::ofstream(model + "/config.json") << R"({"model_type": "qwen2"})";
  EXPECT_THAT(coord_->Submit(kAdmin, spec), IsOk());
  // One only workers mount is accepted, as before (the worker checks it).
  spec.mutable_model()->set_path(model + "/not-here");
  EXPECT_THAT(coord_->Submit(kAdmin, spec), IsOk());
}

TEST_F(CoordinatorTest, RankFailureFailsTheJobAndCancelsTheOthers) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_resources()->set_world_size(2);
  FakeWorker w0 = Connect("w0");
  FakeWorker w1 = Connect("w1");
  v1::Job job = Submit(spec);
  v1::Assign a0 = w0.ExpectAssign();
  v1::Assign a1 = w1.ExpectAssign();
  LEMO_ASSERT_OK(w1.Status(a1, v1::FAILED, 0, v1::OUT_OF_MEMORY));
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job failed, coord_->GetJob(kAdmin, job.id()));
  EXPECT_EQ(failed.state(), v1::FAILED);
  EXPECT_EQ(failed.failure().reason(), v1::OUT_OF_MEMORY);
  EXPECT_EQ(failed.failure().rank(), 1);
  EXPECT_TRUE(w0.Next().has_cancel());
}

TEST_F(CoordinatorTest,
       CollectiveTimeoutRestartsTheWholeGangFromTheCheckpoint) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_resources()->set_world_size(2);
  FakeWorker w0 = Connect("w0");
  FakeWorker w1 = Connect("w1");
  v1::Job job = Submit(spec);
  v1::Assign a0 = w0.ExpectAssign();
  v1::Assign a1 = w1.ExpectAssign();
  EXPECT_EQ(a0.rendezvous_address(), "127.0.0.1:29500");
  EXPECT_EQ(a1.rendezvous_address(), a0.rendezvous_address());
  LEMO_ASSERT_OK(w0.Status(a0, v1::RUNNING));
  LEMO_ASSERT_OK(w1.Status(a1, v1::RUNNING));
  LEMO_ASSERT_OK(Upload(a0, 4).status());
  FakeWorker w2 = Connect("w2");
  EXPECT_TRUE(w2.Idle());
  // Rank 1's all-reduce timed out: the gang restarts whole, rank 0 is
  // cancelled, and the new epoch goes to the two free workers.
  LEMO_ASSERT_OK(w1.Status(a1, v1::FAILED, 5, v1::NCCL_TIMEOUT));
  v1::CoordinatorMessage cancel = w0.Next();
  ASSERT_TRUE(cancel.has_cancel());
  EXPECT_EQ(cancel.cancel().epoch(), a0.epoch());
  v1::Assign b0 = w1.ExpectAssign();
  v1::Assign b1 = w2.ExpectAssign();
  EXPECT_EQ(b0.epoch(), a0.epoch() + 1);
  EXPECT_EQ(b0.rank(), 0);
  EXPECT_EQ(b1.rank(), 1);
  ASSERT_TRUE(b1.has_resume());
  EXPECT_EQ(b1.resume().step(), 4);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job j, coord_->GetJob(kAdmin, job.id()));
  EXPECT_EQ(j.restart_count(), 1);
  std::vector<v1::JobEvent> events = Events(job.id());
  bool saw_reason = false;
  for (const v1::JobEvent& e : events) {
    if (e.has_state_change() && e.state_change().to() == v1::RESTARTING) {
      EXPECT_EQ(e.state_change().failure().reason(), v1::NCCL_TIMEOUT);
      EXPECT_EQ(e.state_change().failure().rank(), 1);
      saw_reason = true;
    }
  }
  EXPECT_TRUE(saw_reason);
  // The old rank 0 reports its cancel late: fenced, it changes nothing.
  LEMO_ASSERT_OK(w0.Status(a0, v1::CANCELLED, 5));
  EXPECT_EQ(State(job.id()), v1::SCHEDULED);
  LEMO_ASSERT_OK(w1.Status(b0, v1::RUNNING));
  LEMO_ASSERT_OK(w2.Status(b1, v1::RUNNING));
  LEMO_ASSERT_OK(w2.Status(b1, v1::SUCCEEDED, 10));
  EXPECT_EQ(State(job.id()), v1::RUNNING);  // Rank 0 decides.
  LEMO_ASSERT_OK(w1.Status(b0, v1::SUCCEEDED, 10));
  EXPECT_EQ(State(job.id()), v1::SUCCEEDED);
}

TEST_F(CoordinatorTest, AStaleRanksMessagesAreFencedAndItsTaskCancelled) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_resources()->set_world_size(2);
  FakeWorker w0 = Connect("w0");
  FakeWorker w1 = Connect("w1");
  FakeWorker w2 = Connect("w2");
  v1::Job job = Submit(spec);
  v1::Assign a0 = w0.ExpectAssign();
  v1::Assign a1 = w1.ExpectAssign();
  LEMO_ASSERT_OK(w0.Status(a0, v1::RUNNING));
  LEMO_ASSERT_OK(w1.Status(a1, v1::RUNNING));
  LEMO_ASSERT_OK(w0.Status(a0, v1::FAILED, 3, v1::NCCL_TIMEOUT));
  EXPECT_TRUE(w1.Next().has_cancel());
  v1::Assign b0 = w0.ExpectAssign();
  v1::Assign b1 = w2.ExpectAssign();
  const size_t events_before = Events(job.id()).size();
  // w1 was frozen and never saw the cancel: it goes on at epoch 1. Its
  // metric adds nothing to the job and it is told again to stop.
  LEMO_ASSERT_OK(w1.Metric(a1, 4, 1.0));
  EXPECT_EQ(Events(job.id()).size(), events_before);
  v1::CoordinatorMessage again = w1.Next();
  ASSERT_TRUE(again.has_cancel());
  EXPECT_EQ(again.cancel().epoch(), a1.epoch());
  LEMO_ASSERT_OK(w0.Status(b0, v1::RUNNING));
  LEMO_ASSERT_OK(w0.Metric(b0, 1, 2.0));
  LEMO_ASSERT_OK(w2.Metric(b1, 1, 2.0));
  EXPECT_EQ(coord_->GetJob(kAdmin, job.id())->current_step(), 1);
}

TEST_F(CoordinatorTest, GangRestartsCountAgainstTheBudget) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_resources()->set_world_size(2);
  spec.set_max_restarts(0);
  FakeWorker w0 = Connect("w0");
  FakeWorker w1 = Connect("w1");
  v1::Job job = Submit(spec);
  v1::Assign a0 = w0.ExpectAssign();
  v1::Assign a1 = w1.ExpectAssign();
  LEMO_ASSERT_OK(w1.Status(a1, v1::FAILED, 0, v1::NCCL_TIMEOUT));
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job j, coord_->GetJob(kAdmin, job.id()));
  EXPECT_EQ(j.state(), v1::FAILED);
  EXPECT_EQ(j.failure().reason(), v1::RESTART_BUDGET_EXHAUSTED);
  EXPECT_THAT(j.failure().message(), HasSubstr("rank 1"));
  EXPECT_TRUE(w0.Next().has_cancel());
}

TEST_F(CoordinatorTest, RanksShowWhereEachRunsAndHowFarItGot) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_resources()->set_world_size(2);
  FakeWorker w0 = Connect("w0");
  FakeWorker w1 = Connect("w1");
  v1::Job job = Submit(spec);
  v1::Assign a0 = w0.ExpectAssign();
  v1::Assign a1 = w1.ExpectAssign();
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job j, coord_->GetJob(kAdmin, job.id()));
  ASSERT_EQ(j.ranks_size(), 2);
  EXPECT_EQ(j.ranks(1).worker_id(), "w1");
  EXPECT_EQ(j.ranks(1).state(), v1::SCHEDULED);
  LEMO_ASSERT_OK(w0.Status(a0, v1::RUNNING));
  LEMO_ASSERT_OK(w1.Status(a1, v1::RUNNING));
  LEMO_ASSERT_OK(w0.Metric(a0, 3, 2.0));
  LEMO_ASSERT_OK(w1.Metric(a1, 2, 2.0));
  LEMO_ASSERT_OK_AND_ASSIGN(j, coord_->GetJob(kAdmin, job.id()));
  EXPECT_EQ(j.ranks(0).state(), v1::RUNNING);
  EXPECT_EQ(j.ranks(0).step(), 3);
  EXPECT_EQ(j.ranks(1).step(), 2);
  EXPECT_EQ(j.current_step(), 3);
}

TEST_F(CoordinatorTest, AJobTheFleetCanNeverHoldSaysSo) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_resources()->set_world_size(3);
  FakeWorker w0 = Connect("w0");
  FakeWorker w1 = Connect("w1");
  v1::Job job = Submit(spec);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job j, coord_->GetJob(kAdmin, job.id()));
  EXPECT_EQ(j.state(), v1::QUEUED);
  EXPECT_THAT(j.state_message(),
              HasSubstr("cannot run on the registered fleet: needs 3 CPU"));
  bool warned = false;
  for (const v1::JobEvent& e : Events(job.id())) {
    if (e.has_log() && e.log().level() == v1::LogLine::LEVEL_WARNING) {
      warned = absl::StrContains(e.log().text(), "needs 3 CPU workers");
    }
  }
  EXPECT_TRUE(warned);
  const size_t events = Events(job.id()).size();
  coord_->Tick();  // The same reason is not repeated.
  EXPECT_EQ(Events(job.id()).size(), events);
  FakeWorker w2 = Connect("w2");
  EXPECT_EQ(w2.ExpectAssign().rank(), 2);
  LEMO_ASSERT_OK_AND_ASSIGN(j, coord_->GetJob(kAdmin, job.id()));
  EXPECT_EQ(j.state(), v1::SCHEDULED);
  EXPECT_EQ(j.state_message(), "");
}

TEST_F(CoordinatorTest, TwoGangsOnThreeWorkersRunOneAfterTheOther) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_resources()->set_world_size(2);
  FakeWorker w0 = Connect("w0");
  FakeWorker w1 = Connect("w1");
  FakeWorker w2 = Connect("w2");
  v1::Job first = Submit(spec);
  v1::Job second = Submit(spec);
  v1::Assign a0 = w0.ExpectAssign();
  v1::Assign a1 = w1.ExpectAssign();
  EXPECT_TRUE(w2.Idle());  // All or nothing: one free worker is not a gang.
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job waiting,
                            coord_->GetJob(kAdmin, second.id()));
  EXPECT_EQ(waiting.state(), v1::QUEUED);
  EXPECT_THAT(waiting.state_message(), HasSubstr("1 of 3 are free now"));
  LEMO_ASSERT_OK(w0.Status(a0, v1::RUNNING));
  LEMO_ASSERT_OK(w1.Status(a1, v1::RUNNING));
  LEMO_ASSERT_OK(w1.Status(a1, v1::SUCCEEDED, 4));
  // One more free worker: the second gang is placed on it and the spare.
  v1::Assign b0 = w1.ExpectAssign();
  v1::Assign b1 = w2.ExpectAssign();
  EXPECT_EQ(b0.job_id(), second.id());
  EXPECT_EQ(b1.job_id(), second.id());
  LEMO_ASSERT_OK(w0.Status(a0, v1::SUCCEEDED, 4));
  EXPECT_EQ(State(first.id()), v1::SUCCEEDED);
  EXPECT_EQ(State(second.id()), v1::SCHEDULED);
}

TEST_F(CoordinatorTest, RankZeroIsAWorkerThatHostsAStore) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_resources()->set_world_size(2);
  v1::Register old_build = MakeRegister("w0");
  old_build.clear_rendezvous_address();
  FakeWorker w0 = Connect("w0", old_build);
  v1::Register reg = MakeRegister("w1");
  reg.set_rendezvous_address("10.0.0.2:4000");
  FakeWorker w1 = Connect("w1", reg);
  Submit(spec);
  v1::Assign a0 = w0.ExpectAssign();
  v1::Assign a1 = w1.ExpectAssign();
  EXPECT_EQ(a1.rank(), 0);
  EXPECT_EQ(a0.rank(), 1);
  EXPECT_EQ(a0.rendezvous_address(), "10.0.0.2:4000");
}

TEST_F(CoordinatorTest, LostWorkerRestartsTheJobFromItsLatestCheckpoint) {
  Open(absl::Milliseconds(100));
  FakeWorker w0 = Connect("w0");
  v1::Job job = Submit();
  v1::Assign a = w0.ExpectAssign();
  LEMO_ASSERT_OK(w0.Status(a, v1::RUNNING));
  LEMO_ASSERT_OK(Upload(a, 4).status());
  FakeWorker w1 = Connect("w1");
  absl::SleepFor(absl::Milliseconds(150));
  LEMO_ASSERT_OK(w1.Heartbeat());
  coord_->Tick();  // w0 is silent past the timeout: lost.
  v1::Assign b = w1.ExpectAssign();
  EXPECT_EQ(b.epoch(), 2);
  ASSERT_TRUE(b.has_resume());
  EXPECT_EQ(b.resume().checkpoint_id(), "step-4");
  EXPECT_EQ(b.resume().step(), 4);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job j, coord_->GetJob(kAdmin, job.id()));
  EXPECT_EQ(j.restart_count(), 1);
  EXPECT_EQ(States(job.id()),
            (std::vector<v1::JobState>{v1::QUEUED, v1::SCHEDULED, v1::RUNNING,
                                       v1::RESTARTING, v1::SCHEDULED}));
  // The stale worker comes back: its messages of epoch 1 are fenced.
  EXPECT_THAT(
      w0.Status(a, v1::SUCCEEDED),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("lost")));
  v1::Register again = MakeRegister("w0");
  again.mutable_running_task()->set_job_id(job.id());
  again.mutable_running_task()->set_epoch(1);
  FakeWorker back = Connect("w0", again);
  EXPECT_TRUE(back.Next().has_cancel());  // Fenced off.
  LEMO_ASSERT_OK(back.Status(a, v1::SUCCEEDED));
  EXPECT_EQ(State(job.id()), v1::SCHEDULED);
  EXPECT_THAT(Upload(a, 5), StatusIs(absl::StatusCode::kFailedPrecondition,
                                     HasSubstr("epoch")));
  LEMO_ASSERT_OK(w1.Status(b, v1::RUNNING));
  LEMO_ASSERT_OK(w1.Status(b, v1::SUCCEEDED, 10));
  EXPECT_EQ(State(job.id()), v1::SUCCEEDED);
}

TEST_F(CoordinatorTest, RestartBudgetExhaustedFailsTheJob) {
  Open(absl::Milliseconds(50));
  v1::JobSpec spec = ValidSpec();
  spec.set_max_restarts(0);
  FakeWorker w0 = Connect("w0");
  v1::Job job = Submit(spec);
  w0.ExpectAssign();
  absl::SleepFor(absl::Milliseconds(80));
  coord_->Tick();
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job j, coord_->GetJob(kAdmin, job.id()));
  EXPECT_EQ(j.state(), v1::FAILED);
  EXPECT_EQ(j.failure().reason(), v1::RESTART_BUDGET_EXHAUSTED);
}

TEST_F(CoordinatorTest,
       RestartedCoordinatorKeepsJobsAndAdoptsReturningWorkers) {
  FakeWorker w = Connect("w0");
  v1::Job job = Submit();
  v1::Assign a = w.ExpectAssign();
  LEMO_ASSERT_OK(w.Status(a, v1::RUNNING));
  LEMO_ASSERT_OK(w.Metric(a, 1, 2.0));
  v1::Job queued = Submit();
  size_t events_before = Events(job.id()).size();
  Open();  // The coordinator restarts on the same data dir.
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job j, coord_->GetJob(kAdmin, job.id()));
  EXPECT_EQ(j.state(), v1::RUNNING);
  EXPECT_EQ(j.current_step(), 1);
  EXPECT_EQ(Events(job.id()).size(), events_before);
  EXPECT_EQ(State(queued.id()), v1::QUEUED);
  v1::Register again = MakeRegister("w0");
  again.mutable_running_task()->set_job_id(job.id());
  again.mutable_running_task()->set_epoch(a.epoch());
  FakeWorker back = Connect("w0", again);
  EXPECT_TRUE(back.Idle());  // Adopted: no Cancel, no new Assign.
  LEMO_ASSERT_OK(back.Metric(a, 2, 1.5));
  LEMO_ASSERT_OK(back.Status(a, v1::SUCCEEDED, 2));
  EXPECT_EQ(State(job.id()), v1::SUCCEEDED);
  EXPECT_EQ(back.ExpectAssign().job_id(), queued.id());
}

TEST_F(CoordinatorTest,
       RestartedCoordinatorRestartsJobsWhoseWorkersNeverReturn) {
  FakeWorker w = Connect("w0");
  v1::Job job = Submit();
  v1::Assign a = w.ExpectAssign();
  LEMO_ASSERT_OK(w.Status(a, v1::RUNNING));
  Open(absl::Milliseconds(50));  // Restart; w0 never re-registers.
  FakeWorker other = Connect("w1");
  absl::SleepFor(absl::Milliseconds(80));
  LEMO_ASSERT_OK(other.Heartbeat());
  coord_->Tick();
  v1::Assign b = other.ExpectAssign();
  EXPECT_EQ(b.job_id(), job.id());
  EXPECT_EQ(b.epoch(), a.epoch() + 1);
  EXPECT_EQ(coord_->GetJob(kAdmin, job.id())->restart_count(), 1);
}

TEST_F(CoordinatorTest,
       APlacementTheCrashedCoordinatorNeverSentIsSentAgainWithoutARestart) {
  FakeWorker w = Connect("w0");
  v1::Job job = Submit();
  v1::Assign a = w.ExpectAssign();
  // The coordinator died after storing SCHEDULED, before the Assign left: the
  // worker comes back to the new one without the task. It gets the same
  // placement again, and the coordinator's crash costs no restart.
  Open();
  ASSERT_EQ(State(job.id()), v1::SCHEDULED);
  FakeWorker back = Connect("w0");
  v1::Assign again = back.ExpectAssign();
  EXPECT_EQ(again.job_id(), job.id());
  EXPECT_EQ(again.epoch(), a.epoch());
  EXPECT_EQ(again.rank(), a.rank());
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job j, coord_->GetJob(kAdmin, job.id()));
  EXPECT_EQ(j.restart_count(), 0);
  EXPECT_EQ(j.epoch(), a.epoch());
  LEMO_ASSERT_OK(back.Status(again, v1::RUNNING));
  LEMO_ASSERT_OK(back.Status(again, v1::SUCCEEDED, 2));
  EXPECT_EQ(State(job.id()), v1::SUCCEEDED);
  // Once running, a worker that comes back without its task did lose it.
  v1::Job second = Submit();
  v1::Assign b = back.ExpectAssign();
  LEMO_ASSERT_OK(back.Status(b, v1::RUNNING));
  Open();
  FakeWorker restarted = Connect("w0");
  v1::Assign c = restarted.ExpectAssign();
  EXPECT_EQ(c.job_id(), second.id());
  EXPECT_EQ(c.epoch(), b.epoch() + 1);
  EXPECT_EQ(coord_->GetJob(kAdmin, second.id())->restart_count(), 1);
}

TEST_F(CoordinatorTest, WorkerThatRestartedWithoutItsTaskLosesTheRank) {
  FakeWorker w = Connect("w0");
  v1::Job job = Submit();
  v1::Assign a = w.ExpectAssign();
  LEMO_ASSERT_OK(w.Status(a, v1::RUNNING));
  // The worker process restarted: same id, no running task. Its rank is gone;
  // the job restarts and, the worker being free again, lands on it with a new
  // epoch.
  FakeWorker again = Connect("w0");
  v1::Assign b = again.ExpectAssign();
  EXPECT_EQ(b.job_id(), job.id());
  EXPECT_EQ(b.epoch(), a.epoch() + 1);
  EXPECT_EQ(States(job.id()).back(), v1::SCHEDULED);
}

TEST_F(CoordinatorTest, ListJobsFiltersAndPages) {
  for (int i = 0; i < 5; ++i) {
    v1::JobSpec spec = ValidSpec();
    spec.set_display_name(absl::StrCat("run-", i));
    (*spec.mutable_labels())["team"] = i % 2 ? "odd" : "even";
    Submit(spec);
  }
  ListJobsQuery r;
  r.page_size = 2;
  std::vector<std::string> names;
  while (true) {
    LEMO_ASSERT_OK_AND_ASSIGN(ListJobsPage page, coord_->ListJobs(kAdmin, r));
    for (const auto& j : page.jobs) names.push_back(j.spec().display_name());
    if (page.next_page_token.empty()) break;
    r.page_token = page.next_page_token;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"run-4", "run-3", "run-2", "run-1",
                                             "run-0"}));
  ListJobsQuery f;
  f.labels["team"] = "odd";
  f.states.push_back(v1::QUEUED);
  LEMO_ASSERT_OK_AND_ASSIGN(ListJobsPage odd, coord_->ListJobs(kAdmin, f));
  EXPECT_EQ(odd.jobs.size(), 2u);
  f.display_name_contains = "run-3";
  LEMO_ASSERT_OK_AND_ASSIGN(ListJobsPage one, coord_->ListJobs(kAdmin, f));
  EXPECT_EQ(one.jobs.size(), 1u);
  ListJobsQuery bad;
  bad.page_token = "garbage";
  EXPECT_THAT(
      coord_->ListJobs(kAdmin, bad),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

TEST_F(CoordinatorTest, CheckpointsAreListedKeptAndDownloadable) {
  FakeWorker w = Connect("w0");
  v1::JobSpec spec = ValidSpec();
  spec.mutable_checkpoint()->set_keep_last(2);
  v1::Job job = Submit(spec);
  v1::Assign a = w.ExpectAssign();
  for (int step : {2, 4, 6}) LEMO_ASSERT_OK(Upload(a, step).status());
  LEMO_ASSERT_OK_AND_ASSIGN(auto list,
                            coord_->ListCheckpoints(kAdmin, job.id()));
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].checkpoint_id(), "step-4");
  EXPECT_EQ(coord_->GetJob(kAdmin, job.id())->latest_checkpoint_id(), "step-6");
  std::string data;
  LEMO_ASSERT_OK(coord_->DownloadCheckpoint(kAdmin, job.id(), "",
                                            [&](const v1::CheckpointChunk& c) {
                                              data += c.data();
                                              return true;
                                            }));
  EXPECT_EQ(data, "weights@6");
  EXPECT_THAT(coord_->DownloadCheckpoint(
                  kAdmin, job.id(), "step-2",
                  [](const v1::CheckpointChunk&) { return true; }),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("step-2")));
}

// An upload whose epoch ended while it streamed is refused at commit without
// touching the stored copy of its id: committing it first and deleting it
// afterwards removed the directory an earlier, recorded upload of the same id
// lives in, leaving a record with no bytes.
TEST_F(CoordinatorTest, AStaleUploadLeavesTheRecordedCopyOfItsIdInPlace) {
  Open(absl::Milliseconds(100));
  FakeWorker w0 = Connect("w0");
  v1::Job job = Submit();
  v1::Assign a = w0.ExpectAssign();
  LEMO_ASSERT_OK(w0.Status(a, v1::RUNNING));
  LEMO_ASSERT_OK(Upload(a, 4).status());  // step-4 holds "weights@4".
  // A second upload of step-4 in epoch 1 (a retry), still streaming when the
  // worker is declared lost and the job moves to epoch 2.
  v1::UploadCheckpointRequest c;
  c.set_job_id(a.job_id());
  c.set_epoch(a.epoch());
  c.set_step(4);
  c.set_checkpoint_id("step-4");
  c.set_file_name("adapter_model.safetensors");
  c.set_data("other bytes");
  c.set_sha256(Sha256Hex(c.data()));
  LEMO_ASSERT_OK_AND_ASSIGN(auto upload, coord_->BeginUpload(kAnyWorker, c));
  LEMO_ASSERT_OK(upload->Add(c));
  FakeWorker w1 = Connect("w1");
  absl::SleepFor(absl::Milliseconds(150));
  LEMO_ASSERT_OK(w1.Heartbeat());
  coord_->Tick();  // w0 is silent past the timeout: lost, epoch 2.
  ASSERT_EQ(w1.ExpectAssign().epoch(), 2);
  EXPECT_THAT(coord_->CommitUpload(*upload),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("stale epoch")));
  std::string data;
  LEMO_ASSERT_OK(coord_->DownloadCheckpoint(kAdmin, job.id(), "step-4",
                                            [&](const v1::CheckpointChunk& c) {
                                              data += c.data();
                                              return true;
                                            }));
  EXPECT_EQ(data, "weights@4");
}

TEST_F(CoordinatorTest, WatchWithoutHistoryStartsLive) {
  FakeWorker w = Connect("w0");
  v1::Job job = Submit();
  v1::Assign a = w.ExpectAssign();
  WatchQuery r;
  r.job_id = job.id();
  r.only_new_events = true;
  LEMO_ASSERT_OK_AND_ASSIGN(auto watcher, coord_->Watch(kAdmin, r));
  LEMO_ASSERT_OK(w.Metric(a, 1, 2.5));
  LEMO_ASSERT_OK_AND_ASSIGN(auto e, watcher->Next(absl::Seconds(1)));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->metric().loss(), 2.5);
  EXPECT_FALSE(coord_->WatchDone(job.id(), watcher->next_sequence()));
}

// --- Tenants: a client sees and acts on its own jobs only. ---

const Principal kAlice{"alice", Role::kClient};
const Principal kBob{"bob", Role::kClient};

TEST_F(CoordinatorTest, AClientSeesOnlyItsOwnJobs) {
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job mine, coord_->Submit(kAlice, ValidSpec()));
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job theirs, coord_->Submit(kBob, ValidSpec()));
  EXPECT_EQ(mine.owner(), "alice");
  EXPECT_EQ(theirs.owner(), "bob");

  LEMO_ASSERT_OK_AND_ASSIGN(ListJobsPage list, coord_->ListJobs(kAlice, {}));
  ASSERT_EQ(list.jobs.size(), 1u);
  EXPECT_EQ(list.jobs[0].id(), mine.id());
  LEMO_ASSERT_OK_AND_ASSIGN(list, coord_->ListJobs(kAdmin, {}));
  EXPECT_EQ(list.jobs.size(), 2u);

  // Another tenant's job reads exactly like one that does not exist.
  EXPECT_THAT(coord_->GetJob(kAlice, theirs.id()),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(coord_->Cancel(kAlice, theirs.id(), ""),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  WatchQuery watch;
  watch.job_id = theirs.id();
  EXPECT_THAT(coord_->Watch(kAlice, watch),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(coord_->ListCheckpoints(kAlice, theirs.id()),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(coord_->DownloadCheckpoint(
                  kAlice, theirs.id(), "",
                  [](const v1::CheckpointChunk&) { return true; }),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_EQ(State(theirs.id()), v1::QUEUED);  // The cancel did nothing.

  // The owner and an admin act on it.
  EXPECT_THAT(coord_->GetJob(kBob, theirs.id()), IsOk());
  EXPECT_THAT(coord_->GetJob(kAdmin, theirs.id()), IsOk());
  EXPECT_THAT(coord_->Cancel(kAdmin, theirs.id(), "admin"), IsOk());
}

TEST_F(CoordinatorTest, JobsWithoutOwnerAreAdminOnly) {
  // Submitted by the anonymous principal of an unauthenticated coordinator.
  LEMO_ASSERT_OK_AND_ASSIGN(
      v1::Job job,
      coord_->Submit(Principal::Anonymous(Role::kClient), ValidSpec()));
  EXPECT_EQ(job.owner(), "");
  EXPECT_THAT(coord_->GetJob(kAlice, job.id()),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  // A client principal with an empty name must not match it either.
  EXPECT_THAT(coord_->GetJob(Principal{"", Role::kClient}, job.id()),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(coord_->GetJob(kAdmin, job.id()), IsOk());
}

TEST_F(CoordinatorTest, OwnersSurviveARestart) {
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, coord_->Submit(kAlice, ValidSpec()));
  coord_.reset();
  Coordinator::Options o;
  o.data_dir = dir_;
  o.tick_interval = absl::ZeroDuration();
  LEMO_ASSERT_OK_AND_ASSIGN(coord_, Coordinator::Create(o));
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job again, coord_->GetJob(kAlice, job.id()));
  EXPECT_EQ(again.owner(), "alice");
  EXPECT_THAT(coord_->GetJob(kBob, job.id()),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(CoordinatorTest, WorkersCannotUseJobQueriesNorClientsWorkerCalls) {
  const Principal w0{"w0", Role::kWorker};
  EXPECT_THAT(coord_->Submit(w0, ValidSpec()),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  EXPECT_THAT(coord_->ListJobs(w0, {}),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  EXPECT_THAT(coord_->ListWorkers(w0),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  EXPECT_THAT(coord_->Connect(kAlice, MakeRegister("alice")),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  EXPECT_THAT(coord_->Connect(kAdmin, MakeRegister("w0")),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
}

TEST_F(CoordinatorTest, AWorkerRegistersOnlyAsItself) {
  FakeWorker w0 = Connect("w0");
  // w1's principal may not take over w0's session.
  EXPECT_THAT(
      coord_->Connect(Principal{"w1", Role::kWorker}, MakeRegister("w0")),
      StatusIs(absl::StatusCode::kPermissionDenied,
               HasSubstr("may register only as worker_id \"w1\"")));
  v1::Job job = Submit();
  v1::Assign a = w0.ExpectAssign();  // w0's session is still the live one.
  EXPECT_EQ(a.job_id(), job.id());
  // A legacy, unbound worker principal may register as anyone (flagged at
  // startup); that is what the old shared worker token allowed.
  EXPECT_THAT(coord_->Connect(kAnyWorker, MakeRegister("w9")), IsOk());
}

TEST_F(CoordinatorTest, AWorkerUploadsAndDownloadsOnlyForItsOwnAssignment) {
  FakeWorker w0 = Connect("w0");
  FakeWorker w1 = Connect("w1");
  v1::Job job = Submit();
  // The job goes to one of the two; the other is the outsider.
  v1::CoordinatorMessage m;
  std::string holder;
  for (FakeWorker* w : {&w0, &w1}) {
    if (auto got = w->session.outbox->Pop(absl::Seconds(1))) {
      m = *got;
      holder = w->session.worker_id;
    }
  }
  ASSERT_TRUE(m.has_assign()) << m.DebugString();
  const v1::Assign& a = m.assign();
  const std::string outsider = holder == "w0" ? "w1" : "w0";
  EXPECT_THAT(Upload(a, 1, Principal{outsider, Role::kWorker}),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  LEMO_ASSERT_OK(Upload(a, 1, Principal{holder, Role::kWorker}).status());
  auto sink = [](const v1::CheckpointChunk&) { return true; };
  EXPECT_THAT(coord_->DownloadCheckpoint(Principal{outsider, Role::kWorker},
                                         job.id(), "", sink),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(coord_->DownloadCheckpoint(Principal{holder, Role::kWorker},
                                         job.id(), "", sink),
              IsOk());
}

TEST_F(CoordinatorTest, ListWorkersHidesOtherTenantsJobs) {
  FakeWorker w = Connect("w0");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, coord_->Submit(kBob, ValidSpec()));
  w.ExpectAssign();
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::WorkerInfo> seen,
                            coord_->ListWorkers(kAlice));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].worker_id(), "w0");
  EXPECT_EQ(seen[0].job_id(), "");
  LEMO_ASSERT_OK_AND_ASSIGN(seen, coord_->ListWorkers(kBob));
  EXPECT_EQ(seen[0].job_id(), job.id());
}

}  // namespace
}  // namespace lemo::server
