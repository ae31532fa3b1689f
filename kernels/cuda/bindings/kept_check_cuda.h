// The kept_blocks checks of the CUDA gather/scatter bindings without the ~9
// small ATen ops of the reference: one kernel (cuda::LaunchKeptFacts) and one
// 32-byte device->host copy, same errors. Chosen per call by LEMO_KEPT_PATH.
//
//   if (KeptPathFromEnv() >= 1) {
//     const int64_t n = KeptTokensCuda(x, kept, block, "gather_blocks");
//   }
#ifndef LEMO_KERNELS_CUDA_BINDINGS_KEPT_CHECK_CUDA_H_
#define LEMO_KERNELS_CUDA_BINDINGS_KEPT_CHECK_CUDA_H_

#include <ATen/ATen.h>

#include <cstdint>

namespace lemo::kernels {

// LEMO_KEPT_PATH: 0 = the reference checks (BlockTokenIndex) and the
// one-thread-per-vector kernels; unset or 1 (the default) = the checks by one
// kernel; 2 = 1 and the block-CTA gather/scatter kernels. Read per call, for
// A/B timing. On the H100 (2026-11-22, 32K x 4096 bf16, keep 0.4), 1 made the
// gather 0.246 -> 0.111 ms and the scatter 0.442 -> 0.297 ms; 2 was no faster.
int KeptPathFromEnv();

// The kept tokens per row for gathering `full` ([B, N, D] or [B, H, N, d], on
// a CUDA device, B >= 1) by `kept_blocks`, after every check BlockTokenIndex
// makes, with the same messages. Syncs the stream once.
int64_t KeptTokensCuda(const at::Tensor& full, const at::Tensor& kept_blocks,
                       int64_t block, const char* what);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_CUDA_BINDINGS_KEPT_CHECK_CUDA_H_
