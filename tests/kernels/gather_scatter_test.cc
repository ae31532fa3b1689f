// Tests of lemo::kept_positions, gather_blocks and scatter_add_blocks against
// naive per-row index_select / index_add references, values and gradients. To
// add a case: append to kCases (ragged N and 4-D head layouts welcome); see
// op_test_harness.h.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "kernels/lemo_ops.h"
#include "tests/kernels/op_test_harness.h"

namespace lemo::kernels {
namespace {

using testing::ExpectClose;
using testing::ExpectGradsMatch;
using testing::NaivePositions;
using testing::RandomKept;

torch::Tensor Ids(std::vector<int64_t> v) { return torch::tensor(v); }

torch::Tensor NaivePositionsTensor(const torch::Tensor& kept, int64_t n,
                                   int64_t block) {
  std::vector<torch::Tensor> rows;
  for (int64_t b = 0; b < kept.size(0); ++b) {
    rows.push_back(torch::tensor(NaivePositions(kept[b], n, block)));
  }
  return torch::stack(rows);
}

// Per row: index_select along the token dim (dim() - 2).
torch::Tensor NaiveGather(const torch::Tensor& x, const torch::Tensor& kept,
                          int64_t block) {
  const int64_t tdim = x.dim() - 2;
  const torch::Tensor pos = NaivePositionsTensor(kept, x.size(tdim), block);
  std::vector<torch::Tensor> rows;
  for (int64_t b = 0; b < x.size(0); ++b) {
    rows.push_back(x[b].index_select(tdim - 1, pos[b]));
  }
  return torch::stack(rows);
}

// residual + y placed at the kept tokens (zeros elsewhere).
torch::Tensor NaiveScatterAdd(const torch::Tensor& residual,
                              const torch::Tensor& y, const torch::Tensor& kept,
                              int64_t block) {
  const int64_t tdim = residual.dim() - 2;
  const torch::Tensor pos =
      NaivePositionsTensor(kept, residual.size(tdim), block);
  std::vector<torch::Tensor> rows;
  for (int64_t b = 0; b < residual.size(0); ++b) {
    rows.push_back(
        residual[b] +
        torch::zeros_like(residual[b]).index_add(tdim - 1, pos[b], y[b]));
  }
  return torch::stack(rows);
}

using Case = testing::KeptCase;
using testing::Blocks;
using testing::Label;

const std::vector<Case> kCases = {
    {{1, 64, 8}, 1, 64},    {{2, 100, 8}, 2, 64},    {{2, 200, 16}, 3, 64},
    {{3, 256, 4}, 2, 64},   {{2, 4, 130, 8}, 2, 64}, {{1, 8, 320, 16}, 3, 64},
    {{2, 2, 90, 4}, 4, 16}, {{2, 3, 47, 6}, 3, 10},
};

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

TEST(GatherBlocks, MatchesNaiveValuesAndGradients) {
  for (const Case& c : kCases) {
    for (torch::ScalarType dtype : testing::kDtypes) {
      torch::manual_seed(c.k * 7 + c.shape[1]);
      const torch::Tensor x = torch::randn(c.shape).to(dtype);
      const torch::Tensor kept = RandomKept(c.shape[0], Blocks(c), c.k, c.k);
      ExpectClose(GatherBlocks(x, kept, c.block), NaiveGather(x, kept, c.block),
                  dtype, Label(c, dtype));
      ExpectGradsMatch(
          [&](const std::vector<torch::Tensor>& in) {
            return GatherBlocks(in[0], in[1], c.block);
          },
          [&](const std::vector<torch::Tensor>& in) {
            return NaiveGather(in[0], in[1], c.block);
          },
          {x, kept}, Label(c, dtype));
    }
  }
}

TEST(ScatterAddBlocks, MatchesNaiveValuesAndGradients) {
  for (const Case& c : kCases) {
    for (torch::ScalarType dtype : testing::kDtypes) {
      torch::manual_seed(c.k * 5 + c.shape[1]);
      const torch::Tensor residual = torch::randn(c.shape).to(dtype);
      const torch::Tensor kept =
          RandomKept(c.shape[0], Blocks(c), c.k, c.k + 1);
      const torch::Tensor y =
          torch::randn_like(NaiveGather(residual, kept, c.block));
      ExpectClose(ScatterAddBlocks(residual, y, kept, c.block),
                  NaiveScatterAdd(residual, y, kept, c.block), dtype,
                  Label(c, dtype));
      ExpectGradsMatch(
          [&](const std::vector<torch::Tensor>& in) {
            return ScatterAddBlocks(in[0], in[1], in[2], c.block);
          },
          [&](const std::vector<torch::Tensor>& in) {
            return NaiveScatterAdd(in[0], in[1], in[2], c.block);
          },
          {residual, y, kept}, Label(c, dtype));
    }
  }
}

TEST(ScatterAddBlocks, EliminatedTokensPassThroughUnchanged) {
  torch::manual_seed(1);
  const torch::Tensor residual = torch::randn({1, 200, 4});
  const torch::Tensor kept = Ids({0, 3}).view({1, 2});
  const torch::Tensor out =
      ScatterAddBlocks(residual, torch::ones({1, 64 + 8, 4}), kept, 64);
  EXPECT_TRUE(
      torch::equal(out.narrow(1, 64, 128), residual.narrow(1, 64, 128)));
  EXPECT_TRUE(
      torch::equal(out.narrow(1, 0, 64), residual.narrow(1, 0, 64) + 1));
}

TEST(ScatterAddBlocks, RejectsMismatchedShapes) {
  const torch::Tensor kept = Ids({0, 1}).view({1, 2});
  EXPECT_THROW(ScatterAddBlocks(torch::zeros({1, 128, 4}),
                                torch::zeros({1, 64, 4}), kept, 64),
               c10::Error);
  EXPECT_THROW(
      ScatterAddBlocks(torch::zeros({1, 128, 4}),
                       torch::zeros({1, 128, 4}, torch::kDouble), kept, 64),
      c10::Error);
}

TEST(GatherScatter, RoundTripRestoresKeptTokens) {
  torch::manual_seed(8);
  const torch::Tensor x = torch::randn({2, 300, 8});
  const torch::Tensor kept = RandomKept(2, 5, 3, 1);
  const torch::Tensor back =
      ScatterAddBlocks(torch::zeros_like(x), GatherBlocks(x, kept), kept);
  const torch::Tensor mask = ScatterAddBlocks(
      torch::zeros_like(x), torch::ones_like(GatherBlocks(x, kept)), kept);
  EXPECT_TRUE(torch::equal(back, x * mask));
}

}  // namespace
}  // namespace lemo::kernels
