// GPU tests of lemo::block_scores: the CUDA kernel (tensor cores for bf16/fp16
// with d 64 or 128, CUDA cores otherwise) against the CPU reference on the same
// random inputs. Fails without a CUDA device. To add a case: append to
// kCases (ragged N and GQA welcome); see op_test_harness.h.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/block_scores/block_scores.h"
#include "kernels/select_blocks/select_blocks.h"
#include "tests/kernels/op_test_harness.h"

#ifdef LEMO_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>

#include "kernels/block_scores/block_scores_cuda.h"
#include "kernels/block_scores/block_scores_kernel.h"
#endif

namespace lemo::kernels {
namespace {

using testing::ExpectClose;

struct Case {
  int64_t batch, hq, hkv, n, d;
};

// N = 1000 and 4097 leave ragged tiles (and 4097 a one-token tile); Hq/Hkv =
// 32/8 and 8/2 are Llama-3-style GQA, 4/4 plain MHA; d = 64 and 128 take the
// tensor-core path in bf16, d = 16 and 80 the CUDA-core one.
const std::vector<Case> kCases = {
    {1, 32, 8, 1000, 128}, {2, 8, 2, 4097, 64}, {2, 8, 2, 1000, 128},
    {1, 4, 4, 64, 64},     {2, 4, 4, 130, 128}, {1, 8, 2, 31, 64},
    {2, 6, 3, 200, 16},    {1, 4, 2, 300, 80},
};

std::string Label(const Case& c, torch::ScalarType dtype) {
  return "B=" + std::to_string(c.batch) + " Hq=" + std::to_string(c.hq) +
         " Hkv=" + std::to_string(c.hkv) + " N=" + std::to_string(c.n) +
         " d=" + std::to_string(c.d) + " " + c10::toString(dtype);
}

// q and k as the engine makes them: linear(x) viewed [B, N, H, d] and
// transposed to [B, H, N, d] (token stride H * d, not d).
std::pair<torch::Tensor, torch::Tensor> RandomQk(const Case& c,
                                                 torch::ScalarType dtype,
                                                 bool engine_layout) {
  torch::manual_seed(c.n * 131 + c.hq * 7 + c.d);
  if (engine_layout) {
    const torch::Tensor q = torch::randn({c.batch, c.n, c.hq, c.d}).to(dtype);
    const torch::Tensor k = torch::randn({c.batch, c.n, c.hkv, c.d}).to(dtype);
    return {q.transpose(1, 2), k.transpose(1, 2)};
  }
  return {torch::randn({c.batch, c.hq, c.n, c.d}).to(dtype),
          torch::randn({c.batch, c.hkv, c.n, c.d}).to(dtype)};
}

TEST(BlockScoresCuda, EqualsCpuReference) {
  LEMO_REQUIRE_CUDA();
  for (const Case& c : kCases) {
    for (torch::ScalarType dtype :
         {torch::kFloat32, torch::kBFloat16, torch::kFloat16}) {
      for (bool engine_layout : {false, true}) {
        auto [q, k] = RandomQk(c, dtype, engine_layout);
        const torch::Tensor want = BlockScoresCpu(q, k, 64);
        const torch::Tensor got =
            BlockScores(q.to(torch::kCUDA), k.to(torch::kCUDA), 64);
        ASSERT_TRUE(got.is_cuda());
        EXPECT_EQ(got.scalar_type(), torch::kFloat);
        const std::string label =
            Label(c, dtype) + (engine_layout ? " transposed" : "");
        // Both sides sum exact products in fp32, in different orders (the
        // tensor cores' k-chunks versus the CPU GEMM), so the harness' fp32
        // tolerance would nearly hold even for 16-bit inputs; the dtype's is
        // the documented bound.
        ExpectClose(got.cpu(), want, dtype, label);
        EXPECT_TRUE(torch::equal(got.cpu().triu(1), torch::zeros_like(want)))
            << label << ": tiles above the diagonal must be 0";
      }
    }
  }
}

#ifdef LEMO_WITH_CUDA
// Calls the launcher with `variant` on a few ragged, GQA and MHA cases in
// bf16 and fp16, in the engine's layout and contiguous, and compares each with
// the CPU reference.
void ExpectVariantEqualsCpu(int32_t variant) {
  const std::vector<Case> cases = {{1, 32, 8, 1000, 128},
                                   {2, 8, 2, 4097, 64},
                                   {1, 4, 4, 300, 128},
                                   {2, 4, 2, 129, 64},
                                   {1, 3, 1, 600, 128}};
  for (const Case& c : cases) {
    for (torch::ScalarType dtype : {torch::kBFloat16, torch::kFloat16}) {
      for (bool engine_layout : {true, false}) {
        auto [q_cpu, k_cpu] = RandomQk(c, dtype, engine_layout);
        const torch::Tensor want = BlockScoresCpu(q_cpu, k_cpu, 64);
        const torch::Tensor q = q_cpu.cuda(), k = k_cpu.cuda();
        const int64_t nb = (c.n + 63) / 64;
        // Poisoned, so a tile the kernel forgets shows up.
        torch::Tensor out = torch::full({c.batch, nb, nb}, -1.0f,
                                        q.options().dtype(torch::kFloat));
        const cuda::BlockScoresParams p =
            BlockScoresParamsFor(q, k, out, variant);
        ASSERT_TRUE(cuda::BlockScoresUsesTensorCores(p));
        ASSERT_EQ(cuda::LaunchBlockScores(
                      p, at::cuda::getCurrentCUDAStream().stream()),
                  cudaSuccess);
        const std::string label = Label(c, dtype) + " variant " +
                                  std::to_string(variant) +
                                  (engine_layout ? " transposed" : "");
        const torch::Tensor got = out.cpu();
        ExpectClose(got, want, dtype, label);
        // Where a variant is off tells why: diagonal tiles only point at the
        // causal mask (the accumulator layout), all tiles at the operands.
        const testing::Tolerance tol = testing::ToleranceFor(dtype);
        const torch::Tensor bad =
            (got - want).abs() > tol.atol + tol.rtol * want.abs();
        const torch::Tensor diag = torch::eye(nb, torch::kBool).expand_as(bad);
        EXPECT_EQ((bad & diag).sum().item<int64_t>(), 0)
            << label << ": diagonal tiles off";
        EXPECT_EQ((bad & ~diag).sum().item<int64_t>(), 0)
            << label << ": off-diagonal tiles off";
      }
    }
  }
}

#endif

TEST(BlockScoresCuda, EveryTensorCoreVariantEqualsCpu) {
  // The op runs the default variant (the cluster kernel on sm_90); this calls
  // the launcher with the mma.sync one (lemo-kernel-bench times them side by
  // side).
  LEMO_REQUIRE_CUDA();
#ifdef LEMO_WITH_CUDA
  ExpectVariantEqualsCpu(cuda::kBlockScoresSquare);
#else
  GTEST_FAIL() << "built without LEMO_ENABLE_CUDA";
#endif
}

TEST(BlockScoresCuda, WgmmaVariantEqualsCpu) {
  // The sm_90a wgmma kernel, in its own test so that bench/gpu_kernels.sh can
  // run it in its own process: a fault there must not poison the others.
  LEMO_REQUIRE_CUDA();
#ifdef LEMO_WITH_CUDA
  ExpectVariantEqualsCpu(cuda::kBlockScoresWgmma);
#else
  GTEST_FAIL() << "built without LEMO_ENABLE_CUDA";
#endif
}

TEST(BlockScoresCuda, WgmmaClusterVariantEqualsCpu) {
  // The 2-CTA cluster kernel (TMA multicast, mbarriers, ping-pong), in both
  // schedules: named Wgmma* so that it runs in the wgmma test's own process.
  LEMO_REQUIRE_CUDA();
#ifdef LEMO_WITH_CUDA
  ExpectVariantEqualsCpu(cuda::kBlockScoresCluster);
  ExpectVariantEqualsCpu(cuda::kBlockScoresClusterRowOrder);
#else
  GTEST_FAIL() << "built without LEMO_ENABLE_CUDA";
#endif
}

TEST(BlockScoresCuda, LauncherRejectsUnknownVariants) {
  // The variant is the launcher's argument only (the op always asks for
  // kBlockScoresAuto): a retired one (2, the 256x128 mma.sync CTA) or an
  // unknown one is an error, before anything is launched or written.
  LEMO_REQUIRE_CUDA();
#ifdef LEMO_WITH_CUDA
  const Case c{1, 8, 2, 1000, 128};
  auto [q_cpu, k_cpu] = RandomQk(c, torch::kBFloat16, /*engine_layout=*/true);
  const torch::Tensor q = q_cpu.cuda(), k = k_cpu.cuda();
  torch::Tensor out =
      torch::full({1, 16, 16}, -1.0f, q.options().dtype(torch::kFloat));
  for (int32_t variant : {2, 6, -1}) {
    const cuda::BlockScoresParams p = BlockScoresParamsFor(q, k, out, variant);
    EXPECT_EQ(
        cuda::LaunchBlockScores(p, at::cuda::getCurrentCUDAStream().stream()),
        cudaErrorInvalidValue)
        << "variant " << variant;
  }
  EXPECT_TRUE(torch::equal(out.cpu(), torch::full({1, 16, 16}, -1.0f)))
      << "a rejected launch wrote the map";
#else
  GTEST_FAIL() << "built without LEMO_ENABLE_CUDA";
#endif
}

TEST(BlockScoresCuda, OtherBlockSizesAndFp64UseTheReference) {
  LEMO_REQUIRE_CUDA();
  torch::manual_seed(2);
  const torch::Tensor q = torch::randn({1, 4, 150, 16}, torch::kDouble);
  const torch::Tensor k = torch::randn({1, 2, 150, 16}, torch::kDouble);
  ExpectClose(BlockScores(q.cuda(), k.cuda(), 64).cpu(),
              BlockScoresCpu(q, k, 64), torch::kFloat32, "fp64");
  const torch::Tensor qf = q.to(torch::kFloat), kf = k.to(torch::kFloat);
  ExpectClose(BlockScores(qf.cuda(), kf.cuda(), 32).cpu(),
              BlockScoresCpu(qf, kf, 32), torch::kFloat32, "block 32");
}

TEST(BlockScoresCuda, RejectsBadInputsLikeTheCpu) {
  LEMO_REQUIRE_CUDA();
  const torch::Tensor q = torch::randn({1, 6, 64, 64}, torch::kCUDA);
  EXPECT_THROW(BlockScores(q, torch::randn({1, 4, 64, 64}, torch::kCUDA)),
               c10::Error);
  EXPECT_THROW(BlockScores(q, torch::randn({1, 2, 65, 64}, torch::kCUDA)),
               c10::Error);
  EXPECT_THROW(
      BlockScores(q,
                  torch::randn({1, 2, 64, 64}).to(torch::kCUDA, torch::kHalf)),
      c10::Error);
}

TEST(BlockScoresCuda, LongSequenceSelectsLikeTheCpu) {
  // One long bf16 case (N = 8191, Llama-2 heads) through the whole oracle
  // selection: the kept blocks must match the CPU's.
  LEMO_REQUIRE_CUDA();
  const Case c{1, 32, 32, 8191, 128};
  auto [q, k] = RandomQk(c, torch::kBFloat16, true);
  const torch::Tensor want = BlockScoresCpu(q, k, 64);
  const torch::Tensor got = BlockScores(q.cuda(), k.cuda(), 64).cpu();
  ExpectClose(got, want, torch::kBFloat16, Label(c, torch::kBFloat16));
  SelectOptions select;
  select.keep_ratio = 0.4;
  const torch::Tensor kept_gpu = SelectBlocks(BlockColumnScores(got), select);
  const torch::Tensor kept_cpu = SelectBlocks(BlockColumnScores(want), select);
  // Near-ties may swap a block or two; the overlap must be nearly complete.
  const double overlap =
      torch::isin(kept_gpu, kept_cpu).to(torch::kFloat).mean().item<double>();
  EXPECT_GE(overlap, 0.98) << "kept-block overlap " << overlap;
}

}  // namespace
}  // namespace lemo::kernels
