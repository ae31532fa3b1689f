// Tests of the token tiles (ModelOptions::tile_tokens): the tiled RMSNorm is
// bit for bit the untiled one, forward and backward; the tiled LoRA node
// equals the untiled one to rounding (a GEMM's rows depend on how many rows it
// runs with, and adapter gradients are summed tile by tile); a model with tiles
// trains as one without. Tiles of 5 and 7 leave ragged tails on 24 and 32
// tokens. To add a case: run the op or model both ways and compare.
#include <torch/torch.h>

#include <vector>

#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/loss_and_grads.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/model/lean_ops.h"
#include "worker/engine/model/lora_linear.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

TEST(TiledRmsNorm, BitIdenticalForwardAndBackward) {
  for (const torch::ScalarType dtype : {torch::kFloat32, torch::kBFloat16}) {
    for (const int64_t tile : {5, 7, 24}) {
      SCOPED_TRACE(::testing::Message()
                   << c10::toString(dtype) << " tile " << tile);
      torch::manual_seed(1);
      const torch::Tensor x0 = torch::randn({2, 24, 16}).to(dtype);
      const torch::Tensor w = (1 + 0.1 * torch::randn({16})).to(dtype);
      const torch::Tensor g = torch::randn({2, 24, 16}).to(dtype);
      torch::Tensor a = x0.clone().requires_grad_(true);
      torch::Tensor b = x0.clone().requires_grad_(true);
      const torch::Tensor ya = RmsNorm(a, w, 1e-5);
      const torch::Tensor yb = RmsNorm(b, w, 1e-5, tile);
      (ya * g).sum().backward();
      (yb * g).sum().backward();
      EXPECT_TRUE(torch::equal(ya, yb)) << "output";
      EXPECT_TRUE(torch::equal(a.grad(), b.grad())) << "input gradient";
    }
  }
}

TEST(TiledLoraLinear, EqualsUntiledToRounding) {
  torch::manual_seed(2);
  const torch::Tensor w = torch::randn({12, 16}) * 0.1;
  const torch::Tensor bias = torch::randn({12}) * 0.1;
  const torch::Tensor x0 = torch::randn({2, 24, 16});
  const torch::Tensor g = torch::randn({2, 24, 12});
  const auto run = [&](int64_t tile) {
    torch::Tensor x = x0.clone().requires_grad_(true);
    torch::manual_seed(3);
    torch::Tensor a = (torch::randn({4, 16}) * 0.2).requires_grad_(true);
    torch::Tensor b = (torch::randn({12, 4}) * 0.2).requires_grad_(true);
    torch::Tensor y = LoraLinearForward(x, w, bias, a, b, 2.0, tile);
    (y * g).sum().backward();
    return std::vector<torch::Tensor>{y.detach(), x.grad(), a.grad(), b.grad()};
  };
  const auto want = run(0);
  for (const int64_t tile : {5, 7, 48, 100}) {
    SCOPED_TRACE(::testing::Message() << "tile " << tile);
    const auto got = run(tile);
    for (size_t i = 0; i < want.size(); ++i) {
      const double scale = want[i].abs().max().item<double>();
      EXPECT_LE((got[i] - want[i]).abs().max().item<double>(), 1e-6 * scale)
          << "tensor " << i;
    }
  }
}

TEST(TiledModel, TrainsAsUntiledAndRejectsNegativeTiles) {
  const ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 51);
  for (const torch::ScalarType dtype : {torch::kFloat32, torch::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    TrainingModelOptions off;
    off.base_dtype = dtype;
    off.gradient_checkpointing = true;
    TrainingModelOptions on = off;
    on.tile_tokens = 7;
    on.lemo.mlp_tile_tokens = 7;
    auto a = testing::MakeRandomLoraModel(config, off, w);
    auto b = testing::MakeRandomLoraModel(config, on, w);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    torch::manual_seed(52);
    const torch::Tensor ids = torch::randint(0, config.vocab_size, {2, 32});
    // bf16: rounding-level differences in the activations become one bf16 ulp.
    testing::ExpectClose(testing::RunLossAndGrads(*b, ids),
                         testing::RunLossAndGrads(*a, ids),
                         dtype == torch::kFloat32 ? 1e-5 : 2e-2);
  }
  TrainingModelOptions bad;
  bad.tile_tokens = -1;
  EXPECT_THAT(
      TrainingModel::Create(config, bad, testing::MapLoader(w)).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("tile_tokens must be >= 0")));
}

}  // namespace
}  // namespace lemo::engine
