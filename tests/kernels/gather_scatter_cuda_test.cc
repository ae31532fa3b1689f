// GPU tests of lemo::gather_blocks and scatter_add_blocks: the CUDA kernels
// against the CPU references on the same random inputs. Values on every kept
// path of the bindings (KeptPath: reference checks, checks by one kernel,
// block-CTA kernels), called directly; values and gradients through the ops
// (the default path; autograd redispatches to the CUDA kernels). Skipped
// without a CUDA device. To add a case: append to kCases; see
// op_test_harness.h.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "kernels/lemo_ops.h"
#include "tests/kernels/op_test_harness.h"

#ifdef LEMO_WITH_CUDA
#include "kernels/gather_blocks/gather_blocks_cuda.h"
#include "kernels/kept_positions/kept_check_cuda.h"
#include "kernels/scatter_add_blocks/scatter_add_blocks_cuda.h"
#endif

namespace lemo::kernels {
namespace {

using testing::ExpectGradsMatch;
using testing::RandomKept;

using Case = testing::KeptCase;
using testing::Blocks;
using testing::Label;

// Ragged N (1000, 4097, 130), Llama widths (4096 hidden, d = 128), odd widths
// that defeat 16-byte vectors (6, 33), and blocks other than 64.
const std::vector<Case> kCases = {
    {{1, 1000, 4096}, 7, 64},   {{2, 4097, 256}, 30, 64},
    {{2, 8, 1000, 128}, 6, 64}, {{1, 32, 4097, 64}, 20, 64},
    {{2, 4, 130, 6}, 2, 64},    {{2, 300, 33}, 3, 64},
    {{2, 2, 90, 8}, 4, 16},     {{1, 3, 47, 10}, 3, 10},
};

const std::vector<torch::ScalarType> kGpuDtypes = {
    torch::kFloat32, torch::kBFloat16, torch::kFloat16};

#ifdef LEMO_WITH_CUDA
const std::vector<KeptPath> kKeptPaths = {
    KeptPath::kReferenceChecks, KeptPath::kKernelChecks, KeptPath::kBlockCtas};

std::string PathLabel(KeptPath path) {
  return " kept path " + std::to_string(static_cast<int>(path));
}
#endif

// The CPU op on CPU copies of the inputs, back on `device`: differentiable, so
// the gradient flows back to the CUDA leaves.
torch::Tensor OnCpu(const torch::Tensor& out, const torch::Tensor& like) {
  return out.to(like.device());
}

TEST(GatherBlocksCuda, EqualsCpuValuesAndGradients) {
  LEMO_SKIP_WITHOUT_CUDA();
#ifdef LEMO_WITH_CUDA
  for (const Case& c : kCases) {
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
            return OnCpu(GatherBlocks(in[0].cpu(), in[1].cpu(), c.block),
                         in[0]);
          },
          {x.cuda(), kept.cuda()}, label);
    }
  }
#else
  GTEST_SKIP() << "built without LEMO_ENABLE_CUDA";
#endif
}

TEST(GatherBlocksCuda, StridedInputsLikeTheEngine) {
  // The engine gathers cos/sin tables expanded over the batch (stride 0) and
  // q/k views transposed from [B, N, H, d].
  LEMO_SKIP_WITHOUT_CUDA();
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
  GTEST_SKIP() << "built without LEMO_ENABLE_CUDA";
#endif
}

TEST(ScatterAddBlocksCuda, EqualsCpuValuesAndGradients) {
  LEMO_SKIP_WITHOUT_CUDA();
#ifdef LEMO_WITH_CUDA
  for (const Case& c : kCases) {
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
            return OnCpu(ScatterAddBlocks(in[0].cpu(), in[1].cpu(), in[2].cpu(),
                                          c.block),
                         in[0]);
          },
          {residual.cuda(), y.cuda(), kept.cuda()}, label);
    }
  }
#else
  GTEST_SKIP() << "built without LEMO_ENABLE_CUDA";
#endif
}

TEST(GatherScatterCuda, RejectsBadIndicesLikeTheCpu) {
  LEMO_SKIP_WITHOUT_CUDA();
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
    EXPECT_THROW(ScatterAddBlocksCuda(x, torch::zeros({1, 64, 8}, torch::kCUDA),
                                      kept({0, 1}), 64, path),
                 c10::Error)
        << label;  // y has the wrong token count
  }
  // And through the ops.
  EXPECT_THROW(GatherBlocks(x, kept({0, 4})), c10::Error);
  EXPECT_THROW(
      ScatterAddBlocks(x, torch::zeros({1, 64, 8}, torch::kCUDA), kept({0, 1})),
      c10::Error);
#else
  GTEST_SKIP() << "built without LEMO_ENABLE_CUDA";
#endif
}

}  // namespace
}  // namespace lemo::kernels
