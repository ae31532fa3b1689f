// GPU test of the LeMo sparse layer: one oracle-sparse decoder layer on CUDA
// (the CUDA block scoring, gather and fused scatter kernels) equals the same
// layer on the CPU (the reference ops), same weights and inputs, fp32: kept
// blocks, output, and the gradients of the input and of every adapter.
// To add a case: change the config or N below and
// compare the two devices the same way. Fails without a CUDA device (label
// gpu).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/testing/require_cuda.h"
#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/lemo/lemo_attention.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;

struct LayerRun {
  torch::Tensor kept, out, grad_x;
  std::vector<torch::Tensor> grads;
};

LayerRun RunLayer(const ModelConfig& config,
                  const std::map<std::string, torch::Tensor>& w,
                  torch::Device device, const torch::Tensor& x0,
                  const torch::Tensor& upstream) {
  TrainingModelOptions options;
  options.device = device;
  options.base_dtype = torch::kFloat32;
  options.lemo.mode = LemoMode::kOracle;
  auto model = TrainingModel::Create(config, options, testing::MapLoader(w));
  EXPECT_THAT(model.status(), IsOk());
  testing::RandomizeLora(**model, 5);
  const DecoderLayer& layer = (*model)->model().layers()[0];
  const int64_t n = x0.size(1);
  auto [cos, sin] = (*model)->model().rope().CosSin(
      torch::arange(n, torch::TensorOptions().device(device)), torch::kFloat32);
  // A fresh leaf per device: on the CPU, to() would return x0 itself, and
  // marking it would make the CUDA copy a non-leaf without .grad.
  torch::Tensor x = x0.to(device).clone().requires_grad_(true);
  LayerRun run;
  run.kept = OracleKeptBlocks(layer, layer.InputNorm(x.detach()),
                              LayerSelectOptions(options.lemo, 0.5), 64)
                 .cpu();
  LemoLayerStats stats;
  const torch::Tensor out = LemoDecoderLayerForward(
      layer, x, cos, sin, {&options.lemo, 0.5, nullptr, &stats, false});
  EXPECT_LT(stats.kept_tokens, stats.total_tokens);
  (out * upstream.to(device)).sum().backward();
  run.out = out.detach().cpu();
  run.grad_x = x.grad().cpu();
  for (const torch::Tensor& p : layer.TrainableParameters()) {
    run.grads.push_back(p.grad().cpu());
  }
  return run;
}

TEST(LemoAttentionCuda, OracleSparseLayerEqualsCpu) {
  LEMO_REQUIRE_CUDA();
  ModelConfig config = testing::TinyConfig();
  config.num_hidden_layers = 1;
  config.hidden_size = 128;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.head_dim = 32;
  config.max_position_embeddings = 1024;
  const auto w = testing::RandomWeights(config, 6);
  const int64_t n = 600;  // 10 blocks, the last one 24 tokens
  torch::manual_seed(8);
  const torch::Tensor x0 = torch::randn({2, n, config.hidden_size});
  const torch::Tensor upstream = torch::randn({2, n, config.hidden_size});
  const LayerRun cpu = RunLayer(config, w, torch::kCPU, x0, upstream);
  const LayerRun gpu = RunLayer(config, w, torch::kCUDA, x0, upstream);
  // fp32 block scores differ only in summation order; the selection they drive
  // must be the same, or nothing else is comparable.
  ASSERT_TRUE(torch::equal(cpu.kept, gpu.kept))
      << "cpu " << cpu.kept << "\ngpu " << gpu.kept;
  auto expect_near = [](const torch::Tensor& a, const torch::Tensor& b,
                        const std::string& what) {
    // CUDA's SDPA kernels and matmuls sum in other orders than the CPU's:
    // fp32 rounding, about 1e-6 of each tensor's scale.
    const double scale = std::max(1.0, b.abs().max().item<double>());
    const double diff = (a - b).abs().max().item<double>();
    EXPECT_LE(diff, 1e-4 * scale) << what << ": max diff " << diff;
  };
  expect_near(gpu.out, cpu.out, "output");
  expect_near(gpu.grad_x, cpu.grad_x, "grad x");
  ASSERT_EQ(gpu.grads.size(), cpu.grads.size());
  ASSERT_FALSE(cpu.grads.empty());
  for (size_t i = 0; i < cpu.grads.size(); ++i) {
    expect_near(gpu.grads[i], cpu.grads[i],
                "adapter grad " + std::to_string(i));
  }
}

}  // namespace
}  // namespace lemo::engine
