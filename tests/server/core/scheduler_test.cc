// Scheduler policy: priority then FIFO, gang placement, device kind and memory,
// no starvation. To add a case: a TEST that builds pending jobs and workers and
// checks the placements.
#include "server/core/scheduler.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lemo::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int64_t kGiB = int64_t{1} << 30;

PendingJob Job(const std::string& id, int64_t order, int world = 1,
               int priority = 0, v1::DeviceKind kind = v1::CPU,
               int64_t memory = 0) {
  return PendingJob{id, priority, order, kind, world, memory};
}

std::vector<WorkerSlot> Cpus(int n) {
  std::vector<WorkerSlot> out;
  for (int i = 0; i < n; ++i)
    out.push_back({"w" + std::to_string(i), v1::CPU, 8 * kGiB});
  return out;
}

TEST(Scheduler, FifoWithinAPriority) {
  auto p = Schedule({Job("b", 2), Job("a", 1)}, Cpus(1), Cpus(1));
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].job_id, "a");
}

// A worker whose roots do not hold the job's paths would refuse it.
TEST(Scheduler, ExcludedWorkersGetNoRank) {
  PendingJob job = Job("a", 1);
  job.excluded_workers = {"w0"};
  auto p = Schedule({job}, Cpus(2), Cpus(2));
  ASSERT_EQ(p.size(), 1u);
  EXPECT_THAT(p[0].worker_ids, ElementsAre("w1"));
  job.excluded_workers = {"w0", "w1"};
  EXPECT_THAT(Schedule({job}, Cpus(2), Cpus(2)), IsEmpty());
  EXPECT_THAT(WaitReason(job, Cpus(2), Cpus(2)),
              ::testing::HasSubstr("needs 1 CPU worker whose roots hold its "
                                   "paths, and 0 of the 2 connected workers "
                                   "fit"));
}

TEST(Scheduler, HigherPriorityFirst) {
  auto p = Schedule({Job("old", 1), Job("urgent", 2, 1, 10)}, Cpus(1), Cpus(1));
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].job_id, "urgent");
}

TEST(Scheduler, GangGetsAllWorkersInRankOrderOrNone) {
  auto p = Schedule({Job("two", 1, 2)}, Cpus(3), Cpus(3));
  ASSERT_EQ(p.size(), 1u);
  EXPECT_THAT(p[0].worker_ids, ElementsAre("w0", "w1"));
  EXPECT_THAT(Schedule({Job("three", 1, 3)}, Cpus(2), Cpus(2)), IsEmpty());
}

TEST(Scheduler, NeverPlacesTwoJobsOnOneWorker) {
  auto p = Schedule({Job("a", 1, 2), Job("b", 2, 2), Job("c", 3, 1)}, Cpus(4),
                    Cpus(4));
  ASSERT_EQ(p.size(), 2u);
  EXPECT_THAT(p[0].worker_ids, ElementsAre("w0", "w1"));
  EXPECT_THAT(p[1].worker_ids, ElementsAre("w2", "w3"));
}

TEST(Scheduler, MatchesDeviceKindAndMemory) {
  std::vector<WorkerSlot> workers = {{"cpu", v1::CPU, 64 * kGiB},
                                     {"small", v1::CUDA, 24 * kGiB},
                                     {"big", v1::CUDA, 80 * kGiB}};
  auto p =
      Schedule({Job("gpu", 1, 1, 0, v1::CUDA, 40 * kGiB)}, workers, workers);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_THAT(p[0].worker_ids, ElementsAre("big"));
}

TEST(Scheduler, BestFitKeepsBigDevicesFree) {
  std::vector<WorkerSlot> workers = {{"big", v1::CUDA, 80 * kGiB},
                                     {"small", v1::CUDA, 24 * kGiB}};
  auto p = Schedule({Job("any", 1, 1, 0, v1::CUDA),
                     Job("needs-big", 2, 1, 0, v1::CUDA, 60 * kGiB)},
                    workers, workers);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_THAT(p[0].worker_ids, ElementsAre("small"));
  EXPECT_THAT(p[1].worker_ids, ElementsAre("big"));
}

TEST(Scheduler, WaitingGangBlocksLaterJobsOfItsKind) {
  // Two workers connected, one busy: the 2-rank job must wait, and the 1-rank
  // job behind it must not take the free worker (or the big job could starve
  // forever).
  auto p = Schedule({Job("big", 1, 2), Job("small", 2, 1)}, Cpus(1), Cpus(2));
  EXPECT_THAT(p, IsEmpty());
}

TEST(Scheduler, AJobThatCanNeverFitBlocksNobody) {
  auto p = Schedule({Job("huge", 1, 8), Job("small", 2, 1)}, Cpus(1), Cpus(2));
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].job_id, "small");
}

TEST(Scheduler, OtherDeviceKindsAreNotBlocked) {
  std::vector<WorkerSlot> free = {{"c0", v1::CPU, kGiB}};
  std::vector<WorkerSlot> all = {
      {"c0", v1::CPU, kGiB}, {"g0", v1::CUDA, kGiB}, {"g1", v1::CUDA, kGiB}};
  auto p =
      Schedule({Job("gpu2", 1, 2, 0, v1::CUDA), Job("cpu1", 2)}, free, all);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].job_id, "cpu1");
}

// Workers "<host>-<i>" on the given hosts, `per_host` each.
std::vector<WorkerSlot> OnHosts(const std::vector<std::string>& hosts,
                                const std::vector<int>& per_host) {
  std::vector<WorkerSlot> out;
  for (size_t h = 0; h < hosts.size(); ++h) {
    for (int i = 0; i < per_host[h]; ++i) {
      out.push_back(
          {hosts[h] + "-" + std::to_string(i), v1::CPU, 8 * kGiB, hosts[h]});
    }
  }
  return out;
}

TEST(Scheduler, GangPrefersOneNodeKeepingTheFullestFree) {
  // a has 3 free, b has 2: a 2-rank job fits on either and takes b, leaving
  // a's three for a bigger job.
  auto workers = OnHosts({"a", "b"}, {3, 2});
  auto p = Schedule({Job("two", 1, 2)}, workers, workers);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_THAT(p[0].worker_ids, ElementsAre("b-0", "b-1"));
}

TEST(Scheduler, GangThatSpansNodesUsesTheFewest) {
  // No node holds 4: the 3 of c and 1 of a (ties by name) rather than 2 + 2.
  auto workers = OnHosts({"a", "b", "c"}, {2, 2, 3});
  auto p = Schedule({Job("four", 1, 4)}, workers, workers);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_THAT(p[0].worker_ids, ElementsAre("c-0", "c-1", "c-2", "a-0"));
}

TEST(Scheduler, WaitReasonSaysWhenTheFleetCanNeverHoldTheJob) {
  PendingJob three = Job("three", 1, 3);
  EXPECT_TRUE(NeverFits(three, Cpus(2)));
  EXPECT_EQ(WaitReason(three, Cpus(2), Cpus(2)),
            "cannot run on the registered fleet: needs 3 CPU workers, and 2 "
            "of the 2 connected workers fit; waiting for more to register");
  PendingJob two = Job("two", 1, 2);
  EXPECT_FALSE(NeverFits(two, Cpus(3)));
  EXPECT_EQ(WaitReason(two, Cpus(1), Cpus(3)),
            "waiting for 2 CPU workers to be free at once (1 of 3 are free "
            "now)");
}

}  // namespace
}  // namespace lemo::server
