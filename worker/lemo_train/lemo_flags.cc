#include "worker/lemo_train/lemo_flags.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace lemo::worker::lemo_train {

absl::Status ApplyLemoFlags(const LemoFlags& f,
                            lemo::engine::LemoOptions* out) {
  auto mode = lemo::engine::ParseLemoMode(f.mode);
  if (!mode.ok()) {
    return absl::Status(mode.status().code(),
                        absl::StrCat("--lemo-mode: ", mode.status().message()));
  }
  out->mode = *mode;
  out->keep_ratios.clear();
  if (f.keep_ratios != "default") {
    int i = 0;
    for (absl::string_view part : absl::StrSplit(f.keep_ratios, ',')) {
      double r = 0;
      if (!absl::SimpleAtod(part, &r)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--lemo-keep-ratios: entry ", i, " \"", part,
            "\" is not a number (give R1,R2,... one per layer, or default)"));
      }
      if (!(r > 0 && r <= 1)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--lemo-keep-ratios: entry ", i, " is ", r, ", not in (0, 1]"));
      }
      out->keep_ratios.push_back(r);
      ++i;
    }
  }
  if (!(f.adaptive_tau >= 0 && f.adaptive_tau <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--lemo-adaptive-tau must be in [0, 1] (0 = fixed keep "
                     "ratios), got ",
                     f.adaptive_tau));
  }
  out->adaptive_tau = f.adaptive_tau;
  if (f.min_keep_blocks < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--lemo-min-keep-blocks must be >= 0, got ", f.min_keep_blocks));
  }
  if (f.max_keep_blocks >= 0 && f.max_keep_blocks < f.min_keep_blocks) {
    return absl::InvalidArgumentError(
        absl::StrCat("--lemo-max-keep-blocks (", f.max_keep_blocks,
                     ") must be >= --lemo-min-keep-blocks (", f.min_keep_blocks,
                     "), or < 0 for no bound"));
  }
  out->min_keep_blocks = f.min_keep_blocks;
  out->max_keep_blocks = f.max_keep_blocks;
  if (out->mode == lemo::engine::LemoMode::kPredictor && f.predictors.empty()) {
    return absl::InvalidArgumentError(
        "--lemo-mode predictor needs --lemo-predictors DIR");
  }
  if (out->mode != lemo::engine::LemoMode::kPredictor &&
      !f.predictors.empty()) {
    return absl::InvalidArgumentError(
        "--lemo-predictors is used only with --lemo-mode predictor");
  }
  out->predictor_dir = f.predictors;
  if (!(f.mlp_prune_ratio >= 0 && f.mlp_prune_ratio < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--mlp-prune-ratio must be in [0, 1) (0 = off), got ",
                     f.mlp_prune_ratio));
  }
  out->mlp_prune_ratio = f.mlp_prune_ratio;
  out->recompute_norm = f.recompute_norm;
  out->recompute_mlp = f.recompute_mlp;
  if (f.mlp_tile_tokens > 0 && f.mlp_prune_ratio > 0) {
    return absl::InvalidArgumentError(
        "--tile-tokens does not combine with --mlp-prune-ratio (the pruned "
        "channels are ranked over the whole sequence)");
  }
  out->mlp_tile_tokens = std::max<int64_t>(f.mlp_tile_tokens, 0);
  out->two_d_sparsity = f.two_d_sparsity;
  out->measure_saved_bytes = f.measure_saved_bytes;
  return absl::OkStatus();
}

}  // namespace lemo::worker::lemo_train
