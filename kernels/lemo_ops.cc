#include "kernels/lemo_ops.h"

#include <ATen/core/dispatch/Dispatcher.h>

namespace lemo::kernels {
namespace {

// Typed handles are looked up once; the schemas are registered when this
// library loads.
template <typename Signature>
c10::TypedOperatorHandle<Signature> Op(const char* name) {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow(name, "")
      .typed<Signature>();
}

}  // namespace

at::Tensor BlockScores(const at::Tensor& q, const at::Tensor& k,
                       int64_t block) {
  static const auto op =
      Op<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>(
          "lemo::block_scores");
  return op.call(q, k, block);
}

at::Tensor BlockColumnScores(const at::Tensor& block_map) {
  static const auto op =
      Op<at::Tensor(const at::Tensor&)>("lemo::block_column_scores");
  return op.call(block_map);
}

at::Tensor SelectBlocks(const at::Tensor& scores,
                        const SelectOptions& options) {
  static const auto op =
      Op<at::Tensor(const at::Tensor&, double, std::optional<double>, int64_t,
                    int64_t)>("lemo::select_blocks");
  return op.call(scores, options.keep_ratio, options.tau, options.min_keep,
                 options.max_keep);
}

at::Tensor KeptPositions(const at::Tensor& kept_blocks, int64_t n_tokens,
                         int64_t block) {
  static const auto op = Op<at::Tensor(const at::Tensor&, int64_t, int64_t)>(
      "lemo::kept_positions");
  return op.call(kept_blocks, n_tokens, block);
}

at::Tensor GatherBlocks(const at::Tensor& x, const at::Tensor& kept_blocks,
                        int64_t block) {
  static const auto op =
      Op<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>(
          "lemo::gather_blocks");
  return op.call(x, kept_blocks, block);
}

at::Tensor ScatterAddBlocks(const at::Tensor& residual, const at::Tensor& y,
                            const at::Tensor& kept_blocks, int64_t block) {
  static const auto op =
      Op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                    int64_t)>("lemo::scatter_add_blocks");
  return op.call(residual, y, kept_blocks, block);
}

at::Tensor CrossEntropyChunk(const at::Tensor& logits, const at::Tensor& labels,
                             int64_t ignore_index) {
  static const auto op =
      Op<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>(
          "lemo::cross_entropy_chunk");
  return op.call(logits, labels, ignore_index);
}

at::Tensor& CrossEntropyChunkBackward_(at::Tensor& logits,
                                       const at::Tensor& labels,
                                       const at::Tensor& grad_scale,
                                       int64_t ignore_index) {
  static const auto op =
      Op<at::Tensor&(at::Tensor&, const at::Tensor&, const at::Tensor&,
                     int64_t)>("lemo::cross_entropy_chunk_backward_");
  return op.call(logits, labels, grad_scale, ignore_index);
}

}  // namespace lemo::kernels
