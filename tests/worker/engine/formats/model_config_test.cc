// Tests for worker/engine/formats/model_config.h. To add a case: paste the
// config.json (or the field that should fail) into a raw string and check the
// parsed fields or the error's field name.
#include "worker/engine/formats/model_config.h"

#include <string>

#include "tests/testing/status_matchers.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// meta-llama/Llama-2-7b-hf's config.json (transformers 4.3x era).
constexpr char kLlama2[] = R"({
  "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "tie_word_embeddings": false,
  "torch_dtype": "float16", "transformers_version": "4.31.0.dev0", "use_cache": true,
  "vocab_size": 32000})";

// meta-llama/Llama-3.1-8B's config.json.
constexpr char kLlama31[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "use_cache": true, "vocab_size": 128256})";

// mistralai/Mistral-7B-v0.1's config.json.
constexpr char kMistral[] = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true,
  "vocab_size": 32000})";

// What transformers 5.17 writes for a Llama-3 style config (rope_parameters, no
// rope_theta).
constexpr char kTransformers5[] = R"({
  "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2, "head_dim": 16,
  "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 172,
  "max_position_embeddings": 16384, "model_type": "llama", "num_attention_heads": 4,
  "num_hidden_layers": 2, "num_key_value_heads": 2, "pad_token_id": null, "rms_norm_eps": 1e-06,
  "rope_parameters": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192, "rope_theta": 500000.0,
                      "rope_type": "llama3"},
  "tie_word_embeddings": true, "vocab_size": 320})";

constexpr char kMinimal[] =
    R"({"vocab_size": 320, "hidden_size": 64, "intermediate_size": 172,
        "num_hidden_layers": 2, "num_attention_heads": 4)";

absl::Status ParseError(const std::string& extra_fields) {
  return ParseModelConfig(std::string(kMinimal) + extra_fields + "}",
                          "cfg.json")
      .status();
}

TEST(ParseModelConfig, Llama2) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig(kLlama2, "llama2"));
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.num_key_value_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_EQ(c.torch_dtype, "float16");
  EXPECT_FALSE(c.tie_word_embeddings);
}

TEST(ParseModelConfig, Llama31WithLlama3RopeAndSeveralEos) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c,
                            ParseModelConfig(kLlama31, "llama3.1"));
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_id, 128001);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(128001, 128008, 128009));
}

TEST(ParseModelConfig, MistralGqaKeepsSlidingWindow) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c,
                            ParseModelConfig(kMistral, "mistral"));
  EXPECT_EQ(c.model_type, "mistral");
  EXPECT_EQ(c.num_attention_heads / c.num_key_value_heads, 4);
  EXPECT_EQ(c.sliding_window, 4096);
}

TEST(ParseModelConfig, Transformers5RopeParameters) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c,
                            ParseModelConfig(kTransformers5, "tf5"));
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.pad_token_id, -1);
}

TEST(ParseModelConfig, LegacyLinearAndDynamicScaling) {
  const std::string linear =
      std::string(kMinimal) +
      R"(, "rope_theta": 20000, "rope_scaling": {"type": "linear",
                                "factor": 2.0}})";
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig(linear, "linear"));
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 20000.0);
  const std::string dynamic =
      std::string(kMinimal) +
      R"(, "rope_parameters": {"rope_type": "dynamic", "factor": 4}})";
  LEMO_ASSERT_OK_AND_ASSIGN(c, ParseModelConfig(dynamic, "dynamic"));
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kDynamic);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
}

TEST(ParseModelConfig, DefaultsFollowTransformers) {
  LEMO_ASSERT_OK_AND_ASSIGN(
      ModelConfig c, ParseModelConfig(std::string(kMinimal) + "}", "min"));
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);
}

TEST(ParseModelConfig, ErrorsNameTheField) {
  EXPECT_THAT(
      ParseError(R"(, "hidden_act": "gelu")"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("cfg.json"), HasSubstr("'hidden_act'"))));
  EXPECT_THAT(
      ParseModelConfig(R"({"vocab_size": 3})", "cfg.json").status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("'hidden_size'"), HasSubstr("required"))));
  EXPECT_THAT(ParseError(R"(, "num_key_value_heads": 3)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'num_key_value_heads'")));
  EXPECT_THAT(ParseError(R"(, "rms_norm_eps": "small")"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'rms_norm_eps'")));
  EXPECT_THAT(ParseError(R"(, "tie_word_embeddings": 1)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'tie_word_embeddings'")));
  EXPECT_THAT(ParseError(R"(, "max_position_embeddings": -5)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'max_position_embeddings'")));
  EXPECT_THAT(
      ParseError(R"(, "model_type": "qwen2")"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'model_type'")));
  EXPECT_THAT(
      ParseError(R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4})"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("'rope_scaling.rope_type'")));
  EXPECT_THAT(ParseError(R"(, "rope_parameters": {"rope_type": "linear"})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'rope_parameters.factor'"),
                             HasSubstr("required"))));
  EXPECT_THAT(
      ParseError(
          R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 4,
                    "high_freq_factor": 1})"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("'rope_scaling.high_freq_factor'")));
  EXPECT_THAT(
      ParseModelConfig("{not json", "cfg.json").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not JSON")));
}

TEST(ModelConfigToJson, RoundTripsEveryField) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c,
                            ParseModelConfig(kLlama31, "llama3.1"));
  c.attention_bias = true;
  c.mlp_bias = true;
  c.tie_word_embeddings = true;
  c.head_dim = 64;
  EXPECT_FALSE(c.random_init);  // a real model's config.json
  c.random_init = true;
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig back,
                            ParseModelConfig(ModelConfigToJson(c), "again"));
  EXPECT_TRUE(back.random_init);
  EXPECT_EQ(back.vocab_size, c.vocab_size);
  EXPECT_EQ(back.head_dim, 64);
  EXPECT_EQ(back.num_key_value_heads, c.num_key_value_heads);
  EXPECT_EQ(back.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(back.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(back.rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(back.rms_norm_eps, c.rms_norm_eps);
  EXPECT_TRUE(back.attention_bias);
  EXPECT_TRUE(back.mlp_bias);
  EXPECT_TRUE(back.tie_word_embeddings);
  EXPECT_EQ(back.eos_token_ids, c.eos_token_ids);
  EXPECT_EQ(back.torch_dtype, "bfloat16");
}

TEST(ContextLengthWarning, OnlyPastTheDeclaredContext) {
  ModelConfig c;
  c.max_position_embeddings = 4096;
  EXPECT_EQ(ContextLengthWarning(c, 4096), "");
  EXPECT_THAT(
      ContextLengthWarning(c, 32768),
      AllOf(HasSubstr("32768"), HasSubstr("4096"), HasSubstr("\"factor\": 8")));
  // Linear scaling (position interpolation) extends it by its factor.
  c.rope_scaling.type = RopeScaling::Type::kLinear;
  c.rope_scaling.factor = 8;
  EXPECT_EQ(ContextLengthWarning(c, 32768), "");
  EXPECT_THAT(ContextLengthWarning(c, 65536), HasSubstr("32768 tokens"));
  // Dynamic NTK scaling adapts to any length.
  c.rope_scaling.type = RopeScaling::Type::kDynamic;
  EXPECT_EQ(ContextLengthWarning(c, 1 << 20), "");
}

TEST(LoadModelConfig, MissingFileIsNotFound) {
  EXPECT_THAT(LoadModelConfig("/nonexistent/model").status(),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("/nonexistent/model/config.json")));
}

}  // namespace
}  // namespace lemo::engine
