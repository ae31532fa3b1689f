// lemo::block_scores and lemo::block_column_scores: LeMo's oracle block map
// (LEMO.md section 1).
//
//   M = block_scores(q /*[B,Hq,N,d]*/, k /*[B,Hkv,N,d]*/, 64);  // [B,nb,nb]
//   s = block_column_scores(M);  // [B, nb]: s_j = sum_i M[i, j]
//
// M[b, i, j] = max over the 64x64 tile (i, j) of A = sum_h ReLU(q_h k_h^T /
// sqrt(d)), causal (row >= col), with q/k taken before RoPE. GQA: q head h
// reads k head h / (Hq / Hkv). N is padded to a multiple of the block; padded
// rows and columns contribute nothing, and tiles above the diagonal are 0. The
// CPU reference works one row of tiles at a time, so it never holds more than
// (Hq / Hkv) x block x N scores: the N x N matrix is never materialised.
#ifndef LEMO_KERNELS_OPS_BLOCK_SCORES_H_
#define LEMO_KERNELS_OPS_BLOCK_SCORES_H_

#include <ATen/ATen.h>

#include <cstdint>

namespace lemo::kernels {

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

#endif  // LEMO_KERNELS_OPS_BLOCK_SCORES_H_
