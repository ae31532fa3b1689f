#include "worker/engine/model/lean_ops.h"

#include <vector>

#include "worker/engine/model/token_tiles.h"

namespace lemo::engine {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct RmsNormFunction : torch::autograd::Function<RmsNormFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, double eps,
                               int64_t tile_tokens) {
    ctx->saved_data["tile_tokens"] = tile_tokens;
    const int64_t n = x.dim() >= 2 ? x.size(-2) : 0;
    if (tile_tokens <= 0 || tile_tokens >= n) {
      torch::Tensor rstd = RmsNormRstd(x, eps);
      torch::Tensor out = RmsNormApply(x, weight, rstd);
      ctx->save_for_backward({x, weight, rstd});
      return out;
    }
    // Row by row the same operations, so the same bits; the fp32 copies of x
    // are only tile-sized.
    std::vector<int64_t> rstd_shape = x.sizes().vec();
    rstd_shape.back() = 1;
    torch::Tensor rstd =
        torch::empty(rstd_shape, x.options().dtype(torch::kFloat));
    torch::Tensor out = torch::empty_like(x);
    ForEachTile(n, tile_tokens, [&](int64_t t0, int64_t len) {
      const torch::Tensor xs = x.narrow(-2, t0, len);
      const torch::Tensor r = RmsNormRstd(xs, eps);
      rstd.narrow(-2, t0, len).copy_(r);
      out.narrow(-2, t0, len).copy_(RmsNormApply(xs, weight, r));
    });
    ctx->save_for_backward({x, weight, rstd});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor& weight = saved[1];
    const torch::Tensor& rstd = saved[2];
    const int64_t tile_tokens = ctx->saved_data["tile_tokens"].toInt();
    torch::Tensor grad_x;
    if (ctx->needs_input_grad(0)) {
      const int64_t n = x.dim() >= 2 ? x.size(-2) : 0;
      if (tile_tokens <= 0 || tile_tokens >= n) {
        grad_x = RmsNormBackward(grads[0], x, weight, rstd);
      } else {
        grad_x = torch::empty_like(x);
        ForEachTile(n, tile_tokens, [&](int64_t t0, int64_t len) {
          grad_x.narrow(-2, t0, len)
              .copy_(RmsNormBackward(grads[0].narrow(-2, t0, len),
                                     x.narrow(-2, t0, len), weight,
                                     rstd.narrow(-2, t0, len)));
        });
      }
    }
    return {grad_x, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

struct SwiGluFunction : torch::autograd::Function<SwiGluFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& gate,
                               const torch::Tensor& up) {
    ctx->save_for_backward({gate, up});
    return torch::silu(gate) * up;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor& gate = saved[0];
    const torch::Tensor& up = saved[1];
    const torch::Tensor& grad = grads[0];
    torch::Tensor grad_gate, grad_up;
    if (ctx->needs_input_grad(1)) grad_up = grad * torch::silu(gate);
    if (ctx->needs_input_grad(0)) {
      grad_gate = torch::silu_backward(grad * up, gate);
    }
    return {grad_gate, grad_up};
  }
};

}  // namespace

torch::Tensor RmsNormRstd(const torch::Tensor& x, double eps) {
  return torch::rsqrt(x.to(torch::kFloat).pow(2).mean(-1, true) + eps);
}

torch::Tensor RmsNormApply(const torch::Tensor& x, const torch::Tensor& weight,
                           const torch::Tensor& rstd) {
  return weight * (x.to(torch::kFloat) * rstd).to(x.scalar_type());
}

// Autograd's chain through HF's ops, step by step: mul by weight, cast, x32 *
// rstd, rsqrt, mean, pow(2).
torch::Tensor RmsNormBackward(const torch::Tensor& grad, const torch::Tensor& x,
                              const torch::Tensor& weight,
                              const torch::Tensor& rstd) {
  torch::Tensor x32 = x.to(torch::kFloat);
  torch::Tensor g = (grad * weight).to(torch::kFloat);
  torch::Tensor grad_rstd = (g * x32).sum(-1, true);
  // d rsqrt(v) / dv = -0.5 * rstd^3; d mean / d(x^2) = 1 / D; d x^2 / dx = 2x.
  torch::Tensor grad_var = grad_rstd * (-0.5) * rstd.pow(3);
  torch::Tensor grad_sq = grad_var / static_cast<double>(x.size(-1));
  return (g * rstd + grad_sq * 2 * x32).to(x.scalar_type());
}

torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& weight,
                      double eps, int64_t tile_tokens) {
  return RmsNormFunction::apply(x, weight, eps, tile_tokens);
}

torch::Tensor SwiGlu(const torch::Tensor& gate, const torch::Tensor& up) {
  return SwiGluFunction::apply(gate, up);
}

}  // namespace lemo::engine
