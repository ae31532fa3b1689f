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

// Qwen/Qwen2.5-7B-Instruct's config.json: no attention_bias field (q/k/v
// biases are implied), a sliding_window value that use_sliding_window turns
// off.
constexpr char kQwen25[] = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
  "intermediate_size": 18944, "max_position_embeddings": 32768, "max_window_layers": 28,
  "model_type": "qwen2", "num_attention_heads": 28, "num_hidden_layers": 28,
  "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 152064})";

// Qwen/Qwen3-8B's config.json: head_dim 128 given explicitly (hidden / heads
// is also 128 here; Qwen3-0.6B has 1024 / 16 = 64 but head_dim 128).
constexpr char kQwen3[] = R"({
  "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 12288,
  "max_position_embeddings": 40960, "max_window_layers": 36, "model_type": "qwen3",
  "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

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

TEST(ParseModelConfig, Qwen25HasQkvBiasAndNoSlidingWindow) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig(kQwen25, "qwen"));
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.eos_token_id, 151645);
}

TEST(ParseModelConfig, Qwen3HasQkNormAndItsOwnHeadDim) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig(kQwen3, "qwen3"));
  EXPECT_EQ(c.model_type, "qwen3");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
  // head_dim differs from hidden / heads when given; Qwen3Config defaults it
  // to 128 when absent, not to hidden / heads.
  LEMO_ASSERT_OK_AND_ASSIGN(
      c, ParseModelConfig(std::string(kMinimal) +
                              R"(, "model_type": "qwen3", "head_dim": 24})",
                          "explicit"));
  EXPECT_EQ(c.head_dim, 24);
  LEMO_ASSERT_OK_AND_ASSIGN(
      c, ParseModelConfig(std::string(kMinimal) + R"(, "model_type": "qwen3"})",
                          "absent"));
  EXPECT_EQ(c.head_dim, 128);
}

TEST(ParseModelConfig, QwenSlidingWindowAttentionIsRefused) {
  EXPECT_THAT(ParseError(R"(, "model_type": "qwen2", "use_sliding_window": true,
                    "sliding_window": 4096)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'use_sliding_window'"),
                             HasSubstr("must be false"))));
  EXPECT_THAT(ParseError(R"(, "model_type": "qwen3", "use_sliding_window": 1)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'use_sliding_window'")));
}

TEST(ParseModelConfig, Yarn) {
  // Qwen2.5's long-context recipe: factor 4 over a 32768-token original.
  LEMO_ASSERT_OK_AND_ASSIGN(
      ModelConfig c, ParseModelConfig(std::string(kMinimal) +
                                          R"(, "max_position_embeddings": 32768,
          "rope_scaling": {"type": "yarn", "factor": 4.0,
                           "original_max_position_embeddings": 32768}})",
                                      "yarn"));
  const RopeScaling& s = c.rope_scaling;
  EXPECT_EQ(s.type, RopeScaling::Type::kYarn);
  EXPECT_DOUBLE_EQ(s.factor, 4.0);
  EXPECT_EQ(s.original_max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(s.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(s.beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(s.attention_factor, 0.0);  // derived from factor
  EXPECT_TRUE(s.truncate);
  // Every field given; a missing factor is max_position / original, as HF.
  LEMO_ASSERT_OK_AND_ASSIGN(
      c, ParseModelConfig(
             std::string(kMinimal) + R"(, "max_position_embeddings": 8192,
          "rope_parameters": {"rope_type": "yarn", "original_max_position_embeddings": 2048,
                              "beta_fast": 16, "beta_slow": 2, "mscale": 0.707,
                              "mscale_all_dim": 0.5, "attention_factor": 1.25,
                              "truncate": false}})",
             "yarn2"));
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.beta_fast, 16.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.beta_slow, 2.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.mscale, 0.707);
  EXPECT_DOUBLE_EQ(c.rope_scaling.mscale_all_dim, 0.5);
  EXPECT_DOUBLE_EQ(c.rope_scaling.attention_factor, 1.25);
  EXPECT_FALSE(c.rope_scaling.truncate);
  EXPECT_THAT(
      ParseError(R"(, "rope_scaling": {"rope_type": "yarn", "factor": 0.5})"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("'rope_scaling.factor'")));
  EXPECT_THAT(ParseError(R"(, "rope_scaling": {"rope_type": "yarn", "factor": 2,
                                               "beta_fast": -1})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'rope_scaling.beta_fast'")));
  EXPECT_THAT(ParseError(R"(, "rope_scaling": {"rope_type": "yarn", "factor": 2,
                                               "truncate": "no"})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'rope_scaling.truncate'")));
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
  EXPECT_THAT(ParseError(R"(, "model_type": "gemma")"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'model_type'"), HasSubstr("\"qwen3\""),
                             HasSubstr("\"llama\""))));
  EXPECT_THAT(
      ParseError(R"(, "rope_scaling": {"rope_type": "longrope", "factor": 4})"),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          AllOf(HasSubstr("'rope_scaling.rope_type'"), HasSubstr("yarn"))));
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

TEST(ModelConfigToJson, RoundTripsQwenAndYarn) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig(kQwen3, "qwen3"));
  c.head_dim = 96;
  c.attention_bias = true;
  RopeScaling& s = c.rope_scaling;
  s.type = RopeScaling::Type::kYarn;
  s.factor = 4;
  s.original_max_position_embeddings = 8192;
  s.beta_fast = 16;
  s.mscale = 0.5;
  s.mscale_all_dim = 0.25;
  s.attention_factor = 1.5;
  s.truncate = false;
  const std::string json = ModelConfigToJson(c);
  EXPECT_THAT(json, AllOf(HasSubstr("Qwen3ForCausalLM"),
                          HasSubstr("\"use_sliding_window\": false")));
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig back, ParseModelConfig(json, "again"));
  EXPECT_EQ(back.model_type, "qwen3");
  EXPECT_TRUE(back.qk_norm);
  EXPECT_TRUE(back.attention_bias);
  EXPECT_EQ(back.head_dim, 96);
  EXPECT_EQ(back.rope_scaling.type, RopeScaling::Type::kYarn);
  EXPECT_DOUBLE_EQ(back.rope_scaling.factor, 4);
  EXPECT_EQ(back.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(back.rope_scaling.beta_fast, 16);
  EXPECT_DOUBLE_EQ(back.rope_scaling.beta_slow, 1);
  EXPECT_DOUBLE_EQ(back.rope_scaling.mscale, 0.5);
  EXPECT_DOUBLE_EQ(back.rope_scaling.mscale_all_dim, 0.25);
  EXPECT_DOUBLE_EQ(back.rope_scaling.attention_factor, 1.5);
  EXPECT_FALSE(back.rope_scaling.truncate);

  LEMO_ASSERT_OK_AND_ASSIGN(c, ParseModelConfig(kQwen25, "qwen2"));
  const std::string qwen2 = ModelConfigToJson(c);
  EXPECT_THAT(qwen2, HasSubstr("Qwen2ForCausalLM"));
  // Qwen2Config has no attention_bias: the biases come with the type.
  EXPECT_THAT(qwen2, ::testing::Not(HasSubstr("attention_bias")));
  LEMO_ASSERT_OK_AND_ASSIGN(back, ParseModelConfig(qwen2, "again"));
  EXPECT_EQ(back.model_type, "qwen2");
  EXPECT_TRUE(back.attention_bias);
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
  // YaRN covers original_max_position_embeddings x factor.
  c.rope_scaling.type = RopeScaling::Type::kYarn;
  c.rope_scaling.factor = 4;
  c.rope_scaling.original_max_position_embeddings = 4096;
  EXPECT_EQ(ContextLengthWarning(c, 16384), "");
  EXPECT_THAT(ContextLengthWarning(c, 16385), HasSubstr("16384 tokens"));
}

TEST(LoadModelConfig, MissingFileIsNotFound) {
  EXPECT_THAT(LoadModelConfig("/nonexistent/model").status(),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("/nonexistent/model/config.json")));
}

TEST(OverrideRopeScaling, ReplacesTheFilesScalingReadTheSameWay) {
  // What lemo-train --rope-scaling and a job's spec.model.ropeScaling give:
  // Llama-2 (4K, no scaling) extended by YaRN, whose pretraining context
  // defaults to the file's max_position_embeddings as transformers does.
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig(kLlama2, "llama2"));
  ASSERT_THAT(OverrideRopeScaling(R"({"rope_type": "yarn", "factor": 8})",
                                  "--rope-scaling", &c),
              ::lemo::testing::IsOk());
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kYarn);
  EXPECT_EQ(c.rope_scaling.factor, 8);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_EQ(c.rope_theta, 10000.0);  // the model's base is kept
  EXPECT_EQ(ContextLengthWarning(c, 32768), "");
  // It replaces, not merges: Llama-3.1's llama3 scaling becomes linear.
  LEMO_ASSERT_OK_AND_ASSIGN(c, ParseModelConfig(kLlama31, "llama3.1"));
  ASSERT_THAT(OverrideRopeScaling(R"({"rope_type": "linear", "factor": 2})",
                                  "--rope-scaling", &c),
              ::lemo::testing::IsOk());
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_EQ(c.rope_scaling.factor, 2);
  // "default" turns scaling off.
  ASSERT_THAT(OverrideRopeScaling(R"({"rope_type": "default"})", "x", &c),
              ::lemo::testing::IsOk());
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
}

TEST(OverrideRopeScaling, BadOverridesNameTheSourceAndKey) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig(kLlama2, "llama2"));
  EXPECT_THAT(OverrideRopeScaling("[1]", "--rope-scaling", &c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--rope-scaling: rope_scaling must be a JSON object"));
  EXPECT_THAT(
      OverrideRopeScaling(R"({"rope_type": "ntk"})", "--rope-scaling", &c),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("--rope-scaling"),
                     HasSubstr("rope_scaling.rope_type"))));
  EXPECT_THAT(OverrideRopeScaling(R"({"rope_type": "linear", "factor": 0.5})",
                                  "--rope-scaling", &c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rope_scaling.factor")));
  EXPECT_THAT(
      OverrideRopeScaling(R"({"rope_type": "linear"})", "--rope-scaling", &c),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("rope_scaling.factor")));
}

}  // namespace
}  // namespace lemo::engine
