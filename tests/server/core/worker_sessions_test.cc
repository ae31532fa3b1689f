// Worker sessions: who may register as which worker, the Welcome, adopting or
// fencing a re-registering worker's task, and a worker acting only on its own
// (job, epoch). To add a case: Open() sessions with MakeRegister(), assign
// ranks, and check RankFor() and the messages queued in the outboxes.
#include "server/core/worker_sessions.h"

#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeRegister;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

v1::CoordinatorMessage Pop(const std::shared_ptr<Outbox>& outbox) {
  auto m = outbox->Pop(absl::Milliseconds(100));
  EXPECT_TRUE(m.has_value()) << "no message";
  return m.value_or(v1::CoordinatorMessage());
}

TEST(WorkerSessions, BoundPrincipalRegistersOnlyAsItself) {
  WorkerSessions sessions({});
  EXPECT_THAT(sessions.Open(Principal{"w0", Role::kWorker}, MakeRegister("w1"),
                            absl::Now()),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("worker principal \"w0\" may register only as "
                                 "worker_id \"w0\", not \"w1\"")));
  EXPECT_THAT(sessions.Open(Principal{"alice", Role::kClient},
                            MakeRegister("alice"), absl::Now()),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("")));
  LEMO_ASSERT_OK_AND_ASSIGN(WorkerSessions::Opened opened,
                            sessions.Open(Principal{"any", Role::kWorker, true},
                                          MakeRegister("w1"), absl::Now()));
  EXPECT_TRUE(Pop(opened.outbox).has_welcome());
  EXPECT_FALSE(opened.lost.has_value());
}

TEST(WorkerSessions, ActsOnlyOnItsOwnJobAndEpoch) {
  WorkerSessions sessions({});
  LEMO_ASSERT_OK_AND_ASSIGN(WorkerSessions::Opened w0,
                            sessions.Open(Principal{"w0", Role::kWorker},
                                          MakeRegister("w0"), absl::Now()));
  Pop(w0.outbox);  // Welcome.
  v1::CoordinatorMessage assign;
  assign.mutable_assign()->set_job_id("job-1");
  ASSERT_TRUE(sessions.Assign("w0", Assignment{"job-1", 2, 0, false}, assign));
  EXPECT_TRUE(Pop(w0.outbox).has_assign());
  // Busy: a second assignment is refused.
  EXPECT_FALSE(sessions.Assign("w0", Assignment{"job-2", 1, 0, false}, assign));
  EXPECT_EQ(sessions.RankFor("w0", "job-1", 2), 0);
  EXPECT_EQ(sessions.RankFor("w0", "job-1", 1), std::nullopt);
  EXPECT_EQ(sessions.RankFor("w0", "job-2", 2), std::nullopt);
  EXPECT_EQ(sessions.RankFor("w9", "job-1", 2), std::nullopt);
  EXPECT_FALSE(sessions.AllRunning({"w0"}));
  sessions.MarkRunning("w0");
  EXPECT_TRUE(sessions.AllRunning({"w0"}));
  sessions.Fence("w0", "job-1", 1);
  v1::CoordinatorMessage fenced = Pop(w0.outbox);
  EXPECT_EQ(fenced.cancel().epoch(), 1);
  EXPECT_EQ(fenced.cancel().reason(), "stale epoch: fenced");
  EXPECT_TRUE(sessions.AnyHolds("job-1", 2));
  EXPECT_EQ(sessions.CancelTask("job-1", 1, "old"), 0);
  EXPECT_EQ(sessions.CancelTask("job-1", 2, "stop"), 1);
  EXPECT_EQ(Pop(w0.outbox).cancel().reason(), "stop");
  sessions.Release("w0", "job-1", 2);
  EXPECT_FALSE(sessions.AnyHolds("job-1", 2));
  // A stale session's messages are refused.
  EXPECT_THAT(sessions.Touch("w0", w0.session + 1, absl::Now()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("")));
  EXPECT_THAT(sessions.Touch("w0", w0.session, absl::Now()), IsOk());
}

TEST(WorkerSessions, ReRegisterAdoptsTheCurrentTaskAndFencesAnOldOne) {
  WorkerSessions sessions({});
  const Principal w0{"w0", Role::kWorker};
  LEMO_ASSERT_OK_AND_ASSIGN(WorkerSessions::Opened first,
                            sessions.Open(w0, MakeRegister("w0"), absl::Now()));
  ASSERT_TRUE(sessions.Assign("w0", Assignment{"job-1", 2, 0, false},
                              v1::CoordinatorMessage()));
  // Comes back still running epoch 2: adopted, nothing lost.
  v1::Register again = MakeRegister("w0");
  again.mutable_running_task()->set_job_id("job-1");
  again.mutable_running_task()->set_epoch(2);
  LEMO_ASSERT_OK_AND_ASSIGN(WorkerSessions::Opened adopted,
                            sessions.Open(w0, again, absl::Now()));
  EXPECT_TRUE(Pop(adopted.outbox).has_welcome());
  EXPECT_FALSE(adopted.lost.has_value());
  EXPECT_EQ(sessions.RankFor("w0", "job-1", 2), 0);
  // Comes back running epoch 1: that task is fenced and epoch 2's rank lost.
  again.mutable_running_task()->set_epoch(1);
  LEMO_ASSERT_OK_AND_ASSIGN(WorkerSessions::Opened fenced,
                            sessions.Open(w0, again, absl::Now()));
  EXPECT_TRUE(Pop(fenced.outbox).has_welcome());
  v1::CoordinatorMessage cancel = Pop(fenced.outbox);
  EXPECT_EQ(cancel.cancel().epoch(), 1);
  EXPECT_EQ(cancel.cancel().reason(), "stale assignment");
  ASSERT_TRUE(fenced.lost.has_value());
  EXPECT_EQ(fenced.lost->epoch, 2);
  EXPECT_EQ(sessions.RankFor("w0", "job-1", 2), std::nullopt);
}

}  // namespace
}  // namespace lemo::server
