// CUDA kernel of lemo::block_scores: checks the inputs, fills
// cuda::BlockScoresParams and launches the launcher's default variant
// (kBlockScoresAuto: the cluster kernel on sm_90) on the current stream; the
// other variants are reached by calling the launcher (tests, bench). Blocks
// other than 64 and fp64 inputs take the device-generic ATen reference.
#include "kernels/block_scores/block_scores_cuda.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cmath>

#include "kernels/block_scores/block_scores.h"
#include "kernels/block_scores/block_scores_kernel.h"
#include "kernels/common/binding_utils.h"

namespace lemo::kernels {

cuda::BlockScoresParams BlockScoresParamsFor(const at::Tensor& q,
                                             const at::Tensor& k,
                                             at::Tensor& out, int32_t variant) {
  cuda::BlockScoresParams p;
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.out = out.data_ptr<float>();
  p.dtype = ToDType(q.scalar_type());
  p.batch = static_cast<int32_t>(q.size(0));
  p.hq = static_cast<int32_t>(q.size(1));
  p.hkv = static_cast<int32_t>(k.size(1));
  p.n = static_cast<int32_t>(q.size(2));
  p.d = static_cast<int32_t>(q.size(3));
  p.q_stride_b = q.stride(0);
  p.q_stride_h = q.stride(1);
  p.q_stride_n = q.stride(2);
  p.k_stride_b = k.stride(0);
  p.k_stride_h = k.stride(1);
  p.k_stride_n = k.stride(2);
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.d)));
  p.variant = variant;
  return p;
}

namespace {

at::Tensor BlockScoresCuda(const at::Tensor& q_in, const at::Tensor& k_in,
                           int64_t block) {
  CheckBlockScoresInputs(q_in, k_in, block);
  TORCH_CHECK_VALUE(q_in.device() == k_in.device(), "block_scores: q on ",
                    q_in.device(), " but k on ", k_in.device());
  if (block != cuda::kBlockScoresTile || !SupportedDType(q_in.scalar_type())) {
    return BlockScoresCpu(q_in, k_in, block);
  }
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor q = RowsContiguous(q_in);
  const at::Tensor k = RowsContiguous(k_in);
  const int64_t batch = q.size(0), n = q.size(2);
  TORCH_CHECK_VALUE(n < (int64_t{1} << 30) && batch <= 65535,
                    "block_scores: sequence ", n, " or batch ", batch,
                    " too large for the CUDA kernel");
  const int64_t nb = (n + block - 1) / block;
  at::Tensor out = at::empty({batch, nb, nb}, q.options().dtype(at::kFloat));
  const cuda::BlockScoresParams p =
      BlockScoresParamsFor(q, k, out, cuda::kBlockScoresAuto);
  CheckLaunch(cuda::LaunchBlockScores(p, CurrentStream()), "block_scores", q);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(lemo, CUDA, m) {
  m.impl("block_scores", TORCH_FN(BlockScoresCuda));
}

}  // namespace lemo::kernels
