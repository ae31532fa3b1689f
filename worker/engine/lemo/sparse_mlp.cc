#include "worker/engine/lemo/sparse_mlp.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/engine/model/lean_ops.h"
#include "worker/engine/model/recompute_context.h"

namespace lemo::engine {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The frozen side of the node: passed by value to apply(), so autograd builds
// no edges to it.
struct MlpParams {
  // Post-attention norm weight; defined when the node normalises its input
  // itself (recompute_norm).
  torch::Tensor norm_weight;
  double eps = 0;
  torch::Tensor w_gate, b_gate, w_up, b_up, w_down, b_down;
  double s_gate = 0, s_up = 0, s_down = 0;
  double prune_ratio = 0;
  // Save only the input and recompute gate/up in backward.
  bool recompute_gate_up = false;
};

// LoraLinearFunction's forward op for op (same values): base + adapter added in
// fp32. `hidden` receives the [.., r] adapter hidden when there is an adapter.
torch::Tensor Project(const torch::Tensor& x, const torch::Tensor& w,
                      const torch::Tensor& b, const torch::Tensor& a,
                      const torch::Tensor& lb, double scaling,
                      torch::Tensor* hidden) {
  torch::Tensor result = torch::linear(x, w, b);
  if (a.defined()) {
    *hidden = torch::linear(x.to(a.scalar_type()), a);
    result.add_(torch::linear(*hidden, lb).mul_(scaling));
  }
  return result;
}

// The saved_data entry `key`, or an undefined tensor when it is absent.
torch::Tensor SavedOrUndefined(AutogradContext* ctx, const std::string& key) {
  const auto it = ctx->saved_data.find(key);
  return it != ctx->saved_data.end() ? it->second.toTensor() : torch::Tensor();
}

// Rows (dim 0) or columns (dim 1) of `t` at `idx`; all of `t` when idx is
// undefined (every channel kept).
torch::Tensor Channels(const torch::Tensor& t, int64_t dim,
                       const torch::Tensor& idx) {
  return idx.defined() ? t.index_select(dim, idx) : t;
}

// acc[idx along dim] += part (acc lazily zero-initialised like `like`).
void AddChannels(torch::Tensor* acc, const torch::Tensor& like, int64_t dim,
                 const torch::Tensor& idx, const torch::Tensor& part) {
  if (!acc->defined()) *acc = torch::zeros_like(like);
  if (idx.defined()) {
    acc->index_add_(dim, idx, part);
  } else {
    acc->add_(part);
  }
}

struct MlpFunction : torch::autograd::Function<MlpFunction> {
  // x is the norm output, or the residual h when p.norm_weight is defined.
  // The adapters (A/B of gate, up, down) are optionals: apply() refuses
  // undefined tensors, and an absent optional is no input at all (only x's
  // needs_input_grad index, 0, is used).
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const std::optional<torch::Tensor>& a_gate_in,
                               const std::optional<torch::Tensor>& b_gate_in,
                               const std::optional<torch::Tensor>& a_up_in,
                               const std::optional<torch::Tensor>& b_up_in,
                               const std::optional<torch::Tensor>& a_down_in,
                               const std::optional<torch::Tensor>& b_down_in,
                               const MlpParams& p) {
    const torch::Tensor a_gate = a_gate_in.value_or(torch::Tensor());
    const torch::Tensor b_gate = b_gate_in.value_or(torch::Tensor());
    const torch::Tensor a_up = a_up_in.value_or(torch::Tensor());
    const torch::Tensor b_up = b_up_in.value_or(torch::Tensor());
    const torch::Tensor a_down = a_down_in.value_or(torch::Tensor());
    const torch::Tensor b_down = b_down_in.value_or(torch::Tensor());
    const bool norm = p.norm_weight.defined();
    torch::Tensor rstd, xn = x;
    if (norm) {
      rstd = RmsNormRstd(x, p.eps);
      xn = RmsNormApply(x, p.norm_weight, rstd);
    }
    torch::Tensor h_gate, h_up, h_down;
    torch::Tensor gate =
        Project(xn, p.w_gate, p.b_gate, a_gate, b_gate, p.s_gate, &h_gate);
    torch::Tensor up = Project(xn, p.w_up, p.b_up, a_up, b_up, p.s_up, &h_up);
    torch::Tensor out;
    if (InCheckpointRecompute()) {
      // The node ends its decoder layer, and a checkpoint's re-run reads only
      // the graph of its output, never its values: down_proj's GEMM (a third
      // of the MLP) is skipped. Its adapter hidden is still needed.
      const torch::Tensor act = torch::silu(gate) * up;
      if (a_down.defined())
        h_down = torch::linear(act.to(a_down.scalar_type()), a_down);
      std::vector<int64_t> shape = act.sizes().vec();
      shape.back() = p.w_down.size(0);
      out = torch::zeros({}, act.options()).expand(shape);
    } else {
      out = Project(torch::silu(gate) * up, p.w_down, p.b_down, a_down, b_down,
                    p.s_down, &h_down);
    }
    torch::Tensor idx;
    if (KeptMlpChannels(gate.size(-1), p.prune_ratio) < gate.size(-1)) {
      idx = TopMlpChannels(gate, up, p.prune_ratio);
      const torch::Tensor rows =
          idx.unsqueeze(1).expand({idx.size(0), gate.size(1), idx.size(1)});
      gate = gate.gather(-1, rows);
      up = up.gather(-1, rows);
    }
    // The input is needed only by the norm's backward (then it is h, which the
    // op-by-op norm saves too), by gate/up's lora_A gradients, or to recompute
    // gate/up.
    const bool lora_in = a_gate.defined() || a_up.defined();
    const bool keep_x = norm || lora_in || p.recompute_gate_up;
    if (p.recompute_gate_up) {
      gate = torch::Tensor();
      up = torch::Tensor();
      if (p.b_gate.defined()) ctx->saved_data["bias_gate"] = p.b_gate;
      if (p.b_up.defined()) ctx->saved_data["bias_up"] = p.b_up;
    }
    ctx->save_for_backward({keep_x ? x : torch::Tensor(), rstd, gate, up, idx,
                            h_gate, h_up, h_down, a_gate, b_gate, a_up, b_up,
                            a_down, b_down});
    if (norm) ctx->saved_data["norm_weight"] = p.norm_weight;
    ctx->saved_data["w_gate"] = p.w_gate;
    ctx->saved_data["w_up"] = p.w_up;
    ctx->saved_data["w_down"] = p.w_down;
    ctx->saved_data["s_gate"] = p.s_gate;
    ctx->saved_data["s_up"] = p.s_up;
    ctx->saved_data["s_down"] = p.s_down;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const torch::Tensor &x = s[0], &rstd = s[1], &gate = s[2], &up = s[3],
                        &idx = s[4], &h_gate = s[5], &h_up = s[6],
                        &h_down = s[7], &a_gate = s[8], &b_gate = s[9],
                        &a_up = s[10], &b_up = s[11], &a_down = s[12],
                        &b_down = s[13];
    const torch::Tensor norm_weight = SavedOrUndefined(ctx, "norm_weight");
    const torch::Tensor w_gate = ctx->saved_data["w_gate"].toTensor();
    const torch::Tensor w_up = ctx->saved_data["w_up"].toTensor();
    const torch::Tensor w_down = ctx->saved_data["w_down"].toTensor();
    const double s_gate = ctx->saved_data["s_gate"].toDouble();
    const double s_up = ctx->saved_data["s_up"].toDouble();
    const double s_down = ctx->saved_data["s_down"].toDouble();
    const bool norm = norm_weight.defined();
    const bool recompute = !gate.defined();
    // The norm output, recomputed when the node saved h instead.
    torch::Tensor xn = x;
    if (norm && (recompute || a_gate.defined() || a_up.defined())) {
      xn = RmsNormApply(x, norm_weight, rstd);
    }
    const torch::Tensor& grad_out = grads[0];
    const torch::ScalarType dtype = grad_out.scalar_type();
    const int64_t batch = grad_out.size(0);
    std::vector<torch::Tensor> grad_xn_rows;
    torch::Tensor g_ag, g_bg, g_au, g_bu, g_ad, g_bd;
    // One sample at a time: each keeps its own channels, so each sees its own
    // column slice of the weights.
    for (int64_t bi = 0; bi < batch; ++bi) {
      const torch::Tensor keep = idx.defined() ? idx[bi] : torch::Tensor();
      const torch::Tensor g = grad_out[bi];  // [N, D]
      torch::Tensor gk, uk;                  // [N, k]
      if (recompute) {
        // The forward's Project calls on this sample's rows: the same values.
        torch::Tensor unused;
        gk =
            Channels(Project(xn[bi], w_gate, SavedOrUndefined(ctx, "bias_gate"),
                             a_gate, b_gate, s_gate, &unused),
                     1, keep);
        uk = Channels(Project(xn[bi], w_up, SavedOrUndefined(ctx, "bias_up"),
                              a_up, b_up, s_up, &unused),
                      1, keep);
      } else {
        gk = gate[bi];
        uk = up[bi];
      }
      torch::Tensor grad_act = g.matmul(Channels(w_down, 1, keep));
      if (a_down.defined()) {
        torch::Tensor gs = g.to(torch::kFloat) * s_down;
        torch::Tensor gh = gs.matmul(b_down);  // [N, r]
        AddChannels(&g_bd, b_down, 0, torch::Tensor(),
                    gs.t().matmul(h_down[bi]));
        grad_act.add_(gh.matmul(Channels(a_down, 1, keep)).to(dtype));
        const torch::Tensor act = (torch::silu(gk) * uk).to(torch::kFloat);
        AddChannels(&g_ad, a_down, 1, keep, gh.t().matmul(act));
      }
      // SwiGluFunction's backward.
      torch::Tensor grad_up = grad_act * torch::silu(gk);
      torch::Tensor grad_gate = torch::silu_backward(grad_act * uk, gk);
      torch::Tensor grad_xn =
          grad_gate.matmul(Channels(w_gate, 0, keep))
              .add_(grad_up.matmul(Channels(w_up, 0, keep)));
      // LoraLinearFunction's backward on the kept rows of lora_B.
      const auto lora = [&](const torch::Tensor& grad, const torch::Tensor& a,
                            const torch::Tensor& b, const torch::Tensor& hid,
                            double scaling, torch::Tensor* ga,
                            torch::Tensor* gb) {
        torch::Tensor gl = grad.to(torch::kFloat) * scaling;  // [N, k]
        torch::Tensor gh = gl.matmul(Channels(b, 0, keep));   // [N, r]
        AddChannels(gb, b, 0, keep, gl.t().matmul(hid[bi]));
        AddChannels(ga, a, 0, torch::Tensor(),
                    gh.t().matmul(xn[bi].to(torch::kFloat)));
        grad_xn.add_(gh.matmul(a).to(dtype));
      };
      if (a_gate.defined()) {
        lora(grad_gate, a_gate, b_gate, h_gate, s_gate, &g_ag, &g_bg);
      }
      if (a_up.defined()) lora(grad_up, a_up, b_up, h_up, s_up, &g_au, &g_bu);
      grad_xn_rows.push_back(grad_xn);
    }
    torch::Tensor grad_x;
    if (ctx->needs_input_grad(0)) {
      grad_x = torch::stack(grad_xn_rows);
      if (norm) grad_x = RmsNormBackward(grad_x, x, norm_weight, rstd);
    }
    return {grad_x, g_ag, g_bg, g_au, g_bu, g_ad, g_bd, torch::Tensor()};
  }
};

}  // namespace

MlpSavers MlpSaversFrom(const LemoOptions& options) {
  return MlpSavers{options.mlp_prune_ratio,
                   options.recompute_norm || options.recompute_mlp,
                   options.recompute_mlp};
}

bool MlpSaversActive(const MlpSavers& savers) {
  return savers.prune_ratio > 0 || savers.recompute_norm ||
         savers.recompute_gate_up;
}

absl::Status ValidateMlpSavers(const LemoOptions& options,
                               const LoraOptions& lora) {
  if (!(options.mlp_prune_ratio >= 0 && options.mlp_prune_ratio < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lemo mlp_prune_ratio must be in [0, 1) (0 = off), got ",
                     options.mlp_prune_ratio));
  }
  if (!MlpSaversActive(MlpSaversFrom(options)) || lora.dropout == 0) {
    return absl::OkStatus();
  }
  for (const std::string& m : lora.target_modules) {
    if (m == "gate_proj" || m == "up_proj" || m == "down_proj") {
      return absl::InvalidArgumentError(absl::StrCat(
          "lemo mlp_prune_ratio / recompute_norm / recompute_mlp do not "
          "support LoRA dropout on ",
          m, " (dropout ", lora.dropout,
          "): set the dropout to 0 or drop the MLP projections from the "
          "targets"));
    }
  }
  return absl::OkStatus();
}

int64_t KeptMlpChannels(int64_t intermediate, double prune_ratio) {
  // The epsilon keeps 0.2 x 40 = 7.999...98 + rounding from becoming 9.
  const double kept = std::ceil((1.0 - prune_ratio) * intermediate - 1e-9);
  return std::clamp<int64_t>(static_cast<int64_t>(kept), 1, intermediate);
}

torch::Tensor TopMlpChannels(const torch::Tensor& gate, const torch::Tensor& up,
                             double prune_ratio) {
  torch::NoGradGuard no_grad;
  const int64_t k = KeptMlpChannels(gate.size(-1), prune_ratio);
  const torch::Tensor score =
      torch::silu(gate.to(torch::kFloat)).pow(2).sum(1).sqrt() +
      up.to(torch::kFloat).pow(2).sum(1).sqrt();  // [B, I]
  // Ascending, so the saved gate/up columns keep the channel order.
  return std::get<0>(std::get<1>(score.topk(k, /*dim=*/-1)).sort(-1));
}

torch::Tensor MlpSublayer(const DecoderLayer& layer, const torch::Tensor& h,
                          const MlpSavers& savers, bool training) {
  if (!MlpSaversActive(savers)) {
    return layer.Mlp(layer.PostAttentionNorm(h), training);
  }
  const LoraLinear& gate = layer.projection(kGateProj);
  const LoraLinear& up = layer.projection(kUpProj);
  const LoraLinear& down = layer.projection(kDownProj);
  MlpParams p;
  p.eps = layer.eps();
  p.w_gate = gate.weight();
  p.b_gate = gate.bias();
  p.w_up = up.weight();
  p.b_up = up.bias();
  p.w_down = down.weight();
  p.b_down = down.bias();
  p.s_gate = gate.scaling();
  p.s_up = up.scaling();
  p.s_down = down.scaling();
  p.prune_ratio = savers.prune_ratio;
  p.recompute_gate_up = savers.recompute_gate_up;
  torch::Tensor x = h;
  if (savers.recompute_norm) {
    p.norm_weight = layer.post_attention_norm_weight();
  } else {
    x = layer.PostAttentionNorm(h);
  }
  // Guards ValidateMlpSavers' rule for callers that skip it.
  TORCH_CHECK(!training || (gate.dropout() == 0 && up.dropout() == 0 &&
                            down.dropout() == 0),
              "MLP savers do not support LoRA dropout on MLP projections");
  const auto opt = [](const torch::Tensor& t) {
    return t.defined() ? std::optional<torch::Tensor>(t) : std::nullopt;
  };
  return MlpFunction::apply(x, opt(gate.lora_a()), opt(gate.lora_b()),
                            opt(up.lora_a()), opt(up.lora_b()),
                            opt(down.lora_a()), opt(down.lora_b()), p);
}

}  // namespace lemo::engine
