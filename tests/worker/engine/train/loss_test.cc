// Tests for worker/engine/train/loss.h. To add a case: pick (B, N, S) and a
// label pattern in SegmentedCase and compare the segmented loss and hidden
// gradient with the unsegmented one.
#include "worker/engine/train/loss.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "gtest/gtest.h"

namespace lemo::engine {
namespace {

struct Result {
  torch::Tensor loss, grad;
};

Result Run(const torch::Tensor& hidden0, const torch::Tensor& head,
           const torch::Tensor& labels, int64_t segment) {
  torch::Tensor hidden = hidden0.clone().requires_grad_(true);
  torch::Tensor loss = CausalLmLoss(hidden, head, labels, segment);
  loss.backward();
  return {loss.detach(), hidden.grad()};
}

void SegmentedCase(int64_t batch, int64_t len, int64_t segment,
                   bool ignore_some, torch::ScalarType dtype = torch::kFloat) {
  SCOPED_TRACE(::testing::Message() << "B=" << batch << " N=" << len
                                    << " S=" << segment << " dtype=" << dtype);
  torch::manual_seed(batch * 100 + len * 10 + segment);
  const int64_t vocab = 37, dim = 16;
  torch::Tensor hidden = torch::randn({batch, len, dim}).to(dtype);
  torch::Tensor head = (torch::randn({vocab, dim}) * 0.5).to(dtype);
  torch::Tensor labels = torch::randint(vocab, {batch, len}, torch::kLong);
  if (ignore_some) {
    labels.index_put_({torch::rand({batch, len}) < 0.3}, kIgnoreIndex);
  }
  Result full = Run(hidden, head, labels, 0);
  Result seg = Run(hidden, head, labels, segment);
  const double tol = dtype == torch::kFloat ? 1e-5 : 2e-2;
  EXPECT_NEAR(seg.loss.item<double>(), full.loss.item<double>(),
              tol * std::abs(full.loss.item<double>()));
  EXPECT_TRUE(torch::allclose(seg.grad.to(torch::kFloat),
                              full.grad.to(torch::kFloat), tol, tol * 1e-2));
  EXPECT_EQ(seg.grad.scalar_type(), dtype);
}

TEST(CausalLmLoss, SegmentedEqualsUnsegmented) {
  SegmentedCase(1, 16, 4, false);
  SegmentedCase(2, 13, 5, true);  // N not a multiple of S, ignored labels
  SegmentedCase(3, 7, 64, true);  // one chunk larger than the input
  SegmentedCase(1, 9, 1, true);   // one token per chunk
  SegmentedCase(2, 11, 4, true, torch::kBFloat16);
}

// The segmented loss as plain ATen, chunk by chunk (the code loss.cc ran
// before lemo::cross_entropy_chunk): fp32 upcast + cross_entropy(sum); in
// backward fp32 softmax - onehot, scaled, rounded to the hidden dtype.
Result OpByOpSegmented(const torch::Tensor& hidden, const torch::Tensor& head,
                       const torch::Tensor& labels, int64_t segment) {
  namespace F = torch::nn::functional;
  const torch::Tensor shifted = ShiftLabels(labels);
  const torch::Tensor h = hidden.reshape({-1, hidden.size(-1)});
  const torch::Tensor count = (shifted != kIgnoreIndex).sum().to(torch::kFloat);
  torch::Tensor total = torch::zeros({}, torch::kFloat);
  torch::Tensor grad = torch::empty_like(h);
  for (int64_t start = 0; start < h.size(0); start += segment) {
    const int64_t len = std::min(segment, h.size(0) - start);
    const torch::Tensor rows = shifted.narrow(0, start, len);
    torch::Tensor logits =
        torch::linear(h.narrow(0, start, len), head).to(torch::kFloat);
    total += F::cross_entropy(logits, rows,
                              F::CrossEntropyFuncOptions()
                                  .ignore_index(kIgnoreIndex)
                                  .reduction(torch::kSum));
    torch::Tensor probs = torch::softmax(logits, -1);
    const torch::Tensor valid = rows != kIgnoreIndex;
    probs.scatter_add_(1, rows.clamp_min(0).unsqueeze(1),
                       valid.to(torch::kFloat).neg().unsqueeze(1));
    probs.mul_(valid.unsqueeze(1).to(torch::kFloat) *
               (torch::ones({}, torch::kFloat) / count));
    grad.narrow(0, start, len).copy_(probs.to(hidden.scalar_type()).mm(head));
  }
  return {total / count, grad.view(hidden.sizes())};
}

TEST(CausalLmLoss, SegmentedIsBitIdenticalToOpByOpAten) {
  // The CPU path of lemo::cross_entropy_chunk must not move a bit.
  for (torch::ScalarType dtype : {torch::kFloat, torch::kBFloat16}) {
    torch::manual_seed(12);
    const torch::Tensor hidden = torch::randn({2, 21, 16}).to(dtype);
    const torch::Tensor head = (torch::randn({53, 16}) * 0.5).to(dtype);
    torch::Tensor labels = torch::randint(53, {2, 21}, torch::kLong);
    labels.index_put_({torch::rand({2, 21}) < 0.2}, kIgnoreIndex);
    // Qualified: inside a TEST body, plain Run names testing::Test::Run.
    const Result seg = engine::Run(hidden, head, labels, 8);
    const Result ref = OpByOpSegmented(hidden, head, labels, 8);
    EXPECT_TRUE(torch::equal(seg.loss, ref.loss)) << dtype;
    EXPECT_TRUE(torch::equal(seg.grad, ref.grad)) << dtype;
  }
}

TEST(CausalLmLoss, MatchesHandWrittenShiftedMean) {
  torch::manual_seed(5);
  torch::Tensor hidden = torch::randn({1, 4, 6});
  torch::Tensor head = torch::randn({9, 6});
  torch::Tensor labels = torch::tensor({{3, 8, -100, 1}}, torch::kLong);
  torch::Tensor logp = torch::log_softmax(torch::linear(hidden, head), -1)[0];
  // Position t predicts labels[t + 1]; labels[2] is ignored, the last position
  // has no target.
  const double expected =
      -(logp[0][8].item<double>() + logp[2][1].item<double>()) / 2;
  for (int64_t segment : {0, 1, 3}) {
    EXPECT_NEAR(CausalLmLoss(hidden, head, labels, segment).item<double>(),
                expected, 1e-5)
        << segment;
  }
}

TEST(CausalLmLoss, AllIgnoredIsNanLikeHf) {
  torch::Tensor hidden = torch::randn({1, 3, 4}).requires_grad_(true);
  torch::Tensor head = torch::randn({5, 4});
  torch::Tensor labels = torch::full({1, 3}, kIgnoreIndex, torch::kLong);
  EXPECT_TRUE(std::isnan(CausalLmLoss(hidden, head, labels, 0).item<double>()));
  EXPECT_TRUE(std::isnan(CausalLmLoss(hidden, head, labels, 2).item<double>()));
}

TEST(ShiftLabels, PadsWithIgnoreIndex) {
  torch::Tensor shifted =
      ShiftLabels(torch::tensor({{1, 2, 3}, {4, 5, 6}}, torch::kLong));
  EXPECT_TRUE(torch::equal(
      shifted, torch::tensor({2, 3, -100, 5, 6, -100}, torch::kLong)));
}

}  // namespace
}  // namespace lemo::engine
