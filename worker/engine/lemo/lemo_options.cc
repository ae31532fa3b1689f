#include "worker/engine/lemo/lemo_options.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/plan/step_plan.h"

namespace lemo::engine {

absl::StatusOr<LemoMode> ParseLemoMode(absl::string_view name) {
  if (name == "dense") return LemoMode::kDense;
  if (name == "oracle") return LemoMode::kOracle;
  if (name == "predictor") return LemoMode::kPredictor;
  return absl::InvalidArgumentError(absl::StrCat(
      "lemo mode must be dense, oracle or predictor, got \"", name, "\""));
}

std::string LemoModeName(LemoMode mode) {
  switch (mode) {
    case LemoMode::kOracle:
      return "oracle";
    case LemoMode::kPredictor:
      return "predictor";
    case LemoMode::kDense:
      break;
  }
  return "dense";
}

std::vector<double> DefaultKeepSchedule(int64_t num_layers) {
  // The planner predicts memory and time at this schedule before a job runs
  // (common/plan/), so the rule lives there once.
  return plan::DefaultKeepFractions(num_layers);
}

std::string DescribeKeepSchedule(const std::vector<double>& keep_ratios) {
  std::string out = "layers ";
  for (size_t first = 0; first < keep_ratios.size();) {
    size_t last = first;
    while (last + 1 < keep_ratios.size() &&
           keep_ratios[last + 1] == keep_ratios[first]) {
      ++last;
    }
    if (first > 0) out += ", ";
    absl::StrAppend(&out, first);
    if (last > first) absl::StrAppend(&out, "-", last);
    absl::StrAppend(&out, " keep ", keep_ratios[first]);
    first = last + 1;
  }
  return out;
}

absl::StatusOr<std::vector<double>> ResolveKeepSchedule(
    const LemoOptions& options, int64_t num_layers) {
  if (options.block_tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lemo block_tokens must be > 0, got ", options.block_tokens));
  }
  if (!(options.adaptive_tau >= 0 && options.adaptive_tau <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lemo adaptive_tau must be in [0, 1] (0 = fixed ratio), got ",
        options.adaptive_tau));
  }
  if (options.min_keep_blocks < 0 ||
      (options.max_keep_blocks >= 0 &&
       options.max_keep_blocks < options.min_keep_blocks)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lemo keep bounds must satisfy 0 <= min_keep_blocks <= max_keep_blocks "
        "(or "
        "max_keep_blocks < 0), got ",
        options.min_keep_blocks, " and ", options.max_keep_blocks));
  }
  if (options.keep_ratios.empty()) return DefaultKeepSchedule(num_layers);
  if (static_cast<int64_t>(options.keep_ratios.size()) != num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("lemo keep_ratios has ", options.keep_ratios.size(),
                     " entries but the model has ", num_layers, " layers"));
  }
  for (size_t i = 0; i < options.keep_ratios.size(); ++i) {
    const double r = options.keep_ratios[i];
    if (!(r > 0 && r <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("lemo keep_ratios[", i, "] must be in (0, 1], got ", r));
    }
  }
  return options.keep_ratios;
}

}  // namespace lemo::engine
