#include "worker/engine/model/decoder_layer.h"

#include <cmath>

#include "worker/engine/model/attention_stash.h"
#include "worker/engine/model/lean_ops.h"
#include "worker/engine/model/rope.h"

namespace lemo::engine {

torch::Tensor DecoderLayer::InputNorm(const torch::Tensor& x) const {
  return RmsNorm(x, input_norm_, eps_, tile_tokens_);
}

torch::Tensor DecoderLayer::PostAttentionNorm(const torch::Tensor& x) const {
  return RmsNorm(x, post_attention_norm_, eps_, tile_tokens_);
}

torch::Tensor DecoderLayer::QueryNorm(const torch::Tensor& q) const {
  // Untiled: the tiles of RmsNorm run over dim -2, the heads here.
  return q_norm_.defined() ? RmsNorm(q, q_norm_, eps_) : q;
}

torch::Tensor DecoderLayer::KeyNorm(const torch::Tensor& k) const {
  return k_norm_.defined() ? RmsNorm(k, k_norm_, eps_) : k;
}

torch::Tensor DecoderLayer::Attention(const torch::Tensor& xn,
                                      const torch::Tensor& cos,
                                      const torch::Tensor& sin, bool training,
                                      AttentionCoreFn core) const {
  if (head_groups_ <= 1 || core != nullptr || subsegment_runner_ == nullptr ||
      !torch::GradMode::is_enabled()) {
    return AttentionHeads(xn, cos, sin, training, core, /*group=*/-1);
  }
  // Each group keeps only xn for backward and re-runs in it, so backward
  // holds one group's q/k/v, output and their gradients (flash attention's
  // fp32 dq accumulator included) instead of every head's at once.
  const std::vector<torch::Tensor> params = AttentionParameters();
  torch::Tensor out;
  for (int64_t g = 0; g < head_groups_; ++g) {
    SegmentFn heads = [this, cos, sin, training, g](const torch::Tensor& in) {
      return AttentionHeads(in, cos, sin, training, nullptr, g);
    };
    torch::Tensor part = (*subsegment_runner_)(std::move(heads), xn, params);
    out = out.defined() ? out + part : part;
  }
  return out;
}

torch::Tensor DecoderLayer::AttentionHeads(const torch::Tensor& xn,
                                           const torch::Tensor& cos,
                                           const torch::Tensor& sin,
                                           bool training, AttentionCoreFn core,
                                           int64_t group) const {
  const int64_t batch = xn.size(0);
  const int64_t len = xn.size(1);
  // [B, n, H*d] -> [B, H, n, d] views, as HF's .view(hidden_shape).transpose(1,
  // 2), with Qwen3's per-head norm (`norm`) on the [B, n, H, d] view between
  // the two, as Qwen3Attention applies q_norm/k_norm.
  const auto heads =
      [&](const torch::Tensor& t,
          torch::Tensor (DecoderLayer::*norm)(const torch::Tensor&) const) {
        torch::Tensor h = t.view({batch, len, -1, head_dim_});
        if (norm != nullptr) h = (this->*norm)(h);
        return h.transpose(1, 2);
      };
  // Group g has q heads [g*H/G, (g+1)*H/G) and, as GQA pairs them, kv heads
  // [g*Hkv/G, (g+1)*Hkv/G).
  const int64_t groups = group < 0 ? 1 : head_groups_;
  const int64_t q_heads = num_heads_ / groups;
  const int64_t kv_heads = num_kv_heads_ / groups;
  const int64_t first_q = group < 0 ? 0 : group * q_heads;
  const int64_t first_kv = group < 0 ? 0 : group * kv_heads;
  const auto project = [&](int p, int64_t first, int64_t count) {
    return group < 0 ? proj_[p].Forward(xn, training)
                     : proj_[p].ForwardOutputSlice(xn, first * head_dim_,
                                                   count * head_dim_);
  };
  torch::Tensor q = ApplyRotary(
      heads(project(kQProj, first_q, q_heads), &DecoderLayer::QueryNorm), cos,
      sin);
  torch::Tensor k = ApplyRotary(
      heads(project(kKProj, first_kv, kv_heads), &DecoderLayer::KeyNorm), cos,
      sin);
  torch::Tensor v = heads(project(kVProj, first_kv, kv_heads), nullptr);
  const double scale = std::pow(static_cast<double>(head_dim_), -0.5);
  // Same call as HF's sdpa path: K/V stay unexpanded (enable_gqa) so backward
  // keeps only num_kv_heads of them; causal without a mask so flash attention
  // is eligible.
  // (ScaledDotProductAttention is that call, plus the checkpoint's stash.)
  torch::Tensor attn =
      core != nullptr
          ? core(q, k, v, scale)
          : ScaledDotProductAttention(q, k, v, /*is_causal=*/len > 1, scale);
  // Flash attention already lays its output out as [B, n, H, d]; contiguous()
  // is then free and o_proj's saved input shares storage with attention's saved
  // output.
  torch::Tensor merged =
      attn.transpose(1, 2).contiguous().view({batch, len, -1});
  if (group < 0) return proj_[kOProj].Forward(merged, training);
  return proj_[kOProj].ForwardInputSlice(merged, first_q * head_dim_,
                                         q_heads * head_dim_,
                                         /*with_bias=*/group == 0);
}

std::vector<torch::Tensor> DecoderLayer::AttentionParameters() const {
  std::vector<torch::Tensor> params;
  for (int p : {kQProj, kKProj, kVProj, kOProj}) {
    if (!proj_[p].has_lora()) continue;
    params.push_back(proj_[p].lora_a());
    params.push_back(proj_[p].lora_b());
  }
  return params;
}

torch::Tensor DecoderLayer::Mlp(const torch::Tensor& xn, bool training) const {
  torch::Tensor act = SwiGlu(proj_[kGateProj].Forward(xn, training),
                             proj_[kUpProj].Forward(xn, training));
  return proj_[kDownProj].Forward(act, training);
}

torch::Tensor DecoderLayer::Forward(const torch::Tensor& x,
                                    const torch::Tensor& cos,
                                    const torch::Tensor& sin, bool training,
                                    AttentionCoreFn core) const {
  torch::Tensor h = x + Attention(InputNorm(x), cos, sin, training, core);
  return h + Mlp(PostAttentionNorm(h), training);
}

std::vector<torch::Tensor> DecoderLayer::TrainableParameters() const {
  std::vector<torch::Tensor> params;
  for (const LoraLinear& p : proj_) {
    if (!p.has_lora()) continue;
    params.push_back(p.lora_a());
    params.push_back(p.lora_b());
  }
  return params;
}

}  // namespace lemo::engine
