#include "worker/engine/train/loss.h"

#include <algorithm>

#include "kernels/lemo_ops.h"

namespace lemo::engine {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
namespace F = torch::nn::functional;

struct SegmentedLossFunction
    : torch::autograd::Function<SegmentedLossFunction> {
  static torch::Tensor forward(AutogradContext* ctx,
                               const torch::Tensor& hidden,
                               const torch::Tensor& lm_head,
                               const torch::Tensor& shifted, int64_t segment) {
    const int64_t dim = hidden.size(-1);
    torch::Tensor h = hidden.reshape({-1, dim});
    const int64_t tokens = h.size(0);
    // Summed per chunk, divided once: HF's "mean" is sum / count too.
    torch::Tensor total =
        torch::zeros({}, hidden.options().dtype(torch::kFloat));
    for (int64_t start = 0; start < tokens; start += segment) {
      const int64_t len = std::min(segment, tokens - start);
      // lemo::cross_entropy_chunk: on the CPU exactly the fp32 upcast +
      // F::cross_entropy(sum) it replaced; on CUDA one fused pass over the
      // 16-bit logits, without their fp32 copy.
      total += kernels::CrossEntropyChunk(
          torch::linear(h.narrow(0, start, len), lm_head),
          shifted.narrow(0, start, len), kIgnoreIndex);
    }
    torch::Tensor count = (shifted != kIgnoreIndex).sum().to(torch::kFloat);
    ctx->save_for_backward({hidden, lm_head, shifted, count});
    ctx->saved_data["segment"] = segment;
    return total / count;
  }

  // d loss / d logits = (softmax(logits) - onehot(label)) * grad / count per
  // counted row, 0 on ignored rows; then back through the LM head in the base
  // dtype, as autograd would.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor& hidden = saved[0];
    const torch::Tensor& lm_head = saved[1];
    const torch::Tensor& shifted = saved[2];
    const torch::Tensor& count = saved[3];
    const int64_t segment = ctx->saved_data["segment"].toInt();
    torch::Tensor grad_hidden;
    if (ctx->needs_input_grad(0)) {
      const int64_t dim = hidden.size(-1);
      torch::Tensor h = hidden.reshape({-1, dim});
      const int64_t tokens = h.size(0);
      torch::Tensor scale = grads[0].to(torch::kFloat) / count;
      grad_hidden = torch::empty_like(h);
      for (int64_t start = 0; start < tokens; start += segment) {
        const int64_t len = std::min(segment, tokens - start);
        // The chunk's logits become their own gradient in place (the CPU
        // reference is the fp32 softmax - onehot it replaced, rounded to the
        // logits' dtype = hidden's; on CUDA a fused kernel).
        torch::Tensor logits = torch::linear(h.narrow(0, start, len), lm_head);
        kernels::CrossEntropyChunkBackward_(
            logits, shifted.narrow(0, start, len), scale, kIgnoreIndex);
        grad_hidden.narrow(0, start, len).copy_(logits.mm(lm_head));
      }
      grad_hidden = grad_hidden.view(hidden.sizes());
    }
    return {grad_hidden, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor ShiftLabels(const torch::Tensor& labels) {
  TORCH_CHECK_VALUE(labels.dim() == 2, "loss: labels must be [B, N], got ",
                    labels.sizes());
  torch::Tensor padded =
      F::pad(labels, F::PadFuncOptions({0, 1}).value(kIgnoreIndex));
  return padded.narrow(1, 1, labels.size(1)).contiguous().view(-1);
}

torch::Tensor CausalLmLoss(const torch::Tensor& hidden,
                           const torch::Tensor& lm_head,
                           const torch::Tensor& labels,
                           int64_t segment_tokens) {
  TORCH_CHECK_VALUE(hidden.dim() == 3, "loss: hidden must be [B, N, D], got ",
                    hidden.sizes());
  TORCH_CHECK_VALUE(labels.sizes() == hidden.sizes().slice(0, 2),
                    "loss: labels ", labels.sizes(), " do not match hidden ",
                    hidden.sizes());
  torch::Tensor shifted = ShiftLabels(labels.to(hidden.device(), torch::kLong));
  if (segment_tokens <= 0) {
    torch::Tensor logits = torch::linear(hidden, lm_head).to(torch::kFloat);
    return F::cross_entropy(
        logits.view({-1, lm_head.size(0)}), shifted,
        F::CrossEntropyFuncOptions().ignore_index(kIgnoreIndex));
  }
  return SegmentedLossFunction::apply(hidden, lm_head, shifted, segment_tokens);
}

}  // namespace lemo::engine
