// Test harness for the LeMo ops in kernels/ (the habit of ggml's
// test-backend-ops): every op is compared with a naive reference in plain
// LibTorch on random inputs, over shapes with ragged tails (N not a multiple of
// 64), several head counts and GQA layouts, in fp32 (tight) and bf16 (loose),
// and its gradients with autograd through the naive reference.
//
// How to add an op:
//   1. Write its naive reference in tests/kernels/<op>_test.cc: the obvious,
//      memory-hungry LibTorch math, differentiable by autograd, calling no
//      lemo:: op.
//   2. List cases (a vector of small structs) that cover ragged N, B > 1 and
//      GQA (Hq=8, Hkv=2 ...).
//   3. For each case and each dtype of kDtypes:
//      ExpectClose(op(...), ref(...), dtype, label).
//   4. Where a gradient flows: ExpectGradsMatch(op_fn, ref_fn, inputs, label)
//      runs both on the same inputs and the same random upstream gradient and
//      compares every input's gradient.
#ifndef LEMO_TESTS_KERNELS_OP_TEST_HARNESS_H_
#define LEMO_TESTS_KERNELS_OP_TEST_HARNESS_H_

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

// GPU tests (the *_cuda_test.cc files, label gpu) start with this: without a
// CUDA device (CPU builds, CI) they skip with the reason.
#define LEMO_SKIP_WITHOUT_CUDA()                                        \
  do {                                                                  \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

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

}  // namespace lemo::kernels::testing

#endif  // LEMO_TESTS_KERNELS_OP_TEST_HARNESS_H_
