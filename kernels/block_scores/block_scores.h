// lemo::block_scores and lemo::block_column_scores: LeMo's oracle block map
// (LEMO.md section 1), and its C++ entries.
//
//   // q [B, Hq, N, d], k [B, Hkv, N, d], pre-RoPE:
//   at::Tensor m = lemo::kernels::BlockScores(q, k);      // [B, nb, nb] fp32
//   at::Tensor s = lemo::kernels::BlockColumnScores(m);  // [B, nb]
//
// M[b, i, j] = max over the 64x64 tile (i, j) of A = sum_h ReLU(q_h k_h^T /
// sqrt(d)), causal (row >= col), with q/k taken before RoPE. GQA: q head h
// reads k head h / (Hq / Hkv). N is padded to a multiple of the block; padded
// rows and columns contribute nothing, and tiles above the diagonal are 0. The
// CPU reference works one row of tiles at a time, so it never holds more than
// (Hq / Hkv) x block x N scores: the N x N matrix is never materialised. The
// CUDA kernel (block_scores_kernel.h) fuses the whole pass per 64x64 tile.
#ifndef LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_H_
#define LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_H_

#include <ATen/ATen.h>

#include <cstdint>

#include "kernels/common/block.h"

namespace lemo::kernels {

// lemo::block_scores through the dispatcher: the oracle block map [B, nb, nb]
// fp32 from pre-RoPE q [B,Hq,N,d] and k [B,Hkv,N,d]. Throws c10::Error
// (TORCH_CHECK) on bad input; the engine converts it at its boundary.
at::Tensor BlockScores(const at::Tensor& q, const at::Tensor& k,
                       int64_t block = kDefaultBlock);

// lemo::block_column_scores through the dispatcher: s_j = sum_i M[i, j],
// [B, nb], how much attention key-block j receives.
at::Tensor BlockColumnScores(const at::Tensor& block_map);

// Throws c10::ValueError unless q [B,Hq,N,d] and k [B,Hkv,N,d] agree (Hq a
// multiple of Hkv, same floating dtype) and block > 0. Shared by the CUDA
// binding, so both devices reject the same inputs with the same message.
void CheckBlockScoresInputs(const at::Tensor& q, const at::Tensor& k,
                            int64_t block);

// CPU reference of lemo::block_scores, plain LibTorch. Scores accumulate in
// fp32 (fp64 for fp64 inputs), as the fused kernel accumulates bf16 products in
// fp32.
at::Tensor BlockScoresCpu(const at::Tensor& q, const at::Tensor& k,
                          int64_t block);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_H_
