// GPU tests of lemo::gather_blocks and scatter_add_blocks:
// the CUDA kernels against the CPU references on the same random inputs,
// values and gradients (autograd redispatches to the CUDA kernels), on every
// binding path (LEMO_KEPT_PATH 0, 1, 2). Skipped without a CUDA device. To add
// a case: append to kCases; see op_test_harness.h.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/lemo_ops.h"
#include "tests/kernels/op_test_harness.h"

namespace lemo::kernels {
namespace {

using testing::ExpectClose;
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

// Sets LEMO_KEPT_PATH (read by the bindings per call) for one scope.
class ScopedKeptPath {
 public:
  explicit ScopedKeptPath(const char* path) {
    setenv("LEMO_KEPT_PATH", path, /*overwrite=*/1);
  }
  ~ScopedKeptPath() { unsetenv("LEMO_KEPT_PATH"); }
  ScopedKeptPath(const ScopedKeptPath&) = delete;
  ScopedKeptPath& operator=(const ScopedKeptPath&) = delete;
};

// 0: reference checks and flat kernels (the default); 1: checks by one
// kernel; 2: 1 plus the block-CTA gather/scatter kernels.
const std::vector<const char*> kKeptPaths = {"0", "1", "2"};

// The CPU op on CPU copies of the inputs, back on `device`: differentiable, so
// the gradient flows back to the CUDA leaves.
torch::Tensor OnCpu(const torch::Tensor& out, const torch::Tensor& like) {
  return out.to(like.device());
}

TEST(GatherBlocksCuda, EqualsCpuValuesAndGradients) {
  LEMO_SKIP_WITHOUT_CUDA();
  for (const char* path : kKeptPaths) {
    const ScopedKeptPath scoped(path);
    for (const Case& c : kCases) {
      for (torch::ScalarType dtype : kGpuDtypes) {
        torch::manual_seed(c.k * 7 + c.shape[1]);
        const torch::Tensor x = torch::randn(c.shape).to(dtype);
        const torch::Tensor kept = RandomKept(c.shape[0], Blocks(c), c.k, c.k);
        const std::string label = Label(c, dtype) + " LEMO_KEPT_PATH=" + path;
        // A copy: bit-equal.
        EXPECT_TRUE(
            torch::equal(GatherBlocks(x.cuda(), kept.cuda(), c.block).cpu(),
                         GatherBlocks(x, kept, c.block)))
            << label;
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
  }
}

TEST(GatherBlocksCuda, StridedInputsLikeTheEngine) {
  // The engine gathers cos/sin tables expanded over the batch (stride 0) and
  // q/k views transposed from [B, N, H, d].
  LEMO_SKIP_WITHOUT_CUDA();
  for (const char* path : kKeptPaths) {
    const ScopedKeptPath scoped(path);
    torch::manual_seed(3);
    const torch::Tensor table = torch::randn({1, 1000, 128}).cuda();
    const torch::Tensor kept = RandomKept(2, 16, 6, 4).cuda();
    const torch::Tensor expanded = table.expand({2, 1000, 128});
    EXPECT_TRUE(torch::equal(GatherBlocks(expanded, kept).cpu(),
                             GatherBlocks(expanded.cpu(), kept.cpu())));
    const torch::Tensor q = torch::randn({2, 1000, 8, 64})
                                .cuda()
                                .to(torch::kBFloat16)
                                .transpose(1, 2);
    EXPECT_TRUE(torch::equal(GatherBlocks(q, kept).cpu(),
                             GatherBlocks(q.cpu(), kept.cpu())));
  }
}

TEST(ScatterAddBlocksCuda, EqualsCpuValuesAndGradients) {
  LEMO_SKIP_WITHOUT_CUDA();
  for (const char* path : kKeptPaths) {
    const ScopedKeptPath scoped(path);
    for (const Case& c : kCases) {
      for (torch::ScalarType dtype : kGpuDtypes) {
        torch::manual_seed(c.k * 5 + c.shape[1]);
        const torch::Tensor residual = torch::randn(c.shape).to(dtype);
        const torch::Tensor kept =
            RandomKept(c.shape[0], Blocks(c), c.k, c.k + 1);
        const torch::Tensor y =
            torch::randn_like(GatherBlocks(residual, kept, c.block));
        const std::string label = Label(c, dtype) + " LEMO_KEPT_PATH=" + path;
        // One add rounded once to the dtype on both sides: bit-equal.
        EXPECT_TRUE(torch::equal(
            ScatterAddBlocks(residual.cuda(), y.cuda(), kept.cuda(), c.block)
                .cpu(),
            ScatterAddBlocks(residual, y, kept, c.block)))
            << label;
        ExpectGradsMatch(
            [&](const std::vector<torch::Tensor>& in) {
              return ScatterAddBlocks(in[0], in[1], in[2], c.block);
            },
            [&](const std::vector<torch::Tensor>& in) {
              return OnCpu(ScatterAddBlocks(in[0].cpu(), in[1].cpu(),
                                            in[2].cpu(), c.block),
                           in[0]);
            },
            {residual.cuda(), y.cuda(), kept.cuda()}, label);
      }
    }
  }
}

TEST(GatherScatterCuda, RejectsBadIndicesLikeTheCpu) {
  LEMO_SKIP_WITHOUT_CUDA();
  for (const char* path : kKeptPaths) {
    const ScopedKeptPath scoped(path);
    const torch::Tensor x = torch::randn({1, 200, 8}, torch::kCUDA);
    auto kept = [](std::vector<int64_t> v) {
      return torch::tensor(v).view({1, -1}).cuda();
    };
    EXPECT_THROW(GatherBlocks(x, kept({0, 4})), c10::Error);  // out of range
    EXPECT_THROW(GatherBlocks(x, kept({2, 1})), c10::Error);  // not ascending
    EXPECT_THROW(GatherBlocks(x, kept({0, 1}).cpu()), c10::Error);  // device
    EXPECT_THROW(ScatterAddBlocks(x, torch::zeros({1, 64, 8}, torch::kCUDA),
                                  kept({0, 1})),
                 c10::Error);  // y has the wrong token count
  }
}

}  // namespace
}  // namespace lemo::kernels
