// Tests of the attention kernel preference
// (worker/engine/runtime/attention_kernel.h): its names, its refusal on the
// CPU, and the sdpa priority order it leaves in torch's global context. To add
// a case: prefer a kernel, then read at::globalContext().sDPPriorityOrder().
#include "worker/engine/runtime/attention_kernel.h"

#include <ATen/Context.h>
#include <ATen/SDPBackend.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>

#include "tests/testing/status_matchers.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

TEST(AttentionKernel, NamesRoundTripAndABadNameSaysWhatIsAccepted) {
  for (AttentionKernel k : {AttentionKernel::kAuto, AttentionKernel::kFlash,
                            AttentionKernel::kCudnn}) {
    absl::StatusOr<AttentionKernel> parsed =
        ParseAttentionKernel(AttentionKernelName(k));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, k);
  }
  EXPECT_THAT(ParseAttentionKernel("fa3").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must be auto, flash or cudnn, got \"fa3\"")));
}

TEST(AttentionKernel, AChoiceOnTheCpuIsRefusedAndChangesNothing) {
  const auto before = at::globalContext().sDPPriorityOrder();
  for (AttentionKernel k : {AttentionKernel::kFlash, AttentionKernel::kCudnn}) {
    EXPECT_THAT(PreferAttentionKernel(k, torch::kCPU),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr("needs a CUDA device, got cpu")));
    EXPECT_EQ(at::globalContext().sDPPriorityOrder(), before);
  }
  EXPECT_TRUE(PreferAttentionKernel(AttentionKernel::kAuto, torch::kCPU).ok());
}

// Each choice goes first with the others in torch's order behind it, and auto
// restores torch's order. (Where CUDA runs, torch's order is its own lazy
// decision; tests/worker/engine/model/attention_stash_cuda_test.cc checks the
// kernel sdpa then picks.)
TEST(AttentionKernel, AChoiceGoesFirstAndAutoRestoresTorchsOrder) {
  const torch::Device cuda(torch::kCUDA, 0);
  ASSERT_TRUE(PreferAttentionKernel(AttentionKernel::kAuto, cuda).ok());
  const auto torch_order = at::globalContext().sDPPriorityOrder();
  for (auto [kernel, backend, name] :
       {std::tuple{AttentionKernel::kCudnn, at::SDPBackend::cudnn_attention,
                   "cudnn"},
        std::tuple{AttentionKernel::kFlash, at::SDPBackend::flash_attention,
                   "flash"}}) {
    // The order is process-wide and needs no device to set: a CUDA device
    // object is enough to pass the check.
    ASSERT_TRUE(PreferAttentionKernel(kernel, cuda).ok());
    const auto order = at::globalContext().sDPPriorityOrder();
    EXPECT_EQ(order[0], backend);
    EXPECT_EQ(FirstAttentionBackend(), name);
    // Every other backend keeps its place relative to the others.
    auto rest = torch_order;
    auto end = std::remove(rest.begin(), rest.end(), backend);
    EXPECT_TRUE(std::equal(rest.begin(), end, order.begin() + 1));
  }
  ASSERT_TRUE(PreferAttentionKernel(AttentionKernel::kAuto, cuda).ok());
  EXPECT_EQ(at::globalContext().sDPPriorityOrder(), torch_order);
}

}  // namespace
}  // namespace lemo::engine
