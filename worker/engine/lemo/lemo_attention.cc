#include "worker/engine/lemo/lemo_attention.h"

#include "worker/engine/lemo/shifted_group_attention.h"
#include "worker/engine/lemo/sparse_mlp.h"
#include "worker/engine/model/segment_memo.h"

namespace lemo::engine {

kernels::SelectOptions LayerSelectOptions(const LemoOptions& options,
                                          double keep_ratio) {
  kernels::SelectOptions select;
  select.keep_ratio = keep_ratio;
  if (options.adaptive_tau > 0) select.tau = options.adaptive_tau;
  select.min_keep = options.min_keep_blocks;
  select.max_keep = options.max_keep_blocks;
  return select;
}

torch::Tensor OracleBlockMap(const DecoderLayer& layer, const torch::Tensor& xn,
                             int64_t block) {
  torch::NoGradGuard no_grad;
  const int64_t batch = xn.size(0);
  const int64_t len = xn.size(1);
  // The frozen projections (adapters left out), then the layer's own per-head
  // q/k norm (Qwen3; the identity otherwise): the scores rank blocks by the
  // pre-RoPE q.k the layer's attention rotates, not by raw projections whose
  // scale the norm would change head by head.
  const auto heads = [&](const LoraLinear& proj, bool query) {
    torch::Tensor h = torch::linear(xn, proj.weight(), proj.bias())
                          .view({batch, len, -1, layer.head_dim()});
    h = query ? layer.QueryNorm(h) : layer.KeyNorm(h);
    return h.transpose(1, 2);
  };
  const torch::Tensor q = heads(layer.projection(kQProj), /*query=*/true);
  const torch::Tensor k = heads(layer.projection(kKProj), /*query=*/false);
  return kernels::BlockScores(q, k, block);
}

torch::Tensor OracleKeptBlocks(const DecoderLayer& layer,
                               const torch::Tensor& xn,
                               const kernels::SelectOptions& select,
                               int64_t block) {
  torch::NoGradGuard no_grad;
  return kernels::SelectBlocks(
      kernels::BlockColumnScores(OracleBlockMap(layer, xn, block)), select);
}

torch::Tensor SparseAttentionResidual(const DecoderLayer& layer,
                                      const torch::Tensor& x,
                                      const torch::Tensor& xn,
                                      const torch::Tensor& cos,
                                      const torch::Tensor& sin,
                                      const torch::Tensor& kept, int64_t block,
                                      bool training, bool shifted_groups) {
  const int64_t batch = xn.size(0);
  const torch::Tensor xk = kernels::GatherBlocks(xn, kept, block);
  // The kept tokens' rows of the position tables: RoPE at their original
  // positions.
  const auto rows = [&](const torch::Tensor& table) {
    return kernels::GatherBlocks(
        table.expand({batch, table.size(1), table.size(2)}), kept, block);
  };
  const torch::Tensor attn =
      layer.Attention(xk, rows(cos), rows(sin), training,
                      shifted_groups ? ShiftedGroupAttention : nullptr);
  return kernels::ScatterAddBlocks(x, attn, kept, block);
}

torch::Tensor LemoAttentionSublayer(const DecoderLayer& layer,
                                    const torch::Tensor& x,
                                    const torch::Tensor& cos,
                                    const torch::Tensor& sin,
                                    const LemoLayerContext& ctx) {
  const LemoOptions& options = *ctx.options;
  const double keep_ratio = ctx.keep_ratio;
  const bool training = ctx.training;
  const torch::Tensor xn = layer.InputNorm(x);
  torch::Tensor h;
  int64_t kept_tokens = x.size(0) * x.size(1);
  double recall = -1;
  // 2D sparsity: shifted groups over whatever tokens the attention sees, in
  // dense layers too (the artifact's 2D step times need both), training only.
  const bool shifted_groups = training && options.two_d_sparsity;
  const bool sparse = keep_ratio < 1 && (options.mode == LemoMode::kOracle ||
                                         options.mode == LemoMode::kPredictor);
  if (sparse) {
    const kernels::SelectOptions select =
        LayerSelectOptions(options, keep_ratio);
    // Chosen once per forward: a checkpoint's re-run gets the forward's
    // choice back (segment_memo.h) rather than scoring every token again.
    const torch::Tensor kept = Memoized([&] {
      if (options.mode != LemoMode::kPredictor) {
        return OracleKeptBlocks(layer, xn, select, options.block_tokens);
      }
      TORCH_CHECK_VALUE(ctx.predictor != nullptr,
                        "lemo predictor mode: a sparse layer (keep ratio ",
                        keep_ratio, ") has no pattern predictor");
      torch::Tensor chosen = ctx.predictor->KeptBlocks(xn, select);
      if (options.measure_predictor_recall) {
        recall = KeptBlockRecall(
            chosen, OracleKeptBlocks(layer, xn, select, options.block_tokens));
      }
      return chosen;
    });
    h = SparseAttentionResidual(layer, x, xn, cos, sin, kept,
                                options.block_tokens, training, shifted_groups);
    kept_tokens =
        x.size(0) *
        kernels::KeptPositions(kept, x.size(1), options.block_tokens).size(1);
  } else {
    h = x + layer.Attention(xn, cos, sin, training,
                            shifted_groups ? ShiftedGroupAttention : nullptr);
  }
  // A re-run's counts are the forward's, and it measured no recall.
  if (ctx.stats != nullptr && !ReplayingSegment()) {
    ctx.stats->kept_tokens = kept_tokens;
    ctx.stats->total_tokens = x.size(0) * x.size(1);
    ctx.stats->predictor_recall = recall;
  }
  return h;
}

torch::Tensor LemoDecoderLayerForward(const DecoderLayer& layer,
                                      const torch::Tensor& x,
                                      const torch::Tensor& cos,
                                      const torch::Tensor& sin,
                                      const LemoLayerContext& ctx) {
  const torch::Tensor h = LemoAttentionSublayer(layer, x, cos, sin, ctx);
  return h + MlpSublayer(layer, h, MlpSaversFrom(*ctx.options), ctx.training);
}

}  // namespace lemo::engine
