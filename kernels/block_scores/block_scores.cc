#include "kernels/block_scores/block_scores.h"

#include <torch/library.h>

#include <algorithm>
#include <cmath>

#include "kernels/common/op_handle.h"

namespace lemo::kernels {

void CheckBlockScoresInputs(const at::Tensor& q, const at::Tensor& k,
                            int64_t block) {
  TORCH_CHECK_VALUE(block > 0, "block_scores: block must be > 0, got ", block);
  TORCH_CHECK_VALUE(q.dim() == 4 && k.dim() == 4,
                    "block_scores: q and k must be [B, H, N, d], got q ",
                    q.sizes(), " and k ", k.sizes());
  TORCH_CHECK_VALUE(q.size(0) == k.size(0) && q.size(2) == k.size(2) &&
                        q.size(3) == k.size(3),
                    "block_scores: q ", q.sizes(), " and k ", k.sizes(),
                    " must agree on batch, sequence length and head dim");
  TORCH_CHECK_VALUE(k.size(1) > 0 && q.size(1) % k.size(1) == 0,
                    "block_scores: q heads (", q.size(1),
                    ") must be a multiple of k heads (", k.size(1), ")");
  TORCH_CHECK_VALUE(q.size(2) > 0 && q.size(3) > 0,
                    "block_scores: empty sequence or head dim in q ",
                    q.sizes());
  TORCH_CHECK_VALUE(q.scalar_type() == k.scalar_type(), "block_scores: q is ",
                    q.scalar_type(), " but k is ", k.scalar_type());
  TORCH_CHECK_VALUE(at::isFloatingType(q.scalar_type()),
                    "block_scores: q and k must be floating point, got ",
                    q.scalar_type());
}

at::Tensor BlockScoresCpu(const at::Tensor& q, const at::Tensor& k,
                          int64_t block) {
  CheckBlockScoresInputs(q, k, block);
  const int64_t batch = q.size(0), hq = q.size(1), n = q.size(2), d = q.size(3),
                hkv = k.size(1);
  const int64_t group = hq / hkv;
  const int64_t nb = (n + block - 1) / block;
  const at::ScalarType acc =
      q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  // bf16 x bf16 products are exact in fp32, so upcasting first equals an
  // fp32-accumulating MMA.
  const at::Tensor qf = q.to(acc);
  const at::Tensor kf = k.to(acc);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  at::Tensor out = at::zeros({batch, nb, nb}, q.options().dtype(at::kFloat));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < nb; ++i) {
      const int64_t r0 = i * block;
      const int64_t rows = std::min(block, n - r0);
      // Causal: keys at or after the end of this row block score 0 for every
      // row in it.
      const int64_t cols = r0 + rows;
      at::Tensor a = at::zeros({rows, cols}, qf.options());
      for (int64_t h = 0; h < hq; ++h) {
        const at::Tensor qh = qf[b][h].narrow(0, r0, rows);
        const at::Tensor kh = kf[b][h / group].narrow(0, 0, cols);
        // Heads are summed one by one in order, the order a fused kernel walks
        // them.
        at::Tensor s = at::matmul(qh, kh.t());
        a.add_(s.mul_(scale).relu_());
      }
      // Only the diagonal tile holds keys after the query (col > row): zero
      // them.
      at::Tensor diag = a.narrow(1, r0, rows);
      diag.copy_(at::tril(diag));
      // Scores are >= 0, so zero padding of a ragged tile never changes its
      // max.
      const int64_t padded = (i + 1) * block;
      if (padded > cols) a = at::constant_pad_nd(a, {0, padded - cols}, 0);
      const at::Tensor tile_max =
          a.view({rows, i + 1, block}).amax(at::IntArrayRef{0, 2});
      out[b][i].narrow(0, 0, i + 1).copy_(tile_max);
    }
  }
  return out;
}

namespace {

at::Tensor BlockColumnScoresImpl(const at::Tensor& block_map) {
  TORCH_CHECK_VALUE(
      block_map.dim() == 3 && block_map.size(1) == block_map.size(2),
      "block_column_scores: block_map must be [B, nb, nb], got ",
      block_map.sizes());
  return block_map.sum(1);
}

}  // namespace

at::Tensor BlockScores(const at::Tensor& q, const at::Tensor& k,
                       int64_t block) {
  static const auto op =
      OpHandle<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>(
          "lemo::block_scores");
  return op.call(q, k, block);
}

at::Tensor BlockColumnScores(const at::Tensor& block_map) {
  static const auto op =
      OpHandle<at::Tensor(const at::Tensor&)>("lemo::block_column_scores");
  return op.call(block_map);
}

TORCH_LIBRARY_FRAGMENT(lemo, m) {
  m.def("block_scores(Tensor q, Tensor k, int block=64) -> Tensor");
  m.def("block_column_scores(Tensor block_map) -> Tensor");
}

TORCH_LIBRARY_IMPL(lemo, CPU, m) {
  m.impl("block_scores", TORCH_FN(BlockScoresCpu));
}

// A column sum is one ATen reduction on any device.
TORCH_LIBRARY_IMPL(lemo, CompositeExplicitAutograd, m) {
  m.impl("block_column_scores", TORCH_FN(BlockColumnScoresImpl));
}

}  // namespace lemo::kernels
