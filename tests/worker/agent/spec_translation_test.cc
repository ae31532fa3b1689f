// Tests for worker/agent/spec_translation.h: every JobSpec field reaches the
// engine option it names, zeros become the spec's defaults, specs this worker
// cannot run are refused naming the field, and engine errors get the right
// FailureReason. To add a case: set a spec field in an Assign and check the
// TrainerOptions (or the Failure) that comes out.
#include "worker/agent/spec_translation.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/plan/step_plan.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/lemo/lemo_options.h"
#include "worker/engine/model/init_model.h"
#include "worker/engine/train/calibrate_job.h"
#include "worker/engine/train/memory_switches.h"
#include "worker/engine/train/trainer.h"

namespace lemo::worker {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

v1::Assign MinimalAssign() {
  v1::Assign assign;
  assign.set_job_id("job-1");
  assign.set_epoch(2);
  assign.set_world_size(1);
  v1::JobSpec* spec = assign.mutable_spec();
  spec->mutable_model()->set_path("/models/tiny");
  // Token ids: no tokenizer, so nothing is read from the model directory.
  spec->mutable_data()->set_path("/data/corpus.u16");
  spec->set_seq_len(64);
  spec->set_steps(10);
  return assign;
}

TEST(TrainerOptionsFromAssign, ZerosBecomeTheSpecDefaults) {
  std::vector<std::string> warnings;
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(MinimalAssign(), torch::kCPU, "/w/out", "",
                               &warnings));
  EXPECT_EQ(o.model_dir, "/models/tiny");
  EXPECT_EQ(o.out_dir, "/w/out");
  EXPECT_EQ(o.resume_dir, "");
  EXPECT_EQ(o.steps, 10);
  EXPECT_EQ(o.grad_accum, 1);
  EXPECT_EQ(o.save_every, 0);
  EXPECT_EQ(o.data.path, "/data/corpus.u16");
  EXPECT_EQ(o.data.format, engine::DataFormat::kAuto);
  EXPECT_EQ(o.data.tokenizer, "");  // token ids need none
  EXPECT_EQ(o.data.seq_len, 64);
  EXPECT_EQ(o.data.batch_size, 1);
  EXPECT_EQ(o.model.base_dtype, torch::kFloat32);
  EXPECT_EQ(o.model.loss_segment_tokens, 2048);
  EXPECT_EQ(o.model.lora.rank, 8);
  EXPECT_EQ(o.model.lora.alpha, 16);
  EXPECT_THAT(o.model.lora.target_modules,
              ElementsAre("q_proj", "k_proj", "v_proj", "o_proj"));
  EXPECT_DOUBLE_EQ(o.optimizer.lr, 2e-4);
  EXPECT_DOUBLE_EQ(o.optimizer.beta1, 0.9);
  EXPECT_DOUBLE_EQ(o.optimizer.eps, 1e-8);
  EXPECT_DOUBLE_EQ(o.optimizer.max_grad_norm, 1.0);
  EXPECT_EQ(o.optimizer.total_steps, 10);
  EXPECT_FALSE(o.model.lemo.two_d_sparsity);
  EXPECT_THAT(warnings, IsEmpty());
}

TEST(TrainerOptionsFromAssign, EveryFieldReachesTheEngine) {
  v1::Assign assign = MinimalAssign();
  v1::JobSpec* spec = assign.mutable_spec();
  spec->mutable_model()->set_dtype(v1::BF16);
  spec->mutable_model()->set_gradient_checkpointing(true);
  spec->mutable_data()->set_format(v1::U16);
  spec->mutable_data()->set_tokenizer("/tok/tokenizer.model");
  spec->mutable_lora()->set_r(4);
  spec->mutable_lora()->set_alpha(8);
  spec->mutable_lora()->set_dropout(0.1);
  spec->mutable_lora()->add_target_modules("gate_proj");
  spec->mutable_lemo()->set_loss_segment_tokens(512);
  v1::OptimizerSpec* opt = spec->mutable_optimizer();
  opt->set_lr(1e-3);
  opt->set_weight_decay(0.01);
  opt->set_beta1(0);
  opt->set_beta2(0.95);
  opt->set_eps(1e-6);
  opt->set_warmup_steps(3);
  opt->set_min_lr_ratio(0);
  opt->set_max_grad_norm(0);
  spec->set_batch_size(2);
  spec->set_grad_accum(4);
  spec->set_seed(7);
  spec->mutable_checkpoint()->set_every_n_steps(5);
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(assign, torch::kCPU, "/w/out", "/w/resume",
                               nullptr));
  EXPECT_EQ(o.resume_dir, "/w/resume");
  EXPECT_EQ(o.model.base_dtype, torch::kBFloat16);
  EXPECT_TRUE(o.model.gradient_checkpointing);
  EXPECT_EQ(o.data.format, engine::DataFormat::kU16);
  EXPECT_EQ(o.data.tokenizer, "/tok/tokenizer.model");
  EXPECT_EQ(o.data.batch_size, 2);
  EXPECT_EQ(o.data.seed, 7u);
  EXPECT_EQ(o.model.lora.rank, 4);
  EXPECT_EQ(o.model.lora.alpha, 8);
  EXPECT_DOUBLE_EQ(o.model.lora.dropout, 0.1);
  EXPECT_THAT(o.model.lora.target_modules, ElementsAre("gate_proj"));
  EXPECT_EQ(o.model.loss_segment_tokens, 512);
  EXPECT_DOUBLE_EQ(o.optimizer.lr, 1e-3);
  EXPECT_DOUBLE_EQ(o.optimizer.weight_decay, 0.01);
  EXPECT_DOUBLE_EQ(o.optimizer.beta1, 0);  // optional: an explicit zero is kept
  EXPECT_DOUBLE_EQ(o.optimizer.beta2, 0.95);
  EXPECT_DOUBLE_EQ(o.optimizer.eps, 1e-6);
  EXPECT_EQ(o.optimizer.warmup_steps, 3);
  EXPECT_DOUBLE_EQ(o.optimizer.min_lr_ratio, 0);
  EXPECT_DOUBLE_EQ(o.optimizer.max_grad_norm, 0);
  EXPECT_EQ(o.grad_accum, 4);
  EXPECT_EQ(o.save_every, 5);
  EXPECT_EQ(o.seed, 7u);
}

TEST(TrainerOptionsFromAssign, SeveralRanksJoinRankZerosStoreUnderTheirEpoch) {
  v1::Assign assign = MinimalAssign();
  assign.set_job_id("job-1");
  assign.set_epoch(3);
  assign.set_rank(1);
  assign.set_world_size(2);
  assign.set_rendezvous_address("10.0.0.7:29511");
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr));
  EXPECT_EQ(o.rank, 1);
  EXPECT_EQ(o.world_size, 2);
  EXPECT_EQ(o.comm.store_host, "10.0.0.7");
  EXPECT_EQ(o.comm.store_port, 29511);
  EXPECT_FALSE(o.comm.rank0_hosts_store);
  EXPECT_EQ(o.comm.store_prefix, "lemo/job-1/epoch-3/");
}

TEST(TrainerOptionsFromAssign, RefusesWhatThisWorkerCannotRun) {
  v1::Assign assign = MinimalAssign();
  assign.set_world_size(2);
  EXPECT_THAT(TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("assign.rendezvous_address")));
  assign.set_rendezvous_address("10.0.0.7:29511");
  assign.set_rank(2);
  EXPECT_THAT(TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank")));
  assign = MinimalAssign();
  assign.mutable_spec()->mutable_resources()->set_device_kind(v1::CUDA);
  EXPECT_THAT(TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.resources.device_kind")));
}

// A model directory holding only the tiny preset's config.json; its layer
// count goes to *num_layers.
std::string TinyConfigDir(int64_t* num_layers) {
  const std::string dir =
      ::testing::TempDir() + "/agent-tiny-config-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  absl::StatusOr<engine::ModelConfig> config = engine::PresetConfig("tiny");
  EXPECT_TRUE(config.ok()) << config.status();
  std::ofstream(dir + "/config.json") << engine::ModelConfigToJson(*config);
  *num_layers = config->num_hidden_layers;
  return dir;
}

TEST(TrainerOptionsFromAssign, OracleGetsTheSpecScheduleOverEveryLayer) {
  int64_t layers = 0;
  v1::Assign assign = MinimalAssign();
  assign.mutable_spec()->mutable_model()->set_path(TinyConfigDir(&layers));
  assign.mutable_spec()->set_seq_len(1024);
  v1::LemoSpec* lemo = assign.mutable_spec()->mutable_lemo();
  lemo->set_mode(v1::ORACLE);
  lemo->mutable_keep_ratio()->add_per_layer(1.0);
  lemo->mutable_keep_ratio()->set_default_ratio(0.4);
  lemo->mutable_adaptive()->set_enabled(true);
  lemo->mutable_adaptive()->set_tau(0.8);
  lemo->mutable_adaptive()->set_min_keep(0.25);
  lemo->mutable_adaptive()->set_max_keep(0.5);
  std::vector<std::string> warnings;
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", &warnings));
  EXPECT_EQ(o.model.lemo.mode, engine::LemoMode::kOracle);
  std::vector<double> expected(layers, 0.4);
  expected[0] = 1.0;
  EXPECT_EQ(o.model.lemo.keep_ratios, expected);
  EXPECT_DOUBLE_EQ(o.model.lemo.adaptive_tau, 0.8);
  // 1024 tokens = 16 blocks of 64.
  EXPECT_EQ(o.model.lemo.min_keep_blocks, 4);
  EXPECT_EQ(o.model.lemo.max_keep_blocks, 8);
  EXPECT_THAT(warnings, IsEmpty());

  lemo->mutable_keep_ratio()->clear_per_layer();
  for (int64_t i = 0; i <= layers; ++i) {
    lemo->mutable_keep_ratio()->add_per_layer(0.5);
  }
  EXPECT_THAT(TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.lemo.keep_ratio.per_layer")));
}

TEST(TrainerOptionsFromAssign, UnsetScheduleIsThePapersDefaultAndIsLogged) {
  int64_t layers = 0;
  v1::Assign assign = MinimalAssign();
  assign.mutable_spec()->mutable_model()->set_path(TinyConfigDir(&layers));
  assign.mutable_spec()->mutable_lemo()->set_mode(v1::ORACLE);
  std::vector<std::string> notes;
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr, &notes));
  // The same function lemo-train's `--lemo-keep-ratios default` runs.
  EXPECT_EQ(o.model.lemo.keep_ratios, engine::DefaultKeepSchedule(layers));
  EXPECT_THAT(notes, Contains(AllOf(HasSubstr("ORACLE"),
                                    HasSubstr("paper's default schedule"),
                                    HasSubstr("layers 0-1 keep 1"))));

  // default_ratio alone: the spec's schedule, said so.
  assign.mutable_spec()
      ->mutable_lemo()
      ->mutable_keep_ratio()
      ->set_default_ratio(0.5);
  notes.clear();
  LEMO_ASSERT_OK_AND_ASSIGN(
      o,
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr, &notes));
  EXPECT_EQ(o.model.lemo.keep_ratios, std::vector<double>(layers, 0.5));
  EXPECT_THAT(notes, Contains(HasSubstr("the spec's lemo.keep_ratio: "
                                        "layers 0-1 keep 0.5")));

  assign.mutable_spec()->mutable_lemo()->set_mode(v1::DENSE);
  notes.clear();
  ASSERT_THAT(
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr, &notes)
          .status(),
      IsOk());
  EXPECT_THAT(notes, Contains(HasSubstr("DENSE")));
}

// The schedule as the job's log shows it (engine::DescribeKeepSchedule).
TEST(DescribeKeepSchedule, RunsOfEqualRatios) {
  EXPECT_EQ(engine::DescribeKeepSchedule(engine::DefaultKeepSchedule(32)),
            "layers 0-14 keep 1, 15-30 keep 0.4, 31 keep 1");
  EXPECT_EQ(engine::DescribeKeepSchedule({0.5}), "layers 0 keep 0.5");
}

TEST(TrainerOptionsFromAssign, SeqLenPastTheModelsContextIsWarnedAbout) {
  int64_t layers = 0;
  v1::Assign assign = MinimalAssign();
  assign.mutable_spec()->mutable_model()->set_path(TinyConfigDir(&layers));
  assign.mutable_spec()->set_seq_len(8192);  // the tiny preset declares 4096
  std::vector<std::string> warnings;
  ASSERT_THAT(TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", &warnings)
                  .status(),
              IsOk());
  EXPECT_THAT(warnings, ElementsAre(AllOf(HasSubstr("spec.seq_len"),
                                          HasSubstr("rope_scaling"))));
}

// A model directory with real (not random-init) weights' config.json, of
// `vocab` ids, and the files named in `files` ({name, contents}).
std::string RealModelDir(
    const std::string& name, int64_t vocab,
    const std::vector<std::pair<std::string, std::string>>& files) {
  const std::string dir = ::testing::TempDir() + "/agent-" + name + "-" +
                          std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  absl::StatusOr<engine::ModelConfig> config = engine::PresetConfig("tiny");
  EXPECT_TRUE(config.ok()) << config.status();
  config->random_init = false;
  config->vocab_size = vocab;
  std::ofstream(dir + "/config.json") << engine::ModelConfigToJson(*config);
  for (const auto& [file, contents] : files) {
    std::ofstream(dir + "/" + file) << contents;
  }
  return dir;
}

// A 5-id byte-level BPE tokenizer.json with bos 3 and eos 4.
constexpr char kTinyTokenizerJson[] = R"({
  "added_tokens": [
    {"id": 3, "content": "<s>", "special": true, "normalized": false},
    {"id": 4, "content": "</s>", "special": true, "normalized": false}],
  "normalizer": null,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
            "merges": [["a", "b"]]}})";

v1::Assign TextAssign(const std::string& model_dir) {
  v1::Assign assign = MinimalAssign();
  assign.mutable_spec()->mutable_model()->set_path(model_dir);
  assign.mutable_spec()->mutable_data()->set_path("/data/corpus.jsonl");
  return assign;
}

TEST(TrainerOptionsFromAssign, UnsetTokenizerIsTheModelsTokenizerJson) {
  const std::string dir =
      RealModelDir("tokjson", 320, {{"tokenizer.json", kTinyTokenizerJson}});
  std::vector<std::string> notes;
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(TextAssign(dir), torch::kCPU, "/o", "", nullptr,
                               &notes));
  EXPECT_EQ(o.data.tokenizer, dir + "/tokenizer.json");
  EXPECT_THAT(notes, Contains(AllOf(HasSubstr("tokenizer.json"),
                                    HasSubstr("the model's own"))));
}

TEST(TrainerOptionsFromAssign, ModelWithoutTokenizerIsRefusedNamingTheField) {
  const std::string dir = RealModelDir("notok", 320, {});
  absl::Status status =
      TrainerOptionsFromAssign(TextAssign(dir), torch::kCPU, "/o", "", nullptr)
          .status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr(dir), HasSubstr("no tokenizer"),
                                     HasSubstr("spec.data.tokenizer"),
                                     HasSubstr("\"byte\""))));
  EXPECT_EQ(FailureFromStatus(status, 0).reason(), v1::INVALID_SPEC);

  // "byte" by name works for any model it fits.
  v1::Assign assign = TextAssign(dir);
  assign.mutable_spec()->mutable_data()->set_tokenizer("byte");
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr));
  EXPECT_EQ(o.data.tokenizer, "byte");
}

TEST(TrainerOptionsFromAssign, RandomWeightsDefaultToTheByteTokenizer) {
  int64_t layers = 0;
  std::vector<std::string> notes;
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(TextAssign(TinyConfigDir(&layers)), torch::kCPU,
                               "/o", "", nullptr, &notes));
  EXPECT_EQ(o.data.tokenizer, "byte");
  EXPECT_THAT(notes, Contains(HasSubstr("random-weight")));
}

TEST(TrainerOptionsFromAssign, TokenizerThatDoesNotFitTheVocabIsRefused) {
  // The byte tokenizer's 259 ids in a 100-id model.
  v1::Assign assign = TextAssign(RealModelDir("small-vocab", 100, {}));
  assign.mutable_spec()->mutable_data()->set_tokenizer("byte");
  absl::Status status =
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr).status();
  EXPECT_THAT(status,
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("spec.data.tokenizer"),
                             HasSubstr("259 ids"), HasSubstr("only 100"))));
  EXPECT_EQ(FailureFromStatus(status, 0).reason(), v1::INVALID_SPEC);

  // A tokenizer file that is not there is the spec's fault too.
  assign.mutable_spec()->mutable_data()->set_tokenizer("/nonexistent.json");
  EXPECT_THAT(TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.data.tokenizer: /nonexistent.json")));
}

TEST(TrainerOptionsFromAssign, ChatDataFieldsReachTheEngine) {
  v1::Assign assign = MinimalAssign();
  int64_t layers = 0;
  // The tokenizer is loaded (and checked against the model) here.
  assign.mutable_spec()->mutable_model()->set_path(TinyConfigDir(&layers));
  v1::DataSpec* data = assign.mutable_spec()->mutable_data();
  data->set_format(v1::CHAT);
  data->set_tokenizer("byte");
  data->set_chat_template("chatml");
  data->set_on_bad_sample("skip");
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(assign, torch::kCPU, "/w/out", "", nullptr));
  EXPECT_EQ(o.data.format, engine::DataFormat::kChat);
  EXPECT_EQ(o.data.chat_template, "chatml");
  EXPECT_EQ(o.data.on_bad_sample, engine::BadSamplePolicy::kSkip);
  for (auto [format, want] :
       {std::pair{v1::INSTRUCTION, engine::DataFormat::kInstruction},
        std::pair{v1::TOKENS_JSONL, engine::DataFormat::kTokensJsonl}}) {
    data->set_format(format);
    LEMO_ASSERT_OK_AND_ASSIGN(
        o,
        TrainerOptionsFromAssign(assign, torch::kCPU, "/w/out", "", nullptr));
    EXPECT_EQ(o.data.format, want);
  }
  data->set_on_bad_sample("drop");
  EXPECT_THAT(
      TrainerOptionsFromAssign(assign, torch::kCPU, "/w/out", "", nullptr),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("spec.data.on_bad_sample")));
}

TEST(TrainerOptionsFromAssign,
     RopeScalingReachesTheTrainerAndSilencesTheWarning) {
  int64_t layers = 0;
  v1::Assign assign = MinimalAssign();
  assign.mutable_spec()->mutable_model()->set_path(TinyConfigDir(&layers));
  assign.mutable_spec()->mutable_data()->set_tokenizer("byte");
  LEMO_ASSERT_OK_AND_ASSIGN(engine::ModelConfig tiny,
                            engine::PresetConfig("tiny"));
  // Four times the model's context: RoPE would be extrapolated.
  assign.mutable_spec()->set_seq_len(4 * tiny.max_position_embeddings);
  std::vector<std::string> warnings;
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions plain,
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", &warnings));
  EXPECT_EQ(plain.rope_scaling_json, "");
  EXPECT_THAT(warnings, Contains(HasSubstr("spec.seq_len: sequence length")));
  // Linear x4 covers it; only the fields the spec sets are passed on, so the
  // engine applies config.json's own defaults to the rest.
  v1::RopeScaling* rope =
      assign.mutable_spec()->mutable_model()->mutable_rope_scaling();
  rope->set_rope_type("linear");
  rope->set_factor(4);
  warnings.clear();
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions scaled,
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", &warnings));
  EXPECT_EQ(scaled.rope_scaling_json, R"({"factor":4.0,"rope_type":"linear"})");
  EXPECT_THAT(warnings, IsEmpty());
  engine::ModelConfig applied = tiny;
  ASSERT_THAT(
      engine::OverrideRopeScaling(scaled.rope_scaling_json, "test", &applied),
      IsOk());
  EXPECT_EQ(applied.rope_scaling.type, engine::RopeScaling::Type::kLinear);
  EXPECT_EQ(applied.rope_scaling.factor, 4);
}

TEST(TrainerOptionsFromAssign, MemorySwitchesResolveLikeLemoTrain) {
  v1::Assign assign = MinimalAssign();
  int64_t layers = 0;
  v1::ModelSpec* model = assign.mutable_spec()->mutable_model();
  model->set_path(TinyConfigDir(&layers));
  assign.mutable_spec()->mutable_data()->set_tokenizer("byte");
  model->set_gradient_checkpointing(true);
  std::vector<std::string> notes;
  // Automatic at 64 tokens: offload planned (sparsity), nothing tiled.
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr, &notes));
  EXPECT_EQ(o.model.offload.policy, engine::OffloadPolicy::kSparsity);
  EXPECT_EQ(o.model.offload.device_budget_bytes, -1);
  EXPECT_EQ(o.model.tile_tokens, 0);
  EXPECT_EQ(o.model.attention_head_groups, 0);
  EXPECT_THAT(notes, Contains(HasSubstr("offload sparsity (GPU budget "
                                        "auto), tiles off")));
  // Automatic at 256K: tiles.
  assign.mutable_spec()->set_seq_len(262144);
  LEMO_ASSERT_OK_AND_ASSIGN(
      o, TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr));
  EXPECT_EQ(o.model.tile_tokens, plan::kAutoTileTokens);
  EXPECT_EQ(o.model.lemo.mlp_tile_tokens, plan::kAutoTileTokens);
  // Asked for by name.
  model->set_offload("uniform");
  model->set_offload_gpu_budget_gib(2);
  model->set_tile_tokens(0);
  model->set_attention_head_groups(2);
  LEMO_ASSERT_OK_AND_ASSIGN(
      o, TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr));
  EXPECT_EQ(o.model.offload.policy, engine::OffloadPolicy::kUniform);
  EXPECT_EQ(o.model.offload.device_budget_bytes, int64_t{2} << 30);
  EXPECT_EQ(o.model.tile_tokens, 0);
  EXPECT_EQ(o.model.lemo.mlp_tile_tokens, 0);
  EXPECT_EQ(o.model.attention_head_groups, 2);
  // Offload needs checkpointing; unknown policies are named.
  model->set_gradient_checkpointing(false);
  EXPECT_THAT(TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.model.offload uniform moves "
                                 "checkpointed layer inputs")));
  model->set_gradient_checkpointing(true);
  model->set_offload("disk");
  EXPECT_THAT(TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.model.offload: offload policy must be "
                                 "none, uniform, sparsity or auto")));
}

// resources.memory_budget: the planner chooses the switches on this worker's
// device (the CPU here: never offload), the options carry them, and the
// choice comes back for the log and the metrics.
TEST(TrainerOptionsFromAssign, MemoryBudgetChoosesTheSwitchesAndReportsThem) {
  v1::Assign assign = MinimalAssign();
  int64_t layers = 0;
  v1::JobSpec* spec = assign.mutable_spec();
  spec->mutable_model()->set_path(TinyConfigDir(&layers));
  spec->mutable_data()->set_tokenizer("byte");
  spec->mutable_resources()->set_memory_budget("2Gi");
  std::vector<std::string> notes;
  BudgetReport roomy;
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr, &notes,
                               &roomy));
  ASSERT_TRUE(roomy.applied);
  EXPECT_EQ(roomy.budget_bytes, int64_t{2} << 30);
  EXPECT_TRUE(roomy.choice.plan.fits);
  // Room for everything: nothing recomputed.
  EXPECT_FALSE(o.model.gradient_checkpointing);
  EXPECT_FALSE(o.model.lemo.recompute_mlp);
  EXPECT_EQ(o.model.offload.policy, engine::OffloadPolicy::kNone);
  EXPECT_THAT(notes, Contains(HasSubstr("memory budget 2.0 GiB on cpu: chose "
                                        "no gradient checkpointing")));
  EXPECT_THAT(notes, Contains(HasSubstr("memory budget candidates")));
  EXPECT_THAT(notes, Contains(HasSubstr("memory: gradient checkpointing off")));
  MemoryPlanSample sample = MemoryPlanSampleFrom(roomy);
  EXPECT_EQ(sample.budget_bytes, int64_t{2} << 30);
  EXPECT_EQ(sample.planned_peak_bytes, roomy.choice.plan.peak_gpu_bytes);
  EXPECT_FALSE(sample.gradient_checkpointing);
  EXPECT_EQ(sample.recompute, "none");

  // A byte less than that choice's peak: something slower that fits, written
  // into the options.
  spec->mutable_resources()->set_memory_budget(
      std::to_string(roomy.choice.plan.peak_gpu_bytes - 1));
  BudgetReport tight;
  LEMO_ASSERT_OK_AND_ASSIGN(
      o, TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr,
                                  nullptr, &tight));
  ASSERT_TRUE(tight.applied);
  EXPECT_LT(tight.choice.plan.peak_gpu_bytes, roomy.choice.plan.peak_gpu_bytes);
  const plan::StepSettings& chose = tight.choice.settings;
  EXPECT_TRUE(chose.gradient_checkpointing || chose.recompute_mlp ||
              chose.recompute_norm);
  EXPECT_EQ(o.model.gradient_checkpointing, chose.gradient_checkpointing);
  EXPECT_EQ(o.model.checkpoint_keep_attention, chose.checkpoint_keep_attention);
  EXPECT_EQ(o.model.lemo.recompute_norm, chose.recompute_norm);
  EXPECT_EQ(o.model.offload.policy, engine::OffloadPolicy::kNone);
  EXPECT_EQ(chose.offload, plan::OffloadPolicy::kNone);

  // Nothing fits: the spec's budget is named, with the shortfall, and the
  // job fails as INVALID_SPEC.
  spec->mutable_resources()->set_memory_budget("1Ki");
  absl::StatusOr<engine::TrainerOptions> none =
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr);
  EXPECT_THAT(none, StatusIs(absl::StatusCode::kInvalidArgument,
                             AllOf(HasSubstr("spec.resources.memory_budget: "
                                             "memory budget 1.0 KiB on cpu: no "
                                             "setting fits"),
                                   HasSubstr("short by"))));
  EXPECT_EQ(FailureFromStatus(none.status(), 0).reason(), v1::INVALID_SPEC);
  // A malformed budget (the coordinator refuses it first) is named too.
  spec->mutable_resources()->set_memory_budget("lots");
  EXPECT_THAT(
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("spec.resources.memory_budget: want a number")));
}

TEST(TrainerOptionsFromAssign, DenseNeedsNoConfigAndWarnsAboutTheRest) {
  v1::Assign assign = MinimalAssign();  // its model path does not exist
  v1::LemoSpec* lemo = assign.mutable_spec()->mutable_lemo();
  lemo->set_offload(true);
  // The MLP and norm savers apply to dense attention too.
  lemo->mutable_mlp_sparsity()->set_enabled(true);
  lemo->set_recompute_norm(true);
  lemo->set_recompute_mlp(true);
  lemo->set_measure_saved_bytes(true);
  assign.mutable_spec()->mutable_model()->set_checkpoint_keep_attention(true);
  std::vector<std::string> warnings, notes;
  LEMO_ASSERT_OK_AND_ASSIGN(engine::TrainerOptions o,
                            TrainerOptionsFromAssign(assign, torch::kCPU, "/o",
                                                     "", &warnings, &notes));
  EXPECT_EQ(o.model.lemo.mode, engine::LemoMode::kDense);
  EXPECT_DOUBLE_EQ(o.model.lemo.mlp_prune_ratio, 0.8);  // the spec default
  EXPECT_TRUE(o.model.lemo.recompute_norm);
  EXPECT_TRUE(o.model.lemo.recompute_mlp);
  EXPECT_TRUE(o.model.checkpoint_keep_attention);
  EXPECT_TRUE(o.model.lemo.measure_saved_bytes);
  // The deprecated lemo.offload without checkpointing: ignored, saying so.
  EXPECT_THAT(warnings, IsEmpty());
  EXPECT_THAT(notes, Contains(HasSubstr("spec.lemo.offload is deprecated")));
  EXPECT_THAT(notes, Contains(HasSubstr("memory: gradient checkpointing off "
                                        "keeping attention, offload none")));

  lemo->mutable_mlp_sparsity()->set_prune_ratio(0.5);
  LEMO_ASSERT_OK_AND_ASSIGN(
      o, TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr));
  EXPECT_DOUBLE_EQ(o.model.lemo.mlp_prune_ratio, 0.5);

  lemo->set_mode(v1::ORACLE);
  EXPECT_THAT(
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("model /models/tiny")));
}

TEST(TrainerOptionsFromAssign, TwoDSparsityReachesTheEngineInEveryMode) {
  int64_t layers = 0;
  v1::Assign assign = MinimalAssign();
  assign.mutable_spec()->mutable_model()->set_path(TinyConfigDir(&layers));
  v1::LemoSpec* lemo = assign.mutable_spec()->mutable_lemo();
  lemo->set_two_d_sparsity(true);
  for (const v1::LemoMode mode : {v1::DENSE, v1::ORACLE}) {
    lemo->set_mode(mode);
    std::vector<std::string> warnings;
    LEMO_ASSERT_OK_AND_ASSIGN(
        engine::TrainerOptions o,
        TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", &warnings));
    EXPECT_TRUE(o.model.lemo.two_d_sparsity) << v1::LemoMode_Name(mode);
    EXPECT_THAT(warnings, IsEmpty());
  }
}

TEST(TrainerOptionsFromAssign, PredictorGetsItsDirectoryAndTheSchedule) {
  int64_t layers = 0;
  v1::Assign assign = MinimalAssign();
  assign.mutable_spec()->mutable_model()->set_path(TinyConfigDir(&layers));
  v1::LemoSpec* lemo = assign.mutable_spec()->mutable_lemo();
  lemo->set_mode(v1::PREDICTOR);
  EXPECT_THAT(TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.lemo.predictor_path")));
  lemo->set_predictor_path("/predictors/tiny");
  lemo->mutable_keep_ratio()->set_default_ratio(0.5);
  std::vector<std::string> warnings;
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", &warnings));
  EXPECT_EQ(o.model.lemo.mode, engine::LemoMode::kPredictor);
  EXPECT_EQ(o.model.lemo.predictor_dir, "/predictors/tiny");
  EXPECT_EQ(o.model.lemo.keep_ratios, std::vector<double>(layers, 0.5));
  EXPECT_EQ(o.predictor_recall_every, 0);  // unset: never measured
  EXPECT_THAT(warnings, IsEmpty());
}

TEST(TrainerOptionsFromAssign, PredictorRecallEveryReachesTheTrainer) {
  int64_t layers = 0;
  v1::Assign assign = MinimalAssign();
  assign.mutable_spec()->mutable_model()->set_path(TinyConfigDir(&layers));
  v1::LemoSpec* lemo = assign.mutable_spec()->mutable_lemo();
  lemo->set_mode(v1::PREDICTOR);
  lemo->set_predictor_path("/predictors/tiny");
  lemo->set_predictor_recall_every(5);
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", nullptr));
  EXPECT_EQ(o.predictor_recall_every, 5);
}

// The worker's path for a predictor job (worker/agent/task.cc): translate the
// spec, train, turn each step into a MetricSample and the per-layer /metrics
// series. With predictor_recall_every set, the measured step carries recall.
TEST(TrainerOptionsFromAssign, PredictorRecallEveryMakesRecallSamples) {
  const std::string root =
      ::testing::TempDir() + "/agent-recall-" + std::to_string(::getpid());
  LEMO_ASSERT_OK_AND_ASSIGN(engine::ModelConfig config,
                            engine::PresetConfig("tiny"));
  ASSERT_THAT(engine::WriteRandomModel(config, root + "/model", torch::kFloat32,
                                       /*seed=*/3),
              IsOk());
  {
    std::ofstream data(root + "/data.jsonl");
    for (int i = 0; i < 12; ++i) {
      data << "{\"text\": \"sample " << i
           << ": the quick brown fox jumps over the lazy dog, again and "
              "again, while lemo keeps the informative blocks of text.\"}\n";
    }
  }
  // Small predictors, calibrated for a few steps: recall only has to be
  // measured here, not good. The spec cannot set block_tokens, so the
  // predictors keep the engine's default.
  engine::CalibrateJobOptions job;
  job.model_dir = root + "/model";
  job.data.path = root + "/data.jsonl";
  job.data.seq_len = 256;
  job.out_dir = root + "/predictors";
  job.heldout_samples = 1;
  job.calibration.predictor.hidden1 = 8;
  job.calibration.predictor.hidden2 = 8;
  job.calibration.predictor.out = 8;
  job.calibration.steps = 2;
  job.calibration.keep_ratios = {0.5, 1.0};
  ASSERT_THAT(engine::RunCalibrateJob(job).status(), IsOk());

  v1::Assign assign = MinimalAssign();
  v1::JobSpec* spec = assign.mutable_spec();
  spec->mutable_model()->set_path(job.model_dir);
  spec->mutable_data()->set_path(job.data.path);
  spec->set_seq_len(256);
  spec->set_steps(2);
  v1::LemoSpec* lemo = spec->mutable_lemo();
  lemo->set_mode(v1::PREDICTOR);
  lemo->set_predictor_path(job.out_dir);
  lemo->mutable_keep_ratio()->add_per_layer(0.5);
  lemo->mutable_keep_ratio()->add_per_layer(1.0);
  lemo->set_predictor_recall_every(2);
  LEMO_ASSERT_OK_AND_ASSIGN(
      engine::TrainerOptions o,
      TrainerOptionsFromAssign(assign, torch::kCPU, root + "/run", "",
                               nullptr));
  LEMO_ASSERT_OK_AND_ASSIGN(auto trainer, engine::Trainer::Create(o));
  LEMO_ASSERT_OK_AND_ASSIGN(auto metrics, WorkerMetrics::Create(""));
  std::vector<v1::MetricSample> samples;
  engine::TrainerCallbacks callbacks;
  callbacks.on_step = [&](const engine::StepMetrics& m) {
    samples.push_back(SampleFromStepMetrics(m, /*rank=*/0));
    metrics->OnLayerStats(assign.job_id(), LayerSamplesFromStepMetrics(m));
  };
  ASSERT_THAT(trainer->Run(callbacks), IsOk());
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].predictor_recall_size(), 0);  // step 1: not measured
  ASSERT_EQ(samples[1].predictor_recall_size(), 2);  // step 2: measured
  EXPECT_GE(samples[1].predictor_recall(0), 0);      // the sparse layer
  EXPECT_LT(samples[1].predictor_recall(1), 0);      // the dense one: none
  EXPECT_THAT(metrics->Scrape(),
              HasSubstr("lemo_worker_predictor_recall{job_id=\"job-1\","
                        "layer=\"0\"}"));
  std::filesystem::remove_all(root);
}

TEST(FailureFromStatus, TypesTheEngineErrors) {
  struct Case {
    absl::Status status;
    v1::FailureReason reason;
  };
  const std::vector<Case> cases = {
      {absl::ResourceExhaustedError("training step: CUDA out of memory"),
       v1::OUT_OF_MEMORY},
      {absl::NotFoundError("model /m: config.json: not found"), v1::MODEL_LOAD},
      {absl::InvalidArgumentError("building the model: shape mismatch"),
       v1::MODEL_LOAD},
      {absl::NotFoundError("data /d.jsonl: no such file"), v1::DATA_LOAD},
      {absl::UnavailableError("step 4: rank 1: all-reduce: Timed out"),
       v1::NCCL_TIMEOUT},
      {absl::DataLossError("resuming from checkpoint step-000004: sha256"),
       v1::CHECKPOINT},
      {absl::UnavailableError("checkpoint step-000010: coordinator down"),
       v1::CHECKPOINT},
      {absl::InvalidArgumentError("seq_len: must be > 1, got 1"),
       v1::INVALID_SPEC},
      {absl::InternalError("something odd"), v1::INTERNAL},
      // The coordinator's disk is full: no reason to blame device memory.
      {absl::ResourceExhaustedError(
           "checkpoint step-000010: checkpoint of 900 bytes does not fit"),
       v1::CHECKPOINT},
      // The worker's path check (SpecPathPolicy): a missing model or data
      // path is still a load failure; a confinement refusal is the spec's.
      {absl::NotFoundError("spec.model.path: \"/m\" cannot be resolved"),
       v1::MODEL_LOAD},
      {absl::NotFoundError("spec.data.path: \"/d\" cannot be resolved"),
       v1::DATA_LOAD},
      {absl::NotFoundError("spec.data.tokenizer: \"/t\" cannot be resolved"),
       v1::INVALID_SPEC},
      {absl::InvalidArgumentError(
           "spec.data.path: \"/etc/shadow\" resolves outside the worker's "
           "roots (/data)"),
       v1::INVALID_SPEC},
  };
  for (const Case& c : cases) {
    v1::Failure f = FailureFromStatus(c.status, 0);
    EXPECT_EQ(f.reason(), c.reason) << c.status;
    EXPECT_EQ(f.message(), c.status.message());
    EXPECT_EQ(f.rank(), 0);
  }
}

TEST(SampleFromStepMetrics, CopiesEveryNumber) {
  engine::StepMetrics m;
  m.step = 3;
  m.total_steps = 10;
  m.loss = 2.5;
  m.lr = 1e-4;
  m.grad_norm = 0.7;
  m.tokens_per_second = 900;
  m.step_time_seconds = 0.07;
  m.peak_allocated_bytes = 100;
  m.peak_reserved_bytes = 200;
  v1::MetricSample s = SampleFromStepMetrics(m, 1);
  EXPECT_EQ(s.step(), 3);
  EXPECT_EQ(s.total_steps(), 10);
  EXPECT_DOUBLE_EQ(s.loss(), 2.5);
  EXPECT_DOUBLE_EQ(s.lr(), 1e-4);
  EXPECT_DOUBLE_EQ(s.grad_norm(), 0.7);
  EXPECT_DOUBLE_EQ(s.tokens_per_second(), 900);
  EXPECT_DOUBLE_EQ(s.step_time_seconds(), 0.07);
  EXPECT_EQ(s.peak_allocated_bytes(), 100);
  EXPECT_EQ(s.peak_reserved_bytes(), 200);
  EXPECT_EQ(s.rank(), 1);
  EXPECT_GT(s.time().seconds(), 0);
}

TEST(SampleFromStepMetrics, CarriesPerLayerLemoNumbersWhenMeasured) {
  engine::StepMetrics m;
  engine::LemoLayerStats dense{64, 64};
  engine::LemoLayerStats sparse{28, 64};
  m.lemo_layers = {dense, sparse};
  v1::MetricSample s = SampleFromStepMetrics(m, 0);
  ASSERT_EQ(s.kept_token_fraction_size(), 2);
  EXPECT_DOUBLE_EQ(s.kept_token_fraction(0), 1.0);
  EXPECT_DOUBLE_EQ(s.kept_token_fraction(1), 0.4375);
  // Nothing measured: the optional lists stay empty.
  EXPECT_EQ(s.saved_activation_bytes_size(), 0);
  EXPECT_EQ(s.predictor_recall_size(), 0);

  m.lemo_layers[0].saved_bytes = 4096;
  m.lemo_layers[1].saved_bytes = 2048;
  m.lemo_layers[1].predictor_recall = 0.75;
  s = SampleFromStepMetrics(m, 0);
  ASSERT_EQ(s.saved_activation_bytes_size(), 2);
  EXPECT_EQ(s.saved_activation_bytes(1), 2048);
  ASSERT_EQ(s.predictor_recall_size(), 2);
  EXPECT_DOUBLE_EQ(s.predictor_recall(0), -1);
  EXPECT_DOUBLE_EQ(s.predictor_recall(1), 0.75);
  const std::vector<LayerSample> layers = LayerSamplesFromStepMetrics(m);
  ASSERT_EQ(layers.size(), 2u);
  EXPECT_DOUBLE_EQ(layers[1].kept_token_fraction, 0.4375);
  EXPECT_EQ(layers[0].saved_bytes, 4096);
  EXPECT_DOUBLE_EQ(layers[1].predictor_recall, 0.75);
}

}  // namespace
}  // namespace lemo::worker
