// Tests of the token tiles (ModelOptions::tile_tokens): the tiled RMSNorm is
// bit for bit the untiled one, forward and backward; the tiled LoRA node
// equals the untiled one to rounding (a GEMM's rows depend on how many rows it
// runs with, and adapter gradients are summed tile by tile); a model with tiles
// trains as one without. Tiles of 5 and 7 leave ragged tails on 24 and 32
// tokens. Attention head groups (ModelOptions::attention_head_groups) equal
// whole attention to rounding, dense and LeMo, with and without
// checkpointing, through the runner train/ installs. To add a case: run the op
// or model both ways and compare.
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/loss_and_grads.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/model/lean_ops.h"
#include "worker/engine/model/lora_linear.h"
#include "worker/engine/train/recompute.h"

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

TEST(AttentionHeadGroups, TrainAsWholeAttentionThroughTheRunner) {
  // The tiny model: 4 heads over 2 kv heads (GQA), so 2 groups of 2 + 1.
  const ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 53);
  for (const torch::ScalarType dtype : {torch::kFloat32, torch::kBFloat16}) {
    for (const LemoMode mode : {LemoMode::kDense, LemoMode::kOracle}) {
      for (const bool checkpointing : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << c10::toString(dtype) << " mode "
                     << static_cast<int>(mode) << " checkpointing "
                     << checkpointing);
        TrainingModelOptions off;
        off.base_dtype = dtype;
        off.gradient_checkpointing = checkpointing;
        off.lemo.mode = mode;
        off.lemo.block_tokens = 4;
        TrainingModelOptions on = off;
        on.attention_head_groups = 2;
        auto a = testing::MakeRandomLoraModel(config, off, w);
        auto b = testing::MakeRandomLoraModel(config, on, w);
        ASSERT_NE(a, nullptr);
        ASSERT_NE(b, nullptr);
        // Count the groups that went through the runner (a checkpoint, as
        // TrainingModel installs).
        auto groups_run = std::make_shared<int>(0);
        b->model().SetSubsegmentRunner(
            [groups_run](SegmentFn segment, const torch::Tensor& input,
                         const std::vector<torch::Tensor>& params) {
              ++*groups_run;
              return Checkpoint(std::move(segment), input, params);
            });
        torch::manual_seed(54);
        const torch::Tensor ids = torch::randint(0, config.vocab_size, {2, 32});
        // bf16: each group's o_proj output is rounded to bf16 before the
        // groups are summed, one rounding more than the whole projection.
        testing::ExpectClose(testing::RunLossAndGrads(*b, ids),
                             testing::RunLossAndGrads(*a, ids),
                             dtype == torch::kFloat32 ? 1e-5 : 3e-2);
        // 2 layers x 2 groups, once: in the forward without checkpointing,
        // in the re-run with it (the no-grad forward runs attention whole).
        EXPECT_EQ(*groups_run, 4);
      }
    }
  }
}

TEST(AttentionHeadGroups, RefusesWhatCannotSplit) {
  const ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 55);
  const auto create = [&](const TrainingModelOptions& o) {
    return TrainingModel::Create(config, o, testing::MapLoader(w)).status();
  };
  TrainingModelOptions uneven;
  uneven.attention_head_groups = 4;  // 4 heads, but 2 kv heads
  EXPECT_THAT(create(uneven),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("divide the 4 attention heads and 2")));
  TrainingModelOptions dropout;
  dropout.attention_head_groups = 2;
  dropout.lora.dropout = 0.1;
  EXPECT_THAT(create(dropout), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("needs LoRA dropout 0")));
  TrainingModelOptions keep;
  keep.attention_head_groups = 2;
  keep.gradient_checkpointing = true;
  keep.checkpoint_keep_attention = true;
  EXPECT_THAT(create(keep), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("does not combine with "
                                               "checkpoint_keep_attention")));
}

}  // namespace
}  // namespace lemo::engine
