// Tests for worker/engine/model/init_model.h. To add a case: start from
// PresetConfig("tiny"), change the config field under test, write it with
// WriteRandomModel and check it through ModelWeights (and, for loader
// compatibility, through ExpectHfLoadsSame, which runs transformers).
#include "worker/engine/model/init_model.h"
#include "common/sha256.h"

#include <torch/torch.h>

#include "common/atomic_file.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/engine_test_util.h"
#include "worker/engine/model/safetensors.h"

namespace lemo::engine {
namespace {

using ::lemo::engine::testing::MakeTempDir;
using ::lemo::engine::testing::RunPython;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

int64_t NumParameters(const ModelConfig& c) {
  int64_t n = 0;
  for (const TensorEntry& e : LlamaTensorEntries(c, DType::kBF16)) {
    n += e.NumElements();
  }
  return n;
}

TEST(PresetConfig, TinyMatchesTheSharedContract) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig("tiny"));
  EXPECT_EQ(c.vocab_size, 320);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_THAT(PresetConfig("llama9").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("known: llama2-7b, llama3-8b")));
}

TEST(PresetConfig, FullSizePresetsHaveThePublishedParameterCounts) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig l2, PresetConfig("llama2-7b"));
  EXPECT_EQ(NumParameters(l2), 6738415616);
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig l3, PresetConfig("llama3-8b"));
  EXPECT_EQ(NumParameters(l3), 8030261248);
  EXPECT_EQ(l3.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(l3.num_key_value_heads, 8);
  EXPECT_DOUBLE_EQ(l3.rope_theta, 500000.0);
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig m, PresetConfig("mistral-7b"));
  EXPECT_EQ(NumParameters(m), 7241732096);
  // Every preset survives its own config.json.
  for (const std::string& name : PresetNames()) {
    LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig(name));
    EXPECT_THAT(ParseModelConfig(ModelConfigToJson(c), name), IsOk());
  }
}

// Random weights ship no tokenizer: the directory says so in config.json, so
// text data defaults to the byte tokenizer (ResolveTokenizerSpec).
TEST(WriteRandomModel, MarksTheDirectoryAsRandomWeights) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig("tiny"));
  EXPECT_TRUE(c.random_init);
  c.random_init = false;  // a caller's own config is marked too
  const std::string dir = MakeTempDir("init-marker") + "/m";
  ASSERT_THAT(WriteRandomModel(c, dir, torch::kFloat32, 1), IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig back, LoadModelConfig(dir));
  EXPECT_TRUE(back.random_init);
}

TEST(WriteRandomModel, DeterministicNormsOnesAndInitializerStd) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig("tiny"));
  const std::string a = MakeTempDir("init") + "/m", b = a + "2", d = a + "3";
  ASSERT_THAT(WriteRandomModel(c, a, torch::kFloat32, 7), IsOk());
  ASSERT_THAT(WriteRandomModel(c, b, torch::kFloat32, 7), IsOk());
  ASSERT_THAT(WriteRandomModel(c, d, torch::kFloat32, 8), IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(std::string ha,
                            Sha256File(a + "/model.safetensors"));
  LEMO_ASSERT_OK_AND_ASSIGN(std::string hb,
                            Sha256File(b + "/model.safetensors"));
  LEMO_ASSERT_OK_AND_ASSIGN(std::string hd,
                            Sha256File(d + "/model.safetensors"));
  EXPECT_EQ(ha, hb);
  EXPECT_NE(ha, hd);

  LEMO_ASSERT_OK_AND_ASSIGN(auto weights, ModelWeights::Open(a));
  EXPECT_EQ(weights->Names().size(), 2u + 2 * 9 + 1);
  LEMO_ASSERT_OK_AND_ASSIGN(
      torch::Tensor norm,
      weights->Get("model.layers.1.input_layernorm.weight"));
  EXPECT_TRUE(torch::equal(norm, torch::ones({64})));
  LEMO_ASSERT_OK_AND_ASSIGN(
      torch::Tensor k, weights->Get("model.layers.0.self_attn.k_proj.weight"));
  EXPECT_EQ(k.sizes(), (std::vector<int64_t>{32, 64}));
  LEMO_ASSERT_OK_AND_ASSIGN(torch::Tensor emb,
                            weights->Get("model.embed_tokens.weight"));
  EXPECT_NEAR(emb.std().item<double>(), 0.02, 0.001);
  EXPECT_NEAR(emb.mean().item<double>(), 0.0, 0.001);
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig back, LoadModelConfig(a));
  EXPECT_EQ(back.torch_dtype, "float32");
}

TEST(WriteRandomModel, ShardsAboveTheLimitWithTheSameValues) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig("tiny"));
  const std::string dir = MakeTempDir("init");
  ASSERT_THAT(WriteRandomModel(c, dir + "/one", torch::kBFloat16, 3), IsOk());
  RandomModelOptions options;
  options.dtype = torch::kBFloat16;
  options.seed = 3;
  options.max_shard_bytes = 64 << 10;
  ASSERT_THAT(WriteRandomModel(c, dir + "/many", options), IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(auto one, ModelWeights::Open(dir + "/one"));
  LEMO_ASSERT_OK_AND_ASSIGN(auto many, ModelWeights::Open(dir + "/many"));
  EXPECT_EQ(one->num_files(), 1u);
  EXPECT_GT(many->num_files(), 3u);
  ASSERT_EQ(one->Names(), many->Names());
  for (const std::string& name : one->Names()) {
    LEMO_ASSERT_OK_AND_ASSIGN(torch::Tensor x, one->Get(name));
    LEMO_ASSERT_OK_AND_ASSIGN(torch::Tensor y, many->Get(name));
    EXPECT_EQ(x.scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(torch::equal(x, y)) << name;
  }
  LEMO_ASSERT_OK_AND_ASSIGN(
      std::string index_text,
      ReadFileToString(dir + "/many/model.safetensors.index.json"));
  auto index = nlohmann::json::parse(index_text);
  EXPECT_EQ(
      index["weight_map"]["model.norm.weight"].get<std::string>().find("-of-"),
      11u);
}

TEST(WriteRandomModel, RejectsBadConfigsAndDTypes) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig("tiny"));
  const std::string dir = MakeTempDir("init") + "/m";
  EXPECT_THAT(WriteRandomModel(c, dir, torch::kInt64, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dtype")));
  c.num_key_value_heads = 3;
  EXPECT_THAT(WriteRandomModel(c, dir, torch::kFloat32, 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("num_key_value_heads")));
}

// Loads `dir` with transformers and checks every tensor it holds equals what
// ModelWeights reads; returns the metadata hf_load_model.py records.
std::map<std::string, std::string> ExpectHfLoadsSame(const std::string& dir,
                                                     bool tied) {
  const std::string out = dir + ".hf.safetensors";
  auto r = RunPython("tests/worker/engine/hf_load_model.py " + dir + " " + out);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  if (r.exit_code != 0) return {};
  auto weights = ModelWeights::Open(dir);
  auto hf = SafetensorsFile::Open(out);
  EXPECT_THAT(weights, IsOk());
  EXPECT_THAT(hf, IsOk());
  if (!weights.ok() || !hf.ok()) return {};
  size_t compared = 0;
  for (const TensorEntry& e : (*hf)->header().tensors) {
    const std::string name = tied && e.name == "lm_head.weight"
                                 ? "model.embed_tokens.weight"
                                 : e.name;
    auto mine = (*weights)->Get(name);
    EXPECT_THAT(mine, IsOk()) << e.name;
    if (!mine.ok()) continue;
    torch::Tensor theirs = (*hf)->Tensor(e.name).value();
    EXPECT_TRUE(torch::equal(theirs.to(mine->scalar_type()), *mine)) << e.name;
    ++compared;
  }
  EXPECT_EQ(compared, (*weights)->Names().size() + (tied ? 1 : 0));
  return (*hf)->header().metadata;
}

TEST(WriteRandomModel, TransformersLoadsTinyModel) {
  LEMO_SKIP_WITHOUT_PYTHON();
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig("tiny"));
  const std::string dir = MakeTempDir("hf") + "/tiny";
  ASSERT_THAT(WriteRandomModel(c, dir, torch::kFloat32, 1), IsOk());
  auto meta = ExpectHfLoadsSame(dir, /*tied=*/false);
  EXPECT_EQ(meta["class"], "LlamaForCausalLM");
  EXPECT_EQ(meta["num_key_value_heads"], "2");
  EXPECT_EQ(meta["rope_parameters"],
            R"({"rope_theta": 10000.0, "rope_type": "default"})");
}

TEST(WriteRandomModel, TransformersLoadsTiedBiasedLlama3RopeShardedBf16) {
  LEMO_SKIP_WITHOUT_PYTHON();
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig("tiny"));
  c.tie_word_embeddings = true;
  c.attention_bias = true;
  c.mlp_bias = true;
  c.rope_theta = 500000.0;
  c.rope_scaling = {RopeScaling::Type::kLlama3, 8.0, 1.0, 4.0, 1024};
  RandomModelOptions options;
  options.dtype = torch::kBFloat16;
  options.seed = 2;
  options.max_shard_bytes = 32 << 10;
  const std::string dir = MakeTempDir("hf") + "/tied";
  ASSERT_THAT(WriteRandomModel(c, dir, options), IsOk());
  auto meta = ExpectHfLoadsSame(dir, /*tied=*/true);
  EXPECT_EQ(meta["tie_word_embeddings"], "True");
  EXPECT_EQ(
      meta["rope_parameters"],
      R"({"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, )"
      R"("original_max_position_embeddings": 1024, "rope_theta": 500000.0, )"
      R"("rope_type": "llama3"})");
}

TEST(WriteRandomModel, TransformersLoadsMistral) {
  LEMO_SKIP_WITHOUT_PYTHON();
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig("tiny"));
  c.model_type = "mistral";
  const std::string dir = MakeTempDir("hf") + "/mistral";
  ASSERT_THAT(WriteRandomModel(c, dir, torch::kFloat32, 4), IsOk());
  auto meta = ExpectHfLoadsSame(dir, /*tied=*/false);
  EXPECT_EQ(meta["class"], "MistralForCausalLM");
}

// Qwen2 (q/k/v biases, no o_proj bias, tied) and Qwen3 (q/k norms, its own
// head_dim, YaRN): from_pretrained must find exactly the weights we write.
TEST(WriteRandomModel, TransformersLoadsQwen2AndQwen3) {
  LEMO_SKIP_WITHOUT_PYTHON();
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig("tiny"));
  ModelConfig qwen2 = c;
  qwen2.model_type = "qwen2";
  qwen2.attention_bias = true;
  qwen2.tie_word_embeddings = true;
  const std::string dir2 = MakeTempDir("hf") + "/qwen2";
  ASSERT_THAT(WriteRandomModel(qwen2, dir2, torch::kFloat32, 5), IsOk());
  auto meta = ExpectHfLoadsSame(dir2, /*tied=*/true);
  EXPECT_EQ(meta["class"], "Qwen2ForCausalLM");

  ModelConfig qwen3 = c;
  qwen3.model_type = "qwen3";
  qwen3.qk_norm = true;
  qwen3.head_dim = 24;
  qwen3.rope_scaling.type = RopeScaling::Type::kYarn;
  qwen3.rope_scaling.factor = 4;
  qwen3.rope_scaling.original_max_position_embeddings = 1024;
  const std::string dir3 = MakeTempDir("hf") + "/qwen3";
  ASSERT_THAT(WriteRandomModel(qwen3, dir3, torch::kFloat32, 6), IsOk());
  meta = ExpectHfLoadsSame(dir3, /*tied=*/false);
  EXPECT_EQ(meta["class"], "Qwen3ForCausalLM");
  EXPECT_EQ(meta["head_dim"], "24");
  EXPECT_THAT(meta["rope_parameters"],
              AllOf(HasSubstr(R"("rope_type": "yarn")"),
                    HasSubstr(R"("factor": 4.0)")));
}

}  // namespace
}  // namespace lemo::engine
