// Tests of lemo::scatter_add_blocks against the naive per-row index_add,
// values and gradients, and its round trip with gather_blocks. To add a case:
// append to testing::kKeptCases (ragged N and 4-D head layouts welcome); see
// op_test_harness.h.
#include "kernels/scatter_add_blocks/scatter_add_blocks.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "kernels/gather_blocks/gather_blocks.h"
#include "tests/kernels/op_test_harness.h"

namespace lemo::kernels {
namespace {

using testing::Blocks;
using testing::ExpectClose;
using testing::ExpectGradsMatch;
using testing::kKeptCases;
using testing::Label;
using testing::NaiveGather;
using testing::NaivePositionsTensor;
using testing::RandomKept;

using Case = testing::KeptCase;

torch::Tensor Ids(std::vector<int64_t> v) { return torch::tensor(v); }

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

TEST(ScatterAddBlocks, MatchesNaiveValuesAndGradients) {
  for (const Case& c : kKeptCases) {
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
