// Tests of lemo::cross_entropy_chunk and cross_entropy_chunk_backward_ against
// the naive -log_softmax[label] sum, values and gradients. To add a case:
// append to kCases (ignored rows and odd vocab sizes welcome); see
// op_test_harness.h.
#include "kernels/cross_entropy_chunk/cross_entropy_chunk.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "tests/kernels/op_test_harness.h"

namespace lemo::kernels {
namespace {

using testing::ExpectClose;

// Sum over counted rows of -log_softmax(logits)[label], in fp32.
torch::Tensor NaiveLoss(const torch::Tensor& logits,
                        const torch::Tensor& labels) {
  const torch::Tensor logp = torch::log_softmax(logits.to(torch::kFloat), -1);
  const torch::Tensor valid = labels != -100;
  const torch::Tensor picked =
      logp.gather(1, labels.clamp_min(0).unsqueeze(1)).squeeze(1);
  return -(picked * valid.to(torch::kFloat)).sum();
}

struct Case {
  int64_t rows, vocab;
  int64_t ignored;  // rows labelled -100
};

const std::vector<Case> kCases = {
    {1, 7, 0}, {16, 100, 3}, {33, 1000, 33}, {64, 32000, 10}, {5, 4099, 1}};

torch::Tensor Labels(const Case& c) {
  torch::Tensor labels = torch::randint(0, c.vocab, {c.rows}, torch::kLong);
  if (c.ignored > 0) {
    labels.index_put_({torch::randperm(c.rows).narrow(0, 0, c.ignored)}, -100);
  }
  return labels;
}

std::string Label(const Case& c, torch::ScalarType dtype) {
  return "rows=" + std::to_string(c.rows) + " V=" + std::to_string(c.vocab) +
         " ignored=" + std::to_string(c.ignored) + " " + c10::toString(dtype);
}

TEST(CrossEntropyChunk, EqualsNaiveValuesAndGradients) {
  for (const Case& c : kCases) {
    for (torch::ScalarType dtype : testing::kDtypes) {
      torch::manual_seed(c.rows * 3 + c.vocab);
      const torch::Tensor logits =
          (3 * torch::randn({c.rows, c.vocab})).to(dtype);
      const torch::Tensor labels = Labels(c);
      const torch::Tensor got = CrossEntropyChunk(logits, labels);
      EXPECT_EQ(got.scalar_type(), torch::kFloat);
      EXPECT_EQ(got.dim(), 0);
      // Both compute in fp32 from the same logits.
      ExpectClose(got, NaiveLoss(logits, labels), torch::kFloat32,
                  Label(c, dtype));
      // Gradients live in the logits' dtype: compare with its tolerance.
      torch::Tensor a = logits.clone().requires_grad_(true);
      torch::Tensor e = logits.clone().requires_grad_(true);
      (CrossEntropyChunk(a, labels) * 0.5).backward();
      (NaiveLoss(e, labels) * 0.5).backward();
      ExpectClose(a.grad(), e.grad(), dtype, Label(c, dtype) + " grad");
    }
  }
}

TEST(CrossEntropyChunk, BackwardWritesScaledGradientInPlace) {
  torch::manual_seed(2);
  const Case c{40, 513, 5};
  const torch::Tensor logits = torch::randn({c.rows, c.vocab});
  const torch::Tensor labels = Labels(c);
  const torch::Tensor leaf = logits.clone().requires_grad_(true);
  NaiveLoss(leaf, labels).backward();
  torch::Tensor buf = logits.clone();
  const torch::Tensor scale = torch::tensor(0.25f);
  torch::Tensor& out = CrossEntropyChunkBackward_(buf, labels, scale);
  EXPECT_EQ(out.data_ptr(), buf.data_ptr());
  ExpectClose(buf, leaf.grad() * 0.25, torch::kFloat32, "in place");
  // Ignored rows get exactly zero.
  const torch::Tensor ignored = (labels == -100).nonzero().squeeze(1);
  EXPECT_TRUE(torch::equal(buf.index_select(0, ignored),
                           torch::zeros({ignored.size(0), c.vocab})));
}

TEST(CrossEntropyChunk, RejectsBadInputs) {
  const torch::Tensor logits = torch::randn({4, 10});
  EXPECT_THROW(CrossEntropyChunk(logits, torch::zeros({3}, torch::kLong)),
               c10::Error);
  EXPECT_THROW(CrossEntropyChunk(logits, torch::zeros({4})), c10::Error);
  EXPECT_THROW(CrossEntropyChunk(torch::randn({4}), torch::zeros({4})),
               c10::Error);
}

}  // namespace
}  // namespace lemo::kernels
