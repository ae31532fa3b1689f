// Tests of shifted group attention
// (worker/engine/lemo/shifted_group_attention.h) against plain masked attention
// whose mask is built element by element from the rule, and of LeMo's 2D
// sparsity switch through the model. To add a case: append a Shape to Shapes()
// in shifted_group_reference.h (or call ExpectMatchesReference with it). The
// CUDA case is in shifted_group_attention_cuda_test.cc (label gpu).
#include "worker/engine/lemo/shifted_group_attention.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/lemo/shifted_group_reference.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/lemo/lemo_attention.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

using ::lemo::engine::testing::ExpectMatchesReference;
using ::lemo::engine::testing::Shape;
using ::lemo::engine::testing::Shapes;

TEST(ShiftedGroupAttention, GroupLengthIsAnEighthRoundedUp) {
  EXPECT_EQ(ShiftedGroupLength(64), 8);
  EXPECT_EQ(ShiftedGroupLength(70), 9);
  EXPECT_EQ(ShiftedGroupLength(8 * 64 * 3), 192);
  EXPECT_EQ(ShiftedGroupLength(5), 1);
  EXPECT_EQ(ShiftedGroupLength(0), 1);
}

TEST(ShiftedGroupAttention, MatchesMaskedReferenceFp32) {
  for (const Shape& s : Shapes()) ExpectMatchesReference(s, torch::kFloat32);
}

TEST(ShiftedGroupAttention, MatchesMaskedReferenceBf16) {
  for (const Shape& s : Shapes()) ExpectMatchesReference(s, torch::kBFloat16);
}

TEST(ShiftedGroupAttention, IsNotPlainCausalAttention) {
  torch::manual_seed(3);
  const torch::Tensor q = torch::randn({1, 4, 64, 16});
  const torch::Tensor k = torch::randn({1, 2, 64, 16});
  const torch::Tensor v = torch::randn({1, 2, 64, 16});
  const torch::Tensor causal = at::scaled_dot_product_attention(
      q, k, v, std::nullopt, 0.0, true, 0.25, true);
  const torch::Tensor grouped = ShiftedGroupAttention(q, k, v, 0.25);
  // The first token of every group sees only itself, so both agree at token 0
  // and differ later.
  EXPECT_TRUE(torch::allclose(grouped.select(2, 0), causal.select(2, 0)));
  EXPECT_FALSE(torch::allclose(grouped, causal, 1e-3, 1e-3));
}

TEST(ShiftedGroupAttention, FutureTokensNeverInfluenceEarlierOutputs) {
  // Perturbing k and v at token j may change outputs at tokens >= j only; the
  // earlier outputs must be bit-identical (masked columns contribute exact
  // zeros). Covers group and shifted-group edges and the last token, whose
  // group LongLoRA's wrap-around would join to the first tokens.
  for (const torch::ScalarType dtype : {torch::kFloat32, torch::kBFloat16}) {
    for (const int64_t n : {64, 70}) {
      torch::manual_seed(n);
      const torch::Tensor q = torch::randn({2, 8, n, 16}).to(dtype);
      const torch::Tensor k = torch::randn({2, 2, n, 16}).to(dtype);
      const torch::Tensor v = torch::randn({2, 2, n, 16}).to(dtype);
      const torch::Tensor base = ShiftedGroupAttention(q, k, v, 0.25);
      for (const int64_t j : {int64_t{1}, int64_t{4}, int64_t{8}, int64_t{12},
                              n / 2, n - 4, n - 1}) {
        SCOPED_TRACE(::testing::Message()
                     << c10::toString(dtype) << " n " << n << " j " << j);
        torch::Tensor k2 = k.clone();
        torch::Tensor v2 = v.clone();
        k2.select(2, j).add_(3);
        v2.select(2, j).add_(10);
        const torch::Tensor out = ShiftedGroupAttention(q, k2, v2, 0.25);
        EXPECT_TRUE(torch::equal(out.narrow(2, 0, j), base.narrow(2, 0, j)));
        // Token j always sees itself.
        EXPECT_FALSE(torch::equal(out.select(2, j), base.select(2, j)));
      }
    }
  }
}

TEST(ShiftedGroupAttention, RejectsBadShapes) {
  const torch::Tensor one_head = torch::randn({1, 1, 16, 8});
  EXPECT_THROW(ShiftedGroupAttention(one_head, one_head, one_head, 1.0),
               c10::ValueError);
  const torch::Tensor q = torch::randn({1, 4, 16, 8});
  const torch::Tensor k3 = torch::randn({1, 3, 16, 8});
  EXPECT_THROW(ShiftedGroupAttention(q, k3, k3, 1.0), c10::ValueError);
  const torch::Tensor k_short = torch::randn({1, 2, 8, 8});
  EXPECT_THROW(ShiftedGroupAttention(q, k_short, k_short, 1.0),
               c10::ValueError);
}

// ---- The switch through the model (LemoOptions::two_d_sparsity). ----

ModelConfig S2Config() {
  ModelConfig c = testing::TinyConfig();  // 4 heads over 2 kv heads
  c.num_hidden_layers = 3;
  c.max_position_embeddings = 512;
  return c;
}

struct LossGrads {
  torch::Tensor loss;
  std::vector<torch::Tensor> grads;
};

LossGrads TrainStep(TrainingModel& model, const torch::Tensor& ids) {
  torch::Tensor loss = model.Loss(ids, ids);
  loss.backward();
  LossGrads r{loss.detach(), {}};
  for (auto& [name, p] : model.LoraParameters()) {
    r.grads.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  }
  return r;
}

TEST(TwoDSparsity, ChangesTrainingForwardsOnly) {
  const ModelConfig config = S2Config();
  const auto w = testing::RandomWeights(config, 21);
  torch::manual_seed(22);
  // Batch 2 of 4 blocks of 64 tokens.
  const torch::Tensor ids = torch::randint(config.vocab_size, {2, 256});
  for (const LemoMode mode : {LemoMode::kDense, LemoMode::kOracle}) {
    SCOPED_TRACE(LemoModeName(mode));
    TrainingModelOptions base;
    base.lemo.mode = mode;
    // Layer 1 keeps half of its blocks; layers 0 and 2 are dense.
    base.lemo.keep_ratios = {1.0, 0.5, 1.0};
    TrainingModelOptions two_d = base;
    two_d.lemo.two_d_sparsity = true;
    auto plain = testing::MakeRandomLoraModel(config, base, w);
    auto s2 = testing::MakeRandomLoraModel(config, two_d, w);

    const LossGrads a = TrainStep(*plain, ids);
    const LossGrads b = TrainStep(*s2, ids);
    ASSERT_TRUE(std::isfinite(b.loss.item<double>()));
    EXPECT_GT(std::abs(a.loss.item<double>() - b.loss.item<double>()), 1e-6);
    ASSERT_EQ(a.grads.size(), b.grads.size());
    ASSERT_FALSE(b.grads.empty());
    for (size_t i = 0; i < b.grads.size(); ++i) {
      ASSERT_TRUE(b.grads[i].defined()) << i;
      EXPECT_TRUE(torch::isfinite(b.grads[i]).all().item<bool>()) << i;
    }
    // lora_B starts random here (RandomizeLora), so every adapter gets a
    // gradient; some must differ from dense attention's.
    bool differs = false;
    for (size_t i = 0; i < b.grads.size(); ++i) {
      differs |= !torch::allclose(a.grads[i], b.grads[i], 1e-5, 1e-7);
    }
    EXPECT_TRUE(differs);
    // Sparse layers still eliminate tokens: the stats are LeMo's.
    if (mode == LemoMode::kOracle) {
      EXPECT_EQ(s2->lemo_stats()[1].kept_tokens,
                plain->lemo_stats()[1].kept_tokens);
      EXPECT_LT(s2->lemo_stats()[1].kept_tokens, 2 * 256);
    }

    // Evaluation: full causal attention, exactly as without the switch.
    plain->SetTraining(false);
    s2->SetTraining(false);
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::equal(plain->Logits(ids), s2->Logits(ids)));
  }
}

TEST(TwoDSparsity, CheckpointedGradientsEqualUncheckpointed) {
  // The recompute in backward must run shifted groups too, or the gradients
  // would be dense attention's.
  const ModelConfig config = S2Config();
  const auto w = testing::RandomWeights(config, 23);
  torch::manual_seed(24);
  const torch::Tensor ids = torch::randint(config.vocab_size, {1, 200});
  TrainingModelOptions options;
  options.lemo.two_d_sparsity = true;
  TrainingModelOptions checkpointed = options;
  checkpointed.gradient_checkpointing = true;
  auto a_model = testing::MakeRandomLoraModel(config, options, w);
  auto b_model = testing::MakeRandomLoraModel(config, checkpointed, w);
  const LossGrads a = TrainStep(*a_model, ids);
  const LossGrads b = TrainStep(*b_model, ids);
  EXPECT_TRUE(torch::allclose(a.loss, b.loss));
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a.grads[i], b.grads[i], 1e-5, 1e-7)) << i;
  }
}

TEST(TwoDSparsity, SublayerUsesShiftedGroupsOverKeptTokens) {
  // A sparse layer's attention with the switch equals the shifted group
  // attention of its compacted kept tokens, placed back at their positions.
  const ModelConfig config = S2Config();
  const auto w = testing::RandomWeights(config, 25);
  auto model = testing::MakeRandomLoraModel(config, TrainingModelOptions(), w);
  const DecoderLayer& layer = model->model().layers()[1];
  const int64_t n = 256;
  auto [cos, sin] =
      model->model().rope().CosSin(torch::arange(n), torch::kFloat32);
  torch::manual_seed(26);
  const torch::Tensor x = torch::randn({1, n, config.hidden_size});
  LemoOptions options;
  options.mode = LemoMode::kOracle;
  options.two_d_sparsity = true;
  LemoLayerStats stats;
  const torch::Tensor got = LemoAttentionSublayer(
      layer, x, cos, sin, {&options, 0.5, nullptr, &stats, true});
  const torch::Tensor kept = OracleKeptBlocks(
      layer, layer.InputNorm(x), LayerSelectOptions(options, 0.5), 64);
  const torch::Tensor want = SparseAttentionResidual(
      layer, x, layer.InputNorm(x), cos, sin, kept, 64, true,
      /*shifted_groups=*/true);
  EXPECT_TRUE(torch::allclose(got, want));
  const torch::Tensor causal = SparseAttentionResidual(
      layer, x, layer.InputNorm(x), cos, sin, kept, 64, true);
  EXPECT_FALSE(torch::allclose(got, causal, 1e-4, 1e-4));
  // Not training: causal over the kept tokens.
  const torch::Tensor eval = LemoAttentionSublayer(
      layer, x, cos, sin, {&options, 0.5, nullptr, nullptr, false});
  EXPECT_TRUE(torch::allclose(eval, causal));
}

TEST(TwoDSparsity, NeedsTwoHeads) {
  ModelConfig config = S2Config();
  config.num_attention_heads = 1;
  config.num_key_value_heads = 1;
  config.hidden_size = 8;
  const auto w = testing::RandomWeights(config, 27);
  TrainingModelOptions options;
  options.lemo.two_d_sparsity = true;
  EXPECT_THAT(
      TrainingModel::Create(config, options, testing::MapLoader(w)).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("two_d_sparsity")));
  options.lemo.two_d_sparsity = false;
  EXPECT_THAT(
      TrainingModel::Create(config, options, testing::MapLoader(w)).status(),
      IsOk());
}

}  // namespace
}  // namespace lemo::engine
