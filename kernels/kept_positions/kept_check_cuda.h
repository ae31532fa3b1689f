// The kept_blocks checks of the CUDA gather/scatter bindings without the ~9
// small ATen ops of the reference: one kernel (cuda::LaunchKeptFacts) and one
// 32-byte device->host copy, same errors. The ops always take this path
// (kDefaultKeptPath); tests and lemo-kernel-bench pass the others to the
// bindings' functions (GatherBlocksCuda, ScatterAddBlocksCuda) directly.
//
//   const int64_t n = KeptTokensCuda(x, kept, block, "gather_blocks");
//   at::Tensor xk = GatherBlocksCuda(x, kept, 64, KeptPath::kBlockCtas);
#ifndef LEMO_KERNELS_KEPT_POSITIONS_KEPT_CHECK_CUDA_H_
#define LEMO_KERNELS_KEPT_POSITIONS_KEPT_CHECK_CUDA_H_

#include <ATen/ATen.h>

#include <cstdint>

namespace lemo::kernels {

// How a CUDA gather/scatter binding checks kept_blocks, and the kernels'
// launch shape. On the H100 (2026-11-22, 32K x 4096 bf16, keep 0.4),
// kKernelChecks made the gather 0.246 -> 0.111 ms and the scatter 0.442 ->
// 0.297 ms against kReferenceChecks; kBlockCtas was no faster end to end.
enum class KeptPath : int32_t {
  // The reference's checks (BlockTokenIndex: ~11 ATen ops and one sync), then
  // the flat kernels (one thread per vector): the first path, kept to time
  // against.
  kReferenceChecks = 0,
  // The checks by one kernel (KeptTokensCuda), then the flat kernels.
  kKernelChecks = 1,
  // kKernelChecks, then the block-CTA kernels (p.block_ctas).
  kBlockCtas = 2,
};

// The path the ops take.
inline constexpr KeptPath kDefaultKeptPath = KeptPath::kKernelChecks;

// The kept tokens per row for gathering `full` ([B, N, D] or [B, H, N, d], on
// a CUDA device, B >= 1) by `kept_blocks`, after every check BlockTokenIndex
// makes, with the same messages. Syncs the stream once.
int64_t KeptTokensCuda(const at::Tensor& full, const at::Tensor& kept_blocks,
                       int64_t block, const char* what);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_KEPT_POSITIONS_KEPT_CHECK_CUDA_H_
