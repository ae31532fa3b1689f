#include "kernels/cross_entropy_chunk/cross_entropy_chunk.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>
#include <torch/nn/functional/loss.h>

#include "kernels/common/op_handle.h"

namespace lemo::kernels {

void CheckCrossEntropyChunkInputs(const at::Tensor& logits,
                                  const at::Tensor& labels) {
  TORCH_CHECK_VALUE(
      logits.dim() == 2 && at::isFloatingType(logits.scalar_type()),
      "cross_entropy_chunk: logits must be a floating [T, V] "
      "matrix, got ",
      logits.scalar_type(), " ", logits.sizes());
  TORCH_CHECK_VALUE(labels.dim() == 1 && labels.scalar_type() == at::kLong &&
                        labels.size(0) == logits.size(0),
                    "cross_entropy_chunk: labels must be int64 [",
                    logits.size(0), "], got ", labels.scalar_type(), " ",
                    labels.sizes());
  TORCH_CHECK_VALUE(labels.device() == logits.device(),
                    "cross_entropy_chunk: labels on ", labels.device(),
                    " but logits on ", logits.device());
}

at::Tensor CrossEntropyChunkReference(const at::Tensor& logits,
                                      const at::Tensor& labels,
                                      int64_t ignore_index) {
  CheckCrossEntropyChunkInputs(logits, labels);
  namespace F = torch::nn::functional;
  return F::cross_entropy(logits.to(at::kFloat), labels,
                          F::CrossEntropyFuncOptions()
                              .ignore_index(ignore_index)
                              .reduction(torch::kSum));
}

at::Tensor& CrossEntropyChunkBackwardReference(at::Tensor& logits,
                                               const at::Tensor& labels,
                                               const at::Tensor& grad_scale,
                                               int64_t ignore_index) {
  CheckCrossEntropyChunkInputs(logits, labels);
  at::Tensor probs = at::softmax(logits.to(at::kFloat), -1);
  const at::Tensor valid = labels != ignore_index;
  const at::Tensor target = labels.clamp_min(0).unsqueeze(1);
  probs.scatter_add_(1, target, valid.to(at::kFloat).neg().unsqueeze(1));
  probs.mul_(valid.unsqueeze(1).to(at::kFloat) * grad_scale.to(at::kFloat));
  logits.copy_(probs);
  return logits;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class CrossEntropyChunkFunction
    : public torch::autograd::Function<CrossEntropyChunkFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits,
                            const at::Tensor& labels, int64_t ignore_index) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({logits, labels});
    ctx->saved_data["ignore_index"] = ignore_index;
    return CrossEntropyChunk(logits, labels, ignore_index);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    at::Tensor grad = saved[0].clone(at::MemoryFormat::Contiguous);
    CrossEntropyChunkBackward_(grad, saved[1], grads[0],
                               ctx->saved_data["ignore_index"].toInt());
    return {grad, at::Tensor(), at::Tensor()};
  }
};

at::Tensor CrossEntropyChunkAutograd(const at::Tensor& logits,
                                     const at::Tensor& labels,
                                     int64_t ignore_index) {
  return CrossEntropyChunkFunction::apply(logits, labels, ignore_index);
}

at::Tensor& CrossEntropyChunkBackwardCpu(at::Tensor& logits,
                                         const at::Tensor& labels,
                                         const at::Tensor& grad_scale,
                                         int64_t ignore_index) {
  return CrossEntropyChunkBackwardReference(logits, labels, grad_scale,
                                            ignore_index);
}

}  // namespace

at::Tensor CrossEntropyChunk(const at::Tensor& logits, const at::Tensor& labels,
                             int64_t ignore_index) {
  static const auto op =
      OpHandle<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>(
          "lemo::cross_entropy_chunk");
  return op.call(logits, labels, ignore_index);
}

at::Tensor& CrossEntropyChunkBackward_(at::Tensor& logits,
                                       const at::Tensor& labels,
                                       const at::Tensor& grad_scale,
                                       int64_t ignore_index) {
  static const auto op =
      OpHandle<at::Tensor&(at::Tensor&, const at::Tensor&, const at::Tensor&,
                           int64_t)>("lemo::cross_entropy_chunk_backward_");
  return op.call(logits, labels, grad_scale, ignore_index);
}

TORCH_LIBRARY_FRAGMENT(lemo, m) {
  m.def(
      "cross_entropy_chunk(Tensor logits, Tensor labels, int ignore_index=-100)"
      " -> Tensor");
  m.def(
      "cross_entropy_chunk_backward_(Tensor(a!) logits, Tensor labels, "
      "Tensor grad_scale, int ignore_index=-100) -> Tensor(a!)");
}

TORCH_LIBRARY_IMPL(lemo, CPU, m) {
  m.impl("cross_entropy_chunk", TORCH_FN(CrossEntropyChunkReference));
  m.impl("cross_entropy_chunk_backward_",
         TORCH_FN(CrossEntropyChunkBackwardCpu));
}

TORCH_LIBRARY_IMPL(lemo, Autograd, m) {
  m.impl("cross_entropy_chunk", TORCH_FN(CrossEntropyChunkAutograd));
}

}  // namespace lemo::kernels
