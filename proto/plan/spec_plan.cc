#include "proto/plan/spec_plan.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/plan/budget.h"
#include "common/plan/device_table.h"
#include "common/status_macros.h"
#include "proto/validation/spec_validation.h"

namespace lemo::proto {
namespace {

// The JobSpec defaults (job_spec.proto), as spec_translation.cc applies them
// when a field arrives as zero.
constexpr int64_t kDefaultLoraRank = 8;
constexpr int64_t kDefaultLossSegmentTokens = 2048;
constexpr double kDefaultMlpPruneRatio = 0.8;

template <typename T>
T OrDefault(T value, T fallback) {
  return value == T{} ? fallback : value;
}

}  // namespace

absl::StatusOr<int64_t> SpecDtypeBytes(const v1::JobSpec& spec) {
  switch (spec.model().dtype()) {
    case v1::DTYPE_UNSPECIFIED:
      return spec.resources().device_kind() == v1::CUDA ? 2 : 4;
    case v1::FP32:
      return 4;
    case v1::BF16:
    case v1::FP16:
      return 2;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.model.dtype: unknown value ", spec.model().dtype()));
  }
}

absl::StatusOr<plan::StepSettings> StepSettingsFromSpec(
    const v1::JobSpec& spec, const plan::ModelShape& model,
    int64_t device_memory_bytes) {
  plan::StepSettings s;
  s.seq_len = spec.seq_len();
  s.batch = OrDefault<int64_t>(spec.batch_size(), 1);
  LEMO_ASSIGN_OR_RETURN(s.activation_bytes, SpecDtypeBytes(spec));
  s.lora_rank = OrDefault<int64_t>(spec.lora().r(), kDefaultLoraRank);
  if (spec.lora().target_modules_size() > 0) {
    s.lora_targets.assign(spec.lora().target_modules().begin(),
                          spec.lora().target_modules().end());
  }
  s.gradient_checkpointing = spec.model().gradient_checkpointing();
  s.checkpoint_keep_attention = spec.model().checkpoint_keep_attention();
  s.loss_segment_tokens = OrDefault<int64_t>(spec.lemo().loss_segment_tokens(),
                                             kDefaultLossSegmentTokens);

  // LeMo (spec_translation.cc TranslateLemo): the MLP and norm savers and 2D
  // sparsity apply in every mode; a keep schedule only in ORACLE/PREDICTOR.
  const v1::LemoSpec& lemo = spec.lemo();
  if (lemo.mlp_sparsity().enabled()) {
    s.mlp_prune_ratio = lemo.mlp_sparsity().prune_ratio() > 0
                            ? lemo.mlp_sparsity().prune_ratio()
                            : kDefaultMlpPruneRatio;
  }
  s.recompute_norm = lemo.recompute_norm();
  s.recompute_mlp = lemo.recompute_mlp();
  s.lemo_2d = lemo.two_d_sparsity();
  if (lemo.mode() == v1::ORACLE || lemo.mode() == v1::PREDICTOR) {
    s.lemo_oracle = lemo.mode() == v1::ORACLE;
    const v1::KeepRatioSchedule& keep = lemo.keep_ratio();
    if (keep.per_layer_size() > model.num_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.lemo.keep_ratio.per_layer: ", keep.per_layer_size(),
          " ratios for a model of ", model.num_layers, " layers"));
    }
    if (keep.per_layer_size() == 0 && keep.default_ratio() == 0) {
      s.keep_fractions = plan::DefaultKeepFractions(model.num_layers);
    } else {
      const double fallback =
          keep.default_ratio() > 0 ? keep.default_ratio() : 1.0;
      s.keep_fractions.assign(keep.per_layer().begin(), keep.per_layer().end());
      s.keep_fractions.resize(model.num_layers, fallback);
    }
  }

  // The memory switches (memory_switches.cc ApplyMemorySwitches).
  if (spec.model().has_tile_tokens() && spec.model().tile_tokens() >= 0) {
    s.tile_tokens = spec.model().tile_tokens();
  } else {
    s.tile_tokens = plan::AutoTileTokens(s.seq_len);
  }
  if (spec.model().has_attention_head_groups() &&
      spec.model().attention_head_groups() >= 0) {
    s.attention_head_groups = spec.model().attention_head_groups();
  } else if (s.gradient_checkpointing) {
    // The engine runs head groups only without LoRA dropout.
    s.attention_head_groups =
        spec.lora().dropout() != 0
            ? 0
            : plan::AutoHeadGroups(model, s, device_memory_bytes);
  }
  std::string offload = spec.model().offload();
  // The deprecated spec.lemo.offload: "sparsity" under checkpointing, else
  // ignored (the agent notes so in the job's log).
  if (offload.empty() && lemo.offload() && s.gradient_checkpointing) {
    offload = "sparsity";
  }
  if (offload.empty() || offload == "auto") {
    s.offload = s.gradient_checkpointing ? plan::OffloadPolicy::kSparsity
                                         : plan::OffloadPolicy::kNone;
  } else if (offload == "none" || offload == "uniform" ||
             offload == "sparsity") {
    s.offload = offload == "none"      ? plan::OffloadPolicy::kNone
                : offload == "uniform" ? plan::OffloadPolicy::kUniform
                                       : plan::OffloadPolicy::kSparsity;
    if (s.offload != plan::OffloadPolicy::kNone && !s.gradient_checkpointing) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.model.offload ", offload,
          " moves checkpointed layer inputs: turn on gradient checkpointing"));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.model.offload: offload policy must be none, "
                     "uniform, sparsity or auto, got \"",
                     offload, "\""));
  }
  s.offload_gpu_budget_gib = spec.model().has_offload_gpu_budget_gib()
                                 ? spec.model().offload_gpu_budget_gib()
                                 : -1;
  return s;
}

absl::StatusOr<SpecPlanInputs> PlanInputsFromSpec(
    const v1::JobSpec& spec, const plan::ModelShape& model,
    const plan::DeviceDescription& device) {
  SpecPlanInputs in;
  in.model = model;
  LEMO_ASSIGN_OR_RETURN(in.model.weight_bytes, SpecDtypeBytes(spec));
  LEMO_ASSIGN_OR_RETURN(
      in.settings,
      StepSettingsFromSpec(spec, in.model,
                           spec.resources().device_kind() == v1::CUDA
                               ? device.memory_bytes
                               : int64_t{-1}));
  return in;
}

absl::StatusOr<plan::DeviceDescription> DeviceOfWorker(
    const v1::Register& registration) {
  if (registration.devices_size() == 0 ||
      registration.devices(0).total_memory_bytes() <= 0) {
    return absl::NotFoundError(absl::StrCat("worker ", registration.worker_id(),
                                            " registered no device memory"));
  }
  const v1::Device& d = registration.devices(0);
  // An older worker sends no host memory: plan without a host limit rather
  // than refuse every offloading job on it.
  const int64_t host = registration.host_memory_bytes() > 0
                           ? registration.host_memory_bytes()
                           : std::numeric_limits<int64_t>::max() / 4;
  return plan::DeviceFromRegistration(d.name(), d.total_memory_bytes(), host);
}

absl::StatusOr<SpecStepPlan> PlanSpecOnDevice(
    const v1::JobSpec& spec, const plan::ModelShape& model,
    const plan::DeviceDescription& device) {
  LEMO_ASSIGN_OR_RETURN(SpecPlanInputs in,
                        PlanInputsFromSpec(spec, model, device));
  LEMO_ASSIGN_OR_RETURN(const int64_t budget, MemoryBudgetBytes(spec));
  if (budget == 0) {
    LEMO_ASSIGN_OR_RETURN(plan::StepPlan p,
                          plan::PlanStep(in.model, in.settings, device));
    return SpecStepPlan{std::move(in.settings), std::move(p), ""};
  }
  const plan::BudgetOptions options = plan::BudgetOptions::ForEngine(
      budget, spec.resources().memory_budget_allow_inexact(),
      spec.lora().dropout(), spec.resources().device_kind() == v1::CUDA);
  absl::StatusOr<plan::BudgetChoice> choice =
      plan::ChooseWithinBudget(in.model, in.settings, device, options);
  if (choice.ok()) {
    return SpecStepPlan{std::move(choice->settings), std::move(choice->plan),
                        std::move(choice->summary)};
  }
  // Nothing fits the budget (or the budget's planning failed): the spec's
  // own switches, judged against the budget, say by how much.
  plan::DeviceDescription within = device;
  within.memory_bytes = std::min(within.memory_bytes, budget);
  LEMO_ASSIGN_OR_RETURN(plan::StepPlan p,
                        plan::PlanStep(in.model, in.settings, within));
  return SpecStepPlan{std::move(in.settings), std::move(p),
                      std::string(choice.status().message())};
}

}  // namespace lemo::proto
