// Tests of lemo::block_scores and lemo::block_column_scores against the naive N
// x N reference. To add a case: append to kCases (ragged N, GQA layouts
// welcome); see op_test_harness.h.
#include "kernels/block_scores/block_scores.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "kernels/allocation_tracker.h"
#include "kernels/select_blocks/select_blocks.h"
#include "tests/kernels/op_test_harness.h"

namespace lemo::kernels {
namespace {

using testing::ExpectClose;

// The definition, materialising every head's N x N scores: S_h = ReLU(q_h k_h^T
// / sqrt(d)), causal, summed over heads in order (GQA: k heads repeated),
// padded, 64x64 tile max.
torch::Tensor NaiveBlockMap(const torch::Tensor& q, const torch::Tensor& k,
                            int64_t block) {
  const int64_t n = q.size(2), d = q.size(3);
  const int64_t group = q.size(1) / k.size(1);
  const auto acc =
      q.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  const torch::Tensor kr = k.to(acc).repeat_interleave(group, 1);
  const torch::Tensor s =
      torch::relu(torch::matmul(q.to(acc), kr.transpose(-1, -2)) *
                  (1.0 / std::sqrt(static_cast<double>(d))));
  const torch::Tensor causal = torch::ones({n, n}, torch::kBool).tril();
  torch::Tensor a = torch::zeros({q.size(0), n, n}, s.options());
  for (int64_t h = 0; h < q.size(1); ++h) {
    a = a + s.select(1, h).masked_fill(causal.logical_not(), 0);
  }
  const int64_t nb = (n + block - 1) / block;
  a = torch::constant_pad_nd(a, {0, nb * block - n, 0, nb * block - n}, 0);
  return a.view({q.size(0), nb, block, nb, block})
      .amax({2, 4})
      .to(torch::kFloat);
}

struct Case {
  int64_t batch, hq, hkv, n, d, block;
};

const std::vector<Case> kCases = {
    {1, 1, 1, 64, 16, 64},  {2, 4, 4, 128, 16, 64}, {2, 8, 2, 200, 32, 64},
    {1, 6, 3, 257, 16, 64}, {2, 4, 1, 100, 8, 64},  {1, 8, 2, 31, 16, 64},
    {2, 8, 2, 150, 16, 16}, {1, 2, 1, 320, 64, 64},
};

std::string Label(const Case& c, torch::ScalarType dtype) {
  return "B=" + std::to_string(c.batch) + " Hq=" + std::to_string(c.hq) +
         " Hkv=" + std::to_string(c.hkv) + " N=" + std::to_string(c.n) +
         " d=" + std::to_string(c.d) + " block=" + std::to_string(c.block) +
         " " + c10::toString(dtype);
}

TEST(BlockScores, EqualsNaiveReference) {
  for (const Case& c : kCases) {
    for (torch::ScalarType dtype : testing::kDtypes) {
      torch::manual_seed(c.n * 131 + c.hq);
      const torch::Tensor q = torch::randn({c.batch, c.hq, c.n, c.d}).to(dtype);
      const torch::Tensor k =
          torch::randn({c.batch, c.hkv, c.n, c.d}).to(dtype);
      const torch::Tensor got = BlockScores(q, k, c.block);
      const torch::Tensor want = NaiveBlockMap(q, k, c.block);
      EXPECT_EQ(got.scalar_type(), torch::kFloat);
      // Both sides do the same fp32 math (bf16 inputs are upcast exactly), so
      // the only difference is the GEMM's summation order for a row block
      // versus the whole matrix: fp32 tolerance even for bf16 inputs. (Most
      // cases come out bit-identical; GQA 6/3 at N=257 differed by 4.8e-7 on
      // scores of about 10.)
      ExpectClose(got, want, torch::kFloat32, Label(c, dtype));
      // The selection it drives is identical.
      SelectOptions select;
      select.keep_ratio = 0.4;
      EXPECT_TRUE(
          torch::equal(SelectBlocks(got, select), SelectBlocks(want, select)))
          << Label(c, dtype);
    }
  }
}

TEST(BlockScores, Fp64InputsMatchTightly) {
  torch::manual_seed(3);
  const torch::Tensor q = torch::randn({2, 8, 2 * 64 + 9, 16}, torch::kDouble);
  const torch::Tensor k = torch::randn({2, 2, 2 * 64 + 9, 16}, torch::kDouble);
  ExpectClose(BlockScores(q, k), NaiveBlockMap(q, k, 64), torch::kFloat32,
              "fp64");
}

TEST(BlockScores, TilesAboveDiagonalAreZeroAndShapeIsPadded) {
  torch::manual_seed(5);
  const torch::Tensor q = torch::randn({1, 2, 130, 8});
  const torch::Tensor k = torch::randn({1, 2, 130, 8});
  const torch::Tensor m = BlockScores(q, k);
  ASSERT_EQ(m.sizes(), (std::vector<int64_t>{1, 3, 3}));
  EXPECT_TRUE(torch::equal(m.triu(1), torch::zeros_like(m)));
  EXPECT_GT(m[0][2][2].item<float>(),
            0);  // the ragged diagonal tile (2 tokens) still scores
}

TEST(BlockScores, ColumnScoresSumRows) {
  torch::manual_seed(11);
  const torch::Tensor q = torch::randn({2, 4, 300, 16});
  const torch::Tensor k = torch::randn({2, 2, 300, 16});
  const torch::Tensor m = BlockScores(q, k);
  ExpectClose(BlockColumnScores(m), m.sum(1), torch::kFloat32, "columns");
}

TEST(BlockScores, NegativeLogitsGiveZeroMap) {
  // ReLU: keys anti-aligned with every query contribute nothing.
  const torch::Tensor q = torch::ones({1, 2, 100, 4});
  const torch::Tensor k = -torch::ones({1, 1, 100, 4});
  EXPECT_TRUE(torch::equal(BlockScores(q, k), torch::zeros({1, 2, 2})));
}

TEST(BlockScores, RejectsBadShapes) {
  const torch::Tensor q = torch::randn({1, 6, 64, 8});
  EXPECT_THROW(BlockScores(q, torch::randn({1, 4, 64, 8})), c10::Error);
  EXPECT_THROW(BlockScores(q, torch::randn({1, 2, 65, 8})), c10::Error);
  EXPECT_THROW(BlockScores(q, torch::randn({2, 64, 8})), c10::Error);
  EXPECT_THROW(BlockScores(q, torch::randn({1, 2, 64, 8}), 0), c10::Error);
}

TEST(BlockScores, RowBlockWorkingSetIsLinearInN) {
  // N = 4096, one head: the full score matrix would be 64 MiB of fp32. The
  // reference holds one row of tiles at a time (64 x N scores, about 1 MiB, and
  // its head sum), so its peak stays far below that.
  const int64_t n = 4096;
  const torch::Tensor q = torch::randn({1, 1, n, 8});
  const torch::Tensor k = torch::randn({1, 1, n, 8});
  auto tracker = std::make_shared<kernels::AllocationTracker>();
  int64_t peak = 0;
  {
    kernels::AllocationTracker::Scope scope(tracker);
    const torch::Tensor m = BlockScores(q, k);
    peak = tracker->peak_bytes();
  }
  EXPECT_GT(peak, 0);
  EXPECT_LT(peak, n * n * 4 / 8) << "peak live bytes " << peak;
}

}  // namespace
}  // namespace lemo::kernels
