// LeMo's sparse attention sublayer (LEMO.md section 1): per layer and per
// input, score 64-token blocks with the oracle (no-grad QK^T on the frozen
// projections, before RoPE), keep the informative ones, and run q/k/v (with
// LoRA), RoPE at the original positions, causal attention and o_proj on the
// kept tokens only; their output is added into the residual at their positions
// and eliminated tokens ride the residual unchanged. Every tensor autograd
// saves in the sublayer then has n kept rows instead of N.
//
//   LemoLayerStats stats;
//   torch::Tensor h = LemoDecoderLayerForward(
//       layer, x, cos, sin, /*keep_ratio=*/0.4, options.lemo,
//       /*training=*/true, &stats);
//
// Torch errors throw (TORCH_CHECK); the trainer wraps calls with CallTorch.
#ifndef LEMO_WORKER_ENGINE_LEMO_ATTENTION_H_
#define LEMO_WORKER_ENGINE_LEMO_ATTENTION_H_

#include <torch/torch.h>

#include <cstdint>

#include "kernels/lemo_ops.h"
#include "worker/engine/lemo_options.h"
#include "worker/engine/llama_model.h"
#include "worker/engine/pattern_predictor.h"

namespace lemo::engine {

// The selection rule a layer with `keep_ratio` uses under `options` (fixed
// ratio, or adaptive when options.adaptive_tau > 0).
kernels::SelectOptions LayerSelectOptions(const LemoOptions& options,
                                          double keep_ratio);

// The oracle block map [B, nb, nb] fp32 of normalised xn [B, N, D]: block
// scores of the base (frozen, adapter-free) q/k projections before RoPE, under
// no-grad. Pattern predictors are calibrated against it.
torch::Tensor OracleBlockMap(const DecoderLayer& layer, const torch::Tensor& xn,
                             int64_t block);

// Oracle block selection for normalised xn [B, N, D]: int64 [B, k] kept blocks,
// ascending. Runs under no-grad on the base (frozen, adapter-free) q/k
// projection weights.
torch::Tensor OracleKeptBlocks(const DecoderLayer& layer,
                               const torch::Tensor& xn,
                               const kernels::SelectOptions& select,
                               int64_t block);

// x + attention of the kept tokens of xn = InputNorm(x), written into the
// residual at their positions. cos/sin [B or 1, N, head_dim] for the N original
// positions. shifted_groups: shifted group attention over the kept tokens
// (LemoOptions::two_d_sparsity) instead of causal attention.
torch::Tensor SparseAttentionResidual(
    const DecoderLayer& layer, const torch::Tensor& x, const torch::Tensor& xn,
    const torch::Tensor& cos, const torch::Tensor& sin,
    const torch::Tensor& kept, int64_t block, bool training,
    bool shifted_groups = false);

// x + the attention sublayer of InputNorm(x): sparse when options.mode is
// oracle or predictor and keep_ratio < 1 (blocks chosen by the oracle, or by
// `predictor`, which predictor mode requires there), dense otherwise (exactly
// DecoderLayer's); with options.two_d_sparsity and `training`, that attention
// is shifted group attention over its tokens. `stats` (optional) receives the
// kept-token counts and, when options.measure_predictor_recall, the predictor's
// recall.
torch::Tensor LemoAttentionSublayer(
    const DecoderLayer& layer, const torch::Tensor& x, const torch::Tensor& cos,
    const torch::Tensor& sin, double keep_ratio, const LemoOptions& options,
    bool training, LemoLayerStats* stats,
    const PatternPredictor* predictor = nullptr);

// One decoder layer with LeMo: the attention sublayer is sparse when
// options.mode is oracle or predictor and keep_ratio < 1, dense otherwise (then
// equal to DecoderLayer::Forward); the MLP runs with the options' savers
// (worker/engine/sparse_mlp.h). `stats` (optional) receives the kept-token
// counts.
torch::Tensor LemoDecoderLayerForward(
    const DecoderLayer& layer, const torch::Tensor& x, const torch::Tensor& cos,
    const torch::Tensor& sin, double keep_ratio, const LemoOptions& options,
    bool training, LemoLayerStats* stats,
    const PatternPredictor* predictor = nullptr);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_LEMO_ATTENTION_H_
