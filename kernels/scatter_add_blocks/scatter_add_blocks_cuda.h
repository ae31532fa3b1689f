// The CUDA binding of lemo::scatter_add_blocks, for the callers that pick a
// kept path or launch the kernel themselves: the kernel tests (every path
// against the CPU reference) and lemo-kernel-bench (each path timed, and the
// launcher alone). The op, through the dispatcher, always takes
// kDefaultKeptPath. Only built with LEMO_ENABLE_CUDA.
//
//   at::Tensor h = ScatterAddBlocksCuda(x, attn, kept, 64,
//                                       KeptPath::kReferenceChecks);
//   cuda::ScatterAddBlocksParams p =
//       ScatterAddBlocksParamsFor(x, attn, kept, out, 64);
//   cuda::LaunchScatterAddBlocks(p, stream);  // no checks, out preallocated
#ifndef LEMO_KERNELS_SCATTER_ADD_BLOCKS_SCATTER_ADD_BLOCKS_CUDA_H_
#define LEMO_KERNELS_SCATTER_ADD_BLOCKS_SCATTER_ADD_BLOCKS_CUDA_H_

#include <ATen/ATen.h>

#include <cstdint>

#include "kernels/kept_positions/kept_check_cuda.h"
#include "kernels/scatter_add_blocks/scatter_add_blocks_kernel.h"

namespace lemo::kernels {

// lemo::scatter_add_blocks on a CUDA device through `path`: the reference's
// checks and errors, then the fused kernel (the device-generic reference
// where the kernel does not take the inputs: fp64, empty, grid limits).
at::Tensor ScatterAddBlocksCuda(const at::Tensor& residual, const at::Tensor& y,
                                const at::Tensor& kept_blocks, int64_t block,
                                KeptPath path);

// The params of adding y ([B, (H,) n, W]) into residual ([B, N, D] or
// [B, H, N, d]) at the kept tokens of kept (int64 [B, k], contiguous), written
// to out (residual's sizes, contiguous), on the flat launch shape; last dims
// contiguous, no checks.
cuda::ScatterAddBlocksParams ScatterAddBlocksParamsFor(
    const at::Tensor& residual, const at::Tensor& y, const at::Tensor& kept,
    const at::Tensor& out, int64_t block);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_SCATTER_ADD_BLOCKS_SCATTER_ADD_BLOCKS_CUDA_H_
