// The planner in the coordinator: a job whose plan does not fit a worker's
// device gets no rank there, a job that fits no registered worker is refused
// at submit with the breakdown, and a job whose config.json the coordinator
// cannot read is placed as before. To add a case: write a config.json with
// WriteModel(), register workers with MakeRegister(id, kind, memory) and
// check CheckFitsFleet / PlanPlacements / Coordinator::Submit.
#include "server/core/job_fit.h"

#include <fstream>

#include "server/core/coordinator.h"
#include "server/core/placement.h"
#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeRegister;
using ::lemo::server::testing::MakeTempDir;
using ::lemo::server::testing::ValidSpec;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kGiB = int64_t{1} << 30;

// Llama-2-7B's config.json.
constexpr char kLlama7b[] = R"({"model_type": "llama", "hidden_size": 4096,
  "intermediate_size": 11008, "num_hidden_layers": 32,
  "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
  "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
  "torch_dtype": "float16"})";

// A model directory holding `config`.
std::string WriteModel(const std::string& config) {
  const std::string dir = MakeTempDir("model");
  std::ofstream(dir + "/config.json") << config;
  return dir;
}

// A CPU job on Llama-2-7B at `seq_len` tokens.
v1::JobSpec Llama7bSpec(int64_t seq_len, int world_size = 1) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_model()->set_path(WriteModel(kLlama7b));
  spec.set_seq_len(seq_len);
  spec.mutable_resources()->set_world_size(world_size);
  spec.mutable_resources()->set_device_kind(v1::CPU);
  return spec;
}

plan::ModelShape Shape() { return *ShapeFromConfigText(kLlama7b); }

// Adds QUEUED job "job-1", Llama-2-7B at `seq_len`, to `jobs`.
absl::Status AddQueuedLlama7bJob(int64_t seq_len, JobTable* jobs) {
  v1::Job job;
  job.set_id("job-1");
  job.set_state(v1::QUEUED);
  *job.mutable_spec() = Llama7bSpec(seq_len);
  return jobs->Add(job);
}

TEST(JobFit, AJobTooBigForEveryWorkerIsRefusedWithTheBreakdown) {
  const v1::JobSpec spec = Llama7bSpec(524288);
  absl::Status s = CheckFitsFleet(spec, Shape(),
                                  {MakeRegister("small", v1::CPU, kGiB),
                                   MakeRegister("smaller", v1::CPU, kGiB / 2)});
  EXPECT_THAT(
      s, StatusIs(absl::StatusCode::kFailedPrecondition,
                  AllOf(HasSubstr("needs 1 CPU worker"),
                        HasSubstr("0 of the 2 planned CPU workers"),
                        HasSubstr("closest: worker small"),
                        HasSubstr("GiB short"), HasSubstr("frozen weights"),
                        HasSubstr("verdict: does not fit"))));
}

TEST(JobFit, ABudgetedJobIsJudgedByWhatItsBudgetWouldChoose) {
  // 32K tokens without checkpointing (the spec's default) needs more than the
  // worker's 64 GiB; within a 60 GiB budget the worker would turn on
  // checkpointing, which fits.
  v1::JobSpec spec = Llama7bSpec(32768);
  const std::vector<v1::Register> fleet = {
      MakeRegister("cpu", v1::CPU, 64 * kGiB)};
  EXPECT_THAT(CheckFitsFleet(spec, Shape(), fleet),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("does not fit")));
  spec.mutable_resources()->set_memory_budget("60Gi");
  EXPECT_THAT(CheckFitsFleet(spec, Shape(), fleet), IsOk());
  // A budget nothing fits in is refused, judged against the budget.
  spec.mutable_resources()->set_memory_budget("1Gi");
  EXPECT_THAT(CheckFitsFleet(spec, Shape(), fleet),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("closest: worker cpu")));
}

TEST(JobFit, NothingToJudgeByMeansAccept) {
  const v1::JobSpec spec = Llama7bSpec(524288);
  // No workers; only workers of another kind; only workers of unknown memory.
  EXPECT_THAT(CheckFitsFleet(spec, Shape(), {}), IsOk());
  EXPECT_THAT(
      CheckFitsFleet(spec, Shape(), {MakeRegister("gpu", v1::CUDA, kGiB)}),
      IsOk());
  EXPECT_THAT(CheckFitsFleet(spec, Shape(), {MakeRegister("cpu", v1::CPU, 0)}),
              IsOk());
}

TEST(JobFit, AGangNeedsWorldSizeFittingWorkers) {
  const v1::JobSpec spec = Llama7bSpec(512, /*world_size=*/2);
  const v1::Register big = MakeRegister("big", v1::CPU, 1024 * kGiB);
  const v1::Register tiny = MakeRegister("tiny", v1::CPU, kGiB);
  EXPECT_THAT(CheckFitsFleet(spec, Shape(), {big, tiny}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("needs 2 CPU workers"),
                             HasSubstr("1 of the 2"))));
  // Only fitting workers, too few of them yet: it waits for more.
  EXPECT_THAT(CheckFitsFleet(spec, Shape(), {big}), IsOk());
  EXPECT_THAT(CheckFitsFleet(spec, Shape(),
                             {big, MakeRegister("big2", v1::CPU, 1024 * kGiB)}),
              IsOk());
}

TEST(JobFit, PlacementSkipsWorkersTheJobDoesNotFit) {
  JobTable jobs;
  ASSERT_THAT(AddQueuedLlama7bJob(512, &jobs), IsOk());
  WorkerRegistry workers(absl::Seconds(10));
  // Best fit would pick the smallest device, which the job does not fit.
  ASSERT_THAT(workers.Register(MakeRegister("tiny", v1::CPU, kGiB), absl::Now())
                  .status(),
              IsOk());
  ASSERT_THAT(
      workers.Register(MakeRegister("big", v1::CPU, 1024 * kGiB), absl::Now())
          .status(),
      IsOk());
  JobShapes shapes;
  PlacementPlan plan = PlanPlacements(jobs, workers, &shapes);
  ASSERT_EQ(plan.placements.size(), 1u);
  EXPECT_THAT(plan.placements[0].worker_ids, ElementsAre("big"));
  // The shape was read from the job's config.json once and kept.
  EXPECT_EQ(shapes.size(), 1u);
  // Without shapes (or without a readable config.json) it is unplanned.
  plan = PlanPlacements(jobs, workers);
  ASSERT_EQ(plan.placements.size(), 1u);
  EXPECT_THAT(plan.placements[0].worker_ids, ElementsAre("tiny"));
}

TEST(JobFit, AJobThatFitsNoConnectedWorkerWaitsSayingWhy) {
  JobTable jobs;
  ASSERT_THAT(AddQueuedLlama7bJob(524288, &jobs), IsOk());
  WorkerRegistry workers(absl::Seconds(10));
  ASSERT_THAT(workers.Register(MakeRegister("tiny", v1::CPU, kGiB), absl::Now())
                  .status(),
              IsOk());
  JobShapes shapes;
  PlacementPlan plan = PlanPlacements(jobs, workers, &shapes);
  EXPECT_THAT(plan.placements, IsEmpty());
  std::vector<WaitNote> notes = WaitNotes(plan.pending, jobs, workers);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_TRUE(notes[0].never_fits);
  EXPECT_THAT(notes[0].reason, HasSubstr("whose device fits its plan"));
}

TEST(JobFit, UnreadableOrUnknownConfigsPlanNothing) {
  EXPECT_FALSE(ShapeFromConfigText("").has_value());
  EXPECT_FALSE(ShapeFromConfigText("{\"model_type\": \"llama\"}").has_value());
  JobShapes shapes;
  v1::Job job;
  job.set_id("job-1");
  *job.mutable_spec() = ValidSpec();  // /models/tiny: not here
  EXPECT_FALSE(shapes.For(job).has_value());
  shapes.Forget("job-1");
  EXPECT_EQ(shapes.size(), 0u);
}

class CoordinatorPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Coordinator::Options o;
    o.data_dir = MakeTempDir("coord-plan");
    o.tick_interval = absl::ZeroDuration();
    auto c = Coordinator::Create(o);
    ASSERT_THAT(c.status(), IsOk());
    coord_ = *std::move(c);
  }
  void Connect(const v1::Register& reg) {
    auto s = coord_->Connect(Principal{reg.worker_id(), Role::kWorker}, reg);
    ASSERT_THAT(s.status(), IsOk());
    sessions_.push_back(*std::move(s));
  }
  const Principal admin_{"admin", Role::kAdmin};
  std::unique_ptr<Coordinator> coord_;
  std::vector<Coordinator::Session> sessions_;
};

TEST_F(CoordinatorPlanTest, SubmitRefusesAJobNoWorkerFits) {
  // No worker yet: accepted and queued.
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job queued,
                            coord_->Submit(admin_, Llama7bSpec(524288)));
  EXPECT_EQ(queued.state(), v1::QUEUED);
  Connect(MakeRegister("tiny", v1::CPU, kGiB));
  EXPECT_THAT(coord_->Submit(admin_, Llama7bSpec(524288)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("closest: worker tiny"),
                             HasSubstr("frozen weights"))));
  // The queued one now says it can never run there.
  coord_->Tick();
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job again, coord_->GetJob(admin_, queued.id()));
  EXPECT_EQ(again.state(), v1::QUEUED);
  EXPECT_THAT(again.state_message(), HasSubstr("whose device fits its plan"));
  // A model only workers can read: accepted unplanned, and placed.
  v1::JobSpec unplanned = Llama7bSpec(524288);
  unplanned.mutable_model()->set_path("/nonexistent/model");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job placed, coord_->Submit(admin_, unplanned));
  LEMO_ASSERT_OK_AND_ASSIGN(placed, coord_->GetJob(admin_, placed.id()));
  EXPECT_EQ(placed.state(), v1::SCHEDULED);
}

TEST_F(CoordinatorPlanTest, AFittingJobIsPlaced) {
  Connect(MakeRegister("tiny", v1::CPU, kGiB));
  Connect(MakeRegister("big", v1::CPU, 1024 * kGiB));
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job,
                            coord_->Submit(admin_, Llama7bSpec(512)));
  LEMO_ASSERT_OK_AND_ASSIGN(job, coord_->GetJob(admin_, job.id()));
  EXPECT_EQ(job.state(), v1::SCHEDULED);
  EXPECT_THAT(job.worker_ids(), ElementsAre("big"));
}

}  // namespace
}  // namespace lemo::server
