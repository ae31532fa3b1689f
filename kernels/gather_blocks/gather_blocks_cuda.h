// The CUDA binding of lemo::gather_blocks, for the callers that pick a kept
// path or launch the kernel themselves: the kernel tests (every path against
// the CPU reference) and lemo-kernel-bench (each path timed, and the launcher
// alone). The op, through the dispatcher, always takes kDefaultKeptPath. Only
// built with LEMO_ENABLE_CUDA.
//
//   at::Tensor xk = GatherBlocksCuda(x, kept, 64, KeptPath::kBlockCtas);
//   cuda::GatherBlocksParams p = GatherBlocksParamsFor(x, kept, out, 64);
//   cuda::LaunchGatherBlocks(p, stream);  // no checks, out preallocated
#ifndef LEMO_KERNELS_GATHER_BLOCKS_GATHER_BLOCKS_CUDA_H_
#define LEMO_KERNELS_GATHER_BLOCKS_GATHER_BLOCKS_CUDA_H_

#include <ATen/ATen.h>

#include <cstdint>

#include "kernels/gather_blocks/gather_blocks_kernel.h"
#include "kernels/kept_positions/kept_check_cuda.h"

namespace lemo::kernels {

// lemo::gather_blocks on a CUDA device through `path`: the reference's checks
// and errors, then the kernel (the device-generic reference where the kernel
// does not take x: empty, other ranks, grid limits).
at::Tensor GatherBlocksCuda(const at::Tensor& x, const at::Tensor& kept_blocks,
                            int64_t block, KeptPath path);

// The params of gathering x ([B, N, D] or [B, H, N, d], last dim contiguous)
// by kept (int64 [B, k], contiguous) into out ([B, (H,) n, W] contiguous), on
// the flat launch shape; no checks.
cuda::GatherBlocksParams GatherBlocksParamsFor(const at::Tensor& x,
                                               const at::Tensor& kept,
                                               const at::Tensor& out,
                                               int64_t block);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_GATHER_BLOCKS_GATHER_BLOCKS_CUDA_H_
