// GPU tests of lemo::scatter_add_blocks: the fused CUDA kernel against the CPU
// reference on the same random inputs. Values on every kept path of the
// binding (KeptPath: reference checks, checks by one kernel, block-CTA
// kernel), called directly; values and gradients through the op (the default
// path; autograd redispatches to the CUDA kernels). Fails without a CUDA
// device. To add a case: append to testing::kGpuKeptCases; see
// op_test_harness.h.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "kernels/gather_blocks/gather_blocks.h"
#include "kernels/scatter_add_blocks/scatter_add_blocks.h"
#include "tests/kernels/op_test_harness.h"

#ifdef LEMO_WITH_CUDA
#include "kernels/scatter_add_blocks/scatter_add_blocks_cuda.h"
#endif

namespace lemo::kernels {
namespace {

using testing::Blocks;
using testing::ExpectGradsMatch;
using testing::kGpuDtypes;
using testing::kGpuKeptCases;
using testing::Label;
using testing::OnDeviceOf;
using testing::RandomKept;
#ifdef LEMO_WITH_CUDA
using testing::kKeptPaths;
using testing::PathLabel;
#endif

using Case = testing::KeptCase;

TEST(ScatterAddBlocksCuda, EqualsCpuValuesAndGradients) {
  LEMO_REQUIRE_CUDA();
#ifdef LEMO_WITH_CUDA
  for (const Case& c : kGpuKeptCases) {
    for (torch::ScalarType dtype : kGpuDtypes) {
      torch::manual_seed(c.k * 5 + c.shape[1]);
      const torch::Tensor residual = torch::randn(c.shape).to(dtype);
      const torch::Tensor kept =
          RandomKept(c.shape[0], Blocks(c), c.k, c.k + 1);
      const torch::Tensor y =
          torch::randn_like(GatherBlocks(residual, kept, c.block));
      const std::string label = Label(c, dtype);
      const torch::Tensor want = ScatterAddBlocks(residual, y, kept, c.block);
      // One add rounded once to the dtype on both sides: bit-equal.
      for (KeptPath path : kKeptPaths) {
        EXPECT_TRUE(
            torch::equal(ScatterAddBlocksCuda(residual.cuda(), y.cuda(),
                                              kept.cuda(), c.block, path)
                             .cpu(),
                         want))
            << label << PathLabel(path);
      }
      EXPECT_TRUE(torch::equal(
          ScatterAddBlocks(residual.cuda(), y.cuda(), kept.cuda(), c.block)
              .cpu(),
          want))
          << label << " (op)";
      ExpectGradsMatch(
          [&](const std::vector<torch::Tensor>& in) {
            return ScatterAddBlocks(in[0], in[1], in[2], c.block);
          },
          [&](const std::vector<torch::Tensor>& in) {
            return OnDeviceOf(ScatterAddBlocks(in[0].cpu(), in[1].cpu(),
                                               in[2].cpu(), c.block),
                              in[0]);
          },
          {residual.cuda(), y.cuda(), kept.cuda()}, label);
    }
  }
#else
  GTEST_FAIL() << "built without LEMO_ENABLE_CUDA";
#endif
}

TEST(ScatterAddBlocksCuda, RejectsBadIndicesLikeTheCpu) {
  LEMO_REQUIRE_CUDA();
#ifdef LEMO_WITH_CUDA
  const torch::Tensor x = torch::randn({1, 200, 8}, torch::kCUDA);
  const torch::Tensor y = torch::zeros({1, 64, 8}, torch::kCUDA);
  auto kept = [](std::vector<int64_t> v) {
    return torch::tensor(v).view({1, -1}).cuda();
  };
  for (KeptPath path : kKeptPaths) {
    const std::string label = PathLabel(path);
    // y has the wrong token count for two kept blocks.
    EXPECT_THROW(ScatterAddBlocksCuda(x, y, kept({0, 1}), 64, path), c10::Error)
        << label;
    EXPECT_THROW(ScatterAddBlocksCuda(x, y, kept({0, 4}), 64, path),
                 c10::Error)
        << label;  // out of range
  }
  // And through the op.
  EXPECT_THROW(ScatterAddBlocks(x, y, kept({0, 1})), c10::Error);
#else
  GTEST_FAIL() << "built without LEMO_ENABLE_CUDA";
#endif
}

}  // namespace
}  // namespace lemo::kernels
