// Tests of the memory-budgeted choice (common/plan/budget.h) against the real
// planner: a generous budget gets the fastest setting, a tight one a slower
// one that fits, an impossible one a FAILED_PRECONDITION naming the
// shortfall; accuracy-changing savers only with allow_inexact and only when
// nothing exact fits. To add a case: a TEST that builds a model (a preset), a
// base StepSettings and a device (the table's), picks a budget relative to
// what PlanStep predicts for some setting, and checks the choice.
#include "common/plan/budget.h"

#include <algorithm>
#include <limits>

#include "absl/strings/match.h"
#include "common/plan/device_table.h"
#include "common/plan/model_shape.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lemo::plan {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::Each;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kGiB = int64_t{1} << 30;

struct Case {
  ModelShape model;
  StepSettings base;
  DeviceDescription device;
};

// Llama-2-7B at `seq_len` tokens on an H100: long enough that checkpointing
// matters.
Case Llama7bOnH100(int64_t seq_len) {
  Case s;
  s.model = ModelShapeForPreset("llama2-7b").value();
  s.base.seq_len = seq_len;
  s.device = FindDevice("h100-80gb").value();
  return s;
}

StepPlan Plan(const Case& s, const StepSettings& settings) {
  absl::StatusOr<StepPlan> plan = PlanStep(s.model, settings, s.device);
  EXPECT_THAT(plan, IsOk());
  return plan.value_or(StepPlan{});
}

TEST(ChooseWithinBudget, GenerousBudgetPicksTheFastestSetting) {
  const Case s = Llama7bOnH100(4096);
  BudgetOptions options;
  options.budget_bytes = 70 * kGiB;
  LEMO_ASSERT_OK_AND_ASSIGN(
      BudgetChoice choice,
      ChooseWithinBudget(s.model, s.base, s.device, options));
  // Recomputing only adds FLOPs: with room for everything, nothing is.
  EXPECT_FALSE(choice.settings.gradient_checkpointing);
  EXPECT_FALSE(choice.settings.recompute_mlp);
  EXPECT_FALSE(choice.settings.recompute_norm);
  EXPECT_TRUE(choice.plan.fits);
  EXPECT_LE(choice.plan.peak_gpu_bytes, options.budget_bytes);
  // It is the fastest of every candidate considered.
  EXPECT_EQ(choice.plan.step_seconds, Plan(s, choice.settings).step_seconds);
  EXPECT_THAT(choice.summary,
              AllOf(HasSubstr("memory budget 70.0 GiB on h100-80gb: chose "
                              "no gradient checkpointing"),
                    HasSubstr("predicted peak")));
  // Every exact combination was planned, none inexact: 2 x (3 without
  // checkpointing + 2 x 2 keep-attention/offload + 2 head-group ones), with
  // and without tiles (4K tokens: no tiles, so half).
  EXPECT_EQ(choice.considered.size(), 9u);
  EXPECT_THAT(choice.considered, Each(Not(HasSubstr("MLP pruning"))));
  EXPECT_THAT(choice.considered,
              Contains(HasSubstr("gradient checkpointing keeping attention")));
}

TEST(ChooseWithinBudget, TightBudgetPicksCheckpointingThatFits) {
  const Case s = Llama7bOnH100(32768);
  StepSettings dense = s.base;
  StepSettings checkpointed = s.base;
  checkpointed.gradient_checkpointing = true;
  const StepPlan whole = Plan(s, dense);
  const StepPlan small = Plan(s, checkpointed);
  ASSERT_LT(small.peak_gpu_bytes, whole.peak_gpu_bytes);
  // Room for plain checkpointing, not for any setting without it (the
  // recompute ones still save every layer's attention activations).
  StepSettings lean = s.base;
  lean.recompute_mlp = true;
  const int64_t lean_peak = Plan(s, lean).peak_gpu_bytes;
  ASSERT_LT(small.peak_gpu_bytes, lean_peak);
  BudgetOptions options;
  options.budget_bytes = (small.peak_gpu_bytes + lean_peak) / 2;
  LEMO_ASSERT_OK_AND_ASSIGN(
      BudgetChoice choice,
      ChooseWithinBudget(s.model, s.base, s.device, options));
  EXPECT_TRUE(choice.settings.gradient_checkpointing);
  EXPECT_TRUE(choice.plan.fits);
  EXPECT_LE(choice.plan.peak_gpu_bytes, options.budget_bytes);
  EXPECT_EQ(choice.settings.mlp_prune_ratio, 0);
  EXPECT_FALSE(choice.settings.lemo_2d);
  // Plain checkpointing fits too (planned on the budget, as the choice is),
  // and is predicted no faster than the one chosen.
  DeviceDescription budgeted = s.device;
  budgeted.memory_bytes = options.budget_bytes;
  const StepPlan plain = PlanStep(s.model, checkpointed, budgeted).value();
  ASSERT_TRUE(plain.fits);
  EXPECT_LE(choice.plan.step_seconds, plain.step_seconds);
}

TEST(ChooseWithinBudget, BudgetIsCappedByTheDevice) {
  const Case s = Llama7bOnH100(4096);
  BudgetOptions options;
  options.budget_bytes = 1000 * kGiB;
  LEMO_ASSERT_OK_AND_ASSIGN(
      BudgetChoice choice,
      ChooseWithinBudget(s.model, s.base, s.device, options));
  EXPECT_LE(choice.plan.peak_gpu_bytes, s.device.memory_bytes);
  EXPECT_THAT(choice.summary, HasSubstr("(the device's 79.2 GiB)"));
}

TEST(ChooseWithinBudget, ImpossibleBudgetFailsNamingTheSmallestShortfall) {
  const Case s = Llama7bOnH100(32768);
  BudgetOptions options;
  options.budget_bytes = 4 * kGiB;  // less than the frozen weights
  EXPECT_THAT(
      ChooseWithinBudget(s.model, s.base, s.device, options),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr("memory budget 4.0 GiB on h100-80gb: no "
                               "setting fits; the smallest, gradient "
                               "checkpointing"),
                     HasSubstr("short by "),
                     HasSubstr("accuracy-changing savers were not tried"))));
}

// Without allow_inexact the savers are never planned; with it they are
// planned only once no exact setting fits, and the choice is the fastest
// fitting one of them if the planner predicts one fits, else nothing.
TEST(ChooseWithinBudget, InexactSaversOnlyWhenAllowedAndNeeded) {
  const Case s = Llama7bOnH100(32768);
  BudgetOptions probe;
  probe.budget_bytes = 80 * kGiB;
  probe.allow_inexact = true;
  LEMO_ASSERT_OK_AND_ASSIGN(
      BudgetChoice roomy, ChooseWithinBudget(s.model, s.base, s.device, probe));
  EXPECT_EQ(roomy.settings.mlp_prune_ratio, 0);
  EXPECT_FALSE(roomy.settings.lemo_2d);
  EXPECT_THAT(roomy.considered, Each(Not(HasSubstr("MLP pruning"))));

  int64_t smallest_exact = std::numeric_limits<int64_t>::max();
  StepSettings smallest_settings;
  for (bool keep : {false, true}) {
    for (int64_t groups : {0, 4}) {
      if (keep && groups > 1) continue;
      // Every checkpoint on the host: the least any exact setting keeps.
      StepSettings c = s.base;
      c.gradient_checkpointing = true;
      c.checkpoint_keep_attention = keep;
      c.attention_head_groups = groups;
      c.offload = OffloadPolicy::kSparsity;
      c.offload_gpu_budget_gib = 0;
      for (int64_t tile : {int64_t{0}, kBudgetTileTokens}) {
        c.tile_tokens = tile;
        const int64_t peak = Plan(s, c).peak_gpu_bytes;
        if (peak < smallest_exact) {
          smallest_exact = peak;
          smallest_settings = c;
        }
      }
    }
  }
  // Just below every exact setting.
  BudgetOptions options;
  options.budget_bytes = smallest_exact - 1;
  EXPECT_THAT(ChooseWithinBudget(s.model, s.base, s.device, options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("accuracy-changing savers were not tried")));
  options.allow_inexact = true;
  // What the planner says of the smallest setting with both savers on.
  StepSettings both = smallest_settings;
  both.mlp_prune_ratio = kBudgetMlpPruneRatio;
  both.lemo_2d = true;
  both.offload_gpu_budget_gib = -1;  // automatic, as the candidates are
  DeviceDescription budgeted = s.device;
  budgeted.memory_bytes = options.budget_bytes;
  const bool savers_fit = PlanStep(s.model, both, budgeted).value().fits;
  absl::StatusOr<BudgetChoice> choice =
      ChooseWithinBudget(s.model, s.base, s.device, options);
  if (savers_fit) {
    ASSERT_THAT(choice, IsOk());
    EXPECT_TRUE(choice->settings.mlp_prune_ratio > 0 ||
                choice->settings.lemo_2d);
    EXPECT_TRUE(choice->plan.fits);
    EXPECT_THAT(choice->summary, HasSubstr("inexact settings fit"));
  } else {
    EXPECT_THAT(choice, StatusIs(absl::StatusCode::kFailedPrecondition,
                                 Not(HasSubstr("were not tried"))));
  }
}

TEST(ChooseWithinBudget, SaversTheBaseTurnsOnStayOn) {
  Case s = Llama7bOnH100(4096);
  s.base.lemo_2d = true;
  BudgetOptions options;
  options.budget_bytes = 80 * kGiB;
  LEMO_ASSERT_OK_AND_ASSIGN(
      BudgetChoice choice,
      ChooseWithinBudget(s.model, s.base, s.device, options));
  EXPECT_TRUE(choice.settings.lemo_2d);
}

TEST(ChooseWithinBudget, NoOffloadOrHeadGroupsWhereNotAllowed) {
  const Case s = Llama7bOnH100(32768);
  BudgetOptions options;
  options.budget_bytes = 4 * kGiB;
  options.allow_offload = false;
  options.allow_head_groups = false;
  absl::StatusOr<BudgetChoice> choice =
      ChooseWithinBudget(s.model, s.base, s.device, options);
  ASSERT_THAT(choice, StatusIs(absl::StatusCode::kFailedPrecondition,
                               HasSubstr("no setting fits")));
  options.budget_bytes = 80 * kGiB;
  LEMO_ASSERT_OK_AND_ASSIGN(
      BudgetChoice roomy,
      ChooseWithinBudget(s.model, s.base, s.device, options));
  EXPECT_THAT(roomy.considered, Each(Not(HasSubstr("offload sparsity"))));
  EXPECT_THAT(roomy.considered, Each(Not(HasSubstr("head groups"))));
}

// The CPU path the worker and lemo-train take in CI (tests/e2e/
// budget_e2e_test.cc, tests/worker/lemo_train_cli_test.cc): the tiny preset in
// fp32 at 64 tokens, the host's RAM as the device, no offload.
TEST(ChooseWithinBudget, TinyPresetOnTheCpuAsTheE2eRunsIt) {
  ModelShape tiny = ModelShapeForPreset("tiny").value();
  tiny.weight_bytes = 4;
  StepSettings base;
  base.seq_len = 64;
  base.activation_bytes = 4;
  base.loss_segment_tokens = 2048;
  const DeviceDescription cpu =
      DeviceFromRegistration("cpu", 16 * kGiB, 16 * kGiB);
  BudgetOptions options;
  options.budget_bytes = 2 * kGiB;
  options.allow_offload = false;
  LEMO_ASSERT_OK_AND_ASSIGN(BudgetChoice roomy,
                            ChooseWithinBudget(tiny, base, cpu, options));
  EXPECT_THAT(roomy.summary,
              HasSubstr("memory budget 2.0 GiB on cpu: chose no gradient "
                        "checkpointing; predicted peak "));
  // A byte below: a leaner setting, never offload.
  options.budget_bytes = roomy.plan.peak_gpu_bytes - 1;
  LEMO_ASSERT_OK_AND_ASSIGN(BudgetChoice tight,
                            ChooseWithinBudget(tiny, base, cpu, options));
  EXPECT_LT(tight.plan.peak_gpu_bytes, roomy.plan.peak_gpu_bytes);
  EXPECT_EQ(tight.settings.offload, OffloadPolicy::kNone);
  options.budget_bytes = 1024;
  EXPECT_THAT(ChooseWithinBudget(tiny, base, cpu, options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("memory budget 1.0 KiB on cpu: no setting "
                                 "fits; the smallest, ")));
}

TEST(ChooseWithinBudget, BadBudgetsNameTheField) {
  const Case s = Llama7bOnH100(4096);
  for (int64_t bad : {int64_t{0}, int64_t{-1}, -80 * kGiB}) {
    BudgetOptions options;
    options.budget_bytes = bad;
    EXPECT_THAT(ChooseWithinBudget(s.model, s.base, s.device, options),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("budget_bytes: must be > 0")))
        << bad;
  }
}

TEST(ChooseWithinBudget, BadBaseSettingsAreThePlannersError) {
  Case s = Llama7bOnH100(4096);
  s.base.seq_len = 0;
  BudgetOptions options;
  options.budget_bytes = 80 * kGiB;
  EXPECT_THAT(
      ChooseWithinBudget(s.model, s.base, s.device, options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("seq_len")));
}

TEST(DescribeSwitches, SaysEachSwitch) {
  StepSettings s;
  EXPECT_EQ(DescribeSwitches(s), "no gradient checkpointing");
  s.recompute_mlp = true;
  EXPECT_EQ(DescribeSwitches(s), "no gradient checkpointing, recompute MLP");
  s = StepSettings{};
  s.gradient_checkpointing = true;
  s.checkpoint_keep_attention = true;
  s.offload = OffloadPolicy::kSparsity;
  s.tile_tokens = 16384;
  s.mlp_prune_ratio = 0.8;
  s.lemo_2d = true;
  EXPECT_EQ(DescribeSwitches(s),
            "gradient checkpointing keeping attention, offload sparsity, "
            "tiles 16384, MLP pruning 0.8, LeMo 2D");
  EXPECT_EQ(HumanBytes(512), "512 B");
  EXPECT_EQ(HumanBytes(3 << 20), "3.0 MiB");
  EXPECT_EQ(HumanBytes(int64_t{70} << 30), "70.0 GiB");
}

}  // namespace
}  // namespace lemo::plan
