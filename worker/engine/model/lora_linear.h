// A frozen linear layer with an optional LoRA adapter, numerically PEFT's
// lora.Linear: y = base(x) + lora_B(lora_A(dropout(x.to(fp32)))) * (alpha / r),
// cast back to x's dtype.
//
//   at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
//   LEMO_ASSIGN_OR_RETURN(LoraLinear q, LoraLinear::Create(w, /*bias=*/{},
//   spec, gen, device)); torch::Tensor y = q.Forward(x, /*training=*/true);
//
// The adapter weights are fp32 whatever the base dtype (PEFT's
// autocast_adapter_dtype). Without dropout the whole layer is one autograd node
// that saves only x (in the base dtype, shared with any sibling projection
// reading the same x) and the [N, r] LoRA hidden, where PEFT keeps an fp32 copy
// of x per projection.
#ifndef LEMO_WORKER_ENGINE_MODEL_LORA_LINEAR_H_
#define LEMO_WORKER_ENGINE_MODEL_LORA_LINEAR_H_

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lemo::engine {

struct LoraSpec {
  // Adapter rank r; 0 means a plain frozen linear layer with no adapter.
  int64_t rank = 0;
  // LoRA alpha; the adapter output is scaled by alpha / rank.
  double alpha = 16;
  // Dropout probability on the adapter input, in [0, 1).
  double dropout = 0;
  // Rows per tile of the adapter's fp32 steps (x.float(), B's output, their
  // gradients), forward and backward; 0 = untiled. Row-wise the same math,
  // but the adapter's weight gradients are summed tile by tile.
  int64_t tile_rows = 0;
};

class LoraLinear {
 public:
  LoraLinear() = default;

  // `weight` [out, in] and optional `bias` [out] are taken as they are
  // (frozen). With spec.rank > 0, A [r, in] is kaiming-uniform(a = sqrt(5))
  // drawn from `init` on the CPU (so the values do not depend on the device)
  // and B [out, r] is zero, as PEFT initialises them. `name` prefixes error
  // messages.
  static absl::StatusOr<LoraLinear> Create(
      absl::string_view name, torch::Tensor weight, torch::Tensor bias,
      const LoraSpec& spec, at::Generator& init, torch::Device device);

  // x [..., in] in the base dtype -> [..., out] in the base dtype. Dropout is
  // applied only when `training`.
  torch::Tensor Forward(const torch::Tensor& x, bool training) const;
  // The part of Forward for output features [start, start + length): x
  // [..., in] -> [..., length], with those rows of the weight, the bias and
  // B (A whole).
  torch::Tensor ForwardOutputSlice(const torch::Tensor& x, int64_t start,
                                   int64_t length) const;
  // The part of Forward that input features [start, start + length)
  // contribute: x [..., length] -> [..., out], with those columns of the
  // weight and A (B whole), and the bias only when with_bias. Summed over a
  // partition of the inputs this is Forward up to rounding (bias once).
  torch::Tensor ForwardInputSlice(const torch::Tensor& x, int64_t start,
                                  int64_t length, bool with_bias) const;

  bool has_lora() const { return lora_a_.defined(); }
  const torch::Tensor& weight() const { return weight_; }
  const torch::Tensor& bias() const { return bias_; }
  // [r, in] fp32, requires grad. Undefined without an adapter.
  const torch::Tensor& lora_a() const { return lora_a_; }
  // [out, r] fp32, requires grad. Undefined without an adapter.
  const torch::Tensor& lora_b() const { return lora_b_; }
  double scaling() const { return scaling_; }
  double dropout() const { return dropout_; }

 private:
  torch::Tensor weight_;
  torch::Tensor bias_;
  torch::Tensor lora_a_;
  torch::Tensor lora_b_;
  double scaling_ = 0;
  double dropout_ = 0;
  int64_t tile_rows_ = 0;
};

// The dropout-free LoRA linear as one autograd node (exposed for tests and for
// callers that hold their own weights): returns base(x) + ((x.float() @ A^T) @
// B^T) * scaling in x's dtype.
torch::Tensor LoraLinearForward(const torch::Tensor& x,
                                const torch::Tensor& weight,
                                const torch::Tensor& bias,
                                const torch::Tensor& lora_a,
                                const torch::Tensor& lora_b, double scaling,
                                int64_t tile_rows = 0);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_MODEL_LORA_LINEAR_H_
