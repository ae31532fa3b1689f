// Tests of the MLP sublayer's memory savers (worker/engine/lemo/sparse_mlp.h):
// prune ratio 0 and norm recomputation equal the op-by-op dense backward, the
// pruned backward equals a dense autograd graph cut at the pruned channels, and
// the measured saved bytes shrink as claimed. To add a case: build a tiny model
// (tiny_model.h), run MlpSublayer (or the model) with MlpSavers, and compare
// with a reference written with the layer's op-by-op parts.
#include "worker/engine/lemo/sparse_mlp.h"
#include "worker/engine/model/recompute_context.h"

#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/loss_and_grads.h"
#include "tests/worker/engine/saved_bytes.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/model/lean_ops.h"
#include "worker/engine/model/lora_linear.h"
#include "worker/engine/train/recompute.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

const std::vector<std::string> kAllTargets = {
    "q_proj",    "k_proj",  "v_proj",   "o_proj",
    "gate_proj", "up_proj", "down_proj"};

// The MLP projections' adapters of layer 0 (A, B of gate, up, down).
std::vector<torch::Tensor> MlpLora(const DecoderLayer& layer) {
  std::vector<torch::Tensor> out;
  for (size_t p = 4; p < 7; ++p) {
    out.push_back(layer.projection(p).lora_a());
    out.push_back(layer.projection(p).lora_b());
  }
  return out;
}

// Output, grad of h and grads of the MLP adapters for sum(out * weights).
std::vector<torch::Tensor> RunMlp(const DecoderLayer& layer,
                                  const torch::Tensor& h,
                                  const std::function<torch::Tensor()>& forward,
                                  const torch::Tensor& weights) {
  std::vector<torch::Tensor> inputs = {h};
  for (const torch::Tensor& t : MlpLora(layer)) inputs.push_back(t);
  torch::Tensor out = forward();
  std::vector<torch::Tensor> grads =
      torch::autograd::grad({(out * weights).sum()}, inputs);
  grads.insert(grads.begin(), out.detach());
  return grads;
}

void ExpectClose(const std::vector<torch::Tensor>& got,
                 const std::vector<torch::Tensor>& want, double rel) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const double scale = want[i].abs().max().item<double>();
    const double diff = (got[i] - want[i]).abs().max().item<double>();
    EXPECT_LE(diff, rel * std::max(1.0, scale))
        << (i == 0   ? "output"
            : i == 1 ? "grad h"
                     : "LoRA grad")
        << " " << i << ": max diff " << diff << ", scale " << scale;
  }
}

struct Fixture {
  ModelConfig config;
  std::map<std::string, torch::Tensor> weights;
  std::unique_ptr<TrainingModel> model;
  torch::Tensor h;
  torch::Tensor out_weights;
};

// A tiny model with adapters on every projection, h [2, 24, D].
Fixture MakeFixture() {
  Fixture f;
  f.config = testing::TinyConfig();
  f.config.num_hidden_layers = 1;
  f.weights = testing::RandomWeights(f.config, 7);
  TrainingModelOptions options;
  options.lora.target_modules = kAllTargets;
  f.model = testing::MakeRandomLoraModel(f.config, options, f.weights);
  torch::manual_seed(8);
  f.h = torch::randn({2, 24, f.config.hidden_size}).requires_grad_(true);
  f.out_weights = torch::randn({2, 24, f.config.hidden_size});
  return f;
}

TEST(SparseMlp, RatioZeroEqualsDenseBackward) {
  Fixture f = MakeFixture();
  const DecoderLayer& layer = f.model->model().layers()[0];
  const auto dense = RunMlp(
      layer, f.h, [&] { return layer.Mlp(layer.PostAttentionNorm(f.h), true); },
      f.out_weights);
  // Every channel kept through the fused node, with the norm outside it
  // (a ratio too small to drop a channel of 40) and inside it (recomputed).
  for (const MlpSavers savers :
       {MlpSavers{1e-6, false}, MlpSavers{0, true}, MlpSavers{1e-6, true},
        MlpSavers{0, false, true}, MlpSavers{0, true, true},
        MlpSavers{1e-6, true, true}}) {
    SCOPED_TRACE(::testing::Message()
                 << "prune " << savers.prune_ratio << " recompute norm "
                 << savers.recompute_norm << " gate/up "
                 << savers.recompute_gate_up);
    const auto fused = RunMlp(
        layer, f.h, [&] { return MlpSublayer(layer, f.h, savers, true); },
        f.out_weights);
    ExpectClose(fused, dense, 1e-5);
  }
}

TEST(SparseMlp, RecomputedGateUpEqualSavedOnesWhenPruned) {
  Fixture f = MakeFixture();
  const DecoderLayer& layer = f.model->model().layers()[0];
  const auto saved = RunMlp(
      layer, f.h,
      [&] {
        return MlpSublayer(layer, f.h, MlpSavers{0.8, true}, true);
      },
      f.out_weights);
  const auto recomputed = RunMlp(
      layer, f.h,
      [&] {
        return MlpSublayer(layer, f.h, MlpSavers{0.8, true, true}, true);
      },
      f.out_weights);
  ExpectClose(recomputed, saved, 1e-5);
}

TEST(SparseMlp, KeptChannelGradientsEqualCutDenseReference) {
  // Reference: the op-by-op dense graph where gate/up of the pruned channels
  // are detached (same forward values, no backward through them), and
  // down_proj's lora_A sees only the kept channels' activations in backward.
  Fixture f = MakeFixture();
  const DecoderLayer& layer = f.model->model().layers()[0];
  const double prune = 0.8;
  const auto reference = [&] {
    const torch::Tensor xn = layer.PostAttentionNorm(f.h);
    const torch::Tensor gate = layer.projection(4).Forward(xn, true);
    const torch::Tensor up = layer.projection(5).Forward(xn, true);
    const torch::Tensor idx =
        TopMlpChannels(gate.detach(), up.detach(), prune);  // [B, k]
    const torch::Tensor mask =
        torch::zeros({gate.size(0), 1, gate.size(2)})
            .scatter_(2, idx.unsqueeze(1), 1.0);  // [B, 1, I]
    const auto cut = [&](const torch::Tensor& t) {
      return t * mask + (t * (1 - mask)).detach();
    };
    const torch::Tensor act = torch::silu(cut(gate)) * cut(up);
    const LoraLinear& down = layer.projection(6);
    const torch::Tensor a32 = act.to(torch::kFloat);
    const torch::Tensor hidden =
        torch::linear(a32 * mask, down.lora_a()) +
        torch::linear((a32 * (1 - mask)).detach(), down.lora_a().detach());
    return torch::linear(act, down.weight()) +
           torch::linear(hidden, down.lora_b()) * down.scaling();
  };
  const auto want = RunMlp(layer, f.h, reference, f.out_weights);
  for (const bool recompute : {false, true}) {
    SCOPED_TRACE(::testing::Message() << "recompute " << recompute);
    const auto got = RunMlp(
        layer, f.h,
        [&] {
          return MlpSublayer(layer, f.h, MlpSavers{prune, recompute}, true);
        },
        f.out_weights);
    ExpectClose(got, want, 1e-5);
  }
  // The pruned backward really differs from the dense one.
  const auto dense = RunMlp(
      layer, f.h, [&] { return layer.Mlp(layer.PostAttentionNorm(f.h), true); },
      f.out_weights);
  EXPECT_GT((want[1] - dense[1]).abs().max().item<double>(), 1e-4);
}

TEST(SparseMlp, KeepsTheTopChannelsPerSample) {
  EXPECT_EQ(KeptMlpChannels(40, 0.8), 8);
  EXPECT_EQ(KeptMlpChannels(172, 0.8), 35);
  EXPECT_EQ(KeptMlpChannels(40, 0), 40);
  EXPECT_EQ(KeptMlpChannels(40, 0.999), 1);
  // Sample 0 is loud on channels 1 and 3, sample 1 on channel 0 and 2.
  torch::Tensor gate = torch::zeros({2, 3, 5});
  torch::Tensor up = torch::zeros({2, 3, 5});
  up.index_put_({0, torch::indexing::Slice(), 3}, 5.0);
  gate.index_put_({0, torch::indexing::Slice(), 1}, 4.0);
  up.index_put_({1, torch::indexing::Slice(), 2}, 3.0);
  up.index_put_({1, torch::indexing::Slice(), 0}, 2.0);
  const torch::Tensor idx = TopMlpChannels(gate, up, 0.6);  // keep 2 of 5
  ASSERT_EQ(idx.sizes(), (std::vector<int64_t>{2, 2}));
  EXPECT_TRUE(torch::equal(idx, torch::tensor({{1, 3}, {0, 2}})));
}

using testing::SavedBytes;

// A layer at a real model's MLP proportions (I = 4 D), N = 256 tokens; h is
// made outside the measurement, as the residual is in the model.
struct MeasureSetup {
  ModelConfig config;
  std::map<std::string, torch::Tensor> weights;
  torch::Tensor h;
  MeasureSetup() {
    config = testing::TinyConfig();
    config.num_hidden_layers = 1;
    config.hidden_size = 128;
    config.intermediate_size = 512;
    config.num_attention_heads = 16;
    config.num_key_value_heads = 4;
    weights = testing::RandomWeights(config, 9);
    torch::manual_seed(10);
    h = torch::randn({1, 256, config.hidden_size}).requires_grad_(true);
  }
};

TEST(SparseMlp, SavedBytesShrinkWithThePruneRatio) {
  MeasureSetup s;
  for (const bool mlp_lora : {false, true}) {
    TrainingModelOptions options;
    if (mlp_lora) options.lora.target_modules = kAllTargets;
    auto model = testing::MakeRandomLoraModel(s.config, options, s.weights);
    const DecoderLayer& layer = model->model().layers()[0];
    const int64_t dense = SavedBytes([&] {
      return MlpSublayer(layer, s.h, MlpSavers{0, false}, true);
    });
    const int64_t sparse = SavedBytes([&] {
      return MlpSublayer(layer, s.h, MlpSavers{0.8, false}, true);
    });
    const double keep = static_cast<double>(KeptMlpChannels(512, 0.8)) / 512;
    const double ratio =
        static_cast<double>(sparse) / static_cast<double>(dense);
    std::cout << "[lemo] MLP sublayer saved bytes (LoRA on MLP: " << mlp_lora
              << "): dense " << dense << ", prune 0.8 " << sparse << ", ratio "
              << ratio << ", kept channel fraction " << keep << "\n";
    ::testing::Test::RecordProperty(
        mlp_lora ? "mlp_lora_saved_ratio" : "mlp_saved_ratio",
        std::to_string(ratio));
    EXPECT_GT(dense, 0);
    if (!mlp_lora) {
      // Only gate and up [N, I] are saved (plus the norm's [N, 1] rstd): they
      // shrink to the kept channels.
      EXPECT_NEAR(ratio, keep, 0.1 * keep);
    } else {
      // The norm output [N, D] (gate/up lora_A) and the rank-8 hiddens stay;
      // SwiGLU's output [N, I] (down's lora_A input) is no longer saved.
      EXPECT_LT(ratio, 2 * keep);
    }
  }
}

TEST(NormRecompute, DropsTheSavedNormOutputWhereItIsSaved) {
  MeasureSetup s;
  const int64_t norm_out_bytes = 256 * s.config.hidden_size * 4;
  // No MLP adapters: frozen gate/up do not save their input, so the norm output
  // is not saved and recomputation has nothing to drop.
  // gate/up adapters: their lora_A gradient needs the norm output.
  for (const bool mlp_lora : {false, true}) {
    TrainingModelOptions options;
    if (mlp_lora)
      options.lora.target_modules = {"q_proj", "gate_proj", "up_proj"};
    auto model = testing::MakeRandomLoraModel(s.config, options, s.weights);
    const DecoderLayer& layer = model->model().layers()[0];
    const int64_t saved = SavedBytes([&] {
      return MlpSublayer(layer, s.h, MlpSavers{0, false}, true);
    });
    const int64_t recomputed = SavedBytes([&] {
      return MlpSublayer(layer, s.h, MlpSavers{0, true}, true);
    });
    std::cout << "[lemo] MLP sublayer saved bytes (LoRA on gate/up: "
              << mlp_lora << "): norm saved " << saved << ", recomputed "
              << recomputed << ", norm output " << norm_out_bytes << "\n";
    EXPECT_EQ(saved - recomputed, mlp_lora ? norm_out_bytes : 0);
  }
}

// One training step of each model on `ids`: the same loss and LoRA gradients.
void ExpectSameLossAndGrads(TrainingModel& a, TrainingModel& b,
                            const torch::Tensor& ids) {
  torch::Tensor la = a.Loss(ids, ids);
  la.backward();
  torch::Tensor lb = b.Loss(ids, ids);
  lb.backward();
  EXPECT_NEAR(la.item<double>(), lb.item<double>(), 1e-6);
  const auto pa = a.LoraParameters();
  const auto pb = b.LoraParameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(
        torch::allclose(pa[i].second.grad(), pb[i].second.grad(), 1e-5, 1e-7))
        << pa[i].first;
  }
}

TEST(NormRecompute, ModelLossAndGradientsUnchanged) {
  ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 11);
  TrainingModelOptions off;
  off.lora.target_modules = kAllTargets;
  TrainingModelOptions on = off;
  on.lemo.recompute_norm = true;
  on.lemo.measure_saved_bytes = true;
  off.lemo.measure_saved_bytes = true;
  auto a = testing::MakeRandomLoraModel(config, off, w);
  auto b = testing::MakeRandomLoraModel(config, on, w);
  torch::manual_seed(12);
  const torch::Tensor ids = torch::randint(0, config.vocab_size, {2, 32});
  ExpectSameLossAndGrads(*a, *b, ids);
  for (size_t i = 0; i < a->lemo_stats().size(); ++i) {
    EXPECT_LT(b->lemo_stats()[i].saved_bytes, a->lemo_stats()[i].saved_bytes)
        << "layer " << i;
  }
}

TEST(MlpRecompute, SavesNoGateUpAndKeepsTheModelsGradients) {
  ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 21);
  TrainingModelOptions off;
  off.lora.target_modules = kAllTargets;
  off.lemo.recompute_norm = true;
  off.lemo.measure_saved_bytes = true;
  TrainingModelOptions on = off;
  on.lemo.recompute_mlp = true;
  auto a = testing::MakeRandomLoraModel(config, off, w);
  auto b = testing::MakeRandomLoraModel(config, on, w);
  torch::manual_seed(22);
  const int64_t batch = 2, len = 32;
  const torch::Tensor ids = torch::randint(0, config.vocab_size, {batch, len});
  // One thread: the allocation hook behind saved_bytes is thread-local, and
  // intra-op threads' allocations would escape it (see saved_bytes.h).
  const int threads = torch::get_num_threads();
  torch::set_num_threads(1);
  ExpectSameLossAndGrads(*a, *b, ids);
  torch::set_num_threads(threads);
  // At least gate and up, fp32, [B, N, intermediate] each (the sublayer test
  // below pins the exact amount).
  const int64_t gate_up = 2 * batch * len * config.intermediate_size * 4;
  for (size_t i = 0; i < a->lemo_stats().size(); ++i) {
    EXPECT_GE(a->lemo_stats()[i].saved_bytes - b->lemo_stats()[i].saved_bytes,
              gate_up)
        << "layer " << i;
  }
}

TEST(MlpRecompute, CheckpointReRunSkipsDownProjWithExactGradients) {
  // In a checkpoint's re-run the node returns zeros (down_proj's GEMM is
  // skipped): the gradients must still equal the unchecked node's.
  Fixture f = MakeFixture();
  const DecoderLayer& layer = f.model->model().layers()[0];
  std::vector<torch::Tensor> outputs;
  std::vector<bool> in_recompute;
  const SegmentFn segment = [&](const torch::Tensor& h) {
    torch::Tensor y = MlpSublayer(layer, h, MlpSavers{0, true}, true);
    outputs.push_back(y.detach().clone());
    in_recompute.push_back(InCheckpointRecompute());
    return y;
  };
  const auto plain = RunMlp(
      layer, f.h, [&] { return segment(f.h); }, f.out_weights);
  const auto checkpointed = RunMlp(
      layer, f.h,
      [&] { return Checkpoint(segment, f.h, layer.TrainableParameters()); },
      f.out_weights);
  ExpectClose(checkpointed, plain, 1e-5);
  ASSERT_EQ(outputs.size(), 3u);  // plain, checkpoint forward, re-run
  EXPECT_EQ(in_recompute, (std::vector<bool>{false, false, true}));
  EXPECT_GT(outputs[1].abs().max().item<double>(), 0);
  EXPECT_EQ(outputs[2].abs().max().item<double>(), 0) << "down_proj ran";
  EXPECT_FALSE(InCheckpointRecompute());
}

TEST(MlpRecompute, SublayerSavesExactlyGateAndUpLess) {
  Fixture f = MakeFixture();
  const DecoderLayer& layer = f.model->model().layers()[0];
  const torch::Tensor h = f.h.detach().requires_grad_(true);
  const int64_t saved = SavedBytes([&] {
    return MlpSublayer(layer, h, MlpSavers{0, true}, true);
  });
  const int64_t recomputed = SavedBytes([&] {
    return MlpSublayer(layer, h, MlpSavers{0, true, true}, true);
  });
  const int64_t gate_up =
      2 * h.size(0) * h.size(1) * f.config.intermediate_size * 4;  // fp32
  std::cout << "[lemo] MLP sublayer saved bytes: gate/up saved " << saved
            << ", recomputed " << recomputed << "\n";
  EXPECT_EQ(saved - recomputed, gate_up);
}

TEST(MlpRecompute, IgnoredUnderGradientCheckpointing) {
  ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 23);
  TrainingModelOptions options;
  options.lemo.recompute_mlp = true;
  options.gradient_checkpointing = true;
  auto model = testing::MakeRandomLoraModel(config, options, w);
  EXPECT_FALSE(model->options().lemo.recompute_mlp);
  options.gradient_checkpointing = false;
  EXPECT_TRUE(testing::MakeRandomLoraModel(config, options, w)
                  ->options()
                  .lemo.recompute_mlp);
}

TEST(SparseMlp, ModelRejectsBadOptions) {
  ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 1);
  for (const double bad : {-0.1, 1.0, 1.5}) {
    TrainingModelOptions options;
    options.lemo.mlp_prune_ratio = bad;
    EXPECT_THAT(
        TrainingModel::Create(config, options, testing::MapLoader(w)).status(),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 HasSubstr("mlp_prune_ratio must be in [0, 1)")));
  }
  TrainingModelOptions dropout;
  dropout.lemo.mlp_prune_ratio = 0.8;
  dropout.lora.dropout = 0.1;
  dropout.lora.target_modules = {"q_proj", "up_proj"};
  EXPECT_THAT(
      TrainingModel::Create(config, dropout, testing::MapLoader(w)).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("LoRA dropout on up_proj")));
  // Dropout on attention adapters only is fine.
  dropout.lora.target_modules = {"q_proj"};
  EXPECT_THAT(
      TrainingModel::Create(config, dropout, testing::MapLoader(w)).status(),
      IsOk());
}

TEST(SparseMlp, ModelTrainsWithPrunedBackwardAndSavesLess) {
  ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 13);
  TrainingModelOptions dense;
  dense.lemo.measure_saved_bytes = true;
  TrainingModelOptions sparse = dense;
  sparse.lemo.mlp_prune_ratio = 0.8;
  auto a = testing::MakeRandomLoraModel(config, dense, w);
  auto b = testing::MakeRandomLoraModel(config, sparse, w);
  torch::manual_seed(14);
  const torch::Tensor ids = torch::randint(0, config.vocab_size, {1, 64});
  torch::Tensor la = a->Loss(ids, ids);
  torch::Tensor lb = b->Loss(ids, ids);
  // The forward is dense either way.
  EXPECT_NEAR(la.item<double>(), lb.item<double>(), 1e-6);
  lb.backward();
  for (const auto& [name, p] : b->LoraParameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
  }
  for (size_t i = 0; i < a->lemo_stats().size(); ++i) {
    EXPECT_LT(b->lemo_stats()[i].saved_bytes, a->lemo_stats()[i].saved_bytes)
        << "layer " << i;
  }
}

}  // namespace
}  // namespace lemo::engine

namespace lemo::engine {
namespace {

// Sequence tiling (MlpSavers::tile_tokens): tiles of 5 and 7 leave ragged
// tails on 24 tokens; 24 and 100 cover the sequence in one tile.
TEST(MlpTiles, RowForRowTheUntiledNode) {
  Fixture f = MakeFixture();
  const DecoderLayer& layer = f.model->model().layers()[0];
  const MlpSavers untiled{0, true, true, 0};
  const auto want = RunMlp(
      layer, f.h, [&] { return MlpSublayer(layer, f.h, untiled, true); },
      f.out_weights);
  for (int64_t tile : {5, 7, 24, 100}) {
    SCOPED_TRACE(::testing::Message() << "tile " << tile);
    const MlpSavers tiled{0, true, true, tile};
    const auto got = RunMlp(
        layer, f.h, [&] { return MlpSublayer(layer, f.h, tiled, true); },
        f.out_weights);
    // Row for row the same operations, but not the same bits: a GEMM's
    // result for a row depends on how many rows it runs with (the CPU BLAS
    // picks other kernels for other shapes), and the MLP adapters' weight
    // gradients sum over tokens tile by tile. Within fp32 rounding.
    ExpectClose(got, want, 1e-6);
  }
}

TEST(MlpTiles, SavesOnlyTheInputAndTheAdapterHiddens) {
  Fixture f = MakeFixture();
  const DecoderLayer& layer = f.model->model().layers()[0];
  const auto saved = [&](const MlpSavers& savers) {
    return testing::SavedBytes(
        [&] { return MlpSublayer(layer, f.h, savers, true); });
  };
  // Untiled without savers keeps norm output, gate, up and SwiGLU inputs.
  EXPECT_LT(saved(MlpSavers{0, true, true, 8}), saved(MlpSavers{}));
  EXPECT_EQ(saved(MlpSavers{0, true, true, 8}),
            saved(MlpSavers{0, true, true, 0}));
}

TEST(MlpTiles, RefusesPruningAndNegativeTiles) {
  LemoOptions lemo;
  LoraOptions lora;
  lemo.mlp_tile_tokens = 8;
  lemo.mlp_prune_ratio = 0.5;
  EXPECT_THAT(ValidateMlpSavers(lemo, lora),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("does not combine with mlp_prune_ratio")));
  lemo.mlp_prune_ratio = 0;
  lemo.mlp_tile_tokens = -1;
  EXPECT_THAT(ValidateMlpSavers(lemo, lora),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("mlp_tile_tokens must be >= 0")));
}

struct TileCase {
  torch::ScalarType dtype;
  bool checkpointing;
  LemoMode mode;
};

class MlpTilesModel : public ::testing::TestWithParam<TileCase> {};

// The switch as users flip it: loss and every LoRA gradient as with the
// untiled node (recompute_mlp), with the default q/k/v/o adapters, within
// rounding (not bit for bit: see RowForRowTheUntiledNode).
TEST_P(MlpTilesModel, LossAndLoraGradsEqualUntiled) {
  const TileCase& c = GetParam();
  const ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 41);
  TrainingModelOptions off;
  off.base_dtype = c.dtype;
  off.gradient_checkpointing = c.checkpointing;
  off.lemo.mode = c.mode;
  off.lemo.block_tokens = 4;
  off.lemo.recompute_mlp = true;
  TrainingModelOptions on = off;
  on.lemo.mlp_tile_tokens = 7;
  auto a = testing::MakeRandomLoraModel(config, off, w);
  auto b = testing::MakeRandomLoraModel(config, on, w);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  torch::manual_seed(42);
  const torch::Tensor ids = torch::randint(0, config.vocab_size, {2, 32});
  // fp32: a few ulps from the GEMMs' row blocking; bf16: the activations'
  // rounding to 8 bits turns those into differences of one bf16 ulp.
  testing::ExpectClose(testing::RunLossAndGrads(*b, ids),
                       testing::RunLossAndGrads(*a, ids),
                       c.dtype == torch::kFloat32 ? 1e-5 : 2e-2);
}

INSTANTIATE_TEST_SUITE_P(
    DtypesModes, MlpTilesModel,
    ::testing::Values(TileCase{torch::kFloat32, false, LemoMode::kDense},
                      TileCase{torch::kBFloat16, false, LemoMode::kDense},
                      TileCase{torch::kFloat32, true, LemoMode::kOracle},
                      TileCase{torch::kBFloat16, true, LemoMode::kOracle}));

}  // namespace
}  // namespace lemo::engine
