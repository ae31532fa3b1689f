// Tests of lemo::kept_positions against the naive per-block enumeration, and
// of the kept_blocks checks every gather/scatter op makes through it. To add a
// case: compare KeptPositions with NaivePositionsTensor, or expect a throw for
// a bad kept_blocks; see op_test_harness.h.
#include "kernels/kept_positions/kept_positions.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "tests/kernels/op_test_harness.h"

namespace lemo::kernels {
namespace {

using testing::NaivePositionsTensor;

torch::Tensor Ids(std::vector<int64_t> v) { return torch::tensor(v); }

TEST(KeptPositions, MatchesNaiveWithRaggedTail) {
  const torch::Tensor kept = Ids({0, 2, 3}).view({1, 3});
  const torch::Tensor pos = KeptPositions(kept, 200, 64);
  EXPECT_TRUE(torch::equal(pos, NaivePositionsTensor(kept, 200, 64)));
  EXPECT_EQ(pos.size(1), 64 + 64 + 8);
  EXPECT_EQ(pos[0][-1].item<int64_t>(), 199);
}

TEST(KeptPositions, RejectsBadIndices) {
  auto kept = [](std::vector<int64_t> v, int64_t rows) {
    return torch::tensor(v).view({rows, -1});
  };
  EXPECT_THROW(KeptPositions(kept({0, 4}, 1), 200, 64),
               c10::Error);  // out of range
  EXPECT_THROW(KeptPositions(kept({2, 1}, 1), 200, 64),
               c10::Error);  // not ascending
  EXPECT_THROW(KeptPositions(kept({1, 1}, 1), 200, 64),
               c10::Error);  // duplicate
  EXPECT_THROW(KeptPositions(kept({0, 3, 0, 2}, 2), 200, 64),
               c10::Error);  // ragged block kept by one row only
  EXPECT_THROW(KeptPositions(torch::zeros({1, 2}), 200, 64),
               c10::Error);  // not int64
  EXPECT_NO_THROW(KeptPositions(kept({0, 2, 1, 2}, 2), 256, 64));
}

}  // namespace
}  // namespace lemo::kernels
