// Tests of lemo::gather_blocks against the naive per-row index_select, values
// and gradients. To add a case: append to testing::kKeptCases (ragged N and
// 4-D head layouts welcome); see op_test_harness.h.
#include "kernels/gather_blocks/gather_blocks.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "tests/kernels/op_test_harness.h"

namespace lemo::kernels {
namespace {

using testing::Blocks;
using testing::ExpectClose;
using testing::ExpectGradsMatch;
using testing::kKeptCases;
using testing::Label;
using testing::NaiveGather;
using testing::RandomKept;

using Case = testing::KeptCase;

TEST(GatherBlocks, MatchesNaiveValuesAndGradients) {
  for (const Case& c : kKeptCases) {
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

}  // namespace
}  // namespace lemo::kernels
