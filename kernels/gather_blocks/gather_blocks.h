// lemo::gather_blocks: the kept 64-token blocks of x, in order
// (permutation-free: blocks are contiguous runs, so a CUDA kernel is a block
// copy), and its C++ entry. The ragged last block gathers only its real
// tokens.
//
//   // x [B,N,D] or [B,H,N,d], kept [B,k] -> [B,n,D] or [B,H,n,d]
//   at::Tensor xk = lemo::kernels::GatherBlocks(x, kept);
//
// Autograd: the backward is lemo::scatter_add_blocks of the gradient into
// zeros, and saves only the kept indices (no activation), so its memory is
// O(k).
#ifndef LEMO_KERNELS_GATHER_BLOCKS_GATHER_BLOCKS_H_
#define LEMO_KERNELS_GATHER_BLOCKS_GATHER_BLOCKS_H_

#include <ATen/ATen.h>

#include <cstdint>

#include "kernels/common/block.h"

namespace lemo::kernels {

// lemo::gather_blocks through the dispatcher (and its autograd): x [B, N, D]
// -> [B, n, D], or [B, H, N, d] -> [B, H, n, d]. Backward scatters the
// gradient back (zeros at eliminated tokens). Throws c10::Error on bad input.
at::Tensor GatherBlocks(const at::Tensor& x, const at::Tensor& kept_blocks,
                        int64_t block = kDefaultBlock);

// CPU reference of lemo::gather_blocks, plain LibTorch.
at::Tensor GatherBlocksCpu(const at::Tensor& x, const at::Tensor& kept_blocks,
                           int64_t block);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_GATHER_BLOCKS_GATHER_BLOCKS_H_
