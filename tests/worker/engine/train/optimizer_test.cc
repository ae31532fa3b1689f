// Tests for worker/engine/train/optimizer.h. To add a case: build parameters
// with known gradients, run Step(), and check the schedule, the clipping or the
// exported state.
#include "worker/engine/train/optimizer.h"

#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "tests/testing/status_matchers.h"
#include "worker/engine/model/safetensors.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

using Named = std::vector<std::pair<std::string, torch::Tensor>>;

Named MakeParams() {
  torch::manual_seed(1);
  return {{"a.lora_A.weight", torch::randn({4, 6}).requires_grad_(true)},
          {"a.lora_B.weight", torch::randn({6, 4}).requires_grad_(true)},
          {"b.lora_A.weight", torch::randn({4, 5}).requires_grad_(true)}};
}

// A deterministic non-quadratic loss, so the moments change from step to step.
void Backward(const Named& params, int64_t step) {
  torch::Tensor loss = torch::zeros({});
  for (size_t i = 0; i < params.size(); ++i) {
    loss = loss + (params[i].second.sin() * (step + 1 + static_cast<double>(i)))
                      .pow(2)
                      .sum();
  }
  loss.backward();
}

OptimizerOptions Options() {
  OptimizerOptions o;
  o.lr = 1e-2;
  o.weight_decay = 0.01;
  o.warmup_steps = 3;
  o.total_steps = 12;
  o.max_grad_norm = 0.5;
  return o;
}

TEST(AdapterOptimizer, ResumeFromExportedStateIsBitExact) {
  Named straight = MakeParams();
  LEMO_ASSERT_OK_AND_ASSIGN(auto opt,
                            AdapterOptimizer::Create(straight, Options()));
  for (int64_t s = 0; s < 12; ++s) {
    Backward(straight, s);
    opt->Step();
    opt->ZeroGrad();
  }

  Named first = MakeParams();
  LEMO_ASSERT_OK_AND_ASSIGN(auto opt1,
                            AdapterOptimizer::Create(first, Options()));
  for (int64_t s = 0; s < 5; ++s) {
    Backward(first, s);
    opt1->Step();
    opt1->ZeroGrad();
  }
  const Named state = opt1->ExportState();
  EXPECT_EQ(state.size(), 9u);
  // A fresh process: new parameter tensors holding the saved values, a new
  // optimizer.
  Named resumed;
  for (auto& [name, p] : first)
    resumed.emplace_back(name, p.detach().clone().requires_grad_(true));
  LEMO_ASSERT_OK_AND_ASSIGN(auto opt2,
                            AdapterOptimizer::Create(resumed, Options()));
  ASSERT_THAT(opt2->ImportState(state, opt1->step()), IsOk());
  EXPECT_EQ(opt2->step(), 5);
  EXPECT_EQ(opt2->lr(), opt1->lr());
  for (int64_t s = 5; s < 12; ++s) {
    Backward(resumed, s);
    opt2->Step();
    opt2->ZeroGrad();
  }
  for (size_t i = 0; i < straight.size(); ++i) {
    EXPECT_TRUE(torch::equal(straight[i].second, resumed[i].second))
        << straight[i].first;
  }
  const Named end_a = opt->ExportState();
  const Named end_b = opt2->ExportState();
  ASSERT_EQ(end_a.size(), end_b.size());
  for (size_t i = 0; i < end_a.size(); ++i) {
    EXPECT_EQ(end_a[i].first, end_b[i].first);
    EXPECT_TRUE(torch::equal(end_a[i].second, end_b[i].second))
        << end_a[i].first;
  }
}

// The trainer stores ExportState() with WriteSafetensors; what comes back must
// import as is.
TEST(AdapterOptimizer, StateRoundTripsThroughSafetensors) {
  Named params = MakeParams();
  LEMO_ASSERT_OK_AND_ASSIGN(auto opt,
                            AdapterOptimizer::Create(params, Options()));
  for (int64_t s = 0; s < 2; ++s) {
    Backward(params, s);
    opt->Step();
    opt->ZeroGrad();
  }
  const Named state = opt->ExportState();
  const std::string path =
      (std::filesystem::temp_directory_path() /
       ("lemo_optimizer_state_" + std::to_string(::getpid()) + ".safetensors"))
          .string();
  ASSERT_THAT(WriteSafetensors(path, state), IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(Named loaded, ReadSafetensors(path));
  std::filesystem::remove(path);
  LEMO_ASSERT_OK_AND_ASSIGN(auto fresh,
                            AdapterOptimizer::Create(params, Options()));
  ASSERT_THAT(fresh->ImportState(loaded, opt->step()), IsOk());
  const Named again = fresh->ExportState();
  ASSERT_EQ(again.size(), state.size());
  for (size_t i = 0; i < state.size(); ++i) {
    EXPECT_EQ(again[i].first, state[i].first);
    EXPECT_TRUE(torch::equal(again[i].second, state[i].second))
        << state[i].first;
  }
}

TEST(AdapterOptimizer, WarmupThenCosineToFloor) {
  Named params = MakeParams();
  OptimizerOptions o = Options();
  o.min_lr_ratio = 0.1;
  o.total_steps = 13;
  LEMO_ASSERT_OK_AND_ASSIGN(auto opt, AdapterOptimizer::Create(params, o));
  EXPECT_DOUBLE_EQ(opt->LearningRate(0), 1e-2 / 3);
  EXPECT_DOUBLE_EQ(opt->LearningRate(2), 1e-2);
  EXPECT_DOUBLE_EQ(opt->LearningRate(3), 1e-2);
  // Halfway through the 10 decay steps the cosine is at its midpoint.
  EXPECT_NEAR(opt->LearningRate(8), 1e-2 * (0.1 + 0.9 * 0.5), 1e-12);
  EXPECT_NEAR(opt->LearningRate(13), 1e-3, 1e-15);
  EXPECT_NEAR(opt->LearningRate(100), 1e-3, 1e-15);
  for (int64_t s = 1; s < 13; ++s) {
    if (s > 3) EXPECT_LT(opt->LearningRate(s), opt->LearningRate(s - 1)) << s;
  }
}

TEST(AdapterOptimizer, ClipsToMaxNormAndReturnsTheNormBefore) {
  Named params = MakeParams();
  OptimizerOptions o = Options();
  o.lr = 0;
  o.weight_decay = 0;
  LEMO_ASSERT_OK_AND_ASSIGN(auto opt, AdapterOptimizer::Create(params, o));
  for (auto& [name, p] : params) p.mutable_grad() = torch::full_like(p, 2.0);
  const double elements = 24 + 24 + 20;
  const double norm = opt->Step();
  EXPECT_NEAR(norm, 2.0 * std::sqrt(elements), 1e-4);
  double clipped = 0;
  for (auto& [name, p] : params)
    clipped += p.grad().pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(clipped), 0.5, 1e-5);
  EXPECT_EQ(opt->step(), 1);
}

TEST(AdapterOptimizer, RejectsBadParamsOptionsAndState) {
  Named params = MakeParams();
  EXPECT_THAT(
      AdapterOptimizer::Create({}, Options()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no parameters")));
  Named frozen = {{"x", torch::zeros({2})}};
  EXPECT_THAT(AdapterOptimizer::Create(frozen, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x")));
  OptimizerOptions bad = Options();
  bad.total_steps = 0;
  EXPECT_THAT(
      AdapterOptimizer::Create(params, bad),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("total_steps")));

  LEMO_ASSERT_OK_AND_ASSIGN(auto opt,
                            AdapterOptimizer::Create(params, Options()));
  EXPECT_THAT(
      opt->ImportState({{"nope.exp_avg", torch::zeros({4, 6})}}, 1),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nope.exp_avg")));
  EXPECT_THAT(
      opt->ImportState({{"a.lora_A.weight.exp_avg", torch::zeros({4, 6})}}, 1),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("together")));
  EXPECT_THAT(opt->ImportState(
                  {{"a.lora_A.weight.exp_avg", torch::zeros({6, 4})},
                   {"a.lora_A.weight.exp_avg_sq", torch::zeros({6, 4})},
                   {"a.lora_A.weight.step", torch::full({}, 1, torch::kLong)}},
                  1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shape")));
  EXPECT_EQ(opt->step(), 0);
}

}  // namespace
}  // namespace lemo::engine
