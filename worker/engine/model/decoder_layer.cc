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

torch::Tensor DecoderLayer::Attention(const torch::Tensor& xn,
                                      const torch::Tensor& cos,
                                      const torch::Tensor& sin, bool training,
                                      AttentionCoreFn core) const {
  const int64_t batch = xn.size(0);
  const int64_t len = xn.size(1);
  // [B, n, H*d] -> [B, H, n, d] views, as HF's .view(hidden_shape).transpose(1,
  // 2).
  const auto heads = [&](const torch::Tensor& t) {
    return t.view({batch, len, -1, head_dim_}).transpose(1, 2);
  };
  torch::Tensor q =
      ApplyRotary(heads(proj_[kQProj].Forward(xn, training)), cos, sin);
  torch::Tensor k =
      ApplyRotary(heads(proj_[kKProj].Forward(xn, training)), cos, sin);
  torch::Tensor v = heads(proj_[kVProj].Forward(xn, training));
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
  return proj_[kOProj].Forward(merged, training);
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
