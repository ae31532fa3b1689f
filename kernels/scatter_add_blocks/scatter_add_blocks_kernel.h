// Block scatter fused with the residual add on the GPU
// (lemo::scatter_add_blocks, LEMO.md section 4): one pass writes
//   out[b, h, t] = residual[b, h, t] + y[b, h, slot(t)]  at kept tokens,
//   out[b, h, t] = residual[b, h, t]                     elsewhere,
// so the attention output of the kept tokens lands straight in the residual
// stream, with no zeros tensor of N rows and no separate add. slot(t) is found
// by a binary search of the token's block in the row's kept list. With
// residual = nullptr it writes zeros at eliminated tokens (the backward of a
// gather). Torch-free; kernels/scatter_add_blocks/scatter_add_blocks_cuda.cc
// fills the params.
//
//   ScatterAddBlocksParams p;  // residual [B,H,N,W], y [B,H,n,W] -> out
//   p.residual = x; p.y = attn; p.out = h; p.kept = kept; ...
//   LaunchScatterAddBlocks(p, stream);
#ifndef LEMO_KERNELS_SCATTER_ADD_BLOCKS_SCATTER_ADD_BLOCKS_KERNEL_H_
#define LEMO_KERNELS_SCATTER_ADD_BLOCKS_SCATTER_ADD_BLOCKS_KERNEL_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/common/dtype.h"

namespace lemo::kernels::cuda {

struct ScatterAddBlocksParams {
  // Residual [B, H, N, W] (H = 1 for 3-D), W contiguous, strided; nullptr
  // means zeros.
  const void* residual = nullptr;
  // Kept-token values [B, H, n, W], W contiguous, strided.
  const void* y = nullptr;
  // Output [B, H, N, W], contiguous.
  void* out = nullptr;
  // Kept block indices int64 [B, kept_count], ascending, validated by the
  // caller.
  const int64_t* kept = nullptr;
  // Element type of residual, y and out.
  DType dtype = DType::kBFloat16;
  // Batch B.
  int64_t batch = 0;
  // Heads H (1 for 3-D tensors).
  int64_t heads = 1;
  // Full tokens N.
  int64_t n_tokens = 0;
  // Kept tokens n (rows of y).
  int64_t kept_tokens = 0;
  // Row width W in elements.
  int64_t width = 0;
  // Kept blocks per batch row.
  int64_t kept_count = 0;
  // Tokens per block.
  int64_t block = 64;
  // Residual strides over batch, head and token, in elements.
  int64_t res_stride_b = 0, res_stride_h = 0, res_stride_n = 0;
  // y strides over batch, head and token, in elements.
  int64_t y_stride_b = 0, y_stride_h = 0, y_stride_n = 0;
  // Launch shape: false = one thread per vector, each finding its block's
  // slot by a binary search; true = each CTA covers a run of rows of one
  // block, finds the slot once and keeps 4 vectors in flight per thread. The
  // op uses false; true (KeptPath::kBlockCtas in tests and lemo-kernel-bench)
  // was no faster end to end on the H100.
  bool block_ctas = false;
};

cudaError_t LaunchScatterAddBlocks(const ScatterAddBlocksParams& p,
                                   cudaStream_t stream);

}  // namespace lemo::kernels::cuda

#endif  // LEMO_KERNELS_SCATTER_ADD_BLOCKS_SCATTER_ADD_BLOCKS_KERNEL_H_
