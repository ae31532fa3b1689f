// The CUDA block scoring kernel's params from tensors, shared by the op's
// binding (block_scores_cuda.cc, which always asks for kBlockScoresAuto), its
// GPU tests and lemo-kernel-bench, which launch each variant directly. Only
// built with LEMO_ENABLE_CUDA.
//
//   at::Tensor out = at::empty({B, nb, nb}, q.options().dtype(at::kFloat));
//   cuda::BlockScoresParams p = BlockScoresParamsFor(q, k, out, variant);
//   cuda::LaunchBlockScores(p, stream);
#ifndef LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_CUDA_H_
#define LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_CUDA_H_

#include <ATen/ATen.h>

#include <cstdint>

#include "kernels/block_scores/block_scores_kernel.h"

namespace lemo::kernels {

// q [B, Hq, N, d] and k [B, Hkv, N, d] on one CUDA device, rows contiguous;
// out [B, nb, nb] fp32. Sizes, strides, dtype, scale 1 / sqrt(d) and the
// tensor-core `variant`; no checks (the binding makes them).
cuda::BlockScoresParams BlockScoresParamsFor(const at::Tensor& q,
                                             const at::Tensor& k,
                                             at::Tensor& out, int32_t variant);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_CUDA_H_
