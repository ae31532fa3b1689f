// Tests for worker/comm/process_group.h: real c10d TCPStores and Gloo groups on
// 127.0.0.1, one thread per rank in this process (c10d allows several groups
// in one process, each with its own store connection).
// To add a case: write what one rank does as a lambda of (ProcessGroup&, rank)
// and run it with RunRanks(world_size, fn).
#include "worker/comm/process_group.h"

#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/testing/status_matchers.h"
#include "tests/worker/comm/free_port.h"

namespace lemo::comm {
namespace {

using ::lemo::testing::FreeLoopbackPort;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

ProcessGroupOptions LoopbackOptions(int64_t rank, int64_t world, int port) {
  ProcessGroupOptions o;
  o.rank = rank;
  o.world_size = world;
  o.store_host = "127.0.0.1";
  o.store_port = port;
  o.gloo_hostname = "127.0.0.1";
  o.timeout = std::chrono::seconds(30);
  return o;
}

// Runs fn on `world` ranks, one thread each; returns each rank's status.
std::vector<absl::Status> RunRanks(
    int64_t world,
    const std::function<absl::Status(ProcessGroup&, int64_t)>& fn,
    int64_t bucket_bytes = int64_t{25} << 20) {
  const int port = FreeLoopbackPort();
  std::vector<absl::Status> results(world);
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      ProcessGroupOptions o = LoopbackOptions(r, world, port);
      o.bucket_bytes = bucket_bytes;
      absl::StatusOr<std::unique_ptr<ProcessGroup>> pg =
          ProcessGroup::Create(o);
      results[r] = pg.ok() ? fn(**pg, r) : pg.status();
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

TEST(ProcessGroup, AllReduceSumsManyTensorsAcrossBuckets) {
  // 16-byte buckets split the float tensors over several collectives; the
  // int64 tensor and the transposed (non-contiguous) view take their own.
  auto results = RunRanks(
      2,
      [](ProcessGroup& pg, int64_t rank) -> absl::Status {
        const double k = static_cast<double>(rank + 1);
        std::vector<torch::Tensor> t{
            torch::full({4}, k),
            torch::arange(6, torch::kFloat32).reshape({2, 3}) * k,
            torch::arange(6, torch::kFloat32).reshape({2, 3}).t() * k,
            torch::full({3}, rank + 10, torch::kInt64), torch::full({1}, k)};
        torch::Tensor transposed = t[2];
        if (absl::Status s = pg.AllReduceSum(t); !s.ok()) return s;
        EXPECT_TRUE(torch::equal(t[0], torch::full({4}, 3.0)));
        EXPECT_TRUE(torch::equal(
            t[1], torch::arange(6, torch::kFloat32).reshape({2, 3}) * 3));
        EXPECT_TRUE(torch::equal(
            transposed,
            torch::arange(6, torch::kFloat32).reshape({2, 3}).t() * 3));
        EXPECT_TRUE(torch::equal(t[3], torch::full({3}, 21, torch::kInt64)));
        EXPECT_TRUE(torch::equal(t[4], torch::full({1}, 3.0)));
        return pg.Barrier();
      },
      /*bucket_bytes=*/16);
  for (const absl::Status& s : results) EXPECT_THAT(s, IsOk());
}

TEST(ProcessGroup, BroadcastCopiesTheRootsTensors) {
  auto results =
      RunRanks(3, [](ProcessGroup& pg, int64_t rank) -> absl::Status {
        std::vector<torch::Tensor> t{
            torch::full({5}, static_cast<double>(rank)),
            torch::full({2, 2}, rank * 2.0).t()};
        if (absl::Status s = pg.Broadcast(t, /*root=*/1); !s.ok()) return s;
        EXPECT_TRUE(torch::equal(t[0], torch::full({5}, 1.0)));
        EXPECT_TRUE(torch::equal(t[1], torch::full({2, 2}, 2.0)));
        return pg.Barrier();
      });
  for (const absl::Status& s : results) EXPECT_THAT(s, IsOk());
}

TEST(ProcessGroup, UnreachableStoreFailsWithinTheTimeoutNamingTheAddress) {
  // Rank 1 of 2 with no rank 0: nothing listens on the port.
  const int port = FreeLoopbackPort();
  ProcessGroupOptions o = LoopbackOptions(1, 2, port);
  o.timeout = std::chrono::seconds(2);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<ProcessGroup>> pg = ProcessGroup::Create(o);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  EXPECT_FALSE(pg.ok());
  EXPECT_THAT(pg.status().message(),
              HasSubstr("127.0.0.1:" + std::to_string(port)));
  EXPECT_THAT(pg.status().message(), HasSubstr("rank 1/2"));
  // The 2 s timeout plus connect back-off; far below a hang.
  EXPECT_LT(seconds, 20.0);
}

TEST(ProcessGroup, MissingPeerFailsWithinTheTimeout) {
  // Rank 0 of 2 hosts the store and waits for a rank 1 that never comes.
  ProcessGroupOptions o = LoopbackOptions(0, 2, FreeLoopbackPort());
  o.timeout = std::chrono::seconds(2);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<ProcessGroup>> pg = ProcessGroup::Create(o);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  EXPECT_FALSE(pg.ok());
  EXPECT_THAT(pg.status().message(), HasSubstr("rank 0/2"));
  EXPECT_LT(seconds, 20.0);
}

TEST(ProcessGroup, WorldSizeOneNeedsNoStore) {
  ProcessGroupOptions o;  // no port: world size 1 opens nothing
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ProcessGroup> pg,
                            ProcessGroup::Create(o));
  std::vector<torch::Tensor> t{torch::full({2}, 4.0)};
  EXPECT_THAT(pg->AllReduceSum(t), IsOk());
  EXPECT_THAT(pg->Broadcast(t), IsOk());
  EXPECT_THAT(pg->Barrier(), IsOk());
  EXPECT_TRUE(torch::equal(t[0], torch::full({2}, 4.0)));
}

TEST(ProcessGroup, OneRankGroupOnRequestRunsItsCollectives) {
  ProcessGroupOptions o;
  o.backend_for_one_rank = true;
  o.gloo_hostname = "127.0.0.1";
  o.timeout = std::chrono::seconds(30);
  auto group = ProcessGroup::Create(o);
  ASSERT_THAT(group.status(), IsOk());
  EXPECT_EQ((*group)->backend_name(), "gloo");
  std::vector<torch::Tensor> t = {torch::arange(5, torch::kFloat32),
                                  torch::full({1}, 2.5, torch::kFloat64)};
  ASSERT_THAT((*group)->AllReduceSum(t), IsOk());
  EXPECT_TRUE(torch::equal(t[0], torch::arange(5, torch::kFloat32)));
  EXPECT_EQ(t[1].item<double>(), 2.5);
  ASSERT_THAT((*group)->Broadcast(t, 0), IsOk());
  EXPECT_THAT((*group)->Barrier(), IsOk());
  // Without the request, one rank has no backend at all.
  auto none = ProcessGroup::Create(ProcessGroupOptions{});
  ASSERT_THAT(none.status(), IsOk());
  EXPECT_EQ((*none)->backend_name(), "none");
}

TEST(ProcessGroup, RejectsBadOptions) {
  ProcessGroupOptions o = LoopbackOptions(2, 2, 29500);
  EXPECT_THAT(ProcessGroup::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank")));
  o = LoopbackOptions(0, 2, 0);
  EXPECT_THAT(
      ProcessGroup::Create(o),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("store_port")));
#ifndef LEMO_WITH_CUDA
  o = LoopbackOptions(0, 2, 29500);
  o.device = torch::Device(torch::kCUDA, 0);
  EXPECT_THAT(ProcessGroup::Create(o),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("LEMO_ENABLE_CUDA")));
#endif
}

TEST(StoreServer, GroupsOfSeveralEpochsShareOneLongLivedStore) {
  // The worker agent's set-up: rank 0's process hosts one store for its life,
  // and each group (a job's epoch) joins it under its own prefix, rank 0 too
  // only connecting. Two epochs run one after the other on the same store.
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<StoreServer> store,
                            StoreServer::Create({}));
  ASSERT_GT(store->port(), 0);
  for (int epoch = 1; epoch <= 2; ++epoch) {
    std::vector<absl::Status> results(2);
    std::vector<std::thread> threads;
    for (int64_t r = 0; r < 2; ++r) {
      threads.emplace_back([&, r] {
        ProcessGroupOptions o = LoopbackOptions(r, 2, store->port());
        o.rank0_hosts_store = false;
        o.store_prefix = "lemo/job-1/epoch-" + std::to_string(epoch) + "/";
        absl::StatusOr<std::unique_ptr<ProcessGroup>> pg =
            ProcessGroup::Create(o);
        if (!pg.ok()) {
          results[r] = pg.status();
          return;
        }
        std::vector<torch::Tensor> t{torch::full({2}, double(r + epoch))};
        results[r] = (*pg)->AllReduceSum(t);
        EXPECT_TRUE(torch::equal(t[0], torch::full({2}, 1.0 + 2 * epoch)));
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_THAT(results[0], IsOk()) << "epoch " << epoch;
    EXPECT_THAT(results[1], IsOk()) << "epoch " << epoch;
  }
}

TEST(ProcessGroup, AVanishedPeerIsUnavailableNotAHang) {
  // Rank 1 never comes: rank 0's rendezvous fails within the timeout with
  // UNAVAILABLE (the agent's NCCL_TIMEOUT), naming the store.
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<StoreServer> store,
                            StoreServer::Create({}));
  ProcessGroupOptions o = LoopbackOptions(0, 2, store->port());
  o.rank0_hosts_store = false;
  o.store_prefix = "lemo/job-2/epoch-1/";
  o.timeout = std::chrono::seconds(2);
  EXPECT_THAT(ProcessGroup::Create(o),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat("127.0.0.1:", store->port()))));
}

}  // namespace
}  // namespace lemo::comm
