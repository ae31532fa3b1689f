// GPU tests of worker/engine/model/llama_model.h (label gpu; they fail without
// a CUDA device): bf16 on the device tracks the fp32 CPU model, and
// checkpointing replays CUDA dropout masks. To add a case: build two tiny
// models (one on CUDA) whose outputs must agree, and compare losses and LoRA
// gradients with RunLossAndGrads.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>

#include "tests/testing/require_cuda.h"
#include "tests/worker/engine/loss_and_grads.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine {
namespace {

using ::lemo::engine::testing::LossAndGrads;
using ::lemo::engine::testing::MakeRandomLoraModel;
using ::lemo::engine::testing::RandomWeights;
using ::lemo::engine::testing::RunLossAndGrads;
using ::lemo::engine::testing::TinyConfig;

torch::Tensor Ids(const ModelConfig& c, int64_t batch, int64_t len) {
  torch::manual_seed(21);
  return torch::randint(c.vocab_size, {batch, len}, torch::kLong);
}

// bf16 on the device tracks the fp32 CPU model, and checkpointing replays CUDA
// dropout masks (the CUDA generator is restored too).
TEST(LlamaModelCuda, Bf16TracksFp32AndCheckpointingReplaysDropout) {
  LEMO_REQUIRE_CUDA();
  ModelConfig config = TinyConfig();
  auto w = RandomWeights(config, 9);
  TrainingModelOptions cpu;
  TrainingModelOptions gpu;
  gpu.device = torch::Device(torch::kCUDA, 0);
  gpu.base_dtype = torch::kBFloat16;
  auto a = MakeRandomLoraModel(config, cpu, w);
  auto b = MakeRandomLoraModel(config, gpu, w);
  ASSERT_TRUE(a && b);
  torch::Tensor ids = Ids(config, 2, 32);
  const double la = RunLossAndGrads(*a, ids).loss.item<double>();
  const double lb = RunLossAndGrads(*b, ids).loss.item<double>();
  // bf16 activations: about 3 significant digits.
  EXPECT_NEAR(lb, la, 2e-2 * la);

  TrainingModelOptions drop = gpu;
  drop.lora.dropout = 0.3;
  TrainingModelOptions drop_ckpt = drop;
  drop_ckpt.gradient_checkpointing = true;
  auto c = MakeRandomLoraModel(config, drop, w);
  auto d = MakeRandomLoraModel(config, drop_ckpt, w);
  ASSERT_TRUE(c && d);
  torch::manual_seed(3);
  LossAndGrads rc = RunLossAndGrads(*c, ids);
  torch::manual_seed(3);
  LossAndGrads rd = RunLossAndGrads(*d, ids);
  EXPECT_EQ(rc.loss.item<double>(), rd.loss.item<double>());
  ASSERT_EQ(rc.grads.size(), rd.grads.size());
  for (size_t i = 0; i < rc.grads.size(); ++i) {
    // Same masks; flash attention's backward may reduce in a different order
    // per run.
    EXPECT_TRUE(
        torch::allclose(rc.grads[i].second, rd.grads[i].second, 1e-2, 1e-4))
        << rc.grads[i].first;
  }
}

}  // namespace
}  // namespace lemo::engine
