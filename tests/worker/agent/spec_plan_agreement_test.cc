// The planner's reading of a JobSpec (proto/plan/spec_plan.h, what the
// coordinator and `lemoctl plan` plan with) agrees with the engine options the
// worker agent builds from the same spec (spec_translation.h): every field the
// planner reads, on dense, LeMo, checkpointing and offload specs, and the
// automatic head groups on a GPU's memory. To add a case: a row in
// AgreementCases() (a name and a change to the base spec).
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "common/plan/model_shape.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/plan/spec_plan.h"
#include "tests/testing/status_matchers.h"
#include "worker/agent/spec_translation.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/model/init_model.h"
#include "worker/engine/train/memory_switches.h"
#include "worker/engine/train/offload.h"

namespace lemo::worker {
namespace {

// The small preset (8 heads, 4 KV heads: they split into the automatic 4 head
// groups), as a model directory holding only its config.json.
struct Model {
  std::string dir;
  std::string config_json;
};

const Model& SmallModel() {
  static const Model* model = [] {
    auto* m = new Model;
    m->dir = ::testing::TempDir() + "/agent-plan-small-" +
             std::to_string(::getpid());
    std::filesystem::create_directories(m->dir);
    absl::StatusOr<engine::ModelConfig> config = engine::PresetConfig("small");
    EXPECT_TRUE(config.ok()) << config.status();
    m->config_json = engine::ModelConfigToJson(*config);
    std::ofstream(m->dir + "/config.json") << m->config_json;
    return m;
  }();
  return *model;
}

plan::OffloadPolicy PolicyOf(engine::OffloadPolicy p) {
  switch (p) {
    case engine::OffloadPolicy::kNone:
      return plan::OffloadPolicy::kNone;
    case engine::OffloadPolicy::kUniform:
      return plan::OffloadPolicy::kUniform;
    default:
      return plan::OffloadPolicy::kSparsity;
  }
}

struct Case {
  const char* name;
  std::function<void(v1::JobSpec*)> change;
};

std::vector<Case> AgreementCases() {
  return {
      {"dense defaults", [](v1::JobSpec*) {}},
      {"dense, batch, rank and targets",
       [](v1::JobSpec* s) {
         s->set_batch_size(3);
         s->mutable_lora()->set_r(16);
         s->mutable_lora()->add_target_modules("gate_proj");
         s->mutable_lora()->add_target_modules("down_proj");
         s->mutable_lemo()->set_loss_segment_tokens(512);
       }},
      {"lemo oracle, default schedule",
       [](v1::JobSpec* s) { s->mutable_lemo()->set_mode(v1::ORACLE); }},
      {"lemo oracle, per-layer schedule, MLP sparsity, recompute",
       [](v1::JobSpec* s) {
         v1::LemoSpec* l = s->mutable_lemo();
         l->set_mode(v1::ORACLE);
         l->mutable_keep_ratio()->add_per_layer(1.0);
         l->mutable_keep_ratio()->add_per_layer(0.3);
         l->mutable_keep_ratio()->set_default_ratio(0.5);
         l->mutable_mlp_sparsity()->set_enabled(true);
         l->set_recompute_norm(true);
         l->set_recompute_mlp(true);
         l->set_two_d_sparsity(true);
       }},
      {"checkpointing, automatic offload",
       [](v1::JobSpec* s) {
         s->mutable_model()->set_gradient_checkpointing(true);
       }},
      {"checkpointing keeping attention, uniform offload with a budget",
       [](v1::JobSpec* s) {
         s->mutable_model()->set_gradient_checkpointing(true);
         s->mutable_model()->set_checkpoint_keep_attention(true);
         s->mutable_model()->set_offload("uniform");
         s->mutable_model()->set_offload_gpu_budget_gib(2.5);
       }},
      {"long sequence: automatic tiles, explicit head groups, no offload",
       [](v1::JobSpec* s) {
         s->set_seq_len(262144);
         s->mutable_model()->set_gradient_checkpointing(true);
         s->mutable_model()->set_offload("none");
         s->mutable_model()->set_attention_head_groups(2);
       }},
      {"explicit tiles, deprecated lemo.offload",
       [](v1::JobSpec* s) {
         s->mutable_model()->set_gradient_checkpointing(true);
         s->mutable_model()->set_tile_tokens(4096);
         s->mutable_lemo()->set_offload(true);
       }},
  };
}

TEST(SpecPlanAgreement, PlannerSettingsMatchTheAgentsEngineOptions) {
  const Model& model = SmallModel();
  absl::StatusOr<plan::ModelShape> shape =
      plan::ModelShapeFromConfigJson(model.config_json);
  ASSERT_TRUE(shape.ok()) << shape.status();
  for (const Case& c : AgreementCases()) {
    SCOPED_TRACE(c.name);
    v1::Assign assign;
    assign.set_job_id("job-1");
    assign.set_world_size(1);
    v1::JobSpec* spec = assign.mutable_spec();
    spec->mutable_model()->set_path(model.dir);
    // Token ids: no tokenizer is loaded.
    spec->mutable_data()->set_path("/data/corpus.u16");
    spec->set_seq_len(1024);
    spec->set_steps(10);
    c.change(spec);
    std::vector<std::string> warnings;
    absl::StatusOr<engine::TrainerOptions> o =
        TrainerOptionsFromAssign(assign, torch::kCPU, "/o", "", &warnings);
    ASSERT_TRUE(o.ok()) << o.status();
    absl::StatusOr<plan::StepSettings> s =
        proto::StepSettingsFromSpec(*spec, *shape, /*device_memory_bytes=*/-1);
    ASSERT_TRUE(s.ok()) << s.status();
    const engine::TrainingModelOptions& m = o->model;
    EXPECT_EQ(s->seq_len, o->data.seq_len);
    EXPECT_EQ(s->batch, o->data.batch_size);
    EXPECT_EQ(s->activation_bytes,
              static_cast<int64_t>(c10::elementSize(m.base_dtype)));
    EXPECT_EQ(s->lora_rank, m.lora.rank);
    EXPECT_EQ(s->lora_targets, m.lora.target_modules);
    EXPECT_EQ(s->gradient_checkpointing, m.gradient_checkpointing);
    EXPECT_EQ(s->checkpoint_keep_attention, m.checkpoint_keep_attention);
    EXPECT_EQ(s->recompute_mlp, m.lemo.recompute_mlp);
    EXPECT_EQ(s->recompute_norm, m.lemo.recompute_norm);
    EXPECT_EQ(s->offload, PolicyOf(m.offload.policy));
    EXPECT_EQ(s->offload_gpu_budget_gib < 0
                  ? int64_t{-1}
                  : static_cast<int64_t>(s->offload_gpu_budget_gib *
                                         (int64_t{1} << 30)),
              m.offload.device_budget_bytes);
    EXPECT_EQ(s->tile_tokens, m.tile_tokens);
    EXPECT_EQ(s->attention_head_groups, m.attention_head_groups);
    EXPECT_EQ(s->loss_segment_tokens, m.loss_segment_tokens);
    EXPECT_EQ(s->lemo_oracle, m.lemo.mode == engine::LemoMode::kOracle);
    if (m.lemo.mode == engine::LemoMode::kDense) {
      EXPECT_TRUE(s->keep_fractions.empty());
    } else {
      EXPECT_EQ(s->keep_fractions, m.lemo.keep_ratios);
    }
    EXPECT_DOUBLE_EQ(s->mlp_prune_ratio, m.lemo.mlp_prune_ratio);
    EXPECT_EQ(s->lemo_2d, m.lemo.two_d_sparsity);
  }
}

// The CPU has no device memory to read, so the automatic head groups are
// compared on the engine's own rule with a GPU's memory.
TEST(SpecPlanAgreement, AutomaticHeadGroupsMatchTheEnginesRule) {
  const Model& model = SmallModel();
  absl::StatusOr<plan::ModelShape> shape =
      plan::ModelShapeFromConfigJson(model.config_json);
  ASSERT_TRUE(shape.ok()) << shape.status();
  absl::StatusOr<engine::ModelConfig> config =
      engine::LoadModelConfig(model.dir);
  ASSERT_TRUE(config.ok()) << config.status();
  for (int64_t memory :
       {int64_t{1} << 20, int64_t{1} << 30, int64_t{80} << 30}) {
    for (int64_t seq_len : {int64_t{4096}, int64_t{262144}}) {
      for (bool keep_attention : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << memory << " bytes, " << seq_len
                     << " tokens, keep attention " << keep_attention);
        v1::JobSpec spec;
        spec.set_seq_len(seq_len);
        spec.mutable_resources()->set_device_kind(v1::CUDA);
        spec.mutable_model()->set_gradient_checkpointing(true);
        spec.mutable_model()->set_checkpoint_keep_attention(keep_attention);
        engine::TrainingModelOptions options;
        options.base_dtype = torch::kBFloat16;
        options.gradient_checkpointing = true;
        options.checkpoint_keep_attention = keep_attention;
        absl::StatusOr<plan::StepSettings> s =
            proto::StepSettingsFromSpec(spec, *shape, memory);
        ASSERT_TRUE(s.ok()) << s.status();
        EXPECT_EQ(s->attention_head_groups,
                  engine::AutoHeadGroups(seq_len, *config, options, memory));
      }
    }
  }
}

}  // namespace
}  // namespace lemo::worker
