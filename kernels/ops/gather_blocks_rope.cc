#include "kernels/ops/gather_blocks_rope.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <utility>

#include "kernels/lemo_ops.h"
#include "kernels/ops/gather_blocks.h"
#include "kernels/ops/kept_positions.h"

namespace lemo::kernels {
namespace {

// cos/sin rows at the kept positions, [B, 1, n, d] in `dtype`, ready to
// broadcast over heads.
std::pair<at::Tensor, at::Tensor> GatherCosSin(const at::Tensor& x,
                                               const at::Tensor& kept_blocks,
                                               const at::Tensor& cos,
                                               const at::Tensor& sin,
                                               int64_t block) {
  const char* what = "gather_blocks_rope";
  TORCH_CHECK_VALUE(x.dim() == 4, what, ": x must be [B, H, N, d], got ",
                    x.sizes());
  const int64_t batch = x.size(0), n = x.size(2), d = x.size(3);
  TORCH_CHECK_VALUE(d % 2 == 0, what, ": head dim must be even, got ", d);
  for (const at::Tensor* t : {&cos, &sin}) {
    TORCH_CHECK_VALUE(t->dim() == 3 &&
                          (t->size(0) == 1 || t->size(0) == batch) &&
                          t->size(1) == n && t->size(2) == d,
                      what, ": cos/sin must be [1 or ", batch, ", ", n, ", ", d,
                      "], got ", t->sizes());
    TORCH_CHECK_VALUE(t->device() == x.device(), what, ": cos/sin on ",
                      t->device(), " but x on ", x.device());
  }
  const at::Tensor pos = KeptPositionsImpl(kept_blocks, n, block, what);
  TORCH_CHECK_VALUE(kept_blocks.size(0) == batch, what, ": kept_blocks ",
                    kept_blocks.sizes(), " must have B = ", batch);
  const at::Tensor index = pos.unsqueeze(2).expand({batch, pos.size(1), d});
  auto rows = [&](const at::Tensor& table) {
    return table.to(x.scalar_type())
        .expand({batch, n, d})
        .gather(1, index)
        .unsqueeze(1);
  };
  return {rows(cos), rows(sin)};
}

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// The transpose of RotateHalf: (g1, g2) -> (g2, -g1).
at::Tensor RotateHalfTransposed(const at::Tensor& g) {
  const int64_t half = g.size(-1) / 2;
  return at::cat({g.narrow(-1, half, half), -g.narrow(-1, 0, half)}, -1);
}

}  // namespace

at::Tensor GatherBlocksRopeCpu(const at::Tensor& x,
                               const at::Tensor& kept_blocks,
                               const at::Tensor& cos, const at::Tensor& sin,
                               int64_t block) {
  auto [c, s] = GatherCosSin(x, kept_blocks, cos, sin, block);
  const at::Tensor xk = GatherBlocksCpu(x, kept_blocks, block);
  return xk * c + RotateHalf(xk) * s;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class GatherBlocksRopeFunction
    : public torch::autograd::Function<GatherBlocksRopeFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& kept_blocks,
                            const at::Tensor& cos, const at::Tensor& sin,
                            int64_t block) {
    TORCH_CHECK_VALUE(!cos.requires_grad() && !sin.requires_grad(),
                      "gather_blocks_rope: cos/sin get no gradient; detach "
                      "them");
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({kept_blocks, cos, sin});
    ctx->saved_data["block"] = block;
    ctx->saved_data["sizes"] = x.sizes().vec();
    return GatherBlocksRope(x, kept_blocks, cos, sin, block);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const int64_t block = ctx->saved_data["block"].toInt();
    const at::Tensor& g = grads[0];
    const at::Tensor zeros =
        at::zeros(ctx->saved_data["sizes"].toIntVector(), g.options());
    auto [c, s] = GatherCosSin(zeros, saved[0], saved[1], saved[2], block);
    const at::Tensor gk = g * c + RotateHalfTransposed(g * s);
    return {ScatterAddBlocks(zeros, gk, saved[0], block), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor GatherBlocksRopeAutograd(const at::Tensor& x,
                                    const at::Tensor& kept_blocks,
                                    const at::Tensor& cos,
                                    const at::Tensor& sin, int64_t block) {
  return GatherBlocksRopeFunction::apply(x, kept_blocks, cos, sin, block);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lemo, m) {
  m.def(
      "gather_blocks_rope(Tensor x, Tensor kept_blocks, Tensor cos, "
      "Tensor sin, int block=64) -> Tensor");
}

TORCH_LIBRARY_IMPL(lemo, CPU, m) {
  m.impl("gather_blocks_rope", TORCH_FN(GatherBlocksRopeCpu));
}

TORCH_LIBRARY_IMPL(lemo, Autograd, m) {
  m.impl("gather_blocks_rope", TORCH_FN(GatherBlocksRopeAutograd));
}

}  // namespace lemo::kernels
