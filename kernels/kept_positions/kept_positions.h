// lemo::kept_positions: the original token positions of kept blocks, and its
// C++ entry. Every gather/scatter op checks and indexes through it (the
// helpers below), and the engine uses it to compute RoPE at the original
// positions. The GPU side of the checks (one kernel instead of ~9 ATen ops) is
// kept_facts_kernel.h and kept_check_cuda.h, in this folder.
//
//   // kept [B,k] int64 -> [B,n] int64 original positions
//   at::Tensor pos = lemo::kernels::KeptPositions(kept, n_tokens, 64);
//
// Blocks are `block` consecutive tokens; the last block is ragged when n_tokens
// % block != 0, so n = k * block minus the ragged block's missing tail. Every
// row must keep the same number of tokens (the ragged block kept by all rows or
// by none), as select_blocks guarantees by always keeping the last block.
#ifndef LEMO_KERNELS_KEPT_POSITIONS_KEPT_POSITIONS_H_
#define LEMO_KERNELS_KEPT_POSITIONS_KEPT_POSITIONS_H_

#include <ATen/ATen.h>

#include <cstdint>

#include "kernels/common/block.h"

namespace lemo::kernels {

// lemo::kept_positions through the dispatcher: original token positions of
// the kept blocks, int64 [B, n]. Throws c10::Error on bad indices.
at::Tensor KeptPositions(const at::Tensor& kept_blocks, int64_t n_tokens,
                         int64_t block = kDefaultBlock);

// The reference (device-generic ATen index math). Checks kept_blocks: int64 [B,
// k], k >= 1, strictly ascending per row, in [0, ceil(n_tokens / block)).
// `what` names the calling op in error messages.
at::Tensor KeptPositionsImpl(const at::Tensor& kept_blocks, int64_t n_tokens,
                             int64_t block,
                             const char* what = "kept_positions");

// The argument checks of KeptPositionsImpl that need no values (block,
// n_tokens, dtype and rank, k >= 1).
void CheckKeptBlocksArgs(const at::Tensor& kept_blocks, int64_t n_tokens,
                         int64_t block, const char* what);

// The value checks of KeptPositionsImpl from `fact` = {min, max, 1 if every
// row is strictly ascending else 0, rows whose last block is the last one}
// (computed by ATen in the reference, by one kernel in the CUDA bindings).
// Returns the kept tokens per row.
int64_t KeptTokensFromFacts(const int64_t* fact, int64_t batch, int64_t k,
                            int64_t n_tokens, int64_t block, const char* what);

// BlockTokenIndex's checks of `full` against `kept_blocks` (rank, device,
// batch).
void CheckBlockTokenArgs(const at::Tensor& full, const at::Tensor& kept_blocks,
                         const char* what);

// The gather/scatter index for a tensor `full` of [B, N, D] or [B, H, N, d]
// (tokens on dim full.dim() - 2): positions expanded to [B, n, D] or [B, H, n,
// d]. Checks ranks, batch and device; `what` names the calling op.
at::Tensor BlockTokenIndex(const at::Tensor& full,
                           const at::Tensor& kept_blocks, int64_t block,
                           const char* what);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_KEPT_POSITIONS_KEPT_POSITIONS_H_
