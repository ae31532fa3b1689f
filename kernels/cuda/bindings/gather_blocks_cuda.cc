// CUDA kernel of lemo::gather_blocks: the same checks as the reference
// (kept_blocks validated by BlockTokenIndex), then cuda::GatherBlocksParams on
// the current stream. Autograd is the ops' Autograd kernels, which redispatch
// here below autograd.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <vector>

#include "kernels/cuda/bindings/binding_utils.h"
#include "kernels/cuda/bindings/kept_check_cuda.h"
#include "kernels/cuda/gather_blocks.h"
#include "kernels/ops/gather_blocks.h"
#include "kernels/ops/kept_positions.h"

namespace lemo::kernels {
namespace {

// Params of a gather of `x` ([B, N, D] or [B, H, N, d], last dim contiguous)
// into `out` ([B, (H,) n, W] contiguous).
cuda::GatherBlocksParams Params(const at::Tensor& x, const at::Tensor& kept,
                                const at::Tensor& out, int64_t block) {
  const bool four = x.dim() == 4;
  cuda::GatherBlocksParams p;
  p.src = x.data_ptr();
  p.dst = out.data_ptr();
  p.kept = kept.data_ptr<int64_t>();
  p.elem_bytes = static_cast<int32_t>(x.element_size());
  p.batch = x.size(0);
  p.heads = four ? x.size(1) : 1;
  p.n_tokens = x.size(-2);
  p.out_tokens = out.size(-2);
  p.width = x.size(-1);
  p.kept_count = kept.size(1);
  p.block = block;
  p.src_stride_b = x.stride(0);
  p.src_stride_h = four ? x.stride(1) : 0;
  p.src_stride_n = x.stride(-2);
  return p;
}

// The output sizes of gathering `x` (rank 3 or 4): x's, with `kept_tokens`
// on the token dim.
std::vector<int64_t> GatheredSizes(const at::Tensor& x, int64_t kept_tokens) {
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes[x.dim() - 2] = kept_tokens;
  return sizes;
}

// Whether the CUDA kernels take `x` (else the reference runs on the device).
bool KernelTakes(const at::Tensor& x) {
  return (x.dim() == 3 || x.dim() == 4) && x.numel() > 0 &&
         x.size(0) <= 65535 && (x.dim() != 4 || x.size(1) <= 65535);
}

at::Tensor GatherBlocksCuda(const at::Tensor& x_in, const at::Tensor& kept_in,
                            int64_t block) {
  const char* what = "gather_blocks";
  const int path = KeptPathFromEnv();
  std::vector<int64_t> sizes;
  if (path >= 1 && KernelTakes(x_in)) {
    sizes = GatheredSizes(x_in, KeptTokensCuda(x_in, kept_in, block, what));
  } else {
    const at::Tensor index = BlockTokenIndex(x_in, kept_in, block, what);
    if (!KernelTakes(x_in)) return GatherBlocksCpu(x_in, kept_in, block);
    sizes = index.sizes().vec();
  }
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = RowsContiguous(x_in);
  const at::Tensor kept = kept_in.contiguous();
  at::Tensor out = at::empty(sizes, x.options());
  cuda::GatherBlocksParams p = Params(x, kept, out, block);
  p.block_ctas = path == 2;
  CheckLaunch(cuda::LaunchGatherBlocks(p, CurrentStream()), what, x);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(lemo, CUDA, m) {
  m.impl("gather_blocks", TORCH_FN(GatherBlocksCuda));
}

}  // namespace lemo::kernels
