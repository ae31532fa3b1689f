// LeMo token-elimination options of the engine (LEMO.md section 1) and the
// per-layer keep-ratio schedule. Kept free of the model so ModelOptions can
// hold them.
//
//   LemoOptions lemo;
//   lemo.mode = LemoMode::kOracle;  // empty keep_ratios: the default schedule
//   LEMO_ASSIGN_OR_RETURN(std::vector<double> ratios,
//                         ResolveKeepSchedule(lemo, /*num_layers=*/32));
//   // ratios: 15 x 1.0, 16 x 0.4, 1 x 1.0
#ifndef LEMO_WORKER_ENGINE_LEMO_LEMO_OPTIONS_H_
#define LEMO_WORKER_ENGINE_LEMO_LEMO_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lemo::engine {

enum class LemoMode {
  // Every layer runs full attention (plain LoRA).
  kDense,
  // Token elimination with the oracle block scores (an extra no-grad QK^T pass
  // per layer).
  kOracle,
  // Token elimination with blocks chosen by calibrated pattern predictors
  // (worker/engine/lemo/pattern_predictor.h) instead of the oracle.
  kPredictor,
};

// "dense", "oracle" or "predictor".
absl::StatusOr<LemoMode> ParseLemoMode(absl::string_view name);
std::string LemoModeName(LemoMode mode);

struct LemoOptions {
  // Which attention the decoder layers run.
  LemoMode mode = LemoMode::kDense;
  // Keep ratio per decoder layer, each in (0, 1]; 1.0 runs that layer dense.
  // Empty means DefaultKeepSchedule(num_layers).
  std::vector<double> keep_ratios;
  // Tokens per block (the paper's 64; the scoring kernel's tile).
  int64_t block_tokens = 64;
  // Adaptive rule when > 0: sparse layers (keep ratio < 1) keep the fewest
  // blocks whose oracle score mass reaches this fraction, in (0, 1], instead of
  // their fixed ratio. 0 = fixed ratio.
  double adaptive_tau = 0;
  // Bounds on the blocks a sparse layer keeps (first and last are kept
  // regardless); max < 0: no bound.
  int64_t min_keep_blocks = 1;
  int64_t max_keep_blocks = -1;
  // Measure each layer's saved-for-backward bytes in every forward
  // (LemoLayerStats::saved_bytes) by tracking the allocator; off by default as
  // it replaces the profiler's memory hook while on.
  bool measure_saved_bytes = false;
  // Predictor mode: the directory `lemo-train calibrate` wrote for this model
  // and keep schedule.
  std::string predictor_dir;
  // Predictor mode: also run the oracle in each sparse layer and report the
  // predictor's top-k recall against it (LemoLayerStats::predictor_recall);
  // costs the oracle's QK^T pass, so it is off by default.
  bool measure_predictor_recall = false;
  // MLP channel-sparse backward (LEMO.md section 3), in [0, 1): the fraction
  // of intermediate channels whose gate/up are not saved and whose backward is
  // dropped, chosen per sample by ||SiLU(gate)||_2 + ||up||_2 over tokens.
  // 0 = off (exact dense MLP); the paper uses 0.8. Approximate: changes
  // gradients. See worker/engine/lemo/sparse_mlp.h.
  double mlp_prune_ratio = 0;
  // Recompute the post-attention RMSNorm output in backward instead of saving
  // it (worker/engine/lemo/sparse_mlp.h); exact.
  bool recompute_norm = false;
  // Recompute the MLP's gate/up projections (and the post-attention norm) in
  // backward instead of saving them (worker/engine/lemo/sparse_mlp.h); exact.
  // The saved activations per token and layer drop by 2 x intermediate values,
  // for gate/up's forward GEMMs run again. Ignored under gradient
  // checkpointing, which recomputes the whole layer anyway.
  bool recompute_mlp = false;
  // Run the MLP sublayer (with its post-attention norm) over tiles of this
  // many tokens, forward and backward, saving only its input
  // (worker/engine/lemo/sparse_mlp.h): no [B, N, intermediate] tensor is ever
  // alive. 0 = untiled. Exact for the values; implies recompute_mlp's
  // recomputation; not with mlp_prune_ratio.
  int64_t mlp_tile_tokens = 0;
  // Two-dimensional sparsity (LEMO.md section 5): in training forwards every
  // layer's attention is shifted group attention (S2-Attn, LongLoRA; groups of
  // 1/8 of the tokens, half of the heads shifted by half a group) over the
  // tokens it sees: all N in dense layers, the n kept ones in sparse layers.
  // The artifact's 2D step times (64K: 44.6 s dense -> 19.2 s) need both.
  // Evaluation stays full causal attention (train sparse, evaluate dense).
  // Approximate: changes the loss and gradients. Works in every mode.
  // See worker/engine/lemo/shifted_group_attention.h.
  bool two_d_sparsity = false;
};

struct LemoLayerStats {
  // Tokens that went through the layer's attention in the last forward, summed
  // over the batch.
  int64_t kept_tokens = 0;
  // All tokens of that batch.
  int64_t total_tokens = 0;
  // Bytes the layer's forward left allocated (what autograd saved for
  // backward), its output excluded; -1 unless measure_saved_bytes. Under
  // gradient checkpointing this is what the checkpoint keeps (its input).
  int64_t saved_bytes = -1;
  // Under gradient checkpointing: the most bytes the layer's re-run and
  // backward had allocated at once above what was live when its backward
  // began (its working set: the restored input, the re-run's saved tensors,
  // the gradients, flash attention's workspace and the prefetch of the next
  // offloaded input), from the last backward; -1 when not measured (only
  // with offload or measure_saved_bytes).
  int64_t backward_peak_bytes = -1;
  // CUDA: the device's live bytes when the layer's forward returned (what
  // the step holds at that point: weights, the checkpoints kept so far, the
  // activations); -1 elsewhere.
  int64_t allocated_after_forward_bytes = -1;
  // Predictor mode with measure_predictor_recall: |predicted kept ∩ oracle
  // kept| / |oracle kept| of the last forward, averaged over the batch; -1
  // when not measured (or a dense layer).
  double predictor_recall = -1;
};

// The artifact's Llama-2-7B schedule (layers 0-14 dense, 15-30 at 0.4, 31
// dense) scaled to `num_layers`: the first round(15/32 x L) layers and the last
// layer dense, the rest 0.4.
std::vector<double> DefaultKeepSchedule(int64_t num_layers);

// A schedule in runs, for logs and job events: "layers 0-14 keep 1, 15-30
// keep 0.4, 31 keep 1".
std::string DescribeKeepSchedule(const std::vector<double>& keep_ratios);

// Validates `options` for a model of `num_layers` layers and returns one keep
// ratio per layer.
absl::StatusOr<std::vector<double>> ResolveKeepSchedule(
    const LemoOptions& options, int64_t num_layers);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_LEMO_LEMO_OPTIONS_H_
