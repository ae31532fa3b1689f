#include "common/plan/budget.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace lemo::plan {
namespace {

struct Candidate {
  StepSettings settings;
  StepPlan plan;
  // Index in generation order: the tie-break between equal predicted times,
  // so that the simpler setting (generated first) wins.
  int order = 0;
};

// The exact candidates: every combination of the exact switches, the simpler
// ones first (see budget.h).
std::vector<StepSettings> ExactCandidates(const ModelShape& model,
                                          const StepSettings& base,
                                          const BudgetOptions& options) {
  std::vector<int64_t> tiles = {0};
  // A tile as long as the sequence is one tile: the same as none.
  if (base.seq_len * std::max<int64_t>(base.batch, 1) > kBudgetTileTokens) {
    tiles.push_back(kBudgetTileTokens);
  }
  const bool groups_split = options.allow_head_groups && model.num_heads > 0 &&
                            model.num_kv_heads > 0 &&
                            model.num_heads % kBudgetHeadGroups == 0 &&
                            model.num_kv_heads % kBudgetHeadGroups == 0;
  std::vector<StepSettings> out;
  auto reset = [&base] {
    StepSettings s = base;
    s.gradient_checkpointing = false;
    s.checkpoint_keep_attention = false;
    s.recompute_mlp = false;
    s.recompute_norm = false;
    s.offload = OffloadPolicy::kNone;
    s.offload_gpu_budget_gib = -1;
    s.tile_tokens = 0;
    s.attention_head_groups = 0;
    return s;
  };
  for (int64_t tile : tiles) {
    // Without checkpointing: nothing, the norm, or the MLP's gate/up (which
    // includes the norm) recomputed in backward.
    for (int recompute = 0; recompute < 3; ++recompute) {
      StepSettings s = reset();
      s.tile_tokens = tile;
      s.recompute_norm = recompute == 1;
      s.recompute_mlp = recompute == 2;
      out.push_back(s);
    }
  }
  for (int64_t tile : tiles) {
    for (bool keep_attention : {true, false}) {
      for (OffloadPolicy offload :
           {OffloadPolicy::kNone, OffloadPolicy::kSparsity}) {
        if (offload != OffloadPolicy::kNone && !options.allow_offload) {
          continue;
        }
        for (int64_t groups : {int64_t{0}, kBudgetHeadGroups}) {
          // Keeping attention skips its re-run; groups re-run it in pieces:
          // the engine refuses the pair (training_model.cc).
          if (groups > 1 && (keep_attention || !groups_split)) continue;
          StepSettings s = reset();
          s.gradient_checkpointing = true;
          s.checkpoint_keep_attention = keep_attention;
          s.offload = offload;
          s.tile_tokens = tile;
          s.attention_head_groups = groups;
          out.push_back(s);
        }
      }
    }
  }
  return out;
}

// Each exact candidate with the accuracy-changing savers the base does not
// already have: MLP pruning, LeMo 2D, both.
std::vector<StepSettings> InexactCandidates(
    const std::vector<StepSettings>& exact, const StepSettings& base) {
  const double ratio =
      base.mlp_prune_ratio > 0 ? base.mlp_prune_ratio : kBudgetMlpPruneRatio;
  std::vector<StepSettings> out;
  for (int variant = 1; variant < 4; ++variant) {
    const bool prune = (variant & 1) != 0;
    const bool two_d = (variant & 2) != 0;
    // Nothing new: the base has this saver on already.
    if ((prune && base.mlp_prune_ratio > 0) || (two_d && base.lemo_2d)) {
      continue;
    }
    for (StepSettings s : exact) {
      if (prune) s.mlp_prune_ratio = ratio;
      if (two_d) s.lemo_2d = true;
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::string Line(const Candidate& c) {
  return absl::StrCat(
      DescribeSwitches(c.settings), ": peak ",
      HumanBytes(c.plan.peak_gpu_bytes), ", step ",
      absl::StrFormat("%.3g s", c.plan.step_seconds), ", ",
      c.plan.fits
          ? "fits"
          : absl::StrCat("short by ", HumanBytes(c.plan.shortfall_bytes)));
}

// Plans every candidate on `device`, fastest predicted first. A candidate the
// planner refuses is left out (its reason goes to `considered`), unless all
// are refused: then the first refusal is the error (the base is bad).
absl::StatusOr<std::vector<Candidate>> PlanAll(
    const ModelShape& model, const std::vector<StepSettings>& settings,
    const DeviceDescription& device, std::vector<std::string>* considered) {
  std::vector<Candidate> out;
  absl::Status first_error;
  for (size_t i = 0; i < settings.size(); ++i) {
    absl::StatusOr<StepPlan> plan = PlanStep(model, settings[i], device);
    if (!plan.ok()) {
      if (first_error.ok()) first_error = plan.status();
      considered->push_back(
          absl::StrCat(DescribeSwitches(settings[i]),
                       ": not planned: ", plan.status().message()));
      continue;
    }
    out.push_back({settings[i], *std::move(plan), static_cast<int>(i)});
  }
  if (out.empty() && !first_error.ok()) return first_error;
  std::stable_sort(out.begin(), out.end(),
                   [](const Candidate& a, const Candidate& b) {
                     return a.plan.step_seconds < b.plan.step_seconds;
                   });
  for (const Candidate& c : out) considered->push_back(Line(c));
  return out;
}

}  // namespace

std::string HumanBytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (bytes >= (int64_t{1} << 30) || bytes <= -(int64_t{1} << 30)) {
    return absl::StrFormat("%.1f GiB", b / static_cast<double>(1 << 30));
  }
  if (bytes >= (int64_t{1} << 20) || bytes <= -(int64_t{1} << 20)) {
    return absl::StrFormat("%.1f MiB", b / static_cast<double>(1 << 20));
  }
  if (bytes >= 1024 || bytes <= -1024) {
    return absl::StrFormat("%.1f KiB", b / 1024.0);
  }
  return absl::StrCat(bytes, " B");
}

std::string DescribeSwitches(const StepSettings& s) {
  std::string out;
  if (s.gradient_checkpointing) {
    out = "gradient checkpointing";
    if (s.checkpoint_keep_attention) out += " keeping attention";
    absl::StrAppend(&out, ", offload ",
                    s.offload == OffloadPolicy::kSparsity  ? "sparsity"
                    : s.offload == OffloadPolicy::kUniform ? "uniform"
                                                           : "none");
    if (s.attention_head_groups > 1) {
      absl::StrAppend(&out, ", attention head groups ",
                      s.attention_head_groups);
    }
  } else {
    out = "no gradient checkpointing";
    if (s.recompute_mlp) {
      out += ", recompute MLP";
    } else if (s.recompute_norm) {
      out += ", recompute norm";
    }
  }
  if (s.tile_tokens > 0) absl::StrAppend(&out, ", tiles ", s.tile_tokens);
  if (s.mlp_prune_ratio > 0) {
    absl::StrAppend(&out, ", MLP pruning ", s.mlp_prune_ratio);
  }
  if (s.lemo_2d) out += ", LeMo 2D";
  return out;
}

absl::StatusOr<BudgetChoice> ChooseWithinBudget(const ModelShape& model,
                                                const StepSettings& base,
                                                const DeviceDescription& device,
                                                const BudgetOptions& options) {
  if (options.budget_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("budget_bytes: must be > 0, got ", options.budget_bytes));
  }
  // The budget, not the whole device: a device smaller than the budget is
  // the real limit.
  DeviceDescription budgeted = device;
  budgeted.memory_bytes =
      device.memory_bytes > 0
          ? std::min(device.memory_bytes, options.budget_bytes)
          : options.budget_bytes;
  const std::string limit = absl::StrCat(
      "memory budget ", HumanBytes(options.budget_bytes),
      budgeted.memory_bytes < options.budget_bytes
          ? absl::StrCat(" (the device's ", HumanBytes(budgeted.memory_bytes),
                         ")")
          : std::string(),
      device.name.empty() ? std::string() : absl::StrCat(" on ", device.name));

  BudgetChoice choice;
  const std::vector<StepSettings> exact = ExactCandidates(model, base, options);
  std::vector<std::pair<std::string, std::vector<StepSettings>>> tiers = {
      {"exact", exact}};
  if (options.allow_inexact) {
    std::vector<StepSettings> inexact = InexactCandidates(exact, base);
    if (!inexact.empty()) tiers.push_back({"inexact", std::move(inexact)});
  }
  const Candidate* smallest = nullptr;
  std::vector<std::vector<Candidate>> planned;
  planned.reserve(tiers.size());
  for (const auto& [tier, settings] : tiers) {
    absl::StatusOr<std::vector<Candidate>> all =
        PlanAll(model, settings, budgeted, &choice.considered);
    if (!all.ok()) return all.status();
    planned.push_back(*std::move(all));
    int fitting = 0;
    for (const Candidate& c : planned.back()) fitting += c.plan.fits ? 1 : 0;
    for (const Candidate& c : planned.back()) {
      if (!c.plan.fits) {
        if (smallest == nullptr ||
            c.plan.shortfall_bytes < smallest->plan.shortfall_bytes) {
          smallest = &c;
        }
        continue;
      }
      choice.settings = c.settings;
      choice.plan = c.plan;
      choice.summary = absl::StrCat(
          limit, ": chose ", DescribeSwitches(c.settings), "; predicted peak ",
          HumanBytes(c.plan.peak_gpu_bytes), ", step ",
          absl::StrFormat("%.3g s", c.plan.step_seconds), " (", fitting, " of ",
          settings.size(), " ", tier, " settings fit)");
      return choice;
    }
  }
  if (smallest == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(limit, ": no setting could be planned"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      limit, ": no setting fits; the smallest, ",
      DescribeSwitches(smallest->settings), ", needs ",
      HumanBytes(smallest->plan.peak_gpu_bytes), " (short by ",
      HumanBytes(smallest->plan.shortfall_bytes), ")",
      options.allow_inexact ? ""
                            : "; accuracy-changing savers were not tried"));
}

}  // namespace lemo::plan
