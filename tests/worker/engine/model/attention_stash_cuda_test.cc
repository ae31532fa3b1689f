// GPU test of selective checkpointing for attention
// (worker/engine/model/attention_stash.h; label gpu, fails without a CUDA
// device): a replay of bf16 causal attention recorded on a fused CUDA kernel
// (with flash first: flash for MHA, memory-efficient for GQA; cuDNN when put
// first, as torch itself does on Hopper) returns the recorded output with the
// reference's gradients. To add a
// case: append (length, KV heads) to a test's list, or call
// RecordReplayAndCompare under another kernel order.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/testing/require_cuda.h"
#include "tests/worker/engine/model/attention_test_util.h"
#include "worker/engine/model/attention_stash.h"
#include "worker/engine/runtime/attention_kernel.h"

namespace lemo::engine {
namespace {

using ::lemo::engine::testing::ExpectSameGrads;
using ::lemo::engine::testing::Qkv;
using ::lemo::engine::testing::Reference;

// Records one bf16 causal attention of `len` tokens (4 query heads over
// `kv_heads`) under the stash, checks which fused kernel it ran on when
// `want_kernel` is given, replays it, and compares output and gradients with
// the reference.
void RecordReplayAndCompare(
    int64_t len, int64_t kv_heads, uint64_t seed,
    std::optional<StashedAttention::Kernel> want_kernel) {
  SCOPED_TRACE(::testing::Message() << "n " << len << " kv heads " << kv_heads);
  torch::manual_seed(seed);
  const auto opts =
      torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
  Qkv t;
  t.q = torch::randn({1, 4, len, 128}, opts).requires_grad_(true);
  t.k = torch::randn({1, kv_heads, len, 128}, opts).requires_grad_(true);
  t.v = torch::randn({1, kv_heads, len, 128}, opts).requires_grad_(true);
  const double scale = 1 / std::sqrt(128.0);
  AttentionStash stash;
  {
    torch::NoGradGuard no_grad;
    AttentionStash::Scope record(&stash, AttentionStash::Mode::kRecord);
    ScaledDotProductAttention(t.q, t.k, t.v, true, scale);
  }
  if (want_kernel) {
    ASSERT_EQ(stash.recorded().size(), 1u);
    EXPECT_EQ(stash.recorded().front().kernel, *want_kernel)
        << "sdpa did not choose the kernel put first: is it available in "
           "this torch build for this shape?";
  }
  AttentionStash::Scope replay(&stash, AttentionStash::Mode::kReplay);
  const torch::Tensor got =
      ScaledDotProductAttention(t.q, t.k, t.v, true, scale);
  ASSERT_EQ(stash.skipped_forwards(), 1)
      << "bf16 causal attention on CUDA ran on no fused kernel";
  const torch::Tensor want = Reference(t, true, scale);
  EXPECT_TRUE(torch::allclose(got, want, 1e-2, 1e-2));
  ExpectSameGrads(got, want, t, 2e-2);
}

// With flash first (lemo-train --attention-kernel flash): MHA runs on flash;
// GQA on the memory-efficient kernel over repeated K/V (sdpa's choice on the
// H100), recorded all the same.
TEST(AttentionStashCuda, ReplayMatchesFlashAttentionInBf16) {
  LEMO_REQUIRE_CUDA();
  const torch::Device cuda(torch::kCUDA, 0);
  ASSERT_TRUE(PreferAttentionKernel(AttentionKernel::kFlash, cuda).ok());
  RecordReplayAndCompare(1024, 4, /*seed=*/10,
                         StashedAttention::Kernel::kFlash);
  for (const auto& [len, kv_heads] :
       std::vector<std::pair<int64_t, int64_t>>{{100, 4}, {300, 2}}) {
    RecordReplayAndCompare(len, kv_heads, /*seed=*/10, std::nullopt);
  }
  ASSERT_TRUE(PreferAttentionKernel(AttentionKernel::kAuto, cuda).ok());
}

// With cuDNN first in sdpa's order (lemo-train --attention-kernel cudnn), the
// calls record on cuDNN's fused kernel and replay into its own backward with
// the reference's gradients, MHA and GQA (K/V repeated for cuDNN).
TEST(AttentionStashCuda, ReplayMatchesCudnnAttentionInBf16) {
  LEMO_REQUIRE_CUDA();
  const torch::Device cuda(torch::kCUDA, 0);
  ASSERT_TRUE(PreferAttentionKernel(AttentionKernel::kCudnn, cuda).ok());
  for (const auto& [len, kv_heads] : std::vector<std::pair<int64_t, int64_t>>{
           {1024, 4}, {4096, 4}, {1024, 2}}) {
    RecordReplayAndCompare(len, kv_heads, /*seed=*/11,
                           StashedAttention::Kernel::kCudnn);
  }
  ASSERT_TRUE(PreferAttentionKernel(AttentionKernel::kAuto, cuda).ok());
}

// torch's own order (--attention-kernel auto, the default) is decided at the
// first sdpa call: cuDNN first on sm90 and sm100 (H100, H200, B200) with
// cuDNN >= 9.9, flash first elsewhere. On the H100 on 2026-12-07 that made a
// "flash" run of the engine and of the peers run cuDNN. Under auto, the
// kernel lemo-train reports first (FirstAttentionBackend) is the one an MHA
// attention records on; the test's "first_backend" property names it.
TEST(AttentionStashCuda, AutoRecordsOnTheKernelItReportsFirst) {
  LEMO_REQUIRE_CUDA();
  ASSERT_TRUE(PreferAttentionKernel(AttentionKernel::kAuto,
                                    torch::Device(torch::kCUDA, 0))
                  .ok());
  const std::string first = FirstAttentionBackend();
  RecordProperty("first_backend", first);
  ASSERT_TRUE(first == "cudnn" || first == "flash")
      << "torch's order puts " << first << " first";
  RecordReplayAndCompare(1024, 4, /*seed=*/12,
                         first == "cudnn" ? StashedAttention::Kernel::kCudnn
                                          : StashedAttention::Kernel::kFlash);
}

}  // namespace
}  // namespace lemo::engine
