// Plain C++ entry points to the LeMo torch ops (namespace `lemo`, see
// kernels/ops/*.h for each op's exact semantics). Each call goes through the
// dispatcher, so it picks the CPU reference or a CUDA kernel by the inputs'
// device, and autograd where a gradient flows. Ops throw c10::Error
// (TORCH_CHECK) on bad input; the engine converts that at its boundary.
//
//   at::Tensor map = lemo::kernels::BlockScores(q, k);  // [B, nb, nb] fp32
//   lemo::kernels::SelectOptions select;
//   select.keep_ratio = 0.4;
//   at::Tensor kept = lemo::kernels::SelectBlocks(
//       lemo::kernels::BlockColumnScores(map), select);  // int64 [B, k]
//   at::Tensor xk = lemo::kernels::GatherBlocks(x, kept);  // [B, n, D]
//   // x + yk at the kept tokens, x elsewhere:
//   at::Tensor out = lemo::kernels::ScatterAddBlocks(x, yk, kept);
#ifndef LEMO_KERNELS_LEMO_OPS_H_
#define LEMO_KERNELS_LEMO_OPS_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

namespace lemo::kernels {

// Tokens per block: the paper's 64, also the tile of the fused scoring kernel.
inline constexpr int64_t kDefaultBlock = 64;

// lemo::block_scores: oracle block map [B, nb, nb] fp32 from pre-RoPE q
// [B,Hq,N,d] and k [B,Hkv,N,d].
at::Tensor BlockScores(const at::Tensor& q, const at::Tensor& k,
                       int64_t block = kDefaultBlock);

// lemo::block_column_scores: s_j = sum_i M[i, j], [B, nb].
at::Tensor BlockColumnScores(const at::Tensor& block_map);

struct SelectOptions {
  // Fraction of blocks kept by the fixed rule, in (0, 1]; ignored when tau is
  // set.
  double keep_ratio = 1.0;
  // Adaptive rule: keep the fewest blocks whose score mass reaches tau of the
  // total, in (0, 1].
  std::optional<double> tau;
  // Lower bound on kept blocks (either rule); first and last are kept
  // regardless.
  int64_t min_keep = 1;
  // Upper bound on kept blocks (either rule); < 0 means no bound.
  int64_t max_keep = -1;
};

// lemo::select_blocks: kept block indices, int64 [B, k], ascending, first and
// last included.
at::Tensor SelectBlocks(const at::Tensor& scores, const SelectOptions& options);

// lemo::kept_positions: original token positions of the kept blocks, int64 [B,
// n].
at::Tensor KeptPositions(const at::Tensor& kept_blocks, int64_t n_tokens,
                         int64_t block = kDefaultBlock);

// lemo::gather_blocks: x [B, N, D] -> [B, n, D], or [B, H, N, d] -> [B, H, n,
// d]. Backward scatters the gradient back (zeros at eliminated tokens).
at::Tensor GatherBlocks(const at::Tensor& x, const at::Tensor& kept_blocks,
                        int64_t block = kDefaultBlock);

// lemo::scatter_add_blocks: residual [B, N, D] (or [B, H, N, d]) with y [B, n,
// D] added at the kept tokens; eliminated tokens pass through unchanged.
at::Tensor ScatterAddBlocks(const at::Tensor& residual, const at::Tensor& y,
                            const at::Tensor& kept_blocks,
                            int64_t block = kDefaultBlock);

// lemo::cross_entropy_chunk: sum over rows of the cross-entropy of logits
// [T, V] against labels int64 [T] (rows labelled ignore_index count 0), fp32
// scalar. Differentiable in logits.
at::Tensor CrossEntropyChunk(const at::Tensor& logits, const at::Tensor& labels,
                             int64_t ignore_index = -100);

// lemo::cross_entropy_chunk_backward_: overwrites logits with d(sum)/d logits
// times grad_scale (fp32 scalar tensor), i.e. (softmax - onehot) * grad_scale,
// 0 on ignored rows, in the logits' dtype. Returns logits.
at::Tensor& CrossEntropyChunkBackward_(at::Tensor& logits,
                                       const at::Tensor& labels,
                                       const at::Tensor& grad_scale,
                                       int64_t ignore_index = -100);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_LEMO_OPS_H_
