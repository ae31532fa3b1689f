// Tests of worker/engine/train/adapter_agreement.h: the digest sees every bit,
// name and shape, and two real Gloo ranks on loopback agree when their
// adapters match and both fail, naming the step, when one differs. To add a
// case: build each rank's named tensors and run them with RunTwoRanks.
#include "worker/engine/train/adapter_agreement.h"

#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <thread>

#include "tests/testing/status_matchers.h"
#include "tests/worker/comm/free_port.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;
using Named = std::vector<std::pair<std::string, torch::Tensor>>;

Named Adapters() {
  torch::manual_seed(3);
  return {{"layers.0.q_proj.lora_A.weight", torch::randn({4, 8})},
          {"layers.0.q_proj.lora_B.weight", torch::randn({8, 4})}};
}

TEST(AdapterDigest, SeesEveryBitNameAndShape) {
  const Named a = Adapters();
  const std::string base = *AdapterDigest(a);
  EXPECT_EQ(*AdapterDigest(Adapters()), base);
  Named flipped = Adapters();
  // The smallest change: one bit of one value's mantissa.
  auto* bits = static_cast<int32_t*>(flipped[1].second.data_ptr());
  bits[5] ^= 1;
  EXPECT_NE(*AdapterDigest(flipped), base);
  Named renamed = Adapters();
  renamed[0].first = "layers.1.q_proj.lora_A.weight";
  EXPECT_NE(*AdapterDigest(renamed), base);
  Named reshaped = Adapters();
  reshaped[0].second = reshaped[0].second.reshape({8, 4});
  EXPECT_NE(*AdapterDigest(reshaped), base);
}

// Each rank's VerifyAdaptersAgree status, ranks on their own threads.
std::vector<absl::Status> RunTwoRanks(const std::vector<Named>& per_rank) {
  const int port = ::lemo::testing::FreeLoopbackPort();
  std::vector<absl::Status> out(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      comm::ProcessGroupOptions o;
      o.rank = r;
      o.world_size = 2;
      o.store_port = port;
      o.gloo_hostname = "127.0.0.1";
      o.timeout = std::chrono::seconds(30);
      auto group = comm::ProcessGroup::Create(o);
      if (!group.ok()) {
        out[r] = group.status();
        return;
      }
      out[r] = VerifyAdaptersAgree(**group, per_rank[r], /*step=*/7);
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

TEST(VerifyAdaptersAgree, EqualAdaptersPassOnEveryRank) {
  for (const absl::Status& s : RunTwoRanks({Adapters(), Adapters()})) {
    EXPECT_THAT(s, IsOk());
  }
}

TEST(VerifyAdaptersAgree, ADivergedRankFailsEveryRankNamingTheStep) {
  Named diverged = Adapters();
  diverged[0].second.add_(1e-6);
  for (const absl::Status& s : RunTwoRanks({Adapters(), diverged})) {
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition,
                            HasSubstr("after step 7, the adapter weights of 1 "
                                      "of 2 ranks differ from rank 0's")));
  }
}

}  // namespace
}  // namespace lemo::engine
