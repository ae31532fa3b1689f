// RMSNorm and the SwiGLU product as single autograd nodes that save less than
// the same math written op by op (what HF's modules record), with the same
// forward values and the same backward formulas:
//   RmsNorm: saves x in its own dtype + the fp32 rstd [..., 1]; HF keeps an
//   fp32 copy of x. SwiGlu: saves gate and up; HF also keeps silu(gate).
// Both treat their weights as frozen (no weight gradient).
//
//   torch::Tensor h = RmsNorm(x, norm_weight, 1e-5);
//   torch::Tensor act = SwiGlu(gate_proj(h), up_proj(h));  // silu(gate) * up
#ifndef LEMO_WORKER_ENGINE_MODEL_LEAN_OPS_H_
#define LEMO_WORKER_ENGINE_MODEL_LEAN_OPS_H_

#include <torch/torch.h>

namespace lemo::engine {

// HF LlamaRMSNorm: weight * (x.float() * rsqrt(mean(x.float()^2) +
// eps)).to(x.dtype). With tile_tokens > 0, forward and backward run over
// tiles of that many tokens (dim -2), so the fp32 copies of x (twice its size
// in bf16) are tile-sized; row for row the same operations, so the same bits.
torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& weight,
                      double eps, int64_t tile_tokens = 0);

// silu(gate) * up.
torch::Tensor SwiGlu(const torch::Tensor& gate, const torch::Tensor& up);

// RmsNorm's pieces without autograd, for fused nodes that recompute the norm
// in backward (worker/engine/lemo/sparse_mlp.h). rstd = rsqrt(mean(x.float()^2)
// + eps), fp32 [..., 1].
torch::Tensor RmsNormRstd(const torch::Tensor& x, double eps);
// weight * (x.float() * rstd).to(x.dtype): RmsNorm's output from its rstd.
torch::Tensor RmsNormApply(const torch::Tensor& x, const torch::Tensor& weight,
                           const torch::Tensor& rstd);
// The gradient of RmsNorm's input for output gradient `grad`.
torch::Tensor RmsNormBackward(const torch::Tensor& grad, const torch::Tensor& x,
                              const torch::Tensor& weight,
                              const torch::Tensor& rstd);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_MODEL_LEAN_OPS_H_
