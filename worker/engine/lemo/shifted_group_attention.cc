#include "worker/engine/lemo/shifted_group_attention.h"

#include <optional>
#include <vector>

namespace lemo::engine {
namespace {

// Causal SDPA on token-major q [b, L, h, d], k/v [b, L, hkv, d]; returns
// [b, L, h, d]. The transposes are views, as in DecoderLayer::Attention.
torch::Tensor CausalTokenMajor(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, double scale) {
  return at::scaled_dot_product_attention(
             q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
             /*attn_mask=*/std::nullopt, /*dropout_p=*/0.0,
             /*is_causal=*/q.size(1) > 1, scale,
             /*enable_gqa=*/q.size(2) != k.size(2))
      .transpose(1, 2);
}

// One head half, token-major q [B, n, h, d], k/v [B, n, hkv, d]: causal
// attention within the groups [0, shift), then groups of g, then the rest.
// Returns [B, n, h, d].
torch::Tensor GroupedHalf(const torch::Tensor& q, const torch::Tensor& k,
                          const torch::Tensor& v, int64_t g, int64_t shift,
                          double scale) {
  const int64_t batch = q.size(0);
  const int64_t n = q.size(1);
  const int64_t full = (n - shift) / g;
  const int64_t tail = n - shift - full * g;
  std::vector<int64_t> sizes;
  if (shift > 0) sizes.push_back(shift);
  const size_t middle = sizes.size();
  if (full > 0) sizes.push_back(full * g);
  if (tail > 0) sizes.push_back(tail);
  // split_with_sizes' backward concatenates the pieces' grads (no zero-filled
  // full-size grad per piece, as slicing would give).
  const std::vector<torch::Tensor> qs = q.split_with_sizes(sizes, 1);
  const std::vector<torch::Tensor> ks = k.split_with_sizes(sizes, 1);
  const std::vector<torch::Tensor> vs = v.split_with_sizes(sizes, 1);
  std::vector<torch::Tensor> outs;
  outs.reserve(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i != middle || full == 0) {
      outs.push_back(CausalTokenMajor(qs[i], ks[i], vs[i], scale));
      continue;
    }
    // The equal groups as a batch of `full` sequences of g tokens: a view when
    // B == 1 (the long-context case) or when they span the whole sequence
    // (unshifted, n a multiple of 8); otherwise a copy, which SDPA saves while
    // the edge groups' views keep the original alive too (about one extra
    // q/k/v of this half per layer; under checkpointing only while a layer
    // recomputes).
    const auto grouped = [&](const torch::Tensor& t) {
      return t.reshape({batch * full, g, t.size(2), t.size(3)});
    };
    outs.push_back(
        CausalTokenMajor(grouped(qs[i]), grouped(ks[i]), grouped(vs[i]), scale)
            .reshape({batch, full * g, q.size(2), q.size(3)}));
  }
  return outs.size() == 1 ? outs[0] : torch::cat(outs, 1);
}

}  // namespace

int64_t ShiftedGroupLength(int64_t n) {
  const int64_t g = (n + kShiftedAttentionGroups - 1) / kShiftedAttentionGroups;
  return g > 0 ? g : 1;
}

torch::Tensor ShiftedGroupAttention(const torch::Tensor& q,
                                    const torch::Tensor& k,
                                    const torch::Tensor& v, double scale) {
  TORCH_CHECK_VALUE(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
                    "shifted group attention: q, k, v must be [B, H, n, d], "
                    "got ",
                    q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK_VALUE(k.sizes() == v.sizes() && q.size(0) == k.size(0) &&
                        q.size(2) == k.size(2) && q.size(3) == k.size(3),
                    "shifted group attention: q ", q.sizes(), ", k ", k.sizes(),
                    " and v ", v.sizes(),
                    " must share batch, tokens and head_dim");
  const int64_t hq = q.size(1);
  const int64_t hkv = k.size(1);
  TORCH_CHECK_VALUE(hq >= 2 && hkv >= 1 && hq % hkv == 0,
                    "shifted group attention needs >= 2 query heads, a "
                    "multiple of the kv heads; got ",
                    hq, " and ", hkv);
  const int64_t n = q.size(2);
  if (n == 0) {
    return at::scaled_dot_product_attention(q, k, v, std::nullopt, 0.0, false,
                                            scale, hq != hkv);
  }
  const int64_t g = ShiftedGroupLength(n);
  // Token-major views [B, n, H, d]: groups are then contiguous token ranges.
  const torch::Tensor qt = q.transpose(1, 2);
  torch::Tensor kt = k.transpose(1, 2);
  torch::Tensor vt = v.transpose(1, 2);
  // Unshifted heads first: ceil(Hq/2), as LongLoRA's chunk(2).
  const int64_t q_first = hq - hq / 2;
  std::vector<torch::Tensor> q_half = qt.split_with_sizes({q_first, hq / 2}, 2);
  std::vector<torch::Tensor> k_half;
  std::vector<torch::Tensor> v_half;
  if (hkv == 1) {
    // MQA: both halves read the one kv head.
    k_half = {kt, kt};
    v_half = {vt, vt};
  } else {
    int64_t kv_first = hkv / 2;
    if (hkv % 2 != 0 && hkv != hq) {
      // The half boundary falls inside a kv head's query group: give every
      // query head its own copy of its kv head.
      kt = kt.repeat_interleave(hq / hkv, 2);
      vt = vt.repeat_interleave(hq / hkv, 2);
      kv_first = q_first;
    } else if (hkv == hq) {
      kv_first = q_first;
    }
    const int64_t kv_second = kt.size(2) - kv_first;
    k_half = kt.split_with_sizes({kv_first, kv_second}, 2);
    v_half = vt.split_with_sizes({kv_first, kv_second}, 2);
  }
  const torch::Tensor plain =
      GroupedHalf(q_half[0], k_half[0], v_half[0], g, /*shift=*/0, scale);
  const torch::Tensor shifted =
      GroupedHalf(q_half[1], k_half[1], v_half[1], g, /*shift=*/g / 2, scale);
  return torch::cat({plain, shifted}, 2).transpose(1, 2);
}

}  // namespace lemo::engine
