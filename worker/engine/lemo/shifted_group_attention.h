// Shifted group attention (S2-Attn, LongLoRA), the attention half of LeMo's
// two-dimensional sparsity (LEMO.md section 5, LemoOptions::two_d_sparsity):
// a drop-in for causal at::scaled_dot_product_attention over n tokens whose
// cost and saved softmax statistics shrink with the group length instead of n.
//
//   torch::Tensor out = ShiftedGroupAttention(q, k, v, /*scale=*/0.125);
//   // q [B, Hq, n, d], k/v [B, Hkv, n, d] -> [B, Hq, n, d], like SDPA
//
// The pattern, for n tokens in order (the caller's n: all N of a dense layer,
// or a LeMo layer's n kept tokens, compacted):
// - Group length g = ceil(n / 8) (ShiftedGroupLength): at most 8 groups, the
//   last one shorter when n is not a multiple of 8 (LeMo's kept tokens are
//   whole 64-token blocks, so sparse layers always get 8 equal groups; dense
//   layers see any N). No minimum: small n just gives short groups (g = 1 when
//   n <= 8, each token then attends only to itself).
// - The first ceil(Hq/2) query heads attend causally within their group
//   [i*g, (i+1)*g).
// - The other Hq/2 heads are shifted by s = floor(g/2): groups [0, s),
//   [s, s+g), [s+g, s+2g), ..., and a last short group; causal within each.
//   No wrap-around: LongLoRA's torch.roll puts the last s tokens in one group
//   with the first s, which in a causal LM lets early tokens see the future.
// - GQA: query head h uses kv head h / (Hq/Hkv), as in SDPA's enable_gqa. When
//   Hkv is even the kv heads split in halves with the query heads; with one kv
//   head (MQA) both halves share it; otherwise (Hkv odd, GQA) k/v are expanded
//   to Hq heads first, which costs their copy.
// Each half runs as plain causal SDPA calls (one for the equal-length groups
// batched as [B*groups, heads, g, d], one per edge group), so the flash
// backend stays eligible (no masks) and autograd saves only what SDPA saves
// (with B > 1, a copy of the shifted half's grouped q/k/v besides).
//
// Torch errors throw (TORCH_CHECK); the trainer wraps calls with CallTorch.
#ifndef LEMO_WORKER_ENGINE_LEMO_SHIFTED_GROUP_ATTENTION_H_
#define LEMO_WORKER_ENGINE_LEMO_SHIFTED_GROUP_ATTENTION_H_

#include <torch/torch.h>

#include <cstdint>

namespace lemo::engine {

// Groups per sequence: LeMo's artifact splits the kept tokens into eighths.
inline constexpr int64_t kShiftedAttentionGroups = 8;

// Group length for n tokens: ceil(n / kShiftedAttentionGroups), at least 1.
int64_t ShiftedGroupLength(int64_t n);

// Shifted group attention of q [B, Hq, n, d] over k, v [B, Hkv, n, d] (any
// strides SDPA accepts), Hq >= 2 and a multiple of Hkv; `scale` multiplies
// q.k. Returns [B, Hq, n, d] (a transposed view of a contiguous [B, n, Hq, d],
// the layout flash attention returns).
torch::Tensor ShiftedGroupAttention(const torch::Tensor& q,
                                    const torch::Tensor& k,
                                    const torch::Tensor& v, double scale);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_LEMO_SHIFTED_GROUP_ATTENTION_H_
