#include "kernels/gather_blocks/gather_blocks.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "kernels/common/op_handle.h"
#include "kernels/kept_positions/kept_positions.h"
#include "kernels/scatter_add_blocks/scatter_add_blocks.h"

namespace lemo::kernels {

at::Tensor GatherBlocksCpu(const at::Tensor& x, const at::Tensor& kept_blocks,
                           int64_t block) {
  const at::Tensor index =
      BlockTokenIndex(x, kept_blocks, block, "gather_blocks");
  return x.gather(x.dim() - 2, index);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class GatherBlocksFunction
    : public torch::autograd::Function<GatherBlocksFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& kept_blocks, int64_t block) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({kept_blocks});
    ctx->saved_data["block"] = block;
    ctx->saved_data["sizes"] = x.sizes().vec();
    return GatherBlocks(x, kept_blocks, block);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor kept_blocks = ctx->get_saved_variables()[0];
    const at::Tensor zeros =
        at::zeros(ctx->saved_data["sizes"].toIntVector(), grads[0].options());
    // Through the dispatcher (and its autograd), so double backward works too.
    return {ScatterAddBlocks(zeros, grads[0], kept_blocks,
                             ctx->saved_data["block"].toInt()),
            at::Tensor(), at::Tensor()};
  }
};

at::Tensor GatherBlocksAutograd(const at::Tensor& x,
                                const at::Tensor& kept_blocks, int64_t block) {
  return GatherBlocksFunction::apply(x, kept_blocks, block);
}

}  // namespace

at::Tensor GatherBlocks(const at::Tensor& x, const at::Tensor& kept_blocks,
                        int64_t block) {
  static const auto op =
      OpHandle<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>(
          "lemo::gather_blocks");
  return op.call(x, kept_blocks, block);
}

TORCH_LIBRARY_FRAGMENT(lemo, m) {
  m.def("gather_blocks(Tensor x, Tensor kept_blocks, int block=64) -> Tensor");
}

TORCH_LIBRARY_IMPL(lemo, CPU, m) {
  m.impl("gather_blocks", TORCH_FN(GatherBlocksCpu));
}

TORCH_LIBRARY_IMPL(lemo, Autograd, m) {
  m.impl("gather_blocks", TORCH_FN(GatherBlocksAutograd));
}

}  // namespace lemo::kernels
