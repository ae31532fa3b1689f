#include "worker/engine/lemo/sparse_mlp.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/engine/model/lean_ops.h"
#include "worker/engine/model/recompute_context.h"
#include "worker/engine/model/token_tiles.h"

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
  // Tokens per tile, forward and backward; 0 = the whole sequence at once.
  int64_t tile_tokens = 0;
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
    torch::Tensor rstd;
    if (norm) rstd = RmsNormRstd(x, p.eps);
    if (p.tile_tokens > 0) {
      return TiledForward(ctx, x, rstd, a_gate, b_gate, a_up, b_up, a_down,
                          b_down, p);
    }
    torch::Tensor xn = norm ? RmsNormApply(x, p.norm_weight, rstd) : x;
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
      out = SkippedOutput(act, p);
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
    SaveFrozen(ctx, p);
    return out;
  }

  // The frozen side backward reads: weights, scalings, the norm weight when
  // the node normalises, and the tile size.
  static void SaveFrozen(AutogradContext* ctx, const MlpParams& p) {
    if (p.norm_weight.defined()) ctx->saved_data["norm_weight"] = p.norm_weight;
    ctx->saved_data["w_gate"] = p.w_gate;
    ctx->saved_data["w_up"] = p.w_up;
    ctx->saved_data["w_down"] = p.w_down;
    ctx->saved_data["s_gate"] = p.s_gate;
    ctx->saved_data["s_up"] = p.s_up;
    ctx->saved_data["s_down"] = p.s_down;
    ctx->saved_data["tile_tokens"] = p.tile_tokens;
  }

  // The down projection's output where a checkpoint's re-run skips it: zeros
  // of its shape, never read.
  static torch::Tensor SkippedOutput(const torch::Tensor& act,
                                     const MlpParams& p) {
    std::vector<int64_t> shape = act.sizes().vec();
    shape.back() = p.w_down.size(0);
    return torch::zeros({}, act.options()).expand(shape);
  }

  // The forward over token tiles: no full-length [B, N, intermediate] tensor
  // is ever alive; only the input (and the adapters' [B, N, r] hiddens) are
  // saved, and backward recomputes gate/up tile by tile. Row for row the same
  // operations as the untiled forward.
  static torch::Tensor TiledForward(
      AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& rstd,
      const torch::Tensor& a_gate, const torch::Tensor& b_gate,
      const torch::Tensor& a_up, const torch::Tensor& b_up,
      const torch::Tensor& a_down, const torch::Tensor& b_down,
      const MlpParams& p) {
    const bool norm = p.norm_weight.defined();
    const bool skip_down = InCheckpointRecompute();
    const int64_t n = x.size(1);
    std::vector<int64_t> out_shape = x.sizes().vec();
    out_shape.back() = p.w_down.size(0);
    torch::Tensor out =
        skip_down ? torch::Tensor() : torch::empty(out_shape, x.options());
    // The adapters' hiddens, [B, N, r] fp32 each, filled tile by tile.
    const auto hidden_like = [&](const torch::Tensor& a) {
      if (!a.defined()) return torch::Tensor();
      return torch::empty({x.size(0), n, a.size(0)},
                          x.options().dtype(a.scalar_type()));
    };
    torch::Tensor h_gate = hidden_like(a_gate), h_up = hidden_like(a_up),
                  h_down = hidden_like(a_down);
    ForEachTile(n, p.tile_tokens, [&](int64_t t0, int64_t len) {
      const torch::Tensor xs = x.narrow(1, t0, len);
      const torch::Tensor xn =
          norm ? RmsNormApply(xs, p.norm_weight, rstd.narrow(1, t0, len)) : xs;
      torch::Tensor hg, hu, hd;
      const torch::Tensor gate =
          Project(xn, p.w_gate, p.b_gate, a_gate, b_gate, p.s_gate, &hg);
      const torch::Tensor up =
          Project(xn, p.w_up, p.b_up, a_up, b_up, p.s_up, &hu);
      const torch::Tensor act = torch::silu(gate) * up;
      if (skip_down) {
        if (a_down.defined())
          hd = torch::linear(act.to(a_down.scalar_type()), a_down);
      } else {
        out.narrow(1, t0, len)
            .copy_(Project(act, p.w_down, p.b_down, a_down, b_down, p.s_down,
                           &hd));
      }
      if (hg.defined()) h_gate.narrow(1, t0, len).copy_(hg);
      if (hu.defined()) h_up.narrow(1, t0, len).copy_(hu);
      if (hd.defined()) h_down.narrow(1, t0, len).copy_(hd);
    });
    if (skip_down) out = SkippedOutput(x.narrow(-1, 0, 1), p);
    if (p.b_gate.defined()) ctx->saved_data["bias_gate"] = p.b_gate;
    if (p.b_up.defined()) ctx->saved_data["bias_up"] = p.b_up;
    ctx->save_for_backward({x, rstd, torch::Tensor(), torch::Tensor(),
                            torch::Tensor(), h_gate, h_up, h_down, a_gate,
                            b_gate, a_up, b_up, a_down, b_down});
    SaveFrozen(ctx, p);
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
    const int64_t tile_tokens = ctx->saved_data["tile_tokens"].toInt();
    const bool norm = norm_weight.defined();
    const bool recompute = !gate.defined();
    const bool lora_in = a_gate.defined() || a_up.defined();
    const torch::Tensor& grad_out = grads[0];
    const torch::ScalarType dtype = grad_out.scalar_type();
    const int64_t batch = grad_out.size(0);
    const int64_t n = grad_out.size(1);
    const bool want_grad_x = ctx->needs_input_grad(0);
    torch::Tensor grad_x;
    if (want_grad_x) {
      grad_x = torch::empty({batch, n, w_gate.size(1)}, grad_out.options());
    }
    torch::Tensor g_ag, g_bg, g_au, g_bu, g_ad, g_bd;
    // One sample at a time: each keeps its own channels, so each sees its own
    // column slice of the weights. Within a sample, one token tile at a time
    // (all tokens at once unless tiled): every full-length intermediate is
    // tile-sized.
    for (int64_t bi = 0; bi < batch; ++bi) {
      const torch::Tensor keep = idx.defined() ? idx[bi] : torch::Tensor();
      ForEachTile(n, tile_tokens, [&](int64_t t0, int64_t len) {
        const auto rows = [&](const torch::Tensor& t) {
          return t[bi].narrow(0, t0, len);
        };
        const torch::Tensor xs = x.defined() ? rows(x) : torch::Tensor();
        const torch::Tensor rs = rstd.defined() ? rows(rstd) : torch::Tensor();
        // The norm output, recomputed when the node saved h instead.
        torch::Tensor xn = xs;
        if (norm && (recompute || lora_in)) {
          xn = RmsNormApply(xs, norm_weight, rs);
        }
        const torch::Tensor g = rows(grad_out);  // [n, D]
        torch::Tensor gk, uk;                    // [n, k]
        if (recompute) {
          // The forward's Project calls on these rows: the same values.
          torch::Tensor unused;
          gk = Channels(Project(xn, w_gate, SavedOrUndefined(ctx, "bias_gate"),
                                a_gate, b_gate, s_gate, &unused),
                        1, keep);
          uk = Channels(Project(xn, w_up, SavedOrUndefined(ctx, "bias_up"),
                                a_up, b_up, s_up, &unused),
                        1, keep);
        } else {
          gk = rows(gate);
          uk = rows(up);
        }
        torch::Tensor grad_act = g.matmul(Channels(w_down, 1, keep));
        if (a_down.defined()) {
          torch::Tensor gs = g.to(torch::kFloat) * s_down;
          torch::Tensor gh = gs.matmul(b_down);  // [n, r]
          AddChannels(&g_bd, b_down, 0, torch::Tensor(),
                      gs.t().matmul(rows(h_down)));
          grad_act.add_(gh.matmul(Channels(a_down, 1, keep)).to(dtype));
          const torch::Tensor act = (torch::silu(gk) * uk).to(torch::kFloat);
          AddChannels(&g_ad, a_down, 1, keep, gh.t().matmul(act));
        }
        // SwiGluFunction's backward.
        torch::Tensor grad_up = grad_act * torch::silu(gk);
        torch::Tensor grad_gate = torch::silu_backward(grad_act * uk, gk);
        grad_act = torch::Tensor();
        torch::Tensor grad_xn =
            grad_gate.matmul(Channels(w_gate, 0, keep))
                .add_(grad_up.matmul(Channels(w_up, 0, keep)));
        // LoraLinearFunction's backward on the kept rows of lora_B.
        const auto lora = [&](const torch::Tensor& grad, const torch::Tensor& a,
                              const torch::Tensor& b, const torch::Tensor& hid,
                              double scaling, torch::Tensor* ga,
                              torch::Tensor* gb) {
          torch::Tensor gl = grad.to(torch::kFloat) * scaling;  // [n, k]
          torch::Tensor gh = gl.matmul(Channels(b, 0, keep));   // [n, r]
          AddChannels(gb, b, 0, keep, gl.t().matmul(rows(hid)));
          AddChannels(ga, a, 0, torch::Tensor(),
                      gh.t().matmul(xn.to(torch::kFloat)));
          grad_xn.add_(gh.matmul(a).to(dtype));
        };
        if (a_gate.defined()) {
          lora(grad_gate, a_gate, b_gate, h_gate, s_gate, &g_ag, &g_bg);
        }
        if (a_up.defined()) lora(grad_up, a_up, b_up, h_up, s_up, &g_au, &g_bu);
        if (want_grad_x) {
          grad_x[bi]
              .narrow(0, t0, len)
              .copy_(norm ? RmsNormBackward(grad_xn, xs, norm_weight, rs)
                          : grad_xn);
        }
      });
    }
    return {grad_x, g_ag, g_bg, g_au, g_bu, g_ad, g_bd, torch::Tensor()};
  }
};

}  // namespace

MlpSavers MlpSaversFrom(const LemoOptions& options) {
  // Tiles save only the node's input: the norm and gate/up are recomputed.
  const bool tiled = options.mlp_tile_tokens > 0;
  return MlpSavers{options.mlp_prune_ratio,
                   options.recompute_norm || options.recompute_mlp || tiled,
                   options.recompute_mlp || tiled, options.mlp_tile_tokens};
}

bool MlpSaversActive(const MlpSavers& savers) {
  return savers.prune_ratio > 0 || savers.recompute_norm ||
         savers.recompute_gate_up || savers.tile_tokens > 0;
}

absl::Status ValidateMlpSavers(const LemoOptions& options,
                               const LoraOptions& lora) {
  if (!(options.mlp_prune_ratio >= 0 && options.mlp_prune_ratio < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lemo mlp_prune_ratio must be in [0, 1) (0 = off), got ",
                     options.mlp_prune_ratio));
  }
  if (options.mlp_tile_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("mlp_tile_tokens must be >= 0 (0 = off), got ",
                     options.mlp_tile_tokens));
  }
  if (options.mlp_tile_tokens > 0 && options.mlp_prune_ratio > 0) {
    // The pruned channels are ranked over all tokens of a sample, which a
    // tiled forward never holds at once.
    return absl::InvalidArgumentError(
        "mlp_tile_tokens does not combine with mlp_prune_ratio: set one of "
        "them to 0");
  }
  if (!MlpSaversActive(MlpSaversFrom(options)) || lora.dropout == 0) {
    return absl::OkStatus();
  }
  for (const std::string& m : lora.target_modules) {
    if (m == "gate_proj" || m == "up_proj" || m == "down_proj" ||
        m == "all-linear") {
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
  p.tile_tokens = savers.tile_tokens;
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
