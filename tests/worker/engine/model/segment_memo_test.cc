// Tests of worker/engine/model/segment_memo.h: outside a scope Memoized just
// computes; recording computes and keeps each value; a replay hands them back
// in order without computing, and too many or too few replays fail loudly; a
// checkpoint (train/recompute.h) computes a memoized value once per step, and
// its re-run sees the forward's value even where computing again would give
// another. To add a case: call Memoized under SegmentMemo::Scope in kRecord,
// then kReplay, and check what came back and how often compute ran.
#include "worker/engine/model/segment_memo.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "worker/engine/train/recompute.h"

namespace lemo::engine {
namespace {

using ::testing::HasSubstr;

TEST(SegmentMemo, OutsideAScopeComputesEveryTime) {
  int calls = 0;
  const auto compute = [&] { return torch::full({1}, ++calls); };
  EXPECT_EQ(Memoized(compute).item<int>(), 1);
  EXPECT_EQ(Memoized(compute).item<int>(), 2);
  EXPECT_FALSE(ReplayingSegment());
}

TEST(SegmentMemo, ReplayHandsBackTheRecordedValuesInOrderWithoutComputing) {
  SegmentMemo memo;
  int calls = 0;
  const auto compute = [&] { return torch::full({1}, ++calls); };
  {
    SegmentMemo::Scope record(&memo, SegmentMemo::Mode::kRecord);
    EXPECT_FALSE(ReplayingSegment());
    EXPECT_EQ(Memoized(compute).item<int>(), 1);
    EXPECT_EQ(Memoized(compute).item<int>(), 2);
  }
  EXPECT_EQ(memo.pending(), 2u);
  {
    SegmentMemo::Scope replay(&memo, SegmentMemo::Mode::kReplay);
    EXPECT_TRUE(ReplayingSegment());
    EXPECT_EQ(Memoized(compute).item<int>(), 1);
    EXPECT_EQ(Memoized(compute).item<int>(), 2);
    // One call more than recorded.
    try {
      Memoized(compute);
      ADD_FAILURE() << "a replay past the recorded values must throw";
    } catch (const c10::Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("more memoized values than the forward"));
    }
  }
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(memo.replayed(), 2);
  EXPECT_FALSE(ReplayingSegment());
}

TEST(SegmentMemo, ScopesNestAndTheInnermostWins) {
  SegmentMemo outer, inner;
  {
    SegmentMemo::Scope a(&outer, SegmentMemo::Mode::kRecord);
    Memoized([] { return torch::ones({1}); });
    {
      SegmentMemo::Scope b(&inner, SegmentMemo::Mode::kRecord);
      Memoized([] { return torch::zeros({1}); });
    }
    Memoized([] { return torch::ones({1}); });
  }
  EXPECT_EQ(outer.pending(), 2u);
  EXPECT_EQ(inner.pending(), 1u);
}

// A segment whose memoized value would differ if computed again (as a top-k
// of scores that tie, or that differ in the last bit between runs, could):
// the checkpoint's re-run must use the forward's, so its gradients are those
// of the forward that made the output.
TEST(SegmentMemo, ACheckpointComputesOnceAndItsRerunSeesTheForwardsValue) {
  const torch::Tensor w = torch::randn({6, 6}, torch::requires_grad());
  const torch::Tensor x = torch::randn({4, 6}).requires_grad_(true);
  int calls = 0;
  // "Which rows to keep": row 1 in the forward, row 3 if asked again.
  const auto fn = [&](const torch::Tensor& in) {
    const torch::Tensor kept = Memoized([&] {
      return torch::tensor({calls++ == 0 ? int64_t{1} : int64_t{3}});
    });
    return torch::matmul(in.index_select(0, kept), w);
  };
  const torch::Tensor y = Checkpoint(fn, x, {w});
  EXPECT_EQ(calls, 1);
  const auto grads = torch::autograd::grad({y.sum()}, {x, w});
  EXPECT_EQ(calls, 1) << "the re-run must not choose again";
  // The gradient reaches row 1, the forward's choice, and only it.
  const torch::Tensor gx = grads[0];
  EXPECT_GT(gx[1].abs().sum().item<double>(), 0);
  EXPECT_EQ(gx[3].abs().sum().item<double>(), 0);
  const torch::Tensor want_w =
      torch::matmul(x.index({torch::indexing::Slice(1, 2)}).t().detach(),
                    torch::ones({1, 6}));
  EXPECT_TRUE(torch::allclose(grads[1], want_w));
}

// A checkpoint inside a checkpointed segment (attention head groups run so):
// the inner segment's memoized calls belong to the inner checkpoint in the
// re-run and to no memo in the forward, so the outer one neither records nor
// replays them, and backward completes with the plain gradients.
TEST(SegmentMemo, ANestedCheckpointsCallsStayOutOfTheEnclosingMemo) {
  const torch::Tensor w = torch::randn({6, 6}, torch::requires_grad());
  const torch::Tensor x = torch::randn({4, 6}).requires_grad_(true);
  int inner_calls = 0, outer_calls = 0;
  const auto inner = [&](const torch::Tensor& in) {
    const torch::Tensor kept = Memoized(
        [&] { return torch::tensor({int64_t{1}}) + 0 * inner_calls++; });
    return torch::matmul(in.index_select(0, kept), w);
  };
  const auto outer = [&](const torch::Tensor& in) {
    const torch::Tensor kept = Memoized([&] {
      ++outer_calls;
      return torch::tensor({int64_t{0}, int64_t{2}});
    });
    const torch::Tensor h = torch::tanh(in.index_select(0, kept));
    return Checkpoint(inner, h, {w});
  };
  const auto grads =
      torch::autograd::grad({Checkpoint(outer, x, {w}).sum()}, {x, w});
  const auto want = torch::autograd::grad({outer(x).sum()}, {x, w});
  EXPECT_TRUE(torch::allclose(grads[0], want[0]));
  EXPECT_TRUE(torch::allclose(grads[1], want[1]));
  // The outer choice once in the checkpointed run (its forward), once more in
  // the plain one; the inner in the forward, the re-run's own checkpoint
  // forward, and the plain run's.
  EXPECT_EQ(outer_calls, 2);
  EXPECT_EQ(inner_calls, 3);
}

}  // namespace
}  // namespace lemo::engine
