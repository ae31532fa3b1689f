#include "worker/engine/model/lora_linear.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/engine/model/token_tiles.h"

namespace lemo::engine {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Forward runs the frozen base and the adapter in the order PEFT does and adds
// the fp32 adapter output into the base result in place, so no [N, out] fp32
// temporary is kept. Backward recomputes x.float() instead of saving it.
struct LoraLinearFunction : torch::autograd::Function<LoraLinearFunction> {
  // The bias goes last as an optional: needs_input_grad() counts only tensor
  // arguments, so the indices of x (0), weight (1), A (2) and B (3) do not move
  // with it. tile_rows > 0 runs the adapter's fp32 steps over tiles of rows
  // (forward and backward), so no [rows, in] or [rows, out] fp32 tensor is
  // ever whole.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight,
                               const torch::Tensor& lora_a,
                               const torch::Tensor& lora_b, double scaling,
                               int64_t tile_rows,
                               const std::optional<torch::Tensor>& bias) {
    torch::Tensor result = torch::linear(x, weight, bias);
    const int64_t in = x.size(-1);
    const int64_t rows = x.numel() / std::max<int64_t>(in, 1);
    torch::Tensor hidden;
    if (tile_rows <= 0 || tile_rows >= rows) {
      hidden = torch::linear(x.to(lora_a.scalar_type()), lora_a);
      // PEFT: result + lora_B(h) * scaling, in fp32, rounded once into the
      // base dtype.
      result.add_(torch::linear(hidden, lora_b).mul_(scaling));
    } else {
      const torch::Tensor x2 = x.reshape({rows, in});
      torch::Tensor r2 = result.view({rows, weight.size(0)});
      hidden = torch::empty({rows, lora_a.size(0)},
                            x.options().dtype(lora_a.scalar_type()));
      ForEachTile(rows, tile_rows, [&](int64_t t0, int64_t len) {
        const torch::Tensor h = torch::linear(
            x2.narrow(0, t0, len).to(lora_a.scalar_type()), lora_a);
        hidden.narrow(0, t0, len).copy_(h);
        r2.narrow(0, t0, len).add_(torch::linear(h, lora_b).mul_(scaling));
      });
      std::vector<int64_t> hidden_shape = x.sizes().vec();
      hidden_shape.back() = lora_a.size(0);
      hidden = hidden.view(hidden_shape);
    }
    ctx->save_for_backward({x, weight, hidden, lora_a, lora_b});
    ctx->saved_data["scaling"] = scaling;
    ctx->saved_data["tile_rows"] = tile_rows;
    return result;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor& weight = saved[1];
    const torch::Tensor& hidden = saved[2];
    const torch::Tensor& lora_a = saved[3];
    const torch::Tensor& lora_b = saved[4];
    const double scaling = ctx->saved_data["scaling"].toDouble();
    const int64_t tile_rows = ctx->saved_data["tile_rows"].toInt();
    const int64_t in = x.size(-1);
    const int64_t out = weight.size(0);
    const int64_t rank = lora_a.size(0);
    const torch::Tensor grad = grads[0].reshape({-1, out});
    const int64_t rows = grad.size(0);
    const torch::Tensor x2 = x.reshape({-1, in});
    const torch::Tensor h2 = hidden.reshape({-1, rank});
    torch::Tensor grad_x, grad_a, grad_b;
    const bool tiled = tile_rows > 0 && tile_rows < rows;
    if (ctx->needs_input_grad(0) && tiled) grad_x = torch::empty_like(x2);
    // Untiled: one tile of all rows, the same operations as before tiling.
    ForEachTile(rows, tile_rows, [&](int64_t t0, int64_t len) {
      const torch::Tensor g = grad.narrow(0, t0, len);
      torch::Tensor grad_lora = g.to(lora_a.scalar_type()) * scaling;
      torch::Tensor grad_hidden = grad_lora.mm(lora_b);
      if (ctx->needs_input_grad(3)) {
        torch::Tensor part = grad_lora.t().mm(h2.narrow(0, t0, len));
        grad_b = grad_b.defined() ? grad_b.add_(part) : part;
      }
      if (ctx->needs_input_grad(2)) {
        torch::Tensor part =
            grad_hidden.t().mm(x2.narrow(0, t0, len).to(lora_a.scalar_type()));
        grad_a = grad_a.defined() ? grad_a.add_(part) : part;
      }
      if (ctx->needs_input_grad(0)) {
        // Two gradients meet at x, as in autograd's graph for PEFT: the base
        // path in the base dtype and the adapter path cast down from fp32.
        torch::Tensor gx =
            g.mm(weight).add_(grad_hidden.mm(lora_a).to(x.scalar_type()));
        if (tiled) {
          grad_x.narrow(0, t0, len).copy_(gx);
        } else {
          grad_x = std::move(gx);
        }
      }
    });
    if (grad_x.defined()) grad_x = grad_x.view(x.sizes());
    return {grad_x,          torch::Tensor(), grad_a,         grad_b,
            torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor LoraLinearForward(const torch::Tensor& x,
                                const torch::Tensor& weight,
                                const torch::Tensor& bias,
                                const torch::Tensor& lora_a,
                                const torch::Tensor& lora_b, double scaling,
                                int64_t tile_rows) {
  std::optional<torch::Tensor> b;
  if (bias.defined()) b = bias;
  return LoraLinearFunction::apply(x, weight, lora_a, lora_b, scaling,
                                   tile_rows, b);
}

absl::StatusOr<LoraLinear> LoraLinear::Create(
    absl::string_view name, torch::Tensor weight, torch::Tensor bias,
    const LoraSpec& spec, at::Generator& init, torch::Device device) {
  if (!weight.defined() || weight.dim() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": weight must be 2-D [out, in]"));
  }
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0))) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": bias must be [",
                                                   weight.size(0), "], got ",
                                                   c10::str(bias.sizes())));
  }
  if (spec.rank < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": LoRA rank must be >= 0, got ", spec.rank));
  }
  if (!(spec.dropout >= 0 && spec.dropout < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": LoRA dropout must be in [0, 1), got ", spec.dropout));
  }
  LoraLinear layer;
  layer.weight_ = weight.set_requires_grad(false);
  if (bias.defined()) layer.bias_ = bias.set_requires_grad(false);
  if (spec.rank == 0) return layer;
  torch::NoGradGuard no_grad;
  const int64_t out = weight.size(0);
  const int64_t in = weight.size(1);
  // kaiming_uniform_(a = sqrt(5)) on [r, in]: gain sqrt(2 / (1 + 5)), bound
  // gain * sqrt(3 / in) = 1 / sqrt(in), exactly as nn.init computes it.
  const double gain = std::sqrt(2.0 / (1.0 + 5.0));
  const double bound =
      std::sqrt(3.0) * (gain / std::sqrt(static_cast<double>(in)));
  torch::Tensor a = torch::empty({spec.rank, in}, torch::kFloat);
  a.uniform_(-bound, bound, init);
  layer.lora_a_ = a.to(device).set_requires_grad(true);
  layer.lora_b_ =
      torch::zeros({out, spec.rank},
                   torch::TensorOptions().dtype(torch::kFloat).device(device))
          .set_requires_grad(true);
  layer.scaling_ = spec.alpha / static_cast<double>(spec.rank);
  layer.dropout_ = spec.dropout;
  layer.tile_rows_ = spec.tile_rows;
  return layer;
}

torch::Tensor LoraLinear::Forward(const torch::Tensor& x, bool training) const {
  if (!has_lora()) return torch::linear(x, weight_, bias_);
  if (dropout_ > 0 && training) {
    // PEFT's op-by-op path: dropout needs the dropped fp32 input saved anyway.
    torch::Tensor result = torch::linear(x, weight_, bias_);
    torch::Tensor dropped =
        torch::dropout(x.to(lora_a_.scalar_type()), dropout_, true);
    torch::Tensor lora =
        torch::linear(torch::linear(dropped, lora_a_), lora_b_) * scaling_;
    return (result + lora).to(result.scalar_type());
  }
  return LoraLinearForward(x, weight_, bias_, lora_a_, lora_b_, scaling_,
                           tile_rows_);
}

// The slices run without dropout: a mask per slice would not be PEFT's one
// mask per projection (DecoderLayer refuses head groups with dropout).
torch::Tensor LoraLinear::ForwardOutputSlice(const torch::Tensor& x,
                                             int64_t start,
                                             int64_t length) const {
  const torch::Tensor w = weight_.narrow(0, start, length);
  const torch::Tensor b =
      bias_.defined() ? bias_.narrow(0, start, length) : torch::Tensor();
  if (!has_lora()) return torch::linear(x, w, b);
  return LoraLinearForward(x, w, b, lora_a_, lora_b_.narrow(0, start, length),
                           scaling_, tile_rows_);
}

torch::Tensor LoraLinear::ForwardInputSlice(const torch::Tensor& x,
                                            int64_t start, int64_t length,
                                            bool with_bias) const {
  const torch::Tensor w = weight_.narrow(1, start, length);
  const torch::Tensor b = with_bias ? bias_ : torch::Tensor();
  if (!has_lora()) return torch::linear(x, w, b);
  return LoraLinearForward(x, w, b, lora_a_.narrow(1, start, length), lora_b_,
                           scaling_, tile_rows_);
}

}  // namespace lemo::engine
