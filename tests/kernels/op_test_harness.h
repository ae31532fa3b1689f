// Test harness for the LeMo ops in kernels/ (the habit of ggml's
// test-backend-ops): every backend of an op is compared with a reference in
// plain LibTorch on random inputs, over shapes with ragged tails (N not a
// multiple of 64), several head counts and GQA layouts, in fp32 (tight) and
// bf16 (loose), and its gradients with autograd through the reference.
//
// How to add an op `foo` (kernels/foo/, see kernels/CMakeLists.txt):
//   1. tests/kernels/foo/foo_test.cc (CPU, label unit): write foo's naive
//      reference there, the obvious, memory-hungry LibTorch math,
//      differentiable by autograd, calling no lemo:: op.
//   2. List cases (a vector of small structs) that cover ragged N, B > 1 and
//      GQA (Hq=8, Hkv=2 ...).
//   3. For each case and each dtype of kDtypes (fp32, bf16):
//      ExpectClose(Foo(...), NaiveFoo(...), dtype, label).
//   4. Where a gradient flows: ExpectGradsMatch(op_fn, ref_fn, inputs, label)
//      runs both on the same inputs and the same random upstream gradient and
//      compares every input's gradient.
//   5. tests/kernels/foo/foo_cuda_test.cc (label gpu, by its name): each test
//      starts with LEMO_REQUIRE_CUDA() (tests/testing/require_cuda.h:
//      it fails without a CUDA device), then compares Foo on CUDA copies
//      of random inputs with FooCpu (the op's CPU reference) on the same
//      inputs, over the same kinds of cases and fp32, bf16 and fp16. Variants
//      the op does not take (tests and bench only) are reached by calling the
//      launcher or binding with the variant, inside #ifdef LEMO_WITH_CUDA
//      (with GTEST_FAIL() << "built without LEMO_ENABLE_CUDA" otherwise).
// Both files are picked up by tests/kernels/CMakeLists.txt's globs.
#ifndef LEMO_TESTS_KERNELS_OP_TEST_HARNESS_H_
#define LEMO_TESTS_KERNELS_OP_TEST_HARNESS_H_

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tests/testing/require_cuda.h"

#ifdef LEMO_WITH_CUDA
#include "kernels/kept_positions/kept_check_cuda.h"
#endif

namespace lemo::kernels::testing {

inline const std::vector<torch::ScalarType> kDtypes = {torch::kFloat32,
                                                       torch::kBFloat16};

struct Tolerance {
  double rtol;
  double atol;
};

// fp32: a few ulps of the reductions involved. bf16 (8-bit mantissa, eps 2^-8 =
// 0.0039): about 2x one bf16 rounding, the STYLE.md rule for low-precision
// comparisons.
inline Tolerance ToleranceFor(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat64:
      return {1e-12, 1e-12};
    case torch::kFloat32:
      return {1e-5, 1e-6};
    default:
      return {1e-2, 1e-2};
  }
}

inline void ExpectClose(const torch::Tensor& actual,
                        const torch::Tensor& expected, torch::ScalarType dtype,
                        const std::string& label) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << label;
  const Tolerance tol = ToleranceFor(dtype);
  const torch::Tensor a = actual.to(torch::kFloat64);
  const torch::Tensor e = expected.to(torch::kFloat64);
  const double max_err = (a - e).abs().max().item<double>();
  EXPECT_TRUE(torch::allclose(a, e, tol.rtol, tol.atol))
      << label << ": max abs error " << max_err << " (rtol " << tol.rtol
      << ", atol " << tol.atol << ")";
}

// Calls op_fn and ref_fn on fresh leaf copies of `inputs` (floating ones
// require grad), backprops the same random upstream gradient through both and
// compares outputs and input gradients.
inline void ExpectGradsMatch(
    const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>&
        op_fn,
    const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>&
        ref_fn,
    const std::vector<torch::Tensor>& inputs, const std::string& label,
    uint64_t seed = 7) {
  auto leaves = [&] {
    std::vector<torch::Tensor> out;
    for (const torch::Tensor& t : inputs) {
      torch::Tensor leaf = t.detach().clone();
      if (leaf.is_floating_point()) leaf.requires_grad_(true);
      out.push_back(leaf);
    }
    return out;
  };
  std::vector<torch::Tensor> a = leaves();
  std::vector<torch::Tensor> e = leaves();
  const torch::Tensor ya = op_fn(a);
  const torch::Tensor ye = ref_fn(e);
  const torch::ScalarType dtype = ya.scalar_type();
  ExpectClose(ya, ye, dtype, label + " (output)");
  torch::manual_seed(seed);
  const torch::Tensor upstream = torch::randn_like(ye);
  ya.backward(upstream);
  ye.backward(upstream);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].is_floating_point()) continue;
    const std::string what =
        label + " (grad of input " + std::to_string(i) + ")";
    ASSERT_TRUE(a[i].grad().defined()) << what;
    ASSERT_TRUE(e[i].grad().defined()) << what;
    ExpectClose(a[i].grad(), e[i].grad(), dtype, what);
  }
}

// A gather/scatter case: the full tensor's shape, how many blocks are kept
// and the block size.
struct KeptCase {
  std::vector<int64_t> shape;  // [B, N, D] or [B, H, N, d]
  int64_t k;                   // kept blocks
  int64_t block;
};

inline std::string Label(const KeptCase& c, torch::ScalarType dtype) {
  return "shape=" + c10::str(c10::IntArrayRef(c.shape)) +
         " k=" + std::to_string(c.k) + " block=" + std::to_string(c.block) +
         " " + c10::toString(dtype);
}

// The number of blocks of the case's token dimension, the last one partial.
inline int64_t Blocks(const KeptCase& c) {
  const int64_t n = c.shape[c.shape.size() - 2];
  return (n + c.block - 1) / c.block;
}

// Random kept blocks, int64 [batch, k]: blocks 0 and nb - 1 (as select_blocks
// always keeps), plus k - 2 distinct others per row, ascending.
inline torch::Tensor RandomKept(int64_t batch, int64_t nb, int64_t k,
                                uint64_t seed) {
  torch::manual_seed(seed);
  k = std::min(std::max<int64_t>(k, std::min<int64_t>(nb, 2)), nb);
  std::vector<torch::Tensor> rows;
  for (int64_t b = 0; b < batch; ++b) {
    torch::Tensor row;
    if (nb <= 2) {
      row = torch::arange(k, torch::kLong);
    } else {
      const torch::Tensor middle =
          torch::randperm(nb - 2, torch::kLong).narrow(0, 0, k - 2) + 1;
      row = std::get<0>(
          torch::cat({torch::tensor({int64_t{0}, nb - 1}), middle}).sort());
    }
    rows.push_back(row);
  }
  return torch::stack(rows);
}

// The kept token positions of one row, the obvious way.
inline std::vector<int64_t> NaivePositions(const torch::Tensor& kept_row,
                                           int64_t n_tokens, int64_t block) {
  std::vector<int64_t> pos;
  for (int64_t i = 0; i < kept_row.size(0); ++i) {
    const int64_t blk = kept_row[i].item<int64_t>();
    for (int64_t t = blk * block; t < std::min(n_tokens, (blk + 1) * block);
         ++t) {
      pos.push_back(t);
    }
  }
  return pos;
}

// NaivePositions of every row of `kept`, int64 [B, n].
inline torch::Tensor NaivePositionsTensor(const torch::Tensor& kept, int64_t n,
                                          int64_t block) {
  std::vector<torch::Tensor> rows;
  for (int64_t b = 0; b < kept.size(0); ++b) {
    rows.push_back(torch::tensor(NaivePositions(kept[b], n, block)));
  }
  return torch::stack(rows);
}

// The naive gather: per row, index_select along the token dim (dim() - 2).
inline torch::Tensor NaiveGather(const torch::Tensor& x,
                                 const torch::Tensor& kept, int64_t block) {
  const int64_t tdim = x.dim() - 2;
  const torch::Tensor pos = NaivePositionsTensor(kept, x.size(tdim), block);
  std::vector<torch::Tensor> rows;
  for (int64_t b = 0; b < x.size(0); ++b) {
    rows.push_back(x[b].index_select(tdim - 1, pos[b]));
  }
  return torch::stack(rows);
}

// The CPU gather/scatter cases: ragged N (100, 200, 130, 90, 47), 4-D head
// layouts, and blocks other than 64.
inline const std::vector<KeptCase> kKeptCases = {
    {{1, 64, 8}, 1, 64},    {{2, 100, 8}, 2, 64},    {{2, 200, 16}, 3, 64},
    {{3, 256, 4}, 2, 64},   {{2, 4, 130, 8}, 2, 64}, {{1, 8, 320, 16}, 3, 64},
    {{2, 2, 90, 4}, 4, 16}, {{2, 3, 47, 6}, 3, 10},
};

// The GPU gather/scatter cases: ragged N (1000, 4097, 130), Llama widths (4096
// hidden, d = 128), odd widths that defeat 16-byte vectors (6, 33), and blocks
// other than 64.
inline const std::vector<KeptCase> kGpuKeptCases = {
    {{1, 1000, 4096}, 7, 64},   {{2, 4097, 256}, 30, 64},
    {{2, 8, 1000, 128}, 6, 64}, {{1, 32, 4097, 64}, 20, 64},
    {{2, 4, 130, 6}, 2, 64},    {{2, 300, 33}, 3, 64},
    {{2, 2, 90, 8}, 4, 16},     {{1, 3, 47, 10}, 3, 10},
};

// The dtypes every CUDA kernel takes.
inline const std::vector<torch::ScalarType> kGpuDtypes = {
    torch::kFloat32, torch::kBFloat16, torch::kFloat16};

// A CPU op's output moved to `like`'s device: differentiable, so a gradient
// flows back to CUDA leaves through the CPU reference.
inline torch::Tensor OnDeviceOf(const torch::Tensor& out,
                                const torch::Tensor& like) {
  return out.to(like.device());
}

#ifdef LEMO_WITH_CUDA
// Every path of the CUDA gather/scatter bindings (the ops take
// kDefaultKeptPath).
inline const std::vector<KeptPath> kKeptPaths = {
    KeptPath::kReferenceChecks, KeptPath::kKernelChecks, KeptPath::kBlockCtas};

inline std::string PathLabel(KeptPath path) {
  return " kept path " + std::to_string(static_cast<int>(path));
}
#endif

}  // namespace lemo::kernels::testing

#endif  // LEMO_TESTS_KERNELS_OP_TEST_HARNESS_H_
