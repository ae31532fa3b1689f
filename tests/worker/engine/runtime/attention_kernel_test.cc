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

#include "tests/testing/status_matchers.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

TEST(AttentionKernel, NamesRoundTripAndABadNameSaysWhatIsAccepted) {
  for (AttentionKernel k : {AttentionKernel::kFlash, AttentionKernel::kCudnn}) {
    absl::StatusOr<AttentionKernel> parsed =
        ParseAttentionKernel(AttentionKernelName(k));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, k);
  }
  EXPECT_THAT(ParseAttentionKernel("fa3").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must be flash or cudnn, got \"fa3\"")));
}

TEST(AttentionKernel, CudnnOnTheCpuIsRefusedAndChangesNothing) {
  const auto before = at::globalContext().sDPPriorityOrder();
  EXPECT_THAT(PreferAttentionKernel(AttentionKernel::kCudnn, torch::kCPU),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("needs a CUDA device, got cpu")));
  EXPECT_EQ(at::globalContext().sDPPriorityOrder(), before);
}

TEST(AttentionKernel, CudnnGoesFirstAndFlashRestoresTorchsOrder) {
  const auto torch_order = at::globalContext().sDPPriorityOrder();
  ASSERT_TRUE(PreferAttentionKernel(AttentionKernel::kFlash, torch::kCPU).ok());
  EXPECT_EQ(at::globalContext().sDPPriorityOrder(), torch_order);

  // The order is process-wide and needs no device to set: a CUDA device
  // object is enough to pass the check.
  ASSERT_TRUE(PreferAttentionKernel(AttentionKernel::kCudnn,
                                    torch::Device(torch::kCUDA, 0))
                  .ok());
  const auto cudnn_first = at::globalContext().sDPPriorityOrder();
  EXPECT_EQ(cudnn_first[0], at::SDPBackend::cudnn_attention);
  // Every other backend keeps its place relative to the others.
  auto rest = torch_order;
  auto end =
      std::remove(rest.begin(), rest.end(), at::SDPBackend::cudnn_attention);
  EXPECT_TRUE(std::equal(rest.begin(), end, cudnn_first.begin() + 1));

  ASSERT_TRUE(PreferAttentionKernel(AttentionKernel::kFlash, torch::kCPU).ok());
  EXPECT_EQ(at::globalContext().sDPPriorityOrder(), torch_order);
}

}  // namespace
}  // namespace lemo::engine
