// The loss and every LoRA gradient of one training forward/backward, for tests
// that show a switch leaves them bit for bit unchanged (offload, tiling).
#ifndef LEMO_TESTS_WORKER_ENGINE_LOSS_AND_GRADS_H_
#define LEMO_TESTS_WORKER_ENGINE_LOSS_AND_GRADS_H_

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "worker/engine/train/training_model.h"

namespace lemo::engine::testing {

struct LossAndGrads {
  torch::Tensor loss;
  // PEFT name and gradient of each adapter tensor.
  std::vector<std::pair<std::string, torch::Tensor>> grads;
};

// Runs model.Loss(ids, ids).backward() and collects the results (the
// parameters' .grad are reset first, so repeated calls do not accumulate).
inline LossAndGrads RunLossAndGrads(TrainingModel& model,
                                    const torch::Tensor& ids) {
  for (auto& [name, p] : model.LoraParameters()) {
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
  }
  LossAndGrads out;
  out.loss = model.Loss(ids, ids);
  out.loss.backward();
  out.loss = out.loss.detach();
  for (auto& [name, p] : model.LoraParameters()) {
    out.grads.emplace_back(name, p.grad().clone());
  }
  return out;
}

// Bit-identical loss and gradients.
inline void ExpectBitIdentical(const LossAndGrads& got,
                               const LossAndGrads& want) {
  EXPECT_TRUE(torch::equal(got.loss, want.loss))
      << "loss " << got.loss.item<double>() << " vs "
      << want.loss.item<double>();
  ASSERT_EQ(got.grads.size(), want.grads.size());
  for (size_t i = 0; i < want.grads.size(); ++i) {
    EXPECT_TRUE(torch::equal(got.grads[i].second, want.grads[i].second))
        << want.grads[i].first << ": max diff "
        << (got.grads[i].second - want.grads[i].second)
               .abs()
               .max()
               .item<double>();
  }
}

// Loss and gradients within `rel` of the largest magnitude of each tensor.
inline void ExpectClose(const LossAndGrads& got, const LossAndGrads& want,
                        double rel) {
  const auto check = [&](const std::string& what, const torch::Tensor& g,
                         const torch::Tensor& w) {
    const double scale = w.abs().max().item<double>();
    const double diff = (g - w).abs().max().item<double>();
    EXPECT_LE(diff, rel * std::max(scale, 1e-12))
        << what << ": max diff " << diff << ", scale " << scale;
  };
  check("loss", got.loss.to(torch::kFloat), want.loss.to(torch::kFloat));
  ASSERT_EQ(got.grads.size(), want.grads.size());
  for (size_t i = 0; i < want.grads.size(); ++i) {
    check(want.grads[i].first, got.grads[i].second, want.grads[i].second);
  }
}

}  // namespace lemo::engine::testing

#endif  // LEMO_TESTS_WORKER_ENGINE_LOSS_AND_GRADS_H_
