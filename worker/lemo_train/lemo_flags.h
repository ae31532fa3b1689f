// The LeMo command-line flags as given, and their check and translation into
// the engine's LemoOptions. Kept apart from the finetune command so another
// subcommand that runs LeMo can accept the same flags with the same messages,
// and free of LibTorch so it compiles cheaply.
//
//   LemoFlags flags;           // bound to --lemo-mode, --lemo-keep-ratios, ...
//   flags.keep_ratios = "1,0.4,1";
//   lemo::engine::LemoOptions options;
//   LEMO_RETURN_IF_ERROR(ApplyLemoFlags(flags, &options));
#ifndef LEMO_WORKER_LEMO_TRAIN_LEMO_FLAGS_H_
#define LEMO_WORKER_LEMO_TRAIN_LEMO_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "worker/engine/lemo/lemo_options.h"

namespace lemo::worker::lemo_train {

// Defaults are the flags' defaults (shown in --help).
struct LemoFlags {
  // --lemo-mode: dense | oracle | predictor.
  std::string mode = "dense";
  // --lemo-keep-ratios: R1,R2,... one per layer in (0, 1], or "default".
  std::string keep_ratios = "default";
  // --lemo-adaptive-tau: score mass a sparse layer keeps, in [0, 1]; 0 = fixed
  // ratios.
  double adaptive_tau = 0;
  // --lemo-min-keep-blocks: fewest 64-token blocks a sparse layer keeps.
  int64_t min_keep_blocks = 1;
  // --lemo-max-keep-blocks: most blocks a sparse layer keeps; < 0 = no bound.
  int64_t max_keep_blocks = -1;
  // --lemo-predictors: trained predictor directory (predictor mode only).
  std::string predictors;
  // --mlp-prune-ratio: fraction of MLP channels whose backward is dropped, in
  // [0, 1).
  double mlp_prune_ratio = 0;
  // --recompute-norm: recompute the post-attention norm in backward.
  bool recompute_norm = false;
  // --recompute-mlp: recompute the MLP's gate/up (and the norm) in backward.
  bool recompute_mlp = false;
  // --tile-tokens: run the MLP (and the caller's norms and LoRA steps) in
  // tiles of this many tokens; 0 = off, < 0 = auto (set by the caller from
  // the sequence length).
  int64_t mlp_tile_tokens = -1;
  // --lemo-2d: two-dimensional sparsity, shifted group attention in every
  // layer's training forward (LemoOptions::two_d_sparsity); any mode.
  bool two_d_sparsity = false;
  // --measure-saved-bytes: report each layer's saved-for-backward bytes.
  bool measure_saved_bytes = false;
};

// Checks `flags` and fills the LeMo fields of `out` (keep_ratios is replaced).
// INVALID_ARGUMENT naming the flag when a value is out of range, or when
// --lemo-predictors and --lemo-mode disagree.
absl::Status ApplyLemoFlags(const LemoFlags& flags,
                            lemo::engine::LemoOptions* out);

}  // namespace lemo::worker::lemo_train

#endif  // LEMO_WORKER_LEMO_TRAIN_LEMO_FLAGS_H_
