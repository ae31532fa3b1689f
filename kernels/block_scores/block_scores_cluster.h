// The Hopper 2-CTA-cluster block-scoring kernel (BlockScoresVariant
// kBlockScoresCluster): wgmma as in block_scores_wgmma.h, with Q and K loaded
// by TMA, K multicast to both CTAs of a cluster, and ping-ponged warpgroups.
// Its own translation unit because it needs sm_90a; block_scores_kernel.cu's
// LaunchBlockScores dispatches to it.
//
//   BlockScoresParams p;  // bf16 or fp16, d = 64 or 128, 16-byte aligned
//   p.variant = kBlockScoresCluster;
//   LaunchBlockScores(p, stream);  // zeroes p.out, then calls the launcher
#ifndef LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_CLUSTER_H_
#define LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_CLUSTER_H_

#include <cuda_runtime_api.h>

#include "kernels/block_scores/block_scores_kernel.h"

namespace lemo::kernels::cuda {

// Launches the cluster kernel on `stream` for p (p.out already zeroed; the
// kernel writes only tiles on and below the diagonal). Returns
// cudaErrorInvalidValue unless the dtype is bf16/fp16, d is 64 or 128 and
// p.scale > 0; cudaErrorNotSupported when the driver cannot describe q or k
// as a TMA tensor map (the caller may fall back to the wgmma kernel).
cudaError_t LaunchBlockScoresCluster(const BlockScoresParams& p,
                                     cudaStream_t stream);

}  // namespace lemo::kernels::cuda

#endif  // LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_CLUSTER_H_
