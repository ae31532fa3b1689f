// lemo::scatter_add_blocks: the residual with y added at the kept tokens, i.e.
// the attention output of the kept tokens written straight into the residual
// stream (no zeros tensor of N rows and no separate add), and its C++ entry.
// Eliminated tokens keep their residual value.
//
//   // x [B,N,D], attn [B,n,D]: x + attn at the kept tokens
//   at::Tensor h = lemo::kernels::ScatterAddBlocks(x, attn, kept);
//
// Autograd: d residual = grad; d y = gather_blocks(grad). Nothing but the kept
// indices is saved.
#ifndef LEMO_KERNELS_SCATTER_ADD_BLOCKS_SCATTER_ADD_BLOCKS_H_
#define LEMO_KERNELS_SCATTER_ADD_BLOCKS_SCATTER_ADD_BLOCKS_H_

#include <ATen/ATen.h>

#include <cstdint>

#include "kernels/common/block.h"

namespace lemo::kernels {

// lemo::scatter_add_blocks through the dispatcher (and its autograd):
// residual [B, N, D] (or [B, H, N, d]) with y [B, n, D] added at the kept
// tokens; eliminated tokens pass through unchanged. Throws c10::Error on bad
// input.
at::Tensor ScatterAddBlocks(const at::Tensor& residual, const at::Tensor& y,
                            const at::Tensor& kept_blocks,
                            int64_t block = kDefaultBlock);

// CPU reference of lemo::scatter_add_blocks, plain LibTorch. residual and y
// share dtype, device and every dim but the token dim (dim() - 2), where y has
// the kept token count.
at::Tensor ScatterAddBlocksCpu(const at::Tensor& residual, const at::Tensor& y,
                               const at::Tensor& kept_blocks, int64_t block);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_SCATTER_ADD_BLOCKS_SCATTER_ADD_BLOCKS_H_
