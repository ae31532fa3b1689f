// Tests of LeMo token elimination in the engine
// (worker/engine/lemo/lemo_attention.h, lemo_options.h): keep-all equals dense,
// sparse gradients equal a masked dense reference, and saved-for-backward bytes
// scale with the kept fraction. To add a case: build a tiny model
// (tiny_model.h), run the sublayer or the model with LemoOptions, and compare
// with a reference written without LeMo.
#include "worker/engine/lemo/lemo_attention.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/lemo_ops.h"
#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/saved_bytes.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/lemo/lemo_options.h"
#include "worker/engine/model/rope.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

// Loss and every LoRA gradient of `model` on fixed tokens.
std::pair<torch::Tensor, std::vector<torch::Tensor>> LossAndGrads(
    TrainingModel& model, const torch::Tensor& ids) {
  for (auto& [name, p] : model.LoraParameters()) {
    torch::Tensor t = p;
    if (t.grad().defined()) t.mutable_grad().zero_();
  }
  torch::Tensor loss = model.Loss(ids, ids);
  loss.backward();
  std::vector<torch::Tensor> grads;
  for (auto& [name, p] : model.LoraParameters())
    grads.push_back(p.grad().clone());
  return {loss.detach(), grads};
}

TEST(LemoSchedule, DefaultIsTheArtifactsScaledToDepth) {
  std::vector<double> want(32, 0.4);
  for (int i = 0; i < 15; ++i) want[i] = 1.0;
  want[31] = 1.0;
  EXPECT_EQ(DefaultKeepSchedule(32), want);
  EXPECT_EQ(DefaultKeepSchedule(8),
            (std::vector<double>{1, 1, 1, 1, 0.4, 0.4, 0.4, 1}));
  EXPECT_EQ(DefaultKeepSchedule(2), (std::vector<double>{1, 1}));
  EXPECT_EQ(DefaultKeepSchedule(1), (std::vector<double>{1}));
}

TEST(LemoSchedule, ValidatesOptions) {
  LemoOptions o;
  EXPECT_THAT(ResolveKeepSchedule(o, 4).status(), IsOk());
  o.keep_ratios = {1, 0.5, 0.5};
  EXPECT_THAT(
      ResolveKeepSchedule(o, 4).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("3 entries")));
  o.keep_ratios = {1, 0.5, 0, 1};
  EXPECT_THAT(ResolveKeepSchedule(o, 4).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("keep_ratios[2]")));
  o = LemoOptions();
  o.adaptive_tau = 1.5;
  EXPECT_THAT(
      ResolveKeepSchedule(o, 4).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("adaptive_tau")));
  o = LemoOptions();
  o.min_keep_blocks = 5;
  o.max_keep_blocks = 2;
  EXPECT_THAT(ResolveKeepSchedule(o, 4).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("min_keep_blocks")));
  o = LemoOptions();
  o.block_tokens = 0;
  EXPECT_THAT(
      ResolveKeepSchedule(o, 4).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("block_tokens")));
}

TEST(LemoMode, Parses) {
  EXPECT_EQ(*ParseLemoMode("dense"), LemoMode::kDense);
  EXPECT_EQ(*ParseLemoMode("oracle"), LemoMode::kOracle);
  EXPECT_EQ(*ParseLemoMode("predictor"), LemoMode::kPredictor);
  EXPECT_EQ(LemoModeName(LemoMode::kPredictor), "predictor");
  EXPECT_THAT(
      ParseLemoMode("sparse").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sparse")));
}

// TinyConfig as Qwen3: per-head q/k norms and a head_dim (12) other than
// hidden / heads (8).
ModelConfig TinyQwen3Config() {
  ModelConfig c = testing::TinyConfig();
  c.model_type = "qwen3";
  c.qk_norm = true;
  c.head_dim = 12;
  return c;
}

class LemoModelArch : public ::testing::TestWithParam<bool> {
 protected:
  ModelConfig Config() const {
    return GetParam() ? TinyQwen3Config() : testing::TinyConfig();
  }
};

TEST_P(LemoModelArch, KeepingEveryBlockEqualsDense) {
  // Oracle mode on every layer, with min_keep_blocks forcing all blocks:
  // scoring, selection, gather, RoPE at original positions and scatter all run,
  // and must change nothing.
  ModelConfig config = Config();
  config.num_hidden_layers = 3;
  config.max_position_embeddings = 256;
  const auto w = testing::RandomWeights(config, 1);
  TrainingModelOptions dense_options;
  TrainingModelOptions lemo_options;
  lemo_options.lemo.mode = LemoMode::kOracle;
  lemo_options.lemo.keep_ratios = {0.5, 0.5, 0.5};
  lemo_options.lemo.min_keep_blocks = 1000;
  auto dense = testing::MakeRandomLoraModel(config, dense_options, w);
  auto lemo = testing::MakeRandomLoraModel(config, lemo_options, w);
  torch::manual_seed(3);
  const torch::Tensor ids =
      torch::randint(0, config.vocab_size, {2, 200});  // ragged tail
  auto [dense_loss, dense_grads] = LossAndGrads(*dense, ids);
  auto [lemo_loss, lemo_grads] = LossAndGrads(*lemo, ids);
  EXPECT_NEAR(lemo_loss.item<double>(), dense_loss.item<double>(), 1e-6);
  ASSERT_EQ(lemo_grads.size(), dense_grads.size());
  ASSERT_FALSE(dense_grads.empty());
  for (size_t i = 0; i < dense_grads.size(); ++i) {
    EXPECT_TRUE(torch::allclose(lemo_grads[i], dense_grads[i], 1e-5, 1e-7))
        << "LoRA grad " << i << " max diff "
        << (lemo_grads[i] - dense_grads[i]).abs().max().item<double>();
  }
  for (const LemoLayerStats& s : lemo->lemo_stats()) {
    EXPECT_EQ(s.kept_tokens, s.total_tokens);
  }
}

// The oracle scores blocks with the q/k the layer's attention rotates: the
// frozen projections, then (Qwen3) the per-head norm, written out here.
TEST_P(LemoModelArch, OracleScoresTheLayersPreRopeQueriesAndKeys) {
  const ModelConfig config = Config();
  const auto w = testing::RandomWeights(config, 4);
  auto model = testing::MakeRandomLoraModel(config, TrainingModelOptions(), w);
  const DecoderLayer& layer = model->model().layers()[0];
  torch::manual_seed(5);
  const torch::Tensor xn = torch::randn({2, 96, config.hidden_size});
  const auto heads = [&](const char* proj, const char* norm) {
    const std::string p = "model.layers.0.self_attn.";
    torch::Tensor h = torch::linear(xn, w.at(p + proj + ".weight"))
                          .view({2, 96, -1, config.head_dim});
    if (config.qk_norm) {
      h = h * torch::rsqrt(h.pow(2).mean(-1, true) + config.rms_norm_eps) *
          w.at(p + norm + ".weight");
    }
    return h.transpose(1, 2);
  };
  const torch::Tensor want = kernels::BlockScores(
      heads("q_proj", "q_norm"), heads("k_proj", "k_norm"), 32);
  const torch::Tensor got = OracleBlockMap(layer, xn, 32);
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-6))
      << (got - want).abs().max().item<double>();
}

TEST(LemoModel, ScheduleKeepsTheRatioPerLayer) {
  ModelConfig config = testing::TinyConfig();
  config.num_hidden_layers = 4;
  config.max_position_embeddings = 512;
  const auto w = testing::RandomWeights(config, 2);
  TrainingModelOptions options;
  options.lemo.mode = LemoMode::kOracle;
  options.lemo.keep_ratios = {1.0, 0.5, 0.25, 1.0};
  options.lemo.measure_saved_bytes = true;
  auto model = testing::MakeRandomLoraModel(config, options, w);
  torch::manual_seed(4);
  const torch::Tensor ids =
      torch::randint(0, config.vocab_size, {1, 512});  // 8 blocks
  auto [loss, grads] = LossAndGrads(*model, ids);
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  ASSERT_EQ(model->lemo_stats().size(), 4u);
  const std::vector<int64_t> want = {512, 256, 128, 512};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(model->lemo_stats()[i].kept_tokens, want[i]) << "layer " << i;
    EXPECT_EQ(model->lemo_stats()[i].total_tokens, 512);
  }
  for (const torch::Tensor& g : grads)
    EXPECT_TRUE(torch::isfinite(g).all().item<bool>());
  // Same shapes in every layer, so the measured saved bytes follow the kept
  // tokens (the MLP stays dense, so not proportionally).
  const auto& st = model->lemo_stats();
  std::cout << "[lemo] saved bytes per layer:";
  for (const LemoLayerStats& s : st) std::cout << " " << s.saved_bytes;
  std::cout << "\n";
  EXPECT_GT(st[2].saved_bytes, 0);
  EXPECT_LT(st[2].saved_bytes, st[1].saved_bytes);
  EXPECT_LT(st[1].saved_bytes, st[0].saved_bytes);
  // Both dense and shaped alike; measured 2 KiB (0.4%) apart, cause not
  // traced, so allow 1%.
  EXPECT_NEAR(st[0].saved_bytes, st[3].saved_bytes, 0.01 * st[0].saved_bytes);
}

TEST(LemoModel, CheckpointingRecomputesTheSameBlocks) {
  // The recompute in backward re-selects blocks from the same input, so
  // gradients match the run that kept its activations.
  ModelConfig config = testing::TinyConfig();
  config.num_hidden_layers = 3;
  config.max_position_embeddings = 320;
  const auto w = testing::RandomWeights(config, 12);
  TrainingModelOptions plain;
  plain.lemo.mode = LemoMode::kOracle;
  plain.lemo.keep_ratios = {1.0, 0.4, 0.6};
  TrainingModelOptions checkpointed = plain;
  checkpointed.gradient_checkpointing = true;
  auto a = testing::MakeRandomLoraModel(config, plain, w);
  auto b = testing::MakeRandomLoraModel(config, checkpointed, w);
  torch::manual_seed(13);
  const torch::Tensor ids = torch::randint(0, config.vocab_size, {1, 300});
  auto [loss_a, grads_a] = LossAndGrads(*a, ids);
  auto [loss_b, grads_b] = LossAndGrads(*b, ids);
  EXPECT_NEAR(loss_a.item<double>(), loss_b.item<double>(), 1e-6);
  for (size_t i = 0; i < grads_a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(grads_a[i], grads_b[i], 1e-5, 1e-7))
        << "LoRA grad " << i;
  }
  EXPECT_LT(b->lemo_stats()[1].kept_tokens, 300);
}

TEST(LemoModel, AdaptiveRuleKeepsAtLeastTheForcedBlocks) {
  ModelConfig config = testing::TinyConfig();
  config.max_position_embeddings = 640;
  const auto w = testing::RandomWeights(config, 14);
  TrainingModelOptions options;
  options.lemo.mode = LemoMode::kOracle;
  options.lemo.keep_ratios = {0.5, 0.5};
  options.lemo.adaptive_tau = 0.5;
  options.lemo.max_keep_blocks = 6;
  auto model = testing::MakeRandomLoraModel(config, options, w);
  torch::manual_seed(15);
  const torch::Tensor ids =
      torch::randint(0, config.vocab_size, {1, 640});  // 10 blocks
  auto [loss, grads] = LossAndGrads(*model, ids);
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  for (const LemoLayerStats& s : model->lemo_stats()) {
    EXPECT_GE(s.kept_tokens, 2 * 64);
    EXPECT_LE(s.kept_tokens, 6 * 64);
  }
}

TEST(LemoModel, RejectsABadSchedule) {
  ModelConfig config = testing::TinyConfig();
  TrainingModelOptions options;
  options.lemo.keep_ratios = {0.5};
  const auto w = testing::RandomWeights(config, 16);
  EXPECT_THAT(
      TrainingModel::Create(config, options, testing::MapLoader(w)).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lemo options")));
}

torch::Tensor RotateHalfRef(const torch::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

// The dense computation restricted to the kept tokens: q/k/v/o on every token
// with RoPE at the real positions, softmax attention where a query sees only
// kept keys at or before it, and the output added only at kept rows. Written
// with explicit matmul/softmax, no LeMo op.
// With q_norm/k_norm defined (Qwen3), each q/k head is RMS-normalised with
// them before RoPE.
torch::Tensor MaskedDenseReference(
    const DecoderLayer& layer, const torch::Tensor& x, const torch::Tensor& cos,
    const torch::Tensor& sin, const torch::Tensor& token_kept /*[B, N] bool*/,
    const torch::Tensor& q_norm = {}, const torch::Tensor& k_norm = {}) {
  const int64_t b = x.size(0), n = x.size(1), hd = layer.head_dim();
  const torch::Tensor xn = layer.InputNorm(x);
  const auto heads = [&](const torch::Tensor& t,
                         const torch::Tensor& norm = {}) {
    torch::Tensor h = t.view({b, n, -1, hd});
    if (norm.defined()) {
      h = h * torch::rsqrt(h.pow(2).mean(-1, true) + layer.eps()) * norm;
    }
    return h.transpose(1, 2);
  };
  const auto rope = [&](const torch::Tensor& t) {
    return t * cos.unsqueeze(1) + RotateHalfRef(t) * sin.unsqueeze(1);
  };
  const int64_t group = layer.num_heads() / layer.num_kv_heads();
  torch::Tensor q = rope(heads(layer.projection(0).Forward(xn, false), q_norm));
  torch::Tensor k = rope(heads(layer.projection(1).Forward(xn, false), k_norm))
                        .repeat_interleave(group, 1);
  torch::Tensor v =
      heads(layer.projection(2).Forward(xn, false)).repeat_interleave(group, 1);
  const torch::Tensor causal = torch::ones({n, n}, torch::kBool).tril();
  const torch::Tensor allowed =
      causal.unsqueeze(0) & token_kept.unsqueeze(1);  // [B, N(query), N(key)]
  torch::Tensor logits =
      torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(double(hd));
  logits = logits.masked_fill(allowed.unsqueeze(1).logical_not(), -INFINITY);
  const torch::Tensor attn = torch::matmul(torch::softmax(logits, -1), v);
  const torch::Tensor merged = attn.transpose(1, 2).reshape({b, n, -1});
  const torch::Tensor out = layer.projection(3).Forward(merged, false);
  return x + out * token_kept.unsqueeze(2).to(out.scalar_type());
}

TEST_P(LemoModelArch, SparseGradientsEqualMaskedDenseReference) {
  ModelConfig config = Config();
  config.num_hidden_layers = 1;
  config.max_position_embeddings = 256;
  const auto w = testing::RandomWeights(config, 6);
  auto model = testing::MakeRandomLoraModel(config, TrainingModelOptions(), w);
  const DecoderLayer& layer = model->model().layers()[0];
  const int64_t n = 200;  // 4 blocks, the last one 8 tokens
  auto [cos, sin] =
      model->model().rope().CosSin(torch::arange(n), torch::kFloat32);
  const torch::Tensor kept =
      torch::tensor(std::vector<int64_t>{0, 2, 3, 0, 1, 3}).view({2, 3});
  const torch::Tensor token_kept = torch::zeros({2, n}, torch::kBool);
  {
    const torch::Tensor pos = kernels::KeptPositions(kept, n);
    for (int64_t r = 0; r < 2; ++r) token_kept[r].index_fill_(0, pos[r], true);
  }
  torch::manual_seed(8);
  const torch::Tensor x0 = torch::randn({2, n, config.hidden_size});
  const torch::Tensor upstream = torch::randn({2, n, config.hidden_size});

  auto run = [&](bool sparse) {
    torch::Tensor x = x0.clone().requires_grad_(true);
    for (const torch::Tensor& p : layer.TrainableParameters()) {
      torch::Tensor t = p;
      if (t.grad().defined()) t.mutable_grad().zero_();
    }
    torch::Tensor out =
        sparse ? SparseAttentionResidual(layer, x, layer.InputNorm(x), cos, sin,
                                         kept, 64,
                                         /*training=*/false)
               : MaskedDenseReference(
                     layer, x, cos, sin, token_kept,
                     config.qk_norm ? w.at("model.layers.0.self_attn.q_norm."
                                           "weight")
                                    : torch::Tensor(),
                     config.qk_norm ? w.at("model.layers.0.self_attn.k_norm."
                                           "weight")
                                    : torch::Tensor());
    (out * upstream).sum().backward();
    std::vector<torch::Tensor> grads = {out.detach(), x.grad().clone()};
    for (const torch::Tensor& p : layer.TrainableParameters())
      grads.push_back(p.grad().clone());
    return grads;
  };
  const auto sparse = run(true);
  const auto ref = run(false);
  ASSERT_EQ(sparse.size(), ref.size());
  ASSERT_GT(sparse.size(), 2u);
  for (size_t i = 0; i < sparse.size(); ++i) {
    // Flash attention's backward and the explicit softmax's sum in different
    // orders; fp32 rounding then differs by ~1e-6 of each tensor's scale, so
    // compare relative to it.
    const double scale = ref[i].abs().max().item<double>();
    const double diff = (sparse[i] - ref[i]).abs().max().item<double>();
    EXPECT_LE(diff, 1e-5 * std::max(1.0, scale))
        << (i == 0   ? "output"
            : i == 1 ? "grad x"
                     : "LoRA grad")
        << " " << i << ": max diff " << diff << ", scale " << scale;
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, LemoModelArch, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Qwen3" : "Llama";
                         });

using testing::SavedBytes;

TEST(LemoAttention, SavedBytesScaleWithKeptFraction) {
  // Method: run the attention sublayer (input norm, attention, residual add)
  // with autograd recording and count the bytes the CPU allocator still holds
  // when it returns: these are exactly the tensors autograd saved for backward
  // (everything else was freed), minus the output. 16 heads of 8 keep the
  // head-sized extras (the kept tokens' cos/sin rows) at their real-model
  // proportion of a token's saved bytes.
  ModelConfig config = testing::TinyConfig();
  config.num_hidden_layers = 1;
  config.hidden_size = 128;
  config.num_attention_heads = 16;
  config.num_key_value_heads = 4;
  config.head_dim = 8;
  config.max_position_embeddings = 1024;
  const auto w = testing::RandomWeights(config, 9);
  auto model = testing::MakeRandomLoraModel(config, TrainingModelOptions(), w);
  const DecoderLayer& layer = model->model().layers()[0];
  const int64_t n =
      1024;  // 16 blocks; keep 0.4 -> ceil(6.4) = 7 blocks = 448 tokens
  auto [cos, sin] =
      model->model().rope().CosSin(torch::arange(n), torch::kFloat32);
  torch::manual_seed(10);
  const torch::Tensor x =
      torch::randn({1, n, config.hidden_size}).requires_grad_(true);
  LemoOptions options;
  options.mode = LemoMode::kOracle;
  LemoLayerStats stats;

  const int64_t dense = SavedBytes([&] {
    return LemoAttentionSublayer(layer, x, cos, sin,
                                 {&options, 1.0, nullptr, nullptr, true});
  });
  const int64_t sparse = SavedBytes([&] {
    return LemoAttentionSublayer(layer, x, cos, sin,
                                 {&options, 0.4, nullptr, &stats, true});
  });
  ASSERT_EQ(stats.kept_tokens, 448);
  const double keep = static_cast<double>(stats.kept_tokens) / n;
  const double ratio = static_cast<double>(sparse) / static_cast<double>(dense);
  std::cout << "[lemo] attention sublayer saved bytes: dense " << dense
            << ", sparse " << sparse << ", ratio " << ratio
            << ", kept fraction " << keep << "\n";
  ::testing::Test::RecordProperty("saved_bytes_ratio", std::to_string(ratio));
  EXPECT_GT(dense, 0);
  EXPECT_NEAR(ratio, keep, 0.1 * keep);

  // The whole layer for the record: the MLP stays dense, so only the attention
  // share shrinks.
  const int64_t dense_layer = SavedBytes([&] {
    return LemoDecoderLayerForward(layer, x, cos, sin,
                                   {&options, 1.0, nullptr, nullptr, true});
  });
  const int64_t sparse_layer = SavedBytes([&] {
    return LemoDecoderLayerForward(layer, x, cos, sin,
                                   {&options, 0.4, nullptr, nullptr, true});
  });
  std::cout << "[lemo] whole layer saved bytes: dense " << dense_layer
            << ", sparse " << sparse_layer << ", ratio "
            << static_cast<double>(sparse_layer) /
                   static_cast<double>(dense_layer)
            << "\n";
  EXPECT_LT(sparse_layer, dense_layer);
}

}  // namespace
}  // namespace lemo::engine
