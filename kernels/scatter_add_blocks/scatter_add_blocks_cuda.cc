// CUDA kernel of lemo::scatter_add_blocks: the reference's checks, then one
// fused pass (residual copy + add at the kept tokens) through
// cuda::ScatterAddBlocksParams on the current stream.
#include "kernels/scatter_add_blocks/scatter_add_blocks_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <vector>

#include "kernels/common/binding_utils.h"
#include "kernels/kept_positions/kept_check_cuda.h"
#include "kernels/kept_positions/kept_positions.h"
#include "kernels/scatter_add_blocks/scatter_add_blocks.h"
#include "kernels/scatter_add_blocks/scatter_add_blocks_kernel.h"

namespace lemo::kernels {

cuda::ScatterAddBlocksParams ScatterAddBlocksParamsFor(
    const at::Tensor& residual, const at::Tensor& y, const at::Tensor& kept,
    const at::Tensor& out, int64_t block) {
  const bool four = residual.dim() == 4;
  cuda::ScatterAddBlocksParams p;
  p.residual = residual.data_ptr();
  p.y = y.data_ptr();
  p.out = out.data_ptr();
  p.kept = kept.data_ptr<int64_t>();
  p.dtype = ToDType(residual.scalar_type());
  p.batch = residual.size(0);
  p.heads = four ? residual.size(1) : 1;
  p.n_tokens = residual.size(-2);
  p.kept_tokens = y.size(-2);
  p.width = residual.size(-1);
  p.kept_count = kept.size(1);
  p.block = block;
  p.res_stride_b = residual.stride(0);
  p.res_stride_h = four ? residual.stride(1) : 0;
  p.res_stride_n = residual.stride(-2);
  p.y_stride_b = y.stride(0);
  p.y_stride_h = four ? y.stride(1) : 0;
  p.y_stride_n = y.stride(-2);
  return p;
}

at::Tensor ScatterAddBlocksCuda(const at::Tensor& residual_in,
                                const at::Tensor& y_in,
                                const at::Tensor& kept_in, int64_t block,
                                KeptPath path) {
  const char* what = "scatter_add_blocks";
  const bool four = residual_in.dim() == 4;
  // The kernel takes it: supported dtype, non-empty, grid limits (rank is
  // checked next, by either path).
  const bool kernel_takes = SupportedDType(residual_in.scalar_type()) &&
                            residual_in.numel() > 0 && residual_in.dim() >= 3 &&
                            residual_in.size(0) <= 65535 &&
                            (!four || residual_in.size(1) <= 65535);
  std::vector<int64_t> sizes;
  if (path != KeptPath::kReferenceChecks && kernel_takes &&
      residual_in.dim() <= 4) {
    sizes = residual_in.sizes().vec();
    sizes[residual_in.dim() - 2] =
        KeptTokensCuda(residual_in, kept_in, block, what);
  } else {
    sizes = BlockTokenIndex(residual_in, kept_in, block, what).sizes().vec();
  }
  TORCH_CHECK_VALUE(y_in.sizes() == at::IntArrayRef(sizes),
                    "scatter_add_blocks: y must be ", at::IntArrayRef(sizes),
                    " for residual ", residual_in.sizes(), " and ",
                    kept_in.size(1), " kept blocks, got ", y_in.sizes());
  TORCH_CHECK_VALUE(y_in.scalar_type() == residual_in.scalar_type(),
                    "scatter_add_blocks: y is ", y_in.scalar_type(),
                    " but residual is ", residual_in.scalar_type());
  TORCH_CHECK_VALUE(y_in.device() == residual_in.device(),
                    "scatter_add_blocks: y on ", y_in.device(),
                    " but residual on ", residual_in.device());
  if (!kernel_takes) {
    return ScatterAddBlocksCpu(residual_in, y_in, kept_in, block);
  }
  const c10::cuda::CUDAGuard guard(residual_in.device());
  const at::Tensor residual = RowsContiguous(residual_in);
  const at::Tensor y = RowsContiguous(y_in);
  const at::Tensor kept = kept_in.contiguous();
  at::Tensor out = at::empty(residual.sizes(), residual.options());
  cuda::ScatterAddBlocksParams p =
      ScatterAddBlocksParamsFor(residual, y, kept, out, block);
  p.block_ctas = path == KeptPath::kBlockCtas;
  CheckLaunch(cuda::LaunchScatterAddBlocks(p, CurrentStream()),
              "scatter_add_blocks", residual);
  return out;
}

namespace {

at::Tensor ScatterAddBlocksOp(const at::Tensor& residual, const at::Tensor& y,
                              const at::Tensor& kept_blocks, int64_t block) {
  return ScatterAddBlocksCuda(residual, y, kept_blocks, block,
                              kDefaultKeptPath);
}

}  // namespace

TORCH_LIBRARY_IMPL(lemo, CUDA, m) {
  m.impl("scatter_add_blocks", TORCH_FN(ScatterAddBlocksOp));
}

}  // namespace lemo::kernels
