// Permutation-free block gather on the GPU (lemo::gather_blocks, LEMO.md
// section 4). Kept blocks are contiguous 64-token runs in original order, so
// output token t of batch row b reads input token kept[b][t / block] * block +
// t % block: a block copy, 16 bytes per thread access when rows allow it.
// Torch-free;
// kernels/gather_blocks/gather_blocks_cuda.cc fills the params.
//
//   GatherBlocksParams g;  // src [B, H, N, W] strided, dst [B, H, n, W]
//   g.src = x; g.dst = out; g.kept = kept; g.elem_bytes = 2; ...
//   LaunchGatherBlocks(g, stream);
#ifndef LEMO_KERNELS_GATHER_BLOCKS_GATHER_BLOCKS_KERNEL_H_
#define LEMO_KERNELS_GATHER_BLOCKS_GATHER_BLOCKS_KERNEL_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace lemo::kernels::cuda {

struct GatherBlocksParams {
  // Input [B, H, N, W] (H = 1 for [B, N, W]); W contiguous, other dims strided.
  const void* src = nullptr;
  // Output [B, H, out_tokens, W], contiguous.
  void* dst = nullptr;
  // Kept block indices int64 [B, kept_count], ascending, validated by the
  // caller.
  const int64_t* kept = nullptr;
  // Bytes per element (the plain gather copies bytes, any dtype).
  int32_t elem_bytes = 2;
  // Batch B.
  int64_t batch = 0;
  // Heads H (1 for 3-D tensors).
  int64_t heads = 1;
  // Input tokens N.
  int64_t n_tokens = 0;
  // Output tokens n (kept_count * block, minus the ragged tail when kept).
  int64_t out_tokens = 0;
  // Row width W in elements.
  int64_t width = 0;
  // Kept blocks per batch row.
  int64_t kept_count = 0;
  // Tokens per block.
  int64_t block = 64;
  // Input strides over batch, head and token, in elements.
  int64_t src_stride_b = 0, src_stride_h = 0, src_stride_n = 0;
  // Launch shape: false = one thread per vector of the flat (token, vector)
  // range (64-bit index math per vector); true = each CTA covers a run of
  // rows of one kept block with 32-bit index math, 4 vectors in flight per
  // thread. The op uses false; true (KeptPath::kBlockCtas in tests and
  // lemo-kernel-bench) was no faster end to end on the H100.
  bool block_ctas = false;
};

cudaError_t LaunchGatherBlocks(const GatherBlocksParams& p,
                               cudaStream_t stream);

}  // namespace lemo::kernels::cuda

#endif  // LEMO_KERNELS_GATHER_BLOCKS_GATHER_BLOCKS_KERNEL_H_
