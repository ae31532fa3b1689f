#include "kernels/scatter_add_blocks/scatter_add_blocks.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "kernels/common/op_handle.h"
#include "kernels/gather_blocks/gather_blocks.h"
#include "kernels/kept_positions/kept_positions.h"

namespace lemo::kernels {

at::Tensor ScatterAddBlocksCpu(const at::Tensor& residual, const at::Tensor& y,
                               const at::Tensor& kept_blocks, int64_t block) {
  const at::Tensor index =
      BlockTokenIndex(residual, kept_blocks, block, "scatter_add_blocks");
  TORCH_CHECK_VALUE(y.sizes() == index.sizes(),
                    "scatter_add_blocks: y must be ", index.sizes(),
                    " for residual ", residual.sizes(), " and ",
                    kept_blocks.size(1), " kept blocks, got ", y.sizes());
  TORCH_CHECK_VALUE(y.scalar_type() == residual.scalar_type(),
                    "scatter_add_blocks: y is ", y.scalar_type(),
                    " but residual is ", residual.scalar_type());
  // Kept positions are distinct, so the scatter-add is one add per kept
  // element.
  return residual.clone(at::MemoryFormat::Contiguous)
      .scatter_add_(residual.dim() - 2, index, y);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class ScatterAddBlocksFunction
    : public torch::autograd::Function<ScatterAddBlocksFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& residual,
                            const at::Tensor& y, const at::Tensor& kept_blocks,
                            int64_t block) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({kept_blocks});
    ctx->saved_data["block"] = block;
    return ScatterAddBlocks(residual, y, kept_blocks, block);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor kept_blocks = ctx->get_saved_variables()[0];
    return {
        grads[0],
        GatherBlocks(grads[0], kept_blocks, ctx->saved_data["block"].toInt()),
        at::Tensor(), at::Tensor()};
  }
};

at::Tensor ScatterAddBlocksAutograd(const at::Tensor& residual,
                                    const at::Tensor& y,
                                    const at::Tensor& kept_blocks,
                                    int64_t block) {
  return ScatterAddBlocksFunction::apply(residual, y, kept_blocks, block);
}

}  // namespace

at::Tensor ScatterAddBlocks(const at::Tensor& residual, const at::Tensor& y,
                            const at::Tensor& kept_blocks, int64_t block) {
  static const auto op = OpHandle<at::Tensor(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t)>(
      "lemo::scatter_add_blocks");
  return op.call(residual, y, kept_blocks, block);
}

TORCH_LIBRARY_FRAGMENT(lemo, m) {
  m.def(
      "scatter_add_blocks(Tensor residual, Tensor y, Tensor kept_blocks, "
      "int block=64) -> Tensor");
}

TORCH_LIBRARY_IMPL(lemo, CPU, m) {
  m.impl("scatter_add_blocks", TORCH_FN(ScatterAddBlocksCpu));
}

TORCH_LIBRARY_IMPL(lemo, Autograd, m) {
  m.impl("scatter_add_blocks", TORCH_FN(ScatterAddBlocksAutograd));
}

}  // namespace lemo::kernels
