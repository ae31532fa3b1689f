// GPU tests of lemo::cross_entropy_chunk and its in-place backward: the fused
// CUDA kernels against the CPU reference on the same random logits (LM-head
// sizes included). Fails without a CUDA device. To add a case: append to
// kCases.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/cross_entropy_chunk/cross_entropy_chunk.h"
#include "tests/kernels/op_test_harness.h"

namespace lemo::kernels {
namespace {

using testing::ExpectClose;

struct Case {
  int64_t rows, vocab, ignored;
};

// Llama-2 (32000) and Llama-3 (128256) vocabularies; 1001 defeats 16-byte
// vectors.
const std::vector<Case> kCases = {
    {256, 32000, 17}, {64, 128256, 3}, {100, 1001, 100}, {7, 8, 0}};

std::string Label(const Case& c, torch::ScalarType dtype) {
  return "rows=" + std::to_string(c.rows) + " V=" + std::to_string(c.vocab) +
         " " + c10::toString(dtype);
}

TEST(CrossEntropyChunkCuda, EqualsCpuForwardAndBackward) {
  LEMO_REQUIRE_CUDA();
  for (const Case& c : kCases) {
    for (torch::ScalarType dtype :
         {torch::kFloat32, torch::kBFloat16, torch::kFloat16}) {
      torch::manual_seed(c.rows + c.vocab);
      const torch::Tensor logits =
          (4 * torch::randn({c.rows, c.vocab})).to(dtype);
      torch::Tensor labels = torch::randint(0, c.vocab, {c.rows}, torch::kLong);
      labels.narrow(0, 0, c.ignored).fill_(-100);
      const std::string label = Label(c, dtype);
      // fp32 math on both sides; the sums run in other orders (per-row
      // logsumexp, then the row sum), so fp32 tolerance relative to the total.
      const double want = CrossEntropyChunk(logits, labels).item<double>();
      const double got =
          CrossEntropyChunk(logits.cuda(), labels.cuda()).item<double>();
      EXPECT_NEAR(got, want, 1e-5 * std::max(1.0, std::abs(want))) << label;

      const torch::Tensor scale = torch::tensor(1.0f / 37);
      torch::Tensor cpu = logits.clone();
      CrossEntropyChunkBackward_(cpu, labels, scale);
      torch::Tensor gpu = logits.cuda();
      CrossEntropyChunkBackward_(gpu, labels.cuda(), scale.cuda());
      ExpectClose(gpu.cpu(), cpu, dtype, label + " backward");
    }
  }
}

TEST(CrossEntropyChunkCuda, AutogradReachesTheKernel) {
  LEMO_REQUIRE_CUDA();
  torch::manual_seed(5);
  const torch::Tensor logits = torch::randn({32, 5000}).to(torch::kBFloat16);
  const torch::Tensor labels = torch::randint(0, 5000, {32}, torch::kLong);
  torch::Tensor a = logits.cuda().requires_grad_(true);
  torch::Tensor e = logits.clone().requires_grad_(true);
  (CrossEntropyChunk(a, labels.cuda()) * 0.5).backward();
  (CrossEntropyChunk(e, labels) * 0.5).backward();
  ASSERT_TRUE(a.grad().is_cuda());
  ExpectClose(a.grad().cpu(), e.grad(), torch::kBFloat16, "bf16 autograd");
}

TEST(CrossEntropyChunkCuda, RejectsOutOfRangeLabels) {
  LEMO_REQUIRE_CUDA();
  const torch::Tensor logits = torch::randn({4, 10}, torch::kCUDA);
  EXPECT_THROW(CrossEntropyChunk(logits, torch::tensor({0, 1, 10, 2}).cuda()),
               c10::Error);
}

}  // namespace
}  // namespace lemo::kernels
