// Tests for worker/engine/{lora_linear,lean_ops,recompute}.h: each hand-written
// autograd node against the same math written op by op (what HF + PEFT record).
// To add a case: build random inputs, run both paths, compare outputs and input
// gradients.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>

#include "tests/testing/status_matchers.h"
#include "worker/engine/model/lean_ops.h"
#include "worker/engine/model/lora_linear.h"
#include "worker/engine/train/recompute.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

// PEFT's lora.Linear forward, op by op.
torch::Tensor PeftLora(const torch::Tensor& x, const torch::Tensor& w,
                       const torch::Tensor& b, const torch::Tensor& a,
                       const torch::Tensor& bb, double scaling) {
  torch::Tensor result = torch::linear(x, w, b);
  torch::Tensor lora =
      torch::linear(torch::linear(x.to(torch::kFloat), a), bb) * scaling;
  return (result + lora).to(result.scalar_type());
}

// The fused node, untiled.
torch::Tensor FusedLora(const torch::Tensor& x, const torch::Tensor& w,
                        const torch::Tensor& b, const torch::Tensor& a,
                        const torch::Tensor& bb, double scaling) {
  return LoraLinearForward(x, w, b, a, bb, scaling);
}

struct Grads {
  torch::Tensor out, x, a, b;
};

template <typename Fn>
Grads RunLora(Fn fn, torch::ScalarType dtype, bool bias) {
  torch::manual_seed(3);
  torch::Tensor x = torch::randn({2, 5, 12}).to(dtype).requires_grad_(true);
  torch::Tensor w = torch::randn({7, 12}).to(dtype);
  torch::Tensor bs = bias ? torch::randn({7}).to(dtype) : torch::Tensor();
  torch::Tensor a = torch::randn({4, 12}).requires_grad_(true);
  torch::Tensor bb = torch::randn({7, 4}).requires_grad_(true);
  torch::Tensor g = torch::randn({2, 5, 7}).to(dtype);
  torch::Tensor out = fn(x, w, bs, a, bb, 0.5);
  out.backward(g);
  return {out.detach(), x.grad(), a.grad(), bb.grad()};
}

void ExpectClose(const Grads& got, const Grads& want, double rtol,
                 double atol) {
  EXPECT_EQ(got.out.scalar_type(), want.out.scalar_type());
  EXPECT_TRUE(torch::allclose(got.out.to(torch::kFloat),
                              want.out.to(torch::kFloat), rtol, atol));
  EXPECT_TRUE(torch::allclose(got.x.to(torch::kFloat), want.x.to(torch::kFloat),
                              rtol, atol));
  EXPECT_TRUE(torch::allclose(got.a, want.a, rtol, atol));
  EXPECT_TRUE(torch::allclose(got.b, want.b, rtol, atol));
}

TEST(LoraLinear, FusedNodeMatchesPeftOpByOpInFp32) {
  for (bool bias : {false, true}) {
    ExpectClose(RunLora(FusedLora, torch::kFloat, bias),
                RunLora(PeftLora, torch::kFloat, bias), 1e-5, 1e-6);
  }
}

TEST(LoraLinear, FusedNodeMatchesPeftOpByOpInBf16) {
  // Same roundings in the same places: the bf16 results agree to bf16
  // resolution (x's grad sums two bf16 terms whose order may differ).
  ExpectClose(RunLora(FusedLora, torch::kBFloat16, true),
              RunLora(PeftLora, torch::kBFloat16, true), 1e-2, 1e-2);
}

TEST(LoraLinear, InitIsPeftsKaimingAndZeroB) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  LEMO_ASSERT_OK_AND_ASSIGN(LoraLinear layer,
                            LoraLinear::Create("q", torch::randn({6, 100}), {},
                                               {4, 8, 0}, gen, torch::kCPU));
  ASSERT_TRUE(layer.has_lora());
  EXPECT_DOUBLE_EQ(layer.scaling(), 2.0);
  EXPECT_TRUE(layer.lora_b().eq(0).all().item<bool>());
  EXPECT_EQ(layer.lora_a().sizes(), torch::IntArrayRef({4, 100}));
  // kaiming_uniform(a = sqrt(5)) bound = 1 / sqrt(fan_in) = 0.1.
  EXPECT_LE(layer.lora_a().abs().max().item<double>(), 0.1);
  EXPECT_GT(layer.lora_a().abs().max().item<double>(), 0.09);
  EXPECT_TRUE(layer.lora_a().requires_grad());
  EXPECT_FALSE(layer.weight().requires_grad());
  // Same seed, same A.
  at::Generator again = at::make_generator<at::CPUGeneratorImpl>(7);
  LEMO_ASSERT_OK_AND_ASSIGN(LoraLinear twin,
                            LoraLinear::Create("q", torch::randn({6, 100}), {},
                                               {4, 8, 0}, again, torch::kCPU));
  EXPECT_TRUE(torch::equal(layer.lora_a(), twin.lora_a()));
}

TEST(LoraLinear, RejectsBadShapesAndOptions) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  EXPECT_THAT(LoraLinear::Create("layers.0.q_proj", torch::randn({6}), {},
                                 {4, 8, 0}, gen, torch::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("layers.0.q_proj")));
  EXPECT_THAT(LoraLinear::Create("q", torch::randn({6, 4}), torch::randn({5}),
                                 {4, 8, 0}, gen, torch::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bias")));
  EXPECT_THAT(
      LoraLinear::Create("q", torch::randn({6, 4}), {}, {4, 8, 1.0}, gen,
                         torch::kCPU),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dropout")));
}

torch::Tensor HfRmsNorm(const torch::Tensor& x, const torch::Tensor& w,
                        double eps) {
  torch::Tensor h = x.to(torch::kFloat);
  torch::Tensor var = h.pow(2).mean(-1, true);
  h = h * torch::rsqrt(var + eps);
  return w * h.to(x.scalar_type());
}

TEST(RmsNorm, MatchesHfOpByOp) {
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    torch::manual_seed(1);
    torch::Tensor base = torch::randn({3, 4, 16}).to(dtype);
    torch::Tensor w = (1 + 0.1 * torch::randn({16})).to(dtype);
    torch::Tensor g = torch::randn({3, 4, 16}).to(dtype);
    torch::Tensor x1 = base.clone().requires_grad_(true);
    torch::Tensor x2 = base.clone().requires_grad_(true);
    torch::Tensor y1 = RmsNorm(x1, w, 1e-5);
    torch::Tensor y2 = HfRmsNorm(x2, w, 1e-5);
    y1.backward(g);
    y2.backward(g);
    EXPECT_TRUE(torch::equal(y1, y2)) << dtype;
    const double tol = dtype == torch::kFloat ? 1e-5 : 2e-2;
    EXPECT_TRUE(torch::allclose(x1.grad().to(torch::kFloat),
                                x2.grad().to(torch::kFloat), tol, tol))
        << dtype;
  }
}

TEST(SwiGlu, MatchesSiluTimesUpBitForBit) {
  torch::manual_seed(2);
  torch::Tensor g0 = torch::randn({2, 3, 10});
  torch::Tensor u0 = torch::randn({2, 3, 10});
  torch::Tensor gr = torch::randn({2, 3, 10});
  torch::Tensor g1 = g0.clone().requires_grad_(true);
  torch::Tensor u1 = u0.clone().requires_grad_(true);
  torch::Tensor g2 = g0.clone().requires_grad_(true);
  torch::Tensor u2 = u0.clone().requires_grad_(true);
  torch::Tensor y1 = SwiGlu(g1, u1);
  torch::Tensor y2 = torch::silu(g2) * u2;
  y1.backward(gr);
  y2.backward(gr);
  EXPECT_TRUE(torch::equal(y1, y2));
  EXPECT_TRUE(torch::equal(g1.grad(), g2.grad()));
  EXPECT_TRUE(torch::equal(u1.grad(), u2.grad()));
}

TEST(Checkpoint, SameGradsAndReplaysDropoutMasks) {
  torch::manual_seed(4);
  torch::Tensor w = torch::randn({8, 8}).requires_grad_(true);
  torch::Tensor x0 = torch::randn({5, 8});
  const auto segment = [&w](const torch::Tensor& h) {
    return torch::dropout(torch::tanh(torch::mm(h, w)), 0.5, true) + h;
  };
  torch::Tensor xa = x0.clone().requires_grad_(true);
  torch::manual_seed(9);
  torch::Tensor ya = segment(xa);
  ya.sum().backward();
  torch::Tensor wa = w.grad().clone();
  w.mutable_grad() = torch::Tensor();

  torch::Tensor xb = x0.clone().requires_grad_(true);
  torch::manual_seed(9);
  torch::Tensor yb = Checkpoint(segment, xb, {w});
  // Draws between forward and backward must not leak into the replay, and
  // backward must leave the caller's stream where it was.
  torch::Tensor between = torch::rand({100});
  yb.sum().backward();
  torch::Tensor next = torch::rand({3});
  EXPECT_TRUE(torch::equal(ya, yb));
  EXPECT_TRUE(torch::equal(xa.grad(), xb.grad()));
  EXPECT_TRUE(torch::equal(wa, w.grad()));

  torch::manual_seed(9);
  {
    torch::NoGradGuard no_grad;
    segment(x0);
  }
  EXPECT_TRUE(torch::equal(between, torch::rand({100})));
  EXPECT_TRUE(torch::equal(next, torch::rand({3})));
}

TEST(Checkpoint, KeepsOnlyItsInputAlive) {
  torch::Tensor w = torch::randn({4, 4}).requires_grad_(true);
  torch::Tensor x = torch::randn({3, 4});
  torch::Tensor y = Checkpoint(
      [&w](const torch::Tensor& h) { return torch::mm(h, w).relu(); }, x, {w});
  EXPECT_TRUE(y.requires_grad());
  EXPECT_EQ(y.grad_fn()->name(), "lemo::CheckpointBackward");
  EXPECT_EQ(y.grad_fn()->next_edges().size(), 2u);
  // Under no-grad it is just the function.
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(
      Checkpoint([&w](const torch::Tensor& h) { return torch::mm(h, w); }, x,
                 {w})
          .requires_grad());
}

}  // namespace
}  // namespace lemo::engine
