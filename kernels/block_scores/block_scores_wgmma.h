// The Hopper warpgroup-MMA block-scoring kernel (BlockScoresVariant
// kBlockScoresWgmma), in its own translation unit because it needs sm_90a
// (wgmma); block_scores_kernel.cu's LaunchBlockScores dispatches to it.
//
//   BlockScoresParams p;  // bf16 or fp16, d = 64 or 128, 16-byte aligned
//   p.variant = kBlockScoresWgmma;
//   LaunchBlockScores(p, stream);  // zeroes p.out, then calls the launcher
#ifndef LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_WGMMA_H_
#define LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_WGMMA_H_

#include <cuda_runtime_api.h>

#include "kernels/block_scores/block_scores_kernel.h"

namespace lemo::kernels::cuda {

// Launches the wgmma kernel on `stream` for p (p.out already zeroed; the
// kernel writes only tiles on and below the diagonal). Returns
// cudaErrorInvalidValue unless the dtype is bf16/fp16, d is 64 or 128 and
// p.scale > 0 (it is applied after the ReLU and the tile max).
cudaError_t LaunchBlockScoresWgmma(const BlockScoresParams& p,
                                   cudaStream_t stream);

}  // namespace lemo::kernels::cuda

#endif  // LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_WGMMA_H_
