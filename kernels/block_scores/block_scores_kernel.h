// Fused oracle block scoring on the GPU (lemo::block_scores, LEMO.md sections
// 1 and 4): one pass over q and k computes, per 64x64 tile (i, j) with j <= i,
//   M[b, i, j] = max over the tile of sum_h ReLU(q_h k_{h/g}^T / sqrt(d)),
// causal (row >= col), g = Hq / Hkv, without ever storing an N x N matrix.
// Tiles above the diagonal are 0; padded rows and columns (N not a multiple of
// 64) contribute 0. Torch-free: kernels/block_scores/block_scores_cuda.cc
// fills the params from tensors.
//
//   lemo::kernels::cuda::BlockScoresParams p;
//   p.q = q_ptr; p.k = k_ptr; p.out = map_ptr;  // map: [B, nb, nb] fp32
//   p.dtype = DType::kBFloat16; p.batch = 1; p.hq = 32; p.hkv = 8;
//   p.n = 4097; p.d = 128; p.scale = 1 / sqrt(128.f); /* + strides */
//   cudaError_t err = LaunchBlockScores(p, stream);
//
// Paths: bf16/fp16 with d = 64 or 128 and 16-byte aligned rows run on tensor
// cores: on a Hopper (sm_90) device the cluster kernel, elsewhere mma.sync
// m16n8k16 (fp32 accumulation, 128x128 CTA tiles, cp.async double-buffered
// over heads), or the variant of BlockScoresVariant that p.variant names;
// anything else (fp32, other d) runs a CUDA-core kernel with fp32 math.
#ifndef LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_KERNEL_H_
#define LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_KERNEL_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/common/dtype.h"

namespace lemo::kernels::cuda {

// The tile edge the kernels are built for (the paper's block of 64 tokens).
inline constexpr int kBlockScoresTile = 64;

struct BlockScoresParams {
  // q [B, Hq, N, d]; the d dim is contiguous, the others strided (elements).
  const void* q = nullptr;
  // k [B, Hkv, N, d]; the d dim is contiguous, the others strided (elements).
  const void* k = nullptr;
  // Output map [B, nb, nb] fp32 contiguous, nb = ceil(N / 64); the launcher
  // zeroes it, then writes the tiles on and below the diagonal.
  float* out = nullptr;
  // Element type of q and k.
  DType dtype = DType::kBFloat16;
  // Batch size B.
  int32_t batch = 0;
  // Query heads Hq (a multiple of hkv).
  int32_t hq = 0;
  // Key heads Hkv.
  int32_t hkv = 0;
  // Sequence length N (tokens; any value >= 1).
  int32_t n = 0;
  // Head dim d.
  int32_t d = 0;
  // Strides of q over batch, head and token, in elements.
  int64_t q_stride_b = 0, q_stride_h = 0, q_stride_n = 0;
  // Strides of k over batch, head and token, in elements.
  int64_t k_stride_b = 0, k_stride_h = 0, k_stride_n = 0;
  // Score scale, 1 / sqrt(d).
  float scale = 1.0f;
  // Tensor-core kernel variant (BlockScoresVariant); kAuto: cluster on sm_90,
  // else kBlockScoresSquare.
  int32_t variant = 0;
};

// The tensor-core kernels, kept side by side so that tests and
// lemo-kernel-bench can check and time each one.
enum BlockScoresVariant : int32_t {
  kBlockScoresAuto = 0,
  // CTA of 128 rows x 128 columns: each warp 32 x 64, S and the head sum in
  // registers (64 + 64 fp32 per thread).
  kBlockScoresSquare = 1,
  // 2 was a 256 x 128 mma.sync CTA; never faster than 1 on the H200 or the
  // H100, it was removed.
  // Hopper warpgroup MMA (sm_90a; kernels/block_scores/block_scores_wgmma.cu):
  // CTA of 128 rows x 256 columns, 2 warpgroups of wgmma m64n128k16 with Q and
  // K read from 128-byte-swizzled shared memory; head sum 128 fp32 per thread.
  kBlockScoresWgmma = 3,
  // 3 in 2-CTA clusters (sm_90a; kernels/block_scores/block_scores_cluster.cu):
  // the CTAs of row blocks 2P and 2P + 1 share a K tile that TMA multicasts
  // into both, a producer warp loads a ring ahead, and the two warpgroups take
  // turns on the tensor cores.
  kBlockScoresCluster = 4,
  // 4 with the clusters in row-pair order instead of squares (kept to
  // measure what the squares' L2 reuse buys).
  kBlockScoresClusterRowOrder = 5,
};

// Whether `p` takes the tensor-core path (bf16/fp16, d 64 or 128, 16-byte
// aligned pointers and strides).
bool BlockScoresUsesTensorCores(const BlockScoresParams& p);

// Zeroes p.out and launches the scoring kernel on `stream`. Returns the launch
// error (cudaSuccess when queued).
cudaError_t LaunchBlockScores(const BlockScoresParams& p, cudaStream_t stream);

}  // namespace lemo::kernels::cuda

#endif  // LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_KERNEL_H_
