// Tests for common/plan/model_shape.h: sizes from a HF config.json and the
// presets. To add a case: a config text and the shape it must give, or a
// {config text, key named} row to
// ModelShapeFromConfigJson.BadConfigsNameTheKey.
#include "common/plan/model_shape.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lemo::plan {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

// The llama2-7b config.json the benchmark suite ran
// (bench/results/*/meta.json).
constexpr char kLlama2[] =
    R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
  "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
  "head_dim": 128, "max_position_embeddings": 4096, "hidden_act": "silu",
  "tie_word_embeddings": false, "torch_dtype": "bfloat16"})";

TEST(ModelShapeFromConfigJson, ReadsTheBenchmarkConfigAsThePreset) {
  absl::StatusOr<ModelShape> parsed = ModelShapeFromConfigJson(kLlama2);
  ASSERT_THAT(parsed.status(), IsOk());
  absl::StatusOr<ModelShape> preset = ModelShapeForPreset("llama2-7b");
  ASSERT_THAT(preset.status(), IsOk());
  EXPECT_EQ(parsed->hidden_size, 4096);
  EXPECT_EQ(parsed->num_layers, 32);
  EXPECT_EQ(parsed->weight_bytes, 2);
  EXPECT_EQ(FrozenParameterCount(*parsed), FrozenParameterCount(*preset));
  EXPECT_EQ(FrozenParameterCount(*parsed),
            6738415616);  // Llama-2-7B's parameter count
}

TEST(ModelShapeFromConfigJson, DefaultsAsTransformers) {
  // No num_key_value_heads: multi-head; no head_dim: hidden / heads; fp32
  // weights: 4 bytes.
  absl::StatusOr<ModelShape> s = ModelShapeFromConfigJson(
      R"({"vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
          "num_hidden_layers": 2, "num_attention_heads": 4, "torch_dtype": "float32",
          "tie_word_embeddings": true})");
  ASSERT_THAT(s.status(), IsOk());
  EXPECT_EQ(s->num_kv_heads, 4);
  EXPECT_EQ(s->head_dim, 16);
  EXPECT_EQ(s->weight_bytes, 4);
  EXPECT_TRUE(s->tie_word_embeddings);
  // Qwen3: head_dim 128 unless given, per-head q/k norms; transformers 5's
  // "dtype".
  absl::StatusOr<ModelShape> q = ModelShapeFromConfigJson(
      R"({"model_type": "qwen3", "vocab_size": 100, "hidden_size": 64,
          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "dtype": "bfloat16"})");
  ASSERT_THAT(q.status(), IsOk());
  EXPECT_EQ(q->head_dim, 128);
  EXPECT_TRUE(q->qk_norm);
  // Qwen2: q/k/v biases, none on o_proj.
  absl::StatusOr<ModelShape> q2 = ModelShapeFromConfigJson(
      R"({"model_type": "qwen2", "vocab_size": 100, "hidden_size": 64,
          "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4})");
  ASSERT_THAT(q2.status(), IsOk());
  ModelShape no_bias = *q2;
  no_bias.attention_bias = false;
  EXPECT_EQ(FrozenParameterCount(*q2) - FrozenParameterCount(no_bias), 3 * 64);
}

TEST(ModelShapeFromConfigJson, BadConfigsNameTheKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "not JSON"},
      {"[1]", "not a JSON object"},
      {R"({"hidden_size": 64})", "vocab_size"},
      {R"({"vocab_size": 10, "hidden_size": "64"})", "hidden_size"},
      {R"({"vocab_size": 10, "hidden_size": 64, "intermediate_size": 0})",
       "intermediate_size"},
      {R"({"vocab_size": 10, "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 5})",
       "head_dim"},
      {R"({"vocab_size": 10, "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 4, "num_key_value_heads": 3})",
       "num_kv_heads"},
      {R"({"vocab_size": 10, "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 4, "tie_word_embeddings": "yes"})",
       "tie_word_embeddings"},
      {R"({"vocab_size": 10, "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 4, "torch_dtype": "int8"})",
       "torch_dtype"},
  };
  for (const auto& [text, key] : cases) {
    SCOPED_TRACE(text);
    EXPECT_THAT(ModelShapeFromConfigJson(text).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(key)));
  }
}

TEST(ModelShapeForPreset, KnowsTheInitModelPresets) {
  // worker/engine/model/init_model.cc Presets().
  const std::vector<std::string> names = PresetNames();
  EXPECT_EQ(names, (std::vector<std::string>{"llama2-7b", "llama3-8b",
                                             "mistral-7b", "small", "tiny"}));
  absl::StatusOr<ModelShape> l3 = ModelShapeForPreset("llama3-8b");
  ASSERT_THAT(l3.status(), IsOk());
  EXPECT_EQ(l3->vocab_size, 128256);
  EXPECT_EQ(l3->num_kv_heads, 8);
  EXPECT_EQ(l3->intermediate_size, 14336);
  absl::StatusOr<ModelShape> small = ModelShapeForPreset("small");
  ASSERT_THAT(small.status(), IsOk());
  EXPECT_EQ(small->hidden_size, 256);
  EXPECT_EQ(small->head_dim, 32);
  EXPECT_THAT(ModelShapeForPreset("llama-70b").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tiny")));
}

}  // namespace
}  // namespace lemo::plan
