// Placement over a real job table and worker registry: which waiting jobs go
// where, rank 0 on a worker that can host the group's store, the wait notes,
// and the Assign a rank receives. The policy itself is scheduler_test.cc's.
// To add a case: Add() jobs to a JobTable, Register() workers, and check
// PlanPlacements / WaitNotes / MakeAssign.
#include "server/core/placement.h"

#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeRegister;
using ::lemo::server::testing::ValidSpec;
using ::lemo::testing::IsOk;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::Job Waiting(const std::string& id, int world_size) {
  v1::Job job;
  job.set_id(id);
  job.set_state(v1::QUEUED);
  *job.mutable_spec() = ValidSpec();
  job.mutable_spec()->mutable_resources()->set_world_size(world_size);
  job.mutable_spec()->mutable_resources()->set_device_kind(v1::CPU);
  return job;
}

TEST(Placement, GangGoesWhereRankZeroCanHostTheStore) {
  JobTable jobs;
  ASSERT_THAT(jobs.Add(Waiting("job-1", 2)), IsOk());
  WorkerRegistry workers(absl::Seconds(10));
  v1::Register a = MakeRegister("a");
  a.clear_rendezvous_address();  // An older build: hosts no store.
  ASSERT_THAT(workers.Register(a, absl::Now()).status(), IsOk());
  ASSERT_THAT(workers.Register(MakeRegister("b"), absl::Now()).status(),
              IsOk());
  PlacementPlan plan = PlanPlacements(jobs, workers);
  ASSERT_EQ(plan.pending.size(), 1u);
  ASSERT_EQ(plan.placements.size(), 1u);
  EXPECT_THAT(plan.placements[0].worker_ids, ElementsAre("b", "a"));
}

TEST(Placement, AJobNoWorkerCanHoldGetsAWarningNote) {
  JobTable jobs;
  ASSERT_THAT(jobs.Add(Waiting("job-big", 3)), IsOk());
  WorkerRegistry workers(absl::Seconds(10));
  // No worker connected: nothing to judge by, so no warning.
  PlacementPlan plan = PlanPlacements(jobs, workers);
  std::vector<WaitNote> notes = WaitNotes(plan.pending, jobs, workers);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_FALSE(notes[0].never_fits);
  ASSERT_THAT(workers.Register(MakeRegister("a"), absl::Now()).status(),
              IsOk());
  plan = PlanPlacements(jobs, workers);
  EXPECT_TRUE(plan.placements.empty());
  notes = WaitNotes(plan.pending, jobs, workers);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].job_id, "job-big");
  EXPECT_TRUE(notes[0].never_fits);
  EXPECT_THAT(notes[0].reason, HasSubstr("3"));
}

TEST(Placement, AssignCarriesEpochRankAndResumePoint) {
  v1::Job job = Waiting("job-1", 2);
  job.set_epoch(4);
  v1::CheckpointInfo resume;
  resume.set_checkpoint_id("step-10");
  resume.set_step(10);
  v1::CoordinatorMessage m = MakeAssign(job, 1, 2, "127.0.0.1:29500", resume);
  EXPECT_EQ(m.assign().job_id(), "job-1");
  EXPECT_EQ(m.assign().epoch(), 4);
  EXPECT_EQ(m.assign().rank(), 1);
  EXPECT_EQ(m.assign().world_size(), 2);
  EXPECT_EQ(m.assign().rendezvous_address(), "127.0.0.1:29500");
  EXPECT_EQ(m.assign().resume().checkpoint_id(), "step-10");
  EXPECT_EQ(m.assign().resume().step(), 10);
  EXPECT_FALSE(MakeAssign(job, 0, 2, "", std::nullopt).assign().has_resume());
}

}  // namespace
}  // namespace lemo::server
