// CUDA kernels of lemo::cross_entropy_chunk and its in-place backward: the
// reference's checks plus a label range check, then
// cuda::CrossEntropyChunkParams on the current stream. fp64 logits take the
// ATen reference.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "kernels/common/binding_utils.h"
#include "kernels/cross_entropy_chunk/cross_entropy_chunk.h"
#include "kernels/cross_entropy_chunk/cross_entropy_chunk_kernel.h"

namespace lemo::kernels {
namespace {

// The kernel would read out of bounds where the reference throws; one host
// sync per chunk.
void CheckLabels(const at::Tensor& labels, int64_t vocab,
                 int64_t ignore_index) {
  const bool ok = ((labels >= 0)
                       .logical_and(labels < vocab)
                       .logical_or(labels == ignore_index))
                      .all()
                      .item<bool>();
  TORCH_CHECK_INDEX(ok, "cross_entropy_chunk: a label is outside [0, ", vocab,
                    ") and is not ignore_index ", ignore_index);
}

cuda::CrossEntropyChunkParams Params(const at::Tensor& logits,
                                     const at::Tensor& labels,
                                     int64_t ignore_index) {
  cuda::CrossEntropyChunkParams p;
  p.logits = logits.data_ptr();
  p.labels = labels.data_ptr<int64_t>();
  p.dtype = ToDType(logits.scalar_type());
  p.rows = logits.size(0);
  p.vocab = logits.size(1);
  p.row_stride = logits.stride(0);
  p.ignore_index = ignore_index;
  return p;
}

at::Tensor CrossEntropyChunkCuda(const at::Tensor& logits_in,
                                 const at::Tensor& labels_in,
                                 int64_t ignore_index) {
  CheckCrossEntropyChunkInputs(logits_in, labels_in);
  if (!SupportedDType(logits_in.scalar_type()) || logits_in.numel() == 0) {
    return CrossEntropyChunkReference(logits_in, labels_in, ignore_index);
  }
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = RowsContiguous(logits_in);
  const at::Tensor labels = labels_in.contiguous();
  CheckLabels(labels, logits.size(1), ignore_index);
  at::Tensor per_row =
      at::empty({logits.size(0)}, logits.options().dtype(at::kFloat));
  cuda::CrossEntropyChunkParams p = Params(logits, labels, ignore_index);
  p.loss = per_row.data_ptr<float>();
  CheckLaunch(cuda::LaunchCrossEntropyChunkForward(p, CurrentStream()),
              "cross_entropy_chunk", logits);
  return per_row.sum();
}

at::Tensor& CrossEntropyChunkBackwardCuda(at::Tensor& logits,
                                          const at::Tensor& labels_in,
                                          const at::Tensor& grad_scale,
                                          int64_t ignore_index) {
  CheckCrossEntropyChunkInputs(logits, labels_in);
  TORCH_CHECK_VALUE(grad_scale.numel() == 1,
                    "cross_entropy_chunk_backward_: grad_scale must be a "
                    "scalar, got ",
                    grad_scale.sizes());
  if (!SupportedDType(logits.scalar_type()) || logits.numel() == 0 ||
      logits.stride(1) != 1) {
    return CrossEntropyChunkBackwardReference(logits, labels_in, grad_scale,
                                              ignore_index);
  }
  const c10::cuda::CUDAGuard guard(logits.device());
  const at::Tensor labels = labels_in.contiguous();
  CheckLabels(labels, logits.size(1), ignore_index);
  const at::Tensor scale =
      grad_scale.to(logits.device(), at::kFloat).reshape({1}).contiguous();
  cuda::CrossEntropyChunkParams p = Params(logits, labels, ignore_index);
  p.grad_scale = scale.data_ptr<float>();
  CheckLaunch(cuda::LaunchCrossEntropyChunkBackward(p, CurrentStream()),
              "cross_entropy_chunk_backward_", logits);
  return logits;
}

}  // namespace

TORCH_LIBRARY_IMPL(lemo, CUDA, m) {
  m.impl("cross_entropy_chunk", TORCH_FN(CrossEntropyChunkCuda));
  m.impl("cross_entropy_chunk_backward_",
         TORCH_FN(CrossEntropyChunkBackwardCuda));
}

}  // namespace lemo::kernels
