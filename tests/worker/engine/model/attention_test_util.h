// Test helpers for attention (worker/engine/model/attention_stash.h and the
// CUDA tests beside it): random q/k/v that require grad, plain SDPA as the
// reference, and a gradient comparison.
//
//   const Qkv t = RandomQkv(/*batch=*/2, /*heads=*/3, /*len=*/37, /*dim=*/16,
//                           /*seed=*/1);
//   ExpectSameGrads(got, Reference(t, /*causal=*/true, 0.25), t, 1e-5);
#ifndef LEMO_TESTS_WORKER_ENGINE_MODEL_ATTENTION_TEST_UTIL_H_
#define LEMO_TESTS_WORKER_ENGINE_MODEL_ATTENTION_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

namespace lemo::engine::testing {

struct Qkv {
  torch::Tensor q, k, v;
};

// [B, H, n, d] inputs that require grad.
inline Qkv RandomQkv(int64_t batch, int64_t heads, int64_t len, int64_t dim,
                     uint64_t seed) {
  torch::manual_seed(seed);
  const auto make = [&] {
    return torch::randn({batch, heads, len, dim}).requires_grad_(true);
  };
  Qkv t;
  t.q = make();
  t.k = make();
  t.v = make();
  return t;
}

inline torch::Tensor Reference(const Qkv& t, bool causal, double scale) {
  return at::scaled_dot_product_attention(
      t.q, t.k, t.v, std::nullopt, 0.0, causal, scale,
      /*enable_gqa=*/t.q.size(1) != t.k.size(1));
}

inline std::vector<torch::Tensor> Grads(const torch::Tensor& out, const Qkv& t,
                                        const torch::Tensor& weights) {
  return torch::autograd::grad({(out * weights).sum()}, {t.q, t.k, t.v});
}

// The q/k/v gradients of sum(got * w) and sum(want * w), for random w, agree
// to `rel` of the largest one.
inline void ExpectSameGrads(const torch::Tensor& got, const torch::Tensor& want,
                            const Qkv& t, double rel) {
  const torch::Tensor w = torch::randn_like(want);
  const auto got_grads = Grads(got, t, w);
  const auto want_grads = Grads(want, t, w);
  for (size_t i = 0; i < 3; ++i) {
    const double diff =
        (got_grads[i] - want_grads[i]).abs().max().item<double>();
    const double scale = want_grads[i].abs().max().item<double>();
    EXPECT_LE(diff, rel * std::max(1.0, scale)) << "grad of "
                                                << "qkv"[i];
  }
}

}  // namespace lemo::engine::testing

#endif  // LEMO_TESTS_WORKER_ENGINE_MODEL_ATTENTION_TEST_UTIL_H_
