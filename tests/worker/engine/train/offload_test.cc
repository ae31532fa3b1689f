// Tests of offloaded gradient checkpoints (worker/engine/train/offload.h): the
// plans each policy makes, and that offloading leaves the loss and every LoRA
// gradient bit for bit as without it, releases the host memory after
// backward, and fails clearly when the host cannot hold the plan. On the CPU
// the "host copy" is a plain copy into a fresh tensor, so these tests run the
// same save/restore/prefetch paths as the GPU. To add a case: build two tiny
// models (tiny_model.h) that differ only in TrainingModelOptions::offload and
// compare RunLossAndGrads (loss_and_grads.h).
#include "worker/engine/train/offload.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "kernels/allocation_tracker.h"
#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/loss_and_grads.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/runtime/torch_status.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(PlanOffload, NothingWhenEverythingFitsOrNoBudget) {
  const std::vector<double> kept = {1, 1, 0.4, 0.4};
  for (int64_t budget : {int64_t{-1}, int64_t{400}, int64_t{1000}}) {
    const OffloadPlan plan =
        PlanOffload(OffloadPolicy::kSparsity, 10, 10, kept, budget);
    EXPECT_THAT(plan.host_tokens, ElementsAre(0, 0, 0, 0)) << budget;
    EXPECT_EQ(plan.device_bytes, 400);
    EXPECT_EQ(plan.host_bytes, 0);
  }
  EXPECT_THAT(PlanOffload(OffloadPolicy::kNone, 10, 10, kept, 0).host_tokens,
              ElementsAre(0, 0, 0, 0));
}

TEST(PlanOffload, SparsityOffloadsTheDensestLayersFirst) {
  // 4 layers of 10 tokens x 10 bytes; 150 bytes may stay: 250 go to the host,
  // the two dense layers whole and half of the next densest (layer 3, 0.5).
  const OffloadPlan plan =
      PlanOffload(OffloadPolicy::kSparsity, 10, 10, {0.4, 1, 0.5, 1}, 150);
  EXPECT_THAT(plan.host_tokens, ElementsAre(0, 10, 5, 10));
  EXPECT_EQ(plan.host_bytes, 250);
  EXPECT_EQ(plan.device_bytes, 150);
  EXPECT_EQ(plan.offloaded_layers(), 3);
}

TEST(PlanOffload, UniformOffloadsTheSameShareOfEveryLayer) {
  // 250 bytes over 4 layers: 63 each, rounded up to 7 tokens of 10 bytes.
  const OffloadPlan plan =
      PlanOffload(OffloadPolicy::kUniform, 10, 10, {0.4, 1, 0.5, 1}, 150);
  EXPECT_THAT(plan.host_tokens, ElementsAre(7, 7, 7, 7));
  EXPECT_LE(plan.device_bytes, 150);
  // A zero budget puts everything on the host.
  EXPECT_THAT(
      PlanOffload(OffloadPolicy::kUniform, 10, 10, {1, 1}, 0).host_tokens,
      ElementsAre(10, 10));
}

TEST(ParseOffloadPolicy, NamesAndErrors) {
  EXPECT_EQ(*ParseOffloadPolicy("uniform"), OffloadPolicy::kUniform);
  EXPECT_EQ(*ParseOffloadPolicy("auto"), OffloadPolicy::kSparsity);
  EXPECT_THAT(ParseOffloadPolicy("host").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("none, uniform, sparsity or auto")));
}

struct OffloadCase {
  OffloadPolicy policy;
  // Device budget in layer inputs (the tiny model's [2, 32, D] input).
  double budget_layers;
  torch::ScalarType dtype;
  bool keep_attention;
  LemoMode mode;
};

class OffloadEquivalence : public ::testing::TestWithParam<OffloadCase> {};

TEST_P(OffloadEquivalence, LossAndLoraGradsAreBitIdenticalAndHostIsFreed) {
  const OffloadCase& c = GetParam();
  const ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 31);
  TrainingModelOptions base;
  base.base_dtype = c.dtype;
  base.gradient_checkpointing = true;
  base.checkpoint_keep_attention = c.keep_attention;
  base.lemo.mode = c.mode;
  base.lemo.block_tokens = 4;
  TrainingModelOptions off = base;
  TrainingModelOptions on = base;
  on.offload.policy = c.policy;
  const int64_t layer_bytes = 2 * 32 * config.hidden_size *
                              static_cast<int64_t>(c10::elementSize(c.dtype));
  on.offload.device_budget_bytes =
      static_cast<int64_t>(c.budget_layers * static_cast<double>(layer_bytes));
  auto a = testing::MakeRandomLoraModel(config, off, w);
  auto b = testing::MakeRandomLoraModel(config, on, w);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  torch::manual_seed(32);
  const torch::Tensor ids = torch::randint(0, config.vocab_size, {2, 32});
  // Twice: the second forward plans with the first one's measured kept
  // fractions.
  for (int step = 0; step < 2; ++step) {
    SCOPED_TRACE(step);
    const testing::LossAndGrads want = testing::RunLossAndGrads(*a, ids);
    const testing::LossAndGrads got = testing::RunLossAndGrads(*b, ids);
    testing::ExpectBitIdentical(got, want);
    ASSERT_NE(b->offload_plan(), nullptr);
    EXPECT_GT(b->offload_plan()->offloaded_layers(), 0);
    EXPECT_GT(b->offload_plan()->host_bytes, 0);
    EXPECT_EQ(b->offloader()->live_host_bytes(), 0)
        << "offloaded inputs still held after backward";
    EXPECT_GE(b->offloader()->stream().bytes_to_device(),
              b->offload_plan()->host_bytes * (step + 1));
  }
}

INSTANTIATE_TEST_SUITE_P(
    PoliciesDtypesModes, OffloadEquivalence,
    ::testing::Values(
        // Everything to the host, fp32 and bf16.
        OffloadCase{OffloadPolicy::kUniform, 0, torch::kFloat32, false,
                    LemoMode::kDense},
        OffloadCase{OffloadPolicy::kUniform, 0, torch::kBFloat16, false,
                    LemoMode::kDense},
        // Partial layers (a token split), with selective checkpointing.
        OffloadCase{OffloadPolicy::kUniform, 0.7, torch::kFloat32, true,
                    LemoMode::kDense},
        OffloadCase{OffloadPolicy::kSparsity, 0.5, torch::kBFloat16, true,
                    LemoMode::kOracle},
        OffloadCase{OffloadPolicy::kSparsity, 1.25, torch::kFloat32, false,
                    LemoMode::kOracle}));

TEST(Offload, OrdersLayersByTheMeasuredKeptFraction) {
  const ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 33);
  TrainingModelOptions options;
  options.gradient_checkpointing = true;
  options.lemo.mode = LemoMode::kOracle;
  options.lemo.block_tokens = 4;
  options.lemo.keep_ratios = {1.0, 0.25};
  options.offload.policy = OffloadPolicy::kSparsity;
  // Room for one layer input: the dense layer 0 goes to the host.
  options.offload.device_budget_bytes = 2 * 32 * config.hidden_size * 4;
  auto model = testing::MakeRandomLoraModel(config, options, w);
  ASSERT_NE(model, nullptr);
  torch::manual_seed(34);
  const torch::Tensor ids = torch::randint(0, config.vocab_size, {2, 32});
  testing::RunLossAndGrads(*model, ids);
  EXPECT_THAT(model->offload_plan()->host_tokens, ElementsAre(32, 0));
}

TEST(Offload, MeasuresEachLayersBackwardWorkingSet) {
  // What the automatic budget reserves from the second step on: the largest
  // layer's re-run + backward, which holds at least its restored input and,
  // for the dense layer, more than the sparse one's.
  const ModelConfig config = testing::TinyConfig();
  TrainingModelOptions options;
  options.gradient_checkpointing = true;
  options.lemo.mode = LemoMode::kOracle;
  options.lemo.block_tokens = 4;
  options.lemo.keep_ratios = {1.0, 0.25};
  options.offload.policy = OffloadPolicy::kUniform;
  options.offload.device_budget_bytes = 0;
  auto model = testing::MakeRandomLoraModel(config, options,
                                            testing::RandomWeights(config, 37));
  ASSERT_NE(model, nullptr);
  torch::manual_seed(38);
  const torch::Tensor ids = torch::randint(0, config.vocab_size, {2, 32});
  testing::RunLossAndGrads(*model, ids);
  const int64_t input_bytes = 2 * 32 * config.hidden_size * 4;
  const std::vector<LemoLayerStats>& stats = model->lemo_stats();
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_GE(stats[0].backward_peak_bytes, input_bytes);
  EXPECT_GE(stats[1].backward_peak_bytes, input_bytes);
  EXPECT_GT(stats[0].backward_peak_bytes, stats[1].backward_peak_bytes);
  // Checkpointing without offload measures nothing (no plan reads it, and
  // the tracker would stand in for torch's profiler memory hook), unless a
  // measuring run asks; without checkpointing there is no per-layer backward.
  options.offload.policy = OffloadPolicy::kNone;
  auto unplanned = testing::MakeRandomLoraModel(
      config, options, testing::RandomWeights(config, 37));
  testing::RunLossAndGrads(*unplanned, ids);
  EXPECT_EQ(unplanned->lemo_stats()[0].backward_peak_bytes, -1);
  options.lemo.measure_saved_bytes = true;
  auto measuring = testing::MakeRandomLoraModel(
      config, options, testing::RandomWeights(config, 37));
  testing::RunLossAndGrads(*measuring, ids);
  EXPECT_GE(measuring->lemo_stats()[0].backward_peak_bytes, input_bytes);
  options.lemo.measure_saved_bytes = false;
  options.gradient_checkpointing = false;
  auto plain = testing::MakeRandomLoraModel(config, options,
                                            testing::RandomWeights(config, 37));
  testing::RunLossAndGrads(*plain, ids);
  EXPECT_EQ(plain->lemo_stats()[0].backward_peak_bytes, -1);
}

TEST(Offload, OffloadedInputsHoldNoSecondCopyAfterTheForward) {
  // On the CPU an offloaded input's "host copy" replaces it one for one, so
  // what the forward leaves allocated (tracked) is the same with and without
  // offload, plus the input prefetched for backward; an input kept alive
  // beside its copy adds a layer input per layer (the checkpoint once did:
  // on the GPU, offload then freed nothing).
  const ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 39);
  torch::manual_seed(40);
  const torch::Tensor ids = torch::randint(0, config.vocab_size, {2, 32});
  const auto live_after_forward = [&](OffloadPolicy policy) {
    TrainingModelOptions options;
    options.gradient_checkpointing = true;
    options.lemo.mode = LemoMode::kOracle;
    options.lemo.block_tokens = 4;
    options.offload.policy = policy;
    options.offload.device_budget_bytes = 0;
    auto model = testing::MakeRandomLoraModel(config, options, w);
    EXPECT_NE(model, nullptr);
    torch::set_num_threads(1);
    auto tracker = std::make_shared<kernels::AllocationTracker>();
    torch::Tensor loss;
    {
      kernels::AllocationTracker::Scope scope(tracker);
      loss = model->Loss(ids, ids);
    }
    const int64_t live = tracker->live_bytes();
    loss.backward();
    return live;
  };
  const int64_t none = live_after_forward(OffloadPolicy::kNone);
  const int64_t offloaded = live_after_forward(OffloadPolicy::kUniform);
  const int64_t input_bytes = 2 * 32 * config.hidden_size * 4;
  EXPECT_GT(none, config.num_hidden_layers * input_bytes);
  EXPECT_LE(offloaded, none + input_bytes + input_bytes / 2)
      << "offloaded inputs still hold memory beside their copies";
}

TEST(Offload, NeedsGradientCheckpointing) {
  const ModelConfig config = testing::TinyConfig();
  TrainingModelOptions options;
  options.offload.policy = OffloadPolicy::kSparsity;
  EXPECT_THAT(TrainingModel::Create(
                  config, options,
                  testing::MapLoader(testing::RandomWeights(config, 1)))
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs gradient_checkpointing")));
}

TEST(Offload, PlanBeyondTheHostsMemoryFailsBeforeTheStep) {
  const ModelConfig config = testing::TinyConfig();
  TrainingModelOptions options;
  options.gradient_checkpointing = true;
  options.offload.policy = OffloadPolicy::kUniform;
  options.offload.device_budget_bytes = 0;
  // A limit no host meets: even the tiny model's inputs are "too large".
  options.offload.max_host_fraction = 1e-15;
  auto model = testing::MakeRandomLoraModel(config, options,
                                            testing::RandomWeights(config, 35));
  ASSERT_NE(model, nullptr);
  const torch::Tensor ids = torch::randint(0, config.vocab_size, {1, 16});
  const absl::Status s =
      CallTorch("loss", [&] { model->Loss(ids, ids).backward(); });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted,
                          HasSubstr("of pinned host memory")));
  EXPECT_EQ(model->offloader()->live_host_bytes(), 0);
}

TEST(Offload, EvaluationPlansNothing) {
  const ModelConfig config = testing::TinyConfig();
  TrainingModelOptions options;
  options.gradient_checkpointing = true;
  options.offload.policy = OffloadPolicy::kUniform;
  options.offload.device_budget_bytes = 0;
  options.offload.max_host_fraction = 1e-15;  // would fail if it planned
  auto model = testing::MakeRandomLoraModel(config, options,
                                            testing::RandomWeights(config, 36));
  ASSERT_NE(model, nullptr);
  const torch::Tensor ids = torch::randint(0, config.vocab_size, {1, 16});
  torch::NoGradGuard no_grad;
  EXPECT_THAT(CallTorch("loss", [&] { return model->Loss(ids, ids); }).status(),
              IsOk());
}

}  // namespace
}  // namespace lemo::engine
