// Tests for common/plan/step_plan.h: the planner's arithmetic on cases small
// enough to check by hand, and a clear error naming the field for every bad
// input. To add a case: for arithmetic, build the settings, compute the
// expected bytes in the test from the shapes (say which engine tensor each
// term is) and compare with the item by name (ItemBytes); for a bad input, add
// a {mutation, field named} row to BadSettings or BadModels.
#include "common/plan/step_plan.h"

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "common/plan/device_table.h"
#include "common/plan/model_shape.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lemo::plan {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

constexpr int64_t kGiBytes = int64_t{1} << 30;

ModelShape Preset(const char* name) {
  absl::StatusOr<ModelShape> m = ModelShapeForPreset(name);
  EXPECT_THAT(m.status(), IsOk());
  return m.value_or(ModelShape{});
}

DeviceDescription H100() {
  absl::StatusOr<DeviceDescription> d = FindDevice("h100-80gb");
  EXPECT_THAT(d.status(), IsOk());
  return d.value_or(DeviceDescription{});
}

// The bytes of the breakdown's item `name` (-1 when the plan has none).
int64_t ItemBytes(const StepPlan& plan, const std::string& name) {
  for (const PlanItem& item : plan.items) {
    if (item.name == name) return item.bytes;
  }
  return -1;
}

StepPlan Plan(const ModelShape& m, const StepSettings& s,
              const DeviceDescription& d = H100()) {
  absl::StatusOr<StepPlan> plan = PlanStep(m, s, d);
  EXPECT_THAT(plan.status(), IsOk());
  return plan.value_or(StepPlan{});
}

TEST(StepPlan, TinyPresetWeightsByteForByte) {
  // tiny: vocab 320, hidden 64, intermediate 172, 2 layers, 4 heads of 16, 2 kv
  // heads.
  const int64_t embed = 320 * 64;
  const int64_t layer = 2 * 64  // input + post-attention RMSNorm
                        + 64 * 64 + 2 * 32 * 64  // q, k, v
                        + 64 * 64                // o
                        + 3 * 172 * 64;          // gate, up, down
  const int64_t params =
      embed + 2 * layer + 64 + embed;  // + final norm + lm_head
  EXPECT_EQ(params, 131904);
  EXPECT_EQ(FrozenParameterCount(Preset("tiny")), params);
  StepSettings s;
  s.seq_len = 128;
  const StepPlan plan = Plan(Preset("tiny"), s);
  EXPECT_EQ(ItemBytes(plan, "frozen weights"), params * 2);
  // LoRA r=8 on q, k, v, o: r x (in + out) each, fp32; gradients as many;
  // AdamW two moments.
  const int64_t lora = 2 * 8 * ((64 + 64) + (64 + 32) + (64 + 32) + (64 + 64));
  EXPECT_EQ(ItemBytes(plan, "adapters"), lora * 4);
  EXPECT_EQ(ItemBytes(plan, "adapter gradients"), lora * 4);
  EXPECT_EQ(ItemBytes(plan, "optimizer state"), lora * 8);
}

TEST(StepPlan, TiedEmbeddingsDropTheLmHead) {
  ModelShape m = Preset("tiny");
  const int64_t untied = FrozenParameterCount(m);
  m.tie_word_embeddings = true;
  EXPECT_EQ(FrozenParameterCount(m), untied - 320 * 64);
}

TEST(StepPlan, CheckpointsAreLayersTimesTokensTimesHiddenTimesBytes) {
  StepSettings s;
  s.seq_len = 65536;
  s.gradient_checkpointing = true;
  const StepPlan plan = Plan(Preset("llama2-7b"), s);
  EXPECT_EQ(ItemBytes(plan, "checkpoints (GPU)"),
            int64_t{32} * 65536 * 4096 * 2);
  EXPECT_EQ(ItemBytes(plan, "checkpoints (host)"), -1);
  EXPECT_EQ(plan.pinned_host_bytes, 0);
  EXPECT_EQ(plan.offloaded_layers, 0);
  EXPECT_EQ(ItemBytes(plan, "activations"),
            -1);  // nothing else is kept per layer
}

TEST(StepPlan, OffloadMovesBytesFromGpuToHost) {
  const ModelShape m = Preset("llama2-7b");
  StepSettings s;
  s.seq_len = 65536;
  s.gradient_checkpointing = true;
  const StepPlan all_gpu = Plan(m, s);
  const int64_t total = ItemBytes(all_gpu, "checkpoints (GPU)");
  for (OffloadPolicy policy :
       {OffloadPolicy::kUniform, OffloadPolicy::kSparsity}) {
    SCOPED_TRACE(OffloadPolicyName(policy));
    s.offload = policy;
    s.offload_gpu_budget_gib = 4;
    s.keep_fractions = DefaultKeepFractions(m.num_layers);
    const StepPlan off = Plan(m, s);
    const int64_t gpu = ItemBytes(off, "checkpoints (GPU)");
    const int64_t host = ItemBytes(off, "checkpoints (host)");
    EXPECT_EQ(gpu + host, total);
    EXPECT_LE(gpu, 4 * kGiBytes);
    EXPECT_GT(gpu,
              4 * kGiBytes - int64_t{32} * 4096 * 2);  // whole tokens per layer
    EXPECT_EQ(off.pinned_host_bytes, host);
    EXPECT_GT(off.offloaded_layers, 0);
    EXPECT_LT(off.peak_gpu_bytes, Plan(m,
                                       [&] {
                                         StepSettings dense_layers = s;
                                         dense_layers.offload =
                                             OffloadPolicy::kNone;
                                         return dense_layers;
                                       }())
                                      .peak_gpu_bytes);
  }
  // Sparsity offloads the densest layers whole first: 24 of 32 at this budget
  // (12 GiB of 0.5 GiB inputs over the 4 GiB budget), as the engine's run
  // 2026-12-06-h200-512k/offload-sparsity-64k recorded.
  s.offload = OffloadPolicy::kSparsity;
  EXPECT_EQ(Plan(m, s).offloaded_layers, 24);
  // Uniform offloads the same share of every layer.
  s.offload = OffloadPolicy::kUniform;
  EXPECT_EQ(Plan(m, s).offloaded_layers, 32);
}

TEST(StepPlan, AutomaticBudgetReservesTheWorkingSet) {
  // 384K tokens, 3 GiB inputs: the automatic budget keeps what is free after
  // the weights minus 18 inputs on the GPU, and the rest goes to the host.
  const ModelShape m = Preset("llama2-7b");
  StepSettings s;
  s.seq_len = 393216;
  s.gradient_checkpointing = true;
  s.offload = OffloadPolicy::kSparsity;
  s.keep_fractions = DefaultKeepFractions(m.num_layers);
  const StepPlan plan = Plan(m, s);
  const int64_t input = int64_t{393216} * 4096 * 2;
  EXPECT_LE(
      ItemBytes(plan, "checkpoints (GPU)"),
      H100().memory_bytes - ItemBytes(plan, "frozen weights") - 18 * input);
  EXPECT_GT(plan.pinned_host_bytes, 20 * input);
}

TEST(StepPlan, AutomaticBudgetAfterTheFirstStepReservesTheMeasuredWorkingSet) {
  // In 4 head groups a layer's working set is ~9.3 inputs: from the second
  // step on the engine reserves that + 4, not 18, so more stays on the GPU
  // (the steady peak is higher) while the first step pins the most host
  // memory, which is what the host must hold.
  const ModelShape m = Preset("llama2-7b");
  StepSettings s;
  s.seq_len = 393216;
  s.gradient_checkpointing = true;
  s.offload = OffloadPolicy::kSparsity;
  s.attention_head_groups = 4;
  s.tile_tokens = 16384;  // as the engine picks at this length (untiled, the
                          // MLP's is larger)
  s.keep_fractions = DefaultKeepFractions(m.num_layers);
  const StepPlan plan = Plan(m, s);
  const int64_t input = int64_t{393216} * 4096 * 2;
  const int64_t gpu = ItemBytes(plan, "checkpoints (GPU)");
  const int64_t host = ItemBytes(plan, "checkpoints (host)");
  EXPECT_EQ(gpu + host, 32 * input);
  EXPECT_GT(gpu, H100().memory_bytes - ItemBytes(plan, "frozen weights") -
                     18 * input);
  EXPECT_GT(plan.pinned_host_bytes, host);  // the first step's
  EXPECT_LE(plan.pinned_host_bytes, 32 * input);
}

TEST(StepPlan, KeepFractionsShrinkActivations) {
  const ModelShape m = Preset("llama2-7b");
  StepSettings s;
  s.seq_len = 8192;
  const int64_t dense = ItemBytes(Plan(m, s), "activations");
  s.keep_fractions = DefaultKeepFractions(m.num_layers);
  const int64_t sparse = ItemBytes(Plan(m, s), "activations");
  EXPECT_GT(dense, 0);
  EXPECT_LT(sparse, dense);
  // Dense, by hand: per token and layer x, h, xn, q, k, v, attention output
  // (7 x 4096) and gate, up (2 x 11008) in bf16.
  EXPECT_EQ(dense, int64_t{32} * 8192 * (7 * 4096 + 2 * 11008) * 2);
  // Each 0.4-kept layer saves 0.6 x (xn + q + k + v + out) = 0.6 x 5 x 4096
  // elements per token less; 16 of the 32 layers are sparse.
  EXPECT_NEAR(static_cast<double>(dense - sparse),
              16.0 * 8192 * 0.6 * 5 * 4096 * 2, 16.0 * 8192 * 2);
}

TEST(StepPlan, RecomputingTheMlpSavesGateAndUp) {
  const ModelShape m = Preset("llama2-7b");
  StepSettings s;
  s.seq_len = 8192;
  const int64_t full = ItemBytes(Plan(m, s), "activations");
  s.recompute_mlp = true;
  EXPECT_EQ(full - ItemBytes(Plan(m, s), "activations"),
            int64_t{32} * 8192 * 2 * 11008 * 2);
}

TEST(StepPlan, HeadGroupsShrinkTheWorkingSet) {
  const ModelShape m = Preset("llama2-7b");
  StepSettings s;
  s.seq_len = 262144;
  s.gradient_checkpointing = true;
  s.tile_tokens = 16384;
  const StepPlan whole = Plan(m, s);
  s.attention_head_groups = 4;
  const StepPlan grouped = Plan(m, s);
  const double input = 262144.0 * 4096 * 2;
  // The measured working sets of a dense layer whose input stayed on the GPU:
  // 13.04 inputs whole (2026-12-06-h100-grid, 128K), one less than the 14.04
  // the engine measures with the input offloaded and restored inside it
  // (memory_switches.h); 8.26 in 4 head groups (the fit gives 7.76).
  EXPECT_NEAR(ItemBytes(whole, "layer backward working set") / input, 13.04,
              0.05);
  EXPECT_NEAR(ItemBytes(grouped, "layer backward working set") / input, 8.26,
              0.55);
  // One more attention forward per layer costs time.
  EXPECT_GT(grouped.step_seconds, whole.step_seconds);
}

TEST(StepPlan, CheckpointingTradesMemoryForTime) {
  const ModelShape m = Preset("llama2-7b");
  StepSettings s;
  s.seq_len = 16384;
  const StepPlan plain = Plan(m, s);
  s.gradient_checkpointing = true;
  const StepPlan ckpt = Plan(m, s);
  EXPECT_LT(ckpt.peak_gpu_bytes, plain.peak_gpu_bytes);
  EXPECT_GT(ckpt.step_seconds, plain.step_seconds);
}

TEST(StepPlan, OracleScoringCostsTime) {
  const ModelShape m = Preset("llama2-7b");
  StepSettings s;
  s.seq_len = 65536;
  s.gradient_checkpointing = true;
  s.keep_fractions = DefaultKeepFractions(m.num_layers);
  const StepPlan predictor = Plan(m, s);
  s.lemo_oracle = true;
  const StepPlan oracle = Plan(m, s);
  EXPECT_GT(oracle.step_seconds, predictor.step_seconds);
  bool named = false;
  for (const auto& [name, seconds] : oracle.time_items)
    named |= name == "LeMo oracle scoring";
  EXPECT_TRUE(named);
}

TEST(StepPlan, PeakIsTheSumOfTheGpuItems) {
  const ModelShape m = Preset("llama2-7b");
  StepSettings s;
  s.seq_len = 131072;
  s.gradient_checkpointing = true;
  s.offload = OffloadPolicy::kUniform;
  s.offload_gpu_budget_gib = 8;
  const StepPlan plan = Plan(m, s);
  int64_t gpu = 0, host = 0;
  for (const PlanItem& item : plan.items)
    (item.where == "gpu" ? gpu : host) += item.bytes;
  EXPECT_EQ(plan.peak_gpu_bytes, gpu);
  EXPECT_EQ(plan.pinned_host_bytes, host);
  double seconds = 0;
  for (const auto& [name, t] : plan.time_items) seconds += t;
  EXPECT_DOUBLE_EQ(plan.step_seconds, seconds);
}

TEST(StepPlan, VerdictSaysByHowMuch) {
  const ModelShape m = Preset("llama2-7b");
  StepSettings s;
  s.seq_len = 4096;
  const StepPlan fits = Plan(m, s);
  EXPECT_TRUE(fits.fits);
  EXPECT_EQ(fits.shortfall_bytes, 0);
  EXPECT_THAT(fits.verdict, HasSubstr("fits: "));
  s.seq_len = 131072;  // no checkpointing: every layer's activations
  const StepPlan too_big = Plan(m, s);
  EXPECT_FALSE(too_big.fits);
  EXPECT_EQ(too_big.shortfall_bytes,
            too_big.peak_gpu_bytes - H100().memory_bytes);
  EXPECT_THAT(too_big.verdict, HasSubstr("does not fit"));
  EXPECT_THAT(too_big.verdict, HasSubstr("h100-80gb"));
  EXPECT_THAT(too_big.verdict, HasSubstr("short"));
}

TEST(StepPlan, PinnedHostBeyondTheHostDoesNotFit) {
  const ModelShape m = Preset("llama2-7b");
  StepSettings s;
  s.seq_len = 524288;  // 32 inputs of 4 GiB = 128 GiB, all to the host
  s.gradient_checkpointing = true;
  s.offload = OffloadPolicy::kUniform;
  s.offload_gpu_budget_gib = 0;
  const StepPlan plan = Plan(m, s);
  EXPECT_EQ(plan.pinned_host_bytes, 128 * kGiBytes);
  EXPECT_FALSE(plan.fits);
  EXPECT_THAT(plan.verdict, HasSubstr("pinned host memory"));
  EXPECT_GT(plan.shortfall_bytes, 0);
}

TEST(StepPlan, AutoSwitchesFollowTheEngine) {
  const ModelShape m = Preset("llama2-7b");
  EXPECT_EQ(AutoTileTokens(65536), 0);
  EXPECT_EQ(AutoTileTokens(131072), 16384);
  StepSettings s;
  s.gradient_checkpointing = true;
  s.seq_len = 262144;  // 14 x 2 GiB = 28 GiB < 40% of 79.2 GiB
  EXPECT_EQ(AutoHeadGroups(m, s, H100().memory_bytes), 0);
  s.seq_len = 393216;  // 42 GiB > 40%
  EXPECT_EQ(AutoHeadGroups(m, s, H100().memory_bytes), 4);
  s.checkpoint_keep_attention = true;
  EXPECT_EQ(AutoHeadGroups(m, s, H100().memory_bytes), 0);
}

TEST(DefaultKeepFractions, MatchesTheEngineSchedule) {
  // worker/engine/lemo/lemo_options.cc DefaultKeepSchedule: round(15/32 x L)
  // dense layers, the last layer dense, 0.4 between.
  const std::vector<double> k32 = DefaultKeepFractions(32);
  ASSERT_EQ(k32.size(), 32u);
  for (int i = 0; i < 32; ++i)
    EXPECT_EQ(k32[i], i < 15 || i == 31 ? 1.0 : 0.4) << i;
  EXPECT_EQ(DefaultKeepFractions(2), (std::vector<double>{1.0, 1.0}));
  EXPECT_EQ(DefaultKeepFractions(4), (std::vector<double>{1.0, 1.0, 0.4, 1.0}));
  EXPECT_TRUE(DefaultKeepFractions(0).empty());
  EXPECT_TRUE(DefaultKeepFractions(-3).empty());
}

struct BadCase {
  const char* what;
  std::function<void(StepSettings*)> mutate;
  const char* field;  // the error must name it
};

TEST(StepPlan, BadSettingsNameTheField) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<BadCase> cases = {
      {"seq_len 0", [](StepSettings* s) { s->seq_len = 0; }, "seq_len"},
      {"seq_len negative", [](StepSettings* s) { s->seq_len = -5; }, "seq_len"},
      {"seq_len huge",
       [](StepSettings* s) {
         s->seq_len = std::numeric_limits<int64_t>::max();
       },
       "seq_len"},
      {"batch 0", [](StepSettings* s) { s->batch = 0; }, "batch"},
      {"batch huge", [](StepSettings* s) { s->batch = 5000; }, "batch"},
      {"activation bytes 3", [](StepSettings* s) { s->activation_bytes = 3; },
       "activation_bytes"},
      {"lora rank 0", [](StepSettings* s) { s->lora_rank = 0; }, "lora_rank"},
      {"no targets", [](StepSettings* s) { s->lora_targets.clear(); },
       "lora_targets"},
      {"unknown target", [](StepSettings* s) { s->lora_targets = {"qkv"}; },
       "lora_targets"},
      {"duplicate target",
       [](StepSettings* s) {
         s->lora_targets = {"q_proj", "q_proj"};
       },
       "lora_targets"},
      {"offload without checkpointing",
       [](StepSettings* s) {
         s->gradient_checkpointing = false;
         s->offload = OffloadPolicy::kUniform;
       },
       "gradient_checkpointing"},
      {"negative budget",
       [](StepSettings* s) { s->offload_gpu_budget_gib = -2; },
       "offload_gpu_budget_gib"},
      {"NaN budget",
       [nan](StepSettings* s) { s->offload_gpu_budget_gib = nan; },
       "offload_gpu_budget_gib"},
      {"negative tiles", [](StepSettings* s) { s->tile_tokens = -1; },
       "tile_tokens"},
      {"negative head groups",
       [](StepSettings* s) { s->attention_head_groups = -1; },
       "attention_head_groups"},
      {"head groups that do not split the heads",
       [](StepSettings* s) { s->attention_head_groups = 3; },
       "attention_head_groups"},
      {"head groups with kept attention",
       [](StepSettings* s) {
         s->attention_head_groups = 4;
         s->checkpoint_keep_attention = true;
       },
       "checkpoint_keep_attention"},
      {"negative loss segment",
       [](StepSettings* s) { s->loss_segment_tokens = -1; },
       "loss_segment_tokens"},
      {"keep fractions of the wrong length",
       [](StepSettings* s) {
         s->keep_fractions = {1.0, 0.4};
       },
       "keep_fractions"},
      {"keep fraction 0", [](StepSettings* s) { s->keep_fractions[3] = 0; },
       "keep_fractions[3]"},
      {"keep fraction above 1",
       [](StepSettings* s) { s->keep_fractions[5] = 1.5; },
       "keep_fractions[5]"},
      {"keep fraction NaN",
       [nan](StepSettings* s) { s->keep_fractions[0] = nan; },
       "keep_fractions[0]"},
      {"oracle without LeMo",
       [](StepSettings* s) {
         s->keep_fractions.clear();
         s->lemo_oracle = true;
       },
       "lemo_oracle"},
      {"prune ratio 1", [](StepSettings* s) { s->mlp_prune_ratio = 1; },
       "mlp_prune_ratio"},
      {"prune ratio negative",
       [](StepSettings* s) { s->mlp_prune_ratio = -0.1; }, "mlp_prune_ratio"},
  };
  const ModelShape m = Preset("llama2-7b");
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.what);
    StepSettings s;
    s.seq_len = 4096;
    s.gradient_checkpointing = true;
    s.keep_fractions = DefaultKeepFractions(m.num_layers);
    c.mutate(&s);
    EXPECT_THAT(
        PlanStep(m, s, H100()).status(),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
  }
}

TEST(StepPlan, BadModelsNameTheField) {
  const std::vector<std::pair<std::function<void(ModelShape*)>, const char*>>
      cases = {
          {[](ModelShape* m) { m->hidden_size = 0; }, "hidden_size"},
          {[](ModelShape* m) { m->intermediate_size = -1; },
           "intermediate_size"},
          {[](ModelShape* m) { m->num_layers = 0; }, "num_layers"},
          {[](ModelShape* m) { m->num_heads = 0; }, "num_heads"},
          {[](ModelShape* m) { m->num_kv_heads = 3; }, "num_kv_heads"},
          {[](ModelShape* m) { m->head_dim = 0; }, "head_dim"},
          {[](ModelShape* m) { m->vocab_size = 0; }, "vocab_size"},
          {[](ModelShape* m) { m->vocab_size = int64_t{1} << 40; },
           "vocab_size"},
          {[](ModelShape* m) { m->weight_bytes = 3; }, "weight_bytes"},
      };
  for (const auto& [mutate, field] : cases) {
    SCOPED_TRACE(field);
    ModelShape m = Preset("tiny");
    mutate(&m);
    StepSettings s;
    s.seq_len = 128;
    EXPECT_THAT(PlanStep(m, s, H100()).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)));
  }
}

TEST(StepPlan, BadDevicesNameTheField) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<
      std::pair<std::function<void(DeviceDescription*)>, const char*>>
      cases = {
          {[](DeviceDescription* d) { d->memory_bytes = 0; }, "memory_bytes"},
          {[](DeviceDescription* d) { d->host_memory_bytes = -1; },
           "host_memory_bytes"},
          {[](DeviceDescription* d) { d->matmul_flops_per_s = 0; },
           "matmul_flops_per_s"},
          {[nan](DeviceDescription* d) { d->attention_flops_per_s = nan; },
           "attention_flops_per_s"},
          {[](DeviceDescription* d) { d->host_copy_bytes_per_s = -1; },
           "host_copy_bytes_per_s"},
      };
  for (const auto& [mutate, field] : cases) {
    SCOPED_TRACE(field);
    DeviceDescription d = H100();
    mutate(&d);
    StepSettings s;
    s.seq_len = 128;
    EXPECT_THAT(PlanStep(Preset("tiny"), s, d).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)));
  }
}

TEST(StepPlan, NeverCrashesOnExtremeValues) {
  // Every integer and floating-point field at the edges of its type: an OK
  // plan or INVALID_ARGUMENT, never a crash or (under UBSan) an overflow.
  const std::vector<int64_t> ints = {0,
                                     1,
                                     -1,
                                     3,
                                     int64_t{1} << 20,
                                     int64_t{1} << 40,
                                     std::numeric_limits<int64_t>::max(),
                                     std::numeric_limits<int64_t>::min()};
  const std::vector<double> reals = {0,
                                     -1,
                                     0.5,
                                     1e300,
                                     -1e300,
                                     std::numeric_limits<double>::quiet_NaN(),
                                     std::numeric_limits<double>::infinity()};
  const std::vector<std::function<void(ModelShape*, StepSettings*,
                                       DeviceDescription*, int64_t)>>
      int_fields = {
          [](ModelShape* m, StepSettings*, DeviceDescription*, int64_t v) {
            m->hidden_size = v;
          },
          [](ModelShape* m, StepSettings*, DeviceDescription*, int64_t v) {
            m->intermediate_size = v;
          },
          [](ModelShape* m, StepSettings*, DeviceDescription*, int64_t v) {
            m->num_layers = v;
          },
          [](ModelShape* m, StepSettings*, DeviceDescription*, int64_t v) {
            m->num_heads = v;
          },
          [](ModelShape* m, StepSettings*, DeviceDescription*, int64_t v) {
            m->num_kv_heads = v;
          },
          [](ModelShape* m, StepSettings*, DeviceDescription*, int64_t v) {
            m->head_dim = v;
          },
          [](ModelShape* m, StepSettings*, DeviceDescription*, int64_t v) {
            m->vocab_size = v;
          },
          [](ModelShape* m, StepSettings*, DeviceDescription*, int64_t v) {
            m->weight_bytes = v;
          },
          [](ModelShape*, StepSettings* s, DeviceDescription*, int64_t v) {
            s->seq_len = v;
          },
          [](ModelShape*, StepSettings* s, DeviceDescription*, int64_t v) {
            s->batch = v;
          },
          [](ModelShape*, StepSettings* s, DeviceDescription*, int64_t v) {
            s->activation_bytes = v;
          },
          [](ModelShape*, StepSettings* s, DeviceDescription*, int64_t v) {
            s->lora_rank = v;
          },
          [](ModelShape*, StepSettings* s, DeviceDescription*, int64_t v) {
            s->tile_tokens = v;
          },
          [](ModelShape*, StepSettings* s, DeviceDescription*, int64_t v) {
            s->attention_head_groups = v;
          },
          [](ModelShape*, StepSettings* s, DeviceDescription*, int64_t v) {
            s->loss_segment_tokens = v;
          },
          [](ModelShape*, StepSettings*, DeviceDescription* d, int64_t v) {
            d->memory_bytes = v;
          },
          [](ModelShape*, StepSettings*, DeviceDescription* d, int64_t v) {
            d->host_memory_bytes = v;
          },
      };
  const std::vector<
      std::function<void(StepSettings*, DeviceDescription*, double)>>
      real_fields = {
          [](StepSettings* s, DeviceDescription*, double v) {
            s->offload_gpu_budget_gib = v;
          },
          [](StepSettings* s, DeviceDescription*, double v) {
            s->mlp_prune_ratio = v;
          },
          [](StepSettings* s, DeviceDescription*, double v) {
            s->keep_fractions[7] = v;
          },
          [](StepSettings*, DeviceDescription* d, double v) {
            d->matmul_flops_per_s = v;
          },
          [](StepSettings*, DeviceDescription* d, double v) {
            d->attention_flops_per_s = v;
          },
          [](StepSettings*, DeviceDescription* d, double v) {
            d->host_copy_bytes_per_s = v;
          },
      };
  auto base = [](ModelShape* m, StepSettings* s, DeviceDescription* d) {
    *m = Preset("llama2-7b");
    *s = StepSettings{};
    s->seq_len = 65536;
    s->gradient_checkpointing = true;
    s->offload = OffloadPolicy::kSparsity;
    s->keep_fractions = DefaultKeepFractions(32);
    *d = H100();
  };
  auto ok_or_invalid = [](const absl::Status& st) {
    return st.ok() || st.code() == absl::StatusCode::kInvalidArgument;
  };
  for (size_t f = 0; f < int_fields.size(); ++f) {
    for (int64_t v : ints) {
      ModelShape m;
      StepSettings s;
      DeviceDescription d;
      base(&m, &s, &d);
      int_fields[f](&m, &s, &d, v);
      EXPECT_TRUE(ok_or_invalid(PlanStep(m, s, d).status()))
          << "field " << f << " = " << v;
    }
  }
  for (size_t f = 0; f < real_fields.size(); ++f) {
    for (double v : reals) {
      ModelShape m;
      StepSettings s;
      DeviceDescription d;
      base(&m, &s, &d);
      real_fields[f](&s, &d, v);
      EXPECT_TRUE(ok_or_invalid(PlanStep(m, s, d).status()))
          << "field " << f << " = " << v;
    }
  }
}

TEST(OffloadPolicy, ParsesTheEngineNames) {
  for (OffloadPolicy p : {OffloadPolicy::kNone, OffloadPolicy::kUniform,
                          OffloadPolicy::kSparsity}) {
    absl::StatusOr<OffloadPolicy> back =
        ParseOffloadPolicy(OffloadPolicyName(p));
    ASSERT_THAT(back.status(), IsOk());
    EXPECT_EQ(*back, p);
  }
  EXPECT_THAT(
      ParseOffloadPolicy("auto").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("offload")));
}

}  // namespace
}  // namespace lemo::plan
