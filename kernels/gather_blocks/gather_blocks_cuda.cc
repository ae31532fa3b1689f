// CUDA kernel of lemo::gather_blocks: the same checks as the reference
// (kept_blocks validated by KeptTokensCuda, or BlockTokenIndex on
// KeptPath::kReferenceChecks), then cuda::GatherBlocksParams on the current
// stream. Autograd is the op's Autograd kernel, which redispatches here below
// autograd.
#include "kernels/gather_blocks/gather_blocks_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <vector>

#include "kernels/common/binding_utils.h"
#include "kernels/gather_blocks/gather_blocks.h"
#include "kernels/gather_blocks/gather_blocks_kernel.h"
#include "kernels/kept_positions/kept_check_cuda.h"
#include "kernels/kept_positions/kept_positions.h"

namespace lemo::kernels {

cuda::GatherBlocksParams GatherBlocksParamsFor(const at::Tensor& x,
                                               const at::Tensor& kept,
                                               const at::Tensor& out,
                                               int64_t block) {
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

namespace {

// Whether the CUDA kernels take `x` (else the reference runs on the device).
bool KernelTakes(const at::Tensor& x) {
  return (x.dim() == 3 || x.dim() == 4) && x.numel() > 0 &&
         x.size(0) <= 65535 && (x.dim() != 4 || x.size(1) <= 65535);
}

}  // namespace

at::Tensor GatherBlocksCuda(const at::Tensor& x_in, const at::Tensor& kept_in,
                            int64_t block, KeptPath path) {
  const char* what = "gather_blocks";
  std::vector<int64_t> sizes;
  if (path != KeptPath::kReferenceChecks && KernelTakes(x_in)) {
    sizes = x_in.sizes().vec();
    sizes[x_in.dim() - 2] = KeptTokensCuda(x_in, kept_in, block, what);
  } else {
    const at::Tensor index = BlockTokenIndex(x_in, kept_in, block, what);
    if (!KernelTakes(x_in)) return GatherBlocksCpu(x_in, kept_in, block);
    sizes = index.sizes().vec();
  }
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = RowsContiguous(x_in);
  const at::Tensor kept = kept_in.contiguous();
  at::Tensor out = at::empty(sizes, x.options());
  cuda::GatherBlocksParams p = GatherBlocksParamsFor(x, kept, out, block);
  p.block_ctas = path == KeptPath::kBlockCtas;
  CheckLaunch(cuda::LaunchGatherBlocks(p, CurrentStream()), what, x);
  return out;
}

namespace {

at::Tensor GatherBlocksOp(const at::Tensor& x, const at::Tensor& kept_blocks,
                          int64_t block) {
  return GatherBlocksCuda(x, kept_blocks, block, kDefaultKeptPath);
}

}  // namespace

TORCH_LIBRARY_IMPL(lemo, CUDA, m) {
  m.impl("gather_blocks", TORCH_FN(GatherBlocksOp));
}

}  // namespace lemo::kernels
