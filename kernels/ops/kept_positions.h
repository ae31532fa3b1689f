// lemo::kept_positions: the original token positions of kept blocks. Every
// gather/scatter op indexes through it, and the engine uses it to compute RoPE
// at the original positions.
//
//   // kept [B,k] int64 -> [B,n] int64 original positions
//   at::Tensor pos = lemo::kernels::KeptPositions(kept, n_tokens, 64);
//
// Blocks are `block` consecutive tokens; the last block is ragged when n_tokens
// % block != 0, so n = k * block minus the ragged block's missing tail. Every
// row must keep the same number of tokens (the ragged block kept by all rows or
// by none), as select_blocks guarantees by always keeping the last block.
#ifndef LEMO_KERNELS_OPS_KEPT_POSITIONS_H_
#define LEMO_KERNELS_OPS_KEPT_POSITIONS_H_

#include <ATen/ATen.h>

#include <cstdint>

namespace lemo::kernels {

// The reference (device-generic ATen index math). Checks kept_blocks: int64 [B,
// k], k >= 1, strictly ascending per row, in [0, ceil(n_tokens / block)).
// `what` names the calling op in error messages.
at::Tensor KeptPositionsImpl(const at::Tensor& kept_blocks, int64_t n_tokens,
                             int64_t block,
                             const char* what = "kept_positions");

// The gather/scatter index for a tensor `full` of [B, N, D] or [B, H, N, d]
// (tokens on dim full.dim() - 2): positions expanded to [B, n, D] or [B, H, n,
// d]. Checks ranks, batch and device; `what` names the calling op.
at::Tensor BlockTokenIndex(const at::Tensor& full,
                           const at::Tensor& kept_blocks, int64_t block,
                           const char* what);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_OPS_KEPT_POSITIONS_H_
