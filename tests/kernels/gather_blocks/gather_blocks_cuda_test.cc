// GPU tests of lemo::gather_blocks: the CUDA kernel against the CPU reference
// on the same random inputs. Values on every kept path of the binding
// (KeptPath: reference checks, checks by one kernel, block-CTA kernel), called
// directly; values and gradients through the op (the default path; autograd
// redispatches to the CUDA kernels). Fails without a CUDA device. To add a
// case: append to testing::kGpuKeptCases; see op_test_harness.h.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "kernels/gather_blocks/gather_blocks.h"
#include "tests/kernels/op_test_harness.h"

#ifdef LEMO_WITH_CUDA
#include "kernels/gather_blocks/gather_blocks_cuda.h"
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

TEST(GatherBlocksCuda, EqualsCpuValuesAndGradients) {
  LEMO_REQUIRE_CUDA();
#ifdef LEMO_WITH_CUDA
  for (const Case& c : kGpuKeptCases) {
    for (torch::ScalarType dtype : kGpuDtypes) {
      torch::manual_seed(c.k * 7 + c.shape[1]);
      const torch::Tensor x = torch::randn(c.shape).to(dtype);
      const torch::Tensor kept = RandomKept(c.shape[0], Blocks(c), c.k, c.k);
      const std::string label = Label(c, dtype);
      const torch::Tensor want = GatherBlocks(x, kept, c.block);
      // A copy: bit-equal.
      for (KeptPath path : kKeptPaths) {
        EXPECT_TRUE(torch::equal(
            GatherBlocksCuda(x.cuda(), kept.cuda(), c.block, path).cpu(), want))
            << label << PathLabel(path);
      }
      EXPECT_TRUE(torch::equal(
          GatherBlocks(x.cuda(), kept.cuda(), c.block).cpu(), want))
          << label << " (op)";
      ExpectGradsMatch(
          [&](const std::vector<torch::Tensor>& in) {
            return GatherBlocks(in[0], in[1], c.block);
          },
          [&](const std::vector<torch::Tensor>& in) {
            return OnDeviceOf(GatherBlocks(in[0].cpu(), in[1].cpu(), c.block),
                              in[0]);
          },
          {x.cuda(), kept.cuda()}, label);
    }
  }
#else
  GTEST_FAIL() << "built without LEMO_ENABLE_CUDA";
#endif
}

TEST(GatherBlocksCuda, StridedInputsLikeTheEngine) {
  // The engine gathers cos/sin tables expanded over the batch (stride 0) and
  // q/k views transposed from [B, N, H, d].
  LEMO_REQUIRE_CUDA();
#ifdef LEMO_WITH_CUDA
  torch::manual_seed(3);
  const torch::Tensor table = torch::randn({1, 1000, 128}).cuda();
  const torch::Tensor kept = RandomKept(2, 16, 6, 4).cuda();
  const torch::Tensor expanded = table.expand({2, 1000, 128});
  const torch::Tensor q = torch::randn({2, 1000, 8, 64})
                              .cuda()
                              .to(torch::kBFloat16)
                              .transpose(1, 2);
  for (KeptPath path : kKeptPaths) {
    EXPECT_TRUE(torch::equal(GatherBlocksCuda(expanded, kept, 64, path).cpu(),
                             GatherBlocks(expanded.cpu(), kept.cpu())))
        << "expanded table" << PathLabel(path);
    EXPECT_TRUE(torch::equal(GatherBlocksCuda(q, kept, 64, path).cpu(),
                             GatherBlocks(q.cpu(), kept.cpu())))
        << "transposed q" << PathLabel(path);
  }
#else
  GTEST_FAIL() << "built without LEMO_ENABLE_CUDA";
#endif
}

TEST(GatherBlocksCuda, RejectsBadIndicesLikeTheCpu) {
  LEMO_REQUIRE_CUDA();
#ifdef LEMO_WITH_CUDA
  const torch::Tensor x = torch::randn({1, 200, 8}, torch::kCUDA);
  auto kept = [](std::vector<int64_t> v) {
    return torch::tensor(v).view({1, -1}).cuda();
  };
  for (KeptPath path : kKeptPaths) {
    const std::string label = PathLabel(path);
    EXPECT_THROW(GatherBlocksCuda(x, kept({0, 4}), 64, path), c10::Error)
        << label;  // out of range
    EXPECT_THROW(GatherBlocksCuda(x, kept({2, 1}), 64, path), c10::Error)
        << label;  // not ascending
    EXPECT_THROW(GatherBlocksCuda(x, kept({0, 1}).cpu(), 64, path), c10::Error)
        << label;  // device
  }
  // And through the op.
  EXPECT_THROW(GatherBlocks(x, kept({0, 4})), c10::Error);
#else
  GTEST_FAIL() << "built without LEMO_ENABLE_CUDA";
#endif
}

}  // namespace
}  // namespace lemo::kernels
