// Tests for worker/engine/model/llama_model.h on tiny random models built from
// in-memory weights (HF parity lives in hf_parity_test.cc). To add a case:
// start from TinyConfig(), build two models whose outputs must agree, and
// compare losses and LoRA gradients. The CUDA cases are in
// llama_model_cuda_test.cc (label gpu).
#include "worker/engine/train/training_model.h"

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/train/optimizer.h"

namespace lemo::engine {
namespace {

using ::lemo::engine::testing::MapLoader;
using ::lemo::engine::testing::RandomizeLora;
using ::lemo::engine::testing::RandomWeights;
using ::lemo::engine::testing::TinyConfig;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

struct LossRun {
  double loss;
  std::vector<std::pair<std::string, torch::Tensor>> grads;
};

LossRun LossAndGrads(TrainingModel& model, const torch::Tensor& ids) {
  torch::Tensor loss = model.Loss(ids, ids);
  loss.backward();
  LossRun r{loss.item<double>(), {}};
  for (auto& [name, p] : model.LoraParameters()) {
    r.grads.emplace_back(name, p.grad().clone());
    torch::Tensor t = p;
    t.mutable_grad() = torch::Tensor();
  }
  return r;
}

std::unique_ptr<TrainingModel> MakeModel(
    const ModelConfig& config, const std::map<std::string, torch::Tensor>& w,
    const TrainingModelOptions& options) {
  auto model = TrainingModel::Create(config, options, MapLoader(w));
  EXPECT_THAT(model, IsOk());
  if (!model.ok()) return nullptr;
  RandomizeLora(**model, 11);
  return *std::move(model);
}

torch::Tensor Ids(const ModelConfig& c, int64_t batch, int64_t len) {
  torch::manual_seed(21);
  return torch::randint(c.vocab_size, {batch, len}, torch::kLong);
}

TEST(LlamaModel, CheckpointingGivesTheSameLossAndGrads) {
  ModelConfig config = TinyConfig();
  auto w = RandomWeights(config, 1);
  for (double dropout : {0.0, 0.3}) {
    SCOPED_TRACE(dropout);
    TrainingModelOptions plain;
    plain.lora.dropout = dropout;
    plain.lora.target_modules = {"q_proj", "v_proj", "o_proj", "gate_proj",
                                 "down_proj"};
    TrainingModelOptions ckpt = plain;
    ckpt.gradient_checkpointing = true;
    auto a = MakeModel(config, w, plain);
    auto b = MakeModel(config, w, ckpt);
    ASSERT_TRUE(a && b);
    torch::Tensor ids = Ids(config, 2, 24);
    torch::manual_seed(5);
    LossRun ra = LossAndGrads(*a, ids);
    torch::manual_seed(5);
    LossRun rb = LossAndGrads(*b, ids);
    // Same ops on the same values in the same order: bit for bit, dropout masks
    // included.
    EXPECT_EQ(ra.loss, rb.loss);
    ASSERT_EQ(ra.grads.size(), rb.grads.size());
    for (size_t i = 0; i < ra.grads.size(); ++i) {
      EXPECT_TRUE(torch::equal(ra.grads[i].second, rb.grads[i].second))
          << ra.grads[i].first;
    }
  }
}

TEST(LlamaModel, SegmentedLossGivesTheSameLossAndGrads) {
  ModelConfig config = TinyConfig();
  config.tie_word_embeddings = true;
  auto w = RandomWeights(config, 2);
  TrainingModelOptions plain;
  TrainingModelOptions seg;
  seg.loss_segment_tokens = 7;
  seg.gradient_checkpointing = true;
  auto a = MakeModel(config, w, plain);
  auto b = MakeModel(config, w, seg);
  ASSERT_TRUE(a && b);
  torch::Tensor ids = Ids(config, 2, 20);
  LossRun ra = LossAndGrads(*a, ids);
  LossRun rb = LossAndGrads(*b, ids);
  EXPECT_NEAR(ra.loss, rb.loss, 1e-6 * ra.loss);
  for (size_t i = 0; i < ra.grads.size(); ++i) {
    EXPECT_TRUE(
        torch::allclose(ra.grads[i].second, rb.grads[i].second, 1e-4, 1e-7))
        << ra.grads[i].first;
  }
}

TEST(LlamaModel, IsCausalAndUsesExplicitPositions) {
  ModelConfig config = TinyConfig();
  auto w = RandomWeights(config, 3);
  auto model = MakeModel(config, w, TrainingModelOptions());
  ASSERT_TRUE(model);
  torch::NoGradGuard no_grad;
  torch::Tensor ids = Ids(config, 1, 12);
  torch::Tensor full = model->Hidden(ids);
  // A prefix does not see the tokens after it.
  torch::Tensor prefix = model->Hidden(ids.narrow(1, 0, 5));
  EXPECT_TRUE(torch::allclose(prefix, full.narrow(1, 0, 5), 1e-5, 1e-6));
  // Default positions are 0..N-1; shifting all positions by a constant changes
  // nothing in attention scores (RoPE is relative) but other positions do
  // change the output.
  EXPECT_TRUE(
      torch::equal(model->model().Hidden(ids, torch::arange(12)), full));
  EXPECT_TRUE(torch::allclose(model->model().Hidden(ids, torch::arange(12) + 7),
                              full, 1e-4, 1e-5));
  EXPECT_FALSE(torch::allclose(
      model->model().Hidden(ids, torch::arange(12) * 2), full, 1e-4, 1e-5));
}

TEST(LlamaModel, GqaEqualsMhaWithRepeatedKvHeads) {
  ModelConfig gqa = TinyConfig();
  auto w = RandomWeights(gqa, 4);
  ModelConfig mha = gqa;
  mha.num_key_value_heads = gqa.num_attention_heads;
  auto wm = w;
  const int64_t group = gqa.num_attention_heads / gqa.num_key_value_heads;
  for (int64_t i = 0; i < gqa.num_hidden_layers; ++i) {
    for (const char* m : {"k_proj", "v_proj"}) {
      const std::string name =
          absl::StrCat("model.layers.", i, ".self_attn.", m, ".weight");
      wm[name] =
          w[name]
              .view({gqa.num_key_value_heads, 1, gqa.head_dim, gqa.hidden_size})
              .expand({gqa.num_key_value_heads, group, gqa.head_dim,
                       gqa.hidden_size})
              .reshape({-1, gqa.hidden_size});
    }
  }
  TrainingModelOptions options;
  options.lora.target_modules = {"q_proj", "o_proj"};
  auto a = MakeModel(gqa, w, options);
  auto b = MakeModel(mha, wm, options);
  ASSERT_TRUE(a && b);
  torch::NoGradGuard no_grad;
  torch::Tensor ids = Ids(gqa, 2, 10);
  EXPECT_TRUE(torch::allclose(a->Logits(ids), b->Logits(ids), 1e-4, 1e-5));
}

TEST(LlamaModel, LoraParametersUsePeftNames) {
  ModelConfig config = TinyConfig();
  auto w = RandomWeights(config, 5);
  TrainingModelOptions options;
  options.lora.rank = 4;
  options.lora.target_modules = {"q_proj", "down_proj"};
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto model, TrainingModel::Create(config, options, MapLoader(w)));
  auto params = model->LoraParameters();
  ASSERT_EQ(params.size(), 8u);
  EXPECT_EQ(params[0].first,
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(params[1].first,
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  EXPECT_EQ(params[3].first,
            "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
  EXPECT_EQ(params[0].second.sizes(), torch::IntArrayRef({4, 32}));
  EXPECT_EQ(params[3].second.sizes(), torch::IntArrayRef({32, 4}));
  for (auto& [name, p] : params) {
    EXPECT_EQ(p.scalar_type(), torch::kFloat) << name;
    EXPECT_TRUE(p.requires_grad()) << name;
  }
  // B starts at zero, so a fresh adapter leaves the base model's output
  // unchanged: the model's logits equal those of the same model with every
  // adapter zeroed.
  torch::NoGradGuard no_grad;
  torch::Tensor ids = Ids(config, 1, 6);
  torch::Tensor before = model->Logits(ids);
  std::vector<std::pair<std::string, torch::Tensor>> zeros;
  for (auto& [name, p] : params) zeros.emplace_back(name, torch::zeros_like(p));
  ASSERT_THAT(model->LoadLoraWeights(zeros), IsOk());
  EXPECT_TRUE(torch::equal(before, model->Logits(ids)));
}

TEST(LlamaModel, LoadLoraWeightsRejectsMissingUnknownAndMisshapen) {
  ModelConfig config = TinyConfig();
  auto w = RandomWeights(config, 6);
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto model,
      TrainingModel::Create(config, TrainingModelOptions(), MapLoader(w)));
  auto params = model->LoraParameters();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (auto& [name, p] : params)
    named.emplace_back(name, torch::ones_like(p).detach());
  ASSERT_THAT(model->LoadLoraWeights(named), IsOk());
  EXPECT_TRUE(params[0].second.eq(1).all().item<bool>());

  auto missing = named;
  missing.pop_back();
  EXPECT_THAT(
      model->LoadLoraWeights(missing),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr(named.back().first)));
  auto unknown = named;
  unknown.emplace_back(
      "base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight",
      torch::ones({8, 32}));
  EXPECT_THAT(
      model->LoadLoraWeights(unknown),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("layers.9")));
  auto misshapen = named;
  misshapen[0].second = torch::ones({3, 3});
  EXPECT_THAT(model->LoadLoraWeights(misshapen),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shape")));
}

TEST(LlamaModel, CreateRejectsBadWeightsAndOptions) {
  ModelConfig config = TinyConfig();
  auto w = RandomWeights(config, 7);
  auto no_mlp = w;
  no_mlp.erase("model.layers.1.mlp.up_proj.weight");
  EXPECT_THAT(
      TrainingModel::Create(config, TrainingModelOptions(), MapLoader(no_mlp)),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("layers.1.mlp.up_proj")));
  auto bad_shape = w;
  bad_shape["model.layers.0.self_attn.k_proj.weight"] = torch::zeros({32, 32});
  EXPECT_THAT(
      TrainingModel::Create(config, TrainingModelOptions(),
                            MapLoader(bad_shape)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("k_proj.weight")));
  TrainingModelOptions bad_target;
  bad_target.lora.target_modules = {"qkv_proj"};
  EXPECT_THAT(
      TrainingModel::Create(config, bad_target, MapLoader(w)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("qkv_proj")));
  ModelConfig bad_heads = config;
  bad_heads.num_key_value_heads = 3;
  EXPECT_THAT(
      TrainingModel::Create(bad_heads, TrainingModelOptions(), MapLoader(w)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("num_key_value_heads")));
}

TEST(LlamaModel, AllLinearTargetsEveryDecoderProjection) {
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<std::string> all,
                            LlamaModel::ResolveTargetModules({"all-linear"}));
  EXPECT_EQ(all, LlamaModel::ProjectionNames());
  // Concrete names come back in ProjectionNames() order, each once.
  LEMO_ASSERT_OK_AND_ASSIGN(
      std::vector<std::string> some,
      LlamaModel::ResolveTargetModules({"down_proj", "q_proj", "q_proj"}));
  EXPECT_EQ(some, (std::vector<std::string>{"q_proj", "down_proj"}));
  EXPECT_THAT(LlamaModel::ResolveTargetModules({"all-linear", "q_proj"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"all-linear\" must be the only entry")));
  EXPECT_THAT(
      LlamaModel::ResolveTargetModules({"lm_head"}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("\"lm_head\""), HasSubstr("all-linear"))));

  ModelConfig config = TinyConfig();
  auto w = RandomWeights(config, 5);
  TrainingModelOptions options;
  options.lora.target_modules = {"all-linear"};
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto model, TrainingModel::Create(config, options, MapLoader(w)));
  // 7 projections x 2 layers x (A, B); lm_head has none.
  const auto params = model->LoraParameters();
  ASSERT_EQ(params.size(), 28u);
  for (const auto& [name, p] : params) {
    EXPECT_THAT(name, ::testing::Not(HasSubstr("lm_head"))) << name;
  }
  EXPECT_EQ(params.back().first,
            "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
}

// Qwen3's q/k norms are weights of their own: missing or misshapen ones are
// errors naming them; Qwen2 reads no o_proj bias even when one is present.
TEST(LlamaModel, QwenAttentionWeights) {
  ModelConfig qwen3 = TinyConfig();
  qwen3.model_type = "qwen3";
  qwen3.qk_norm = true;
  qwen3.head_dim = 12;
  auto w = RandomWeights(qwen3, 8);
  ASSERT_EQ(w.at("model.layers.0.self_attn.q_norm.weight").size(0), 12);
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto model,
      TrainingModel::Create(qwen3, TrainingModelOptions(), MapLoader(w)));
  EXPECT_TRUE(model->model().layers()[0].projection(kQProj).weight().sizes() ==
              torch::IntArrayRef({48, 32}));
  auto no_norm = w;
  no_norm.erase("model.layers.1.self_attn.k_norm.weight");
  EXPECT_THAT(
      TrainingModel::Create(qwen3, TrainingModelOptions(), MapLoader(no_norm)),
      StatusIs(absl::StatusCode::kNotFound,
               HasSubstr("layers.1.self_attn.k_norm.weight")));
  auto bad_norm = w;
  bad_norm["model.layers.0.self_attn.q_norm.weight"] = torch::ones({8});
  EXPECT_THAT(
      TrainingModel::Create(qwen3, TrainingModelOptions(), MapLoader(bad_norm)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("self_attn.q_norm.weight")));
  // The norm changes the output: the same weights without it differ.
  ModelConfig plain = qwen3;
  plain.model_type = "llama";
  plain.qk_norm = false;
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto without,
      TrainingModel::Create(plain, TrainingModelOptions(), MapLoader(w)));
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor ids = Ids(qwen3, 1, 6);
    EXPECT_FALSE(torch::allclose(model->Logits(ids), without->Logits(ids)));
  }

  ModelConfig qwen2 = TinyConfig();
  qwen2.model_type = "qwen2";
  qwen2.attention_bias = true;
  auto wb = RandomWeights(qwen2, 9);
  ASSERT_TRUE(wb.count("model.layers.0.self_attn.o_proj.bias"));
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto q2,
      TrainingModel::Create(qwen2, TrainingModelOptions(), MapLoader(wb)));
  EXPECT_TRUE(q2->model().layers()[0].projection(kQProj).bias().defined());
  EXPECT_FALSE(q2->model().layers()[0].projection(kOProj).bias().defined());
}

TEST(LlamaModel, BaseIsFrozenAndInBaseDtype) {
  ModelConfig config = TinyConfig();
  auto w = RandomWeights(config, 8);
  TrainingModelOptions options;
  options.base_dtype = torch::kBFloat16;
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto model, TrainingModel::Create(config, options, MapLoader(w)));
  EXPECT_EQ(model->model().embed_tokens().scalar_type(), torch::kBFloat16);
  EXPECT_FALSE(model->model().embed_tokens().requires_grad());
  EXPECT_FALSE(model->model().lm_head().requires_grad());
  torch::Tensor ids = Ids(config, 1, 8);
  torch::Tensor loss = model->Loss(ids, ids);
  EXPECT_EQ(model->Logits(ids).scalar_type(), torch::kBFloat16);
  EXPECT_EQ(loss.scalar_type(), torch::kFloat);
  loss.backward();
  for (auto& [name, p] : model->LoraParameters()) {
    EXPECT_TRUE(p.grad().defined()) << name;
    EXPECT_EQ(p.grad().scalar_type(), torch::kFloat) << name;
  }
}

}  // namespace
}  // namespace lemo::engine

namespace lemo::engine {
namespace {

// A custom layer forward that rebuilds the default from the layer's public
// parts gives the same loss and grads, with and without checkpointing; this is
// how LeMo plugs in.
TEST(LlamaModel, SetLayerForwardComposesFromPublicParts) {
  ModelConfig config = TinyConfig();
  auto w = RandomWeights(config, 10);
  torch::Tensor ids = Ids(config, 1, 16);
  TrainingModelOptions plain;
  auto reference = MakeModel(config, w, plain);
  ASSERT_TRUE(reference);
  LossRun want = LossAndGrads(*reference, ids);
  for (bool ckpt : {false, true}) {
    TrainingModelOptions options;
    options.gradient_checkpointing = ckpt;
    auto model = MakeModel(config, w, options);
    ASSERT_TRUE(model);
    int calls = 0;
    model->model().SetLayerForward(
        [&calls](int64_t, const DecoderLayer& layer, const torch::Tensor& x,
                 const torch::Tensor& cos, const torch::Tensor& sin,
                 bool training) {
          ++calls;
          torch::Tensor h =
              x + layer.Attention(layer.InputNorm(x), cos, sin, training);
          return h + layer.Mlp(layer.PostAttentionNorm(h), training);
        });
    LossRun got = LossAndGrads(*model, ids);
    EXPECT_EQ(got.loss, want.loss) << ckpt;
    for (size_t i = 0; i < got.grads.size(); ++i) {
      EXPECT_TRUE(torch::equal(got.grads[i].second, want.grads[i].second))
          << ckpt;
    }
    // Checkpointing runs each layer twice: forward, then the recompute in
    // backward.
    EXPECT_EQ(calls, config.num_hidden_layers * (ckpt ? 2 : 1));
  }
}

}  // namespace
}  // namespace lemo::engine

namespace lemo::engine {
namespace {

// Model + optimizer together: a few AdamW steps on one batch lower its loss,
// and only the adapters move.
TEST(LlamaModel, AdapterTrainingLowersTheLoss) {
  ModelConfig config = TinyConfig();
  auto w = RandomWeights(config, 12);
  TrainingModelOptions options;
  options.loss_segment_tokens = 8;
  options.gradient_checkpointing = true;
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto model, TrainingModel::Create(config, options, MapLoader(w)));
  OptimizerOptions o;
  o.lr = 1e-2;
  o.total_steps = 20;
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto opt, AdapterOptimizer::Create(model->LoraParameters(), o));
  const torch::Tensor embed_before = model->model().embed_tokens().clone();
  torch::Tensor ids = Ids(config, 2, 16);
  double first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    torch::Tensor loss = model->Loss(ids, ids);
    loss.backward();
    opt->Step();
    opt->ZeroGrad();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, first - 0.1);
  EXPECT_TRUE(torch::equal(model->model().embed_tokens(), embed_before));
}

}  // namespace
}  // namespace lemo::engine
