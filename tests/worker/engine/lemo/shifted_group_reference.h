// Test helpers for shifted group attention
// (worker/engine/lemo/shifted_group_attention.h): the attention mask written
// from the rule, plain masked attention, the shapes to cover, and
// ExpectMatchesReference, which runs the op on a device and compares output
// and gradients with the masked reference in fp64 on the CPU.
//
//   for (const Shape& s : Shapes()) ExpectMatchesReference(s, torch::kFloat32);
#ifndef LEMO_TESTS_WORKER_ENGINE_LEMO_SHIFTED_GROUP_REFERENCE_H_
#define LEMO_TESTS_WORKER_ENGINE_LEMO_SHIFTED_GROUP_REFERENCE_H_

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "worker/engine/lemo/shifted_group_attention.h"

namespace lemo::engine::testing {

struct Shape {
  int64_t batch;
  int64_t heads;
  int64_t kv_heads;
  int64_t n;
};

// mask[h, r, c]: query head h at token r may attend token c. Written from the
// rule, independently of the implementation: g = ceil(n / 8); the first
// ceil(H/2) heads use groups [i*g, (i+1)*g); the others use [0, g/2) and then
// groups of g starting at g/2; causal inside a group; no wrap-around.
inline torch::Tensor ReferenceMask(int64_t heads, int64_t n) {
  const int64_t g = std::max<int64_t>(1, (n + 7) / 8);
  const int64_t shift = g / 2;
  const int64_t unshifted_heads = heads - heads / 2;
  torch::Tensor mask = torch::zeros({heads, n, n}, torch::kBool);
  auto m = mask.accessor<bool, 3>();
  for (int64_t h = 0; h < heads; ++h) {
    const bool shifted = h >= unshifted_heads;
    const auto group = [&](int64_t t) {
      if (!shifted) return t / g;
      return t < shift ? int64_t{-1} : (t - shift) / g;
    };
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c <= r; ++c) m[h][r][c] = group(r) == group(c);
    }
  }
  return mask;
}

// softmax(q k^T * scale + mask) v in the inputs' dtype, query head h reading kv
// head h / (H / Hkv).
inline torch::Tensor MaskedAttention(const torch::Tensor& q,
                                     const torch::Tensor& k,
                                     const torch::Tensor& v,
                                     const torch::Tensor& mask, double scale) {
  const int64_t group = q.size(1) / k.size(1);
  const torch::Tensor ke = k.repeat_interleave(group, 1);
  const torch::Tensor ve = v.repeat_interleave(group, 1);
  torch::Tensor scores = torch::matmul(q, ke.transpose(-1, -2)) * scale;
  scores = scores.masked_fill(mask.logical_not(),
                              -std::numeric_limits<double>::infinity());
  return torch::matmul(torch::softmax(scores, -1), ve);
}

struct Result {
  torch::Tensor out;
  torch::Tensor dq;
  torch::Tensor dk;
  torch::Tensor dv;
};

// Output and input gradients of `fn` for upstream gradient `dout`.
template <typename Fn>
inline Result Run(const torch::Tensor& q, const torch::Tensor& k,
                  const torch::Tensor& v, const torch::Tensor& dout, Fn fn) {
  torch::Tensor qg = q.detach().clone().requires_grad_(true);
  torch::Tensor kg = k.detach().clone().requires_grad_(true);
  torch::Tensor vg = v.detach().clone().requires_grad_(true);
  torch::Tensor out = fn(qg, kg, vg);
  out.backward(dout.to(out.dtype()));
  return {out.detach(), qg.grad(), kg.grad(), vg.grad()};
}

inline double MaxError(const torch::Tensor& got, const torch::Tensor& want) {
  return (got.to(torch::kDouble) - want).abs().max().item<double>();
}

// Compares shifted group attention on random inputs of `dtype`, run on
// `device` (CUDA: the flash/cuDNN SDPA kernels), with the masked reference in
// fp64 on the CPU. Allowed error: fp32 a fixed 1e-5 (both sides are
// exact up to rounding); bf16 about 2x the error of the same masked math done
// in bf16, plus a bf16 ulp of the values' scale, plus the fp32 1e-5.
inline void ExpectMatchesReference(const Shape& s, torch::ScalarType dtype,
                                   torch::Device device = torch::kCPU) {
  SCOPED_TRACE(::testing::Message()
               << "B " << s.batch << " H " << s.heads << " Hkv " << s.kv_heads
               << " n " << s.n << " " << c10::toString(dtype) << " " << device);
  constexpr int64_t kHeadDim = 16;
  const double scale = 1.0 / std::sqrt(static_cast<double>(kHeadDim));
  torch::manual_seed(s.n * 131 + s.heads * 7 + s.kv_heads + s.batch);
  const auto rand = [&](int64_t heads) {
    return torch::randn({s.batch, heads, s.n, kHeadDim}).to(dtype);
  };
  const torch::Tensor q = rand(s.heads);
  const torch::Tensor k = rand(s.kv_heads);
  const torch::Tensor v = rand(s.kv_heads);
  const torch::Tensor dout = torch::randn({s.batch, s.heads, s.n, kHeadDim});
  const torch::Tensor mask = ReferenceMask(s.heads, s.n);

  Result got = Run(q.to(device), k.to(device), v.to(device), dout.to(device),
                   [&](auto& a, auto& b, auto& c) {
                     return ShiftedGroupAttention(a, b, c, scale);
                   });
  for (torch::Tensor* t : {&got.out, &got.dq, &got.dk, &got.dv}) *t = t->cpu();
  const Result want =
      Run(q.to(torch::kDouble), k.to(torch::kDouble), v.to(torch::kDouble),
          dout, [&](auto& a, auto& b, auto& c) {
            return MaskedAttention(a, b, c, mask, scale);
          });
  ASSERT_EQ(got.out.sizes(), want.out.sizes());
  ASSERT_EQ(got.dq.sizes(), q.sizes());
  ASSERT_EQ(got.dk.sizes(), k.sizes());
  ASSERT_EQ(got.dv.sizes(), v.sizes());
  const std::vector<
      std::pair<const char*, std::pair<torch::Tensor, torch::Tensor>>>
      pairs = {{"out", {got.out, want.out}},
               {"dq", {got.dq, want.dq}},
               {"dk", {got.dk, want.dk}},
               {"dv", {got.dv, want.dv}}};
  Result low;
  if (dtype != torch::kFloat32) {
    low = Run(q, k, v, dout, [&](auto& a, auto& b, auto& c) {
      return MaskedAttention(a, b, c, mask, scale);
    });
  }
  const std::map<std::string, torch::Tensor> low_of = {
      {"out", low.out}, {"dq", low.dq}, {"dk", low.dk}, {"dv", low.dv}};
  for (const auto& [name, gw] : pairs) {
    const auto& [g, w] = gw;
    double tol = 1e-5;
    if (dtype != torch::kFloat32) {
      const double ulp = 0.0078125 * w.abs().max().item<double>();
      // + fp32's 1e-5: where both references are exact (a group of one
      // token has zero dq and dk) the fp32-accumulating kernel still rounds.
      tol = 2 * MaxError(low_of.at(name), w) + ulp + 1e-5;
    }
    EXPECT_LE(MaxError(g, w), tol) << name;
  }
}

inline const std::vector<Shape>& Shapes() {
  static const auto* shapes = new std::vector<Shape>{
      // n = 64: eight groups of 8; shifted groups 4, 8 x 7, 4.
      {1, 4, 2, 64},
      {2, 8, 2, 64},
      {1, 8, 8, 64},
      {2, 4, 4, 64},
      // Short last group (n not a multiple of 8) and tiny n (g = 1 or 2).
      {2, 4, 2, 70},
      {1, 8, 2, 57},
      {2, 8, 8, 65},
      {1, 4, 4, 9},
      {2, 4, 2, 5},
      {1, 4, 2, 1},
      // LeMo's kept tokens: whole 64-token blocks, here 3 x 8 blocks.
      {1, 4, 2, 8 * 64 * 3},
      {2, 8, 8, 8 * 64 * 3},
      // Uneven head splits: odd kv heads (expanded), MQA, odd MHA.
      {2, 6, 3, 72},
      {1, 4, 1, 64},
      {2, 3, 3, 40},
  };
  return *shapes;
}

}  // namespace lemo::engine::testing

#endif  // LEMO_TESTS_WORKER_ENGINE_LEMO_SHIFTED_GROUP_REFERENCE_H_
