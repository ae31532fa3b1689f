// LeMo's sparse attention sublayer (LEMO.md section 1): per layer and per
// input, score 64-token blocks with the oracle (no-grad QK^T on the frozen
// projections, before RoPE), keep the informative ones, and run q/k/v (with
// LoRA), RoPE at the original positions, causal attention and o_proj on the
// kept tokens only; their output is added into the residual at their positions
// and eliminated tokens ride the residual unchanged. Every tensor autograd
// saves in the sublayer then has n kept rows instead of N.
//
//   LemoLayerStats stats;
//   LemoLayerContext ctx{&options, /*keep_ratio=*/0.4};
//   ctx.stats = &stats;
//   torch::Tensor h = LemoDecoderLayerForward(layer, x, cos, sin, ctx);
//
// Torch errors throw (TORCH_CHECK); the trainer wraps calls with CallTorch.
#ifndef LEMO_WORKER_ENGINE_LEMO_LEMO_ATTENTION_H_
#define LEMO_WORKER_ENGINE_LEMO_LEMO_ATTENTION_H_

#include <torch/torch.h>

#include <cstdint>

#include "kernels/lemo_ops.h"
#include "worker/engine/lemo/lemo_options.h"
#include "worker/engine/lemo/pattern_predictor.h"
#include "worker/engine/model/decoder_layer.h"

namespace lemo::engine {

// The selection rule a layer with `keep_ratio` uses under `options` (fixed
// ratio, or adaptive when options.adaptive_tau > 0).
kernels::SelectOptions LayerSelectOptions(const LemoOptions& options,
                                          double keep_ratio);

// The oracle block map [B, nb, nb] fp32 of normalised xn [B, N, D]: block
// scores of the base (frozen, adapter-free) q/k projections before RoPE, after
// the layer's per-head q/k norm where the model has one (Qwen3), under
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

// What one layer's LeMo forward needs besides the layer and its inputs.
struct LemoLayerContext {
  // Mode, block size, selection bounds, 2D sparsity and recall measurement;
  // never null.
  const LemoOptions* options = nullptr;
  // The layer's keep ratio in (0, 1]; 1 runs the layer dense.
  double keep_ratio = 1;
  // Predictor mode: the layer's predictor, required when the layer is sparse.
  const PatternPredictor* predictor = nullptr;
  // Receives the kept-token counts (and the predictor's recall when
  // options->measure_predictor_recall); may be null.
  LemoLayerStats* stats = nullptr;
  // A training forward: LoRA dropout and (with options->two_d_sparsity)
  // shifted group attention; evaluation runs plain causal attention.
  bool training = true;
};

// x + the attention sublayer of InputNorm(x): sparse when the mode is oracle
// or predictor and ctx.keep_ratio < 1 (blocks chosen by the oracle, or by
// ctx.predictor), dense otherwise (exactly DecoderLayer's); with
// two_d_sparsity and ctx.training, that attention is shifted group attention
// over its tokens.
torch::Tensor LemoAttentionSublayer(const DecoderLayer& layer,
                                    const torch::Tensor& x,
                                    const torch::Tensor& cos,
                                    const torch::Tensor& sin,
                                    const LemoLayerContext& ctx);

// One decoder layer with LeMo: the attention sublayer above, then the MLP with
// the options' savers (worker/engine/lemo/sparse_mlp.h). Equal to
// DecoderLayer::Forward when the layer is dense and no saver is on.
torch::Tensor LemoDecoderLayerForward(const DecoderLayer& layer,
                                      const torch::Tensor& x,
                                      const torch::Tensor& cos,
                                      const torch::Tensor& sin,
                                      const LemoLayerContext& ctx);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_LEMO_LEMO_ATTENTION_H_
