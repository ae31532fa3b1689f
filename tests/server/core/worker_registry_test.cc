// Worker registry: sessions, heartbeats, loss after the timeout, assignments
// and epoch fencing. To add a case: a TEST that drives
// Register/Touch/ExpireLost with explicit times.
#include "server/core/worker_registry.h"

#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeRegister;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(WorkerRegistry, RegisterRejectsMissingIdOrDevice) {
  WorkerRegistry reg(absl::Seconds(10));
  v1::Register r = MakeRegister("");
  EXPECT_THAT(reg.Register(r, kT0), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("register.worker_id")));
  r = MakeRegister("w");
  r.clear_devices();
  EXPECT_THAT(reg.Register(r, kT0), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("register.devices")));
}

// The roots decide which specs are accepted at submit, so a relative root or
// one with ".." (which a lexical check would misjudge) is refused.
TEST(WorkerRegistry, RegisterRejectsBadRootsAndKeepsGoodOnes) {
  WorkerRegistry reg(absl::Seconds(10));
  for (const char* bad : {"models", "/models/../etc", ""}) {
    v1::Register r = MakeRegister("w");
    r.add_model_roots(bad);
    EXPECT_THAT(reg.Register(r, kT0),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("register.model_roots: each root must be "
                                   "an absolute path")))
        << bad;
  }
  v1::Register r = MakeRegister("w");
  for (int i = 0; i < 65; ++i) r.add_data_roots("/data");
  EXPECT_THAT(reg.Register(r, kT0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("register.data_roots: more than 64")));
  EXPECT_TRUE(reg.Registrations().empty());
  r = MakeRegister("w");
  r.add_model_roots("/models");
  r.add_data_roots("/data");
  EXPECT_THAT(reg.Register(r, kT0), IsOk());
  ASSERT_EQ(reg.Registrations().size(), 1u);
  EXPECT_EQ(reg.Registrations()[0].model_roots(0), "/models");
  // A placeholder for a worker expected back after a restart is no
  // registration: it reported no roots and must not count as unconfined.
  reg.ExpectWorker("w2", Assignment{"job-1", 1, 0, false}, kT0);
  EXPECT_EQ(reg.Registrations().size(), 1u);
}

TEST(WorkerRegistry, HeartbeatsKeepAWorkerAliveAndSilenceLosesIt) {
  WorkerRegistry reg(absl::Seconds(10));
  LEMO_ASSERT_OK_AND_ASSIGN(uint64_t s, reg.Register(MakeRegister("w"), kT0));
  LEMO_ASSERT_OK(reg.Touch("w", s, kT0 + absl::Seconds(8)));
  EXPECT_TRUE(reg.ExpireLost(kT0 + absl::Seconds(15)).empty());
  ASSERT_EQ(reg.ExpireLost(kT0 + absl::Seconds(19)).size(), 1u);
  EXPECT_EQ(reg.Find("w")->state, v1::WorkerInfo::LOST);
  EXPECT_EQ(reg.ConnectedCount(), 0);
  // A lost worker's stream is refused, so it registers again.
  EXPECT_THAT(
      reg.Touch("w", s, kT0 + absl::Seconds(20)),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("lost")));
  LEMO_ASSERT_OK_AND_ASSIGN(
      uint64_t s2, reg.Register(MakeRegister("w"), kT0 + absl::Seconds(21)));
  EXPECT_NE(s, s2);
  EXPECT_EQ(reg.ConnectedCount(), 1);
}

TEST(WorkerRegistry, ANewSessionReplacesTheOld) {
  WorkerRegistry reg(absl::Seconds(10));
  LEMO_ASSERT_OK_AND_ASSIGN(uint64_t s1, reg.Register(MakeRegister("w"), kT0));
  std::shared_ptr<Outbox> old = reg.Find("w")->outbox;
  LEMO_ASSERT_OK_AND_ASSIGN(uint64_t s2, reg.Register(MakeRegister("w"), kT0));
  EXPECT_TRUE(old->closed());
  EXPECT_THAT(
      reg.Touch("w", s1, kT0),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("replaced")));
  EXPECT_THAT(reg.Touch("w", s2, kT0), IsOk());
  reg.Disconnect("w", s1);  // The old stream ending does not touch the new one.
  EXPECT_EQ(reg.ConnectedCount(), 1);
}

TEST(WorkerRegistry, LostWorkerReturnsItsAssignmentOnce) {
  WorkerRegistry reg(absl::Seconds(10));
  LEMO_ASSERT_OK(reg.Register(MakeRegister("w"), kT0).status());
  LEMO_ASSERT_OK(reg.Assign("w", Assignment{"job-1", 3, 0, false}));
  EXPECT_TRUE(reg.IsCurrent("w", "job-1", 3));
  auto lost = reg.ExpireLost(kT0 + absl::Minutes(1));
  ASSERT_EQ(lost.size(), 1u);
  ASSERT_TRUE(lost[0].assignment.has_value());
  EXPECT_EQ(lost[0].assignment->epoch, 3);
  EXPECT_FALSE(reg.IsCurrent("w", "job-1", 3));
  EXPECT_TRUE(reg.ExpireLost(kT0 + absl::Minutes(2)).empty());
}

TEST(WorkerRegistry, WaitingMessageKeepsAWorkerAlive) {
  WorkerRegistry reg(absl::Seconds(10));
  LEMO_ASSERT_OK(reg.Register(MakeRegister("w"), kT0).status());
  // A message read off the stream, waiting for the coordinator's lock.
  reg.Find("w")->waiting->fetch_add(1);
  EXPECT_TRUE(reg.ExpireLost(kT0 + absl::Minutes(1)).empty());
  reg.Find("w")->waiting->fetch_sub(1);
  EXPECT_EQ(reg.ExpireLost(kT0 + absl::Minutes(1)).size(), 1u);
}

TEST(WorkerRegistry, EpochFencesStaleAssignments) {
  WorkerRegistry reg(absl::Seconds(10));
  LEMO_ASSERT_OK(reg.Register(MakeRegister("w"), kT0).status());
  LEMO_ASSERT_OK(reg.Assign("w", Assignment{"job-1", 2, 1, false}));
  EXPECT_FALSE(reg.IsCurrent("w", "job-1", 1));
  reg.Release("w", "job-1", 1);  // Stale release: ignored.
  EXPECT_TRUE(reg.IsCurrent("w", "job-1", 2));
  EXPECT_THAT(reg.Assign("w", Assignment{"job-2", 1, 0, false}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("already runs")));
  reg.Release("w", "job-1", 2);
  EXPECT_FALSE(reg.Find("w")->assignment.has_value());
}

TEST(WorkerRegistry, FreeSlotsExcludeBusyAndDisconnected) {
  WorkerRegistry reg(absl::Seconds(10));
  LEMO_ASSERT_OK(reg.Register(MakeRegister("a"), kT0).status());
  LEMO_ASSERT_OK_AND_ASSIGN(uint64_t sb, reg.Register(MakeRegister("b"), kT0));
  LEMO_ASSERT_OK(reg.Register(MakeRegister("c", v1::CUDA, 80), kT0).status());
  LEMO_ASSERT_OK(reg.Assign("a", Assignment{"job", 1, 0, false}));
  reg.Disconnect("b", sb);
  auto free = reg.FreeSlots();
  ASSERT_EQ(free.size(), 1u);
  EXPECT_EQ(free[0].worker_id, "c");
  EXPECT_EQ(free[0].kind, v1::CUDA);
  EXPECT_EQ(free[0].memory_bytes, 80);
  EXPECT_EQ(reg.ConnectedSlots().size(), 2u);
}

TEST(WorkerRegistry, ExpectedWorkerKeepsItsAssignmentWhenItReturns) {
  WorkerRegistry reg(absl::Seconds(10));
  reg.ExpectWorker("w", Assignment{"job-1", 4, 0, true}, kT0);
  EXPECT_EQ(reg.ConnectedCount(), 0);  // No session yet.
  LEMO_ASSERT_OK(
      reg.Register(MakeRegister("w"), kT0 + absl::Seconds(2)).status());
  EXPECT_TRUE(reg.IsCurrent("w", "job-1", 4));
  reg.ExpectWorker("gone", Assignment{"job-2", 1, 1, true}, kT0);
  auto lost = reg.ExpireLost(kT0 + absl::Seconds(11));
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].registration.worker_id(), "gone");
}

TEST(WorkerRegistry, SendQueuesForTheLiveSessionOnly) {
  WorkerRegistry reg(absl::Seconds(10));
  LEMO_ASSERT_OK_AND_ASSIGN(uint64_t s, reg.Register(MakeRegister("w"), kT0));
  v1::CoordinatorMessage m;
  m.mutable_cancel()->set_job_id("job");
  EXPECT_TRUE(reg.Send("w", m));
  auto got = reg.Find("w")->outbox->Pop(absl::ZeroDuration());
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->cancel().job_id(), "job");
  reg.Disconnect("w", s);
  EXPECT_FALSE(reg.Send("w", m));
  EXPECT_FALSE(reg.Send("nobody", m));
}

}  // namespace
}  // namespace lemo::server
