// Spec validation: one case per validated field, each breaking only that field
// of a valid spec and expecting INVALID_ARGUMENT that names it. To add a case:
// a row in kCases below. The model architecture check (config.json) has its
// own tests at the end: to add one, write a model directory with ModelDir and
// normalize a spec that points at it.
#include "proto/validation/spec_validation.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "absl/strings/str_join.h"
#include "tests/testing/job_specs.h"
#include "tests/testing/status_matchers.h"

namespace lemo::proto {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::lemo::testing::ValidSpec;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

struct Case {
  const char* name;
  std::function<void(v1::JobSpec*)> breaks;
  const char* message;  // Expected in the error, starting with the field.
};

const Case kCases[] = {
    {"DisplayName",
     [](v1::JobSpec* s) { s->set_display_name(std::string(129, 'x')); },
     "spec.display_name:"},
    {"LabelKey", [](v1::JobSpec* s) { (*s->mutable_labels())[""] = "v"; },
     "spec.labels:"},
    {"LabelValue",
     [](v1::JobSpec* s) {
       (*s->mutable_labels())["k"] = std::string(300, 'v');
     },
     "spec.labels.k:"},
    {"SeqLenZero", [](v1::JobSpec* s) { s->set_seq_len(0); },
     "spec.seq_len: must be > 0"},
    {"SeqLenHuge", [](v1::JobSpec* s) { s->set_seq_len(int64_t{1} << 40); },
     "spec.seq_len:"},
    {"Steps", [](v1::JobSpec* s) { s->set_steps(-1); },
     "spec.steps: must be > 0"},
    {"BatchSize", [](v1::JobSpec* s) { s->set_batch_size(-2); },
     "spec.batch_size:"},
    {"GradAccum", [](v1::JobSpec* s) { s->set_grad_accum(-1); },
     "spec.grad_accum:"},
    {"MaxRestarts", [](v1::JobSpec* s) { s->set_max_restarts(-1); },
     "spec.max_restarts:"},
    {"Priority", [](v1::JobSpec* s) { s->set_priority(5000); },
     "spec.priority:"},
    {"ModelPath", [](v1::JobSpec* s) { s->mutable_model()->clear_path(); },
     "spec.model.path: is required"},
    {"ModelPathDotDot",
     [](v1::JobSpec* s) { s->mutable_model()->set_path("/models/../etc"); },
     "spec.model.path: has a \"..\" component"},
    {"ModelDtype",
     [](v1::JobSpec* s) {
       s->mutable_model()->set_dtype(static_cast<v1::DType>(77));
     },
     "spec.model.dtype:"},
    {"DataPath", [](v1::JobSpec* s) { s->mutable_data()->clear_path(); },
     "spec.data.path: is required"},
    {"DataPathDotDot",
     [](v1::JobSpec* s) {
       s->mutable_data()->set_path("../../etc/shadow.jsonl");
     },
     "spec.data.path: has a \"..\" component"},
    {"DataFormat",
     [](v1::JobSpec* s) { s->mutable_data()->set_path("/data/corpus.bin"); },
     "spec.data.format:"},
    {"DataTokenizer",
     [](v1::JobSpec* s) {
       s->mutable_data()->set_tokenizer(std::string(5000, 't'));
     },
     "spec.data.tokenizer:"},
    {"ChatTemplateUnknown",
     [](v1::JobSpec* s) {
       s->mutable_data()->set_format(v1::CHAT);
       s->mutable_data()->set_tokenizer("/models/qwen2");
       s->mutable_data()->set_chat_template("vicuna");
     },
     "spec.data.chat_template: unknown template \"vicuna\""},
    {"ChatTemplateWithoutChat",
     [](v1::JobSpec* s) { s->mutable_data()->set_chat_template("chatml"); },
     "spec.data.chat_template: is only used with format CHAT"},
    {"ChatTemplateNeededWithByteTokenizer",
     [](v1::JobSpec* s) {
       s->mutable_data()->set_format(v1::CHAT);
       s->mutable_data()->set_tokenizer("byte");
     },
     "spec.data.chat_template: is required with the byte tokenizer"},
    {"OnBadSample",
     [](v1::JobSpec* s) { s->mutable_data()->set_on_bad_sample("drop"); },
     "spec.data.on_bad_sample: unknown policy \"drop\""},
    {"LoraRank", [](v1::JobSpec* s) { s->mutable_lora()->set_r(-4); },
     "spec.lora.r:"},
    {"LoraAlpha", [](v1::JobSpec* s) { s->mutable_lora()->set_alpha(-1); },
     "spec.lora.alpha:"},
    {"LoraDropout", [](v1::JobSpec* s) { s->mutable_lora()->set_dropout(1.5); },
     "spec.lora.dropout: must be in [0, 1)"},
    {"LoraTargetModules",
     [](v1::JobSpec* s) { s->mutable_lora()->add_target_modules("qkv"); },
     "spec.lora.target_modules: unknown module \"qkv\""},
    {"LemoMode",
     [](v1::JobSpec* s) {
       s->mutable_lemo()->set_mode(static_cast<v1::LemoMode>(9));
     },
     "spec.lemo.mode:"},
    {"KeepRatioPerLayer",
     [](v1::JobSpec* s) {
       s->mutable_lemo()->mutable_keep_ratio()->add_per_layer(1.0);
       s->mutable_lemo()->mutable_keep_ratio()->add_per_layer(0.0);
     },
     "spec.lemo.keep_ratio.per_layer[1]:"},
    {"KeepRatioDefault",
     [](v1::JobSpec* s) {
       s->mutable_lemo()->mutable_keep_ratio()->set_default_ratio(2);
     },
     "spec.lemo.keep_ratio.default_ratio:"},
    {"AdaptiveTau",
     [](v1::JobSpec* s) {
       s->mutable_lemo()->mutable_adaptive()->set_tau(-0.5);
     },
     "spec.lemo.adaptive.tau:"},
    {"AdaptiveMinKeep",
     [](v1::JobSpec* s) {
       s->mutable_lemo()->mutable_adaptive()->set_min_keep(1.5);
     },
     "spec.lemo.adaptive.min_keep:"},
    {"AdaptiveMaxKeep",
     [](v1::JobSpec* s) {
       s->mutable_lemo()->mutable_adaptive()->set_min_keep(0.5);
       s->mutable_lemo()->mutable_adaptive()->set_max_keep(0.3);
     },
     "spec.lemo.adaptive.max_keep:"},
    {"PredictorPath",
     [](v1::JobSpec* s) { s->mutable_lemo()->set_mode(v1::PREDICTOR); },
     "spec.lemo.predictor_path: is required"},
    {"PredictorPathDotDot",
     [](v1::JobSpec* s) {
       s->mutable_lemo()->set_mode(v1::PREDICTOR);
       s->mutable_lemo()->set_predictor_path("/data/p/../../root");
     },
     "spec.lemo.predictor_path: has a \"..\" component"},
    {"PredictorRecallEveryNegative",
     [](v1::JobSpec* s) {
       s->mutable_lemo()->set_mode(v1::PREDICTOR);
       s->mutable_lemo()->set_predictor_path("/models/predictors");
       s->mutable_lemo()->set_predictor_recall_every(-1);
     },
     "spec.lemo.predictor_recall_every: must be >= 0"},
    {"PredictorRecallEveryWithoutPredictor",
     [](v1::JobSpec* s) {
       s->mutable_lemo()->set_mode(v1::ORACLE);
       s->mutable_lemo()->set_predictor_recall_every(5);
     },
     "spec.lemo.predictor_recall_every: is used only with lemo.mode "
     "PREDICTOR"},
    {"MlpPruneRatio",
     [](v1::JobSpec* s) {
       s->mutable_lemo()->mutable_mlp_sparsity()->set_prune_ratio(1.0);
     },
     "spec.lemo.mlp_sparsity.prune_ratio:"},
    {"LossSegmentTokens",
     [](v1::JobSpec* s) { s->mutable_lemo()->set_loss_segment_tokens(-1); },
     "spec.lemo.loss_segment_tokens:"},
    {"MlpSparsityWithMlpLoraDropout",
     [](v1::JobSpec* s) {
       s->mutable_lemo()->mutable_mlp_sparsity()->set_enabled(true);
       s->mutable_lora()->set_dropout(0.1);
       s->mutable_lora()->add_target_modules("up_proj");
     },
     "spec.lemo.mlp_sparsity: not supported with lora.dropout > 0 on up_proj"},
    {"RecomputeNormWithMlpLoraDropout",
     [](v1::JobSpec* s) {
       s->mutable_lemo()->set_recompute_norm(true);
       s->mutable_lora()->set_dropout(0.1);
       s->mutable_lora()->add_target_modules("down_proj");
     },
     "spec.lemo.recompute_norm: not supported with lora.dropout > 0 on "
     "down_proj"},
    {"RecomputeMlpWithMlpLoraDropout",
     [](v1::JobSpec* s) {
       s->mutable_lemo()->set_recompute_mlp(true);
       s->mutable_lora()->set_dropout(0.1);
       s->mutable_lora()->add_target_modules("gate_proj");
     },
     "spec.lemo.recompute_mlp: not supported with lora.dropout > 0 on "
     "gate_proj"},
    {"Offload", [](v1::JobSpec* s) { s->mutable_lemo()->set_offload(true); },
     "spec.lemo.offload: needs resources.device_kind CUDA"},
    {"ModelOffloadPolicy",
     [](v1::JobSpec* s) { s->mutable_model()->set_offload("disk"); },
     "spec.model.offload: must be auto, none, uniform or sparsity, got "
     "\"disk\""},
    {"ModelOffloadWithoutCheckpointing",
     [](v1::JobSpec* s) { s->mutable_model()->set_offload("uniform"); },
     "spec.model.offload: moves checkpointed layer inputs"},
    {"ModelOffloadBudget",
     [](v1::JobSpec* s) { s->mutable_model()->set_offload_gpu_budget_gib(-1); },
     "spec.model.offload_gpu_budget_gib: must be >= 0"},
    {"ModelTileTokens",
     [](v1::JobSpec* s) { s->mutable_model()->set_tile_tokens(-5); },
     "spec.model.tile_tokens: must be >= 0"},
    {"ModelHeadGroupsNegative",
     [](v1::JobSpec* s) { s->mutable_model()->set_attention_head_groups(-1); },
     "spec.model.attention_head_groups: must be >= 0"},
    {"ModelHeadGroupsWithKeepAttention",
     [](v1::JobSpec* s) {
       s->mutable_model()->set_gradient_checkpointing(true);
       s->mutable_model()->set_checkpoint_keep_attention(true);
       s->mutable_model()->set_attention_head_groups(4);
     },
     "spec.model.attention_head_groups: does not combine"},
    {"ModelHeadGroupsWithDropout",
     [](v1::JobSpec* s) {
       s->mutable_lora()->set_dropout(0.1);
       s->mutable_model()->set_attention_head_groups(4);
     },
     "spec.model.attention_head_groups: needs lora.dropout 0"},
    {"Lr", [](v1::JobSpec* s) { s->mutable_optimizer()->set_lr(-1e-3); },
     "spec.optimizer.lr:"},
    {"WeightDecay",
     [](v1::JobSpec* s) { s->mutable_optimizer()->set_weight_decay(-1); },
     "spec.optimizer.weight_decay:"},
    {"Beta1", [](v1::JobSpec* s) { s->mutable_optimizer()->set_beta1(1.0); },
     "spec.optimizer.beta1:"},
    {"Beta2", [](v1::JobSpec* s) { s->mutable_optimizer()->set_beta2(-0.1); },
     "spec.optimizer.beta2:"},
    {"Eps", [](v1::JobSpec* s) { s->mutable_optimizer()->set_eps(-1e-8); },
     "spec.optimizer.eps:"},
    {"WarmupStepsNegative",
     [](v1::JobSpec* s) { s->mutable_optimizer()->set_warmup_steps(-1); },
     "spec.optimizer.warmup_steps:"},
    {"WarmupStepsAboveSteps",
     [](v1::JobSpec* s) { s->mutable_optimizer()->set_warmup_steps(11); },
     "spec.optimizer.warmup_steps: must be <= steps"},
    {"MinLrRatio",
     [](v1::JobSpec* s) { s->mutable_optimizer()->set_min_lr_ratio(1.5); },
     "spec.optimizer.min_lr_ratio:"},
    {"MaxGradNorm",
     [](v1::JobSpec* s) { s->mutable_optimizer()->set_max_grad_norm(-1); },
     "spec.optimizer.max_grad_norm:"},
    {"WorldSize",
     [](v1::JobSpec* s) { s->mutable_resources()->set_world_size(-1); },
     "spec.resources.world_size:"},
    {"DeviceKind",
     [](v1::JobSpec* s) {
       s->mutable_resources()->set_device_kind(static_cast<v1::DeviceKind>(5));
     },
     "spec.resources.device_kind:"},
    {"MinDeviceMemory",
     [](v1::JobSpec* s) {
       s->mutable_resources()->set_min_device_memory_bytes(-1);
     },
     "spec.resources.min_device_memory_bytes:"},
    {"MemoryBudgetUnit",
     [](v1::JobSpec* s) { s->mutable_resources()->set_memory_budget("70Gb"); },
     "spec.resources.memory_budget: unknown unit \"Gb\""},
    {"MemoryBudgetNegative",
     [](v1::JobSpec* s) { s->mutable_resources()->set_memory_budget("-1Gi"); },
     "spec.resources.memory_budget: must be > 0"},
    {"MemoryBudgetZero",
     [](v1::JobSpec* s) { s->mutable_resources()->set_memory_budget("0Gi"); },
     "spec.resources.memory_budget: must be > 0"},
    {"MemoryBudgetOverflow",
     [](v1::JobSpec* s) { s->mutable_resources()->set_memory_budget("9Ei"); },
     "spec.resources.memory_budget: is more than 2^63 - 1 bytes"},
    {"MemoryBudgetNoNumber",
     [](v1::JobSpec* s) { s->mutable_resources()->set_memory_budget("Gi"); },
     "spec.resources.memory_budget: want a number"},
    {"MemoryBudgetAllowInexactAlone",
     [](v1::JobSpec* s) {
       s->mutable_resources()->set_memory_budget_allow_inexact(true);
     },
     "spec.resources.memory_budget_allow_inexact: needs "
     "resources.memory_budget"},
    {"MemoryBudgetWithCheckpointing",
     [](v1::JobSpec* s) {
       s->mutable_resources()->set_memory_budget("70Gi");
       s->mutable_model()->set_gradient_checkpointing(true);
     },
     "spec.model.gradient_checkpointing: is chosen by "
     "resources.memory_budget"},
    {"MemoryBudgetWithOffload",
     [](v1::JobSpec* s) {
       s->mutable_resources()->set_memory_budget("70Gi");
       s->mutable_model()->set_offload("none");
     },
     "spec.model.offload: is chosen by resources.memory_budget"},
    {"MemoryBudgetWithTiles",
     [](v1::JobSpec* s) {
       s->mutable_resources()->set_memory_budget("70Gi");
       s->mutable_model()->set_tile_tokens(0);
     },
     "spec.model.tile_tokens: is chosen by resources.memory_budget"},
    {"MemoryBudgetWithRecomputeMlp",
     [](v1::JobSpec* s) {
       s->mutable_resources()->set_memory_budget("70Gi");
       s->mutable_lemo()->set_recompute_mlp(true);
     },
     "spec.lemo.recompute_mlp: is chosen by resources.memory_budget"},
    {"CheckpointEveryNSteps",
     [](v1::JobSpec* s) { s->mutable_checkpoint()->set_every_n_steps(-1); },
     "spec.checkpoint.every_n_steps:"},
    {"CheckpointKeepLast",
     [](v1::JobSpec* s) { s->mutable_checkpoint()->set_keep_last(-1); },
     "spec.checkpoint.keep_last:"},
    {"RopeScalingType",
     [](v1::JobSpec* s) {
       s->mutable_model()->mutable_rope_scaling()->set_rope_type("ntk");
     },
     "spec.model.rope_scaling.rope_type: must be linear, dynamic, yarn, "
     "llama3 or default, got \"ntk\""},
    {"RopeScalingFactorMissing",
     [](v1::JobSpec* s) {
       s->mutable_model()->mutable_rope_scaling()->set_rope_type("linear");
     },
     "spec.model.rope_scaling.factor: is required for linear"},
    {"RopeScalingFactorBelowOne",
     [](v1::JobSpec* s) {
       v1::RopeScaling* r = s->mutable_model()->mutable_rope_scaling();
       r->set_rope_type("yarn");
       r->set_factor(0.5);
     },
     "spec.model.rope_scaling.factor: must be >= 1"},
    {"RopeScalingLlama3Frequencies",
     [](v1::JobSpec* s) {
       v1::RopeScaling* r = s->mutable_model()->mutable_rope_scaling();
       r->set_rope_type("llama3");
       r->set_factor(8);
       r->set_low_freq_factor(4);
       r->set_high_freq_factor(1);
     },
     "spec.model.rope_scaling.high_freq_factor: must be greater"},
    {"RopeScalingOriginalContext",
     [](v1::JobSpec* s) {
       v1::RopeScaling* r = s->mutable_model()->mutable_rope_scaling();
       r->set_rope_type("yarn");
       r->set_original_max_position_embeddings(0);
     },
     "spec.model.rope_scaling.original_max_position_embeddings:"},
};

class SpecField : public ::testing::TestWithParam<Case> {};

TEST_P(SpecField, IsRejectedNamingTheField) {
  v1::JobSpec spec = ValidSpec();
  GetParam().breaks(&spec);
  EXPECT_THAT(NormalizeJobSpec(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(GetParam().message)));
}

INSTANTIATE_TEST_SUITE_P(SpecValidation, SpecField, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

// Memory quantities: to add a case, a row here (text, bytes).
TEST(MemoryQuantity, KubernetesUnitsAndTheirByteSpellingsParse) {
  const std::pair<const char*, int64_t> kQuantities[] = {
      {"70Gi", int64_t{70} << 30},
      {"72GiB", int64_t{72} << 30},
      {"75G", int64_t{75} * 1000 * 1000 * 1000},
      {"75GB", int64_t{75} * 1000 * 1000 * 1000},
      {"80000Mi", int64_t{80000} << 20},
      {"1.5Ti", int64_t{3} << 39},
      {"0.5Ki", 512},
      {"512", 512},
      {"512B", 512},
      {"4k", 4000},
      {"7Ei", int64_t{7} << 60},
  };
  for (const auto& [text, bytes] : kQuantities) {
    absl::StatusOr<int64_t> parsed = ParseMemoryQuantity("f", text);
    ASSERT_THAT(parsed, IsOk()) << text;
    EXPECT_EQ(*parsed, bytes) << text;
  }
}

TEST(MemoryQuantity, BadQuantitiesNameTheFieldAndTheText) {
  for (const char* text :
       {"", "Gi", "70 Gi", "70gi", "1e9", "-5Gi", "0", "0.0001", "--1", ".Gi",
        "99999999999999999999", "8Ei", "9223372036854775808"}) {
    EXPECT_THAT(ParseMemoryQuantity("spec.resources.memory_budget", text),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("spec.resources.memory_budget: ")))
        << text;
  }
}

TEST(SpecValidation, MemoryBudgetIsKeptAndLeavesTheSwitchesUnset) {
  v1::JobSpec spec = testing::ValidSpec();
  spec.mutable_resources()->set_memory_budget("70Gi");
  spec.mutable_resources()->set_memory_budget_allow_inexact(true);
  // "auto" is the unset offload; the accuracy-changing savers stay the
  // user's.
  spec.mutable_model()->set_offload("auto");
  spec.mutable_lemo()->mutable_mlp_sparsity()->set_enabled(true);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::JobSpec s, NormalizeJobSpec(spec));
  EXPECT_EQ(s.resources().memory_budget(), "70Gi");
  EXPECT_EQ(MemoryBudgetBytes(s).value_or(-1), int64_t{70} << 30);
  EXPECT_FALSE(s.model().gradient_checkpointing());
  EXPECT_FALSE(s.model().has_tile_tokens());
  EXPECT_EQ(MemoryBudgetBytes(testing::ValidSpec()).value_or(-1), 0);
}

TEST(SpecValidation, ValidSpecPassesAndGetsEveryDefault) {
  LEMO_ASSERT_OK_AND_ASSIGN(v1::JobSpec s,
                            NormalizeJobSpec(testing::ValidSpec()));
  EXPECT_EQ(s.data().format(), v1::JSONL);
  // The model's own tokenizer, which only a worker can find.
  EXPECT_EQ(s.data().tokenizer(), "");
  EXPECT_EQ(s.model().dtype(), v1::FP32);
  EXPECT_EQ(s.lora().r(), 8);
  EXPECT_EQ(s.lora().alpha(), 16);
  EXPECT_EQ(s.lora().target_modules_size(), 4);
  EXPECT_EQ(s.lemo().mode(), v1::DENSE);
  // Unset: the worker expands the paper's default schedule.
  EXPECT_EQ(s.lemo().keep_ratio().default_ratio(), 0);
  EXPECT_EQ(s.lemo().keep_ratio().per_layer_size(), 0);
  EXPECT_EQ(s.lemo().loss_segment_tokens(), 2048);
  EXPECT_EQ(s.optimizer().lr(), 2e-4);
  EXPECT_EQ(s.optimizer().beta2(), 0.999);
  EXPECT_EQ(s.optimizer().max_grad_norm(), 1.0);
  EXPECT_EQ(s.batch_size(), 1);
  EXPECT_EQ(s.grad_accum(), 1);
  EXPECT_EQ(s.max_restarts(), 3);
  EXPECT_EQ(s.resources().world_size(), 1);
  EXPECT_EQ(s.resources().device_kind(), v1::CPU);
}

TEST(SpecValidation, RopeScalingIsKeptAsGiven) {
  v1::JobSpec spec = testing::ValidSpec();
  v1::RopeScaling* r = spec.mutable_model()->mutable_rope_scaling();
  r->set_rope_type("yarn");  // factor may be left to the model's config
  LEMO_ASSERT_OK_AND_ASSIGN(v1::JobSpec s, NormalizeJobSpec(spec));
  EXPECT_EQ(s.model().rope_scaling().rope_type(), "yarn");
  EXPECT_FALSE(s.model().rope_scaling().has_factor());
}

TEST(SpecValidation, TokenizerIsKeptAsNamed) {
  v1::JobSpec spec = testing::ValidSpec();
  spec.mutable_data()->set_tokenizer("byte");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::JobSpec s, NormalizeJobSpec(spec));
  EXPECT_EQ(s.data().tokenizer(), "byte");
}

TEST(SpecValidation, OracleWithoutScheduleIsAcceptedAndLeftUnset) {
  v1::JobSpec spec = testing::ValidSpec();
  spec.mutable_lemo()->set_mode(v1::ORACLE);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::JobSpec s, NormalizeJobSpec(spec));
  EXPECT_EQ(s.lemo().keep_ratio().default_ratio(), 0);
  spec.mutable_lemo()->mutable_keep_ratio()->set_default_ratio(-0.5);
  EXPECT_THAT(NormalizeJobSpec(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.lemo.keep_ratio.default_ratio:")));
}

TEST(SpecValidation, ExplicitZerosOfOptionalFieldsAreKept) {
  v1::JobSpec spec = testing::ValidSpec();
  spec.set_max_restarts(0);
  spec.mutable_optimizer()->set_max_grad_norm(0);
  spec.mutable_optimizer()->set_beta1(0);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::JobSpec s, NormalizeJobSpec(spec));
  EXPECT_EQ(s.max_restarts(), 0);
  EXPECT_EQ(s.optimizer().max_grad_norm(), 0);
  EXPECT_EQ(s.optimizer().beta1(), 0);
}

TEST(SpecValidation, PredictorRecallEveryIsKeptInPredictorMode) {
  v1::JobSpec spec = testing::ValidSpec();
  spec.mutable_lemo()->set_mode(v1::PREDICTOR);
  spec.mutable_lemo()->set_predictor_path("/models/predictors");
  spec.mutable_lemo()->set_predictor_recall_every(5);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::JobSpec s, NormalizeJobSpec(spec));
  EXPECT_EQ(s.lemo().predictor_recall_every(), 5);
}

TEST(SpecValidation, CudaDefaultsToBf16AndAllowsOffload) {
  v1::JobSpec spec = testing::ValidSpec();
  spec.mutable_resources()->set_device_kind(v1::CUDA);
  spec.mutable_lemo()->set_offload(true);
  spec.mutable_data()->set_path("/data/tokens.u16");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::JobSpec s, NormalizeJobSpec(spec));
  EXPECT_EQ(s.model().dtype(), v1::BF16);
  EXPECT_EQ(s.data().format(), v1::U16);
  EXPECT_THAT(ValidateJobSpec(s), IsOk());
}

// A fresh model directory holding `config` as config.json (nothing when
// `config` is empty).
std::string ModelDir(const std::string& name, const std::string& config) {
  const std::string dir = ::testing::TempDir() + "/spec-validation-" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  if (!config.empty()) std::ofstream(dir + "/config.json") << config;
  return dir;
}

v1::JobSpec SpecWithModel(const std::string& dir) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_model()->set_path(dir);
  return spec;
}

TEST(ModelConfigCheck, SupportedArchitecturesAreAccepted) {
  for (const std::string& type : SupportedModelTypes()) {
    const std::string dir = ModelDir(
        type, R"({"model_type": ")" + type + R"(", "hidden_size": 8})");
    LEMO_ASSERT_OK_AND_ASSIGN(ModelConfigCheck check,
                              CheckModelConfig(SpecWithModel(dir)));
    EXPECT_TRUE(check.read);
    EXPECT_EQ(check.model_type, type);
    EXPECT_THAT(NormalizeJobSpec(SpecWithModel(dir)), IsOk());
  }
  EXPECT_EQ(absl::StrJoin(SupportedModelTypes(), ","),
            "llama,mistral,qwen2,qwen3");
}

TEST(ModelConfigCheck, UnsupportedArchitectureIsRefusedNamingTheField) {
  const std::string dir = ModelDir("gpt2", R"({"model_type": "gpt2"})");
  EXPECT_THAT(
      NormalizeJobSpec(SpecWithModel(dir)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "spec.model.path: config.json model_type \"gpt2\" is not "
               "supported; supported: llama, mistral, qwen2, qwen3"));
  // Off, no file is read.
  SpecCheckOptions off;
  off.check_model_config = false;
  EXPECT_THAT(NormalizeJobSpec(SpecWithModel(dir), off), IsOk());
}

TEST(ModelConfigCheck, UnreadableConfigIsLeftToTheWorker) {
  // No such directory (a path only workers mount), and a directory without
  // config.json.
  LEMO_ASSERT_OK_AND_ASSIGN(
      ModelConfigCheck check,
      CheckModelConfig(SpecWithModel("/nonexistent/lemo/model")));
  EXPECT_FALSE(check.read);
  EXPECT_THAT(NormalizeJobSpec(SpecWithModel(ModelDir("empty", ""))), IsOk());
  // model.path naming a file, not a directory.
  const std::string dir = ModelDir("file", R"({"model_type": "gpt2"})");
  EXPECT_THAT(NormalizeJobSpec(SpecWithModel(dir + "/config.json")), IsOk());
}

TEST(ModelConfigCheck, SymlinkedConfigIsFollowed) {
  // Hugging Face caches link config.json to a blob.
  const std::string blob = ModelDir("blob", R"({"model_type": "gpt2"})");
  const std::string dir = ModelDir("linked", "");
  std::filesystem::create_symlink(blob + "/config.json", dir + "/config.json");
  EXPECT_THAT(NormalizeJobSpec(SpecWithModel(dir)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("model_type \"gpt2\" is not supported")));
}

TEST(ModelConfigCheck, OnlySmallRegularFilesAreRead) {
  const std::string as_dir = ModelDir("config-dir", "");
  std::filesystem::create_directories(as_dir + "/config.json");
  EXPECT_THAT(NormalizeJobSpec(SpecWithModel(as_dir)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "spec.model.path: config.json is not a regular file"));
  // A FIFO is refused without waiting for a writer.
  const std::string fifo = ModelDir("fifo", "");
  ASSERT_EQ(::mkfifo((fifo + "/config.json").c_str(), 0600), 0);
  EXPECT_THAT(NormalizeJobSpec(SpecWithModel(fifo)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a regular file")));
  const std::string big =
      ModelDir("big", R"({"model_type": "llama", "pad": ")" +
                          std::string(300, 'x') + R"("})");
  SpecCheckOptions small;
  small.max_model_config_bytes = 256;
  EXPECT_THAT(NormalizeJobSpec(SpecWithModel(big), small),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "spec.model.path: config.json is larger than 256 "
                       "bytes"));
  EXPECT_THAT(NormalizeJobSpec(SpecWithModel(big)), IsOk());
}

TEST(ModelConfigCheck, BadFilesAreRefusedWithoutQuotingThem) {
  const std::string not_json = ModelDir("not-json", "SECRET-abc123 {");
  EXPECT_THAT(NormalizeJobSpec(SpecWithModel(not_json)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("spec.model.path: config.json is not "
                                       "a JSON object"),
                             Not(HasSubstr("SECRET")))));
  const std::string array = ModelDir("array", R"(["SECRET"])");
  EXPECT_THAT(
      NormalizeJobSpec(SpecWithModel(array)),
      StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("SECRET"))));
  const std::string no_type =
      ModelDir("no-type", R"({"architectures": ["SECRET"]})");
  EXPECT_THAT(NormalizeJobSpec(SpecWithModel(no_type)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("spec.model.path: config.json has no "
                                       "model_type"),
                             Not(HasSubstr("SECRET")))));
  const std::string number = ModelDir("number", R"({"model_type": 7})");
  EXPECT_THAT(NormalizeJobSpec(SpecWithModel(number)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("has no model_type string")));
  // An odd model_type is quoted printable and cut short.
  const std::string odd = ModelDir(
      "odd", R"({"model_type": "a\nb)" + std::string(200, 'c') + R"("})");
  auto status = NormalizeJobSpec(SpecWithModel(odd)).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("model_type \"a?bccc")));
  EXPECT_THAT(status.message(), Not(HasSubstr("\n")));
  EXPECT_LT(status.message().size(), 200u);
}

}  // namespace
}  // namespace lemo::proto
