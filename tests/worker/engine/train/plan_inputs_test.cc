// The planner (common/plan/step_plan.h) against the engine's own allocation
// accounting on the CPU, and the engine adapter that feeds it
// (worker/engine/train/plan_inputs.h).
//
// Every byte the engine allocates on the CPU goes through c10's allocator,
// which kernels/allocation_tracker.h counts on this thread (single-threaded
// here, so nothing escapes the hook). For the tiny and small presets, in fp32
// and bf16, dense and LeMo, with and without gradient checkpointing,
// keep-attention and offload, each case trains real steps of a TrainingModel
// built from the same options the planner reads (StepSettingsFor), and checks
// the plan's items one by one, within 10%:
//   frozen weights + adapters   what TrainingModel::Create leaves allocated
//   adapters, their gradients   the LoRA parameters' and .grad's bytes
//   optimizer state             AdamW's moments after its first step
//   activations (no checkpoint) the layers' saved bytes (measure_saved_bytes)
//   checkpoints (GPU), kept     what a checkpointed forward through the layers
//   attention outputs, RoPE     leaves allocated (tracked)
//   checkpoints (GPU / host)    the engine's offload plan's device/host split
//   layer backward working set  the largest per-layer backward peak
// and, disabled for now (see there), the whole step's peak against the
// tracked peak of a steady-state step. Workspace (cuBLAS, flash attention)
// has no CPU counterpart and is left out.
//
// To add a case: append a PlanCase to Cases() (the preset, dtype, sequence
// and the switches); every comparison runs on it. A case whose engine numbers
// disagree with the plan prints both in the failure.
#include "worker/engine/train/plan_inputs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/plan/device_table.h"
#include "common/plan/model_shape.h"
#include "common/plan/step_plan.h"
#include "kernels/allocation_tracker.h"
#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/lemo/lemo_options.h"
#include "worker/engine/model/init_model.h"
#include "worker/engine/train/memory_switches.h"
#include "worker/engine/train/optimizer.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

constexpr double kTolerance = 0.10;

struct PlanCase {
  std::string preset;
  torch::ScalarType dtype = torch::kFloat32;
  int64_t seq_len = 512;
  int64_t batch = 1;
  bool lemo = false;  // oracle with the default keep schedule
  bool checkpointing = false;
  bool keep_attention = false;
  // With checkpointing: the share of the checkpoints the offload budget
  // keeps on the device (< 0: no offload).
  double offload_device_share = -1;
  std::string Name() const {
    return absl::StrCat(preset, dtype == torch::kFloat32 ? "_fp32" : "_bf16",
                        "_seq", seq_len, "x", batch, lemo ? "_lemo" : "_dense",
                        checkpointing ? "_ckpt" : "",
                        keep_attention ? "_keepattn" : "",
                        offload_device_share >= 0 ? "_offload" : "");
  }
};

std::vector<PlanCase> Cases() {
  std::vector<PlanCase> cases;
  for (const char* preset : {"tiny", "small"}) {
    for (torch::ScalarType dtype : {torch::kFloat32, torch::kBFloat16}) {
      for (bool lemo : {false, true}) {
        PlanCase c;
        c.preset = preset;
        c.dtype = dtype;
        c.lemo = lemo;
        cases.push_back(c);  // no checkpointing
        c.checkpointing = true;
        cases.push_back(c);
        c.offload_device_share = 0.5;
        cases.push_back(c);
      }
    }
  }
  PlanCase keep;
  keep.preset = "small";
  keep.checkpointing = true;
  keep.keep_attention = true;
  cases.push_back(keep);
  PlanCase batched;
  batched.preset = "tiny";
  batched.batch = 2;
  batched.seq_len = 256;
  batched.lemo = true;
  cases.push_back(batched);
  return cases;
}

TrainingModelOptions OptionsFor(const PlanCase& c, const ModelConfig& config) {
  TrainingModelOptions o;
  o.base_dtype = c.dtype;
  o.gradient_checkpointing = c.checkpointing;
  o.checkpoint_keep_attention = c.keep_attention;
  if (c.lemo) o.lemo.mode = LemoMode::kOracle;
  if (c.offload_device_share >= 0) {
    o.offload.policy = OffloadPolicy::kSparsity;
    const int64_t checkpoints = config.num_hidden_layers * c.batch * c.seq_len *
                                config.hidden_size *
                                static_cast<int64_t>(c10::elementSize(c.dtype));
    o.offload.device_budget_bytes = static_cast<int64_t>(
        c.offload_device_share * static_cast<double>(checkpoints));
  }
  return o;
}

// What the engine allocated, by the plan's item names.
struct Measured {
  int64_t weights_and_adapters = 0;
  int64_t adapters = 0;
  int64_t gradients = 0;
  int64_t optimizer_state = 0;
  // Sum over the layers of what each forward left allocated (without
  // checkpointing: the activations).
  int64_t saved = 0;
  // Checkpointing without offload: what a forward through the layers leaves
  // allocated, its output and the final norm's saved input (the same size)
  // taken out: the checkpointed inputs, the kept attention outputs and the
  // RoPE tables the checkpoints hold for their re-runs.
  int64_t checkpointed = -1;
  // The largest per-layer backward working set (checkpointing only).
  int64_t backward_peak = -1;
  // Offload plan split (offload only).
  int64_t offload_device = 0;
  int64_t offload_host = 0;
  // The tracked peak of a steady-state step (weights, adapters, optimizer
  // state live throughout); -1 where a nested measurement hides it.
  int64_t step_peak = -1;
};

int64_t Nbytes(const std::vector<std::pair<std::string, torch::Tensor>>& ts) {
  int64_t n = 0;
  for (const auto& [name, t] : ts) n += static_cast<int64_t>(t.nbytes());
  return n;
}

// Builds the model inside `tracker`'s scope (weights made and dropped there,
// so only what the model keeps stays counted).
std::unique_ptr<TrainingModel> BuildTracked(
    const ModelConfig& config, const TrainingModelOptions& options,
    const std::shared_ptr<kernels::AllocationTracker>& tracker) {
  kernels::AllocationTracker::Scope scope(tracker);
  const std::map<std::string, torch::Tensor> w =
      testing::RandomWeights(config, 11);
  auto model = TrainingModel::Create(config, options, testing::MapLoader(w));
  EXPECT_THAT(model.status(), IsOk());
  return model.ok() ? std::move(*model) : nullptr;
}

// Single-threaded for its lifetime: the tracker's hook is thread-local.
class OneThread {
 public:
  OneThread() : threads_(torch::get_num_threads()) {
    torch::set_num_threads(1);
  }
  ~OneThread() { torch::set_num_threads(threads_); }

 private:
  int threads_;
};

Measured Measure(const PlanCase& c, const ModelConfig& config) {
  Measured m;
  OneThread one_thread;
  torch::manual_seed(3);
  const torch::Tensor ids =
      torch::randint(0, config.vocab_size, {c.batch, c.seq_len});

  // Pass 1 (plain): persistent state and the steady-state step peak.
  {
    TrainingModelOptions options = OptionsFor(c, config);
    auto tracker = std::make_shared<kernels::AllocationTracker>();
    auto model = BuildTracked(config, options, tracker);
    if (model == nullptr) return m;
    m.weights_and_adapters = tracker->live_bytes();
    m.adapters = Nbytes(model->LoraParameters());
    kernels::AllocationTracker::Scope scope(tracker);
    if (c.checkpointing && options.offload.policy == OffloadPolicy::kNone) {
      const int64_t before = tracker->live_bytes();
      torch::Tensor hidden = model->Hidden(ids);
      m.checkpointed = tracker->live_bytes() - before -
                       2 * static_cast<int64_t>(hidden.nbytes());
    }
    OptimizerOptions opt_options;
    auto opt = AdapterOptimizer::Create(model->LoraParameters(), opt_options);
    EXPECT_THAT(opt.status(), IsOk());
    if (!opt.ok()) return m;
    const auto step = [&] {
      torch::Tensor loss = model->Loss(ids, ids);
      loss.backward();
      int64_t grads = 0;
      for (const auto& [name, p] : model->LoraParameters()) {
        if (p.grad().defined())
          grads += static_cast<int64_t>(p.grad().nbytes());
      }
      (*opt)->Step();
      (*opt)->ZeroGrad();
      return grads;
    };
    m.gradients = step();
    // AdamW's moments as the optimizer holds them (the tracker's delta would
    // miss what offload's nested backward tracker hides).
    for (const auto& [name, t] : (*opt)->ExportState()) {
      if (absl::EndsWith(name, ".exp_avg") ||
          absl::EndsWith(name, ".exp_avg_sq")) {
        m.optimizer_state += static_cast<int64_t>(t.nbytes());
      }
    }
    // The tracker has counted since before the model existed: its peak over
    // the second step is the step's absolute peak.
    tracker->ResetPeak();
    step();
    // Offload measures each layer's backward (its own tracker, which hides
    // the backward from this one): no whole-step peak then.
    if (options.offload.policy == OffloadPolicy::kNone) {
      m.step_peak = tracker->peak_bytes();
    }
    if (const OffloadPlan* plan = model->offload_plan(); plan != nullptr) {
      m.offload_device = plan->device_bytes;
      m.offload_host = plan->host_bytes;
    }
  }
  // Pass 2 (measuring): each layer's saved bytes and backward working set.
  {
    TrainingModelOptions options = OptionsFor(c, config);
    options.lemo.measure_saved_bytes = true;
    auto model = TrainingModel::Create(
        config, options,
        testing::MapLoader(testing::RandomWeights(config, 11)));
    EXPECT_THAT(model.status(), IsOk());
    if (!model.ok()) return m;
    torch::Tensor loss = (*model)->Loss(ids, ids);
    loss.backward();
    for (const LemoLayerStats& s : (*model)->lemo_stats()) {
      m.saved += s.saved_bytes;
      m.backward_peak = std::max(m.backward_peak, s.backward_peak_bytes);
    }
  }
  return m;
}

int64_t Item(const plan::StepPlan& p, const std::string& name) {
  int64_t bytes = 0;
  for (const plan::PlanItem& item : p.items) {
    if (item.name == name) bytes += item.bytes;
  }
  return bytes;
}

std::string Describe(const plan::StepPlan& p) {
  std::string out;
  for (const plan::PlanItem& item : p.items) {
    absl::StrAppend(&out, "\n  ", item.name, " (", item.where,
                    "): ", item.bytes, "  ", item.detail);
  }
  absl::StrAppend(&out, "\n  peak ", p.peak_gpu_bytes);
  return out;
}

void ExpectWithin(const std::string& what, int64_t planned, int64_t measured,
                  const std::string& context) {
  const double error = measured == 0
                           ? (planned == 0 ? 0.0 : 1.0)
                           : std::abs(static_cast<double>(planned - measured)) /
                                 static_cast<double>(measured);
  std::printf("  %-28s planned %12lld  measured %12lld  %+6.1f%%\n",
              what.c_str(), static_cast<long long>(planned),
              static_cast<long long>(measured),
              measured == 0 ? 0.0
                            : 100.0 * static_cast<double>(planned - measured) /
                                  static_cast<double>(measured));
  EXPECT_LE(error, kTolerance)
      << what << ": planned " << planned << " bytes, the engine allocated "
      << measured << " (" << 100 * error << "% off)" << context;
}

class PlanAgainstEngine : public ::testing::TestWithParam<PlanCase> {};

TEST_P(PlanAgainstEngine, ItemsWithinTenPercentOfTheAllocatorsCount) {
  const PlanCase& c = GetParam();
  absl::StatusOr<ModelConfig> config = PresetConfig(c.preset);
  ASSERT_THAT(config.status(), IsOk());
  const TrainingModelOptions options = OptionsFor(c, *config);
  absl::StatusOr<plan::ModelShape> shape =
      ModelShapeFromConfig(*config, c.dtype);
  ASSERT_THAT(shape.status(), IsOk());
  absl::StatusOr<plan::StepSettings> settings =
      StepSettingsFor(options, c.seq_len, c.batch, *config);
  ASSERT_THAT(settings.status(), IsOk());
  absl::StatusOr<plan::DeviceDescription> device =
      plan::FindDevice("h100-80gb");
  ASSERT_THAT(device.status(), IsOk());
  absl::StatusOr<plan::StepPlan> p = plan::PlanStep(*shape, *settings, *device);
  ASSERT_THAT(p.status(), IsOk());
  const std::string context =
      absl::StrCat("\nplan of ", c.Name(), ":", Describe(*p));

  const Measured m = Measure(c, *config);
  std::printf("%s\n", c.Name().c_str());
  ExpectWithin("frozen weights", Item(*p, "frozen weights"),
               m.weights_and_adapters - m.adapters, context);
  ExpectWithin("adapters", Item(*p, "adapters"), m.adapters, context);
  ExpectWithin("adapter gradients", Item(*p, "adapter gradients"), m.gradients,
               context);
  ExpectWithin("optimizer state", Item(*p, "optimizer state"),
               m.optimizer_state, context);
  if (!c.checkpointing) {
    ExpectWithin("activations", Item(*p, "activations"), m.saved, context);
  } else {
    if (m.checkpointed >= 0) {
      ExpectWithin("checkpoints + kept attn + RoPE",
                   Item(*p, "checkpoints (GPU)") +
                       Item(*p, "kept attention outputs") +
                       Item(*p, "RoPE tables"),
                   m.checkpointed, context);
    }
    ExpectWithin("layer backward working set",
                 Item(*p, "layer backward working set"), m.backward_peak,
                 context);
  }
  if (c.offload_device_share >= 0) {
    ExpectWithin("checkpoints (GPU), offload", Item(*p, "checkpoints (GPU)"),
                 m.offload_device, context);
    ExpectWithin("checkpoints (host), offload", Item(*p, "checkpoints (host)"),
                 m.offload_host, context);
    EXPECT_EQ(p->pinned_host_bytes, Item(*p, "checkpoints (host)"));
  }
}

// The whole step's peak against the tracked peak of a steady-state step. The
// loss and the layer backward are transients that never overlap (the plan
// charges the loss only beyond the layer backward); where the loss is a large
// share of the step (these presets' vocabulary against their hidden size)
// summing them put tiny's checkpointed step 47-50% high.
TEST_P(PlanAgainstEngine, StepPeakWithinTenPercent) {
  const PlanCase& c = GetParam();
  // The plan describes the GPU path, where the loss's fused cross-entropy
  // reads the 16-bit logits as they are; on the CPU the engine upcasts each
  // segment's logits to fp32 first (train/loss.cc), a transient the GPU never
  // holds, which puts tiny's checkpointed bf16 step 15% above its plan. The
  // bf16 cases are compared item by item above; the whole step in fp32, where
  // both paths allocate alike.
  if (c.dtype != torch::kFloat32) {
    GTEST_SKIP() << "bf16 on the CPU: the loss's fp32 upcast is CPU-only";
  }
  absl::StatusOr<ModelConfig> config = PresetConfig(c.preset);
  ASSERT_THAT(config.status(), IsOk());
  const TrainingModelOptions options = OptionsFor(c, *config);
  absl::StatusOr<plan::StepPlan> p =
      plan::PlanStep(*ModelShapeFromConfig(*config, c.dtype),
                     *StepSettingsFor(options, c.seq_len, c.batch, *config),
                     *plan::FindDevice("h100-80gb"));
  ASSERT_THAT(p.status(), IsOk());
  const Measured m = Measure(c, *config);
  if (m.step_peak < 0)
    GTEST_SKIP() << "offload hides the backward's allocations";
  std::printf("%s\n", c.Name().c_str());
  ExpectWithin("peak - workspace", p->peak_gpu_bytes - Item(*p, "workspace"),
               m.step_peak,
               absl::StrCat("\nplan of ", c.Name(), ":", Describe(*p)));
}

INSTANTIATE_TEST_SUITE_P(TinyAndSmall, PlanAgainstEngine,
                         ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<PlanCase>& info) {
                           return info.param.Name();
                         });

TEST(PlanInputs, DefaultKeepScheduleIsThePlannersDefault) {
  for (int64_t layers : {0, 1, 2, 4, 7, 16, 22, 28, 32, 40, 80}) {
    EXPECT_EQ(DefaultKeepSchedule(layers), plan::DefaultKeepFractions(layers))
        << layers << " layers";
  }
}

TEST(PlanInputs, AutomaticSwitchesAreThePlannersAutomaticSwitches) {
  // The constants are the planner's alone (step_plan.h); what is checked is
  // that ApplyMemorySwitches and StepSettingsFor carry its rule through.
  for (const char* preset : {"tiny", "llama2-7b", "llama3-8b"}) {
    const ModelConfig config = *PresetConfig(preset);
    for (int64_t seq_len : {4096, 131072, 262144, 393216, 524288}) {
      for (int64_t memory :
           {int64_t{-1}, int64_t{85028569088}, int64_t{150109880320}}) {
        for (bool keep_attention : {false, true}) {
          TrainingModelOptions o;
          o.base_dtype = torch::kBFloat16;
          o.gradient_checkpointing = true;
          o.checkpoint_keep_attention = keep_attention;
          MemorySwitches asked;  // everything automatic
          ASSERT_THAT(
              ApplyMemorySwitches(asked, seq_len, config, &o, memory).status(),
              IsOk());
          const std::string where =
              absl::StrCat(preset, " ", seq_len, " tokens, ", memory,
                           " bytes, keep attention ", keep_attention);
          absl::StatusOr<plan::StepSettings> s =
              StepSettingsFor(o, seq_len, 1, config);
          ASSERT_THAT(s.status(), IsOk()) << where;
          EXPECT_EQ(s->tile_tokens, plan::AutoTileTokens(seq_len)) << where;
          const plan::ModelShape shape =
              *ModelShapeFromConfig(config, torch::kBFloat16);
          plan::StepSettings unresolved = *s;
          EXPECT_EQ(s->attention_head_groups,
                    plan::AutoHeadGroups(shape, unresolved, memory))
              << where;
        }
      }
    }
  }
}

TEST(PlanInputs, ModelShapeAgreesWithThePlannersConfigJsonReader) {
  for (const std::string& preset : PresetNames()) {
    absl::StatusOr<ModelConfig> config = PresetConfig(preset);
    ASSERT_THAT(config.status(), IsOk()) << preset;
    for (torch::ScalarType dtype : {torch::kFloat32, torch::kBFloat16}) {
      ModelConfig typed = *config;
      typed.torch_dtype = dtype == torch::kFloat32 ? "float32" : "bfloat16";
      absl::StatusOr<plan::ModelShape> ours =
          ModelShapeFromConfig(typed, dtype);
      ASSERT_THAT(ours.status(), IsOk()) << preset;
      absl::StatusOr<plan::ModelShape> theirs =
          plan::ModelShapeFromConfigJson(ModelConfigToJson(typed));
      ASSERT_THAT(theirs.status(), IsOk()) << preset;
      EXPECT_EQ(ours->hidden_size, theirs->hidden_size) << preset;
      EXPECT_EQ(ours->intermediate_size, theirs->intermediate_size) << preset;
      EXPECT_EQ(ours->num_layers, theirs->num_layers) << preset;
      EXPECT_EQ(ours->num_heads, theirs->num_heads) << preset;
      EXPECT_EQ(ours->num_kv_heads, theirs->num_kv_heads) << preset;
      EXPECT_EQ(ours->head_dim, theirs->head_dim) << preset;
      EXPECT_EQ(ours->vocab_size, theirs->vocab_size) << preset;
      EXPECT_EQ(ours->tie_word_embeddings, theirs->tie_word_embeddings)
          << preset;
      EXPECT_EQ(ours->weight_bytes, theirs->weight_bytes) << preset;
      EXPECT_EQ(ours->attention_bias, theirs->attention_bias) << preset;
      EXPECT_EQ(ours->mlp_bias, theirs->mlp_bias) << preset;
      EXPECT_EQ(ours->qk_norm, theirs->qk_norm) << preset;
      // The planner's own preset table says the same.
      absl::StatusOr<plan::ModelShape> named =
          plan::ModelShapeForPreset(preset);
      ASSERT_THAT(named.status(), IsOk()) << preset;
      EXPECT_EQ(plan::FrozenParameterCount(*named),
                plan::FrozenParameterCount(*ours))
          << preset;
    }
  }
}

TEST(PlanInputs, FrozenParameterCountIsTheTensorsTheModelLoads) {
  for (const std::string& preset : PresetNames()) {
    absl::StatusOr<ModelConfig> config = PresetConfig(preset);
    ASSERT_THAT(config.status(), IsOk());
    int64_t elements = 0;
    for (const TensorEntry& e : LlamaTensorEntries(*config, DType::kBF16)) {
      elements += e.NumElements();
    }
    absl::StatusOr<plan::ModelShape> shape =
        ModelShapeFromConfig(*config, torch::kBFloat16);
    ASSERT_THAT(shape.status(), IsOk());
    EXPECT_EQ(plan::FrozenParameterCount(*shape), elements) << preset;
  }
}

// Options with every switch the plan reads set away from its default: bf16,
// LoRA r=16 on all linears, checkpointing keeping attention, LeMo oracle
// (with recompute_mlp, which checkpointing ignores), uniform offload within
// 1.5 GiB, 1024-token tiles, 512-token loss segments, MLP pruning and 2D.
TrainingModelOptions OptionsWithEverySwitch() {
  TrainingModelOptions o;
  o.base_dtype = torch::kBFloat16;
  o.lora.rank = 16;
  o.lora.target_modules = {"all-linear"};
  o.gradient_checkpointing = true;
  o.checkpoint_keep_attention = true;
  o.lemo.mode = LemoMode::kOracle;
  o.lemo.recompute_mlp = true;  // ignored under checkpointing
  o.offload.policy = OffloadPolicy::kUniform;
  o.offload.device_budget_bytes = int64_t{3} << 29;  // 1.5 GiB
  o.tile_tokens = 1024;
  o.loss_segment_tokens = 512;
  o.lemo.mlp_prune_ratio = 0.5;
  o.lemo.two_d_sparsity = true;
  return o;
}

TEST(PlanInputs, StepSettingsMirrorWhatTheModelRuns) {
  const ModelConfig config = *PresetConfig("small");
  TrainingModelOptions o = OptionsWithEverySwitch();
  absl::StatusOr<plan::StepSettings> s = StepSettingsFor(o, 4096, 2, config);
  ASSERT_THAT(s.status(), IsOk());
  EXPECT_EQ(s->seq_len, 4096);
  EXPECT_EQ(s->batch, 2);
  EXPECT_EQ(s->activation_bytes, 2);
  EXPECT_EQ(s->lora_rank, 16);
  EXPECT_EQ(s->lora_targets.size(), 7u);
  EXPECT_TRUE(s->gradient_checkpointing);
  EXPECT_TRUE(s->checkpoint_keep_attention);
  EXPECT_FALSE(s->recompute_mlp);
  EXPECT_TRUE(s->recompute_norm);  // keep-attention's fused MLP node
  EXPECT_EQ(s->offload, plan::OffloadPolicy::kUniform);
  EXPECT_DOUBLE_EQ(s->offload_gpu_budget_gib, 1.5);
  EXPECT_EQ(s->tile_tokens, 1024);
  EXPECT_EQ(s->loss_segment_tokens, 512);
  EXPECT_EQ(s->keep_fractions, DefaultKeepSchedule(config.num_hidden_layers));
  EXPECT_TRUE(s->lemo_oracle);
  EXPECT_DOUBLE_EQ(s->mlp_prune_ratio, 0.5);
  EXPECT_TRUE(s->lemo_2d);

  // A schedule given by the user is the one planned; dense plans none.
  o.lemo.keep_ratios = {1, 0.5, 0.25, 1};
  s = StepSettingsFor(o, 4096, 1, config);
  ASSERT_THAT(s.status(), IsOk());
  EXPECT_EQ(s->keep_fractions, o.lemo.keep_ratios);
  o.lemo.mode = LemoMode::kDense;
  s = StepSettingsFor(o, 4096, 1, config);
  ASSERT_THAT(s.status(), IsOk());
  EXPECT_TRUE(s->keep_fractions.empty());
  EXPECT_FALSE(s->lemo_oracle);
}

// The budget (memory_budget.cc) plans from the workload alone: whatever
// switches the options hold, WorkloadSettingsFor leaves them off for the
// budget to choose, and the rest is what StepSettingsFor plans.
TEST(PlanInputs, WorkloadSettingsAreTheStepWithoutItsMemorySwitches) {
  const ModelConfig config = *PresetConfig("small");
  TrainingModelOptions o = OptionsWithEverySwitch();
  o.lemo.recompute_norm = true;
  o.attention_head_groups = 4;
  for (const std::vector<double>& keep :
       {std::vector<double>{}, std::vector<double>{1, 0.5, 0.25, 1}}) {
    o.lemo.keep_ratios = keep;
    absl::StatusOr<plan::StepSettings> w =
        WorkloadSettingsFor(o, 4096, 2, config.num_hidden_layers);
    ASSERT_THAT(w.status(), IsOk());
    absl::StatusOr<plan::StepSettings> s = StepSettingsFor(o, 4096, 2, config);
    ASSERT_THAT(s.status(), IsOk());
    EXPECT_EQ(w->seq_len, s->seq_len);
    EXPECT_EQ(w->batch, s->batch);
    EXPECT_EQ(w->activation_bytes, s->activation_bytes);
    EXPECT_EQ(w->lora_rank, s->lora_rank);
    EXPECT_EQ(w->lora_targets, s->lora_targets);
    EXPECT_EQ(w->loss_segment_tokens, s->loss_segment_tokens);
    EXPECT_EQ(w->keep_fractions, s->keep_fractions);
    EXPECT_EQ(w->lemo_oracle, s->lemo_oracle);
    EXPECT_DOUBLE_EQ(w->mlp_prune_ratio, s->mlp_prune_ratio);
    EXPECT_EQ(w->lemo_2d, s->lemo_2d);
    const plan::StepSettings off;
    EXPECT_FALSE(w->gradient_checkpointing);
    EXPECT_FALSE(w->checkpoint_keep_attention);
    EXPECT_FALSE(w->recompute_mlp);
    EXPECT_FALSE(w->recompute_norm);
    EXPECT_EQ(w->offload, plan::OffloadPolicy::kNone);
    EXPECT_DOUBLE_EQ(w->offload_gpu_budget_gib, off.offload_gpu_budget_gib);
    EXPECT_EQ(w->tile_tokens, 0);
    EXPECT_EQ(w->attention_head_groups, 0);
  }
  o.lemo.mode = LemoMode::kDense;
  absl::StatusOr<plan::StepSettings> dense =
      WorkloadSettingsFor(o, 4096, 2, config.num_hidden_layers);
  ASSERT_THAT(dense.status(), IsOk());
  EXPECT_TRUE(dense->keep_fractions.empty());
  EXPECT_FALSE(dense->lemo_oracle);
}

TEST(PlanInputs, BadInputsAreNamed) {
  const ModelConfig config = *PresetConfig("tiny");
  TrainingModelOptions o;
  EXPECT_THAT(
      StepSettingsFor(o, 0, 1, config).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("seq_len")));
  EXPECT_THAT(StepSettingsFor(o, 8, 0, config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("batch")));
  TrainingModelOptions bad_target = o;
  bad_target.lora.target_modules = {"qq_proj"};
  EXPECT_THAT(
      StepSettingsFor(bad_target, 8, 1, config).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("qq_proj")));
  EXPECT_THAT(
      WorkloadSettingsFor(bad_target, 8, 1, config.num_hidden_layers).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("qq_proj")));
  TrainingModelOptions bad_schedule = o;
  bad_schedule.lemo.mode = LemoMode::kOracle;
  bad_schedule.lemo.keep_ratios = {1, 0.5, 1};  // tiny has 2 layers
  EXPECT_THAT(
      StepSettingsFor(bad_schedule, 8, 1, config).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("keep_ratios")));
  ModelConfig empty;
  EXPECT_THAT(ModelShapeFromConfig(empty, torch::kBFloat16).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

}  // namespace
}  // namespace lemo::engine
