// Tests of lemo::select_blocks: a naive per-row selection on random scores, and
// the rule's edge cases. To add a case: call SelectBlocks with options and
// compare to NaiveSelect or to literal expected indices.
#include "kernels/select_blocks/select_blocks.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

namespace lemo::kernels {
namespace {

std::vector<int64_t> Row(const torch::Tensor& kept, int64_t b) {
  const torch::Tensor r = kept[b].contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(),
                              r.data_ptr<int64_t>() + r.numel());
}

// The rule spelled out: first and last, then by descending score (ties: lower
// index), k blocks, ascending.
std::vector<int64_t> NaiveSelect(const std::vector<double>& s, int64_t k) {
  const int64_t nb = static_cast<int64_t>(s.size());
  std::vector<int64_t> order(nb);
  std::iota(order.begin(), order.end(), 0);
  auto forced = [&](int64_t i) { return i == 0 || i == nb - 1; };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (forced(a) != forced(b)) return forced(a);
    return s[a] > s[b];
  });
  order.resize(k);
  std::sort(order.begin(), order.end());
  return order;
}

SelectOptions Fixed(double ratio) {
  SelectOptions o;
  o.keep_ratio = ratio;
  return o;
}

SelectOptions Adaptive(double tau, int64_t min_keep = 1,
                       int64_t max_keep = -1) {
  SelectOptions o;
  o.tau = tau;
  o.min_keep = min_keep;
  o.max_keep = max_keep;
  return o;
}

TEST(SelectBlocks, FixedRatioMatchesNaiveOnRandomScores) {
  for (int64_t nb : {1, 2, 3, 7, 10, 33, 64}) {
    for (double ratio : {0.05, 0.25, 0.4, 0.7, 0.99, 1.0}) {
      torch::manual_seed(nb * 17);
      // Integer-valued scores make ties common, so the tie rule is exercised
      // too.
      const torch::Tensor scores =
          torch::randint(0, 5, {3, nb}, torch::kFloat32);
      const torch::Tensor kept = SelectBlocks(scores, Fixed(ratio));
      const int64_t want_k = std::min<int64_t>(
          nb, std::max<int64_t>(
                  std::min<int64_t>(nb, 2),
                  static_cast<int64_t>(std::ceil(ratio * nb - 1e-9))));
      ASSERT_EQ(kept.size(1), want_k) << "nb=" << nb << " ratio=" << ratio;
      EXPECT_EQ(kept.scalar_type(), torch::kLong);
      for (int64_t b = 0; b < 3; ++b) {
        const torch::Tensor r = scores[b].to(torch::kDouble).contiguous();
        std::vector<double> s(r.data_ptr<double>(), r.data_ptr<double>() + nb);
        EXPECT_EQ(Row(kept, b), NaiveSelect(s, want_k))
            << "nb=" << nb << " ratio=" << ratio << " row " << b;
      }
    }
  }
}

TEST(SelectBlocks, KeepRatioOneKeepsAll) {
  const torch::Tensor kept = SelectBlocks(torch::rand({2, 9}), Fixed(1.0));
  EXPECT_TRUE(torch::equal(kept, torch::arange(9).expand({2, 9})));
}

TEST(SelectBlocks, CountIsCeilOfRatio) {
  // 0.7 x 10 is 7.000000000000001 in double: still 7 blocks.
  EXPECT_EQ(SelectBlocks(torch::rand({1, 10}), Fixed(0.7)).size(1), 7);
  EXPECT_EQ(SelectBlocks(torch::rand({1, 10}), Fixed(0.41)).size(1), 5);
  EXPECT_EQ(SelectBlocks(torch::rand({1, 10}), Fixed(0.4)).size(1), 4);
}

TEST(SelectBlocks, FirstAndLastAlwaysKept) {
  // They score lowest, yet stay; the middle is chosen by score.
  const torch::Tensor scores = torch::tensor({{0.0, 5.0, 1.0, 9.0, 2.0, 0.0}});
  EXPECT_EQ(Row(SelectBlocks(scores, Fixed(0.6)), 0),
            (std::vector<int64_t>{0, 1, 3, 5}));
  EXPECT_EQ(Row(SelectBlocks(scores, Fixed(0.01)), 0),
            (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(Row(SelectBlocks(torch::rand({1, 1}), Fixed(0.3)), 0),
            (std::vector<int64_t>{0}));
}

TEST(SelectBlocks, BlockMapIsReducedToColumnSums) {
  torch::manual_seed(2);
  const torch::Tensor map = torch::rand({2, 12, 12}).tril();
  EXPECT_TRUE(torch::equal(SelectBlocks(map, Fixed(0.4)),
                           SelectBlocks(map.sum(1), Fixed(0.4))));
}

TEST(SelectBlocks, AdaptiveKeepsFewestBlocksReachingTau) {
  // Total 20; keeping order: 0 (1), 7 (1), 3 (10), 5 (6), 2 (2) ...
  const torch::Tensor s =
      torch::tensor({{1.0, 0.0, 2.0, 10.0, 0.0, 6.0, 0.0, 1.0}});
  // tau 0.6 -> 12 of 20: 1 + 1 + 10 = 12 reached with 3 blocks.
  EXPECT_EQ(Row(SelectBlocks(s, Adaptive(0.6)), 0),
            (std::vector<int64_t>{0, 3, 7}));
  // tau 0.61 -> 12.2: needs block 5 too.
  EXPECT_EQ(Row(SelectBlocks(s, Adaptive(0.61)), 0),
            (std::vector<int64_t>{0, 3, 5, 7}));
  // tau 1.0: every block with mass, none of the zero blocks.
  EXPECT_EQ(Row(SelectBlocks(s, Adaptive(1.0)), 0),
            (std::vector<int64_t>{0, 2, 3, 5, 7}));
}

TEST(SelectBlocks, AdaptiveKeptMassReachesTauOnRandomScores) {
  torch::manual_seed(9);
  const torch::Tensor s = torch::rand({1, 50}).pow(4);
  for (double tau : {0.3, 0.5, 0.8, 0.95}) {
    const torch::Tensor kept = SelectBlocks(s, Adaptive(tau));
    const double kept_mass = s[0].index_select(0, kept[0]).sum().item<double>();
    const double total = s.sum().item<double>();
    EXPECT_GE(kept_mass, tau * total * (1 - 1e-6)) << "tau " << tau;
    // Fewest: dropping the lowest-scoring non-forced kept block falls below
    // tau.
    const torch::Tensor middle = kept[0].narrow(0, 1, kept.size(1) - 2);
    if (middle.numel() > 0) {
      const double lowest = s[0].index_select(0, middle).min().item<double>();
      EXPECT_LT(kept_mass - lowest, tau * total) << "tau " << tau;
    }
  }
}

TEST(SelectBlocks, AdaptiveBounds) {
  const torch::Tensor s =
      torch::tensor({{1.0, 0.0, 2.0, 10.0, 0.0, 6.0, 0.0, 1.0}});
  // min_keep raises the count, filling by score.
  EXPECT_EQ(Row(SelectBlocks(s, Adaptive(0.6, 5)), 0),
            (std::vector<int64_t>{0, 2, 3, 5, 7}));
  // max_keep caps it.
  EXPECT_EQ(Row(SelectBlocks(s, Adaptive(1.0, 1, 3)), 0),
            (std::vector<int64_t>{0, 3, 7}));
  // max_keep below 2 still keeps the first and last blocks.
  EXPECT_EQ(Row(SelectBlocks(s, Adaptive(1.0, 0, 1)), 0),
            (std::vector<int64_t>{0, 7}));
  // All-zero scores: tau is reached with nothing, so min_keep / the forced
  // blocks decide.
  EXPECT_EQ(Row(SelectBlocks(torch::zeros({1, 6}), Adaptive(0.9, 3)), 0),
            (std::vector<int64_t>{0, 1, 5}));
  // Bounds apply to the fixed rule too.
  EXPECT_EQ(SelectBlocks(torch::rand({1, 20}),
                         [] {
                           SelectOptions o = Fixed(0.9);
                           o.max_keep = 4;
                           return o;
                         }())
                .size(1),
            4);
}

TEST(SelectBlocks, AdaptiveBatchPadsToLargestCount) {
  // Row 0 needs 3 blocks (0, 2, 5), row 1 needs 5; both keep 5, row 0 adding
  // its next best.
  const torch::Tensor s = torch::tensor(
      {{1.0, 0.5, 10.0, 0.25, 0.0, 1.0}, {1.0, 3.0, 3.0, 3.0, 0.5, 1.0}});
  const torch::Tensor kept = SelectBlocks(s, Adaptive(0.9));
  ASSERT_EQ(kept.sizes(), (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(Row(kept, 0), (std::vector<int64_t>{0, 1, 2, 3, 5}));
  EXPECT_EQ(Row(kept, 1), (std::vector<int64_t>{0, 1, 2, 3, 5}));
  EXPECT_EQ(Row(SelectBlocks(s.narrow(0, 0, 1), Adaptive(0.9)), 0),
            (std::vector<int64_t>{0, 2, 5}));
}

TEST(SelectBlocks, RejectsBadOptions) {
  const torch::Tensor s = torch::rand({1, 8});
  EXPECT_THROW(SelectBlocks(s, Fixed(0.0)), c10::Error);
  EXPECT_THROW(SelectBlocks(s, Fixed(1.5)), c10::Error);
  EXPECT_THROW(SelectBlocks(s, Adaptive(0.0)), c10::Error);
  EXPECT_THROW(SelectBlocks(s, Adaptive(1.1)), c10::Error);
  EXPECT_THROW(SelectBlocks(s, Adaptive(0.5, 5, 3)), c10::Error);
  EXPECT_THROW(SelectBlocks(torch::rand({8}), Fixed(0.5)), c10::Error);
  EXPECT_THROW(SelectBlocks(torch::tensor({{1.0, NAN, 2.0}}), Fixed(0.5)),
               c10::Error);
}

}  // namespace
}  // namespace lemo::kernels
