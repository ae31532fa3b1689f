// Tests for proto/plan/spec_plan.h: a JobSpec's defaults, LeMo schedule and
// memory switches as the planner's StepSettings, and the errors the worker
// would give too. (That the worker agent's engine options agree is
// tests/worker/agent/spec_plan_agreement_test.cc's.) To add a case: set spec
// fields on Spec() and check the StepSettings that come out.
#include "proto/plan/spec_plan.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/job_specs.h"
#include "tests/testing/status_matchers.h"

namespace lemo::proto {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Llama-2-7B's sizes.
plan::ModelShape Llama7b() {
  plan::ModelShape m;
  m.hidden_size = 4096;
  m.intermediate_size = 11008;
  m.num_layers = 32;
  m.num_heads = 32;
  m.num_kv_heads = 32;
  m.head_dim = 128;
  m.vocab_size = 32000;
  return m;
}

v1::JobSpec Spec() { return ::lemo::testing::ValidSpec(); }

constexpr int64_t kH100 = int64_t{80} << 30;

TEST(StepSettingsFromSpec, ZerosBecomeTheSpecDefaults) {
  LEMO_ASSERT_OK_AND_ASSIGN(plan::StepSettings s,
                            StepSettingsFromSpec(Spec(), Llama7b()));
  EXPECT_EQ(s.seq_len, 128);
  EXPECT_EQ(s.batch, 1);
  EXPECT_EQ(s.activation_bytes, 4);  // a CPU spec trains in fp32
  EXPECT_EQ(s.lora_rank, 8);
  EXPECT_THAT(s.lora_targets,
              ElementsAre("q_proj", "k_proj", "v_proj", "o_proj"));
  EXPECT_EQ(s.loss_segment_tokens, 2048);
  EXPECT_FALSE(s.gradient_checkpointing);
  EXPECT_EQ(s.offload, plan::OffloadPolicy::kNone);
  EXPECT_EQ(s.tile_tokens, 0);
  EXPECT_EQ(s.attention_head_groups, 0);
  EXPECT_TRUE(s.keep_fractions.empty());
  EXPECT_DOUBLE_EQ(s.mlp_prune_ratio, 0);
}

TEST(StepSettingsFromSpec, CudaDefaultsToBf16) {
  v1::JobSpec spec = Spec();
  spec.mutable_resources()->set_device_kind(v1::CUDA);
  LEMO_ASSERT_OK_AND_ASSIGN(plan::StepSettings s,
                            StepSettingsFromSpec(spec, Llama7b()));
  EXPECT_EQ(s.activation_bytes, 2);
  spec.mutable_model()->set_dtype(v1::FP32);
  EXPECT_EQ(*SpecDtypeBytes(spec), 4);
}

TEST(StepSettingsFromSpec, LemoOracleGetsTheDefaultScheduleOrTheSpecs) {
  v1::JobSpec spec = Spec();
  spec.mutable_lemo()->set_mode(v1::ORACLE);
  LEMO_ASSERT_OK_AND_ASSIGN(plan::StepSettings s,
                            StepSettingsFromSpec(spec, Llama7b()));
  EXPECT_TRUE(s.lemo_oracle);
  ASSERT_EQ(s.keep_fractions.size(), 32u);
  EXPECT_EQ(s.keep_fractions, plan::DefaultKeepFractions(32));
  // The artifact's: layers 0-14 dense, 15-30 at 0.4, 31 dense.
  EXPECT_DOUBLE_EQ(s.keep_fractions[14], 1.0);
  EXPECT_DOUBLE_EQ(s.keep_fractions[15], 0.4);
  EXPECT_DOUBLE_EQ(s.keep_fractions[31], 1.0);

  spec.mutable_lemo()->mutable_keep_ratio()->add_per_layer(0.5);
  spec.mutable_lemo()->mutable_keep_ratio()->set_default_ratio(0.25);
  LEMO_ASSERT_OK_AND_ASSIGN(s, StepSettingsFromSpec(spec, Llama7b()));
  EXPECT_DOUBLE_EQ(s.keep_fractions[0], 0.5);
  EXPECT_DOUBLE_EQ(s.keep_fractions[31], 0.25);

  spec.mutable_lemo()->set_mode(v1::PREDICTOR);
  LEMO_ASSERT_OK_AND_ASSIGN(s, StepSettingsFromSpec(spec, Llama7b()));
  EXPECT_FALSE(s.lemo_oracle);
  EXPECT_EQ(s.keep_fractions.size(), 32u);
}

TEST(StepSettingsFromSpec, MoreKeepRatiosThanLayersNamesTheField) {
  v1::JobSpec spec = Spec();
  spec.mutable_lemo()->set_mode(v1::ORACLE);
  for (int i = 0; i < 33; ++i) {
    spec.mutable_lemo()->mutable_keep_ratio()->add_per_layer(0.5);
  }
  EXPECT_THAT(StepSettingsFromSpec(spec, Llama7b()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.lemo.keep_ratio.per_layer: 33 ratios")));
}

TEST(StepSettingsFromSpec, OffloadIsAutomaticUnderCheckpointing) {
  v1::JobSpec spec = Spec();
  spec.mutable_model()->set_gradient_checkpointing(true);
  LEMO_ASSERT_OK_AND_ASSIGN(plan::StepSettings s,
                            StepSettingsFromSpec(spec, Llama7b()));
  EXPECT_EQ(s.offload, plan::OffloadPolicy::kSparsity);
  spec.mutable_model()->set_offload("uniform");
  spec.mutable_model()->set_offload_gpu_budget_gib(12.5);
  LEMO_ASSERT_OK_AND_ASSIGN(s, StepSettingsFromSpec(spec, Llama7b()));
  EXPECT_EQ(s.offload, plan::OffloadPolicy::kUniform);
  EXPECT_DOUBLE_EQ(s.offload_gpu_budget_gib, 12.5);
}

TEST(StepSettingsFromSpec, BadOffloadsNameTheField) {
  v1::JobSpec spec = Spec();
  spec.mutable_model()->set_offload("uniform");  // without checkpointing
  EXPECT_THAT(StepSettingsFromSpec(spec, Llama7b()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("turn on gradient checkpointing")));
  spec.mutable_model()->set_offload("sometimes");
  EXPECT_THAT(StepSettingsFromSpec(spec, Llama7b()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.model.offload")));
}

TEST(StepSettingsFromSpec, LongSequencesTileAndSplitHeadsOnTheGpu) {
  v1::JobSpec spec = Spec();
  spec.mutable_resources()->set_device_kind(v1::CUDA);
  spec.set_seq_len(393216);
  spec.mutable_model()->set_gradient_checkpointing(true);
  LEMO_ASSERT_OK_AND_ASSIGN(plan::StepSettings s,
                            StepSettingsFromSpec(spec, Llama7b(), kH100));
  EXPECT_EQ(s.tile_tokens, 16384);
  // 14 x 384K x 4096 x 2 bytes = 42 GiB > 40% of 80 GiB.
  EXPECT_EQ(s.attention_head_groups, 4);
  // Unknown memory (the CPU): no automatic groups, as the engine.
  LEMO_ASSERT_OK_AND_ASSIGN(s, StepSettingsFromSpec(spec, Llama7b(), -1));
  EXPECT_EQ(s.attention_head_groups, 0);
  // Asked for by name: taken as is.
  spec.mutable_model()->set_attention_head_groups(2);
  spec.mutable_model()->set_tile_tokens(0);
  LEMO_ASSERT_OK_AND_ASSIGN(s, StepSettingsFromSpec(spec, Llama7b(), kH100));
  EXPECT_EQ(s.attention_head_groups, 2);
  EXPECT_EQ(s.tile_tokens, 0);
}

TEST(PlanInputsFromSpec, WeightsTakeTheSpecsDtype) {
  v1::JobSpec spec = Spec();
  spec.mutable_resources()->set_device_kind(v1::CUDA);
  plan::ModelShape model = Llama7b();
  model.weight_bytes = 4;  // config.json said float32
  plan::DeviceDescription device;
  device.name = "test";
  device.memory_bytes = kH100;
  LEMO_ASSERT_OK_AND_ASSIGN(SpecPlanInputs in,
                            PlanInputsFromSpec(spec, model, device));
  EXPECT_EQ(in.model.weight_bytes, 2);
  EXPECT_EQ(in.settings.activation_bytes, 2);
}

TEST(DeviceOfWorker, NeedsAKnownMemory) {
  v1::Register reg;
  reg.set_worker_id("w");
  EXPECT_THAT(DeviceOfWorker(reg), StatusIs(absl::StatusCode::kNotFound,
                                            HasSubstr("no device memory")));
  v1::Device* d = reg.add_devices();
  d->set_kind(v1::CPU);
  d->set_name("cpu");
  EXPECT_THAT(DeviceOfWorker(reg), StatusIs(absl::StatusCode::kNotFound,
                                            HasSubstr("no device memory")));
  d->set_total_memory_bytes(int64_t{1} << 30);
  LEMO_ASSERT_OK_AND_ASSIGN(plan::DeviceDescription device,
                            DeviceOfWorker(reg));
  EXPECT_EQ(device.memory_bytes, int64_t{1} << 30);
  EXPECT_GT(device.host_memory_bytes, int64_t{1} << 40);  // unknown: no limit
  reg.set_host_memory_bytes(int64_t{8} << 30);
  LEMO_ASSERT_OK_AND_ASSIGN(device, DeviceOfWorker(reg));
  EXPECT_EQ(device.host_memory_bytes, int64_t{8} << 30);
}

}  // namespace
}  // namespace lemo::proto
